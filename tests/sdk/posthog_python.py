"""Drives the posthog Python SDK against inlet: a custom event, a pageview, an identify
($set) and an alias, then flush.

Usage: PYTHONPATH=target/sdk/python python3 posthog_python.py SPEC
SPEC is JSON: {"host", "key", "run", "ids": [four event UUIDs]}. Events carry the session
"session-<run>" and the distinct id "user-<run>"; tests/sdk_analytics.rs checks what lands.
Exits non-zero when the SDK reports an error.

With "mode": "large", instead: as many events as "ids" holds but one, 12 KB of properties
each, in one batch (posthog-python's default `flush_at` is 100: 100 of them are 1.2 MB of
JSON, which it sends uncompressed), then `capture_exception` of an exception raised three
calls deep, with the last id.
"""

import json
import sys

from posthog import Posthog

spec = json.loads(sys.argv[1])
run, ids = spec["run"], spec["ids"]
user, session = f"user-{run}", f"session-{run}"
errors = []
client = Posthog(
    spec["key"],
    host=spec["host"],
    gzip=spec.get("gzip", False),
    on_error=lambda error, batch: errors.append(str(error)),
    max_retries=2,
    enable_local_evaluation=False,
)
if spec.get("mode") == "large":
    for n, event_id in enumerate(ids[:-1]):
        properties = {"$session_id": session, "n": n, "blob": "x" * 12_000}
        client.capture("bulk_loaded", distinct_id=user, properties=properties, uuid=event_id)
    client.flush()

    def parse(value):
        return int(value)

    def load(value):
        return parse(value)

    try:
        load(f"not a number {run}")
    except ValueError as error:
        client.capture_exception(error, distinct_id=user, properties={"$session_id": session}, uuid=ids[-1])
    client.flush()
    client.shutdown()
    if errors:
        sys.exit("posthog (Python) reported: " + "; ".join(errors))
    print("sent", len(ids))
    sys.exit(0)

client.capture(
    "signed_up",
    distinct_id=user,
    properties={"$session_id": session, "plan": "pro"},
    uuid=ids[0],
)
client.capture(
    "$pageview",
    distinct_id=user,
    properties={"$session_id": session, "$current_url": "https://app.example/home", "$referrer": "https://ref.example/"},
    uuid=ids[1],
)
client.capture("$identify", distinct_id=user, properties={"$set": {"email": "u@app.example"}}, uuid=ids[2])
client.capture("$create_alias", distinct_id=user, properties={"$session_id": session, "alias": f"alias-{run}"}, uuid=ids[3])
client.flush()
client.shutdown()
if errors:
    sys.exit("posthog (Python) reported: " + "; ".join(errors))
print("sent", len(ids))
