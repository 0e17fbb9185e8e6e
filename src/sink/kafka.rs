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

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use serde::Deserialize;
use tokio::sync::Notify;

use super::{BoxFuture, Failure, Outcome, Record, Sink};
use crate::config::Config;
use crate::event::Kind;
use crate::metrics;

/// How often readiness is probed with a metadata request.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often the supervisor checks for a fatal producer error.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// How much longer than its enqueue wait plus `delivery_timeout` a request waits for late
/// delivery reports.
const ACK_GUARD_MARGIN: Duration = Duration::from_secs(1);
/// How long the feeder pauses while librdkafka's queue is full (or its producer failed).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How often an idle feeder (or reports thread) checks whether its sink is gone.
const FEEDER_IDLE_CHECK: Duration = Duration::from_millis(250);
/// How long delivery reports gather before the reports thread serves them, at most (and at
/// most `linger`: with no feeder window there is no report window either). 2 ms kept p99 at
/// 1,000 req/s under 9 ms where 5 ms cost 12 ms, for the same CPU (loadtest/RESULTS.md).
const REPORT_WINDOW: Duration = Duration::from_millis(2);
/// Events the reports thread serves before it lets go of the producer and looks again.
const EVENTS_PER_SERVE: usize = 1024;
/// How long one flush of `close` runs before it checks for records handed over again.
const CLOSE_FLUSH_STEP: Duration = Duration::from_millis(100);

/// One request's records and their answers (`None` until answered).
struct Batch {
    records: Vec<Record>,
    /// `ack` delivery: answered by delivery reports; `enqueue`: answered once handed over.
    wait_for_ack: bool,
    /// Until when a record may wait for room in librdkafka's queue.
    enqueue_deadline: Instant,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    unanswered: AtomicUsize,
    done: Notify,
}

