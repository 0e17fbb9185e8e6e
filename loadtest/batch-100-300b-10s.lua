-- wrk: batches of 100 beacons of 300 bytes, ten sessions of ten in each (gen.py's
-- beacons-100-300b-10s) to /v1/beacons: ten Kafka keys a request, as otlp-100's ten traces are.
--   loadtest/gen.py --kinds beacons-100-300b-10s && wrk -t2 -c64 -d30s -s loadtest/batch-100-300b-10s.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "beacons-100-300b-10s.ndjson", path = "/v1/beacons", events = 100 },
})
