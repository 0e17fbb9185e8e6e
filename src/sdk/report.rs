//! What the error trackers' translations (Rollbar, Sentry, Honeybadger) share: taking the
//! fields that map out of an SDK's report, and building inlet's occurrence of them, with the
//! rest of the report in `custom`.
//!
//! Each translation takes what it maps out of the report's JSON (so it is not repeated in
//! `custom`) and leaves everything else where the SDK put it. A value of the wrong type is not
//! taken: it stays in `custom`, and the occurrence goes without that field rather than being
//! refused for an SDK's quirk.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::lane::Lane;

use super::object::Object;
use super::{keep_within, without_secrets, Secrets};
use crate::batch::{Translated, Untranslated};
use crate::event::occurrence::{MAX_CUSTOM_BYTES, MAX_FRAMES};
use crate::event::{self, Given, Invalid, ObjectText};
use crate::proto;

/// One report of an error tracker, translated or not, and the event id it has in Kafka (the
/// SDK's own when it chose one, else one inlet made): the id its SDK is answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: uuid::Uuid,
    pub event: Result<Translated, Untranslated>,
}

impl Report {
    /// A report that is not a JSON object, or lacks what every occurrence needs: refused with
    /// `invalid`, its text kept as sent but for its `secrets`.
    pub fn untranslated(invalid: Invalid, raw: &[u8], secrets: Secrets) -> Report {
        Report {
            id: crate::id::uuid_v7(),
            event: Err(refused(invalid, raw, secrets)),
        }
    }
}

/// A report refused for `invalid`, its text kept for the operator without its `secrets`.
fn refused(invalid: Invalid, raw: &[u8], secrets: Secrets) -> Untranslated {
    Untranslated {
        invalid,
        raw: without_secrets(&String::from_utf8_lossy(raw), secrets),
    }
}

/// The members of a report's JSON object ([`Object`]), or why it is not one. Only the large
/// members that map (stack traces, with their source context and locals) are then read, into
/// typed shapes ([`Frame`]); the others go into `custom` as sent ([`Rest`]), so no tree of the
/// whole report is ever built.
pub fn members(raw: &[u8]) -> Result<Object<'_>, Invalid> {
    Object::from_slice(raw).map_err(|e| not_a_report(raw, e))
}

/// Why `raw` could not be read as a report's object (`error`): it is other JSON, or no JSON.
pub fn not_a_report(raw: &[u8], error: serde_json::Error) -> Invalid {
    if serde_json::from_slice::<IgnoredAny>(raw).is_ok() {
        Invalid::new("not_an_object", "a report must be a JSON object")
    } else {
        Invalid::new("malformed_json", error.to_string())
    }
}

/// `members` as values (a small object a translation rewrites, such as Rollbar's `body`).
pub fn values(members: &Object<'_>) -> Map<String, Value> {
    members
        .iter()
        .map(|(name, raw)| {
            let value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            (name.clone().into_owned(), value)
        })
        .collect()
}

/// `raws` (an SDK's values as sent, such as chained exceptions) as an array of values, one no
/// [`Value`] can hold (a lone surrogate) as `null`: never a panic, never the report refused for
/// its extras.
pub fn values_of(raws: &[&RawValue]) -> Value {
    raws.iter()
        .map(|raw| serde_json::from_str(raw.get()).unwrap_or(Value::Null))
        .collect()
}

/// What of a report goes into `custom`: its members in order, as sent. The few a translation
/// looks into ([`Rest::get`]) are parsed then, and written again only because they were; the
/// others are copied as they came ([`ObjectText::of_members`]).
#[derive(Debug, Default)]
pub struct Rest<'a> {
    members: Vec<(Cow<'a, str>, Member<'a>)>,
}

#[derive(Debug)]
enum Member<'a> {
    Raw(&'a RawValue),
    Parsed(Value),
}

impl<'a> From<Object<'a>> for Rest<'a> {
    fn from(object: Object<'a>) -> Rest<'a> {
        let members = object
            .iter()
            .map(|(name, raw)| (name.clone(), Member::Raw(raw)))
            .collect();
        Rest { members }
    }
}

