//! Events: per-event validation of client JSON and conversion into the protobuf envelope.
//!
//! Validation is strict at the top level (an unknown field makes the event invalid, and the
//! error names it) and tolerant inside nested objects (`exception`, `frames`), where SDKs add
//! their own extras. Lengths are in bytes of UTF-8.

pub mod beacon;
pub mod occurrence;

use std::borrow::Cow;

use serde_json::{Map, Value};

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

/// Why one event is invalid: a stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
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
}

/// A validated event, ready to be wrapped in an [`proto::Envelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The client's own event id (beacon `id`, occurrence `uuid`), if it sent one.
    pub client_id: Option<String>,
    pub body: proto::envelope::Event,
}

/// Parses one event's JSON text into an object.
///
/// A field given twice makes the event invalid (`duplicate_field`): JSON parsers disagree on
/// which copy wins, so accepting it would let a client show one value to one system and another
/// to the next.
pub fn parse_object(raw: &str) -> Result<Map<String, Value>, Invalid> {
    match serde_json::from_str::<Strict>(raw) {
        Ok(Strict::Object(map)) => Ok(map),
        Ok(Strict::Other) => Err(not_an_object()),
        Err(e) => Err(json_error(e)),
    }
}

/// Parses one event's JSON text and validates it as `kind`: the path every request body
/// takes. The top-level fields are read straight from the text, borrowing it
/// ([`Fields::read`]).
pub fn parse(kind: Kind, raw: &str) -> Result<Validated, Invalid> {
    match kind {
        Kind::Beacon => beacon::parse(raw),
        Kind::Occurrence => occurrence::parse(raw),
    }
}

/// The [`Invalid`] for a JSON text that did not parse: a repeated field, or malformed JSON.
fn json_error(e: serde_json::Error) -> Invalid {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE) {
        Some(rest) => Invalid::duplicate(rest.split('`').next().unwrap_or("")),
        None => Invalid::new("malformed_json", format!("invalid JSON: {text}")),
    }
}

const DUPLICATE: &str = "duplicate field `";

/// The error that makes a parse fail with `duplicate_field` naming `key`.
fn duplicate_error<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("{DUPLICATE}{key}`"))
}

/// A JSON value whose top-level object may not repeat a key.
enum Strict {
    Object(Map<String, Value>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Strict, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&key) {
                        return Err(duplicate_error(&key));
                    }
                    map.insert(key, value);
                }
                Ok(Strict::Object(map))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Strict, A::Error> {
                while access.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Strict::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict::Other)
            }
        }
        d.deserialize_any(Visitor)
    }
}

// ---- reading fields straight from JSON text ----

/// An error met inside a value read on its own, for the outer parse (which adds its position).
fn inner_error<E: serde::de::Error>(e: serde_json::Error) -> E {
    let text = e.to_string();
    E::custom(
        text.rsplit_once(" at line ")
            .map_or(&*text, |(message, _)| message),
    )
}

/// An object key, borrowed from the text unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Any JSON value, read in full (strings decoded, numbers range-checked, as a [`Value`] would
/// be) without being kept: whether every object in it has distinct keys.
struct Checked(bool);

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor).map(Checked)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<bool, A::Error> {
        // Objects are small; past a few keys a set keeps a hostile one linear.
        const LINEAR: usize = 16;
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut set: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        let mut unique = true;
        while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
            unique &= access.next_value::<Checked>()?.0;
            if !unique {
                continue;
            }
            unique = match &mut set {
                None if keys.len() < LINEAR => {
                    let fresh = !keys.contains(&key);
                    keys.push(key);
                    fresh
                }
                None => set.insert(keys.drain(..).collect()).insert(key),
                Some(set) => set.insert(key),
            };
        }
        Ok(unique)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut access: A) -> Result<bool, A::Error> {
        let mut unique = true;
        while let Some(Checked(u)) = access.next_element()? {
            unique &= u;
        }
        Ok(unique)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
}

