//! What the node replicates: the [`StateMachine`] a member applies committed entries to, and
//! the frozen copy of its state that a snapshot is written from off the driver.

use bytes::Bytes;
use raft::{LogIndex, Term};
use std::fmt;

#[cfg(doc)]
use crate::Node;

/// What a member replicates. Implementations must be deterministic: the same entries in the same
/// order give the same responses on every member.
pub trait StateMachine {
    /// What the client who proposed a command is told.
    type Response: Clone + fmt::Debug;
    /// A read served without going through the log (after a ReadIndex confirmation).
    type Query: fmt::Debug;

    /// Applies the command in the entry at `index` (called exactly once per index, in order).
    fn apply(&mut self, index: LogIndex, term: Term, data: &Bytes) -> Self::Response;

    /// Answers a read from the current state. Never changes the state.
    fn query(&self, query: &Self::Query) -> Self::Response;

    /// The whole state as bytes, for a Raft snapshot (log compaction, lagging followers).
    fn snapshot(&self) -> Bytes;

    /// Replaces the whole state by a snapshot. A snapshot that cannot be decoded is an error;
    /// the member must stop rather than serve a half-restored state.
    fn restore(&mut self, data: &Bytes) -> Result<(), String>;

    /// The state as it is now, to be written as a snapshot by another thread while this one
    /// goes on applying entries (see [`Node::begin_snapshot`]). Serializing a large state takes
    /// long enough to stall a member that did it in line; a state machine that can copy its
    /// state more cheaply than it serializes it (shared buffers, persistent maps) overrides
    /// this. The default serializes now, which only moves the file writing off the driver.
    fn freeze(&self) -> Box<dyn FrozenState> {
        Box::new(self.snapshot())
    }

    /// Reclaims the space of this member's own storage (etcd's `Defragment`, which is also a
    /// per-member operation that bypasses the log). It must not change anything replicated:
    /// answers, snapshots and hashes stay exactly what they were. The default has nothing to
    /// reclaim.
    fn defragment(&mut self) {}
}

/// A state machine's state frozen at one applied index, which writes the exact bytes
/// [`StateMachine::snapshot`] would have given at that index.
pub trait FrozenState: Send + 'static {
    /// Streams the snapshot bytes into `out`, so that a large state never needs a second copy
    /// of itself in memory.
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
}

impl FrozenState for Bytes {
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(self)
    }
}

/// A snapshot begun by [`Node::begin_snapshot`]: where it stands in the log, and the state to
/// write. Once the embedder has made it durable it calls [`Node::finish_snapshot`].
pub struct SnapshotJob {
    /// The applied index, its term and the configuration in force there.
    pub metadata: raft::SnapshotMetadata,
    /// The state machine's state at `metadata.index`.
    pub state: Box<dyn FrozenState>,
}

impl fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotJob")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}
