//! The durable spool (`INLET_DELIVERY=spool`): a [`Sink`] that answers once a request's events
//! are on local disk, and delivers them to Kafka from there, so inlet keeps accepting through
//! a broker outage of hours and loses nothing to a crash.
//!
//! Write-through: every event goes through the log, so a key's spooled and live events can
//! never overtake each other. The parts: [`format`] (a record on disk, and the scan that reads
//! and resynchronises), [`dir`] (the directory's files: lock, checkpoint, segments, and the
//! start-up repair), [`writer`] (the one thread that appends, with group commit),
//! [`reader`] (the thread that produces from the log through the sink it feeds, Kafka in
//! production, and moves the checkpoint) and [`fs`] (the seam through which they reach the
//! disk, so that a full disk, I/O errors and torn writes are tested without root). This file
//! holds what they share and the sink itself.
//!
//! The log is a directory of segment files, each named by the sequence number of its first
//! record, as Kafka's own log is; a segment is deleted whole once every record in it was
//! acknowledged, after the checkpoint saying so was synced.

mod dir;
mod format;
mod fs;
pub mod progress;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::oneshot;

use super::{BoxFuture, Failure, Outcome, Record, Sink};
use crate::config::{SpoolConfig, SpoolFsync};
use crate::metrics;
use dir::Segment;
use fs::{Disk, Filesystem, SpoolFile};
use writer::{Append, Writer};

/// Readiness turns 503 once the spool is this full (a fraction of `spool_max_bytes`), so load
/// balancers send traffic elsewhere before requests get `spool_full`.
const READY_BELOW: f64 = 0.9;
/// Segment files are a sixteenth of `spool_max_bytes` (so whole-segment deletion frees space
/// in small steps), within these bounds.
const SEGMENT_BYTES: (u64, u64) = (64 << 10, 64 << 20);
/// How often the gauges (size, records, age of the oldest record) are published.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);
/// How often a replica logs a backlog's progress, and how far behind Kafka its oldest record
/// must be to count as one.
const BACKLOG_LOG_PERIOD: Duration = Duration::from_secs(10);

/// How the spool is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// Disk the segments may take, in bytes.
    pub max_bytes: u64,
    /// When the log is synced.
    pub fsync: SpoolFsync,
    /// Size past which the writer starts a new segment.
    pub segment_bytes: u64,
}

impl Options {
    /// The options of the spool `config` sets up.
    pub fn new(config: &SpoolConfig) -> Options {
        Options {
            dir: config.dir.clone(),
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            segment_bytes: (config.max_bytes / 16).clamp(SEGMENT_BYTES.0, SEGMENT_BYTES.1),
        }
    }
}

/// What the writer, the reader and the sink share.
struct Shared {
    /// How the spool reaches the disk: [`Disk`], but in tests.
    fs: Arc<dyn Filesystem>,
    dir: PathBuf,
    options: Options,
    /// The segments on disk, oldest first; the last is the writer's, with its written length.
    segments: Mutex<Vec<Segment>>,
    /// Signalled (with `segments`) when records were appended.
    appended: Condvar,
    /// The sequence number the next record gets: every record below it is written.
    next_seq: AtomicU64,
    /// The checkpoint: every record below it was acknowledged.
    acked: AtomicU64,
    /// The checkpoint file; its lock serialises checkpoint writes (the reader's, the writer's
    /// after a roll, and the last one of `close`).
    checkpoint: Mutex<dir::Checkpoint>,
    /// Records written and not yet acknowledged.
    records: AtomicU64,
    /// Records acknowledged since the spool was opened.
    delivered: AtomicU64,
    /// Bytes of the segment files.
    bytes: AtomicU64,
    /// Write time (ms since the epoch) of the oldest record not acknowledged; 0 when none.
    oldest_ms: AtomicU64,
    /// Whether the last write or sync succeeded.
    writable: AtomicBool,
    /// No new requests are taken (shutdown).
    closed: AtomicBool,
    /// The reader stops (shutdown, or the sink dropped).
    stopping: AtomicBool,
    /// Windows whose delivery failed (and were sent again).
    delivery_failures: AtomicU64,
}

