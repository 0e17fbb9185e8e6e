//! Error occurrences: `POST /v1/occurrences`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::fields::{no_unknown, string, type_name, Field, Fields, Read};
use super::{Invalid, Validated};
use crate::proto;

/// Largest `custom`, serialized.
pub const MAX_CUSTOM_BYTES: usize = 64 * 1024;
/// Largest `message` (top-level or the exception's).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most stack frames in one exception.
pub const MAX_FRAMES: usize = 1024;

/// An occurrence's top-level fields, in the order they are checked.
pub(super) const FIELDS: [(&str, Read); 11] = [
    ("level", Read::Scalar),
    ("message", Read::Scalar),
    ("exception", Read::Tree),
    ("uuid", Read::Scalar),
    ("timestamp", Read::Scalar),
    ("environment", Read::Scalar),
    ("platform", Read::Scalar),
    ("language", Read::Scalar),
    ("code_version", Read::Scalar),
    ("fingerprint", Read::Scalar),
    ("custom", Read::Text),
];

/// Reads one occurrence straight from its JSON text and validates it: top-level strings are
/// borrowed from the body, `custom` is carried as the client wrote it, and only `exception`
/// is parsed into a tree.
pub fn parse(raw: &str) -> Result<Validated, Invalid> {
    convert(Fields::read(raw, &FIELDS)?)
}

/// Applies API.md's rules, field by field in [`FIELDS`] order, and converts.
pub(super) fn convert(fields: Fields<'_, 11>) -> Result<Validated, Invalid> {
    let Fields { known, unknown } = fields;
    #[rustfmt::skip]
    let [
        level, message, exception, uuid, timestamp, environment, platform, language,
        code_version, fingerprint, custom,
    ] = known;
    let level = to_level(level)?;
    let message = message.string("message", 0, MAX_MESSAGE_BYTES)?;
    let exception = match exception {
        Field::Absent => None,
        Field::Tree(Value::Object(obj)) => Some(to_exception(obj)?),
        Field::Exception(exception) => Some(within_limits(exception)?),
        other => {
            return Err(Invalid::bad(
                "exception",
                format_args!("must be an object, not {}", other.type_name()),
            ))
        }
    };
    if message.is_none() && exception.is_none() {
        return Err(Invalid::missing("message` or `exception"));
    }
    let client_id = match uuid.string("uuid", 1, 64)? {
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
        client_ts_ms: timestamp.timestamp_ms("timestamp")?,
        environment: environment
            .string("environment", 0, 256)?
            .unwrap_or_default(),
        platform: platform.string("platform", 0, 256)?.unwrap_or_default(),
        language: language.string("language", 0, 256)?.unwrap_or_default(),
        code_version: code_version
            .string("code_version", 0, 256)?
            .unwrap_or_default(),
        fingerprint: fingerprint
            .string("fingerprint", 0, 1024)?
            .unwrap_or_default(),
        custom_json: custom.object_json("custom", MAX_CUSTOM_BYTES)?,
    };
    no_unknown(unknown)?;
    Ok(Validated {
        client_id,
        body: proto::envelope::Event::Occurrence(occurrence),
    })
}

