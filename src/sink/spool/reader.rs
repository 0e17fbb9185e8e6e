//! The reader: the thread that delivers the log to the sink it feeds (Kafka, in production) in
//! arrival order and moves the checkpoint forward over what the broker acknowledged.
//!
//! It produces a window of records at a time through that sink, waiting for the
//! acknowledgements (the idempotent producer keeps each partition's order within a window).
//! The checkpoint moves over the acknowledged prefix of the window only: past the first record
//! whose delivery failed, everything is sent again, in order, after a pause. So a record is
//! never skipped, and a crash duplicates at most the window in flight. A record the broker
//! refuses for good (too large) would block the log forever: it is appended to the `rejected`
//! file, counted, and passed over.
//!
//! Before a segment file is deleted the checkpoint is written durably (its slot written in
//! place and synced, the directory synced), so a deleted record is always an acknowledged one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::dir::{self, Segment};
use super::format::{self, Found};
use super::fs::Open;
use super::Shared;
use crate::metrics;
use crate::sink::{Failure, Record, Sink};

/// Records produced at once, at most.
const WINDOW: usize = 4096;
/// The smallest window, after failures.
const MIN_WINDOW: usize = 64;
/// Bytes read from a segment at once (more only for one record larger than this): what the
/// reader holds in memory when it is behind.
const READ_CHUNK: u64 = 4 << 20;
/// Pause before a window whose delivery failed is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long the reader sleeps when it has caught up, unless woken by the writer.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Once woken, how long the reader lets more records gather before it reads: a read and a
/// window per few requests rather than per request, for as long as the Kafka sink's own
/// linger (the events were answered already; this only delays their arrival in Kafka).
const GATHER: Duration = Duration::from_millis(5);

/// A record read from the log, ready to produce.
struct Pending {
    seq: u64,
    written_at_ms: u64,
    record: Record,
}

/// The reader's place in the log: the segment it reads and the offset in it.
pub struct Reader {
    shared: Arc<Shared>,
    /// Where the records go.
    sink: Arc<dyn Sink>,
    runtime: tokio::runtime::Runtime,
    base: u64,
    offset: u64,
    /// Records of the next window.
    window: usize,
    /// Bytes of the next read.
    chunk: u64,
}

impl Reader {
    /// A reader from the start of the oldest segment.
    pub fn new(shared: Arc<Shared>, sink: Arc<dyn Sink>) -> std::io::Result<Reader> {
        let base = shared.lock_segments().first().map_or(0, |s| s.base);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        Ok(Reader {
            shared,
            sink,
            runtime,
            base,
            offset: 0,
            window: WINDOW,
            chunk: READ_CHUNK,
        })
    }

    /// Delivers until the spool is stopped.
    pub fn run(mut self) {
        while !self.shared.stopping() {
            match self.next_records() {
                Some(pending) if !pending.is_empty() => {
                    if !self.deliver(&pending) {
                        return;
                    }
                }
                Some(_) => {}
                None => {
                    self.shared.wait_for_records(IDLE_WAIT);
                    std::thread::sleep(GATHER);
                }
            }
        }
    }

    /// The unacknowledged records between the reader's place and the end of what is
    /// written; `None` when there are none yet. Moves on to the next segment at the end of one.
    fn next_records(&mut self) -> Option<Vec<Pending>> {
        let (segment, next) = {
            let segments = self.shared.lock_segments();
            let i = segments.iter().position(|s| s.base >= self.base)?;
            (segments[i], segments.get(i + 1).copied())
        };
        if segment.base != self.base {
            // Ours was deleted (acknowledged): start at the next one.
            self.base = segment.base;
            self.offset = 0;
        }
        if self.offset >= segment.len {
            let next = next?;
            self.base = next.base;
            self.offset = 0;
            return Some(Vec::new());
        }
        let left = segment.len - self.offset;
        let bytes = self.read(segment, left.min(self.chunk))?;
        let whole = bytes.len() as u64 == left;
        let (pending, consumed) = self.parse(segment, &bytes, whole);
        if consumed == 0 && !whole {
            // One record larger than the chunk: read more of it next time.
            self.chunk *= 2;
        } else {
            self.chunk = READ_CHUNK;
        }
        self.offset += consumed as u64;
        Some(pending)
    }

