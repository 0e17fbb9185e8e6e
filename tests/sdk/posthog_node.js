// Drives posthog-node against inlet: the same events as posthog_python.py, then shutdown
// (which flushes).
//
// Usage: NODE_PATH=target/sdk/node/node_modules node posthog_node.js SPEC
// SPEC is JSON: {"host", "key", "run", "ids": [four event UUIDs]}. Exits non-zero when the SDK
// reports an error.
const { PostHog } = require("posthog-node");

const spec = JSON.parse(process.argv[2]);
const { run, ids } = spec;
const user = `user-${run}`;
const session = `session-${run}`;
const errors = [];
const client = new PostHog(spec.key, { host: spec.host, flushAt: 20, flushInterval: 200, fetchRetryCount: 2 });
client.on("error", (error) => errors.push(String(error && (error.message || error))));
client.capture({ distinctId: user, event: "signed_up", properties: { $session_id: session, plan: "pro" }, uuid: ids[0] });
client.capture({
  distinctId: user,
  event: "$pageview",
  properties: { $session_id: session, $current_url: "https://app.example/home", $referrer: "https://ref.example/" },
  uuid: ids[1],
});
client.capture({ distinctId: user, event: "$identify", properties: { $set: { email: "u@app.example" } }, uuid: ids[2] });
client.capture({ distinctId: user, event: "$create_alias", properties: { $session_id: session, alias: `alias-${run}` }, uuid: ids[3] });
client.shutdown(20000).then(() => {
  if (errors.length) {
    console.error("posthog-node reported: " + errors.join("; "));
    process.exit(1);
  }
  console.log("sent", ids.length);
});
