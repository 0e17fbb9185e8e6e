//! Configuration: parsed once into typed, validated settings before anything binds.
//!
//! Three sources, lowest to highest precedence: the TOML file (`--config`, `INLET_CONFIG`),
//! environment variables (`INLET_*`), command-line flags. Every setting has the same name in all
//! three: the TOML key `kafka_brokers` is the variable `INLET_KAFKA_BROKERS` and the flag
//! `--kafka-brokers`. Free-form librdkafka properties go in the file's `[librdkafka]` table or in
//! `--librdkafka key=value` / `INLET_LIBRDKAFKA="key=value,key=value"`.
//!
//! The result is one typed part per piece of inlet: the HTTP edge ([`EdgeConfig`]), each lane
//! ([`LaneConfig`], from the names in its entry of the lane table), the pipeline
//! ([`IngestConfig`]), the Kafka producer ([`KafkaConfig`]), the spool ([`SpoolConfig`]) and the
//! fleet ([`FleetConfig`]). Each part is built and checked in its own `resolve`, once, and each
//! piece is handed its part alone. A new setting is its declaration in
//! [`Settings`](crate::settings::Settings) (name, help, environment variable) and one line in
//! its part's `resolve` (its default and type), where the checks of that part are too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

pub use crate::lane::BodyLimits;
use crate::lane::{Lane, PerLane};
pub use crate::settings::{
    Compression, Delivery, FsyncMode, LogFormat, Secret, SecurityProtocol, Settings, Switch,
    Truncation,
};

/// inlet: an HTTP-to-Kafka ingest gateway for analytics beacons and error occurrences.
#[derive(Debug, Parser)]
#[command(name = "inlet", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Path of the TOML configuration file (every setting below is also a key in it).
    #[arg(long, env = "INLET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Run with an embedded in-memory Kafka-protocol cluster (librdkafka's mock cluster) and a
    /// development token. For trying inlet out, never for production.
    #[arg(long)]
    pub dev: bool,
    /// Once both listeners are bound, write where to this file (`public=ADDR` and `admin=ADDR`
    /// lines, written whole: `PATH.tmp`, then renamed): for supervisors and tests that listen on
    /// port 0.
    #[arg(long, env = "INLET_LISTEN_FILE")]
    pub listen_file: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume a topic and print each message decoded from protobuf as one JSON line.
    Tail(crate::tail::TailArgs),
    /// Deliver what a spool directory holds to Kafka, and exit 0 once it is empty (non-zero,
    /// with a count, if it cannot). For a replica being retired.
    Drain(DrainArgs),
}

/// `inlet drain`: the spool to empty; Kafka and the topics come from the usual settings.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The spool directory to deliver.
    #[arg(long)]
    pub spool_dir: PathBuf,
    /// Give up (exit 1, counting what is left) after this many milliseconds [default: no limit;
    /// a delivery that fails for `delivery_timeout_ms` ends the drain anyway]
    #[arg(long)]
    pub deadline_ms: Option<u64>,
    /// How often the drain prints its progress (records left, records/s, time left) when
    /// stderr is not a terminal; on a terminal a bar moves instead [default: 10000]
    #[arg(long, default_value_t = 10_000)]
    pub progress_every_ms: u64,
}

/// When the spool syncs its log, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFsync {
    /// Before every answer: an answered event survives a power loss.
    Always,
    /// At least this often: a power loss may lose that much, a process crash nothing.
    Interval(Duration),
}

impl Truncation {
    /// Whether events of `lane` get truncated addresses.
    pub fn applies_to(self, lane: Lane) -> bool {
        match self {
            Truncation::None => false,
            Truncation::Beacons => lane.spec().analytics,
            Truncation::All => true,
        }
    }
}

/// Validated configuration: every default applied, every value checked, as one typed part per
/// piece of inlet. Each part is built (and checked) from the settings in its own block below,
/// and each piece is handed its part alone: a setting is added where its part is resolved, and
/// its name and help text once in [`Settings`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP edge: listeners, connection and request limits, client addresses, shutdown.
    pub edge: EdgeConfig,
    /// Each lane's topic and size caps.
    pub lanes: PerLane<LaneConfig>,
    /// When inlet answers an ingest request, and what the pipeline does to each event.
    pub ingest: IngestConfig,
    /// The Kafka producer.
    pub kafka: KafkaConfig,
    /// The spool; `Some` exactly when delivery is `spool`.
    pub spool: Option<SpoolConfig>,
    /// Fleet mode: quotas and deduplication shared through Redis, and dead letters.
    pub fleet: FleetConfig,
    /// The token registry file; `None` only in `--dev` (a built-in development token).
    pub tokens_file: Option<PathBuf>,
    pub log_format: LogFormat,
}

