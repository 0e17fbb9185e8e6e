//! Sentry: envelopes (`/api/{project}/envelope/`) and bare events (`/store/`) as Sentry's
//! SDKs write them, translated into occurrences.
//!
//! An envelope is a header line (JSON: `event_id`, `dsn`, `sent_at`, ...), then items: an item
//! header line (JSON: `type`, optionally `length`), then its payload, `length` bytes when the
//! header gives it, else up to the next newline. `event` items become occurrences; every other
//! item (transactions, sessions, attachments, check-ins, logs, profiles, feedback, client
//! reports, ...) is kept as the SDK wrote it, with its header line, for the `item` lane.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::object::Object;
use super::report::{
    self, take_string, ExceptionValue, FrameFields, Innermost, Occurrence, Raised, Report, Rest,
};
use crate::batch::{Translated, Untranslated};
use crate::event::Invalid;

/// Where a Sentry stack frame keeps inlet's frame fields.
const FRAME: FrameFields = FrameFields {
    filename: &["filename", "abs_path"],
    lineno: "lineno",
    colno: "colno",
    method: "function",
};

/// The item types of Sentry's envelope protocol, as the `type` label of
/// `inlet_sdk_items_total`; any other is counted as `other` (labels come from a closed set).
const ITEM_TYPES: &[&str] = &[
    "event",
    "transaction",
    "attachment",
    "session",
    "sessions",
    "client_report",
    "check_in",
    "span",
    "log",
    "otel_log",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "replay_video",
    "feedback",
    "user_report",
    "statsd",
    "metric_meta",
    "trace_metric",
    "security",
];

/// An envelope, read: its events still as the SDK wrote them, so their size can be checked
/// before any is parsed ([`event`] translates each).
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The envelope header's `event_id`: the id of an event without its own, and the one
    /// answered when the envelope carries no event.
    pub event_id: Option<uuid::Uuid>,
    /// The public key of the envelope header's `dsn`: how an envelope sent through the SDKs'
    /// `tunnel` (to a host of the application's, which forwards it) says whose it is.
    pub dsn_key: Option<String>,
    /// The payloads of its `event` items, in order.
    pub events: Vec<&'a [u8]>,
    /// Its other items, in order.
    pub others: Vec<Other<'a>>,
}

impl<'a> Envelope<'a> {
    /// The type label of every item, in the order their events are produced: the `event`s,
    /// then the others for the `item` lane, then the replays.
    pub fn labels(&self) -> impl Iterator<Item = &'static str> + '_ {
        let events = self.events.iter().map(|_| "event");
        let (replays, items) = self.others.iter().partition::<Vec<_>, _>(|o| is_replay(o));
        let others = items.into_iter().chain(replays);
        events.chain(others.map(|other| item_type(&other.kind)))
    }

    /// Its other items for the `item` lane, in order.
    pub fn items(&self) -> impl Iterator<Item = &Other<'a>> {
        self.others.iter().filter(|other| !is_replay(other))
    }

    /// Its replay items (`replay_event`, `replay_recording`, `replay_video`) for the
    /// `recording` lane, in order.
    pub fn replays(&self) -> impl Iterator<Item = &Other<'a>> {
        self.others.iter().filter(|other| is_replay(other))
    }
}

/// Whether an item is part of a session replay, which travels in the `recording` lane.
fn is_replay(other: &Other<'_>) -> bool {
    matches!(
        &*other.kind,
        "replay_event" | "replay_recording" | "replay_video"
    )
}

