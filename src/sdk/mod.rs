//! Drop-in endpoints for the SDKs applications already run: each submodule translates one SDK's
//! payload into inlet's own events ([`Translated`]), which the [pipeline](crate::pipeline)
//! then validates, keys and produces exactly like a native event. Translation knows nothing of
//! HTTP: the handlers in `crate::http` read the SDK's key and body and shape its answer.
//!
//! What a payload carries beyond the fields that map goes, as JSON text, into the event's
//! `props` (beacons) or `custom` (occurrences), within their cap ([`keep_within`]): an SDK's
//! event is never refused for the size of its extras.

pub mod analytics;
pub mod honeybadger;
pub mod posthog;
pub mod report;
pub mod rollbar;
pub mod segment;
pub mod sentry;

use serde_json::{Map, Value};

use crate::event::Source;
use crate::metrics;

pub use crate::pipeline::{Translated, Untranslated};

/// Serializes `rest` (what of an SDK's event has no field of its own) as the JSON object text
/// for `props` or `custom`, at most `cap` bytes. Over the cap, its largest members are left out,
/// largest first, until it fits; each is named in the second result as `name (N bytes)`
/// (`Envelope.trimmed`), so a consumer can tell a payload was cut and what was lost.
pub fn keep_within(mut rest: Map<String, Value>, cap: usize) -> (String, Vec<String>) {
    // A map of values always serializes.
    let serialize = |map: &Map<String, Value>| serde_json::to_string(map).unwrap_or_default();
    let text = serialize(&rest);
    if text.len() <= cap {
        return (text, Vec::new());
    }
    // Each member's share of the text: `"name":value` and its comma.
    let mut sizes: Vec<(String, usize)> = rest
        .iter()
        .map(|(name, value)| {
            let size = Value::String(name.clone()).to_string().len() + value.to_string().len() + 2;
            (name.clone(), size)
        })
        .collect();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut trimmed = Vec::new();
    let mut size = text.len();
    for (name, member) in sizes {
        if size <= cap {
            break;
        }
        rest.remove(&name);
        size = size.saturating_sub(member);
        trimmed.push(format!("{name} ({member} bytes)"));
    }
    (serialize(&rest), trimmed)
}

/// Counts `count` items of `kind` (the SDK's item or message type) an SDK endpoint of `source`
/// received, produced or not (`inlet_sdk_items_total`).
pub fn count_items(source: Source, kind: &'static str, count: usize) {
    ::metrics::counter!(metrics::SDK_ITEMS, "source" => source.as_str(), "type" => kind)
        .increment(count as u64);
}

/// A payload recorded from an SDK, `tests/sdk/payloads/<source>/<name>`.
#[cfg(test)]
pub(crate) fn recorded(source: Source, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/sdk/payloads/{}/{name}",
        env!("CARGO_MANIFEST_DIR"),
        source.as_str()
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_payload_within_the_cap_is_kept_whole() {
        let rest = map(json!({"b": [1, 2], "a": {"k": "v"}}));
        let (text, trimmed) = keep_within(rest.clone(), 64);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            Value::Object(rest)
        );
        assert!(trimmed.is_empty());
    }

    #[test]
    fn the_largest_members_go_first_until_it_fits() {
        let rest = map(json!({
            "breadcrumbs": "x".repeat(500),
            "extra": "y".repeat(300),
            "tags": {"a": 1},
        }));
        let (text, trimmed) = keep_within(rest, 400);
        assert_eq!(
            text,
            r#"{"extra":"yyyy"#.to_owned() + &"y".repeat(296) + r#"","tags":{"a":1}}"#
        );
        assert_eq!(trimmed, ["breadcrumbs (517 bytes)"]);
        assert!(text.len() <= 400);

        let rest = map(json!({"a": "x".repeat(500), "b": "y".repeat(300), "c": 1}));
        let (text, trimmed) = keep_within(rest, 100);
        assert_eq!(text, r#"{"c":1}"#);
        assert_eq!(trimmed, ["a (507 bytes)", "b (307 bytes)"]);
    }

    #[test]
    fn the_text_always_fits_the_cap() {
        for cap in [2, 10, 50, 200] {
            let rest =
                map(json!({"a": "x".repeat(40), "b": [1, 2, 3], "c": {"d": "e"}, "f": null}));
            let (text, _) = keep_within(rest, cap);
            assert!(text.len() <= cap.max(2), "{cap}: {text}");
        }
    }
}
