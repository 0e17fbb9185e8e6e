//! Test harness: an inlet server in-process on port 0 (stopped on drop), the tokens it knows,
//! topic creation on a shared broker, and a consumer that reads topics back and decodes every
//! envelope.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use inlet::auth::Tokens;
use inlet::config::{Config, Settings};
use inlet::proto;
use inlet::sink::kafka::KafkaSink;
use inlet::sink::spool::{Options, SpoolSink};
use inlet::sink::Sink;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sha2::Digest;
use tokio::sync::oneshot;

use super::answer::Answer;
use super::broker::Broker;
use super::request::Request;

/// Partitions of every test topic, as in production.
pub const PARTITIONS: i32 = 512;

/// Plain secret of a browser token: beacons only, one allowed origin.
pub const WEB: &str = "web-secret";
/// Secret (stored hashed) of an SDK token: beacons and occurrences.
pub const SDK: &str = "sdk-secret";
/// Secret of a token with a tiny rate limit: 1 event/s, burst 5.
pub const TIGHT: &str = "tight-secret";
/// Secret of an occurrences token with the tiniest rate limit: 1 event/s, burst 1 (the error
/// trackers' SDKs back off on its 429s).
/// Made of word characters only, as the Sentry JavaScript SDKs require of a DSN's key.
pub const TIGHT_ERRORS: &str = "tight_errors_secret";
/// Secret of an OTLP token: traces, logs and metrics.
pub const OTEL: &str = "otel-secret";
/// Secret of an OTLP token for traces with a small rate limit: 5 spans/s, burst 20.
pub const OTEL_TIGHT: &str = "otel-tight-secret";
/// Secret of a token for recordings (with beacons and occurrences).
pub const RECORDER: &str = "recorder-secret";
/// Secret of an occurrences and recordings token shaped like a Sentry DSN's public key (32 hex
/// digits: the JavaScript SDKs refuse a DSN whose key is not made of word characters).
pub const DSN_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const PROJECT: &str = "proj-7";
pub const ACCOUNT: &str = "acct-42";
pub const ORIGIN: &str = "https://www.acme.example";

/// A fresh temporary directory, under cargo's target/tmp (tests/run.sh clears the previous
/// run's at the start, so a failed run's files stay to be read until the next).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("inlet-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The token registry every test uses.
pub fn tokens_toml() -> String {
    let sdk_digest = hex::encode(sha2::Sha256::digest(SDK.as_bytes()));
    format!(
        r#"
[[token]]
id = "web"
token = "{WEB}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["beacon"]
rate_per_sec = 100000
burst = 100000
allowed_origins = ["{ORIGIN}"]

[[token]]
id = "sdk"
sha256 = "{sdk_digest}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["beacon", "occurrence"]
rate_per_sec = 100000
burst = 100000

[[token]]
id = "tight"
token = "{TIGHT}"
project_id = "{PROJECT}"
account_id = "acct-tight"
kinds = ["beacon"]
rate_per_sec = 1
burst = 5

[[token]]
id = "dsn"
token = "{DSN_KEY}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["occurrence", "recording"]
rate_per_sec = 100000
burst = 100000

[[token]]
id = "recorder"
token = "{RECORDER}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["beacon", "occurrence", "recording"]
rate_per_sec = 100000
burst = 100000

[[token]]
id = "otel"
token = "{OTEL}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["traces", "logs", "metrics"]
rate_per_sec = 100000
burst = 100000

[[token]]
id = "otel-tight"
token = "{OTEL_TIGHT}"
project_id = "{PROJECT}"
account_id = "{ACCOUNT}"
kinds = ["traces"]
rate_per_sec = 5
burst = 20

[[token]]
id = "tight-errors"
token = "{TIGHT_ERRORS}"
project_id = "{PROJECT}"
account_id = "acct-tight"
kinds = ["occurrence"]
rate_per_sec = 1
burst = 1
"#
    )
}

/// Unique topic names for one test, so tests can share a broker.
pub fn topics(test: &str) -> (String, String) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    (
        format!("t.{test}.{}.beacons", &id[20..]),
        format!("t.{test}.{}.occurrences", &id[20..]),
    )
}

