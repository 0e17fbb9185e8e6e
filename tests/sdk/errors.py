"""Drives one Python error tracker SDK, unmodified but for its endpoint, against inlet.

    PYTHONPATH=target/sdk/python python3 tests/sdk/errors.py SDK BASE_URL KEY RUN

SDK is sentry, sentry-quickstart (tracing and sessions on), rollbar, honeybadger or
honeybadger-insights (Insights events, then a check-in);
BASE_URL is inlet's public listener (http://127.0.0.1:PORT); KEY a token of its registry; RUN
a marker put into every report so the test finds its own. Reports a real exception raised
three calls deep, then messages at several levels, flushes, and prints one JSON line per
report: what was sent (kind, level, message or exception class) and the event id the SDK
chose for it, which inlet must keep.

With `burst N` after RUN, instead sends N exceptions 25 ms apart (for the rate limit test)
and prints nothing: the test counts the requests that reached inlet.
"""

import json
import sys
import time
from urllib.parse import urlparse


def deep_failure(run):
    def parse(value):
        return int(value)

    def load(value):
        return parse(value)

    return load(f"not a number {run}")


def sentry(base, key, run, burst):
    import sentry_sdk

    host = urlparse(base).netloc
    sentry_sdk.init(
        dsn=f"http://{key}@{host}/42",
        environment="staging",
        release="shop@1.4.2",
        default_integrations=False,
        # Sessions, client reports: the other item types an envelope carries, counted by inlet.
        send_client_reports=True,
    )
    reports = []
    for _ in range(burst or 1):
        try:
            deep_failure(run)
        except ValueError:
            event_id = sentry_sdk.capture_exception()
            reports.append(("exception", "error", "ValueError", event_id))
        if burst:
            time.sleep(0.025)
    if not burst:
        for level in ["warning", "info", "fatal"]:
            message = f"{level} message {run}"
            event_id = sentry_sdk.capture_message(message, level=level)
            reports.append(("message", level, message, event_id))
    sentry_sdk.flush(timeout=20)
    return reports


def sentry_quickstart(base, key, run, burst):
    """sentry-sdk as its quickstart sets it up: tracing on (`traces_sample_rate=1.0`), the
    default integrations, a release (so release-health sessions are sent). One session, one
    transaction with a span, an exception captured inside it: the exception must land as an
    occurrence, the transaction and the session as items."""
    import sentry_sdk

    host = urlparse(base).netloc
    sentry_sdk.init(
        dsn=f"http://{key}@{host}/42",
        environment="staging",
        release="shop@1.4.2",
        traces_sample_rate=1.0,
    )
    reports = []
    sentry_sdk.start_session(session_mode="application")
    name = f"checkout {run}"
    transaction = sentry_sdk.start_transaction(op="task", name=name)
    with transaction:
        with sentry_sdk.start_span(op="db", name="select"):
            pass
        try:
            deep_failure(run)
        except ValueError:
            event_id = sentry_sdk.capture_exception()
            reports.append(("exception", "error", "ValueError", event_id))
    # The transaction's event id is the envelope's; finishing it again returns None.
    reports.append(("transaction", "", name, transaction.trace_id))
    sentry_sdk.end_session()
    sentry_sdk.flush(timeout=20)
    return reports


def rollbar(base, key, run, burst):
    import rollbar

    rollbar.init(
        key,
        environment="staging",
        endpoint=f"{base}/api/1/",
        handler="blocking",
        code_version="1.4.2",
    )
    reports = []
    for _ in range(burst or 1):
        try:
            deep_failure(run)
        except ValueError:
            uuid = rollbar.report_exc_info(sys.exc_info())
            reports.append(("exception", "error", "ValueError", uuid))
    if not burst:
        for level in ["warning", "info", "critical"]:
            message = f"{level} message {run}"
            uuid = rollbar.report_message(message, level=level)
            reports.append(("message", level, message, uuid))
    rollbar.wait()
    return reports


def honeybadger(base, key, run, burst):
    from honeybadger import honeybadger

    honeybadger.configure(
        api_key=key,
        endpoint=base,
        environment="staging",
        force_sync=True,
    )
    reports = []
    try:
        deep_failure(run)
    except ValueError as error:
        notice_id = honeybadger.notify(error, fingerprint=f"fp-{run}")
        reports.append(("exception", "error", "ValueError", notice_id))
    message = f"notified {run}"
    notice_id = honeybadger.notify(error_class="Notified", error_message=message)
    reports.append(("exception", "error", "Notified", notice_id))
    return reports


def honeybadger_insights(base, key, run, burst):
    """honeybadger.event() as its docs show it: events batched by the SDK's own worker and
    sent as NDJSON when the process exits (or every `events_timeout`). Then a check-in, as a
    cron job pings one (honeybadger-python 1.3 has no check-in call: the documented request is
    a GET of the check-in's URL)."""
    import urllib.request

    from honeybadger import honeybadger

    honeybadger.configure(api_key=key, endpoint=base, environment="staging")
    reports = []
    for n in range(3):
        event_type = f"order.completed.{run}"
        honeybadger.event(event_type, {"order_id": f"{run}-{n}", "total": 49.99})
        reports.append(("event", "", event_type, f"{run}-{n}"))
    slug = f"nightly-{run}"
    with urllib.request.urlopen(f"{base}/v1/check_in/{key}/{slug}") as answer:
        assert answer.status == 200, answer.status
    reports.append(("check_in", "", slug, ""))
    # The events go when the process exits (the SDK's atexit flush).
    return reports


def main():
    sdk, base, key, run = sys.argv[1:5]
    burst = int(sys.argv[6]) if sys.argv[5:6] == ["burst"] else 0
    reports = {
        "sentry": sentry,
        "sentry-quickstart": sentry_quickstart,
        "rollbar": rollbar,
        "honeybadger": honeybadger,
        "honeybadger-insights": honeybadger_insights,
    }[sdk](
        base, key, run, burst
    )
    if burst:
        return
    for kind, level, what, event_id in reports:
        print(json.dumps({"kind": kind, "level": level, "what": what, "id": event_id}))


if __name__ == "__main__":
    main()
