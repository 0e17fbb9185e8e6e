//! What the error trackers' translations (Rollbar, Sentry, Honeybadger) share: taking the
//! fields that map out of an SDK's report, and building inlet's occurrence of them, with the
//! rest of the report in `custom`.
//!
//! Each translation takes what it maps out of the report's JSON (so it is not repeated in
//! `custom`) and leaves everything else where the SDK put it. A value of the wrong type is not
//! taken: it stays in `custom`, and the occurrence goes without that field rather than being
//! refused for an SDK's quirk.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::keep_within;
use crate::event::occurrence::{MAX_CUSTOM_BYTES, MAX_FRAMES};
use crate::event::{self, Given, Invalid, Kind};
use crate::pipeline::{Translated, Untranslated};

/// One report of an error tracker, translated or not, and the event id it has in Kafka (the
/// SDK's own when it chose one, else one inlet made): the id its SDK is answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: uuid::Uuid,
    pub event: Result<Translated, Untranslated>,
}

impl Report {
    /// A report that is not a JSON object, or lacks what every occurrence needs: refused with
    /// `invalid`, its text kept as sent.
    pub fn untranslated(invalid: Invalid, raw: &[u8]) -> Report {
        Report {
            id: crate::id::uuid_v7(),
            event: Err(Untranslated {
                invalid,
                raw: String::from_utf8_lossy(raw).into_owned(),
            }),
        }
    }
}

/// A report's object as its members' JSON text, parsed only far enough to find them: the
/// large members that map (stack traces, with their source context and locals) are then read
/// into typed shapes ([`Frame`]) and the others into values, so no tree of the whole report is
/// ever built.
pub type Members<'a> = BTreeMap<String, &'a RawValue>;

/// The members of a report's JSON object, or why it is not one.
pub fn members(raw: &[u8]) -> Result<Members<'_>, Invalid> {
    serde_json::from_slice(raw).map_err(|e| {
        if serde_json::from_slice::<IgnoredAny>(raw).is_ok() {
            Invalid::new("not_an_object", "a report must be a JSON object")
        } else {
            Invalid::new("malformed_json", e.to_string())
        }
    })
}

/// The members of the object at `name` of `members`, taken out; `None` (and `name` left where
/// it was) when it is no object.
pub fn take_members<'a>(members: &mut Members<'a>, name: &str) -> Option<Members<'a>> {
    let inner = serde_json::from_str(members.get(name)?.get()).ok()?;
    members.remove(name);
    Some(inner)
}

/// `members` as values, for the fields that map to be taken from and the rest to go into
/// `custom`.
pub fn values(members: Members<'_>) -> Map<String, Value> {
    members
        .into_iter()
        .map(|(name, raw)| (name, serde_json::from_str(raw.get()).unwrap_or(Value::Null)))
        .collect()
}

/// The raw member `name` read as `T`, taken out; left where it is when it is not a `T`.
pub fn take_as<'a, T: Deserialize<'a>>(members: &mut Members<'a>, name: &str) -> Option<T> {
    let value = serde_json::from_str(members.get(name)?.get()).ok()?;
    members.remove(name);
    Some(value)
}

/// The exception a report raised, read from its raw members: its class, message and frames,
/// and the exceptions chained to it (its causes, which stay in `custom` as sent).
pub struct Raised<'a> {
    pub class: String,
    pub message: Option<String>,
    pub frames: Vec<Frame>,
    pub causes: Vec<&'a RawValue>,
}

/// The string of a value read from a report, if it is one.
pub fn text(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// One stack frame under any of the names the trackers give its fields (each a value, so a
/// field of an unexpected type is left out rather than failing the frame); everything else of
/// it (source context, locals) is skipped without being built.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Frame {
    filename: Option<Value>,
    abs_path: Option<Value>,
    file: Option<Value>,
    lineno: Option<Value>,
    number: Option<Value>,
    colno: Option<Value>,
    column: Option<Value>,
    method: Option<Value>,
    function: Option<Value>,
}

impl Frame {
    fn field(&self, name: &str) -> Option<&Value> {
        match name {
            "filename" => self.filename.as_ref(),
            "abs_path" => self.abs_path.as_ref(),
            "file" => self.file.as_ref(),
            "lineno" => self.lineno.as_ref(),
            "number" => self.number.as_ref(),
            "colno" => self.colno.as_ref(),
            "column" => self.column.as_ref(),
            "method" => self.method.as_ref(),
            "function" => self.function.as_ref(),
            _ => None,
        }
    }
}

/// Where a tracker's stack frames keep the four fields inlet maps, each the first of its names
/// that the frame has.
pub struct FrameFields {
    pub filename: &'static [&'static str],
    pub lineno: &'static str,
    pub colno: &'static str,
    pub method: &'static str,
}