/// A replay item as a recording of the replay `replay_id` (the envelope header's `event_id`,
/// which the SDKs set to the replay's id): its payload as the SDK wrote it (a
/// `replay_recording`'s is its `{"segment_id":N}` line, then the segment, zlib-compressed or
/// not), with its type, media type and header line. Refused (a dead letter) when the
/// envelope names no replay.
pub fn replay(
    other: &Other<'_>,
    replay_id: Option<uuid::Uuid>,
) -> Result<Translated, Untranslated> {
    let header = String::from_utf8_lossy(other.header).into_owned();
    let session = replay_id
        .map(|id| id.simple().to_string())
        .unwrap_or_default();
    let payload = other.payload.to_vec();
    match crate::event::recording(&session, &other.kind, &other.media_type, payload, header) {
        Ok(event) => Ok(Translated {
            event,
            trimmed: Vec::new(),
        }),
        Err(invalid) => Err(Untranslated {
            invalid: Invalid::new(
                invalid.code,
                format!(
                    "a replay item needs the envelope header's event_id: {}",
                    invalid.message
                ),
            ),
            raw: String::from_utf8_lossy(other.header).into_owned(),
        }),
    }
}

/// The envelope header: the field inlet reads of it (the rest is skipped, not built).
#[derive(Deserialize)]
struct EnvelopeHeader {
    event_id: Option<Value>,
    dsn: Option<String>,
}

/// The public key of a DSN, `SCHEME://KEY[:SECRET]@HOST[:PORT]/PROJECT`.
pub fn dsn_key(dsn: &str) -> Option<String> {
    let (_, rest) = dsn.split_once("://")?;
    let (user, _) = rest.split_once('@')?;
    let key = user.split(':').next().unwrap_or(user);
    (!key.is_empty()).then(|| key.to_owned())
}

/// An item inlet does not translate, as the SDK wrote it.
#[derive(Debug)]
pub struct Other<'a> {
    /// Its `type`, as written.
    pub kind: Cow<'a, str>,
    /// Its `content_type`, else what items of its type are.
    pub media_type: Cow<'a, str>,
    pub payload: &'a [u8],
    /// Its header line, as written (JSON).
    pub header: &'a [u8],
}

/// An item header: the fields inlet reads of it.
#[derive(Deserialize)]
struct ItemHeader<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    length: Option<usize>,
    #[serde(borrow)]
    content_type: Option<Cow<'a, str>>,
}

/// The media type of an item of `kind` that states none: Sentry's items are JSON but for the
/// attachments and replays (bytes) and statsd metrics (text).
fn default_media_type(kind: &str) -> &'static str {
    match kind {
        "attachment" | "replay_recording" | "replay_video" => "application/octet-stream",
        "statsd" => "text/plain",
        _ => "application/json",
    }
}

/// Reads an envelope; fails, with why, only when it is not one at all (a header that is not
/// JSON, a `length` past the end of the body).
pub fn envelope(body: &[u8]) -> Result<Envelope<'_>, String> {
    let (header, mut rest) = line(body);
    let header: EnvelopeHeader = serde_json::from_slice(header)
        .map_err(|e| format!("the envelope header is not a JSON object: {e}"))?;
    let event_id = header
        .event_id
        .and_then(|id| uuid::Uuid::try_parse(id.as_str()?).ok());
    let mut envelope = Envelope {
        event_id,
        dsn_key: header.dsn.as_deref().and_then(dsn_key),
        events: Vec::new(),
        others: Vec::new(),
    };
    while !rest.is_empty() {
        let (header, after) = line(rest);
        if header.trim_ascii().is_empty() {
            rest = after;
            continue;
        }
        let index = envelope.events.len() + envelope.others.len();
        let head: ItemHeader = serde_json::from_slice(header)
            .map_err(|e| format!("item {index}: its header is not valid: {e}"))?;
        let (payload, after) = match head.length {
            Some(length) if length > after.len() => {
                return Err(format!(
                    "item {index}: its length {length} is past the end of the envelope"
                ))
            }
            Some(length) => (&after[..length], skip_newline(&after[length..])),
            None => line(after),
        };
        if head.kind == "event" {
            envelope.events.push(payload);
        } else {
            let media_type = (head.content_type)
                .unwrap_or_else(|| Cow::Borrowed(default_media_type(&head.kind)));
            envelope.others.push(Other {
                kind: head.kind,
                media_type,
                payload,
                header,
            });
        }
        rest = after;
    }
    Ok(envelope)
}

