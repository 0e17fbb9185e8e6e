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
    /// The lane's payload, encoded: an `inlet.v1.Envelope` (or a `DeadLetter`, on its lane; an
    /// OTLP `Export*ServiceRequest` on the OTLP lanes).
    pub value: Vec<u8>,
    /// Headers of this record besides its lane's (`inlet-kind`, `inlet-schema`), as names and
    /// values: the gateway's metadata, where the value has no room for it (OTLP). Usually none.
    pub headers: Vec<(String, String)>,
    /// The topic its token's registry entry names for its lane, instead of the lane's own.
    pub topic: Option<std::sync::Arc<str>>,
}

impl Record {
    /// A record of `kind` with no headers of its own, to its lane's topic.
    pub fn new(kind: Lane, key: String, value: Vec<u8>) -> Record {
        Record {
            kind,
            key,
            value,
            headers: Vec::new(),
            topic: None,
        }
    }
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

/// Everything one failure means, to the metrics and to a client: one row of [`Failure::meaning`].
pub struct Meaning {
    /// The `reason` label of the delivery and spool metrics.
    pub label: &'static str,
    /// The stable code a client sees (public contract).
    pub code: &'static str,
    /// What the client is told.
    pub message: &'static str,
    /// Seconds a client should wait before retrying an event that failed so.
    pub retry_after_secs: u64,
}

impl Failure {
    /// What this failure means: the one table of it.
    pub fn meaning(self) -> &'static Meaning {
        match self {
            Failure::QueueFull => &Meaning {
                label: "queue_full",
                code: "queue_full",
                message: "inlet's producer queue is full; retry later",
                retry_after_secs: 1,
            },
            Failure::TooLarge => &Meaning {
                label: "too_large",
                code: "event_too_large",
                message: "the event is larger than the broker accepts",
                retry_after_secs: 5,
            },
            Failure::TimedOut => &Meaning {
                label: "timed_out",
                code: "delivery_timed_out",
                message: "the broker did not acknowledge the event in time; retry later",
                retry_after_secs: 5,
            },
            Failure::Broker => &Meaning {
                label: "broker",
                code: "delivery_failed",
                message: "the broker refused the event; retry later",
                retry_after_secs: 5,
            },
            Failure::ShuttingDown => &Meaning {
                label: "shutting_down",
                code: "shutting_down",
                message: "inlet is shutting down; retry on another replica",
                retry_after_secs: 5,
            },
            // A full spool empties only as fast as Kafka takes it back.
            Failure::SpoolFull => &Meaning {
                label: "spool_full",
                code: "spool_full",
                message: "inlet's spool is full while Kafka is unreachable; retry later",
                retry_after_secs: 30,
            },
            Failure::SpoolUnavailable => &Meaning {
                label: "spool_unavailable",
                code: "spool_unavailable",
                message: "inlet could not write to its spool; retry later",
                retry_after_secs: 5,
            },
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        self.meaning().label
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
    /// Hands over a record of a posted lane (see [`Spec::posted`](crate::lane::Spec::posted)),
    /// never an accepted event: without waiting, through a queue of its own that an accepted
    /// event never waits behind, and dropped (counted) when that queue is full.
    fn post(&self, record: Record);
    /// Whether the sink can take events: a broker answered recently (Kafka), or the spool is
    /// writable and has room.
    fn ready(&self) -> bool;
    /// Stops taking new records, delivers what is queued within `timeout`, and returns how many
    /// events could not be delivered. Blocking.
    fn close(&self, timeout: Duration) -> usize;
    /// Events handed over and not yet delivered or failed.
    fn in_flight(&self) -> usize;
    /// Whether `topic` (a token's own, named by the registry) exists on the broker:
    /// `Some(false)` when the broker says it does not, `None` when no broker answers now.
    fn topic_exists(&self, _topic: &str) -> BoxFuture<'_, Option<bool>> {
        Box::pin(std::future::ready(Some(true)))
    }
    /// The tokens' topics found missing, for `/readyz`.
    fn missing_topics(&self) -> Vec<String> {
        Vec::new()
    }
}
