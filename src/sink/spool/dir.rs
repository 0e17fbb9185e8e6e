//! The spool's directory: its files, the lock that keeps it to one process, the checkpoint,
//! and the start-up repair that makes whatever a crash or a bad disk left readable again.
//!
//! ```text
//! DIR/lock                     held (flock) for as long as one inlet uses the directory
//! DIR/checkpoint               the sequence number below which every record was acknowledged
//! DIR/00000000000000000042.seg  a segment: records from sequence number 42 on
//! DIR/rejected                 records the broker refused for good (too large), kept
//! DIR/corrupt/                 bytes that were no record, and files that were no spool file
//! ```
//!
//! The repair never fails start-up because of the spool's own files: a torn tail is cut off,
//! unreadable bytes are copied into `corrupt/` and the segment is rewritten without them, a
//! file that is not the spool's is moved into `corrupt/`. Only what the operating system
//! refuses (no permission, the lock held) is an error.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::format::{self, Found};
use super::fs::{Filesystem, Open, SpoolFile};

/// Name of the lock file.
const LOCK: &str = "lock";
/// Name of the checkpoint file.
const CHECKPOINT: &str = "checkpoint";
/// Name of the file of records refused for good.
pub const REJECTED: &str = "rejected";
/// Name of the directory of what was set aside.
pub const CORRUPT: &str = "corrupt";
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";

/// A segment file: its first sequence number and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub len: u64,
}

/// The path of the segment starting at `base` in `dir`.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// Creates (empty) the segment starting at `base`, durably: the file and its directory entry.
pub fn create_segment(
    fs: &dyn Filesystem,
    dir: &Path,
    base: u64,
) -> std::io::Result<Box<dyn SpoolFile>> {
    let file = fs.open(&segment_path(dir, base), Open::Truncate)?;
    file.sync_all()?;
    sync_dir(fs, dir)?;
    Ok(file)
}

/// Syncs `dir` itself, so created, renamed and deleted entries survive a power loss.
pub fn sync_dir(fs: &dyn Filesystem, dir: &Path) -> std::io::Result<()> {
    fs.open(dir, Open::Read)?.sync_all()
}

/// Takes the directory's lock, or fails naming the directory: one process per spool.
pub fn lock(fs: &dyn Filesystem, dir: &Path) -> anyhow::Result<Box<dyn SpoolFile>> {
    let path = dir.join(LOCK);
    let file = fs
        .open(&path, Open::Create)
        .with_context(|| format!("spool_dir: cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "spool_dir: {} is in use by another inlet process (it holds {}); \
             give each process its own INLET_SPOOL_DIR",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("spool_dir: cannot lock {}", path.display()))
        }
    }
}

/// Bytes of one checkpoint slot: a sequence number and its CRC.
const SLOT: usize = 12;

/// The checkpoint file: the sequence number below which every record was acknowledged.
///
/// Two slots written in turn, in place, each with its CRC; the valid one with the higher
/// number wins. In place because a full disk must not stop the checkpoint (a new file needs
/// space; overwriting bytes already allocated does not), and the checkpoint is what frees
/// space. Two slots because a write torn by a power loss spoils only the one being written.
#[derive(Debug)]
pub struct Checkpoint {
    file: Box<dyn SpoolFile>,
    next_slot: u64,
}

impl Checkpoint {
    /// Opens (or creates, allocated and synced) the checkpoint of `dir`, and reads it: 0 if
    /// there is none. One that is unreadable is set aside and the records are delivered again.
    pub fn open(fs: &dyn Filesystem, dir: &Path) -> std::io::Result<(Checkpoint, u64)> {
        let path = dir.join(CHECKPOINT);
        let read = fs.read(&path);
        let exists = !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        let bytes = read.unwrap_or_default();
        let slots: Vec<Option<u64>> = bytes.chunks(SLOT).map(read_slot).collect();
        let valid = bytes.len() == 2 * SLOT
            && (slots.iter().any(Option::is_some) || bytes.iter().all(|b| *b == 0));
        if !valid {
            if exists {
                tracing::warn!("unreadable spool checkpoint moved into corrupt/");
                set_aside_file(fs, dir, &path);
            }
            let file = fs.open(&path, Open::Truncate)?;
            file.set_len(2 * SLOT as u64)?;
            file.sync_all()?;
            sync_dir(fs, dir)?;
        }
        let file = fs.open(&path, Open::Write)?;
        let (seq, slot) = match (
            slots.first().copied().flatten(),
            slots.get(1).copied().flatten(),
        ) {
            _ if !valid => (0, 0),
            (Some(a), Some(b)) if b > a => (b, 1),
            (Some(a), _) => (a, 0),
            (None, Some(b)) => (b, 1),
            (None, None) => (0, 1),
        };
        // Write the other slot next, so the one read stays intact until the next one is.
        Ok((
            Checkpoint {
                file,
                next_slot: 1 - slot,
            },
            seq,
        ))
    }

