//! The supervisor thread: it tells readiness (a metadata probe of the beacons topic) and
//! replaces a producer that hit a fatal error, which would otherwise fail every later produce.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer as _, PurgeConfig};

use super::reports::Producer;
use super::shared::Shared;
use super::timing::QUEUE_FULL_BACKOFF;
use crate::lane::Lane;
use crate::metrics;

/// How often readiness is probed with a metadata request (and how long a probe may take).
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How soon a failed probe is tried again.
const PROBE_AGAIN_AFTER_FAILURE: Duration = Duration::from_millis(500);
/// How often the supervisor checks for a fatal producer error.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

/// Watches the producer: probes readiness with a metadata request for the beacons topic every
/// [`PROBE_EVERY`], and replaces the producer when librdkafka reports a fatal error (for the
/// idempotent producer: a fenced or out-of-sequence producer id); for as long as the sink
/// lives.
pub(super) fn run(weak: Weak<Shared>) {
    let mut next_probe = Instant::now();
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let producer = shared.producer.load_full();
        if let Some((code, reason)) = producer.client().fatal_error() {
            recover(&shared, &producer, code, &reason);
        }
        if Instant::now() >= next_probe {
            let ok = probe(&shared, &producer);
            next_probe = Instant::now()
                + if ok {
                    PROBE_EVERY
                } else {
                    PROBE_AGAIN_AFTER_FAILURE
                };
        }
        drop((producer, shared));
        std::thread::sleep(SUPERVISE_EVERY);
    }
}

/// One readiness probe; returns whether a broker answered with the topic's partitions.
fn probe(shared: &Shared, producer: &Producer) -> bool {
    let topic = &shared.topics[Lane::BEACON];
    let result = producer.client().fetch_metadata(Some(topic), PROBE_EVERY);
    let ok = match &result {
        Ok(md) => md
            .topics()
            .first()
            .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()),
        Err(_) => false,
    };
    let was = shared.ready.swap(ok, Ordering::Relaxed);
    if ok {
        shared.context.connection.connected();
    }
    if was != ok {
        match &result {
            Ok(_) if ok => tracing::info!(topic = %topic, "Kafka is reachable"),
            Ok(_) => tracing::warn!(topic = %topic, "topic missing or without partitions"),
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
fn recover(shared: &Shared, failed: &Arc<Producer>, code: RDKafkaErrorCode, reason: &str) {
    ::metrics::counter!(metrics::PRODUCER_FATAL_ERRORS).increment(1);
    tracing::error!(
        ?code,
        reason,
        "fatal producer error: replacing the producer"
    );
    let fresh = match Producer::new(&shared.client_config, &shared.context) {
        Ok(fresh) => Arc::new(fresh),
        Err(error) => {
            tracing::error!(%error, "cannot create a new producer; retrying");
            return;
        }
    };
    // Until its delivery reports are in, what the failed producer holds is counted in
    // flight (its purged records under `enqueue` move to the feeder through them). Counted
    // before the new producer is stored: a feeder pass that sees the new one holds resends.
    let held = failed.in_flight_count().max(0) as usize;
    shared.retiring.fetch_add(held, Ordering::SeqCst);
    shared.producer.store(fresh);
    failed.purge(PurgeConfig::default().queue().inflight());
    retire(Arc::clone(failed), held, Arc::clone(&shared.retiring));
}

/// Drops a replaced producer on a thread of its own, then takes its `held` records off
/// `retiring`. Dropping serves the last delivery reports and joins librdkafka's threads; that
/// stays off the supervisor's clock.
fn retire(failed: Arc<Producer>, held: usize, retiring: Arc<AtomicUsize>) {
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
