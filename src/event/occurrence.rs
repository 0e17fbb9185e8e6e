//! Error occurrences: `POST /v1/occurrences`.

use serde_json::{Map, Value};

use super::{
    no_other_fields, object_json, required_string, string, timestamp_ms, type_name, Invalid,
    Validated,
};
use crate::proto;

/// Largest `custom`, serialized.
pub const MAX_CUSTOM_BYTES: usize = 64 * 1024;
/// Largest `message` (top-level or the exception's).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most stack frames in one exception.
pub const MAX_FRAMES: usize = 1024;

/// Validates an occurrence's fields (see API.md) and converts it.
pub fn validate(mut map: Map<String, Value>) -> Result<Validated, Invalid> {
    let level = level(&mut map)?;
    let message = string(&mut map, "message", 0, MAX_MESSAGE_BYTES)?;
    let exception = match map.remove("exception") {
        None | Some(Value::Null) => None,
        Some(Value::Object(obj)) => Some(exception(obj)?),
        Some(other) => {
            return Err(Invalid::bad(
                "exception",
                format_args!("must be an object, not {}", type_name(&other)),
            ))
        }
    };
    if message.is_none() && exception.is_none() {
        return Err(Invalid::missing("message` or `exception"));
    }
    let client_id = match string(&mut map, "uuid", 1, 64)? {
        None => None,
        Some(text) => Some(
            uuid::Uuid::try_parse(&text)
                .map_err(|_| Invalid::bad("uuid", "must be a UUID"))?
                .hyphenated()
                .to_string(),
        ),
    };
    let occurrence = proto::Occurrence {
        level: level as i32,
        message: message.unwrap_or_default(),
        exception,
        client_ts_ms: timestamp_ms(&mut map, "timestamp")?,
        environment: string(&mut map, "environment", 0, 256)?.unwrap_or_default(),
        platform: string(&mut map, "platform", 0, 256)?.unwrap_or_default(),
        language: string(&mut map, "language", 0, 256)?.unwrap_or_default(),
        code_version: string(&mut map, "code_version", 0, 256)?.unwrap_or_default(),
        fingerprint: string(&mut map, "fingerprint", 0, 1024)?.unwrap_or_default(),
        custom_json: object_json(&mut map, "custom", MAX_CUSTOM_BYTES)?,
    };
    no_other_fields(&map)?;
    Ok(Validated {
        client_id,
        body: proto::envelope::Event::Occurrence(occurrence),
    })
}

fn level(map: &mut Map<String, Value>) -> Result<proto::Level, Invalid> {
    let text = required_string(map, "level", 1, 16)?;
    Ok(match text.as_str() {
        "critical" => proto::Level::Critical,
        "error" => proto::Level::Error,
        "warning" => proto::Level::Warning,
        "info" => proto::Level::Info,
        "debug" => proto::Level::Debug,
        _ => {
            return Err(Invalid::bad(
                "level",
                "must be one of critical, error, warning, info, debug",
            ))
        }
    })
}

fn exception(mut obj: Map<String, Value>) -> Result<proto::Exception, Invalid> {
    let class = string(&mut obj, "class", 1, 1024)
        .map_err(|e| nested("exception", e))?
        .ok_or_else(|| Invalid::missing("exception.class"))?;
    let message = string(&mut obj, "message", 0, MAX_MESSAGE_BYTES)
        .map_err(|e| nested("exception", e))?
        .unwrap_or_default();
    let frames = match obj.remove("frames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_FRAMES {
                return Err(Invalid::bad(
                    "exception.frames",
                    format_args!("has {} frames, over the limit of {MAX_FRAMES}", items.len()),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| frame(i, item))
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(Invalid::bad(
                "exception.frames",
                format_args!("must be an array, not {}", type_name(&other)),
            ))
        }
    };
    Ok(proto::Exception {
        class,
        message,
        frames,
    })
}

