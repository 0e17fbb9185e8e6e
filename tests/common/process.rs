//! inlet as its own process (the built binary), for signals: SIGTERM, a second SIGTERM, SIGKILL.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::gateway::{temp_dir, tokens_toml};

pub struct InletProcess {
    pub child: Child,
    pub url: String,
    pub admin: String,
    pub stderr_path: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl InletProcess {
    /// Starts `inlet` against `brokers` with `env` on top, and waits until it serves /healthz.
    pub fn start(brokers: &str, topics: &(String, String), env: &[(&str, &str)]) -> InletProcess {
        let dir = temp_dir("process");
        let tokens = dir.join("tokens.toml");
        std::fs::write(&tokens, tokens_toml()).unwrap();
        let (port, admin) = (free_port(), free_port());
        let stderr_path = dir.join("inlet.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_inlet"));
        for (key, _) in std::env::vars() {
            if key.starts_with("INLET_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("INLET_KAFKA_BROKERS", brokers)
            .env("INLET_TOKENS_FILE", &tokens)
            .env("INLET_TOPIC_BEACONS", &topics.0)
            .env("INLET_TOPIC_OCCURRENCES", &topics.1)
            .env("INLET_LISTEN", format!("127.0.0.1:{port}"))
            .env("INLET_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("INLET_LOG", "info,librdkafka=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().expect("spawn inlet");
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

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Waits for the process to exit, at most `limit` (then fails, printing its log).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "inlet still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What inlet logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for InletProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
