//! Hostile and broken clients against the inlet binary: a corpus of bad input, each case with
//! the status and error code it must get; slow clients; then proof that inlet still serves,
//! stayed within a memory bound, and produced nothing for any of it. Plus token security:
//! brute-force limiting, trusted proxies, address truncation, and secrets kept out of logs,
//! metrics and answers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::answer::{Answer, Expected};
use common::assert_no_failures;
use common::encode::gzip;
use common::gateway::{event_ids, ACCOUNT, OTEL, RECORDER, SDK, WEB};
use common::process::{kafka_and_process, InletProcess};
use common::raw;
use common::request::Request;
use inlet::proto::envelope::Event;
use serde_json::json;

/// The most resident memory inlet may reach while it answers the whole corpus.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// How far the request of 1.4 M events may raise inlet's resident memory: its 4 MiB decoded
/// body a few times over (4 MiB measured). Collecting the 1.4 million events before counting
/// them (22 MB of slices, in a vector that doubles as it grows) raised it by 25 MiB.
const TINY_EVENTS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// inlet's settings under the corpus: short header and body timeouts, so slow clients are cut
/// off within the test, and room for the corpus's many requests before brute-force limiting.
const CORPUS_SETTINGS: &[(&str, &str)] = &[
    ("INLET_HEADER_READ_TIMEOUT_MS", "2000"),
    ("INLET_BODY_TIMEOUT_MS", "1500"),
    ("INLET_AUTH_FAILURES_PER_MINUTE", "1000"),
];

/// inlet's settings for the token security test: the test client is a trusted proxy, ten
/// failed attempts a minute per address, and debug logs (which must hold no secret either).
const SECURITY_SETTINGS: &[(&str, &str)] = &[
    ("INLET_TRUSTED_PROXIES", "127.0.0.1/32"),
    ("INLET_AUTH_FAILURES_PER_MINUTE", "10"),
    ("INLET_LOG", "debug"),
];

/// inlet's settings for the caps test: four connections, one request at a time, and idle
/// connections closed after 1.5 s.
const CAPS_SETTINGS: &[(&str, &str)] = &[
    ("INLET_MAX_CONNECTIONS", "4"),
    ("INLET_MAX_CONCURRENT_REQUESTS", "1"),
    ("INLET_HEADER_READ_TIMEOUT_MS", "1500"),
    ("INLET_BODY_TIMEOUT_MS", "5000"),
];

/// How long a raw case waits for its answer.
const RAW_WAIT: Duration = Duration::from_secs(10);

/// `POST path` with the SDK token, then `rest` (see [`raw::post_head`]).
fn post_head(path: &str, rest: &str) -> String {
    raw::post_head(path, SDK, rest)
}

/// Sends raw bytes on a fresh connection and parses what came back (status 0 for nothing).
fn raw_answer(addr: &str, bytes: &[u8], wait: Duration) -> (String, Answer) {
    let response = raw::exchange(addr, bytes, wait).expect("connect");
    let answer = Answer::from_raw(&response);
    (response, answer)
}

/// Sends `head`, then `piece` about once a second, at most `times` times, until an answer
/// arrives; returns the answer (empty if none came).
fn trickle(addr: &str, head: &str, piece: &[u8], times: usize) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    for _ in 0..times {
        let _ = s.write_all(piece);
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
            if n == 0 || out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resets the process's peak resident memory to its current one (Linux `clear_refs` 5), and
/// returns the peak before the reset and the current resident memory.
fn reset_peak_rss(pid: u32) -> (u64, u64) {
    let peak = vm_hwm_kib(pid);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    (peak, proc_status_kib(pid, "VmRSS:"))
}

/// `n` KiB of gzip members that each decode to 1 MiB of zeros (a multi-member gzip is valid).
/// An OTLP/JSON span whose ids are base64, as proto3's JSON would have them, not OTLP's hex.
fn otlp_base64_ids() -> Vec<u8> {
    let span = r#"{"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=","name":"x"}"#;
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#).into_bytes()
}

/// An OTLP/JSON log body nested 10,000 arrays deep (`AnyValue.arrayValue.values`).
fn otlp_deep() -> Vec<u8> {
    let depth = 10_000;
    let body = format!(
        "{}{}",
        r#"{"arrayValue":{"values":["#.repeat(depth),
        "]}}".repeat(depth)
    );
    let logs =
        format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{body}}}]}}]}}]}}"#);
    logs.into_bytes()
}

