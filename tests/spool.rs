//! The durable spool (`INLET_DELIVERY=spool`) end to end: the inlet binary as a process, a
//! Tansu broker on SQLite storage that is stopped and started again, and the spool's own
//! directory damaged, filled and locked. Every test reads the topic back and prints its
//! reconciliation (sent, answered 202, refused by code, found in Kafka, missing, duplicated,
//! out of order); none may miss an event answered 202.
//!
//! A full disk is not tested here (it took a tmpfs mounted as root): the spool's unit tests
//! (`src/sink/spool/tests.rs`) fill a disk that refuses on command, through the HTTP routers
//! too, and check the same answers: 503 `spool_unavailable` and never 202 while it is full,
//! `/readyz` 503, 202 again once delivery frees space, and every event answered 202 delivered.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::answer::Answer;
use common::broker::Broker;
use common::gateway::{create_topics, landed, temp_dir, topics, SDK};
use common::load::{reconcile, under_load, Fate, Load, Reconciliation, Report, Sent};
use common::process::{inlet_command, listen_on_port_0, wait_exit, wait_listening, InletProcess};
use serde_json::json;

/// The reader's window: a crash may duplicate at most the records in flight, one window.
const WINDOW: usize = 4096;

/// A broker on SQLite storage (it survives being stopped), this test's topics on it, and a
/// spool directory.
struct Setup {
    broker: Broker,
    topics: (String, String),
    spool: PathBuf,
}

impl Setup {
    async fn new(test: &str) -> Setup {
        let dir = temp_dir(&format!("spool-{test}"));
        let broker = Broker::start_sqlite(&dir.join("broker"));
        let topics = topics(test);
        let items = common::gateway::items_topic(&topics);
        create_topics(&broker.bootstrap(), &[&topics.0, &topics.1, &items]).await;
        Setup {
            broker,
            topics,
            spool: dir.join("spool"),
        }
    }

    /// inlet under `spool` on this setup's directory, with `env` on top; listening.
    fn inlet(&self, env: &[(&str, &str)]) -> InletProcess {
        let spool = self.spool.to_string_lossy().into_owned();
        let mut all = vec![
            ("INLET_DELIVERY", "spool"),
            ("INLET_SPOOL_DIR", spool.as_str()),
            // A window that fails is sent again after this: keep outages short in tests (yet
            // long enough for Tansu on SQLite on a busy machine).
            ("INLET_DELIVERY_TIMEOUT_MS", "5000"),
        ];
        all.extend_from_slice(env);
        InletProcess::start(&self.broker.bootstrap(), &self.topics, &all)
    }

    /// Starts the broker again if it is stopped.
    fn broker_up(&mut self) {
        if !self.broker.is_running() {
            self.broker.restart();
        }
    }

    /// Starts inlet with `env` and stops the broker; sends events of `session` until one is
    /// refused with 503 `code`, when `/readyz` must answer 503 (`why`); brings the broker back,
    /// sends until one is accepted again, and waits for the spool to drain. The reconciliation
    /// of everything sent.
    async fn fill_and_recover(
        &mut self,
        env: &[(&str, &str)],
        session: &str,
        code: &str,
        why: &str,
    ) -> Reconciliation {
        let inlet = self.inlet(env);
        inlet.wait_ready().await;
        self.broker.stop();
        let http = reqwest::Client::new();
        let mut stream = Stream {
            http: &http,
            url: &inlet.url,
            session,
            seq: 0,
            sent: Vec::new(),
        };
        stream.until_refused(code).await;
        let readyz = http.get(format!("{}/readyz", inlet.url)).send().await;
        assert_eq!(readyz.unwrap().status().as_u16(), 503, "{why}");

        self.broker_up();
        stream.until_accepted().await;
        wait_drained(&inlet).await;
        self.reconcile(session, &stream.sent, 0).await
    }

    /// Reads the beacons topic back, expecting the events of `sent` answered 202 but `lost`,
    /// and prints and returns the reconciliation.
    async fn reconcile(&self, name: &str, sent: &[Sent], lost: usize) -> Reconciliation {
        let accepted = sent.iter().filter(|e| e.fate == Fate::Accepted).count() - lost;
        let consumed = landed(
            &self.broker.bootstrap(),
            &self.topics.0,
            accepted,
            Duration::from_secs(3),
        )
        .await;
        let r = reconcile(sent, &consumed);
        println!("spool {name}: {r}");
        r
    }
}

