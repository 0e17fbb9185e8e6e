//! Session recordings: a payload of up to `recordings_max_bytes`, cut into ordered chunks of at
//! most `recordings_chunk_bytes`, each its own Kafka message on the session's partition
//! (`inlet.v1.Recording`, in the README's "Session recordings").
//!
//! [`Chunker`] makes one recording's chunk records: every chunk names the recording and its
//! place in it, and the last one (which may hold no data) says how many chunks, how many bytes
//! and which SHA-256 the whole has, known only once the payload has ended. [`Upload`] produces
//! a payload as it arrives (the native route streams its body into it): the chunks cut so far
//! are handed to the sink a few at a time, in order, and the writer is told to stop writing
//! while [`WINDOW`] chunks wait, so an upload holds a few chunks in memory whatever its size,
//! and a slow broker slows the client (TCP pushes back) instead of filling inlet's memory. An
//! SDK's recording arrives whole in its request body and is chunked by [`chunks`].

use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::event::Meta;
use crate::lane::Lane;
use crate::proto::{envelope::Event, Envelope, Recording};
use crate::sink::{BoxFuture, Failure, Outcome, Record, Sink};

/// How many cut chunks an upload lets wait for the sink before its writer must stop: the
/// chunks handed over in one go while the previous ones are delivered. With the default 512
/// KiB chunks an upload holds at most 2 MiB waiting plus what is in flight.
pub const WINDOW: usize = 4;

/// Cuts one recording into chunk records: each chunk's envelope carries the gateway's metadata,
/// the recording's names and its place; the last, the whole payload's size and digest.
///
/// A chunk's value is written once: [`open`](Chunker::open) encodes everything before its
/// data (the envelope, then the recording, its `data` field last, as protobuf allows), the
/// caller appends the data as it arrives, and [`close`](Chunker::close) makes it a record, so
/// a chunk's bytes are copied into its message once.
pub struct Chunker {
    /// The envelope every chunk copies, without its event.
    envelope: Envelope,
    /// The recording every chunk copies, without its data.
    recording: Recording,
    key: String,
    /// The token's topic for recordings, when its entry names one.
    topic: Option<std::sync::Arc<str>>,
    index: u32,
    size: u64,
    digest: Sha256,
}

impl Chunker {
    /// A new recording of `recording` (its session, type, media type, encoding and headers;
    /// its id, place and data are the chunker's) from the request `meta` describes.
    pub fn new(meta: &Meta, mut recording: Recording) -> Chunker {
        recording.recording_id = crate::id::uuid_v7().hyphenated().to_string();
        recording.data = Vec::new();
        let key = recording.session_id.clone();
        let mut envelope = crate::event::envelope(
            crate::event::Validated {
                client_id: Some(String::new()),
                body: Event::Recording(Recording::default()),
            },
            meta,
        );
        envelope.event = None;
        Chunker {
            envelope,
            recording,
            key,
            topic: meta.topic.clone(),
            index: 0,
            size: 0,
            digest: Sha256::new(),
        }
    }

    /// The recording's id.
    pub fn recording_id(&self) -> &str {
        &self.recording.recording_id
    }

    /// The next chunk's envelope (without its event) and recording (without its data).
    fn parts(&self) -> (Envelope, Recording) {
        let mut envelope = self.envelope.clone();
        envelope.event_id = format!("{}/{}", self.recording.recording_id, self.index);
        let mut recording = self.recording.clone();
        recording.index = self.index;
        if self.index > 0 {
            recording.headers_json = String::new();
        }
        (envelope, recording)
    }