/// Which end of a tracker's frame list the innermost call (where it failed) is at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Innermost {
    /// Sentry and Rollbar: the outermost call first, as Python prints a traceback.
    Last,
    /// Honeybadger: the innermost call first, as Ruby prints one.
    First,
}

/// An occurrence being built: inlet's fields, and what was left out to fit.
pub struct Occurrence {
    fields: Vec<(&'static str, Given)>,
    trimmed: Vec<String>,
}

impl Occurrence {
    /// An occurrence at inlet's `level` (one of `critical`, `error`, `warning`, `info`, `debug`).
    pub fn new(level: &'static str) -> Occurrence {
        let mut fields = Vec::with_capacity(11);
        fields.push(("level", Given::Str(level.into())));
        Occurrence {
            fields,
            trimmed: Vec::new(),
        }
    }

    /// Sets the string field `name` when there is a value.
    pub fn set(&mut self, name: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.fields.push((name, Given::Str(value)));
        }
    }

    /// Sets `timestamp` (milliseconds) when there is one.
    pub fn timestamp(&mut self, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.fields.push(("timestamp", Given::Millis(ms)));
        }
    }

    /// Sets `exception` from its class, message and the tracker's frames, in the tracker's
    /// order. Past inlet's cap of frames, the innermost ones are kept, and the others named as
    /// trimmed.
    pub fn exception(
        &mut self,
        class: String,
        message: Option<String>,
        frames: Vec<Frame>,
        fields: &FrameFields,
        innermost: Innermost,
    ) {
        let mut frames: Vec<Value> = frames.iter().map(|f| frame(f, fields)).collect();
        if frames.len() > MAX_FRAMES {
            let over = frames.len() - MAX_FRAMES;
            match innermost {
                Innermost::Last => drop(frames.drain(..over)),
                Innermost::First => frames.truncate(MAX_FRAMES),
            }
            self.trimmed
                .push(format!("exception.frames ({over} outermost frames)"));
        }
        let mut exception = Map::new();
        exception.insert("class".into(), class.into());
        if let Some(message) = message {
            exception.insert("message".into(), message.into());
        }
        exception.insert("frames".into(), frames.into());
        self.fields
            .push(("exception", Given::Tree(exception.into())));
    }

    /// The occurrence with `id` as its `uuid` and `rest` (what of the report did not map) as
    /// its `custom`, within the cap, validated; refused with why when it breaks an
    /// occurrence's rule (a class or a message over its limit), `raw` (the report as the SDK
    /// sent it) kept for the operator.
    pub fn finish(mut self, id: uuid::Uuid, rest: Map<String, Value>, raw: &[u8]) -> Report {
        self.fields
            .push(("uuid", Given::Str(id.hyphenated().to_string())));
        if !rest.is_empty() {
            let (custom, trimmed) = keep_within(rest, MAX_CUSTOM_BYTES);
            self.trimmed.extend(trimmed);
            self.fields.push(("custom", Given::Object(custom)));
        }
        let event = match event::from_fields(Kind::Occurrence, self.fields) {
            Ok(event) => Ok(Translated {
                event,
                trimmed: self.trimmed,
            }),
            Err(invalid) => Err(Untranslated {
                invalid,
                raw: String::from_utf8_lossy(raw).into_owned(),
            }),
        };
        Report { id, event }
    }
}

/// inlet's frame (`filename`, `lineno`, `colno`, `method`) from a tracker's; a field of the
/// wrong type is left out.
fn frame(frame: &Frame, fields: &FrameFields) -> Value {
    let mut out = Map::new();
    let filename = fields
        .filename
        .iter()
        .find_map(|name| frame.field(name)?.as_str());
    if let Some(filename) = filename {
        out.insert("filename".into(), filename.into());
    }
    for (to, from) in [("lineno", fields.lineno), ("colno", fields.colno)] {
        if let Some(number) = frame.field(from).and_then(line_number) {
            out.insert(to.into(), number.into());
        }
    }
    if let Some(method) = frame.field(fields.method).and_then(Value::as_str) {
        out.insert("method".into(), method.into());
    }
    out.into()
}

