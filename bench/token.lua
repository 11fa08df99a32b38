-- wrk script for bench/run: POST /token with an OAuth2 password-grant form,
-- logging in user0 .. user{BENCH_USERS-1} in turn (every seeded user has the
-- password BENCH_PASSWORD, which must be URL-safe).
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local password = os.getenv("BENCH_PASSWORD") or "missing"
local i = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  local body = "username=user" .. (i % users) .. "&password=" .. password
  i = i + 1
  return wrk.format(nil, nil, nil, body)
end
