//! Where accepted events go: the [`Sink`] seam, its Kafka implementation, and the durable
//! spool in front of it (`INLET_DELIVERY=spool`).
//!
//! Handlers build a batch of [`Record`]s and hand it over in one call; the sink answers with one
//! [`Outcome`] per record, in order, so a response can say exactly which events were accepted.

pub mod kafka;
pub mod spool;
#[cfg(test)]
pub mod memory;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::lane::Lane;

/// One Kafka message to produce.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: Lane,
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
    /// The spool is at `spool_max_bytes`.
    SpoolFull,
    /// The spool could not write or sync the events (disk full, I/O error).
    SpoolUnavailable,
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
            Failure::SpoolFull => "spool_full",
            Failure::SpoolUnavailable => "spool_unavailable",
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
    /// Whether the sink can take events: a broker answered recently (Kafka), or the spool is
    /// writable and has room.
    fn ready(&self) -> bool;
    /// Stops taking new records, delivers what is queued within `timeout`, and returns how many
    /// events could not be delivered. Blocking.
    fn close(&self, timeout: Duration) -> usize;
    /// Events handed over and not yet delivered or failed.
    fn in_flight(&self) -> usize;
}
