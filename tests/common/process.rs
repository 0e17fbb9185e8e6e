//! inlet as its own process (the built binary), for signals: SIGTERM, a second SIGTERM, SIGKILL.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::gateway::{metrics, temp_dir, tokens_toml, wait_ready, Kafka};

/// `inlet` with a clean environment: no INLET_* leaking in from the caller.
pub fn inlet_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inlet"));
    for (key, _) in std::env::vars() {
        if key.starts_with("INLET_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Has `cmd` bind both listeners to 127.0.0.1 port 0 and write where to the file `listen` in
/// `dir` (`INLET_LISTEN_FILE`), whose path it returns for [`wait_listening`]: no port is chosen
/// before inlet binds it, so none can be taken in between. `dir` must be this start's own.
pub fn listen_on_port_0(cmd: &mut Command, dir: &Path) -> PathBuf {
    let file = dir.join("listen");
    assert!(!file.exists(), "{} is another start's", file.display());
    cmd.env("INLET_LISTEN", "127.0.0.1:0")
        .env("INLET_ADMIN_LISTEN", "127.0.0.1:0")
        .env("INLET_LISTEN_FILE", &file);
    file
}

/// Where an inlet process listens, as it wrote in its listen file.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl Listening {
    /// Reads the file's `public=ADDR` and `admin=ADDR` lines.
    pub fn parse(text: &str) -> Option<Listening> {
        let mut public = None;
        let mut admin = None;
        for line in text.lines() {
            match line.split_once('=')? {
                ("public", addr) => public = Some(addr.parse().ok()?),
                ("admin", addr) => admin = Some(addr.parse().ok()?),
                _ => return None,
            }
        }
        Some(Listening {
            public: public?,
            admin: admin?,
        })
    }

    /// `http://ADDR` of the public listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.public)
    }

    /// `http://ADDR` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }
}

/// Waits until `child` has written its listen `file` (see [`listen_on_port_0`]), at most 30 s,
/// and reads it. Fails, printing `log()` and killing inlet, if inlet exits first, never writes
/// the file, or writes something else in it.
pub fn wait_listening(child: &mut Child, file: &Path, log: impl Fn() -> String) -> Listening {
    let deadline = Instant::now() + Duration::from_secs(30);
    let why = loop {
        // Written whole by a rename: once it exists, it is all there.
        match std::fs::read_to_string(file) {
            Ok(text) => match Listening::parse(&text) {
                Some(listening) => return listening,
                None => break format!("{} is not a listen file: {text:?}", file.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => break format!("reading {}: {e}", file.display()),
        }
        if let Ok(Some(status)) = child.try_wait() {
            break format!("inlet exited ({status}) before it listened");
        }
        if Instant::now() >= deadline {
            break format!("inlet did not listen (no {})", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!("{why}:\n{}", log());
}

/// Sends signal `name` (`TERM`, `KILL`…) to `child`.
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Waits for `child` to exit, at most `limit` (then fails, printing `log()`).
pub fn wait_exit(child: &mut Child, limit: Duration, log: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "inlet still running after {limit:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// This test's topics on the shared broker, and the inlet binary against them with `env`, ready.
pub async fn kafka_and_process(test: &str, env: &[(&str, &str)]) -> (Kafka, InletProcess) {
    let kafka = Kafka::start(test).await;
    let inlet = InletProcess::start(&kafka.brokers(), &kafka.topics, env);
    inlet.wait_ready().await;
    (kafka, inlet)
}

/// A running inlet binary; killed on drop.
pub struct InletProcess {
    pub child: Child,
    pub url: String,
    pub admin: String,
    pub stderr_path: PathBuf,
}

impl InletProcess {
    /// Starts `inlet` against `brokers` with `env` on top, listening on port 0, and waits until
    /// it says where.
    pub fn start(brokers: &str, topics: &(String, String), env: &[(&str, &str)]) -> InletProcess {
        let dir = temp_dir("process");
        let tokens = dir.join("tokens.toml");
        std::fs::write(&tokens, tokens_toml()).unwrap();
        let stderr_path = dir.join("inlet.log");
        let mut cmd = inlet_command();
        let listen_file = listen_on_port_0(&mut cmd, &dir);
        let mut child = cmd
            .env("INLET_KAFKA_BROKERS", brokers)
            .env("INLET_TOKENS_FILE", &tokens)
            .env("INLET_TOPIC_BEACONS", &topics.0)
            .env("INLET_TOPIC_OCCURRENCES", &topics.1)
            .env("INLET_TOPIC_ITEMS", super::gateway::items_topic(topics))
            .env(
                "INLET_TOPIC_RECORDINGS",
                super::gateway::recordings_topic(topics),
            )
            .env("INLET_LOG", "info,librdkafka=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn inlet");
        let listening = wait_listening(&mut child, &listen_file, || read_log(&stderr_path));
        InletProcess {
            child,
            url: listening.url(),
            admin: listening.admin_url(),
            stderr_path,
        }
    }

    /// Waits until `/readyz` answers 200 (a broker answered metadata for the topic).
    pub async fn wait_ready(&self) {
        wait_ready(&reqwest::Client::new(), &self.url, || self.log()).await;
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics(&reqwest::Client::new(), &self.admin).await
    }

    /// Waits (30 s at most, else fails with the log) until the sample of `metric` whose labels
    /// hold `label` reads at least `at_least`.
    pub async fn wait_for_metric(&self, metric: &str, label: &str, at_least: f64) {
        let read = |text: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(metric) && l.contains(label));
            line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while read(&self.metrics().await) < at_least {
            assert!(
                Instant::now() < deadline,
                "{metric}{{{label}}} under {at_least}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `host:port` of the public listener, for raw sockets.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits for the process to exit, at most `limit` (then fails, printing its log).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let log = self.stderr_path.clone();
        wait_exit(&mut self.child, limit, || read_log(&log))
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        let line = (status.lines())
            .find(|line| line.starts_with("VmHWM:"))
            .expect("VmHWM");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// What inlet logged.
    pub fn log(&self) -> String {
        read_log(&self.stderr_path)
    }
}

fn read_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for InletProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
