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

Sizes are of the JSON text as sent (UTF-8 bytes, no trailing newline). Occurrence and chunk
bodies name no session (occurrences are keyed by the token's account).
"""

import argparse
import base64
import gzip
import json
import os
import random
import sys
import uuid

KINDS = ["beacon-800", "batch-50", "occurrence-2k5", "chunk-100k", "batch-50-gzip"]

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
        print(f"gen.py: {kind} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
