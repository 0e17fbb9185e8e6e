//! Dead letters: every event refused as invalid, and every SDK message that could not be
//! translated, produced to their own topic as an `inlet.v1.DeadLetter` so an operator can see
//! what a broken client sends.
//!
//! They go through a producer of their own, with a small queue, rather than the sink's: a
//! flood of garbage fills that queue and nothing else, so it can never delay or refuse a valid
//! event. A request never waits for its dead letters: each is handed to librdkafka and
//! forgotten, and one that finds the queue full (or fails delivery) is dropped and counted.

use std::time::Duration;

use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::lane::Lane;

use crate::config::KafkaConfig;
use crate::event::{Invalid, Meta};
use crate::metrics;
use crate::proto::DeadLetter;
use crate::sink::kafka::producer_properties;

/// The most of an event's text a dead letter keeps.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// The dead-letter producer's properties over the sink's: its own small queue (its share of
/// memory), gathered longer (dead letters are not waited for), and its own client id.
const PROPERTIES: [(&str, &str); 5] = [
    ("client.id", "inlet-dead-letters"),
    ("queue.buffering.max.messages", "10000"),
    ("queue.buffering.max.kbytes", "32768"),
    ("linger.ms", "100"),
    ("message.timeout.ms", "30000"),
];

/// Where dead letters go.
pub struct DeadLetters {
    producer: ThreadedProducer<Counting>,
    topic: String,
    headers: OwnedHeaders,
}

impl DeadLetters {
    /// A producer for `topic` with the sink's connection settings from `config`.
    pub fn start(config: &KafkaConfig, topic: &str) -> anyhow::Result<DeadLetters> {
        let mut client = ClientConfig::new();
        for (k, v) in producer_properties(config) {
            client.set(k, v);
        }
        client.set("statistics.interval.ms", "0");
        for (k, v) in PROPERTIES {
            client.set(k, v);
        }
        let producer = client.create_with_context(Counting)?;
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "inlet-kind",
                value: Some("dead_letter"),
            })
            .insert(Header {
                key: "inlet-schema",
                value: Some("inlet.v1.DeadLetter"),
            });
        Ok(DeadLetters {
            producer,
            topic: topic.to_owned(),
            headers,
        })
    }

    /// Hands `letter` to the producer without waiting; drops it (counted) when the queue is
    /// full.
    pub fn post(&self, letter: &DeadLetter) {
        ::metrics::counter!(metrics::DEAD_LETTERS, "token" => letter.token_id.clone(), "code" => letter.code.clone())
            .increment(1);
        let value = letter.encode_to_vec();
        let record = BaseRecord::to(&self.topic)
            .key(&letter.token_id)
            .payload(&value)
            .headers(self.headers.clone());
        if let Err((error, _)) = self.producer.send(record) {
            tracing::debug!(%error, "dead letter dropped");
            ::metrics::counter!(metrics::DEAD_LETTERS_DROPPED).increment(1);
        }
    }
}

impl Drop for DeadLetters {
    fn drop(&mut self) {
        // Best-effort: a moment for what is queued, never a shutdown held up.
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

/// A dead letter for event `index` of a request, refused as `invalid`, whose text was `raw`.
pub fn letter(meta: &Meta, kind: Lane, index: usize, invalid: &Invalid, raw: &str) -> DeadLetter {
    DeadLetter {
        token_id: meta.token_id.clone(),
        project_id: meta.project_id.clone(),
        account_id: meta.account_id.clone(),
        kind: kind.as_str().to_owned(),
        source: meta.source.as_str().to_owned(),
        code: invalid.code.to_owned(),
        message: invalid.message.clone(),
        received_at_ms: meta.received_at_ms,
        raw: cut(raw, MAX_RAW_BYTES).to_owned(),
        raw_bytes: raw.len() as u64,
        index: index as u32,
    }
}

/// A pixel's query string without its `token` parameter: a dead letter never holds the secret.
pub fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some("token"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `text`'s first `max` bytes at most, ending at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Counts dead letters whose delivery failed (they are not retried).
struct Counting;

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            tracing::debug!(%error, "dead letter not delivered");
            ::metrics::counter!(metrics::DEAD_LETTERS_DROPPED).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_text_is_capped_at_a_character_boundary_and_says_how_long_it_was() {
        let meta = Meta {
            received_at_ms: 1,
            project_id: "p".into(),
            account_id: "a".into(),
            token_id: "t".into(),
            client_ip: String::new(),
            user_agent: String::new(),
            source: crate::event::Source::Inlet,
        };
        let raw = "é".repeat(MAX_RAW_BYTES);
        let invalid = Invalid::new("missing_field", "session_id is required");
        let letter = letter(&meta, Lane::BEACON, 3, &invalid, &raw);
        assert_eq!(letter.raw.len(), MAX_RAW_BYTES);
        assert_eq!(letter.raw_bytes, 2 * MAX_RAW_BYTES as u64);
        assert_eq!((letter.code.as_str(), letter.index), ("missing_field", 3));
    }

    #[test]
    fn a_pixel_query_loses_its_token() {
        assert_eq!(
            without_token("token=secret&session_id=s&event=e"),
            "session_id=s&event=e"
        );
    }
}
