//! The Kafka sink: librdkafka through rdkafka's `ThreadedProducer`.
//!
//! One delivery path for every message: each message carries a small opaque slot naming its
//! request's [`Batch`] and its index; librdkafka's delivery report (on the producer's polling
//! thread) records the outcome there and wakes the request once the whole batch is reported.
//! A request waits once, however many events it carries.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use serde::Deserialize;
use tokio::sync::Notify;

use super::{BoxFuture, Failure, Outcome, Record, Sink};
use crate::config::Config;
use crate::event::Kind;
use crate::metrics;

/// How often readiness is probed with a metadata request.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often the supervisor checks for a fatal producer error.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// How much longer than `delivery_timeout` a request waits for late delivery reports.
const ACK_GUARD_MARGIN: Duration = Duration::from_secs(1);
/// How long an enqueue attempt sleeps while librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// The outcomes of one request's records, filled in by delivery reports (`None` until reported).
struct Batch {
    outcomes: Mutex<Vec<Option<Outcome>>>,
    remaining: AtomicUsize,
    done: Notify,
}

impl Batch {
    fn new(n: usize) -> Batch {
        Batch {
            outcomes: Mutex::new(vec![None; n]),
            remaining: AtomicUsize::new(n),
            done: Notify::new(),
        }
    }

    fn complete(&self, index: usize, outcome: Outcome) {
        if let Ok(mut outcomes) = self.outcomes.lock() {
            outcomes[index] = Some(outcome);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    async fn wait(&self) {
        while self.remaining.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
    }

    /// The outcomes so far; an unreported one counts as `unreported`.
    fn outcomes(&self, unreported: Failure) -> Vec<Outcome> {
        self.outcomes
            .lock()
            .map(|o| o.iter().map(|x| x.unwrap_or(Err(unreported))).collect())
            .unwrap_or_default()
    }
}

/// The opaque each message carries to its delivery report.
pub struct Slot {
    batch: Arc<Batch>,
    index: usize,
    enqueued: Instant,
}

/// Routes librdkafka's logs and errors to tracing and its delivery reports to batches.
pub struct Context;

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Stats>(statistics) {
            Ok(stats) => stats.record(),
            Err(error) => tracing::debug!(%error, "unreadable librdkafka statistics"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // Connection trouble repeats at every retry; readiness changes are logged once by
            // the supervisor, the details stay at debug.
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                tracing::debug!(target: "librdkafka", %error, reason, "client error")
            }
            _ => tracing::warn!(target: "librdkafka", %error, reason, "client error"),
        }
    }
}

/// The parts of librdkafka's statistics JSON that become metrics.
#[derive(Debug, Deserialize)]
struct Stats {
    msg_cnt: u64,
    msg_size: u64,
    msg_max: u64,
    msg_size_max: u64,
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerStats>,
}

#[derive(Debug, Deserialize)]
struct BrokerStats {
    nodeid: i32,
    state: String,
    #[serde(default)]
    txretries: u64,
    #[serde(default)]
    txerrs: u64,
    #[serde(default)]
    rtt: Option<Window>,
}

#[derive(Debug, Deserialize)]
struct Window {
    /// Microseconds.
    avg: i64,
}

impl Stats {
    fn record(&self) {
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MESSAGES).set(self.msg_cnt as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_MESSAGES).set(self.msg_max as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_BYTES).set(self.msg_size as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_BYTES).set(self.msg_size_max as f64);
        let (mut retries, mut errors) = (0, 0);
        // Bootstrap entries (nodeid -1) duplicate the brokers they lead to.
        for b in self.brokers.values().filter(|b| b.nodeid >= 0) {
            retries += b.txretries;
            errors += b.txerrs;
            let broker = b.nodeid.to_string();
            let up = if b.state == "UP" { 1.0 } else { 0.0 };
            ::metrics::gauge!(metrics::KAFKA_BROKER_UP, "broker" => broker.clone()).set(up);
            if let Some(rtt) = &b.rtt {
                ::metrics::gauge!(metrics::KAFKA_BROKER_RTT, "broker" => broker)
                    .set(rtt.avg.max(0) as f64 / 1e6);
            }
        }
        ::metrics::counter!(metrics::KAFKA_RETRIES).absolute(retries);
        ::metrics::counter!(metrics::KAFKA_ERRORS).absolute(errors);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let outcome = match result {
            Ok(_) => {
                ::metrics::histogram!(metrics::PRODUCE_LATENCY).record(slot.enqueued.elapsed());
                Ok(())
            }
            Err((error, _)) => {
                let failure = failure_of(error);
                ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str())
                    .increment(1);
                tracing::debug!(%error, "delivery failed");
                Err(failure)
            }
        };
        slot.batch.complete(slot.index, outcome);
    }
}

