"""Drives segment-analytics-python against inlet: one call of each type, then flush.

Usage: PYTHONPATH=target/sdk/python python3 segment_python.py SPEC
SPEC is JSON: {"host", "key", "run", "ids": [six message ids]}. Each call's session is
"anon-<run>" (identify, alias: the user "user-<run>"); tests/sdk_analytics.rs checks what lands.
Exits non-zero when the SDK reports an error.
"""

import json
import sys

from segment.analytics.client import Client

spec = json.loads(sys.argv[1])
run, ids = spec["run"], spec["ids"]
anon, user = f"anon-{run}", f"user-{run}"
errors = []
client = Client(
    spec["key"],
    host=spec["host"],
    gzip=spec.get("gzip", False),
    on_error=lambda error, batch: errors.append(str(error)),
    max_retries=2,
)
client.track(
    user_id=user,
    anonymous_id=anon,
    event="Order Completed",
    properties={"revenue": 42.5, "currency": "EUR"},
    message_id=ids[0],
)
client.page(
    anonymous_id=anon,
    name="Checkout",
    properties={"url": "https://shop.example/checkout", "title": "Checkout"},
    message_id=ids[1],
)
client.screen(anonymous_id=anon, name="Home", message_id=ids[2])
client.identify(user_id=user, anonymous_id=anon, traits={"plan": "pro"}, message_id=ids[3])
client.group(user_id=user, anonymous_id=anon, group_id="g-1", traits={"seats": 5}, message_id=ids[4])
client.alias(previous_id=anon, user_id=user, message_id=ids[5])
client.flush()
client.shutdown()
if errors:
    sys.exit("segment-analytics-python reported: " + "; ".join(errors))
print("sent", len(ids))
