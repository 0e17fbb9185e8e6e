//! Configuration: parsed once into typed, validated settings before anything binds.
//!
//! Three sources, lowest to highest precedence: the TOML file (`--config`, `INLET_CONFIG`),
//! environment variables (`INLET_*`), command-line flags. Every setting has the same name in all
//! three: the TOML key `kafka_brokers` is the variable `INLET_KAFKA_BROKERS` and the flag
//! `--kafka-brokers`. Free-form librdkafka properties go in the file's `[librdkafka]` table or in
//! `--librdkafka key=value` / `INLET_LIBRDKAFKA="key=value,key=value"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

pub use crate::lane::BodyLimits;
use crate::lane::{Lane, PerLane};
pub use crate::settings::{
    Compression, Delivery, FsyncMode, LogFormat, Settings, Switch, Truncation,
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

/// Validated configuration: every default applied, every value checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Bootstrap servers; empty only in `--dev`, where the embedded cluster fills it in.
    pub kafka_brokers: String,
    /// The token registry file; `None` only in `--dev` (a built-in development token).
    pub tokens_file: Option<PathBuf>,
    pub delivery: Delivery,
    /// The spool's directory; `Some` exactly when `delivery` is `spool`.
    pub spool_dir: Option<PathBuf>,
    /// Bytes the spool may take on disk.
    pub spool_max_bytes: u64,
    pub spool_fsync: SpoolFsync,
    pub compression: Compression,
    pub linger: Duration,
    pub enqueue_wait: Duration,
    pub delivery_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    /// Each lane's topic and size caps.
    pub lanes: PerLane<LaneConfig>,
    pub max_events_per_request: usize,
    pub log_format: LogFormat,
    pub trusted_proxies: Vec<crate::client::Cidr>,
    pub client_ip_truncation: Truncation,
    pub auth_failures_per_minute: u32,
    pub max_connections: usize,
    pub worker_threads: usize,
    pub max_concurrent_requests: usize,
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub body_timeout: Duration,
    /// Bytes per second.
    pub body_min_rate: u64,
    /// Free-form librdkafka producer properties; they win over inlet's own.
    pub librdkafka: BTreeMap<String, String>,
    /// Fleet mode: quotas and deduplication shared through Redis, and dead letters.
    pub fleet: FleetConfig,
}