    /// Records `seq`. `durable`: synced (before a segment is deleted); without it a process
    /// crash keeps it, a power loss may bring back the previous one (records delivered
    /// again, never lost).
    pub fn write(&mut self, seq: u64, durable: bool) -> std::io::Result<()> {
        let mut slot = seq.to_le_bytes().to_vec();
        slot.extend_from_slice(&crc32fast::hash(&slot).to_le_bytes());
        self.file
            .write_all_at(&slot, self.next_slot * SLOT as u64)?;
        if durable {
            self.file.sync_data()?;
        }
        self.next_slot = 1 - self.next_slot;
        Ok(())
    }
}

/// The sequence number of one slot, if its CRC checks out.
fn read_slot(slot: &[u8]) -> Option<u64> {
    let seq: [u8; 8] = slot.get(..8)?.try_into().ok()?;
    let crc = slot.get(8..SLOT)?;
    (crc32fast::hash(&seq).to_le_bytes() == crc).then(|| u64::from_le_bytes(seq))
}

/// Copies `bytes` (found unreadable at `offset` of `file`) into `corrupt/`. Best effort: a
/// failure is logged, the bytes are counted either way.
pub fn set_aside_bytes(fs: &dyn Filesystem, dir: &Path, file: &str, offset: usize, bytes: &[u8]) {
    let aside = dir.join(CORRUPT);
    let path = aside.join(format!("{file}@{offset}"));
    let result = fs
        .create_dir_all(&aside)
        .and_then(|()| fs.open(&path, Open::Truncate)?.write_all_at(bytes, 0));
    if let Err(error) = result {
        tracing::error!(%error, path = %path.display(), "cannot set corrupt spool bytes aside");
    }
}

/// Moves `path` into `corrupt/` (under a name that does not clash), or removes it if it
/// cannot be moved, so start-up never stops at it.
fn set_aside_file(fs: &dyn Filesystem, dir: &Path, path: &Path) {
    let aside = dir.join(CORRUPT);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = aside.join(format!("{name}.{}", uuid::Uuid::now_v7().simple()));
    let moved = fs
        .create_dir_all(&aside)
        .and_then(|()| fs.rename(path, &target));
    if let Err(error) = moved {
        tracing::error!(%error, path = %path.display(), "cannot move a file aside; removing it");
        let _ = fs.remove_file(path).or_else(|_| fs.remove_dir_all(path));
    }
}

/// What the start-up repair found and left.
#[derive(Debug)]
pub struct Recovered {
    /// The checkpoint file, open.
    pub checkpoint: Checkpoint,
    /// Segments holding records not yet acknowledged, oldest first.
    pub segments: Vec<Segment>,
    /// The checkpoint.
    pub acked: u64,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// Records in the segments at or past the checkpoint.
    pub records: u64,
    /// Write time of the oldest record past the checkpoint.
    pub oldest_ms: Option<u64>,
    /// Bytes set aside as unreadable (torn tails are cut, not counted).
    pub corrupt_bytes: u64,
}

/// Repairs the spool in `dir` (created if missing) and reports what it holds.
pub fn recover(fs: &dyn Filesystem, dir: &Path) -> anyhow::Result<Recovered> {
    let (checkpoint, acked) = Checkpoint::open(fs, dir)
        .with_context(|| format!("cannot open the checkpoint in {}", dir.display()))?;
    let mut recovered = Recovered {
        checkpoint,
        segments: Vec::new(),
        acked,
        next_seq: acked,
        records: 0,
        oldest_ms: None,
        corrupt_bytes: 0,
    };
    let mut bases = Vec::new();
    let names = fs
        .read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in names {
        let name = entry.to_string_lossy().into_owned();
        match segment_base(&name) {
            Some(base) => bases.push(base),
            None if [LOCK, CHECKPOINT, REJECTED, CORRUPT].contains(&name.as_str()) => {}
            None => {
                let path = dir.join(&entry);
                let size = fs.len(&path).unwrap_or(0);
                tracing::warn!(file = %name, size, "not a spool file: moved into corrupt/");
                recovered.corrupt_bytes += size;
                set_aside_file(fs, dir, &path);
            }
        }
    }
    bases.sort_unstable();
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        if let Some(segment) = repair_segment(fs, dir, base, last, &mut recovered)? {
            recovered.segments.push(segment);
        }
    }
    sync_dir(fs, dir).with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(recovered)
}

