-- wrk: single 800-byte beacons (gen.py's beacon-800), each from one of SESSIONS (default
-- 100,000) sessions: the session number is rewritten per request, the size stays 800 bytes.
--   loadtest/gen.py && wrk -t2 -c64 -d30s -s loadtest/beacon.lua http://127.0.0.1:8080
-- Environment: see common.lua (INLET_TOKEN, DATA, SESSIONS, LIMIT, STATUSES).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "beacon-800.ndjson", path = "/v1/beacons", events = 1, resession = true },
})
