//! One HTTP answer as the tests see it (status, headers, the JSON body), whether it came through
//! reqwest or as raw bytes off a socket.
#![allow(dead_code)]

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is not JSON, as a GIF or an empty body).
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// Reads a reqwest response whole; a body that breaks off fails the test.
    pub async fn from_response(r: reqwest::Response) -> Answer {
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let bytes = r.bytes().await.expect("body").to_vec();
        Answer::new(status, headers, bytes)
    }

    /// Reads a reqwest response whole, keeping its status when the body breaks off (the server
    /// was killed mid-answer): the body is then empty.
    pub async fn from_response_lossy(r: reqwest::Response) -> Answer {
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let bytes = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Answer::new(status, headers, bytes)
    }

    /// Parses the first answer in what a raw socket read: status 0 when there is none. Of the
    /// body it keeps the first JSON value: a chunked body's size line and a pipelined answer
    /// after it are skipped.
    pub fn from_raw(response: &str) -> Answer {
        let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = HeaderMap::new();
        for (name, value) in lines.filter_map(|l| l.split_once(':')) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
        let json = rest.lines().find(|l| l.starts_with('{')).unwrap_or("");
        let body = serde_json::Deserializer::from_str(json)
            .into_iter::<Value>()
            .next()
            .and_then(Result::ok)
            .unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            bytes: rest.as_bytes().to_vec(),
        }
    }

    fn new(status: u16, headers: HeaderMap, bytes: Vec<u8>) -> Answer {
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    /// The error code of an error answer (empty for any other).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The error code, or `invalid_events` for an answer that accepted none of its events
    /// (a 400 listing each event's code rather than one error).
    pub fn outcome(&self) -> &str {
        match self.code() {
            "" if self.body["accepted"] == 0 => "invalid_events",
            code => code,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (for checking what an answer must not contain).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A property an answer must have, and what it is called in a failure.
pub type Check = (&'static str, fn(&Answer) -> bool);

/// What an answer must be, for a table of cases: its status, its code, further properties.
#[derive(Debug, Clone)]
pub struct Expected {
    pub status: u16,
    /// Compared with [`Answer::outcome`]; `None` for an answer without a JSON body (any code).
    pub code: Option<&'static str>,
    pub also: Vec<Check>,
}

impl Expected {
    /// `status` with error code `code` (or `invalid_events`, see [`Answer::outcome`]).
    pub fn code(status: u16, code: &'static str) -> Expected {
        Expected {
            status,
            code: Some(code),
            also: Vec::new(),
        }
    }

    /// `status`, whatever the body.
    pub fn status(status: u16) -> Expected {
        Expected {
            status,
            code: None,
            also: Vec::new(),
        }
    }

    /// The same, and `check` must hold too; a failure calls it `what`.
    pub fn also(mut self, what: &'static str, check: fn(&Answer) -> bool) -> Expected {
        self.also.push((what, check));
        self
    }

    /// What is wrong with `a`, one line each, naming the case.
    pub fn failures(&self, case: &str, a: &Answer) -> Vec<String> {
        let status_or_code = (self.status != a.status
            || self.code.is_some_and(|code| code != a.outcome()))
        .then(|| {
            format!(
                "expected {} {}, got {} {} {}",
                self.status,
                self.code.unwrap_or("(any code)"),
                a.status,
                a.outcome(),
                String::from_utf8_lossy(&a.bytes[..a.bytes.len().min(300)])
            )
        });
        let also = self.also.iter().filter(|(_, check)| !check(a));
        status_or_code
            .into_iter()
            .chain(also.map(|(what, _)| format!("not so: {what}; got {a:?}")))
            .map(|failure| format!("{case}: {failure}"))
            .collect()
    }
}
