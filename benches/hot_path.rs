//! Micro-benchmarks of the request path's pure steps, per event: split a body into events,
//! parse and validate one (or the pixel's query string), convert it to its envelope and encode
//! it, derive its key, and look up its token. `cargo bench --bench hot_path`; under `cargo test` each runs once, as a check.
//!
//! The bodies are the load tests' shapes: an 800-byte beacon, a batch of 50 of them, and a
//! 2.5 KB occurrence with a stack trace; and the SDK adapters' recorded payloads, translated.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inlet::auth::Registry;
use inlet::decode::split_events;
use inlet::event::{self, Meta};
use inlet::key::{partition, shard_key};
use inlet::lane::Lane;
use prost::Message;

/// An 800-byte beacon shaped as loadtest/gen.py writes them.
fn beacon(session: u32) -> String {
    let pad = "lorem ipsum dolor sit amet ".repeat(13);
    let b = serde_json::json!({
        "session_id": format!("sess-{session:08}"),
        "event": "page_view",
        "ts": 1_763_900_000_000u64,
        "id": format!("0190f6a4-0000-7000-8000-{session:012}"),
        "url": "https://www.acme.example/products/42?utm_source=loadtest&ref=EPyYngFb",
        "referrer": "https://news.example/",
        "title": "Launch week - Acme Blog",
        "user_id": "user-024606",
        "props": {"seq": 1, "plan": "free", "viewport": "1280x720", "locale": "fr-FR",
            "experiment": {"id": "exp-UZoL", "variant": "A"}, "pad": pad},
    });
    b.to_string()
}

fn occurrence() -> String {
    let frames: Vec<_> = (0..12)
        .map(|i| {
            serde_json::json!({"filename": format!("/srv/app/src/module_{i}.py"),
                "lineno": 100 + i, "colno": 7, "method": format!("handler_{i}")})
        })
        .collect();
    serde_json::json!({
        "level": "error",
        "uuid": "0190f6a4-0000-7000-8000-000000000001",
        "environment": "production",
        "platform": "python",
        "language": "python",
        "code_version": "3f2a9c1",
        "exception": {"class": "KeyError", "message": "'user_id'", "frames": frames},
        "custom": {"request_id": "r-42", "region": "eu-west-1"},
    })
    .to_string()
}

fn meta() -> Meta {
    Meta {
        received_at_ms: 1_763_900_000_123,
        project_id: "proj-7".into(),
        account_id: "acct-42".into(),
        token_id: "acme-web".into(),
        client_ip: "203.0.113.0".into(),
        source: inlet::event::Source::Inlet,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0".into(),
        topic: None,
    }
}

fn bench(c: &mut Criterion) {
    let registry = Registry::dev();
    let token = registry
        .lookup(inlet::auth::DEV_TOKEN)
        .expect("dev token")
        .clone();
    let one = beacon(7);
    let batch = format!("[{}]", (0..50).map(beacon).collect::<Vec<_>>().join(","));
    let occ = occurrence();
    let meta = meta();

    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Elements(50));
    g.bench_function("batch-50", |b| {
        b.iter(|| split_events(black_box(batch.as_bytes()), 1000).map(|e| e.len()))
    });
    g.finish();

    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Elements(1));
    for (name, kind, raw) in [
        ("beacon-800", Lane::BEACON, &one),
        ("occurrence-2k5", Lane::OCCURRENCE, &occ),
    ] {
        g.bench_function(format!("parse+validate/{name}"), |b| {
            b.iter(|| event::parse(kind, black_box(raw)))
        });
        let valid = event::parse(kind, raw).expect("a valid event");
        g.bench_function(format!("envelope+encode/{name}"), |b| {
            b.iter(|| event::envelope(black_box(valid.clone()), &meta).encode_to_vec())
        });
        g.bench_function(format!("key/{name}"), |b| {
            b.iter(|| {
                partition(
                    shard_key(kind, black_box(&valid.body), &token.account_id, &token.id)
                        .as_bytes(),
                    512,
                )
            })
        });
    }
    // The pixel's beacon, read from its query string.
    let query = "token=dev&_=1763900000000&session_id=sess-00000007&event=page_view\
        &ts=1763900000000&url=https%3A%2F%2Fwww.acme.example%2Fproducts%2F42\
        &title=Launch+week+-+Acme+Blog&props=%7B%22plan%22%3A%22free%22%2C%22seq%22%3A1%7D";
    event::beacon::from_query(query).expect("a valid pixel beacon");
    g.bench_function("from_query/pixel", |b| {
        b.iter(|| event::beacon::from_query(black_box(query)))
    });
    // An id for an event the client gave none, and for every request: from the thread's
    // generator, against uuid's own (a getrandom system call each).
    g.bench_function("new id", |b| b.iter(inlet::id::uuid_v7));
    g.bench_function("new id (uuid::now_v7, for comparison)", |b| {
        b.iter(uuid::Uuid::now_v7)
    });
    g.bench_function("token lookup", |b| {
        b.iter(|| registry.lookup(black_box(inlet::auth::DEV_TOKEN)).is_some())
    });
    g.finish();
}

