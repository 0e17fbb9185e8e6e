//! `inlet tail --reassemble DIR`: session recordings put back together from their chunks.
//!
//! A recording's chunks are on one partition, in order (see `inlet.v1.Recording`), so each
//! chunk's data is appended to a file as it is read, and never more than one chunk of a
//! recording is in memory. A recording is complete once its last chunk arrives with every
//! chunk before it; its file is then checked against the last chunk's `count`, `size` and
//! `sha256` and moved to `DIR/<session>/<recording_id>` (`<session>` with every byte outside
//! `[A-Za-z0-9._-]` written `%XX`). A chunk seen again (a redelivery) is skipped. A recording
//! that skips a chunk, or whose digest does not match, is corrupt; one still open when the
//! reading stops is incomplete: both are reported, and their partial files removed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::proto::Recording;

/// The recordings being put back together under one directory.
pub struct Reassembler {
    dir: PathBuf,
    /// Where partial recordings are written until they complete.
    partial: PathBuf,
    open: HashMap<String, Open>,
    /// Recordings that ended (complete or corrupt): a later chunk of theirs is a redelivery.
    ended: HashSet<String>,
    /// Bytes of chunk data written.
    pub bytes: u64,
}

/// A recording with chunks read and its last one not yet.
struct Open {
    session_id: String,
    file: File,
    path: PathBuf,
    next: u32,
    size: u64,
    digest: Sha256,
}

impl Reassembler {
    /// Reassembles into `dir`, which is created if need be.
    pub fn new(dir: &Path) -> anyhow::Result<Reassembler> {
        let partial = dir.join(".partial");
        fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Reassembler {
            dir: dir.to_owned(),
            partial,
            open: HashMap::new(),
            ended: HashSet::new(),
            bytes: 0,
        })
    }

    /// Takes one chunk; returns what it ended (a complete or a corrupt recording), as a JSON
    /// line to print.
    pub fn chunk(&mut self, chunk: Recording) -> anyhow::Result<Option<Value>> {
        let id = chunk.recording_id.clone();
        if self.ended.contains(&id) {
            return Ok(None);
        }
        if !self.open.contains_key(&id) {
            if chunk.index != 0 {
                // Its start was never read (consumed from the middle of the topic): nothing
                // can be made of it.
                self.ended.insert(id.clone());
                return Ok(Some(report(
                    "corrupt",
                    &chunk.session_id,
                    &id,
                    "missing chunk 0",
                )));
            }
            let path = self.partial.join(file_name(&id));
            let file = File::create(&path).with_context(|| format!("{}", path.display()))?;
            let open = Open {
                session_id: chunk.session_id.clone(),
                file,
                path,
                next: 0,
                size: 0,
                digest: Sha256::new(),
            };
            self.open.insert(id.clone(), open);
        }
        let open = self.open.get_mut(&id).expect("opened above");
        if chunk.index < open.next {
            return Ok(None);
        }
        if chunk.index > open.next {
            let why = format!("chunk {} came before chunk {}", chunk.index, open.next);
            return self.end_corrupt(&id, &why).map(Some);
        }
        open.file.write_all(&chunk.data)?;
        open.digest.update(&chunk.data);
        open.size += chunk.data.len() as u64;
        open.next += 1;
        self.bytes += chunk.data.len() as u64;
        if !chunk.last {
            return Ok(None);
        }
        let open = self.open.remove(&id).expect("open");
        self.ended.insert(id.clone());
        let sha256 = hex::encode(open.digest.clone().finalize());
        if open.next != chunk.count || open.size != chunk.size || sha256 != chunk.sha256 {
            let _ = fs::remove_file(&open.path);
            let why = format!(
                "{} chunks, {} bytes, sha256 {sha256}; the last chunk says {}, {}, {}",
                open.next, open.size, chunk.count, chunk.size, chunk.sha256
            );
            return Ok(Some(report("corrupt", &open.session_id, &id, &why)));
        }
        open.file.sync_all()?;
        let session = self.dir.join(file_name(&open.session_id));
        fs::create_dir_all(&session)?;
        let path = session.join(file_name(&id));
        fs::rename(&open.path, &path)?;
        Ok(Some(json!({ "complete": {
            "session_id": open.session_id, "recording_id": id, "path": path,
            "type": chunk.r#type, "media_type": chunk.media_type,
            "content_encoding": chunk.content_encoding, "chunks": chunk.count,
            "bytes": chunk.size, "sha256": sha256,
        }})))
    }

    fn end_corrupt(&mut self, id: &str, why: &str) -> anyhow::Result<Value> {
        let open = self.open.remove(id).expect("open");
        let _ = fs::remove_file(&open.path);
        self.ended.insert(id.to_owned());
        Ok(report("corrupt", &open.session_id, id, why))
    }

    /// The recordings still open, reported incomplete, their partial files removed.
    pub fn finish(self) -> Vec<Value> {
        let mut left: Vec<_> = self.open.into_iter().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        left.into_iter()
            .map(|(id, open)| {
                let _ = fs::remove_file(&open.path);
                let why = format!("no last chunk after {} chunks", open.next);
                report("incomplete", &open.session_id, &id, &why)
            })
            .collect()
    }
}

