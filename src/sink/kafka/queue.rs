//! The hand-off between request handlers (and delivery reports, for records to hand over
//! again) and the feeder thread: [`Job`]s queued on the [`FeedQueue`], and the count of records
//! not yet with librdkafka.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::batch::Batch;
use super::timing::IDLE_CHECK;

/// Records waiting for the feeder: `batch.records[next..end]`.
pub(super) struct Job {
    pub(super) batch: Arc<Batch>,
    pub(super) next: usize,
    pub(super) end: usize,
    /// An accepted record handed over again after its producer failed it; it waits for room
    /// (or a working producer) for as long as it takes, and is never answered again.
    pub(super) resend: bool,
    /// For a resend: its first hand-over's place in order.
    pub(super) seq: u64,
}

impl Job {
    /// All of a request's records.
    pub(super) fn new(batch: Arc<Batch>) -> Job {
        let end = batch.records.len();
        Job {
            batch,
            next: 0,
            end,
            resend: false,
            seq: 0,
        }
    }

    /// Record `index` of `batch`, accepted already and failed by its producer, first handed
    /// over as number `seq`.
    pub(super) fn resend(batch: Arc<Batch>, index: usize, seq: u64) -> Job {
        Job {
            batch,
            next: index,
            end: index + 1,
            resend: true,
            seq,
        }
    }

    /// Records of the job still waiting.
    pub(super) fn len(&self) -> usize {
        self.end - self.next
    }
}

/// The hand-off between request handlers (and delivery reports) and the feeder thread.
pub(super) struct FeedQueue {
    state: Mutex<FeedState>,
    wake: Condvar,
}

#[derive(Default)]
struct FeedState {
    jobs: VecDeque<Job>,
    /// Records in `jobs`, plus those the feeder has taken and not yet handed over.
    records: usize,
    /// The feeder is waiting for work (so a new job must wake it).
    idle: bool,
    /// The sink is gone: the feeder exits.
    stopped: bool,
}

impl FeedQueue {
    pub(super) fn new() -> FeedQueue {
        FeedQueue {
            state: Mutex::new(FeedState::default()),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` for the feeder, waking it if idle.
    pub(super) fn push(&self, job: Job) {
        let mut state = self.lock();
        state.records += job.len();
        state.jobs.push_back(job);
        if state.idle {
            state.idle = false;
            self.wake.notify_one();
        }
    }

    /// Records queued or being handed over.
    pub(super) fn pending(&self) -> usize {
        self.lock().records
    }

    /// Tells the feeder to exit.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    /// Waits until jobs are queued, looking every [`IDLE_CHECK`] whether `sink_gone`; false
    /// when the feeder should exit instead.
    pub(super) fn wait_for_jobs(&self, sink_gone: impl Fn() -> bool) -> bool {
        let mut state = self.lock();
        while state.jobs.is_empty() && !state.stopped {
            state.idle = true;
            state = self
                .wake
                .wait_timeout(state, IDLE_CHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if sink_gone() {
                return false;
            }
        }
        state.idle = false;
        !state.stopped
    }

    /// Moves every queued job to the end of `waiting`; their records still count as pending
    /// until [`Self::left`].
    pub(super) fn take_jobs(&self, waiting: &mut VecDeque<Job>) {
        waiting.extend(self.lock().jobs.drain(..));
    }

    /// `n` records left the feeder: handed over, or answered without.
    pub(super) fn left(&self, n: usize) {
        self.lock().records -= n;
    }
}