/// One lane's settings, resolved.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub topic: String,
    pub limits: BodyLimits,
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
    /// The dead-letter topic; `None` when dead letters are off.
    pub topic_dead_letters: Option<String>,
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
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                cli.$field.or(file.$field).unwrap_or_else(|| $default)
            };
        }
        let lanes = PerLane::new(|lane| {
            let spec = lane.spec();
            let (cli, file) = ((spec.settings)(&cli), (spec.settings)(&file));
            let defaults = spec.limits;
            LaneConfig {
                topic: cli
                    .topic
                    .or(file.topic)
                    .unwrap_or_else(|| spec.topic.into()),
                limits: BodyLimits {
                    max_body: cli.max_body.or(file.max_body).unwrap_or(defaults.max_body),
                    max_decoded: (cli.max_decoded.or(file.max_decoded))
                        .unwrap_or(defaults.max_decoded),
                    max_event: (cli.max_event.or(file.max_event)).unwrap_or(defaults.max_event),
                },
            }
        });
        let mut librdkafka = file.librdkafka;
        for pair in &cli.librdkafka_args {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("librdkafka: `{pair}` is not KEY=VALUE"))?;
            librdkafka.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let kafka_brokers = pick!(kafka_brokers, String::new()).trim().to_owned();
        if kafka_brokers.is_empty() && !dev {
            bail!(
                "kafka_brokers: no Kafka brokers configured. Set INLET_KAFKA_BROKERS=host:9092 \
                 (or `kafka_brokers` in the config file, or --kafka-brokers), \
                 or run `inlet --dev` to try inlet with an embedded cluster"
            );
        }
        let tokens_file = cli.tokens_file.or(file.tokens_file);
        if tokens_file.is_none() && !dev && serving {
            bail!(
                "tokens_file: no token registry configured. Set INLET_TOKENS_FILE=/path/tokens.toml \
                 (or `tokens_file` in the config file, or --tokens-file)"
            );
        }
        let (listen_default, admin_default) = if dev {
            // The development token is public knowledge: keep --dev off the network unless asked.
            ("127.0.0.1:8080", "127.0.0.1:9100")
        } else {
            ("0.0.0.0:8080", "0.0.0.0:9100")
        };
        let delivery = pick!(delivery, Delivery::Ack);
        let spool_dir = match (delivery, cli.spool_dir.clone().or(file.spool_dir.clone())) {
            (Delivery::Spool, Some(dir)) => Some(dir),
            // A directory of its own for each run: a --dev spool is for trying `spool` out.
            (Delivery::Spool, None) if dev => Some(
                std::env::temp_dir().join(format!("inlet-dev-spool-{}", std::process::id())),
            ),
            (Delivery::Spool, None) => bail!(
                "spool_dir: delivery `spool` needs a directory. Set INLET_SPOOL_DIR=/var/lib/inlet/spool \
                 (or `spool_dir` in the config file, or --spool-dir)"
            ),
            _ => None,
        };
        let config = Config {
            listen: pick!(listen, listen_default.parse().expect("valid default")),
            admin_listen: pick!(admin_listen, admin_default.parse().expect("valid default")),
            kafka_brokers,
            tokens_file,
            delivery,
            spool_dir,
            spool_max_bytes: pick!(spool_max_bytes, 8 << 30),
            spool_fsync: match pick!(spool_fsync, FsyncMode::Always) {
                FsyncMode::Always => SpoolFsync::Always,
                FsyncMode::Interval => {
                    SpoolFsync::Interval(Duration::from_millis(pick!(spool_fsync_interval_ms, 100)))
                }
            },
            compression: pick!(compression, Compression::Lz4),
            linger: Duration::from_millis(pick!(linger_ms, 5)),
            enqueue_wait: Duration::from_millis(pick!(enqueue_wait_ms, 1000)),
            delivery_timeout: Duration::from_millis(pick!(delivery_timeout_ms, 10_000)),
            shutdown_delay: Duration::from_millis(pick!(shutdown_delay_ms, 0)),
            shutdown_grace: Duration::from_millis(pick!(shutdown_grace_ms, 25_000)),
            lanes,
            max_events_per_request: pick!(max_events_per_request, 1000),
            log_format: pick!(log_format, LogFormat::Auto),
            trusted_proxies: pick!(trusted_proxies, Vec::new())
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.parse()
                        .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
            client_ip_truncation: pick!(client_ip_truncation, Truncation::Beacons),
            auth_failures_per_minute: pick!(auth_failures_per_minute, 30),
            max_connections: pick!(max_connections, 16_384),
            worker_threads: pick!(
                worker_threads,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            max_concurrent_requests: pick!(max_concurrent_requests, 4096),
            header_read_timeout: Duration::from_millis(pick!(header_read_timeout_ms, 75_000)),
            max_headers: pick!(max_headers, 100),
            max_header_bytes: pick!(max_header_bytes, 64 << 10),
            body_timeout: Duration::from_millis(pick!(body_timeout_ms, 10_000)),
            body_min_rate: pick!(body_min_rate, 16 << 10),
            librdkafka,
            fleet: FleetConfig {
                redis_url: cli
                    .redis_url
                    .or(file.redis_url)
                    .filter(|u| !u.trim().is_empty()),
                redis_timeout: Duration::from_millis(pick!(redis_timeout_ms, 50)),
                redis_fallback_share: pick!(redis_fallback_share, 1.0),
                dedupe_window: Duration::from_secs(pick!(dedupe_window_s, 0)),
                topic_dead_letters: match pick!(dead_letters, Switch::On) {
                    Switch::On => Some(pick!(topic_dead_letters, "inlet.dead-letters".into())),
                    Switch::Off => None,
                },
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let lanes = self
            .lanes
            .iter()
            .map(|(lane, c)| (lane.spec().names.topic, &c.topic));
        let dead_letters = self.fleet.topic_dead_letters.iter();
        let topics: Vec<_> = lanes
            .chain(dead_letters.map(|t| ("topic_dead_letters", t)))
            .collect();
        for (key, topic) in topics {
            let valid = !topic.is_empty()
                && topic.len() <= 249
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                bail!(
                    "{key}: `{topic}` is not a valid Kafka topic name (1..=249 of [a-zA-Z0-9._-])"
                );
            }
        }
        // Two lanes on one topic could not be told apart by a consumer of one of them.
        for (i, (lane, config)) in self.lanes.iter().enumerate() {
            let mut before = self.lanes.iter().take(i);
            if let Some((other, _)) = before.find(|(_, c)| c.topic == config.topic) {
                let (key, other) = (lane.spec().names.topic, other.spec().names.topic);
                bail!("{key}: must differ from {other}");
            }
        }
        for (lane, config) in self.lanes.iter() {
            let (prefix, limits) = (lane.spec().names.limits, config.limits);
            if limits.max_body == 0 || limits.max_decoded == 0 || limits.max_event == 0 {
                bail!("{prefix}_max_*_bytes: limits must be positive");
            }
            if limits.max_decoded < limits.max_body {
                bail!("{prefix}_max_decoded_bytes: must be at least {prefix}_max_body_bytes");
            }
        }
        for (key, value) in [
            ("max_events_per_request", self.max_events_per_request),
            ("max_connections", self.max_connections),
            ("worker_threads", self.worker_threads),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_headers", self.max_headers),
            ("max_header_bytes", self.max_header_bytes),
            ("body_min_rate", self.body_min_rate as usize),
            (
                "auth_failures_per_minute",
                self.auth_failures_per_minute as usize,
            ),
        ] {
            if value == 0 {
                bail!("{key}: must be positive");
            }
        }
        if self.header_read_timeout.is_zero() || self.body_timeout.is_zero() {
            bail!("header_read_timeout_ms and body_timeout_ms: must be positive");
        }
        if self.shutdown_delay > self.shutdown_grace {
            bail!("shutdown_delay_ms: must not exceed shutdown_grace_ms");
        }
        if self.spool_max_bytes < 1 << 20 && self.spool_dir.is_some() {
            bail!("spool_max_bytes: must be at least 1048576");
        }
        if matches!(self.spool_fsync, SpoolFsync::Interval(i) if i.is_zero()) {
            bail!("spool_fsync_interval_ms: must be positive");
        }
        if self.delivery_timeout < Duration::from_millis(100) {
            bail!("delivery_timeout_ms: must be at least 100");
        }
        self.fleet.validate()
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

impl FleetConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str())
                .map_err(|e| anyhow::anyhow!("redis_url: `{url}` is not a Redis URL: {e}"))?;
        }
        if self.redis_timeout.is_zero() {
            bail!("redis_timeout_ms: must be positive");
        }
        let share = self.redis_fallback_share;
        if !(share > 0.0 && share <= 1.0) {
            bail!("redis_fallback_share: must be above 0 and at most 1, got {share}");
        }
        Ok(())
    }
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
        assert_eq!(c.kafka_brokers, "cli:9092");
        assert_eq!(c.linger, Duration::from_millis(7));
        assert_eq!(c.delivery, Delivery::Ack);
        assert_eq!(c.compression, Compression::Lz4);
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
        assert!(dev.spool_dir.is_some());
        assert_eq!(dev.spool_max_bytes, 8 << 30);
        assert_eq!(dev.spool_fsync, SpoolFsync::Always);
        let f =
            file("spool_dir = \"/s\"\nspool_fsync = \"interval\"\nspool_fsync_interval_ms = 50\n");
        let c = Config::resolve(settings(), f, false).unwrap();
        assert_eq!(
            c.spool_fsync,
            SpoolFsync::Interval(Duration::from_millis(50))
        );
        assert_eq!(c.spool_dir, Some(PathBuf::from("/s")));
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
        assert_eq!(
            c.fleet.topic_dead_letters.as_deref(),
            Some("inlet.dead-letters")
        );
        assert!(c.fleet.redis_url.is_none() && c.fleet.dedupe_window.is_zero());
        assert_eq!(
            resolve("dead_letters = \"off\"")
                .unwrap()
                .fleet
                .topic_dead_letters,
            None
        );
        for (extra, key) in [
            ("redis_url = \"http://x\"", "redis_url"),
            ("redis_fallback_share = 0.0", "redis_fallback_share"),
            ("redis_fallback_share = 1.5", "redis_fallback_share"),
            ("topic_dead_letters = \"a b\"", "topic_dead_letters"),
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
        assert_eq!(c.librdkafka["linger.ms"], "9");
        assert_eq!(c.librdkafka["batch.size"], "2000");
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
        assert_eq!(
            format!("{:?}", c.limits(Lane::OCCURRENCE)),
            format!("{:?}", defaults.limits(Lane::OCCURRENCE))
        );
        assert_eq!(
            (
                c.listen,
                c.admin_listen,
                c.delivery,
                c.compression,
                c.linger,
                c.enqueue_wait
            ),
            (
                defaults.listen,
                defaults.admin_listen,
                defaults.delivery,
                defaults.compression,
                defaults.linger,
                defaults.enqueue_wait
            )
        );
        assert_eq!(
            (
                c.delivery_timeout,
                c.shutdown_grace,
                c.max_events_per_request
            ),
            (
                defaults.delivery_timeout,
                defaults.shutdown_grace,
                defaults.max_events_per_request
            )
        );
        assert_eq!(
            format!(
                "{:?}",
                (
                    c.max_connections,
                    c.max_concurrent_requests,
                    c.header_read_timeout,
                    c.max_headers,
                    c.max_header_bytes,
                    c.body_timeout,
                    c.body_min_rate,
                    &c.trusted_proxies,
                    c.client_ip_truncation,
                    c.auth_failures_per_minute,
                    c.log_format
                )
            ),
            format!(
                "{:?}",
                (
                    defaults.max_connections,
                    defaults.max_concurrent_requests,
                    defaults.header_read_timeout,
                    defaults.max_headers,
                    defaults.max_header_bytes,
                    defaults.body_timeout,
                    defaults.body_min_rate,
                    &defaults.trusted_proxies,
                    defaults.client_ip_truncation,
                    defaults.auth_failures_per_minute,
                    defaults.log_format
                )
            )
        );
    }
}
