//! A JSON object of an SDK's payload read only as far as its members: each value kept as its
//! raw text in the body, so a translation parses the few members that map and copies the rest
//! (into `props` or `custom`) as it was sent.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::Key;

/// A JSON object of an SDK's payload: its members in order, each value as its raw text in the
/// body. Reading a message this way costs a scan of its text, not a tree of values: only the
/// few members that map are parsed, and the rest (a posthog-js event carries some fifty
/// properties) is copied into `props` as it was sent.
#[derive(Debug, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// `raw` as an object; `None` when it is another JSON value.
    pub fn parse(raw: &'a RawValue) -> Option<Object<'a>> {
        serde_json::from_str(raw.get()).ok()
    }

    /// A body that should be an object, or why it is not one.
    pub fn from_slice(body: &'a [u8]) -> Result<Object<'a>, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// `text` as an object with its member `name` apart, read in the same pass as a `T` (an
    /// event's `properties` as an [`Object`], a Sentry event's `exception` as its `values`), its
    /// last copy as a map would keep it: so its text is scanned once, not captured and then
    /// parsed again. A member `name` that is no `T` stays among the others (found the slow
    /// way). Fails when `text` is no JSON object.
    pub fn parse_apart<T: Deserialize<'a>>(
        text: &'a str,
        name: &str,
    ) -> Result<(Object<'a>, Option<T>), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let apart = Apart {
            name,
            apart: std::marker::PhantomData,
        };
        if let Ok(split) = serde::de::DeserializeSeed::deserialize(apart, &mut de) {
            if de.end().is_ok() {
                return Ok(split);
            }
        }
        let mut object: Object = serde_json::from_str(text)?;
        let apart = object.take_as(name);
        Ok((object, apart))
    }

    /// The member `name` (its last copy, as a map would keep it).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// Removes the member `name` (every copy) and returns it.
    pub fn take(&mut self, name: &str) -> Option<&'a RawValue> {
        let value = self.get(name);
        if value.is_some() {
            self.members.retain(|(k, _)| k != name);
        }
        value
    }

    /// The member `name` as an object, if it is one.
    pub fn object(&self, name: &str) -> Option<Object<'a>> {
        self.get(name).and_then(Object::parse)
    }

    /// The member `name` as text (see [`text`]).
    pub fn text(&self, name: &str) -> Option<String> {
        text(self.get(name))
    }

    /// Whether it has a member `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.members.iter().any(|(k, _)| k == name)
    }

    /// Whether it has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Its members in order, each name borrowed from the body unless it held escapes (see
    /// [`crate::event::ObjectText::of_members`]).
    pub fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &'a RawValue)> {
        self.members.iter().map(|(name, value)| (name, *value))
    }

    /// Takes the member `name` out when it is an object, and returns it; else it stays.
    pub fn take_object(&mut self, name: &str) -> Option<Object<'a>> {
        let inner = self.object(name)?;
        self.take(name);
        Some(inner)
    }

    /// Takes the member `name` out when it reads as a `T`, and returns it; else it stays.
    pub fn take_as<T: Deserialize<'a>>(&mut self, name: &str) -> Option<T> {
        let value = serde_json::from_str(self.get(name)?.get()).ok()?;
        self.take(name);
        Some(value)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push((key.0, value));
                }
                Ok(Object { members })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Reads an object with its member `name` apart as a `T` ([`Object::parse_apart`]); fails
/// when that member is no `T`.
struct Apart<'n, T> {
    name: &'n str,
    apart: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for Apart<'_, T> {
    type Value = (Object<'de>, Option<T>);
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Apart<'_, T> {
    type Value = (Object<'de>, Option<T>);
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a JSON object with its `{}` apart", self.name)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(16);
        let mut apart = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == self.name {
                apart = Some(map.next_value::<T>()?);
            } else {
                members.push((key, map.next_value::<&'de RawValue>()?));
            }
        }
        Ok((Object { members }, apart))
    }
}

/// A string or a number of an SDK's message as text (SDKs send ids as either); `None` for
/// anything else, or an empty string.
pub fn text(value: Option<&RawValue>) -> Option<String> {
    let raw = value?.get();
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(raw)
            .ok()
            .filter(|s| !s.is_empty()),
        b'-' | b'0'..=b'9' => Some(raw.to_owned()),
        _ => None,
    }
}
