// Drives @segment/analytics-node against inlet: one call of each type, then closeAndFlush.
//
// Usage: NODE_PATH=target/sdk/node/node_modules node segment_node.js SPEC
// SPEC is JSON: {"host", "key", "run", "ids": [six message ids]}; the same calls as
// segment_python.py. Exits non-zero when the SDK reports an error.
const { Analytics } = require("@segment/analytics-node");

const spec = JSON.parse(process.argv[2]);
const { run, ids } = spec;
const anon = `anon-${run}`;
const user = `user-${run}`;
const errors = [];
const analytics = new Analytics({ writeKey: spec.key, host: spec.host, maxRetries: 2, flushInterval: 200 });
analytics.on("error", (error) => errors.push(String(error && (error.reason || error.message || error))));
analytics.track({ userId: user, anonymousId: anon, event: "Order Completed", properties: { revenue: 42.5 }, messageId: ids[0] });
analytics.page({
  anonymousId: anon,
  name: "Checkout",
  properties: { url: "https://shop.example/checkout", title: "Checkout" },
  messageId: ids[1],
});
analytics.screen({ anonymousId: anon, name: "Home", messageId: ids[2] });
analytics.identify({ userId: user, anonymousId: anon, traits: { plan: "pro" }, messageId: ids[3] });
analytics.group({ userId: user, anonymousId: anon, groupId: "g-1", traits: { seats: 5 }, messageId: ids[4] });
analytics.alias({ previousId: anon, userId: user, messageId: ids[5] });
analytics.closeAndFlush({ timeout: 20000 }).then(() => {
  if (errors.length) {
    console.error("@segment/analytics-node reported: " + errors.join("; "));
    process.exit(1);
  }
  console.log("sent", ids.length);
});