fn frame(i: usize, item: Value) -> Result<proto::Frame, Invalid> {
    let path = format!("exception.frames[{i}]");
    let Value::Object(mut obj) = item else {
        return Err(Invalid::bad(&path, "must be an object"));
    };
    let number = |obj: &mut Map<String, Value>, field: &str| -> Result<u32, Invalid> {
        match obj.remove(field) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => {
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Invalid::bad(&format!("{path}.{field}"), "must be a non-negative integer")
                    })
            }
            Some(_) => Err(Invalid::bad(
                &format!("{path}.{field}"),
                "must be a non-negative integer",
            )),
        }
    };
    Ok(proto::Frame {
        lineno: number(&mut obj, "lineno")?,
        colno: number(&mut obj, "colno")?,
        filename: string(&mut obj, "filename", 0, 4096)
            .map_err(|e| nested(&path, e))?
            .unwrap_or_default(),
        method: string(&mut obj, "method", 0, 1024)
            .map_err(|e| nested(&path, e))?
            .unwrap_or_default(),
    })
}

/// Qualifies a nested field's error with its parent: `class` becomes `exception.class`.
fn nested(parent: &str, e: Invalid) -> Invalid {
    Invalid {
        code: e.code,
        message: e.message.replacen('`', &format!("`{parent}."), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Validated, Invalid> {
        validate(v.as_object().unwrap().clone())
    }

    fn occurrence(v: Validated) -> proto::Occurrence {
        match v.body {
            proto::envelope::Event::Occurrence(o) => o,
            other => panic!("not an occurrence: {other:?}"),
        }
    }

    #[test]
    fn full_occurrence_converts() {
        let v = check(json!({
            "level": "error",
            "message": "boom",
            "exception": {"class": "TypeError", "message": "x is undefined",
                "frames": [{"filename": "app.js", "lineno": 10, "colno": 4, "method": "run", "code": "ignored"}]},
            "uuid": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "timestamp": "2024-01-01T00:00:00Z",
            "environment": "production", "platform": "browser", "language": "javascript",
            "code_version": "abc123", "fingerprint": "fp", "custom": {"a": [1, 2]}
        }))
        .unwrap();
        assert_eq!(
            v.client_id.as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        let o = occurrence(v);
        assert_eq!(o.level, proto::Level::Error as i32);
        assert_eq!(o.client_ts_ms, 1_704_067_200_000);
        let e = o.exception.unwrap();
        assert_eq!(e.class, "TypeError");
        assert_eq!(e.frames[0].lineno, 10);
        assert_eq!(e.frames[0].method, "run");
        assert_eq!(o.custom_json, r#"{"a":[1,2]}"#);
    }

    #[test]
    fn message_or_exception_is_enough() {
        assert!(check(json!({"level": "info", "message": "m"})).is_ok());
        assert!(check(json!({"level": "info", "exception": {"class": "E"}})).is_ok());
        let err = check(json!({"level": "info"})).unwrap_err();
        assert_eq!(err.code, "missing_field");
        assert!(err.message.contains("message"), "{}", err.message);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"message": "m"}), "missing_field", "level"),
            (
                json!({"level": "fatal", "message": "m"}),
                "invalid_field",
                "level",
            ),
            (
                json!({"level": "error", "exception": {}}),
                "missing_field",
                "exception.class",
            ),
            (
                json!({"level": "error", "exception": {"class": 1}}),
                "invalid_field",
                "exception.class",
            ),
            (
                json!({"level": "error", "exception": {"class": "E", "frames": {}}}),
                "invalid_field",
                "exception.frames",
            ),
            (
                json!({"level": "error", "exception": {"class": "E", "frames": [{"lineno": -1}]}}),
                "invalid_field",
                "exception.frames[0].lineno",
            ),
            (
                json!({"level": "error", "message": "m", "uuid": "nope"}),
                "invalid_field",
                "uuid",
            ),
            (
                json!({"level": "error", "message": "m", "custom": 3}),
                "invalid_field",
                "custom",
            ),
            (
                json!({"level": "error", "message": "m", "server": {}}),
                "unknown_field",
                "server",
            ),
        ];
        for (input, code, field) in cases {
            let err = check(input.clone()).unwrap_err();
            assert_eq!(err.code, code, "{input}");
            assert!(
                err.message.contains(&format!("`{field}`")),
                "{input}: {}",
                err.message
            );
        }
    }
}
