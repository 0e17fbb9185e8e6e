//! The `inlet` binary as a user runs it: configuration errors, `--help`, and `inlet --dev` with
//! a curl-like request whose event `inlet tail` then prints.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::answer::Answer;
use common::gateway::{temp_dir, tokens_toml};
use common::process::{inlet_command, listen_on_port_0, signal, wait_exit, wait_listening};
use common::raw::{exchange, post_json};
use common::unused_address;

/// `inlet` with a clean environment (no INLET_* leaking in from the caller), logging warnings.
fn inlet() -> Command {
    let mut cmd = inlet_command();
    cmd.env("INLET_LOG", "warn");
    cmd
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
    let file = temp_dir("cli").join("inlet.toml");
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
    let tokens = temp_dir("cli-empty").join("tokens.toml");
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
    let dir = temp_dir("cli-dev");
    let mut cmd = inlet();
    let listen_file = listen_on_port_0(&mut cmd, &dir);
    let log = dir.join("inlet.log");
    let mut child = cmd
        .arg("--dev")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut dev = Running(child);
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
    assert!(banner.contains("development token  devtoken"), "{banner}");

    // The README's curl, as a raw HTTP request (no curl needed).
    let body = r#"{"session_id":"readme-1","event":"page_view","props":{"plan":"pro"}}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let request = post_json("/v1/beacons", "devtoken", body);
    let listening = wait_listening(&mut dev.0, &listen_file, || read(&log));
    let addr = listening.public.to_string();
    let answer = loop {
        match exchange(&addr, request.as_bytes(), Duration::from_secs(30))
            .map(|r| Answer::from_raw(&r))
        {
            Ok(a) if a.status == 200 => break a,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "dev inlet never accepted: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(answer.text(), r#"{"accepted":1}"#, "{answer:?}");

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
    signal(&dev.0, "TERM");
    let status = wait_exit(&mut dev.0, Duration::from_secs(60), String::new);
    assert_eq!(status.code(), Some(0));
}

/// What a file holds, or nothing if it cannot be read.
fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn on_port_0_the_listen_file_says_where_it_listens() {
    let dir = temp_dir("cli-listen-file");
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, tokens_toml()).unwrap();
    let (file, log) = (dir.join("listening"), dir.join("inlet.log"));
    let child = inlet()
        .args(["--kafka-brokers", &unused_address(), "--tokens-file"])
        .arg(&tokens)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--listen-file")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut inlet = Running(child);
    let listening = wait_listening(&mut inlet.0, &file, || read(&log));

    // Two lines, the addresses bound: the kernel's ports, not 0.
    let text = read(&file);
    assert_eq!(
        text,
        format!("public={}\nadmin={}\n", listening.public, listening.admin)
    );
    for addr in [listening.public, listening.admin] {
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{text}");
        assert_ne!(addr.port(), 0, "{text}");
    }
    assert_ne!(listening.public, listening.admin, "{text}");
    let mut tmp = file.clone().into_os_string();
    tmp.push(".tmp");
    assert!(
        !std::path::Path::new(&tmp).exists(),
        "PATH.tmp renamed away"
    );

    // Both accept connections and answer at once.
    for addr in [listening.public, listening.admin] {
        let request = b"GET /healthz HTTP/1.1\r\nhost: inlet\r\nconnection: close\r\n\r\n";
        let raw = exchange(&addr.to_string(), request, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}\n{}", read(&log)));
        let answer = Answer::from_raw(&raw);
        assert_eq!(answer.status, 200, "{addr}: {answer:?}\n{}", read(&log));
    }
}
