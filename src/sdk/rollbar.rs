//! Rollbar: an item (`POST /api/1/item/`, `{"access_token": ..., "data": {...}}`) as its SDKs
//! write it, translated into an occurrence; a batch of them (`/api/1/item_batch/`); and a
//! deploy (`/api/1/deploy/`), carried as a `deploy` item.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::object::Object;
use super::report::{
    self, take_string, Frame, FrameFields, Innermost, Occurrence, Raised, Report, Rest,
};
use super::Secrets;
use crate::event::Invalid;

/// Where a Rollbar stack frame keeps inlet's frame fields (the same names).
const FRAME: FrameFields = FrameFields {
    filename: &["filename"],
    lineno: "lineno",
    colno: "colno",
    method: "method",
};

/// Where an item carries the project's access token.
const SECRETS: Secrets = &[&["access_token"]];

/// A Rollbar request body, read: the key it may carry, and its item translated.
#[derive(Debug)]
pub struct Item {
    /// The body's `access_token`, for an SDK that does not send `X-Rollbar-Access-Token`.
    pub access_token: Option<String>,
    pub report: Report,
}

/// Reads a Rollbar request body; fails, with why, only when it is not a JSON object.
pub fn item(body: &[u8]) -> Result<Item, String> {
    let mut payload = report::members(body).map_err(|invalid| invalid.message)?;
    let access_token = payload.take_as("access_token");
    let report = match payload.take_object("data") {
        Some(data) => translate(data, body),
        None => Report::untranslated(
            Invalid::new("missing_field", "`data` (an object) is required"),
            body,
            SECRETS,
        ),
    };
    Ok(Item {
        access_token,
        report,
    })
}

/// An item batch (`POST /api/1/item_batch/`, from rollbar-php 0.x: a JSON array of whole
/// items, each with its `access_token` and `data`), at most `max_events` of them: each item's
/// raw text, and the first item's `access_token` (the request's key when no header gives it).
pub fn batch(body: &[u8], max_events: usize) -> Result<(Vec<&RawValue>, Option<String>), String> {
    let items: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| format!("an item batch is a JSON array of items: {e}"))?;
    if items.len() > max_events {
        return Err(format!(
            "{} items, past the limit of {max_events}",
            items.len()
        ));
    }
    let key = items
        .first()
        .and_then(|first| Object::parse(first))
        .and_then(|first| first.text("access_token"));
    Ok((items, key))
}

/// One item of a batch as an occurrence; refused when it names an `access_token` other than
/// `key` (another project's) or is no item.
pub fn batched(raw: &RawValue, key: Option<&str>) -> Report {
    let text = raw.get().as_bytes();
    match item(text) {
        Ok(item) if item.access_token.is_some() && item.access_token.as_deref() != key => {
            let invalid = Invalid::new(
                "token_mismatch",
                "the item's `access_token` is not the request's key: it belongs to another project",
            );
            Report::untranslated(invalid, text, SECRETS)
        }
        Ok(item) => item.report,
        Err(message) => Report::untranslated(Invalid::new("not_an_object", message), text, SECRETS),
    }
}

/// An item's `data` as an occurrence (`raw` is the whole item, kept if it is refused).
fn translate(mut data: Object<'_>, raw: &[u8]) -> Report {
    let body = data.take_object("body");
    let mut rest = Rest::from(data);
    let raised = body.and_then(|mut body| {
        let raised = exception(&mut body);
        if !body.is_empty() {
            rest.insert("body", report::values(&body).into());
        }
        raised
    });
    let given = take_string(&mut rest, &["uuid"]);
    let id = report::event_id(given, &mut rest, "uuid");
    let mut occurrence = Occurrence::new(level(&mut rest));
    if let Some(raised) = raised {
        let causes = occurrence.raised(raised, &FRAME, Innermost::Last);
        if !causes.is_empty() {
            let mut body = match rest.remove("body") {
                Some(Value::Object(body)) => body,
                _ => Map::new(),
            };
            body.insert("trace_chain".into(), report::values_of(&causes));
            rest.insert("body", body.into());
        }
    }
    occurrence.set(
        "message",
        take_string(&mut rest, &["body", "message", "body"]),
    );
    for name in [
        "environment",
        "platform",
        "language",
        "code_version",
        "fingerprint",
    ] {
        occurrence.set(name, take_string(&mut rest, &[name]));
    }
    let timestamp = rest.get("timestamp").and_then(|t| report::seconds_to_ms(t));
    if timestamp.is_some() {
        rest.remove("timestamp");
    }
    occurrence.timestamp(timestamp);
    occurrence.finish(id, rest, raw, SECRETS)
}

