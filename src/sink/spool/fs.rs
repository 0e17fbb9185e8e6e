//! The spool's way to the disk: the few file operations it performs, behind a trait, so that
//! its tests can fill the disk, fail a write or a sync, or tear a write, without root (as
//! Vector's disk buffer reaches its files through its `Filesystem` trait).
//!
//! Production uses [`Disk`], which is `std::fs` and nothing more. The spool holds it as an
//! `Arc<dyn Filesystem>` and each open file as a `Box<dyn SpoolFile>`. A file is opened once
//! per segment, not per write, so the writer's group commit allocates nothing it did not
//! before, and pays one indirect call per write and per sync: a few nanoseconds beside the
//! tens of microseconds of the sync itself. A generic parameter would save those nanoseconds
//! at the price of a `SpoolSink<F>` in every signature that names the sink.

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// To read; the file must exist (a segment the reader reads, a directory to sync).
    Read,
    /// To write in place; the file must exist (the checkpoint).
    Write,
    /// To write, created if missing and kept as it is otherwise (the lock).
    Create,
    /// To read and write, created if missing and emptied otherwise (a new segment, a rewrite).
    Truncate,
}

/// The directory operations the spool performs.
pub trait Filesystem: Send + Sync {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens the file (or directory, with [`Open::Read`]) at `path`.
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn SpoolFile>>;
    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Appends `bytes` to the file at `path` (created if missing) and syncs its data.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// The length of the file at `path`, not following a symbolic link.
    fn len(&self, path: &Path) -> io::Result<u64>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// The operations the spool performs on an open file, each at an explicit offset.
pub trait SpoolFile: Send + Sync + Debug {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Syncs the file's data (and the metadata needed to read it back, such as its length).
    fn sync_data(&self) -> io::Result<()>;
    /// Syncs the file's data and all its metadata; on a directory, its entries.
    fn sync_all(&self) -> io::Result<()>;
    /// Takes the file's exclusive advisory lock (flock), held until the file is closed.
    fn try_lock(&self) -> Result<(), TryLockError>;
}

/// The real disk, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

/// Opens `path` as `how` says, on the real disk.
fn open_std(path: &Path, how: Open) -> io::Result<File> {
    let mut options = OpenOptions::new();
    match how {
        Open::Read => options.read(true),
        Open::Write => options.write(true),
        Open::Create => options.write(true).create(true).truncate(false),
        Open::Truncate => options.read(true).write(true).create(true).truncate(true),
    };
    options.open(path)
}

impl Filesystem for Disk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn SpoolFile>> {
        Ok(Box::new(open_std(path, how)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        fs::symlink_metadata(path).map(|m| m.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}

impl SpoolFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn try_lock(&self) -> Result<(), TryLockError> {
        File::try_lock(self)
    }
}

#[cfg(test)]
pub use faulty::Faulty;

/// A [`Filesystem`] for tests: the real disk, with faults injected on command.
#[cfg(test)]
mod faulty {
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::*;

    /// The real disk under a directory, failing as the test says: full past a capacity, every
    /// write or sync an I/O error, or one write torn (a prefix stored, then an error, and
    /// optionally the process "dead" after it: every later operation fails, so nothing the
    /// spool would do to clean up reaches the disk, as after a crash).
    #[derive(Debug, Clone)]
    pub struct Faulty(Arc<State>);

    #[derive(Debug)]
    struct State {
        /// The directory whose files count against the capacity.
        root: std::path::PathBuf,
        faults: Mutex<Faults>,
    }

    #[derive(Debug, Default)]
    struct Faults {
        /// Bytes the files under the root may take; a write past it stores what fits and
        /// fails with ENOSPC. Rewriting bytes a file already has takes no more space.
        capacity: Option<u64>,
        /// Every write fails with EIO, storing nothing.
        fail_writes: bool,
        /// Every sync fails with EIO.
        fail_syncs: bool,
        /// The next write of data to a segment stores this many bytes of it and fails with
        /// EIO; `true`: the process is dead after it.
        tear: Option<(usize, bool)>,
        /// Whether a write was torn.
        torn: bool,
        /// Every operation fails with EIO (the process "crashed").
        dead: bool,
    }

    /// Linux's EIO and ENOSPC (libc is no dependency of inlet's).
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;

    fn eio() -> io::Error {
        io::Error::from_raw_os_error(EIO)
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(ENOSPC)
    }

    /// Bytes of the regular files under `dir`, in all its subdirectories.
    fn usage(dir: &Path) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| match entry.metadata() {
                Ok(m) if m.is_dir() => usage(&entry.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }

    impl Faulty {
        /// The real disk, its capacity counted over the files under `root`; no fault yet.
        pub fn new(root: &Path) -> Faulty {
            Faulty(Arc::new(State {
                root: root.to_owned(),
                faults: Mutex::new(Faults::default()),
            }))
        }

        /// Bytes the files under the root may take (`None`: no limit). A capacity below
        /// what they take now makes every write that grows a file fail.
        pub fn set_capacity(&self, bytes: Option<u64>) {
            self.0.faults().capacity = bytes;
        }

        /// Bytes the files under the root take now.
        pub fn usage(&self) -> u64 {
            usage(&self.0.root)
        }

        pub fn fail_writes(&self, on: bool) {
            self.0.faults().fail_writes = on;
        }

        pub fn fail_syncs(&self, on: bool) {
            self.0.faults().fail_syncs = on;
        }

        /// Tears the next write of data to a segment (not the checkpoint's, which the reader
        /// writes meanwhile; and zero-fill ahead of the records is space, not data): stores
        /// its first `keep` bytes, then fails; with `crash`, every operation after it fails too.
        pub fn tear_next_write(&self, keep: usize, crash: bool) {
            self.0.faults().tear = Some((keep, crash));
        }

        /// Whether a write was torn.
        pub fn torn(&self) -> bool {
            self.0.faults().torn
        }
    }

    impl State {
        fn faults(&self) -> MutexGuard<'_, Faults> {
            self.faults.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// The faults, unless the process is dead.
        fn alive(&self) -> io::Result<MutexGuard<'_, Faults>> {
            let faults = self.faults();
            if faults.dead {
                return Err(eio());
            }
            Ok(faults)
        }

        /// Fails unless the process is alive.
        fn check(&self) -> io::Result<()> {
            self.alive().map(drop)
        }

        /// Writes `buf` at `offset` of `file` (a segment, or not), or as much of it as the
        /// faults let through.
        fn write_at(&self, file: &File, segment: bool, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut faults = self.alive()?;
            if faults.fail_writes {
                return Err(eio());
            }
            let mut keep = buf.len();
            let mut error = None;
            if let Some(capacity) = faults.capacity {
                let len = file.metadata()?.len();
                let growth = (offset + buf.len() as u64).saturating_sub(len);
                let free = capacity.saturating_sub(usage(&self.root));
                if growth > free {
                    keep = (len + free).saturating_sub(offset).min(keep as u64) as usize;
                    error = Some(enospc());
                }
            }
            if error.is_none() && segment && buf.iter().any(|b| *b != 0) {
                if let Some((at, crash)) = faults.tear.take() {
                    keep = at.min(buf.len());
                    error = Some(eio());
                    faults.torn = true;
                    faults.dead = crash;
                }
            }
            FileExt::write_all_at(file, &buf[..keep], offset)?;
            error.map_or(Ok(()), Err)
        }

        fn sync(&self) -> io::Result<()> {
            if self.alive()?.fail_syncs {
                return Err(eio());
            }
            Ok(())
        }
    }

    impl Filesystem for Faulty {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.0.check()?;
            Disk.create_dir_all(dir)
        }

        fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn SpoolFile>> {
            self.0.check()?;
            Ok(Box::new(FaultyFile {
                file: open_std(path, how)?,
                segment: path.extension().is_some_and(|e| e == "seg"),
                state: Arc::clone(&self.0),
            }))
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.0.check()?;
            Disk.read(path)
        }

        /// Appends as a write at the file's end (the spool has one appender per file).
        fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            let file = self.open(path, Open::Create)?;
            let len = self.len(path)?;
            file.write_all_at(bytes, len)?;
            file.sync_data()
        }

        fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
            self.0.check()?;
            Disk.read_dir(dir)
        }

        fn len(&self, path: &Path) -> io::Result<u64> {
            self.0.check()?;
            Disk.len(path)
        }

        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.check()?;
            Disk.rename(from, to)
        }

        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.0.check()?;
            Disk.remove_file(path)
        }

        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.check()?;
            Disk.remove_dir_all(path)
        }
    }

    /// A file opened through [`Faulty`].
    #[derive(Debug)]
    struct FaultyFile {
        file: File,
        /// Whether it is a segment file.
        segment: bool,
        state: Arc<State>,
    }

    impl SpoolFile for FaultyFile {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.state.write_at(&self.file, self.segment, buf, offset)
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.state.check()?;
            FileExt::read_exact_at(&self.file, buf, offset)
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.state.check()?;
            self.file.set_len(len)
        }

        fn sync_data(&self) -> io::Result<()> {
            self.state.sync()?;
            self.file.sync_data()
        }

        fn sync_all(&self) -> io::Result<()> {
            self.state.sync()?;
            self.file.sync_all()
        }

        fn try_lock(&self) -> Result<(), TryLockError> {
            self.state.check().map_err(TryLockError::Error)?;
            self.file.try_lock()
        }
    }
}
