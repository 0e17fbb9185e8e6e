//! The reference parser: an event parsed into a `serde_json::Map` first, then its fields taken
//! from the map; and the pixel's query string collected into such a map, as the pixel did before
//! it read its beacon's fields directly.
//!
//! Production reads fields straight from the text (`text.rs`) or the query string
//! (`query.rs`). This slower, simpler path is kept only as their oracle: the unit and
//! property tests and the `validate` fuzz target check that both give the same answers. It is
//! compiled for tests and with the `reference` feature (which the fuzz crate enables), never
//! into the gateway.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::lane::Lane;

use super::fields::{Field, Fields, Read};
use super::query::NOT_FIELDS;
use super::text::{duplicate_error, json_error};
use super::{beacon, occurrence, Invalid, Validated};

/// Parses one event's JSON text and validates it as `kind`: [`parse_object`] then
/// [`validate`]. Same answers as [`super::parse`].
pub fn parse(kind: Lane, raw: &str) -> Result<Validated, Invalid> {
    parse_object(raw).and_then(|map| validate(kind, map))
}

/// Parses one event's JSON text into an object. A field given twice makes the event invalid
/// (`duplicate_field`); only the top level is strict.
pub fn parse_object(raw: &str) -> Result<Map<String, Value>, Invalid> {
    match serde_json::from_str::<Strict>(raw) {
        Ok(Strict::Object(map)) => Ok(map),
        Ok(Strict::Other) => Err(Invalid::not_an_object()),
        Err(e) => Err(json_error(e)),
    }
}

/// Validates one event of `kind` already parsed into a map.
pub fn validate(kind: Lane, map: Map<String, Value>) -> Result<Validated, Invalid> {
    match kind {
        Lane::BEACON => beacon::convert(Fields::from_map(map, &beacon::FIELDS)),
        Lane::OCCURRENCE => occurrence::convert(Fields::from_map(map, &occurrence::FIELDS)),
        other => Err(Invalid::new("unsupported_lane", other.as_str())),
    }
}

/// The pixel's beacon from its query string, as the pixel read it before
/// [`beacon::from_query`]: [`pixel_map`] then [`validate`]. Same answers, to the byte.
pub fn from_query(query: &str) -> Result<Validated, Invalid> {
    pixel_map(query).and_then(|map| validate(Lane::BEACON, map))
}

/// The beacon's fields from the query string, as the pixel collected them: `ts` as a number
/// when it is all digits, `props` parsed as JSON, everything else a string; `token` and `_`
/// skipped; a field given twice is `duplicate_field`.
pub fn pixel_map(query: &str) -> Result<Map<String, Value>, Invalid> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if NOT_FIELDS.contains(&k.as_ref()) {
            continue;
        }
        if map.contains_key(k.as_ref()) {
            return Err(Invalid::duplicate(&k));
        }
        let value = match k.as_ref() {
            "ts" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                serde_json::from_str(&v).map_err(|_| Invalid::bad("ts", "is out of range"))?
            }
            "props" => serde_json::from_str(&v)
                .map_err(|_| Invalid::bad("props", "must be a JSON object"))?,
            _ => Value::String(v.into_owned()),
        };
        map.insert(k.into_owned(), value);
    }
    Ok(map)
}

impl<const N: usize> Fields<'_, N> {
    /// Takes them from a parsed object. `unknown` is the first field not in `table` in the
    /// map's order: the smallest name (a `serde_json::Map` is sorted).
    fn from_map(mut map: Map<String, Value>, table: &[(&str, Read); N]) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    use super::{parse_object, validate};
    use crate::event::{envelope, parse, Meta};
    use crate::lane::Lane;
    use crate::proto;
    use proptest::prelude::*;
    use prost::Message;
    use serde_json::{Map, Value};

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
            let kind = if beacon { Lane::BEACON } else { Lane::OCCURRENCE };
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
            let kind = if beacon { Lane::BEACON } else { Lane::OCCURRENCE };
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
            let v = validate(Lane::BEACON, map).unwrap();
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
