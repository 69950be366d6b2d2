//! The errors of the WAL. Every failure of the medium and every detected corruption becomes a
//! [`WalError`]; nothing in this crate panics on bad data read from disk.

use raft::StorageError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a WAL operation failed.
///
/// The embedder is expected to stop the member on any error from a write method (see the
/// durability contract in the crate docs); the variants exist so that it can say precisely why.
#[derive(Debug)]
pub enum WalError {
    /// The medium failed (including "disk full"). `path` is the file or directory involved and
    /// `op` the operation, so that an operator can act on the message alone.
    Io {
        /// The operation that failed, for example `"sync"` or `"write"`.
        op: &'static str,
        /// The file or directory the operation was applied to.
        path: PathBuf,
        /// The error reported by the operating system (or by a simulated disk).
        source: io::Error,
    },
    /// Data on disk failed a checksum or is inconsistent, at a place where it cannot be a torn
    /// write of the last batch. The member must not serve from this directory until an operator
    /// repairs it (for example by replacing it with a copy from a healthy member).
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset in `file` of the first damaged record (or of the check that failed).
        offset: u64,
        /// What exactly is wrong, in words.
        reason: String,
    },
    /// Another process (or another `Wal` in this process) holds the directory's lock file. Two
    /// writers on one log would interleave records and destroy it.
    Locked {
        /// The WAL directory.
        dir: PathBuf,
    },
    /// `Wal::open` found no segment: the directory does not hold a WAL (use `Wal::create`).
    NotFound {
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// `Wal::create` found segment or snapshot files: refusing to overwrite an existing log.
    AlreadyExists {
        /// The directory that already holds a WAL.
        dir: PathBuf,
    },
    /// An earlier write failed, so what is on disk is unknown (after a failed fsync the kernel
    /// may have dropped the dirty pages). Every later write is refused; reopen the WAL to learn
    /// the durable state.
    Poisoned {
        /// The error that poisoned the WAL, rendered as text.
        cause: String,
    },
    /// One write would produce a record larger than `WalOptions::max_batch_bytes`. Nothing was
    /// written; the embedder should write smaller batches.
    BatchTooLarge {
        /// The size the record would have had.
        bytes: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The options are out of range (see `WalOptions::validate`).
    InvalidOptions(String),
}

impl WalError {
    /// An I/O error on `path` during `op`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Corruption in `file` at `offset`.
    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> WalError {
        WalError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Whether this error reports damaged data (as opposed to a failing medium or a misuse).
    pub fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corrupt { .. })
    }

    /// Whether the medium reported that it is full (`ENOSPC`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WalError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { op, path, source } => {
                write!(f, "wal: {op} {} failed: {source}", path.display())
            }
            WalError::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "wal: corruption in {} at byte {offset}: {reason}",
                file.display()
            ),
            WalError::Locked { dir } => write!(
                f,
                "wal: directory {} is locked by another process or another open WAL",
                dir.display()
            ),
            WalError::NotFound { dir } => {
                write!(f, "wal: no WAL segments in {}", dir.display())
            }
            WalError::AlreadyExists { dir } => write!(
                f,
                "wal: {} already holds WAL or snapshot files; open it instead",
                dir.display()
            ),
            WalError::Poisoned { cause } => write!(
                f,
                "wal: refusing to write after an earlier write failure ({cause}); reopen the WAL"
            ),
            WalError::BatchTooLarge { bytes, limit } => write!(
                f,
                "wal: batch of {bytes} bytes exceeds max_batch_bytes {limit}"
            ),
            WalError::InvalidOptions(reason) => write!(f, "wal: invalid options: {reason}"),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<WalError> for StorageError {
    /// Every WAL failure is fatal for the core: it only knows `Compacted`, `Unavailable` and
    /// `Io`, and the first two are answered before the WAL touches the disk.
    fn from(error: WalError) -> StorageError {
        StorageError::Io(error.to_string())
    }
}
