//! What librdkafka hands back: delivery reports (and its logs, errors and statistics), served in
//! batches on the reports thread. All of the sink's `unsafe` FFI is here: the report queue that
//! signals that thread, and the fault tests' fatal-error injection.
//!
//! librdkafka raises a [`Signal`] when the producer's report queue turns non-empty; the reports
//! thread lets reports gather for up to [`REPORT_WINDOW`], then polls them all, and each
//! delivery report answers its record's [`Batch`] (or, for a record accepted under `enqueue`
//! whose producer failed it, queues it for the feeder to hand over again).

use std::ffi::{c_void, CString};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaRespErr;

use super::batch::{failure_of, Batch, Slot};
use super::queue::{FeedQueue, Job};
use super::stats;
use super::timing::IDLE_CHECK;
use crate::metrics;
use crate::sink::Failure;

/// How long delivery reports gather before the reports thread serves them, at most (and at
/// most `linger`: with no feeder window there is no report window either). 2 ms kept p99 at
/// 1,000 req/s under 9 ms where 5 ms cost 12 ms, for the same CPU (loadtest/RESULTS.md).
pub(super) const REPORT_WINDOW: Duration = Duration::from_millis(2);
/// Events the reports thread serves before it lets go of the producer and looks again.
const EVENTS_PER_SERVE: usize = 1024;

/// The reports thread: once signalled, lets reports gather for `linger` (at most
/// [`REPORT_WINDOW`]), then serves every report waiting on the live producer; for as long as
/// the sink (the only strong holder of `live_producer`) lives. It also looks every
/// [`IDLE_CHECK`] unsignalled, so nothing can wait longer than that.
pub(super) fn run(
    live_producer: Weak<ArcSwap<Producer>>,
    reports_waiting: Arc<Signal>,
    linger: Duration,
) {
    let window = linger.min(REPORT_WINDOW);
    let mut drained = true;
    loop {
        if drained && reports_waiting.wait(IDLE_CHECK) && !window.is_zero() {
            std::thread::sleep(window);
        }
        let Some(producer) = live_producer.upgrade() else {
            return;
        };
        drained = producer.load().serve_reports();
    }
}

/// librdkafka's callbacks, all served on the reports thread: logs and errors go to tracing,
/// statistics to metrics, delivery reports to their batches.
#[derive(Clone)]
pub(super) struct Context {
    /// Where accepted records whose producer failed them go to be handed over again.
    pub(super) feed_queue: Arc<FeedQueue>,
    /// Raised by librdkafka when delivery reports wait to be served.
    pub(super) reports_waiting: Arc<Signal>,
    /// Why Kafka cannot be reached, logged once a cause.
    pub(super) connection: Arc<super::connection::Watch>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A failed connection is logged at every retry, every second; its error callback
        // says why once (`connection`).
        if fac == "FAIL" {
            tracing::debug!(target: "librdkafka", fac, "{message}");
            return;
        }
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
        stats::record(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.connection.error(&error, reason) {
            return;
        }
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

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        match result {
            Ok(_) => {
                ::metrics::histogram!(metrics::PRODUCE_LATENCY).record(slot.enqueued.elapsed());
                slot.batch.answer(slot.index, Ok(()));
            }
            Err((error, _)) => self.not_delivered(error, &slot),
        }
    }
}

impl Context {
    /// A failed delivery report: under `ack` the record's answer; under `enqueue` (accepted
    /// already) the record goes back to the feeder, unless the broker will never take it.
    fn not_delivered(&self, error: &KafkaError, slot: &Slot) {
        let batch: &Arc<Batch> = &slot.batch;
        let failure = failure_of(error);
        ::metrics::counter!(metrics::DELIVERY_FAILURES, "reason" => failure.as_str()).increment(1);
        if batch.wait_for_ack {
            tracing::debug!(%error, "delivery failed");
            batch.answer(slot.index, Err(failure));
        } else if failure == Failure::TooLarge {
            // Accepted under `enqueue` and refused by the broker: nothing will ever take it.
            // (Under `ack` this is a 413 for the event.)
            tracing::error!(%error, "an accepted event was refused by the broker");
        } else {
            // Accepted under `enqueue` (purged by a producer replacement, or failed): hand it
            // over again.
            tracing::debug!(%error, "delivery failed: handing the event over again");
            ::metrics::counter!(metrics::RESENT).increment(1);
            self.feed_queue
                .push(Job::resend(Arc::clone(batch), slot.index, slot.seq));
        }
    }
}

/// A librdkafka producer and the handle on its report queue that raises
/// [`Context::reports_waiting`]. Replaced whole after a fatal error.
pub(super) struct Producer {
    // Dropped first: librdkafka wants queue handles gone before its instance.
    reports: ReportQueue,
    producer: BaseProducer<Context>,
}

impl std::ops::Deref for Producer {
    type Target = BaseProducer<Context>;

    fn deref(&self) -> &BaseProducer<Context> {
        &self.producer
    }
}

impl Producer {
    /// Creates a producer from `client` whose report queue raises `context.reports_waiting`.
    pub(super) fn new(client: &ClientConfig, context: &Context) -> anyhow::Result<Producer> {
        let producer: BaseProducer<Context> = client
            .create_with_context(context.clone())
            .map_err(|e| anyhow::anyhow!("librdkafka: cannot create the producer: {e}"))?;
        Ok(Producer {
            reports: ReportQueue::new(&producer),
            producer,
        })
    }

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

    /// Raises a fatal error in this producer, as a broker fencing the idempotent producer
    /// would. For fault tests.
    pub(super) fn inject_fatal_error(&self) {
        let reason = CString::new("injected by a fault test").expect("no NUL");
        // SAFETY: the handle stays alive for the call (we borrow its producer), and librdkafka
        // copies the reason.
        unsafe {
            rdsys::rd_kafka_test_fatal_error(
                self.producer.client().native_ptr(),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}

/// A flag with a condition variable: set by librdkafka's queue callback, awaited by the reports
/// thread.
#[derive(Default)]
pub(super) struct Signal {
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
        let reports_waiting = Arc::as_ptr(&producer.context().reports_waiting);
        // SAFETY: the client outlives this handle (`Producer` drops it first), and the Signal
        // it raises lives in the client's context, so as long as the client; the callback is
        // disabled before the handle goes.
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            rdsys::rd_kafka_queue_cb_event_enable(
                queue,
                Some(raise_reports_waiting),
                reports_waiting as *mut c_void,
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
unsafe extern "C" fn raise_reports_waiting(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the context's Signal, alive while the callback is enabled.
    let reports_waiting = unsafe { &*(opaque as *const Signal) };
    reports_waiting.raise();
}
