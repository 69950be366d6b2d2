//! What travels between the member's tasks: the [`Command`]s a [`crate::MemberHandle`] sends
//! the driver, the [`Job`]s the driver queues for the writer thread, the [`Completion`]s the
//! writer reports back, and the [`Status`] the driver publishes.

use bytes::Bytes;
use node::{PersistTask, RequestError, StateMachine};
use raft::{ConfChange, ConfState, LogIndex, NodeId, Role, Term, TransferError};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A snapshot of a member's Raft state, published by the driver after each step so that callers
/// can read or watch it without a round trip through the driver's queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Its role.
    pub role: Role,
    /// The leader it knows of, or `NodeId::NONE`.
    pub leader: NodeId,
    /// Its current term.
    pub term: Term,
    /// The highest index it knows committed.
    pub commit: LogIndex,
    /// The highest index applied to its state machine (≤ `commit`).
    pub applied: LogIndex,
    /// The first index of its in-memory log (past 1 once it compacted or installed a
    /// snapshot).
    pub first_index: LogIndex,
    /// How many entries of its log it holds in memory; the others are read back from the WAL
    /// when wanted (see [`crate::MemberConfig::resident_log_bytes`]).
    pub resident_entries: u64,
    /// An index at or after the configuration change that admitted this incarnation of the
    /// member, once known (see `Driver::note_admission`): the commit index of the first
    /// append a leader sent it, or its last index when it became leader itself. A member
    /// whose id was removed and added again replays the removal of its predecessor from the
    /// log; only a configuration in force at or past this index tells whether it is a member.
    pub admitted_by: Option<LogIndex>,
}

pub(crate) type Reply<R> = oneshot::Sender<Result<R, RequestError>>;

/// What a client asks of the driver.
pub(crate) enum Command<M: StateMachine> {
    /// Propose a command through the log.
    Submit {
        data: Bytes,
        reply: Reply<M::Response>,
        /// A follower hands the command to the leader rather than refusing it.
        forward: bool,
    },
    /// A linearizable read (ReadIndex, or a lease when configured).
    Read {
        query: M::Query,
        reply: Reply<M::Response>,
    },
    /// A read of this member's current state, without any confirmation (serializable).
    LocalQuery {
        query: M::Query,
        reply: oneshot::Sender<M::Response>,
    },
    /// Reclaim the space of this member's local storage (not through the log).
    Defragment {
        reply: oneshot::Sender<()>,
    },
    /// A membership change through the log.
    ConfChange {
        change: ConfChange,
        reply: Reply<ConfState>,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        target: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    /// Replace the transport's peer addresses (after a membership change).
    SetPeers(BTreeMap<NodeId, SocketAddr>),
    /// The leader's view of how far each member's log matches its own (empty on followers).
    Progress {
        reply: oneshot::Sender<BTreeMap<NodeId, LogIndex>>,
    },
    Shutdown,
}

impl<M: StateMachine> fmt::Debug for Command<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Submit { data, .. } => write!(f, "Submit({} bytes)", data.len()),
            Command::Read { query, .. } => write!(f, "Read({query:?})"),
            Command::LocalQuery { query, .. } => write!(f, "LocalQuery({query:?})"),
            Command::Defragment { .. } => f.write_str("Defragment"),
            Command::ConfChange { change, .. } => write!(f, "ConfChange({change:?})"),
            Command::TransferLeader { target, .. } => write!(f, "TransferLeader({target})"),
            Command::SetPeers(peers) => write!(f, "SetPeers({peers:?})"),
            Command::Progress { .. } => f.write_str("Progress"),
            Command::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// What a batch of persist tasks came to: the tasks, durable in order, or why not.
pub(crate) type Completion = Result<Vec<PersistTask>, String>;

/// Work for the writer thread, executed in order (the executor's writer jobs).
pub(crate) use exec::WriterJob as Job;
