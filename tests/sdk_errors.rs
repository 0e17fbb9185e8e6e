//! The error trackers' real SDKs against inlet's drop-in endpoints (issue #13): sentry-sdk,
//! rollbar and honeybadger for Python, @sentry/node and rollbar for Node, each run as its own
//! process by `tests/sdk/errors.py` / `errors.js`, pointed at an in-process inlet that produces
//! to a real Tansu broker. Every report must land in Kafka exactly once, with the SDK's own
//! event id and the contract's field mapping; a rate limit must make the SDKs that obey a
//! signal stop sending. The SDKs as their quickstarts run them (tracing, sessions), a Sentry
//! tunnel, a broker outage under `spool`, and Honeybadger's Insights events and check-ins land
//! everything they send (issue #21). (The browser SDK, rollbar.js in Chromium, is in
//! tests/browser.rs.)
//!
//! The SDKs are installed by `tests/sdk/install.sh` (tests/run.sh runs it) into target/sdk.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::broker::Broker;
use common::gateway::{create_topics, items_topic, landed, temp_dir, topics};
use common::gateway::{Consumed, Gateway, Kafka, ACCOUNT, DSN_KEY, SDK, TIGHT_ERRORS};
use common::{assert_no_failures, script_lines, sdk_root};
use inlet::config::Delivery;
use inlet::proto::envelope::Event;
use inlet::proto::{Level, Occurrence};
use serde::Deserialize;

/// How long the consumer reads on after the expected reports arrived, to catch a duplicate.
const LINGER: Duration = Duration::from_secs(1);
/// Reports an SDK sends in the rate limit test, 25 ms apart: far more than its backoff lets
/// through.
const BURST: usize = 20;

/// One report an SDK script made, as it printed it.
#[derive(Debug, Deserialize)]
struct Sent {
    /// `exception` or `message`.
    kind: String,
    /// The level the script asked for, in the SDK's words.
    level: String,
    /// The exception's class, or the message.
    what: String,
    /// The event id the SDK chose.
    id: String,
}

/// One SDK run: its language, its name for the script, and the `source` inlet records.
#[derive(Clone, Copy, Debug)]
struct Sdk {
    language: Language,
    name: &'static str,
    source: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Language {
    Python,
    Node,
}

const PYTHON_SENTRY: Sdk = Sdk {
    language: Language::Python,
    name: "sentry",
    source: "sentry",
};
const NODE_SENTRY: Sdk = Sdk {
    language: Language::Node,
    name: "sentry",
    source: "sentry",
};
const NODE_ROLLBAR: Sdk = Sdk {
    language: Language::Node,
    name: "rollbar",
    source: "rollbar",
};
/// Honeybadger is driven from Python only: `@honeybadger-io/js` on Node drops the port from
/// its endpoint (honeybadger-io/honeybadger-js#1601), so it cannot reach a test's inlet.
const EVERY_SDK: [Sdk; 5] = [
    PYTHON_SENTRY,
    Sdk {
        language: Language::Python,
        name: "rollbar",
        source: "rollbar",
    },
    Sdk {
        language: Language::Python,
        name: "honeybadger",
        source: "honeybadger",
    },
    NODE_SENTRY,
    NODE_ROLLBAR,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sdk_delivers_each_report_once_with_its_fields_mapped() {
    let kafka = Kafka::start("sdk-errors").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    // Every SDK at once, each with its own marker.
    let runs = EVERY_SDK.map(|sdk| {
        let (url, run) = (
            gw.url.clone(),
            format!("{}-{}", sdk.source, sdk.language.name()),
        );
        // A DSN's key must look like one (see `DSN_KEY`); the others take any secret.
        let key = if sdk.source == "sentry" { DSN_KEY } else { SDK };
        tokio::task::spawn_blocking(move || (sdk, run.clone(), run_sdk(sdk, &url, key, &run, None)))
    });
    let mut runs_done = Vec::new();
    for run in runs {
        runs_done.push(run.await.expect("SDK thread"));
    }
    let expected: usize = runs_done.iter().map(|(_, _, sent)| sent.len()).sum();
    let landed = kafka.occurrences(expected, LINGER).await;
    let by_id = by_event_id(&landed);
    let mut failures = Vec::new();
    for (sdk, run, sent) in &runs_done {
        assert!(!sent.is_empty(), "{sdk:?} reported nothing");
        for report in sent {
            let case = format!("{sdk:?} {report:?}");
            match by_id.get(&hyphenated(&report.id)).map(Vec::as_slice) {
                Some([one]) => failures.extend(check(one, *sdk, run, report, &case)),
                Some(many) => failures.push(format!("{case}: landed {} times", many.len())),
                None => failures.push(format!("{case}: never landed")),
            }
        }
    }
    assert_no_failures("reports", &failures);
    assert_eq!(landed.len(), expected, "stray or duplicate occurrences");
    let metrics = gw.metrics().await;
    for (source, kind) in [
        ("sentry", "event"),
        ("rollbar", "item"),
        ("honeybadger", "notice"),
    ] {
        let line = format!(
            "inlet_sdk_items_total{{source=\"{source}\",type=\"{kind}\",outcome=\"accepted\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing from /metrics");
    }
}

/// sentry-sdk as its quickstart sets it up, tracing and release-health sessions on: the
/// exception lands once as an occurrence, and the transaction and the session (which inlet
/// used to answer 200 and drop) land on the items topic, with their type, media type and
/// payload as the SDK wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_python_with_tracing_and_sessions_lands_every_item() {
    quickstart_lands_every_item(Language::Python).await;
}

/// The same of `@sentry/node` as its quickstart sets it up (`tracesSampleRate: 1.0`, its
/// default integrations, a session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_node_with_tracing_and_a_session_lands_every_item() {
    quickstart_lands_every_item(Language::Node).await;
}

