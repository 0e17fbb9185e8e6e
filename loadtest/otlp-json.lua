-- wrk: the same OTLP trace exports as otlp.lua in OTLP/JSON (bench's otlp-json-100): gen.py's
-- otlp-json-100.ndjson, 100 spans a body (hex ids, 64-bit integers as strings), ~62 KB.
--   loadtest/gen.py --kinds otlp-json-100 && wrk -t2 -c64 -d30s -s loadtest/otlp-json.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "otlp-json-100.ndjson", path = "/v1/traces", content_type = "application/json", events = 100 },
})