/// The settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_connections: usize,
    pub worker_threads: usize,
    pub max_concurrent_requests: usize,
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub body_timeout: Duration,
    /// Bytes per second.
    pub body_min_rate: u64,
    pub max_events_per_request: usize,
    pub trusted_proxies: Vec<crate::client::Cidr>,
    pub auth_failures_per_minute: u32,
    /// posthog-js's scripts, served at `/static/{file}.js`.
    pub posthog_static_dir: Option<PathBuf>,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
}

/// One lane's settings, resolved.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub topic: String,
    pub limits: BodyLimits,
    /// Whether the lane is produced (dead letters can be turned off; the others are always on).
    pub on: bool,
}

/// What the pipeline needs besides the lanes.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    pub delivery: Delivery,
    pub client_ip_truncation: Truncation,
    /// The largest chunk of a recording (`recordings_chunk_bytes`).
    pub recording_chunk_bytes: usize,
    /// The largest Kafka message of OTLP data (`otlp_max_message_bytes`).
    pub otlp_max_message_bytes: usize,
}

/// The settings of the Kafka producer.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers; empty only in `--dev`, where the embedded cluster fills it in.
    pub brokers: String,
    pub compression: Compression,
    pub linger: Duration,
    pub enqueue_wait: Duration,
    pub delivery_timeout: Duration,
    /// Whether librdkafka retries an event for as long as the process lives (delivery
    /// `enqueue`, where nobody waits for the acknowledgement) rather than `delivery_timeout`.
    pub retry_forever: bool,
    /// The largest event any lane accepts, in bytes (its Kafka message adds an envelope).
    pub max_event: usize,
    /// The connection's security (TLS, SASL) as librdkafka properties, secrets included.
    pub security: Properties,
    /// Free-form librdkafka producer properties; they win over inlet's own.
    pub librdkafka: Properties,
}

/// librdkafka properties whose `Debug` shows `<redacted>` for every secret's value (a
/// password, a private key, an OAUTHBEARER configuration), so no log line or error built from
/// the configuration can print one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    /// Whether `key` names a property whose value is a secret.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "ssl_key",
        ]
        .iter()
        .any(|word| key.contains(word))
    }
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.0.iter().map(|(k, v)| match Properties::is_secret(k) {
            true => (k, "<redacted>"),
            false => (k, v.as_str()),
        });
        f.debug_map().entries(shown).finish()
    }
}

/// The settings of the spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes the spool may take on disk.
    pub max_bytes: u64,
    pub fsync: SpoolFsync,
}

/// The settings of a fleet of replicas (see the README's "Fleet mode").
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Redis shared by the replicas; `None`: each replica limits and deduplicates alone.
    pub redis_url: Option<String>,
    /// Longest wait for one Redis round trip before falling back.
    pub redis_timeout: Duration,
    /// The share of a token's quota a replica allows alone while Redis is unreachable.
    pub redis_fallback_share: f64,
    /// Deduplication window; zero: off.
    pub dedupe_window: Duration,
}

/// The two sources a part is resolved from: flags and environment over the file.
#[derive(Clone, Copy)]
struct Given<'a> {
    cli: &'a Settings,
    file: &'a Settings,
    dev: bool,
}

/// The setting `$field` of `$given`, from the flags and environment, else the file, else
/// `$default`.
macro_rules! pick {
    ($given:ident, $field:ident, $default:expr) => {
        ($given.cli.$field.clone())
            .or_else(|| $given.file.$field.clone())
            .unwrap_or_else(|| $default)
    };
    ($given:ident, $field:ident) => {
        ($given.cli.$field.clone()).or_else(|| $given.file.$field.clone())
    };
}

