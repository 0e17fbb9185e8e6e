//! The spool's record format, and the scan that reads it back: the one place that knows how a
//! record looks on disk, so torn writes and bit flips are handled (and tested) here alone.
//!
//! A record is `len: u32 LE | crc: u32 LE | payload (len bytes)`, the CRC-32 covering the
//! length and the payload. The payload is `seq: u64 | written_at_ms: u64 | lane: u8 |
//! key_len: u16 | key | value` (integers little-endian): the sequence number makes a record's
//! place in the log independent of its position in a file (so a record set aside never shifts
//! the ones after it), and the write time gives the age of the oldest record. A record with
//! headers of its own (OTLP's metadata) has the lane's top bit set, and its headers between the
//! key and the value: `headers_len: u32 | (name_len: u16 | name | value_len: u16 | value)…`.
//! A record to a topic of its token's own has the lane's next bit set, and the topic after the
//! key (before any headers): `topic_len: u16 | topic`. Spools written before either existed
//! read unchanged.
//!
//! Segment files are zero-filled ahead of the records (see `writer`), so the log ends where
//! only zeros follow: no record is all zeros (its length is never 0).

use std::ops::Range;

use crate::lane::Lane;
use crate::sink::Record;

/// Bytes before the payload: its length and its CRC.
pub const HEADER: usize = 8;
/// Bytes of the payload before the key: sequence number, write time, kind, key length.
const PAYLOAD_HEADER: usize = 8 + 8 + 1 + 2;
/// The bit of the lane byte that says headers follow the key.
const WITH_HEADERS: u8 = 0x80;
/// The bit of the lane byte that says a topic follows the key.
const WITH_TOPIC: u8 = 0x40;
/// Largest payload a record may have; a length above it is corruption, not a record (inlet's
/// largest event is a few MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// One record read back, borrowing the bytes it was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored<'a> {
    /// Its sequence number in the log.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub written_at_ms: u64,
    pub kind: Lane,
    pub key: &'a str,
    /// The topic its token named, when it did.
    pub topic: Option<&'a str>,
    /// The record's own headers, as encoded (empty when it has none).
    pub headers: &'a [u8],
    pub value: &'a [u8],
}

impl Stored<'_> {
    /// The record to produce.
    pub fn to_record(&self) -> Record {
        Record {
            kind: self.kind,
            key: self.key.to_owned(),
            value: self.value.to_vec(),
            headers: decode_headers(self.headers),
            topic: self.topic.map(std::sync::Arc::from),
        }
    }
}

/// Bytes `record` takes on disk.
pub fn encoded_len(record: &Record) -> usize {
    let headers = match record.headers.is_empty() {
        true => 0,
        false => 4 + headers_len(&record.headers),
    };
    let topic = record.topic.as_ref().map_or(0, |t| 2 + t.len());
    HEADER + PAYLOAD_HEADER + record.key.len() + topic + headers + record.value.len()
}

/// Bytes of `headers` encoded, without their length.
fn headers_len(headers: &[(String, String)]) -> usize {
    let cut = |s: &String| s.len().min(u16::MAX as usize);
    headers.iter().map(|(n, v)| 4 + cut(n) + cut(v)).sum()
}

/// The headers encoded as [`encode`] writes them (without their length).
fn decode_headers(mut block: &[u8]) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let next = |block: &mut &[u8]| -> Option<String> {
        let len = u16::from_le_bytes([*block.first()?, *block.get(1)?]) as usize;
        let text = String::from_utf8_lossy(block.get(2..2 + len)?).into_owned();
        *block = &block[2 + len..];
        Some(text)
    };
    while let (Some(name), Some(value)) = (next(&mut block), next(&mut block)) {
        headers.push((name, value));
    }
    headers
}

