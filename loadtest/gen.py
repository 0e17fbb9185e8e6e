#!/usr/bin/env python3
"""Payload generator shared by the wrk scripts, the k6 scripts, oha and loadtest/bench.

Writes line-per-request body files: every line is one request body, as `oha -Z FILE` takes
them (oha sends the lines in turn). Python 3 standard library only; deterministic for a seed.

    loadtest/gen.py                      # all kinds, 1000 bodies each, into loadtest/data/
    loadtest/gen.py --count 200 --kinds beacon-800,batch-50 --out /tmp/bodies

Files (in --out):

  beacon-800.ndjson      one beacon object per line, exactly 800 bytes, session_id drawn from
                         --sessions sessions (POST /v1/beacons, application/json)
  batch-50.ndjson        a JSON array of 50 such beacons per line, all of one session (what an
                         SDK flushes), ~40 KB
                         (POST /v1/beacons, application/json)
  occurrence-2k5.ndjson  one error occurrence per line, exactly 2500 bytes, with a stack trace
                         (POST /v1/occurrences, application/json)
  chunk-100k.ndjson      one occurrence carrying a session-replay chunk, exactly 102400 bytes
                         (POST /v1/occurrences, application/json)
  batch-50-gzip.b64      per line: base64 of gzip(NDJSON of 50 beacons of one session), ~17 KB of gzip (of ~40 KB);
                         send the decoded bytes with Content-Type: application/x-ndjson and
                         Content-Encoding: gzip. Lines cannot carry raw gzip (it contains
                         newlines), so wrk and k6 decode the base64 themselves.
  batch-50-gzip/NNNNN.gz the same bodies as separate binary files, for tools that send a file
                         (oha -D, curl --data-binary @FILE)
  beacons-100-300b.ndjson
                         a JSON array of 100 beacons of one session per line, each beacon exactly
                         300 bytes (fewer fields than beacon-800's), ~30 KB: the native twin of
                         otlp-100's spans (POST /v1/beacons, application/json)
  beacons-100-300b-10s.ndjson
                         the same, ten sessions of ten beacons in each array: ten Kafka keys a
                         request, as otlp-100's ten traces are
  otlp-100.frames        OTLP trace exports as the SDKs' OTLP/HTTP exporters send them: each an
                         ExportTraceServiceRequest of one resource (service.name and four more
                         attributes), one scope, and 100 spans, 10 traces of 10 (a SERVER root and
                         nine children under it: parent ids, name, kind, flags, start and end
                         times, five string and int attributes), every span exactly 300 bytes
                         encoded (the Span message), every trace id new; ~31 KB a body. Protobuf
                         has newlines in it, so each body is framed: its length in ASCII digits, a
                         newline, then its bytes (common.lua's `framed`)
                         (POST /v1/traces, application/x-protobuf)
  otlp-json-100.ndjson   the same requests (the same spans, in the same order) in OTLP/JSON: hex
                         trace and span ids, 64-bit integers as strings, kinds as numbers, one a
                         line (POST /v1/traces, application/json)

Sizes are of the JSON text as sent (UTF-8 bytes, no trailing newline). Occurrence and chunk
bodies name no session (occurrences are keyed by the token's account). The OTLP bodies come from
a generator of their own (seeded by --seed), so otlp-100 and otlp-json-100 hold the same spans
whichever kinds are asked for; the protobuf is encoded here (standard library only); --check-otlp
decodes it with the official messages and compares the JSON twin (see `otlp_check`).
"""

import argparse
import base64
import gzip
import json
import os
import random
import sys
import uuid

KINDS = ["beacon-800", "batch-50", "occurrence-2k5", "chunk-100k", "batch-50-gzip", "beacons-100-300b",
         "beacons-100-300b-10s",
         "otlp-100", "otlp-json-100"]