impl Batch {
    /// Records `outcome` for record `index` unless it was answered already (the first answer
    /// stands), and wakes the request once every record is answered.
    fn answer(&self, index: usize, outcome: Outcome) {
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
    fn fail_from(&self, from: usize, failure: Failure) {
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

    async fn wait(&self) {
        while self.unanswered.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
    }

    /// The answers so far; an unanswered record counts as `unanswered`.
    fn outcomes(&self, unanswered: Failure) -> Vec<Outcome> {
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
pub struct Slot {
    batch: Arc<Batch>,
    index: usize,
    enqueued: Instant,
    /// Hand-over order, so records handed over again keep their order.
    seq: u64,
}

/// Records waiting for the feeder: `batch.records[next..end]`.
struct Job {
    batch: Arc<Batch>,
    next: usize,
    end: usize,
    /// An accepted record handed over again after its producer failed it; it waits for room
    /// (or a working producer) for as long as it takes, and is never answered again.
    resend: bool,
    /// For a resend: its first hand-over's place in order.
    seq: u64,
}

impl Job {
    fn len(&self) -> usize {
        self.end - self.next
    }
}

/// The hand-off between request handlers (and delivery reports) and the feeder thread.
struct Feed {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Records in `jobs`, plus those the feeder has taken and not yet handed over.
    records: usize,
    /// The feeder is waiting for work (so a new job must wake it).
    idle: bool,
    /// The sink is gone: the feeder exits.
    stopped: bool,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        let mut queue = self.lock();
        queue.records += job.len();
        queue.jobs.push_back(job);
        if queue.idle {
            queue.idle = false;
            self.wake.notify_one();
        }
    }

    /// Records queued or being handed over.
    fn pending(&self) -> usize {
        self.lock().records
    }
}

/// Routes librdkafka's logs and errors to tracing and its delivery reports to batches.
#[derive(Clone)]
pub struct Context {
    /// Where accepted records whose producer failed them go to be handed over again.
    feed: Arc<Feed>,
    /// Signalled by librdkafka when delivery reports wait to be served.
    reports: Arc<Signal>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Stats>(statistics) {
            Ok(stats) => stats.record(),
            Err(error) => tracing::debug!(%error, "unreadable librdkafka statistics"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // Connection trouble repeats at every retry; readiness changes are logged once by
            // the supervisor, the details stay at debug.
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                tracing::debug!(target: "librdkafka", %error, reason, "client error")
            }
            _ => tracing::warn!(target: "librdkafka", %error, reason, "client error"),
        }
    }
}

/// The parts of librdkafka's statistics JSON that become metrics.
#[derive(Debug, Deserialize)]
struct Stats {
    msg_cnt: u64,
    msg_size: u64,
    msg_max: u64,
    msg_size_max: u64,
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerStats>,
}

#[derive(Debug, Deserialize)]
struct BrokerStats {
    nodeid: i32,
    state: String,
    #[serde(default)]
    txretries: u64,
    #[serde(default)]
    txerrs: u64,
    #[serde(default)]
    rtt: Option<Window>,
}

#[derive(Debug, Deserialize)]
struct Window {
    /// Microseconds.
    avg: i64,
}

impl Stats {
    fn record(&self) {
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MESSAGES).set(self.msg_cnt as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_MESSAGES).set(self.msg_max as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_BYTES).set(self.msg_size as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_BYTES).set(self.msg_size_max as f64);
        let (mut retries, mut errors) = (0, 0);
        // Bootstrap entries (nodeid -1) duplicate the brokers they lead to.
        for b in self.brokers.values().filter(|b| b.nodeid >= 0) {
            retries += b.txretries;
            errors += b.txerrs;
            let broker = b.nodeid.to_string();
            let up = if b.state == "UP" { 1.0 } else { 0.0 };
            ::metrics::gauge!(metrics::KAFKA_BROKER_UP, "broker" => broker.clone()).set(up);
            if let Some(rtt) = &b.rtt {
                ::metrics::gauge!(metrics::KAFKA_BROKER_RTT, "broker" => broker)
                    .set(rtt.avg.max(0) as f64 / 1e6);
            }
        }
        ::metrics::counter!(metrics::KAFKA_RETRIES).absolute(retries);
        ::metrics::counter!(metrics::KAFKA_ERRORS).absolute(errors);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let batch = &slot.batch;
        match result {
            Ok(_) => {
                ::metrics::histogram!(metrics::PRODUCE_LATENCY).record(slot.enqueued.elapsed());
                batch.answer(slot.index, Ok(()));
            }
            Err((error, _)) => {
                let failure = failure_of(error);
                ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str())
                    .increment(1);
                if batch.wait_for_ack {
                    tracing::debug!(%error, "delivery failed");
                    batch.answer(slot.index, Err(failure));
                } else if failure == Failure::TooLarge {
                    // Accepted under `enqueue` and refused by the broker: nothing will ever
                    // take it. (Under `ack` this is a 413 for the event.)
                    tracing::error!(%error, "an accepted event was refused by the broker");
                } else {
                    // Accepted under `enqueue` (purged by a producer replacement, or failed):
                    // hand it over again.
                    tracing::debug!(%error, "delivery failed: handing the event over again");
                    ::metrics::counter!(metrics::RESENT).increment(1);
                    self.feed.push(Job {
                        batch: Arc::clone(batch),
                        next: slot.index,
                        end: slot.index + 1,
                        resend: true,
                        seq: slot.seq,
                    });
                }
            }
        }
    }
}

fn failure_of(error: &KafkaError) -> Failure {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => Failure::QueueFull,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => Failure::TooLarge,
        Some(RDKafkaErrorCode::MessageTimedOut) => Failure::TimedOut,
        // Purged (by a producer rebuild), fatal, or any other error: not delivered, retry.
        _ => Failure::Broker,
    }
}

/// A producer and the handle on its report queue that signals [`Context::reports`].
struct Producer_ {
    // Dropped first: librdkafka wants queue handles gone before its instance.
    reports: ReportQueue,
    producer: BaseProducer<Context>,
}

impl std::ops::Deref for Producer_ {
    type Target = BaseProducer<Context>;

    fn deref(&self) -> &BaseProducer<Context> {
        &self.producer
    }
}

impl Producer_ {
    /// Serves the delivery reports (and log or error events) waiting, on the calling thread, a
    /// bounded number of events at a time; whether the queue is empty now.
    fn serve_reports(&self) -> bool {
        for _ in 0..EVENTS_PER_SERVE {
            if self.reports.len() == 0 {
                return true;
            }
            // Each poll serves one event, which may carry many reports.
            self.producer.poll(Duration::ZERO);
        }
        self.reports.len() == 0
    }
}

