"""Drives the OpenTelemetry Python SDK, as its quickstart sets it up, against inlet's OTLP/HTTP
endpoints (POST /v1/traces, /v1/logs, /v1/metrics; protobuf, as opentelemetry-exporter-otlp-proto-http
sends it).

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT \
    OTEL_EXPORTER_OTLP_HEADERS=x-inlet-token=TOKEN \
    OTEL_SERVICE_NAME=checkout \
    PYTHONPATH=target/sdk/python python3 tests/sdk/otlp.py WHAT [N]

WHAT is `traces N` (N spans over several traces: nested parents and children, attributes of
every type, an event, a link, a status), `logs N` (N records through the stdlib logging handler,
every other one inside a span so it carries trace and span ids), `metrics` (a counter, a
histogram, an up-down counter and a gauge with known values) or `all N` (the three). The
exporters are configured only through the environment, as users do it: the endpoint, the
headers (`authorization=Bearer%20TOKEN` works too: the SDK URL-decodes header values),
OTEL_SERVICE_NAME, and any other OTEL_* variable (compression, timeout, ...).

Prints one JSON line per item the SDK exported, taken from the batches handed to the exporters:
  {"signal":"span","trace_id","span_id","parent_span_id","name","attributes"}
  {"signal":"log","body","severity_number","severity_text","trace_id","span_id","attributes"}
  {"signal":"point","metric","kind","attributes","value"} (histograms: count, sum, min, max)
and one per HTTP request an exporter made (each attempt, retries included), with the exact bytes
it POSTed, so a test can decode them and compare with what landed:
  {"signal":"request","path","content_type","content_encoding","status","at","body_b64"}
Exits 1 when an export failed (the batch processors and the metric reader swallow the exporters'
results, so each exporter's `export` is wrapped to check them) or when fewer items were
exported than made (a full queue drops silently).
"""

import base64
import json
import logging
import sys
import threading
import time
from urllib.parse import urlparse

import requests
from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

# The stdlib logger the log records are made through.
LOGGER = "inlet.sdk.otlp"

_lock = threading.Lock()
_items = []  # the lines for the items exported, in export order
_requests = []  # the lines for the HTTP requests made
_failures = []  # one message per export that did not succeed


def recording_session():
    """A requests session (the exporters' documented `session=` argument) whose response hook
    records every request the exporter made, with the bytes it sent, as they went out."""

    def record(response, *_args, **_kwargs):
        sent = response.request
        line = {
            "signal": "request",
            "path": urlparse(sent.url).path,
            "content_type": sent.headers.get("Content-Type"),
            "content_encoding": sent.headers.get("Content-Encoding"),
            "status": response.status_code,
            # When the answer arrived (Unix seconds): the gaps between retries show the backoff.
            "at": round(time.time(), 3),
            "body_b64": base64.b64encode(sent.body or b"").decode(),
        }
        with _lock:
            _requests.append(line)

    session = requests.Session()
    session.hooks["response"].append(record)
    return session


def checked(exporter, signal, lines):
    """Wraps `exporter.export` so each batch's result is checked and, when it succeeded, its
    items are recorded as `lines(batch)` gives them."""
    export = exporter.export

    def export_checked(batch, *args, **kwargs):
        result = export(batch, *args, **kwargs)
        with _lock:
            if result.name == "SUCCESS":
                _items.extend(lines(batch))
            else:
                _failures.append(f"{signal} export: {result.name}")
        return result

    exporter.export = export_checked
    return exporter


def hex_or_none(value, width):
    return format(value, f"0{width}x") if value else None


