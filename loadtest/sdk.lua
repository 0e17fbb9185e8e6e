-- wrk: one recorded SDK request body, posted again and again (loadtest/bench's sdk-* scenarios).
-- SDK_FILE names the body file in DATA (one body a line; base64 when SDK_B64=1, for bodies with
-- newlines such as Sentry envelopes), SDK_PATH the route (with its query), SDK_CONTENT_TYPE the
-- media type (default application/json), SDK_EVENTS the events each request carries (default 1).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  {
    file = os.getenv("SDK_FILE"),
    path = os.getenv("SDK_PATH"),
    b64 = os.getenv("SDK_B64") == "1",
    content_type = os.getenv("SDK_CONTENT_TYPE"),
    events = tonumber(os.getenv("SDK_EVENTS") or "1"),
  },
})
