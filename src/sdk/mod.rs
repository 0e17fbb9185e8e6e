//! Drop-in endpoints for the SDKs applications already run: each submodule translates one SDK's
//! payload into inlet's own events, field by field, validated by their kind's rules as they are
//! built ([`crate::event::from_fields`]); the [pipeline](crate::pipeline) then keys and
//! produces them ([`Translated`]) exactly like native events. Translation knows nothing of
//! HTTP: the handlers in `crate::http` read the SDK's key and body and shape its answer.
//!
//! What a payload carries beyond the fields that map goes, as JSON text, into the event's
//! `props` (beacons) or `custom` (occurrences), within their cap ([`keep_within`]): an SDK's
//! event is never refused for the size of its extras.

pub mod analytics;
pub mod deploy;
pub mod honeybadger;
pub mod object;
pub mod posthog;
pub mod report;
pub mod rollbar;
pub mod segment;
pub mod sentry;

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::event::{ObjectText, Source};
use crate::metrics;
use crate::pipeline::Answer;

pub use crate::batch::{Translated, Untranslated};

/// Serializes `rest` (what of an SDK's event has no field of its own) as the JSON object text
/// for `props` or `custom`, at most `cap` bytes. Over the cap, its largest members are left out,
/// largest first, until it fits; each is named in the second result as `name (N bytes)`
/// (`Envelope.trimmed`), so a consumer can tell a payload was cut and what was lost.
pub fn keep_within(mut rest: Map<String, Value>, cap: usize) -> (ObjectText, Vec<String>) {
    let text = ObjectText::of_map(&rest);
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
    (ObjectText::of_map(&rest), trimmed)
}

/// An item inlet carries verbatim in the `item` lane (API.md v1.2, "Nothing answered as
/// accepted is dropped"): its `kind` (the SDK's name for it), media type, payload as the SDK
/// wrote it, and its own headers as JSON text (empty where the protocol has none). Refused
/// (a dead letter keeping `headers`, else the start of the payload) when its kind is no name.
pub fn verbatim(
    kind: &str,
    media_type: &str,
    payload: &[u8],
    headers: String,
) -> Result<Translated, Untranslated> {
    match crate::event::item(kind, media_type, payload.to_vec(), headers.clone()) {
        Ok(event) => Ok(Translated {
            event,
            trimmed: Vec::new(),
        }),
        Err(invalid) => Err(Untranslated {
            invalid,
            raw: match headers.is_empty() {
                true => String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned(),
                false => headers,
            },
        }),
    }
}

