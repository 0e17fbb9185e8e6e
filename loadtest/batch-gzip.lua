-- wrk: gzip-encoded NDJSON batches of 50 beacons (gen.py's batch-50-gzip.b64, decoded once at
-- start; ~17 KB on the wire, ~40 KB decoded).
--   loadtest/gen.py && wrk -t2 -c64 -d30s -s loadtest/batch-gzip.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "batch-50-gzip.b64", b64 = true, path = "/v1/beacons", events = 50,
    content_type = "application/x-ndjson", encoding = "gzip" },
})
