-- wrk: PostHog batches of 50 events as posthog-js sends them to /e/ (bench's posthog-50, built
-- from the events recorded in tests/sdk/payloads/posthog/js-batch.json; the key is the body's
-- api_key).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "posthog-50.ndjson", path = "/e/", events = 50 },
})
