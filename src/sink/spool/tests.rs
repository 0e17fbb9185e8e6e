//! The spool against an in-memory sink and a disk that fails on command ([`Faulty`]): what it
//! accepted reaches the sink in order, a sink that refuses gets the records again, and a full
//! disk, a failed write or sync and a torn write are answered `spool_unavailable`, never `Ok`,
//! with every record answered `Ok` delivered once it can be. No broker, no root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::format::{self, Found};
use super::fs::{Disk, Faulty};
use super::*;
use crate::lane::Lane;
use crate::sink::memory::MemorySink;

/// Bytes of each record's value.
const VALUE: usize = 300;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "inlet-spool-{name}-{}",
        uuid::Uuid::now_v7().simple()
    ))
}

/// Small segments, so that a few hundred records span several; synced before every answer.
fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_owned(),
        max_bytes: 64 << 20,
        fsync: SpoolFsync::Always,
        segment_bytes: 16 << 10,
    }
}

/// [`options`] with one segment for every record a test writes, to read it back whole.
fn one_segment(dir: &Path) -> Options {
    Options {
        segment_bytes: 1 << 20,
        ..options(dir)
    }
}

/// A broker that can be down: a [`MemorySink`] that refuses every record with a retriable
/// failure while down, and keeps the keys of those it accepted, in the order it did.
struct Broker {
    sink: Arc<MemorySink>,
    down: Arc<AtomicBool>,
    delivered: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    fn new(down: bool) -> Broker {
        let down = Arc::new(AtomicBool::new(down));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = MemorySink::answering({
            let (down, delivered) = (Arc::clone(&down), Arc::clone(&delivered));
            move |record| {
                if down.load(Ordering::Acquire) {
                    return Err(Failure::Broker);
                }
                delivered.lock().unwrap().push(record.key.clone());
                Ok(())
            }
        });
        Broker {
            sink: Arc::new(sink),
            down,
            delivered,
        }
    }

    fn up(&self) {
        self.down.store(false, Ordering::Release);
    }

    fn sink(&self) -> Arc<dyn Sink> {
        Arc::clone(&self.sink) as Arc<dyn Sink>
    }

    /// The keys of the records accepted, in order.
    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

/// Record number `i`, keyed `r{i}`.
fn record(i: usize) -> Record {
    Record::new(Lane::BEACON, format!("r{i}"), vec![b'v'; VALUE])
}

/// Sends requests of records keyed `r0`, `r1`, … and keeps the keys of those answered `Ok`.
#[derive(Default)]
struct Client {
    next: usize,
    accepted: Vec<String>,
}

impl Client {
    /// Sends one request of `n` records; its answer, which is the same for each record.
    async fn send(&mut self, spool: &SpoolSink, n: usize) -> Outcome {
        let records: Vec<Record> = (self.next..self.next + n).map(record).collect();
        self.next += n;
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let outcomes = spool.send(records, true).await;
        assert_eq!(outcomes.len(), n);
        let outcome = outcomes[0];
        assert!(outcomes.iter().all(|o| *o == outcome), "{outcomes:?}");
        if outcome.is_ok() {
            self.accepted.extend(keys);
        }
        outcome
    }
}

/// Waits (at most 30 s) until `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments
}

/// What a scan finds in the segment at `path`: `'r'` per record, `'c'` corrupt, `'t'` torn.
fn scanned(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format::scan(&bytes)
        .iter()
        .map(|found| match found {
            Found::Record(..) => 'r',
            Found::Corrupt(_) => 'c',
            Found::Torn(_) => 't',
        })
        .collect()
}

