//! The SDK endpoints' translations (`inlet::sdk`): PostHog, Segment, Sentry, Rollbar and
//! Honeybadger bodies, read and translated as their handlers do.
//!
//! Input: byte 0 picks the protocol (modulo 6: PostHog, Segment, a Sentry envelope, a Sentry
//! `/store/` event, a Rollbar item, a Honeybadger notice); the rest is the decoded body.
//! Checks: no panic; every translated event is of its endpoint's kind (a Sentry envelope's other
//! items of the item lane and its replays of the recording lane, carried as written; PostHog's
//! `$snapshot`s recordings of JSON arrays of events without the key), and its `props` /
//! `custom` (built from the SDK's text without being read again by the pipeline) is exactly
//! what the native parser keeps of that text: a JSON object a `Value` reads, no key repeated at
//! any depth; every refused message carries a known code, and its text kept for the dead
//! letters holds none of the members that carry the request's key.
#![no_main]

use inlet::event::parse;
use inlet::lane::Lane;
use inlet::proto::envelope::Event;
use inlet::sdk::{honeybadger, posthog, rollbar, segment, sentry, Items, Translated, Untranslated};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CODES: &[&str] = &[
    "malformed_json",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "field_too_long",
    "token_mismatch",
    "unsupported_message",
];

/// An event's object field: a beacon's `props`, an occurrence's `custom`; an item has none.
fn object_of(event: &Event) -> &str {
    match event {
        Event::Beacon(b) => &b.props_json,
        Event::Occurrence(o) => &o.custom_json,
        Event::Item(_) | Event::Recording(_) => "",
    }
}

/// Checks one translated or refused event; `secrets` are the member paths of the key.
fn check(kind: Lane, event: &Result<Translated, Untranslated>, secrets: &[&[&str]]) {
    match event {
        Ok(Translated { event, .. }) => {
            let (its_kind, native) = match &event.body {
                Event::Beacon(_) => (Lane::BEACON, r#"{"session_id":"s","event":"e","props":"#),
                Event::Occurrence(_) => (
                    Lane::OCCURRENCE,
                    r#"{"level":"error","message":"m","custom":"#,
                ),
                Event::Item(_) => (Lane::ITEM, ""),
                Event::Recording(_) => (Lane::RECORDING, ""),
            };
            assert_eq!(its_kind, kind);
            let object = object_of(&event.body);
            if !object.is_empty() {
                let native = parse(kind, &format!("{native}{object}}}")).expect("kept natively");
                assert_eq!(object_of(&native.body), object, "read again, it differs");
            }
        }
        Err(Untranslated { invalid, raw }) => {
            assert!(
                CODES.contains(&invalid.code),
                "unknown code {}",
                invalid.code
            );
            holds_no_secret(raw, secrets);
        }
    }
}

/// Checks that `raw`, when a JSON object, holds none of the members at `secrets`.
fn holds_no_secret(raw: &str, secrets: &[&[&str]]) {
    if let Ok(Value::Object(message)) = serde_json::from_str::<Value>(raw) {
        for path in secrets {
            let (last, outer) = path.split_last().unwrap();
            let inner = outer
                .iter()
                .try_fold(&message, |m, name| m.get(*name).and_then(Value::as_object));
            assert!(
                inner.is_none_or(|m| !m.contains_key(*last)),
                "{path:?} kept in {raw}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(read) = posthog::read(body, 100) {
                let secrets: &[&[&str]] = &[&["api_key"], &["token"], &["$token"], &["properties", "token"]];
                let translated = posthog::translate(&read.messages, read.key.as_deref(), &mut Items::default());
                for event in translated.beacons.iter().chain(&translated.exceptions_as_beacons) {
                    check(Lane::BEACON, event, secrets);
                }
                for report in &translated.exceptions {
                    check(Lane::OCCURRENCE, &report.event, secrets);
                }
                // The same body as `/s/` takes it: each session's `$snapshot`s, a JSON array of
                // the events, none holding a member that carries the key.
                let key = read.key.as_deref();
                for recording in posthog::snapshots(&read.messages, key, &mut Items::default()) {
                    check(Lane::RECORDING, &recording, secrets);
                    if let Ok(Translated { event, .. }) = &recording {
                        let Event::Recording(carried) = &event.body else {
                            panic!("not a recording");
                        };
                        let events: Vec<Value> = serde_json::from_slice(&carried.data)
                            .expect("a JSON array of events");
                        for event in events {
                            holds_no_secret(&event.to_string(), secrets);
                        }
                    }
                }
            }
        }
        1 => {
            if let Ok(read) = segment::read(body, 100) {
                for event in segment::translate(&read.messages, None, &mut Items::default()) {
                    check(Lane::BEACON, &event, &[&["writeKey"]]);
                }
            }
        }
        2 => {
            if let Ok(envelope) = sentry::envelope(body) {
                for raw in &envelope.events {
                    check(
                        Lane::OCCURRENCE,
                        &sentry::event(raw, envelope.event_id).event,
                        &[],
                    );
                }
                // Replays are recordings of the replay, carried as written.
                for other in envelope.replays() {
                    let replay = sentry::replay(other, envelope.event_id);
                    if let Ok(Translated { event, .. }) = &replay {
                        let Event::Recording(carried) = &event.body else {
                            panic!("not a recording");
                        };
                        assert_eq!(carried.data, other.payload);
                        assert_eq!(carried.r#type, other.kind);
                    }
                    check(Lane::RECORDING, &replay, &[]);
                }
                // Every other item is carried as written.
                for other in envelope.items() {
                    let item = sentry::item(other);
                    if let Ok(Translated { event, .. }) = &item {
                        let Event::Item(carried) = &event.body else {
                            panic!("not an item");
                        };
                        assert_eq!(carried.payload, other.payload);
                        assert_eq!(carried.r#type, other.kind);
                    }
                    check(Lane::ITEM, &item, &[]);
                }
            }
        }
        3 => check(Lane::OCCURRENCE, &sentry::event(body, None).event, &[]),
        4 => {
            if let Ok(item) = rollbar::item(body) {
                check(Lane::OCCURRENCE, &item.report.event, &[&["access_token"]]);
            }
        }
        _ => check(Lane::OCCURRENCE, &honeybadger::notice(body).event, &[]),
    }
});
