//! Black-box tests of the ingest path: HTTP in, a real Tansu broker (its own process, shared by
//! the tests of this binary, each with topics of its own) behind, every accepted event read back
//! from Kafka and decoded.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::answer::{Answer, Expected};
use common::encode::{brotli, gzip, zstd};
use common::gateway::{self, event_ids, Gateway, Kafka, ACCOUNT, ORIGIN, PROJECT, SDK, TIGHT, WEB};
use common::request::Request;
use common::{assert_no_failures, raw, unused_address};
use inlet::proto::envelope::Event;
use reqwest::Method;
use serde_json::{json, Value};

/// How long a test reads on after the events it expects arrived, to catch a duplicate or a
/// stray event.
const LINGER: Duration = Duration::from_secs(1);

const SESSIONS: usize = 20;
const EVENTS_PER_SESSION: usize = 15;

/// This test's topics, and a ready gateway producing to them with `tweak`ed settings.
async fn kafka_and_gateway(
    test: &str,
    tweak: impl FnOnce(&mut inlet::config::Settings),
) -> (Kafka, Gateway) {
    let kafka = Kafka::start(test).await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, tweak).await;
    gw.wait_ready().await;
    (kafka, gw)
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
            _ => (zstd(&array), vec![("content-encoding", "zstd")]),
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
async fn every_accepted_beacon_lands_once_keyed_partitioned_and_in_order() {
    let (kafka, gw) = kafka_and_gateway("e2e", |_| {}).await;
    let gw = Arc::new(gw);
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

    let beacons = kafka.beacons(sent, Duration::from_secs(2)).await;
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
    let mut per_session: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for c in &beacons {
        let (session, seq) = assert_beacon_as_sent(c);
        per_session
            .entry(session)
            .or_default()
            .push((c.offset, seq));
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
    assert_eq!(gw.get("/healthz").await.status, 200, "inlet still serves");
}

/// Checks one beacon of [`send_session`] as read back (key, partition, headers, metadata, the
/// fields sent); returns its session and sequence number.
fn assert_beacon_as_sent(c: &gateway::Consumed) -> (String, i64) {
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
    (b.session_id.clone(), seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurrences_land_keyed_by_account_in_order_with_client_uuids_as_event_ids() {
    let (kafka, gw) = kafka_and_gateway("occurrences", |_| {}).await;
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

    let occurrences = kafka.occurrences(30, LINGER).await;
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
            panic!("not an occurrence: {c:?}")
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
}

/// A request the contract refuses, named, and the answer it must get.
type Refusal = (&'static str, Request, Expected);

/// The limits the refusal cases are written against.
fn small_limits(s: &mut inlet::config::Settings) {
    s.beacons_max_body_bytes = Some(64 * 1024);
    s.beacons_max_decoded_bytes = Some(256 * 1024);
    s.beacons_max_event_bytes = Some(8 * 1024);
    s.max_events_per_request = Some(100);
}

fn ok_beacon() -> String {
    json!({"session_id": "s", "event": "e"}).to_string()
}

/// The error `message` of an answer, or of its first rejected event.
fn message(a: &Answer) -> &str {
    a.body["error"]["message"]
        .as_str()
        .or(a.body["rejected"][0]["message"].as_str())
        .unwrap_or("")
}

fn no_cors_grant(a: &Answer) -> bool {
    a.header("access-control-allow-origin").is_none()
}

/// Every refusal of the contract (401, 403, 404, 405, 413, 415, and 400 for a request, a pixel
/// or a request whose every event is invalid), under [`small_limits`].
fn refusals() -> Vec<Refusal> {
    let beacons = |token: &str, body: Vec<u8>| Request::post("/v1/beacons", token, body);
    let anonymous = |method: Method, path: &str| Request::anonymous(method, path);
    let ok = || ok_beacon().into_bytes();
    let pixel = |query: &str| anonymous(Method::GET, &format!("/v1/pixel.gif?token={WEB}&{query}"));
    let big = json!({"session_id": "s", "event": "e", "props": {"x": "y".repeat(70 * 1024)}});
    let fat = json!([{"session_id": "s", "event": "e"}, {"session_id": "s", "event": "e", "props": {"x": "y".repeat(9000)}}]);
    let many = json!(vec![json!({"session_id": "s", "event": "e"}); 101]);
    let all_invalid = json!([{"event": "e"}, {"session_id": "s", "event": "e", "color": 1}]);
    let occurrence = json!({"level": "info", "message": "m"}).to_string();
    let invalid = Expected::code(400, "invalid_events");
    vec![
        (
            "no token",
            anonymous(Method::POST, "/v1/beacons").body(ok()),
            Expected::code(401, "missing_token").also("every answer has a request id", |a| {
                a.header("x-request-id").map(str::len) == Some(32)
            }),
        ),
        (
            "no token, a request id",
            anonymous(Method::POST, "/v1/beacons")
                .header("x-request-id", "client-id-1")
                .body(ok()),
            Expected::code(401, "missing_token").also("a client's request id is kept", |a| {
                a.header("x-request-id") == Some("client-id-1")
            }),
        ),
        (
            "unknown token",
            beacons("wrong", ok()),
            Expected::code(401, "unknown_token").also("the secret is never echoed", |a| {
                !a.text().contains("wrong")
            }),
        ),
        (
            "occurrence with a beacons-only token",
            Request::post("/v1/occurrences", WEB, occurrence),
            Expected::code(403, "kind_not_allowed"),
        ),
        (
            "foreign origin",
            beacons(WEB, ok()).header("origin", "https://evil.example"),
            Expected::code(403, "origin_not_allowed")
                .also("a refused origin gets no CORS grant", no_cors_grant),
        ),
        (
            "XML",
            beacons(SDK, ok()).header("content-type", "application/xml"),
            Expected::code(415, "unsupported_media_type"),
        ),
        (
            "compress encoding",
            beacons(SDK, ok()).header("content-encoding", "compress"),
            Expected::code(415, "unsupported_content_encoding"),
        ),
        (
            "body over 64 KiB",
            beacons(SDK, big.to_string().into()),
            Expected::code(413, "body_too_large"),
        ),
        (
            "gzip decoding to 1 MiB",
            beacons(SDK, gzip(&vec![b' '; 1 << 20])).header("content-encoding", "gzip"),
            Expected::code(413, "decoded_body_too_large"),
        ),
        (
            "event over 8 KiB",
            beacons(SDK, fat.to_string().into()),
            Expected::code(413, "event_too_large").also("the message names event 1", |a| {
                message(a).contains("event 1")
            }),
        ),
        (
            "101 events",
            beacons(SDK, many.to_string().into()),
            Expected::code(413, "too_many_events"),
        ),
        (
            "malformed JSON",
            beacons(SDK, b"{\"session_id\":".to_vec()),
            Expected::code(400, "malformed_body"),
        ),
        (
            "empty body",
            beacons(SDK, Vec::new()),
            Expected::code(400, "no_events"),
        ),
        (
            "corrupt gzip",
            beacons(SDK, b"garbage".to_vec()).header("content-encoding", "gzip"),
            Expected::code(400, "malformed_encoding"),
        ),
        (
            "every event invalid",
            beacons(SDK, all_invalid.to_string().into()),
            invalid
                .clone()
                .also("accepted is 0", |a| a.body["accepted"] == 0)
                .also("event 0 lacks session_id", |a| {
                    let r = &a.body["rejected"][0];
                    r["index"] == 0
                        && r["code"] == "missing_field"
                        && message(a).contains("session_id")
                })
                .also("event 1 has an unknown field color", |a| {
                    let r = &a.body["rejected"][1];
                    r["code"] == "unknown_field"
                        && r["message"].as_str().unwrap_or("").contains("color")
                }),
        ),
        (
            "pixel with an unknown field",
            pixel("session_id=px&event=view&colour=red"),
            invalid.clone().also("it is an unknown_field", |a| {
                a.body["rejected"][0]["code"] == "unknown_field"
            }),
        ),
        // A field given twice is refused, not resolved by the last (or first) copy.
        (
            "pixel with a field twice",
            pixel("session_id=px-dup&event=view&session_id=px-other"),
            invalid.clone().also("it is a duplicate_field", |a| {
                a.body["rejected"][0]["code"] == "duplicate_field"
            }),
        ),
        // HEAD is not a GET.
        (
            "HEAD on the pixel",
            anonymous(
                Method::HEAD,
                &format!("/v1/pixel.gif?token={WEB}&session_id=px-head&event=view"),
            ),
            Expected::status(405).also("Allow names GET and OPTIONS", |a| {
                a.header("allow") == Some("GET, OPTIONS")
            }),
        ),
        (
            "preflight with a query token from a foreign origin",
            anonymous(Method::OPTIONS, &format!("/v1/beacons?token={WEB}"))
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "POST"),
            Expected::status(403).also("no CORS grant", no_cors_grant),
        ),
        // 404 / 405 are JSON too.
        (
            "unknown path",
            anonymous(Method::GET, "/v2/nothing"),
            Expected::code(404, "not_found"),
        ),
        (
            "DELETE on beacons",
            anonymous(Method::DELETE, "/v1/beacons"),
            Expected::code(405, "method_not_allowed"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_contract_gets_its_status_and_code_and_produces_nothing() {
    let (kafka, gw) = kafka_and_gateway("refusals", small_limits).await;
    let mut failures = Vec::new();
    for (name, request, expected) in refusals() {
        failures.extend(expected.failures(name, &gw.request(&request).await));
    }
    assert_no_failures("refusals", &failures);
    let (beacons, occurrences) = kafka.both((0, 0), Duration::from_secs(2)).await;
    let none = Vec::<&str>::new();
    assert_eq!(event_ids(&beacons), none, "no refused beacon reached Kafka");
    assert_eq!(
        event_ids(&occurrences),
        none,
        "no refused occurrence reached Kafka"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_passes_the_preflight_gets_a_cors_grant_and_its_event_lands() {
    let (kafka, gw) = kafka_and_gateway("cors", |_| {}).await;
    // The preflight of the browser's fetch: an Authorization header.
    let preflight = Request::anonymous(Method::OPTIONS, "/v1/beacons")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        );
    let a = gw.request(&preflight).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(a
        .header("access-control-allow-headers")
        .unwrap_or("")
        .contains("authorization"));
    assert!(a.header("access-control-max-age").is_some());

    let beacon = json!({"session_id": "s", "event": "e", "id": "from-origin"}).to_string();
    let a = gw
        .post("/v1/beacons", WEB, beacon, &[("origin", ORIGIN)])
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(ORIGIN));
    let landed = kafka.beacons(1, LINGER).await;
    assert_eq!(event_ids(&landed), ["from-origin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_invalid_request_is_207_and_only_its_valid_events_land() {
    let (kafka, gw) = kafka_and_gateway("partial", |_| {}).await;
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
    let landed = kafka.beacons(2, LINGER).await;
    assert_eq!(event_ids(&landed), ["partial-0", "partial-3"]);

    // The metrics saw it.
    assert_metrics_hold(
        &gw,
        &[
            "inlet_http_requests_total{route=\"/v1/beacons\",status=\"207\"}",
            "inlet_events_total{kind=\"beacon\",outcome=\"accepted\"}",
            "inlet_events_total{kind=\"beacon\",outcome=\"invalid\"}",
            "inlet_http_request_duration_seconds_bucket{route=\"/v1/beacons\"",
            "inlet_kafka_produce_latency_seconds_count",
        ],
    )
    .await;
}

async fn assert_metrics_hold(gw: &Gateway, needles: &[&str]) {
    let metrics = gw.metrics().await;
    for needle in needles {
        assert!(metrics.contains(needle), "metrics lack {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_rate_a_token_gets_429_with_retry_after_and_a_batch_over_its_burst_413() {
    let (kafka, gw) = kafka_and_gateway("rate", |_| {}).await;
    for i in 0..5 {
        let a = gw.post("/v1/beacons", TIGHT, ok_beacon(), &[]).await;
        assert_eq!(a.status, 200, "request {i} is within the burst");
    }
    let a = gw.post("/v1/beacons", TIGHT, ok_beacon(), &[]).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited"));
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // A batch over the burst can never pass.
    let six = json!(vec![json!({"session_id": "s", "event": "e"}); 6]).to_string();
    let a = gw.post("/v1/beacons", TIGHT, six, &[]).await;
    assert_eq!((a.status, a.code()), (413, "batch_exceeds_burst"));
    let landed = kafka.beacons(5, LINGER).await;
    assert_eq!(landed.len(), 5, "only the five accepted events landed");
    assert_metrics_hold(&gw, &["inlet_rate_limited_requests_total{token=\"tight\"}"]).await;
}

/// Settings of a gateway that answers once events are queued (202).
fn enqueue(s: &mut inlet::config::Settings) {
    s.delivery = Some(inlet::config::Delivery::Enqueue);
}

/// The (session, props) of each beacon in `landed`, sorted.
fn sessions_and_props(landed: &[gateway::Consumed]) -> Vec<(String, String)> {
    let mut sessions: Vec<_> = landed
        .iter()
        .map(|c| match &c.envelope.event {
            Some(Event::Beacon(b)) => (b.session_id.clone(), b.props_json.clone()),
            other => panic!("not a beacon: {other:?}"),
        })
        .collect();
    sessions.sort();
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pixel_answers_a_gif_and_its_event_lands() {
    let (kafka, gw) = kafka_and_gateway("pixel", enqueue).await;
    // The pixel: token and fields in the query string, a GIF back.
    let query = format!(
        "token={WEB}&session_id=px-1&event=view&ts=1700000000000&props=%7B%22a%22%3A1%7D&_=42"
    );
    let a = gw
        .send(
            gw.http
                .get(gw.url_of(&format!("/v1/pixel.gif?{query}")))
                .header("referer", format!("{ORIGIN}/page")),
        )
        .await;
    assert_eq!(a.status, 202, "enqueue delivery answers 202");
    assert_eq!(a.header("content-type"), Some("image/gif"));
    assert!(a.bytes.starts_with(b"GIF89a"));
    let landed = kafka.beacons(1, LINGER).await;
    assert_eq!(
        sessions_and_props(&landed),
        [("px-1".to_owned(), r#"{"a":1}"#.to_owned())]
    );
    assert!(gw.stop().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_beacon_with_the_token_in_the_query_string_is_accepted_and_lands() {
    let (kafka, gw) = kafka_and_gateway("sendbeacon", enqueue).await;
    // sendBeacon: text/plain, token in the query string.
    let request = Request::anonymous(Method::POST, &format!("/v1/beacons?token={WEB}"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", ORIGIN)
        .body(json!({"session_id": "sb-1", "event": "unload"}).to_string());
    let a = gw.request(&request).await;
    assert_eq!((a.status, &a.body), (202, &json!({"accepted": 1})));
    let landed = kafka.beacons(1, LINGER).await;
    assert_eq!(
        sessions_and_props(&landed),
        [("sb-1".to_owned(), String::new())]
    );
    assert!(gw.stop().await.is_ok());
}

/// How many requests are certainly in flight when the shutdown begins.
const IN_FLIGHT: usize = 8;
/// How many more race the shutdown.
const RACING: usize = 40;

/// A beacon request whose head and first bytes were sent; [`SlowRequest::finish`] sends the rest.
struct SlowRequest {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowRequest {
    async fn start(gw: &Gateway, id: &str) -> SlowRequest {
        let body = json!({"session_id": "slow", "event": "e", "id": id}).to_string();
        let head = raw::post_head(
            "/v1/beacons",
            SDK,
            &format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            ),
        );
        let mut stream = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..10]).await.unwrap();
        SlowRequest {
            stream,
            rest: body.as_bytes()[10..].to_vec(),
        }
    }

    /// Sends the rest of the body and reads the answer (the server closes the connection after
    /// it, as it is shutting down).
    async fn finish(mut self) -> Answer {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut response = String::new();
        let read = self.stream.read_to_string(&mut response);
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the answer came within 30 s")
            .unwrap();
        Answer::from_raw(&response)
    }
}

/// A two-event request racing the shutdown: its answer, or `None` if it never got one.
fn racing_request(gw: &Arc<Gateway>, i: usize) -> tokio::task::JoinHandle<Option<Answer>> {
    let gw = gw.clone();
    tokio::spawn(async move {
        let body = json!([
            {"session_id": format!("sd-{i}"), "event": "e", "id": format!("sd-{i}-a")},
            {"session_id": format!("sd-{i}"), "event": "f", "id": format!("sd-{i}-b")},
        ]);
        match Request::post("/v1/beacons", SDK, body.to_string())
            .build(&gw.http, &gw.url)
            .send()
            .await
        {
            Ok(r) => Some(Answer::from_response(r).await),
            // Refused, or reset in the listener's backlog, or an idle pooled connection closed by
            // the drain before the request reached the server: never in flight, the client
            // retries. (Had the server read it, it would have answered: see the Kafka check.)
            Err(_) => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_in_flight_requests_and_delivers_them() {
    let (kafka, gw) = kafka_and_gateway("shutdown", |_| {}).await;
    // Requests certainly in flight: their heads are read before shutdown, their bodies come after.
    let mut slow = Vec::new();
    for i in 0..IN_FLIGHT {
        slow.push(SlowRequest::start(&gw, &format!("slow-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let gw = Arc::new(gw);
    let racing: Vec<_> = (0..RACING).map(|i| racing_request(&gw, i)).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stopping = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.stop().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Every event answered 200, by id.
    let mut accepted = Vec::new();
    for (i, request) in slow.into_iter().enumerate() {
        let a = request.finish().await;
        assert_eq!(
            (a.status, &a.body),
            (200, &json!({"accepted": 1})),
            "the in-flight request {i} is answered: {a:?}"
        );
        accepted.push(format!("slow-{i}"));
    }
    let stopped = stopping.await.unwrap();
    let (mut answered, mut shut_out) = (0, 0);
    for (i, task) in racing.into_iter().enumerate() {
        let Some(a) = task.await.unwrap() else {
            continue;
        };
        answered += 1;
        if a.status == 200 {
            assert_eq!(a.body, json!({"accepted": 2}), "request {i}");
            accepted.extend([format!("sd-{i}-a"), format!("sd-{i}-b")]);
        } else {
            // It arrived after the drain began.
            assert_eq!(
                (a.status, a.code()),
                (503, "shutting_down"),
                "request {i}: {a:?}"
            );
            shut_out += 1;
        }
    }
    println!(
        "shutdown: {IN_FLIGHT} requests in flight answered 200; of {RACING} racing the \
         shutdown, {answered} answered ({shut_out} with 503 shutting_down); {} events accepted",
        accepted.len()
    );
    assert!(stopped.is_ok(), "run() returns Ok after the drain");
    let landed = kafka.beacons(accepted.len(), LINGER).await;
    accepted.sort();
    assert_eq!(
        event_ids(&landed),
        accepted,
        "Kafka holds every event answered 200, once, and no other (a request the server read \
         but did not answer would show here)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_a_full_queue_pushes_back_with_503_queue_full() {
    // Nothing listens there: librdkafka can never deliver.
    let gw = Gateway::start(&unused_address(), &gateway::topics("down"), |s| {
        s.delivery = Some(inlet::config::Delivery::Enqueue);
        s.enqueue_wait_ms = Some(200);
        s.shutdown_grace_ms = Some(500);
        s.librdkafka_args = vec!["queue.buffering.max.messages=3".into()];
    })
    .await;
    assert_eq!(
        gw.get("/readyz").await.status,
        503,
        "not ready without a broker"
    );
    let three = json!(vec![json!({"session_id": "q", "event": "e"}); 3]).to_string();
    let a = gw.post("/v1/beacons", SDK, three, &[]).await;
    assert_eq!(
        (a.status, &a.body),
        (202, &json!({"accepted": 3})),
        "queued while there is room"
    );
    let a = gw.post("/v1/beacons", SDK, ok_beacon(), &[]).await;
    assert_eq!(
        (a.status, a.code()),
        (503, "queue_full"),
        "a full queue pushes back"
    );
    assert_eq!(a.header("retry-after"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_broker_ack_delivery_answers_503_delivery_timed_out() {
    let gw = Gateway::start(&unused_address(), &gateway::topics("down-ack"), |s| {
        s.delivery_timeout_ms = Some(300);
        s.shutdown_grace_ms = Some(500);
    })
    .await;
    let a = gw.post("/v1/beacons", SDK, ok_beacon(), &[]).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_eq!(a.code(), "delivery_timed_out");
    assert!(a.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registry_reloads_on_change_and_keeps_the_old_one_when_broken() {
    let (_kafka, gw) = kafka_and_gateway("reload", |_| {}).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_s_own_topics_take_its_events_and_a_missing_one_is_a_clear_503() {
    let (kafka, gw) = kafka_and_gateway("tenant-topics", |_| {}).await;
    let own = format!("{}.acme", kafka.topics.0);
    let missing = format!("{}.nowhere", kafka.topics.0);
    gateway::create_topics(&kafka.brokers(), &[&own]).await;
    let tenant = |id: &str, topic: &str| {
        format!(
            "\n[[token]]\nid = \"{id}\"\ntoken = \"{id}-secret\"\nproject_id = \"p\"\n\
             account_id = \"{id}\"\nkinds = [\"beacon\", \"occurrence\"]\nrate_per_sec = 100\n\
             burst = 100\ntopics = {{ beacon = \"{topic}\" }}\n"
        )
    };
    let registry = gateway::tokens_toml() + &tenant("acme", &own) + &tenant("lost", &missing);
    std::fs::write(&gw.tokens_file, registry).unwrap();
    let beacon = |id: &str| json!({"session_id": "t", "event": "e", "id": id}).to_string();
    // The registry is re-read within a second or so: until then the token is unknown.
    let mut answer = gw
        .post("/v1/beacons", "acme-secret", beacon("acme-1"), &[])
        .await;
    for _ in 0..100 {
        if answer.status != 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = gw
            .post("/v1/beacons", "acme-secret", beacon("acme-1"), &[])
            .await;
    }
    assert_eq!(answer.status, 200, "{answer:?}");
    // Its occurrences name no topic of their own: they go to the lane's.
    let occurrence = json!({"level": "error", "message": "m"}).to_string();
    let answer = gw
        .post("/v1/occurrences", "acme-secret", occurrence, &[])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let landed = gateway::landed(&kafka.brokers(), &own, 1, Duration::from_millis(500)).await;
    assert_eq!(gateway::event_ids(&landed), ["acme-1"]);
    assert_eq!(landed[0].envelope.token_id, "acme");
    let (beacons, occurrences) = kafka.both((0, 1), Duration::from_millis(500)).await;
    assert!(
        beacons.is_empty(),
        "the tenant's beacon went to the lane's topic too"
    );
    assert_eq!(occurrences[0].envelope.token_id, "acme");

    // A topic that does not exist: 503 naming it, with a long Retry-After, and /readyz says so.
    let answer = gw
        .post("/v1/beacons", "lost-secret", beacon("lost-1"), &[])
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (503, "topic_missing"),
        "{answer:?}"
    );
    assert!(message(&answer).contains(&missing), "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("30"));
    let ready = gw.get("/readyz").await;
    assert_eq!(ready.status, 200, "the other tokens are served");
    assert!(ready.text().contains(&missing), "{}", ready.text());
}
