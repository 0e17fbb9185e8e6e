//! Events: per-event validation of client JSON and conversion into the protobuf envelope.
//!
//! Validation is strict at the top level (an unknown field makes the event invalid, and the
//! error names it) and tolerant inside nested objects (`exception`, `frames`), where SDKs add
//! their own extras. Lengths are in bytes of UTF-8.
//!
//! An event is read into its kind's field table (`fields.rs`) from JSON text (`text.rs`, every
//! request body) or from the pixel's query string (`query.rs`, [`beacon::from_query`]); each
//! kind then applies its rules once. The reference parser (`reference.rs`, through a
//! `serde_json::Map`) is compiled only for the tests and, with the `reference` feature, the
//! fuzzer: it is the oracle the readers are compared against.

pub mod beacon;
mod fields;
pub mod occurrence;
mod query;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
mod text;

use crate::proto;

/// The two kinds of event inlet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Beacon,
    Occurrence,
}

impl Kind {
    /// Name used in routes, metric labels and the `inlet-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Beacon => "beacon",
            Kind::Occurrence => "occurrence",
        }
    }
}

/// The protocol an event arrived in, recorded as `Envelope.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// inlet's own JSON endpoints.
    #[default]
    Inlet,
    /// `GET /v1/pixel.gif`.
    Pixel,
    Rollbar,
    Sentry,
    Honeybadger,
    Segment,
    Posthog,
}

impl Source {
    /// The name in `Envelope.source` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Inlet => "inlet",
            Source::Pixel => "pixel",
            Source::Rollbar => "rollbar",
            Source::Sentry => "sentry",
            Source::Honeybadger => "honeybadger",
            Source::Segment => "segment",
            Source::Posthog => "posthog",
        }
    }
}

/// Why one event is invalid: a stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    /// An invalid event with its stable `code` (snake_case) and a message for the client.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            code,
            message: message.into(),
        }
    }
    pub(crate) fn missing(field: &str) -> Self {
        Invalid::new("missing_field", format!("`{field}` is required"))
    }
    pub(crate) fn bad(field: &str, why: impl std::fmt::Display) -> Self {
        Invalid::new("invalid_field", format!("`{field}` {why}"))
    }
    /// A field given more than once: parsers disagree on which copy wins, so inlet takes neither.
    pub(crate) fn duplicate(field: &str) -> Self {
        Invalid::new(
            "duplicate_field",
            format!("field `{field}` appears more than once"),
        )
    }
    pub(crate) fn unknown(field: &str) -> Self {
        Invalid::new("unknown_field", format!("unknown field `{field}`"))
    }
    /// A string or an object's text over its limit; `what` qualifies the size (" serialized").
    pub(crate) fn too_long(field: &str, len: usize, what: &str, max: usize) -> Self {
        Invalid::new(
            "field_too_long",
            format!("`{field}` is {len} bytes{what}, over the limit of {max}"),
        )
    }
    /// A text that is JSON but not an object.
    pub(crate) fn not_an_object() -> Self {
        Invalid::new("not_an_object", "an event must be a JSON object")
    }
    pub(crate) fn malformed_json(why: impl std::fmt::Display) -> Self {
        Invalid::new("malformed_json", why.to_string())
    }
}

/// A validated event, ready to be wrapped in an [`proto::Envelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The client's own event id (beacon `id`, occurrence `uuid`), if it sent one.
    pub client_id: Option<String>,
    pub body: proto::envelope::Event,
}

/// Parses one event's JSON text and validates it as `kind`: the path every request body
/// takes. The top-level fields are read straight from the text, borrowing it.
///
/// A field given twice makes the event invalid (`duplicate_field`): JSON parsers disagree on
/// which copy wins, so accepting it would let a client show one value to one system and another
/// to the next.
pub fn parse(kind: Kind, raw: &str) -> Result<Validated, Invalid> {
    match kind {
        Kind::Beacon => beacon::parse(raw),
        Kind::Occurrence => occurrence::parse(raw),
    }
}

#[cfg(test)]
impl Validated {
    /// The beacon, for tests; panics on an occurrence.
    pub(crate) fn into_beacon(self) -> proto::Beacon {
        match self.body {
            proto::envelope::Event::Beacon(b) => b,
            other => panic!("not a beacon: {other:?}"),
        }
    }

    /// The occurrence, for tests; panics on a beacon.
    pub(crate) fn into_occurrence(self) -> proto::Occurrence {
        match self.body {
            proto::envelope::Event::Occurrence(o) => o,
            other => panic!("not an occurrence: {other:?}"),
        }
    }
}

/// Gateway metadata added to every event.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub received_at_ms: i64,
    pub project_id: String,
    pub account_id: String,
    pub token_id: String,
    pub client_ip: String,
    pub user_agent: String,
    pub source: Source,
}

/// Wraps a validated event in its envelope; the event id is the client's or a new UUIDv7.
pub fn envelope(event: Validated, meta: &Meta) -> proto::Envelope {
    let event_id = event
        .client_id
        .unwrap_or_else(|| crate::id::uuid_v7().hyphenated().to_string());
    proto::Envelope {
        event_id,
        received_at_ms: meta.received_at_ms,
        project_id: meta.project_id.clone(),
        account_id: meta.account_id.clone(),
        token_id: meta.token_id.clone(),
        client_ip: meta.client_ip.clone(),
        user_agent: meta.user_agent.clone(),
        source: meta.source.as_str().to_owned(),
        trimmed: Vec::new(),
        event: Some(event.body),
    }
}