impl<'de> serde::Deserialize<'de> for Field<'de> {
    /// A scalar field's value: strings borrowed where they had no escapes; arrays and objects
    /// are read in full but kept only as their type (no scalar field takes them).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Field<'de>, E> {
                Ok(Field::Number(Some(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Field<'de>, E> {
                Ok(Field::Number(i64::try_from(n).ok()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
                Ok(Field::Number(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other("a boolean"))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Absent)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Field<'de>, A::Error> {
                CheckedVisitor
                    .visit_seq(a)
                    .map(|_| Field::Other("an array"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<Field<'de>, A::Error> {
                CheckedVisitor
                    .visit_map(a)
                    .map(|_| Field::Other("an object"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An object-valued field (`props`, `custom`) read from JSON text: the client's own text,
/// carried as sent instead of parsed and written again. Only an object whose keys repeat somewhere is
/// rewritten (as a [`Value`] would: the last copy wins), so consumers never meet a repeated key.
fn object_field<'de, A: serde::de::MapAccess<'de>>(access: &mut A) -> Result<Field<'de>, A::Error> {
    let raw: &'de serde_json::value::RawValue = access.next_value()?;
    let text = raw.get();
    // Capturing the text checks its structure only: read it in full as a `Value` would (a
    // lone surrogate in any string is malformed JSON), whatever its type.
    let unique = serde_json::from_str::<Checked>(text)
        .map_err(inner_error)?
        .0;
    Ok(match text.as_bytes().first() {
        Some(b'{') if unique => Field::Object(Cow::Borrowed(text)),
        Some(b'{') => match serde_json::from_str::<Value>(text) {
            Ok(value) => Field::Object(Cow::Owned(value.to_string())),
            Err(e) => return Err(inner_error(e)),
        },
        Some(b'n') => Field::Absent,
        Some(b'"') => Field::Other("a string"),
        Some(b'[') => Field::Other("an array"),
        Some(b't' | b'f') => Field::Other("a boolean"),
        _ => Field::Other("a number"),
    })
}

/// How [`Fields::read`] reads one top-level field's value from JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A scalar, strings borrowed from the text ([`Field`]'s own reading).
    Scalar,
    /// An object carried on as the client's own text ([`object_field`]).
    Text,
    /// A nested structure validated further, parsed into a [`Value`].
    Tree,
}

/// An event's top-level fields as the client sent them, before any rule is applied, in the
/// order of a kind's field table.
pub(crate) struct Fields<'a, const N: usize> {
    pub known: [Field<'a>; N],
    /// The first field not in the table.
    pub unknown: Option<Cow<'a, str>>,
}

impl<'a, const N: usize> Fields<'a, N> {
    /// Reads them straight from an event's JSON text, in one pass. Same answers as
    /// [`parse_object`] then [`Fields::from_map`].
    pub(crate) fn read(
        raw: &'a str,
        table: &'static [(&'static str, Read); N],
    ) -> Result<Self, Invalid> {
        let mut de = serde_json::Deserializer::from_str(raw);
        serde::de::DeserializeSeed::deserialize(Table(table), &mut de)
            .and_then(|fields| de.end().map(|()| fields))
            .map_err(json_error)?
            .ok_or_else(not_an_object)
    }

    /// Takes them from a parsed object (the pixel's query string, or [`validate`]).
    pub(crate) fn from_map(mut map: Map<String, Value>, table: &[(&str, Read); N]) -> Self {
        let known = std::array::from_fn(|i| {
            let (name, read) = table[i];
            let value = map.remove(name);
            if read == Read::Tree {
                Field::tree(value)
            } else {
                Field::from(value)
            }
        });
        let unknown = map.into_iter().next().map(|(field, _)| Cow::Owned(field));
        Fields { known, unknown }
    }
}

/// Refuses the first field a kind does not have, once its known fields passed.
pub(crate) fn no_unknown(unknown: Option<Cow<'_, str>>) -> Result<(), Invalid> {
    match unknown {
        Some(field) => Err(Invalid::unknown(&field)),
        None => Ok(()),
    }
}

/// Reads [`Fields`] for a field table.
struct Table<const N: usize>(&'static [(&'static str, Read); N]);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for Table<N> {
    type Value = Option<Fields<'de, N>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, const N: usize> serde::de::Visitor<'de> for Table<N> {
    type Value = Option<Fields<'de, N>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        let mut known: [Field<'de>; N] = std::array::from_fn(|_| Field::Absent);
        let mut seen = [false; N];
        // Unknown fields are rare (and make the event invalid), but a repeated one is still
        // `duplicate_field`, as for any other.
        let mut unknown: Vec<Cow<'de, str>> = Vec::new();
        // Each value is read before its key is checked for a repeat, as a parse into a map
        // would: a malformed value is `malformed_json` even under a repeated key.
        while let Some(Key(key)) = access.next_key()? {
            let Some(i) = self.0.iter().position(|(name, _)| *name == key) else {
                access.next_value::<Checked>()?;
                if unknown.contains(&key) {
                    return Err(duplicate_error(&key));
                }
                unknown.push(key);
                continue;
            };
            let value = match self.0[i].1 {
                Read::Scalar => access.next_value()?,
                Read::Text => object_field(&mut access)?,
                Read::Tree => Field::tree(Some(access.next_value::<Value>()?)),
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(duplicate_error(&key));
            }
            known[i] = value;
        }
        let unknown = unknown.into_iter().next();
        Ok(Some(Fields { known, unknown }))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        while access.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The answer for a text that is JSON but not an object.
fn not_an_object() -> Invalid {
    Invalid::new("not_an_object", "an event must be a JSON object")
}

/// Validates one event of `kind`.
pub fn validate(kind: Kind, map: Map<String, Value>) -> Result<Validated, Invalid> {
    match kind {
        Kind::Beacon => beacon::validate(map),
        Kind::Occurrence => occurrence::validate(map),
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
        event: Some(event.body),
    }
}

// ---- field helpers shared by both kinds ----

/// One field's value as the client sent it: borrowed from the request body when it is read
/// straight from the JSON text, owned when it comes from a parsed [`Map`]. Every rule on a
/// field's type and size is here, once, whichever way the event was read.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    /// Absent, or `null`.
    Absent,
    Str(Cow<'a, str>),
    /// A number: its value when it is an integer that fits an `i64`.
    Number(Option<i64>),
    /// An object, as JSON text.
    Object(Cow<'a, str>),
    /// Any other value: its type, for the error.
    Other(&'static str),
    /// A nested structure kept whole, for a field validated further ([`Read::Tree`]).
    Tree(Value),
}

impl From<Option<Value>> for Field<'_> {
    fn from(value: Option<Value>) -> Self {
        match value {
            None | Some(Value::Null) => Field::Absent,
            Some(Value::String(s)) => Field::Str(Cow::Owned(s)),
            Some(Value::Number(n)) => Field::Number(n.as_i64()),
            Some(object @ Value::Object(_)) => Field::Object(Cow::Owned(object.to_string())),
            Some(other) => Field::Other(type_name(&other)),
        }
    }
}

impl Field<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Field::Absent => "null",
            Field::Str(_) => "a string",
            Field::Number(_) => "a number",
            Field::Object(_) => "an object",
            Field::Other(name) => name,
            Field::Tree(value) => type_name(value),
        }
    }

    /// A field kept whole ([`Read::Tree`]): absent when missing or `null`.
    pub(crate) fn tree(value: Option<Value>) -> Self {
        match value {
            None | Some(Value::Null) => Field::Absent,
            Some(value) => Field::Tree(value),
        }
    }

    /// An optional string of at most `max` bytes (and at least `min` when present).
    pub(crate) fn string(
        self,
        field: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, Invalid> {
        match self {
            Field::Absent => Ok(None),
            Field::Str(s) => {
                if s.len() < min {
                    Err(Invalid::bad(
                        field,
                        format_args!("must be at least {min} bytes"),
                    ))
                } else if s.len() > max {
                    Err(too_long(field, s.len(), "", max))
                } else {
                    Ok(Some(s.into_owned()))
                }
            }
            other => Err(Invalid::bad(
                field,
                format_args!("must be a string, not {}", other.type_name()),
            )),
        }
    }

    /// A required string.
    pub(crate) fn required_string(
        self,
        field: &str,
        min: usize,
        max: usize,
    ) -> Result<String, Invalid> {
        self.string(field, min, max)?
            .ok_or_else(|| Invalid::missing(field))
    }

    /// An optional object's JSON text (at most `max` bytes), or "" when absent.
    pub(crate) fn object_json(self, field: &str, max: usize) -> Result<String, Invalid> {
        match self {
            Field::Absent => Ok(String::new()),
            Field::Object(text) if text.len() > max => {
                Err(too_long(field, text.len(), " serialized", max))
            }
            Field::Object(text) => Ok(text.into_owned()),
            other => Err(Invalid::bad(
                field,
                format_args!("must be an object, not {}", other.type_name()),
            )),
        }
    }

    /// An optional time: integer milliseconds since the epoch, or an RFC 3339 string; 0 when
    /// absent.
    pub(crate) fn timestamp_ms(self, field: &str) -> Result<i64, Invalid> {
        const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        match self {
            Field::Absent => Ok(0),
            Field::Number(Some(ms)) if (0..=MAX_MS).contains(&ms) => Ok(ms),
            Field::Number(_) => Err(Invalid::bad(
                field,
                "must be non-negative integer milliseconds since the epoch",
            )),
            Field::Str(s) => {
                let t =
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| Invalid::bad(field, "must be an RFC 3339 time"))?;
                let ms = t.unix_timestamp_nanos() / 1_000_000;
                i64::try_from(ms)
                    .ok()
                    .filter(|ms| (0..=MAX_MS).contains(ms))
                    .ok_or_else(|| Invalid::bad(field, "is out of range"))
            }
            other => Err(Invalid::bad(
                field,
                format_args!(
                    "must be integer milliseconds or an RFC 3339 string, not {}",
                    other.type_name()
                ),
            )),
        }
    }
}

fn too_long(field: &str, len: usize, what: &str, max: usize) -> Invalid {
    Invalid::new(
        "field_too_long",
        format!("`{field}` is {len} bytes{what}, over the limit of {max}"),
    )
}

/// Takes an optional string field of at most `max` bytes (and at least `min` when present).
pub(crate) fn string(
    map: &mut Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, Invalid> {
    Field::from(map.remove(field)).string(field, min, max)
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn timestamp_ms(map: &mut Map<String, Value>, field: &str) -> Result<i64, Invalid> {
        Field::from(map.remove(field)).timestamp_ms(field)
    }

    #[test]
    fn timestamps_accept_millis_and_rfc3339() {
        let mut m = obj(
            json!({"a": 1_700_000_000_123_i64, "b": "2023-11-14T22:13:20.123+00:00", "c": "2023-11-14T23:13:20.123+01:00"}),
        );
        assert_eq!(timestamp_ms(&mut m, "a").unwrap(), 1_700_000_000_123);
        assert_eq!(timestamp_ms(&mut m, "b").unwrap(), 1_700_000_000_123);
        assert_eq!(timestamp_ms(&mut m, "c").unwrap(), 1_700_000_000_123);
        assert_eq!(timestamp_ms(&mut m, "absent").unwrap(), 0);
    }

    #[test]
    fn timestamps_reject_garbage() {
        for bad in [
            json!(-1),
            json!(1.5),
            json!("yesterday"),
            json!(true),
            json!(1e300),
        ] {
            let mut m = obj(json!({ "ts": bad }));
            assert_eq!(
                timestamp_ms(&mut m, "ts").unwrap_err().code,
                "invalid_field"
            );
        }
    }

    #[test]
    fn strings_are_bounded_in_bytes() {
        let mut m = obj(json!({"s": "é".repeat(3)}));
        let err = string(&mut m, "s", 1, 5).unwrap_err();
        assert_eq!(err.code, "field_too_long");
        assert!(err.message.contains("`s`"));
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let err = parse_object(r#"{"event":"a","session_id":"s","event":"b"}"#).unwrap_err();
        assert_eq!(err.code, "duplicate_field");
        assert!(err.message.contains("`event`"), "{}", err.message);
        // Only the top level is strict.
        assert!(parse_object(r#"{"props":{"a":1,"a":2}}"#).is_ok());
    }

    #[test]
    fn non_objects_are_named() {
        assert_eq!(parse_object("[1]").unwrap_err().code, "not_an_object");
        assert_eq!(parse_object("{").unwrap_err().code, "malformed_json");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    const CODES: &[&str] = &[
        "missing_field",
        "invalid_field",
        "unknown_field",
        "field_too_long",
        "not_an_object",
        "malformed_json",
        "duplicate_field",
    ];

    /// Arbitrary JSON, shallow and small.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects that use the fields events have, with arbitrary values.
    fn event_like() -> impl Strategy<Value = Map<String, Value>> {
        let field = prop_oneof![
            Just("session_id"),
            Just("event"),
            Just("ts"),
            Just("url"),
            Just("props"),
            Just("id"),
            Just("level"),
            Just("message"),
            Just("exception"),
            Just("uuid"),
            Just("timestamp"),
            Just("custom"),
            Just("fingerprint"),
            Just("other"),
        ];
        proptest::collection::vec((field, json()), 0..8)
            .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    proptest! {
        #[test]
        fn validation_never_panics_and_names_a_known_code(map in event_like(), beacon in any::<bool>()) {
            let kind = if beacon { Kind::Beacon } else { Kind::Occurrence };
            match validate(kind, map) {
                Ok(v) => {
                    // Whatever validates converts, and the envelope survives the wire.
                    let meta = Meta { token_id: "t".into(), account_id: "a".into(), ..Meta::default() };
                    let env = envelope(v, &meta);
                    let decoded = proto::Envelope::decode(&env.encode_to_vec()[..]).unwrap();
                    prop_assert_eq!(&decoded, &env);
                    prop_assert!(!env.event_id.is_empty());
                    let key = crate::key::partition(env.event_id.as_bytes(), 512);
                    prop_assert!(key < 512);
                }
                Err(invalid) => {
                    prop_assert!(CODES.contains(&invalid.code), "{}", invalid.code);
                    prop_assert!(invalid.message.contains('`'), "names the field: {}", invalid.message);
                }
            }
        }

        #[test]
        fn events_read_from_text_match_the_map_path(
            map in event_like(),
            pretty in any::<bool>(),
            beacon in any::<bool>(),
        ) {
            let kind = if beacon { Kind::Beacon } else { Kind::Occurrence };
            let text = if pretty {
                serde_json::to_string_pretty(&map).unwrap()
            } else {
                serde_json::to_string(&map).unwrap()
            };
            match (parse(kind, &text), validate(kind, map)) {
                (Ok(mut direct), Ok(via_map)) => {
                    // The JSON text carried on may differ in spacing and order, not in meaning.
                    let same = |a: &str, b: &str| {
                        serde_json::from_str::<Option<Value>>(a).ok()
                            == serde_json::from_str::<Option<Value>>(b).ok()
                    };
                    use proto::envelope::Event;
                    match (&mut direct.body, &via_map.body) {
                        (Event::Beacon(d), Event::Beacon(m)) => {
                            prop_assert!(same(&d.props_json, &m.props_json));
                            d.props_json.clone_from(&m.props_json);
                        }
                        (Event::Occurrence(d), Event::Occurrence(m)) => {
                            prop_assert!(same(&d.custom_json, &m.custom_json));
                            d.custom_json.clone_from(&m.custom_json);
                        }
                        _ => prop_assert!(false, "kinds differ"),
                    }
                    prop_assert_eq!(direct, via_map);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.code, b.code),
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
            }
        }

        #[test]
        fn valid_beacons_keep_their_fields(
            session in "[a-zA-Z0-9-]{1,128}",
            event in "[a-z_]{1,64}",
            ts in 0i64..253_402_300_799_999,
            id in proptest::option::of("[a-f0-9-]{1,64}"),
        ) {
            let mut map = Map::new();
            map.insert("session_id".into(), Value::from(session.clone()));
            map.insert("event".into(), Value::from(event.clone()));
            map.insert("ts".into(), Value::from(ts));
            if let Some(id) = &id {
                map.insert("id".into(), Value::from(id.clone()));
            }
            let v = validate(Kind::Beacon, map).unwrap();
            prop_assert_eq!(&v.client_id, &id);
            let proto::envelope::Event::Beacon(b) = v.body else { panic!("a beacon") };
            prop_assert_eq!(b.session_id, session);
            prop_assert_eq!(b.event, event);
            prop_assert_eq!(b.client_ts_ms, ts);
        }

        #[test]
        fn parsing_any_text_never_panics(text in ".{0,200}") {
            if let Err(invalid) = parse_object(&text) {
                prop_assert!(CODES.contains(&invalid.code));
            }
        }
    }
}