fn report(what: &str, session_id: &str, recording_id: &str, why: &str) -> Value {
    json!({ what: { "session_id": session_id, "recording_id": recording_id, "why": why } })
}

/// `name` as one file name: every byte outside `[A-Za-z0-9._-]` as `%XX`, and never `.` or
/// `..` alone.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            b'.' if !name.bytes().all(|b| b == b'.') => out.push('.'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Meta, Source};
    use crate::proto::{envelope::Event, Envelope};
    use prost::Message;

    fn chunks(session: &str, data: &[u8], chunk: usize) -> Vec<Recording> {
        let meta = Meta {
            received_at_ms: 0,
            project_id: "p".into(),
            account_id: "a".into(),
            token_id: "t".into(),
            client_ip: String::new(),
            user_agent: String::new(),
            source: Source::Inlet,
            topic: None,
        };
        let recording = Recording {
            session_id: session.into(),
            data: data.to_vec(),
            ..Default::default()
        };
        (crate::recording::chunks(&meta, recording, chunk).iter())
            .map(
                |record| match Envelope::decode(&record.value[..]).unwrap().event {
                    Some(Event::Recording(r)) => r,
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("inlet-reassemble-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn recordings_are_written_whole_and_the_rest_reported() {
        let dir = temp_dir("whole");
        let mut reassembler = Reassembler::new(&dir).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let (a, b, c) = (
            chunks("s/1", &data, 1024),
            chunks("s2", b"", 1024),
            chunks("s3", &data, 1024),
        );
        let mut ended = Vec::new();
        // Interleaved, with a redelivered chunk; `c` loses its chunk 2 and `d` its end.
        let mut order: Vec<Recording> = Vec::new();
        for i in 0..a.len() {
            order.push(a[i].clone());
            if i == 1 {
                order.push(a[0].clone());
            }
            if i != 2 {
                order.extend(c.get(i).cloned());
            }
        }
        order.extend(b.clone());
        let d = chunks("s4", &data, 1024);
        order.extend(d[..2].iter().cloned());
        for chunk in order {
            ended.extend(reassembler.chunk(chunk).unwrap());
        }
        ended.extend(reassembler.finish());
        let kinds: Vec<(&str, &str)> = ended
            .iter()
            .map(|v| {
                let (what, body) = v.as_object().unwrap().iter().next().unwrap();
                (what.as_str(), body["session_id"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("corrupt", "s3"),
                ("complete", "s/1"),
                ("complete", "s2"),
                ("incomplete", "s4")
            ]
        );
        let path = ended[1]["complete"]["path"].as_str().unwrap();
        assert!(path.contains("s%2F1"), "{path}");
        assert_eq!(fs::read(path).unwrap(), data);
        assert_eq!(
            fs::read(ended[2]["complete"]["path"].as_str().unwrap()).unwrap(),
            b""
        );
        assert_eq!(fs::read_dir(dir.join(".partial")).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_recording_whose_digest_does_not_match_is_corrupt() {
        let dir = temp_dir("digest");
        let mut reassembler = Reassembler::new(&dir).unwrap();
        let mut bad = chunks("s", b"abcdef", 4);
        bad[0].data = b"abcX".to_vec();
        let ended: Vec<Value> = bad
            .into_iter()
            .filter_map(|c| reassembler.chunk(c).unwrap())
            .collect();
        assert!(ended[0]["corrupt"]["why"]
            .as_str()
            .unwrap()
            .contains("sha256"));
        let _ = fs::remove_dir_all(&dir);
    }
}
