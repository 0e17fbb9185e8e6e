//! The Kafka sink: librdkafka through rdkafka's `BaseProducer`, fed in bursts.
//!
//! Why bursts: each time librdkafka's broker thread wakes, it walks every partition the broker
//! leads, and a message put into an empty partition queue wakes it (again when its `linger.ms`
//! expires). With hundreds of partitions and keys spread over them, a message handed over on
//! its own costs a few such walks: those, not HTTP or JSON, were most of a request's CPU. So
//! request handlers never call librdkafka: they queue their records for the feeder thread,
//! which gathers for `linger` and hands everything gathered over in one burst, with
//! librdkafka's own `linger.ms` at 0. A burst wakes the broker thread about once, and no
//! linger expiry wakes it again. (librdkafka still sends one request per partition, and each
//! response wakes it: that part no client can batch; see loadtest/RESULTS.md.)
//!
//! One delivery path back: each message carries a small opaque slot naming its request's
//! [`Batch`] and its index; its delivery report records the outcome there and wakes the request
//! once every record is answered. A request waits once, however many events it carries.
//! Reports are served in batches too: librdkafka signals the reports thread when its report
//! queue turns non-empty, and the thread lets reports gather for up to [`REPORT_WINDOW`] before
//! serving them all, so at a steady load one wake-up (of it, and of a runtime worker) answers
//! several requests instead of one. (rdkafka's `ThreadedProducer` serves each report as it
//! comes, waking a worker per request.)
//!
//! Under `enqueue` delivery a record is answered once handed over, and the batch keeps it
//! until its delivery report: should the producer be replaced after a fatal error (which
//! purges its queue), the feeder hands the accepted record to the new producer.
//!
//! The parts: [`properties`] (how the producer is configured), [`batch`] (a request's records
//! and answers), [`queue`] (the hand-off to the feeder), [`feeder`] (the thread that hands
//! records over), [`reports`] (delivery reports and librdkafka's other callbacks, with all of
//! the FFI), [`shared`] (what the sink and its threads share), [`supervisor`] (readiness and
//! producer replacement), [`stats`] (librdkafka's statistics as metrics), [`timing`] (the
//! pauses the threads share) and [`posted`] (the producer of the posted lanes, dead letters,
//! with a queue of its own). This file holds the sink itself and starts its three threads.
//!
//! The parts are layered, each importing only parts below it (none imports this file):
//! `batch`, `stats`, `properties`, `posted` and `timing` need no other part; `queue` needs `batch`;
//! `reports` needs `queue`; `shared` needs `reports`; `feeder` and `supervisor` need `shared`.
//!
//! [`Batch`]: batch::Batch
//! [`REPORT_WINDOW`]: reports::REPORT_WINDOW

mod batch;
mod feeder;
mod posted;
mod connection;
pub(crate) mod properties;
mod queue;
mod reports;
mod shared;
mod stats;
mod supervisor;
mod timing;

pub use properties::producer_properties;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer as _;

use super::{BoxFuture, Failure, Outcome, Record, Sink};
use crate::config::{KafkaConfig, LaneConfig};
use crate::lane::{Lane, PerLane};
use batch::{Batch, Slots};
use queue::{FeedQueue, Job};
use reports::{Context, Producer, Signal};
use shared::Shared;
use timing::QUEUE_FULL_BACKOFF;

/// How much longer than its enqueue wait plus `delivery_timeout` a request waits for late
/// delivery reports.
const ACK_GUARD_MARGIN: Duration = Duration::from_secs(1);
/// How long one flush of `close` runs before it checks for records handed over again.
const CLOSE_FLUSH_STEP: Duration = Duration::from_millis(100);

/// The Kafka sink.
pub struct KafkaSink {
    shared: Arc<Shared>,
    /// The producer of the posted lanes that are on (dead letters); `None` when none is.
    posted: Option<posted::Posted>,
    /// What the broker said of the tokens' own topics, and when.
    topics_seen: Arc<std::sync::Mutex<std::collections::HashMap<String, (bool, Instant)>>>,
}

/// How long a topic found missing is believed missing before the broker is asked again (it
/// may have been created meanwhile).
const MISSING_TOPIC_RECHECK: Duration = Duration::from_secs(10);

impl KafkaSink {
    /// Creates the producer from `config`, to the topics of `lanes`, and starts its feeder,
    /// its reports thread and its supervisor (readiness probe and recovery from fatal errors).
    pub fn new(config: &KafkaConfig, lanes: &PerLane<LaneConfig>) -> anyhow::Result<KafkaSink> {
        let client_config = properties::client_config(config);
        let context = Context {
            feed_queue: Arc::new(FeedQueue::new()),
            reports_waiting: Arc::new(Signal::default()),
            connection: Arc::new(connection::Watch::default()),
        };
        let producer = Producer::new(&client_config, &context)?;
        let shared = Arc::new(Shared {
            producer: Arc::new(ArcSwap::from_pointee(producer)),
            client_config,
            context,
            topics: PerLane::new(|lane| lanes[lane].topic.clone()),
            headers: PerLane::new(headers),
            enqueue_wait: config.enqueue_wait,
            ack_guard: config.enqueue_wait + config.delivery_timeout + ACK_GUARD_MARGIN,
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            retiring: Arc::new(AtomicUsize::new(0)),
            slots: Slots::default(),
        });
        start_threads(&shared, config.linger)?;
        let posting = lanes.iter().any(|(lane, l)| lane.spec().posted && l.on);
        let posted = match posting {
            true => Some(posted::Posted::new(&properties::posted_config(config))?),
            false => None,
        };
        Ok(KafkaSink {
            shared,
            posted,
            topics_seen: Default::default(),
        })
    }

