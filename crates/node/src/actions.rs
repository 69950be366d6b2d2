//! What the node asks of its embedder: the [`Action`]s `poll` emits and the [`PersistTask`]s
//! the embedder acknowledges once they are durable.

#[cfg(doc)]
use crate::Node;
use crate::RequestError;
use raft::{Entry, HardState, LogIndex, Message, SoftState, Term};

/// The embedder's handle on a client request, echoed in its reply.
pub type RequestId = u64;

/// Writes that must be durable before [`Node::persisted`] is called with this task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistTask {
    /// The Ready it came from; tasks must complete in increasing order.
    pub number: u64,
    /// A leader's snapshot replacing the log (written before `entries`).
    pub snapshot: Option<raft::Snapshot>,
    /// The hard state to write, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append (overwriting any conflicting tail).
    pub entries: Vec<Entry>,
}

/// Something the embedder must do.
#[derive(Debug)]
pub enum Action<R> {
    /// Make these writes durable (one sync), then call [`Node::persisted`] with the task.
    Persist(PersistTask),
    /// Record this hard state, which differs from the last one handed out only by a higher
    /// commit index, in order with the writes before and after it, without a sync and without
    /// reporting back: with the next [`Action::Persist`] (as its hard state when it has none of
    /// its own), or alone a little later (`wal::Wal::record_commit`). Raft does not need the
    /// commit index durable, and the messages of its Ready wait for nothing. Without this, a
    /// follower made a round trip through its writer for the commit index it hears right after
    /// every append.
    RecordCommit(HardState),
    /// Deliver a message to a peer (best effort: Raft tolerates loss).
    Send(Message),
    /// Answer a client request.
    Reply {
        /// The request.
        request: RequestId,
        /// The state machine's answer, or why there is none.
        result: Result<R, RequestError>,
    },
    /// Role or leader changed (for logs, metrics and the simulator's checks).
    RoleChanged {
        /// The term of the change.
        term: Term,
        /// The new role and leader.
        soft_state: SoftState,
    },
    /// Answers a membership change proposal: the configuration it produced once applied.
    ConfChangeReply {
        /// The request.
        request: RequestId,
        /// The new configuration, or why there is none.
        result: Result<raft::ConfState, RequestError>,
    },
    /// A membership change was applied: the configuration in force from `index` on.
    ConfChanged {
        /// The index of the change.
        index: LogIndex,
        /// The configuration now in force.
        conf_state: raft::ConfState,
    },
    /// The state machine was replaced by a leader's snapshot ending at `index`.
    SnapshotInstalled {
        /// The snapshot's last index.
        index: LogIndex,
    },
    /// An entry was applied to the state machine (observability and checkers).
    Applied {
        /// Its index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
}