/// Rollbar's levels are inlet's; an item without one, or with another, is an `error` (the
/// latter's own level stays in `custom`).
fn level(rest: &mut Rest<'_>) -> &'static str {
    let level = match rest.get("level").and_then(|l| l.as_str()) {
        None => return "error",
        Some("critical") => "critical",
        Some("error") => "error",
        Some("warning" | "warn") => "warning",
        Some("info") => "info",
        Some("debug") => "debug",
        Some(_) => return "error",
    };
    rest.remove("level");
    level
}

/// A trace as Rollbar writes it: what inlet maps of it (its frames' `code`, `context`, `args`
/// and `locals` are skipped).
#[derive(Deserialize)]
struct Trace {
    #[serde(default)]
    exception: TraceException,
    #[serde(default)]
    frames: Vec<Frame>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TraceException {
    class: Option<Value>,
    message: Option<Value>,
}

/// Takes `trace`, else the first of `trace_chain` (the one raised; the others are its causes)
/// out of an item's `body`, when it has the shape Rollbar writes; else it stays, for `custom`.
fn exception<'a>(body: &mut Object<'a>) -> Option<Raised<'a>> {
    let (trace, causes) = match body.take_as::<Trace>("trace") {
        Some(trace) => (trace, Vec::new()),
        None => {
            let chain: Vec<&RawValue> =
                serde_json::from_str(body.get("trace_chain")?.get()).ok()?;
            let trace = serde_json::from_str(chain.first()?.get()).ok()?;
            body.take("trace_chain");
            (trace, chain[1..].to_vec())
        }
    };
    Some(Raised {
        class: report::text(trace.exception.class).unwrap_or_else(|| "Error".into()),
        message: report::text(trace.exception.message),
        frames: trace.frames,
        causes,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EXCEPTION: &[u8] =
        include_bytes!("../../tests/sdk/payloads/rollbar/python-exception.json");
    const MESSAGE: &[u8] = include_bytes!("../../tests/sdk/payloads/rollbar/python-message.json");

    fn translated(item: &Item) -> Value {
        report::native_json(&item.report)
    }

    #[test]
    fn pyrollbar_exception_maps_its_fields() {
        let item = item(EXCEPTION).unwrap();
        assert_eq!(item.access_token.as_deref(), Some("abc123"));
        assert_eq!(
            item.report.id.to_string(),
            "0b378c1f-ab50-426a-9e01-e0dc31088f64"
        );
        let o = translated(&item);
        assert_eq!(o["level"], "error");
        assert_eq!(o["uuid"], "0b378c1f-ab50-426a-9e01-e0dc31088f64");
        assert_eq!(o["exception"]["class"], "ValueError");
        assert!(o["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("not a number R1"));
        let frames = o["exception"]["frames"].as_array().unwrap();
        assert_eq!(frames.last().unwrap()["method"], "parse");
        assert_eq!(frames.last().unwrap()["lineno"], 22);
        assert_eq!(o["environment"], "staging");
        assert_eq!(o["language"], "python 3.11.7");
        assert_eq!(o["code_version"], "1.4.2");
        assert_eq!(o["timestamp"], 1_795_984_221_000_i64);
        assert_eq!(o["custom"]["notifier"]["name"], "pyrollbar");
        assert!(
            o["custom"].get("body").is_none(),
            "the mapped body is repeated"
        );
        assert!(o["custom"].get("access_token").is_none(), "the key is kept");
    }

    #[test]
    fn the_recorded_exception_translates_to_its_native_twin() {
        let twin = "tests/sdk/payloads/rollbar/python-exception.occurrence.json";
        report::assert_twin(&item(EXCEPTION).unwrap().report, twin);
    }

    #[test]
    fn rollbar_js_on_node_sends_a_trace_chain_with_columns() {
        let body = include_bytes!("../../tests/sdk/payloads/rollbar/node-exception.json");
        let item = item(body).unwrap();
        assert_eq!(
            item.access_token, None,
            "rollbar.js sends its key in a header only"
        );
        let o = translated(&item);
        assert_eq!(o["exception"]["class"], "TypeError");
        assert_eq!(o["exception"]["message"], "cannot parse not a number N1");
        let innermost = o["exception"]["frames"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            innermost,
            json!({"filename": "/work/wt-errors/tests/sdk/errors.js", "lineno": 17, "colno": 10, "method": "parse"})
        );
        assert_eq!(o["language"], "javascript");
        assert_eq!(o["custom"]["framework"], "node-js");
        // A chain of one is mapped whole; the rest of the body stays.
        assert!(o["custom"]["body"].get("trace_chain").is_none());
        assert!(o["custom"]["body"]["telemetry"].is_array());
    }

    #[test]
    fn pyrollbar_message_maps_its_level_and_text() {
        let o = translated(&item(MESSAGE).unwrap());
        assert_eq!(o["level"], "warning");
        assert_eq!(o["message"], "warning message R1");
    }

    #[test]
    fn a_trace_chain_maps_its_first_trace_and_keeps_the_others() {
        let body = json!({"data": {
            "level": "nonsense",
            "body": {"trace_chain": [
                {"exception": {"class": "Outer", "message": "m"}, "frames": [{"filename": "a.js", "lineno": 1, "colno": 2, "method": "f"}]},
                {"exception": {"class": "Inner"}, "frames": []}
            ]},
            "uuid": "not-a-uuid",
        }});
        let item = item(body.to_string().as_bytes()).unwrap();
        let o = translated(&item);
        assert_eq!(o["level"], "error");
        assert_eq!(o["custom"]["level"], "nonsense");
        assert_eq!(o["exception"]["class"], "Outer");
        assert_eq!(o["exception"]["frames"][0]["colno"], 2);
        assert_eq!(
            o["custom"]["body"]["trace_chain"][0]["exception"]["class"],
            "Inner"
        );
        assert_eq!(o["custom"]["uuid"], "not-a-uuid");
        assert_eq!(o["uuid"], item.report.id.to_string());
    }

    #[test]
    fn bodies_that_are_no_item() {
        assert!(item(b"[1]").is_err());
        assert!(item(b"{").is_err());
        let item = item(br#"{"access_token":"k","data":3}"#).unwrap();
        let refused = item.report.event.unwrap_err();
        assert_eq!(refused.invalid.code, "missing_field");
        // Kept for the dead letters, without the secret.
        assert_eq!(refused.raw, r#"{"data":3}"#);
    }

    #[test]
    fn a_cause_no_value_can_hold_is_null_not_a_panic() {
        let body = br#"{"data": {"body": {"trace_chain": [
            {"exception": {"class": "E"}, "frames": []},
            {"exception": {"class": "\ud800"}, "frames": []}]}}}"#;
        let o = translated(&item(body).unwrap());
        assert_eq!(o["exception"]["class"], "E");
        assert_eq!(o["custom"]["body"]["trace_chain"], json!([null]));
    }

    #[test]
    fn a_refused_occurrence_is_kept_without_the_token() {
        let long = "E".repeat(2000);
        let body = json!({"access_token": "k", "data": {"body": {"trace": {
            "exception": {"class": long}, "frames": []}}}});
        let item = item(body.to_string().as_bytes()).unwrap();
        let refused = item.report.event.unwrap_err();
        assert_eq!(refused.invalid.code, "field_too_long");
        assert!(!refused.raw.contains("access_token"), "{}", refused.raw);
        assert!(refused.raw.contains(&long));
    }
}
