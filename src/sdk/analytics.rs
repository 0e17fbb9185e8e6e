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

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use super::object::{text, Object};
use super::{keep_within, without_secrets, Secrets, Translated, Untranslated};
use crate::error::ApiError;
use crate::event::beacon::MAX_PROPS_BYTES;
use crate::event::{self, Given, Invalid, ObjectText};
use crate::lane::Lane;

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

/// Builds the beacon from `fields`, with `props` (from [`props`]) as its `props`, and validates
/// it; refused with why when it breaks a beacon's rule (an identifier over its limit).
pub fn build(fields: Fields, props: (ObjectText, Vec<String>)) -> Result<Translated, Invalid> {
    let mut beacon = Vec::with_capacity(9);
    beacon.push(("session_id", Given::Str(fields.session_id)));
    beacon.push(("event", Given::Str(cut(fields.event, MAX_EVENT))));
    if let Some(ts) = fields.ts {
        beacon.push(("ts", Given::Str(ts)));
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
            beacon.push((name, Given::Str(cut(value, max))));
        }
    }
    let (props, trimmed) = props;
    if !props.is_empty() {
        beacon.push(("props", Given::Object(props)));
    }
    let event = event::from_fields(Lane::BEACON, beacon)?;
    Ok(Translated { event, trimmed })
}

/// A body's messages (each its raw text), and the key the body carries beside them (Segment's
/// `writeKey`, PostHog's `api_key`), if it does.
#[derive(Debug)]
pub struct Messages<'a> {
    pub key: Option<String>,
    pub messages: Vec<&'a RawValue>,
}

/// A body that is a JSON object: a `batch` of messages with the key beside it, or one message.
/// Read in one pass, the messages left as raw text.
#[derive(serde::Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "writeKey")]
    write_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    api_key: Option<&'a RawValue>,
}