/// The items topic of a test whose topics are `topics`: named beside its beacons topic, so the
/// tuple every test passes around names it too.
pub fn items_topic(topics: &(String, String)) -> String {
    let beacons = &topics.0;
    format!(
        "{}.items",
        beacons.strip_suffix(".beacons").unwrap_or(beacons)
    )
}

/// The recordings topic of a test whose topics are `topics` (see [`items_topic`]).
pub fn recordings_topic(topics: &(String, String)) -> String {
    let beacons = &topics.0;
    format!(
        "{}.recordings",
        beacons.strip_suffix(".beacons").unwrap_or(beacons)
    )
}

/// The OTLP topics (spans, logs, metrics) of a test whose topics are `topics` (see
/// [`items_topic`]); created by the tests that use them only.
pub fn otlp_topics(topics: &(String, String)) -> [String; 3] {
    let beacons = &topics.0;
    let base = beacons.strip_suffix(".beacons").unwrap_or(beacons);
    ["spans", "logs", "metrics"].map(|signal| format!("{base}.otlp_{signal}"))
}

/// Settings for a gateway against `brokers` producing to `topics`.
pub fn settings(brokers: &str, topics: &(String, String), tokens_file: PathBuf) -> Settings {
    Settings {
        kafka_brokers: Some(brokers.to_owned()),
        tokens_file: Some(tokens_file),
        topic_beacons: Some(topics.0.clone()),
        topic_occurrences: Some(topics.1.clone()),
        topic_items: Some(items_topic(topics)),
        topic_recordings: Some(recordings_topic(topics)),
        topic_otlp_spans: Some(otlp_topics(topics)[0].clone()),
        topic_otlp_logs: Some(otlp_topics(topics)[1].clone()),
        topic_otlp_metrics: Some(otlp_topics(topics)[2].clone()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    }
}

/// A running inlet; dropping it shuts it down.
pub struct Gateway {
    /// `http://127.0.0.1:PORT` of the public listener.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    pub config: Config,
    /// The producer (behind the spool under `spool` delivery), for fault injection.
    pub sink: Arc<KafkaSink>,
    pub tokens_file: PathBuf,
    pub http: reqwest::Client,
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
}

impl Gateway {
    /// Starts inlet with the test registry; `tweak` adjusts the settings first.
    pub async fn start(
        brokers: &str,
        topics: &(String, String),
        tweak: impl FnOnce(&mut Settings),
    ) -> Gateway {
        if let Ok(filter) = std::env::var("INLET_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = temp_dir("tokens");
        let tokens_file = dir.join("tokens.toml");
        std::fs::write(&tokens_file, tokens_toml()).unwrap();
        let mut s = settings(brokers, topics, tokens_file.clone());
        tweak(&mut s);
        let config = Config::resolve(s, Settings::default(), false).expect("valid test config");
        let public = tokio::net::TcpListener::bind(config.edge.listen)
            .await
            .unwrap();
        let admin = tokio::net::TcpListener::bind(config.edge.admin_listen)
            .await
            .unwrap();
        let url = format!("http://{}", public.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let sink = Arc::new(KafkaSink::new(&config.kafka, &config.lanes).expect("producer"));
        // Under `spool`, the spool in front of the producer, as `inlet` builds it.
        let serving: Arc<dyn Sink> = match &config.spool {
            Some(spool) => {
                Arc::new(SpoolSink::open(Options::new(spool), sink.clone()).expect("spool"))
            }
            None => sink.clone(),
        };
        let tokens = Tokens::load(&tokens_file).expect("test registry");
        let task = tokio::spawn(inlet::server::run(
            config.clone(),
            tokens,
            serving,
            inlet::server::Listeners { public, admin },
            async move {
                let _ = rx.await;
            },
            std::future::pending(),
        ));
        Gateway {
            url,
            admin: admin_url,
            config,
            sink,
            tokens_file,
            http: reqwest::Client::builder()
                .user_agent("inlet-tests/1")
                .build()
                .unwrap(),
            shutdown: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Waits until `/readyz` answers 200 (a broker answered metadata for the topic).
    pub async fn wait_ready(&self) {
        wait_ready(&self.http, &self.url, String::new).await;
    }

    /// `http://127.0.0.1:PORT{path}` on the public listener.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a request built on [`Gateway::http`] and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Answer::from_response(request.send().await.expect("request")).await
    }

    /// `GET path` on the public listener.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url_of(path))).await
    }

    /// `POST path` with `body`, the token as a bearer and the given extra headers (JSON unless
    /// they name another content type).
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&'static str, &str)],
    ) -> Answer {
        let request = headers
            .iter()
            .fold(Request::post(path, token, body), |r, (k, v)| {
                r.header(k, *v)
            });
        self.request(&request).await
    }

    /// Sends `request` and reads the answer.
    pub async fn request(&self, request: &Request) -> Answer {
        self.send(request.build(&self.http, &self.url)).await
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics(&self.http, &self.admin).await
    }

    /// Shuts down gracefully (as on SIGTERM) and returns what `server::run` returned.
    pub async fn stop(&self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let task = self.task.lock().await.take().expect("stopped once");
        task.await.expect("server task")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `{base_url}/readyz` until it answers 200, for 30 s at most (then fails, with `log()`).
pub async fn wait_ready(http: &reqwest::Client, base_url: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base_url}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "inlet never became ready\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `/metrics` text of the admin listener at `admin_url`.
pub async fn metrics(http: &reqwest::Client, admin_url: &str) -> String {
    let r = http.get(format!("{admin_url}/metrics")).send().await;
    r.expect("metrics").text().await.expect("metrics text")
}

/// One test's pair of topics (beacons, occurrences) on the binary's shared broker.
pub struct Kafka {
    /// Held so the broker outlives the test.
    pub broker: Arc<Broker>,
    pub topics: (String, String),
}

impl Kafka {
    /// Creates this test's topics, named after `test`, on the shared broker.
    pub async fn start(test: &str) -> Kafka {
        let broker = Broker::shared();
        let topics = topics(test);
        let (items, recordings) = (items_topic(&topics), recordings_topic(&topics));
        let created = [&topics.0, &topics.1, &items, &recordings];
        create_topics(&broker.bootstrap(), &created.map(String::as_str)).await;
        Kafka { broker, topics }
    }

    /// `bootstrap.servers` of the broker.
    pub fn brokers(&self) -> String {
        self.broker.bootstrap()
    }

    /// The beacons topic read back (see [`consume`]).
    pub async fn beacons(&self, expected: usize, linger: Duration) -> Vec<Consumed> {
        landed(&self.brokers(), &self.topics.0, expected, linger).await
    }

    /// The occurrences topic read back (see [`consume`]).
    pub async fn occurrences(&self, expected: usize, linger: Duration) -> Vec<Consumed> {
        landed(&self.brokers(), &self.topics.1, expected, linger).await
    }

    /// The items topic read back (see [`consume`]).
    pub async fn items(&self, expected: usize, linger: Duration) -> Vec<Consumed> {
        landed(
            &self.brokers(),
            &items_topic(&self.topics),
            expected,
            linger,
        )
        .await
    }

    /// The recordings topic read back (see [`consume`]): `expected` chunks.
    pub async fn recordings(&self, expected: usize, linger: Duration) -> Vec<Consumed> {
        let topic = recordings_topic(&self.topics);
        landed(&self.brokers(), &topic, expected, linger).await
    }

    /// Both topics read back at once: `expected` (beacons, occurrences).
    pub async fn both(
        &self,
        expected: (usize, usize),
        linger: Duration,
    ) -> (Vec<Consumed>, Vec<Consumed>) {
        tokio::join!(
            self.beacons(expected.0, linger),
            self.occurrences(expected.1, linger)
        )
    }
}

/// [`consume`] from async code, on a blocking thread.
pub async fn landed(
    brokers: &str,
    topic: &str,
    expected: usize,
    linger: Duration,
) -> Vec<Consumed> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || consume(&brokers, &topic, expected, linger))
        .await
        .expect("consumer thread")
}

/// The event ids of `messages`, sorted.
pub fn event_ids(messages: &[Consumed]) -> Vec<&str> {
    let mut ids: Vec<&str> = messages
        .iter()
        .map(|c| c.envelope.event_id.as_str())
        .collect();
    ids.sort();
    ids
}

/// A client's configuration for `brokers`: `host:port[,host:port]`, optionally followed by
/// client properties, each after a `|` (`127.0.0.1:9093|security.protocol=ssl|ssl.ca.location=
/// ca.pem`), so a test of a secured broker reads it with the same helpers.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut parts = brokers.split('|');
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", parts.next().unwrap_or_default());
    for property in parts {
        let (key, value) = property.split_once('=').expect("key=value");
        config.set(key, value);
    }
    config
}

/// Creates `topics` with [`PARTITIONS`] partitions and waits until their metadata shows them.
pub async fn create_topics(brokers: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers).create().expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
    let consumer: BaseConsumer = client_config(brokers).create().unwrap();
    for topic in topics {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            if md.is_ok_and(|md| md.topics()[0].partitions().len() == PARTITIONS as usize) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} never showed {PARTITIONS} partitions"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One message read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub envelope: proto::Envelope,
}

