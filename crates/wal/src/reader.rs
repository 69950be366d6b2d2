//! Reading entries back from the segment files while another thread owns the [`crate::Wal`].
//!
//! A member keeps the log it replicates and applies in memory, and for a busy member that is up
//! to a snapshot interval of entries (100 000 by default, tens of megabytes). Only the newest
//! entries are read often: replicating to followers that keep up, and applying. The older ones
//! are wanted only by a follower that fell behind, or by the member itself while it replays its
//! log after a restart. A [`WalReader`] lets the embedder drop those from memory and read them
//! from disk when they are wanted, the way tikv reads cold entries from its engine rather than
//! keeping them all in a cache.

use crate::disk::{Disk, OpenMode};
use crate::log::Span;
use crate::recovery::segment_file_name;
use crate::wal::read_batch_entries;
use raft::{Entry, LogIndex, StorageError};
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Reads entries of a [`crate::Wal`] from any thread, by the same positions the WAL uses.
///
/// The WAL keeps the shared position table current after every write, release and snapshot,
/// and the reader holds its lock only to copy out the positions it needs, never across I/O, so
/// a read never delays a log write. Every record read is checksummed again.
///
/// Meant for entries the embedder knows to be durable and committed (they are never
/// overwritten). An entry whose segment a snapshot released meanwhile reads as
/// [`StorageError::Compacted`], like an entry before the first one held.
#[derive(Clone)]
pub struct WalReader<D: Disk> {
    disk: D,
    dir: PathBuf,
    view: Arc<Mutex<VecDeque<Span>>>,
}

impl<D: Disk> fmt::Debug for WalReader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalReader").field("dir", &self.dir).finish()
    }
}

impl<D: Disk> WalReader<D> {
    pub(crate) fn new(disk: D, dir: PathBuf, view: Arc<Mutex<VecDeque<Span>>>) -> WalReader<D> {
        WalReader { disk, dir, view }
    }

    /// The spans that hold `low..high`, oldest first, or why they cannot be read.
    fn spans_for(&self, low: u64, high: u64) -> Result<Vec<Span>, StorageError> {
        let view = self
            .view
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match view.front() {
            None => return Err(StorageError::Compacted),
            Some(front) if low < front.first => return Err(StorageError::Compacted),
            Some(_) => {}
        }
        if view.back().is_none_or(|back| high - 1 > back.last) {
            return Err(StorageError::Unavailable);
        }
        let at = view.partition_point(|span| span.last < low);
        Ok(view
            .range(at..)
            .take_while(|span| span.first < high)
            .copied()
            .collect())
    }

    /// Entries `low..high`, stopping once `max_bytes` would be exceeded (at least one entry is
    /// returned when the range is not empty), as [`raft::Storage::entries`] answers.
    pub fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let (low, high) = (low.get(), high.get());
        if low >= high {
            return Ok(Vec::new());
        }
        let spans = self.spans_for(low, high)?;
        let mut out: Vec<Entry> = Vec::new();
        let mut total = 0u64;
        let mut next = low;
        // Consecutive spans are usually in the same segment: open it once.
        let mut open: Option<(u64, PathBuf, D::File)> = None;
        for span in spans {
            if next >= high {
                break;
            }
            if span.first > next {
                return Err(StorageError::Io(format!(
                    "the WAL's position table has no entry {next}"
                )));
            }
            let location = span.location.ok_or_else(|| {
                StorageError::Io(format!("entry {next} has no known position in the WAL"))
            })?;
            if open
                .as_ref()
                .is_none_or(|(seq, _, _)| *seq != location.segment)
            {
                let path = self.dir.join(segment_file_name(location.segment));
                let file = match self.disk.open(&path, OpenMode::Read) {
                    Ok(file) => file,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        // Released by a snapshot after the positions were copied.
                        return Err(StorageError::Compacted);
                    }
                    Err(error) => {
                        return Err(StorageError::Io(format!(
                            "opening {}: {error}",
                            path.display()
                        )));
                    }
                };
                open = Some((location.segment, path, file));
            }
            let (_, path, file) = open.as_ref().expect("opened above");
            let until = span.last.min(high - 1);
            let entries = read_batch_entries(file, path, location, span.record_first, next, until)
                .map_err(|error| StorageError::Io(error.to_string()))?;
            for entry in entries {
                total += entry.size_bytes();
                if !out.is_empty() && total > max_bytes {
                    return Ok(out);
                }
                out.push(entry);
            }
            next = until + 1;
        }
        if next < high && out.is_empty() {
            return Err(StorageError::Unavailable);
        }
        Ok(out)
    }
}