impl Config {
    /// Merges the flags/environment (`cli`) over the file's settings, applies defaults and
    /// validates. `dev` relaxes the requirement of brokers and a token registry.
    pub fn resolve(cli: Settings, file: Settings, dev: bool) -> anyhow::Result<Config> {
        Config::resolve_for(cli, file, dev, true)
    }

    /// As [`Config::resolve`]; `serving: false` (for `inlet drain`) needs no token registry.
    pub fn resolve_for(
        cli: Settings,
        file: Settings,
        dev: bool,
        serving: bool,
    ) -> anyhow::Result<Config> {
        let given = Given {
            cli: &cli,
            file: &file,
            dev,
        };
        let delivery = pick!(given, delivery, Delivery::Ack);
        let lanes = resolve_lanes(given)?;
        let kafka = KafkaConfig::resolve(given, delivery, &lanes)?;
        let tokens_file = pick!(given, tokens_file);
        if tokens_file.is_none() && !dev && serving {
            bail!(
                "tokens_file: no token registry configured. Set INLET_TOKENS_FILE=/path/tokens.toml \
                 (or `tokens_file` in the config file, or --tokens-file)"
            );
        }
        Ok(Config {
            spool: SpoolConfig::resolve(given, delivery)?,
            edge: EdgeConfig::resolve(given)?,
            fleet: FleetConfig::resolve(given)?,
            ingest: IngestConfig {
                delivery,
                client_ip_truncation: pick!(given, client_ip_truncation, Truncation::Beacons),
                recording_chunk_bytes: lanes[Lane::RECORDING].limits.max_event,
                otlp_max_message_bytes: lanes[Lane::TRACES].limits.max_event,
            },
            kafka,
            lanes,
            tokens_file,
            log_format: pick!(given, log_format, LogFormat::Auto),
        })
    }

    /// Size caps of `lane`'s requests.
    pub fn limits(&self, lane: Lane) -> BodyLimits {
        self.lanes[lane].limits
    }

    /// The topic of `lane`.
    pub fn topic(&self, lane: Lane) -> &str {
        &self.lanes[lane].topic
    }

    /// Every lane's topic, in the lanes' order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.lanes.iter().map(|(_, lane)| lane.topic.as_str())
    }
}

/// The connection's security settings as librdkafka properties: the protocol, SASL's
/// mechanism and credentials, TLS's CA, client certificate and key. A secret comes from its
/// setting or from its `_file` setting (as Kubernetes mounts secrets), never both; errors name
/// the setting and the file, never the secret.
fn security(given: Given) -> anyhow::Result<Properties> {
    let mut properties = BTreeMap::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            properties.insert(key.to_owned(), value);
        }
    };
    let path = |p: Option<PathBuf>| p.map(|p| p.display().to_string());
    set(
        "security.protocol",
        pick!(given, kafka_security_protocol).map(|p| p.as_str().to_owned()),
    );
    set("sasl.mechanisms", pick!(given, kafka_sasl_mechanism));
    set("sasl.username", pick!(given, kafka_sasl_username));
    set(
        "sasl.password",
        secret(
            "kafka_sasl_password",
            pick!(given, kafka_sasl_password),
            pick!(given, kafka_sasl_password_file),
        )?,
    );
    set("ssl.ca.location", path(pick!(given, kafka_ssl_ca_location)));
    set(
        "ssl.certificate.location",
        path(pick!(given, kafka_ssl_certificate_location)),
    );
    set(
        "ssl.key.location",
        path(pick!(given, kafka_ssl_key_location)),
    );
    set(
        "ssl.key.password",
        secret(
            "kafka_ssl_key_password",
            pick!(given, kafka_ssl_key_password),
            pick!(given, kafka_ssl_key_password_file),
        )?,
    );
    if let Some(mechanism) = properties.get("sasl.mechanisms") {
        let known = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];
        if !known.contains(&mechanism.as_str()) {
            bail!(
                "kafka_sasl_mechanism: `{mechanism}` is not one of {}",
                known.join(", ")
            );
        }
    }
    Ok(Properties(properties))
}

