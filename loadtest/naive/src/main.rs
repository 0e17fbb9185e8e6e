//! The naive gateway, a baseline for loadtest/bench, and two helpers.
//!
//! ```text
//! inlet-naive serve --listen 127.0.0.1:8082 --brokers 127.0.0.1:9092 --topic T
//! inlet-naive create-topic --brokers B --topic T [--partitions 512] [--property KEY=VALUE ...]
//! inlet-naive direct --brokers B --topic T --bodies FILE [--concurrency 64] [--seconds 10]
//!                    [--raw [--chunk-bytes N] [--sessions N]]
//! inlet-naive count --brokers B --topic T [--spans] [--from-ms MS --to-ms MS] [--seconds S]
//! ```
//!
//! `serve`: `POST /v1/beacons` takes one beacon JSON object (or an array of them), parses it
//! with serde_json, and produces each beacon as-is (its JSON text) keyed by `session_id`, one
//! `FutureProducer::send` per event; it answers 200 `{"accepted":N}` once every delivery future
//! has resolved, 400 for a body that is not JSON, 503 when a delivery failed. No tokens, no
//! validation, no compression decoding, no protobuf: what a first version would do.
//!
//! `direct`: the broker-side limit. Reads a line-per-request file of JSON arrays (gen.py's
//! batch-50), turns every line into its messages up front, prints `READY`, waits for a line on
//! stdin, then runs `concurrency` tasks that each send one batch's messages and await all of
//! their delivery futures, for `seconds`. Prints one JSON line of results, then waits for stdin
//! to close before exiting (so the bench can read /proc after the run).
//!
//! `direct --raw`: the same for session recordings. Every line of FILE is one opaque payload
//! (one recording, its bytes as they are, e.g. base64 text), cut up front into messages of at
//! most `--chunk-bytes` (default: the whole line as one message), as inlet cuts a recording into
//! chunks; each request sends one payload's messages, all keyed by one session drawn at random
//! per request from `--sessions` (default 100000) as `sess-NNNNNNNN`, and awaits them all. The
//! results also give the payload bytes delivered (`bytes`) and the requests of which a message
//! failed (`failed_requests`).
//!
//! `count`: what reached the topic. Reads every partition from its start to its end (until
//! librdkafka reports each at EOF: run it once nothing produces any more) and prints one JSON
//! line: `records`, and `events` (each record one event; with `--spans` each record is an OTLP
//! `ExportTraceServiceRequest`, as inlet's traces lane writes them, and its events are the spans
//! in it, counted by walking the protobuf: resource_spans (1) > scope_spans (2) > spans (2));
//! with `--from-ms` and `--to-ms`, also `window_records` and `window_events`, of the records
//! whose timestamp (librdkafka's CreateTime: when the producer was handed them) is in that
//! interval; `undecodable` counts records that were no such message, `unfinished_partitions`
//! the partitions not read to their end within `--seconds` (default 600). It reads to EOF, not
//! to the end offsets ListOffsets gives: Tansu 0.6 answers those with the last record batch's
//! base offset, not the offset after its last record.
//!
//! `create-topic --property KEY=VALUE` (repeatable) sets a librdkafka property on its clients:
//! the security ones (`security.protocol`, `ssl.ca.location`, `sasl.*`) of a broker behind TLS
//! or SASL (the bench's `sec-*` scenarios).
//!
//! The producer settings are inlet's defaults (src/sink/kafka/properties.rs `producer_properties`).

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn need(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| {
        eprintln!("inlet-naive: missing {name}");
        std::process::exit(2)
    })
}

/// inlet's default producer properties (delivery = ack).
fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "inlet-naive")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.codec", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.kbytes", "131072")
        .set("queue.buffering.max.messages", "100000")
        .set("message.max.bytes", "1001024")
        .create()
        .unwrap_or_else(|e| {
            eprintln!("inlet-naive: producer: {e}");
            std::process::exit(1)
        })
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .expect("tokio runtime")
}

