//! The embedder's interface: feed inputs (`tick`, `step`, `propose`), collect a [`Ready`] of
//! work, do it, and acknowledge durability with [`RawNode::on_persisted`].
//!
//! The contract, in the order an embedder follows it for each `Ready`:
//! 1. Send `ready.messages` at once (in parallel with the write; they do not depend on it).
//! 2. Make `ready.hard_state` and `ready.entries` durable, in the order the Readies were produced
//!    (a later Ready's entries may overwrite an earlier one's tail), then write them into the
//!    [`Storage`] the node reads and call [`RawNode::on_persisted`] with the Ready's number.
//! 3. Only then send `ready.persisted_messages`: they promise durable state (a vote, an
//!    acknowledged append).
//! 4. Apply `ready.committed_entries` to the state machine in order. They are always durable
//!    locally and committed cluster-wide.

use crate::config::Config;
use crate::message::Message;
use crate::raft::{
    DropReason, Faults, NewNodeError, ProposeError, Raft, ReadIndexError, ReadState, TransferError,
};
use crate::storage::Storage;
use crate::tracker::Progress;
use crate::types::{
    ConfState, Entry, HardState, LogIndex, NodeId, Role, Snapshot, SoftState, Term,
};
use bytes::Bytes;
use std::collections::VecDeque;

/// One batch of work for the embedder. See the module docs for the order of operations.
#[derive(Debug, Default)]
pub struct Ready {
    /// Acknowledge with `on_persisted(number)` once the writes below are durable. Numbers grow by
    /// one per Ready.
    pub number: u64,
    /// The new role/leader, if either changed since the previous Ready.
    pub soft_state: Option<SoftState>,
    /// A snapshot from the leader to persist (before `entries`, which follow it) and to restore
    /// the state machine from (before applying `committed_entries`).
    pub snapshot: Option<Snapshot>,
    /// The hard state to persist, if it changed since the previous Ready.
    pub hard_state: Option<HardState>,
    /// Whether the writes must be synced before `persisted_messages` leave: entries, a
    /// snapshot, or a new term or vote. A hard state whose only change is a higher commit index
    /// need not be (as etcd's `MustSync` says): Raft does not need the commit index durable,
    /// and a member that comes back with an older one replays less and learns the rest.
    pub must_sync: bool,
    /// Entries to append to the durable log (possibly overwriting a conflicting tail).
    pub entries: Vec<Entry>,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Messages to send only after this Ready's writes are durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Results of read-index requests: serve each read once `index` is applied.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether the embedder must write (and sync) anything before acknowledging.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// A snapshot of a node's state for status reports and tests.
#[derive(Clone, Debug)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Durable state.
    pub hard_state: HardState,
    /// Role and leader.
    pub soft_state: SoftState,
    /// Highest index handed to the state machine.
    pub applied: LogIndex,
    /// Last index in the log.
    pub last_index: LogIndex,
    /// The leader's view of each member (empty on followers).
    pub progress: Vec<Progress>,
}

/// What one handed-out Ready asked to write, to mark it stable when acknowledged.
#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    number: u64,
    /// Whether the Ready asked for any write (an empty one completes at once).
    has_writes: bool,
    snapshot_index: Option<LogIndex>,
    last_entry: Option<(LogIndex, Term)>,
}

/// A Raft node driven by its embedder.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    previous_soft_state: SoftState,
    previous_hard_state: HardState,
    next_ready_number: u64,
    /// The Readies not yet acknowledged, oldest first.
    unacknowledged: VecDeque<PendingWrite>,
    /// Ticks since a write was last acknowledged while some are outstanding.
    ticks_without_storage_progress: u32,
}

impl<S: Storage> RawNode<S> {
    /// Builds a node over `storage`, which holds whatever this member has made durable before
    /// (nothing, for a brand-new member: then the storage's configuration names the initial
    /// members).
    pub fn new(config: &Config, storage: S) -> Result<RawNode<S>, NewNodeError> {
        let raft = Raft::new(config, storage)?;
        let previous_hard_state = raft.hard_state();
        Ok(RawNode {
            previous_soft_state: raft.soft_state(),
            previous_hard_state,
            raft,
            next_ready_number: 1,
            unacknowledged: VecDeque::new(),
            ticks_without_storage_progress: 0,
        })
    }

    /// Advances logical time by one tick (elections, heartbeats, CheckQuorum).
    pub fn tick(&mut self) {
        let writing = self.unacknowledged.iter().any(|write| write.has_writes);
        if writing {
            self.ticks_without_storage_progress += 1;
            if self.ticks_without_storage_progress == self.raft.storage_stall_ticks() {
                self.raft.set_storage_stalled(true);
            }
        }
        self.raft.tick();
        self.debug_check();
    }

