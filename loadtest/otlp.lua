-- wrk: OTLP trace exports, protobuf, to /v1/traces (bench's otlp-100): gen.py's otlp-100.frames,
-- each an ExportTraceServiceRequest of 100 spans (10 traces of 10, 300 bytes a span), ~31 KB.
-- The token must list `traces` in its kinds.
--   loadtest/gen.py --kinds otlp-100 && wrk -t2 -c64 -d30s -s loadtest/otlp.lua http://127.0.0.1:8080
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "otlp-100.frames", framed = true, path = "/v1/traces", content_type = "application/x-protobuf",
    events = 100 },
})
