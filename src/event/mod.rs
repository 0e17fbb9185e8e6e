//! Events: per-event validation of client JSON and conversion into the protobuf envelope.
//!
//! Validation is strict at the top level (an unknown field makes the event invalid, and the
//! error names it) and tolerant inside nested objects (`exception`, `frames`), where SDKs add
//! their own extras. Lengths are in bytes of UTF-8.
//!
//! An event is read into its kind's field table (`fields.rs`) from JSON text (`text.rs`, every
//! request body) or from the pixel's query string (`query.rs`, [`beacon::from_query`]); each
//! kind then applies its rules once. An SDK endpoint's translation gives the fields one by one
//! instead ([`from_fields`]): the same rules apply, and nothing is written as JSON to be read
//! again. The reference parser (`reference.rs`, through a
//! `serde_json::Map`) is compiled only for the tests and, with the `reference` feature, the
//! fuzzer: it is the oracle the readers are compared against.

pub mod beacon;
mod fields;
pub mod occurrence;
mod query;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
mod text;

use std::borrow::Cow;

use crate::lane::Lane;
use crate::proto;
use fields::{Field, Fields, Read};
pub(crate) use text::Key;
pub use text::ObjectText;

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
    /// OpenTelemetry's protocol (`/v1/traces`, `/v1/logs`, `/v1/metrics`).
    Otlp,
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
            Source::Otlp => "otlp",
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
pub fn parse(kind: Lane, raw: &str) -> Result<Validated, Invalid> {
    match kind {
        Lane::BEACON => beacon::parse(raw),
        Lane::OCCURRENCE => occurrence::parse(raw),
        other => Err(not_json_events(other)),
    }
}

/// One top-level field's value as an SDK endpoint's translation gives it ([`from_fields`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    Str(String),
    /// Milliseconds since the epoch (a time field).
    Millis(i64),
    /// An object field (`props`, `custom`), checked as it was built.
    Object(ObjectText),
    /// An occurrence's `exception`, built typed: held to the limits of one read from JSON.
    Exception(proto::Exception),
}

impl From<Given> for Field<'_> {
    fn from(given: Given) -> Self {
        match given {
            Given::Str(s) => Field::Str(Cow::Owned(s)),
            Given::Millis(ms) => Field::Number(Some(ms)),
            Given::Object(text) => Field::Object(Cow::Owned(text.into_string())),
            Given::Exception(exception) => Field::Exception(exception),
        }
    }
}

