//! The file-system interface the WAL is written against, and its real implementation.
//!
//! Every byte the WAL reads or writes goes through [`Disk`] and [`DiskFile`], so that the
//! simulator (and this crate's tests) can substitute [`crate::SimDisk`], which loses unsynced
//! writes, tears pages and fails on command. The interface is deliberately small and mirrors the
//! POSIX calls whose durability semantics the WAL relies on.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How a file is opened by [`Disk::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Reads only; used for sealed segments, snapshot files and the inspection tools, which must
    /// work on a directory the process cannot write.
    Read,
    /// Reads and writes; used for the active segment during recovery repairs.
    ReadWrite,
}

/// A directory of files, with the durability semantics of a POSIX file system:
///
/// - file contents become durable only through [`DiskFile::sync`];
/// - creating, renaming and removing a name becomes durable only through [`Disk::sync_dir`] on
///   the directory that holds it.
///
/// Implementations must be `Send` so that a `Wal` can live on a dedicated writer thread.
pub trait Disk: Send + 'static {
    /// An open file.
    type File: DiskFile;
    /// An exclusive lock on a lock file, released when dropped.
    type Lock: Send + 'static;

    /// Creates `dir` and its missing parents (not durable until the parent is synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Creates an empty file for reading and writing, replacing any file of that name.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Atomically gives the file `from` the name `to`, replacing any file named `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the name `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals of names in `dir` durable (fsync of the
    /// directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive, non-blocking lock on the file `path` (creating it if needed). Fails
    /// with [`io::ErrorKind::WouldBlock`] if anyone else, in this process or another, holds it.
    fn lock(&self, path: &Path) -> io::Result<Self::Lock>;
}

/// An open file. Offsets are absolute; there is no cursor, so reads through `&self` can be served
/// while the same handle is used for appends.
pub trait DiskFile: Send + 'static {
    /// The current length in bytes (including unsynced writes and preallocated space).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file has no bytes at all.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; fails with [`io::ErrorKind::UnexpectedEof`] if the file ends
    /// first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed. Not durable until
    /// [`DiskFile::sync`].
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the file's contents and length durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Sets the file's length, cutting or zero-extending it. Not durable until synced.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Extends the file with zeros to at least `len` bytes, reserving the space on the medium
    /// (`fallocate`), so that later writes inside it neither fail for space nor need a metadata
    /// update at sync time. Never shrinks the file. Not durable until synced.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
}

/// The real file system, through `std::fs` (plus `fallocate` and `flock` from `rustix`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

/// A file of [`StdDisk`].
#[derive(Debug)]
pub struct StdFile {
    file: File,
}

/// The `flock` held on a lock file of [`StdDisk`]; closing the descriptor releases it.
#[derive(Debug)]
pub struct StdLock {
    _file: File,
}

impl Disk for StdDisk {
    type File = StdFile;
    type Lock = StdLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // Names that are not UTF-8 cannot be ours; skip rather than fail.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<StdFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == OpenMode::ReadWrite)
            .open(path)?;
        Ok(StdFile { file })
    }

    fn create(&self, path: &Path) -> io::Result<StdFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(StdFile { file })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On Linux a directory opened read-only can be fsynced; that persists its entries.
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<StdLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // flock locks belong to the open file description, so a second open of the same
        // directory in this very process conflicts too, which is what we want.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |errno| {
                let error = io::Error::from(errno);
                if error.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(io::ErrorKind::WouldBlock, "lock is held elsewhere")
                } else {
                    error
                }
            },
        )?;
        Ok(StdLock { _file: file })
    }
}

impl DiskFile for StdFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        ) {
            Ok(()) => Ok(()),
            // Some file systems cannot preallocate; a sparse extension still gives the zeros the
            // format relies on, only without the space reservation.
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {
                self.file.set_len(len)
            }
            Err(errno) => Err(io::Error::from(errno)),
        }
    }
}
