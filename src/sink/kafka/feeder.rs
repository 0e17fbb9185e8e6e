//! The feeder: the one thread that hands records to librdkafka. Request handlers (and delivery
//! reports, for records to hand over again) queue [`Job`]s on the [`FeedQueue`]; the feeder
//! gathers them for `linger` and hands them over in one burst (why bursts: see the `kafka`
//! module).
//!
//! One pass over the jobs waiting, in order, decides for each: resends first in their first
//! order, held while a replaced producer retires; new records answered `ShuttingDown` once the
//! sink is closed, held behind a full queue (or a retiring producer) until their enqueue
//! deadline, then answered `QueueFull`.
//!
//! [`FeedQueue`]: super::queue::FeedQueue

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::BaseRecord;

use super::batch::{failure_of, Slot};
use super::queue::Job;
use super::record_headers;
use super::reports::Producer;
use super::shared::Shared;
use super::timing::QUEUE_FULL_BACKOFF;
use crate::metrics;
use crate::sink::Failure;

/// The feeder thread: waits for records, gathers for `window` from the first, and hands
/// everything gathered to librdkafka in one burst. Jobs that find librdkafka's queue full (or
/// its producer failed) are tried again every [`QUEUE_FULL_BACKOFF`].
pub(super) fn run(weak: Weak<Shared>, window: Duration) {
    let Some(feed_queue) = weak
        .upgrade()
        .map(|shared| Arc::clone(&shared.context.feed_queue))
    else {
        return;
    };
    // Jobs that found librdkafka's queue full (or its producer failed), in order.
    let mut waiting = VecDeque::new();
    let mut order = HandOverOrder::default();
    loop {
        if waiting.is_empty() {
            if !feed_queue.wait_for_jobs(|| weak.strong_count() == 0) {
                return;
            }
            if !window.is_zero() {
                std::thread::sleep(window);
            }
        } else {
            std::thread::sleep(QUEUE_FULL_BACKOFF);
        }
        let Some(shared) = weak.upgrade() else { return };
        feed_queue.take_jobs(&mut waiting);
        let handed = hand_over(&shared, &mut order, &mut waiting);
        feed_queue.left(handed);
    }
}

/// Numbers records in the order they are first handed over, so that records handed over again
/// keep it. Only the feeder thread counts.
#[derive(Default)]
struct HandOverOrder {
    next: u64,
}

impl HandOverOrder {
    fn take(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }
}

/// Hands the records of `jobs` to librdkafka, in order. Jobs that find its queue full stay
/// in `jobs` (with every job behind them, to keep each key's order) until their enqueue
/// deadline, then are answered `QueueFull`. Records handed over again go first, in the
/// order of their first hand-over (their delivery reports come back in no such order), and
/// only once a replaced producer has returned them all; new jobs wait for that too.
/// Returns how many records left the feeder.
fn hand_over(shared: &Shared, order: &mut HandOverOrder, jobs: &mut VecDeque<Job>) -> usize {
    resends_first(jobs);
    let mut pass = Pass::new(shared, order);
    let mut blocked = VecDeque::new();
    while let Some(job) = jobs.pop_front() {
        let left = if job.resend {
            pass.resend(job)
        } else {
            pass.hand_over_new(job)
        };
        blocked.extend(left);
    }
    *jobs = blocked;
    pass.left
}

/// Puts resends before new jobs, in the order of their first hand-over; new jobs keep theirs.
fn resends_first(jobs: &mut VecDeque<Job>) {
    if jobs.iter().any(|j| j.resend) {
        let (mut resends, fresh): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| j.resend);
        resends.sort_by_key(|j| j.seq);
        jobs.extend(resends);
        jobs.extend(fresh);
    }
}

/// One hand-over pass over the jobs waiting, with what it knows at its start.
struct Pass<'a> {
    shared: &'a Shared,
    order: &'a mut HandOverOrder,
    producer: Arc<Producer>,
    now: Instant,
    /// The sink is closed: new records are answered `ShuttingDown`.
    closed: bool,
    /// A replaced producer still holds records: resends wait until it has returned them all.
    retiring: bool,
    /// New records wait: a replaced producer is retiring, or librdkafka's queue was full
    /// during this pass (everything behind a full queue waits, to keep each key's order).
    hold: bool,
    /// Records that left the feeder so far: handed over, or answered without.
    left: usize,
}

