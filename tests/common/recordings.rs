//! Recordings read back from Kafka and put together from their chunks, as a consumer would:
//! by `recording_id`, in `index` order, complete only with the last chunk and every chunk
//! before it, and checked against the last chunk's `count`, `size` and `sha256`.

use std::collections::BTreeMap;

use inlet::proto::{envelope::Event, Recording};
use sha2::{Digest, Sha256};

use super::gateway::Consumed;

/// One recording as read back.
#[derive(Debug, Clone)]
pub struct Reassembled {
    pub session_id: String,
    pub recording_id: String,
    /// `Recording.type`: `recording`, `$snapshot`, `replay_event`, `replay_recording`, ...
    pub kind: String,
    pub media_type: String,
    pub content_encoding: String,
    pub headers_json: String,
    /// The chunks' data in index order, so far as they go.
    pub data: Vec<u8>,
    /// Its chunks' partitions (one, for a recording kept in order) and keys.
    pub partitions: Vec<i32>,
    pub keys: Vec<String>,
    /// The chunks read, by index, counting each index once.
    pub chunks: usize,
    /// Chunks read twice.
    pub duplicates: usize,
    /// What the last chunk says: (count, size, sha256), when it was read.
    pub last: Option<(u32, u64, String)>,
}

impl Reassembled {
    /// Whether every chunk is there, in order, and the whole matches its last chunk's count,
    /// size and digest.
    pub fn complete(&self) -> bool {
        self.last.as_ref().is_some_and(|(count, size, sha256)| {
            *count as usize == self.chunks
                && *size == self.data.len() as u64
                && *sha256 == hex::encode(Sha256::digest(&self.data))
        })
    }
}

/// The recordings of `messages` (a recordings topic read back), by recording id. Chunks of a
/// partition are read in order, so each recording's are taken in the order they landed; one
/// out of order (or missing) stops its data there, leaving it incomplete.
pub fn reassemble(messages: &[Consumed]) -> BTreeMap<String, Reassembled> {
    let mut sorted: Vec<&Consumed> = messages.iter().collect();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    let mut out: BTreeMap<String, Reassembled> = BTreeMap::new();
    for message in sorted {
        let Some(Event::Recording(chunk)) = &message.envelope.event else {
            panic!("not a recording chunk: {:?}", message.envelope);
        };
        let entry = out
            .entry(chunk.recording_id.clone())
            .or_insert_with(|| Reassembled {
                session_id: chunk.session_id.clone(),
                recording_id: chunk.recording_id.clone(),
                kind: chunk.r#type.clone(),
                media_type: chunk.media_type.clone(),
                content_encoding: chunk.content_encoding.clone(),
                headers_json: String::new(),
                data: Vec::new(),
                partitions: Vec::new(),
                keys: Vec::new(),
                chunks: 0,
                duplicates: 0,
                last: None,
            });
        take(entry, chunk, message);
    }
    out
}

fn take(entry: &mut Reassembled, chunk: &Recording, message: &Consumed) {
    if !entry.partitions.contains(&message.partition) {
        entry.partitions.push(message.partition);
    }
    if !entry.keys.contains(&message.key) {
        entry.keys.push(message.key.clone());
    }
    match (chunk.index as usize).cmp(&entry.chunks) {
        std::cmp::Ordering::Less => entry.duplicates += 1,
        // A gap: what follows can never be put in place.
        std::cmp::Ordering::Greater => entry.last = None,
        std::cmp::Ordering::Equal if entry.last.is_none() || chunk.index == 0 => {
            if chunk.index == 0 {
                entry.headers_json = chunk.headers_json.clone();
            }
            entry.data.extend_from_slice(&chunk.data);
            entry.chunks += 1;
            if chunk.last {
                entry.last = Some((chunk.count, chunk.size, chunk.sha256.clone()));
            }
        }
        std::cmp::Ordering::Equal => {}
    }
}

