//! What Segment's and PostHog's translations share: reading a body of messages (one message, an
//! array, or a `batch` wrapper with the key beside it), and building an inlet beacon once each
//! has picked its fields out of a message. The rules for what does not fit a beacon's limits
//! live here, once:
//!
//! - `event`, `url`, `referrer` and `title` longer than the beacon allows are cut (at a
//!   character boundary): their full text stays in `props`, where the SDK's own members are
//!   kept, so nothing is lost and an event is never refused for a long name or address;
//! - `ts` is taken only when it is a time inlet reads (RFC 3339 with an offset); otherwise the
//!   SDK's text stays in `props` and the beacon has no client time ([`take_time`]);
//! - `session_id`, `user_id` and `id` are identifiers, never cut: one over its limit makes
//!   the beacon invalid (`field_too_long`), as on `/v1/beacons`.

use serde_json::{Map, Value};

use super::{keep_within, Translated, Untranslated};
use crate::error::ApiError;
use crate::event::beacon::MAX_PROPS_BYTES;
use crate::event::Invalid;

/// Limits of the beacon fields that are cut rather than refused (API.md).
const MAX_EVENT: usize = 64;
const MAX_URL: usize = 4096;
const MAX_TITLE: usize = 1024;

/// A beacon's fields picked out of an SDK's message, before the limits are applied.
#[derive(Debug, Default)]
pub struct Fields {
    pub session_id: String,
    pub event: String,
    /// The SDK's client time, RFC 3339 (see [`take_time`]).
    pub ts: Option<String>,
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub title: Option<String>,
    pub user_id: Option<String>,
    /// The SDK's event id (Segment `messageId`, PostHog `uuid`).
    pub id: Option<String>,
}

/// Builds the beacon's JSON (what `POST /v1/beacons` takes) from `fields`, with `rest` (what of
/// the message has no field of its own) as `props`, within its cap.
pub fn build(fields: Fields, rest: Map<String, Value>) -> Translated {
    let mut beacon = Map::new();
    beacon.insert("session_id".into(), fields.session_id.into());
    beacon.insert("event".into(), cut(fields.event, MAX_EVENT).into());
    if let Some(ts) = fields.ts {
        beacon.insert("ts".into(), ts.into());
    }
    let optional = [
        ("url", fields.url, MAX_URL),
        ("referrer", fields.referrer, MAX_URL),
        ("title", fields.title, MAX_TITLE),
        ("user_id", fields.user_id, usize::MAX),
        ("id", fields.id, usize::MAX),
    ];
    for (name, value, max) in optional {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            beacon.insert(name.into(), cut(value, max).into());
        }
    }
    let mut json = Value::Object(beacon).to_string();
    let (props, trimmed) = keep_within(rest, MAX_PROPS_BYTES);
    if props != "{}" {
        // The props text is spliced in as it is: parsing it back into a `Value` would cost a
        // second copy of the largest part of the event.
        json.pop();
        json.push_str(",\"props\":");
        json.push_str(&props);
        json.push('}');
    }
    Translated { json, trimmed }
}

/// A body's messages, and the key the body carries beside them (Segment's `writeKey`,
/// PostHog's `api_key`), if it does.
#[derive(Debug)]
pub struct Messages {
    pub key: Option<String>,
    pub messages: Vec<Value>,
}

/// Reads a body of messages: `{"batch": [...], KEY: "..."}`, a JSON array of messages, or one
/// message (an object without `batch`, whose own `KEY` member is the body's key). 400
/// `malformed_body` for anything else, `no_events` for none, 413 `too_many_events` past
/// `max_events`.
pub fn messages(body: &[u8], key: &str, max_events: usize) -> Result<Messages, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not JSON: {e}")))?;
    let (key, messages) = match value {
        Value::Array(messages) => (None, messages),
        Value::Object(mut object) => {
            let key = text(object.get(key));
            match object.remove("batch") {
                Some(Value::Array(messages)) => (key, messages),
                Some(_) => {
                    return Err(ApiError::MalformedBody(
                        "`batch` must be an array of messages".into(),
                    ))
                }
                None => (key, vec![Value::Object(object)]),
            }
        }
        _ => {
            return Err(ApiError::MalformedBody(
                "the body must be a message, an array of messages or a `batch`".into(),
            ))
        }
    };
    if messages.is_empty() {
        return Err(ApiError::NoEvents);
    }
    if messages.len() > max_events {
        return Err(ApiError::TooManyEvents { limit: max_events });
    }
    Ok(Messages { key, messages })
}

/// A message that is not a JSON object: refused as `not_an_object`, its text kept.
pub fn not_an_object(message: &Value) -> Untranslated {
    untranslated(
        Invalid::new("not_an_object", "a message must be a JSON object"),
        message,
    )
}

/// A message refused for `invalid`, its text kept for the operator.
pub fn untranslated(invalid: Invalid, message: &Value) -> Untranslated {
    Untranslated {
        invalid,
        raw: message.to_string(),
    }
}

/// Takes the member `name` out of `message` when it is a time inlet reads (RFC 3339 with an
/// offset), for the beacon's `ts`; anything else stays in the message, so in `props`.
pub fn take_time(message: &mut Map<String, Value>, name: &str) -> Option<String> {
    match message.get(name) {
        Some(Value::String(ts)) if is_rfc3339(ts) => match message.remove(name) {
            Some(Value::String(ts)) => Some(ts),
            _ => None,
        },
        _ => None,
    }
}

