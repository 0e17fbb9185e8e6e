//! Dead letters: every event refused as invalid, and every SDK message that could not be
//! translated, produced to their own topic as an `inlet.v1.DeadLetter` so an operator can see
//! what a broken client sends.
//!
//! They are a lane ([`Lane::DEAD_LETTER`]), posted through the sink like any posted lane: to a
//! producer queue of their own, so a flood of garbage fills that queue and nothing else, and
//! can never delay or refuse a valid event. A request never waits for its dead letters: each is
//! handed over and forgotten, and one that finds the queue full (or fails delivery) is dropped
//! and counted (`inlet_dead_letters_dropped_total`).

use std::sync::Arc;

use prost::Message as _;

use crate::event::{Invalid, Meta};
use crate::lane::Lane;
use crate::metrics;
use crate::proto::DeadLetter;
use crate::sink::{Record, Sink};

/// The most of an event's text a dead letter keeps.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// Where dead letters go: the sink, on their lane.
pub struct DeadLetters {
    sink: Arc<dyn Sink>,
}

impl DeadLetters {
    /// Dead letters posted through `sink`.
    pub fn new(sink: Arc<dyn Sink>) -> DeadLetters {
        DeadLetters { sink }
    }

    /// Posts `letter`, keyed by its token (the lane's key rule), counted by token and code.
    pub fn post(&self, letter: &DeadLetter) {
        ::metrics::counter!(metrics::DEAD_LETTERS, "token" => letter.token_id.clone(), "code" => letter.code.clone())
            .increment(1);
        let key = letter.token_id.clone();
        (self.sink).post(Record::new(Lane::DEAD_LETTER, key, letter.encode_to_vec()));
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
        binary: Vec::new(),
    }
}

/// A dead letter for what a request of `kind` held at `index` (the whole body at 0), refused as
/// `invalid`, that is not text: its bytes, cut to [`MAX_RAW_BYTES`].
pub fn binary_letter(
    meta: &Meta,
    kind: Lane,
    index: usize,
    invalid: &Invalid,
    raw: &[u8],
) -> DeadLetter {
    DeadLetter {
        binary: raw[..raw.len().min(MAX_RAW_BYTES)].to_vec(),
        raw_bytes: raw.len() as u64,
        ..letter(meta, kind, index, invalid, "")
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
            topic: None,
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
