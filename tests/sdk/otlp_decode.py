"""Decodes Kafka record values as the OpenTelemetry Collector's kafka receiver does with
`encoding: otlp_proto`, with an independent implementation of the official messages: the
`opentelemetry-proto` package (Google's protobuf runtime) that the Python SDK itself encodes with.

    PYTHONPATH=target/sdk/python python3 tests/sdk/otlp_decode.py SIGNAL FILE...

SIGNAL is `traces`, `logs` or `metrics`; each FILE holds one record's value. Prints one JSON line
per file: the items it holds (spans with their trace and span ids in hex, log records' bodies,
metrics' names with their data points). Exits 1 on a value that does not decode.
"""

import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MESSAGES = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


def items(signal, request):
    if signal == "traces":
        return [
            {"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "name": s.name}
            for r in request.resource_spans for sc in r.scope_spans for s in sc.spans
        ]
    if signal == "logs":
        return [
            {"body": MessageToDict(l.body)}
            for r in request.resource_logs for sc in r.scope_logs for l in sc.log_records
        ]
    out = []
    for r in request.resource_metrics:
        for sc in r.scope_metrics:
            for m in sc.metrics:
                data = getattr(m, m.WhichOneof("data")) if m.WhichOneof("data") else None
                out.append({"name": m.name, "points": len(data.data_points) if data else 0})
    return out


def main(argv):
    signal, files = argv[1], argv[2:]
    for path in files:
        with open(path, "rb") as f:
            value = f.read()
        request = MESSAGES[signal]()
        request.ParseFromString(value)
        # A record is never empty: it holds at least one item under its resource.
        if request.ByteSize() == 0 and value:
            print(f"{path}: decoded to nothing", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"file": path, "items": items(signal, request)}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
