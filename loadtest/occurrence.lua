-- wrk: 2.5 KB error occurrences with a 12-frame stack trace (gen.py's occurrence-2k5).
-- The token must allow occurrences.
--   loadtest/gen.py && wrk -t2 -c64 -d30s -s loadtest/occurrence.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "occurrence-2k5.ndjson", path = "/v1/occurrences", events = 1 },
})