    /// The next chunk's value up to its data, of `len` bytes, which the caller appends (and
    /// hands to [`hash`](Chunker::hash)) before [`close`](Chunker::close).
    pub fn open(&self, len: usize) -> Vec<u8> {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
        let (envelope, recording) = self.parts();
        let data = key_len(4) + encoded_len_varint(len as u64) + len;
        let inner = recording.encoded_len() + data;
        let total = envelope.encoded_len() + key_len(13) + encoded_len_varint(inner as u64) + inner;
        let mut value = Vec::with_capacity(total);
        envelope.encode_raw(&mut value);
        encode_key(13, WireType::LengthDelimited, &mut value);
        encode_varint(inner as u64, &mut value);
        recording.encode_raw(&mut value);
        encode_key(4, WireType::LengthDelimited, &mut value);
        encode_varint(len as u64, &mut value);
        value
    }

    /// Takes `data` into the recording's size and digest.
    pub fn hash(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.size += data.len() as u64;
    }

    /// The chunk whose value was [`open`](Chunker::open)ed and filled.
    pub fn close(&mut self, value: Vec<u8>) -> Record {
        debug_assert_eq!(value.len(), value.capacity(), "a chunk filled as opened");
        self.index += 1;
        let mut record = Record::new(Lane::RECORDING, self.key.clone(), value);
        record.topic = self.topic.clone();
        record
    }

    /// The next chunk, of `data`.
    pub fn chunk(&mut self, data: &[u8]) -> Record {
        let mut value = self.open(data.len());
        value.extend_from_slice(data);
        self.hash(data);
        self.close(value)
    }

    /// The last chunk, of `data` (which may be empty): it closes the recording.
    pub fn last(&mut self, data: &[u8]) -> (Record, Receipt) {
        self.hash(data);
        self.end(data)
    }

    /// [`last`](Chunker::last) of `data` whose [`hash`](Chunker::hash) was taken already.
    fn end(&mut self, data: &[u8]) -> (Record, Receipt) {
        let receipt = Receipt {
            recording_id: self.recording_id().to_owned(),
            chunks: self.index + 1,
            bytes: self.size,
            sha256: hex::encode(self.digest.clone().finalize()),
        };
        let (mut envelope, mut recording) = self.parts();
        recording.data = data.to_vec();
        recording.last = true;
        recording.count = receipt.chunks;
        recording.size = receipt.bytes;
        recording.sha256 = receipt.sha256.clone();
        envelope.event = Some(Event::Recording(recording));
        self.index += 1;
        let mut record = Record::new(Lane::RECORDING, self.key.clone(), envelope.encode_to_vec());
        record.topic = self.topic.clone();
        (record, receipt)
    }
}

/// What a complete recording came to: what its last chunk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub recording_id: String,
    pub chunks: u32,
    pub bytes: u64,
    pub sha256: String,
}

/// A whole payload's chunk records, in order: `recording.data` cut into chunks of at most
/// `chunk_bytes` (the last one closing it).
pub fn chunks(meta: &Meta, mut recording: Recording, chunk_bytes: usize) -> Vec<Record> {
    let data = std::mem::take(&mut recording.data);
    let mut chunker = Chunker::new(meta, recording);
    let mut pieces = data.chunks(chunk_bytes.max(1)).peekable();
    let mut records = Vec::with_capacity(data.len() / chunk_bytes.max(1) + 1);
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() {
            records.push(chunker.last(piece).0);
            return records;
        }
        records.push(chunker.chunk(piece));
    }
    records.push(chunker.last(&[]).0);
    records
}

/// One recording produced as its payload arrives: [`write`](Upload::write) what arrives, and
/// [`finish`](Upload::finish) at its end.
///
/// The chunks cut are handed to the sink in order: all those waiting in one call, the next
/// call once the previous one is answered (acknowledged under `ack`, on disk under `spool`,
/// queued under `enqueue`). While [`WINDOW`] chunks wait, [`full`](Upload::full) says so and
/// the writer waits for [`landed`](Upload::landed) before it writes more. The first chunk the
/// sink fails fails the upload: nothing more is handed over, and the chunks already produced
/// stay an incomplete recording (no last chunk) that consumers discard.
pub struct Upload {
    chunker: Chunker,
    chunk_bytes: usize,
    /// The chunk being filled: its value so far, and how much data it holds.
    filling: Option<(Vec<u8>, usize)>,
    /// Chunks cut and not yet handed over.
    waiting: Vec<Record>,
    /// The chunks handed over and not yet answered.
    flight: Option<BoxFuture<'static, Vec<Outcome>>>,
    failed: Option<Failure>,
    sink: Arc<dyn Sink>,
    wait_for_ack: bool,
}

