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
