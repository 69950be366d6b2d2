//! The vocabulary of the protocol: identifiers, terms, indices, log entries and durable state.
//!
//! Terms, indices and node ids are newtypes so that the compiler catches the classic mix-ups
//! (passing a term where an index is expected). They are all plain `u64` underneath and `Copy`.

use bytes::Bytes;
use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value (no term yet, the empty log's "index 0", or "no node").
            pub const ZERO: $name = $name(0);

            /// The raw number, for encoding and arithmetic at the edges.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                $name(value)
            }
        }
    };
}

newtype_u64!(
    /// A member's identity. `NodeId(0)` is never a valid member; it means "none" (for example, no
    /// known leader, no vote cast).
    NodeId,
    "n"
);
newtype_u64!(
    /// A Raft term: a logical clock that orders leaderships. Terms only grow on every node.
    Term,
    "t"
);
newtype_u64!(
    /// A position in the replicated log. The first real entry has index 1; index 0 stands for the
    /// empty prefix before it (with term 0), which makes the AppendEntries consistency check
    /// uniform.
    LogIndex,
    "i"
);

impl NodeId {
    /// The "nobody" value used for an unknown leader or an absent vote.
    pub const NONE: NodeId = NodeId(0);

    /// Whether this id names a real member (anything but [`NodeId::NONE`]).
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}

impl LogIndex {
    /// The following index. Saturates rather than wrapping: 2^64 entries are out of reach.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0.saturating_add(1))
    }

    /// The preceding index, saturating at zero.
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// `self + n`, saturating.
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0.saturating_add(n))
    }
}

impl Term {
    /// The following term, used when a node starts an election.
    pub const fn next(self) -> Term {
        Term(self.0.saturating_add(1))
    }
}

/// What a log entry carries. The state machine only interprets `Normal` entries; `Empty` is the
/// no-op a new leader appends so that it can commit entries of earlier terms (Raft §5.4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An application command, opaque to Raft.
    #[default]
    Normal,
    /// A leader's no-op, appended when it takes office. Carries no data.
    Empty,
    /// A membership change ([`crate::confchange::ConfChange`], encoded); takes effect when
    /// applied.
    ConfChange,
}

/// One entry of the replicated log.
///
/// The payload is a [`Bytes`] so that replicating one entry to many followers, or handing it from
/// the transport to the log, shares the buffer instead of copying it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry. Together with `index` it identifies the entry
    /// uniquely across the cluster (the Log Matching property).
    pub term: Term,
    /// The position of the entry in the log; always `>= 1` for a real entry.
    pub index: LogIndex,
    /// Whether the entry is an application command or a leader's no-op.
    pub kind: EntryKind,
    /// The application command; empty for [`EntryKind::Empty`].
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry contributes to size limits (payload plus a fixed header estimate), so
    /// that many tiny entries are still bounded.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state every member must make durable before it acts on it: its current term, the vote it
/// cast in that term, and the commit index it knows of (the last is an optimisation for restart;
/// correctness never depends on it being durable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate that received this node's vote in `term`, or [`NodeId::NONE`].
    pub vote: NodeId,
    /// The highest index this node knows to be committed.
    pub commit: LogIndex,
}

impl HardState {
    /// Whether this is the all-zero state of a node that has never run.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The cluster membership in force: the voters whose majority decides, and learners that only
/// receive the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    /// Members that vote and count toward quorums (the incoming voters of a joint
    /// configuration). Kept sorted and free of duplicates.
    pub voters: Vec<NodeId>,
    /// Members that receive the log but never vote or count toward quorums.
    pub learners: Vec<NodeId>,
    /// In a joint configuration: the outgoing voters, whose majority is needed too. Empty
    /// otherwise.
    pub voters_outgoing: Vec<NodeId>,
    /// In a joint configuration: outgoing voters that become learners when it is left.
    pub learners_next: Vec<NodeId>,
    /// Whether the leader leaves the joint configuration by itself once it is applied.
    pub auto_leave: bool,
}

impl ConfState {
    /// A configuration of the given voters (sorted and deduplicated here).
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            ..Default::default()
        }
    }

    /// Whether `id` is a voter (incoming or outgoing) or learner of this configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id) || self.learners_next.contains(&id)
    }

    /// Whether `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether a joint configuration is in force.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Every member, each once, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .chain(&self.learners_next)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// Where a snapshot sits in the log and which membership was in force at that point. A snapshot
/// replaces every entry up to and including `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMetadata {
    /// The last index the snapshot covers.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`.
    pub conf_state: ConfState,
}

/// A state-machine snapshot: its position in the log and its opaque contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Position and configuration.
    pub metadata: SnapshotMetadata,
    /// The serialized state machine, opaque to Raft.
    pub data: Bytes,
}

impl Snapshot {
    /// Whether this is the empty placeholder of a log that has never been compacted.
    pub fn is_empty(&self) -> bool {
        self.metadata.index == LogIndex::ZERO
    }
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one) and answers its requests.
    #[default]
    Follower,
    /// Probing, without touching its term, whether an election could succeed (PreVote, §9.6).
    PreCandidate,
    /// Has started an election in a new term and is collecting votes.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}

/// Volatile facts an embedder may want to observe: who leads and in which role this node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SoftState {
    /// The leader this node knows of in its current term, or [`NodeId::NONE`].
    pub leader: NodeId,
    /// This node's role.
    pub role: Role,
}
