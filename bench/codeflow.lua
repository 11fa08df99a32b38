-- wrk script for bench/run: the authorization code flow of a browser that
-- is already signed in (its warden_session cookie) and a first-party
-- client: GET /authorize (303 with a code), then POST /token exchanging
-- the code with the PKCE verifier and the client's secret. Each 303's code
-- is queued; a connection redeems a queued code when there is one, else
-- starts a new authorization. Two requests make one sign-in.
--
-- Arguments: the authorize path and query (with the S256 challenge of the
-- verifier), the Basic credentials, the redirect URI, the verifier, then
-- the Cookie headers of several signed-in browsers (different users),
-- taken in turn.
local authorize, basic, redirect_uri, verifier
local cookies = {}
local next_cookie = 0
local codes = {}

init = function(args)
  authorize, basic, redirect_uri, verifier = args[1], args[2], args[3], args[4]
  for i = 5, #args do
    cookies[#cookies + 1] = args[i]
  end
end

request = function()
  local code = table.remove(codes, 1)
  if code then
    return wrk.format("POST", "/token", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Authorization"] = "Basic " .. basic,
    }, "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. redirect_uri
      .. "&code_verifier=" .. verifier)
  end
  next_cookie = next_cookie % #cookies + 1
  return wrk.format("GET", authorize, { ["Cookie"] = cookies[next_cookie] })
end

response = function(status, headers, body)
  local location = headers["location"] or headers["Location"]
  if location then
    -- A redirect without a code (to the login page: the browser session
    -- ended; or an error) queues a code that cannot work, so its 400 shows
    -- in the run's errors instead of the run measuring redirects.
    codes[#codes + 1] = location:match("[?&]code=([^&]+)") or "no-code-in-the-redirect"
  end
end
