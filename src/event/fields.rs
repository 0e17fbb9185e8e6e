//! An event's top-level fields as the client sent them, and the rules on one field's type and
//! size. Each kind declares its fields in a table; whichever way an event arrives (JSON text,
//! the pixel's query string) it is read into that table, then the kind's rules apply once.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::Invalid;

/// How one top-level field's value is read from JSON text (see `super::text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A scalar, strings borrowed from the text.
    Scalar,
    /// An object carried on as the client's own text.
    Text,
    /// A nested structure validated further, parsed into a [`Value`].
    Tree,
}

/// An event's top-level fields as the client sent them, before any rule is applied, in the
/// order of a kind's field table.
pub(crate) struct Fields<'a, const N: usize> {
    pub known: [Field<'a>; N],
    /// The field not in the table that is reported (which one depends on how it was read).
    pub unknown: Option<Cow<'a, str>>,
}

/// Refuses the field a kind does not have, once its known fields passed.
pub(crate) fn no_unknown(unknown: Option<Cow<'_, str>>) -> Result<(), Invalid> {
    match unknown {
        Some(field) => Err(Invalid::unknown(&field)),
        None => Ok(()),
    }
}

/// One field's value as the client sent it: borrowed from the request when it could be,
/// owned when it was decoded or parsed. Every rule on a field's type and size is here, once,
/// whichever way the event was read.
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
    /// An exception an SDK endpoint built already typed ([`super::Given::Exception`]).
    Exception(crate::proto::Exception),
}

/// A parsed value as a field: nested objects (`exception`) and the pixel's `ts` and `props`
/// are read this way.
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
    /// The field's JSON type, for an error.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Field::Absent => "null",
            Field::Str(_) => "a string",
            Field::Number(_) => "a number",
            Field::Object(_) => "an object",
            Field::Other(name) => name,
            Field::Tree(value) => type_name(value),
            Field::Exception(_) => "an object",
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
            Field::Str(s) if s.len() < min => Err(Invalid::bad(
                field,
                format_args!("must be at least {min} bytes"),
            )),
            Field::Str(s) if s.len() > max => Err(Invalid::too_long(field, s.len(), "", max)),
            Field::Str(s) => Ok(Some(s.into_owned())),
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
                Err(Invalid::too_long(field, text.len(), " serialized", max))
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

/// Takes an optional string field of a nested object (`exception`, its frames), of at most
/// `max` bytes (and at least `min` when present).
pub(crate) fn string(
    map: &mut Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, Invalid> {
    Field::from(map.remove(field)).string(field, min, max)
}

/// A value's JSON type, for an error.
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
}