async fn quickstart_lands_every_item(language: Language) {
    let sdk = Sdk {
        language,
        name: "sentry-quickstart",
        source: "sentry",
    };
    let test = format!("sdk-sentry-quickstart-{}", language.name());
    let (kafka, gw, sent) = run_alone(&test, sdk, DSN_KEY, "qs").await;
    let find = |kind: &str| sent.iter().find(|s| s.kind == kind).expect(kind);
    let (exception, transaction) = (find("exception"), find("transaction"));

    let occurrences = kafka.occurrences(1, LINGER).await;
    let ids: Vec<_> = occurrences.iter().map(|c| &c.envelope.event_id).collect();
    assert_eq!(ids, [&hyphenated(&exception.id)], "the exception, once");

    // At least the transaction and a session; client reports may come too.
    let landed = kafka.items(2, LINGER).await;
    let mut items: HashMap<String, Vec<&inlet::proto::Item>> = HashMap::new();
    for c in &landed {
        assert_eq!(
            (c.key.as_str(), c.envelope.source.as_str()),
            (ACCOUNT, "sentry")
        );
        let Some(Event::Item(item)) = &c.envelope.event else {
            panic!("not an item on the items topic: {c:?}");
        };
        items.entry(item.r#type.clone()).or_default().push(item);
    }
    let mut counts: Vec<_> = items.iter().map(|(t, i)| (t.as_str(), i.len())).collect();
    counts.sort_unstable();
    println!("{sdk:?}, tracing and sessions on: items landed {counts:?}");
    let types: Vec<_> = items.keys().collect();
    // sentry-python sends a trace as a `transaction` item; @sentry/node 11 streams its spans
    // (`span` items of `application/vnd.sentry.items.span.v2+json`, the segment among them).
    let trace_type = match language {
        Language::Python => "transaction",
        Language::Node => "span",
    };
    let traced = items
        .get(trace_type)
        .unwrap_or_else(|| panic!("no {trace_type}: {types:?}"));
    let payloads: Vec<serde_json::Value> = (traced.iter())
        .map(|item| {
            let header: serde_json::Value = serde_json::from_str(&item.headers_json).unwrap();
            assert_eq!(header["type"], trace_type);
            serde_json::from_slice(&item.payload).unwrap()
        })
        .collect();
    match language {
        Language::Python => {
            let [payload] = &payloads[..] else {
                panic!("one transaction expected: {payloads:?}");
            };
            assert_eq!(traced[0].media_type, "application/json");
            assert_eq!(payload["transaction"], transaction.what.as_str());
            assert_eq!(
                payload["contexts"]["trace"]["trace_id"],
                transaction.id.as_str()
            );
            let spans = payload["spans"].as_array().expect("spans");
            assert!(spans.iter().any(|s| s["op"] == "db"), "{spans:?}");
        }
        Language::Node => {
            assert!(traced
                .iter()
                .all(|i| i.media_type == "application/vnd.sentry.items.span.v2+json"));
            let spans: Vec<&serde_json::Value> = (payloads.iter())
                .flat_map(|p| p["items"].as_array().expect("items").iter())
                .collect();
            let segments: Vec<_> = spans.iter().filter(|s| s["is_segment"] == true).collect();
            let [segment] = &segments[..] else {
                panic!("one segment expected: {spans:?}");
            };
            assert_eq!(segment["name"], transaction.what.as_str());
            assert_eq!(segment["trace_id"], transaction.id.as_str());
            let ops: Vec<_> = spans
                .iter()
                .map(|s| &s["attributes"]["sentry.op"]["value"])
                .collect();
            assert!(ops.iter().any(|op| *op == "db"), "{spans:?}");
        }
    }

    let sessions = items
        .get("session")
        .unwrap_or_else(|| panic!("no session: {types:?}"));
    for session in sessions {
        let payload: serde_json::Value = serde_json::from_slice(&session.payload).unwrap();
        assert_eq!(payload["attrs"]["release"], "shop@1.4.2", "{payload}");
    }
    let metrics = gw.metrics().await;
    for kind in [trace_type, "session"] {
        let line = format!(
            "inlet_sdk_items_total{{source=\"sentry\",type=\"{kind}\",outcome=\"accepted\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing from /metrics");
    }
}

/// `@sentry/node` with its `tunnel` option at inlet: the envelope carries its key only in its
/// header's `dsn` (whose host is Sentry's, not inlet's), and is taken by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnelled_envelope_is_taken_by_the_key_of_its_dsn() {
    let sdk = Sdk {
        language: Language::Node,
        name: "sentry-tunnel",
        source: "sentry",
    };
    let (kafka, gw, sent) = run_alone("sdk-sentry-tunnel", sdk, DSN_KEY, "tunnel").await;
    let landed = kafka.occurrences(sent.len(), LINGER).await;
    let ids: Vec<_> = landed.iter().map(|c| c.envelope.event_id.clone()).collect();
    assert_eq!(
        ids,
        [hyphenated(&sent[0].id)],
        "the tunnelled exception, once"
    );
    assert_eq!(landed[0].envelope.token_id, "dsn");
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("inlet_auth_failures_total"),
        "a tunnelled envelope failed authentication:\n{metrics}"
    );
}

