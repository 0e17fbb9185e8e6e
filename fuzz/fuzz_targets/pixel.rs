//! `inlet::event::beacon::from_query` (the pixel's query string read into the beacon's fields)
//! against `inlet::event::reference::from_query` (the map the pixel built before, then the map
//! parser; inlet's `reference` feature).
//!
//! Input: the query string (without `?`), if UTF-8.
//! Checks: no panic; both give the same answer to the byte: the same `Invalid` (code and
//! message) on a rejection, an equal event otherwise (`props_json` included); every rejection
//! carries a known per-event code and names a field; an accepted beacon's `props_json` is
//! empty or a JSON object.
#![no_main]

use inlet::event::{beacon, reference};
use inlet::proto::envelope::Event;
use libfuzzer_sys::fuzz_target;

const CODES: &[&str] = &[
    "duplicate_field",
    "missing_field",
    "invalid_field",
    "field_too_long",
    "unknown_field",
];

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let direct = beacon::from_query(query);
    assert_eq!(direct, reference::from_query(query), "{query:?}");
    match direct {
        Ok(validated) => {
            let Event::Beacon(b) = &validated.body else {
                panic!("not a beacon: {validated:?}");
            };
            assert!(
                b.props_json.is_empty()
                    || serde_json::from_str::<serde_json::Value>(&b.props_json)
                        .is_ok_and(|v| v.is_object()),
                "props_json {:?}",
                b.props_json
            );
        }
        Err(invalid) => {
            assert!(CODES.contains(&invalid.code), "{invalid:?}");
            assert!(invalid.message.contains('`'), "names no field: {invalid:?}");
        }
    }
});
