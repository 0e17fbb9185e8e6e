//! Metric names, units and buckets in one place, and the Prometheus recorder.
//!
//! Names carry their unit; label values come from closed sets (routes, statuses, kinds,
//! outcomes, reasons, registry token ids), never from error text or secrets.

use std::sync::{LazyLock, OnceLock};

use ::metrics::Counter;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::lane::{Lane, PerLane};

/// Requests by `route` and `status`.
pub const HTTP_REQUESTS: &str = "inlet_http_requests_total";
/// Request latency by `route`, from first byte of the head to the response.
pub const HTTP_DURATION: &str = "inlet_http_request_duration_seconds";
/// Connections closed at once because the listener was at `max_connections`, by `listener`.
pub const CONNECTIONS_REFUSED: &str = "inlet_http_connections_refused_total";
/// Requests shed with 503 because `max_concurrent_requests` were in flight.
pub const REQUESTS_SHED: &str = "inlet_http_requests_shed_total";
/// Requests in flight on the public listener.
pub const REQUESTS_IN_FLIGHT: &str = "inlet_http_requests_in_flight";
/// Ingest request body size as sent, by `route`.
pub const HTTP_BODY_BYTES: &str = "inlet_http_request_body_bytes";
/// Events by `kind` and `outcome` (accepted, duplicate, invalid, rate_limited, too_large,
/// unavailable).
pub const EVENTS: &str = "inlet_events_total";
/// What an SDK endpoint received, by `source` (the protocol), `type` (the SDK's message or item
/// type, from a closed set per source: Sentry item types, Rollbar's and Honeybadger's kinds,
/// Segment call types, PostHog event kinds) and `outcome` (as `inlet_events_total` has it).
pub const SDK_ITEMS: &str = "inlet_sdk_items_total";
/// Counter: requests whose handler panicked, answered 500 `internal_error`, by `route` (a bug).
pub const HTTP_PANICS: &str = "inlet_http_panics_total";
/// Requests refused by a token's rate limit, by `token` (the registry id).
pub const RATE_LIMITED: &str = "inlet_rate_limited_requests_total";
/// Authentication failures by `reason` (missing, unknown, blocked).
pub const AUTH_FAILURES: &str = "inlet_auth_failures_total";
/// Time from handing an event to librdkafka to the broker's acknowledgement.
pub const PRODUCE_LATENCY: &str = "inlet_kafka_produce_latency_seconds";
/// Events whose delivery failed, by `reason` (queue_full, too_large, timed_out, broker, shutting_down).
pub const DELIVERY_FAILURES: &str = "inlet_kafka_delivery_failures_total";
/// Accepted events (`enqueue` delivery) handed to librdkafka again after it failed them, e.g.
/// purged by a producer replacement.
pub const RESENT: &str = "inlet_kafka_resent_total";
/// Fatal producer errors, each followed by a new producer.
pub const PRODUCER_FATAL_ERRORS: &str = "inlet_kafka_producer_fatal_errors_total";
/// 1 while a broker answers metadata requests, else 0.
pub const KAFKA_READY: &str = "inlet_kafka_ready";
/// Messages in librdkafka's local queue (from its statistics).
pub const KAFKA_QUEUE_MESSAGES: &str = "inlet_kafka_queue_messages";
/// The queue's limit in messages (`queue.buffering.max.messages`).
pub const KAFKA_QUEUE_MAX_MESSAGES: &str = "inlet_kafka_queue_max_messages";
/// Bytes in librdkafka's local queue.
pub const KAFKA_QUEUE_BYTES: &str = "inlet_kafka_queue_bytes";
/// The queue's limit in bytes (`queue.buffering.max.kbytes`).
pub const KAFKA_QUEUE_MAX_BYTES: &str = "inlet_kafka_queue_max_bytes";
/// 1 while the connection to a `broker` (node id) is up.
pub const KAFKA_BROKER_UP: &str = "inlet_kafka_broker_up";
/// Average round-trip time to a `broker`, over the last statistics window.
pub const KAFKA_BROKER_RTT: &str = "inlet_kafka_broker_rtt_seconds";
/// Produce requests retried, all brokers.
pub const KAFKA_RETRIES: &str = "inlet_kafka_retries_total";
/// Produce request errors, all brokers.
pub const KAFKA_ERRORS: &str = "inlet_kafka_errors_total";
/// Errors connecting to Kafka, by `cause` (authentication, broker_certificate,
/// client_certificate, tls, unreachable).
pub const KAFKA_CONNECTION_ERRORS: &str = "inlet_kafka_connection_errors_total";
/// Token registry reloads by `result` (success, failure).
pub const TOKEN_RELOADS: &str = "inlet_token_registry_reloads_total";
/// Events refused as invalid and produced as dead letters, by `token` and `code`.
pub const DEAD_LETTERS: &str = "inlet_dead_letters_total";
/// Dead letters dropped: their queue was full, or their delivery failed.
pub const DEAD_LETTERS_DROPPED: &str = "inlet_dead_letters_dropped_total";
/// 1 while the Redis shared by the fleet answers, else 0 (quotas and deduplication local).
pub const QUOTA_BACKEND_UP: &str = "inlet_quota_backend_up";
/// Requests charged to the local limiter because Redis was unreachable or slow.
pub const QUOTA_FALLBACKS: &str = "inlet_quota_fallbacks_total";
/// Always 1, labelled with the `version`.
pub const BUILD_INFO: &str = "inlet_build_info";

