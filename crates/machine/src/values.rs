//! The member's value file: where its keyspace keeps retained values instead of the heap.
//!
//! The MVCC store keeps every retained revision; with values in memory a member's RSS grows by
//! the value size on every put (etcd keeps them on disk, in bbolt). [`FileValueLog`] is the
//! store's [`ValueLog`]: an append-only file in the data directory. It is only a cache: the
//! state machine is rebuilt from the Raft snapshot and the WAL at every start, and restoring a
//! snapshot appends its values (a snapshot written by a member carries a copy of this file as
//! its value section, appended whole), so the file is recreated empty at start (and at every
//! restore), never fsynced, and never read after a restart.
//!
//! The file lives on a [`wal::Disk`]: the real file system in a serving member, the simulated
//! disk in the simulator, so every seed runs the same appends, reads and rewrites.
//!
//! Compaction leaves garbage in the file (values no revision references any more);
//! `MvccStore::value_log_live_bytes` against [`ValueLog::size_bytes`] shows how much. The state
//! machine rewrites the file with only the live values after a compaction that leaves enough
//! garbage (`EtcdMachine::maybe_rewrite_value_file`), and a restore (a snapshot from the
//! leader) or a restart starts a fresh file. `Maintenance.Defragment` (`etcdctl defrag`)
//! rewrites it whenever it holds any garbage.

use bytes::Bytes;
use kv::mvcc::{ValueLog, ValueRef};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use wal::{Disk, DiskFile, OpenMode, StdDisk};

/// Appends are collected up to this many bytes and written with one `write`.
const BUFFER: usize = 64 * 1024;

/// Where a state machine's value file lives, so that it can be created afresh at a restore
/// or a rewrite without knowing which disk it is on.
pub trait ValueFileSource: Send + fmt::Debug {
    /// A new, empty value file replacing the previous one (see [`FileValueLog::create_on`]).
    fn create(&self) -> io::Result<Arc<dyn ValueLog>>;
    /// Where the file is, for messages.
    fn path(&self) -> &Path;
}

/// The value file at `path` on `disk`.
#[derive(Debug)]
pub struct ValueFileAt<D> {
    /// The disk the file is on.
    pub disk: D,
    /// Its path on that disk.
    pub path: PathBuf,
}

