//! Segment's tracking API (`/v1/batch`, `/v1/track`, ...), as `@segment/analytics-node` and
//! `segment-analytics-python` send it, translated into beacons (API.md, "Drop-in endpoints"):
//!
//! - `anonymousId`, else `userId` → `session_id`; `userId` → `user_id`; `messageId` → `id`;
//!   `timestamp` → `ts`;
//! - `event` for a `track` call, else the call's type (`page`, `screen`, `identify`, `group`,
//!   `alias`, or whatever type the message names) → `event`: no call is dropped;
//! - a page call's `properties.url` / `.referrer` / `.title`, else `context.page`'s → `url`,
//!   `referrer`, `title`;
//! - `properties` (or `traits`) and the rest of the message (`context`, `integrations`, ...)
//!   → `props` ([`analytics::props`]). The write key is never kept.

use serde_json::value::RawValue;

use super::analytics::{self, not_an_object, untranslated, Fields, Messages, Object};
use super::{Items, Secrets, Translated, Untranslated};
use crate::error::ApiError;
use crate::event::Invalid;

/// Where a message may carry the write key (a single call's body is its message).
const SECRETS: Secrets = &[&[KEY]];

/// The body member that carries the write key.
pub const KEY: &str = "writeKey";

/// The calls Segment defines; the `type` label of `inlet_sdk_items_total` is one of these, or
/// `other`.
const CALLS: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// Reads a Segment body: `{"batch": [...], "writeKey": ...}` (`/v1/batch`), or one message
/// (`/v1/track` and the other single calls), at most `max_events` of them.
pub fn read(body: &[u8], max_events: usize) -> Result<Messages<'_>, ApiError> {
    analytics::messages(body, KEY, max_events)
}

/// Translates each message in order; a message without a `type` is a `call` (the path's call,
/// for `/v1/track` and the like; `None` on `/v1/batch`, where each message names its own).
/// Adds each to `items`.
pub fn translate(
    messages: &[&RawValue],
    call: Option<&str>,
    items: &mut Items,
) -> Vec<Result<Translated, Untranslated>> {
    messages
        .iter()
        .map(|message| {
            let (translated, label) = translate_one(message, call);
            items.add(label);
            translated
        })
        .collect()
}

/// One message as a beacon, and its `type` label.
fn translate_one(
    raw: &RawValue,
    call: Option<&str>,
) -> (Result<Translated, Untranslated>, &'static str) {
    let Some(mut message) = Object::parse(raw) else {
        return (Err(not_an_object(raw)), "other");
    };
    let Some(kind) = message.text("type").or(call.map(str::to_owned)) else {
        let invalid = Invalid::new("missing_field", "`type` is required");
        return (Err(untranslated(invalid, raw, SECRETS)), "other");
    };
    let label = CALLS
        .iter()
        .find(|c| **c == kind)
        .copied()
        .unwrap_or("other");
    let translated = beacon(&mut message, kind).and_then(|beacon| {
        let inner = analytics::take_object(&mut message, &["properties", "traits"]);
        analytics::build(beacon, analytics::props(inner, message)?)
    });
    (
        translated.map_err(|invalid| untranslated(invalid, raw, SECRETS)),
        label,
    )
}