/// A flag with a condition variable: set by librdkafka's queue callback, awaited by the reports
/// thread.
#[derive(Default)]
struct Signal {
    raised: Mutex<bool>,
    wake: Condvar,
}

impl Signal {
    fn raise(&self) {
        let mut raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        if !*raised {
            *raised = true;
            self.wake.notify_one();
        }
    }

    /// Waits up to `timeout` for the flag, and lowers it; whether it was raised.
    fn wait(&self, timeout: Duration) -> bool {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (mut raised, _) = self
            .wake
            .wait_timeout_while(raised, timeout, |r| !*r)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *raised)
    }
}

/// A handle on a producer's main queue (where its delivery reports go) that raises a
/// [`Signal`] each time the queue turns non-empty.
struct ReportQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queue handles may be used from any thread.
unsafe impl Send for ReportQueue {}
unsafe impl Sync for ReportQueue {}

impl ReportQueue {
    fn new(producer: &BaseProducer<Context>) -> ReportQueue {
        let reports = Arc::as_ptr(&producer.context().reports);
        // SAFETY: the client outlives this handle (`Producer_` drops it first), and the Signal
        // it raises lives in the client's context, so as long as the client; the callback is
        // disabled before the handle goes.
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            rdsys::rd_kafka_queue_cb_event_enable(
                queue,
                Some(reports_waiting),
                reports as *mut c_void,
            );
            ReportQueue(queue)
        }
    }

    fn len(&self) -> usize {
        // SAFETY: a live queue handle.
        unsafe { rdsys::rd_kafka_queue_length(self.0) }
    }
}

impl Drop for ReportQueue {
    fn drop(&mut self) {
        // SAFETY: a live handle, released once; disabling waits for a callback in progress.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.0, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.0);
        }
    }
}

/// Called by librdkafka (on one of its threads, with the queue locked) when the report queue
/// turns non-empty: wakes the reports thread.
unsafe extern "C" fn reports_waiting(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the context's Signal, alive while the callback is enabled.
    let reports = unsafe { &*(opaque as *const Signal) };
    reports.raise();
}

/// The reports thread: once signalled, lets reports gather for `window`, then serves every
/// report waiting; for as long as the sink lives. It also looks every [`FEEDER_IDLE_CHECK`]
/// unsignalled, so nothing can wait longer than that.
fn serve_reports(weak: Weak<Inner>, reports: Arc<Signal>, window: Duration) {
    let mut drained = true;
    loop {
        if drained && reports.wait(FEEDER_IDLE_CHECK) && !window.is_zero() {
            std::thread::sleep(window);
        }
        let Some(inner) = weak.upgrade() else { return };
        drained = inner.producer.load().serve_reports();
    }
}

struct Inner {
    /// The live producer; replaced whole after a fatal error.
    producer: ArcSwap<Producer_>,
    /// What the producer is built from, for rebuilds.
    client_config: ClientConfig,
    context: Context,
    topics: [String; 2],
    headers: [OwnedHeaders; 2],
    enqueue_wait: Duration,
    /// Longest wait for delivery reports under `ack` delivery.
    ack_guard: Duration,
    ready: AtomicBool,
    closed: AtomicBool,
    /// Messages still in replaced producers (their delivery reports are yet to come).
    retiring: Arc<AtomicUsize>,
    /// Records handed over so far (the feeder's order).
    handed: AtomicU64,
}

/// The Kafka sink.
pub struct KafkaSink {
    inner: Arc<Inner>,
}

fn create_producer(client: &ClientConfig, context: &Context) -> anyhow::Result<Producer_> {
    let producer: BaseProducer<Context> = client
        .create_with_context(context.clone())
        .map_err(|e| anyhow::anyhow!("librdkafka: cannot create the producer: {e}"))?;
    Ok(Producer_ {
        reports: ReportQueue::new(&producer),
        producer,
    })
}