impl<D> ValueFileSource for ValueFileAt<D>
where
    D: Disk + Clone + fmt::Debug,
    D::File: Sync,
{
    fn create(&self) -> io::Result<Arc<dyn ValueLog>> {
        let log: Arc<dyn ValueLog> = FileValueLog::create_on(self.disk.clone(), &self.path)?;
        Ok(log)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// An append-only value file (see the module docs). Thread-safe: the snapshot thread reads
/// through a frozen copy of the store while the driver appends. The lock is never held across
/// more than one syscall, and reads of written values take it only to check where they are.
pub struct FileValueLog<D: Disk = StdDisk> {
    path: PathBuf,
    /// A handle for reads, used without the lock: what is written below `Tail::written` never
    /// changes.
    reader: D::File,
    state: Mutex<Tail<D::File>>,
}

/// What is appended but not yet written, where it starts, and the handle that writes it.
struct Tail<F> {
    /// The bytes written to the file; the buffer's first byte is at this offset.
    written: u64,
    buffer: Vec<u8>,
    writer: F,
}

impl<F: DiskFile> Tail<F> {
    /// Writes `bytes` at the end of what is written.
    fn write(&mut self, bytes: &[u8], path: &Path) -> io::Result<()> {
        self.writer
            .write_at(self.written, bytes)
            .map_err(|error| annotate(path, "cannot write", error))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the buffer out.
    fn flush(&mut self, path: &Path) -> io::Result<()> {
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write(&buffer, path);
        self.buffer = buffer;
        if result.is_ok() {
            self.buffer.clear();
        }
        result
    }
}

impl FileValueLog<StdDisk> {
    /// Creates an empty value file at `path` on the real file system, replacing whatever was
    /// there (see [`FileValueLog::create_on`]).
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Arc<FileValueLog<StdDisk>>> {
        FileValueLog::create_on(StdDisk, path)
    }
}

impl<D: Disk> FileValueLog<D> {
    /// Creates an empty value file at `path` on `disk`, replacing whatever was there.
    ///
    /// The old file is unlinked, not truncated: a frozen copy of an earlier state (a snapshot
    /// being written on another thread) may still read its values through the old file's
    /// open handle, which stays valid until that copy is dropped.
    pub fn create_on(disk: D, path: impl Into<PathBuf>) -> io::Result<Arc<FileValueLog<D>>> {
        let path = path.into();
        match disk.remove(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(annotate(&path, "cannot remove the old", error)),
        }
        let writer = disk
            .create(&path)
            .map_err(|error| annotate(&path, "cannot create", error))?;
        let reader = disk
            .open(&path, OpenMode::Read)
            .map_err(|error| annotate(&path, "cannot open", error))?;
        Ok(Arc::new(FileValueLog {
            path,
            reader,
            state: Mutex::new(Tail {
                written: 0,
                buffer: Vec::with_capacity(BUFFER),
                writer,
            }),
        }))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tail(&self) -> MutexGuard<'_, Tail<D::File>> {
        // A panic while holding the lock leaves a consistent tail (written is only advanced
        // after a successful write), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn annotate(path: &Path, what: &str, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{what} value file {}: {error}", path.display()),
    )
}

impl<D: Disk> fmt::Debug for FileValueLog<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileValueLog({})", self.path.display())
    }
}

impl<D: Disk> ValueLog for FileValueLog<D>
where
    D::File: Sync,
{
    fn append(&self, value: &[u8]) -> io::Result<ValueRef> {
        let len = u32::try_from(value.len()).map_err(io::Error::other)?;
        let mut tail = self.tail();
        let offset = tail.written + tail.buffer.len() as u64;
        tail.buffer.extend_from_slice(value);
        if tail.buffer.len() >= BUFFER {
            tail.flush(&self.path)?;
            // A huge value grew the buffer; do not keep that much memory around.
            tail.buffer.shrink_to(BUFFER * 2);
        }
        Ok(ValueRef { offset, len })
    }

    fn read(&self, at: ValueRef) -> io::Result<Bytes> {
        let end = at.offset.checked_add(u64::from(at.len));
        {
            let tail = self.tail();
            if at.offset >= tail.written {
                // Still in the buffer (a value is written whole, never split).
                let start = (at.offset - tail.written) as usize;
                return tail
                    .buffer
                    .get(start..start + at.len as usize)
                    .map(Bytes::copy_from_slice)
                    .ok_or_else(|| beyond(&self.path, at));
            }
            if end.is_none_or(|end| end > tail.written) {
                return Err(beyond(&self.path, at));
            }
        }
        let mut value = vec![0; at.len as usize];
        self.reader
            .read_at(at.offset, &mut value)
            .map_err(|error| annotate(&self.path, "cannot read", error))?;
        Ok(Bytes::from(value))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        let from_file = {
            let tail = self.tail();
            let size = tail.written + tail.buffer.len() as u64;
            let Some(end) = end.filter(|end| *end <= size) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes at {offset} are beyond the end of value file {}",
                        buf.len(),
                        self.path.display()
                    ),
                ));
            };
            // The part still in the buffer is copied under the lock; the part already in the
            // file stays there whatever is appended meanwhile, so it is read without it.
            let from_file = tail.written.saturating_sub(offset).min(buf.len() as u64) as usize;
            if end > tail.written {
                let start = offset.max(tail.written) - tail.written;
                let buffered = &tail.buffer[start as usize..(end - tail.written) as usize];
                buf[from_file..].copy_from_slice(buffered);
            }
            from_file
        };
        if from_file > 0 {
            self.reader
                .read_at(offset, &mut buf[..from_file])
                .map_err(|error| annotate(&self.path, "cannot read", error))?;
        }
        Ok(())
    }

    fn append_stretch(&self, bytes: &[u8]) -> io::Result<u64> {
        let mut tail = self.tail();
        let offset = tail.written + tail.buffer.len() as u64;
        if tail.buffer.len() + bytes.len() < BUFFER {
            tail.buffer.extend_from_slice(bytes);
            return Ok(offset);
        }
        // Large: what the buffer holds, then the caller's bytes straight, without a copy.
        tail.flush(&self.path)?;
        tail.write(bytes, &self.path)?;
        Ok(offset)
    }

    fn size_bytes(&self) -> u64 {
        let tail = self.tail();
        tail.written + tail.buffer.len() as u64
    }
}