// ---- the spool (`INLET_DELIVERY=spool`) ----

/// Bytes of the spool's segment files.
pub const SPOOL_BYTES: &str = "inlet_spool_bytes";
/// `spool_max_bytes`, for alerts on how full the spool is.
pub const SPOOL_MAX_BYTES: &str = "inlet_spool_max_bytes";
/// Records in the spool not yet acknowledged by the broker.
pub const SPOOL_RECORDS: &str = "inlet_spool_records";
/// Age of the oldest record not yet acknowledged (0 when none).
pub const SPOOL_OLDEST_AGE: &str = "inlet_spool_oldest_record_age_seconds";
/// Replay lag: how long records stayed in the spool until the broker acknowledged them (one
/// sample per delivered window, its oldest record).
pub const SPOOL_REPLAY_LAG: &str = "inlet_spool_replay_lag_seconds";
/// 1 while the spool is writable and under 90 % full (its readiness), else 0.
pub const SPOOL_WRITABLE: &str = "inlet_spool_ready";
/// Duration of one sync of the log.
pub const SPOOL_SYNC_DURATION: &str = "inlet_spool_sync_duration_seconds";
/// Records written by one group commit.
pub const SPOOL_GROUP_COMMIT_RECORDS: &str = "inlet_spool_group_commit_records";
/// Bytes found unreadable (bad checksum, impossible length, foreign file) and moved aside.
pub const SPOOL_CORRUPT_BYTES: &str = "inlet_spool_corrupt_bytes_total";
/// Requests the spool refused, by `reason` (spool_full, spool_unavailable).
pub const SPOOL_REFUSALS: &str = "inlet_spool_refusals_total";
/// Records delivered from the spool (acknowledged by the broker).
pub const SPOOL_DELIVERED: &str = "inlet_spool_delivered_total";
/// Records the broker refused for good (too large), kept in the spool's `rejected` file.
pub const SPOOL_REJECTED: &str = "inlet_spool_rejected_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const RECORDS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
const BYTES_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Installs the global Prometheus recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_records".into()), RECORDS_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status.");
            metrics::describe_counter!(
                CONNECTIONS_REFUSED,
                "Connections closed at once at max_connections, by listener."
            );
            metrics::describe_counter!(
                REQUESTS_SHED,
                "Requests shed with 503 at max_concurrent_requests."
            );
            metrics::describe_gauge!(
                REQUESTS_IN_FLIGHT,
                "Requests in flight on the public listener."
            );
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request latency by route."
            );
            metrics::describe_histogram!(
                HTTP_BODY_BYTES,
                metrics::Unit::Bytes,
                "Ingest request body size as sent, by route."
            );
            metrics::describe_counter!(EVENTS, "Events by kind and outcome.");
            metrics::describe_counter!(
                SDK_ITEMS,
                "What an SDK endpoint received, by source, item type and outcome."
            );
            metrics::describe_counter!(
                RATE_LIMITED,
                "Requests refused by a token's rate limit, by token id."
            );
            metrics::describe_counter!(AUTH_FAILURES, "Authentication failures by reason.");
            metrics::describe_histogram!(
                PRODUCE_LATENCY,
                metrics::Unit::Seconds,
                "Time from enqueue to the broker's acknowledgement."
            );
            metrics::describe_counter!(
                DELIVERY_FAILURES,
                "Events whose delivery failed, by reason."
            );
            metrics::describe_counter!(
                RESENT,
                "Accepted events handed to librdkafka again after it failed them."
            );
            metrics::describe_counter!(
                PRODUCER_FATAL_ERRORS,
                "Fatal producer errors, each followed by a new producer."
            );
            metrics::describe_gauge!(
                KAFKA_READY,
                "1 while a Kafka broker answers metadata requests."
            );
            metrics::describe_gauge!(
                KAFKA_QUEUE_MESSAGES,
                "Messages in librdkafka's local queue."
            );
            metrics::describe_gauge!(
                KAFKA_QUEUE_MAX_MESSAGES,
                "librdkafka's queue limit in messages."
            );
            metrics::describe_gauge!(
                KAFKA_QUEUE_BYTES,
                metrics::Unit::Bytes,
                "Bytes in librdkafka's local queue."
            );
            metrics::describe_gauge!(
                KAFKA_QUEUE_MAX_BYTES,
                metrics::Unit::Bytes,
                "librdkafka's queue limit in bytes."
            );
            metrics::describe_gauge!(KAFKA_BROKER_UP, "1 while the connection to a broker is up.");
            metrics::describe_gauge!(
                KAFKA_BROKER_RTT,
                metrics::Unit::Seconds,
                "Average round-trip time to a broker."
            );
            metrics::describe_counter!(KAFKA_RETRIES, "Produce requests retried.");
            metrics::describe_counter!(KAFKA_ERRORS, "Produce request errors.");
            metrics::describe_counter!(
                KAFKA_CONNECTION_ERRORS,
                "Errors connecting to Kafka, by cause."
            );
            metrics::describe_counter!(TOKEN_RELOADS, "Token registry reloads by result.");
            metrics::describe_gauge!(BUILD_INFO, "Build information.");
            metrics::describe_counter!(
                DEAD_LETTERS,
                "Events refused as invalid, produced as dead letters, by token and code."
            );
            metrics::describe_counter!(DEAD_LETTERS_DROPPED, "Dead letters dropped.");
            metrics::describe_gauge!(QUOTA_BACKEND_UP, "1 while the fleet's Redis answers.");
            metrics::describe_counter!(
                QUOTA_FALLBACKS,
                "Requests charged locally because Redis was unreachable."
            );
            describe_spool();
            handle
        })
        .clone()
}