/// An item inlet does not translate, for the `item` lane: its type, media type, payload and
/// header line as the SDK wrote them; refused (a dead letter) when its type is no name.
pub fn item(other: &Other<'_>) -> Result<Translated, Untranslated> {
    let header = String::from_utf8_lossy(other.header).into_owned();
    super::verbatim(&other.kind, &other.media_type, other.payload, header)
}

/// A browser's security report (a CSP violation, ...), as the one `security` item of its
/// request: the body as sent, with the request's media type.
pub fn security_report(media_type: &str, body: &[u8]) -> Result<Translated, Untranslated> {
    super::verbatim("security", media_type, body, String::new())
}

/// The label of an item type.
fn item_type(kind: &str) -> &'static str {
    ITEM_TYPES
        .iter()
        .find(|known| **known == kind)
        .copied()
        .unwrap_or("other")
}

/// Splits `text` at its first newline: the line, and what follows it.
fn line(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|b| *b == b'\n') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &[]),
    }
}

fn skip_newline(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"\n").unwrap_or(text)
}

/// One Sentry event (an envelope's `event` item, or `/store/`'s body) as an occurrence;
/// `fallback_id` is the envelope header's `event_id`, for an event without its own.
pub fn event(raw: &[u8], fallback_id: Option<uuid::Uuid>) -> Report {
    // The exception's `values` are read in the same pass as the event's members.
    let read = std::str::from_utf8(raw)
        .map_err(|e| Invalid::new("malformed_json", e.to_string()))
        .and_then(|text| {
            Object::parse_apart::<Values>(text, "exception")
                .map_err(|e| report::not_a_report(raw, e))
        });
    let (members, values) = match read {
        Ok(read) => read,
        Err(invalid) => return Report::untranslated(invalid, raw, &[]),
    };
    let mut rest = Rest::from(members);
    let raised = exception(values, &mut rest);
    let given = take_string(&mut rest, &["event_id"]);
    let id = match (given, fallback_id) {
        (None, Some(id)) => id,
        (given, _) => report::event_id(given, &mut rest, "event_id"),
    };
    let mut occurrence = Occurrence::new(level(&mut rest));
    if let Some(raised) = raised {
        let causes = occurrence.raised(raised, &FRAME, Innermost::Last);
        if !causes.is_empty() {
            rest.insert("exception", json!({ "values": report::values_of(&causes) }));
        }
    }
    occurrence.set("message", message(&mut rest));
    occurrence.set("environment", take_string(&mut rest, &["environment"]));
    occurrence.set("platform", take_string(&mut rest, &["platform"]));
    occurrence.set("code_version", take_string(&mut rest, &["release"]));
    occurrence.set("fingerprint", fingerprint(&mut rest));
    occurrence.timestamp(timestamp(&mut rest));
    occurrence.finish(id, rest, raw, &[])
}

/// inlet's level of Sentry's (`fatal` is `critical`); an event without one, or with one
/// inlet does not know, is an `error` (the latter's own level stays in `custom`).
fn level(rest: &mut Rest<'_>) -> &'static str {
    let level = match rest.get("level").and_then(|l| l.as_str()) {
        None => return "error",
        Some("fatal") => "critical",
        Some("error") => "error",
        Some("warning" | "warn") => "warning",
        Some("info" | "log") => "info",
        Some("debug") => "debug",
        Some(_) => return "error",
    };
    rest.remove("level");
    level
}

/// `exception.values` as Sentry writes it.
#[derive(Deserialize)]
struct Values<'a> {
    #[serde(borrow)]
    values: Vec<&'a RawValue>,
}