fn beyond(path: &Path, at: ValueRef) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{at:?} is beyond the end of value file {}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_buffered_and_written_values_from_any_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("values");
        std::fs::write(&path, b"stale").expect("write");
        let log = FileValueLog::create(&path).expect("create");
        assert_eq!(log.size_bytes(), 0);
        let values: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; 1 + (i as usize * 37) % 300])
            .chain([vec![7u8; 3 * BUFFER]])
            .collect();
        let refs: Vec<ValueRef> = values
            .iter()
            .map(|value| log.append(value).expect("append"))
            .collect();
        let total: usize = values.iter().map(Vec::len).sum();
        assert_eq!(log.size_bytes(), total as u64);
        assert!(std::fs::metadata(&path).expect("metadata").len() > 0);
        let reader = {
            let log = log.clone();
            let refs = refs.clone();
            std::thread::spawn(move || {
                refs.iter()
                    .map(|at| log.read(*at).expect("read").to_vec())
                    .collect::<Vec<_>>()
            })
        };
        // Appends go on while the other thread reads.
        let more = log.append(b"tail").expect("append");
        assert_eq!(reader.join().expect("reader"), values);
        assert_eq!(log.read(more).expect("read"), "tail");
        assert!(
            log.read(ValueRef {
                offset: total as u64 + 2,
                len: 10
            })
            .is_err()
        );
    }

    #[test]
    fn stretches_read_and_append_across_the_buffer_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = FileValueLog::create(dir.path().join("values")).expect("create");
        let mut all = Vec::new();
        for i in 0..700u32 {
            let value = vec![(i % 253) as u8; 1 + (i as usize * 13) % 200];
            log.append(&value).expect("append");
            all.extend_from_slice(&value);
        }
        // A small stretch joins the buffer; a large one is written through, after it.
        for stretch in [vec![5u8; 100], vec![6u8; 2 * BUFFER + 3], vec![7u8; 10]] {
            let at = log.append_stretch(&stretch).expect("append");
            assert_eq!(at, all.len() as u64);
            all.extend_from_slice(&stretch);
        }
        let total = all.len() as u64;
        assert_eq!(log.size_bytes(), total);
        let written = log.tail().written;
        assert!(
            0 < written && written < total,
            "part written, part buffered"
        );
        for (offset, len) in [
            (0, total),
            (0, 1),
            (written - 1, 2),
            (written, total - written),
            (written - 1000, 1001),
            (total - 1, 1),
            (total, 0),
            (17, 70_000),
        ] {
            let mut buf = vec![0; len as usize];
            log.read_at(offset, &mut buf).expect("read");
            assert_eq!(
                buf,
                all[offset as usize..(offset + len) as usize],
                "{offset}+{len}"
            );
        }
        for (offset, len) in [(total, 1), (total - 1, 2), (u64::MAX, 1)] {
            let mut buf = vec![0; len];
            assert!(log.read_at(offset, &mut buf).is_err(), "{offset}+{len}");
        }
    }

    /// The simulator keeps the file on its simulated disk: the same appends, reads and
    /// recreation behave there as on the real file system.
    #[test]
    fn the_simulated_disk_holds_a_value_file_alike() {
        let disk = wal::SimDisk::new();
        disk.create_dir_all(Path::new("/m")).expect("dir");
        let path = Path::new("/m/values");
        let old = FileValueLog::create_on(disk.clone(), path).expect("create");
        let values: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![(i % 13) as u8; 1 + (i as usize * 997) % 2000])
            .collect();
        let refs: Vec<ValueRef> = values
            .iter()
            .map(|value| old.append(value).expect("append"))
            .collect();
        for (at, value) in refs.iter().zip(&values) {
            assert_eq!(old.read(*at).expect("read"), *value);
        }
        let fresh = FileValueLog::create_on(disk, path).expect("recreate");
        assert_eq!(fresh.size_bytes(), 0);
        assert_eq!(old.read(refs[0]).expect("old handle"), values[0]);
    }

    #[test]
    fn recreating_leaves_earlier_handles_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("values");
        let old = FileValueLog::create(&path).expect("create");
        let value = vec![1u8; BUFFER + 1];
        let at = old.append(&value).expect("append");
        let new = FileValueLog::create(&path).expect("recreate");
        assert_eq!(new.size_bytes(), 0);
        assert_eq!(old.read(at).expect("read"), value);
    }
}