impl Shared {
    fn lock_segments(&self) -> MutexGuard<'_, Vec<Segment>> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for the writer to append.
    fn wait_for_records(&self, timeout: Duration) {
        let segments = self.lock_segments();
        let _ = self.appended.wait_timeout(segments, timeout);
    }

    /// The writer appended `added` bytes (records up to `next_seq`, written at `written_ms`);
    /// its segment is now `segment_len` long.
    fn appended(&self, segment_len: u64, added: u64, next_seq: u64, written_ms: u64) {
        let mut segments = self.lock_segments();
        if let Some(last) = segments.last_mut() {
            last.len = segment_len;
        }
        let previous = self.next_seq.swap(next_seq, Ordering::AcqRel);
        self.records
            .fetch_add(next_seq - previous, Ordering::AcqRel);
        self.bytes.fetch_add(added, Ordering::AcqRel);
        let _ = self
            .oldest_ms
            .compare_exchange(0, written_ms, Ordering::AcqRel, Ordering::Relaxed);
        drop(segments);
        self.appended.notify_all();
    }

    /// The broker acknowledged `delivered` more records: every record below `checkpoint` is
    /// delivered; the oldest one left was written at `oldest_ms`. Writes the checkpoint, and
    /// deletes the segments now wholly acknowledged (after syncing it).
    fn acknowledged(&self, checkpoint: u64, delivered: usize, oldest_ms: u64) {
        self.acked.fetch_max(checkpoint, Ordering::AcqRel);
        let left = self.records.fetch_sub(delivered as u64, Ordering::AcqRel) - delivered as u64;
        self.oldest_ms
            .store(if left == 0 { 0 } else { oldest_ms }, Ordering::Release);
        self.delivered.fetch_add(delivered as u64, Ordering::AcqRel);
        ::metrics::counter!(metrics::SPOOL_DELIVERED).increment(delivered as u64);
        ::metrics::histogram!(metrics::SPOOL_REPLAY_LAG)
            .record(now_ms().saturating_sub(oldest_ms) as f64 / 1000.0);
        self.delete_acknowledged();
    }

    /// Writes the checkpoint, and deletes the segments wholly acknowledged (each but the
    /// writer's, once the next one starts at or below the checkpoint), after syncing it.
    fn delete_acknowledged(&self) {
        let mut file = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        let checkpoint = self.acked.load(Ordering::Acquire);
        let deletable: Vec<Segment> = {
            let segments = self.lock_segments();
            segments
                .windows(2)
                .take_while(|pair| pair[1].base <= checkpoint)
                .map(|pair| pair[0])
                .collect()
        };
        if let Err(error) = file.write(checkpoint, !deletable.is_empty()) {
            tracing::error!(%error, "cannot write the spool checkpoint");
            return;
        }
        for segment in deletable {
            self.delete(segment);
        }
    }

    /// Whether every record written was acknowledged.
    fn all_acknowledged(&self) -> bool {
        self.acked.load(Ordering::Acquire) >= self.next_seq.load(Ordering::Acquire)
    }

    /// Deletes an acknowledged segment.
    fn delete(&self, segment: Segment) {
        let path = dir::segment_path(&self.dir, segment.base);
        if let Err(error) = self.fs.remove_file(&path) {
            tracing::error!(%error, path = %path.display(), "cannot delete a delivered segment");
            return;
        }
        self.lock_segments().retain(|s| s.base != segment.base);
        self.bytes.fetch_sub(segment.len, Ordering::AcqRel);
    }

    /// Writes the checkpoint durably (at shutdown).
    fn sync_checkpoint(&self) {
        let mut file = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        let acked = self.acked.load(Ordering::Acquire);
        if let Err(error) = file.write(acked, true) {
            tracing::error!(%error, "cannot write the spool checkpoint");
        }
    }

