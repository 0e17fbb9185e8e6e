//! What the error trackers' translations (Rollbar, Sentry, Honeybadger) share: taking the
//! fields that map out of an SDK's report, and writing them as inlet's occurrence JSON, with
//! the rest of the report in `custom`.
//!
//! Each translation takes what it maps out of the report's JSON (so it is not repeated in
//! `custom`) and leaves everything else where the SDK put it. A value of the wrong type is not
//! taken: it stays in `custom`, and the occurrence goes without that field rather than being
//! refused for an SDK's quirk.

use serde_json::{Map, Value};

use super::keep_within;
use crate::event::occurrence::{MAX_CUSTOM_BYTES, MAX_FRAMES};
use crate::event::Invalid;
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

/// The JSON object of a report, or why it is not one.
pub fn object(raw: &[u8]) -> Result<Map<String, Value>, Invalid> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Invalid::new(
            "not_an_object",
            "a report must be a JSON object",
        )),
        Err(e) => Err(Invalid::new("malformed_json", e.to_string())),
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

/// An occurrence being written: inlet's fields, and what was left out to fit.
pub struct Occurrence {
    fields: Map<String, Value>,
    trimmed: Vec<String>,
}

impl Occurrence {
    /// An occurrence at inlet's `level` (one of `critical`, `error`, `warning`, `info`, `debug`).
    pub fn new(level: &'static str) -> Occurrence {
        let mut fields = Map::new();
        fields.insert("level".into(), level.into());
        Occurrence {
            fields,
            trimmed: Vec::new(),
        }
    }

    /// Sets the string field `name` when there is a value.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(value) = value {
            self.fields.insert(name.into(), value.into());
        }
    }

    /// Sets `timestamp` (milliseconds) when there is one.
    pub fn timestamp(&mut self, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.fields.insert("timestamp".into(), ms.into());
        }
    }

    /// Sets `exception` from its class, message and the tracker's frames, in the tracker's
    /// order. Past inlet's cap of frames, the innermost ones are kept, and the others named as
    /// trimmed.
    pub fn exception(
        &mut self,
        class: String,
        message: Option<String>,
        frames: Vec<Value>,
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
        self.fields.insert("exception".into(), exception.into());
    }

    /// The occurrence as inlet's JSON with `id` as its `uuid` and `rest` (what of the report
    /// did not map) as its `custom`, within the cap.
    pub fn finish(mut self, id: uuid::Uuid, rest: Map<String, Value>) -> Report {
        self.fields
            .insert("uuid".into(), id.hyphenated().to_string().into());
        let mut json = Value::Object(self.fields).to_string();
        if !rest.is_empty() {
            // `custom` is already JSON text: spliced in as the last member, not parsed again.
            let (custom, trimmed) = keep_within(rest, MAX_CUSTOM_BYTES);
            self.trimmed.extend(trimmed);
            json.pop(); // the object's closing brace (it has `level` and `uuid`: never `{}`)
            json.push_str(",\"custom\":");
            json.push_str(&custom);
            json.push('}');
        }
        Report {
            id,
            event: Ok(Translated {
                json,
                trimmed: self.trimmed,
            }),
        }
    }
}

/// inlet's frame (`filename`, `lineno`, `colno`, `method`) from a tracker's; a field of the
/// wrong type is left out.
fn frame(frame: &Value, fields: &FrameFields) -> Value {
    let mut out = Map::new();
    let filename = fields
        .filename
        .iter()
        .find_map(|name| frame.get(name)?.as_str());
    if let Some(filename) = filename {
        out.insert("filename".into(), filename.into());
    }
    for (to, from) in [("lineno", fields.lineno), ("colno", fields.colno)] {
        if let Some(number) = frame.get(from).and_then(line_number) {
            out.insert(to.into(), number.into());
        }
    }
    if let Some(method) = frame.get(fields.method).and_then(Value::as_str) {
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

/// Removes the value at `path` (object members, outermost first) from `map` and returns it;
/// objects the removal leaves empty are removed too, so `custom` holds no empty husks.
pub fn take(map: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    take_if(map, path, |_| true)
}

/// [`take`], of a string only: anything else stays where it is.
pub fn take_string(map: &mut Map<String, Value>, path: &[&str]) -> Option<String> {
    match take_if(map, path, Value::is_string)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// [`take`] when `wanted` holds for the value.
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

/// Compares a recorded payload's translation with its twin under tests/sdk/payloads/ (the
/// native occurrence loadtest/bench posts beside the payload to compare the adapter's cost with
/// `/v1/occurrences`'); `INLET_BLESS=1` writes the twin instead.
#[cfg(test)]
pub(crate) fn assert_twin(report: &Report, twin: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(twin);
    let json = &report.event.as_ref().expect("translated").json;
    if std::env::var_os("INLET_BLESS").is_some() {
        std::fs::write(&path, format!("{json}\n")).unwrap();
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        json,
        recorded.trim_end(),
        "{} (INLET_BLESS=1 rewrites it)",
        path.display()
    );
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
        assert_eq!(take(&mut m, &["a", "b"]), Some(json!(1)));
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
            lineno: "line",
            colno: "col",
            method: "fn",
        };
        let frames: Vec<Value> = (0..MAX_FRAMES + 2)
            .map(|i| json!({"file": "a.py", "line": i, "col": "7", "fn": "f"}))
            .collect();
        for (innermost, first_line) in [(Innermost::Last, 2), (Innermost::First, 0)] {
            let mut o = Occurrence::new("error");
            o.exception("E".into(), None, frames.clone(), &fields, innermost);
            let report = o.finish(crate::id::uuid_v7(), Map::new());
            let event = report.event.unwrap();
            let json: Value = serde_json::from_str(&event.json).unwrap();
            let kept = json["exception"]["frames"].as_array().unwrap();
            assert_eq!(kept.len(), MAX_FRAMES);
            assert_eq!(kept[0]["lineno"], first_line);
            assert_eq!(kept[0]["colno"], 7);
            assert_eq!(event.trimmed, ["exception.frames (2 outermost frames)"]);
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

#[cfg(test)]
mod timing {
    /// By hand: `cargo test --release --lib timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn translation_cost() {
        let envelope = include_bytes!("../../tests/sdk/payloads/sentry/python-exception.envelope");
        let item = include_bytes!("../../tests/sdk/payloads/rollbar/python-exception.json");
        let twin = include_str!("../../tests/sdk/payloads/sentry/python-exception.occurrence.json");
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let e = super::super::sentry::envelope(envelope).unwrap();
            std::hint::black_box(super::super::sentry::event(e.events[0], e.event_id));
        }
        println!("sentry: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(super::super::rollbar::item(item).unwrap());
        }
        println!("rollbar: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(envelope.split(|b| *b == b'\n').nth(2).unwrap()).unwrap());
        }
        println!("sentry Value parse only: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(crate::event::occurrence::parse(twin.trim_end()).unwrap());
        }
        println!("native parse of the twin: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