/// Validates an event of `kind` given field by field, as an SDK endpoint translates one: the
/// rules of [`parse`], applied to the same field table, without the event being written as
/// JSON and read again. A name the kind does not have is `unknown_field`, as in JSON text.
pub fn from_fields(
    kind: Lane,
    fields: impl IntoIterator<Item = (&'static str, Given)>,
) -> Result<Validated, Invalid> {
    match kind {
        Lane::BEACON => beacon::convert(table(&beacon::FIELDS, fields)),
        Lane::OCCURRENCE => occurrence::convert(table(&occurrence::FIELDS, fields)),
        other => Err(not_json_events(other)),
    }
}

/// The longest item type kept: an SDK's own names are short.
pub const MAX_ITEM_TYPE: usize = 64;

/// An SDK's item carried verbatim (lane `item`): the SDK's name for its `kind` (1..=64 bytes,
/// else `missing_field` / `field_too_long`), its payload's `media_type`, its bytes as written,
/// and its own headers as JSON text (empty when the protocol has none).
pub fn item(
    kind: &str,
    media_type: &str,
    payload: Vec<u8>,
    headers_json: String,
) -> Result<Validated, Invalid> {
    if kind.is_empty() {
        return Err(Invalid::new("missing_field", "an item needs a type"));
    }
    if kind.len() > MAX_ITEM_TYPE {
        return Err(Invalid::new(
            "field_too_long",
            format!("an item's type is at most {MAX_ITEM_TYPE} bytes"),
        ));
    }
    Ok(Validated {
        client_id: None,
        body: proto::envelope::Event::Item(proto::Item {
            r#type: kind.to_owned(),
            media_type: media_type.to_owned(),
            payload,
            headers_json,
        }),
    })
}

/// The longest session id a recording is keyed by, as a beacon's.
pub const MAX_SESSION_ID: usize = 128;

/// A session id as a recording's key: 1..=128 bytes, without control characters (it names
/// files and appears in logs).
pub fn session_id(session_id: &str) -> Result<(), Invalid> {
    if session_id.is_empty() {
        return Err(Invalid::missing("session_id"));
    }
    if session_id.len() > MAX_SESSION_ID {
        let len = session_id.len();
        return Err(Invalid::too_long("session_id", len, "", MAX_SESSION_ID));
    }
    if session_id.chars().any(char::is_control) {
        return Err(Invalid::bad("session_id", "holds a control character"));
    }
    Ok(())
}

/// A whole session recording an SDK sent in its request (lane `recording`): keyed by its
/// `session_id` (see [`session_id`]), of the SDK's `kind`, with its payload's `media_type`
/// (`application/octet-stream` when empty), bytes and the SDK's own headers as JSON text. The
/// pipeline cuts it into chunks ([`crate::recording::chunks`]).
pub fn recording(
    session_id: &str,
    kind: &str,
    media_type: &str,
    data: Vec<u8>,
    headers_json: String,
) -> Result<Validated, Invalid> {
    self::session_id(session_id)?;
    let media_type = match media_type {
        "" => "application/octet-stream",
        given => given,
    };
    Ok(Validated {
        client_id: None,
        body: proto::envelope::Event::Recording(proto::Recording {
            session_id: session_id.to_owned(),
            r#type: kind.to_owned(),
            media_type: media_type.to_owned(),
            data,
            headers_json,
            ..Default::default()
        }),
    })
}

/// A lane whose payloads are not events read field by field.
fn not_json_events(lane: Lane) -> Invalid {
    Invalid::new(
        "unsupported_lane",
        format!("{} payloads are not events", lane.as_str()),
    )
}

/// Places given fields in a kind's table.
fn table<const N: usize>(
    table: &'static [(&'static str, Read); N],
    given: impl IntoIterator<Item = (&'static str, Given)>,
) -> Fields<'static, N> {
    let mut fields = Fields {
        known: std::array::from_fn(|_| Field::Absent),
        unknown: None,
    };
    for (name, value) in given {
        match table.iter().position(|(known, _)| *known == name) {
            Some(i) => fields.known[i] = value.into(),
            None => fields.unknown = fields.unknown.or(Some(Cow::Borrowed(name))),
        }
    }
    fields
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

    /// The event as the JSON its native endpoint takes (what [`parse`] reads back into this
    /// very event): members in name order, empty ones left out, `props` / `custom` last as
    /// carried. Tests compare translations with it, and write the native twins of recorded SDK
    /// payloads that loadtest/bench posts.
    pub(crate) fn native_json(&self) -> String {
        use serde_json::{json, Map, Value};
        let mut out = Map::new();
        let mut put = |name: &str, value: Value| {
            let empty = matches!(&value, Value::String(s) if s.is_empty()) || value == json!(0);
            if !empty {
                out.insert(name.into(), value);
            }
        };
        let object = match &self.body {
            proto::envelope::Event::Beacon(b) => {
                put("session_id", b.session_id.clone().into());
                put("event", b.event.clone().into());
                put("ts", b.client_ts_ms.into());
                put("url", b.url.clone().into());
                put("referrer", b.referrer.clone().into());
                put("title", b.title.clone().into());
                put("user_id", b.user_id.clone().into());
                put("id", self.client_id.clone().unwrap_or_default().into());
                ("props", &b.props_json)
            }
            proto::envelope::Event::Occurrence(o) => {
                let level = proto::Level::try_from(o.level).unwrap_or_default();
                put(
                    "level",
                    level.as_str_name()["LEVEL_".len()..].to_lowercase().into(),
                );
                put("message", o.message.clone().into());
                if let Some(e) = &o.exception {
                    let frames: Vec<Value> = e
                        .frames
                        .iter()
                        .map(|f| {
                            let mut frame = Map::new();
                            let mut put = |name: &str, value: Value| {
                                if value != json!("") && value != json!(0) {
                                    frame.insert(name.into(), value);
                                }
                            };
                            put("filename", f.filename.clone().into());
                            put("lineno", f.lineno.into());
                            put("colno", f.colno.into());
                            put("method", f.method.clone().into());
                            Value::Object(frame)
                        })
                        .collect();
                    let mut exception = json!({"class": e.class, "frames": frames});
                    if !e.message.is_empty() {
                        exception["message"] = e.message.clone().into();
                    }
                    put("exception", exception);
                }
                put("uuid", self.client_id.clone().unwrap_or_default().into());
                put("timestamp", o.client_ts_ms.into());
                put("environment", o.environment.clone().into());
                put("platform", o.platform.clone().into());
                put("language", o.language.clone().into());
                put("code_version", o.code_version.clone().into());
                put("fingerprint", o.fingerprint.clone().into());
                ("custom", &o.custom_json)
            }
            proto::envelope::Event::Item(i) => panic!("an item has no native JSON: {}", i.r#type),
            proto::envelope::Event::Recording(_) => panic!("a recording has no native JSON"),
        };
        let mut json = Value::Object(out).to_string();
        let (name, text) = object;
        if !text.is_empty() {
            json.pop();
            json.push_str(&format!(",\"{name}\":{text}}}"));
        }
        json
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
    /// The topic the token's entry names for the lane, instead of the lane's own.
    pub topic: Option<std::sync::Arc<str>>,
}

impl Meta {
    /// The metadata as Kafka headers, where a lane's payload has no room for it (OTLP):
    /// `inlet-token-id`, `inlet-project-id`, `inlet-account-id`, `inlet-received-at-ms`,
    /// `inlet-client-ip`.
    pub fn headers(&self) -> Vec<(String, String)> {
        [
            ("inlet-token-id", self.token_id.clone()),
            ("inlet-project-id", self.project_id.clone()),
            ("inlet-account-id", self.account_id.clone()),
            ("inlet-received-at-ms", self.received_at_ms.to_string()),
            ("inlet-client-ip", self.client_ip.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
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