impl Rest<'_> {
    /// The member `name` (its last copy, as a map keeps it), parsed if it was not yet; `None`
    /// when it is absent, or holds what no [`Value`] can (it then stays as sent).
    pub fn get(&mut self, name: &str) -> Option<&mut Value> {
        let (_, member) = self.members.iter_mut().rev().find(|(k, _)| k == name)?;
        if let Member::Raw(raw) = member {
            *member = Member::Parsed(serde_json::from_str(raw.get()).ok()?);
        }
        match member {
            Member::Parsed(value) => Some(value),
            Member::Raw(_) => None,
        }
    }

    /// Removes the member `name` (every copy), and returns it.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let value = self.get(name).map(Value::take);
        self.members.retain(|(k, _)| k != name);
        value
    }

    /// Sets the member `name` (in place of any it had).
    pub fn insert(&mut self, name: &str, value: Value) {
        self.members.retain(|(k, _)| k != name);
        self.members
            .push((Cow::Owned(name.to_owned()), Member::Parsed(value)));
    }

    /// Whether it has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Its JSON object's text, at most `cap` bytes (what was left out to fit named, as
    /// [`keep_within`] does). A member that holds what no [`Value`] can (a lone surrogate) is
    /// `null`, so a report is never refused for its extras.
    pub fn into_custom(self, cap: usize) -> (ObjectText, Vec<String>) {
        let written: Vec<Option<Box<RawValue>>> = self
            .members
            .iter()
            .map(|(_, member)| match member {
                Member::Parsed(value) => serde_json::value::to_raw_value(value).ok(),
                Member::Raw(_) => None,
            })
            .collect();
        let null = RawValue::NULL;
        let members = self
            .members
            .iter()
            .zip(&written)
            .map(|((name, member), text)| {
                let text = match (member, text) {
                    (Member::Raw(raw), _) => *raw,
                    (Member::Parsed(_), text) => text.as_deref().unwrap_or(null),
                };
                (name.clone(), text)
            });
        let text = match ObjectText::of_members(members) {
            Ok(text) if text.len() <= cap => return (text, Vec::new()),
            Ok(text) => serde_json::from_str(text.as_str()).unwrap_or_default(),
            Err(_) => self.lossy(),
        };
        keep_within(text, cap)
    }

    /// Every member as a value, `null` for one no [`Value`] can hold.
    fn lossy(self) -> Map<String, Value> {
        self.members
            .into_iter()
            .map(|(name, member)| {
                let value = match member {
                    Member::Raw(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
                    Member::Parsed(value) => value,
                };
                (name.into_owned(), value)
            })
            .collect()
    }
}

/// The exception a report raised, read from its raw members: its class, message and frames,
/// and the exceptions chained to it (its causes, which stay in `custom` as sent).
pub struct Raised<'a> {
    pub class: String,
    pub message: Option<String>,
    pub frames: Vec<Frame>,
    pub causes: Vec<&'a RawValue>,
}

/// One exception as Sentry writes it in `exception.values` (and PostHog after it, in
/// `$exception_list`): what inlet maps of it (its `mechanism`, `module` and its frames' context
/// are skipped).
#[derive(Deserialize)]
pub struct ExceptionValue {
    #[serde(rename = "type")]
    pub class: Option<Value>,
    pub value: Option<Value>,
    pub stacktrace: Option<Stacktrace>,
}

