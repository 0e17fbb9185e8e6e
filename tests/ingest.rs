//! Black-box tests of the ingest path: HTTP in, a real Tansu broker (its own process) behind,
//! every accepted event read back from Kafka and decoded.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::broker::Broker;
use common::gateway::{
    self, consume, create_topics, topics, Answer, Gateway, ACCOUNT, ORIGIN, PROJECT, SDK, TIGHT,
    WEB,
};
use inlet::proto::envelope::Event;
use serde_json::{json, Value};

const SESSIONS: usize = 20;
const EVENTS_PER_SESSION: usize = 15;

async fn broker_and_gateway(
    test: &str,
    tweak: impl FnOnce(&mut inlet::config::Settings),
) -> (Broker, (String, String), Gateway) {
    let broker = Broker::start_memory();
    let t = topics(test);
    create_topics(&broker.bootstrap(), &[&t.0, &t.1]).await;
    let gw = Gateway::start(&broker.bootstrap(), &t, tweak).await;
    gw.wait_ready().await;
    (broker, t, gw)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    w.write_all(data).unwrap();
    drop(w);
    out
}

fn beacon(session: usize, seq: usize) -> Value {
    json!({
        "session_id": format!("session-{session}"),
        "event": "page_view",
        "id": format!("s{session}-e{seq}"),
        "ts": 1_700_000_000_000_i64 + seq as i64,
        "url": "https://www.acme.example/pricing",
        "props": {"seq": seq},
    })
}

