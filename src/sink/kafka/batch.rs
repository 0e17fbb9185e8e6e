//! One request's records and their answers, and the slot each of its messages carries through
//! librdkafka: whoever learns a record's outcome (the feeder, a delivery report) answers it
//! here, and the request waits once for all of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::Notify;

use crate::metrics;
use crate::sink::{Failure, Outcome, Record};

/// One request's records and their answers (`None` until answered).
pub(super) struct Batch {
    pub(super) records: Vec<Record>,
    /// `ack` delivery: answered by delivery reports; `enqueue`: answered once handed over.
    pub(super) wait_for_ack: bool,
    /// Until when a record may wait for room in librdkafka's queue.
    pub(super) enqueue_deadline: Instant,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    unanswered: AtomicUsize,
    done: Notify,
}

impl Batch {
    pub(super) fn new(records: Vec<Record>, wait_for_ack: bool, enqueue_deadline: Instant) -> Self {
        let n = records.len();
        Batch {
            records,
            wait_for_ack,
            enqueue_deadline,
            outcomes: Mutex::new(vec![None; n]),
            unanswered: AtomicUsize::new(n),
            done: Notify::new(),
        }
    }

    /// Records `outcome` for record `index` unless it was answered already (the first answer
    /// stands), and wakes the request once every record is answered.
    pub(super) fn answer(&self, index: usize, outcome: Outcome) {
        let first = self.lock().get_mut(index).is_some_and(|o| {
            let first = o.is_none();
            o.get_or_insert(outcome);
            first
        });
        if first && self.unanswered.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Answers records `from..` with `failure`, counting them.
    pub(super) fn fail_from(&self, from: usize, failure: Failure) {
        let n = self.records.len().saturating_sub(from);
        if n == 0 {
            return;
        }
        ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str())
            .increment(n as u64);
        for index in from..self.records.len() {
            self.answer(index, Err(failure));
        }
    }

    /// Resolves once every record is answered.
    pub(super) async fn wait(&self) {
        while self.unanswered.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
    }

    /// The answers so far; an unanswered record counts as `unanswered`.
    pub(super) fn outcomes(&self, unanswered: Failure) -> Vec<Outcome> {
        self.lock()
            .iter()
            .map(|o| o.unwrap_or(Err(unanswered)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Outcome>>> {
        // Answers are plain values: a panic elsewhere cannot leave them half-written.
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The opaque each message carries to its delivery report.
pub(super) struct Slot {
    pub(super) batch: Arc<Batch>,
    pub(super) index: usize,
    pub(super) enqueued: Instant,
    /// Hand-over order, so records handed over again keep their order.
    pub(super) seq: u64,
    /// Counts this slot among the sink's [`Slots`] while it lives.
    _counted: Counted,
}

impl Slot {
    /// The slot of record `index` of `batch`, handed over at `enqueued`, counted in `slots`.
    pub(super) fn new(
        batch: Arc<Batch>,
        index: usize,
        enqueued: Instant,
        seq: u64,
        slots: &Slots,
    ) -> Slot {
        slots.0.fetch_add(1, Ordering::SeqCst);
        Slot {
            batch,
            index,
            enqueued,
            seq,
            _counted: Counted(Arc::clone(&slots.0)),
        }
    }
}

/// How many slots are alive: messages handed to librdkafka (to whichever producer, live or
/// retiring) whose delivery report has not been served yet. Unlike librdkafka's own queue
/// length, which also counts protocol requests in flight, this counts events only, so the
/// number of undelivered events inlet reports at shutdown is exact.
#[derive(Debug, Default)]
pub(super) struct Slots(Arc<AtomicUsize>);

impl Slots {
    pub(super) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Takes one off the count when its slot goes (its report served, or its hand-over refused).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a librdkafka error (from a send or a delivery report) means for the record's answer.
pub(super) fn failure_of(error: &KafkaError) -> Failure {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => Failure::QueueFull,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => Failure::TooLarge,
        Some(RDKafkaErrorCode::MessageTimedOut) => Failure::TimedOut,
        // Purged (by a producer rebuild), fatal, or any other error: not delivered, retry.
        _ => Failure::Broker,
    }
}
