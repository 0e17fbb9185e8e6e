//! Steady concurrent load and its reconciliation against what Kafka holds.
//!
//! Each session is a task that sends its beacons in order, a few per request, waiting for each
//! answer before the next request (as a browser's queue does); every event carries a unique id
//! and its sequence number, so what lands in Kafka can be matched to what was answered.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inlet::proto::envelope::Event;
use serde_json::{json, Value};

use super::answer::Answer;
use super::gateway::Consumed;

/// What happened to one event, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Accepted,
    /// Answered, not accepted: the status and the code.
    Rejected(u16, String),
    /// No HTTP answer (connection refused or reset).
    NoAnswer(String),
}

/// One event sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub session: String,
    pub seq: u64,
    pub fate: Fate,
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct Report {
    pub events: Vec<Sent>,
    pub requests: usize,
    /// The slowest answer any request got.
    pub slowest: Duration,
    /// The slowest answer that was not 2xx (how long a refusal made the client wait).
    pub slowest_refusal: Duration,
}

/// Shape of the load.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub token: String,
    pub sessions: usize,
    pub events_per_request: usize,
    /// Pause between one session's requests.
    pub pause: Duration,
    /// Per-request client timeout: a request slower than this counts as a hang.
    pub timeout: Duration,
}

impl Load {
    pub fn new(base_url: &str, token: &str) -> Load {
        Load {
            url: format!("{base_url}/v1/beacons"),
            token: token.to_owned(),
            sessions: 20,
            events_per_request: 5,
            pause: Duration::from_millis(10),
            timeout: Duration::from_secs(60),
        }
    }

    /// Runs until `stop` is set; returns every event's fate.
    pub async fn run(&self, stop: Arc<AtomicBool>) -> Report {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .unwrap();
        let run = uuid::Uuid::now_v7().simple().to_string();
        let mut tasks = Vec::new();
        for s in 0..self.sessions {
            let (client, stop, load) = (client.clone(), stop.clone(), self.clone());
            let session = format!("load-{}-{s}", &run[20..]);
            tasks.push(tokio::spawn(async move {
                load.session(client, session, stop).await
            }));
        }
        let mut report = Report::default();
        for t in tasks {
            let r = t.await.unwrap();
            report.events.extend(r.events);
            report.requests += r.requests;
            report.slowest = report.slowest.max(r.slowest);
            report.slowest_refusal = report.slowest_refusal.max(r.slowest_refusal);
        }
        report
    }

    async fn session(
        &self,
        client: reqwest::Client,
        session: String,
        stop: Arc<AtomicBool>,
    ) -> Report {
        let mut report = Report::default();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let events: Vec<Value> = (seq..seq + self.events_per_request as u64)
                .map(|j| json!({"session_id": session, "event": "tick", "id": format!("{session}-{j}"), "props": {"seq": j}}))
                .collect();
            let started = Instant::now();
            let result = client
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&events).unwrap())
                .send()
                .await;
            let fates: Vec<Fate> = match result {
                Ok(response) => {
                    let a = Answer::from_response_lossy(response).await;
                    report.slowest = report.slowest.max(started.elapsed());
                    if a.status >= 300 {
                        report.slowest_refusal = report.slowest_refusal.max(started.elapsed());
                    }
                    fates(&a, events.len())
                }
                Err(e) => {
                    assert!(
                        !e.is_timeout(),
                        "a request hung for {:?}: {e}",
                        self.timeout
                    );
                    report.slowest = report.slowest.max(started.elapsed());
                    vec![Fate::NoAnswer(short(&e)); events.len()]
                }
            };
            report.requests += 1;
            for (i, fate) in fates.into_iter().enumerate() {
                report.events.push(Sent {
                    id: format!("{session}-{}", seq + i as u64),
                    session: session.clone(),
                    seq: seq + i as u64,
                    fate,
                });
            }
            seq += self.events_per_request as u64;
            tokio::time::sleep(self.pause).await;
        }
        report
    }
}

fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connect".into()
    } else {
        "reset".into()
    }
}

