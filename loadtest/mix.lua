-- wrk: a mix, by requests: 70% single beacons, 14% batches of 50, 6% gzip batches, 8% 2.5 KB
-- occurrences, 2% 100 KB session chunks. The token must allow beacons and occurrences.
--   loadtest/gen.py && wrk -t2 -c64 -d30s -s loadtest/mix.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "beacon-800.ndjson", path = "/v1/beacons", events = 1, resession = true, weight = 35 },
  { file = "batch-50.ndjson", path = "/v1/beacons", events = 50, weight = 7 },
  { file = "batch-50-gzip.b64", b64 = true, path = "/v1/beacons", events = 50, weight = 3,
    content_type = "application/x-ndjson", encoding = "gzip" },
  { file = "occurrence-2k5.ndjson", path = "/v1/occurrences", events = 1, weight = 4 },
  { file = "chunk-100k.ndjson", path = "/v1/occurrences", events = 1, weight = 1 },
})