/// Describes the spool's metrics.
fn describe_spool() {
    use metrics::Unit;
    metrics::describe_gauge!(
        SPOOL_BYTES,
        Unit::Bytes,
        "Bytes of the spool's segment files."
    );
    metrics::describe_gauge!(SPOOL_MAX_BYTES, Unit::Bytes, "The spool's limit in bytes.");
    metrics::describe_gauge!(SPOOL_RECORDS, "Records in the spool not yet acknowledged.");
    metrics::describe_gauge!(
        SPOOL_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest record not yet acknowledged."
    );
    metrics::describe_histogram!(
        SPOOL_REPLAY_LAG,
        Unit::Seconds,
        "Time records stayed in the spool until acknowledged."
    );
    metrics::describe_gauge!(
        SPOOL_WRITABLE,
        "1 while the spool is writable and under 90 % full."
    );
    metrics::describe_histogram!(
        SPOOL_SYNC_DURATION,
        Unit::Seconds,
        "Duration of one spool sync."
    );
    metrics::describe_histogram!(
        SPOOL_GROUP_COMMIT_RECORDS,
        "Records written by one group commit."
    );
    metrics::describe_counter!(
        SPOOL_CORRUPT_BYTES,
        Unit::Bytes,
        "Unreadable spool bytes moved aside."
    );
    metrics::describe_counter!(SPOOL_REFUSALS, "Requests the spool refused, by reason.");
    metrics::describe_counter!(SPOOL_DELIVERED, "Records delivered from the spool.");
    metrics::describe_counter!(
        SPOOL_REJECTED,
        "Records the broker refused for good, kept in the spool's rejected file."
    );
}

/// The `outcome` labels of `inlet_events_total`, a closed set.
pub const OUTCOMES: [&str; 6] = [
    "accepted",
    "duplicate",
    "invalid",
    "rate_limited",
    "too_large",
    "unavailable",
];

/// Counts `n` events of `kind` with `outcome` (one of [`OUTCOMES`]) in `inlet_events_total`.
/// The counters' handles are kept: the metric macros copy their labels into a new allocation at
/// every call, which every request would pay.
pub fn count_events(kind: Lane, outcome: &'static str, n: usize) {
    type Counters = PerLane<[OnceLock<Counter>; OUTCOMES.len()]>;
    static COUNTERS: LazyLock<Counters> =
        LazyLock::new(|| PerLane::new(|_| [const { OnceLock::new() }; OUTCOMES.len()]));
    if n == 0 {
        return;
    }
    let register = || ::metrics::counter!(EVENTS, "kind" => kind.as_str(), "outcome" => outcome);
    match OUTCOMES.iter().position(|o| *o == outcome) {
        Some(i) => COUNTERS[kind][i].get_or_init(register).increment(n as u64),
        None => register().increment(n as u64),
    }
}