    fn delivery_failed(&self) {
        self.delivery_failures.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the spool takes writes and is under [`READY_BELOW`] full.
    fn ready(&self) -> bool {
        let full = self.bytes.load(Ordering::Acquire) as f64 / self.options.max_bytes as f64;
        self.writable.load(Ordering::Acquire) && full < READY_BELOW
    }

    fn publish_gauges(&self) {
        let oldest = self.oldest_ms.load(Ordering::Acquire);
        let age = if oldest == 0 {
            0.0
        } else {
            now_ms().saturating_sub(oldest) as f64 / 1000.0
        };
        ::metrics::gauge!(metrics::SPOOL_BYTES).set(self.bytes.load(Ordering::Acquire) as f64);
        ::metrics::gauge!(metrics::SPOOL_MAX_BYTES).set(self.options.max_bytes as f64);
        ::metrics::gauge!(metrics::SPOOL_RECORDS).set(self.records.load(Ordering::Acquire) as f64);
        ::metrics::gauge!(metrics::SPOOL_OLDEST_AGE).set(age);
        ::metrics::gauge!(metrics::SPOOL_WRITABLE).set(f64::from(u8::from(self.ready())));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The spool sink.
pub struct SpoolSink {
    shared: Arc<Shared>,
    /// The sink the reader delivers to.
    sink: Arc<dyn Sink>,
    appends: Sender<Append>,
    /// Events handed to the writer and not yet answered.
    waiting: Arc<AtomicUsize>,
    /// Held for as long as the sink lives: one process per directory.
    _lock: Box<dyn SpoolFile>,
}

impl SpoolSink {
    /// Opens (and repairs) the spool `options` names, and starts its writer and its reader,
    /// which delivers to `sink` (the Kafka sink, in production). Fails if another process
    /// holds the directory, or the operating system refuses it.
    pub fn open(options: Options, sink: Arc<dyn Sink>) -> anyhow::Result<SpoolSink> {
        SpoolSink::open_with(options, sink, Arc::new(Disk))
    }

    /// [`SpoolSink::open`], reaching the disk through `fs`.
    fn open_with(
        options: Options,
        sink: Arc<dyn Sink>,
        fs: Arc<dyn Filesystem>,
    ) -> anyhow::Result<SpoolSink> {
        let dir = options.dir.clone();
        fs.create_dir_all(&dir)
            .with_context(|| format!("spool_dir: cannot create {}", dir.display()))?;
        let lock = dir::lock(&*fs, &dir)?;
        let recovered = dir::recover(&*fs, &dir).context("spool_dir")?;
        ::metrics::counter!(metrics::SPOOL_CORRUPT_BYTES).increment(recovered.corrupt_bytes);
        tracing::info!(dir = %dir.display(), records = recovered.records,
            corrupt_bytes = recovered.corrupt_bytes, "spool opened");
        let file = dir::create_segment(&*fs, &dir, recovered.next_seq)
            .with_context(|| format!("spool_dir: cannot create a segment in {}", dir.display()))?;
        let mut segments = recovered.segments;
        segments.push(Segment {
            base: recovered.next_seq,
            len: 0,
        });
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(segments.iter().map(|s| s.len).sum()),
            segments: Mutex::new(segments),
            appended: Condvar::new(),
            next_seq: AtomicU64::new(recovered.next_seq),
            acked: AtomicU64::new(recovered.acked),
            checkpoint: Mutex::new(recovered.checkpoint),
            records: AtomicU64::new(recovered.records),
            delivered: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(recovered.oldest_ms.unwrap_or(0)),
            writable: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            delivery_failures: AtomicU64::new(0),
            fs,
            dir,
            options,
        });
        let (appends, queue) = mpsc::channel();
        let writer = Writer::new(Arc::clone(&shared), file, 0);
        let reader = reader::Reader::new(Arc::clone(&shared), Arc::clone(&sink))?;
        spawn("inlet-spool-writer", move || writer.run(queue))?;
        spawn("inlet-spool-reader", move || reader.run())?;
        let weak = Arc::downgrade(&shared);
        spawn("inlet-spool-gauges", move || publish_gauges(weak))?;
        Ok(SpoolSink {
            shared,
            sink,
            appends,
            waiting: Arc::new(AtomicUsize::new(0)),
            _lock: lock,
        })
    }

    /// Records in the spool not yet acknowledged by the broker.
    pub fn records(&self) -> u64 {
        self.shared.records.load(Ordering::Acquire)
    }

    /// Records the broker acknowledged since the spool was opened.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Acquire)
    }

    /// How many times a window's delivery failed (and was retried) since the spool was opened.
    pub fn delivery_failures(&self) -> u64 {
        self.shared.delivery_failures.load(Ordering::Acquire)
    }

