-- wrk script: single ~800-byte beacons, each from one of many sessions, to POST /v1/beacons.
--   wrk -t2 -c64 -d30s -s loadtest/beacon.lua http://127.0.0.1:8080/v1/beacons
-- Token: INLET_TOKEN in the environment (default: dev-token, as printed by `inlet --dev`).

local token = os.getenv("INLET_TOKEN") or "dev-token"
local sessions = tonumber(os.getenv("SESSIONS") or "100000")
local filler = string.rep("x", 560)
local counter = 0

wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  thread:set("thread_seed", math.random(1, 1000000000))
end

function init(args)
  math.randomseed(thread_seed or os.time())
end

request = function()
  counter = counter + 1
  local session = math.random(1, sessions)
  local body = string.format(
    '{"session_id":"session-%d","event":"page_view","ts":%d,' ..
    '"url":"https://www.acme.example/pricing?ref=%d","referrer":"https://search.example/",' ..
    '"title":"Pricing - Acme","user_id":"user-%d","props":{"seq":%d,"pad":"%s"}}',
    session, os.time() * 1000, counter, session, counter, filler)
  return wrk.format(nil, nil, nil, body)
end

response = function(status, headers, body)
  if status ~= 200 and status ~= 202 and status ~= 429 and status ~= 503 then
    print("unexpected status " .. status .. ": " .. body)
  end
end
