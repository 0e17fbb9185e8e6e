//! What a translation hands the pipeline: one request's events of one lane, split from the body
//! but not yet validated ([`Batch`]), each as its text, a query string, or an event an SDK
//! adapter translated already ([`Translated`], or [`Untranslated`] with its raw text for the dead
//! letters). Every protocol's translation ends here, and nothing here knows of HTTP, the sink or
//! the fleet.

use std::ops::Range;

use bytes::Bytes;

use crate::error::ApiError;
use crate::event::{self, Invalid, Source, Validated};
use crate::lane::Lane;
use crate::metrics::count_events;

/// Batches whose text is at least this large are split, validated and converted on the
/// blocking pool, so one huge body cannot hold up a runtime worker (and every request queued
/// behind it); smaller ones, the usual case, are handled in place.
pub const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

/// One request's events of one kind, split by its endpoint but not yet validated.
pub struct Batch {
    pub(crate) kind: Lane,
    /// The protocol the events arrived in.
    pub(crate) source: Source,
    /// The text the events are read from: a decoded body, a query string, or the messages an
    /// SDK endpoint could not translate (kept for the dead letters).
    pub(crate) text: Bytes,
    pub(crate) events: Vec<Result<Raw, Invalid>>,
    /// What an SDK endpoint left out of each event to fit its caps, by event index; empty when
    /// nothing was (always, for inlet's own endpoints).
    pub(crate) trimmed: Vec<Vec<String>>,
}

/// One event an SDK endpoint translated from its SDK's payload, validated by its kind's rules
/// as it was built ([`event::from_fields`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub event: Validated,
    /// The parts of the SDK's payload left out of `props` / `custom` to fit their cap, largest
    /// first (`Envelope.trimmed`).
    pub trimmed: Vec<String>,
}

/// One message of an SDK's payload that could not be translated into an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Untranslated {
    /// Why, with a stable code.
    pub invalid: Invalid,
    /// The message as the SDK sent it (its JSON text), kept for the operator.
    pub raw: String,
}

/// Where one event of a [`Batch`] is.
pub(crate) enum Raw {
    /// JSON text at this range of the batch's text.
    Json(Range<usize>),
    /// The whole text is one beacon's query string (`GET /v1/pixel.gif`).
    Query,
    /// An SDK's message that could not be translated: its text as the SDK sent it, at this
    /// range of the batch's text (for the dead letters), and why.
    Untranslated(Range<usize>, Invalid),
    /// An event an SDK endpoint translated, validated as it was built.
    Translated(Box<Validated>),
}

impl Batch {
    /// Splits a decoded body into events (one object, an array, or NDJSON; see
    /// [`crate::decode::split_events`]): at most `max_events`, none of them over `max_event`
    /// bytes (413 `event_too_large` naming the first one that is). In place: a large body's
    /// translation is on the blocking pool already (`http::adapter`).
    pub fn split(
        kind: Lane,
        body: Bytes,
        max_events: usize,
        max_event: usize,
    ) -> Result<Batch, ApiError> {
        let start = body.as_ptr() as usize;
        let events: Vec<Result<Raw, Invalid>> = crate::decode::split_events(&body, max_events)?
            .into_iter()
            .map(|event| {
                event.map(|text| {
                    let at = text.as_ptr() as usize - start;
                    Raw::Json(at..at + text.len())
                })
            })
            .collect();
        let too_large = events
            .iter()
            .enumerate()
            .find_map(|(index, event)| match event {
                Ok(Raw::Json(range)) if range.len() > max_event => Some((index, range.len())),
                _ => None,
            });
        if let Some((index, size)) = too_large {
            count_events(kind, "too_large", events.len());
            return Err(ApiError::EventTooLarge {
                index,
                size,
                limit: max_event,
            });
        }
        Ok(Batch {
            kind,
            source: Source::Inlet,
            text: body,
            events,
            trimmed: Vec::new(),
        })
    }

    /// One beacon given as a query string's fields (`session_id=s&event=e&props=…`), as the
    /// pixel receives it.
    pub fn query(query: &str) -> Batch {
        Batch {
            kind: Lane::BEACON,
            source: Source::Pixel,
            text: Bytes::copy_from_slice(query.as_bytes()),
            events: vec![Ok(Raw::Query)],
            trimmed: Vec::new(),
        }
    }

    /// The events an SDK endpoint translated from `source`'s payload, in the SDK's order: each
    /// validated already, or refused (a message that could not be translated, or whose event
    /// broke a rule), so indices in the answer are the SDK's.
    pub fn translated(
        kind: Lane,
        source: Source,
        events: Vec<Result<Translated, Untranslated>>,
    ) -> Batch {
        let size = events
            .iter()
            .map(|e| match e {
                Ok(_) => 0,
                Err(untranslated) => untranslated.raw.len(),
            })
            .sum();
        let mut text = Vec::with_capacity(size);
        let mut trimmed = Vec::new();
        let mut raw = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            let at = text.len();
            raw.push(Ok(match event {
                Ok(event) => {
                    if !event.trimmed.is_empty() {
                        trimmed.resize_with(index + 1, Vec::new);
                        trimmed[index] = event.trimmed;
                    }
                    Raw::Translated(Box::new(event.event))
                }
                Err(Untranslated { invalid, raw }) => {
                    text.extend_from_slice(raw.as_bytes());
                    Raw::Untranslated(at..text.len(), invalid)
                }
            }));
        }
        Batch {
            kind,
            source,
            text: Bytes::from(text),
            events: raw,
            trimmed,
        }
    }

    /// How many events the batch holds, valid or not.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// The bytes converting the batch goes through: its text, and the data of the recordings
    /// it holds (hashed and cut into chunks).
    pub fn weight(&self) -> usize {
        let recordings = self.events.iter().map(|event| match event {
            Ok(Raw::Translated(valid)) => match &valid.body {
                crate::proto::envelope::Event::Recording(recording) => recording.data.len(),
                _ => 0,
            },
            _ => 0,
        });
        self.text.len() + recordings.sum::<usize>()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Runs `work` in place, or on the blocking pool when it is `large`, so that one huge body
/// cannot hold up a runtime worker (and every request queued behind it). `what` the work does
/// to the body names it in the error should the blocking task fail.
pub async fn off_the_runtime_if<T: Send + 'static>(
    large: bool,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if !large {
        return Ok(work());
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        // A panic on the blocking pool is the request's: raised again here, where the
        // request's handler catches it (`http::adapter`).
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(ApiError::MalformedBody(format!(
            "the body could not be {what}"
        ))),
    }
}

/// An event's text as the client sent it.
pub(crate) fn raw_text<'a>(text: &'a str, raw: &Raw) -> &'a str {
    match raw {
        Raw::Json(range) | Raw::Untranslated(range, _) => &text[range.clone()],
        Raw::Query => text,
        // Valid already: never a dead letter.
        Raw::Translated(_) => "",
    }
}

/// Reads and validates one event of a batch.
pub(crate) fn validate(kind: Lane, text: &str, raw: Raw) -> Result<Validated, Invalid> {
    match raw {
        Raw::Json(range) => event::parse(kind, &text[range]),
        Raw::Query => event::beacon::from_query(text),
        Raw::Untranslated(_, invalid) => Err(invalid),
        Raw::Translated(event) => Ok(*event),
    }
}
