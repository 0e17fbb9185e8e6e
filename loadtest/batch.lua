-- wrk: batches of 50 beacons of one session each (gen.py's batch-50, ~40 KB JSON arrays).
--   loadtest/gen.py && wrk -t2 -c64 -d30s -s loadtest/batch.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "batch-50.ndjson", path = "/v1/beacons", events = 50 },
})