    /// `len` bytes of `segment` from the reader's offset.
    fn read(&self, segment: Segment, len: u64) -> Option<Vec<u8>> {
        let path = dir::segment_path(&self.shared.dir, segment.base);
        let mut bytes = vec![0; len as usize];
        let result = self
            .shared
            .fs
            .open(&path, Open::Read)
            .and_then(|f| f.read_exact_at(&mut bytes, self.offset));
        match result {
            Ok(()) => Some(bytes),
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot read the spool");
                std::thread::sleep(RETRY_PAUSE);
                None
            }
        }
    }

    /// The records of `bytes` not yet acknowledged, and how many bytes they and what was set
    /// aside cover; unreadable bytes (damaged since they were written) are set aside and
    /// counted. Unless the bytes run to the end of what is written (`whole`), what follows the
    /// last whole record may be one cut by the end of the read: it is left for the next.
    fn parse(&self, segment: Segment, bytes: &[u8], whole: bool) -> (Vec<Pending>, usize) {
        let acked = self.shared.acked.load(Ordering::Acquire);
        let mut found = format::scan(bytes);
        while !whole && matches!(found.last(), Some(Found::Corrupt(_) | Found::Torn(_))) {
            found.pop();
        }
        let consumed = if whole {
            bytes.len()
        } else {
            found.last().map_or(0, |f| f.range().end)
        };
        let mut pending = Vec::new();
        for found in found {
            match found {
                Found::Record(_, stored) if stored.seq >= acked => pending.push(Pending {
                    seq: stored.seq,
                    written_at_ms: stored.written_at_ms,
                    record: stored.to_record(),
                }),
                Found::Record(..) => {}
                Found::Corrupt(range) | Found::Torn(range) => {
                    let name = format!("{:020}.seg", segment.base);
                    let offset = self.offset as usize + range.start;
                    tracing::error!(segment = %name, offset, bytes = range.len(),
                        "spool bytes damaged after they were written: moved into corrupt/");
                    let damaged = &bytes[range.clone()];
                    dir::set_aside_bytes(
                        &*self.shared.fs,
                        &self.shared.dir,
                        &name,
                        offset,
                        damaged,
                    );
                    ::metrics::counter!(metrics::SPOOL_CORRUPT_BYTES).increment(range.len() as u64);
                }
            }
        }
        (pending, consumed)
    }

    /// Delivers `pending` a window at a time until every record is acknowledged or set aside;
    /// false if the spool stopped first. A window that fails is sent again from its first
    /// unacknowledged record, smaller (so a slow broker still sees progress: the window halves
    /// down to [`MIN_WINDOW`]), and grows back as windows succeed.
    fn deliver(&mut self, pending: &[Pending]) -> bool {
        let mut rest = pending;
        while !rest.is_empty() {
            if self.shared.stopping() {
                return false;
            }
            let window = &rest[..self.window.min(rest.len())];
            let (done, failure) = self.send(window);
            rest = &rest[done..];
            match failure {
                None => self.window = (self.window * 2).min(WINDOW),
                Some(failure) => {
                    tracing::warn!(
                        failure = failure.as_str(),
                        waiting = rest.len(),
                        "spool delivery failed: sending again from the first unacknowledged record"
                    );
                    self.shared.delivery_failed();
                    self.window = (self.window / 2).max(MIN_WINDOW);
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        true
    }

    /// Produces `window` once and moves the checkpoint over its acknowledged prefix; how many
    /// records that prefix holds, and why the record after it failed.
    fn send(&self, window: &[Pending]) -> (usize, Option<Failure>) {
        let records = window.iter().map(|p| p.record.clone()).collect();
        let outcomes = self.runtime.block_on(self.sink.send(records, true));
        let mut failed = None;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(()) => {}
                Err(Failure::TooLarge) => self.reject(&window[i]),
                Err(failure) => {
                    failed = Some((i, failure));
                    break;
                }
            }
        }
        let done = failed.map_or(window.len(), |(at, _)| at);
        if done > 0 {
            // The first record still waiting, or (all acknowledged) the last one's successor;
            // its write time, or the last acknowledged one's, for the age.
            let (checkpoint, oldest_ms) = match window.get(done) {
                Some(p) => (p.seq, p.written_at_ms),
                None => (window[done - 1].seq + 1, window[done - 1].written_at_ms),
            };
            self.shared.acknowledged(checkpoint, done, oldest_ms);
        }
        (done, failed.map(|(_, failure)| failure))
    }

    /// Keeps a record the broker refused for good in the `rejected` file, so it is neither
    /// lost silently nor in the way of the records after it.
    fn reject(&self, pending: &Pending) {
        let path = self.shared.dir.join(dir::REJECTED);
        let mut buf = Vec::new();
        format::encode(
            &pending.record,
            pending.seq,
            pending.written_at_ms,
            &mut buf,
        );
        if let Err(error) = self.shared.fs.append(&path, &buf) {
            tracing::error!(%error, path = %path.display(), "cannot keep a rejected record");
        }
        tracing::warn!(
            seq = pending.seq,
            "the broker refused a spooled record as too large: kept in `rejected`"
        );
        ::metrics::counter!(metrics::SPOOL_REJECTED).increment(1);
    }
}