/// The value of the unlabelled sample `name` in a metrics text, 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `inlet`'s spool holds no record (two looks a gauge period apart), at most 2 min.
async fn wait_drained(inlet: &InletProcess) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut empty_looks = 0;
    while empty_looks < 2 {
        assert!(
            Instant::now() < deadline,
            "the spool did not drain:\n{}",
            inlet.log()
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let text = inlet.metrics().await;
        if text.contains("inlet_spool_records") && metric(&text, "inlet_spool_records") == 0.0 {
            empty_looks += 1;
        } else {
            empty_looks = 0;
        }
    }
}

/// `/readyz` statuses every 100 ms for `during`.
async fn readiness(url: &str, during: Duration) -> Vec<u16> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + during;
    let mut statuses = Vec::new();
    while Instant::now() < deadline {
        let status = http.get(format!("{url}/readyz")).send().await;
        statuses.push(status.map_or(0, |r| r.status().as_u16()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses
}

/// Requests of 50 beacons of one session, numbered on, every event's fate kept.
struct Stream<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    session: &'a str,
    seq: u64,
    sent: Vec<Sent>,
}

impl Stream<'_> {
    /// Sends until a request is refused, which must be a 503 with `code` and `Retry-After`
    /// (the spool filled before 100,000 events, or the test fails).
    async fn until_refused(&mut self, code: &str) {
        loop {
            assert!(self.seq < 100_000, "never refused with {code}");
            let (status, got, retry_after) = self.next().await;
            if status != 202 {
                assert_eq!((status, got.as_str()), (503, code));
                assert!(retry_after.is_some(), "503 {code} without Retry-After");
                return;
            }
        }
    }

    /// Sends until a request is answered 202 again, for at most 60 s.
    async fn until_accepted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, ..) = self.next().await;
            if status == 202 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still {status} once the broker was back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends the next request and keeps its events' fates; returns its status, error code and
    /// `Retry-After`.
    async fn next(&mut self) -> (u16, String, Option<String>) {
        let (status, code, retry_after, events) =
            send(self.http, self.url, self.session, self.seq, 50).await;
        self.sent.extend(events);
        self.seq += 50;
        (status, code, retry_after)
    }
}

/// Sends one request of `n` beacons of `session` from `seq` on, as the load does; returns the
/// status, the error code and each event's fate.
async fn send(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    seq: u64,
    n: usize,
) -> (u16, String, Option<String>, Vec<Sent>) {
    let events: Vec<_> = (seq..seq + n as u64)
        .map(|j| json!({"session_id": session, "event": "tick", "id": format!("{session}-{j}"), "props": {"seq": j, "pad": "x".repeat(200)}}))
        .collect();
    let response = http
        .post(format!("{url}/v1/beacons"))
        .bearer_auth(SDK)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&events).unwrap())
        .send()
        .await
        .expect("inlet answers");
    let answer = Answer::from_response_lossy(response).await;
    let (status, code) = (answer.status, answer.code().to_owned());
    let retry_after = answer.header("retry-after").map(str::to_owned);
    let fate = match status {
        202 => Fate::Accepted,
        _ => Fate::Rejected(status, code.clone()),
    };
    let sent = (0..n as u64)
        .map(|i| Sent {
            id: format!("{session}-{}", seq + i),
            session: session.to_owned(),
            seq: seq + i,
            fate: fate.clone(),
        })
        .collect();
    (status, code, retry_after, sent)
}

