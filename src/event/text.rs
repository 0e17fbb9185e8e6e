//! Reading an event's fields straight from its JSON text, in one pass: the path every request
//! body takes. Strings are borrowed from the body where they had no escapes, an object field
//! (`props`, `custom`) is carried on as the client's own text, and only a field validated
//! further (`exception`) is parsed into a tree.
//!
//! The answers are those of parsing the text into a map first (the reference parser the tests
//! and the fuzzer compare against): the same code for every invalid event, the same event
//! otherwise.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::fields::{Field, Fields, Read};
use super::Invalid;

impl<'a, const N: usize> Fields<'a, N> {
    /// Reads them straight from an event's JSON text, in one pass. `unknown` is the first
    /// field not in `table`, in the text's order.
    pub(crate) fn read(
        raw: &'a str,
        table: &'static [(&'static str, Read); N],
    ) -> Result<Self, Invalid> {
        let mut de = serde_json::Deserializer::from_str(raw);
        serde::de::DeserializeSeed::deserialize(Table(table), &mut de)
            .and_then(|fields| de.end().map(|()| fields))
            .map_err(json_error)?
            .ok_or_else(Invalid::not_an_object)
    }
}

/// The [`Invalid`] for a JSON text that did not parse: a repeated field, or malformed JSON.
pub(super) fn json_error(e: serde_json::Error) -> Invalid {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE) {
        Some(rest) => Invalid::duplicate(rest.split('`').next().unwrap_or("")),
        None => Invalid::malformed_json(format_args!("invalid JSON: {text}")),
    }
}

const DUPLICATE: &str = "duplicate field `";

/// The error that makes a parse fail with `duplicate_field` naming `key`.
pub(super) fn duplicate_error<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("{DUPLICATE}{key}`"))
}

/// An error met inside a value read on its own, for the outer parse (which adds its position).
fn inner_error<E: serde::de::Error>(e: serde_json::Error) -> E {
    let text = e.to_string();
    E::custom(
        text.rsplit_once(" at line ")
            .map_or(&*text, |(message, _)| message),
    )
}

/// An object key, borrowed from the text unless it had escapes (serde_json lends a string only
/// when it had none, so a borrowed key is also valid JSON string content as it is).
pub(crate) struct Key<'a>(pub Cow<'a, str>);

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
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut unique = true;
        while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
            unique &= access.next_value::<Checked>()?.0;
            if unique {
                keys.push(key);
            }
        }
        Ok(unique && distinct(&mut keys))
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
        Some(b'{') => Field::Object(Cow::Owned(last_copies(text).map_err(inner_error)?)),
        Some(b'n') => Field::Absent,
        Some(b'"') => Field::Other("a string"),
        Some(b'[') => Field::Other("an array"),
        Some(b't' | b'f') => Field::Other("a boolean"),
        _ => Field::Other("a number"),
    })
}