/// Reads `topic` from the beginning until `expected` messages arrived (or 60 s passed), then
/// keeps reading for `linger` more to catch duplicates.
pub fn consume(brokers: &str, topic: &str, expected: usize, linger: Duration) -> Vec<Consumed> {
    consume_envelopes(brokers, topic, linger, |read| read.len() >= expected)
}

/// [`consume`] until `done` holds of what was read (or 60 s passed), then for `linger` more.
pub fn consume_envelopes(
    brokers: &str,
    topic: &str,
    linger: Duration,
    done: impl FnMut(&[(Place, proto::Envelope)]) -> bool,
) -> Vec<Consumed> {
    let decode = |payload: &[u8]| proto::Envelope::decode(payload).expect("envelope decodes");
    consume_until(brokers, topic, linger, decode, done)
        .into_iter()
        .map(|(place, envelope)| Consumed::at(place, envelope))
        .collect()
}

impl Consumed {
    /// The message read at `place`, its value `envelope`.
    pub fn at(place: Place, envelope: proto::Envelope) -> Consumed {
        Consumed {
            partition: place.partition,
            offset: place.offset,
            key: place.key,
            headers: place.headers,
            envelope,
        }
    }
}

/// Where a message read back was, and its headers, whatever its value.
#[derive(Debug, Clone)]
pub struct Place {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
}

