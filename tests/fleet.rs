//! Fleet mode end to end: three inlet replicas (the real binary, each its own process) sharing
//! one Debian `redis-server` (started here, on a free port) and one Tansu broker. Each test
//! prints its reconciliation: what was sent, what the replicas answered, what Kafka holds.
//!
//! No assertion here is about speed. The quota part is about a rate, so it compares the
//! accepted events with what the quota allows over the time the load actually ran.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::json;

use common::answer::Answer;
use common::gateway::{consume_as, create_topics, landed, temp_dir, tokens_toml, Kafka};
use common::gateway::{ACCOUNT, PROJECT, SDK};
use common::process::InletProcess;
use common::redis::RedisServer;
use inlet::proto::DeadLetter;

/// The fleet token's quota: events per second, and burst.
const RATE: u32 = 20;
const BURST: u32 = 20;
/// The fleet token's secret.
const FLEET: &str = "fleet-secret";
/// Secret of a token with a byte quota of 1,000 bytes at once, refilled at one a second.
const FLEET_BYTES: &str = "fleet-bytes-secret";
/// How long the quota load runs.
const LOAD_FOR: Duration = Duration::from_secs(5);
/// Requests in flight at once, spread over the replicas.
const SENDERS: usize = 6;

/// Three replicas against one broker, and (optionally) one Redis.
struct Replicas {
    kafka: Kafka,
    dead_letters: String,
    replicas: Vec<InletProcess>,
    http: reqwest::Client,
}

