-- wrk: session recordings, opaque bodies POSTed to /v1/recordings/{session_id} (loadtest/bench's
-- recording-* scenarios). RECORDING_FILE names the body file in DATA: one recording a line, its
-- bytes as sent (bench writes base64 text of random bytes: no newline, and as incompressible to
-- lz4 as an already compressed recording). The token must list `recording` in its kinds.
--   RECORDING_FILE=recording-100k.txt DATA=target/loadtest/data INLET_TOKEN=T \
--     wrk -t2 -c64 -d30s -s loadtest/recording.lua http://127.0.0.1:8080
--
-- The session is in the path, so common.lua's per-request session (a new copy of the request
-- each time: 10 MiB for a 10 MiB upload, which costs wrk more CPU than sending it) is not used:
-- each thread pre-builds RECORDING_REQUESTS requests (default 500), each to its own session drawn
-- from SESSIONS (default 100000) as `sess-NNNNNNNN`, the bodies taken in turn, and sends them in
-- turn. Memory: RECORDING_REQUESTS x the body size per thread. One recording is one event.
-- common.lua's setup, response and done (the summary and its WRKJSON line) are kept.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local file = os.getenv("RECORDING_FILE") or "recording-100k.txt"
common.install({
  { file = file, path = "/v1/recordings/sess-00000000", content_type = "application/octet-stream", events = 1 },
})

local sessions = tonumber(os.getenv("SESSIONS") or "100000")
local count = tonumber(os.getenv("RECORDING_REQUESTS") or "500")
local reqs, pos = {}, 0

function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  local headers = {
    ["Authorization"] = "Bearer " .. (os.getenv("INLET_TOKEN") or "devtoken"),
    ["Content-Type"] = "application/octet-stream",
  }
  local bodies = common.read_lines(common.data_dir() .. "/" .. file)
  for i = 1, count do
    local path = string.format("/v1/recordings/sess-%08d", math.random(0, sessions - 1))
    reqs[i] = wrk.format("POST", path, headers, bodies[((tid or 0) * 7919 + i) % #bodies + 1])
  end
end

function request()
  lt_sent = lt_sent + 1
  lt_events = lt_events + 1
  pos = pos + 1
  return reqs[(pos % #reqs) + 1]
end
