-- wrk: posthog-50's events as the native beacons they translate to, 50 to a batch on
-- /v1/beacons (bench's posthog-50-native, built from tests/sdk/payloads/posthog/
-- js-batch.beacons.json): the same content as posthog-50, without the adapter.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
common.install({
  { file = "posthog-50-native.ndjson", path = "/v1/beacons", events = 50 },
})