    /// Appends `records` through the writer and waits for its answer.
    async fn append(&self, records: Vec<Record>) -> Vec<Outcome> {
        let n = records.len();
        if self.shared.closed.load(Ordering::Acquire) {
            return vec![Err(Failure::ShuttingDown); n];
        }
        let (answer, answered) = oneshot::channel();
        self.waiting.fetch_add(n, Ordering::AcqRel);
        let outcome = match self.appends.send(Append { records, answer }) {
            Ok(()) => answered.await.unwrap_or(Err(Failure::SpoolUnavailable)),
            Err(_) => Err(Failure::SpoolUnavailable),
        };
        self.waiting.fetch_sub(n, Ordering::AcqRel);
        vec![outcome; n]
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
}

/// Publishes the spool's gauges every [`GAUGE_PERIOD`] until the spool is gone, and logs a
/// backlog's progress every [`BACKLOG_LOG_PERIOD`] while its oldest record is older than that
/// (a broker outage being replayed), then once when it is delivered.
fn publish_gauges(shared: Weak<Shared>) {
    let mut watch = progress::Watch::default();
    while let Some(shared) = shared.upgrade() {
        if shared.stopping() {
            break;
        }
        shared.publish_gauges();
        let left = shared.records.load(Ordering::Acquire);
        let delivered = shared.delivered.load(Ordering::Acquire);
        let oldest = shared.oldest_ms.load(Ordering::Acquire);
        let behind =
            oldest != 0 && now_ms().saturating_sub(oldest) >= BACKLOG_LOG_PERIOD.as_millis() as u64;
        let seen = watch.observe(Instant::now(), left, delivered, behind, BACKLOG_LOG_PERIOD);
        match seen {
            Some(progress::Seen::Began { left }) => tracing::warn!(
                records = left,
                "spool backlog: Kafka is behind; the records are replayed as it takes them"
            ),
            Some(progress::Seen::Moving(snapshot)) => tracing::info!(
                records = snapshot.left,
                records_per_sec = snapshot.per_sec.round() as u64,
                eta_secs = snapshot.eta.map(|eta| eta.as_secs()),
                "spool backlog: {snapshot}"
            ),
            Some(progress::Seen::Delivered { records, took }) => tracing::info!(
                records,
                secs = took.as_secs(),
                "spool backlog delivered: {} records in {}",
                progress::thousands(records),
                progress::duration(took)
            ),
            None => {}
        }
        drop(shared);
        std::thread::sleep(GAUGE_PERIOD);
    }
}

impl Sink for SpoolSink {
    /// Resolves once the records are in the log (synced under `fsync=always`), whatever
    /// `wait_for_ack` says: the spool's answer is its own durability, not the broker's.
    fn topic_exists(&self, topic: &str) -> BoxFuture<'_, Option<bool>> {
        self.sink.topic_exists(topic)
    }

    fn missing_topics(&self) -> Vec<String> {
        self.sink.missing_topics()
    }

    fn send(&self, records: Vec<Record>, _wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>> {
        Box::pin(self.append(records))
    }

    /// Straight to the sink the spool feeds: what is posted is best-effort by design, and must
    /// never take the room of an accepted event on disk.
    fn post(&self, record: Record) {
        self.sink.post(record);
    }

    /// Ready while the spool takes writes and is under 90 % full, whether or not a broker is
    /// reachable: an outage is what the spool is for.
    fn ready(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire) && self.shared.ready()
    }

    /// Stops taking requests, lets the reader deliver for up to `timeout`, then stops it and
    /// syncs the checkpoint. Returns 0: what is not delivered stays safely in the spool, and
    /// is delivered by the next process on this directory (or `inlet drain`).
    fn close(&self, timeout: Duration) -> usize {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while (self.waiting.load(Ordering::Acquire) > 0 || self.records() > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.stopping.store(true, Ordering::Release);
        shared.appended.notify_all();
        let _ = self.sink.close(Duration::from_millis(500));
        shared.sync_checkpoint();
        shared.publish_gauges();
        let left = self.records();
        if left > 0 {
            tracing::info!(
                records = left,
                "spool closed: undelivered records stay on disk"
            );
        } else {
            tracing::info!("spool closed: every record was delivered");
        }
        0
    }

    /// Events waiting for the writer: those not yet safely on disk.
    fn in_flight(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

impl Drop for SpoolSink {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.appended.notify_all();
    }
}