impl Upload {
    /// An upload of the recording `chunker` starts, in chunks of `chunk_bytes`, to `sink`.
    pub fn new(
        chunker: Chunker,
        chunk_bytes: usize,
        sink: Arc<dyn Sink>,
        wait_for_ack: bool,
    ) -> Upload {
        Upload {
            chunker,
            chunk_bytes: chunk_bytes.max(1),
            filling: None,
            waiting: Vec::new(),
            flight: None,
            failed: None,
            sink,
            wait_for_ack,
        }
    }

    /// Takes the next piece of the payload, straight into the chunk being filled; a full
    /// chunk is handed over (so a payload of whole chunks ends with an empty last one).
    pub fn write(&mut self, mut data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        while !data.is_empty() {
            let chunk_bytes = self.chunk_bytes;
            let (value, filled) =
                (self.filling).get_or_insert_with(|| (self.chunker.open(chunk_bytes), 0));
            let (now, later) = data.split_at((chunk_bytes - *filled).min(data.len()));
            value.extend_from_slice(now);
            *filled += now.len();
            self.chunker.hash(now);
            if *filled == chunk_bytes {
                let (value, _) = self.filling.take().expect("filling");
                let record = self.chunker.close(value);
                self.waiting.push(record);
            }
            data = later;
        }
        self.send_waiting();
    }

    /// Whether the writer must wait for [`landed`](Upload::landed) before writing more.
    pub fn full(&self) -> bool {
        self.waiting.len() >= WINDOW && self.flight.is_some()
    }

    /// Whether chunks are with the sink, unanswered.
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// Why the upload failed, once it has.
    pub fn failed(&self) -> Option<Failure> {
        self.failed
    }

    /// Waits for the chunks with the sink to be answered and hands over those waiting. Never
    /// resolves when none are with the sink. Cancel-safe: the call may be dropped and made
    /// again.
    pub async fn landed(&mut self) {
        let Some(flight) = self.flight.as_mut() else {
            return std::future::pending().await;
        };
        let outcomes = flight.await;
        self.flight = None;
        if let Some(failure) = outcomes.into_iter().find_map(Result::err) {
            self.failed.get_or_insert(failure);
            self.waiting.clear();
        }
        self.send_waiting();
    }

    /// Hands the waiting chunks to the sink, when none are there already.
    fn send_waiting(&mut self) {
        if self.flight.is_some() || self.waiting.is_empty() || self.failed.is_some() {
            return;
        }
        let records = std::mem::take(&mut self.waiting);
        let (sink, wait) = (Arc::clone(&self.sink), self.wait_for_ack);
        self.flight = Some(Box::pin(async move { sink.send(records, wait).await }));
    }

    /// Closes the recording with its last chunk and waits until every chunk is answered: the
    /// recording's receipt, or the first failure.
    pub async fn finish(mut self) -> Result<Receipt, Failure> {
        if let Some(failure) = self.failed {
            return Err(failure);
        }
        // The data of the chunk being filled, if any, goes into the last one (which says how
        // many chunks, bytes and which digest): its hash is taken already.
        let (value, filled) = self.filling.take().unwrap_or_default();
        let (last, receipt) = self.chunker.end(&value[value.len() - filled..]);
        self.waiting.push(last);
        self.send_waiting();
        while self.flight.is_some() {
            self.landed().await;
        }
        match self.failed {
            Some(failure) => Err(failure),
            None => Ok(receipt),
        }
    }
}
