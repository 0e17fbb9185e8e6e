//! The `inlet` binary as a user runs it: configuration errors, `--help`, and `inlet --dev` with
//! a curl-like request whose event `inlet tail` then prints.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INLET: &str = env!("CARGO_BIN_EXE_inlet");

/// `inlet` with a clean environment (no INLET_* leaking in from the caller).
fn inlet() -> Command {
    let mut cmd = Command::new(INLET);
    for (key, _) in std::env::vars() {
        if key.starts_with("INLET_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("INLET_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn without_brokers_it_refuses_to_start_and_says_how_to_fix_it() {
    let out = inlet().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INLET_KAFKA_BROKERS") && err.contains("--dev"),
        "{err}"
    );
}

#[test]
fn invalid_configuration_names_the_key_before_binding() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("inlet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("inlet.toml");
    std::fs::write(
        &file,
        "kafka_brokers = \"k:9092\"\ntokens_file = \"t.toml\"\nlinger_msec = 5\n",
    )
    .unwrap();
    let out = inlet().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("linger_msec"));

    let out = inlet()
        .args(["--kafka-brokers", "k:9092", "--tokens-file", "t.toml"])
        .env("INLET_DELIVERY", "eventually")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("eventually") && err.contains("delivery"),
        "{err}"
    );

    // The environment wins over the file, and flags win over both.
    std::fs::write(
        &file,
        "kafka_brokers = \"k:9092\"\ntokens_file = \"t.toml\"\ntopic_beacons = \"bad topic\"\n",
    )
    .unwrap();
    let out = inlet()
        .arg("--config")
        .arg(&file)
        .env("INLET_TOPIC_BEACONS", "also bad")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("also bad"));
    let out = inlet()
        .arg("--config")
        .arg(&file)
        .env("INLET_TOPIC_BEACONS", "also bad")
        .args(["--topic-beacons", "still bad"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("still bad"));
}

#[test]
fn an_empty_token_registry_is_a_configuration_error() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("inlet-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, "# every token was removed\n").unwrap();
    let out = inlet()
        .args(["--kafka-brokers", "127.0.0.1:1", "--tokens-file"])
        .arg(&tokens)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tokens_file") && err.contains(&tokens.display().to_string()),
        "{err}"
    );
    assert!(err.contains("no token"), "{err}");
}

#[test]
fn help_documents_every_setting() {
    let out = inlet().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "INLET_LISTEN",
        "INLET_ADMIN_LISTEN",
        "INLET_KAFKA_BROKERS",
        "INLET_TOKENS_FILE",
        "INLET_TOPIC_BEACONS",
        "INLET_TOPIC_OCCURRENCES",
        "INLET_DELIVERY",
        "INLET_COMPRESSION",
        "INLET_CONFIG",
        "--dev",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

/// Kills the child on drop, so a failed assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dev_mode_serves_and_tail_prints_what_landed() {
    let (port, admin) = (free_port(), free_port());
    let mut child = inlet()
        .args([
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let dev = Running(child);
    let mut bootstrap = None;
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("bootstrap servers") {
            bootstrap = Some(rest.trim().to_owned());
        }
        if line.contains("inlet tail") || line.contains("-- tail") {
            break;
        }
    }
    let bootstrap = bootstrap.unwrap_or_else(|| panic!("no bootstrap address in:\n{banner}"));
    assert!(banner.contains("development token  dev-token"), "{banner}");

    // The README's curl, as a raw HTTP request (no curl needed).
    let body = r#"{"session_id":"readme-1","event":"page_view","props":{"plan":"pro"}}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match http_post(port, "/v1/beacons", "dev-token", body) {
            Ok(r) if r.starts_with("HTTP/1.1 200") => break r,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "dev inlet never accepted: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(response.ends_with(r#"{"accepted":1}"#), "{response}");

    let out = inlet()
        .args([
            "tail",
            "--brokers",
            &bootstrap,
            "--topic",
            "inlet.beacons",
            "--count",
            "1",
            "--idle-exit-ms",
            "30000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["key"], "readme-1");
    assert_eq!(line["headers"]["inlet-kind"], "beacon");
    assert_eq!(line["envelope"]["token_id"], "dev");
    assert_eq!(line["envelope"]["event"]["beacon"]["event"], "page_view");
    assert_eq!(line["envelope"]["event"]["beacon"]["props"]["plan"], "pro");
    assert_eq!(
        line["partition"].as_u64().unwrap() as u32,
        inlet::key::partition(b"readme-1", 512)
    );

    // SIGTERM: a graceful exit with status 0.
    let pid = dev.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut dev = dev;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "inlet did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
}

/// A minimal HTTP/1.1 POST over a fresh connection; returns the whole response.
fn http_post(port: u16, path: &str, token: &str, body: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