#[tokio::test]
async fn what_the_spool_accepted_reaches_the_sink_in_order_and_the_checkpoint_moves() {
    let dir = scratch("order");
    let sink = Arc::new(MemorySink::accepting());
    let spool = SpoolSink::open(options(&dir), Arc::clone(&sink) as Arc<dyn Sink>).unwrap();
    let mut client = Client::default();
    for _ in 0..100 {
        assert_eq!(client.send(&spool, 10).await, Ok(()));
    }
    eventually("the spool drained", || spool.records() == 0).await;
    let keys: Vec<String> = sink.records().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, client.accepted, "every record once, in order");
    // 1,000 records of 300 bytes took some twenty 16 KiB segments: all but the writer's are
    // deleted once delivered, behind a checkpoint past the last record.
    eventually("the delivered segments deleted", || {
        segments(&dir).len() == 1
    })
    .await;
    let (_, checkpoint) = dir::Checkpoint::open(&Disk, &dir).unwrap();
    assert_eq!(checkpoint, 1000);
}

#[tokio::test]
async fn a_sink_that_refuses_for_a_while_gets_every_record_again_in_order() {
    let dir = scratch("refusing");
    let broker = Broker::new(true);
    let spool = SpoolSink::open(options(&dir), broker.sink()).unwrap();
    let mut client = Client::default();
    for _ in 0..50 {
        assert_eq!(client.send(&spool, 10).await, Ok(()));
    }
    // The reader tried, was refused, and will try again: nothing is acknowledged meanwhile.
    eventually("a window refused twice", || spool.delivery_failures() >= 2).await;
    assert_eq!(spool.records(), 500);
    assert!(segments(&dir).len() > 1, "nothing deleted while refused");
    assert!(broker.delivered().is_empty());

    broker.up();
    eventually("the spool drained", || spool.records() == 0).await;
    assert_eq!(
        broker.delivered(),
        client.accepted,
        "none lost, none out of order"
    );
    assert!(
        broker.sink.records().len() > client.accepted.len(),
        "sent again"
    );
    eventually("the delivered segments deleted", || {
        segments(&dir).len() == 1
    })
    .await;
}

