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