/// A line or column number: a non-negative integer, or a string of one (as some JavaScript
/// SDKs send them).
fn line_number(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Removes the string at `path` (object members, outermost first) from `map` and returns it;
/// objects the removal leaves empty are removed too, so `custom` holds no empty husks. Anything
/// but a string stays where it is.
pub fn take_string(map: &mut Map<String, Value>, path: &[&str]) -> Option<String> {
    match take_if(map, path, Value::is_string)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Removes the value at `path` when `wanted` holds for it (see [`take_string`]).
pub fn take_if(
    map: &mut Map<String, Value>,
    path: &[&str],
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let (first, deeper) = path.split_first()?;
    if deeper.is_empty() {
        return wanted(map.get(*first)?)
            .then(|| map.remove(*first))
            .flatten();
    }
    let inner = map.get_mut(*first)?.as_object_mut()?;
    let taken = take_if(inner, deeper, wanted)?;
    if inner.is_empty() {
        map.remove(*first);
    }
    Some(taken)
}

/// The report's event id: the SDK's own (`given`, a UUID in any of its spellings), else a new
/// one. A `given` id that is no UUID goes back into `rest` as `name`, so it is not lost.
pub fn event_id(given: Option<String>, rest: &mut Map<String, Value>, name: &str) -> uuid::Uuid {
    match given {
        Some(text) => uuid::Uuid::try_parse(text.trim()).unwrap_or_else(|_| {
            rest.insert(name.into(), text.into());
            crate::id::uuid_v7()
        }),
        None => crate::id::uuid_v7(),
    }
}

/// Seconds since the epoch (an integer or a fraction) as milliseconds, for trackers that send
/// their time so.
pub fn seconds_to_ms(value: &Value) -> Option<i64> {
    let seconds = value.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?;
    Some((seconds * 1000.0).round() as i64)
}

/// An RFC 3339 time as milliseconds since the epoch.
pub fn rfc3339_to_ms(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Compares a recorded report's translation with its native twin (see [`super::assert_twin`]).
#[cfg(test)]
pub(crate) fn assert_twin(report: &Report, twin: &str) {
    let translated = &report.event.as_ref().expect("translated").event;
    super::assert_twin(Kind::Occurrence, &[translated], twin);
}

/// A translated report as the JSON its native endpoint takes, for the tests to read.
#[cfg(test)]
pub(crate) fn native_json(report: &Report) -> Value {
    let translated = &report.event.as_ref().expect("translated").event;
    serde_json::from_str(&translated.native_json()).unwrap()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn taking_a_nested_value_prunes_what_it_empties() {
        let mut m = map(json!({"body": {"message": {"body": "hi"}}, "a": {"b": 1, "c": 2}}));
        assert_eq!(
            take_string(&mut m, &["body", "message", "body"]).as_deref(),
            Some("hi")
        );
        assert_eq!(take_if(&mut m, &["a", "b"], |_| true), Some(json!(1)));
        assert_eq!(Value::Object(m), json!({"a": {"c": 2}}));
    }

    #[test]
    fn a_value_of_the_wrong_type_stays() {
        let mut m = map(json!({"level": 3}));
        assert_eq!(take_string(&mut m, &["level"]), None);
        assert_eq!(take_string(&mut m, &["absent", "deeper"]), None);
        assert_eq!(Value::Object(m), json!({"level": 3}));
    }

    #[test]
    fn an_id_that_is_no_uuid_is_kept_and_replaced() {
        let mut rest = Map::new();
        let id = event_id(
            Some("7bc7b823935a4609849b520f1d57f41c".into()),
            &mut rest,
            "x",
        );
        assert_eq!(id.to_string(), "7bc7b823-935a-4609-849b-520f1d57f41c");
        assert!(rest.is_empty());
        let id = event_id(Some("nope".into()), &mut rest, "uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(Value::Object(rest), json!({"uuid": "nope"}));
    }

    #[test]
    fn frames_past_the_cap_keep_the_innermost() {
        let fields = FrameFields {
            filename: &["file"],
            lineno: "number",
            colno: "column",
            method: "function",
        };
        let frames: Vec<Frame> = (0..MAX_FRAMES + 2)
            .map(|i| {
                let frame = json!({"file": "a.py", "number": i, "column": "7", "function": "f"});
                serde_json::from_value(frame).unwrap()
            })
            .collect();
        for (innermost, first_line) in [(Innermost::Last, 2), (Innermost::First, 0)] {
            let mut o = Occurrence::new("error");
            o.exception("E".into(), None, frames.clone(), &fields, innermost);
            let report = o.finish(crate::id::uuid_v7(), Map::new(), b"{}");
            let translated = report.event.unwrap();
            let occurrence = translated.event.into_occurrence();
            let kept = occurrence.exception.unwrap().frames;
            assert_eq!(kept.len(), MAX_FRAMES);
            assert_eq!(kept[0].lineno, first_line);
            assert_eq!(kept[0].colno, 7);
            assert_eq!(
                translated.trimmed,
                ["exception.frames (2 outermost frames)"]
            );
        }
    }

    #[test]
    fn times_convert_to_milliseconds() {
        assert_eq!(
            seconds_to_ms(&json!(1_795_984_221)),
            Some(1_795_984_221_000)
        );
        assert_eq!(seconds_to_ms(&json!(1.5)), Some(1500));
        assert_eq!(seconds_to_ms(&json!("1")), None);
        assert_eq!(
            rfc3339_to_ms("2026-11-29T20:30:21.376023Z"),
            Some(1_795_984_221_376)
        );
        assert_eq!(rfc3339_to_ms("yesterday"), None);
    }
}
