//! Body decoding: media types, content encodings, the two size caps, and splitting a body into
//! events.
//!
//! The cap on the body as sent is enforced while reading (and up front from `Content-Length`),
//! the cap on the decoded body while decompressing, so a small compressed bomb stops at the cap
//! instead of filling memory. A body is one JSON object, a JSON array of objects, or NDJSON.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::time::Instant;

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
    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

/// The request's content encoding; 415 for anything else (including stacked encodings).
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding("<non-ASCII>".into()))?
        .trim();
    match text.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        "br" => Ok(Encoding::Brotli),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(ApiError::UnsupportedEncoding(truncate(text, 64))),
    }
}

/// Accepts `application/json`, `application/x-ndjson`, `text/plain` (what sendBeacon sends for
/// a string) or no `Content-Type`; parameters such as `charset` are ignored.
pub fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType("<non-ASCII>".into()))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "application/x-ndjson" | "text/plain" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(truncate(text, 64))),
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// How fast a body must arrive: within `grace` of the request, then on average at least
/// `bytes_per_sec` since the grace ended. A client that stops sending, or trickles, is cut off
/// with 408 as soon as it falls behind, so a slow client holds no worker for long.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub grace: Duration,
    pub bytes_per_sec: u64,
}

impl MinRate {
    /// When a body that started at `started` and has delivered `received` bytes falls behind
    /// (far in the future, rather than an overflow, for an absurd configured grace).
    fn deadline(&self, started: Instant, received: usize) -> Instant {
        let behind =
            Duration::try_from_secs_f64(received as f64 / self.bytes_per_sec.max(1) as f64)
                .unwrap_or(Duration::MAX);
        started
            .checked_add(self.grace.saturating_add(behind))
            .unwrap_or_else(|| started + Duration::from_secs(30 * 365 * 86_400))
    }
}

/// Reads the whole body, refusing more than `limit` bytes as sent (up front from
/// `Content-Length`, then while reading), and a body that falls behind `rate` (408).
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    rate: MinRate,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let started = Instant::now();
    let mut body = Limited::new(body, limit);
    let mut out = BytesMut::new();
    loop {
        // Every byte received moves the deadline out by 1 / rate seconds.
        let deadline = rate.deadline(started, out.len());
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<LengthLimitError>() => {
                return Err(ApiError::BodyTooLarge { limit })
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::MalformedBody(format!(
                    "could not read the body: {e}"
                )))
            }
        };
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
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

    /// A body that sends one byte every `every`, `left` times.
    struct Trickle {
        left: usize,
        every: Duration,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    }

    impl Trickle {
        fn body(left: usize, every: Duration) -> Body {
            Body::new(Trickle {
                left,
                every,
                sleep: Box::pin(tokio::time::sleep(every)),
            })
        }
    }

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::future::Future;
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let next = Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b" ")))))
        }
    }

    #[tokio::test]
    async fn a_body_must_keep_up_with_the_minimum_rate() {
        let rate = MinRate {
            grace: Duration::from_millis(100),
            bytes_per_sec: 1000,
        };
        let no_length = HeaderMap::new();
        // 200 bytes at 50 bytes/s, no Content-Length: it falls behind 1000 bytes/s as soon as the
        // grace is over, long before its last byte (a single deadline from the size cap, 10 s
        // here, would have let all four seconds of it through).
        let slow = Trickle::body(200, Duration::from_millis(20));
        assert!(matches!(
            read_body(slow, &no_length, 10_000, rate).await,
            Err(ApiError::BodyTimeout)
        ));
        // A body that keeps ahead arrives whole, however it is split.
        let rate = MinRate {
            grace: Duration::from_secs(10),
            bytes_per_sec: 1000,
        };
        let paced = Trickle::body(5, Duration::from_millis(1));
        assert_eq!(
            read_body(paced, &no_length, 10_000, rate).await.unwrap(),
            &b"     "[..]
        );
        // An absurd grace means no deadline, not an overflow.
        let endless = MinRate {
            grace: Duration::from_millis(u64::MAX),
            bytes_per_sec: 1,
        };
        assert_eq!(
            read_body(Body::from("x"), &no_length, 10, endless)
                .await
                .unwrap(),
            &b"x"[..]
        );
        let over = Trickle::body(11, Duration::from_millis(1));
        assert!(matches!(
            read_body(over, &no_length, 10, rate).await,
            Err(ApiError::BodyTooLarge { limit: 10 })
        ));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(matches!(
            read_body(Body::from("x"), &declared, 10, rate).await,
            Err(ApiError::BodyTooLarge { limit: 10 })
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
    fn media_types_and_encodings() {
        let mut h = HeaderMap::new();
        assert!(check_media_type(&h).is_ok());
        for ok in [
            "application/json; charset=utf-8",
            "text/plain;charset=UTF-8",
            "application/x-ndjson",
        ] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_media_type(&h).is_ok(), "{ok}");
        }
        h.insert(header::CONTENT_TYPE, "application/xml".parse().unwrap());
        assert_eq!(
            check_media_type(&h).unwrap_err().code(),
            "unsupported_media_type"
        );
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, "compress".parse().unwrap());
        assert_eq!(
            content_encoding(&h).unwrap_err().code(),
            "unsupported_content_encoding"
        );
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
