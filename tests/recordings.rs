//! Session recordings end to end (`POST /v1/recordings/{session_id}`, the `recording` lane):
//! bodies of up to 100 MiB streamed over raw connections to the inlet binary, read back from
//! Tansu and put together from their chunks, byte for byte, by the tests' own reassembly and by
//! `inlet tail --reassemble`. inlet's peak memory is read from `/proc` (`VmHWM`) and reported;
//! the spool keeps recordings through a broker outage and a SIGKILL.

mod common;

use std::time::Duration;

use common::broker::Broker;
use common::gateway::{
    create_topics, items_topic, landed, recordings_topic, temp_dir, topics, Gateway, Kafka,
    DSN_KEY, RECORDER, SDK,
};
use common::process::InletProcess;
use common::recordings::{reassemble, upload, Short, Uploaded};

const MIB: u64 = 1 << 20;
/// The default chunk: 512 KiB.
const CHUNK: u64 = 512 << 10;

/// The chunks of a recording of `size` bytes streamed: whole chunks, then the last with the
/// rest (empty for a body of whole chunks).
fn chunks_of(size: u64) -> usize {
    (size / CHUNK + 1) as usize
}

/// Checks an upload answered `status` with the recording it sent.
#[track_caller]
fn assert_answered(uploaded: &Uploaded, status: u16) -> String {
    assert_eq!(uploaded.status, Some(status), "{:?}", uploaded.body);
    let recording = &uploaded.body["recording"];
    assert_eq!(recording["sha256"].as_str(), uploaded.sha256.as_deref());
    assert_eq!(recording["bytes"].as_u64(), Some(uploaded.sent));
    recording["recording_id"].as_str().unwrap().to_owned()
}

/// Four recordings of 100 MiB at once through the inlet binary: each answered 200 with its
/// digest, read back complete, in order, on its session's partition, and again by `inlet tail
/// --reassemble`. inlet holds a few chunks of each, never a body: its peak memory stays under
/// the size of one body (and is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_100_mib_recordings_at_once_land_whole_in_little_memory() {
    let kafka = Kafka::start("rec_large").await;
    let inlet = InletProcess::start(&kafka.brokers(), &kafka.topics, &[]);
    inlet.wait_ready().await;
    let before = inlet.peak_rss();
    let addr = inlet.addr();
    let size = 100 * MIB;
    let sessions: Vec<String> = (0..4).map(|n| format!("session-large-{n}")).collect();
    let uploads = sessions.iter().enumerate().map(|(n, session)| {
        let (addr, session) = (addr.clone(), session.clone());
        tokio::spawn(
            async move { upload(&addr, &session, RECORDER, size, n as u64 + 1, None).await },
        )
    });
    let mut answered = Vec::new();
    for handle in uploads.collect::<Vec<_>>() {
        let uploaded = handle.await.unwrap();
        answered.push((assert_answered(&uploaded, 200), uploaded.sha256.unwrap()));
    }
    let peak = inlet.peak_rss();
    println!(
        "recordings: peak RSS {:.1} MiB after 4 x 100 MiB at once ({:.1} MiB before)",
        peak as f64 / MIB as f64,
        before as f64 / MIB as f64
    );
    assert!(
        peak < size,
        "inlet's peak RSS ({peak} bytes) reached the size of one body ({size})"
    );

    let expected = 4 * chunks_of(size);
    let landed = kafka.recordings(expected, Duration::from_secs(2)).await;
    assert_eq!(landed.len(), expected, "every chunk once");
    let recordings = reassemble(&landed);
    assert_eq!(recordings.len(), 4);
    for ((id, sha256), session) in answered.iter().zip(&sessions) {
        let recording = &recordings[id];
        assert!(recording.complete(), "{id} incomplete");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&recording.data));
        assert_eq!(&digest, sha256);
        assert_eq!(recording.data.len() as u64, size);
        assert_eq!(
            (recording.session_id.as_str(), recording.keys.as_slice()),
            (session.as_str(), &[session.clone()][..])
        );
        assert_eq!(recording.partitions.len(), 1, "one partition a session");
        assert_eq!(
            (recording.duplicates, recording.kind.as_str()),
            (0, "recording")
        );
        assert_eq!(recording.media_type, "application/octet-stream");
    }

    // The consumer tool: every recording written whole, checked, and its speed printed.
    let dir = temp_dir("reassembled");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_inlet"))
        .args(["tail", "--brokers", &kafka.brokers(), "--topic"])
        .arg(recordings_topic(&kafka.topics))
        .arg("--reassemble")
        .arg(&dir)
        .args(["--idle-exit-ms", "3000"])
        .output()
        .expect("inlet tail");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let complete: Vec<_> = lines.iter().filter_map(|l| l.get("complete")).collect();
    assert_eq!(complete.len(), 4, "{lines:?}");
    for (id, sha256) in &answered {
        let done = complete
            .iter()
            .find(|c| c["recording_id"] == id.as_str())
            .unwrap();
        assert_eq!(done["sha256"].as_str(), Some(sha256.as_str()));
        let file = std::fs::read(done["path"].as_str().unwrap()).unwrap();
        assert_eq!(file.len() as u64, size);
    }
    let summary = lines
        .iter()
        .find_map(|l| l.get("reassembled"))
        .expect("a summary");
    println!("recordings: inlet tail --reassemble {summary}");
}