/// The secret `name` gives, from its value or from the file `{name}_file` names (one trailing
/// newline dropped); an error names the setting and the file, never the secret.
fn secret(
    name: &str,
    value: Option<Secret>,
    file: Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("{name} and {name}_file: give one of them, not both"),
        (Some(Secret(value)), None) => Ok(Some(value)),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{name}_file: cannot read {}", file.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                bail!("{name}_file: {} is empty", file.display());
            }
            Ok(Some(text.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// The bounds of `recordings_chunk_bytes`.
const MIN_CHUNK: usize = 1 << 10;
const MAX_CHUNK: usize = 16 << 20;

/// Each lane's settings, from the names in its entry of the lane table.
fn resolve_lanes(given: Given) -> anyhow::Result<PerLane<LaneConfig>> {
    let lanes = PerLane::new(|lane| {
        let spec = lane.spec();
        let (cli, file) = ((spec.settings)(given.cli), (spec.settings)(given.file));
        let defaults = spec.limits;
        LaneConfig {
            topic: cli
                .topic
                .or(file.topic)
                .unwrap_or_else(|| spec.topic.into()),
            limits: BodyLimits {
                max_body: cli.max_body.or(file.max_body).unwrap_or(defaults.max_body),
                max_decoded: (cli.max_decoded.or(file.max_decoded)).unwrap_or(defaults.max_decoded),
                max_event: (cli.max_event.or(file.max_event)).unwrap_or(defaults.max_event),
            },
            on: cli.on.or(file.on) != Some(Switch::Off),
        }
    });
    for (lane, config) in lanes.iter() {
        check_topic(lane.spec().names.topic, &config.topic)?;
    }
    // Two lanes on one topic could not be told apart by a consumer of one of them.
    for (i, (lane, config)) in lanes.iter().enumerate() {
        let mut before = lanes.iter().take(i);
        if let Some((other, _)) = before.find(|(_, c)| c.topic == config.topic) {
            let (key, other) = (lane.spec().names.topic, other.spec().names.topic);
            bail!("{key}: must differ from {other}");
        }
    }
    for (lane, config) in lanes.iter() {
        let (prefix, limits) = (lane.spec().names.limits, config.limits);
        if limits.max_body == 0 || limits.max_decoded == 0 || limits.max_event == 0 {
            bail!("{prefix}_max_*_bytes: limits must be positive");
        }
        if limits.max_decoded < limits.max_body {
            bail!("{prefix}_max_decoded_bytes: must be at least {prefix}_max_body_bytes");
        }
    }
    // A chunk is one Kafka message and one spool record: small enough for both, and large
    // enough that a recording is not millions of messages.
    let chunk = lanes[Lane::RECORDING].limits.max_event;
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        bail!("recordings_chunk_bytes: must be between {MIN_CHUNK} and {MAX_CHUNK}");
    }
    Ok(lanes)
}

/// Fails, naming `key`, unless `topic` is a valid Kafka topic name.
pub(crate) fn check_topic(key: &str, topic: &str) -> anyhow::Result<()> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        bail!("{key}: `{topic}` is not a valid Kafka topic name (1..=249 of [a-zA-Z0-9._-])");
    }
    Ok(())
}

/// Fails, naming each, unless every value is above zero.
fn check_positive(values: &[(&str, usize)]) -> anyhow::Result<()> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((key, _)) => bail!("{key}: must be positive"),
        None => Ok(()),
    }
}