    /// Whether the node's writes are stalled (see `Config::storage_stall_ticks`).
    pub fn storage_stalled(&self) -> bool {
        self.ticks_without_storage_progress >= self.raft.storage_stall_ticks()
    }

    /// How many times this node stepped down as leader because its storage stalled.
    pub fn storage_stall_step_downs(&self) -> u64 {
        self.raft.storage_stall_step_downs()
    }

    /// Feeds a message from another member. Malformed or irrelevant messages are dropped and
    /// counted (see [`RawNode::dropped`]); nothing from outside can panic the node.
    pub fn step(&mut self, message: Message) {
        self.raft.step(message);
        self.debug_check();
    }

    /// Proposes a command; on the leader, returns the index and term it will have if committed.
    /// Commitment is learned from `committed_entries`: if a different entry turns up at that
    /// index, the proposal was lost (for example to a leader change).
    pub fn propose(&mut self, data: Bytes) -> Result<(LogIndex, Term), ProposeError> {
        let result = self.raft.propose(data);
        self.debug_check();
        result
    }

    /// On a follower or learner: sends a command to the known leader to be proposed there
    /// (see [`crate::raft::Raft::forward_proposal`]) and returns that leader. The command's
    /// fate is learned only by applying the log.
    pub fn forward_proposal(&mut self, data: Bytes) -> Result<NodeId, ProposeError> {
        let result = self.raft.forward_proposal(data);
        self.debug_check();
        result
    }

    /// Proposes a membership change (see [`crate::confchange`]): one at a time, and not before a
    /// new leader has applied its first entry.
    pub fn propose_conf_change(
        &mut self,
        change: &crate::confchange::ConfChange,
    ) -> Result<(LogIndex, Term), ProposeError> {
        let result = self.raft.propose_conf_change(change);
        self.debug_check();
        result
    }

    /// Switches configuration; call it when applying a committed `ConfChange` entry, in log
    /// order. Returns the configuration now in force.
    pub fn apply_conf_change(
        &mut self,
        change: &crate::confchange::ConfChange,
    ) -> Result<ConfState, crate::confchange::ConfChangeError> {
        let result = self.raft.apply_conf_change(change);
        self.debug_check();
        result
    }

    /// How many membership changes this node applied.
    pub fn conf_changes_applied(&self) -> u64 {
        self.raft.conf_changes_applied()
    }

    /// Starts a linearizable read (ReadIndex, dissertation §6.4). `context` identifies it and must
    /// be unique among reads in flight; the answer arrives as a [`ReadState`] in a later Ready.
    /// Many reads share one heartbeat round, and a follower asks its leader once for many.
    pub fn read_index(&mut self, context: u64) -> Result<(), ReadIndexError> {
        let result = self.raft.read_index(context);
        self.debug_check();
        result
    }

