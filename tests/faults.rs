//! Zero loss under faults. Each test drives inlet with steady concurrent load while it injects a
//! fault, then reads the topic back and reconciles: every event answered as accepted must be in
//! Kafka, duplicates are counted, and each session's events keep the order they were sent in.
//! Each prints its reconciliation.
//!
//! Faults come from real components: a Tansu broker process stopped and restarted on its SQLite
//! storage, librdkafka's mock cluster (broker down, injected produce errors), librdkafka's own
//! fatal-error test hook, and signals to the inlet binary.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::answer::Answer;
use common::broker::Broker;
use common::gateway::{create_topics, event_ids, landed, temp_dir, topics, Gateway, SDK};
use common::load::{reconcile, under_load, Load, Reconciliation, Report};
use common::process::{kafka_and_process, InletProcess};
use common::request::Request;
use common::unused_address;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

/// Reads the topic back and reconciles it with the load's report.
async fn reconcile_topic(
    name: &str,
    brokers: &str,
    topic: &str,
    report: &Report,
) -> Reconciliation {
    let accepted = report
        .events
        .iter()
        .filter(|e| e.fate == common::load::Fate::Accepted)
        .count();
    let consumed = landed(brokers, topic, accepted, Duration::from_secs(3)).await;
    let r = reconcile(&report.events, &consumed);
    println!(
        "[{name}] {r}; {} requests, slowest answer {:?}, slowest refusal {:?}",
        report.requests, report.slowest, report.slowest_refusal
    );
    r
}

/// Whether a reconciliation may find an event twice.
#[derive(PartialEq)]
enum Copies {
    /// Never: the broker drops the idempotent producer's retries.
    Once,
    /// Only as retries into librdkafka's mock cluster that took a broker down: the mock checks
    /// producer sequence numbers for transactional producers only
    /// (`rd_kafka_mock_validate_records`), so a request it appended whose answer the downed
    /// broker never sent is appended again when librdkafka retries it, where a real broker
    /// would drop the retry.
    RetriedIntoMock,
}

