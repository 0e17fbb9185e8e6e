//! Hostile and broken clients against the inlet binary: a corpus of bad input, each case with
//! the status and error code it must get; slow clients; then proof that inlet still serves,
//! stayed within a memory bound, and produced nothing for any of it. Plus token security:
//! brute-force limiting, trusted proxies, address truncation, and secrets kept out of logs,
//! metrics and answers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::gateway::{consume, create_topics, topics, ACCOUNT, SDK, WEB};
use common::process::InletProcess;
use inlet::proto::envelope::Event;
use serde_json::{json, Value};

/// The most resident memory inlet may reach while it answers the whole corpus.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// The corpus case whose own memory is measured: refusing too many events must not first
/// collect them all.
const TINY_EVENTS: &str = "gzip: 1.4 M events in 4 MiB";

/// How far that one request may raise inlet's resident memory: its 4 MiB decoded body a few
/// times over (4 MiB measured). Collecting the 1.4 million events before counting them (22 MB
/// of slices, in a vector that doubles as it grows) raised it by 25 MiB.
const TINY_EVENTS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// Sends raw bytes on a fresh connection, then reads until the server closes it or `wait`
/// passes; returns what came back.
fn raw(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
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

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON error code of a raw response.
fn code_of(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked body carries its size line first.
    let body = body.lines().find(|l| l.starts_with('{')).unwrap_or("");
    // Only the first JSON value: a pipelined answer may follow it.
    match serde_json::Deserializer::from_str(body)
        .into_iter::<Value>()
        .next()
    {
        Some(Ok(v)) if v["accepted"] == 0 => "invalid_events".into(),
        Some(Ok(v)) => v["error"]["code"].as_str().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

fn post_head(path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: inlet\r\nauthorization: Bearer {SDK}\r\n{extra}")
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

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` KiB of gzip members that each decode to 1 MiB of zeros (a multi-member gzip is valid).
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 1 << 20]).unwrap();
    e.finish().unwrap().repeat(members)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_gets_clear_answers_and_produces_nothing() {
    let broker = Broker::start_memory();
    let t = topics("corpus");
    create_topics(&broker.bootstrap(), &[&t.0, &t.1]).await;
    let inlet = InletProcess::start(
        &broker.bootstrap(),
        &t,
        &[
            ("INLET_HEADER_READ_TIMEOUT_MS", "2000"),
            ("INLET_BODY_TIMEOUT_MS", "1500"),
            ("INLET_AUTH_FAILURES_PER_MINUTE", "1000"),
        ],
    );
    let addr = inlet.url.trim_start_matches("http://").to_owned();
    let pid = inlet.child.id();
    let wait = Duration::from_secs(10);

    let valid = json!({"session_id": "s", "event": "e"}).to_string();
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
    let duplicate = r#"{"session_id":"s","event":"e","event":"f"}"#.to_owned();
    let too_long = json!({"session_id": "s".repeat(129), "event": "e"}).to_string();
    let too_many =
        serde_json::to_string(&vec![json!({"session_id": "s", "event": "e"}); 1001]).unwrap();
    let big_props =
        json!({"session_id": "s", "event": "e", "props": {"p": "x".repeat(70_000)}}).to_string();
    let over_1mib = "x".repeat((1 << 20) + 1);
    // 1.4 million empty events, 4 MiB decoded (the beacons cap) from about 40 KB of gzip.
    let tiny_events = {
        let n = ((4 << 20) - 4) / 3;
        let mut array = String::with_capacity(4 << 20);
        array.push('[');
        for _ in 0..n {
            array.push_str("{},");
        }
        array.push_str("{}]");
        gzip(array.as_bytes())
    };

    // (name, path, extra headers, body, expected status, expected code)
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, String)>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "/v1/beacons",
            vec![],
            b"{\"session_id\":".to_vec(),
            400,
            "malformed_body",
        ),
        (
            "truncated array",
            "/v1/beacons",
            vec![],
            format!("[{valid},").into_bytes(),
            400,
            "malformed_body",
        ),
        (
            "invalid UTF-8",
            "/v1/beacons",
            vec![],
            b"{\"session_id\":\"\xff\xfe\",\"event\":\"e\"}".to_vec(),
            400,
            "malformed_body",
        ),
        (
            "NUL byte",
            "/v1/beacons",
            vec![],
            b"{\"session_id\":\"a\x00b\",\"event\":\"e\"}".to_vec(),
            400,
            "malformed_body",
        ),
        // 200 KB of brackets: one event, over the per-event cap before anything parses it.
        (
            "nested 100,000 deep",
            "/v1/beacons",
            vec![],
            deep.into_bytes(),
            413,
            "event_too_large",
        ),
        (
            "nested 60,000 deep",
            "/v1/beacons",
            vec![],
            deep_small.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "props nested 20,000 deep",
            "/v1/beacons",
            vec![],
            deep_event.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "10,000-digit number",
            "/v1/beacons",
            vec![],
            long_number.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "duplicate key",
            "/v1/beacons",
            vec![],
            duplicate.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "string past its limit",
            "/v1/beacons",
            vec![],
            too_long.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "props past 64 KiB",
            "/v1/beacons",
            vec![],
            big_props.into_bytes(),
            400,
            "invalid_events",
        ),
        (
            "1,001 events",
            "/v1/beacons",
            vec![],
            too_many.into_bytes(),
            413,
            "too_many_events",
        ),
        (
            TINY_EVENTS,
            "/v1/beacons",
            vec![("content-encoding", "gzip".into())],
            tiny_events,
            413,
            "too_many_events",
        ),
        (
            "empty body",
            "/v1/beacons",
            vec![],
            vec![],
            400,
            "no_events",
        ),
        (
            "whitespace body",
            "/v1/beacons",
            vec![],
            b" \n\t ".to_vec(),
            400,
            "no_events",
        ),
        (
            "wrong content type",
            "/v1/beacons",
            vec![("content-type", "application/xml".into())],
            valid.clone().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "form content type",
            "/v1/beacons",
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            valid.clone().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "unknown encoding",
            "/v1/beacons",
            vec![("content-encoding", "compress".into())],
            valid.clone().into_bytes(),
            415,
            "unsupported_content_encoding",
        ),
        (
            "stacked encodings",
            "/v1/beacons",
            vec![("content-encoding", "gzip, br".into())],
            valid.clone().into_bytes(),
            415,
            "unsupported_content_encoding",
        ),
        (
            "corrupt gzip",
            "/v1/beacons",
            vec![("content-encoding", "gzip".into())],
            b"\x1f\x8b\x08garbage".to_vec(),
            400,
            "malformed_encoding",
        ),
        (
            "gzip: 1 GiB from 1 MiB",
            "/v1/occurrences",
            vec![("content-encoding", "gzip".into())],
            gzip_bomb(1024),
            413,
            "decoded_body_too_large",
        ),
        (
            "zstd: 1 GiB",
            "/v1/occurrences",
            vec![("content-encoding", "zstd".into())],
            zstd_bomb(1024),
            413,
            "decoded_body_too_large",
        ),
        (
            "br: 1 GiB",
            "/v1/occurrences",
            vec![("content-encoding", "br".into())],
            brotli_bomb(1024),
            413,
            "decoded_body_too_large",
        ),
        (
            "body over 1 MiB",
            "/v1/beacons",
            vec![],
            over_1mib.clone().into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    // The highest peak seen before a reset of the peak.
    let mut earlier_peak = 0;
    for (name, path, headers, body, status, code) in cases {
        let rss_before = (name == TINY_EVENTS).then(|| {
            let (peak, rss) = reset_peak_rss(pid);
            earlier_peak = peak;
            rss
        });
        let mut req = client
            .post(format!("{}{path}", inlet.url))
            .bearer_auth(SDK)
            .body(body);
        if !headers.iter().any(|(k, _)| *k == "content-type") {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        let got_status = r.status().as_u16();
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
        let got_code = body["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if body["accepted"] == 0 {
                    "invalid_events".into()
                } else {
                    String::new()
                }
            });
        println!("{name:<28} {got_status} {got_code}");
        if (got_status, got_code.as_str()) != (status, code) {
            failures.push(format!(
                "{name}: expected {status} {code}, got {got_status} {got_code} {body}"
            ));
        }
        if let Some(before) = rss_before {
            let growth = vm_hwm_kib(pid).saturating_sub(before);
            println!(
                "{:<28} raised peak RSS by {} MiB (bound {} MiB)",
                "",
                growth / 1024,
                TINY_EVENTS_GROWTH_BOUND_KIB / 1024
            );
            if growth > TINY_EVENTS_GROWTH_BOUND_KIB {
                failures.push(format!(
                    "{name}: raised peak RSS by {growth} KiB, over {TINY_EVENTS_GROWTH_BOUND_KIB} KiB"
                ));
            }
        }
    }

    // Cases only a raw socket can send.
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
    let many_headers = {
        let mut h = String::new();
        for i in 0..10_000 {
            h.push_str(&format!("x-h{i}: v\r\n"));
        }
        post_head("/v1/beacons", &format!("{h}content-length: 0\r\n\r\n")).into_bytes()
    };
    let huge_header = post_head(
        "/v1/beacons",
        &format!(
            "x-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(1 << 20)
        ),
    )
    .into_bytes();
    let raw_cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("chunked body over 1 MiB", chunked_big, 413, "body_too_large"),
        ("bad chunk size", post_head("/v1/beacons", "transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").into_bytes(), 400, ""),
        ("Content-Length larger than the body", post_head("/v1/beacons", "content-length: 1000\r\n\r\n{\"session_id\":\"s\"}").into_bytes(), 408, "body_timeout"),
        ("Content-Length smaller than the body", post_head("/v1/beacons", &format!("content-length: 5\r\n\r\n{valid}")).into_bytes(), 400, "malformed_body"),
        ("Content-Length over the cap", post_head("/v1/beacons", "content-length: 99999999999\r\n\r\n").into_bytes(), 413, "body_too_large"),
        ("10,000 headers", many_headers, 431, ""),
        ("1 MiB header", huge_header, 431, ""),
        ("HTTP/1.0", format!("POST /v1/beacons HTTP/1.0\r\nauthorization: Bearer {SDK}\r\ncontent-length: 2\r\n\r\n{{}}").into_bytes(), 400, "invalid_events"),
        ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400, ""),
    ];
    for (name, bytes, status, code) in raw_cases {
        let response = raw(&addr, &bytes, wait);
        let (got_status, got_code) = (status_of(&response), code_of(&response));
        println!("{name:<28} {got_status} {got_code}");
        if got_status != status || (!code.is_empty() && got_code != code) {
            failures.push(format!(
                "{name}: expected {status} {code}, got {response:?}"
            ));
        }
    }

    // Pipelined: two requests in one write get two answers, in order.
    let two = format!(
        "{}content-length: 2\r\n\r\n{{}}{}content-length: 0\r\n\r\n",
        post_head("/v1/beacons", ""),
        post_head("/v1/occurrences", "")
    );
    let response = raw(
        &addr,
        format!("{two}GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        wait,
    );
    let statuses: Vec<u16> = response
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| status_of(&response[i..]))
        .collect();
    println!("{:<28} {statuses:?}", "pipelined");
    if statuses != [400, 400, 200] {
        failures.push(format!(
            "pipelined: expected [400, 400, 200], got {statuses:?}"
        ));
    }

    // Slowloris: headers at a byte a second are cut off by the header read timeout; a body at a
    // byte a second by the body deadline. Neither holds inlet up.
    let slow_headers = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            let started = Instant::now();
            let mut s = TcpStream::connect(&addr).unwrap();
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
    });
    let slow_body = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            trickle(
                &addr,
                &post_head("/v1/beacons", "content-length: 100\r\n\r\n"),
                b" ",
                20,
            )
        }
    });
    // A chunked body (no Content-Length) at a byte a second: cut off once it falls behind
    // `body_min_rate` after the grace, not after the time the largest body could take.
    let slow_chunks = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            trickle(
                &addr,
                &post_head("/v1/beacons", "transfer-encoding: chunked\r\n\r\n"),
                b"1\r\n \r\n",
                30,
            )
        }
    });
    // Meanwhile, a normal client is served.
    let a = client
        .post(format!("{}/v1/beacons", inlet.url))
        .bearer_auth(SDK)
        .header("content-type", "application/json")
        .body(json!({"session_id": "normal", "event": "e", "id": "the-only-event"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        a.status(),
        200,
        "inlet serves normal traffic during the corpus"
    );
    let cut_after = slow_headers.await.unwrap();
    println!(
        "{:<28} connection closed after {cut_after:?}",
        "slowloris headers"
    );
    if cut_after > Duration::from_secs(10) {
        failures.push(format!(
            "slowloris headers: still connected after {cut_after:?}"
        ));
    }
    let slow = slow_body.await.unwrap();
    println!(
        "{:<28} {} {}",
        "slowloris body",
        status_of(&slow),
        code_of(&slow)
    );
    if (status_of(&slow), code_of(&slow).as_str()) != (408, "body_timeout") {
        failures.push(format!("slowloris body: {:?}", slow.lines().next()));
    }
    let slow = slow_chunks.await.unwrap();
    println!(
        "{:<28} {} {}",
        "slowloris chunked body",
        status_of(&slow),
        code_of(&slow)
    );
    if (status_of(&slow), code_of(&slow).as_str()) != (408, "body_timeout") {
        failures.push(format!("slowloris chunked body: {:?}", slow.lines().next()));
    }

    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );

    let peak = vm_hwm_kib(pid).max(earlier_peak);
    println!(
        "inlet peak RSS over the corpus: {} MiB (bound {} MiB)",
        peak / 1024,
        RSS_BOUND_KIB / 1024
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "peak RSS {peak} KiB over {RSS_BOUND_KIB} KiB"
    );
    let r = client
        .get(format!("{}/healthz", inlet.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "inlet is still up");

    for topic in [t.0.clone(), t.1.clone()] {
        let landed = tokio::task::spawn_blocking({
            let (b, topic) = (broker.bootstrap(), topic.clone());
            move || consume(&b, &topic, 0, Duration::from_secs(2))
        })
        .await
        .unwrap();
        let ids: Vec<_> = landed
            .iter()
            .map(|c| c.envelope.event_id.as_str())
            .collect();
        let expected: Vec<&str> = if topic == t.0 {
            vec!["the-only-event"]
        } else {
            vec![]
        };
        assert_eq!(ids, expected, "nothing from the corpus reached {topic}");
    }
    let log = inlet.log();
    assert!(!log.contains("panicked"), "inlet panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cannot_be_brute_forced_and_secrets_stay_secret() {
    let broker = Broker::start_memory();
    let t = topics("security");
    create_topics(&broker.bootstrap(), &[&t.0, &t.1]).await;
    let inlet = InletProcess::start(
        &broker.bootstrap(),
        &t,
        &[
            ("INLET_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("INLET_AUTH_FAILURES_PER_MINUTE", "10"),
            ("INLET_LOG", "debug"),
        ],
    );
    let client = reqwest::Client::new();
    let post = |xff: &'static str, token: String, path: &'static str, body: String| {
        client
            .post(format!("{}{path}", inlet.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("x-forwarded-for", xff)
            .body(body)
            .send()
    };
    let beacon = |id: &str| json!({"session_id": "sec", "event": "e", "id": id}).to_string();
    let mut guesses = Vec::new();
    for i in 0..10 {
        let guess = format!("guess-{i}-{}", uuid::Uuid::now_v7());
        let r = post("198.51.100.7", guess.clone(), "/v1/beacons", beacon("x"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(&guess),
            "an error answer echoes the secret: {text}"
        );
        guesses.push(guess);
    }
    // The 11th attempt from that address is refused before any lookup, even with a valid token.
    let r = post("198.51.100.7", SDK.into(), "/v1/beacons", beacon("blocked"))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "too_many_auth_failures");
    // Another client (as told by the trusted proxy) is unaffected; its address reaches Kafka,
    // truncated for beacons and whole for occurrences.
    let r = post(
        "203.0.113.9",
        SDK.into(),
        "/v1/beacons",
        beacon("other-client"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        "203.0.113.9",
        SDK.into(),
        "/v1/occurrences",
        json!({"level": "info", "message": "m", "uuid": "0193a6f0-0000-7000-8000-000000000001"})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // A client cannot choose its address by writing X-Forwarded-For itself: only what the
    // trusted proxy appended counts (the right-most hop).
    let r = post(
        "6.6.6.6, 203.0.113.10",
        SDK.into(),
        "/v1/beacons",
        beacon("spoof"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);

    let landed = tokio::task::spawn_blocking({
        let (b, topic) = (broker.bootstrap(), t.0.clone());
        move || consume(&b, &topic, 2, Duration::from_secs(1))
    })
    .await
    .unwrap();
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
    let occurrences = tokio::task::spawn_blocking({
        let (b, topic) = (broker.bootstrap(), t.1.clone());
        move || consume(&b, &topic, 1, Duration::from_secs(1))
    })
    .await
    .unwrap();
    assert_eq!(occurrences.len(), 1);
    assert_eq!(occurrences[0].envelope.client_ip, "203.0.113.9");
    assert_eq!(occurrences[0].envelope.account_id, ACCOUNT);
    assert!(matches!(
        occurrences[0].envelope.event,
        Some(Event::Occurrence(_))
    ));

    // No secret, valid or guessed, in the logs (at debug) or the metrics.
    let metrics = client
        .get(format!("{}/metrics", inlet.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let broker = Broker::start_memory();
    let t = topics("caps");
    create_topics(&broker.bootstrap(), &[&t.0, &t.1]).await;
    let inlet = InletProcess::start(
        &broker.bootstrap(),
        &t,
        &[
            ("INLET_MAX_CONNECTIONS", "4"),
            ("INLET_MAX_CONCURRENT_REQUESTS", "1"),
            ("INLET_HEADER_READ_TIMEOUT_MS", "1500"),
            ("INLET_BODY_TIMEOUT_MS", "5000"),
        ],
    );
    let addr = inlet.url.trim_start_matches("http://").to_owned();
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
        let shed = raw(
            &addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\norigin: https://www.acme.example\r\nconnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        // Fill the connection cap (the slow one holds one slot), then one more is closed at once.
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let refused = raw(
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
        let after = raw(
            &addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        (shed, refused, refused_after, closed, after)
    })
    .await
    .unwrap();
    let (shed, refused, refused_after, idle_closed, after) = outcome;
    assert_eq!(
        (status_of(&shed), code_of(&shed).as_str()),
        (503, "overloaded"),
        "{shed}"
    );
    assert!(shed.contains("retry-after: 1"), "{shed}");
    assert!(
        shed.contains("access-control-allow-origin: https://www.acme.example"),
        "a browser must be able to read the 503: {shed}"
    );
    assert!(
        refused.is_empty(),
        "over max_connections the connection is closed unanswered: {refused:?}"
    );
    println!("connection over the cap closed after {refused_after:?}");
    assert!(
        idle_closed,
        "an idle keep-alive connection is closed by the header read timeout"
    );
    assert_eq!(status_of(&after), 200, "slots free up again: {after}");
    let metrics = reqwest::get(format!("{}/metrics", inlet.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("inlet_http_requests_shed_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("inlet_http_connections_refused_total{listener=\"public\"}"));
}