/// Reads a body of messages: `{"batch": [...], KEY: "..."}`, a JSON array of messages, or one
/// message (an object without `batch`, whose own `KEY` member is the body's key); `key` is
/// `writeKey` or `api_key`. 400 `malformed_body` for anything else, `no_events` for none, 413
/// `too_many_events` past `max_events`.
pub fn messages<'a>(
    body: &'a [u8],
    key: &str,
    max_events: usize,
) -> Result<Messages<'a>, ApiError> {
    let malformed =
        |e: serde_json::Error| ApiError::MalformedBody(format!("the body is not JSON: {e}"));
    let (key, messages) = match body.trim_ascii_start().first() {
        Some(b'[') => (None, serde_json::from_slice(body).map_err(malformed)?),
        Some(b'{') => {
            let wrapper: Wrapper = serde_json::from_slice(body).map_err(|e| {
                ApiError::MalformedBody(format!(
                    "the body is not a message or a `batch` of messages: {e}"
                ))
            })?;
            let key = text(if key == "writeKey" {
                wrapper.write_key
            } else {
                wrapper.api_key
            });
            match wrapper.batch {
                Some(messages) => (key, messages),
                None => (key, vec![serde_json::from_slice(body).map_err(malformed)?]),
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
pub fn not_an_object(message: &RawValue) -> Untranslated {
    untranslated(
        Invalid::new("not_an_object", "a message must be a JSON object"),
        message,
        &[],
    )
}

/// A message refused for `invalid`, its text kept for the operator without its `secrets`.
pub fn untranslated(invalid: Invalid, message: &RawValue, secrets: Secrets) -> Untranslated {
    Untranslated {
        invalid,
        raw: without_secrets(message.get(), secrets),
    }
}

/// Takes the member `name` out of `message` when it is a time inlet reads (RFC 3339 with an
/// offset), for the beacon's `ts`; anything else stays in the message, so in `props`.
pub fn take_time(message: &mut Object<'_>, name: &str) -> Option<String> {
    let ts = message.text(name).filter(|ts| is_rfc3339(ts))?;
    message.take(name);
    Some(ts)
}

/// Takes out of `message` the first of `names` that is an object (its `properties`).
pub fn take_object<'a>(message: &mut Object<'a>, names: &[&str]) -> Option<Object<'a>> {
    names.iter().find_map(|name| message.take_object(name))
}

/// The beacon's `props` from what is left of a message: the members of its `properties`
/// object (`inner`), and beside them the message's other members (`context`, `integrations`,
/// `$set`, ...); a member whose name a property already uses is kept as `message.NAME`, so
/// nothing of the message is lost. The values are copied as sent ([`ObjectText::of_members`]).
/// Within the cap: past it, [`keep_within`] leaves the largest members out and names them.
/// `malformed_json` for a value no JSON parser would keep (a lone surrogate).
pub fn props(
    inner: Option<Object<'_>>,
    rest: Object<'_>,
) -> Result<(ObjectText, Vec<String>), Invalid> {
    let inner = inner.unwrap_or_default();
    let inner_members = inner.iter().map(|(name, value)| (name.clone(), value));
    let rest_members = rest.iter().map(|(name, value)| {
        let name = match inner.contains(name) {
            true => Cow::Owned(format!("message.{name}")),
            false => name.clone(),
        };
        (name, value)
    });
    let text = ObjectText::of_members(inner_members.chain(rest_members))?;
    if text.len() <= MAX_PROPS_BYTES {
        return Ok((text, Vec::new()));
    }
    let map = serde_json::from_str::<Map<String, Value>>(text.as_str())
        .map_err(|e| Invalid::malformed_json(e.to_string()))?;
    Ok(keep_within(map, MAX_PROPS_BYTES))
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

    fn raw(value: &Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
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
        let context = raw(&json!({"ip": "1.2.3.4"}));
        let props = ObjectText::of_members([("context".into(), &*context)]).unwrap();
        let translated = build(fields, (props, Vec::new())).unwrap();
        let beacon: Value = serde_json::from_str(&translated.event.native_json()).unwrap();
        assert_eq!(
            beacon,
            json!({"session_id": "s", "event": "e", "ts": 1_714_557_600_123_i64,
                   "url": "https://a.example/", "id": "m-1",
                   "props": {"context": {"ip": "1.2.3.4"}}})
        );
    }

    #[test]
    fn an_identifier_over_its_limit_refuses_the_beacon() {
        let fields = Fields {
            session_id: "s".repeat(129),
            event: "e".into(),
            ..Fields::default()
        };
        let props = ObjectText::of_members([]).unwrap();
        let refused = build(fields, (props, Vec::new())).unwrap_err();
        assert_eq!(refused.code, "field_too_long");
    }

    #[test]
    fn long_names_and_addresses_are_cut() {
        let fields = Fields {
            session_id: "s".into(),
            event: "é".repeat(40),
            url: Some(format!("https://a.example/{}", "x".repeat(5000))),
            ..Fields::default()
        };
        let props = ObjectText::of_members([]).unwrap();
        let beacon = build(fields, (props, Vec::new()))
            .unwrap()
            .event
            .into_beacon();
        assert_eq!(beacon.event, "é".repeat(32));
        assert_eq!(beacon.url.len(), MAX_URL);
        assert_eq!(beacon.props_json, "");
    }

    #[test]
    fn bodies_are_a_message_an_array_or_a_batch() {
        let text = |m: &Messages| {
            m.messages
                .iter()
                .map(|r| r.get().to_owned())
                .collect::<Vec<_>>()
        };
        let batch = br#"{"batch": [{"a": 1}, {"b": 2}], "writeKey": "k", "sentAt": "x"}"#;
        let read = messages(batch, "writeKey", 10).unwrap();
        assert_eq!(read.key.as_deref(), Some("k"));
        assert_eq!(text(&read), [r#"{"a": 1}"#, r#"{"b": 2}"#]);
        let read = messages(br#"[{"a": 1}]"#, "writeKey", 10).unwrap();
        assert_eq!((read.key.is_none(), read.messages.len()), (true, 1));
        let read = messages(br#"{"event": "e", "api_key": "k"}"#, "api_key", 10).unwrap();
        assert_eq!(read.key.as_deref(), Some("k"));
        assert_eq!(text(&read), [r#"{"event": "e", "api_key": "k"}"#]);
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
        let message = raw(&json!({
            "properties": {"plan": "pro", "context": 1},
            "traits": {"email": "a@b.example"},
            "context": {"ip": "1.2.3.4"},
        }));
        let mut message = Object::parse(&message).unwrap();
        let inner = take_object(&mut message, &["properties", "traits"]);
        let (text, trimmed) = props(inner, message).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text.as_str()).unwrap(),
            json!({"plan": "pro", "context": 1, "message.context": {"ip": "1.2.3.4"},
                   "traits": {"email": "a@b.example"}})
        );
        assert!(trimmed.is_empty());
        let message = raw(&json!({"properties": "odd", "traits": {"a": 1}}));
        let mut message = Object::parse(&message).unwrap();
        let inner = take_object(&mut message, &["properties", "traits"]);
        let (text, _) = props(inner, message).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text.as_str()).unwrap(),
            json!({"a": 1, "properties": "odd"})
        );
    }

    #[test]
    fn props_over_the_cap_lose_their_largest_members() {
        let message = raw(&json!({"properties": {"big": "x".repeat(MAX_PROPS_BYTES), "a": 1}}));
        let mut message = Object::parse(&message).unwrap();
        let inner = take_object(&mut message, &["properties"]);
        let (text, trimmed) = props(inner, message).unwrap();
        assert_eq!(text.as_str(), r#"{"a":1}"#);
        assert_eq!(trimmed.len(), 1);
        assert!(trimmed[0].starts_with("big ("), "{trimmed:?}");
    }

    #[test]
    fn only_times_inlet_reads_are_taken() {
        let message = raw(&json!({"t": "2024-05-01T10:00:00Z", "u": "yesterday", "n": 5}));
        let mut message = Object::parse(&message).unwrap();
        assert_eq!(
            take_time(&mut message, "t").as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        assert_eq!(take_time(&mut message, "u"), None);
        assert_eq!(take_time(&mut message, "n"), None);
        let (text, _) = props(None, message).unwrap();
        assert_eq!(text.as_str(), r#"{"n":5,"u":"yesterday"}"#);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        let text_of = |v: Value| text(Some(&raw(&v)));
        assert_eq!(text_of(json!("a")).as_deref(), Some("a"));
        assert_eq!(text_of(json!(42)).as_deref(), Some("42"));
        assert_eq!(text_of(json!("")), None);
        assert_eq!(text_of(json!({"a": 1})), None);
        assert_eq!(text_of(json!(null)), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn escaped_names_and_duplicates_read_as_a_map_would() {
        let message =
            RawValue::from_string(r#"{"a\u0062": 1, "x": 1, "x": 2, "q\"": 3}"#.into()).unwrap();
        let message = Object::parse(&message).unwrap();
        assert_eq!(message.get("ab").map(RawValue::get), Some("1"));
        assert_eq!(message.get("x").map(RawValue::get), Some("2"));
        let (text, _) = props(None, message).unwrap();
        // The repeated name keeps its last copy, as a map keeps it.
        assert_eq!(text.as_str(), r#"{"ab":1,"q\"":3,"x":2}"#);
    }
}
