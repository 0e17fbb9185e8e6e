//! `inlet::event::{parse, envelope}` against `inlet::event::reference::{parse_object, validate}`
//! (the map parser, built with inlet's `reference` feature), and the protobuf wire roundtrip.
//!
//! Input: byte 0 picks the kind (even: beacon, odd: occurrence); the rest, if UTF-8, is one
//! event's JSON text.
//! Checks: no panic; `parse` (fields read straight from the text) and `parse_object` then
//! `validate` agree, with the same code on a rejection and the same event otherwise (`props`
//! and `custom` as the same JSON); every rejection carries a known per-event code; a validated
//! event has the kind asked for and respects the documented bounds; its envelope has an event
//! id, and `encode_to_vec` then `Envelope::decode` gives back an equal envelope of
//! `encoded_len` bytes.
#![no_main]

use inlet::event::reference::{parse_object, validate};
use inlet::event::{envelope, parse, Meta};
use inlet::lane::Lane;
use inlet::proto::{self, envelope::Event};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const CODES: &[&str] = &[
    "malformed_json",
    "not_an_object",
    "duplicate_field",
    "missing_field",
    "invalid_field",
    "field_too_long",
    "unknown_field",
];

fn json(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok()
}

fn is_json_object(text: &str) -> bool {
    text.is_empty() || serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = if selector & 1 == 0 {
        Lane::BEACON
    } else {
        Lane::OCCURRENCE
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let direct = parse(kind, raw);
    let via_map = parse_object(raw).and_then(|map| validate(kind, map));
    let validated = match (direct, via_map) {
        (Ok(mut direct), Ok(via_map)) => {
            // The JSON text carried on may differ in spacing and order, not in meaning.
            match (&mut direct.body, &via_map.body) {
                (Event::Beacon(d), Event::Beacon(m)) => {
                    assert_eq!(json(&d.props_json), json(&m.props_json), "props differ");
                    d.props_json.clone_from(&m.props_json);
                }
                (Event::Occurrence(d), Event::Occurrence(m)) => {
                    assert_eq!(json(&d.custom_json), json(&m.custom_json), "custom differs");
                    d.custom_json.clone_from(&m.custom_json);
                }
                _ => panic!("kinds differ"),
            }
            assert_eq!(direct, via_map);
            direct
        }
        (Err(invalid), Err(other)) => {
            assert_eq!(invalid.code, other.code, "{invalid:?} vs {other:?}");
            assert!(CODES.contains(&invalid.code), "{invalid:?}");
            assert!(
                ["malformed_json", "not_an_object"].contains(&invalid.code)
                    || invalid.message.contains('`'),
                "message names no field: {invalid:?}"
            );
            return;
        }
        (direct, via_map) => panic!("parse: {direct:?}, parse_object+validate: {via_map:?}"),
    };
    if let Some(id) = &validated.client_id {
        assert!((1..=64).contains(&id.len()), "client id {id:?}");
    }
    match (&validated.body, kind) {
        (Event::Beacon(b), Lane::BEACON) => {
            assert!((1..=128).contains(&b.session_id.len()));
            assert!((1..=64).contains(&b.event.len()));
            assert!(b.client_ts_ms >= 0);
            assert!(
                is_json_object(&b.props_json),
                "props_json {:?}",
                b.props_json
            );
        }
        (Event::Occurrence(o), Lane::OCCURRENCE) => {
            assert!((1..=5).contains(&o.level), "level {}", o.level);
            assert!(o.client_ts_ms >= 0);
            if let Some(e) = &o.exception {
                assert!(!e.class.is_empty());
                assert!(e.frames.len() <= 1024);
            }
            assert!(
                is_json_object(&o.custom_json),
                "custom_json {:?}",
                o.custom_json
            );
        }
        (body, kind) => panic!("asked for {kind:?}, got {body:?}"),
    }
    let client_id = validated.client_id.clone();
    let env = envelope(validated, &Meta::default());
    assert!(!env.event_id.is_empty());
    if let Some(id) = client_id {
        assert_eq!(env.event_id, id);
    }
    let wire = env.encode_to_vec();
    assert_eq!(wire.len(), env.encoded_len());
    let decoded =
        proto::Envelope::decode(&wire[..]).expect("an envelope inlet encoded must decode");
    assert_eq!(decoded, env);
});