/// Appends `record` as record number `seq`, written at `written_at_ms`, to `out`.
pub fn encode(record: &Record, seq: u64, written_at_ms: u64, out: &mut Vec<u8>) {
    let start = out.len();
    // Keys are shard keys (a session or account id, cut short by the pipeline), never 64 KiB.
    let key = &record.key.as_bytes()[..record.key.len().min(u16::MAX as usize)];
    let len = encoded_len(record) - HEADER - (record.key.len() - key.len());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&written_at_ms.to_le_bytes());
    let flag = match record.headers.is_empty() {
        true => 0,
        false => WITH_HEADERS,
    };
    let topic_flag = record.topic.as_ref().map_or(0, |_| WITH_TOPIC);
    out.push(record.kind.index() | flag | topic_flag);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(topic) = &record.topic {
        // A topic name is 249 bytes at most (checked when the registry is read).
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    if !record.headers.is_empty() {
        out.extend_from_slice(&(headers_len(&record.headers) as u32).to_le_bytes());
        for text in record.headers.iter().flat_map(|(n, v)| [n, v]) {
            let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text);
        }
    }
    out.extend_from_slice(&record.value);
    let crc = checksum(&out[start..start + 4], &out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// What a scan found at one place of a buffer, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// A whole, intact record at this range.
    Record(Range<usize>, Stored<'a>),
    /// Bytes that are no record (a bad checksum, an impossible length): set them aside.
    Corrupt(Range<usize>),
    /// The end of the buffer holds the start of a record cut short, with nothing readable
    /// after it: a write torn by a crash.
    Torn(Range<usize>),
}

/// Reads every record of `buf`, up to where only zeros (space written ahead) follow. Past a
/// bad one it resynchronises: it looks for the next offset where an intact record starts, so
/// one bad record never costs the rest of the buffer.
pub fn scan(buf: &[u8]) -> Vec<Found<'_>> {
    // Where the bytes written end: the zero-filled space after them is no part of the log.
    let written = buf.iter().rposition(|b| *b != 0).map_or(0, |last| last + 1);
    let mut found = Vec::new();
    let mut at = 0;
    while at < written {
        if let Some((end, stored)) = read_at(buf, at) {
            found.push(Found::Record(at..end, stored));
            at = end;
            continue;
        }
        // A record cut short by a crash is followed by zeros, not by the rest of it.
        let torn = cut_short(&buf[..written], at);
        match (at + 1..buf.len()).find(|&next| read_at(buf, next).is_some()) {
            Some(next) => found.push(Found::Corrupt(at..next)),
            None if torn => found.push(Found::Torn(at..written)),
            None => found.push(Found::Corrupt(at..written)),
        }
        at = found.last().map_or(written, |f| f.range().end);
    }
    found
}

impl Found<'_> {
    /// The bytes this covers.
    pub fn range(&self) -> Range<usize> {
        match self {
            Found::Record(range, _) | Found::Corrupt(range) | Found::Torn(range) => range.clone(),
        }
    }
}

/// Whether the bytes at `at` look like the start of a record the buffer's end cut short: a
/// header cut short, or a plausible length running past the end.
fn cut_short(buf: &[u8], at: usize) -> bool {
    let rest = buf.len() - at;
    if rest < HEADER {
        return true;
    }
    let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
    len <= MAX_PAYLOAD && HEADER + len > rest
}

/// The intact record at `at`, and where it ends; `None` if there is none.
fn read_at(buf: &[u8], at: usize) -> Option<(usize, Stored<'_>)> {
    let header = buf.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let end = at + HEADER + len;
    let payload = buf.get(at + HEADER..end)?;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if checksum(&header[..4], payload) != crc {
        return None;
    }
    Some((end, parse(payload)?))
}