def plain(attributes):
    """An attribute mapping as JSON: tuples (the SDK's arrays) become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


def span_lines(spans):
    return [
        {
            "signal": "span",
            "trace_id": hex_or_none(s.context.trace_id, 32),
            "span_id": hex_or_none(s.context.span_id, 16),
            "parent_span_id": hex_or_none(s.parent.span_id, 16) if s.parent else None,
            "name": s.name,
            "attributes": plain(s.attributes),
        }
        for s in spans
    ]


def log_lines(batch):
    lines = []
    for readable in batch:
        r = readable.log_record
        attributes = plain(r.attributes)
        # The handler adds code.* attributes and, for logger.exception, exception.*: keep those
        # that do not vary with where the script lives.
        for key in [k for k in attributes if k.startswith("code.") or k == "exception.stacktrace"]:
            del attributes[key]
        lines.append(
            {
                "signal": "log",
                "body": r.body,
                "severity_number": r.severity_number.value if r.severity_number else None,
                "severity_text": r.severity_text,
                "trace_id": hex_or_none(r.trace_id, 32),
                "span_id": hex_or_none(r.span_id, 16),
                "attributes": attributes,
            }
        )
    return lines


def point_lines(metrics_data):
    lines = []
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = {Sum: "sum", Gauge: "gauge", Histogram: "histogram"}.get(type(metric.data), "other")
                for p in metric.data.data_points:
                    line = {"signal": "point", "metric": metric.name, "kind": kind, "attributes": plain(p.attributes)}
                    if kind == "histogram":
                        line.update(count=p.count, sum=p.sum, min=p.min, max=p.max)
                    else:
                        line["value"] = p.value
                    lines.append(line)
    return lines


def make_traces(tracer, n):
    """N spans over ceil(N / 4) traces; each root after the first links to the previous root."""
    made, previous_root, t = 0, None, 0
    while made < n:
        links = [Link(previous_root, {"link.reason": "previous order"})] if previous_root else []
        with tracer.start_as_current_span(
            "POST /checkout",
            kind=SpanKind.SERVER,
            links=links,
            attributes={
                "http.request.method": "POST",
                "order.id": 1000 + t,
                "order.total": 99.5 + t,
                "order.express": t % 2 == 0,
                "order.tags": ["gift", "priority"],
                "order.quantities": [1, 2, 3],
                "order.prices": [9.99, 19.5],
                "order.flags": [True, False],
            },
        ) as root:
            made += 1
            previous_root = root.get_span_context()
            root.add_event("cart loaded", {"cart.items": 3, "cart.currency": "EUR"})
            if made < n:
                with tracer.start_as_current_span("load cart", attributes={"cart.id": f"cart-{t}"}):
                    made += 1
                    if made < n:
                        with tracer.start_as_current_span(
                            "SELECT carts", kind=SpanKind.CLIENT, attributes={"db.system.name": "postgresql"}
                        ):
                            made += 1
            if made < n:
                with tracer.start_as_current_span("charge card", kind=SpanKind.PRODUCER) as charge:
                    made += 1
                    charge.set_status(Status(StatusCode.ERROR, "card declined"))
            root.set_status(Status(StatusCode.OK))
        t += 1


def make_logs(n):
    """N records through the stdlib `logging` handler; every other one inside a span (of a
    provider that exports nothing, so `all N` still exports exactly N spans)."""
    log = logging.getLogger(LOGGER)
    context_tracer = TracerProvider().get_tracer("inlet.sdk.otlp.logs")
    levels = [logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    for i in range(n):
        level = levels[i % len(levels)]
        extra = {"order.id": 2000 + i, "order.express": i % 2 == 0, "order.total": 10.25 * i}
        if i % 2:
            with context_tracer.start_as_current_span(f"log context {i}"):
                log.log(level, "order %d step %s", i, "paid", extra=extra)
        elif i == 4:
            try:
                raise ValueError(f"order {i} failed")
            except ValueError:
                log.exception("order %d failed", i, extra=extra)
        else:
            log.log(level, "order %d step %s", i, "placed", extra=extra)


def make_metrics(meter):
    requests_total = meter.create_counter("inlet.test.requests", unit="{request}", description="requests")
    latency = meter.create_histogram("inlet.test.latency", unit="ms", description="latency")
    queue = meter.create_up_down_counter("inlet.test.queue", unit="{job}", description="queued jobs")
    temperature = meter.create_gauge("inlet.test.temperature", unit="Cel", description="temperature")
    for value in [1, 2, 3]:
        requests_total.add(value, {"route": "/a", "ok": True})
    requests_total.add(7, {"route": "/b", "ok": False})
    for value in [5, 15, 250]:
        latency.record(value, {"route": "/a"})
    latency.record(0.5, {"route": "/b"})
    queue.add(5, {"queue": "email"})
    queue.add(-2, {"queue": "email"})
    temperature.set(21.5, {"room": "lab"})


def main(argv):
    what = argv[1] if len(argv) > 1 else ""
    if what not in ("traces", "logs", "metrics", "all") or (what != "metrics" and len(argv) < 3):
        print("usage: otlp.py traces N | logs N | metrics | all N", file=sys.stderr)
        sys.exit(2)
    n = int(argv[2]) if what != "metrics" else 0
    shutdowns, expected = [], {}

    if what in ("traces", "all"):
        # The quickstart: TracerProvider + BatchSpanProcessor(OTLPSpanExporter()).
        tracer_provider = TracerProvider()
        exporter = checked(OTLPSpanExporter(session=recording_session()), "span", span_lines)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        shutdowns.append(tracer_provider)
        expected["span"] = n

    if what in ("logs", "all"):
        # The SDK's logs example: LoggerProvider + BatchLogRecordProcessor(OTLPLogExporter()),
        # fed by its handler. The handler is on the script's logger rather than the root, so the
        # SDK's own warnings (a failed export) go to stderr and are not exported as records.
        # (The handler warns that it moves to opentelemetry-instrumentation-logging; it still
        # ships with the SDK.)
        logger_provider = LoggerProvider()
        set_logger_provider(logger_provider)
        exporter = checked(OTLPLogExporter(session=recording_session()), "log", log_lines)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        log = logging.getLogger(LOGGER)
        log.addHandler(LoggingHandler(level=logging.NOTSET, logger_provider=logger_provider))
        log.setLevel(logging.INFO)
        shutdowns.append(logger_provider)
        expected["log"] = n

    if what in ("metrics", "all"):
        # MeterProvider + PeriodicExportingMetricReader(OTLPMetricExporter()); at the default
        # interval (OTEL_METRIC_EXPORT_INTERVAL, 60 s) the one export is the last collection,
        # made at shutdown.
        exporter = checked(OTLPMetricExporter(session=recording_session()), "metrics", point_lines)
        meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
        metrics.set_meter_provider(meter_provider)
        shutdowns.append(meter_provider)

    if "span" in expected:
        make_traces(trace.get_tracer("inlet.sdk.otlp", "1.0.0"), n)
    if "log" in expected:
        make_logs(n)
    if what in ("metrics", "all"):
        make_metrics(metrics.get_meter("inlet.sdk.otlp", "1.0.0"))

    # Shutting a provider down flushes its processor or reader: everything is exported by then.
    for provider in shutdowns:
        provider.shutdown()

    for line in _items + _requests:
        print(json.dumps(line, sort_keys=True))
    for signal, count in expected.items():
        exported = sum(1 for line in _items if line["signal"] == signal)
        if exported != count:
            _failures.append(f"{signal}: {exported} exported of {count} made")
    if what in ("metrics", "all") and not any(line["signal"] == "point" for line in _items):
        _failures.append("metrics: no data point exported")
    if _failures:
        print("otlp.py: " + "; ".join(_failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv)
