//! Where accepted events go: the [`Sink`] seam and its Kafka implementation.
//!
//! Handlers build a batch of [`Record`]s and hand it over in one call; the sink answers with one
//! [`Outcome`] per record, in order, so a response can say exactly which events were accepted.

pub mod kafka;
#[cfg(test)]
pub mod memory;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::event::Kind;

/// One Kafka message to produce.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: Kind,
    /// The shard key.
    pub key: String,
    /// The encoded `inlet.v1.Envelope`.
    pub value: Vec<u8>,
}

/// Why a record was not accepted. Each maps to a metric label and an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// librdkafka's local queue stayed full for the whole enqueue wait.
    QueueFull,
    /// The message is larger than the producer or broker allows.
    TooLarge,
    /// Not acknowledged within the delivery timeout (the outcome may be "possibly persisted").
    TimedOut,
    /// The broker or client reported another error.
    Broker,
    /// inlet is shutting down and no longer produces.
    ShuttingDown,
}

impl Failure {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::QueueFull => "queue_full",
            Failure::TooLarge => "too_large",
            Failure::TimedOut => "timed_out",
            Failure::Broker => "broker",
            Failure::ShuttingDown => "shutting_down",
        }
    }
}

/// The outcome of one record: `Ok` once accepted (acknowledged, or enqueued when not waiting).
pub type Outcome = Result<(), Failure>;

/// A boxed future, so [`Sink`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where accepted events are produced.
pub trait Sink: Send + Sync {
    /// Produces `records`; resolves when each is acknowledged (`wait_for_ack`) or enqueued,
    /// with one outcome per record, in order.
    fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>>;
    /// Whether a broker answered recently.
    fn ready(&self) -> bool;
    /// Stops taking new records, delivers what is queued within `timeout`, and returns how many
    /// events could not be delivered. Blocking.
    fn close(&self, timeout: Duration) -> usize;
    /// Events handed over and not yet delivered or failed.
    fn in_flight(&self) -> usize;
}

/// librdkafka's own `linger.ms` behind inlet's feeder.
const LIBRDKAFKA_LINGER_MS: &str = "0";

/// Bytes an envelope and Kafka's record framing may add to an event's JSON, at most.
const ENVELOPE_OVERHEAD: usize = 64 * 1024;

/// The configured properties inlet sets on its producer, for `config` (before the free-form
/// `librdkafka` ones, which win).
pub fn producer_properties(config: &crate::config::Config) -> Vec<(String, String)> {
    let message_timeout = match config.delivery {
        crate::config::Delivery::Ack => config.delivery_timeout.as_millis().to_string(),
        // Under `enqueue` an accepted event must survive broker outages: retry it for as long as
        // the process lives; a full queue pushes back on clients instead.
        crate::config::Delivery::Enqueue => "0".into(),
    };
    [
        ("bootstrap.servers", config.kafka_brokers.clone()),
        ("client.id", "inlet".into()),
        ("acks", "all".into()),
        ("enable.idempotence", "true".into()),
        ("partitioner", "murmur2_random".into()),
        ("compression.codec", config.compression.as_str().into()),
        // inlet's feeder gathers for `linger` and hands over in bursts (see `kafka`); librdkafka
        // need not wait again.
        ("linger.ms", LIBRDKAFKA_LINGER_MS.into()),
        ("message.timeout.ms", message_timeout),
        // librdkafka's default queue may hold 1 GiB; bound memory and push back sooner.
        ("queue.buffering.max.kbytes", (128 * 1024).to_string()),
        ("queue.buffering.max.messages", "100000".into()),
        // Room for the largest event inlet accepts plus its envelope; the broker's (or topic's)
        // message.max.bytes must be at least this too, or it refuses them (413).
        (
            "message.max.bytes",
            (config.beacons.max_event.max(config.occurrences.max_event) + ENVELOPE_OVERHEAD)
                .to_string(),
        ),
        // librdkafka backs off reconnecting up to 10 s by default: after an outage, a broker
        // that is back would sit unused for that long while requests wait. Retry every second.
        ("reconnect.backoff.max.ms", "1000".into()),
        // Queue depth, broker state and round-trip times become metrics.
        ("statistics.interval.ms", "5000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(config.librdkafka.clone())
    .collect()
}