impl KafkaSink {
    /// Creates the producer from `config` and starts its feeder, its reports thread and its
    /// supervisor (readiness probe and recovery from fatal errors).
    pub fn new(config: &Config) -> anyhow::Result<KafkaSink> {
        let mut client = ClientConfig::new();
        for (k, v) in super::producer_properties(config) {
            client.set(k, v);
        }
        if client.get("acks").is_some_and(|a| a != "all" && a != "-1") {
            tracing::warn!("librdkafka acks is not `all`: an acknowledged event may still be lost");
        }
        let context = Context {
            feed: Arc::new(Feed {
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
            }),
            reports: Arc::new(Signal::default()),
        };
        let producer = create_producer(&client, &context)?;
        let headers = |kind: Kind| {
            OwnedHeaders::new()
                .insert(Header {
                    key: "inlet-kind",
                    value: Some(kind.as_str()),
                })
                .insert(Header {
                    key: "inlet-schema",
                    value: Some("inlet.v1.Envelope"),
                })
        };
        let inner = Arc::new(Inner {
            producer: ArcSwap::from_pointee(producer),
            client_config: client,
            context,
            topics: [
                config.topic_beacons.clone(),
                config.topic_occurrences.clone(),
            ],
            headers: [headers(Kind::Beacon), headers(Kind::Occurrence)],
            enqueue_wait: config.enqueue_wait,
            ack_guard: config.enqueue_wait + config.delivery_timeout + ACK_GUARD_MARGIN,
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            retiring: Arc::new(AtomicUsize::new(0)),
            handed: AtomicU64::new(0),
        });
        let (weak, window) = (Arc::downgrade(&inner), config.linger);
        std::thread::Builder::new()
            .name("inlet-feeder".into())
            .spawn(move || feed(weak, window))?;
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("inlet-kafka-supervisor".into())
            .spawn(move || supervise(weak))?;
        let (weak, reports) = (Arc::downgrade(&inner), Arc::clone(&inner.context.reports));
        let window = config.linger.min(REPORT_WINDOW);
        std::thread::Builder::new()
            .name("inlet-reports".into())
            .spawn(move || serve_reports(weak, reports, window))?;
        Ok(KafkaSink { inner })
    }

    /// Raises a fatal error in the live producer, as a broker fencing the idempotent producer
    /// would. For fault tests.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        let producer = self.inner.producer.load_full();
        let reason = std::ffi::CString::new("injected by a fault test").expect("no NUL");
        // SAFETY: the handle stays alive for the call (we hold an Arc to its producer), and
        // librdkafka copies the reason.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        let feed = &self.inner.context.feed;
        feed.lock().stopped = true;
        feed.wake.notify_one();
    }
}

/// The feeder thread: waits for records, gathers for `window` from the first, and hands
/// everything gathered to librdkafka in one burst.
fn feed(weak: Weak<Inner>, window: Duration) {
    let Some(feed) = weak.upgrade().map(|inner| Arc::clone(&inner.context.feed)) else {
        return;
    };
    // Jobs that found librdkafka's queue full (or its producer failed), in order.
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            let mut queue = feed.lock();
            while queue.jobs.is_empty() && !queue.stopped {
                queue.idle = true;
                queue = feed
                    .wake
                    .wait_timeout(queue, FEEDER_IDLE_CHECK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if weak.strong_count() == 0 {
                    return;
                }
            }
            queue.idle = false;
            if queue.stopped {
                return;
            }
            drop(queue);
            if !window.is_zero() {
                std::thread::sleep(window);
            }
        } else {
            std::thread::sleep(QUEUE_FULL_BACKOFF);
        }
        let Some(inner) = weak.upgrade() else { return };
        waiting.extend(feed.lock().jobs.drain(..));
        let handed = inner.hand_over(&mut waiting);
        feed.lock().records -= handed;
    }
}

/// Watches the producer: probes readiness with a metadata request for the beacons topic every
/// [`PROBE_EVERY`], and replaces the producer when librdkafka reports a fatal error (for the
/// idempotent producer: a fenced or out-of-sequence producer id), which would otherwise fail
/// every later produce.
fn supervise(weak: Weak<Inner>) {
    let mut next_probe = Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let producer = inner.producer.load_full();
        if let Some((code, reason)) = producer.client().fatal_error() {
            inner.recover(&producer, code, &reason);
        }
        if Instant::now() >= next_probe {
            let ok = inner.probe(&producer);
            next_probe = Instant::now()
                + if ok {
                    PROBE_EVERY
                } else {
                    Duration::from_millis(500)
                };
        }
        drop((producer, inner));
        std::thread::sleep(SUPERVISE_EVERY);
    }
}

