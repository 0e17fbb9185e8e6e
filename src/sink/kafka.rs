//! The Kafka sink: librdkafka through rdkafka's `ThreadedProducer`.
//!
//! One delivery path for every message: each message carries a small opaque slot naming its
//! request's [`Batch`] and its index; librdkafka's delivery report (on the producer's polling
//! thread) records the outcome there and wakes the request once the whole batch is reported.
//! A request waits once, however many events it carries.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use super::{BoxFuture, Failure, Outcome, Record, Sink};
use crate::config::Config;
use crate::event::Kind;
use crate::metrics;

/// How often readiness is probed with a metadata request.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long an enqueue attempt sleeps while librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// The outcomes of one request's records, filled in by delivery reports.
struct Batch {
    outcomes: Mutex<Vec<Outcome>>,
    remaining: AtomicUsize,
    done: Notify,
}

impl Batch {
    fn new(n: usize) -> Batch {
        Batch {
            outcomes: Mutex::new(vec![Err(Failure::Broker); n]),
            remaining: AtomicUsize::new(n),
            done: Notify::new(),
        }
    }

    fn complete(&self, index: usize, outcome: Outcome) {
        if let Ok(mut outcomes) = self.outcomes.lock() {
            outcomes[index] = outcome;
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

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "client error");
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
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
            Failure::ShuttingDown
        }
        _ => Failure::Broker,
    }
}

struct Inner {
    producer: ThreadedProducer<Context>,
    topics: [String; 2],
    headers: [OwnedHeaders; 2],
    enqueue_wait: Duration,
    ready: AtomicBool,
    closed: AtomicBool,
}

/// The Kafka sink.
pub struct KafkaSink {
    inner: Arc<Inner>,
}

impl KafkaSink {
    /// Creates the producer from `config` and starts the readiness probe.
    pub fn new(config: &Config) -> anyhow::Result<KafkaSink> {
        let mut client = ClientConfig::new();
        for (k, v) in super::producer_properties(config) {
            client.set(k, v);
        }
        if client.get("acks").is_some_and(|a| a != "all" && a != "-1") {
            tracing::warn!("librdkafka acks is not `all`: an acknowledged event may still be lost");
        }
        let producer: ThreadedProducer<Context> = client
            .create_with_context(Context)
            .map_err(|e| anyhow::anyhow!("librdkafka: cannot create the producer: {e}"))?;
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
            producer,
            topics: [
                config.topic_beacons.clone(),
                config.topic_occurrences.clone(),
            ],
            headers: [headers(Kind::Beacon), headers(Kind::Occurrence)],
            enqueue_wait: config.enqueue_wait,
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("inlet-kafka-probe".into())
            .spawn(move || probe(weak))?;
        Ok(KafkaSink { inner })
    }
}

/// Marks the sink ready while a broker answers metadata requests for the beacons topic.
fn probe(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let result = inner
            .producer
            .client()
            .fetch_metadata(Some(&inner.topics[0]), PROBE_EVERY);
        let ok = match &result {
            Ok(md) => md
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()),
            Err(_) => false,
        };
        let was = inner.ready.swap(ok, Ordering::Relaxed);
        if was != ok {
            match &result {
                Ok(_) if ok => tracing::info!(topic = %inner.topics[0], "Kafka is reachable"),
                Ok(_) => {
                    tracing::warn!(topic = %inner.topics[0], "topic missing or without partitions")
                }
                Err(error) => tracing::warn!(%error, "Kafka is unreachable"),
            }
        }
        ::metrics::gauge!(metrics::KAFKA_READY).set(if ok { 1.0 } else { 0.0 });
        drop(inner);
        std::thread::sleep(if ok {
            PROBE_EVERY
        } else {
            Duration::from_millis(500)
        });
    }
}

impl Inner {
    async fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> Vec<Outcome> {
        let n = records.len();
        let batch = Arc::new(Batch::new(n));
        let deadline = Instant::now() + self.enqueue_wait;
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
                match self.producer.send(message) {
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
            batch.wait().await;
            return batch.outcomes.lock().map(|o| o.clone()).unwrap_or_default();
        }
        // `enqueue` delivery: accepted once queued; delivery reports still count failures.
        let outcomes = batch.outcomes.lock().map(|o| o.clone()).unwrap_or_default();
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
        if let Err(error) = self.inner.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush did not complete");
        }
        self.inner.producer.in_flight_count().max(0) as usize
    }
}
