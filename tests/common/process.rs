//! inlet as its own process (the built binary), for signals: SIGTERM, a second SIGTERM, SIGKILL.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
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
    /// Starts `inlet` against `brokers` with `env` on top, and waits until it listens.
    pub fn start(brokers: &str, topics: &(String, String), env: &[(&str, &str)]) -> InletProcess {
        let dir = temp_dir("process");
        let tokens = dir.join("tokens.toml");
        std::fs::write(&tokens, tokens_toml()).unwrap();
        let (port, admin) = (free_port(), free_port());
        let stderr_path = dir.join("inlet.log");
        let child = inlet_command()
            .env("INLET_KAFKA_BROKERS", brokers)
            .env("INLET_TOKENS_FILE", &tokens)
            .env("INLET_TOPIC_BEACONS", &topics.0)
            .env("INLET_TOPIC_OCCURRENCES", &topics.1)
            .env("INLET_LISTEN", format!("127.0.0.1:{port}"))
            .env("INLET_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("INLET_LOG", "info,librdkafka=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn inlet");
        let p = InletProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "inlet did not listen:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    /// Waits until `/readyz` answers 200 (a broker answered metadata for the topic).
    pub async fn wait_ready(&self) {
        wait_ready(&reqwest::Client::new(), &self.url, || self.log()).await;
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics(&reqwest::Client::new(), &self.admin).await
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