/// Takes the beacon's fields out of a message of call `kind`; what is left becomes `props`.
fn beacon(message: &mut Object<'_>, kind: String) -> Result<Fields, Invalid> {
    let anonymous_id = message.text("anonymousId");
    let user_id = message.text("userId");
    let Some(session_id) = anonymous_id.or_else(|| user_id.clone()) else {
        return Err(Invalid::new(
            "missing_field",
            "`anonymousId` or `userId` is required",
        ));
    };
    let event = if kind == "track" {
        message
            .text("event")
            .ok_or_else(|| Invalid::new("missing_field", "`event` is required in a track call"))?
    } else {
        kind.clone()
    };
    let properties = (kind == "page")
        .then(|| message.object("properties"))
        .flatten();
    let context_page = message.object("context").and_then(|c| c.object("page"));
    let page = |name: &str| {
        let from_properties = properties.as_ref().and_then(|p| p.text(name));
        from_properties.or_else(|| context_page.as_ref().and_then(|p| p.text(name)))
    };
    let (url, referrer, title) = (page("url"), page("referrer"), page("title"));
    let id = message.text("messageId");
    for mapped in ["type", "anonymousId", "userId", "messageId", KEY] {
        message.take(mapped);
    }
    if kind == "track" {
        message.take("event");
    }
    Ok(Fields {
        session_id,
        event,
        ts: analytics::take_time(message, "timestamp"),
        url,
        referrer,
        title,
        user_id,
        id,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::event::Source;

    use super::*;
    use crate::proto;
    use crate::sdk::recorded;
    fn beacons(body: &[u8], call: Option<&str>) -> Vec<Result<proto::Beacon, String>> {
        translate(
            &read(body, 1000).unwrap().messages,
            call,
            &mut Items::default(),
        )
        .into_iter()
        .map(|t| match t {
            Ok(t) => Ok(t.event.into_beacon()),
            Err(u) => Err(u.invalid.code.to_owned()),
        })
        .collect()
    }

    #[test]
    fn the_python_sdk_batch_maps_as_the_contract_says() {
        let body = recorded(Source::Segment, "python-batch.json");
        let key = read(&body, 1000).unwrap().key;
        assert_eq!(key.as_deref(), Some("segment-write-key"));
        let beacons = beacons(&body, None);
        let track = beacons[0].as_ref().unwrap();
        assert_eq!(track.event, "Order Completed");
        assert_eq!(track.session_id, "anon-py-1");
        assert_eq!(track.user_id, "user-py-1");
        assert!(track.client_ts_ms > 0);
        let props: Value = serde_json::from_str(&track.props_json).unwrap();
        assert_eq!(props["revenue"], 42.5);
        assert_eq!(props["context"]["library"]["name"], "analytics-python");
        assert!(props.get("writeKey").is_none());
        let events: Vec<_> = beacons
            .iter()
            .map(|b| b.as_ref().unwrap().event.as_str())
            .collect();
        assert_eq!(
            events,
            [
                "Order Completed",
                "page",
                "screen",
                "identify",
                "group",
                "alias"
            ]
        );
        let page = beacons[1].as_ref().unwrap();
        assert_eq!(page.url, "https://shop.example/checkout");
        assert_eq!(page.title, "Checkout");
    }

    #[test]
    fn every_recorded_payload_translates_whole() {
        for name in ["python-batch.json", "node-batch.json"] {
            let beacons = beacons(&recorded(Source::Segment, name), None);
            assert_eq!(beacons.len(), 6, "{name}");
            for beacon in beacons {
                let beacon = beacon.unwrap_or_else(|code| panic!("{name}: {code}"));
                assert!(beacon.client_ts_ms > 0, "{name}: {}", beacon.event);
            }
        }
    }

    const SECRET_IN_BODY: &str = "the-write-key";

    #[test]
    fn a_single_call_takes_its_type_from_the_path() {
        let body = json!({"userId": "u", "event": "Clicked", "writeKey": SECRET_IN_BODY,
                          "messageId": "m-1", "properties": {"a": 1}})
        .to_string();
        let beacons = beacons(body.as_bytes(), Some("track"));
        let beacon = beacons[0].as_ref().unwrap();
        assert_eq!(
            (beacon.session_id.as_str(), beacon.event.as_str()),
            ("u", "Clicked")
        );
        assert_eq!(beacon.props_json, r#"{"a":1}"#);
        assert!(!beacon.props_json.contains(SECRET_IN_BODY));
    }

    #[test]
    fn a_page_call_prefers_its_properties_to_its_context() {
        let body = json!({"type": "page", "anonymousId": "a",
            "properties": {"url": "https://p.example/", "title": "P"},
            "context": {"page": {"url": "https://c.example/", "referrer": "https://r.example/"}}})
        .to_string();
        let beacon = beacons(body.as_bytes(), None).remove(0).unwrap();
        assert_eq!(beacon.url, "https://p.example/");
        assert_eq!(beacon.referrer, "https://r.example/");
        assert_eq!(beacon.title, "P");
    }

    #[test]
    fn messages_that_cannot_be_beacons_are_refused_with_a_code() {
        let body = json!([
            {"type": "track", "anonymousId": "a"},
            {"type": "track", "event": "e"},
            {"anonymousId": "a", "event": "e"},
            "text",
            {"type": "custom_call", "anonymousId": "a"},
            {"type": "track", "event": "e", "anonymousId": "a", "messageId": "m".repeat(65)},
        ])
        .to_string();
        let codes: Vec<_> = beacons(body.as_bytes(), None)
            .into_iter()
            .map(|b| b.map(|b| b.event).unwrap_or_else(|code| code))
            .collect();
        assert_eq!(
            codes,
            [
                "missing_field",
                "missing_field",
                "missing_field",
                "not_an_object",
                "custom_call",
                "field_too_long"
            ]
        );
    }
}
