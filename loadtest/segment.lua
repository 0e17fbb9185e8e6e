-- wrk: Segment batches of 50 messages as segment-analytics-python sends them to /v1/batch
-- (bench's segment-50, built from tests/sdk/payloads/segment/python-batch.json; the key is the
-- body's writeKey).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "segment-50.ndjson", path = "/v1/batch", events = 50 },
})