EVENTS = ["page_view", "click", "scroll", "page_hide", "form_submit", "video_play", "search"]
PATHS = ["/", "/pricing", "/docs/getting-started", "/blog/2024/launch", "/signup", "/app/dashboard"]
REFERRERS = ["https://search.example/", "https://social.example/feed", "", "https://news.example/"]
TITLES = ["Acme - Home", "Pricing - Acme", "Getting started - Acme Docs", "Launch week - Acme Blog"]
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pad_to(obj, field_path, size, filler):
    """Sets the string at field_path (a list of keys) so that dumps(obj) is `size` bytes, with
    filler(n) giving n ASCII characters."""
    target = obj
    for key in field_path[:-1]:
        target = target[key]
    target[field_path[-1]] = ""
    missing = size - len(dumps(obj).encode())
    if missing < 0:
        raise ValueError(f"{field_path}: body is {-missing} bytes over {size} before padding")
    target[field_path[-1]] = filler(missing)
    assert len(dumps(obj).encode()) == size, "padding is ASCII: one byte per character"
    return obj


class Gen:
    def __init__(self, seed, sessions):
        self.rng = random.Random(seed)
        self.sessions = sessions
        self.seq = 0
        self.ts = 1_735_689_600_000  # 2025-01-01T00:00:00Z

    def word(self, n):
        return "".join(self.rng.choice(ALPHABET) for _ in range(n))

    def text(self, n):
        """n characters of lowercase words and spaces: compresses like real text (no run of one
        character that lz4 or gzip would make nearly free)."""
        out = []
        while sum(map(len, out)) < n:
            out.append("".join(self.rng.choice(ALPHABET[:26]) for _ in range(self.rng.randint(2, 9))) + " ")
        return "".join(out)[:n]

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def beacon(self, size=800, session=None):
        self.seq += 1
        self.ts += self.rng.randint(1, 50)
        if session is None:
            session = self.rng.randrange(self.sessions)
        path = self.rng.choice(PATHS)
        b = {
            "session_id": f"sess-{session:08d}",
            "event": self.rng.choice(EVENTS),
            "ts": self.ts,
            "id": self.uuid(),
            "url": f"https://www.acme.example{path}?utm_source=loadtest&ref={self.word(8)}",
            "referrer": self.rng.choice(REFERRERS),
            "title": self.rng.choice(TITLES),
            "user_id": f"user-{session % 50_000:06d}",
            "props": {
                "seq": self.seq,
                "plan": self.rng.choice(["free", "pro", "team", "enterprise"]),
                "viewport": self.rng.choice(["1920x1080", "1440x900", "390x844", "1280x720"]),
                "locale": self.rng.choice(["en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR"]),
                "experiment": {"id": "exp-" + self.word(4), "variant": self.rng.choice("AB")},
                "pad": "",
            },
        }
        return pad_to(b, ["props", "pad"], size, self.text)

    def small_beacon(self, size=300, session=None):
        """A beacon of `size` bytes (300 at the least): beacon-800's fields less referrer,
        title and the nested props, so that what is left is mostly fields, not padding."""
        self.seq += 1
        self.ts += self.rng.randint(1, 50)
        if session is None:
            session = self.rng.randrange(self.sessions)
        b = {
            "session_id": f"sess-{session:08d}",
            "event": self.rng.choice(EVENTS),
            "ts": self.ts,
            "id": self.uuid(),
            "url": f"https://www.acme.example{self.rng.choice(PATHS)}",
            "user_id": f"user-{session % 50_000:06d}",
            "props": {"seq": self.seq, "plan": self.rng.choice(["free", "pro", "team", "enterprise"]), "pad": ""},
        }
        return pad_to(b, ["props", "pad"], size, self.text)

    def batch(self, n=50):
        """What a browser SDK flushes: n beacons of one session."""
        session = self.rng.randrange(self.sessions)
        return [self.beacon(session=session) for _ in range(n)]

    def occurrence(self, size=2500):
        self.ts += self.rng.randint(1, 50)
        frames = [
            {
                "filename": f"https://cdn.acme.example/assets/{self.rng.choice(['app', 'vendor', 'chunk'])}-"
                f"{self.word(8)}.js",
                "lineno": self.rng.randint(1, 20000),
                "colno": self.rng.randint(1, 200),
                "method": self.rng.choice(["render", "dispatch", "onClick", "fetchJson", "reduce", "t"]),
            }
            for _ in range(12)
        ]
        o = {
            "level": self.rng.choice(["error", "error", "error", "warning", "critical"]),
            "message": "Uncaught TypeError: Cannot read properties of undefined (reading 'id')",
            "exception": {
                "class": "TypeError",
                "message": "Cannot read properties of undefined (reading 'id')",
                "frames": frames,
            },
            "uuid": self.uuid(),
            "timestamp": self.ts,
            "environment": "production",
            "platform": "browser",
            "language": "javascript",
            "code_version": self.word(12),
            "fingerprint": "fp-" + self.word(16),
            "custom": {"route": self.rng.choice(PATHS), "build": self.word(6), "pad": ""},
        }
        return pad_to(o, ["custom", "pad"], size, self.text)

    def chunk(self, size=102_400):
        """A session-replay chunk sent as an occurrence: the payload is base64-like text."""
        self.ts += self.rng.randint(1, 50)
        session = self.rng.randrange(self.sessions)
        o = {
            "level": "info",
            "message": "",
            "uuid": self.uuid(),
            "timestamp": self.ts,
            "environment": "production",
            "platform": "browser",
            "language": "javascript",
            "fingerprint": "session-chunk",
            "custom": {
                "kind": "session_chunk",
                "session_id": f"sess-{session:08d}",
                "chunk_index": self.rng.randint(0, 500),
                "encoding": "base64",
            },
        }
        # Random base64 text (incompressible, like a compressed replay chunk), then exact padding.
        raw = self.rng.getrandbits(8 * (size * 3 // 4 - 1200)).to_bytes(size * 3 // 4 - 1200, "big")
        o["message"] = base64.b64encode(raw).decode()
        over = len(dumps(o).encode()) - size
        if over > 0:
            o["message"] = o["message"][: len(o["message"]) - over]
        return pad_to(o, ["custom", "pad"], size, self.text)


# ---------------------------------------------------------------------------- OTLP traces

SERVICES = ["checkout", "cart", "catalog", "payments", "accounts"]
ROUTES = ["/api/orders/{id}", "/api/cart", "/api/products", "/api/payments", "/api/users/{id}"]
# (name, kind, attributes) of a root's children: kind 3 CLIENT, 1 INTERNAL, 4 PRODUCER.
CHILDREN = [
    ("SELECT shop.orders", 3, "db"),
    ("redis GET", 3, "cache"),
    ("GET inventory", 3, "http"),
    ("render order", 1, "internal"),
    ("orders.created publish", 4, "messaging"),
]


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number, wire):
    return _varint(number << 3 | wire)


def _len(number, payload):
    return _key(number, 2) + _varint(len(payload)) + payload


def _str(number, text):
    return _len(number, text.encode())


def _fixed64(number, n):
    return _key(number, 1) + n.to_bytes(8, "little")


def _fixed32(number, n):
    return _key(number, 5) + n.to_bytes(4, "little")


def _any_value(v):
    """AnyValue: string_value = 1, int_value = 3 (int64, as a varint)."""
    if isinstance(v, int):
        return _key(3, 0) + _varint(v & 0xFFFFFFFFFFFFFFFF)
    return _str(1, v)


def _key_values(number, attributes):
    return b"".join(_len(number, _str(1, k) + _len(2, _any_value(v))) for k, v in attributes)


def span_pb(s):
    """A Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8,
    attributes 9, flags 16, in field order as the SDKs write them."""
    out = _len(1, s["trace_id"]) + _len(2, s["span_id"])
    if s["parent_span_id"]:
        out += _len(4, s["parent_span_id"])
    out += _str(5, s["name"]) + _key(6, 0) + _varint(s["kind"])
    out += _fixed64(7, s["start"]) + _fixed64(8, s["end"]) + _key_values(9, s["attributes"])
    return out + _fixed32(16, s["flags"])


def request_pb(r):
    """ExportTraceServiceRequest: resource_spans 1 > (resource 1 > attributes 1), scope_spans 2
    > (scope 1 > name 1, version 2; spans 2), schema_url 3."""
    resource = _key_values(1, r["resource"])
    scope = _str(1, r["scope"][0]) + _str(2, r["scope"][1])
    scope_spans = _len(1, scope) + b"".join(_len(2, span_pb(s)) for s in r["spans"])
    resource_spans = _len(1, resource) + _len(2, scope_spans) + _str(3, r["schema_url"])
    return _len(1, resource_spans)


def _kv_json(attributes):
    return [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in attributes]


def request_json(r):
    """The same request in OTLP/JSON, as the OTLP/HTTP JSON exporters write it."""
    spans = []
    for s in r["spans"]:
        j = {"traceId": s["trace_id"].hex(), "spanId": s["span_id"].hex()}
        if s["parent_span_id"]:
            j["parentSpanId"] = s["parent_span_id"].hex()
        j.update(flags=s["flags"], name=s["name"], kind=s["kind"], startTimeUnixNano=str(s["start"]),
                 endTimeUnixNano=str(s["end"]), attributes=_kv_json(s["attributes"]))
        spans.append(j)
    return {"resourceSpans": [{
        "resource": {"attributes": _kv_json(r["resource"])},
        "scopeSpans": [{"scope": {"name": r["scope"][0], "version": r["scope"][1]}, "spans": spans}],
        "schemaUrl": r["schema_url"],
    }]}


class TraceGen:
    """OTLP trace export requests: `traces` traces of `per_trace` spans each, every span
    `span_bytes` bytes encoded (its last attribute padded), every trace and span id new."""

    def __init__(self, seed, traces=10, per_trace=10, span_bytes=300):
        self.rng = random.Random(seed * 1_000_003 + 7)
        self.traces, self.per_trace, self.span_bytes = traces, per_trace, span_bytes
        self.ns = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z
        self.g = Gen(seed + 1, 1)

    def id(self, n):
        return self.rng.getrandbits(8 * n).to_bytes(n, "big")

    def attributes(self, kind, i):
        r = self.rng
        if kind == "server":
            route = r.choice(ROUTES)
            return [("http.request.method", r.choice(["GET", "GET", "POST", "PUT"])), ("http.route", route),
                    ("http.response.status_code", r.choice([200, 200, 200, 201, 404, 500])),
                    ("server.address", "shop.acme.example"), ("url.path", "")]
        if kind == "db":
            return [("db.system", "postgresql"), ("db.namespace", "shop"), ("db.operation.name", "SELECT"),
                    ("db.response.returned_rows", r.randint(0, 40)), ("db.query.text", "")]
        if kind == "cache":
            return [("db.system", "redis"), ("server.address", "cache.internal"), ("server.port", 6379),
                    ("db.operation.name", "GET"), ("db.query.text", "")]
        if kind == "http":
            return [("http.request.method", "GET"), ("server.address", "inventory.internal"),
                    ("server.port", 8080), ("http.response.status_code", 200), ("url.full", "")]
        if kind == "messaging":
            return [("messaging.system", "kafka"), ("messaging.destination.name", "orders.created"),
                    ("messaging.operation.type", "publish"), ("messaging.message.body.size", r.randint(200, 4000)),
                    ("messaging.message.id", "")]
        return [("code.function.name", "render_order"), ("code.file.path", "shop/views/orders.py"),
                ("code.line.number", r.randint(10, 900)), ("thread.id", r.randint(1, 64)), ("app.detail", "")]

    def pad(self, s):
        """Fills the last attribute so the Span is exactly span_bytes bytes."""
        k, _ = s["attributes"][-1]
        s["attributes"][-1] = (k, "")
        missing = self.span_bytes - len(span_pb(s))
        if missing < 0:
            raise ValueError(f"span {s['name']!r} is {-missing} bytes over {self.span_bytes} before padding")
        # A string of up to 127 bytes has a one-byte length, as the empty one has.
        text = self.g.text(missing) if missing <= 127 else self.g.text(missing - 1)
        s["attributes"][-1] = (k, text)
        assert len(span_pb(s)) == self.span_bytes, (len(span_pb(s)), self.span_bytes)
        return s

    def request(self):
        r = self.rng
        service = r.choice(SERVICES)
        spans = []
        for _ in range(self.traces):
            trace = self.id(16)
            root_id = self.id(8)
            self.ns += r.randint(1_000_000, 50_000_000)
            start = self.ns
            route = r.choice(ROUTES)
            root = {"trace_id": trace, "span_id": root_id, "parent_span_id": b"", "flags": 0x301,
                    "name": f"GET {route}", "kind": 2, "start": start,
                    "end": start + r.randint(5_000_000, 200_000_000), "attributes": self.attributes("server", 0)}
            trace_spans = [self.pad(root)]
            for i in range(1, self.per_trace):
                name, kind, attrs = CHILDREN[(i - 1) % len(CHILDREN)]
                t0 = start + r.randint(100_000, 4_000_000)
                trace_spans.append(self.pad({
                    "trace_id": trace, "span_id": self.id(8), "parent_span_id": root_id, "flags": 0x301,
                    "name": name, "kind": kind, "start": t0, "end": t0 + r.randint(50_000, 3_000_000),
                    "attributes": self.attributes(attrs, i)}))
            # An exporter sends spans as they end: children before their root.
            spans += trace_spans[1:] + trace_spans[:1]
        return {
            "resource": [("service.name", service), ("service.version", "2.4.1"),
                         ("service.instance.id", self.g.uuid()), ("deployment.environment.name", "production"),
                         ("telemetry.sdk.language", "python")],
            "scope": ("opentelemetry.instrumentation.flask", "0.48b0"),
            "schema_url": "https://opentelemetry.io/schemas/1.26.0",
            "spans": spans,
        }


def write_frames(path, bodies):
    """Bodies that may hold newlines: each as its length in ASCII digits, a newline, its bytes."""
    with open(path, "wb") as f:
        for body in bodies:
            f.write(b"%d\n" % len(body))
            f.write(body)


def otlp_check(frames_path, json_path=None):
    """Decodes otlp-100's bodies with the official messages (opentelemetry-proto's Python
    package, e.g. PYTHONPATH=target/sdk/python) and checks the JSON twin holds the same spans:
    spans per body, bytes per span."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    with open(frames_path, "rb") as f:
        data = f.read()
    jsons = open(json_path, encoding="utf-8").read().splitlines() if json_path else []
    at, n, spans, sizes = 0, 0, 0, set()
    while at < len(data):
        nl = data.index(b"\n", at)
        size = int(data[at:nl])
        body = data[nl + 1: nl + 1 + size]
        at = nl + 1 + size
        req = ExportTraceServiceRequest.FromString(body)
        these = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
        spans += len(these)
        sizes.update(s.ByteSize() for s in these)
        if n < len(jsons):
            # OTLP/JSON's ids are hex where proto3's JSON mapping has base64.
            j = json.loads(jsons[n])
            for rs in j["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        for k in ("traceId", "spanId", "parentSpanId"):
                            if k in sp:
                                sp[k] = base64.b64encode(bytes.fromhex(sp[k])).decode()
            twin = json_format.ParseDict(j, ExportTraceServiceRequest())
            assert twin == req, f"body {n}: the JSON twin differs"
        n += 1
    return {"bodies": n, "spans": spans, "span_bytes": sorted(sizes), "json_checked": min(n, len(jsons))}


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            assert "\n" not in line
            f.write(line)
            f.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    p.add_argument("--count", type=int, default=1000, help="bodies per kind (default 1000)")
    p.add_argument("--chunk-count", type=int, default=None,
                   help="bodies for chunk-100k (default: min(count, 100), 10 MB)")
    p.add_argument("--sessions", type=int, default=100_000, help="distinct session ids (default 100000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of: " + ", ".join(KINDS))
    p.add_argument("--check-otlp", action="store_true",
                   help="after writing, decode otlp-100.frames (and otlp-json-100.ndjson) with the official "
                        "messages (needs opentelemetry-proto, e.g. PYTHONPATH=target/sdk/python)")
    args = p.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            p.error(f"unknown kind {k!r}; known: {', '.join(KINDS)}")
    os.makedirs(args.out, exist_ok=True)
    g = Gen(args.seed, args.sessions)
    n = args.count
    for kind in kinds:
        if kind == "beacon-800":
            write_lines(os.path.join(args.out, "beacon-800.ndjson"), (dumps(g.beacon()) for _ in range(n)))
        elif kind == "batch-50":
            write_lines(os.path.join(args.out, "batch-50.ndjson"),
                        (dumps(g.batch()) for _ in range(n)))
        elif kind == "occurrence-2k5":
            write_lines(os.path.join(args.out, "occurrence-2k5.ndjson"), (dumps(g.occurrence()) for _ in range(n)))
        elif kind == "chunk-100k":
            m = args.chunk_count if args.chunk_count is not None else min(n, 100)
            write_lines(os.path.join(args.out, "chunk-100k.ndjson"), (dumps(g.chunk()) for _ in range(m)))
        elif kind == "batch-50-gzip":
            gzdir = os.path.join(args.out, "batch-50-gzip")
            os.makedirs(gzdir, exist_ok=True)
            lines = []
            for i in range(n):
                ndjson = "".join(dumps(b) + "\n" for b in g.batch()).encode()
                body = gzip.compress(ndjson, compresslevel=6, mtime=0)
                with open(os.path.join(gzdir, f"{i:05d}.gz"), "wb") as f:
                    f.write(body)
                lines.append(base64.b64encode(body).decode())
            write_lines(os.path.join(args.out, "batch-50-gzip.b64"), lines)
        elif kind == "beacons-100-300b":
            write_lines(os.path.join(args.out, "beacons-100-300b.ndjson"),
                        (dumps([g.small_beacon(session=session) for _ in range(100)])
                         for session in (g.rng.randrange(args.sessions) for _ in range(n))))
        elif kind == "beacons-100-300b-10s":
            # Ten sessions of ten beacons: ten keys a request, as otlp-100's ten traces are.
            write_lines(os.path.join(args.out, "beacons-100-300b-10s.ndjson"),
                        (dumps([g.small_beacon(session=session) for session in sessions for _ in range(10)])
                         for sessions in ([g.rng.randrange(args.sessions) for _ in range(10)] for _ in range(n))))
        elif kind == "otlp-100":
            t = TraceGen(args.seed)
            write_frames(os.path.join(args.out, "otlp-100.frames"), (request_pb(t.request()) for _ in range(n)))
        elif kind == "otlp-json-100":
            t = TraceGen(args.seed)
            write_lines(os.path.join(args.out, "otlp-json-100.ndjson"),
                        (dumps(request_json(t.request())) for _ in range(n)))
        print(f"gen.py: {kind} -> {args.out}", file=sys.stderr)
    if args.check_otlp:
        json_path = os.path.join(args.out, "otlp-json-100.ndjson")
        print("gen.py: check: " + json.dumps(otlp_check(os.path.join(args.out, "otlp-100.frames"),
                                                       json_path if os.path.exists(json_path) else None)),
              file=sys.stderr)


if __name__ == "__main__":
    main()
