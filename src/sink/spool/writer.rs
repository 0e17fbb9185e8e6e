//! The writer: the one thread that appends to the log, with group commit. It takes every
//! request waiting, writes all their records in one write, syncs once, and only then answers
//! them all; a request answered `Ok` is on stable storage (under `fsync=always`).
//!
//! The segment is zero-filled a little ahead of the records: a sync after an append that grows
//! the file must also commit the file system's journal (its new size), which costs several
//! times the sync of bytes written in place (measured in loadtest/RESULTS.md). So the writer
//! grows the file by [`ZERO_AHEAD`] at a time, and most syncs only write data.
//!
//! A failed write or sync leaves the tail unknown: the writer cuts the segment back to its last
//! synced length, answers the group `spool_unavailable`, and writes there again with the next
//! group, so inlet keeps serving once the disk recovers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::dir::{self, Segment};
use super::format;
use super::fs::SpoolFile;
use super::Shared;
use crate::config::SpoolFsync;
use crate::metrics;
use crate::sink::{Failure, Outcome, Record};

/// Bytes one group commit writes at most; more requests wait for the next one.
const GROUP_MAX_BYTES: usize = 16 << 20;
/// How far ahead of the records a segment is zero-filled (at most a segment's size).
const ZERO_AHEAD: u64 = 1 << 20;
/// A request that arrives within this of the last commit's end finds the writer under steady
/// load: its group gathers every request that arrives within [`COMMIT_DELAY`] of it before the
/// sync (PostgreSQL's `commit_delay`). A sync costs the writer some 90 µs of CPU whatever it
/// carries, so at a steady 1,000 requests/s a group of four costs a quarter of it per request,
/// for at most 3 ms more on the answer; an idle replica never waits.
const STEADY_LOAD: Duration = Duration::from_millis(2);
/// See [`STEADY_LOAD`].
const COMMIT_DELAY: Duration = Duration::from_millis(3);

/// One request's records and where to send its answer.
pub struct Append {
    pub records: Vec<Record>,
    pub answer: oneshot::Sender<Outcome>,
}

/// The writer's own state: the segment it appends to.
pub struct Writer {
    shared: Arc<Shared>,
    file: Box<dyn SpoolFile>,
    /// Bytes of the current segment known to be written (and, under `always`, synced).
    len: u64,
    /// Length of the segment file: zeros from `len` to here.
    zeroed: u64,
    /// Under `interval`: whether bytes were written since the last sync, and when it was.
    dirty: bool,
    last_sync: Instant,
    /// When the last group commit ended.
    last_commit: Instant,
}

impl Writer {
    /// A writer appending to the segment `file`, `len` bytes long.
    pub fn new(shared: Arc<Shared>, file: Box<dyn SpoolFile>, len: u64) -> Writer {
        Writer {
            shared,
            file,
            len,
            zeroed: len,
            dirty: false,
            last_sync: Instant::now(),
            last_commit: Instant::now(),
        }
    }

    /// Serves `appends` until every sender is gone.
    pub fn run(mut self, appends: Receiver<Append>) {
        let idle = match self.shared.options.fsync {
            SpoolFsync::Always => Duration::from_secs(3600),
            SpoolFsync::Interval(interval) => interval,
        };
        loop {
            let first = match appends.recv_timeout(idle) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let group = self.gather(first, &appends);
            self.commit(group);
            self.last_commit = Instant::now();
        }
        if self.dirty {
            let _ = self.file.sync_data();
        }
    }