/// Under `spool` delivery sentry-python's reports are answered as accepted (Sentry's 200 with
/// the id, once each is on inlet's disk) with the broker down, and delivered, each once, when it is back: where this SDK
/// would drop a report answered 503, a broker outage costs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_python_under_spool_loses_nothing_to_a_broker_outage() {
    let dir = temp_dir("sdk-sentry-spool");
    let mut broker = Broker::start_sqlite(&dir.join("broker"));
    let topics = topics("sdk-sentry-spool");
    let items = items_topic(&topics);
    create_topics(&broker.bootstrap(), &[&topics.0, &topics.1, &items]).await;
    let spool = dir.join("spool");
    let gw = Gateway::start(&broker.bootstrap(), &topics, |s| {
        s.delivery = Some(Delivery::Spool);
        s.spool_dir = Some(spool);
        s.delivery_timeout_ms = Some(5000);
    })
    .await;
    gw.wait_ready().await;
    broker.stop();

    let url = gw.url.clone();
    let sent =
        tokio::task::spawn_blocking(move || run_sdk(PYTHON_SENTRY, &url, DSN_KEY, "spooled", None))
            .await
            .expect("SDK thread");
    // Each report is on inlet's disk (it was answered as accepted; had it been refused, the SDK
    // would have dropped it and it would never land): the spool's gauge (published every
    // second; the only spool of this test binary) comes to count them all.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let spooled = loop {
        let metrics = gw.metrics().await;
        let spooled = metrics
            .lines()
            .find(|l| l.starts_with("inlet_spool_records "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if spooled >= sent.len() || std::time::Instant::now() > deadline {
            break spooled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        spooled,
        sent.len(),
        "every report spooled with the broker down:\n{}",
        gw.metrics().await
    );

    broker.restart();
    let landed = landed(&broker.bootstrap(), &topics.1, sent.len(), LINGER).await;
    let by_id = by_event_id(&landed);
    for report in &sent {
        let copies = by_id.get(&hyphenated(&report.id)).map_or(0, Vec::len);
        assert_eq!(copies, 1, "{report:?} landed {copies} times");
    }
    assert_eq!(landed.len(), sent.len(), "stray or duplicate occurrences");
}

/// honeybadger-python's Insights events (`honeybadger.event()`, batched by its worker and
/// sent as NDJSON) land each once as an `event` item, and a check-in pinged by its URL as a
/// `check_in` item, where inlet used to answer both 404 (which the SDK does not report).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honeybadger_insights_events_and_a_check_in_land_as_items() {
    let sdk = Sdk {
        language: Language::Python,
        name: "honeybadger-insights",
        source: "honeybadger",
    };
    let (kafka, _gw, sent) = run_alone("sdk-honeybadger-insights", sdk, SDK, "hbi").await;
    let landed = kafka.items(sent.len(), LINGER).await;
    let mut events = Vec::new();
    let mut check_ins = Vec::new();
    for c in &landed {
        assert_eq!(
            (c.key.as_str(), c.envelope.source.as_str()),
            (ACCOUNT, "honeybadger")
        );
        let Some(Event::Item(item)) = &c.envelope.event else {
            panic!("not an item: {c:?}");
        };
        match item.r#type.as_str() {
            "event" => {
                let event: serde_json::Value = serde_json::from_slice(&item.payload).unwrap();
                events.push((
                    event["event_type"].as_str().unwrap_or_default().to_owned(),
                    event["order_id"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            "check_in" => check_ins.push(item.headers_json.clone()),
            other => panic!("an item of type {other}: {item:?}"),
        }
    }
    events.sort();
    let mut expected: Vec<_> = (sent.iter())
        .filter(|s| s.kind == "event")
        .map(|s| (s.what.clone(), s.id.clone()))
        .collect();
    expected.sort();
    assert_eq!(events, expected, "each event once");
    let slug = &sent
        .iter()
        .find(|s| s.kind == "check_in")
        .expect("a check-in")
        .what;
    let check_ins: Vec<serde_json::Value> = check_ins
        .iter()
        .map(|h| serde_json::from_str(h).unwrap())
        .collect();
    assert_eq!(
        check_ins,
        [serde_json::json!({"method": "GET", "slug": slug})],
        "the check-in, once"
    );
    assert!(
        !landed.iter().any(|c| format!("{c:?}").contains(SDK)),
        "the key is never kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_that_obey_a_rate_limit_stop_sending_after_the_429() {
    let kafka = Kafka::start("sdk-errors-limits").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let mut failures = Vec::new();
    // One after the other: they share the token's limit (1 event/s, burst 1).
    for sdk in [PYTHON_SENTRY, NODE_SENTRY, NODE_ROLLBAR] {
        tokio::time::sleep(Duration::from_millis(1500)).await; // the bucket refills
        let before = refused(&gw).await;
        let (url, run) = (gw.url.clone(), format!("burst-{}", sdk.source));
        tokio::task::spawn_blocking(move || run_sdk(sdk, &url, TIGHT_ERRORS, &run, Some(BURST)))
            .await
            .expect("SDK thread");
        let refused = refused(&gw).await - before;
        // Without a backoff, each of the 20 reports after the first would be a request and a
        // 429; with one, the SDK stays quiet for the second the 429 asked for.
        println!("{sdk:?}: {refused} requests refused of {BURST} reports");
        if !(1..=5).contains(&refused) {
            failures.push(format!(
                "{sdk:?}: {refused} requests refused (expected 1..=5 of {BURST} reports)"
            ));
        }
    }
    assert_no_failures("SDKs", &failures);
}

/// `sdk` run once (with `key`, marked `run`) against an inlet of its own, on topics of `test`'s:
/// the topics, the gateway and what the SDK reported sending.
async fn run_alone(
    test: &str,
    sdk: Sdk,
    key: &'static str,
    run: &'static str,
) -> (Kafka, Gateway, Vec<Sent>) {
    let kafka = Kafka::start(test).await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let url = gw.url.clone();
    let sent = tokio::task::spawn_blocking(move || run_sdk(sdk, &url, key, run, None))
        .await
        .expect("SDK thread");
    (kafka, gw, sent)
}

/// The requests inlet refused for the token `tight-errors`'s rate limit, so far.
async fn refused(gw: &Gateway) -> u64 {
    let metrics = gw.metrics().await;
    metrics
        .lines()
        .find(|l| l.starts_with("inlet_rate_limited_requests_total{token=\"tight-errors\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// What of `report` did not land as the contract maps it, in `one`.
fn check(one: &Consumed, sdk: Sdk, run: &str, report: &Sent, case: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            failures.push(format!("{case}: {what}: {one:?}"));
        }
    };
    let envelope = &one.envelope;
    expect("key is the account", one.key == ACCOUNT);
    expect("source", envelope.source == sdk.source);
    let Some(Event::Occurrence(o)) = &envelope.event else {
        expect("an occurrence", false);
        return failures;
    };
    expect("level", o.level == level(&report.level) as i32);
    expect("environment", o.environment == "staging");
    let version = match sdk.source {
        "sentry" => "shop@1.4.2",
        "rollbar" => "1.4.2",
        _ => "", // honeybadger-python sends no revision
    };
    expect("code_version", o.code_version == version);
    expect("custom holds the rest", o.custom_json.starts_with('{'));
    if report.kind == "message" {
        expect("message", o.message == report.what);
    } else {
        expect("exception", exception_mapped(o, &report.what, run));
    }
    failures
}

/// The exception's class is `class`, its message names the run, and its frames include the
/// function that threw (`parse`, three calls deep), with a file and line.
fn exception_mapped(o: &Occurrence, class: &str, run: &str) -> bool {
    let Some(e) = &o.exception else {
        return false;
    };
    if class == "Notified" {
        // Honeybadger's `notify(error_class=, error_message=)`: no exception was raised.
        return e.class == class && e.message == format!("notified {run}") && !e.frames.is_empty();
    }
    e.class == class
        && e.message.contains(&format!("not a number {run}"))
        && e.frames
            .iter()
            .any(|f| f.method.ends_with("parse") && f.lineno > 0 && !f.filename.is_empty())
}

/// inlet's level of a level the script asked its SDK for.
fn level(sdk_level: &str) -> Level {
    match sdk_level {
        "fatal" | "critical" => Level::Critical,
        "warning" => Level::Warning,
        "info" => Level::Info,
        "debug" => Level::Debug,
        _ => Level::Error,
    }
}

/// An SDK's event id (32 hex digits or hyphenated) as inlet writes it.
fn hyphenated(id: &str) -> String {
    uuid::Uuid::try_parse(id)
        .unwrap_or_else(|e| panic!("the SDK's id {id:?} is no UUID: {e}"))
        .hyphenated()
        .to_string()
}

fn by_event_id(landed: &[Consumed]) -> HashMap<String, Vec<Consumed>> {
    let mut by_id: HashMap<String, Vec<Consumed>> = HashMap::new();
    for c in landed {
        by_id
            .entry(c.envelope.event_id.clone())
            .or_default()
            .push(c.clone());
    }
    by_id
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
        }
    }
}

/// Runs the script of `sdk` against `url` with `key`, marked `run` (and sending `burst`
/// exceptions, if given); returns the reports it printed. Fails the test, saying how to install
/// the SDKs, when they are missing.
fn run_sdk(sdk: Sdk, url: &str, key: &str, run: &str, burst: Option<usize>) -> Vec<Sent> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let (program, script, path_var, path, installed) = match sdk.language {
        Language::Python => {
            let path = sdk_root().join("python");
            let installed = path.join(python_module(sdk.name));
            ("python3", "errors.py", "PYTHONPATH", path, installed)
        }
        Language::Node => {
            let path = sdk_root().join("node/node_modules");
            let installed = path.join(node_package(sdk.name));
            ("node", "errors.js", "NODE_PATH", path, installed)
        }
    };
    assert!(
        installed.exists(),
        "{} is not installed: run tests/sdk/install.sh",
        installed.display()
    );
    let mut command = Command::new(program);
    command
        .arg(scripts.join(script))
        .args([sdk.name, url, key, run])
        .env(path_var, &path);
    if let Some(n) = burst {
        command.args(["burst", &n.to_string()]);
    }
    script_lines(&mut command, &format!("{sdk:?}"))
}

fn python_module(sdk: &str) -> &'static str {
    match sdk {
        "sentry" | "sentry-quickstart" => "sentry_sdk",
        "honeybadger" | "honeybadger-insights" => "honeybadger",
        "rollbar" => "rollbar",
        _ => "honeybadger",
    }
}

fn node_package(sdk: &str) -> &'static str {
    match sdk {
        "sentry" | "sentry-quickstart" | "sentry-tunnel" => "@sentry/node",
        _ => "rollbar",
    }
}