/// Sends requests of 10 records, the broker down, until the disk (`free` bytes past what the
/// spool holds when opened) refuses one: every answer `Ok` until then, the refusal
/// `spool_unavailable` (the spool's own limit is far off).
async fn fill(spool: &SpoolSink, fs: &Faulty, free: u64, client: &mut Client) {
    fs.set_capacity(Some(fs.usage() + free));
    loop {
        assert!(client.next < 100_000, "the disk never filled");
        match client.send(spool, 10).await {
            Ok(()) => assert!(spool.ready(), "ready while it takes writes"),
            Err(failure) => {
                assert_eq!(failure, Failure::SpoolUnavailable);
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_full_disk_is_spool_unavailable_never_ok_until_space_returns_and_loses_nothing() {
    let dir = scratch("full-disk");
    let fs = Faulty::new(&dir);
    let broker = Broker::new(true);
    let spool = SpoolSink::open_with(options(&dir), broker.sink(), Arc::new(fs.clone())).unwrap();
    let mut client = Client::default();
    fill(&spool, &fs, 96 << 10, &mut client).await;
    let before = client.accepted.len();
    assert!(before > 100, "{before} records before the disk filled");
    for _ in 0..20 {
        assert!(!spool.ready(), "not ready on a full disk");
        assert_eq!(
            client.send(&spool, 10).await,
            Err(Failure::SpoolUnavailable)
        );
    }
    assert_eq!(
        client.accepted.len(),
        before,
        "nothing accepted on a full disk"
    );

    // The broker is back: the reader delivers, the checkpoint (written in place, so a full
    // disk does not stop it) moves, the delivered segments are deleted and their space is
    // the writer's again.
    broker.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(failure) = client.send(&spool, 10).await {
        assert_eq!(failure, Failure::SpoolUnavailable);
        assert!(
            Instant::now() < deadline,
            "still refused once space returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spool.ready(), "ready again");
    for _ in 0..10 {
        assert_eq!(client.send(&spool, 10).await, Ok(()));
    }
    eventually("the spool drained", || spool.records() == 0).await;
    assert_eq!(broker.delivered(), client.accepted, "0 missing, in order");
}

/// The public and admin routers over a spool; the sessions of the events answered 202.
struct Http {
    public: axum::Router,
    admin: axum::Router,
    next: usize,
    accepted: Vec<String>,
}

impl Http {
    fn new(spool: SpoolSink) -> Http {
        let dir = spool.shared.dir.clone();
        let config = crate::testing::config(|s| {
            s.delivery = Some(crate::config::Delivery::Spool);
            s.spool_dir = Some(dir);
        });
        let state = crate::state::AppState::new(
            config,
            Arc::new(crate::testing::tokens()),
            Arc::new(spool),
        );
        Http {
            public: crate::http::public_router(state.clone()),
            admin: crate::http::admin_router(state),
            next: 0,
            accepted: Vec::new(),
        }
    }

    /// POSTs 10 beacons of sessions `s{next}`…; the status, and the error code of a refusal
    /// (which must carry `Retry-After`).
    async fn post(&mut self) -> (StatusCode, String) {
        let sessions: Vec<String> = (self.next..self.next + 10)
            .map(|i| format!("s{i}"))
            .collect();
        self.next += 10;
        let events: Vec<_> = (sessions.iter())
            .map(|s| serde_json::json!({"session_id": s, "event": "tick", "props": {"pad": "x".repeat(200)}}))
            .collect();
        let request = Request::post("/v1/beacons")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", crate::testing::SECRET),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&events).unwrap()))
            .unwrap();
        let (status, headers, body) = crate::http::testing::send(&self.public, request).await;
        if status == StatusCode::ACCEPTED {
            self.accepted.extend(sessions);
            return (status, String::new());
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(headers.contains_key(header::RETRY_AFTER), "{status} {code}");
        (status, code)
    }

    async fn readyz(&self) -> StatusCode {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        crate::http::testing::send(&self.admin, request).await.0
    }
}

/// What `tests/spool.rs` checked with a 1 MiB tmpfs mounted as root, here through the HTTP
/// routers over the same spool on a disk that fills: 503 `spool_unavailable` with
/// `Retry-After` while it is full (never a 202), `/readyz` 503, then 202 again and every
/// event answered 202 delivered. (A failure's status and code come from one table,
/// `Failure::meaning` through `ApiError::Unavailable`, whose 503 is also tested by
/// `pipeline.rs`'s `a_retriable_failure_is_a_503_when_nothing_was_accepted` and, for the spool's
/// other row, by `tests/spool.rs`'s `a_full_spool_answers_503_spool_full_then_202_once_delivered`.)
#[tokio::test]
async fn over_http_a_full_disk_is_503_spool_unavailable_and_unready_then_202() {
    let dir = scratch("full-disk-http");
    let fs = Faulty::new(&dir);
    let broker = Broker::new(true);
    let spool = SpoolSink::open_with(options(&dir), broker.sink(), Arc::new(fs.clone())).unwrap();
    let mut http = Http::new(spool);
    let unavailable = (
        StatusCode::SERVICE_UNAVAILABLE,
        "spool_unavailable".to_owned(),
    );

    fs.set_capacity(Some(fs.usage() + (96 << 10)));
    let refused = loop {
        assert!(http.next < 100_000, "the disk never filled");
        let answer = http.post().await;
        if answer.0 != StatusCode::ACCEPTED {
            break answer;
        }
    };
    assert_eq!(refused, unavailable);
    let before = http.accepted.len();
    for _ in 0..10 {
        assert_eq!(http.post().await, unavailable, "never 202 on a full disk");
        assert_eq!(http.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(http.accepted.len(), before);

    broker.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http.post().await;
        if answer.0 == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(answer, unavailable);
        assert!(
            Instant::now() < deadline,
            "still refused once space returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.readyz().await, StatusCode::OK);
    eventually("every accepted event delivered", || {
        broker.delivered().len() >= http.accepted.len()
    })
    .await;
    assert_eq!(
        broker.delivered(),
        http.accepted,
        "0 missing, none twice, in order"
    );
}

#[tokio::test]
async fn an_io_error_on_write_or_sync_is_spool_unavailable_and_never_delivered() {
    let dir = scratch("eio");
    let fs = Faulty::new(&dir);
    let broker = Broker::new(false);
    let spool = SpoolSink::open_with(options(&dir), broker.sink(), Arc::new(fs.clone())).unwrap();
    let mut client = Client::default();
    assert_eq!(client.send(&spool, 10).await, Ok(()));
    for fail in [Faulty::fail_syncs as fn(&Faulty, bool), Faulty::fail_writes] {
        fail(&fs, true);
        for _ in 0..3 {
            assert_eq!(
                client.send(&spool, 10).await,
                Err(Failure::SpoolUnavailable)
            );
            assert!(!spool.ready(), "not ready while the disk fails");
        }
        fail(&fs, false);
        assert_eq!(client.send(&spool, 10).await, Ok(()));
        assert!(spool.ready(), "ready once a write succeeds");
    }
    eventually("the spool drained", || spool.records() == 0).await;
    // The records of a refused request were cut from the segment and written over.
    assert_eq!(broker.delivered(), client.accepted);
}

#[tokio::test]
async fn a_torn_write_is_spool_unavailable_and_cut_before_the_next() {
    let dir = scratch("torn");
    let fs = Faulty::new(&dir);
    // Down until the end, so that the writer keeps its segment (it moves on from one wholly
    // delivered after a failed write) and the test reads back all it wrote.
    let broker = Broker::new(true);
    let spool =
        SpoolSink::open_with(one_segment(&dir), broker.sink(), Arc::new(fs.clone())).unwrap();
    let mut client = Client::default();
    for _ in 0..3 {
        assert_eq!(client.send(&spool, 10).await, Ok(()));
    }
    // Six whole records of ten and part of a seventh stored, then the write fails.
    fs.tear_next_write(6 * format::encoded_len(&record(0)) + 100, false);
    assert_eq!(
        client.send(&spool, 10).await,
        Err(Failure::SpoolUnavailable)
    );
    assert!(fs.torn());
    // Shorter than what the torn write left: what follows them must have been cut, or a
    // restart would find the refused request's whole records after them.
    for _ in 0..3 {
        assert_eq!(client.send(&spool, 1).await, Ok(()));
    }
    let last = segments(&dir).pop().unwrap();
    assert_eq!(
        scanned(&last),
        "r".repeat(33),
        "nothing but the records answered Ok"
    );
    broker.up();
    eventually("the spool drained", || spool.records() == 0).await;
    assert_eq!(broker.delivered(), client.accepted);
}

#[tokio::test]
async fn after_a_crash_in_a_torn_write_a_new_spool_repairs_and_delivers_every_ok_once() {
    let dir = scratch("torn-crash");
    let fs = Faulty::new(&dir);
    let down = Broker::new(true);
    let spool = SpoolSink::open_with(one_segment(&dir), down.sink(), Arc::new(fs.clone())).unwrap();
    let mut client = Client::default();
    for _ in 0..5 {
        assert_eq!(client.send(&spool, 10).await, Ok(()));
    }
    // One record, so that the torn write holds no whole record of a refused request (one
    // would be delivered after the repair, as a crash may deliver a refused request's records).
    fs.tear_next_write(VALUE / 2, true);
    assert_eq!(client.send(&spool, 1).await, Err(Failure::SpoolUnavailable));
    assert!(fs.torn());
    drop(spool);
    // The "dead" process cut nothing back: the torn record is on disk after the answered ones.
    let last = segments(&dir).pop().unwrap();
    assert_eq!(scanned(&last), format!("{}t", "r".repeat(50)));

    // As after a restart: a new spool (on the real disk) on the directory, the broker up.
    let up = Broker::new(false);
    let spool = SpoolSink::open(one_segment(&dir), up.sink()).unwrap();
    eventually("the spool drained", || spool.records() == 0).await;
    assert_eq!(up.delivered(), client.accepted, "every Ok once, in order");
    assert_eq!(
        client.send(&spool, 10).await,
        Ok(()),
        "serving after the repair"
    );
}