impl Replicas {
    /// Starts three replicas with this test's topics (dead letters included), with `env`.
    async fn start(test: &str, env: &[(&str, &str)]) -> Replicas {
        let kafka = Kafka::start(test).await;
        let dead_letters = format!("{}.dead-letters", kafka.topics.0);
        create_topics(&kafka.brokers(), &[&dead_letters]).await;
        let tokens = temp_dir("fleet-tokens").join("tokens.toml");
        std::fs::write(&tokens, tokens_toml() + &fleet_token()).unwrap();
        let tokens = tokens.to_str().unwrap().to_owned();
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.extend([
            ("INLET_TOKENS_FILE", tokens.as_str()),
            ("INLET_TOPIC_DEAD_LETTERS", dead_letters.as_str()),
        ]);
        let replicas: Vec<_> = (0..3)
            .map(|_| InletProcess::start(&kafka.brokers(), &kafka.topics, &env))
            .collect();
        for replica in &replicas {
            replica.wait_ready().await;
        }
        Replicas {
            kafka,
            dead_letters,
            replicas,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` as beacons to replica `i` (modulo three) with `token`: status and body.
    async fn post(&self, i: usize, token: &str, body: String) -> (u16, serde_json::Value) {
        let replica = &self.replicas[i % self.replicas.len()];
        let sent = self
            .http
            .post(format!("{}/v1/beacons", replica.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) => {
                let answer = Answer::from_response_lossy(r).await;
                (answer.status, answer.body)
            }
            Err(e) => panic!("replica {} did not answer: {e}\n{}", i % 3, replica.log()),
        }
    }

    /// The sum over the replicas of `metric`'s samples whose labels contain every `labels`.
    async fn metric(&self, metric: &str, labels: &[&str]) -> f64 {
        let mut sum = 0.0;
        for replica in &self.replicas {
            sum += sample_sum(&replica.metrics().await, metric, labels);
        }
        sum
    }
}

/// A token limited to [`RATE`] events per second with bursts of [`BURST`].
fn fleet_token() -> String {
    format!(
        "\n[[token]]\nid = \"fleet\"\ntoken = \"{FLEET}\"\nproject_id = \"{PROJECT}\"\n\
         account_id = \"{ACCOUNT}\"\nkinds = [\"beacon\"]\nrate_per_sec = {RATE}\nburst = {BURST}\n\
         \n[[token]]\nid = \"fleet-bytes\"\ntoken = \"{FLEET_BYTES}\"\nproject_id = \"{PROJECT}\"\n\
         account_id = \"{ACCOUNT}\"\nkinds = [\"beacon\"]\nrate_per_sec = 100000\nburst = 100000\n\
         bytes_per_sec = 1\nbytes_burst = 1000\n"
    )
}

/// The sum of `metric`'s samples in Prometheus text whose labels contain every `labels`.
fn sample_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a load of single-event requests got back, by status.
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, usize>,
    ran_for: Duration,
}

/// Sends single beacons of session `session` with `token`, spread over the replicas by
/// [`SENDERS`] senders, until `stop` is set; counts the answers by status.
async fn load(
    replicas: &Arc<Replicas>,
    token: &str,
    session: &str,
    stop: Arc<AtomicBool>,
) -> Tally {
    let statuses = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (replicas, stop, statuses) = (
                Arc::clone(replicas),
                Arc::clone(&stop),
                Arc::clone(&statuses),
            );
            let (token, session) = (token.to_owned(), session.to_owned());
            tokio::spawn(async move {
                let mut n = sender;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"session_id": session, "event": "e"}).to_string();
                    let (status, _) = replicas.post(n, &token, body).await;
                    *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
                    n += 1;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    Tally {
        statuses,
        ran_for: started.elapsed(),
    }
}

/// Runs [`load`] for [`LOAD_FOR`] with the fleet token; returns the tally and how many of its
/// events Kafka holds.
async fn quota_run(replicas: Arc<Replicas>, session: &str) -> (Tally, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (replicas, stop, session) =
            (Arc::clone(&replicas), Arc::clone(&stop), session.to_owned());
        async move { load(&replicas, FLEET, &session, stop).await }
    });
    tokio::time::sleep(LOAD_FOR).await;
    stop.store(true, Ordering::Relaxed);
    let tally = running.await.unwrap();
    let accepted = tally.statuses.get(&200).copied().unwrap_or(0);
    let landed = replicas
        .kafka
        .beacons(accepted, Duration::from_secs(2))
        .await;
    (tally, landed.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_quota_holds_for_the_whole_fleet_through_redis() {
    let redis = RedisServer::start();
    let alone = Arc::new(Replicas::start("fleet-alone", &[]).await);
    let (without, landed_without) = quota_run(Arc::clone(&alone), "alone").await;
    drop(alone);
    let shared =
        Arc::new(Replicas::start("fleet-shared", &[("INLET_REDIS_URL", &redis.url())]).await);
    let (with, landed_with) = quota_run(Arc::clone(&shared), "shared").await;

    let allowed = |t: &Tally| f64::from(RATE) * t.ran_for.as_secs_f64() + f64::from(BURST);
    let accepted = |t: &Tally| t.statuses.get(&200).copied().unwrap_or(0);
    for (name, tally, landed) in [
        ("without Redis", &without, landed_without),
        ("with Redis", &with, landed_with),
    ] {
        println!(
            "{name}: answers {:?} over {:.2} s; accepted {} (one replica's quota allows {:.0}); in Kafka {landed}",
            tally.statuses,
            tally.ran_for.as_secs_f64(),
            accepted(tally),
            allowed(tally),
        );
        assert!(
            tally.statuses.keys().all(|s| [200, 429].contains(s)),
            "{name}: only 200 and 429 expected: {:?}",
            tally.statuses
        );
        assert_eq!(
            landed,
            accepted(tally),
            "{name}: every accepted event in Kafka, once"
        );
    }
    let (limit, got) = (allowed(&with), accepted(&with) as f64);
    assert!(
        (got - limit).abs() <= 0.1 * limit,
        "with Redis the fleet accepts the token's quota once: {got} vs {limit:.0} ±10%"
    );
    let alone = accepted(&without) as f64;
    assert!(
        alone >= 2.0 * allowed(&without),
        "without Redis each replica allows the quota (about 3x): {alone} vs {:.0}",
        allowed(&without)
    );
    assert!(shared.metric("inlet_quota_backend_up", &[]).await == 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_sent_twice_to_two_replicas_lands_once() {
    const EVENTS: usize = 60;
    let redis = RedisServer::start();
    let env = [
        ("INLET_REDIS_URL", redis.url()),
        ("INLET_DEDUPE_WINDOW_S", "300".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replicas = Replicas::start("fleet-dedupe", &env).await;
    let mut answers = BTreeMap::new();
    for i in 0..EVENTS {
        let body =
            json!({"session_id": "dedupe", "event": "e", "id": format!("dup-{i}")}).to_string();
        for copy in 0..2 {
            let (status, answer) = replicas.post(i + copy, SDK, body.clone()).await;
            assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
            *answers.entry(status).or_insert(0) += 1;
        }
    }
    let landed = replicas.kafka.beacons(EVENTS, Duration::from_secs(2)).await;
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for message in &landed {
        *copies
            .entry(message.envelope.event_id.as_str())
            .or_insert(0) += 1;
    }
    let duplicates = replicas
        .metric("inlet_events_total", &["outcome=\"duplicate\""])
        .await;
    println!(
        "dedupe: sent {} ({EVENTS} ids twice, to two replicas), answers {answers:?}, \
         answered as duplicates {duplicates}, in Kafka {} ({} distinct ids)",
        2 * EVENTS,
        landed.len(),
        copies.len()
    );
    assert_eq!(copies.len(), EVENTS, "every id in Kafka");
    assert!(
        copies.values().all(|n| *n == 1),
        "one copy of each: {copies:?}"
    );
    assert_eq!(duplicates, EVENTS as f64);

    // A byte quota is the fleet's too: 600 of its 1,000 bytes taken through one replica leave
    // too few for the same request through another (each alone would take it).
    let events: Vec<_> = (0..10)
        .map(|i| json!({"session_id": "bytes", "event": format!("event-{i:02}"), "id": format!("b-{i}")}))
        .collect();
    let body = serde_json::to_string(&events).unwrap();
    assert!((500..1000).contains(&body.len()), "{}", body.len());
    let (first, answer) = replicas.post(0, FLEET_BYTES, body.clone()).await;
    assert_eq!(first, 200, "{answer}");
    let (second, answer) = replicas.post(1, FLEET_BYTES, body).await;
    assert_eq!(
        (second, answer["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_answering_while_redis_is_down_and_share_again_once_it_returns() {
    let mut redis = RedisServer::start();
    let replicas =
        Arc::new(Replicas::start("fleet-outage", &[("INLET_REDIS_URL", &redis.url())]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (replicas, stop) = (Arc::clone(&replicas), Arc::clone(&stop));
        async move { load(&replicas, FLEET, "outage", stop).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = replicas.metric("inlet_quota_backend_up", &[]).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = running.await.unwrap();
    // Waits (it asserts nothing about how long) until every replica pinged Redis back up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas.metric("inlet_quota_backend_up", &[]).await < 3.0 {
        assert!(
            Instant::now() < deadline,
            "a replica never found Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fallbacks = replicas.metric("inlet_quota_fallbacks_total", &[]).await;
    println!(
        "outage: answers {:?}; replicas with Redis up while it was down: {down}; \
         requests charged locally: {fallbacks}; all three up again",
        tally.statuses
    );
    assert!(
        tally.statuses.keys().all(|s| [200, 429].contains(s)),
        "only 200 and 429 through the outage: {:?}",
        tally.statuses
    );
    assert!(tally.statuses.get(&200).is_some_and(|n| *n > 0));
    assert_eq!(down, 0.0, "every replica saw Redis go");
    assert!(fallbacks > 0.0, "requests were charged locally meanwhile");
    let (status, _) = replicas
        .post(
            0,
            FLEET,
            json!({"session_id": "after", "event": "e"}).to_string(),
        )
        .await;
    assert!([200, 429].contains(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invalid_event_is_a_dead_letter_and_the_valid_ones_land() {
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 20;
    const FLOOD: usize = 3000;
    let replicas = Replicas::start("fleet-dead", &[]).await;
    // A flood of garbage first, a thousand invalid events a request: answered 400, and kept.
    for b in 0..FLOOD / 1000 {
        let garbage: Vec<_> = (0..1000).map(|i| json!({"flood": i})).collect();
        let (status, _) = replicas.post(b, SDK, json!(garbage).to_string()).await;
        assert_eq!(status, 400);
    }
    // Then a stream with 10% invalid events: the valid ones are all accepted.
    let (mut accepted, mut invalid) = (0, Vec::new());
    for b in 0..BATCHES {
        let events: Vec<_> = (0..PER_BATCH)
            .map(|i| {
                let session = format!("dl-{b}-{i}");
                if i % 10 == 3 {
                    invalid.push(session.clone());
                    json!({"session_id": session})
                } else {
                    json!({"session_id": session, "event": "e"})
                }
            })
            .collect();
        let (status, answer) = replicas.post(b, SDK, json!(events).to_string()).await;
        assert_eq!(status, 207, "{answer}");
        accepted += answer["accepted"].as_u64().unwrap() as usize;
    }
    let brokers = replicas.kafka.brokers();
    let (topic, expected) = (replicas.dead_letters.clone(), FLOOD + invalid.len());
    let letters = tokio::task::spawn_blocking(move || {
        consume_as(
            &brokers,
            &topic,
            expected,
            Duration::from_secs(2),
            |payload| DeadLetter::decode(payload).expect("a dead letter decodes"),
        )
    })
    .await
    .unwrap();
    let valid = landed(
        &replicas.kafka.brokers(),
        &replicas.kafka.topics.0,
        accepted,
        Duration::from_secs(1),
    )
    .await;
    let dropped = replicas
        .metric("inlet_dead_letters_dropped_total", &[])
        .await;
    let counted = replicas
        .metric("inlet_dead_letters_total", &["token=\"sdk\""])
        .await;
    let (flood, stream): (Vec<_>, Vec<_>) = letters
        .iter()
        .partition(|(_, letter)| letter.raw.contains("\"flood\""));
    println!(
        "dead letters: a flood of {FLOOD} invalid events, then {} events ({} invalid); accepted \
         {accepted}; in the beacons topic {}; dead letters {} of the flood and {} of the stream \
         (counted {counted}, dropped {dropped})",
        BATCHES * PER_BATCH,
        invalid.len(),
        valid.len(),
        flood.len(),
        stream.len()
    );
    assert_eq!(accepted, BATCHES * PER_BATCH - invalid.len());
    assert_eq!(valid.len(), accepted, "every valid event landed");
    assert_eq!(
        flood.len() as f64 + dropped,
        FLOOD as f64,
        "the flood kept or counted"
    );
    assert_eq!(counted, (FLOOD + invalid.len()) as f64);
    let mut lettered: Vec<String> = Vec::new();
    for (place, letter) in &stream {
        assert_eq!(place.key, "sdk", "keyed by token id");
        assert_eq!(place.headers["inlet-kind"], "dead_letter");
        assert_eq!(place.headers["inlet-schema"], "inlet.v1.DeadLetter");
        assert_eq!(
            (letter.code.as_str(), letter.kind.as_str()),
            ("missing_field", "beacon")
        );
        assert!(!letter.raw.contains(SDK), "never the secret");
        let raw: serde_json::Value = serde_json::from_str(&letter.raw).expect("the event's text");
        lettered.push(raw["session_id"].as_str().unwrap().to_owned());
    }
    lettered.sort();
    invalid.sort();
    assert_eq!(lettered, invalid, "each invalid event, once");
}
