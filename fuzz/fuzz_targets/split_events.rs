//! `inlet::decode::split_events` on arbitrary bytes.
//!
//! Input: byte 0 sets `max_events` (1..=256), the rest is the body.
//! Checks: no panic; an `Ok` holds 1..=max_events events, each either a slice of the body that
//! is itself one JSON value or a `malformed_json` rejection; an `Err` is one of the codes the
//! splitter may give, and `too_many_events` names the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let max_events = usize::from(n) + 1;
    match inlet::decode::split_events(body, max_events) {
        Ok(events) => {
            assert!(!events.is_empty(), "Ok with no events");
            assert!(
                events.len() <= max_events,
                "{} > {max_events}",
                events.len()
            );
            let (start, end) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
            for event in &events {
                match event {
                    Ok(text) => {
                        let p = text.as_ptr() as usize;
                        assert!(
                            start <= p && p + text.len() <= end,
                            "event is not a slice of the body"
                        );
                        assert!(!text.is_empty());
                        let again: &RawValue = serde_json::from_str(text)
                            .unwrap_or_else(|e| panic!("event {text:?} is not JSON: {e}"));
                        assert_eq!(again.get(), *text);
                    }
                    Err(invalid) => assert_eq!(invalid.code, "malformed_json", "{invalid:?}"),
                }
            }
        }
        Err(inlet::error::ApiError::TooManyEvents { limit }) => assert_eq!(limit, max_events),
        Err(e) => assert!(
            matches!(e.code(), "malformed_body" | "no_events"),
            "unexpected error {e:?}"
        ),
    }
});