fn to_level(field: Field<'_>) -> Result<proto::Level, Invalid> {
    let text = field.required_string("level", 1, 16)?;
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

fn to_exception(mut obj: Map<String, Value>) -> Result<proto::Exception, Invalid> {
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
                return Err(too_many_frames(items.len()));
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

/// An exception built typed (by an SDK endpoint) held to [`to_exception`]'s limits, with the
/// same answers.
fn within_limits(exception: proto::Exception) -> Result<proto::Exception, Invalid> {
    let text = |s: String| Field::Str(Cow::Owned(s));
    let class = text(exception.class)
        .required_string("class", 1, 1024)
        .map_err(|e| nested("exception", e))?;
    let message = text(exception.message)
        .string("message", 0, MAX_MESSAGE_BYTES)
        .map_err(|e| nested("exception", e))?
        .unwrap_or_default();
    if exception.frames.len() > MAX_FRAMES {
        return Err(too_many_frames(exception.frames.len()));
    }
    let frames = exception
        .frames
        .into_iter()
        .enumerate()
        .map(|(i, frame)| {
            let path = format!("exception.frames[{i}]");
            Ok(proto::Frame {
                filename: text(frame.filename)
                    .string("filename", 0, 4096)
                    .map_err(|e| nested(&path, e))?
                    .unwrap_or_default(),
                method: text(frame.method)
                    .string("method", 0, 1024)
                    .map_err(|e| nested(&path, e))?
                    .unwrap_or_default(),
                ..frame
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok(proto::Exception {
        class,
        message,
        frames,
    })
}

fn too_many_frames(count: usize) -> Invalid {
    Invalid::bad(
        "exception.frames",
        format_args!("has {count} frames, over the limit of {MAX_FRAMES}"),
    )
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
    use crate::event::reference;
    use crate::lane::Lane;
    use serde_json::json;

    /// Validates `v` as a request body would bring it.
    fn check(v: Value) -> Result<Validated, Invalid> {
        parse(&v.to_string())
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
        let o = v.into_occurrence();
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
    fn text_and_map_give_the_same_answers_and_custom_is_carried_as_sent() {
        let raw = r#"{"level": "error", "message": "m", "custom": {"z": 1, "a": [1, 2]},
            "exception": {"class": "E", "frames": [{"filename": "f", "lineno": 3, "x": 1}]}}"#;
        let direct = parse(raw).unwrap();
        let proto::envelope::Event::Occurrence(o) = &direct.body else {
            panic!("an occurrence")
        };
        assert_eq!(o.custom_json, r#"{"z": 1, "a": [1, 2]}"#);
        assert_eq!(o.exception.as_ref().unwrap().frames[0].lineno, 3);
        let cases = [
            r#"{"level":"error","message":"m","level":"info"}"#,
            r#"{"level":"error","exception":"E"}"#,
            r#"{"level":"error","exception":{"class":"E","frames":{}}}"#,
            r#"{"level":"error","exception":null}"#,
            r#"{"level":"error","message":"m","custom":[]}"#,
            r#"{"level":"error","message":"m","custom":{"a":1,"a":2}}"#,
            r#"{"level":"error","message":"m","extra":1}"#,
            r#"{"level":"loud","message":"m"}"#,
            r#"{"level":"error","message":"m","uuid":"nope"}"#,
            r#"{"level":"error","message":"m","timestamp":"2023-11-14T22:13:20Z"}"#,
            r#"{"level":"error","exception":{"class":"E","class":"F"}}"#,
        ];
        for raw in cases {
            let direct = parse(raw);
            let via_map = reference::parse(Lane::OCCURRENCE, raw);
            match (&direct, &via_map) {
                (Ok(a), Ok(b)) => {
                    let (
                        proto::envelope::Event::Occurrence(a),
                        proto::envelope::Event::Occurrence(b),
                    ) = (&a.body, &b.body)
                    else {
                        panic!("occurrences")
                    };
                    let json = |t: &str| serde_json::from_str::<Option<Value>>(t).ok();
                    assert_eq!(json(&a.custom_json), json(&b.custom_json), "{raw}");
                    let mut a = a.clone();
                    a.custom_json.clone_from(&b.custom_json);
                    assert_eq!(&a, b, "{raw}");
                }
                (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{raw}: {a:?} vs {b:?}"),
                _ => panic!("{raw}: {direct:?} vs {via_map:?}"),
            }
        }
    }

    #[test]
    fn a_given_exception_has_the_answers_of_one_read_from_json() {
        let frame = |filename: String, method: String| proto::Frame {
            filename,
            lineno: 3,
            colno: 0,
            method,
        };
        let cases = [
            (
                "E".to_owned(),
                String::new(),
                vec![frame("f".into(), "m".into())],
            ),
            ("E".repeat(1025), String::new(), vec![]),
            (String::new(), "m".into(), vec![]),
            ("E".into(), "m".repeat(MAX_MESSAGE_BYTES + 1), vec![]),
            (
                "E".into(),
                String::new(),
                vec![frame("f".repeat(4097), String::new())],
            ),
            (
                "E".into(),
                String::new(),
                vec![frame(String::new(), "m".repeat(1025))],
            ),
            (
                "E".into(),
                String::new(),
                vec![frame(String::new(), String::new()); MAX_FRAMES + 1],
            ),
        ];
        for (class, message, frames) in cases {
            let exception = proto::Exception {
                class,
                message,
                frames,
            };
            let json = json!({"level": "error", "exception": {
                "class": exception.class, "message": exception.message,
                "frames": exception.frames.iter().map(|f| json!({
                    "filename": f.filename, "lineno": f.lineno, "colno": f.colno, "method": f.method,
                })).collect::<Vec<_>>(),
            }});
            let given = crate::event::from_fields(
                Lane::OCCURRENCE,
                [
                    ("level", crate::event::Given::Str("error".into())),
                    ("exception", crate::event::Given::Exception(exception)),
                ],
            );
            assert_eq!(given, check(json), "{given:?}");
        }
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
