//! Body decoding: content encodings, the cap on the decoded body, and splitting a body into
//! events. Plain functions over bytes, with no HTTP in them: reading the body off the wire,
//! within its cap as sent, is `http::body`'s work.
//!
//! The cap on the decoded body is enforced while decompressing, so a small compressed bomb
//! stops at the cap instead of filling memory. A body is one JSON object, a JSON array of
//! objects, or NDJSON.

use std::io::Read;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::event::Invalid;

/// A `Content-Encoding` inlet decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The encoding a `Content-Encoding` token names, ignoring ASCII case (`x-gzip` is gzip);
    /// `None` for one inlet does not decode, stacked encodings included.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            "br" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }

    /// Its `Content-Encoding` token.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Bodies at least this large (compressed) are decoded on the blocking pool, not a runtime worker.
pub const BLOCKING_DECODE_BYTES: usize = 64 * 1024;

/// Decodes `body` per `encoding`, refusing more than `limit` decoded bytes.
pub fn decompress(encoding: Encoding, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::DecodedTooLarge { limit };
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => {
            return if body.len() > limit {
                Err(too_large)
            } else {
                Ok(body)
            }
        }
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        // HTTP's "deflate" is zlib-wrapped, but some clients send raw deflate: accept both.
        Encoding::Deflate if looks_like_zlib(&body) => {
            Box::new(flate2::read::ZlibDecoder::new(&body[..]))
        }
        Encoding::Deflate => Box::new(flate2::read::DeflateDecoder::new(&body[..])),
        Encoding::Brotli => Box::new(brotli_decompressor::Decompressor::new(&body[..], 8192)),
        Encoding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&body[..])
                .map_err(|e| malformed(encoding, e))?;
            // Bound the window a frame may demand (8 MiB, zstd's default for every level up to
            // 19) so a hostile frame header cannot make inlet allocate 2 GiB.
            decoder
                .window_log_max(23)
                .map_err(|e| malformed(encoding, e))?;
            Box::new(decoder)
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit).min(1 << 20));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(encoding, e))?;
    if out.len() > limit {
        return Err(too_large);
    }
    Ok(Bytes::from(out))
}

fn looks_like_zlib(body: &[u8]) -> bool {
    body.len() >= 2
        && body[0] & 0x0f == 8
        && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0
}

fn malformed(encoding: Encoding, e: std::io::Error) -> ApiError {
    ApiError::MalformedEncoding {
        encoding: encoding.name(),
        detail: e.to_string(),
    }
}

/// One event's slot in a request: its JSON text, or why it could not be read at all.
pub type RawEvent<'a> = Result<&'a str, Invalid>;

/// Splits a decoded body into events: a JSON array of events, one JSON object, or NDJSON (one
/// event per non-blank line; a line that is not JSON rejects that event only).
///
/// Reading stops at the first event past `max_events`, so a body of millions of tiny events
/// costs no more than `max_events` slots, whatever its size.
pub fn split_events(body: &[u8], max_events: usize) -> Result<Vec<RawEvent<'_>>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::MalformedBody(format!("body is not valid UTF-8: {e}")))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(ApiError::NoEvents);
    }
    let too_many = || ApiError::TooManyEvents { limit: max_events };
    let events: Vec<RawEvent<'_>> = if text.starts_with('[') {
        let mut items = Vec::new();
        let mut de = serde_json::Deserializer::from_str(text);
        let read = Elements {
            items: &mut items,
            max: max_events,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match read {
            Ok(()) => items.into_iter().map(|raw| Ok(raw.get())).collect(),
            Err(_) if items.len() > max_events => return Err(too_many()),
            Err(e) => return Err(ApiError::MalformedBody(format!("invalid JSON array: {e}"))),
        }
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => vec![Ok(raw.get())],
            Err(e) if !text.contains('\n') => {
                return Err(ApiError::MalformedBody(format!("invalid JSON: {e}")))
            }
            Err(_) => {
                let mut events = Vec::new();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if events.len() == max_events {
                        return Err(too_many());
                    }
                    events.push(
                        serde_json::from_str::<&RawValue>(line)
                            .map(|raw| raw.get())
                            .map_err(|e| Invalid {
                                code: "malformed_json",
                                message: format!("invalid JSON line: {e}"),
                            }),
                    );
                }
                events
            }
        }
    };
    if events.is_empty() {
        return Err(ApiError::NoEvents);
    }
    Ok(events)
}

