-- wrk: 100 KB occurrences carrying a session-replay chunk (gen.py's chunk-100k).
-- The token must allow occurrences.
--   loadtest/gen.py && wrk -t2 -c16 -d30s -s loadtest/chunk.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "chunk-100k.ndjson", path = "/v1/occurrences", events = 1 },
})