/// Whether `names` are all different. Past a few, they are sorted, so a hostile object with
/// thousands of names costs n log n comparisons, never n²; and no name is hashed (sorting fifty
/// names is cheaper than hashing them with a hasher a client cannot steer into collisions).
fn distinct<S: AsRef<str>>(names: &mut [S]) -> bool {
    const LINEAR: usize = 8;
    if names.len() <= LINEAR {
        return names
            .iter()
            .enumerate()
            .all(|(i, a)| names[..i].iter().all(|b| a.as_ref() != b.as_ref()));
    }
    names.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    names
        .windows(2)
        .all(|pair| pair[0].as_ref() != pair[1].as_ref())
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

/// An object's text with each repeated key's last copy only, as a [`Value`] keeps it.
fn last_copies(text: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<Value>(text).map(|value| value.to_string())
}

/// The JSON text of an object as `props` and `custom` carry it: every string and number in it
/// one a [`Value`] reads (no lone surrogate, no number out of range), and no key repeated at any
/// depth. Made only by the checks here, so an event an SDK endpoint builds
/// ([`super::from_fields`]) carries it without its text being read again.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectText(String);

impl ObjectText {
    /// A map's text: a map of values keeps every rule by construction.
    pub fn of_map(map: &Map<String, Value>) -> ObjectText {
        // A map of values always serializes.
        ObjectText(serde_json::to_string(map).unwrap_or_else(|_| "{}".into()))
    }

    /// The object of `members`, each a name and its value's JSON text as an SDK sent it: copied
    /// as sent. A borrowed name is one serde_json lent from JSON text ([`Key`]), which it does
    /// only for a string without escapes: written as it is; an owned one is escaped as it needs
    /// (hence only this crate's translations, which read names with [`Key`], call this). Of the values, only what may break a rule is read again: a
    /// number, an array, an object, or a string with an escape; a string without one, `true`,
    /// `false` and `null` cannot. An object whose names repeat, among `members` or inside a
    /// value, is rewritten as a [`Value`] keeps it (the last copy wins). `malformed_json` when
    /// a value holds what a [`Value`] cannot.
    pub(crate) fn of_members<'a>(
        members: impl IntoIterator<Item = (Cow<'a, str>, &'a RawValue)>,
    ) -> Result<ObjectText, Invalid> {
        let mut text = String::with_capacity(1024);
        let mut names: Vec<Cow<'a, str>> = Vec::new();
        let mut unique = true;
        text.push('{');
        for (name, value) in members {
            let value = value.get();
            let plain = match value.as_bytes().first() {
                Some(b'"') => !value.contains('\\'),
                Some(b't' | b'f' | b'n') => true,
                _ => false,
            };
            if !plain {
                unique &= serde_json::from_str::<Checked>(value)
                    .map_err(|e| Invalid::malformed_json(format_args!("`{name}`: {e}")))?
                    .0;
            }
            if !names.is_empty() {
                text.push(',');
            }
            match &name {
                Cow::Borrowed(plain) => {
                    text.push('"');
                    text.push_str(plain);
                    text.push('"');
                }
                Cow::Owned(name) => text.push_str(&Value::from(name.as_str()).to_string()),
            }
            text.push(':');
            text.push_str(value);
            names.push(name);
        }
        text.push('}');
        if unique && distinct(&mut names) {
            return Ok(ObjectText(text));
        }
        last_copies(&text)
            .map(ObjectText)
            .map_err(|e| Invalid::malformed_json(e.to_string()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is `{}`.
    pub fn is_empty(&self) -> bool {
        self.0 == "{}"
    }

    pub(super) fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names with `"` or `\\` are given owned, as serde_json gives a name it had to unescape.
    fn of(members: &[(&'static str, &'static str)]) -> Result<String, &'static str> {
        let name = |name: &'static str| match name.contains(['"', '\\']) {
            true => Cow::Owned(name.to_owned()),
            false => Cow::Borrowed(name),
        };
        let values: Vec<Box<RawValue>> = members
            .iter()
            .map(|(_, v)| RawValue::from_string((*v).to_owned()).unwrap())
            .collect();
        let members = members.iter().zip(&values);
        ObjectText::of_members(members.map(|((n, _), v)| (name(n), &**v)))
            .map(ObjectText::into_string)
            .map_err(|invalid| invalid.code)
    }

    #[test]
    fn members_are_copied_as_sent() {
        let members = [
            ("url", r#""https://a.example/?q=1""#),
            ("n", "1.5e3"),
            ("on", "true"),
            ("nested", r#"{"a": [1, {"b": "\u00e9"}]}"#),
            ("say \"hi\"", "null"),
        ];
        assert_eq!(
            of(&members).unwrap(),
            r#"{"url":"https://a.example/?q=1","n":1.5e3,"on":true,"nested":{"a": [1, {"b": "\u00e9"}]},"say \"hi\"":null}"#
        );
        assert_eq!(of(&[]).unwrap(), "{}");
    }

    #[test]
    fn a_repeated_name_at_any_depth_keeps_its_last_copy() {
        assert_eq!(
            of(&[("a", "1"), ("b", "2"), ("a", "3")]).unwrap(),
            r#"{"a":3,"b":2}"#
        );
        assert_eq!(
            of(&[("a", r#"{"x": 1, "x": 2}"#)]).unwrap(),
            r#"{"a":{"x":2}}"#
        );
    }

    #[test]
    fn what_a_value_cannot_hold_is_malformed() {
        for value in [r#""\ud800""#, "1e400", r#"["\udc00"]"#, r#"{"k": 1e999}"#] {
            assert_eq!(of(&[("a", value)]), Err("malformed_json"), "{value}");
        }
    }

    #[test]
    fn the_same_object_as_read_from_a_body() {
        // What a body's `props` becomes, and what the same members become when given.
        let members = [
            ("z", "1"),
            ("a", r#"{"k":"\u00e9","k":2}"#),
            ("s", r#""t""#),
        ];
        let body = format!(
            r#"{{"session_id":"s","event":"e","props":{{{}}}}}"#,
            members.map(|(n, v)| format!("\"{n}\":{v}")).join(",")
        );
        let read = crate::event::parse(crate::lane::Lane::BEACON, &body)
            .unwrap()
            .into_beacon();
        assert_eq!(of(&members).unwrap(), read.props_json);
    }
}