/// A beacon's key and value: `session_id` (empty when absent) and the JSON text as received.
fn message(event: &Value) -> (String, Vec<u8>) {
    let key = event
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    (key, serde_json::to_vec(event).expect("serializable"))
}

/// Sends every message and awaits every delivery; the number delivered.
async fn produce_all(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) -> usize {
    produce_keyed(producer, topic, messages, None).await.0
}

/// Sends every message (each under `key` when given, else its own) and awaits every delivery;
/// the number delivered and their payload bytes.
async fn produce_keyed(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(String, Vec<u8>)],
    key: Option<&str>,
) -> (usize, usize) {
    let sends = messages.iter().map(|(own, value)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key.unwrap_or(own.as_str()))
                .payload(value.as_slice()),
            Duration::from_secs(1),
        )
    });
    futures::future::join_all(sends)
        .await
        .iter()
        .zip(messages)
        .filter(|(r, _)| r.is_ok())
        .fold((0, 0), |(n, bytes), (_, (_, value))| (n + 1, bytes + value.len()))
}

/// A recording's messages: `payload` cut into chunks of at most `chunk_bytes` (the key is given
/// per request).
fn chunked(payload: &[u8], chunk_bytes: usize) -> Vec<(String, Vec<u8>)> {
    payload
        .chunks(chunk_bytes.max(1))
        .map(|chunk| (String::new(), chunk.to_vec()))
        .collect()
}

/// xorshift64*: a session per request, with no dependency for it.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

struct App {
    producer: FutureProducer,
    topic: String,
}

async fn beacons(State(app): State<Arc<App>>, body: Bytes) -> (StatusCode, String) {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{{\"error\":\"{e}\"}}")),
    };
    let messages: Vec<(String, Vec<u8>)> = match &parsed {
        Value::Array(events) => events.iter().map(message).collect(),
        event => {
            // A single event is produced byte for byte as received.
            let key = event.get("session_id").and_then(Value::as_str).unwrap_or("");
            vec![(key.to_owned(), body.to_vec())]
        }
    };
    let ok = produce_all(&app.producer, &app.topic, &messages).await;
    if ok == messages.len() {
        (StatusCode::OK, format!("{{\"accepted\":{ok}}}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"accepted\":{ok},\"failed\":{}}}", messages.len() - ok),
        )
    }
}