/// The exception raised, from the event's `exception.values` when it has the shape Sentry
/// writes (the raised one is the last of its `values`); else they go back, for `custom`.
fn exception<'a>(values: Option<Values<'a>>, rest: &mut Rest<'_>) -> Option<Raised<'a>> {
    let Values { mut values } = values?;
    let last = values
        .last()
        .and_then(|last| serde_json::from_str::<ExceptionValue>(last.get()).ok());
    let Some(last) = last else {
        rest.insert("exception", json!({ "values": report::values_of(&values) }));
        return None;
    };
    values.pop();
    Some(Raised {
        class: report::text(last.class).unwrap_or_else(|| "Error".into()),
        message: report::text(last.value),
        frames: last.stacktrace.map(|s| s.frames).unwrap_or_default(),
        causes: values,
    })
}

/// `message` (a string, or an object with `formatted` or `message`), else `logentry`'s.
fn message(rest: &mut Rest<'_>) -> Option<String> {
    take_string(rest, &["message"])
        .or_else(|| take_string(rest, &["message", "formatted"]))
        .or_else(|| take_string(rest, &["message", "message"]))
        .or_else(|| take_string(rest, &["logentry", "formatted"]))
        .or_else(|| take_string(rest, &["logentry", "message"]))
}

/// `fingerprint`'s strings joined by `,` (inlet's fingerprint is one string).
fn fingerprint(rest: &mut Rest<'_>) -> Option<String> {
    let parts = rest.get("fingerprint")?.as_array()?;
    let joined = parts
        .iter()
        .map(|p| p.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?
        .join(",");
    rest.remove("fingerprint");
    Some(joined)
}

/// `timestamp`: seconds since the epoch, or RFC 3339.
fn timestamp(rest: &mut Rest<'_>) -> Option<i64> {
    let value = rest.get("timestamp")?;
    let ms = match value {
        Value::String(text) => report::rfc3339_to_ms(text),
        number => report::seconds_to_ms(number),
    }?;
    rest.remove("timestamp");
    Some(ms)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EXCEPTION: &[u8] =
        include_bytes!("../../tests/sdk/payloads/sentry/python-exception.envelope");
    const MESSAGE: &[u8] =
        include_bytes!("../../tests/sdk/payloads/sentry/python-message.envelope");

    fn first_event(envelope: &Envelope) -> Report {
        event(envelope.events[0], envelope.event_id)
    }

    fn translated(report: &Report) -> Value {
        report::native_json(report)
    }

    #[test]
    fn sentry_python_exception_maps_its_fields() {
        let envelope = envelope(EXCEPTION).unwrap();
        assert_eq!(envelope.labels().collect::<Vec<_>>(), ["event"]);
        let report = &first_event(&envelope);
        assert_eq!(
            report.id.simple().to_string(),
            "7bc7b823935a4609849b520f1d57f41c"
        );
        let o = translated(report);
        assert_eq!(o["level"], "error");
        assert_eq!(o["uuid"], "7bc7b823-935a-4609-849b-520f1d57f41c");
        assert_eq!(o["exception"]["class"], "ValueError");
        assert!(o["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("not a number R1"));
        let frames = o["exception"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames[3],
            json!({"filename": "errors.py", "lineno": 22, "method": "parse"})
        );
        assert_eq!(o["environment"], "staging");
        assert_eq!(o["platform"], "python");
        assert_eq!(o["code_version"], "shop@1.4.2");
        assert_eq!(o["timestamp"], 1_795_984_221_375_i64);
        // The rest of the event, and nothing that was mapped.
        assert_eq!(o["custom"]["sdk"]["name"], "sentry.python");
        for mapped in ["exception", "event_id", "level", "release", "timestamp"] {
            assert!(o["custom"].get(mapped).is_none(), "{mapped} repeated");
        }
    }

    #[test]
    fn the_recorded_exception_translates_to_its_native_twin() {
        let envelope = envelope(EXCEPTION).unwrap();
        let twin = "tests/sdk/payloads/sentry/python-exception.occurrence.json";
        report::assert_twin(&first_event(&envelope), twin);
    }

    #[test]
    fn sentry_python_message_maps_its_level_and_text() {
        let envelope = envelope(MESSAGE).unwrap();
        let o = translated(&first_event(&envelope));
        assert_eq!(o["level"], "warning");
        assert_eq!(o["message"], "warning message R1");
        assert!(o.get("exception").is_none());
    }

    #[test]
    fn items_with_and_without_length_and_other_types() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n\
            {\"type\":\"session\"}\n{\"sid\":\"x\",\"status\":\"ok\"}\n\
            {\"type\":\"attachment\",\"length\":7,\"filename\":\"a.txt\"}\nab\ncd\n\n\
            {\"type\":\"event\"}\n{\"message\":\"hi\",\"level\":\"fatal\",\"fingerprint\":[\"a\",\"b\"]}\n\
            {\"type\":\"client_report\",\"length\":2}\n{}";
        let envelope = envelope(body).unwrap();
        assert_eq!(
            envelope.labels().collect::<Vec<_>>(),
            ["event", "session", "attachment", "client_report"]
        );
        let o = translated(&first_event(&envelope));
        assert_eq!(o["level"], "critical");
        assert_eq!(o["fingerprint"], "a,b");
        // No id of its own: the envelope's.
        assert_eq!(o["uuid"], "9ec79c33-ec99-42ab-8353-589fcb2e04dc");
    }

    #[test]
    fn broken_envelopes_say_why() {
        assert!(envelope(b"not json\n").unwrap_err().contains("header"));
        let err = envelope(b"{}\n{\"type\":\"event\",\"length\":99}\n{}").unwrap_err();
        assert!(err.contains("past the end"), "{err}");
        assert!(envelope(b"{}\n{\"length\":1}\nx").is_err());
        // An event item that is not JSON is an untranslated report, not a broken envelope.
        let envelope = envelope(b"{}\n{\"type\":\"event\"}\nnot json").unwrap();
        let report = first_event(&envelope);
        let refused = report.event.as_ref().unwrap_err();
        assert_eq!(refused.invalid.code, "malformed_json");
        assert_eq!(refused.raw, "not json");
    }

    #[test]
    fn causes_stay_in_custom_and_odd_levels_are_errors() {
        let event = json!({
            "level": "verbose",
            "logentry": {"formatted": "formatted text"},
            "exception": {"values": [
                {"type": "KeyError", "value": "cause"},
                {"type": "RuntimeError", "value": "raised", "stacktrace": {"frames": [
                    {"abs_path": "/srv/app.js", "lineno": 3, "colno": 9, "function": "f"}
                ]}}
            ]},
            "timestamp": 1_700_000_000.25,
        });
        let o = translated(&event_report(&event));
        assert_eq!(o["level"], "error");
        assert_eq!(o["custom"]["level"], "verbose");
        assert_eq!(o["message"], "formatted text");
        assert_eq!(o["exception"]["class"], "RuntimeError");
        assert_eq!(
            o["exception"]["frames"][0],
            json!({"filename": "/srv/app.js", "lineno": 3, "colno": 9, "method": "f"})
        );
        assert_eq!(o["custom"]["exception"]["values"][0]["type"], "KeyError");
        assert_eq!(o["timestamp"], 1_700_000_000_250_i64);
        // A fresh id when the event has none.
        assert_eq!(o["uuid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn a_cause_no_value_can_hold_is_null_not_a_panic() {
        let raw = br#"{"exception": {"values": [{"type": "\ud800"}, {"type": "E"}]}}"#;
        let o = translated(&event(raw, None));
        assert_eq!(o["exception"]["class"], "E");
        assert_eq!(o["custom"]["exception"]["values"], json!([null]));
        let raw = br#"{"message": "m", "exception": {"values": [{"type": "\udc00"}, 3]}}"#;
        let o = translated(&event(raw, None));
        assert_eq!(o["custom"]["exception"]["values"], json!([null, 3]));
    }

    fn event_report(value: &Value) -> Report {
        event(value.to_string().as_bytes(), None)
    }
}
