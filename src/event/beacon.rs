//! Analytics beacons: `POST /v1/beacons` and `GET /v1/pixel.gif`.

use serde_json::{Map, Value};

use super::{
    no_other_fields, object_json, required_string, string, timestamp_ms, Invalid, Validated,
};
use crate::proto;

/// Largest `props`, serialized.
pub const MAX_PROPS_BYTES: usize = 64 * 1024;

/// Validates a beacon's fields (see API.md) and converts it.
pub fn validate(mut map: Map<String, Value>) -> Result<Validated, Invalid> {
    let beacon = proto::Beacon {
        session_id: required_string(&mut map, "session_id", 1, 128)?,
        event: required_string(&mut map, "event", 1, 64)?,
        client_ts_ms: timestamp_ms(&mut map, "ts")?,
        url: string(&mut map, "url", 0, 4096)?.unwrap_or_default(),
        referrer: string(&mut map, "referrer", 0, 4096)?.unwrap_or_default(),
        title: string(&mut map, "title", 0, 1024)?.unwrap_or_default(),
        user_id: string(&mut map, "user_id", 0, 256)?.unwrap_or_default(),
        props_json: object_json(&mut map, "props", MAX_PROPS_BYTES)?,
    };
    let client_id = string(&mut map, "id", 1, 64)?;
    no_other_fields(&map)?;
    Ok(Validated {
        client_id,
        body: proto::envelope::Event::Beacon(beacon),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Validated, Invalid> {
        validate(v.as_object().unwrap().clone())
    }

    fn beacon(v: Validated) -> proto::Beacon {
        match v.body {
            proto::envelope::Event::Beacon(b) => b,
            other => panic!("not a beacon: {other:?}"),
        }
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
        let b = beacon(v);
        assert_eq!(b.session_id, "s1");
        assert_eq!(b.event, "page_view");
        assert_eq!(b.client_ts_ms, 1_700_000_000_000);
        assert_eq!(b.props_json, r#"{"n":3,"plan":"pro"}"#);
    }

    #[test]
    fn minimal_beacon_converts() {
        let v = check(json!({"session_id": "s", "event": "e"})).unwrap();
        assert_eq!(v.client_id, None);
        assert_eq!(beacon(v).props_json, "");
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
    fn props_are_capped() {
        let big = "x".repeat(MAX_PROPS_BYTES);
        let err = check(json!({"session_id": "s", "event": "e", "props": {"k": big}})).unwrap_err();
        assert_eq!(err.code, "field_too_long");
    }
}