/// An exception's `stacktrace`.
#[derive(Deserialize)]
pub struct Stacktrace {
    #[serde(default)]
    pub frames: Vec<Frame>,
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
    /// Takes the field `name` out.
    fn take(&mut self, name: &str) -> Option<Value> {
        match name {
            "filename" => self.filename.take(),
            "abs_path" => self.abs_path.take(),
            "file" => self.file.take(),
            "lineno" => self.lineno.take(),
            "number" => self.number.take(),
            "colno" => self.colno.take(),
            "column" => self.column.take(),
            "method" => self.method.take(),
            "function" => self.function.take(),
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
        let mut frames: Vec<proto::Frame> = frames.into_iter().map(|f| frame(f, fields)).collect();
        if frames.len() > MAX_FRAMES {
            let over = frames.len() - MAX_FRAMES;
            match innermost {
                Innermost::Last => drop(frames.drain(..over)),
                Innermost::First => frames.truncate(MAX_FRAMES),
            }
            self.trimmed
                .push(format!("exception.frames ({over} outermost frames)"));
        }
        let exception = proto::Exception {
            class,
            message: message.unwrap_or_default(),
            frames,
        };
        self.fields.push(("exception", Given::Exception(exception)));
    }

    /// Sets `exception` from what a report raised (see [`Occurrence::exception`]), and returns
    /// its causes, for the translation to keep in `custom` where its SDK puts them.
    pub fn raised<'a>(
        &mut self,
        raised: Raised<'a>,
        fields: &FrameFields,
        innermost: Innermost,
    ) -> Vec<&'a RawValue> {
        self.exception(
            raised.class,
            raised.message,
            raised.frames,
            fields,
            innermost,
        );
        raised.causes
    }

    /// The occurrence with `id` as its `uuid` and `rest` (what of the report did not map) as
    /// its `custom`, within the cap, validated; refused with why when it breaks an
    /// occurrence's rule (a class or a message over its limit), `raw` (the report as the SDK
    /// sent it) kept for the operator without its `secrets`.
    pub fn finish(
        mut self,
        id: uuid::Uuid,
        rest: Rest<'_>,
        raw: &[u8],
        secrets: Secrets,
    ) -> Report {
        self.fields
            .push(("uuid", Given::Str(id.hyphenated().to_string())));
        if !rest.is_empty() {
            let (custom, trimmed) = rest.into_custom(MAX_CUSTOM_BYTES);
            self.trimmed.extend(trimmed);
            self.fields.push(("custom", Given::Object(custom)));
        }
        let event = match event::from_fields(Lane::OCCURRENCE, self.fields) {
            Ok(event) => Ok(Translated {
                event,
                trimmed: self.trimmed,
            }),
            Err(invalid) => Err(refused(invalid, raw, secrets)),
        };
        Report { id, event }
    }
}