    /// The group to commit: `first` and every request waiting (up to [`GROUP_MAX_BYTES`]);
    /// under steady load, with whatever arrives within [`COMMIT_DELAY`] of `first`.
    fn gather(&self, first: Append, appends: &Receiver<Append>) -> Vec<Append> {
        let mut group = vec![first];
        let mut bytes = 0;
        let gather_until =
            (self.last_commit.elapsed() < STEADY_LOAD).then(|| Instant::now() + COMMIT_DELAY);
        while bytes < GROUP_MAX_BYTES {
            let left = gather_until.map(|until| until.saturating_duration_since(Instant::now()));
            let next = match appends.try_recv() {
                Ok(next) => next,
                Err(_) => match left.filter(|left| !left.is_zero()) {
                    Some(left) => match appends.recv_timeout(left) {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                    None => break,
                },
            };
            bytes += next.records.iter().map(format::encoded_len).sum::<usize>();
            group.push(next);
        }
        group
    }

    /// Writes the group's records (those that fit), syncs, and answers every request.
    fn commit(&mut self, group: Vec<Append>) {
        let shared = Arc::clone(&self.shared);
        let mut buf = Vec::new();
        let mut taken = Vec::with_capacity(group.len());
        let mut next_seq = shared.next_seq.load(Ordering::Acquire);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let on_disk = shared.bytes.load(Ordering::Acquire);
        for append in group {
            let size: usize = append.records.iter().map(format::encoded_len).sum();
            if on_disk + (buf.len() + size) as u64 > shared.options.max_bytes {
                refuse(append, Failure::SpoolFull);
                continue;
            }
            for record in &append.records {
                format::encode(record, next_seq, now_ms, &mut buf);
                next_seq += 1;
            }
            taken.push(append);
        }
        if taken.is_empty() {
            return;
        }
        let records = next_seq - shared.next_seq.load(Ordering::Acquire);
        match self.write(&buf) {
            Ok(()) => {
                shared.appended(self.len, buf.len() as u64, next_seq, now_ms);
                ::metrics::histogram!(metrics::SPOOL_GROUP_COMMIT_RECORDS).record(records as f64);
                for append in taken {
                    let _ = append.answer.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "spool write failed: answering spool_unavailable");
                shared.writable.store(false, Ordering::Release);
                self.free_space();
                for append in taken {
                    refuse(append, Failure::SpoolUnavailable);
                }
            }
        }
    }

    /// Appends `buf` to the current segment (rolling to a new one first if it is full) and
    /// syncs as the fsync policy says; on failure cuts the segment back to what it held.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.len >= self.shared.options.segment_bytes {
            self.roll()?;
        }
        let result = self
            .zero_ahead(self.len + buf.len() as u64)
            .and_then(|()| self.file.write_all_at(buf, self.len))
            .and_then(|()| {
                self.dirty = true;
                match self.shared.options.fsync {
                    SpoolFsync::Always => self.sync(),
                    SpoolFsync::Interval(_) => {
                        self.sync_if_due();
                        Ok(())
                    }
                }
            });
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.shared.writable.store(true, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                // What the kernel holds past `len` is unknown after a failed write or sync:
                // cut it, so the next group is written (and read back) from a known place.
                let _ = self.file.set_len(self.len);
                self.zeroed = self.len;
                Err(error)
            }
        }
    }

    /// After a failed write: if everything in the writer's own segment was delivered, moves to
    /// a new one so that the old one can be deleted. (The reader deletes only segments the
    /// writer left; on a full disk, the space of a delivered current segment is needed too.)
    fn free_space(&mut self) {
        if self.len == 0 || !self.shared.all_acknowledged() {
            return;
        }
        match self.roll() {
            Ok(()) => self.shared.delete_acknowledged(),
            Err(error) => tracing::error!(%error, "cannot start a new spool segment"),
        }
    }

    /// Makes sure the file is zero-filled up to `end`, growing it [`ZERO_AHEAD`] past it.
    fn zero_ahead(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.zeroed {
            return Ok(());
        }
        let target = end + ZERO_AHEAD.min(self.shared.options.segment_bytes);
        let zeros = vec![0; (target - self.zeroed) as usize];
        self.file.write_all_at(&zeros, self.zeroed)?;
        self.zeroed = target;
        Ok(())
    }

    /// Starts a new segment at the next sequence number.
    fn roll(&mut self) -> std::io::Result<()> {
        let shared = &self.shared;
        let base = shared.next_seq.load(Ordering::Acquire);
        let file = dir::create_segment(&*shared.fs, &shared.dir, base)?;
        self.file = file;
        self.len = 0;
        self.zeroed = 0;
        self.dirty = false;
        shared
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Segment { base, len: 0 });
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        self.file.sync_data()?;
        ::metrics::histogram!(metrics::SPOOL_SYNC_DURATION).record(started.elapsed());
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Under `interval`: syncs if bytes are waiting and the interval has passed.
    fn sync_if_due(&mut self) {
        let SpoolFsync::Interval(interval) = self.shared.options.fsync else {
            return;
        };
        if self.dirty && self.last_sync.elapsed() >= interval {
            if let Err(error) = self.sync() {
                // The bytes stay in the page cache (a process crash loses nothing); the next
                // sync tries again.
                tracing::error!(%error, "spool sync failed");
                self.shared.writable.store(false, Ordering::Release);
            }
        }
    }
}

/// Answers `append` with `failure`, counted by reason.
fn refuse(append: Append, failure: Failure) {
    ::metrics::counter!(metrics::SPOOL_REFUSALS, "reason" => failure.as_str()).increment(1);
    let _ = append.answer.send(Err(failure));
}