fn parse(payload: &[u8]) -> Option<Stored<'_>> {
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    let kind = Lane::from_index(payload[16] & !(WITH_HEADERS | WITH_TOPIC))?;
    let key_len = u16::from_le_bytes([payload[17], payload[18]]) as usize;
    let key = payload.get(PAYLOAD_HEADER..PAYLOAD_HEADER + key_len)?;
    let mut rest = &payload[PAYLOAD_HEADER + key_len..];
    let mut topic = None;
    if payload[16] & WITH_TOPIC != 0 {
        let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        topic = Some(std::str::from_utf8(rest.get(2..2 + len)?).ok()?);
        rest = &rest[2 + len..];
    }
    let mut headers: &[u8] = &[];
    if payload[16] & WITH_HEADERS != 0 {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        headers = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
    }
    Some(Stored {
        seq: u64_at(0),
        written_at_ms: u64_at(8),
        kind,
        key: std::str::from_utf8(key).ok()?,
        topic,
        headers,
        value: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &[u8]) -> Record {
        Record::new(Lane::OCCURRENCE, key.into(), value.to_vec())
    }

    /// Three records, seq 10..13, and where each starts.
    fn three() -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for (i, key) in ["a", "bb", "ccc"].iter().enumerate() {
            starts.push(buf.len());
            encode(&record(key, &[i as u8; 40]), 10 + i as u64, 7, &mut buf);
        }
        (buf, starts)
    }

    fn seqs(found: &[Found<'_>]) -> Vec<u64> {
        found
            .iter()
            .filter_map(|f| match f {
                Found::Record(_, s) => Some(s.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn records_read_back_as_written() {
        let (buf, _) = three();
        let found = scan(&buf);
        assert_eq!(seqs(&found), [10, 11, 12]);
        let Found::Record(range, stored) = &found[1] else {
            panic!("{found:?}")
        };
        assert_eq!(range.len(), encoded_len(&record("bb", &[1; 40])));
        assert_eq!(
            (stored.kind, stored.key, stored.value, stored.written_at_ms),
            (Lane::OCCURRENCE, "bb", &[1u8; 40][..], 7)
        );
    }

    #[test]
    fn a_record_s_own_headers_read_back_and_records_without_them_read_as_before() {
        let mut with = record("trace", b"otlp");
        with.headers = vec![
            ("inlet-token-id".into(), "t".into()),
            ("e".into(), "".into()),
        ];
        with.topic = Some("acme.spans".into());
        let mut buf = Vec::new();
        encode(&record("a", b"plain"), 1, 7, &mut buf);
        encode(&with, 2, 7, &mut buf);
        assert_eq!(
            buf.len(),
            encoded_len(&record("a", b"plain")) + encoded_len(&with)
        );
        let found = scan(&buf);
        let stored: Vec<_> = found
            .iter()
            .map(|f| match f {
                Found::Record(_, stored) => stored.to_record(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(stored[0].headers.is_empty());
        assert_eq!(
            (stored[0].key.as_str(), &stored[0].value[..]),
            ("a", &b"plain"[..])
        );
        assert_eq!(stored[1].headers, with.headers);
        assert_eq!(stored[1].topic.as_deref(), Some("acme.spans"));
        assert_eq!(stored[0].topic, None);
        assert_eq!(
            (stored[1].kind, &stored[1].value[..]),
            (Lane::OCCURRENCE, &b"otlp"[..])
        );
    }

    #[test]
    fn a_torn_tail_is_found_as_torn() {
        let (buf, starts) = three();
        for cut in [starts[2] + 3, starts[2] + HEADER + 5, buf.len() - 1] {
            let found = scan(&buf[..cut]);
            assert_eq!(seqs(&found), [10, 11], "cut at {cut}");
            // The torn record's range ends at its last byte that is not zero.
            assert!(
                matches!(found.last(), Some(Found::Torn(r)) if r.start == starts[2] && r.end <= cut),
                "cut at {cut}: {found:?}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_costs_only_its_record() {
        let (mut buf, starts) = three();
        buf[starts[1] + HEADER + 12] ^= 0x40;
        let found = scan(&buf);
        assert_eq!(seqs(&found), [10, 12]);
        assert_eq!(found[1], Found::Corrupt(starts[1]..starts[2]));
    }

    #[test]
    fn a_broken_length_is_resynchronised_past() {
        let (mut buf, starts) = three();
        buf[starts[0]..starts[0] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let found = scan(&buf);
        assert_eq!(seqs(&found), [11, 12]);
        assert_eq!(found[0], Found::Corrupt(0..starts[1]));
    }

    #[test]
    fn garbage_between_records_is_corrupt_and_garbage_at_the_end_too() {
        let (buf, starts) = three();
        let mut spliced = buf[..starts[1]].to_vec();
        spliced.extend_from_slice(&[0xAB; 100]);
        spliced.extend_from_slice(&buf[starts[1]..]);
        spliced.extend_from_slice(&[0xCD; 30]);
        let found = scan(&spliced);
        assert_eq!(seqs(&found), [10, 11, 12]);
        let corrupt: Vec<_> = found
            .iter()
            .filter(|f| matches!(f, Found::Corrupt(_)))
            .map(|f| f.range().len())
            .collect();
        assert_eq!(corrupt, [100, 30]);
    }

    #[test]
    fn zeros_after_the_records_end_the_log() {
        let (mut buf, starts) = three();
        let end = buf.len();
        buf.resize(end + 4096, 0);
        assert_eq!(seqs(&scan(&buf)), [10, 11, 12]);
        assert_eq!(scan(&buf).last().unwrap().range().end, end);
        // A write torn by a crash, in zero-filled space, is a torn tail.
        let mut torn = buf[..starts[2] + 20].to_vec();
        torn.resize(end + 4096, 0);
        let found = scan(&torn);
        assert_eq!(seqs(&found), [10, 11]);
        assert!(
            matches!(found.last(), Some(Found::Torn(r)) if r.start == starts[2]),
            "{found:?}"
        );
        assert_eq!(scan(&[0; 100]), []);
    }

    #[test]
    fn nothing_readable_is_all_corrupt() {
        assert_eq!(scan(&[0xFF; 64]), [Found::Corrupt(0..64)]);
        assert_eq!(scan(&[]), []);
    }
}