/// The beacon's `props` from what is left of a message: the members of its `properties` object
/// (the first of `merged` that is an object), and beside them the message's other members
/// (`context`, `integrations`, `$set`, ...). A member whose name a property already uses is
/// kept as `message.NAME`, so nothing of the message is lost.
pub fn props(mut message: Map<String, Value>, merged: &[&str]) -> Map<String, Value> {
    let inner = merged
        .iter()
        .find(|name| matches!(message.get(**name), Some(Value::Object(_))))
        .and_then(|name| message.remove(*name));
    let mut props = match inner {
        Some(Value::Object(properties)) => properties,
        _ => Map::new(),
    };
    for (name, value) in message {
        if props.contains_key(&name) {
            props.insert(format!("message.{name}"), value);
        } else {
            props.insert(name, value);
        }
    }
    props
}

/// A string or a number of an SDK's message as text (SDKs send ids as either); `None` for
/// anything else, or an empty string.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether inlet reads `ts` as a time (the beacon's own rule for `ts` strings).
fn is_rfc3339(ts: &str) -> bool {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{self, Kind};

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_beacon_is_inlet_json_with_the_rest_as_props() {
        let fields = Fields {
            session_id: "s".into(),
            event: "e".into(),
            ts: Some("2024-05-01T10:00:00.123456+00:00".into()),
            url: Some("https://a.example/".into()),
            user_id: Some(String::new()),
            id: Some("m-1".into()),
            ..Fields::default()
        };
        let translated = build(fields, map(json!({"context": {"ip": "1.2.3.4"}})));
        let beacon: Value = serde_json::from_str(&translated.json).unwrap();
        assert_eq!(
            beacon,
            json!({"session_id": "s", "event": "e", "ts": "2024-05-01T10:00:00.123456+00:00",
                   "url": "https://a.example/", "id": "m-1",
                   "props": {"context": {"ip": "1.2.3.4"}}})
        );
        let valid = event::parse(Kind::Beacon, &translated.json).unwrap();
        assert_eq!(valid.into_beacon().client_ts_ms, 1_714_557_600_123);
    }

    #[test]
    fn long_names_and_addresses_are_cut() {
        let fields = Fields {
            session_id: "s".into(),
            event: "é".repeat(40),
            url: Some(format!("https://a.example/{}", "x".repeat(5000))),
            ..Fields::default()
        };
        let translated = build(fields, Map::new());
        let beacon = event::parse(Kind::Beacon, &translated.json)
            .unwrap()
            .into_beacon();
        assert_eq!(beacon.event, "é".repeat(32));
        assert_eq!(beacon.url.len(), MAX_URL);
        assert_eq!(beacon.client_ts_ms, 0);
        assert_eq!(beacon.props_json, "");
    }

    #[test]
    fn bodies_are_a_message_an_array_or_a_batch() {
        let batch = br#"{"batch": [{"a": 1}, {"b": 2}], "writeKey": "k", "sentAt": "x"}"#;
        let read = messages(batch, "writeKey", 10).unwrap();
        assert_eq!(read.key.as_deref(), Some("k"));
        assert_eq!(read.messages, [json!({"a": 1}), json!({"b": 2})]);
        let read = messages(br#"[{"a": 1}]"#, "writeKey", 10).unwrap();
        assert_eq!((read.key, read.messages.len()), (None, 1));
        let read = messages(br#"{"event": "e", "api_key": "k"}"#, "api_key", 10).unwrap();
        assert_eq!(read.key.as_deref(), Some("k"));
        assert_eq!(read.messages, [json!({"event": "e", "api_key": "k"})]);
        let codes = [
            (&b"nope"[..], "malformed_body"),
            (b"5", "malformed_body"),
            (br#"{"batch": {}}"#, "malformed_body"),
            (br#"{"batch": []}"#, "no_events"),
            (b"[]", "no_events"),
            (br#"[1, 2, 3]"#, "too_many_events"),
        ];
        for (body, code) in codes {
            let error = messages(body, "writeKey", 2).unwrap_err();
            assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn props_are_the_properties_and_the_rest_of_the_message() {
        let message = map(json!({
            "properties": {"plan": "pro", "context": 1},
            "traits": {"email": "a@b.example"},
            "context": {"ip": "1.2.3.4"},
        }));
        assert_eq!(
            Value::Object(props(message, &["properties", "traits"])),
            json!({"plan": "pro", "context": 1, "message.context": {"ip": "1.2.3.4"},
                   "traits": {"email": "a@b.example"}})
        );
        let message = map(json!({"properties": "odd", "traits": {"a": 1}}));
        assert_eq!(
            Value::Object(props(message, &["properties", "traits"])),
            json!({"a": 1, "properties": "odd"})
        );
    }

    #[test]
    fn only_times_inlet_reads_are_taken() {
        let mut message = map(json!({"t": "2024-05-01T10:00:00Z", "u": "yesterday", "n": 5}));
        assert_eq!(
            take_time(&mut message, "t").as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        assert_eq!(take_time(&mut message, "u"), None);
        assert_eq!(take_time(&mut message, "n"), None);
        assert_eq!(Value::Object(message), json!({"u": "yesterday", "n": 5}));
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(text(Some(&json!("a"))).as_deref(), Some("a"));
        assert_eq!(text(Some(&json!(42))).as_deref(), Some("42"));
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!({"a": 1}))), None);
        assert_eq!(text(None), None);
    }
}