/// Where an SDK's payload may carry the request's key (member paths, outermost first): taken
/// out of the text a dead letter keeps of a refused message, since a dead letter never holds
/// the secret.
pub type Secrets = &'static [&'static [&'static str]];

/// `raw` (an SDK's message as sent) as a dead letter keeps it: without the members at
/// `secrets` (written again if it had any). A message that is no JSON object is kept as sent.
pub fn without_secrets(raw: &str, secrets: Secrets) -> String {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(raw) else {
        return raw.to_owned();
    };
    match remove_secrets(&mut message, secrets) {
        true => Value::Object(message).to_string(),
        false => raw.to_owned(),
    }
}

/// Takes the members at `secrets` out of `message`; whether any was there.
pub fn remove_secrets(message: &mut serde_json::Map<String, Value>, secrets: Secrets) -> bool {
    let mut found = false;
    for path in secrets {
        let Some((last, outer)) = path.split_last() else {
            continue;
        };
        let inner = outer.iter().try_fold(&mut *message, |map, name| {
            map.get_mut(*name).and_then(Value::as_object_mut)
        });
        found |= inner.and_then(|map| map.remove(*last)).is_some();
    }
    found
}

/// The items of one SDK request, each by the SDK's name for its type (a closed set per
/// source), in the order of the events the request's batches hold (its own lane's, then those
/// of [`also`](crate::http::adapter::Translation::also)): counted in `inlet_sdk_items_total`
/// once the request is answered, each with the outcome of its event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Items(Vec<&'static str>);

impl Items {
    /// One item of `kind`.
    pub fn one(kind: &'static str) -> Items {
        Items(vec![kind])
    }

    /// Adds an item of `kind`, after the others.
    pub fn add(&mut self, kind: &'static str) {
        self.0.push(kind);
    }

    /// Adds `more`, after these.
    pub fn extend(&mut self, more: Items) {
        self.0.extend(more.0);
    }

    /// Counts them, received by an endpoint of `source` (`inlet_sdk_items_total`), each under
    /// its event's outcome in the request's `answer` (`accepted`, or the refusal's outcome as
    /// `inlet_events_total` has it), or the outcome of the error that refused them all.
    pub fn count(self, source: Source, answer: Result<&Answer, &ApiError>) {
        let refused = answer.as_ref().err().map(|error| error.outcome());
        let rejected: HashMap<usize, &'static str> = match answer {
            Ok(answer) => (answer.rejected.iter())
                .map(|r| (r.index, r.refusal.outcome()))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let mut counts: Vec<((&'static str, &'static str), u64)> = Vec::new();
        for (index, kind) in self.0.into_iter().enumerate() {
            let outcome = refused
                .or_else(|| rejected.get(&index).copied())
                .unwrap_or("accepted");
            match counts.iter_mut().find(|(key, _)| *key == (kind, outcome)) {
                Some((_, n)) => *n += 1,
                None => counts.push(((kind, outcome), 1)),
            }
        }
        for ((kind, outcome), n) in counts {
            ::metrics::counter!(
                metrics::SDK_ITEMS,
                "source" => source.as_str(),
                "type" => kind,
                "outcome" => outcome
            )
            .increment(n);
        }
    }
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

/// Compares the events a recorded payload translates to with their native twin under
/// tests/sdk/payloads/ (`twin`): the JSON the native endpoint takes for the same events (one
/// event's object, or an array of them), which loadtest/bench posts beside the payload to
/// compare an adapter's cost with the native endpoint's; `INLET_BLESS=1` writes the twin
/// instead. The twin, read natively, is these very events.
#[cfg(test)]
pub(crate) fn assert_twin(
    kind: crate::lane::Lane,
    events: &[&crate::event::Validated],
    twin: &str,
) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(twin);
    let json: Vec<String> = events.iter().map(|e| e.native_json()).collect();
    let json = match &json[..] {
        [one] => one.clone(),
        many => format!("[{}]", many.join(",")),
    };
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
    let native: Vec<_> = crate::decode::split_events(recorded.trim_end().as_bytes(), 1000)
        .unwrap()
        .into_iter()
        .map(|text| crate::event::parse(kind, text.unwrap()).unwrap())
        .collect();
    assert_eq!(native.iter().collect::<Vec<_>>(), events);
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
    fn a_dead_letter_keeps_a_message_without_its_secrets() {
        const SECRETS: Secrets = &[&["api_key"], &["properties", "token"]];
        let raw = r#"{"api_key": "k", "event": "e", "properties": {"token": "k", "a": 1}}"#;
        let kept: Value = serde_json::from_str(&without_secrets(raw, SECRETS)).unwrap();
        assert_eq!(kept, json!({"event": "e", "properties": {"a": 1}}));
        // Without any, or no object: as sent.
        let raw = r#"{"event": "e",  "properties": 3}"#;
        assert_eq!(without_secrets(raw, SECRETS), raw);
        assert_eq!(without_secrets("[1, 2]", SECRETS), "[1, 2]");
    }

    #[test]
    fn a_payload_within_the_cap_is_kept_whole() {
        let rest = map(json!({"b": [1, 2], "a": {"k": "v"}}));
        let (text, trimmed) = keep_within(rest.clone(), 64);
        assert_eq!(
            serde_json::from_str::<Value>(text.as_str()).unwrap(),
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
            text.as_str(),
            r#"{"extra":"yyyy"#.to_owned() + &"y".repeat(296) + r#"","tags":{"a":1}}"#
        );
        assert_eq!(trimmed, ["breadcrumbs (517 bytes)"]);
        assert!(text.len() <= 400);

        let rest = map(json!({"a": "x".repeat(500), "b": "y".repeat(300), "c": 1}));
        let (text, trimmed) = keep_within(rest, 100);
        assert_eq!(text.as_str(), r#"{"c":1}"#);
        assert_eq!(trimmed, ["a (507 bytes)", "b (307 bytes)"]);
    }

    #[test]
    fn the_text_always_fits_the_cap() {
        for cap in [2, 10, 50, 200] {
            let rest =
                map(json!({"a": "x".repeat(40), "b": [1, 2, 3], "c": {"d": "e"}, "f": null}));
            let (text, _) = keep_within(rest, cap);
            assert!(text.len() <= cap.max(2), "{cap}: {}", text.as_str());
        }
    }
}
