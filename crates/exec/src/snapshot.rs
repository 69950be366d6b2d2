//! When a member takes a local snapshot (to compact its log), and what it does once the
//! snapshot file is durable. The runtime writes the file on a snapshot thread, the simulator
//! on its simulated disk; both decide and finish here.

use crate::writer::WriterJob;
use node::{Node, StateMachine};

/// Decides when a snapshot is due: once `every_entries` entries were applied past the log's
/// first index, and the log appended since the last snapshot is at least `log_percent` of
/// that snapshot's size. A snapshot rewrites the whole state, so a count-only trigger would
/// rewrite a large state ever more often per byte written; the size rule keeps the rewriting
/// in proportion to the writes.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    every_entries: u64,
    log_percent: u64,
    /// The bytes of entries handed to the writer since the last snapshot began.
    log_bytes_since_snapshot: u64,
    /// The size of the last snapshot this member wrote (0 before its first).
    last_snapshot_bytes: u64,
}

impl SnapshotPolicy {
    /// A policy with no snapshot written yet. `every_entries` must be positive.
    pub fn new(every_entries: u64, log_percent: u64) -> SnapshotPolicy {
        assert!(every_entries > 0, "snapshots every 0 entries");
        SnapshotPolicy {
            every_entries,
            log_percent,
            log_bytes_since_snapshot: 0,
            last_snapshot_bytes: 0,
        }
    }

    /// Entries of `bytes` bytes went to the writer: they count toward the next snapshot.
    pub fn appended(&mut self, bytes: u64) {
        self.log_bytes_since_snapshot += bytes;
    }

    /// Whether `node` should take a snapshot now.
    pub fn due<M: StateMachine>(&self, node: &Node<M>) -> bool {
        let first = raft::Storage::first_index(node.raw().storage());
        if node.applied().get().saturating_sub(first.get()) < self.every_entries {
            return false;
        }
        self.log_bytes_since_snapshot.saturating_mul(100)
            >= self.last_snapshot_bytes.saturating_mul(self.log_percent)
    }

    /// A snapshot began: entries appended from here on are after it.
    pub fn started(&mut self) {
        self.log_bytes_since_snapshot = 0;
    }

    /// A snapshot of `bytes` bytes is durable: the node drops the entries it covers. The
    /// returned job must be queued for the writer, which records the snapshot in the WAL and
    /// releases the segments it covers, in order behind the writes queued before it.
    #[must_use = "the writer must record the snapshot"]
    pub fn finished<M: StateMachine>(
        &mut self,
        metadata: raft::SnapshotMetadata,
        bytes: u64,
        node: &mut Node<M>,
    ) -> WriterJob {
        self.last_snapshot_bytes = bytes;
        node.finish_snapshot(metadata.clone());
        WriterJob::Compact(metadata)
    }
}
