//! The protocol itself: roles, terms, elections, replication and commitment.
//!
//! [`Raft`] reacts to two inputs, `tick` and `step`, and accumulates outputs (messages, log
//! appends, hard-state changes) that [`crate::RawNode`] packages into a `Ready`.

use crate::confchange::{ConfChange, ConfChangeError};
use crate::config::Config;
use crate::log::{AppendError, RaftLog};
use crate::message::{AppendResponse, Message, MessageBody};
use crate::quorum::{self, VoteResult};
use crate::rng::Rng;
use crate::storage::{Storage, StorageError};
use crate::tracker::{Progress, ProgressState};
use crate::types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, SoftState, Term,
};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;

/// Heartbeat answers in a row without progress before a replicating follower is probed again.
const STALLED_HEARTBEATS_BEFORE_PROBE: u32 = 3;

/// Why a proposal was not accepted. All of these are operating conditions: the caller may retry
/// (elsewhere, or later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader; `leader_hint` is the leader it knows of (or `NodeId::NONE`).
    NotLeader {
        /// Where the caller should send the proposal instead, if known.
        leader_hint: NodeId,
    },
    /// The leader holds too many uncommitted bytes; retry once replication catches up.
    Backpressure,
    /// The leader is handing leadership to another member and takes no proposals meanwhile.
    TransferInProgress,
    /// A membership change is still being applied; propose the next one afterwards.
    ConfChangePending,
    /// The membership change does not apply to the configuration in force.
    ConfChangeRejected(ConfChangeError),
    /// The entry is larger than `Config::max_entry_bytes`.
    TooLarge {
        /// The proposal's size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader_hint } if leader_hint.is_some() => {
                write!(f, "not the leader; the leader is {leader_hint}")
            }
            ProposeError::NotLeader { .. } => f.write_str("not the leader; no leader is known"),
            ProposeError::Backpressure => f.write_str("too many uncommitted proposals"),
            ProposeError::TransferInProgress => f.write_str("leadership transfer in progress"),
            ProposeError::ConfChangePending => {
                f.write_str("a membership change is still in progress")
            }
            ProposeError::ConfChangeRejected(error) => write!(f, "membership change: {error}"),
            ProposeError::TooLarge { size, limit } => {
                write!(f, "proposal of {size} bytes exceeds the limit of {limit}")
            }
        }
    }
}

impl std::error::Error for ProposeError {}

/// Why an incoming message was ignored. Counted, never panicked on: messages come from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The message is addressed to another node.
    WrongRecipient,
    /// The sender is not a member of the configuration.
    UnknownSender,
    /// The message's term is older than ours (it was answered with our term where useful).
    StaleTerm,
    /// A vote request arrived while we believe a leader is alive (CheckQuorum stickiness).
    LeaderLease,
    /// The message does not make sense in our role (e.g. a vote response while a follower).
    UnexpectedInRole,
    /// The message is internally inconsistent (non-consecutive entries, an index beyond what it
    /// could know, an entry from a future term, ...).
    Malformed,
    /// An acknowledgement or rejection for an append the leader has already moved past.
    StaleResponse,
    /// The follower would need entries that are compacted (a snapshot is required).
    NeedsSnapshot,
    /// A forwarded proposal reached a member that is not (or no longer) leader, or a leader
    /// that refused it (a transfer in progress, too many uncommitted bytes).
    ProposalRefused,
}

impl DropReason {
    /// Every reason, in a fixed order (index of the counter array).
    pub const ALL: [DropReason; 9] = [
        DropReason::WrongRecipient,
        DropReason::UnknownSender,
        DropReason::StaleTerm,
        DropReason::LeaderLease,
        DropReason::UnexpectedInRole,
        DropReason::Malformed,
        DropReason::StaleResponse,
        DropReason::NeedsSnapshot,
        DropReason::ProposalRefused,
    ];

    fn slot(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|reason| *reason == self)
            .expect("listed")
    }
}

/// Test-only switches that break a rule on purpose, to prove the simulator catches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Commit any entry that a majority holds, even from an older term (the Figure 8 bug).
    pub commit_old_term_by_counting: bool,
    /// Grant votes without persisting them first (the vote is lost by a crash).
    pub vote_without_persisting: bool,
    /// Grant votes without the up-to-date check.
    pub vote_without_log_check: bool,
}

/// The Raft state machine of one node.
pub struct Raft<S: Storage> {
    pub(crate) id: NodeId,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    pub(crate) log: RaftLog<S>,
    conf: ConfState,
    /// One entry per member of `conf` (voters then learners), including this node. On followers
    /// it is kept but only the leader reads it.
    progress: Vec<Progress>,
    /// Votes received in the current (pre-)election: `(voter, granted)`.
    votes: Vec<(NodeId, bool)>,
    /// Messages that may leave at once (a leader's appends and heartbeats).
    pub(crate) messages: Vec<Message>,
    /// Messages that may leave only once the writes of the same `Ready` are durable (vote grants,
    /// append acknowledgements, a candidate's vote requests that depend on its persisted term).
    pub(crate) messages_after_persist: Vec<Message>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,
    rng: Rng,
    config: Config,
    /// On a leader: sizes of uncommitted proposals, oldest first, to bound `uncommitted_bytes`.
    uncommitted: VecDeque<(LogIndex, u64)>,
    uncommitted_bytes: u64,
    /// Followers that should be sent an append when the current batch of work is flushed.
    pending_broadcast: bool,
    dropped: [u64; DropReason::ALL.len()],
    elections_started: u64,
    /// On a leader: the index of the last configuration change it appended. Another is refused
    /// until this one is applied. Set to the leader's first entry on election, so a new leader
    /// changes nothing before it has committed and applied an entry of its own term.
    pending_conf_index: LogIndex,
    /// Scratch buffer for commit computation (no allocation per acknowledgement).
    match_scratch: Vec<LogIndex>,
    faults: Faults,
    /// On a leader: the member it is handing leadership to, or `NodeId::NONE`.
    lead_transferee: NodeId,
    /// On a leader: ticks since the transfer started (abandoned after an election timeout).
    transfer_elapsed: u32,
    reads: ReadOnly,
    /// Ids and timing of a follower's read requests (see [`ForwardIds`]).
    forward_ids: ForwardIds,
    snapshots_sent: u64,
    snapshots_installed: u64,
    /// This leader told a member to campaign (TimeoutNow) in this term. That member's votes are
    /// granted despite everyone's leases, so this leader's lease is void for the rest of the term,
    /// even if it abandons the transfer.
    timeout_now_sent: bool,
    /// The embedder's writes have not completed for `storage_stall_ticks`: lead nothing.
    storage_stalled: bool,
    storage_stall_step_downs: u64,
    conf_changes_applied: u64,
    /// Ticks since this node started: under lease-based reads it grants no vote during its first
    /// election timeout, as it may have acknowledged a lease just before it restarted.
    ticks_since_start: u64,
}

/// A read waiting for its heartbeat round to be confirmed by a quorum.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    context: u64,
    from: NodeId,
    index: LogIndex,
    round: u64,
}

