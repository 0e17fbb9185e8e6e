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