    /// Hands leadership to `target`; proposals are refused until it completes or is abandoned
    /// (after an election timeout).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        let result = self.raft.transfer_leader(target);
        self.debug_check();
        result
    }

    /// The member leadership is being handed to, or `NodeId::NONE`.
    pub fn lead_transferee(&self) -> NodeId {
        self.raft.lead_transferee()
    }

    /// Whether this leader may serve reads from its lease right now (lease-based reads only).
    pub fn lease_is_valid(&self) -> bool {
        self.raft.lease_is_valid()
    }

    /// Starts an election at once (tests, and embedders that know the leader is gone).
    pub fn campaign(&mut self) {
        self.raft.campaign();
        self.debug_check();
    }

    /// Whether `ready()` would return any work.
    pub fn has_ready(&self) -> bool {
        self.raft.soft_state() != self.previous_soft_state
            || self.raft.hard_state() != self.previous_hard_state
            || self.raft.log.has_unpersisted()
            || self.raft.log.has_unpersisted_snapshot()
            || !self.raft.messages.is_empty()
            || !self.raft.messages_after_persist.is_empty()
            || self.raft.has_pending_flush()
            || self.raft.log.has_entries_to_apply()
            || self.raft.has_read_states()
    }

    /// Collects all pending work. Call it after a batch of inputs; everything it returns must be
    /// carried out as the module docs describe.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush();
        let soft_state = self.raft.soft_state();
        let hard_state = self.raft.hard_state();
        // The snapshot first: handing it out moves the applied index past it, so no entry it
        // replaces is handed out for applying.
        let snapshot = self.raft.log.take_unpersisted_snapshot();
        let snapshot_index = snapshot.as_ref().map(|s| s.metadata.index);
        let entries = self.raft.log.take_unpersisted();
        let number = self.next_ready_number;
        self.next_ready_number += 1;
        let last_entry = entries.last().map(|entry| (entry.index, entry.term));
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard_state.term != self.previous_hard_state.term
            || hard_state.vote != self.previous_hard_state.vote;
        let ready = Ready {
            number,
            soft_state: (soft_state != self.previous_soft_state).then_some(soft_state),
            snapshot,
            hard_state: (hard_state != self.previous_hard_state).then_some(hard_state),
            must_sync,
            entries,
            messages: std::mem::take(&mut self.raft.messages),
            persisted_messages: std::mem::take(&mut self.raft.messages_after_persist),
            committed_entries: self
                .raft
                .log
                .take_entries_to_apply(self.raft.committed_bytes_per_ready()),
            read_states: self.raft.take_read_states(),
        };
        self.previous_soft_state = soft_state;
        self.previous_hard_state = hard_state;
        let has_writes = ready.must_persist();
        self.unacknowledged.push_back(PendingWrite {
            number,
            has_writes,
            snapshot_index,
            last_entry,
        });
        ready
    }

    /// The embedder has made the writes of Ready `number` (and of every earlier Ready) durable
    /// and visible through the storage.
    pub fn on_persisted(&mut self, number: u64) {
        while let Some(&write) = self.unacknowledged.front() {
            if write.number > number {
                break;
            }
            self.unacknowledged.pop_front();
            if self.ticks_without_storage_progress >= self.raft.storage_stall_ticks() {
                self.raft.set_storage_stalled(false);
            }
            self.ticks_without_storage_progress = 0;
            if let Some(index) = write.snapshot_index {
                self.raft.log.stable_snapshot_to(index);
            }
            if let Some((index, term)) = write.last_entry {
                self.raft.on_persisted(index, term);
            }
        }
        self.debug_check();
    }

    /// The transport reports whether a snapshot sent to `to` was delivered; a failure makes the
    /// leader retry instead of waiting (see `Config::snapshot_timeout_ticks`).
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        self.raft.report_snapshot(to, delivered);
    }

    /// The transport could not reach `to`; replication to it falls back to probing.
    pub fn report_unreachable(&mut self, to: NodeId) {
        self.raft.report_unreachable(to);
    }

    /// Snapshots sent as leader, and installed from a leader (for statistics).
    pub fn snapshot_counts(&self) -> (u64, u64) {
        (self.raft.snapshots_sent(), self.raft.snapshots_installed())
    }

    /// Whether a leader's snapshot is being installed (handed out, not yet durable). The storage
    /// still holds the log it replaces: no compaction until it is done.
    pub fn has_pending_snapshot(&self) -> bool {
        self.raft.log.has_pending_snapshot()
    }

    /// The applied index as the core sees it (entries and snapshots handed out).
    pub fn applied(&self) -> LogIndex {
        self.raft.log.applied()
    }

    /// The storage, for reading.
    pub fn storage(&self) -> &S {
        self.raft.log.storage()
    }

    /// The storage, for writing the entries and hard state of a Ready before `on_persisted`.
    pub fn storage_mut(&mut self) -> &mut S {
        self.raft.log.storage_mut()
    }

    /// Current facts about the node.
    pub fn status(&self) -> Status {
        Status {
            id: self.raft.id,
            hard_state: HardState {
                term: self.raft.term,
                vote: self.raft.vote,
                commit: self.raft.log.committed(),
            },
            soft_state: self.raft.soft_state(),
            applied: self.raft.log.applied(),
            last_index: self.raft.log.last_index(),
            progress: if self.raft.role() == Role::Leader {
                self.raft.progress().to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.raft.term()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.raft.role()
    }

    /// The known leader.
    pub fn leader(&self) -> NodeId {
        self.raft.leader()
    }

    /// The commit index.
    pub fn committed(&self) -> LogIndex {
        self.raft.log.committed()
    }

    /// The last index of the log (durable or not).
    pub fn last_index(&self) -> LogIndex {
        self.raft.log.last_index()
    }

    /// The term of the entry at `index`, if held.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.raft.log.term_if_present(index)
    }

    /// Entries in `[low, high)` as the node sees them (durable or not).
    pub fn entries(&self, low: LogIndex, high: LogIndex) -> Vec<Entry> {
        self.raft.log.slice(low, high, u64::MAX).unwrap_or_default()
    }

    /// The configuration in force.
    pub fn conf_state(&self) -> &ConfState {
        self.raft.conf_state()
    }

    /// How many messages were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.raft.dropped(reason)
    }

    /// How many real elections this node has started.
    pub fn elections_started(&self) -> u64 {
        self.raft.elections_started()
    }

    /// Installs deliberately broken rules, for tests that prove the checkers have teeth.
    pub fn set_faults(&mut self, faults: Faults) {
        self.raft.set_faults(faults);
    }

    /// Checks the node's invariants (see [`Raft::check_invariants`]).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.raft.check_invariants()
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions)
            && let Err(violation) = self.raft.check_invariants()
        {
            panic!("raft invariant violated on {}: {violation}", self.raft.id);
        }
    }
}