    /// Raises a fatal error in the live producer, as a broker fencing the idempotent producer
    /// would. For fault tests.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        self.shared.producer.load_full().inject_fatal_error();
    }
}

/// The headers of every message of `lane`: its name and its payload's schema.
fn headers(lane: Lane) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "inlet-kind",
            value: Some(lane.as_str()),
        })
        .insert(Header {
            key: "inlet-schema",
            value: Some(lane.spec().schema),
        })
}

/// The headers of `record`: its lane's, then its own.
pub(super) fn record_headers(lane: &OwnedHeaders, record: &Record) -> OwnedHeaders {
    let mut headers = lane.clone();
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

/// Starts the feeder (gathering for `linger`), the supervisor and the reports thread; each
/// holds `shared` (the reports thread: its live producer) weakly and exits once the sink is
/// gone.
fn start_threads(shared: &Arc<Shared>, linger: Duration) -> std::io::Result<()> {
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("inlet-feeder".into())
        .spawn(move || feeder::run(weak, linger))?;
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("inlet-kafka-supervisor".into())
        .spawn(move || supervisor::run(weak))?;
    let (weak, reports_waiting) = (
        Arc::downgrade(&shared.producer),
        Arc::clone(&shared.context.reports_waiting),
    );
    std::thread::Builder::new()
        .name("inlet-reports".into())
        .spawn(move || reports::run(weak, reports_waiting, linger))?;
    Ok(())
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.shared.context.feed_queue.stop();
    }
}

impl KafkaSink {
    /// Queues `records` for the feeder and waits for their answers, within a guard.
    async fn queue_and_wait(&self, records: Vec<Record>, wait_for_ack: bool) -> Vec<Outcome> {
        let shared = &self.shared;
        let enqueue_deadline = Instant::now() + shared.enqueue_wait;
        let batch = Arc::new(Batch::new(records, wait_for_ack, enqueue_deadline));
        shared.context.feed_queue.push(Job::new(Arc::clone(&batch)));
        // librdkafka reports every message within message.timeout.ms and the feeder answers
        // every record within the enqueue wait; the guard only bounds the answer should either
        // come late. An event still unanswered then is answered as timed out (not accepted; it
        // may yet be written, like any "possibly persisted" one).
        let guard = if wait_for_ack {
            shared.ack_guard
        } else {
            shared.enqueue_wait + ACK_GUARD_MARGIN
        };
        if tokio::time::timeout(guard, batch.wait()).await.is_err() {
            tracing::warn!("answers overdue: answering the rest as timed out");
        }
        batch.outcomes(Failure::TimedOut)
    }
}

impl Sink for KafkaSink {
    fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>> {
        Box::pin(self.queue_and_wait(records, wait_for_ack))
    }

    /// From the broker's metadata, asked once for a topic that exists and again at most every
    /// [`MISSING_TOPIC_RECHECK`] for one that does not; a missing topic is logged once a check.
    fn topic_exists(&self, topic: &str) -> BoxFuture<'_, Option<bool>> {
        let topic = topic.to_owned();
        Box::pin(async move {
            let seen = self
                .topics_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&topic)
                .copied();
            match seen {
                Some((true, _)) => return Some(true),
                Some((false, at)) if at.elapsed() < MISSING_TOPIC_RECHECK => return Some(false),
                _ => {}
            }
            let producer = Arc::clone(&self.shared.producer);
            let asked = topic.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let metadata = producer
                    .load_full()
                    .client()
                    .fetch_metadata(Some(&asked), Duration::from_secs(5));
                let md = metadata.ok()?;
                let found = md.topics().first()?;
                Some(found.error().is_none() && !found.partitions().is_empty())
            })
            .await
            .ok()
            .flatten();
            if let Some(exists) = answer {
                if !exists {
                    tracing::error!(%topic, "a token's topic does not exist on the broker: its events are refused (503 topic_missing) until it is created or the registry changes");
                }
                let mut seen = self.topics_seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert(topic, (exists, Instant::now()));
            }
            answer
        })
    }

    fn missing_topics(&self) -> Vec<String> {
        let seen = self.topics_seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<String> = (seen.iter())
            .filter(|(_, (exists, _))| !exists)
            .map(|(t, _)| t.clone())
            .collect();
        missing.sort();
        missing
    }

    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed) && !self.shared.closed.load(Ordering::Relaxed)
    }

    /// Stops handing over new requests' records (the feeder answers them `ShuttingDown`), then
    /// flushes until nothing is queued, in the feeder or in librdkafka, or `timeout` passes.
    /// Records handed over again (after a producer replacement) are still delivered.
    /// Dropped when the lane is off (no producer for it) or its queue is full.
    fn post(&self, record: Record) {
        if let Some(posted) = &self.posted {
            posted.post(&record, &self.shared.topics, &self.shared.headers);
        }
    }

    fn close(&self, timeout: Duration) -> usize {
        self.shared.closed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.in_flight() == 0 || left.is_zero() {
                break;
            }
            let producer = self.shared.producer.load_full();
            if producer.flush(left.min(CLOSE_FLUSH_STEP)).is_err() {
                // Not flushed yet, or a failed producer the supervisor is replacing.
                std::thread::sleep(QUEUE_FULL_BACKOFF.min(left));
            }
        }
        if let Some(posted) = &self.posted {
            posted.flush(deadline.saturating_duration_since(Instant::now()));
        }
        let undelivered = self.in_flight();
        if undelivered > 0 {
            tracing::warn!(undelivered, "producer flush did not complete");
        }
        undelivered
    }

    fn in_flight(&self) -> usize {
        // Counted in the feeder until librdkafka has it, then by its slot until its delivery
        // report (from a retiring producer too), so nothing is between the two.
        self.shared.context.feed_queue.pending() + self.shared.slots.get()
    }
}
