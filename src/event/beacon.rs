//! Analytics beacons: `POST /v1/beacons` and `GET /v1/pixel.gif`.

use super::fields::{no_unknown, Fields, Read};
use super::{query, Invalid, Validated};
use crate::proto;

/// Largest `props`, serialized.
pub const MAX_PROPS_BYTES: usize = 64 * 1024;

/// A beacon's top-level fields, in the order they are checked.
pub(super) const FIELDS: [(&str, Read); 9] = [
    ("session_id", Read::Scalar),
    ("event", Read::Scalar),
    ("ts", Read::Scalar),
    ("url", Read::Scalar),
    ("referrer", Read::Scalar),
    ("title", Read::Scalar),
    ("user_id", Read::Scalar),
    ("props", Read::Text),
    ("id", Read::Scalar),
];

/// Reads one beacon straight from its JSON text and validates it: strings are borrowed from
/// the body (copied once, into the protobuf), and `props` is carried as the client wrote it.
pub fn parse(raw: &str) -> Result<Validated, Invalid> {
    convert(Fields::read(raw, &FIELDS)?)
}

/// Reads one beacon from the pixel's query string (`GET /v1/pixel.gif`, without the `?`) and
/// validates it: the parameters are its fields, `ts` a number when it is all digits, `props`
/// a JSON string; `token` and `_` (the cache buster) are not fields. Same answers, and the
/// same bytes in Kafka, as the map the pixel built before (`query::fields` says how).
pub fn from_query(query: &str) -> Result<Validated, Invalid> {
    convert(query::fields(query, &FIELDS)?)
}