impl Inner {
    /// One readiness probe; returns whether a broker answered with the topic's partitions.
    fn probe(&self, producer: &Producer_) -> bool {
        let result = producer
            .client()
            .fetch_metadata(Some(&self.topics[0]), PROBE_EVERY);
        let ok = match &result {
            Ok(md) => md
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()),
            Err(_) => false,
        };
        let was = self.ready.swap(ok, Ordering::Relaxed);
        if was != ok {
            match &result {
                Ok(_) if ok => tracing::info!(topic = %self.topics[0], "Kafka is reachable"),
                Ok(_) => {
                    tracing::warn!(topic = %self.topics[0], "topic missing or without partitions")
                }
                Err(error) => tracing::warn!(%error, "Kafka is unreachable"),
            }
        }
        ::metrics::gauge!(metrics::KAFKA_READY).set(if ok { 1.0 } else { 0.0 });
        ok
    }

    /// Replaces a producer that hit a fatal error. Its queued and in-flight messages are purged:
    /// under `ack` their requests answer 503 at once and the clients retry; under `enqueue`
    /// (already accepted) they are handed to the new producer. Either way an in-flight one may
    /// have been written, so it can be duplicated, which the event id lets consumers drop.
    fn recover(&self, failed: &Arc<Producer_>, code: RDKafkaErrorCode, reason: &str) {
        ::metrics::counter!(metrics::PRODUCER_FATAL_ERRORS).increment(1);
        tracing::error!(
            ?code,
            reason,
            "fatal producer error: replacing the producer"
        );
        let fresh = match create_producer(&self.client_config, &self.context) {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => {
                tracing::error!(%error, "cannot create a new producer; retrying");
                return;
            }
        };
        // Until its delivery reports are in, what the failed producer holds is counted in
        // flight (its purged records under `enqueue` move to the feeder through them).
        let held = failed.in_flight_count().max(0) as usize;
        self.retiring.fetch_add(held, Ordering::SeqCst);
        self.producer.store(fresh);
        failed.purge(PurgeConfig::default().queue().inflight());
        let (failed, retiring) = (Arc::clone(failed), Arc::clone(&self.retiring));
        // Dropping serves the last delivery reports and joins librdkafka's threads; keep that
        // off the supervisor's clock.
        let _ = std::thread::Builder::new()
            .name("inlet-kafka-retire".into())
            .spawn(move || {
                // A request's hand-over may still hold it for a moment.
                while Arc::strong_count(&failed) > 1 {
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                drop(failed);
                retiring.fetch_sub(held, Ordering::SeqCst);
            });
    }

    /// Hands the records of `jobs` to librdkafka, in order. Jobs that find its queue full stay
    /// in `jobs` (with every job behind them, to keep each key's order) until their enqueue
    /// deadline, then are answered `QueueFull`. Records handed over again go first, in the
    /// order of their first hand-over (their delivery reports come back in no such order), and
    /// only once a replaced producer has returned them all; new jobs wait for that too.
    /// Returns how many records left the feeder.
    fn hand_over(&self, jobs: &mut VecDeque<Job>) -> usize {
        let producer = self.producer.load_full();
        let closed = self.closed.load(Ordering::SeqCst);
        let retiring = self.retiring.load(Ordering::SeqCst) > 0;
        if jobs.iter().any(|j| j.resend) {
            let (mut resends, fresh): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| j.resend);
            resends.sort_by_key(|j| j.seq);
            jobs.extend(resends);
            jobs.extend(fresh);
        }
        let now = Instant::now();
        let mut handed = 0;
        let mut hold = retiring;
        let mut blocked = VecDeque::new();
        while let Some(mut job) = jobs.pop_front() {
            let batch = Arc::clone(&job.batch);
            if job.resend && retiring {
                blocked.push_back(job);
                continue;
            }
            if !job.resend {
                if closed {
                    batch.fail_from(job.next, Failure::ShuttingDown);
                    handed += job.len();
                    continue;
                }
                if hold {
                    if now >= batch.enqueue_deadline {
                        batch.fail_from(job.next, Failure::QueueFull);
                        handed += job.len();
                    } else {
                        blocked.push_back(job);
                    }
                    continue;
                }
            }
            while job.next < job.end {
                let index = job.next;
                let record = &batch.records[index];
                let i = match record.kind {
                    Kind::Beacon => 0,
                    Kind::Occurrence => 1,
                };
                let seq = if job.resend {
                    job.seq
                } else {
                    self.handed.fetch_add(1, Ordering::Relaxed)
                };
                let slot = Box::new(Slot {
                    batch: Arc::clone(&batch),
                    index,
                    enqueued: now,
                    seq,
                });
                let message = BaseRecord::with_opaque_to(&self.topics[i], slot)
                    .key(record.key.as_bytes())
                    .payload(&record.value[..])
                    .headers(self.headers[i].clone());
                match producer.send(message) {
                    Ok(()) => {
                        if !batch.wait_for_ack {
                            batch.answer(index, Ok(()));
                        }
                    }
                    Err((error, _)) => {
                        let failure = failure_of(&error);
                        hold |= failure == Failure::QueueFull;
                        if job.resend && failure != Failure::TooLarge {
                            // Accepted already: wait for room or for a new producer.
                            break;
                        }
                        if failure == Failure::QueueFull {
                            if now >= batch.enqueue_deadline {
                                // The wait is spent: the rest of the request would only wait
                                // again.
                                batch.fail_from(job.next, Failure::QueueFull);
                                handed += job.len();
                                job.next = job.end;
                            }
                            break;
                        }
                        if job.resend {
                            tracing::error!(%error, "an accepted event was refused by the producer");
                        } else {
                            ::metrics::counter!(
                                metrics::DELIVERY_FAILURES,
                                "reason" => failure.as_str()
                            )
                            .increment(1);
                            batch.answer(index, Err(failure));
                        }
                    }
                }
                handed += 1;
                job.next += 1;
            }
            if job.next < job.end {
                blocked.push_back(job);
            }
        }
        *jobs = blocked;
        handed
    }

    async fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> Vec<Outcome> {
        let n = records.len();
        let batch = Arc::new(Batch {
            records,
            wait_for_ack,
            enqueue_deadline: Instant::now() + self.enqueue_wait,
            outcomes: Mutex::new(vec![None; n]),
            unanswered: AtomicUsize::new(n),
            done: Notify::new(),
        });
        self.context.feed.push(Job {
            batch: Arc::clone(&batch),
            next: 0,
            end: n,
            resend: false,
            seq: 0,
        });
        // librdkafka reports every message within message.timeout.ms and the feeder answers
        // every record within the enqueue wait; the guard only bounds the answer should either
        // come late. An event still unanswered then is answered as timed out (not accepted; it
        // may yet be written, like any "possibly persisted" one).
        let guard = if wait_for_ack {
            self.ack_guard
        } else {
            self.enqueue_wait + ACK_GUARD_MARGIN
        };
        if tokio::time::timeout(guard, batch.wait()).await.is_err() {
            tracing::warn!("answers overdue: answering the rest as timed out");
        }
        batch.outcomes(Failure::TimedOut)
    }
}