/// Reads a JSON array's elements as raw slices of the body, one at a time, into `items`; fails
/// as soon as it holds more than `max`, without reading the rest of the array.
struct Elements<'v, 'a> {
    items: &'v mut Vec<&'a RawValue>,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Elements<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            self.items.push(item);
            if self.items.len() > self.max {
                return Err(serde::de::Error::custom("too many events"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ok_events(body: &str) -> Vec<String> {
        split_events(body.as_bytes(), 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.unwrap().to_owned())
            .collect()
    }

    #[test]
    fn splits_object_array_and_ndjson() {
        assert_eq!(ok_events(r#" {"a":1} "#), vec![r#"{"a":1}"#]);
        assert_eq!(ok_events("{\n \"a\": 1\n}\n"), vec!["{\n \"a\": 1\n}"]);
        assert_eq!(
            ok_events(r#"[{"a":1}, {"b":2}]"#),
            vec![r#"{"a":1}"#, r#"{"b":2}"#]
        );
        assert_eq!(
            ok_events("{\"a\":1}\n\n{\"b\":2}\r\n"),
            vec![r#"{"a":1}"#, r#"{"b":2}"#]
        );
    }

    #[test]
    fn a_bad_ndjson_line_rejects_only_itself() {
        let events = split_events(b"{\"a\":1}\n{oops\n{\"c\":3}", 1000).unwrap();
        assert!(events[0].is_ok() && events[2].is_ok());
        assert_eq!(events[1].as_ref().unwrap_err().code, "malformed_json");
    }

    #[test]
    fn refuses_what_is_not_events() {
        for body in ["", "  ", "[]", "{oops", "[{\"a\":1},", "\u{feff}"] {
            let err = split_events(body.as_bytes(), 1000).unwrap_err();
            assert!(
                matches!(err, ApiError::NoEvents | ApiError::MalformedBody(_)),
                "{body:?}: {err:?}"
            );
        }
        assert!(matches!(
            split_events(b"\xff\xfe", 10),
            Err(ApiError::MalformedBody(_))
        ));
    }

    #[test]
    fn counts_events_against_the_limit() {
        let array = format!("[{}]", ["{}"; 11].join(","));
        assert!(matches!(
            split_events(array.as_bytes(), 10),
            Err(ApiError::TooManyEvents { limit: 10 })
        ));
        let nd = ["{}"; 11].join("\n");
        assert!(matches!(
            split_events(nd.as_bytes(), 10),
            Err(ApiError::TooManyEvents { limit: 10 })
        ));
        assert_eq!(split_events(nd.as_bytes(), 11).unwrap().len(), 11);
        assert_eq!(split_events(array.as_bytes(), 11).unwrap().len(), 11);
    }

    #[test]
    fn counting_stops_at_the_first_event_over_the_limit() {
        // A million tiny events (what a 40 KB gzip body can decode to): refused without
        // collecting them all.
        let huge = format!("[{}]", ["{}"; 1_000_000].join(","));
        assert!(matches!(
            split_events(huge.as_bytes(), 1000),
            Err(ApiError::TooManyEvents { limit: 1000 })
        ));
        // Reading collects event 1,001 and no more.
        let mut items = Vec::new();
        let mut de = serde_json::Deserializer::from_str(&huge);
        let read = Elements {
            items: &mut items,
            max: 1000,
        }
        .deserialize(&mut de);
        assert!(read.is_err());
        assert_eq!(items.len(), 1001);
        // Reading stops right after event 1,001: what follows it is never looked at, not even
        // the JSON error that reading the whole array would find.
        let then_garbage = format!("[{},{{}}, this is not JSON", ["{}"; 1000].join(","));
        assert!(matches!(
            split_events(then_garbage.as_bytes(), 1000),
            Err(ApiError::TooManyEvents { limit: 1000 })
        ));
        let nd_then_garbage = format!("{}\n{{}}\n{{oops", ["{}"; 1000].join("\n"));
        assert!(matches!(
            split_events(nd_then_garbage.as_bytes(), 1000),
            Err(ApiError::TooManyEvents { limit: 1000 })
        ));
        // At the limit exactly, the array is read to its end and checked.
        let at_limit_then_garbage = format!("[{}, oops", ["{}"; 1000].join(","));
        assert!(matches!(
            split_events(at_limit_then_garbage.as_bytes(), 1000),
            Err(ApiError::MalformedBody(_))
        ));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_every_encoding() {
        let data = br#"{"session_id":"s","event":"e"}"#.repeat(50);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&data).unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).unwrap();
        let zstd = zstd::bulk::compress(&data, 3).unwrap();
        let cases = [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Deflate, zlib.finish().unwrap()),
            (Encoding::Deflate, raw.finish().unwrap()),
            (Encoding::Zstd, zstd),
        ];
        for (enc, body) in cases {
            assert_eq!(
                decompress(enc, Bytes::from(body), 1 << 20).unwrap(),
                &data[..],
                "{enc:?}"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_cap() {
        let bomb = gzip(&vec![b' '; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = decompress(Encoding::Gzip, Bytes::from(bomb), 1 << 20).unwrap_err();
        assert!(matches!(err, ApiError::DecodedTooLarge { .. }));
        let garbage = decompress(Encoding::Gzip, Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert_eq!(garbage.code(), "malformed_encoding");
    }

    #[test]
    fn encodings_by_name() {
        for (name, encoding) in [
            ("identity", Encoding::Identity),
            ("GZIP", Encoding::Gzip),
            ("x-gzip", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("br", Encoding::Brotli),
            ("Zstd", Encoding::Zstd),
        ] {
            assert_eq!(Encoding::from_name(name), Some(encoding), "{name}");
        }
        for unknown in ["compress", "gzip, br", "", "gzip "] {
            assert_eq!(Encoding::from_name(unknown), None, "{unknown:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn encoding() -> impl Strategy<Value = Encoding> {
        prop_oneof![
            Just(Encoding::Identity),
            Just(Encoding::Gzip),
            Just(Encoding::Deflate),
            Just(Encoding::Brotli),
            Just(Encoding::Zstd),
        ]
    }

    proptest! {
        #[test]
        fn splitting_any_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = split_events(&body, 100);
        }

        #[test]
        fn decoding_any_bytes_stays_under_the_cap(
            enc in encoding(),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            limit in 0usize..4096,
        ) {
            if let Ok(out) = decompress(enc, Bytes::from(body), limit) {
                prop_assert!(out.len() <= limit);
            }
        }

        #[test]
        fn every_shape_yields_the_same_events(
            events in proptest::collection::vec(
                ("[a-z0-9]{1,12}", "[a-z_]{1,10}", any::<u32>()).prop_map(|(s, e, n)| {
                    serde_json::json!({"session_id": s, "event": e, "props": {"n": n}}).to_string()
                }),
                1..20,
            ),
        ) {
            let array = format!("[{}]", events.join(","));
            let ndjson = events.join("\n");
            let from_array: Vec<_> = split_events(array.as_bytes(), 100).unwrap().into_iter().map(Result::unwrap).collect();
            let from_ndjson: Vec<_> = split_events(ndjson.as_bytes(), 100).unwrap().into_iter().map(Result::unwrap).collect();
            prop_assert_eq!(&from_array, &from_ndjson);
            prop_assert_eq!(from_array.len(), events.len());
            if events.len() == 1 {
                prop_assert_eq!(split_events(events[0].as_bytes(), 100).unwrap().len(), 1);
            }
        }

        #[test]
        fn compression_roundtrips(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&data).unwrap();
            let out = decompress(Encoding::Gzip, Bytes::from(gz.finish().unwrap()), 4096).unwrap();
            prop_assert_eq!(&out[..], &data[..]);
            let z = zstd::bulk::compress(&data, 1).unwrap();
            let out = decompress(Encoding::Zstd, Bytes::from(z), 4096).unwrap();
            prop_assert_eq!(&out[..], &data[..]);
        }
    }
}