/// The recordings topic of `kafka` read back from the beginning until `done` holds of the
/// recordings read so far (or 60 s passed, as [`consume`](super::gateway::consume) waits), then
/// for `linger` more to catch duplicates: for clients (the browser SDKs) whose recordings are cut
/// into chunks as inlet chooses, so no count of chunks can be expected beforehand.
pub async fn landed_until(
    kafka: &super::gateway::Kafka,
    linger: std::time::Duration,
    done: impl Fn(&BTreeMap<String, Reassembled>) -> bool + Send + 'static,
) -> Vec<Consumed> {
    let (brokers, topic) = (
        kafka.brokers(),
        super::gateway::recordings_topic(&kafka.topics),
    );
    let read = move || {
        super::gateway::consume_envelopes(&brokers, &topic, linger, |read| {
            // Only a last chunk can complete a recording: look then.
            let last = read.last().and_then(|(_, envelope)| match &envelope.event {
                Some(Event::Recording(chunk)) => Some(chunk.last),
                _ => None,
            });
            let landed: Vec<Consumed> = match last {
                Some(true) => (read.iter())
                    .map(|(place, envelope)| Consumed::at(place.clone(), envelope.clone()))
                    .collect(),
                _ => return false,
            };
            done(&reassemble(&landed))
        })
    };
    tokio::task::spawn_blocking(read)
        .await
        .expect("consumer thread")
}

/// Deterministic bytes that do not compress (xorshift64), as recordings usually arrive
/// (compressed by the client already).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.max(1))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            piece.copy_from_slice(&self.0.to_le_bytes()[..piece.len()]);
        }
    }
}

/// What an upload came to.
#[derive(Debug)]
pub struct Uploaded {
    /// The status, `None` when the connection ended without an answer.
    pub status: Option<u16>,
    /// The answer's JSON body (`Null` without one).
    pub body: serde_json::Value,
    /// The SHA-256 of what was sent, when all of it was.
    pub sha256: Option<String>,
    pub sent: u64,
}

/// Where an upload stops short of its body's end.
#[derive(Debug, Clone, Copy)]
pub enum Short {
    /// The connection is closed once this many bytes are written: a client gone half-way.
    Cut(u64),
    /// Nothing more is written after this many bytes, the connection held open (until the
    /// task is dropped, or the server gives up on it).
    Stall(u64),
}

/// `POST /v1/recordings/{session}` of `size` bytes of [`Noise`] from `seed`, over a raw
/// connection, as a client streams a file: `Content-Length` given, 64 KiB written at a time,
/// or stopping `short` of its end. Reads the answer to the end (`Connection: close`).
pub async fn upload(
    addr: &str,
    session: &str,
    token: &str,
    size: u64,
    seed: u64,
    short: Option<Short>,
) -> Uploaded {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/recordings/{session} HTTP/1.1\r\nHost: {addr}\r\nX-Inlet-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut noise, mut digest) = (Noise::new(seed), Sha256::new());
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    while sent < size {
        let n = (size - sent).min(buf.len() as u64) as usize;
        noise.fill(&mut buf[..n]);
        if stream.write_all(&buf[..n]).await.is_err() {
            // Answered early (and the connection closed): read the answer below.
            break;
        }
        digest.update(&buf[..n]);
        sent += n as u64;
        match short {
            Some(Short::Cut(at)) if sent >= at => {
                drop(stream);
                return Uploaded {
                    status: None,
                    body: serde_json::Value::Null,
                    sha256: None,
                    sent,
                };
            }
            Some(Short::Stall(at)) if sent >= at => break,
            _ => {}
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = (text.split_whitespace().nth(1)).and_then(|code| code.parse().ok());
    let body = (text.split_once("\r\n\r\n"))
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null);
    Uploaded {
        status,
        body,
        sha256: (sent == size).then(|| hex::encode(digest.finalize())),
        sent,
    }
}
