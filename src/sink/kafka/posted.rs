//! The producer of posted lanes (dead letters): a `ThreadedProducer` of its own, with a small
//! queue, beside the sink's. A flood of garbage fills that queue and nothing else, so it can
//! never delay or refuse an accepted event. Nothing waits for it: a record that finds the
//! queue full, or whose delivery fails, is dropped and counted.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::lane::PerLane;
use crate::metrics;
use crate::sink::Record;

/// The longest a closing sink waits for posted records: a moment for what is queued, never a
/// shutdown held up.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Where posted records go.
pub struct Posted {
    producer: ThreadedProducer<Counting>,
}

impl Posted {
    /// A producer built from `client` (see `properties::posted_config`).
    pub fn new(client: &ClientConfig) -> anyhow::Result<Posted> {
        Ok(Posted {
            producer: client.create_with_context(Counting)?,
        })
    }

    /// Hands `record` to librdkafka, to its lane's topic with its lane's headers; drops it
    /// (counted) when the queue is full.
    pub fn post(&self, record: &Record, topics: &PerLane<String>, headers: &PerLane<OwnedHeaders>) {
        let lane = record.kind;
        let message = BaseRecord::to(&topics[lane])
            .key(&record.key)
            .payload(&record.value)
            .headers(headers[lane].clone());
        if let Err((error, _)) = self.producer.send(message) {
            tracing::debug!(%error, lane = lane.as_str(), "posted record dropped");
            ::metrics::counter!(metrics::DEAD_LETTERS_DROPPED).increment(1);
        }
    }

    /// Waits up to [`CLOSE_WAIT`] (at most `timeout`) for what is queued.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout.min(CLOSE_WAIT));
    }
}

impl Drop for Posted {
    fn drop(&mut self) {
        self.flush(CLOSE_WAIT);
    }
}

/// Counts posted records whose delivery failed (they are not retried).
struct Counting;

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            tracing::debug!(%error, "posted record not delivered");
            ::metrics::counter!(metrics::DEAD_LETTERS_DROPPED).increment(1);
        }
    }
}