fn gzip_bomb(members: usize) -> Vec<u8> {
    gzip(&vec![0u8; 1 << 20]).repeat(members)
}

fn zstd_bomb(frames: usize) -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; 1 << 20], 19)
        .unwrap()
        .repeat(frames)
}

fn brotli_bomb(mib: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 24);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..mib {
            w.write_all(&zeros).unwrap();
        }
    }
    out
}

/// How a corpus case reaches inlet.
enum Send {
    /// Through reqwest, with the SDK token and JSON unless the case says otherwise.
    Http(Request),
    /// As these bytes on a fresh connection: what a client library cannot send.
    Raw(Vec<u8>),
}

/// One piece of bad input and the answer it must get.
struct Case {
    name: &'static str,
    send: Send,
    expected: Expected,
    /// How far this one request may raise inlet's peak resident memory: measured on its own
    /// (the peak is reset before it), for a case that must not hold all it is refusing.
    peak_growth_bound_kib: Option<u64>,
}

impl Case {
    fn new(name: &'static str, send: Send, expected: Expected) -> Case {
        Case {
            name,
            send,
            expected,
            peak_growth_bound_kib: None,
        }
    }

    /// Through reqwest, answered `status` with `code`.
    fn http(name: &'static str, request: Request, status: u16, code: &'static str) -> Case {
        Case::new(name, Send::Http(request), Expected::code(status, code))
    }

    /// As raw bytes, answered `status`, with `code` unless it is `None` (an answer inlet's
    /// HTTP layer gives before inlet's handlers, without a JSON body).
    fn raw(
        name: &'static str,
        bytes: impl Into<Vec<u8>>,
        status: u16,
        code: Option<&'static str>,
    ) -> Case {
        let expected = Expected {
            code,
            ..Expected::status(status)
        };
        Case::new(name, Send::Raw(bytes.into()), expected)
    }
}

/// 1.4 million empty events, 4 MiB decoded (the beacons cap) from about 40 KB of gzip.
fn tiny_events() -> Vec<u8> {
    let n = ((4 << 20) - 4) / 3;
    let mut array = String::with_capacity(4 << 20);
    array.push('[');
    for _ in 0..n {
        array.push_str("{},");
    }
    array.push_str("{}]");
    gzip(array.as_bytes())
}