/// The result of a read-index request: once the state machine has applied `index`, the read
/// identified by `context` may be served and is linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The embedder's handle of the read.
    pub context: u64,
    /// The index to wait for; `None` if the read was refused (leadership lost or in transfer).
    pub index: Option<LogIndex>,
}

/// The leader's read-index machinery (dissertation §6.4): reads join the next heartbeat round;
/// when a quorum has answered a round, every read queued for it or earlier is confirmed.
#[derive(Debug, Default)]
struct ReadOnly {
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term: its commit index
    /// may still be behind the cluster's until then.
    awaiting_term_commit: Vec<(u64, NodeId)>,
    /// The last heartbeat round broadcast.
    round: u64,
    /// A read joined round `round + 1`, which must be broadcast at the next flush.
    round_needed: bool,
    /// The highest round a quorum has answered.
    quorum_round: u64,
    /// When each recent round was sent (leader ticks), for the lease.
    round_sent_at: VecDeque<(u64, u64)>,
    /// The send time of the latest quorum-confirmed round: the lease runs from there.
    lease_start: Option<u64>,
    /// Ticks since this node became leader.
    leader_ticks: u64,
    /// Results for the embedder.
    ready: Vec<ReadState>,
    /// A follower's reads that wait for the next request to the leader.
    forward_queued: Vec<u64>,
    /// The reads the follower's request in flight covers.
    forward_asked: Vec<u64>,
    /// The follower's request in flight: its id and the tick it was sent at.
    forward_request: Option<(u64, u64)>,
}

/// A follower's read requests to its leader. Like the leader's rounds, a follower keeps one
/// request in flight: reads arriving meanwhile wait for the next, and one answer confirms every
/// read its request covers. A read may only take an index the leader chose after the read
/// began, so reads never join a request already sent.
#[derive(Debug, Default)]
struct ForwardIds {
    /// The last request id used. Never reset, so a late answer to an abandoned request can
    /// never be taken for the answer to a later one.
    last: u64,
    /// Follower ticks, to notice a request whose answer was lost.
    ticks: u64,
}

/// How many recent heartbeat send times a leader remembers for its lease.
const ROUND_HISTORY: usize = 64;

/// Why a read-index request could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadIndexError {
    /// No leader is known to ask.
    NoLeader,
    /// The leader is handing over leadership; retry once it is done.
    TransferInProgress,
}

impl fmt::Display for ReadIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadIndexError::NoLeader => f.write_str("no leader"),
            ReadIndexError::TransferInProgress => f.write_str("leadership transfer in progress"),
        }
    }
}

impl std::error::Error for ReadIndexError {}

/// Why a leadership transfer could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    NotLeader {
        /// The leader to ask instead, if known.
        leader_hint: NodeId,
    },
    /// The target is not a voter of the configuration.
    NotAVoter(NodeId),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader { leader_hint } => {
                write!(f, "not the leader (leader is {leader_hint})")
            }
            TransferError::NotAVoter(id) => write!(f, "{id} is not a voting member"),
        }
    }
}

impl std::error::Error for TransferError {}

impl<S: Storage> Raft<S> {
    /// Builds a node from its durable state. Fails if the configuration is invalid or storage
    /// cannot be read.
    pub fn new(config: &Config, storage: S) -> Result<Raft<S>, NewNodeError> {
        config.validate().map_err(NewNodeError::Config)?;
        let (hard_state, conf) = storage.initial_state().map_err(NewNodeError::Storage)?;
        if hard_state.commit > storage.last_index() {
            return Err(NewNodeError::Storage(StorageError::Io(format!(
                "hard state commit {} beyond last index {}",
                hard_state.commit,
                storage.last_index()
            ))));
        }
        let committed = hard_state.commit.max(storage.first_index().prev());
        let applied = config
            .applied
            .min(committed)
            .max(storage.first_index().prev());
        let log = RaftLog::new(storage, committed, applied);
        let mut raft = Raft {
            id: config.id,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: NodeId::NONE,
            log,
            conf,
            progress: Vec::new(),
            votes: Vec::new(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: config.election_timeout_ticks,
            rng: Rng::new(config.seed),
            config: config.clone(),
            uncommitted: VecDeque::new(),
            uncommitted_bytes: 0,
            pending_broadcast: false,
            dropped: [0; DropReason::ALL.len()],
            elections_started: 0,
            match_scratch: Vec::new(),
            faults: Faults::default(),
            lead_transferee: NodeId::NONE,
            transfer_elapsed: 0,
            pending_conf_index: LogIndex::ZERO,
            reads: ReadOnly::default(),
            forward_ids: ForwardIds::default(),
            ticks_since_start: 0,
            snapshots_sent: 0,
            snapshots_installed: 0,
            storage_stalled: false,
            storage_stall_step_downs: 0,
            timeout_now_sent: false,
            conf_changes_applied: 0,
        };
        raft.rebuild_progress();
        raft.become_follower(raft.term, NodeId::NONE);
        Ok(raft)
    }

    /// Installs deliberate rule violations (tests of the checkers only).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The configured fault switches.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Makes the progress records match the configuration: members that stay keep what the
    /// leader knows of them, new members start probing from the end of the log.
    fn rebuild_progress(&mut self) {
        let next = self.log.last_index().next();
        let max_inflight = self.config.max_inflight_msgs;
        let members = self.conf.members();
        let mut old = std::mem::take(&mut self.progress);
        let mut progress = Vec::with_capacity(members.len());
        for id in members {
            let is_voter = self.conf.is_voter(id);
            let mut record = match old.iter().position(|p| p.id == id) {
                Some(position) => old.swap_remove(position),
                None => {
                    let mut fresh = Progress::new(id, next, max_inflight, is_voter);
                    // A new member has not had a chance to answer yet; do not count it as a
                    // failure in the next CheckQuorum round.
                    fresh.recent_active = true;
                    if id == self.id {
                        fresh.match_index = self.log.stable_last_index();
                    }
                    fresh
                }
            };
            record.is_voter = is_voter;
            progress.push(record);
        }
        self.progress = progress;
    }

    /// Whether a quorum of the (possibly joint) configuration satisfies `holds`.
    fn quorum_holds(&self, holds: impl Fn(&Progress) -> bool) -> bool {
        let half = |voters: &[NodeId]| {
            if voters.is_empty() {
                return true;
            }
            let count = voters
                .iter()
                .filter(|id| {
                    self.progress
                        .iter()
                        .find(|progress| progress.id == **id)
                        .is_some_and(&holds)
                })
                .count();
            count >= quorum::majority(voters.len())
        };
        half(&self.conf.voters) && half(&self.conf.voters_outgoing)
    }

    /// The largest value a quorum of the (possibly joint) configuration has reached.
    fn quorum_min(&self, value: impl Fn(&Progress) -> u64) -> u64 {
        let half = |voters: &[NodeId]| {
            if voters.is_empty() {
                return u64::MAX;
            }
            let mut values: Vec<u64> = voters
                .iter()
                .map(|id| {
                    self.progress
                        .iter()
                        .find(|progress| progress.id == *id)
                        .map_or(0, &value)
                })
                .collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            values[quorum::majority(values.len()) - 1]
        };
        half(&self.conf.voters).min(half(&self.conf.voters_outgoing))
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The role in the current term.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The known leader of the current term.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The configuration in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// The durable part of the state, as it should be persisted now.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            // The deliberately broken variant "forgets" to persist its vote: after a crash the
            // node may vote again in the same term.
            vote: if self.faults.vote_without_persisting {
                NodeId::NONE
            } else {
                self.vote
            },
            commit: self.log.committed(),
        }
    }