/// The SDK adapters' translations, per event, beside the native parse of the same events (their
/// twins under tests/sdk/payloads/): a Sentry envelope and a Rollbar item of a Python exception,
/// and a posthog-js batch of 50 as loadtest/bench's posthog-50 builds it.
fn sdk(c: &mut Criterion) {
    use serde_json::{json, Value};
    let payload = |path: &str| {
        let path = format!("{}/tests/sdk/payloads/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let mut g = c.benchmark_group("sdk");
    g.throughput(Throughput::Elements(1));
    let envelope = payload("sentry/python-exception.envelope");
    g.bench_function("sentry/envelope+event", |b| {
        b.iter(|| {
            let e = inlet::sdk::sentry::envelope(black_box(&envelope)).unwrap();
            inlet::sdk::sentry::event(e.events[0], e.event_id)
        })
    });
    let twin = String::from_utf8(payload("sentry/python-exception.occurrence.json")).unwrap();
    g.bench_function("sentry/native twin", |b| {
        b.iter(|| event::parse(Lane::OCCURRENCE, black_box(twin.trim_end())))
    });
    let item = payload("rollbar/python-exception.json");
    g.bench_function("rollbar/item", |b| {
        b.iter(|| inlet::sdk::rollbar::item(black_box(&item)).unwrap())
    });
    let recorded: Value = serde_json::from_slice(&payload("posthog/js-batch.json")).unwrap();
    let events: Vec<Value> = (0..50)
        .map(|i| {
            let mut event = recorded["batch"][i % 3].clone();
            event["properties"]["$session_id"] = json!("sess-1");
            event["properties"]["token"] = json!("k");
            event
        })
        .collect();
    let body = json!({"api_key": "k", "batch": events}).to_string();
    g.throughput(Throughput::Elements(50));
    g.bench_function("posthog/read+translate 50", |b| {
        b.iter(|| {
            let read = inlet::sdk::posthog::read(black_box(body.as_bytes()), 1000).unwrap();
            inlet::sdk::posthog::translate(
                &read.messages,
                read.key.as_deref(),
                &mut Default::default(),
            )
        })
    });
    g.bench_function("posthog/read 50", |b| {
        b.iter(|| inlet::sdk::posthog::read(black_box(body.as_bytes()), 1000).map(|r| r.key))
    });
    let twin: Vec<String> =
        serde_json::from_slice::<Vec<Value>>(&payload("posthog/js-batch.beacons.json"))
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
    g.bench_function("posthog/native twin 50", |b| {
        b.iter(|| {
            (0..50)
                .filter(|i| event::parse(Lane::BEACON, black_box(&twin[i % twin.len()])).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, sdk);
criterion_main!(benches);