fn accepted(report: &Report) -> usize {
    report
        .events
        .iter()
        .filter(|e| e.fate == Fate::Accepted)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_is_spooled_answered_202_and_delivered_in_order() {
    let mut setup = Setup::new("outage").await;
    let inlet = setup.inlet(&[]);
    inlet.wait_ready().await;
    setup.broker.stop();

    let mut load = Load::new(&inlet.url, SDK);
    load.sessions = 200;
    load.pause = Duration::from_millis(50);
    let (report, ready) = under_load(load, readiness(&inlet.url, Duration::from_secs(4))).await;
    println!(
        "outage: {} events in {} requests, slowest answer {:?}",
        report.events.len(),
        report.requests,
        report.slowest
    );
    assert!(
        ready.iter().all(|s| *s == 200),
        "/readyz during the outage: {ready:?}"
    );
    assert!(
        report.events.len() >= 1000,
        "{} events",
        report.events.len()
    );
    assert_eq!(accepted(&report), report.events.len(), "every event 202");
    let during = inlet.metrics().await;
    assert!(metric(&during, "inlet_spool_records") > 0.0, "{during}");

    setup.broker_up();
    wait_drained(&inlet).await;
    let r = setup.reconcile("outage", &report.events, 0).await;
    assert_eq!((r.missing, r.out_of_order), (0, 0), "{r}");
    assert_eq!(r.duplicated, 0, "no crash, no duplicate: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_nothing_answered() {
    const ROUNDS: usize = 20;
    let mut setup = Setup::new("sigkill").await;
    let mut sent = Vec::new();
    for round in 0..ROUNDS {
        // Half of the rounds with the broker down: the spool only fills.
        if round % 2 == 1 {
            setup.broker.stop();
        } else {
            setup.broker_up();
        }
        let inlet = setup.inlet(&[]);
        inlet.wait_ready().await;
        let mut load = Load::new(&inlet.url, SDK);
        load.sessions = 10;
        load.pause = Duration::from_millis(20);
        let kill_after = Duration::from_millis(rand::random_range(200..900));
        let (report, ()) = under_load(load, async {
            tokio::time::sleep(kill_after).await;
            inlet.signal("KILL");
        })
        .await;
        drop(inlet);
        sent.extend(report.events);
    }
    setup.broker_up();
    let inlet = setup.inlet(&[]);
    wait_drained(&inlet).await;
    let r = setup.reconcile("sigkill", &sent, 0).await;
    assert!(r.accepted > 1000, "{r}");
    assert_eq!((r.missing, r.out_of_order), (0, 0), "{r}");
    assert!(
        r.duplicated <= ROUNDS * WINDOW,
        "duplicates past one window per crash: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_answers_503_spool_full_then_202_once_delivered() {
    let mut setup = Setup::new("full").await;
    let env = [("INLET_SPOOL_MAX_BYTES", "1048576")];
    let why = "/readyz of a spool over 90 % full";
    let r = setup
        .fill_and_recover(&env, "full", "spool_full", why)
        .await;
    assert!(r.rejected.keys().any(|k| k == "503 spool_full"), "{r}");
    assert_eq!((r.missing, r.out_of_order), (0, 0), "{r}");
}

/// Damages the spool in `dir`: one byte flipped in a record in the middle of its first
/// segment, a torn record (a copy of the first one, cut short) written after its last record
/// (in the zero-filled space ahead, where a write a crash cut short would be), and a foreign
/// file. Returns the foreign file's size.
fn damage(dir: &Path) -> usize {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segments.sort();
    let path = &segments[0];
    let mut bytes = std::fs::read(path).unwrap();
    // A record is `len: u32 LE | crc: u32 | payload (len bytes)`; zeros follow the last one.
    let record_len =
        |at: usize| 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut end = 0;
    while end + 8 <= bytes.len() && bytes[end..end + 4] != [0; 4] {
        end += record_len(end);
    }
    let torn = bytes[..record_len(0) - 5].to_vec();
    bytes[end / 2] ^= 0x5A;
    if bytes.len() < end + torn.len() {
        bytes.resize(end + torn.len(), 0);
    }
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(path, &bytes).unwrap();
    let garbage = vec![0xEE; 1000];
    std::fs::write(dir.join("stray.bin"), &garbage).unwrap();
    garbage.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_spool_is_repaired_counted_and_drained() {
    let mut setup = Setup::new("corrupt").await;
    setup.broker.stop();
    let mut inlet = setup.inlet(&[]);
    inlet.wait_ready().await;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for request in 0..40 {
        let (status, _, _, events) = send(&http, &inlet.url, "corrupt", request * 10, 10).await;
        assert_eq!(status, 202);
        sent.extend(events);
    }
    inlet.signal("KILL");
    inlet.wait(Duration::from_secs(10));
    let garbage = damage(&setup.spool);

    // inlet starts on the damaged spool, serves, and counts what it set aside.
    setup.broker_up();
    let inlet = setup.inlet(&[]);
    inlet.wait_ready().await;
    let (status, _, _, events) = send(&http, &inlet.url, "corrupt", 400, 10).await;
    assert_eq!(status, 202, "serving after the repair");
    sent.extend(events);
    wait_drained(&inlet).await;
    let text = inlet.metrics().await;
    let corrupt = metric(&text, "inlet_spool_corrupt_bytes_total");
    assert!(corrupt > garbage as f64, "corrupt bytes counted: {corrupt}");
    let aside = std::fs::read_dir(setup.spool.join("corrupt"))
        .unwrap()
        .count();
    assert_eq!(aside, 2, "the bad record and the foreign file set aside");

    // Every intact record is delivered: only the one record the flipped byte hit is missing.
    let r = setup.reconcile("corruption", &sent, 1).await;
    assert_eq!(r.missing, 1, "one record (one event) lost to the flip: {r}");
    assert_eq!(r.out_of_order, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_delivers_a_spool_and_a_second_process_is_refused() {
    let mut setup = Setup::new("drain").await;
    setup.broker.stop();
    let inlet = setup.inlet(&[]);
    inlet.wait_ready().await;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for request in 0..20 {
        let (status, _, _, events) = send(&http, &inlet.url, "drain", request * 5, 5).await;
        assert_eq!(status, 202);
        sent.extend(events);
    }

    // While it runs, the directory is its alone.
    let brokers = setup.broker.bootstrap();
    let (spool, topics) = (setup.spool.clone(), setup.topics.clone());
    let drain = |timeout_ms: &str| {
        let mut cmd = inlet_command();
        cmd.args(["drain", "--spool-dir"])
            .arg(&spool)
            .env("INLET_KAFKA_BROKERS", &brokers)
            .env("INLET_TOPIC_BEACONS", &topics.0)
            .env("INLET_TOPIC_OCCURRENCES", &topics.1)
            .env("INLET_DELIVERY_TIMEOUT_MS", timeout_ms)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let refused = drain("2000").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another inlet"), "{stderr}");
    inlet.signal("TERM");
    drop(inlet);

    // Broker down: the drain cannot deliver, shows that nothing moves, says how many are left,
    // and fails.
    let mut child = drain("1000")
        .args(["--progress-every-ms", "100"])
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30), String::new);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("inlet: draining 100 records from"),
        "{stderr}"
    );
    assert!(
        stderr.contains("inlet: drain: 100 records left, none delivered lately"),
        "{stderr}"
    );
    assert!(stderr.contains("100 records not delivered"), "{stderr}");

    setup.broker_up();
    let done = drain("5000").output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(
        stderr.contains("is empty: 100 records delivered in"),
        "{stderr}"
    );
    let r = setup.reconcile("drain", &sent, 0).await;
    assert_eq!((r.missing, r.out_of_order), (0, 0), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_runs_under_spool() {
    let dir = temp_dir("spool-dev");
    let spool = dir.join("spool");
    let log = dir.join("inlet.log");
    let mut cmd = inlet_command();
    let listen_file = listen_on_port_0(&mut cmd, &dir);
    let mut child = cmd
        .args(["--dev", "--delivery", "spool", "--spool-dir"])
        .arg(&spool)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut banner = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("(delivery `spool`)") {
                break;
            }
        }
        banner
    })
    .await
    .unwrap();
    assert!(banner.contains(&spool.display().to_string()), "{banner}");

    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let url = wait_listening(&mut child, &listen_file, read_log).url();
    common::gateway::wait_ready(&reqwest::Client::new(), &url, String::new).await;
    let answer = Answer::from_response_lossy(
        reqwest::Client::new()
            .post(format!("{url}/v1/beacons"))
            .bearer_auth("devtoken")
            .header("content-type", "application/json")
            .body(r#"{"session_id":"dev-1","event":"page_view"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert!(
        spool.join("lock").exists(),
        "the spool is in {}",
        spool.display()
    );

    common::process::signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60), String::new);
    assert_eq!(status.code(), Some(0));
}