/// [`consume`] for any value: each message's place and its payload as `decode` reads it.
pub fn consume_as<T>(
    brokers: &str,
    topic: &str,
    expected: usize,
    linger: Duration,
    decode: impl Fn(&[u8]) -> T,
) -> Vec<(Place, T)> {
    consume_until(brokers, topic, linger, decode, |read| {
        read.len() >= expected
    })
}

/// Reads `topic` from the beginning, each message's place and its payload as `decode` reads
/// it, until `done` holds of what was read (or 60 s passed), then for `linger` more.
pub fn consume_until<T>(
    brokers: &str,
    topic: &str,
    linger: Duration,
    decode: impl Fn(&[u8]) -> T,
    mut done: impl FnMut(&[(Place, T)]) -> bool,
) -> Vec<(Place, T)> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        // An empty partition's fetch is answered after 50 ms, not librdkafka's 500: reading
        // 512 mostly empty partitions back then takes a fraction of a second.
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut linger_until: Option<Instant> = None;
    loop {
        if linger_until.is_none() && done(&out) {
            linger_until = Some(Instant::now() + linger);
        }
        if linger_until.is_some_and(|t| Instant::now() >= t) || Instant::now() >= deadline {
            return out;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let place = Place {
            partition: msg.partition(),
            offset: msg.offset(),
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            headers,
        };
        out.push((place, decode(msg.payload().unwrap_or_default())));
    }
}
