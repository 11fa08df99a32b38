-- wrk script for bench/run: POST /token grant_type=refresh_token, the
-- rotation every client does every 15 minutes. Each response's new refresh
-- token goes to the back of a queue, and each request takes the front one:
-- every token is used once, as a real client uses it. The starting tokens
-- (more than there are connections) come as the script's arguments.
local tokens = {}

init = function(args)
  for _, token in ipairs(args) do
    tokens[#tokens + 1] = token
  end
end

request = function()
  local token = table.remove(tokens, 1)
  if token == nil then
    -- Only if rotations failed and lost their chains; the run then shows
    -- non-2xx responses.
    token = "exhausted"
  end
  return wrk.format("POST", "/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&refresh_token=" .. token)
end

response = function(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    tokens[#tokens + 1] = token
  end
end