    /// Role and leader.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// Budget of committed-entry bytes per Ready.
    pub fn committed_bytes_per_ready(&self) -> u64 {
        self.config.max_committed_bytes_per_ready
    }

    /// How many messages were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.slot()]
    }

    /// How many elections (real, not pre-vote) this node has started.
    pub fn elections_started(&self) -> u64 {
        self.elections_started
    }

    /// The leader's progress records (empty meaning on non-leaders).
    pub fn progress(&self) -> &[Progress] {
        &self.progress
    }

    fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.slot()] += 1;
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.conf.is_voter(id)
    }

    fn is_member(&self, id: NodeId) -> bool {
        self.conf.contains(id)
    }

    fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.iter_mut().find(|progress| progress.id == id)
    }

    fn send(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        // A leader's appends and heartbeats carry no state of its own that must be durable first
        // (its term and vote were persisted before it could win). Everything else answers or asks
        // on the strength of state that the same Ready may still be writing.
        let promises_nothing_durable = matches!(
            message.body,
            MessageBody::RequestVote { pre_vote: true, .. }
                | MessageBody::RequestVoteResponse { pre_vote: true, .. }
                | MessageBody::ReadIndex { .. }
                | MessageBody::Propose { .. }
        );
        if self.role == Role::Leader || promises_nothing_durable {
            self.messages.push(message);
        } else {
            self.messages_after_persist.push(message);
        }
    }

    fn reset_for_term(&mut self, term: Term) {
        if self.term != term {
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.leader = NodeId::NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_timeout = self.config.election_timeout_ticks
            + self
                .rng
                .below(u64::from(self.config.election_timeout_ticks)) as u32;
        self.votes.clear();
        self.uncommitted.clear();
        self.uncommitted_bytes = 0;
        self.pending_broadcast = false;
        self.lead_transferee = NodeId::NONE;
        self.transfer_elapsed = 0;
        self.timeout_now_sent = false;
        self.refuse_pending_reads();
        let next = self.log.last_index().next();
        let stable = self.log.stable_last_index();
        let id = self.id;
        for progress in &mut self.progress {
            progress.match_index = if progress.id == id {
                stable
            } else {
                LogIndex::ZERO
            };
            progress.restart_probe_at(next);
            progress.recent_active = progress.id == id;
        }
    }

    /// Becomes a follower of `leader` (or of nobody yet) in `term`.
    pub fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset_for_term(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot pre-campaign");
        // Not a new term and no vote: a pre-election changes nothing durable.
        self.votes.clear();
        self.role = Role::PreCandidate;
        self.leader = NodeId::NONE;
        self.refuse_forwarded_reads();
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot campaign");
        let term = self.term.next();
        self.reset_for_term(term);
        self.vote = self.id;
        self.role = Role::Candidate;
        self.elections_started += 1;
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate can become leader"
        );
        let term = self.term;
        self.reset_for_term(term);
        self.role = Role::Leader;
        self.leader = self.id;
        // The no-op of the new term: entries of earlier terms are committed only indirectly, once
        // an entry of this term is (Raft §5.4.2). Replication starts with the next flush.
        let index = self.log.last_index().next();
        self.log.append(vec![Entry {
            term: self.term,
            index,
            kind: EntryKind::Empty,
            data: Bytes::new(),
        }]);
        self.pending_conf_index = index;
        self.pending_broadcast = true;
    }

    /// Starts an election now (or a pre-election when PreVote is on), as if the election timeout
    /// had passed. A learner or removed node does not campaign.
    pub fn campaign(&mut self) {
        if self.role == Role::Leader
            || !self.is_voter(self.id)
            || self.term.next() == self.term
            || self.storage_stalled
        {
            return;
        }
        if self.config.pre_vote {
            self.become_pre_candidate();
            self.request_votes(true, false);
        } else {
            self.become_candidate();
            self.request_votes(false, false);
        }
    }

    /// Campaigns at once for real, skipping PreVote: the leader asked us to (TimeoutNow).
    fn campaign_for_transfer(&mut self) {
        if self.role == Role::Leader || !self.is_voter(self.id) || self.term.next() == self.term {
            return;
        }
        self.become_candidate();
        self.request_votes(false, true);
    }

    fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        // Vote for ourselves first: a single-voter cluster wins at once.
        self.record_vote(self.id, true);
        if self.poll_votes(pre_vote) {
            return;
        }
        let term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term();
        let voters: Vec<NodeId> = self
            .conf
            .members()
            .into_iter()
            .filter(|id| *id != self.id && self.conf.is_voter(*id))
            .collect();
        for voter in voters {
            self.send(
                voter,
                term,
                MessageBody::RequestVote {
                    pre_vote,
                    last_log_index,
                    last_log_term,
                    transfer,
                },
            );
        }
    }

    fn record_vote(&mut self, voter: NodeId, granted: bool) {
        if !self.votes.iter().any(|(id, _)| *id == voter) {
            self.votes.push((voter, granted));
        }
    }

    /// Acts on the tally; returns true if the election was decided.
    fn poll_votes(&mut self, pre_vote: bool) -> bool {
        let votes = &self.votes;
        let result =
            quorum::joint_vote_result(&self.conf.voters, &self.conf.voters_outgoing, |id| {
                votes
                    .iter()
                    .find(|(voter, _)| *voter == id)
                    .map(|(_, granted)| *granted)
            });
        match result {
            VoteResult::Won if pre_vote => {
                self.become_candidate();
                self.request_votes(false, false);
                true
            }
            VoteResult::Won => {
                self.become_leader();
                true
            }
            VoteResult::Lost => {
                self.become_follower(self.term, NodeId::NONE);
                true
            }
            VoteResult::Pending => false,
        }
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks_since_start = self.ticks_since_start.saturating_add(1);
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                self.retry_forward_request();
                self.tick_election();
            }
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout && self.is_voter(self.id) {
            self.election_elapsed = 0;
            self.campaign();
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.maybe_leave_joint();
        self.reads.leader_ticks += 1;
        let snapshot_timeout = self.config.snapshot_timeout_ticks;
        for progress in &mut self.progress {
            if matches!(progress.state, ProgressState::Snapshot { .. }) {
                progress.snapshot_elapsed += 1;
                if progress.snapshot_elapsed >= snapshot_timeout {
                    // Lost on the way: probe again, which resends it if still needed.
                    progress.become_probe();
                }
            }
        }
        if self.lead_transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.config.election_timeout_ticks {
                // The target did not take over in time: keep leading and take proposals again.
                self.lead_transferee = NodeId::NONE;
                self.transfer_elapsed = 0;
            }
        }
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum {
                let id = self.id;
                if !self.quorum_holds(|progress| progress.recent_active || progress.id == id) {
                    // We may be on the minority side of a partition: stop taking proposals
                    // that cannot commit, and let the majority elect someone.
                    self.become_follower(self.term, NodeId::NONE);
                    return;
                }
                for progress in &mut self.progress {
                    progress.recent_active = progress.id == id;
                }
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let committed = self.log.committed();
        self.reads.round += 1;
        self.reads.round_needed = false;
        let round = self.reads.round;
        if self.reads.round_sent_at.len() == ROUND_HISTORY {
            self.reads.round_sent_at.pop_front();
        }
        self.reads
            .round_sent_at
            .push_back((round, self.reads.leader_ticks));
        for position in 0..self.progress.len() {
            let progress = &mut self.progress[position];
            if progress.id == self.id {
                continue;
            }
            let to = progress.id;
            let commit = progress.match_index.min(committed);
            progress.sent_commit = progress.sent_commit.max(commit);
            self.send(to, self.term, MessageBody::Heartbeat { commit, round });
        }
    }

    /// Proposes an application command. On the leader, returns where it will be in the log.
    pub fn propose(&mut self, data: Bytes) -> Result<(LogIndex, Term), ProposeError> {
        self.propose_entry(EntryKind::Normal, data)
    }

    /// Hands a command to the leader this follower (or learner) knows, to be appended there;
    /// returns that leader. Commands forwarded before the next Ready travel in one message.
    /// The outcome is learned by applying the log: the leader answers nothing, and may drop
    /// the command (it lost leadership, is transferring it, or has too much uncommitted).
    pub fn forward_proposal(&mut self, data: Bytes) -> Result<NodeId, ProposeError> {
        if self.role == Role::Leader || !self.leader.is_some() {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        let (leader, term) = (self.leader, self.term);
        if let Some(Message {
            to,
            term: queued_term,
            body: MessageBody::Propose { entries },
            ..
        }) = self.messages.last_mut()
            && *to == leader
            && *queued_term == term
        {
            entries.push(data);
        } else {
            self.send(
                leader,
                term,
                MessageBody::Propose {
                    entries: vec![data],
                },
            );
        }
        Ok(leader)
    }

    /// Proposes a membership change. One at a time: refused while an earlier one is not applied
    /// (or, for a new leader, before its own first entry is applied), and "leave joint" only in a
    /// joint configuration, anything else only outside one.
    pub fn propose_conf_change(
        &mut self,
        change: &ConfChange,
    ) -> Result<(LogIndex, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.pending_conf_index > self.log.applied() {
            return Err(ProposeError::ConfChangePending);
        }
        if change.is_leave_joint() != self.conf.is_joint() {
            return Err(ProposeError::ConfChangeRejected(if self.conf.is_joint() {
                ConfChangeError::AlreadyJoint
            } else {
                ConfChangeError::NotJoint
            }));
        }
        crate::confchange::apply(&self.conf, change).map_err(ProposeError::ConfChangeRejected)?;
        let position = self.propose_entry(EntryKind::ConfChange, change.encode())?;
        self.pending_conf_index = position.0;
        Ok(position)
    }

    /// Switches to the configuration that `change` produces; the embedder calls this when it
    /// applies a committed `ConfChange` entry (in log order). A leader no longer among the voters
    /// steps down; a leader entering a joint configuration proposes leaving it.
    pub fn apply_conf_change(&mut self, change: &ConfChange) -> Result<ConfState, ConfChangeError> {
        let next = crate::confchange::apply(&self.conf, change)?;
        self.conf = next.clone();
        self.rebuild_progress();
        self.conf_changes_applied += 1;
        if self.lead_transferee.is_some() && !self.conf.is_voter(self.lead_transferee) {
            self.lead_transferee = NodeId::NONE;
        }
        if self.role == Role::Leader {
            if !self.conf.is_voter(self.id) {
                // Removed (or demoted): hand over by stepping down; the rest elect a leader.
                self.become_follower(self.term, NodeId::NONE);
                return Ok(next);
            }
            // The quorum changed: the commit index may move, and new members need the log.
            self.maybe_commit();
            self.advance_reads();
            self.pending_broadcast = true;
            if self.conf.auto_leave {
                // Safe to propose now: the entry that entered the joint configuration is applied.
                let _ = self.propose_conf_change(&ConfChange::leave_joint());
            }
        } else if !self.conf.is_voter(self.id) && self.role != Role::Follower {
            self.become_follower(self.term, NodeId::NONE);
        }
        Ok(next)
    }

    /// A leader in a joint configuration that should be left automatically proposes leaving it
    /// once nothing else is pending. Most often the leader that entered it does so right after
    /// applying it; this also covers a leader elected while the configuration was joint.
    fn maybe_leave_joint(&mut self) {
        if self.role == Role::Leader
            && self.conf.is_joint()
            && self.conf.auto_leave
            && self.pending_conf_index <= self.log.applied()
            && self.lead_transferee == NodeId::NONE
        {
            let _ = self.propose_conf_change(&ConfChange::leave_joint());
        }
    }

    /// How many configuration changes this node applied.
    pub fn conf_changes_applied(&self) -> u64 {
        self.conf_changes_applied
    }

    fn propose_entry(
        &mut self,
        kind: EntryKind,
        data: Bytes,
    ) -> Result<(LogIndex, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let entry = Entry {
            term: self.term,
            index: self.log.last_index().next(),
            kind,
            data,
        };
        let size = entry.size_bytes();
        if size > self.config.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                size,
                limit: self.config.max_entry_bytes,
            });
        }
        // Always admit one entry when nothing is outstanding, so a large entry cannot wedge.
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.config.max_uncommitted_bytes
        {
            return Err(ProposeError::Backpressure);
        }
        let position = (entry.index, entry.term);
        self.uncommitted.push_back((entry.index, size));
        self.uncommitted_bytes += size;
        self.log.append_one(entry);
        self.pending_broadcast = true;
        // A single-voter cluster commits as soon as the entry is durable (see `on_persisted`).
        Ok(position)
    }

    /// Sends whatever appends are owed to followers. Called once per batch of inputs (by
    /// `RawNode::ready`), so many proposals share one message per follower.
    pub fn flush(&mut self) {
        if self.role == Role::Leader && self.pending_broadcast {
            self.pending_broadcast = false;
            self.broadcast_append();
        }
        if self.read_round_due() {
            // One round confirms every read that arrived since the last round was sent.
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        if self.forward_request_due() {
            self.send_forward_request();
        }
    }

    /// Whether `flush` has work to do.
    pub fn has_pending_flush(&self) -> bool {
        self.role == Role::Leader && self.pending_broadcast
            || self.read_round_due()
            || self.forward_request_due()
    }

    /// Whether a follower's queued reads should be asked of the leader now: there are some, a
    /// leader is known and no earlier request is still in flight (see [`ForwardIds`]).
    fn forward_request_due(&self) -> bool {
        self.role != Role::Leader
            && self.leader.is_some()
            && self.reads.forward_request.is_none()
            && !self.reads.forward_queued.is_empty()
    }

    /// Asks the leader to confirm a read index for every queued read, and for those of an
    /// earlier request given up on (its id is abandoned: an index chosen now suits them too).
    fn send_forward_request(&mut self) {
        let reads = &mut self.reads;
        if reads.forward_asked.is_empty() {
            std::mem::swap(&mut reads.forward_asked, &mut reads.forward_queued);
        } else {
            reads.forward_asked.append(&mut reads.forward_queued);
        }
        self.forward_ids.last += 1;
        let id = self.forward_ids.last;
        self.reads.forward_request = Some((id, self.forward_ids.ticks));
        let (leader, term) = (self.leader, self.term);
        self.send(leader, term, MessageBody::ReadIndex { context: id });
    }

    /// A follower's request to the leader unanswered for a heartbeat interval is taken as lost
    /// (its message or its answer dropped on the way) and asked again under a new id, with any
    /// reads queued since.
    fn retry_forward_request(&mut self) {
        self.forward_ids.ticks += 1;
        let Some((_, sent_at)) = self.reads.forward_request else {
            return;
        };
        let patience = u64::from(self.config.heartbeat_interval_ticks.max(1));
        if self.forward_ids.ticks >= sent_at + patience && self.leader.is_some() {
            self.send_forward_request();
        }
    }

    /// Whether reads wait for a round that should be broadcast now. As etcd's read loop, a
    /// leader keeps at most one read round in flight: reads arriving meanwhile share the next
    /// round, sent once a quorum has answered the current one (or by the next heartbeat tick,
    /// should the current round's messages be lost). Under load this turns one round per
    /// batch of inputs into one per round trip, which is most of the messages reads cost.
    fn read_round_due(&self) -> bool {
        self.role == Role::Leader
            && self.reads.round_needed
            && self.reads.quorum_round >= self.reads.round
    }

    /// Read results ready for the embedder.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.reads.ready)
    }

    /// Whether read results wait for the embedder.
    pub fn has_read_states(&self) -> bool {
        !self.reads.ready.is_empty()
    }

    /// Starts a linearizable read identified by `context` (unique per read). Its [`ReadState`]
    /// comes out of a later `Ready`; the read may be served once the state machine has applied
    /// the index it names.
    pub fn read_index(&mut self, context: u64) -> Result<(), ReadIndexError> {
        match self.role {
            Role::Leader => {
                if self.lead_transferee.is_some() {
                    return Err(ReadIndexError::TransferInProgress);
                }
                self.leader_read(context, self.id);
                Ok(())
            }
            _ if self.leader.is_some() => {
                // Asked of the leader at the next flush, with the other reads queued by then.
                self.reads.forward_queued.push(context);
                Ok(())
            }
            _ => Err(ReadIndexError::NoLeader),
        }
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term_if_present(self.log.committed()) == Some(self.term)
    }

    fn leader_read(&mut self, context: u64, from: NodeId) {
        if self.lead_transferee.is_some() {
            self.answer_read(context, from, None);
            return;
        }
        if !self.committed_in_current_term() {
            // Our commit index may lag what earlier leaders committed until our no-op commits.
            self.reads.awaiting_term_commit.push((context, from));
            return;
        }
        let index = self.log.committed();
        let alone = self.conf.voters == [self.id] && !self.conf.is_joint();
        if alone || self.lease_is_valid() {
            self.answer_read(context, from, Some(index));
            return;
        }
        self.reads.pending.push_back(PendingRead {
            context,
            from,
            index,
            round: self.reads.round + 1,
        });
        self.reads.round_needed = true;
    }

    fn answer_read(&mut self, context: u64, from: NodeId, index: Option<LogIndex>) {
        if from == self.id {
            self.reads.ready.push(ReadState { context, index });
        } else {
            let term = self.term;
            self.send(
                from,
                term,
                MessageBody::ReadIndexResponse { context, index },
            );
        }
    }

    /// Whether the leader may serve a read without a round: lease-based reads are configured, no
    /// transfer is under way, and a quorum answered a heartbeat sent less than
    /// `election_timeout - drift` ticks ago, so no other leader can have been elected since.
    pub fn lease_is_valid(&self) -> bool {
        self.role == Role::Leader
            && self.config.read_only == crate::config::ReadOnlyOption::LeaseBased
            && self.lead_transferee == NodeId::NONE
            && !self.timeout_now_sent
            && self.reads.lease_start.is_some_and(|start| {
                let lease =
                    u64::from(self.config.election_timeout_ticks - self.config.lease_drift_ticks);
                self.reads.leader_ticks < start + lease
            })
    }

    /// Confirms the reads whose round a quorum has answered.
    fn advance_reads(&mut self) {
        let id = self.id;
        let round = self.reads.round;
        let quorum_round = self.quorum_min(|progress| {
            if progress.id == id {
                round
            } else {
                progress.acked_round
            }
        });
        if quorum_round == u64::MAX || quorum_round <= self.reads.quorum_round {
            return;
        }
        self.reads.quorum_round = quorum_round;
        if let Some(&(_, sent_at)) = self
            .reads
            .round_sent_at
            .iter()
            .find(|(sent_round, _)| *sent_round == quorum_round)
        {
            self.reads.lease_start = Some(sent_at);
        }
        while let Some(read) = self.reads.pending.front().copied() {
            if read.round > quorum_round {
                break;
            }
            self.reads.pending.pop_front();
            self.answer_read(read.context, read.from, Some(read.index));
        }
    }

    /// Leadership is lost or changing hands: every read not yet confirmed is refused, so that
    /// its client retries instead of waiting forever.
    fn refuse_pending_reads(&mut self) {
        let pending: Vec<(u64, NodeId)> = self
            .reads
            .pending
            .drain(..)
            .map(|read| (read.context, read.from))
            .chain(self.reads.awaiting_term_commit.drain(..))
            .collect();
        for (context, from) in pending {
            self.answer_read(context, from, None);
        }
        self.refuse_forwarded_reads();
        let ready = std::mem::take(&mut self.reads.ready);
        self.reads = ReadOnly {
            ready,
            ..ReadOnly::default()
        };
    }

    /// A follower's reads were for the leader it had, which it no longer follows: they are
    /// refused, so that their clients retry with the next one.
    fn refuse_forwarded_reads(&mut self) {
        let reads = &mut self.reads;
        reads.forward_asked.append(&mut reads.forward_queued);
        self.answer_forwarded_reads(None);
    }

    /// Answers every read the follower's request in flight covers, and ends that request.
    fn answer_forwarded_reads(&mut self, index: Option<LogIndex>) {
        let reads = &mut self.reads;
        reads.forward_request = None;
        reads.ready.extend(
            reads
                .forward_asked
                .drain(..)
                .map(|context| ReadState { context, index }),
        );
    }

    /// Hands leadership to `target` (dissertation §3.10): stop taking proposals, bring the
    /// target up to date, then tell it to campaign at once. Abandoned after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if !self.is_voter(target) {
            return Err(TransferError::NotAVoter(target));
        }
        if target == self.id || self.lead_transferee == target {
            return Ok(());
        }
        self.lead_transferee = target;
        self.transfer_elapsed = 0;
        // Reads waiting on a round could be confirmed after the target took over; refuse them.
        let pending: Vec<PendingRead> = self.reads.pending.drain(..).collect();
        for read in pending {
            self.answer_read(read.context, read.from, None);
        }
        let position = self
            .progress
            .iter()
            .position(|progress| progress.id == target)
            .expect("voters have progress");
        if self.progress[position].match_index == self.log.last_index() {
            self.timeout_now_sent = true;
            self.send(target, self.term, MessageBody::TimeoutNow);
        } else {
            self.send_appends(position, true);
        }
        Ok(())
    }

    /// The member leadership is being handed to, if any.
    pub fn lead_transferee(&self) -> NodeId {
        self.lead_transferee
    }

    /// Sends new entries to every follower, and an empty append to those that are caught up but
    /// have not yet heard of the current commit index.
    fn broadcast_append(&mut self) {
        let committed = self.log.committed();
        for position in 0..self.progress.len() {
            let progress = &self.progress[position];
            if progress.id != self.id {
                let announce_commit = progress.sent_commit < committed;
                self.send_appends(position, announce_commit);
            }
        }
    }

    /// Sends appends to the follower at `position` while its window allows and there is
    /// something to send (or once, empty, if `send_if_empty`, to carry the commit index).
    fn send_appends(&mut self, position: usize, mut send_if_empty: bool) {
        loop {
            let progress = &self.progress[position];
            if progress.is_paused() {
                return;
            }
            let to = progress.id;
            let next = progress.next_index;
            let prev_log_index = next.prev();
            let last = self.log.last_index();
            if next > last && !send_if_empty {
                return;
            }
            let prev_log_term = match self.log.term(prev_log_index) {
                Ok(term) => term,
                Err(_) => {
                    // The follower needs entries that were compacted: send the snapshot.
                    self.send_snapshot(position);
                    return;
                }
            };
            let entries = match self.log.entries_from(next, self.config.max_size_per_msg) {
                Ok(entries) => entries,
                Err(_) => {
                    self.send_snapshot(position);
                    return;
                }
            };
            let count = entries.len();
            let last_sent = prev_log_index.plus(count as u64);
            let leader_commit = self.log.committed();
            let term = self.term;
            self.send(
                to,
                term,
                MessageBody::AppendEntries {
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                },
            );
            let progress = &mut self.progress[position];
            progress.sent_entries(last_sent, count);
            progress.sent_commit = progress.sent_commit.max(leader_commit.min(last_sent));
            send_if_empty = false;
            if progress.state == ProgressState::Probe || count == 0 {
                return;
            }
        }
    }

    fn send_snapshot(&mut self, position: usize) {
        let snapshot = match self.log.storage().snapshot() {
            Ok(snapshot) if !snapshot.is_empty() => snapshot,
            // Not available right now (being built, or storage trouble): try again later.
            _ => {
                self.count_drop(DropReason::NeedsSnapshot);
                return;
            }
        };
        let progress = &mut self.progress[position];
        progress.become_snapshot(snapshot.metadata.index);
        let to = progress.id;
        self.snapshots_sent += 1;
        self.send(to, self.term, MessageBody::InstallSnapshot { snapshot });
    }

    /// The transport reports whether a snapshot reached `to` (or failed to). A failure lets the
    /// follower leave the snapshot state at once, so it is retried rather than waited for.
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress_mut(to)
            && matches!(progress.state, ProgressState::Snapshot { .. })
        {
            progress.become_probe();
            // On success, wait for the follower's answer (or the next heartbeat) before probing.
            progress.probe_sent = delivered;
        }
    }

    /// The transport could not reach `to`: stop pipelining to it and probe once it answers.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress_mut(to)
            && progress.state == ProgressState::Replicate
        {
            progress.become_probe();
        }
    }

    /// The embedder's storage stalled (or recovered). A stalled leader steps down: it could
    /// neither make its own entries durable nor apply what its followers commit, so its clients
    /// would wait forever while it kept the followers from electing anyone else.
    pub fn set_storage_stalled(&mut self, stalled: bool) {
        self.storage_stalled = stalled;
        if stalled && self.role == Role::Leader {
            self.storage_stall_step_downs += 1;
            self.become_follower(self.term, NodeId::NONE);
        }
    }

    /// How many times this node stepped down because its storage stalled.
    pub fn storage_stall_step_downs(&self) -> u64 {
        self.storage_stall_step_downs
    }

    /// The configured stall threshold in ticks.
    pub fn storage_stall_ticks(&self) -> u32 {
        self.config.storage_stall_ticks
    }

    /// How many snapshots this node sent as leader.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent
    }

    /// How many snapshots from a leader this node installed.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    fn handle_install_snapshot(&mut self, from: NodeId, snapshot: crate::types::Snapshot) {
        if self.role == Role::Leader {
            self.count_drop(DropReason::Malformed);
            return;
        }
        self.become_follower_of(from);
        let index = snapshot.metadata.index;
        let committed = self.log.committed();
        let match_index = if index <= committed {
            // Older than what we have settled: never move state backwards (docs/correctness.md, K11).
            committed
        } else if self.log.matches(index, snapshot.metadata.term) {
            // We hold its last entry: our log already contains it; just learn it is committed.
            self.log.commit_to(index);
            index
        } else {
            self.conf = snapshot.metadata.conf_state.clone();
            self.log.restore(snapshot);
            self.rebuild_progress();
            self.snapshots_installed += 1;
            index
        };
        self.send(
            from,
            self.term,
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }),
        );
    }

    /// Handles one message from another node.
    pub fn step(&mut self, message: Message) {
        if message.to != self.id {
            self.count_drop(DropReason::WrongRecipient);
            return;
        }
        // Leaders' messages are accepted from anyone: a member that has just joined (or has not
        // yet applied the change that added the leader) does not know every member yet, and terms
        // keep stale leaders harmless. Everything else from outside the configuration, votes
        // above all, is ignored, so removed members cannot disrupt the cluster.
        let from_a_leader = matches!(
            message.body,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow
        );
        // A member that has not applied any configuration yet (it joined with an empty log)
        // cannot tell members from strangers; it must still vote, or a configuration that
        // counts on its vote could never elect the leader that would bring it up to date.
        let knows_members = !self.conf.voters.is_empty();
        if message.from == self.id
            || !message.from.is_some()
            || (!from_a_leader && knows_members && !self.is_member(message.from))
        {
            self.count_drop(DropReason::UnknownSender);
            return;
        }
        // The largest term can never be followed by a new one: a node there could not campaign
        // without voting twice in it. Only a broken peer sends it.
        if message.term == Term(u64::MAX) {
            self.count_drop(DropReason::Malformed);
            return;
        }
        // Validate content before the term can change anything durable.
        if let MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            ..
        } = &message.body
            && !Self::entries_are_well_formed(
                *prev_log_index,
                *prev_log_term,
                message.term,
                entries,
            )
        {
            self.count_drop(DropReason::Malformed);
            return;
        }
        if let MessageBody::InstallSnapshot { snapshot } = &message.body
            && (snapshot.metadata.index == LogIndex::ZERO
                || snapshot.metadata.term > message.term
                || snapshot.metadata.term == Term::ZERO
                || snapshot.metadata.conf_state.voters.is_empty())
        {
            self.count_drop(DropReason::Malformed);
            return;
        }
        if message.term > self.term {
            if let MessageBody::RequestVote { transfer, .. } = message.body {
                // Stickiness: while we have heard from a live leader within the minimum election
                // timeout, a vote request is a disruption, not a sign the leader is gone (§4.2.3).
                // A transfer's election is the leader's own wish and goes through.
                let in_lease = self.config.check_quorum
                    && self.leader.is_some()
                    && self.election_elapsed < self.config.election_timeout_ticks;
                // Under lease-based reads, a node that just (re)started may have acknowledged a
                // lease before it went down: it waits out one election timeout before voting.
                let just_started = self.config.read_only
                    == crate::config::ReadOnlyOption::LeaseBased
                    && self.ticks_since_start < u64::from(self.config.election_timeout_ticks);
                if (in_lease || just_started) && !transfer {
                    self.count_drop(DropReason::LeaderLease);
                    return;
                }
            }
            match message.body {
                // A pre-vote request does not change our term, and a granted pre-vote answer
                // echoes the term we would campaign in: neither is news about the cluster's term.
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(message.term, message.from);
                }
                _ => self.become_follower(message.term, NodeId::NONE),
            }
        } else if message.term < self.term {
            self.count_drop(DropReason::StaleTerm);
            match message.body {
                // Tell a stale leader or candidate our term so it steps down; never act on it.
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.send(
                        message.from,
                        self.term,
                        MessageBody::HeartbeatResponse { round: 0 },
                    );
                }
                MessageBody::RequestVote { pre_vote, .. } => {
                    self.send(
                        message.from,
                        self.term,
                        MessageBody::RequestVoteResponse {
                            pre_vote,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return;
        }

        match message.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                transfer: _,
            } => self.handle_vote_request(
                message.from,
                message.term,
                pre_vote,
                last_log_index,
                last_log_term,
            ),
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(message.from, message.term, pre_vote, granted)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => self.handle_append(
                message.from,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            ),
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(message.from, response)
            }
            MessageBody::Heartbeat { commit, round } => {
                self.handle_heartbeat(message.from, commit, round)
            }
            MessageBody::HeartbeatResponse { round } => {
                self.handle_heartbeat_response(message.from, round)
            }
            MessageBody::Propose { entries } => {
                for data in entries {
                    // Only normal commands travel this way; a refused one is the sender's to
                    // retry (it never sees it applied).
                    if self.propose_entry(EntryKind::Normal, data).is_err() {
                        self.count_drop(DropReason::ProposalRefused);
                    }
                }
            }
            MessageBody::ReadIndex { context } => {
                if self.role == Role::Leader {
                    self.leader_read(context, message.from);
                } else {
                    self.send(
                        message.from,
                        self.term,
                        MessageBody::ReadIndexResponse {
                            context,
                            index: None,
                        },
                    );
                }
            }
            MessageBody::ReadIndexResponse { context, index } => {
                if self.role == Role::Leader {
                    self.count_drop(DropReason::UnexpectedInRole);
                } else if self
                    .reads
                    .forward_request
                    .is_some_and(|(id, _)| id == context)
                {
                    self.answer_forwarded_reads(index);
                }
                // Otherwise it answers a request given up on: its reads were asked again.
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.handle_install_snapshot(message.from, snapshot)
            }
            MessageBody::TimeoutNow => {
                if self.role == Role::Leader {
                    self.count_drop(DropReason::UnexpectedInRole);
                } else {
                    self.campaign_for_transfer();
                }
            }
        }
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        // After the term check, `term >= self.term`; for a pre-vote it may be higher.
        let can_vote = self.vote == from
            || (self.vote == NodeId::NONE && self.leader == NodeId::NONE)
            || (pre_vote && term > self.term);
        let up_to_date = self.faults.vote_without_log_check
            || self.log.is_up_to_date(last_log_index, last_log_term);
        if can_vote && up_to_date {
            if !pre_vote {
                self.vote = from;
                self.election_elapsed = 0;
            }
            // Answer in the requester's term, so a granted pre-vote is counted for the election
            // it probes.
            self.send(
                from,
                term,
                MessageBody::RequestVoteResponse {
                    pre_vote,
                    granted: true,
                },
            );
        } else {
            self.send(
                from,
                self.term,
                MessageBody::RequestVoteResponse {
                    pre_vote,
                    granted: false,
                },
            );
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate if pre_vote => self.term.next(),
            Role::Candidate if !pre_vote => self.term,
            _ => {
                self.count_drop(DropReason::UnexpectedInRole);
                return;
            }
        };
        // A rejected pre-vote comes back in the responder's term, which may equal ours.
        if granted && term != expected {
            self.count_drop(DropReason::StaleResponse);
            return;
        }
        if !self.is_voter(from) {
            self.count_drop(DropReason::UnknownSender);
            return;
        }
        self.record_vote(from, granted);
        self.poll_votes(pre_vote);
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if self.role == Role::Leader {
            // Two leaders in one term is impossible; a peer claiming it is broken.
            self.count_drop(DropReason::Malformed);
            return;
        }
        self.become_follower_of(from);
        let committed = self.log.committed();
        if prev_log_index < committed {
            // Everything up to our commit index is settled; this append is older than that.
            self.send(
                from,
                self.term,
                MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                    match_index: committed,
                }),
            );
            return;
        }
        match self
            .log
            .maybe_append(prev_log_index, prev_log_term, entries)
        {
            Ok(last_new) => {
                let commit = leader_commit.min(last_new);
                self.log.commit_to(commit);
                self.send(
                    from,
                    self.term,
                    MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                        match_index: last_new,
                    }),
                );
            }
            Err(AppendError::ConflictsWithCommitted(_)) => {
                self.count_drop(DropReason::Malformed);
            }
            Err(AppendError::Mismatch) => {
                let hint = prev_log_index.min(self.log.last_index());
                let hint_index = self.log.find_conflict_by_term(hint, prev_log_term);
                let hint_term = self.log.term_if_present(hint_index).unwrap_or(Term::ZERO);
                self.send(
                    from,
                    self.term,
                    MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                        rejected_index: prev_log_index,
                        hint_index,
                        hint_term,
                    }),
                );
            }
        }
    }

    /// Entries must be consecutive from `prev + 1`, with non-decreasing terms not above the
    /// leader's term and not below `prev_term`.
    fn entries_are_well_formed(
        prev_log_index: LogIndex,
        prev_log_term: Term,
        leader_term: Term,
        entries: &[Entry],
    ) -> bool {
        if prev_log_term > leader_term
            || (prev_log_index == LogIndex::ZERO && prev_log_term != Term::ZERO)
        {
            return false;
        }
        let mut expected_index = prev_log_index.next();
        let mut last_term = prev_log_term;
        for entry in entries {
            if entry.index != expected_index
                || entry.term < last_term
                || entry.term > leader_term
                || (entry.kind == EntryKind::Empty && !entry.data.is_empty())
            {
                return false;
            }
            expected_index = expected_index.next();
            last_term = entry.term;
        }
        true
    }

    /// Accepts `leader` for the current term (the caller checked `term == self.term`).
    fn become_follower_of(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            // A candidate or pre-candidate that hears from the leader of its term yields.
            self.become_follower(self.term, leader);
        }
        self.leader = leader;
        self.election_elapsed = 0;
    }

    fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, round: u64) {
        if self.role == Role::Leader {
            self.count_drop(DropReason::Malformed);
            return;
        }
        self.become_follower_of(from);
        if commit > self.log.last_index() {
            // The leader only sends a commit index we have matched; a larger one comes from a
            // broken peer. Clamping it would commit a tail nobody confirmed matches the leader.
            self.count_drop(DropReason::Malformed);
        } else {
            self.log.commit_to(commit);
        }
        self.send(from, self.term, MessageBody::HeartbeatResponse { round });
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(position) = self.progress.iter().position(|p| p.id == from) else {
            return;
        };
        let progress = &mut self.progress[position];
        progress.recent_active = true;
        progress.probe_sent = false;
        if round > progress.acked_round && round <= self.reads.round {
            progress.acked_round = round;
            self.advance_reads();
        }
        let progress = &mut self.progress[position];
        if progress.state == ProgressState::Replicate && progress.match_index < last {
            // Acknowledgements normally arrive between heartbeats. If several heartbeats pass
            // while the follower stays behind, the tail of the pipeline was lost (a dropped or
            // reordered append): fall back to probing from the match index.
            progress.stalled_heartbeats += 1;
            if progress.stalled_heartbeats >= STALLED_HEARTBEATS_BEFORE_PROBE {
                progress.become_probe();
            }
        }
        if progress.match_index < last {
            self.send_appends(position, false);
            // A probing follower may need an empty append to learn where we match.
            let progress = &self.progress[position];
            if progress.state == ProgressState::Probe && !progress.probe_sent {
                self.send_appends(position, true);
            }
        }
    }

    fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        if self.role != Role::Leader {
            self.count_drop(DropReason::UnexpectedInRole);
            return;
        }
        let last = self.log.last_index();
        let Some(position) = self.progress.iter().position(|p| p.id == from) else {
            self.count_drop(DropReason::UnknownSender);
            return;
        };
        self.progress[position].recent_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last {
                    self.count_drop(DropReason::Malformed);
                    return;
                }
                let progress = &mut self.progress[position];
                if !progress.maybe_update(match_index) {
                    // Nothing new (an answer to a commit announcement or a duplicate): there may
                    // still be room to send after a probe was answered.
                    self.send_appends(position, false);
                    return;
                }
                match progress.state {
                    ProgressState::Probe => progress.become_replicate(),
                    ProgressState::Replicate => progress.inflights.free_up_to(match_index),
                    ProgressState::Snapshot { pending_index } => {
                        if match_index >= pending_index {
                            progress.become_replicate();
                        }
                    }
                }
                if self.maybe_commit() {
                    // Everyone hears of the new commit index with the next flush, once per batch.
                    self.pending_broadcast = true;
                }
                if from == self.lead_transferee && match_index == self.log.last_index() {
                    self.timeout_now_sent = true;
                    self.send(from, self.term, MessageBody::TimeoutNow);
                }
                self.send_appends(position, false);
            }
            AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                if rejected_index > last || hint_index > rejected_index {
                    self.count_drop(DropReason::Malformed);
                    return;
                }
                let probe_index = if hint_term > Term::ZERO {
                    self.log.find_conflict_by_term(hint_index, hint_term)
                } else {
                    hint_index
                };
                if self.progress[position].maybe_decrease_to(rejected_index, probe_index) {
                    self.send_appends(position, true);
                } else {
                    self.count_drop(DropReason::StaleResponse);
                }
            }
        }
    }

    /// Advances the commit index to what a majority holds, but only through an entry of the
    /// current term (Raft §5.4.2, Figure 8). Returns whether it moved.
    fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let candidate = quorum::joint_committed_index(
            &self.conf.voters,
            &self.conf.voters_outgoing,
            |id| {
                progress
                    .iter()
                    .find(|p| p.id == id)
                    .map_or(LogIndex::ZERO, |p| p.match_index)
            },
            &mut self.match_scratch,
        );
        if candidate <= self.log.committed() {
            return false;
        }
        if !self.faults.commit_old_term_by_counting
            && self.log.term_if_present(candidate) != Some(self.term)
        {
            return false;
        }
        self.log.commit_to(candidate);
        if !self.reads.awaiting_term_commit.is_empty() && self.committed_in_current_term() {
            let waiting = std::mem::take(&mut self.reads.awaiting_term_commit);
            for (context, from) in waiting {
                self.leader_read(context, from);
            }
        }
        while self
            .uncommitted
            .front()
            .is_some_and(|(index, _)| *index <= candidate)
        {
            let (_, size) = self.uncommitted.pop_front().expect("checked");
            self.uncommitted_bytes -= size;
        }
        true
    }

    /// The embedder made entries up to `(index, term)` durable. On a leader this counts as its
    /// own acknowledgement, which may commit.
    pub fn on_persisted(&mut self, index: LogIndex, term: Term) {
        self.log.stable_to(index, term);
        if self.role == Role::Leader && self.log.matches(index, term) {
            let id = self.id;
            if let Some(progress) = self.progress_mut(id) {
                progress.maybe_update(index);
            }
            if self.maybe_commit() {
                self.pending_broadcast = true;
            }
        }
    }

    /// Checks the node's invariants; returns a description of the first violated one. The O(1)
    /// checks run after every step in debug builds; the simulator calls this after every event.
    pub fn check_invariants(&self) -> Result<(), String> {
        let committed = self.log.committed();
        let applied = self.log.applied();
        let last = self.log.last_index();
        if applied > committed {
            return Err(format!("applied {applied} > committed {committed}"));
        }
        if committed > last {
            return Err(format!("committed {committed} > last index {last}"));
        }
        if self.role == Role::Leader {
            if self.leader != self.id {
                return Err("leader does not name itself as leader".into());
            }
            if self.vote != self.id {
                return Err("leader did not vote for itself".into());
            }
            for progress in &self.progress {
                if progress.match_index >= progress.next_index {
                    return Err(format!(
                        "progress of {}: match {} >= next {}",
                        progress.id, progress.match_index, progress.next_index
                    ));
                }
                if progress.match_index > last {
                    return Err(format!(
                        "progress of {}: match {} beyond last index {last}",
                        progress.id, progress.match_index
                    ));
                }
            }
        }
        if self.role == Role::Candidate && self.vote != self.id {
            return Err("candidate did not vote for itself".into());
        }
        Ok(())
    }
}

/// Why a node could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewNodeError {
    /// The configuration is invalid.
    Config(crate::config::ConfigError),
    /// The durable state could not be read or is inconsistent.
    Storage(StorageError),
}

impl fmt::Display for NewNodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewNodeError::Config(error) => error.fmt(f),
            NewNodeError::Storage(error) => write!(f, "cannot read durable state: {error}"),
        }
    }
}

impl std::error::Error for NewNodeError {}
