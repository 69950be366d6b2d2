//! Snapshots of the state machine at the applied index, which let the log be compacted.

use super::Node;
use crate::{SnapshotJob, StateMachine};
#[cfg(doc)]
use raft::MemStorage;

impl<M: StateMachine> Node<M> {
    /// Compacts the log up to the applied index: takes a state machine snapshot there and drops
    /// the entries it covers. Returns the snapshot, which the embedder must make durable (with
    /// the log's own compaction) before relying on it after a restart. Followers that need the
    /// dropped entries receive the snapshot instead.
    pub fn compact(&mut self) -> Option<raft::Snapshot> {
        if !self.can_snapshot() {
            return None;
        }
        let applied = self.applied;
        let data = self.state_machine.snapshot();
        let storage = self.raw.storage_mut();
        storage.compact(applied, data);
        raft::Storage::snapshot(storage).ok()
    }

    /// Starts a snapshot at the applied index without compacting anything yet: freezes the
    /// state machine (see [`StateMachine::freeze`]) and records the index, its term and the
    /// configuration in force there. `None` under the same conditions as [`Node::compact`].
    /// The embedder writes the state durably (off the driver) and then calls
    /// [`Node::finish_snapshot`]; the node goes on working meanwhile.
    pub fn begin_snapshot(&mut self) -> Option<SnapshotJob> {
        if !self.can_snapshot() {
            return None;
        }
        let applied = self.applied;
        let storage = self.raw.storage();
        let term = raft::Storage::term(storage, applied).ok()?;
        let metadata = raft::SnapshotMetadata {
            index: applied,
            term,
            // The storage's configuration is the one in force at the applied index.
            conf_state: storage.conf_state().clone(),
        };
        Some(SnapshotJob {
            metadata,
            state: self.state_machine.freeze(),
        })
    }

    /// Whether the state machine can be snapshotted at the applied index now: not when nothing
    /// new was applied since the last snapshot, nor when it runs ahead of the storage because a
    /// leader's snapshot is still being written (try again later).
    fn can_snapshot(&self) -> bool {
        let storage = self.raw.storage();
        self.applied >= raft::Storage::first_index(storage)
            && self.applied <= raft::Storage::last_index(storage)
            && !self.raw.has_pending_snapshot()
    }

    /// A snapshot from [`Node::begin_snapshot`] is durable: drops the log entries it covers.
    /// The storage must have a snapshot loader (see [`MemStorage::set_snapshot_loader`]) to
    /// send it to followers that need it. A snapshot overtaken meanwhile (a leader's snapshot
    /// was installed past it) changes nothing.
    pub fn finish_snapshot(&mut self, metadata: raft::SnapshotMetadata) {
        self.raw.storage_mut().compact_to_durable(metadata);
    }
}
