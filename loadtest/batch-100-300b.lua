-- wrk: batches of 100 beacons of 300 bytes, one session's each (gen.py's beacons-100-300b, ~30 KB
-- JSON arrays) to /v1/beacons: bench's beacons-100-300b, the native twin of otlp-100's spans.
--   loadtest/gen.py --kinds beacons-100-300b && wrk -t2 -c64 -d30s -s loadtest/batch-100-300b.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "beacons-100-300b.ndjson", path = "/v1/beacons", events = 100 },
})