/// Sends one session's events in order, in requests of 1..=3 events, rotating through every
/// body shape and content encoding; each request waits for its answer before the next.
async fn send_session(gw: &Gateway, session: usize) -> usize {
    let mut seq = 0;
    let mut shape = session;
    while seq < EVENTS_PER_SESSION {
        let n = (1 + shape % 3).min(EVENTS_PER_SESSION - seq);
        let events: Vec<Value> = (seq..seq + n).map(|j| beacon(session, j)).collect();
        let array = serde_json::to_vec(&events).unwrap();
        let ndjson = events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        let (body, headers): (Vec<u8>, Vec<(&str, &str)>) = match shape % 6 {
            0 if n == 1 => (serde_json::to_vec(&events[0]).unwrap(), vec![]),
            0 | 1 => (array, vec![]),
            2 => (ndjson, vec![("content-type", "application/x-ndjson")]),
            3 => (gzip(&array), vec![("content-encoding", "gzip")]),
            4 => (
                brotli(&ndjson),
                vec![
                    ("content-encoding", "br"),
                    ("content-type", "text/plain;charset=UTF-8"),
                ],
            ),
            _ => (
                zstd::bulk::compress(&array, 3).unwrap(),
                vec![("content-encoding", "zstd")],
            ),
        };
        let a = gw.post("/v1/beacons", SDK, body, &headers).await;
        assert_eq!(a.status, 200, "session {session} seq {seq}: {:?}", a.body);
        assert_eq!(a.body, json!({"accepted": n}));
        seq += n;
        shape += 1;
    }
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_lands_once_keyed_partitioned_and_in_order() {
    let (broker, t, gw) = broker_and_gateway("e2e", |_| {}).await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { send_session(&gw, s).await }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    assert_eq!(sent, SESSIONS * EVENTS_PER_SESSION);

    // Occurrences: keyed by the token's account, client uuids become event ids.
    let mut uuids = Vec::new();
    for i in 0..30 {
        let id = uuid::Uuid::now_v7().to_string();
        uuids.push(id.clone());
        let body = json!({
            "level": "error", "uuid": id, "message": format!("boom {i}"),
            "exception": {"class": "TypeError", "message": "x", "frames": [{"filename": "a.js", "lineno": i, "colno": 1, "method": "f"}]},
            "environment": "production", "custom": {"i": i},
        });
        let a = gw.post("/v1/occurrences", SDK, body.to_string(), &[]).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }

    let brokers = broker.bootstrap();
    let beacons = tokio::task::spawn_blocking({
        let (b, topic) = (brokers.clone(), t.0.clone());
        move || consume(&b, &topic, sent, Duration::from_secs(2))
    })
    .await
    .unwrap();
    assert_eq!(
        beacons.len(),
        sent,
        "every accepted beacon arrives, none twice"
    );
    let ids: HashSet<_> = beacons
        .iter()
        .map(|c| c.envelope.event_id.clone())
        .collect();
    assert_eq!(ids.len(), sent, "event ids are unique");
    let mut per_session: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    for c in &beacons {
        let e = &c.envelope;
        let Some(Event::Beacon(b)) = &e.event else {
            panic!("not a beacon: {e:?}")
        };
        assert_eq!(c.key, b.session_id, "beacons are keyed by session");
        assert_eq!(
            c.partition as u32,
            inlet::key::partition(c.key.as_bytes(), 512),
            "murmur2 partition of {}",
            c.key
        );
        assert_eq!(
            c.headers.get("inlet-kind").map(String::as_str),
            Some("beacon")
        );
        assert_eq!(
            c.headers.get("inlet-schema").map(String::as_str),
            Some("inlet.v1.Envelope")
        );
        assert_eq!(
            (
                e.project_id.as_str(),
                e.account_id.as_str(),
                e.token_id.as_str()
            ),
            (PROJECT, ACCOUNT, "sdk")
        );
        assert_eq!(
            e.client_ip, "127.0.0.0",
            "beacon addresses are truncated by default"
        );
        assert_eq!(e.user_agent, "inlet-tests/1");
        assert!(e.received_at_ms > 1_700_000_000_000);
        assert_eq!(b.url, "https://www.acme.example/pricing");
        let seq = serde_json::from_str::<Value>(&b.props_json).unwrap()["seq"]
            .as_i64()
            .unwrap();
        assert_eq!(
            e.event_id,
            format!("s{}-e{seq}", &b.session_id["session-".len()..]),
            "client id is the event id"
        );
        assert_eq!(b.client_ts_ms, 1_700_000_000_000 + seq);
        per_session.entry(b.session_id.clone()).or_default().push((
            c.offset,
            seq,
            e.event_id.clone(),
        ));
    }
    assert_eq!(per_session.len(), SESSIONS);
    for (session, mut events) in per_session {
        events.sort();
        let seqs: Vec<i64> = events.iter().map(|e| e.1).collect();
        let expected: Vec<i64> = (0..EVENTS_PER_SESSION as i64).collect();
        assert_eq!(
            seqs, expected,
            "{session}: offsets follow the order events were sent"
        );
    }

    let occurrences = tokio::task::spawn_blocking({
        let (b, topic) = (brokers.clone(), t.1.clone());
        move || consume(&b, &topic, 30, Duration::from_secs(1))
    })
    .await
    .unwrap();
    assert_eq!(occurrences.len(), 30);
    let partition = inlet::key::partition(ACCOUNT.as_bytes(), 512) as i32;
    let mut got_ids = Vec::new();
    for c in &occurrences {
        assert_eq!(c.key, ACCOUNT, "occurrences are keyed by account");
        assert_eq!(c.partition, partition);
        assert_eq!(
            c.headers.get("inlet-kind").map(String::as_str),
            Some("occurrence")
        );
        let Some(Event::Occurrence(o)) = &c.envelope.event else {
            panic!()
        };
        assert_eq!(o.level, inlet::proto::Level::Error as i32);
        assert_eq!(o.exception.as_ref().unwrap().class, "TypeError");
        assert_eq!(o.environment, "production");
        assert_eq!(
            c.envelope.client_ip, "127.0.0.1",
            "occurrence addresses are kept by default"
        );
        got_ids.push((c.offset, c.envelope.event_id.clone()));
    }
    got_ids.sort();
    let in_order: Vec<String> = got_ids.into_iter().map(|(_, id)| id).collect();
    assert_eq!(in_order, uuids, "one account's occurrences stay in order");
    gw.http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
}

/// Sends a raw request and reads the answer.
async fn send(gw: &Gateway, req: reqwest::RequestBuilder) -> Answer {
    let _ = gw;
    Answer::from_response(req.send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_of_the_contract() {
    let (broker, t, gw) = broker_and_gateway("errors", |s| {
        s.beacons_max_body_bytes = Some(64 * 1024);
        s.beacons_max_decoded_bytes = Some(256 * 1024);
        s.beacons_max_event_bytes = Some(8 * 1024);
        s.max_events_per_request = Some(100);
    })
    .await;
    let url = |p: &str| format!("{}{p}", gw.url);
    let ok_beacon = json!({"session_id": "s", "event": "e"}).to_string();
    let h = &gw.http;

    // 401
    let a = send(&gw, h.post(url("/v1/beacons")).body(ok_beacon.clone())).await;
    assert_eq!((a.status, a.code()), (401, "missing_token"));
    assert_eq!(
        a.header("x-request-id").map(str::len),
        Some(32),
        "every answer has a request id"
    );
    let a = send(
        &gw,
        h.post(url("/v1/beacons"))
            .header("x-request-id", "client-id-1")
            .body(ok_beacon.clone()),
    )
    .await;
    assert_eq!(
        a.header("x-request-id"),
        Some("client-id-1"),
        "a client's request id is kept"
    );
    let a = gw
        .post("/v1/beacons", "wrong", ok_beacon.clone(), &[])
        .await;
    assert_eq!((a.status, a.code()), (401, "unknown_token"));
    assert!(
        !String::from_utf8_lossy(&a.bytes).contains("wrong"),
        "the secret is never echoed"
    );
    // 403: kind, origin
    let a = gw
        .post(
            "/v1/occurrences",
            WEB,
            json!({"level": "info", "message": "m"}).to_string(),
            &[],
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "kind_not_allowed"));
    let a = gw
        .post(
            "/v1/beacons",
            WEB,
            ok_beacon.clone(),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!((a.status, a.code()), (403, "origin_not_allowed"));
    assert!(
        a.header("access-control-allow-origin").is_none(),
        "a refused origin gets no CORS grant"
    );
    let a = gw
        .post("/v1/beacons", WEB, ok_beacon.clone(), &[("origin", ORIGIN)])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some(ORIGIN));
    // 415
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            ok_beacon.clone(),
            &[("content-type", "application/xml")],
        )
        .await;
    assert_eq!((a.status, a.code()), (415, "unsupported_media_type"));
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            ok_beacon.clone(),
            &[("content-encoding", "compress")],
        )
        .await;
    assert_eq!((a.status, a.code()), (415, "unsupported_content_encoding"));
    // 413: as sent, decoded, one event, count
    let big =
        json!({"session_id": "s", "event": "e", "props": {"x": "y".repeat(70 * 1024)}}).to_string();
    let a = gw.post("/v1/beacons", SDK, big, &[]).await;
    assert_eq!((a.status, a.code()), (413, "body_too_large"));
    let bomb = gzip(&vec![b' '; 1 << 20]);
    let a = gw
        .post("/v1/beacons", SDK, bomb, &[("content-encoding", "gzip")])
        .await;
    assert_eq!((a.status, a.code()), (413, "decoded_body_too_large"));
    let fat = json!([{"session_id": "s", "event": "e"}, {"session_id": "s", "event": "e", "props": {"x": "y".repeat(9000)}}]).to_string();
    let a = gw.post("/v1/beacons", SDK, fat, &[]).await;
    assert_eq!((a.status, a.code()), (413, "event_too_large"));
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("event 1"));
    let many = serde_json::to_string(&vec![json!({"session_id": "s", "event": "e"}); 101]).unwrap();
    let a = gw.post("/v1/beacons", SDK, many, &[]).await;
    assert_eq!((a.status, a.code()), (413, "too_many_events"));
    // 400: malformed, empty, corrupt encoding, every event invalid
    let a = gw.post("/v1/beacons", SDK, "{\"session_id\":", &[]).await;
    assert_eq!((a.status, a.code()), (400, "malformed_body"));
    let a = gw.post("/v1/beacons", SDK, "", &[]).await;
    assert_eq!((a.status, a.code()), (400, "no_events"));
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            "garbage",
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "malformed_encoding"));
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            json!([{"event": "e"}, {"session_id": "s", "event": "e", "color": 1}]).to_string(),
            &[],
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["accepted"], 0);
    assert_eq!(a.body["rejected"][0]["index"], 0);
    assert_eq!(a.body["rejected"][0]["code"], "missing_field");
    assert!(a.body["rejected"][0]["message"]
        .as_str()
        .unwrap()
        .contains("session_id"));
    assert_eq!(a.body["rejected"][1]["code"], "unknown_field");
    assert!(a.body["rejected"][1]["message"]
        .as_str()
        .unwrap()
        .contains("color"));
    // 207: the valid events are accepted, the invalid named
    let mixed = "{\"session_id\":\"p\",\"event\":\"ok\",\"id\":\"partial-0\"}\n{\"session_id\":\"p\"}\nnot json\n{\"session_id\":\"p\",\"event\":\"ok\",\"id\":\"partial-3\"}";
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            mixed,
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(a.status, 207, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 2);
    let rejected: Vec<(i64, String)> = a.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "missing_field".to_owned()),
            (2, "malformed_json".to_owned())
        ]
    );
    // 429 with Retry-After; a batch over the burst can never pass
    for i in 0..5 {
        let a = gw.post("/v1/beacons", TIGHT, ok_beacon.clone(), &[]).await;
        assert_eq!(a.status, 200, "request {i} is within the burst");
    }
    let a = gw.post("/v1/beacons", TIGHT, ok_beacon.clone(), &[]).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"));
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let six = serde_json::to_string(&vec![json!({"session_id": "s", "event": "e"}); 6]).unwrap();
    let a = gw.post("/v1/beacons", TIGHT, six, &[]).await;
    assert_eq!((a.status, a.code()), (413, "batch_exceeds_burst"));
    // 404 / 405 are JSON too
    let a = send(&gw, h.get(url("/v2/nothing"))).await;
    assert_eq!((a.status, a.code()), (404, "not_found"));
    let a = send(&gw, h.delete(url("/v1/beacons"))).await;
    assert_eq!((a.status, a.code()), (405, "method_not_allowed"));

    // Only the accepted events landed: 1 (origin ok) + 2 (partial) + 5 (tight) = 8.
    let landed = tokio::task::spawn_blocking({
        let (b, topic) = (broker.bootstrap(), t.0.clone());
        move || consume(&b, &topic, 8, Duration::from_secs(2))
    })
    .await
    .unwrap();
    assert_eq!(
        landed.len(),
        8,
        "nothing from a refused request reached Kafka"
    );
    let partial: HashSet<_> = landed
        .iter()
        .map(|c| c.envelope.event_id.as_str())
        .filter(|id| id.starts_with("partial"))
        .collect();
    assert_eq!(partial, HashSet::from(["partial-0", "partial-3"]));

    // The metrics saw it all.
    let metrics = gw.metrics().await;
    for needle in [
        "inlet_http_requests_total{route=\"/v1/beacons\",status=\"207\"}",
        "inlet_events_total{kind=\"beacon\",outcome=\"accepted\"}",
        "inlet_events_total{kind=\"beacon\",outcome=\"invalid\"}",
        "inlet_rate_limited_requests_total{token=\"tight\"}",
        "inlet_http_request_duration_seconds_bucket{route=\"/v1/beacons\"",
        "inlet_kafka_produce_latency_seconds_count",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixel_preflight_and_enqueue_delivery() {
    let (broker, t, gw) = broker_and_gateway("pixel", |s| {
        s.delivery = Some(inlet::config::Delivery::Enqueue)
    })
    .await;
    let h = &gw.http;
    // The pixel: token and fields in the query string, a GIF back.
    let r = h
        .get(format!("{}/v1/pixel.gif?token={WEB}&session_id=px-1&event=view&ts=1700000000000&props=%7B%22a%22%3A1%7D&_=42", gw.url))
        .header("referer", format!("{ORIGIN}/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "enqueue delivery answers 202");
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(r.bytes().await.unwrap().starts_with(b"GIF89a"));
    let a = Answer::from_response(
        h.get(format!(
            "{}/v1/pixel.gif?token={WEB}&session_id=px&event=view&colour=red",
            gw.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["rejected"][0]["code"], "unknown_field");
    // A field given twice is refused, not resolved by the last (or first) copy.
    let a = Answer::from_response(
        h.get(format!(
            "{}/v1/pixel.gif?token={WEB}&session_id=px-dup&event=view&session_id=px-other",
            gw.url
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["rejected"][0]["code"], "duplicate_field");
    // HEAD is not a GET: 405, and nothing reaches Kafka (the read-back below finds two beacons).
    let r = h
        .head(format!(
            "{}/v1/pixel.gif?token={WEB}&session_id=px-head&event=view",
            gw.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, OPTIONS");
    // sendBeacon: text/plain, token in the query string.
    let r = h
        .post(format!("{}/v1/beacons?token={WEB}", gw.url))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", ORIGIN)
        .body(json!({"session_id": "sb-1", "event": "unload"}).to_string())
        .send()
        .await
        .unwrap();
    let a = Answer::from_response(r).await;
    assert_eq!((a.status, &a.body), (202, &json!({"accepted": 1})));
    // Preflight: allowed for the browser's fetch, refused for a query token and a foreign origin.
    let r = h
        .request(reqwest::Method::OPTIONS, format!("{}/v1/beacons", gw.url))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(r.headers().contains_key("access-control-max-age"));
    let r = h
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/beacons?token={WEB}", gw.url),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let landed = tokio::task::spawn_blocking({
        let (b, topic) = (broker.bootstrap(), t.0.clone());
        move || consume(&b, &topic, 2, Duration::from_secs(2))
    })
    .await
    .unwrap();
    let mut sessions: Vec<_> = landed
        .iter()
        .map(|c| match &c.envelope.event {
            Some(Event::Beacon(b)) => (b.session_id.clone(), b.props_json.clone()),
            _ => panic!(),
        })
        .collect();
    sessions.sort();
    assert_eq!(
        sessions,
        vec![
            ("px-1".into(), r#"{"a":1}"#.into()),
            ("sb-1".into(), String::new())
        ]
    );
    assert!(gw.stop().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_in_flight_requests_and_delivers_them() {
    let (broker, t, gw) = broker_and_gateway("shutdown", |_| {}).await;
    // One request certainly in flight: its head is read before shutdown, its body comes after.
    let body = json!({"session_id": "slow", "event": "e"}).to_string();
    let mut slow = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/beacons HTTP/1.1\r\nhost: inlet\r\nauthorization: Bearer {SDK}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!([{"session_id": format!("sd-{i}"), "event": "e"}, {"session_id": format!("sd-{i}"), "event": "f"}]);
            let req = gw.http.post(format!("{}/v1/beacons", gw.url)).bearer_auth(SDK).body(body.to_string());
            match req.send().await {
                Ok(r) => Some(Answer::from_response(r).await),
                // Refused, or an idle pooled connection closed by the drain before the request
                // reached the server: never in flight, the client retries.
                Err(_) => None,
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stopping = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.stop().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut response = String::new();
    slow.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the in-flight request is answered: {response}"
    );
    let stopped = stopping.await.unwrap();
    let (mut accepted, mut answered) = (1, 0);
    for task in tasks {
        let Some(a) = task.await.unwrap() else {
            continue;
        };
        answered += 1;
        assert!(
            a.status == 200 || a.status == 503,
            "answered 200 or 503: {a:?}"
        );
        if a.status == 200 {
            accepted += a.body["accepted"].as_u64().unwrap() as usize;
        }
    }
    println!("shutdown: {answered} of 40 concurrent requests answered; {accepted} events accepted in all");
    assert!(stopped.is_ok(), "run() returns Ok after the drain");
    let landed = tokio::task::spawn_blocking({
        let (b, topic) = (broker.bootstrap(), t.0.clone());
        move || consume(&b, &topic, accepted, Duration::from_secs(1))
    })
    .await
    .unwrap();
    assert_eq!(landed.len(), accepted, "every accepted event was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_push_back_instead_of_hanging() {
    // Nothing listens on this port: librdkafka can never deliver.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t = topics("down");
    let gw = Gateway::start(&closed.to_string(), &t, |s| {
        s.delivery = Some(inlet::config::Delivery::Enqueue);
        s.enqueue_wait_ms = Some(200);
        s.shutdown_grace_ms = Some(500);
        s.librdkafka_args = vec!["queue.buffering.max.messages=3".into()];
    })
    .await;
    let r = gw
        .http
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "not ready without a broker");
    let three = serde_json::to_string(&vec![json!({"session_id": "q", "event": "e"}); 3]).unwrap();
    let a = gw.post("/v1/beacons", SDK, three, &[]).await;
    assert_eq!(
        (a.status, &a.body),
        (202, &json!({"accepted": 3})),
        "queued while there is room"
    );
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            json!({"session_id": "q", "event": "e"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (503, "queue_full"),
        "a full queue pushes back"
    );
    assert_eq!(a.header("retry-after"), Some("1"));
    drop(gw);

    let gw = Gateway::start(&closed.to_string(), &topics("down-ack"), |s| {
        s.delivery_timeout_ms = Some(300);
        s.shutdown_grace_ms = Some(500);
    })
    .await;
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            json!({"session_id": "q", "event": "e"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_eq!(a.code(), "delivery_timed_out");
    assert!(a.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registry_reloads_on_change_and_keeps_the_old_one_when_broken() {
    let (_broker, _t, gw) = broker_and_gateway("reload", |_| {}).await;
    let ok = json!({"session_id": "r", "event": "e"}).to_string();
    assert_eq!(
        gw.post("/v1/beacons", "new-secret", ok.clone(), &[])
            .await
            .status,
        401
    );
    let added = gateway::tokens_toml()
        + "\n[[token]]\nid = \"new\"\ntoken = \"new-secret\"\nproject_id = \"p\"\naccount_id = \"a\"\nkinds = [\"beacon\"]\nrate_per_sec = 10\nburst = 10\n";
    std::fs::write(&gw.tokens_file, added).unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = gw
            .post("/v1/beacons", "new-secret", ok.clone(), &[])
            .await
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "a new token works after the file changed");
    std::fs::write(&gw.tokens_file, "[[token]]\nid = \"broken\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        gw.post("/v1/beacons", "new-secret", ok.clone(), &[])
            .await
            .status,
        200,
        "a broken file keeps the previous registry"
    );
    let metrics = gw.metrics().await;
    assert!(metrics.contains("inlet_token_registry_reloads_total{result=\"failure\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_registry() {
    let dir = gateway::temp_dir("sighup");
    let path = dir.join("tokens.toml");
    std::fs::write(&path, gateway::tokens_toml()).unwrap();
    let tokens = std::sync::Arc::new(inlet::auth::Tokens::load(&path).unwrap());
    // Poll far too rarely to matter: only SIGHUP can trigger this reload.
    let watcher = tokio::spawn(tokens.clone().watch(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        &path,
        gateway::tokens_toml().replace("id = \"tight\"", "id = \"renamed\""),
    )
    .unwrap();
    assert_eq!(tokens.lookup(TIGHT).unwrap().id, "tight");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut id = String::new();
    for _ in 0..100 {
        id = tokens.lookup(TIGHT).unwrap().id.clone();
        if id == "renamed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(id, "renamed");
    watcher.abort();
}