/// The base of a segment file's name, if it is one.
fn segment_base(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// Reads one segment, sets its unreadable bytes aside, rewrites it without them, and counts
/// its records; `None` once nothing in it is left to deliver (then it is deleted).
fn repair_segment(
    fs: &dyn Filesystem,
    dir: &Path,
    base: u64,
    last: bool,
    recovered: &mut Recovered,
) -> anyhow::Result<Option<Segment>> {
    let path = segment_path(dir, base);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let buf = fs
        .read(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut intact = Vec::with_capacity(buf.len());
    let mut damaged = false;
    let mut unacked = false;
    for found in format::scan(&buf) {
        match found {
            Found::Record(range, stored) => {
                recovered.next_seq = recovered.next_seq.max(stored.seq + 1);
                if stored.seq >= recovered.acked {
                    unacked = true;
                    recovered.records += 1;
                    recovered.oldest_ms.get_or_insert(stored.written_at_ms);
                }
                intact.extend_from_slice(&buf[range]);
            }
            Found::Torn(range) if last => {
                tracing::warn!(segment = %name, bytes = range.len(), "torn tail cut off");
                damaged = true;
            }
            Found::Torn(range) | Found::Corrupt(range) => {
                tracing::warn!(segment = %name, offset = range.start, bytes = range.len(),
                    "unreadable spool bytes moved into corrupt/");
                set_aside_bytes(fs, dir, &name, range.start, &buf[range.clone()]);
                recovered.corrupt_bytes += range.len() as u64;
                damaged = true;
            }
        }
    }
    if !unacked {
        fs.remove_file(&path)
            .with_context(|| format!("cannot remove {}", path.display()))?;
        return Ok(None);
    }
    if damaged {
        rewrite(fs, dir, &path, &intact)?;
    }
    Ok(Some(Segment {
        base,
        len: intact.len() as u64,
    }))
}

/// Replaces the file at `path` with `bytes`, durably (a new file renamed over it).
fn rewrite(fs: &dyn Filesystem, dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("rewrite");
    let result = (|| {
        let file = fs.open(&tmp, Open::Truncate)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()?;
        fs.rename(&tmp, path)?;
        sync_dir(fs, dir)
    })();
    result.with_context(|| format!("cannot rewrite {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::fs::Disk;
    use super::*;
    use crate::lane::Lane;
    use crate::sink::Record;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "inlet-spool-dir-{name}-{}",
            uuid::Uuid::now_v7().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes a segment at `base` holding records `seqs`; returns each record's start.
    fn segment(dir: &Path, base: u64, seqs: std::ops::Range<u64>) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for seq in seqs {
            starts.push(buf.len());
            let record = Record::new(Lane::BEACON, format!("k{seq}"), vec![seq as u8; 50]);
            format::encode(&record, seq, 1000 + seq, &mut buf);
        }
        fs::write(segment_path(dir, base), &buf).unwrap();
        (buf, starts)
    }

    fn checkpoint(dir: &Path, seq: u64) {
        Checkpoint::open(&Disk, dir)
            .unwrap()
            .0
            .write(seq, true)
            .unwrap();
    }

    fn aside(dir: &Path) -> usize {
        fs::read_dir(dir.join(CORRUPT)).map_or(0, |d| d.count())
    }

    #[test]
    fn a_clean_spool_is_read_as_it_is() {
        let dir = scratch("clean");
        segment(&dir, 0, 0..5);
        segment(&dir, 5, 5..8);
        checkpoint(&dir, 2);
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!((r.acked, r.next_seq, r.records), (2, 8, 6));
        assert_eq!(r.oldest_ms, Some(1002));
        assert_eq!(r.corrupt_bytes, 0);
        assert_eq!(r.segments.len(), 2);
    }

    #[test]
    fn the_zeros_written_ahead_are_no_part_of_a_segment() {
        let dir = scratch("zeros");
        let (mut buf, _) = segment(&dir, 0, 0..3);
        let written = buf.len() as u64;
        buf.resize(buf.len() + 65536, 0);
        fs::write(segment_path(&dir, 0), &buf).unwrap();
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!((r.records, r.corrupt_bytes), (3, 0));
        assert_eq!(
            r.segments,
            [Segment {
                base: 0,
                len: written
            }]
        );
    }

    #[test]
    fn acknowledged_segments_are_deleted() {
        let dir = scratch("acked");
        segment(&dir, 0, 0..5);
        segment(&dir, 5, 5..8);
        checkpoint(&dir, 5);
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!(
            r.segments,
            [Segment {
                base: 5,
                len: r.segments[0].len
            }]
        );
        assert!(!segment_path(&dir, 0).exists());
        assert_eq!(r.records, 3);
    }

    #[test]
    fn a_torn_tail_is_cut_and_not_counted() {
        let dir = scratch("torn");
        let (buf, starts) = segment(&dir, 0, 0..4);
        fs::write(segment_path(&dir, 0), &buf[..starts[3] + 10]).unwrap();
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!((r.records, r.next_seq, r.corrupt_bytes), (3, 3, 0));
        assert_eq!(
            fs::metadata(segment_path(&dir, 0)).unwrap().len(),
            starts[3] as u64
        );
    }

    #[test]
    fn a_flipped_byte_is_set_aside_and_the_rest_kept() {
        let dir = scratch("flip");
        let (mut buf, starts) = segment(&dir, 0, 0..4);
        buf[starts[1] + 20] ^= 1;
        fs::write(segment_path(&dir, 0), &buf).unwrap();
        segment(&dir, 4, 4..6);
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!(r.records, 5);
        assert_eq!(r.corrupt_bytes, (starts[2] - starts[1]) as u64);
        assert_eq!(aside(&dir), 1);
        // Rewritten without the bad record: a second start finds nothing more to repair.
        let again = recover(&Disk, &dir).unwrap();
        assert_eq!((again.records, again.corrupt_bytes), (5, 0));
    }

    #[test]
    fn a_torn_segment_before_the_last_counts_as_corrupt() {
        let dir = scratch("torn-middle");
        let (buf, starts) = segment(&dir, 0, 0..3);
        fs::write(segment_path(&dir, 0), &buf[..starts[2] + 5]).unwrap();
        segment(&dir, 3, 3..4);
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!((r.records, r.corrupt_bytes), (3, 5));
    }

    #[test]
    fn garbage_files_and_a_bad_checkpoint_are_moved_aside() {
        let dir = scratch("garbage");
        segment(&dir, 0, 0..2);
        fs::write(dir.join("notes.txt"), b"hello").unwrap();
        fs::write(dir.join("000.seg"), b"short name").unwrap();
        fs::write(dir.join(CHECKPOINT), b"nonsense").unwrap();
        let r = recover(&Disk, &dir).unwrap();
        assert_eq!((r.acked, r.records), (0, 2));
        assert_eq!(r.corrupt_bytes, 15);
        assert_eq!(aside(&dir), 3);
        assert!(!dir.join("notes.txt").exists());
    }

    #[test]
    fn the_checkpoint_keeps_the_newest_intact_slot() {
        let dir = scratch("checkpoint");
        assert_eq!(Checkpoint::open(&Disk, &dir).unwrap().1, 0);
        let (mut c, _) = Checkpoint::open(&Disk, &dir).unwrap();
        for seq in [40, 41, 42] {
            c.write(seq, false).unwrap();
        }
        assert_eq!(Checkpoint::open(&Disk, &dir).unwrap().1, 42);
        // A torn write spoils the slot being written: the other one still holds 41.
        let path = dir.join(CHECKPOINT);
        let mut bytes = fs::read(&path).unwrap();
        let newest = if read_slot(&bytes[..SLOT]) == Some(42) {
            0
        } else {
            SLOT
        };
        bytes[newest + 3] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();
        let (mut c, seq) = Checkpoint::open(&Disk, &dir).unwrap();
        assert_eq!(seq, 41);
        c.write(43, true).unwrap();
        assert_eq!(Checkpoint::open(&Disk, &dir).unwrap().1, 43);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_directory_named() {
        let dir = scratch("lock");
        let _held = lock(&Disk, &dir).unwrap();
        let err = lock(&Disk, &dir).unwrap_err().to_string();
        assert!(err.contains("in use by another inlet"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
}