/// The cases sent through reqwest, one a line.
#[rustfmt::skip]
fn http_cases() -> Vec<Case> {
    let beacons = |body: Vec<u8>| Request::post("/v1/beacons", SDK, body);
    let encoded = |path: &str, encoding: &str, body: Vec<u8>| {
        Request::post(path, SDK, body).header("content-encoding", encoding)
    };
    let valid = || {
        json!({"session_id": "s", "event": "e"})
            .to_string()
            .into_bytes()
    };
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_small = "[".repeat(60_000) + &"]".repeat(60_000);
    let deep_event = format!(
        "{{\"session_id\":\"s\",\"event\":\"e\",\"props\":{}}}",
        "{\"a\":".repeat(20_000) + "1" + &"}".repeat(20_000)
    );
    let long_number = format!(
        "{{\"session_id\":\"s\",\"event\":\"e\",\"ts\":{}}}",
        "9".repeat(10_000)
    );
    let duplicate = r#"{"session_id":"s","event":"e","event":"f"}"#;
    let too_long = json!({"session_id": "s".repeat(129), "event": "e"}).to_string();
    let too_many = json!(vec![json!({"session_id": "s", "event": "e"}); 1001]).to_string();
    let big_props = json!({"session_id": "s", "event": "e", "props": {"p": "x".repeat(70_000)}});
    vec![
        Case::http("malformed JSON", beacons(b"{\"session_id\":".to_vec()), 400, "malformed_body"),
        Case::http("truncated array", beacons([b"[".to_vec(), valid(), b",".to_vec()].concat()), 400, "malformed_body"),
        Case::http("invalid UTF-8", beacons(b"{\"session_id\":\"\xff\xfe\",\"event\":\"e\"}".to_vec()), 400, "malformed_body"),
        Case::http("NUL byte", beacons(b"{\"session_id\":\"a\x00b\",\"event\":\"e\"}".to_vec()), 400, "malformed_body"),
        // 200 KB of brackets: one event, over the per-event cap before anything parses it.
        Case::http("nested 100,000 deep", beacons(deep.into_bytes()), 413, "event_too_large"),
        Case::http("nested 60,000 deep", beacons(deep_small.into_bytes()), 400, "invalid_events"),
        Case::http("props nested 20,000 deep", beacons(deep_event.into_bytes()), 400, "invalid_events"),
        Case::http("10,000-digit number", beacons(long_number.into_bytes()), 400, "invalid_events"),
        Case::http("duplicate key", beacons(duplicate.into()), 400, "invalid_events"),
        Case::http("string past its limit", beacons(too_long.into_bytes()), 400, "invalid_events"),
        Case::http("props past 64 KiB", beacons(big_props.to_string().into_bytes()), 400, "invalid_events"),
        Case::http("1,001 events", beacons(too_many.into_bytes()), 413, "too_many_events"),
        // Refusing too many events must not first collect them all.
        Case {
            peak_growth_bound_kib: Some(TINY_EVENTS_GROWTH_BOUND_KIB),
            ..Case::http("gzip: 1.4 M events in 4 MiB", encoded("/v1/beacons", "gzip", tiny_events()), 413, "too_many_events")
        },
        Case::http("empty body", beacons(Vec::new()), 400, "no_events"),
        Case::http("whitespace body", beacons(b" \n\t ".to_vec()), 400, "no_events"),
        Case::http("wrong content type", beacons(valid()).header("content-type", "application/xml"), 415, "unsupported_media_type"),
        Case::http("form content type", beacons(valid()).header("content-type", "application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
        Case::http("unknown encoding", encoded("/v1/beacons", "compress", valid()), 415, "unsupported_content_encoding"),
        Case::http("stacked encodings", encoded("/v1/beacons", "gzip, br", valid()), 415, "unsupported_content_encoding"),
        Case::http("corrupt gzip", encoded("/v1/beacons", "gzip", b"\x1f\x8b\x08garbage".to_vec()), 400, "malformed_encoding"),
        Case::http("gzip: 1 GiB from 1 MiB", encoded("/v1/occurrences", "gzip", gzip_bomb(1024)), 413, "decoded_body_too_large"),
        Case::http("zstd: 1 GiB", encoded("/v1/occurrences", "zstd", zstd_bomb(1024)), 413, "decoded_body_too_large"),
        Case::http("br: 1 GiB", encoded("/v1/occurrences", "br", brotli_bomb(1024)), 413, "decoded_body_too_large"),
        Case::http("body over 1 MiB", beacons(vec![b'x'; (1 << 20) + 1]), 413, "body_too_large"),
        Case::http("recording for a token without the lane", Request::post("/v1/recordings/s", SDK, vec![1, 2, 3]), 403, "kind_not_allowed"),
        Case::http("recording in an unknown encoding", Request::post("/v1/recordings/s", RECORDER, vec![1, 2, 3]).header("content-encoding", "compress"), 415, "unsupported_content_encoding"),
        Case::http("OTLP for a token without the lane", Request::post("/v1/traces", SDK, b"{}".to_vec()), 403, "kind_not_allowed"),
        Case::http("OTLP/JSON with base64 ids", Request::post("/v1/traces", OTEL, otlp_base64_ids()), 400, "malformed_body"),
        Case::http("OTLP/JSON nested 10,000 deep", Request::post("/v1/logs", OTEL, otlp_deep()), 400, "malformed_body"),
        Case::http("OTLP/JSON, a string where a message goes", Request::post("/v1/metrics", OTEL, br#"{"resourceMetrics":["x"]}"#.to_vec()), 400, "malformed_body"),
        Case::http("OTLP gzip: 1 GiB from 1 MiB", Request::post("/v1/metrics", OTEL, gzip_bomb(1024)).header("content-encoding", "gzip"), 413, "decoded_body_too_large"),
    ]
}

/// The cases only a raw socket can send, one a line.
#[rustfmt::skip]
fn raw_cases() -> Vec<Case> {
    let valid = json!({"session_id": "s", "event": "e"}).to_string();
    let chunked_big = {
        let mut b = post_head("/v1/beacons", "transfer-encoding: chunked\r\n\r\n").into_bytes();
        for _ in 0..20 {
            b.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
            b.extend_from_slice(&[b'x'; 65536]);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"0\r\n\r\n");
        b
    };
    let many_headers: String = (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_header = format!(
        "x-big: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let head = |rest: &str| post_head("/v1/beacons", rest);
    let recording = |path: &str, rest: &str| raw::post_head(path, RECORDER, rest);
    vec![
        Case::raw("chunked body over 1 MiB", chunked_big, 413, Some("body_too_large")),
        Case::raw("bad chunk size", head("transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"), 400, None),
        Case::raw("Content-Length larger than the body", head("content-length: 1000\r\n\r\n{\"session_id\":\"s\"}"), 408, Some("body_timeout")),
        Case::raw("Content-Length smaller than the body", head(&format!("content-length: 5\r\n\r\n{valid}")), 400, Some("malformed_body")),
        Case::raw("Content-Length over the cap", head("content-length: 99999999999\r\n\r\n"), 413, Some("body_too_large")),
        Case::raw("10,000 headers", head(&format!("{many_headers}content-length: 0\r\n\r\n")), 431, None),
        Case::raw("1 MiB header", head(&huge_header), 431, None),
        Case::raw(
            "HTTP/1.0",
            format!("POST /v1/beacons HTTP/1.0\r\nauthorization: Bearer {SDK}\r\ncontent-length: 2\r\n\r\n{{}}"),
            400,
            Some("invalid_events"),
        ),
        Case::raw("recording: a NUL in its session", recording("/v1/recordings/a%00b", "content-length: 1\r\n\r\nx"), 400, Some("invalid_events")),
        Case::raw("recording: Content-Length over 100 MiB", recording("/v1/recordings/s", "content-length: 99999999999\r\n\r\n"), 413, Some("body_too_large")),
        Case::raw("recording: Content-Length larger than the body", recording("/v1/recordings/s", "content-length: 1000\r\n\r\nabc"), 408, Some("body_timeout")),
        Case::raw("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400, None),
    ]
}

/// inlet's process under the corpus, and the peak of its resident memory so far.
struct Target {
    inlet: InletProcess,
    client: reqwest::Client,
    /// The highest peak seen before a reset of the peak.
    earlier_peak_kib: u64,
}

impl Target {
    fn pid(&self) -> u32 {
        self.inlet.child.id()
    }

    /// Sends `case` and returns what is wrong with the answer, naming the case.
    async fn run(&mut self, case: Case) -> Vec<String> {
        let rss_before = case.peak_growth_bound_kib.map(|_| {
            let (peak, rss) = reset_peak_rss(self.pid());
            self.earlier_peak_kib = self.earlier_peak_kib.max(peak);
            rss
        });
        let a = match &case.send {
            Send::Http(request) => {
                let r = request.build(&self.client, &self.inlet.url).send().await;
                let r = r.unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
                Answer::from_response(r).await
            }
            Send::Raw(bytes) => raw_answer(&self.inlet.addr(), bytes, RAW_WAIT).1,
        };
        println!("{:<36} {} {}", case.name, a.status, a.outcome());
        let mut failures = case.expected.failures(case.name, &a);
        if let (Some(before), Some(bound)) = (rss_before, case.peak_growth_bound_kib) {
            let growth = vm_hwm_kib(self.pid()).saturating_sub(before);
            println!(
                "{:<36} raised peak RSS by {} MiB (bound {} MiB)",
                "",
                growth / 1024,
                bound / 1024
            );
            if growth > bound {
                let name = case.name;
                failures.push(format!(
                    "{name}: raised peak RSS by {growth} KiB, over {bound} KiB"
                ));
            }
        }
        failures
    }

    /// The highest resident memory inlet has had.
    fn peak_kib(&self) -> u64 {
        vm_hwm_kib(self.pid()).max(self.earlier_peak_kib)
    }
}

/// Two requests in one write get two answers, in order (and a third on the same connection).
fn pipelined(addr: &str) -> Option<String> {
    let two = format!(
        "{}content-length: 2\r\n\r\n{{}}{}content-length: 0\r\n\r\n",
        post_head("/v1/beacons", ""),
        post_head("/v1/occurrences", "")
    );
    let bytes = format!("{two}GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (response, _) = raw_answer(addr, bytes.as_bytes(), RAW_WAIT);
    let statuses: Vec<u16> = response
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| Answer::from_raw(&response[i..]).status)
        .collect();
    println!("{:<36} {statuses:?}", "pipelined");
    (statuses != [400, 400, 200])
        .then(|| format!("pipelined: expected [400, 400, 200], got {statuses:?}"))
}

/// Headers at a byte a second: cut off by the header read timeout. Returns how long the
/// connection stayed open (at most about 20 s).
fn slowloris_headers(addr: &str) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    for b in b"POST /v1/beacons HTTP/1.1\r\nhost: x\r\n".iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    started.elapsed()
}

/// Slow clients, while a normal one is served: headers at a byte a second are cut off by the
/// header read timeout; a body at a byte a second by the body deadline; a chunked body (no
/// Content-Length) at a byte a second once it falls behind `body_min_rate` after the grace,
/// not after the time the largest body could take. None holds inlet up.
async fn slow_clients(inlet: &InletProcess) -> Vec<String> {
    let addr = inlet.addr();
    let slow_headers = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || slowloris_headers(&addr)
    });
    let trickled = |rest: &'static str, piece: &'static [u8], times: usize| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            trickle(&addr, &post_head("/v1/beacons", rest), piece, times)
        })
    };
    let slow_body = trickled("content-length: 100\r\n\r\n", b" ", 20);
    let slow_chunks = trickled("transfer-encoding: chunked\r\n\r\n", b"1\r\n \r\n", 30);
    // Meanwhile, a normal client is served.
    let normal = json!({"session_id": "normal", "event": "e", "id": "the-only-event"});
    let a = Request::post("/v1/beacons", SDK, normal.to_string())
        .build(&reqwest::Client::new(), &inlet.url)
        .send()
        .await
        .unwrap();
    assert_eq!(
        a.status(),
        200,
        "inlet serves normal traffic during the corpus"
    );

    let mut failures = Vec::new();
    let cut_after = slow_headers.await.unwrap();
    println!(
        "{:<36} connection closed after {cut_after:?}",
        "slowloris headers"
    );
    if cut_after > Duration::from_secs(10) {
        failures.push(format!(
            "slowloris headers: still connected after {cut_after:?}"
        ));
    }
    for (name, task) in [
        ("slowloris body", slow_body),
        ("slowloris chunked body", slow_chunks),
    ] {
        let response = task.await.unwrap();
        let a = Answer::from_raw(&response);
        println!("{name:<36} {} {}", a.status, a.outcome());
        failures.extend(Expected::code(408, "body_timeout").failures(name, &a));
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_gets_clear_answers_and_produces_nothing() {
    // The whole corpus goes to this one process: its peak memory is the corpus's.
    let (kafka, inlet) = kafka_and_process("corpus", CORPUS_SETTINGS).await;
    let mut target = Target {
        inlet,
        client: reqwest::Client::new(),
        earlier_peak_kib: 0,
    };
    let mut failures = Vec::new();
    for case in http_cases().into_iter().chain(raw_cases()) {
        failures.extend(target.run(case).await);
    }
    failures.extend(pipelined(&target.inlet.addr()));
    failures.extend(slow_clients(&target.inlet).await);
    assert_no_failures("corpus cases", &failures);

    let peak = target.peak_kib();
    println!(
        "inlet peak RSS over the corpus: {} MiB (bound {} MiB)",
        peak / 1024,
        RSS_BOUND_KIB / 1024
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "peak RSS {peak} KiB over {RSS_BOUND_KIB} KiB"
    );
    let inlet = &target.inlet;
    let r = reqwest::get(format!("{}/healthz", inlet.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "inlet is still up");

    let (beacons, occurrences) = kafka.both((1, 0), Duration::from_secs(2)).await;
    assert_eq!(
        event_ids(&beacons),
        ["the-only-event"],
        "nothing from the corpus reached the beacons"
    );
    assert_eq!(
        event_ids(&occurrences),
        Vec::<&str>::new(),
        "nothing from the corpus reached the occurrences"
    );
    let recordings = kafka.recordings(0, Duration::from_secs(1)).await;
    assert!(recordings.is_empty(), "a recording from the corpus landed");

    let log = inlet.log();
    assert!(!log.contains("panicked"), "inlet panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_dropped_unanswered_are_not_counted_in_flight_for_ever() {
    // No broker: an accepted beacon waits for its delivery until the client hangs up, and
    // inlet then drops the request unanswered.
    let topics = common::gateway::topics("hung-up");
    let broker = common::unused_address();
    let inlet = InletProcess::start(&broker, &topics, &[("INLET_DELIVERY_TIMEOUT_MS", "60000")]);
    let body = r#"{"session_id":"s","event":"e"}"#;
    let gone: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut client = TcpStream::connect(inlet.addr()).unwrap();
            client
                .write_all(raw::post_json("/v1/beacons", SDK, body).as_bytes())
                .unwrap();
            client
        })
        .collect();
    wait_in_flight(&inlet, 3.0).await;
    drop(gone);
    wait_in_flight(&inlet, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_said_once_and_counted_not_logged_at_every_retry() {
    let topics = common::gateway::topics("unreachable");
    let inlet = InletProcess::start(&common::unused_address(), &topics, &[]);
    // librdkafka retries every second (reconnect.backoff.max.ms): wait for a few retries.
    let errors = "inlet_kafka_connection_errors_total";
    inlet
        .wait_for_metric(errors, "cause=\"unreachable\"", 3.0)
        .await;
    let ready = reqwest::get(format!("{}/readyz", inlet.url)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let log = inlet.log();
    let said = log.matches("no Kafka broker answers").count();
    assert_eq!(said, 1, "said once, however many retries:\n{log}");
    let refused = log
        .lines()
        .filter(|l| l.contains("Connection refused"))
        .count();
    assert_eq!(refused, 1, "librdkafka's own retries stay at debug:\n{log}");
}

/// Waits until `inlet_http_requests_in_flight` reads `count` (20 s at most).
async fn wait_in_flight(inlet: &InletProcess, count: f64) {
    let read = |metrics: &str| {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("inlet_http_requests_in_flight "));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = read(&inlet.metrics().await);
        if now == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in flight: {now:?}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cannot_be_brute_forced_and_secrets_stay_secret() {
    let (kafka, inlet) = kafka_and_process("security", SECURITY_SETTINGS).await;
    let client = reqwest::Client::new();
    // A request through the trusted proxy, which says the client is `xff`.
    let post = |xff: &str, token: &str, path: &str, body: String| {
        let request = Request::post(path, token, body).header("x-forwarded-for", xff);
        let sent = request.build(&client, &inlet.url).send();
        async move { Answer::from_response(sent.await.expect("request")).await }
    };
    let beacon = |id: &str| json!({"session_id": "sec", "event": "e", "id": id}).to_string();
    let mut guesses = Vec::new();
    for i in 0..10 {
        let guess = format!("guess-{i}-{}", uuid::Uuid::now_v7());
        let a = post("198.51.100.7", &guess, "/v1/beacons", beacon("x")).await;
        assert_eq!(a.status, 401);
        assert!(
            !a.text().contains(&guess),
            "an error answer echoes the secret: {}",
            a.text()
        );
        guesses.push(guess);
    }
    // The 11th attempt from that address is refused before any lookup, even with a valid token.
    let a = post("198.51.100.7", SDK, "/v1/beacons", beacon("blocked")).await;
    assert_eq!(a.status, 429);
    assert!(a.header("retry-after").is_some());
    assert_eq!(a.code(), "too_many_auth_failures");
    // Another client (as told by the trusted proxy) is unaffected; its address reaches Kafka,
    // truncated for beacons and whole for occurrences.
    let a = post("203.0.113.9", SDK, "/v1/beacons", beacon("other-client")).await;
    assert_eq!(a.status, 200);
    let occurrence =
        json!({"level": "info", "message": "m", "uuid": "0193a6f0-0000-7000-8000-000000000001"});
    let a = post(
        "203.0.113.9",
        SDK,
        "/v1/occurrences",
        occurrence.to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    // A client cannot choose its address by writing X-Forwarded-For itself: only what the
    // trusted proxy appended counts (the right-most hop).
    let a = post("6.6.6.6, 203.0.113.10", SDK, "/v1/beacons", beacon("spoof")).await;
    assert_eq!(a.status, 200);

    let landed = kafka.beacons(2, Duration::from_secs(1)).await;
    let mut beacons: Vec<(String, String)> = landed
        .iter()
        .map(|c| (c.envelope.event_id.clone(), c.envelope.client_ip.clone()))
        .collect();
    beacons.sort();
    assert_eq!(
        beacons,
        vec![
            ("other-client".into(), "203.0.113.0".into()),
            ("spoof".into(), "203.0.113.0".into())
        ]
    );
    let occurrences = kafka.occurrences(1, Duration::from_secs(1)).await;
    assert_eq!(occurrences.len(), 1);
    assert_eq!(occurrences[0].envelope.client_ip, "203.0.113.9");
    assert_eq!(occurrences[0].envelope.account_id, ACCOUNT);
    assert!(matches!(
        occurrences[0].envelope.event,
        Some(Event::Occurrence(_))
    ));

    // No secret, valid or guessed, in the logs (at debug) or the metrics.
    let metrics = inlet.metrics().await;
    assert!(metrics.contains("inlet_auth_failures_total{reason=\"blocked\"}"));
    let log = inlet.log();
    assert!(
        log.contains("plain-text secrets"),
        "plain tokens are warned about at start-up"
    );
    for secret in guesses.iter().map(String::as_str).chain([SDK, WEB]) {
        assert!(!log.contains(secret), "the log holds a secret");
        assert!(!metrics.contains(secret), "the metrics hold a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_concurrency_caps_shed_load_instead_of_queueing_it() {
    let (_kafka, inlet) = kafka_and_process("caps", CAPS_SETTINGS).await;
    let addr = inlet.addr();
    let outcome = tokio::task::spawn_blocking(move || {
        // One request in flight: its body is still coming.
        let mut slow = TcpStream::connect(&addr).unwrap();
        slow.write_all(
            post_head(
                "/v1/beacons",
                "content-type: application/json\r\ncontent-length: 40\r\n\r\n{",
            )
            .as_bytes(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // A second request finds the concurrency cap taken: 503 at once, readable by a page.
        let (_, shed) = raw_answer(
            &addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\norigin: https://www.acme.example\r\nconnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        // Fill the connection cap (the slow one holds one slot), then one more is closed at once.
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let (refused, _) = raw_answer(
            &addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            Duration::from_secs(5),
        );
        let refused_after = started.elapsed();
        // Idle connections are closed by the header read timeout, freeing their slots.
        let mut idle = held;
        let mut buf = [0u8; 1];
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let closed = idle[0].read(&mut buf).map(|n| n == 0).unwrap_or(true);
        drop(idle);
        drop(slow);
        std::thread::sleep(Duration::from_millis(300));
        let (_, after) = raw_answer(
            &addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        (shed, refused, refused_after, closed, after)
    })
    .await
    .unwrap();
    let (shed, refused, refused_after, idle_closed, after) = outcome;
    assert_eq!((shed.status, shed.code()), (503, "overloaded"), "{shed:?}");
    assert_eq!(shed.header("retry-after"), Some("1"), "{shed:?}");
    assert_eq!(
        shed.header("access-control-allow-origin"),
        Some("https://www.acme.example"),
        "a browser must be able to read the 503: {shed:?}"
    );
    assert!(
        refused.is_empty(),
        "over max_connections the connection is closed unanswered: {refused:?}"
    );
    // At once: not after a timeout (the header read timeout is 1.5 s, the read's 5 s).
    println!("connection over the cap closed after {refused_after:?}");
    assert!(
        refused_after < Duration::from_secs(1),
        "the connection over the cap was closed after {refused_after:?}, not at once"
    );
    assert!(
        idle_closed,
        "an idle keep-alive connection is closed by the header read timeout"
    );
    assert_eq!(after.status, 200, "slots free up again: {after:?}");
    let metrics = inlet.metrics().await;
    assert!(
        metrics.contains("inlet_http_requests_shed_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("inlet_http_connections_refused_total{listener=\"public\"}"));
}
