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

use bytes::BytesMut;
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
pub struct Chunker {
    /// The envelope every chunk copies, its recording's `data` empty.
    template: Envelope,
    key: String,
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
        let validated = crate::event::Validated {
            client_id: Some(String::new()),
            body: Event::Recording(recording),
        };
        Chunker {
            template: crate::event::envelope(validated, meta),
            key,
            index: 0,
            size: 0,
            digest: Sha256::new(),
        }
    }

    /// The recording's id.
    pub fn recording_id(&self) -> &str {
        &self.recording().recording_id
    }

    fn recording(&self) -> &Recording {
        match &self.template.event {
            Some(Event::Recording(recording)) => recording,
            _ => unreachable!("a chunker's template holds a recording"),
        }
    }

    /// The next chunk, of `data`.
    pub fn chunk(&mut self, data: &[u8]) -> Record {
        self.digest.update(data);
        self.size += data.len() as u64;
        self.record(data, |_| {})
    }

    /// The last chunk, of `data` (which may be empty): it closes the recording.
    pub fn last(&mut self, data: &[u8]) -> (Record, Receipt) {
        self.digest.update(data);
        self.size += data.len() as u64;
        let receipt = Receipt {
            recording_id: self.recording_id().to_owned(),
            chunks: self.index + 1,
            bytes: self.size,
            sha256: hex::encode(self.digest.clone().finalize()),
        };
        let record = self.record(data, |recording| {
            recording.last = true;
            recording.count = receipt.chunks;
            recording.size = receipt.bytes;
            recording.sha256 = receipt.sha256.clone();
        });
        (record, receipt)
    }

    fn record(&mut self, data: &[u8], close: impl FnOnce(&mut Recording)) -> Record {
        let mut envelope = self.template.clone();
        let Some(Event::Recording(recording)) = &mut envelope.event else {
            unreachable!("a chunker's template holds a recording")
        };
        envelope.event_id = format!("{}/{}", recording.recording_id, self.index);
        recording.index = self.index;
        recording.data = data.to_vec();
        if self.index > 0 {
            recording.headers_json = String::new();
        }
        close(recording);
        self.index += 1;
        Record {
            kind: Lane::RECORDING,
            key: self.key.clone(),
            value: envelope.encode_to_vec(),
        }
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
    /// What has arrived and is not yet a chunk.
    buffer: BytesMut,
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
            buffer: BytesMut::new(),
            waiting: Vec::new(),
            flight: None,
            failed: None,
            sink,
            wait_for_ack,
        }
    }

    /// The recording's id.
    pub fn recording_id(&self) -> &str {
        self.chunker.recording_id()
    }

    /// Takes the next piece of the payload. A full chunk is cut once a byte follows it, so
    /// that the last chunk, cut by [`finish`](Upload::finish), is never empty unless the
    /// payload is.
    pub fn write(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buffer.extend_from_slice(data);
        while self.buffer.len() > self.chunk_bytes {
            let chunk = self.buffer.split_to(self.chunk_bytes);
            let record = self.chunker.chunk(&chunk);
            self.waiting.push(record);
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
        let (last, receipt) = self.chunker.last(&self.buffer);
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