impl EdgeConfig {
    fn resolve(given: Given) -> anyhow::Result<EdgeConfig> {
        let (listen, admin_listen) = if given.dev {
            // The development token is public knowledge: keep --dev off the network unless asked.
            ("127.0.0.1:8080", "127.0.0.1:9100")
        } else {
            ("0.0.0.0:8080", "0.0.0.0:9100")
        };
        let edge = EdgeConfig {
            listen: pick!(given, listen, listen.parse().expect("valid default")),
            admin_listen: pick!(
                given,
                admin_listen,
                admin_listen.parse().expect("valid default")
            ),
            max_connections: pick!(given, max_connections, 16_384),
            worker_threads: pick!(
                given,
                worker_threads,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            max_concurrent_requests: pick!(given, max_concurrent_requests, 4096),
            header_read_timeout: millis(pick!(given, header_read_timeout_ms, 75_000)),
            max_headers: pick!(given, max_headers, 100),
            max_header_bytes: pick!(given, max_header_bytes, 64 << 10),
            body_timeout: millis(pick!(given, body_timeout_ms, 10_000)),
            body_min_rate: pick!(given, body_min_rate, 16 << 10),
            max_events_per_request: pick!(given, max_events_per_request, 1000),
            trusted_proxies: pick!(given, trusted_proxies, Vec::new())
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.parse()
                        .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
            auth_failures_per_minute: pick!(given, auth_failures_per_minute, 30),
            posthog_static_dir: pick!(given, posthog_static_dir),
            shutdown_delay: millis(pick!(given, shutdown_delay_ms, 0)),
            shutdown_grace: millis(pick!(given, shutdown_grace_ms, 25_000)),
        };
        check_positive(&[
            ("max_events_per_request", edge.max_events_per_request),
            ("max_connections", edge.max_connections),
            ("worker_threads", edge.worker_threads),
            ("max_concurrent_requests", edge.max_concurrent_requests),
            ("max_headers", edge.max_headers),
            ("max_header_bytes", edge.max_header_bytes),
            ("body_min_rate", edge.body_min_rate as usize),
            (
                "auth_failures_per_minute",
                edge.auth_failures_per_minute as usize,
            ),
        ])?;
        if edge.header_read_timeout.is_zero() || edge.body_timeout.is_zero() {
            bail!("header_read_timeout_ms and body_timeout_ms: must be positive");
        }
        if let Some(dir) = edge.posthog_static_dir.as_ref().filter(|dir| !dir.is_dir()) {
            bail!(
                "posthog_static_dir: {} is not a directory (point it at posthog-js's dist/)",
                dir.display()
            );
        }
        if edge.shutdown_delay > edge.shutdown_grace {
            bail!("shutdown_delay_ms: must not exceed shutdown_grace_ms");
        }
        Ok(edge)
    }
}

impl KafkaConfig {
    fn resolve(
        given: Given,
        delivery: Delivery,
        lanes: &PerLane<LaneConfig>,
    ) -> anyhow::Result<KafkaConfig> {
        let brokers = pick!(given, kafka_brokers, String::new()).trim().to_owned();
        if brokers.is_empty() && !given.dev {
            bail!(
                "kafka_brokers: no Kafka brokers configured. Set INLET_KAFKA_BROKERS=host:9092 \
                 (or `kafka_brokers` in the config file, or --kafka-brokers), \
                 or run `inlet --dev` to try inlet with an embedded cluster"
            );
        }
        let mut librdkafka = given.file.librdkafka.clone();
        for (i, pair) in given.cli.librdkafka_args.iter().enumerate() {
            // Not shown: the entry may hold a secret.
            let (k, v) = pair.split_once('=').with_context(|| {
                format!(
                    "librdkafka: entry {} of --librdkafka / INLET_LIBRDKAFKA is not KEY=VALUE",
                    i + 1
                )
            })?;
            librdkafka.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let security = security(given)?;
        let kafka = KafkaConfig {
            brokers,
            compression: pick!(given, compression, Compression::Lz4),
            linger: millis(pick!(given, linger_ms, 5)),
            enqueue_wait: millis(pick!(given, enqueue_wait_ms, 1000)),
            delivery_timeout: millis(pick!(given, delivery_timeout_ms, 10_000)),
            retry_forever: delivery == Delivery::Enqueue,
            max_event: lanes
                .iter()
                .map(|(_, l)| l.limits.max_event)
                .max()
                .unwrap_or(0),
            security,
            librdkafka: Properties(librdkafka),
        };
        if kafka.delivery_timeout < Duration::from_millis(100) {
            bail!("delivery_timeout_ms: must be at least 100");
        }
        Ok(kafka)
    }
}

impl SpoolConfig {
    fn resolve(given: Given, delivery: Delivery) -> anyhow::Result<Option<SpoolConfig>> {
        let dir = match (delivery, pick!(given, spool_dir)) {
            (Delivery::Spool, Some(dir)) => dir,
            // A directory of its own for each run: a --dev spool is for trying `spool` out.
            (Delivery::Spool, None) if given.dev => {
                std::env::temp_dir().join(format!("inlet-dev-spool-{}", std::process::id()))
            }
            (Delivery::Spool, None) => bail!(
                "spool_dir: delivery `spool` needs a directory. Set INLET_SPOOL_DIR=/var/lib/inlet/spool \
                 (or `spool_dir` in the config file, or --spool-dir)"
            ),
            _ => return Ok(None),
        };
        let spool = SpoolConfig {
            dir,
            max_bytes: pick!(given, spool_max_bytes, 8 << 30),
            fsync: match pick!(given, spool_fsync, FsyncMode::Always) {
                FsyncMode::Always => SpoolFsync::Always,
                FsyncMode::Interval => {
                    SpoolFsync::Interval(millis(pick!(given, spool_fsync_interval_ms, 100)))
                }
            },
        };
        if spool.max_bytes < 1 << 20 {
            bail!("spool_max_bytes: must be at least 1048576");
        }
        if matches!(spool.fsync, SpoolFsync::Interval(i) if i.is_zero()) {
            bail!("spool_fsync_interval_ms: must be positive");
        }
        Ok(Some(spool))
    }
}

impl FleetConfig {
    fn resolve(given: Given) -> anyhow::Result<FleetConfig> {
        let fleet = FleetConfig {
            redis_url: pick!(given, redis_url).filter(|u| !u.trim().is_empty()),
            redis_timeout: millis(pick!(given, redis_timeout_ms, 50)),
            redis_fallback_share: pick!(given, redis_fallback_share, 1.0),
            dedupe_window: Duration::from_secs(pick!(given, dedupe_window_s, 0)),
        };
        if let Some(url) = &fleet.redis_url {
            redis::Client::open(url.as_str())
                .map_err(|e| anyhow::anyhow!("redis_url: `{url}` is not a Redis URL: {e}"))?;
        }
        if fleet.redis_timeout.is_zero() {
            bail!("redis_timeout_ms: must be positive");
        }
        let share = fleet.redis_fallback_share;
        if !(share > 0.0 && share <= 1.0) {
            bail!("redis_fallback_share: must be above 0 and at most 1, got {share}");
        }
        Ok(fleet)
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Reads the TOML configuration file; unknown keys are errors that name the key.
pub fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("config: cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config: invalid {}", path.display()))
}

/// Loads the whole configuration from the parsed command line.
pub fn load(cli: &mut Cli) -> anyhow::Result<Config> {
    let file = match &cli.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    Config::resolve(std::mem::take(&mut cli.settings), file, cli.dev)
}

/// Loads the configuration `inlet drain` needs: Kafka and the topics from the usual sources,
/// delivery `spool` over `args`' directory, and no token registry.
pub fn load_for_drain(cli: &mut Cli, args: &DrainArgs) -> anyhow::Result<Config> {
    let file = match &cli.config {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    let mut settings = std::mem::take(&mut cli.settings);
    settings.delivery = Some(Delivery::Spool);
    settings.spool_dir = Some(args.spool_dir.clone());
    Config::resolve_for(settings, file, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Settings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_and_env_win_over_the_file() {
        let f = file("kafka_brokers = \"file:9092\"\ntokens_file = \"t.toml\"\nlinger_ms = 7\n");
        let cli = Settings {
            kafka_brokers: Some("cli:9092".into()),
            ..Default::default()
        };
        let c = Config::resolve(cli, f, false).unwrap();
        assert_eq!(c.kafka.brokers, "cli:9092");
        assert_eq!(c.kafka.linger, Duration::from_millis(7));
        assert_eq!(c.ingest.delivery, Delivery::Ack);
        assert_eq!(c.kafka.compression, Compression::Lz4);
        assert_eq!(c.topic(Lane::BEACON), "inlet.beacons");
    }

    #[test]
    fn missing_brokers_says_how_to_fix_it() {
        let err = Config::resolve(Settings::default(), Settings::default(), false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("INLET_KAFKA_BROKERS"), "{text}");
        assert!(text.contains("--dev"), "{text}");
    }

    #[test]
    fn spool_needs_a_directory_except_in_dev() {
        let settings = || Settings {
            kafka_brokers: Some("k:9092".into()),
            tokens_file: Some("t".into()),
            delivery: Some(Delivery::Spool),
            ..Default::default()
        };
        let err = Config::resolve(settings(), Settings::default(), false).unwrap_err();
        assert!(err.to_string().contains("INLET_SPOOL_DIR"), "{err}");
        let dev = Config::resolve(settings(), Settings::default(), true).unwrap();
        assert!(dev.spool.is_some());
        assert_eq!(dev.spool.as_ref().unwrap().max_bytes, 8 << 30);
        assert_eq!(dev.spool.as_ref().unwrap().fsync, SpoolFsync::Always);
        let f =
            file("spool_dir = \"/s\"\nspool_fsync = \"interval\"\nspool_fsync_interval_ms = 50\n");
        let c = Config::resolve(settings(), f, false).unwrap();
        assert_eq!(
            c.spool.as_ref().unwrap().fsync,
            SpoolFsync::Interval(Duration::from_millis(50))
        );
        assert_eq!(c.spool.unwrap().dir, PathBuf::from("/s"));
    }

    #[test]
    fn unknown_file_key_is_named() {
        let err = toml::from_str::<Settings>("kafka_brokerz = \"x\"").unwrap_err();
        assert!(err.to_string().contains("kafka_brokerz"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = toml::from_str::<Settings>("delivery = \"sometimes\"").unwrap_err();
        assert!(err.to_string().contains("delivery"), "{err}");
        let f = file("kafka_brokers = \"k:9092\"\ntokens_file = \"t\"\ntopic_beacons = \"a b\"");
        let err = Config::resolve(Settings::default(), f, false).unwrap_err();
        assert!(err.to_string().starts_with("topic_beacons"), "{err}");
    }

    #[test]
    fn fleet_settings_are_checked_and_dead_letters_can_be_turned_off() {
        let base = "kafka_brokers = \"k:9092\"\ntokens_file = \"t\"\n";
        let resolve = |extra: &str| {
            Config::resolve(Settings::default(), file(&format!("{base}{extra}")), false)
        };
        let c = resolve("").unwrap();
        let letters = &c.lanes[Lane::DEAD_LETTER];
        assert_eq!(
            (letters.topic.as_str(), letters.on),
            ("inlet.dead-letters", true)
        );
        assert!(c.fleet.redis_url.is_none() && c.fleet.dedupe_window.is_zero());
        assert!(!resolve("dead_letters = \"off\"").unwrap().lanes[Lane::DEAD_LETTER].on);
        for (extra, key) in [
            ("redis_url = \"http://x\"", "redis_url"),
            ("redis_fallback_share = 0.0", "redis_fallback_share"),
            ("redis_fallback_share = 1.5", "redis_fallback_share"),
            ("topic_dead_letters = \"a b\"", "topic_dead_letters"),
            (
                "topic_dead_letters = \"inlet.beacons\"",
                "topic_dead_letters",
            ),
        ] {
            let err = resolve(extra).unwrap_err().to_string();
            assert!(err.starts_with(key), "{extra}: {err}");
        }
    }

    #[test]
    fn librdkafka_properties_merge() {
        let f = file("kafka_brokers = \"k\"\ntokens_file = \"t\"\n[librdkafka]\n\"linger.ms\" = 9\n\"batch.size\" = \"1000\"\n");
        let cli = Settings {
            librdkafka_args: vec!["batch.size=2000".into()],
            ..Default::default()
        };
        let c = Config::resolve(cli, f, false).unwrap();
        assert_eq!(c.kafka.librdkafka.0["linger.ms"], "9");
        assert_eq!(c.kafka.librdkafka.0["batch.size"], "2000");
    }

    #[test]
    fn kafka_secrets_come_from_files_and_are_never_shown() {
        let dir = std::env::temp_dir().join(format!("inlet-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "s3cr3t-hunter2\n").unwrap();
        let given = |tweak: &dyn Fn(&mut Settings)| {
            let mut cli = Settings {
                kafka_brokers: Some("k:9093".into()),
                tokens_file: Some("t".into()),
                kafka_security_protocol: Some(SecurityProtocol::SaslSsl),
                kafka_sasl_mechanism: Some("SCRAM-SHA-512".into()),
                kafka_sasl_username: Some("inlet".into()),
                kafka_ssl_ca_location: Some("/etc/kafka/ca.pem".into()),
                ..Default::default()
            };
            tweak(&mut cli);
            Config::resolve(cli, Settings::default(), false)
        };
        let c = given(&|s| s.kafka_sasl_password_file = Some(password.clone())).unwrap();
        let properties = crate::sink::kafka::properties::producer_properties(&c.kafka);
        let property = |key: &str| {
            properties
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            property("sasl.password"),
            Some("s3cr3t-hunter2"),
            "the newline dropped"
        );
        assert_eq!(property("security.protocol"), Some("sasl_ssl"));
        assert_eq!(property("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(property("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        // The configuration as any log or panic would print it holds no secret.
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert!(format!("{:?}", c.kafka.security).contains("<redacted>"));
        // Nor does any error about it.
        let both = given(&|s| {
            s.kafka_sasl_password = Some(Secret("hunter2-given".into()));
            s.kafka_sasl_password_file = Some(password.clone());
        });
        let error = format!("{:#}", both.unwrap_err());
        assert!(
            error.contains("kafka_sasl_password and kafka_sasl_password_file"),
            "{error}"
        );
        let missing = given(&|s| s.kafka_sasl_password_file = Some(dir.join("nowhere")));
        let error = format!("{:#}", missing.unwrap_err());
        assert!(
            error.starts_with("kafka_sasl_password_file: cannot read"),
            "{error}"
        );
        let unknown = given(&|s| s.kafka_sasl_mechanism = Some("GSSAPI".into()));
        assert!(unknown
            .unwrap_err()
            .to_string()
            .starts_with("kafka_sasl_mechanism"));
        let garbled = given(&|s| s.librdkafka_args = vec!["sasl.passwordhunter2".into()]);
        let error = format!("{:#}", garbled.unwrap_err());
        assert!(
            error.contains("not KEY=VALUE") && !error.contains("hunter2"),
            "{error}"
        );
        let free_form = given(&|s| s.librdkafka_args = vec!["sasl.password=hunter2".into()]);
        assert!(!format!("{:?}", free_form.unwrap()).contains("hunter2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_example_file_is_valid_and_shows_the_defaults() {
        let f: Settings = toml::from_str(include_str!("../deploy/inlet.example.toml")).unwrap();
        let c = Config::resolve(Settings::default(), f, false).unwrap();
        let defaults = Config::resolve(
            Settings {
                kafka_brokers: Some("k".into()),
                tokens_file: Some("t".into()),
                ..Default::default()
            },
            Settings::default(),
            false,
        )
        .unwrap();
        assert_eq!(
            format!("{:?}", c.limits(Lane::BEACON)),
            format!("{:?}", defaults.limits(Lane::BEACON))
        );
        for lane in [Lane::OCCURRENCE, Lane::ITEM, Lane::RECORDING] {
            assert_eq!(
                format!("{:?}", c.limits(lane)),
                format!("{:?}", defaults.limits(lane))
            );
        }
        assert_eq!(
            (
                c.edge.listen,
                c.edge.admin_listen,
                c.ingest.delivery,
                c.kafka.compression,
                c.kafka.linger,
                c.kafka.enqueue_wait
            ),
            (
                defaults.edge.listen,
                defaults.edge.admin_listen,
                defaults.ingest.delivery,
                defaults.kafka.compression,
                defaults.kafka.linger,
                defaults.kafka.enqueue_wait
            )
        );
        assert_eq!(
            (
                c.kafka.delivery_timeout,
                c.edge.shutdown_grace,
                c.edge.max_events_per_request
            ),
            (
                defaults.kafka.delivery_timeout,
                defaults.edge.shutdown_grace,
                defaults.edge.max_events_per_request
            )
        );
        assert_eq!(
            format!(
                "{:?}",
                (
                    c.edge.max_connections,
                    c.edge.max_concurrent_requests,
                    c.edge.header_read_timeout,
                    c.edge.max_headers,
                    c.edge.max_header_bytes,
                    c.edge.body_timeout,
                    c.edge.body_min_rate,
                    &c.edge.trusted_proxies,
                    c.ingest.client_ip_truncation,
                    c.edge.auth_failures_per_minute,
                    c.log_format
                )
            ),
            format!(
                "{:?}",
                (
                    defaults.edge.max_connections,
                    defaults.edge.max_concurrent_requests,
                    defaults.edge.header_read_timeout,
                    defaults.edge.max_headers,
                    defaults.edge.max_header_bytes,
                    defaults.edge.body_timeout,
                    defaults.edge.body_min_rate,
                    &defaults.edge.trusted_proxies,
                    defaults.ingest.client_ip_truncation,
                    defaults.edge.auth_failures_per_minute,
                    defaults.log_format
                )
            )
        );
    }
}
