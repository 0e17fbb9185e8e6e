//! Settings as given: every name inlet reads from its configuration file, its environment and
//! its command line, each field optional. The same struct is read from all three sources, so a
//! name can never differ between them; [`crate::config`] merges them, applies the defaults and
//! validates the result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;

/// When inlet answers an ingest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Answer 200 after the broker acknowledged every accepted event (acks=all).
    Ack,
    /// Answer 202 once every accepted event is in librdkafka's queue.
    Enqueue,
    /// Answer 202 once every accepted event is durably in the local spool, which delivers it.
    Spool,
}

/// When the spool syncs its log, as set (`spool_fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before every answer (group-committed).
    Always,
    /// At least every `spool_fsync_interval_ms`.
    Interval,
}

/// Kafka compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The value of librdkafka's `compression.codec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Whose client addresses are truncated (IPv4 to /24, IPv6 to /48) before they reach Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    None,
    Beacons,
    All,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// How inlet talks to the Kafka brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// A secret as given (a password, a key's passphrase): shown as `<redacted>` by `Debug`, so no
/// log line, panic or error made from the settings can print it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Raw settings as given by one source: every field optional. The same struct is read from the
/// TOML file and from environment and flags, so a name can never differ between them.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Public listener: ingest API, /healthz, /readyz [default: 0.0.0.0:8080]
    #[arg(long, env = "INLET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin listener: /metrics, /healthz, /readyz [default: 0.0.0.0:9100]
    #[arg(long, env = "INLET_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Kafka bootstrap servers, comma-separated (required unless --dev)
    #[arg(long, env = "INLET_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Path of the token registry (TOML, one [[token]] table per token; required unless --dev)
    #[arg(long, env = "INLET_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Topic for beacons [default: inlet.beacons]
    #[arg(long, env = "INLET_TOPIC_BEACONS")]
    pub topic_beacons: Option<String>,
    /// Topic for occurrences [default: inlet.occurrences]
    #[arg(long, env = "INLET_TOPIC_OCCURRENCES")]
    pub topic_occurrences: Option<String>,
    /// Topic for the SDKs' other items (transactions, sessions, attachments, ...)
    /// [default: inlet.items]
    #[arg(long, env = "INLET_TOPIC_ITEMS")]
    pub topic_items: Option<String>,
    /// Topic for session recordings, in chunks [default: inlet.recordings]
    #[arg(long, env = "INLET_TOPIC_RECORDINGS")]
    pub topic_recordings: Option<String>,
    /// Topic for OpenTelemetry spans, one trace's in each message [default: otlp_spans]
    #[arg(long, env = "INLET_TOPIC_OTLP_SPANS")]
    pub topic_otlp_spans: Option<String>,
    /// Topic for OpenTelemetry log records, one resource's in each message [default: otlp_logs]
    #[arg(long, env = "INLET_TOPIC_OTLP_LOGS")]
    pub topic_otlp_logs: Option<String>,
    /// Topic for OpenTelemetry metrics, one resource's in each message [default: otlp_metrics]
    #[arg(long, env = "INLET_TOPIC_OTLP_METRICS")]
    pub topic_otlp_metrics: Option<String>,
    /// When to answer: after the broker's ack (200), or once queued (202) [default: ack]
    #[arg(long, env = "INLET_DELIVERY", value_enum)]
    pub delivery: Option<Delivery>,
    /// The spool's directory (required under `spool`; under --dev a temporary one if unset)
    #[arg(long, env = "INLET_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Disk the spool may use, in bytes; past it 503 `spool_full` [default: 8589934592]
    #[arg(long, env = "INLET_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// When the spool syncs: before every answer, or at least every interval [default: always]
    #[arg(long, env = "INLET_SPOOL_FSYNC", value_enum)]
    pub spool_fsync: Option<FsyncMode>,
    /// Under `spool_fsync = interval`, the longest time between syncs [default: 100]
    #[arg(long, env = "INLET_SPOOL_FSYNC_INTERVAL_MS")]
    pub spool_fsync_interval_ms: Option<u64>,
    /// Kafka compression codec [default: lz4]
    #[arg(long, env = "INLET_COMPRESSION", value_enum)]
    pub compression: Option<Compression>,
    /// How long the feeder gathers requests before handing them to librdkafka in one burst
    /// [default: 5]
    #[arg(long, env = "INLET_LINGER_MS")]
    pub linger_ms: Option<u64>,
    /// How long a request waits for room in a full producer queue before 503 [default: 1000]
    #[arg(long, env = "INLET_ENQUEUE_WAIT_MS")]
    pub enqueue_wait_ms: Option<u64>,
    /// Under `ack` delivery, how long librdkafka may try to deliver an event before the request
    /// answers 503 for it (librdkafka's message.timeout.ms) [default: 10000]
    #[arg(long, env = "INLET_DELIVERY_TIMEOUT_MS")]
    pub delivery_timeout_ms: Option<u64>,
    /// On SIGTERM/SIGINT: time readiness is 503 while inlet still serves, before it stops
    /// accepting (part of the grace period) [default: 0]
    #[arg(long, env = "INLET_SHUTDOWN_DELAY_MS")]
    pub shutdown_delay_ms: Option<u64>,
    /// On SIGTERM/SIGINT: time to finish in-flight requests and flush the producer [default: 25000]
    #[arg(long, env = "INLET_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Largest beacons request body as sent, in bytes [default: 1048576]
    #[arg(long, env = "INLET_BEACONS_MAX_BODY_BYTES")]
    pub beacons_max_body_bytes: Option<usize>,
    /// Largest beacons request body once decoded, in bytes [default: 4194304]
    #[arg(long, env = "INLET_BEACONS_MAX_DECODED_BYTES")]
    pub beacons_max_decoded_bytes: Option<usize>,
    /// Largest single beacon, as JSON, in bytes [default: 131072]
    #[arg(long, env = "INLET_BEACONS_MAX_EVENT_BYTES")]
    pub beacons_max_event_bytes: Option<usize>,
    /// Largest occurrences request body as sent, in bytes [default: 10485760]
    #[arg(long, env = "INLET_OCCURRENCES_MAX_BODY_BYTES")]
    pub occurrences_max_body_bytes: Option<usize>,
    /// Largest occurrences request body once decoded, in bytes [default: 41943040]
    #[arg(long, env = "INLET_OCCURRENCES_MAX_DECODED_BYTES")]
    pub occurrences_max_decoded_bytes: Option<usize>,
    /// Largest single occurrence, as JSON, in bytes; keep under the broker's message.max.bytes
    /// [default: 1000000]
    #[arg(long, env = "INLET_OCCURRENCES_MAX_EVENT_BYTES")]
    pub occurrences_max_event_bytes: Option<usize>,
    /// Largest single SDK item (a transaction, an attachment, ...), in bytes; keep under the
    /// broker's message.max.bytes [default: 1000000]
    #[arg(long, env = "INLET_ITEMS_MAX_EVENT_BYTES")]
    pub items_max_event_bytes: Option<usize>,
    /// Largest session recording one request may carry, in bytes as sent [default: 104857600]
    #[arg(long, env = "INLET_RECORDINGS_MAX_BYTES")]
    pub recordings_max_bytes: Option<usize>,
    /// Largest chunk of a recording, each one Kafka message; keep under the broker's
    /// message.max.bytes [default: 524288]
    #[arg(long, env = "INLET_RECORDINGS_CHUNK_BYTES")]
    pub recordings_chunk_bytes: Option<usize>,
    /// Largest OTLP request body as sent, in bytes [default: 4194304]
    #[arg(long, env = "INLET_OTLP_MAX_BODY_BYTES")]
    pub otlp_max_body_bytes: Option<usize>,
    /// Largest OTLP request body once decoded, in bytes [default: 16777216]
    #[arg(long, env = "INLET_OTLP_MAX_DECODED_BYTES")]
    pub otlp_max_decoded_bytes: Option<usize>,
    /// Largest Kafka message of OTLP data: a request is split into messages under it; keep
    /// under the broker's message.max.bytes [default: 1000000]
    #[arg(long, env = "INLET_OTLP_MAX_MESSAGE_BYTES")]
    pub otlp_max_message_bytes: Option<usize>,
    /// Most events in one request [default: 1000]
    #[arg(long, env = "INLET_MAX_EVENTS_PER_REQUEST")]
    pub max_events_per_request: Option<usize>,
    /// Open connections on the public listener at most; more are closed at once [default: 16384]
    #[arg(long, env = "INLET_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Threads serving HTTP (the async runtime's workers) [default: the CPUs available]
    #[arg(long, env = "INLET_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Requests in flight at most; more are answered 503 `overloaded` at once [default: 4096]
    #[arg(long, env = "INLET_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Time a client has to send request headers, and the longest an idle keep-alive connection
    /// stays open: keep it above the load balancer's idle timeout [default: 75000]
    #[arg(long, env = "INLET_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Header lines per request at most (431 past it) [default: 100]
    #[arg(long, env = "INLET_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// Bytes of request line and headers at most (431 past it) [default: 65536]
    #[arg(long, env = "INLET_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Grace period for a request body before body_min_rate applies; slower bodies get 408
    /// [default: 10000]
    #[arg(long, env = "INLET_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Slowest body upload accepted, in bytes per second: after body_timeout, a body must keep
    /// delivering at least this on average, or get 408 [default: 16384]
    #[arg(long, env = "INLET_BODY_MIN_RATE")]
    pub body_min_rate: Option<u64>,
    /// Proxies whose X-Forwarded-For is believed, as IPs or CIDRs (comma-separated) [default: none]
    #[arg(long, env = "INLET_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Whose client IPs are truncated (IPv4 /24, IPv6 /48) before Kafka [default: beacons]
    #[arg(long, env = "INLET_CLIENT_IP_TRUNCATION", value_enum)]
    pub client_ip_truncation: Option<Truncation>,
    /// Directory whose `*.js` files `GET /static/{file}.js` serves to posthog-js (its npm
    /// package's `dist/`: `array.js` for the HTML snippet, and the extensions it loads lazily)
    /// [default: none, 404]
    #[arg(long, env = "INLET_POSTHOG_STATIC_DIR")]
    pub posthog_static_dir: Option<PathBuf>,
    /// Failed authentications one client address may make per minute before 429 [default: 30]
    #[arg(long, env = "INLET_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<u32>,
    /// Log format: JSON lines, text, or auto (text on a terminal, JSON otherwise) [default: auto]
    #[arg(long, env = "INLET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Redis shared by every replica, for per-token quotas and deduplication across the fleet
    /// (`redis://host:6379/0`) [default: none, each replica alone]
    #[arg(long, env = "INLET_REDIS_URL")]
    pub redis_url: Option<String>,
    /// How long a request waits for Redis before it falls back to the local limiter [default: 50]
    #[arg(long, env = "INLET_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// The share of a token's quota each replica allows on its own while Redis is unreachable,
    /// in (0, 1]: 1 keeps serving the whole quota on every replica, 1/replicas keeps the fleet's
    /// total [default: 1]
    #[arg(long, env = "INLET_REDIS_FALLBACK_SHARE")]
    pub redis_fallback_share: Option<f64>,
    /// Seconds within which an event whose client-chosen id was accepted already is answered as
    /// accepted and not produced again; 0 turns deduplication off [default: 0]
    #[arg(long, env = "INLET_DEDUPE_WINDOW_S")]
    pub dedupe_window_s: Option<u64>,
    /// Topic for dead letters (events refused as invalid) [default: inlet.dead-letters]
    #[arg(long, env = "INLET_TOPIC_DEAD_LETTERS")]
    pub topic_dead_letters: Option<String>,
    /// Whether events refused as invalid are produced to the dead-letter topic [default: on]
    #[arg(long, env = "INLET_DEAD_LETTERS", value_enum)]
    pub dead_letters: Option<Switch>,
    /// How inlet talks to Kafka: plaintext, ssl, sasl_plaintext or sasl_ssl [default: plaintext]
    #[arg(long, env = "INLET_KAFKA_SECURITY_PROTOCOL", value_enum)]
    pub kafka_security_protocol: Option<SecurityProtocol>,
    /// The SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (librdkafka's sasl.mechanisms)
    #[arg(long, env = "INLET_KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// The SASL user name
    #[arg(long, env = "INLET_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// The SASL password (prefer kafka_sasl_password_file: a mounted secret)
    #[arg(long, env = "INLET_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,
    /// A file holding the SASL password (a trailing newline is ignored)
    #[arg(long, env = "INLET_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// The CA certificate(s) that sign the brokers' certificates, PEM (ssl.ca.location)
    #[arg(long, env = "INLET_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// inlet's client certificate, PEM, for brokers that require one (ssl.certificate.location)
    #[arg(long, env = "INLET_KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<PathBuf>,
    /// The client certificate's private key, PEM (ssl.key.location)
    #[arg(long, env = "INLET_KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<PathBuf>,
    /// The private key's passphrase, if it has one (prefer kafka_ssl_key_password_file)
    #[arg(long, env = "INLET_KAFKA_SSL_KEY_PASSWORD", hide_env_values = true)]
    pub kafka_ssl_key_password: Option<Secret>,
    /// A file holding the private key's passphrase (a trailing newline is ignored)
    #[arg(long, env = "INLET_KAFKA_SSL_KEY_PASSWORD_FILE")]
    pub kafka_ssl_key_password_file: Option<PathBuf>,
    /// Extra librdkafka producer property KEY=VALUE (repeatable; env: comma-separated)
    #[arg(
        long = "librdkafka",
        env = "INLET_LIBRDKAFKA",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    #[serde(skip)]
    pub librdkafka_args: Vec<String>,
    /// The file's `[librdkafka]` table.
    #[arg(skip)]
    #[serde(default, deserialize_with = "properties")]
    pub librdkafka: BTreeMap<String, String>,
}

/// Reads a TOML table of librdkafka properties, whose values may be strings, numbers or booleans.
fn properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(i) => Ok((k, i.to_string())),
            toml::Value::Float(f) => Ok((k, f.to_string())),
            toml::Value::Boolean(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "librdkafka.{k}: expected a string, number or boolean, got {}",
                other.type_str()
            ))),
        })
        .collect()
}

/// On or off, as a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}
