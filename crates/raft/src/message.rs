//! Messages between members. Plain data: a transport may encode them however it likes.

use crate::types::{Entry, LogIndex, NodeId, Snapshot, Term};

/// One message from one member to another. Every message carries the sender's term, which is how
/// stale leaders and candidates learn that they are stale (Raft §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The intended receiver.
    pub to: NodeId,
    /// The sender's term. For a pre-vote request this is the term the sender *would* campaign in,
    /// and for a granted pre-vote response it echoes that term; the sender's own term is unchanged.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message and their contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// A candidate (or pre-candidate) asks for a vote. The receiver grants it only if it has not
    /// voted for someone else in this term and the candidate's log is at least as up to date as
    /// its own (last term first, then last index: Raft §5.4.1).
    RequestVote {
        /// True for a PreVote probe (§9.6): no term changes and no vote is recorded.
        pre_vote: bool,
        /// Index of the candidate's last log entry.
        last_log_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
        /// The election was started by the leader's TimeoutNow (a leadership transfer): voters
        /// answer even though they heard from that live leader recently.
        transfer: bool,
    },
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Echoes the request kind so a late answer is never counted for the wrong election.
        pre_vote: bool,
        /// Whether the vote (or pre-vote) is granted.
        granted: bool,
    },
    /// The leader replicates entries following `(prev_log_index, prev_log_term)`.
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_log_index: LogIndex,
        /// Term of that entry; the follower must hold it for the append to succeed.
        prev_log_term: Term,
        /// The entries to append, consecutive from `prev_log_index + 1`; may be empty (a probe).
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendResponse),
    /// The leader's periodic heartbeat: asserts leadership and carries a commit index that the
    /// follower is known to be able to apply (never beyond what it has matched).
    Heartbeat {
        /// `min(leader commit, follower's match index)`.
        commit: LogIndex,
        /// The leader's heartbeat round. A quorum answering round `r` proves the sender was still
        /// leader after every read queued for round `r` (ReadIndex, dissertation §6.4).
        round: u64,
    },
    /// The answer to a heartbeat; it tells the leader the follower is alive and in its term.
    HeartbeatResponse {
        /// Echoes the heartbeat's round (0 when answering a stale leader).
        round: u64,
    },
    /// A follower hands its clients' commands to the leader, which appends them as if proposed
    /// there (etcd's forwarded `MsgProp`). Nothing is answered: the follower learns the outcome
    /// by applying the entry itself, and gives up on commands it never sees applied.
    Propose {
        /// The commands, in the order they were submitted.
        entries: Vec<bytes::Bytes>,
    },
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndex {
        /// The follower's handle for the read, echoed in the answer.
        context: u64,
    },
    /// The leader's answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse {
        /// Echoes the request.
        context: u64,
        /// The index the follower must apply before serving the read; `None` if the leader
        /// refused (it is stepping down or transferring leadership): retry.
        index: Option<LogIndex>,
    },
    /// The leader tells the target of a leadership transfer to start an election at once.
    TimeoutNow,
    /// The leader sends its snapshot to a follower that needs compacted entries. The follower
    /// answers with an `AppendEntriesResponse` accepting up to the snapshot's index. The core
    /// carries the whole snapshot; a transport streams it in chunks and reassembles it.
    InstallSnapshot {
        /// The snapshot, with its position and configuration.
        snapshot: Snapshot,
    },
}

/// A follower's answer to an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResponse {
    /// The follower's log now matches the leader's up to `match_index`.
    Accepted {
        /// The last index the follower now shares with the leader.
        match_index: LogIndex,
    },
    /// The follower does not hold the leader's `prev_log_index` entry with `prev_log_term`.
    Rejected {
        /// The `prev_log_index` of the rejected append, so stale rejections can be recognised.
        rejected_index: LogIndex,
        /// With `hint_term`, the follower's suggestion where to retry: the largest index at or below
        /// `rejected_index` whose term is at most the leader's `prev_log_term` (or its last index,
        /// if its log is shorter). This lets the leader skip a whole term per round trip.
        hint_index: LogIndex,
        /// The follower's term at `hint_index`.
        hint_term: Term,
    },
}

impl MessageBody {
    /// A short, stable name for logs, traces and counters.
    pub fn kind_name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote {
                pre_vote: false, ..
            } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::RequestVoteResponse {
                pre_vote: false, ..
            } => "RequestVoteResp",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::Propose { .. } => "Propose",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
        }
    }
}