impl<'a> Pass<'a> {
    fn new(shared: &'a Shared, order: &'a mut HandOverOrder) -> Pass<'a> {
        // The producer before `retiring`: a recovery counts the failed producer's records in
        // `retiring` before it stores the new one, so a pass that sees the new producer also
        // sees them, and holds resends until they are back.
        let producer = shared.producer.load_full();
        let closed = shared.closed.load(Ordering::SeqCst);
        let retiring = shared.retiring.load(Ordering::SeqCst) > 0;
        Pass {
            shared,
            order,
            producer,
            now: Instant::now(),
            closed,
            retiring,
            hold: retiring,
            left: 0,
        }
    }

    /// Hands over a request's records; returns the job if some must wait.
    fn hand_over_new(&mut self, mut job: Job) -> Option<Job> {
        if self.closed {
            self.fail_rest(&job, Failure::ShuttingDown);
            return None;
        }
        if self.hold {
            return self.wait_or_expire(job);
        }
        while job.next < job.end {
            match self.send(&job) {
                Ok(()) => self.handed(&job),
                Err((Failure::QueueFull, _)) => {
                    self.hold = true;
                    return self.wait_or_expire(job);
                }
                Err((failure, _)) => {
                    ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str())
                        .increment(1);
                    job.batch.answer(job.next, Err(failure));
                }
            }
            self.left += 1;
            job.next += 1;
        }
        None
    }

    /// Hands over accepted records again; returns the job if they must wait (for room, or for
    /// a working producer), as long as it takes.
    fn resend(&mut self, mut job: Job) -> Option<Job> {
        if self.retiring {
            return Some(job);
        }
        while job.next < job.end {
            match self.send(&job) {
                Ok(()) => self.handed(&job),
                Err((Failure::TooLarge, error)) => {
                    tracing::error!(%error, "an accepted event was refused by the producer");
                }
                Err((failure, _)) => {
                    self.hold |= failure == Failure::QueueFull;
                    return Some(job);
                }
            }
            self.left += 1;
            job.next += 1;
        }
        None
    }

    /// A job that found no room: it waits, unless its enqueue wait is spent (the rest of the
    /// request would only wait again), when its remaining records are answered `QueueFull`.
    fn wait_or_expire(&mut self, job: Job) -> Option<Job> {
        if self.now < job.batch.enqueue_deadline {
            return Some(job);
        }
        self.fail_rest(&job, Failure::QueueFull);
        None
    }

    /// Answers the job's remaining records with `failure`.
    fn fail_rest(&mut self, job: &Job, failure: Failure) {
        job.batch.fail_from(job.next, failure);
        self.left += job.len();
    }

    /// Record `job.next` is with librdkafka: under `enqueue` that is its answer.
    fn handed(&self, job: &Job) {
        if !job.batch.wait_for_ack {
            job.batch.answer(job.next, Ok(()));
        }
    }

    /// Gives record `job.next` to the producer, with the slot its delivery report answers.
    fn send(&mut self, job: &Job) -> Result<(), (Failure, KafkaError)> {
        let index = job.next;
        let record = &job.batch.records[index];
        let seq = if job.resend {
            job.seq
        } else {
            self.order.take()
        };
        let slot = Box::new(Slot::new(
            Arc::clone(&job.batch),
            index,
            self.now,
            seq,
            &self.shared.slots,
        ));
        let topic = record
            .topic
            .as_deref()
            .unwrap_or(&self.shared.topics[record.kind]);
        let message = BaseRecord::with_opaque_to(topic, slot)
            .key(record.key.as_bytes())
            .payload(&record.value[..])
            .headers(record_headers(&self.shared.headers[record.kind], record));
        self.producer
            .send(message)
            .map_err(|(error, _)| (failure_of(&error), error))
    }
}