fn assert_no_loss(r: &Reconciliation, copies: Copies) {
    assert!(r.accepted > 0, "the load got events accepted: {r}");
    assert_eq!(r.missing, 0, "every accepted event is in Kafka: {r}");
    if copies == Copies::Once {
        assert_eq!(r.duplicated, 0, "no event was written twice: {r}");
    }
    assert_eq!(
        r.out_of_order, 0,
        "each session's events stay in order: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20s_broker_outage_loses_no_accepted_event() {
    let dir = temp_dir("outage");
    let mut broker = Broker::start_sqlite(&dir);
    let brokers = broker.bootstrap();
    let t = topics("outage");
    create_topics(&brokers, &[&t.0, &t.1, &common::gateway::items_topic(&t)]).await;
    // A delivery timeout longer than the outage: requests waiting on the dead broker are
    // acknowledged once it is back. (With a 5 s timeout, librdkafka timed messages out during
    // the outage and Tansu 0.6's SQLite storage then panicked on the producer's next batch,
    // "more or less than one row" in producer_select_for_update, failing every request after.)
    let (enqueue_wait, delivery_timeout) =
        (Duration::from_millis(1000), Duration::from_millis(30_000));
    let gw = Gateway::start(&brokers, &t, |s| {
        s.enqueue_wait_ms = Some(enqueue_wait.as_millis() as u64);
        s.delivery_timeout_ms = Some(delivery_timeout.as_millis() as u64);
    })
    .await;
    gw.wait_ready().await;

    // Watch readiness throughout.
    let ready_log = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u16)>::new()));
    let watcher = tokio::spawn({
        let (log, url, http) = (
            ready_log.clone(),
            format!("{}/readyz", gw.url),
            gw.http.clone(),
        );
        async move {
            loop {
                let status = match http.get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                log.lock().unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    let mut load = Load::new(&gw.url, SDK);
    load.pause = Duration::from_millis(25);
    let (report, (down_at, up_at)) = under_load(load, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let down_at = Instant::now();
        broker.stop();
        tokio::time::sleep(Duration::from_secs(20)).await;
        broker.restart();
        let up_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(12)).await;
        (down_at, up_at)
    })
    .await;
    watcher.abort();

    // Requests never hung: each was answered within the enqueue wait plus the delivery timeout
    // (with slack for a loaded machine); this bounds a hang, it does not measure speed.
    let bound = enqueue_wait + delivery_timeout + Duration::from_secs(5);
    assert!(
        report.slowest <= bound,
        "slowest answer {:?} > {bound:?}",
        report.slowest
    );

    let log = ready_log.lock().unwrap().clone();
    let went_unready = log
        .iter()
        .find(|(t, s)| *t > down_at && *s == 503)
        .map(|(t, _)| *t - down_at);
    let back_ready = log
        .iter()
        .find(|(t, s)| *t > up_at && *s == 200)
        .map(|(t, _)| *t - up_at);
    println!("[outage] /readyz: 503 {went_unready:?} after the broker stopped, 200 {back_ready:?} after it restarted");
    let went_unready = went_unready.expect("/readyz turned 503 during the outage");
    assert!(
        went_unready < Duration::from_secs(10),
        "not-ready within a few seconds: {went_unready:?}"
    );
    back_ready.expect("/readyz turned 200 again after the broker returned");

    // inlet recovered without a restart.
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            json!({"session_id": "after", "event": "e"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    let r = reconcile_topic("outage", &brokers, &t.0, &report).await;
    assert_no_loss(&r, Copies::Once);
}

/// librdkafka's mock cluster.
type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A one-broker mock cluster with this test's two topics, and a ready gateway producing to it
/// with `tweak`ed settings.
async fn mock_and_gateway(
    test: &str,
    tweak: impl FnOnce(&mut inlet::config::Settings),
) -> (Mock, (String, String), Gateway) {
    let t = topics(test);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&t.0, 16, 1).unwrap();
    cluster.create_topic(&t.1, 16, 1).unwrap();
    let gw = Gateway::start(&cluster.bootstrap_servers(), &t, tweak).await;
    gw.wait_ready().await;
    (cluster, t, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_within_the_enqueue_wait_and_loses_nothing() {
    let enqueue_wait = Duration::from_millis(300);
    let (cluster, t, gw) = mock_and_gateway("queue", |s| {
        s.enqueue_wait_ms = Some(enqueue_wait.as_millis() as u64);
        s.delivery_timeout_ms = Some(120_000);
        // Smaller than the load's 100 events in flight, so the queue fills while the broker is down.
        s.librdkafka_args = vec!["queue.buffering.max.messages=40".into()];
    })
    .await;
    let brokers = cluster.bootstrap_servers();

    let (report, ()) = under_load(Load::new(&gw.url, SDK), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.broker_down(1).unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.broker_up(1).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;

    let r = reconcile_topic("full queue", &brokers, &t.0, &report).await;
    assert_no_loss(&r, Copies::RetriedIntoMock);
    assert!(
        r.rejected.get("503 queue_full").is_some_and(|n| *n > 0),
        "the queue filled: {r}"
    );
    // A refusal comes after the configured wait, not a hang (slack for a loaded machine).
    let bound = enqueue_wait + Duration::from_secs(2);
    assert!(
        report.slowest_refusal <= bound,
        "slowest 503 {:?} > {bound:?}",
        report.slowest_refusal
    );
}

/// Posts `beacon` once the mock cluster is set to fail the next `errors` produce requests with a
/// retriable error (`NOT_ENOUGH_REPLICAS`).
async fn post_after_produce_errors(
    cluster: &Mock,
    gw: &Gateway,
    errors: usize,
    beacon: serde_json::Value,
) -> Answer {
    let error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    cluster.request_errors(RDKafkaApiKey::Produce, &vec![error; errors]);
    gw.post("/v1/beacons", SDK, beacon.to_string(), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_errors_become_answers_and_a_fatal_error_is_recovered_from() {
    let (cluster, t, gw) = mock_and_gateway("errors", |s| {
        s.delivery_timeout_ms = Some(1500);
        // librdkafka refuses messages over this locally, as a broker would.
        s.librdkafka_args = vec!["message.max.bytes=2000".into()];
    })
    .await;
    let brokers = cluster.bootstrap_servers();
    let small = |id: &str| json!({"session_id": "pe", "event": "e", "id": id});
    let big =
        json!({"session_id": "pe", "event": "e", "id": "big", "props": {"pad": "x".repeat(3000)}});
    let mut accepted_ids = Vec::new();

    // Too large for the producer: 413 alone, named in a 207 beside a good event.
    let a = gw.post("/v1/beacons", SDK, big.to_string(), &[]).await;
    assert_eq!(
        (a.status, a.code()),
        (413, "event_too_large"),
        "{:?}",
        a.body
    );
    let a = gw
        .post(
            "/v1/beacons",
            SDK,
            json!([small("ok-0"), big]).to_string(),
            &[],
        )
        .await;
    assert_eq!(a.status, 207, "{:?}", a.body);
    assert_eq!(a.body["rejected"][0]["index"], 1);
    assert_eq!(a.body["rejected"][0]["code"], "event_too_large");
    accepted_ids.push("ok-0");

    // Retriable broker errors are retried by librdkafka: the request still succeeds.
    let a = post_after_produce_errors(&cluster, &gw, 3, small("ok-1")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    accepted_ids.push("ok-1");

    // Retriable errors that outlast the delivery timeout: 503, never a silent drop.
    let a = post_after_produce_errors(&cluster, &gw, 2000, small("timed-out")).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert!(
        ["delivery_timed_out", "delivery_failed"].contains(&a.code()),
        "{:?}",
        a.body
    );
    assert!(a.header("retry-after").is_some());
    cluster.clear_request_errors(RDKafkaApiKey::Produce);

    // A fatal producer error: counted, the producer replaced, service resumes.
    gw.sink.inject_fatal_error();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut statuses = Vec::new();
    loop {
        let id = format!("after-fatal-{}", statuses.len());
        let a: Answer = gw
            .post("/v1/beacons", SDK, small(&id).to_string(), &[])
            .await;
        statuses.push(a.status);
        if a.status == 200 {
            accepted_ids.push(Box::leak(id.into_boxed_str()));
            break;
        }
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert!(
            Instant::now() < deadline,
            "inlet never recovered from the fatal error: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("[produce errors] answers after the fatal error: {statuses:?}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("inlet_kafka_producer_fatal_errors_total"),
        "fatal error counted"
    );

    let consumed = landed(&brokers, &t.0, accepted_ids.len(), Duration::from_secs(2)).await;
    let ids = event_ids(&consumed);
    for id in &accepted_ids {
        assert!(ids.contains(id), "accepted {id} is in Kafka; found {ids:?}");
    }
    assert!(!ids.contains(&"big"), "a refused event was not produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_under_enqueue_delivery_loses_no_accepted_event() {
    // Under `enqueue` an event is accepted once queued. A fatal producer error purges the queue;
    // the purged, accepted events must reach Kafka through the new producer.
    let (cluster, t, gw) = mock_and_gateway("fatal-enqueue", |s| {
        s.delivery = Some(inlet::config::Delivery::Enqueue);
    })
    .await;
    let brokers = cluster.bootstrap_servers();

    let (report, queued) = under_load(Load::new(&gw.url, SDK), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // With the broker down, accepted events pile up in librdkafka's queue...
        cluster.broker_down(1).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let queued = inlet::sink::Sink::in_flight(gw.sink.as_ref());
        // ...and the fatal error purges them.
        gw.sink.inject_fatal_error();
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.broker_up(1).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        queued
    })
    .await;
    println!("[fatal under enqueue] {queued} events queued when the fatal error hit");
    assert!(queued > 0, "events were queued when the producer failed");

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("inlet_kafka_resent_total"),
        "purged events were handed over again"
    );
    let r = reconcile_topic("fatal under enqueue", &brokers, &t.0, &report).await;
    assert_no_loss(&r, Copies::RetriedIntoMock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_in_flight_requests_and_delivers_every_accepted_event() {
    let grace = Duration::from_secs(20);
    let (kafka, mut inlet) =
        kafka_and_process("sigterm", &[("INLET_SHUTDOWN_GRACE_MS", "20000")]).await;
    let load = Load::new(&inlet.url, SDK);
    let (report, (status, inlet)) = under_load(load, async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        inlet.signal("TERM");
        tokio::task::spawn_blocking(move || (inlet.wait(grace + Duration::from_secs(10)), inlet))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        status.code(),
        Some(0),
        "a clean drain exits 0:\n{}",
        inlet.log()
    );
    assert!(
        inlet.log().contains("every accepted event was delivered"),
        "{}",
        inlet.log()
    );
    let r = reconcile_topic("sigterm", &kafka.brokers(), &kafka.topics.0, &report).await;
    assert_no_loss(&r, Copies::Once);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_ack_delivery_loses_no_event_answered_200() {
    let (kafka, inlet) = kafka_and_process("sigkill", &[]).await;
    let (report, ()) = under_load(Load::new(&inlet.url, SDK), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        inlet.signal("KILL");
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    drop(inlet);
    let r = reconcile_topic("sigkill", &kafka.brokers(), &kafka.topics.0, &report).await;
    assert_no_loss(&r, Copies::Once);
    assert!(
        r.rejected.keys().any(|k| k.starts_with("no answer")),
        "some requests died with inlet: {r}"
    );
}

/// The inlet binary with no broker, under `enqueue` delivery, holding three accepted events in
/// librdkafka's queue that it can never deliver.
async fn holding_three_undelivered(test: &str, grace_ms: &str) -> InletProcess {
    let inlet = InletProcess::start(
        &unused_address(),
        &topics(test),
        &[
            ("INLET_DELIVERY", "enqueue"),
            ("INLET_SHUTDOWN_GRACE_MS", grace_ms),
        ],
    );
    let body = json!(vec![json!({"session_id": "u", "event": "e"}); 3]).to_string();
    let r = Request::post("/v1/beacons", SDK, body)
        .build(&reqwest::Client::new(), &inlet.url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    inlet
}

/// Waits for `inlet` to exit and checks it exited 1 and logged the three undelivered events.
fn assert_exits_1_with_three_undelivered(inlet: &mut InletProcess) {
    let status = inlet.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{}", inlet.log());
    assert!(
        undelivered_logged(&inlet.log(), 3),
        "the count is logged:\n{}",
        inlet.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_drain_at_once_and_exits_with_the_undelivered_count() {
    let mut inlet = holding_three_undelivered("force", "600000").await;
    inlet.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    inlet.signal("TERM");
    assert_exits_1_with_three_undelivered(&mut inlet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_deadline_ends_the_drain_and_exits_with_the_undelivered_count() {
    let mut inlet = holding_three_undelivered("grace", "1000").await;
    inlet.signal("TERM");
    assert_exits_1_with_three_undelivered(&mut inlet);
}

/// Whether a JSON log line says `undelivered` = `n`.
fn undelivered_logged(log: &str, n: u64) -> bool {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| line["undelivered"].as_u64() == Some(n) && line["level"] == "ERROR")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_shutdown_delay_inlet_is_not_ready_but_still_serves() {
    let (kafka, mut inlet) =
        kafka_and_process("delay", &[("INLET_SHUTDOWN_DELAY_MS", "3000")]).await;
    let client = reqwest::Client::new();
    inlet.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = client
        .get(format!("{}/readyz", inlet.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 503, "not ready once SIGTERM arrived");
    let late = json!({"session_id": "late", "event": "e", "id": "during-delay"});
    let a = Request::post("/v1/beacons", SDK, late.to_string())
        .build(&client, &inlet.url)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200, "still serving during the delay");
    let status = tokio::task::spawn_blocking(move || inlet.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let landed = kafka.beacons(1, Duration::from_millis(500)).await;
    assert_eq!(event_ids(&landed), ["during-delay"]);
}
