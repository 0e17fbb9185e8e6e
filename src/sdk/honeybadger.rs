//! Honeybadger: a notice (`POST /v1/notices`, `/v1/notices/js`) as its SDKs write it,
//! translated into an occurrence at level `error` (Honeybadger notices have no level).

use serde::de::IgnoredAny;

use super::report::{self, take_string, Frame, FrameFields, Innermost, Occurrence, Report, Rest};
use super::{verbatim, Translated, Untranslated};
use crate::event::Invalid;

/// Where a Honeybadger backtrace line keeps inlet's frame fields.
const FRAME: FrameFields = FrameFields {
    filename: &["file"],
    lineno: "number",
    colno: "column",
    method: "method",
};

/// A notice as an occurrence. Its event id is the notice's `error.token` (the id the SDK
/// returns to the application), else one inlet makes.
pub fn notice(body: &[u8]) -> Report {
    let mut members = match report::members(body) {
        Ok(members) => members,
        Err(invalid) => return Report::untranslated(invalid, body, &[]),
    };
    let (mut rest, backtrace) = match members.take_object("error") {
        Some(mut error) => {
            // The backtrace is read as frames only for an exception (a class), else it stays.
            let has_class = error.get("class").is_some_and(|c| c.get().starts_with('"'));
            let backtrace = has_class.then(|| error.take_as("backtrace"));
            let mut rest = Rest::from(members);
            rest.insert("error", report::values(&error).into());
            (rest, backtrace.flatten())
        }
        None => (Rest::from(members), None),
    };
    let given = take_string(&mut rest, &["error", "token"]);
    let id = report::event_id(given, &mut rest, "token");
    let mut occurrence = Occurrence::new("error");
    let message = take_string(&mut rest, &["error", "message"]);
    match take_string(&mut rest, &["error", "class"]) {
        Some(class) => {
            let frames: Vec<Frame> = backtrace.unwrap_or_default();
            occurrence.exception(class, message, frames, &FRAME, Innermost::First);
        }
        None => occurrence.set("message", message),
    }
    occurrence.set(
        "environment",
        take_string(&mut rest, &["server", "environment_name"]),
    );
    occurrence.set(
        "code_version",
        take_string(&mut rest, &["server", "revision"]),
    );
    occurrence.set(
        "fingerprint",
        take_string(&mut rest, &["error", "fingerprint"]),
    );
    occurrence.finish(id, rest, body, &[])
}

/// The lines of an Insights events body (`POST /v1/events`, NDJSON): one event each, blank
/// lines skipped.
pub fn event_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
}

/// One line of an events body as an `event` item, as written; refused (a dead letter) when it
/// is no JSON object.
pub fn event(line: &[u8]) -> Result<Translated, Untranslated> {
    match line.starts_with(b"{") && serde_json::from_slice::<IgnoredAny>(line).is_ok() {
        true => verbatim("event", "application/json", line, String::new()),
        false => Err(Untranslated {
            invalid: Invalid::new(
                "not_an_object",
                "each line of an events body is a JSON object",
            ),
            raw: String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned(),
        }),
    }
}

/// A check-in (`/v1/check_in/{id}`, `/v1/check_in/{key}/{slug}`, by `GET`, `HEAD` or `POST`):
/// one `check_in` item whose headers say which (`{"method", "id"}` or `{"method", "slug"}`)
/// and whose payload is the body a `POST` carries (`{"check_in": {"status", ...}}` from
/// `hb run`), empty otherwise.
pub fn check_in(headers: String, body: &[u8]) -> Result<Translated, Untranslated> {
    let media_type = if body.is_empty() {
        ""
    } else {
        "application/json"
    };
    verbatim("check_in", media_type, body, headers)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const EXCEPTION: &[u8] =
        include_bytes!("../../tests/sdk/payloads/honeybadger/python-exception.json");

    fn translated(report: &Report) -> Value {
        report::native_json(report)
    }

    #[test]
    fn honeybadger_python_notice_maps_its_fields() {
        let report = notice(EXCEPTION);
        assert_eq!(
            report.id.to_string(),
            "875b4f02-1f8f-4ad6-821c-beef5b728bcc"
        );
        let o = translated(&report);
        assert_eq!(o["level"], "error");
        assert_eq!(o["exception"]["class"], "ValueError");
        let frames = o["exception"]["frames"].as_array().unwrap();
        // Innermost first, as sent.
        assert_eq!(
            frames[0],
            json!({"filename": "[PROJECT_ROOT]/tests/sdk/errors.py", "lineno": 22, "method": "parse"})
        );
        assert_eq!(o["environment"], "staging");
        // honeybadger-python sends no `server.revision`.
        assert!(o.get("code_version").is_none());
        assert_eq!(o["fingerprint"], "fp-R1");
        assert_eq!(o["custom"]["notifier"]["name"], "Honeybadger for Python");
        assert!(o["custom"]["error"].get("backtrace").is_none());
    }

    #[test]
    fn a_notice_without_a_class_is_a_message() {
        let body = json!({
            "error": {"message": "m", "backtrace": [{"file": "x.js", "number": "12", "column": "3"}]},
            "server": {"revision": "abc123", "environment_name": "production"},
        });
        let o = translated(&notice(body.to_string().as_bytes()));
        assert_eq!(o["code_version"], "abc123");
        assert!(o["custom"].get("server").is_none());
        assert_eq!(o["message"], "m");
        assert!(o.get("exception").is_none());
        assert_eq!(o["custom"]["error"]["backtrace"][0]["number"], "12");
        assert_eq!(
            notice(b"[]").event.unwrap_err().invalid.code,
            "not_an_object"
        );
    }
}