/// Each event's fate from the answer to a request of `n` events.
fn fates(a: &Answer, n: usize) -> Vec<Fate> {
    match a.status {
        200 | 202 => vec![Fate::Accepted; n],
        207 => {
            let mut fates = vec![Fate::Accepted; n];
            for r in a.body["rejected"].as_array().into_iter().flatten() {
                let i = r["index"].as_u64().unwrap() as usize;
                fates[i] = Fate::Rejected(207, r["code"].as_str().unwrap_or("").to_owned());
            }
            fates
        }
        status => vec![Fate::Rejected(status, a.code().to_owned()); n],
    }
}

/// Runs `load` in the background while `fault` runs (it injects the fault and waits as long
/// as the load should go on), then stops the load; returns its report and what `fault` returned.
pub async fn under_load<T>(load: Load, fault: impl std::future::Future<Output = T>) -> (Report, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { load.run(stop).await }
    });
    let outcome = fault.await;
    stop.store(true, Ordering::Relaxed);
    (running.await.expect("load task"), outcome)
}

/// What was sent against what Kafka holds.
#[derive(Debug, Default)]
pub struct Reconciliation {
    pub sent: usize,
    pub accepted: usize,
    /// Not accepted, by status and code.
    pub rejected: BTreeMap<String, usize>,
    pub found: usize,
    /// Accepted but not in Kafka: must be 0.
    pub missing: usize,
    /// Messages beyond the first for one event id.
    pub duplicated: usize,
    /// In Kafka though not answered as accepted (timed out, possibly persisted): allowed.
    pub unacknowledged_but_written: usize,
    /// Pairs of one session's events whose offsets contradict the order they were sent in.
    pub out_of_order: usize,
}

impl fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, accepted {}, rejected {:?}, found in Kafka {}, missing {}, duplicated {}, \
             written without acceptance {}, out of order {}",
            self.sent,
            self.accepted,
            self.rejected,
            self.found,
            self.missing,
            self.duplicated,
            self.unacknowledged_but_written,
            self.out_of_order
        )
    }
}

/// Matches `sent` events with `consumed` messages by event id.
pub fn reconcile(sent: &[Sent], consumed: &[Consumed]) -> Reconciliation {
    let mut r = Reconciliation {
        sent: sent.len(),
        found: consumed.len(),
        ..Default::default()
    };
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for c in consumed {
        *copies.entry(c.envelope.event_id.as_str()).or_default() += 1;
    }
    r.duplicated = copies.values().map(|n| n - 1).sum();
    for s in sent {
        let present = copies.contains_key(s.id.as_str());
        match &s.fate {
            Fate::Accepted => {
                r.accepted += 1;
                if !present {
                    r.missing += 1;
                }
            }
            other => {
                let key = match other {
                    Fate::Rejected(status, code) => format!("{status} {code}"),
                    Fate::NoAnswer(why) => format!("no answer ({why})"),
                    Fate::Accepted => unreachable!(),
                };
                *r.rejected.entry(key).or_default() += 1;
                if present {
                    r.unacknowledged_but_written += 1;
                }
            }
        }
    }
    // Per session: the first copy of each event, ordered by offset, must follow the send order.
    let mut seen = HashMap::new();
    let mut per_session: BTreeMap<String, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for c in consumed {
        if seen.insert(c.envelope.event_id.clone(), ()).is_some() {
            continue;
        }
        if let Some(Event::Beacon(b)) = &c.envelope.event {
            let seq = serde_json::from_str::<Value>(&b.props_json)
                .ok()
                .and_then(|p| p["seq"].as_u64());
            if let Some(seq) = seq {
                per_session.entry(b.session_id.clone()).or_default().push((
                    c.partition,
                    c.offset,
                    seq,
                ));
            }
        }
    }
    for events in per_session.values_mut() {
        events.sort();
        r.out_of_order += events
            .windows(2)
            .filter(|w| w[0].0 != w[1].0 || w[0].2 > w[1].2)
            .count();
    }
    r
}