impl Sink for KafkaSink {
    fn send(&self, records: Vec<Record>, wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>> {
        Box::pin(self.inner.send(records, wait_for_ack))
    }

    fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed) && !self.inner.closed.load(Ordering::Relaxed)
    }

    /// Stops handing over new requests' records (the feeder answers them `ShuttingDown`), then
    /// flushes until nothing is queued, in the feeder or in librdkafka, or `timeout` passes.
    /// Records handed over again (after a producer replacement) are still delivered.
    fn close(&self, timeout: Duration) -> usize {
        self.inner.closed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.in_flight() == 0 || left.is_zero() {
                break;
            }
            let producer = self.inner.producer.load_full();
            if producer.flush(left.min(CLOSE_FLUSH_STEP)).is_err() {
                // Not flushed yet, or a failed producer the supervisor is replacing.
                std::thread::sleep(QUEUE_FULL_BACKOFF.min(left));
            }
        }
        let undelivered = self.in_flight();
        if undelivered > 0 {
            tracing::warn!(undelivered, "producer flush did not complete");
        }
        undelivered
    }

    fn in_flight(&self) -> usize {
        // Counted in the feeder until librdkafka has it, so nothing is between the two.
        self.inner.context.feed.pending()
            + self.inner.producer.load().in_flight_count().max(0) as usize
            + self.inner.retiring.load(Ordering::SeqCst)
    }
}
