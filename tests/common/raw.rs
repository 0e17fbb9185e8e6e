//! HTTP/1.1 written by hand on a plain socket, for what a well-behaved client library cannot
//! send: lying lengths, broken chunking, pipelining, bodies that arrive slowly or never.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The head of `POST path` with `token` as a bearer, then `rest` (more header lines, the blank
/// line and any body: the caller ends the head).
pub fn post_head(path: &str, token: &str, rest: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: inlet\r\nauthorization: Bearer {token}\r\n{rest}")
}

/// A whole JSON `POST path` that closes the connection after its answer.
pub fn post_json(path: &str, token: &str, body: &str) -> String {
    post_head(
        path,
        token,
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends `bytes` on a fresh connection to `addr` (`host:port`), then reads until the server
/// closes it or `wait` passes; returns what came back.
pub fn exchange(addr: &str, bytes: &[u8], wait: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(wait))?;
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}
