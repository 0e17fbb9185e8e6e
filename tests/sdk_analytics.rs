//! The analytics SDKs, unmodified, against inlet (issue #14): segment-analytics-python and
//! @segment/analytics-node with `host` set to inlet, the posthog Python SDK and posthog-node
//! with `host` set to inlet. Each SDK runs as its own process (the scripts in `tests/sdk/`),
//! sends a known set of calls, flushes, and must report no error; then every call must be in
//! Kafka exactly once, with the contract's mapping (session, event, user, url, id) and its
//! source. posthog-js in a browser is tested in `tests/browser.rs`.
//!
//! The SDKs are installed by `tests/sdk/install.sh` (pinned, into target/sdk; `tests/run.sh`
//! runs it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::gateway::{Consumed, Gateway, Kafka, SDK};
use inlet::proto::envelope::Event;
use inlet::proto::Beacon;
use serde_json::json;

const INSTALL: &str = "run tests/sdk/install.sh";

/// What one SDK call must become in Kafka.
struct Expected {
    id: String,
    session_id: String,
    event: &'static str,
    user_id: String,
    url: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_sdks_deliver_every_call_exactly_once() {
    let kafka = Kafka::start("segment").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let mut expected = Vec::new();
    // Python with gzip (Content-Encoding), Node without.
    for (runner, script, run, gzip) in [
        (Runner::Python, "segment_python.py", "py", true),
        (Runner::Node, "segment_node.js", "node", false),
    ] {
        let ids = new_ids(6);
        drive(runner, script, &gw.url, run, &ids, gzip).await;
        let (anon, user) = (format!("anon-{run}"), format!("user-{run}"));
        let calls = [
            ("Order Completed", &anon, &user, ""),
            (
                "page",
                &anon,
                &String::new(),
                "https://shop.example/checkout",
            ),
            ("screen", &anon, &String::new(), ""),
            ("identify", &anon, &user, ""),
            ("group", &anon, &user, ""),
            // An alias names no anonymous id: its session is the user.
            ("alias", &user, &user, ""),
        ];
        for (id, (event, session, user_id, url)) in ids.into_iter().zip(calls) {
            expected.push(Expected {
                id,
                session_id: session.clone(),
                event,
                user_id: user_id.clone(),
                url,
            });
        }
    }
    check_landed(&kafka, &expected, "segment").await;
    let metrics = gw.metrics().await;
    for call in ["track", "page", "screen", "identify", "group", "alias"] {
        let line = format!(
            "inlet_sdk_items_total{{source=\"segment\",type=\"{call}\",outcome=\"accepted\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    assert!(gw.stop().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_server_sdks_deliver_every_event_exactly_once() {
    let kafka = Kafka::start("posthog").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let mut expected = Vec::new();
    // Python plain, then with gzip; posthog-node gzips its batches itself.
    for (runner, script, run, gzip) in [
        (Runner::Python, "posthog_python.py", "py", false),
        (Runner::Python, "posthog_python.py", "pyz", true),
        (Runner::Node, "posthog_node.js", "node", false),
    ] {
        let ids = new_ids(4);
        drive(runner, script, &gw.url, run, &ids, gzip).await;
        let (session, user) = (format!("session-{run}"), format!("user-{run}"));
        let events = [
            ("signed_up", &session, ""),
            ("$pageview", &session, "https://app.example/home"),
            // No session: the distinct id is the session.
            ("$identify", &user, ""),
            ("$create_alias", &session, ""),
        ];
        for (id, (event, session_id, url)) in ids.into_iter().zip(events) {
            expected.push(Expected {
                id,
                session_id: session_id.clone(),
                event,
                user_id: user.clone(),
                url,
            });
        }
    }
    check_landed(&kafka, &expected, "posthog").await;
    assert!(gw.stop().await.is_ok());
}

/// posthog-python as its defaults send: 99 events of 12 KB in one batch, 1.2 MB of JSON sent
/// uncompressed (past the beacons' 1 MiB body cap, which answered it 413, final for this SDK,
/// losing the batch), then `capture_exception`, which lands as an occurrence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_python_s_large_batches_and_exceptions_land_exactly_once() {
    let kafka = Kafka::start("posthog-large").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let ids = new_ids(100);
    let (bulk, exception_id) = ids.split_at(99);
    let spec = json!({"host": gw.url, "key": SDK, "run": "large", "ids": ids, "mode": "large"});
    drive_spec(Runner::Python, "posthog_python.py", spec).await;
    let expected: Vec<Expected> = (bulk.iter())
        .map(|id| Expected {
            id: id.clone(),
            session_id: "session-large".into(),
            event: "bulk_loaded",
            user_id: "user-large".into(),
            url: "",
        })
        .collect();
    check_landed(&kafka, &expected, "posthog").await;
    // One request carried more than 1 MiB.
    let metrics = gw.metrics().await;
    let requests = |le: &str| {
        let line = format!("inlet_http_request_body_bytes_bucket{{route=\"/batch/\",le=\"{le}\"}}");
        metrics
            .lines()
            .find(|l| l.starts_with(&line))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{line} missing from:\n{metrics}"))
    };
    assert!(
        requests("+Inf") > requests("1048576"),
        "no batch over 1 MiB:\n{metrics}"
    );

    let landed = kafka.occurrences(1, Duration::from_millis(1500)).await;
    assert_eq!(landed.len(), 1, "{landed:#?}");
    let envelope = &landed[0].envelope;
    assert_eq!(
        (envelope.event_id.as_str(), envelope.source.as_str()),
        (exception_id[0].as_str(), "posthog")
    );
    let Some(Event::Occurrence(occurrence)) = &envelope.event else {
        panic!("not an occurrence: {envelope:?}");
    };
    let exception = occurrence.exception.as_ref().expect("the exception");
    assert_eq!(exception.class, "ValueError");
    assert!(
        exception.message.contains("not a number large"),
        "{exception:?}"
    );
    let innermost = exception.frames.last().expect("frames");
    assert_eq!(
        innermost.method, "parse",
        "the innermost frame last: {exception:?}"
    );
    assert!(innermost.lineno > 0 && innermost.filename.ends_with("posthog_python.py"));
    assert!(!occurrence.custom_json.contains(SDK), "the key in custom");
    assert!(gw.stop().await.is_ok());
}

/// Asserts that Kafka holds each of `expected` exactly once, as mapped, from `source`, and
/// nothing else.
async fn check_landed(kafka: &Kafka, expected: &[Expected], source: &str) {
    let landed = kafka
        .beacons(expected.len(), Duration::from_millis(1500))
        .await;
    let mut by_id: BTreeMap<&str, (&Consumed, &Beacon)> = BTreeMap::new();
    for consumed in &landed {
        let Some(Event::Beacon(beacon)) = &consumed.envelope.event else {
            panic!("not a beacon: {consumed:?}");
        };
        let id = consumed.envelope.event_id.as_str();
        assert!(
            by_id.insert(id, (consumed, beacon)).is_none(),
            "{id} landed twice"
        );
    }
    assert_eq!(landed.len(), expected.len(), "{landed:#?}");
    for want in expected {
        let Some((consumed, beacon)) = by_id.get(want.id.as_str()) else {
            panic!("{} ({}) never landed: {landed:#?}", want.id, want.event);
        };
        let envelope = &consumed.envelope;
        assert_eq!(envelope.source, source, "{}", want.id);
        assert_eq!(envelope.token_id, "sdk");
        assert_eq!(consumed.key, want.session_id, "the key is the session");
        let got = (
            beacon.event.as_str(),
            beacon.session_id.as_str(),
            beacon.user_id.as_str(),
            beacon.url.as_str(),
        );
        let wanted = (
            want.event,
            want.session_id.as_str(),
            want.user_id.as_str(),
            want.url,
        );
        assert_eq!(got, wanted, "{}", want.id);
        assert!(beacon.client_ts_ms > 0, "{}: the SDK's timestamp", want.id);
        assert!(
            !beacon.props_json.contains(SDK),
            "{}: the key in props",
            want.id
        );
    }
}

/// `n` new event ids (UUIDs, which PostHog requires and Segment takes).
fn new_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect()
}

#[derive(Clone, Copy)]
enum Runner {
    Python,
    Node,
}

/// Runs `tests/sdk/SCRIPT` with the SDK's settings (inlet's URL, the key, the run's name and
/// ids) and waits for it; fails the test with its output unless it exits 0.
async fn drive(runner: Runner, script: &str, url: &str, run: &str, ids: &[String], gzip: bool) {
    drive_spec(
        runner,
        script,
        json!({"host": url, "key": SDK, "run": run, "ids": ids, "gzip": gzip}),
    )
    .await;
}

/// Runs `tests/sdk/SCRIPT` with `spec` (see [`drive`]).
async fn drive_spec(runner: Runner, script: &str, spec: serde_json::Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = match runner {
        Runner::Python => {
            let path = installed(root, "python/segment");
            let mut command = Command::new("python3");
            command.env("PYTHONPATH", path.parent().unwrap());
            command
        }
        Runner::Node => {
            let path = installed(root, "node/node_modules/posthog-node");
            let mut command = Command::new("node");
            command.env("NODE_PATH", path.parent().unwrap());
            command
        }
    };
    command
        .arg(root.join("tests/sdk").join(script))
        .arg(spec.to_string());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `target/sdk/WHAT`, which must exist: else the failure says how to install the SDKs.
fn installed(root: &Path, what: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("sdk").join(what);
    assert!(path.exists(), "{} is missing: {INSTALL}", path.display());
    path
}