fn serve(args: &[String]) {
    let listen = arg(args, "--listen").unwrap_or_else(|| "127.0.0.1:8082".into());
    let brokers = need(args, "--brokers");
    let topic = need(args, "--topic");
    runtime("naive-worker").block_on(async move {
        let app = Arc::new(App {
            producer: producer(&brokers),
            topic,
        });
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/v1/beacons", post(beacons))
            .layer(axum::extract::DefaultBodyLimit::max(10 << 20))
            .with_state(app.clone());
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .expect("bind");
        eprintln!("inlet-naive listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .expect("serve");
        let _ = app.producer.flush(Duration::from_secs(5));
    });
}

fn create_topic(args: &[String]) {
    let brokers = need(args, "--brokers");
    let topic = need(args, "--topic");
    let partitions: i32 = arg(args, "--partitions")
        .map(|p| p.parse().expect("--partitions"))
        .unwrap_or(512);
    // Every `--property KEY=VALUE`, for both clients below.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &brokers);
    for (i, a) in args.iter().enumerate() {
        if a == "--property" {
            let kv = args.get(i + 1).and_then(|kv| kv.split_once('=')).unwrap_or_else(|| {
                eprintln!("inlet-naive: --property takes KEY=VALUE");
                std::process::exit(2)
            });
            config.set(kv.0, kv.1);
        }
    }
    runtime("naive-admin").block_on(async move {
        let admin: AdminClient<DefaultClientContext> =
            config.create().expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("create topics");
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => {
                    eprintln!("creating {t}: {e}");
                    std::process::exit(1)
                }
            }
        }
        let p: FutureProducer = config.create().expect("metadata client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let md = p.client().fetch_metadata(Some(&topic), Duration::from_secs(5));
            if md.is_ok_and(|md| md.topics()[0].partitions().len() == partitions as usize) {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("topic {topic} never showed {partitions} partitions");
                std::process::exit(1)
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("topic {topic}: {partitions} partitions");
    });
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn direct(args: &[String]) {
    let brokers = need(args, "--brokers");
    let topic = need(args, "--topic");
    let bodies = need(args, "--bodies");
    let concurrency: usize = arg(args, "--concurrency")
        .map(|c| c.parse().expect("--concurrency"))
        .unwrap_or(64);
    let seconds: f64 = arg(args, "--seconds")
        .map(|s| s.parse().expect("--seconds"))
        .unwrap_or(10.0);
    let raw = args.iter().any(|a| a == "--raw");
    let chunk_bytes: usize = arg(args, "--chunk-bytes")
        .map(|c| c.parse().expect("--chunk-bytes"))
        .unwrap_or(usize::MAX);
    let sessions: u64 = arg(args, "--sessions")
        .map(|s| s.parse().expect("--sessions"))
        .unwrap_or(100_000)
        .max(1);
    let text = std::fs::read_to_string(&bodies).expect("--bodies");
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let batches: Vec<Vec<(String, Vec<u8>)>> = if raw {
        lines.map(|line| chunked(line.as_bytes(), chunk_bytes)).collect()
    } else {
        lines
            .map(|line| match serde_json::from_str::<Value>(line).expect("JSON line") {
                Value::Array(events) => events.iter().map(message).collect(),
                event => vec![message(&event)],
            })
            .collect()
    };
    drop(text);
    let batches = Arc::new(batches);
    let rt = runtime("direct-worker");
    let producer = Arc::new(producer(&brokers));
    // Warm up: metadata for the topic, so the first batches do not wait on it.
    rt.block_on(async {
        let key = raw.then_some("sess-00000000");
        produce_keyed(&producer, &topic, &batches[0], key).await;
    });
    println!("READY");
    let mut line = String::new();
    let stdin = std::io::stdin();
    let _ = stdin.lock().read_line(&mut line);

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let producer = producer.clone();
                let batches = batches.clone();
                let topic = topic.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let (mut events, mut failed, mut bytes, mut failed_requests) = (0, 0, 0, 0);
                    let mut random = 0x9e37_79b9_7f4a_7c15u64 ^ ((t as u64 + 1) * 7919);
                    let mut i = t;
                    while Instant::now() < deadline {
                        let batch = &batches[i % batches.len()];
                        i += concurrency;
                        let session = raw.then(|| {
                            format!("sess-{:08}", next_random(&mut random) % sessions)
                        });
                        let t0 = Instant::now();
                        let (ok, sent) =
                            produce_keyed(&producer, &topic, batch, session.as_deref()).await;
                        lat.push(t0.elapsed().as_micros() as u64);
                        events += ok;
                        bytes += sent;
                        failed += batch.len() - ok;
                        failed_requests += usize::from(ok < batch.len());
                    }
                    (lat, events, failed, bytes, failed_requests)
                })
            })
            .collect();
        let mut all = (Vec::new(), 0, 0, 0, 0);
        for t in tasks {
            let (lat, e, f, b, fr) = t.await.expect("task");
            all.0.extend(lat);
            all.1 += e;
            all.2 += f;
            all.3 += b;
            all.4 += fr;
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut lat, events, failed, bytes, failed_requests) = results;
    lat.sort_unstable();
    println!(
        "{{\"requests\":{},\"events\":{},\"failed_events\":{},\"failed_requests\":{},\"bytes\":{},\"elapsed_s\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
        lat.len(),
        events,
        failed,
        failed_requests,
        bytes,
        elapsed,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9)
    );
    // Stay alive (idle) until stdin closes, so /proc can be read after the run.
    let mut rest = String::new();
    while stdin.lock().read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
        rest.clear();
    }
}