/// inlet's frame (`filename`, `lineno`, `colno`, `method`) from a tracker's; a field of the
/// wrong type is left out.
fn frame(mut frame: Frame, fields: &FrameFields) -> proto::Frame {
    let mut string = |name: &str| match frame.take(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let filename = fields.filename.iter().find_map(|name| string(name));
    let method = string(fields.method);
    let mut number = |name: &str| frame.take(name).as_ref().and_then(line_number);
    proto::Frame {
        filename: filename.unwrap_or_default(),
        lineno: number(fields.lineno).unwrap_or_default(),
        colno: number(fields.colno).unwrap_or_default(),
        method: method.unwrap_or_default(),
    }
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

/// Removes the string at `path` (object members, outermost first) from `rest` and returns it;
/// objects the removal leaves empty are removed too, so `custom` holds no empty husks. Anything
/// but a string stays where it is.
pub fn take_string(rest: &mut Rest<'_>, path: &[&str]) -> Option<String> {
    match take_if(rest, path, Value::is_string)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Removes the value at `path` when `wanted` holds for it (see [`take_string`]).
pub fn take_if(
    rest: &mut Rest<'_>,
    path: &[&str],
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let (first, deeper) = path.split_first()?;
    let value = rest.get(first)?;
    if deeper.is_empty() {
        return wanted(value).then(|| rest.remove(first)).flatten();
    }
    let inner = value.as_object_mut()?;
    let taken = take_in(inner, deeper, &wanted)?;
    if inner.is_empty() {
        rest.remove(first);
    }
    Some(taken)
}

/// [`take_if`] inside a member's value.
fn take_in(
    map: &mut Map<String, Value>,
    path: &[&str],
    wanted: &impl Fn(&Value) -> bool,
) -> Option<Value> {
    let (first, deeper) = path.split_first()?;
    if deeper.is_empty() {
        return wanted(map.get(*first)?)
            .then(|| map.remove(*first))
            .flatten();
    }
    let inner = map.get_mut(*first)?.as_object_mut()?;
    let taken = take_in(inner, deeper, wanted)?;
    if inner.is_empty() {
        map.remove(*first);
    }
    Some(taken)
}

/// The report's event id: the SDK's own (`given`, a UUID in any of its spellings), else a new
/// one. A `given` id that is no UUID goes back into `rest` as `name`, so it is not lost.
pub fn event_id(given: Option<String>, rest: &mut Rest<'_>, name: &str) -> uuid::Uuid {
    match given {
        Some(text) => uuid::Uuid::try_parse(text.trim()).unwrap_or_else(|_| {
            rest.insert(name, text.into());
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
    super::assert_twin(Lane::OCCURRENCE, &[translated], twin);
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

    /// What is left of a report whose JSON is `text`, as a translation meets it.
    fn rest(text: &str) -> Rest<'_> {
        Rest::from(members(text.as_bytes()).unwrap())
    }

    fn custom(rest: Rest<'_>) -> Value {
        serde_json::from_str(rest.into_custom(usize::MAX).0.as_str()).unwrap()
    }

    #[test]
    fn taking_a_nested_value_prunes_what_it_empties() {
        let text = json!({"body": {"message": {"body": "hi"}}, "a": {"b": 1, "c": 2}}).to_string();
        let mut m = rest(&text);
        assert_eq!(
            take_string(&mut m, &["body", "message", "body"]).as_deref(),
            Some("hi")
        );
        assert_eq!(take_if(&mut m, &["a", "b"], |_| true), Some(json!(1)));
        assert_eq!(custom(m), json!({"a": {"c": 2}}));
    }

    #[test]
    fn a_value_of_the_wrong_type_stays() {
        let mut m = rest(r#"{"level": 3}"#);
        assert_eq!(take_string(&mut m, &["level"]), None);
        assert_eq!(take_string(&mut m, &["absent", "deeper"]), None);
        assert_eq!(custom(m), json!({"level": 3}));
    }

    #[test]
    fn what_is_not_looked_into_is_kept_as_sent() {
        let text = r#"{"sdk": {"name": "x",  "v": 1.0}, "level": "error", "extra": [1e2]}"#;
        let mut m = rest(text);
        assert_eq!(take_string(&mut m, &["level"]).as_deref(), Some("error"));
        let (text, trimmed) = m.into_custom(usize::MAX);
        assert_eq!(
            text.as_str(),
            r#"{"sdk":{"name": "x",  "v": 1.0},"extra":[1e2]}"#
        );
        assert!(trimmed.is_empty());
        // A member no value can hold is null, rather than the report refused.
        let m = rest(r#"{"a": "\ud800", "b": 1}"#);
        assert_eq!(custom(m), json!({"a": null, "b": 1}));
        // Past the cap, the largest members go first.
        let text = json!({"big": "x".repeat(100), "small": 1}).to_string();
        let (text, trimmed) = rest(&text).into_custom(50);
        assert_eq!(text.as_str(), r#"{"small":1}"#);
        assert_eq!(trimmed, ["big (109 bytes)"]);
    }

    #[test]
    fn an_id_that_is_no_uuid_is_kept_and_replaced() {
        let mut rest = Rest::default();
        let id = event_id(
            Some("7bc7b823935a4609849b520f1d57f41c".into()),
            &mut rest,
            "x",
        );
        assert_eq!(id.to_string(), "7bc7b823-935a-4609-849b-520f1d57f41c");
        assert!(rest.is_empty());
        let id = event_id(Some("nope".into()), &mut rest, "uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(custom(rest), json!({"uuid": "nope"}));
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
            let report = o.finish(crate::id::uuid_v7(), Rest::default(), b"{}", &[]);
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
