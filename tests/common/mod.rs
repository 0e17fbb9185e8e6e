//! Helpers shared by every integration test binary: each `tests/*.rs` declares `mod common;`, and
//! nothing here is copied into a test file. (Each binary uses part of it: hence `dead_code`.)
#![allow(dead_code)]

pub mod answer;
pub mod broker;
pub mod encode;
pub mod gateway;
pub mod load;
pub mod process;
pub mod raw;
pub mod recordings;
pub mod redis;
pub mod request;
pub mod secure;

/// Binds 127.0.0.1:0 and releases it, returning the port the kernel chose.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// `127.0.0.1:PORT` where nothing listens: a broker address that can never be reached.
pub fn unused_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The directory tests/sdk/install.sh installs the SDKs into (`target/sdk`).
pub fn sdk_root() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("sdk")
}

/// Runs an SDK script's `command`; returns the JSON lines it printed, each parsed. Fails the
/// test, with what it printed, when it cannot run, fails, or prints a line that is not JSON.
pub fn script_lines<T: serde::de::DeserializeOwned>(
    command: &mut std::process::Command,
    what: &str,
) -> Vec<T> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} printed {l:?}: {e}")))
        .collect()
}

/// Fails the test with every failure of a table of cases, one a line, if there is any: a table
/// runs every case before it fails, so one broken case does not hide the others.
#[track_caller]
pub fn assert_no_failures(table: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of the {table} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