/// Reads a protobuf varint at `*at`, moving past it.
fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The fields of one protobuf message: (field number, the bytes of a length-delimited
/// value, else empty), or None when it is no message.
fn fields(buf: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => drop(varint(buf, &mut at)?),
            1 => at += 8,
            2 => {
                let len = varint(buf, &mut at)? as usize;
                let end = at.checked_add(len).filter(|&e| e <= buf.len())?;
                out.push((number, &buf[at..end]));
                at = end;
                continue;
            }
            5 => at += 4,
            _ => return None,
        }
        if at > buf.len() {
            return None;
        }
        out.push((number, &[][..]));
    }
    Some(out)
}

/// The spans in an `ExportTraceServiceRequest`: resource_spans (1) > scope_spans (2) >
/// spans (2).
fn spans_in(request: &[u8]) -> Option<u64> {
    let mut n = 0;
    for (number, resource) in fields(request)? {
        if number != 1 {
            continue;
        }
        for (number, scope) in fields(resource)? {
            if number != 2 {
                continue;
            }
            n += fields(scope)?.iter().filter(|(number, _)| *number == 2).count() as u64;
        }
    }
    Some(n)
}

fn count(args: &[String]) {
    let brokers = need(args, "--brokers");
    let topic = need(args, "--topic");
    let spans = args.iter().any(|a| a == "--spans");
    let ms = |name: &str| arg(args, name).map(|v| v.parse::<i64>().expect(name));
    let window = ms("--from-ms").zip(ms("--to-ms"));
    let seconds: u64 = arg(args, "--seconds")
        .map(|s| s.parse().expect("--seconds"))
        .unwrap_or(600);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "inlet-bench-count")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // An empty partition's fetch is answered after 50 ms, not librdkafka's 500.
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap_or_else(|e| {
            eprintln!("inlet-naive: consumer: {e}");
            std::process::exit(1)
        });
    let md = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap_or_else(|e| {
            eprintln!("inlet-naive: metadata of {topic}: {e}");
            std::process::exit(1)
        });
    let partitions = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut records, mut events, mut window_records, mut window_events, mut undecodable) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
    let mut at_end = vec![false; partitions];
    let deadline = started + Duration::from_secs(seconds);
    while at_end.iter().any(|e| !e) && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = match msg {
            Ok(msg) => msg,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                if let Some(e) = at_end.get_mut(p as usize) {
                    *e = true;
                }
                continue;
            }
            Err(e) => {
                eprintln!("inlet-naive: consume: {e}");
                continue;
            }
        };
        records += 1;
        let n = if spans {
            spans_in(msg.payload().unwrap_or_default()).unwrap_or_else(|| {
                undecodable += 1;
                0
            })
        } else {
            1
        };
        events += n;
        if let Some(t) = msg.timestamp().to_millis() {
            first_ms = first_ms.min(t);
            last_ms = last_ms.max(t);
            if window.is_some_and(|(a, b)| t >= a && t < b) {
                window_records += 1;
                window_events += n;
            }
        }
    }
    let unfinished = at_end.iter().filter(|e| !**e).count();
    println!(
        "{{\"records\":{records},\"events\":{events},\"window_records\":{window_records},\"window_events\":{window_events},\"undecodable\":{undecodable},\"unfinished_partitions\":{unfinished},\"first_ms\":{},\"last_ms\":{},\"partitions\":{partitions},\"elapsed_s\":{:.3}}}",
        if records > 0 { first_ms } else { 0 },
        if records > 0 { last_ms } else { 0 },
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args),
        Some("create-topic") => create_topic(&args),
        Some("direct") => direct(&args),
        Some("count") => count(&args),
        _ => {
            eprintln!("usage: inlet-naive serve|create-topic|direct|count ... (see src/main.rs)");
            std::process::exit(2)
        }
    }
}