fn failure_of(error: &KafkaError) -> Failure {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => Failure::QueueFull,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => Failure::TooLarge,
        Some(RDKafkaErrorCode::MessageTimedOut) => Failure::TimedOut,
        // Purged (by a producer rebuild), fatal, or any other error: not delivered, retry.
        _ => Failure::Broker,
    }
}

type Producer_ = ThreadedProducer<Context>;

struct Inner {
    /// The live producer; replaced whole after a fatal error.
    producer: ArcSwap<Producer_>,
    /// What the producer is built from, for rebuilds.
    client_config: ClientConfig,
    topics: [String; 2],
    headers: [OwnedHeaders; 2],
    enqueue_wait: Duration,
    /// Longest wait for delivery reports under `ack` delivery.
    ack_guard: Duration,
    ready: AtomicBool,
    closed: AtomicBool,
}

/// The Kafka sink.
pub struct KafkaSink {
    inner: Arc<Inner>,
}

fn create_producer(client: &ClientConfig) -> anyhow::Result<Producer_> {
    client
        .create_with_context(Context)
        .map_err(|e| anyhow::anyhow!("librdkafka: cannot create the producer: {e}"))
}

impl KafkaSink {
    /// Creates the producer from `config` and starts its supervisor (readiness probe and
    /// recovery from fatal errors).
    pub fn new(config: &Config) -> anyhow::Result<KafkaSink> {
        let mut client = ClientConfig::new();
        for (k, v) in super::producer_properties(config) {
            client.set(k, v);
        }
        if client.get("acks").is_some_and(|a| a != "all" && a != "-1") {
            tracing::warn!("librdkafka acks is not `all`: an acknowledged event may still be lost");
        }
        let producer = create_producer(&client)?;
        let headers = |kind: Kind| {
            OwnedHeaders::new()
                .insert(Header {
                    key: "inlet-kind",
                    value: Some(kind.as_str()),
                })
                .insert(Header {
                    key: "inlet-schema",
                    value: Some("inlet.v1.Envelope"),
                })
        };
        let inner = Arc::new(Inner {
            producer: ArcSwap::from_pointee(producer),
            client_config: client,
            topics: [
                config.topic_beacons.clone(),
                config.topic_occurrences.clone(),
            ],
            headers: [headers(Kind::Beacon), headers(Kind::Occurrence)],
            enqueue_wait: config.enqueue_wait,
            ack_guard: config.delivery_timeout + ACK_GUARD_MARGIN,
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("inlet-kafka-supervisor".into())
            .spawn(move || supervise(weak))?;
        Ok(KafkaSink { inner })
    }

    /// Raises a fatal error in the live producer, as a broker fencing the idempotent producer
    /// would. For fault tests.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        let producer = self.inner.producer.load_full();
        let reason = std::ffi::CString::new("injected by a fault test").expect("no NUL");
        // SAFETY: the handle stays alive for the call (we hold an Arc to its producer), and
        // librdkafka copies the reason.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}

/// Watches the producer: probes readiness with a metadata request for the beacons topic every
/// [`PROBE_EVERY`], and replaces the producer when librdkafka reports a fatal error (for the
/// idempotent producer: a fenced or out-of-sequence producer id), which would otherwise fail
/// every later produce.
fn supervise(weak: Weak<Inner>) {
    let mut next_probe = Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let producer = inner.producer.load_full();
        if let Some((code, reason)) = producer.client().fatal_error() {
            inner.recover(&producer, code, &reason);
        }
        if Instant::now() >= next_probe {
            let ok = inner.probe(&producer);
            next_probe = Instant::now()
                + if ok {
                    PROBE_EVERY
                } else {
                    Duration::from_millis(500)
                };
        }
        drop((producer, inner));
        std::thread::sleep(SUPERVISE_EVERY);
    }
}

impl Inner {
    /// One readiness probe; returns whether a broker answered with the topic's partitions.
    fn probe(&self, producer: &Producer_) -> bool {
        let result = producer
            .client()
            .fetch_metadata(Some(&self.topics[0]), PROBE_EVERY);
        let ok = match &result {
            Ok(md) => md
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()),
            Err(_) => false,
        };
        let was = self.ready.swap(ok, Ordering::Relaxed);
        if was != ok {
            match &result {
                Ok(_) if ok => tracing::info!(topic = %self.topics[0], "Kafka is reachable"),
                Ok(_) => {
                    tracing::warn!(topic = %self.topics[0], "topic missing or without partitions")
                }
                Err(error) => tracing::warn!(%error, "Kafka is unreachable"),
            }
        }
        ::metrics::gauge!(metrics::KAFKA_READY).set(if ok { 1.0 } else { 0.0 });
        ok
    }

    /// Replaces a producer that hit a fatal error. Its queued and in-flight messages are purged,
    /// so their requests answer 503 at once and the clients retry (an in-flight one may have been
    /// written: the retry can duplicate it, which the event id lets consumers drop).
    fn recover(&self, failed: &Arc<Producer_>, code: RDKafkaErrorCode, reason: &str) {
        ::metrics::counter!(metrics::PRODUCER_FATAL_ERRORS).increment(1);
        tracing::error!(
            ?code,
            reason,
            "fatal producer error: replacing the producer"
        );
        let fresh = match create_producer(&self.client_config) {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => {
                tracing::error!(%error, "cannot create a new producer; retrying");
                return;
            }
        };
        self.producer.store(fresh);
        failed.purge(PurgeConfig::default().queue().inflight());
        let failed = Arc::clone(failed);
        // Dropping joins librdkafka's threads; keep that off the supervisor's clock.
        let _ = std::thread::Builder::new()
            .name("inlet-kafka-retire".into())
            .spawn(move || drop(failed));
    }

    async fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> Vec<Outcome> {
        let n = records.len();
        let batch = Arc::new(Batch::new(n));
        let deadline = Instant::now() + self.enqueue_wait;
        let mut producer = self.producer.load_full();
        let mut enqueued = vec![false; n];
        for (index, record) in records.iter().enumerate() {
            let i = match record.kind {
                Kind::Beacon => 0,
                Kind::Occurrence => 1,
            };
            let failure = loop {
                if self.closed.load(Ordering::Relaxed) {
                    break Some(Failure::ShuttingDown);
                }
                let slot = Box::new(Slot {
                    batch: Arc::clone(&batch),
                    index,
                    enqueued: Instant::now(),
                });
                let message = BaseRecord::with_opaque_to(&self.topics[i], slot)
                    .key(record.key.as_bytes())
                    .payload(&record.value[..])
                    .headers(self.headers[i].clone());
                match producer.send(message) {
                    Ok(()) => break None,
                    Err((error, _)) => {
                        let failure = failure_of(&error);
                        if failure != Failure::QueueFull {
                            break Some(failure);
                        }
                        if Instant::now() >= deadline {
                            break Some(Failure::QueueFull);
                        }
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                        producer = self.producer.load_full();
                    }
                }
            };
            match failure {
                None => enqueued[index] = true,
                Some(failure) => {
                    ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str())
                        .increment(1);
                    batch.complete(index, Err(failure));
                    if failure == Failure::QueueFull {
                        // The wait is spent: the rest of the batch would only wait again.
                        for rest in index + 1..n {
                            batch.complete(rest, Err(Failure::QueueFull));
                        }
                        break;
                    }
                }
            }
        }
        if wait_for_ack {
            // librdkafka reports every message within message.timeout.ms; the guard only bounds
            // the answer should a report come late. An event still unreported then is answered
            // as timed out (not accepted; it may yet be written, like any "possibly persisted").
            if tokio::time::timeout(self.ack_guard, batch.wait())
                .await
                .is_err()
            {
                tracing::warn!("delivery reports overdue: answering the rest as timed out");
            }
            return batch.outcomes(Failure::TimedOut);
        }
        // `enqueue` delivery: accepted once queued; delivery reports still count failures.
        let outcomes = batch.outcomes(Failure::Broker);
        enqueued
            .iter()
            .zip(outcomes)
            .map(|(&queued, outcome)| if queued { Ok(()) } else { outcome })
            .collect()
    }
}

impl Sink for KafkaSink {
    fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>> {
        Box::pin(self.inner.send(records, wait_for_ack))
    }

    fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed) && !self.inner.closed.load(Ordering::Relaxed)
    }

    fn close(&self, timeout: Duration) -> usize {
        self.inner.closed.store(true, Ordering::Relaxed);
        let producer = self.inner.producer.load_full();
        if let Err(error) = producer.flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
        self.in_flight()
    }

    fn in_flight(&self) -> usize {
        self.inner.producer.load().in_flight_count().max(0) as usize
    }
}