/// Applies API.md's rules, field by field in [`FIELDS`] order, and converts.
pub(super) fn convert(fields: Fields<'_, 9>) -> Result<Validated, Invalid> {
    let Fields {
        known: [session_id, event, ts, url, referrer, title, user_id, props, id],
        unknown,
    } = fields;
    let beacon = proto::Beacon {
        session_id: session_id.required_string("session_id", 1, 128)?,
        event: event.required_string("event", 1, 64)?,
        client_ts_ms: ts.timestamp_ms("ts")?,
        url: url.string("url", 0, 4096)?.unwrap_or_default(),
        referrer: referrer.string("referrer", 0, 4096)?.unwrap_or_default(),
        title: title.string("title", 0, 1024)?.unwrap_or_default(),
        user_id: user_id.string("user_id", 0, 256)?.unwrap_or_default(),
        props_json: props.object_json("props", MAX_PROPS_BYTES)?,
    };
    let client_id = id.string("id", 1, 64)?;
    no_unknown(unknown)?;
    Ok(Validated {
        client_id,
        body: proto::envelope::Event::Beacon(beacon),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::reference;
    use crate::lane::Lane;
    use serde_json::{json, Value};

    /// Validates `v` as a request body would bring it.
    fn check(v: Value) -> Result<Validated, Invalid> {
        parse(&v.to_string())
    }

    #[test]
    fn full_beacon_converts() {
        let v = check(json!({
            "session_id": "s1", "event": "page_view", "ts": 1_700_000_000_000_i64,
            "url": "https://a.example/x", "referrer": "https://b.example/", "title": "T",
            "user_id": "u1", "props": {"plan": "pro", "n": 3}, "id": "evt-1"
        }))
        .unwrap();
        assert_eq!(v.client_id.as_deref(), Some("evt-1"));
        let b = v.into_beacon();
        assert_eq!(b.session_id, "s1");
        assert_eq!(b.event, "page_view");
        assert_eq!(b.client_ts_ms, 1_700_000_000_000);
        assert_eq!(b.props_json, r#"{"n":3,"plan":"pro"}"#);
    }

    #[test]
    fn minimal_beacon_converts() {
        let v = check(json!({"session_id": "s", "event": "e"})).unwrap();
        assert_eq!(v.client_id, None);
        assert_eq!(v.into_beacon().props_json, "");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"event": "e"}), "missing_field", "session_id"),
            (
                json!({"session_id": "", "event": "e"}),
                "invalid_field",
                "session_id",
            ),
            (
                json!({"session_id": "x".repeat(129), "event": "e"}),
                "field_too_long",
                "session_id",
            ),
            (json!({"session_id": "s"}), "missing_field", "event"),
            (
                json!({"session_id": "s", "event": "e".repeat(65)}),
                "field_too_long",
                "event",
            ),
            (
                json!({"session_id": "s", "event": 5}),
                "invalid_field",
                "event",
            ),
            (
                json!({"session_id": "s", "event": "e", "props": [1]}),
                "invalid_field",
                "props",
            ),
            (
                json!({"session_id": "s", "event": "e", "url": "u".repeat(4097)}),
                "field_too_long",
                "url",
            ),
            (
                json!({"session_id": "s", "event": "e", "id": "i".repeat(65)}),
                "field_too_long",
                "id",
            ),
            (
                json!({"session_id": "s", "event": "e", "colour": "red"}),
                "unknown_field",
                "colour",
            ),
            (
                json!({"session_id": "s", "event": "e", "ts": "soon"}),
                "invalid_field",
                "ts",
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

    #[test]
    fn text_is_read_directly_and_props_carried_as_sent() {
        let raw = r#"{"session_id":"s\u0031","event":"e","ts":"2023-11-14T22:13:20.123Z",
            "props": {"z": 1, "a": {"k": "\u00e9"}}, "id": "i"}"#;
        let v = parse(raw).unwrap();
        assert_eq!(v.client_id.as_deref(), Some("i"));
        let b = v.into_beacon();
        assert_eq!(b.session_id, "s1");
        assert_eq!(b.client_ts_ms, 1_700_000_000_123);
        // Not re-serialized: the client's order, spacing and escapes.
        assert_eq!(b.props_json, r#"{"z": 1, "a": {"k": "\u00e9"}}"#);
        // Unless a key repeats inside: then rewritten, the last copy winning.
        let raw = r#"{"session_id":"s","event":"e","props":{"a":{"x":1,"x":2}}}"#;
        assert_eq!(
            parse(raw).unwrap().into_beacon().props_json,
            r#"{"a":{"x":2}}"#
        );
        let raw = r#"{"session_id":"s","event":"e","props":null}"#;
        assert_eq!(parse(raw).unwrap().into_beacon().props_json, "");
    }

    #[test]
    fn text_and_map_give_the_same_answers() {
        let many_keys = (0..40).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>();
        let many = format!(
            r#"{{"session_id":"s","event":"e","props":{{{},"k39":0}}}}"#,
            many_keys.join(",")
        );
        let cases = [
            r#"{"session_id":"s","event":"e","event":"f"}"#,
            r#"{"session_id":"s","event":"e","x":1,"x":2}"#,
            r#"{"session_id":"s","event":"e","x":1,"y":2}"#,
            r#"{"session_id":"s","event":{"a":1}}"#,
            r#"{"session_id":"s","event":"e","props":[1]}"#,
            r#"{"session_id":"s","event":"e","props":"{}"}"#,
            r#"{"session_id":"s","event":"e","props":{"a":"\ud800"}}"#,
            r#"{"session_id":"s","event":"e","props":{"a":1e400}}"#,
            r#"{"session_id":"s","event":"e","props":"\ud800a","x":1,"x":2}"#,
            r#"{"session_id":"s","event":"e","props":["\ud800"]}"#,
            r#"{"session_id":"s","event":"e","ts":18446744073709551615}"#,
            r#"{"session_id":"s","event":"e","ts":-0}"#,
            r#"{"session_id":"s","event":"e","u\u0072l":"x"}"#,
            r#"{"event":"e"}"#,
            r#"[{"session_id":"s","event":"e"}]"#,
            r#""\ud800""#,
            r#"{"session_id":"s","event":"e""#,
            "{\"x\":\"a\",\"x\":\"\u{1}\"}",
            "{\"event\":\"a\",\"event\":\"\u{1}\"}",
            &many,
        ];
        for raw in cases {
            let direct = parse(raw);
            let via_map = reference::parse(Lane::BEACON, raw);
            match (&direct, &via_map) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{raw}"),
                (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{raw}: {a:?} vs {b:?}"),
                _ => panic!("{raw}: {direct:?} vs {via_map:?}"),
            }
        }
    }

    #[test]
    fn props_are_capped() {
        let big = "x".repeat(MAX_PROPS_BYTES);
        let err = check(json!({"session_id": "s", "event": "e", "props": {"k": big}})).unwrap_err();
        assert_eq!(err.code, "field_too_long");
    }
}