/// A client gone half-way leaves chunks without a last one: a consumer sees an incomplete
/// recording and no complete one. A body over `recordings_max_bytes` is 413 (declared, or found
/// out as it streams), and a token without `recording` is 403; none leaves a complete
/// recording.
#[tokio::test]
async fn failed_uploads_leave_no_complete_recording() {
    let kafka = Kafka::start("rec_fail").await;
    let max = 8 * MIB;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |s| {
        s.recordings_max_bytes = Some(max as usize)
    })
    .await;
    gw.wait_ready().await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    // Cut off after 3 MiB of 6: the five chunks before the last full one were produced.
    let short = Some(Short::Cut(3 * MIB));
    let cut = upload(&addr, "session-cut", RECORDER, 6 * MIB, 1, short).await;
    assert_eq!(cut.status, None);
    // Declared over the cap (one streamed past it without a length is a unit test's).
    let declared = upload(&addr, "session-big", RECORDER, max + 1, 2, None).await;
    assert_eq!(declared.status, Some(413), "{:?}", declared.body);
    assert_eq!(declared.body["error"]["code"], "body_too_large");
    let refused = upload(&addr, "session-refused", SDK, MIB, 3, None).await;
    assert_eq!(refused.status, Some(403), "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "kind_not_allowed");
    let fine = upload(&addr, "session-fine", DSN_KEY, MIB + 1, 4, None).await;
    let id = assert_answered(&fine, 200);

    // The answered one's three chunks; the cut one's were acknowledged before it was.
    let landed = kafka.recordings(3, Duration::from_secs(3)).await;
    let recordings = reassemble(&landed);
    let complete: Vec<_> = recordings.values().filter(|r| r.complete()).collect();
    assert_eq!(complete.len(), 1, "{recordings:#?}");
    assert_eq!(complete[0].recording_id, id);
    let cut: Vec<_> = recordings
        .values()
        .filter(|r| r.session_id == "session-cut")
        .collect();
    assert_eq!(cut.len(), 1);
    assert!(
        cut[0].chunks >= 1 && cut[0].last.is_none(),
        "{:?}",
        cut[0].chunks
    );
    assert!(recordings
        .values()
        .all(|r| r.session_id != "session-big" && r.session_id != "session-refused"));
}

/// Under `spool`, recordings answered 202 while the broker is down survive a SIGKILL of inlet
/// and land whole once it is back: none lost, none corrupt (a crash may repeat chunks, which a
/// consumer skips by index); the upload the kill cut short lands as an incomplete recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_spool_keeps_recordings_through_an_outage_and_a_sigkill() {
    let dir = temp_dir("rec-spool");
    let mut broker = Broker::start_sqlite(&dir.join("broker"));
    let topics = topics("rec_spool");
    let (items, recordings) = (items_topic(&topics), recordings_topic(&topics));
    let created = [&topics.0, &topics.1, &items, &recordings];
    create_topics(&broker.bootstrap(), &created.map(String::as_str)).await;
    let spool = dir.join("spool").to_string_lossy().into_owned();
    let env = [
        ("INLET_DELIVERY", "spool"),
        ("INLET_SPOOL_DIR", spool.as_str()),
        ("INLET_DELIVERY_TIMEOUT_MS", "5000"),
    ];
    let mut inlet = InletProcess::start(&broker.bootstrap(), &topics, &env);
    inlet.wait_ready().await;
    broker.stop();
    let sizes = [3 * MIB + 17, CHUNK, 0, 5 * MIB];
    let mut answered = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let session = format!("session-spooled-{n}");
        let uploaded = upload(&inlet.addr(), &session, RECORDER, *size, n as u64 + 9, None).await;
        answered.push((assert_answered(&uploaded, 202), uploaded.sha256.unwrap()));
    }
    // One more, killed half-way (8 MiB of 64 sent, the rest held back): its chunks spooled so
    // far are an incomplete recording.
    let before = spooled(&inlet).await;
    let addr = inlet.addr();
    let stalled = Some(Short::Stall(8 * MIB));
    let cut = tokio::spawn(async move {
        upload(&addr, "session-killed", RECORDER, 64 * MIB, 99, stalled).await
    });
    while spooled(&inlet).await < before + 16.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inlet.signal("KILL");
    let _ = inlet.wait(Duration::from_secs(10));
    assert_eq!(cut.await.unwrap().status, None, "killed before its answer");
    broker.restart();
    let inlet = InletProcess::start(&broker.bootstrap(), &topics, &env);
    inlet.wait_ready().await;

    // The answered recordings' chunks, and the killed one's 16 (8 MiB).
    let expected: usize = sizes.iter().map(|s| chunks_of(*s)).sum::<usize>() + 16;
    let landed = landed(
        &broker.bootstrap(),
        &recordings,
        expected,
        Duration::from_secs(3),
    )
    .await;
    let reassembled = reassemble(&landed);
    let duplicates: usize = reassembled.values().map(|r| r.duplicates).sum();
    println!(
        "recordings under spool: {} chunks read for {expected} spooled, {duplicates} repeated",
        landed.len()
    );
    for (id, sha256) in &answered {
        let recording = reassembled.get(id).unwrap_or_else(|| panic!("{id} lost"));
        assert!(recording.complete(), "{id} corrupt or incomplete");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&recording.data));
        assert_eq!(&digest, sha256);
    }
    let killed: Vec<_> = (reassembled.values())
        .filter(|r| r.session_id == "session-killed")
        .collect();
    assert_eq!(killed.len(), 1, "its spooled chunks landed");
    assert!(
        !killed[0].complete() && killed[0].chunks == 16,
        "{:?}",
        killed[0].chunks
    );
    drop(inlet);
}

/// The records in inlet's spool (`inlet_spool_records`).
async fn spooled(inlet: &InletProcess) -> f64 {
    let metrics = inlet.metrics().await;
    (metrics.lines())
        .find_map(|line| line.strip_prefix("inlet_spool_records "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}
