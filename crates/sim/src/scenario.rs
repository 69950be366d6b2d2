//! Controls for hand-written scenario tests: drive the simulated cluster step by step.
//!
//! Scenario tests (`tests/scenarios.rs`) read like specifications: build a situation with
//! crashes and partitions, let virtual time pass, and state the outcome. The helpers here only
//! observe the cluster (through each node's public state) or combine the simulator's public
//! controls, so a scenario exercises exactly the code paths of a seeded run. Commands reach the
//! cluster through the simulator's clients, which retry with the same session sequence, so every
//! scenario also feeds the linearizability check at [`Sim::finish`].

use crate::world::{ELECTION_TICKS, Sim, TICK_US};
use kv::mvcc::{MvccCommand, MvccStore, RangeRequest};
use raft::tracker::Progress;
use raft::{Entry, EntryKind, LogIndex, NodeId, Role, Storage, Term};
use std::collections::BTreeMap;

/// One election timeout (the minimum, `T` ticks) in virtual microseconds.
pub const ELECTION_TIMEOUT_US: u64 = ELECTION_TICKS as u64 * TICK_US;

/// One virtual second.
pub const SECOND_US: u64 = 1_000_000;

impl Sim {
    /// Whether node `id` is running (not crashed).
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// The running nodes.
    pub fn up_ids(&self) -> Vec<NodeId> {
        self.ids()
            .into_iter()
            .filter(|id| self.is_up(*id))
            .collect()
    }

    /// Every running node that believes it is the leader (at most one per term, but a deposed
    /// leader that has not heard of the new term yet may still believe it).
    pub fn leaders(&self) -> Vec<NodeId> {
        self.up_ids()
            .into_iter()
            .filter(|id| self.role_of(*id) == Some(Role::Leader))
            .collect()
    }

    /// The current term of node `id`, if it is up.
    pub fn term_of(&self, id: NodeId) -> Option<Term> {
        self.node(id).map(|node| node.raw().term())
    }

    /// The role of node `id`, if it is up.
    pub fn role_of(&self, id: NodeId) -> Option<Role> {
        self.node(id).map(|node| node.raw().role())
    }

    /// The leader node `id` follows (`NodeId::NONE` if none), if it is up.
    pub fn leader_known_by(&self, id: NodeId) -> Option<NodeId> {
        self.node(id).map(|node| node.raw().leader())
    }

    /// The commit index of node `id` (`LogIndex::ZERO` if it is down).
    pub fn committed_on(&self, id: NodeId) -> LogIndex {
        self.node(id)
            .map_or(LogIndex::ZERO, |node| node.raw().committed())
    }

    /// The last index node `id` applied (`LogIndex::ZERO` if it is down).
    pub fn applied_on(&self, id: NodeId) -> LogIndex {
        self.node(id).map_or(LogIndex::ZERO, |node| node.applied())
    }

    /// The last index of node `id`'s log, durable or not (`LogIndex::ZERO` if it is down).
    pub fn last_index_on(&self, id: NodeId) -> LogIndex {
        self.node(id)
            .map_or(LogIndex::ZERO, |node| node.raw().last_index())
    }

    /// The highest commit index among running nodes.
    pub fn max_committed(&self) -> LogIndex {
        self.up_ids()
            .into_iter()
            .map(|id| self.committed_on(id))
            .max()
            .unwrap_or(LogIndex::ZERO)
    }

    /// The term of the entry at `index` in node `id`'s log (durable or not), if it holds one.
    pub fn term_at(&self, id: NodeId, index: LogIndex) -> Option<Term> {
        self.node(id).and_then(|node| node.raw().term_at(index))
    }

    /// The term of the entry at `index` that node `id` has made durable and acknowledged, if any.
    pub fn durable_term_at(&self, id: NodeId, index: LogIndex) -> Option<Term> {
        let storage = self.node(id)?.raw().storage();
        if index < storage.first_index() || index > storage.last_index() {
            return None;
        }
        storage.term(index).ok()
    }

    /// Node `id`'s log (durable or not) from its first retained entry (index 1 unless the log
    /// was compacted) to its last; empty if the node is down.
    pub fn log_on(&self, id: NodeId) -> Vec<Entry> {
        self.node(id).map_or_else(Vec::new, |node| {
            let first = node.raw().storage().first_index();
            node.raw().entries(first, node.raw().last_index().next())
        })
    }

    /// The index and term of every retained entry of node `id`'s log; empty if it is down.
    pub fn log_terms(&self, id: NodeId) -> Vec<(LogIndex, Term)> {
        self.log_on(id)
            .iter()
            .map(|entry| (entry.index, entry.term))
            .collect()
    }

    /// The entry at `index` in node `id`'s log (durable or not), if it holds it.
    pub fn entry_at(&self, id: NodeId, index: LogIndex) -> Option<Entry> {
        let node = self.node(id)?;
        node.raw().entries(index, index.next()).into_iter().next()
    }

    /// The client commands node `id` has applied and still holds in its log (all of them unless
    /// the log was compacted), in log order, with their indices. Entries that are not client
    /// commands (leader no-ops, member commands) are skipped.
    pub fn applied_requests(&self, id: NodeId) -> Vec<(LogIndex, MvccCommand)> {
        let Some(node) = self.node(id) else {
            return Vec::new();
        };
        let first = node.raw().storage().first_index();
        node.raw()
            .entries(first, node.applied().next())
            .into_iter()
            .filter(|entry| entry.kind == EntryKind::Normal)
            .filter_map(|entry| {
                MvccCommand::decode(&entry.data)
                    .ok()
                    .map(|command| (entry.index, command))
            })
            .collect()
    }

    /// The value node `id`'s state machine holds for the simulator's client key `key` (a local,
    /// possibly stale read), decoded as the clients encode values.
    pub fn applied_value(&self, id: NodeId, key: u64) -> Option<u64> {
        let node = self.node(id)?;
        let range = RangeRequest::new(crate::world::key_bytes(key), bytes::Bytes::new());
        let answer = node.state_machine().mvcc().range(&range).ok()?;
        let kv = answer.kvs.first()?;
        crate::world::decode_value(&kv.value)
    }

    /// Node `id`'s keyspace revision: one more than the number of changes its state machine
    /// carried out (a retry answered from a session changes nothing).
    pub fn revision_on(&self, id: NodeId) -> Option<i64> {
        self.node(id)
            .map(|node| node.state_machine().mvcc().current_revision())
    }

    /// The revision node `id`'s keyspace would have if it had applied each distinct command of
    /// its log once, in log order: equal to [`Sim::revision_on`] unless a retried command was
    /// carried out twice. Needs the whole log (no compaction).
    pub fn revision_applying_each_command_once(&self, id: NodeId) -> Option<i64> {
        self.node(id)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut store = MvccStore::new();
        for (_, command) in self.applied_requests(id) {
            if seen.insert((command.client_id, command.sequence)) {
                let _ = store.apply_command(command);
            }
        }
        Some(store.current_revision())
    }

    /// Messages sent by all nodes so far (including those the network then dropped).
    pub fn messages_sent(&self) -> u64 {
        self.stats().messages
    }

    /// Elections started so far by all nodes (candidacies, not pre-votes).
    pub fn elections_started(&self) -> u64 {
        self.stats().elections
    }

    /// What `leader` currently knows about `follower`'s log, if `leader` is up and leads.
    pub fn progress_of(&self, leader: NodeId, follower: NodeId) -> Option<Progress> {
        let node = self.node(leader)?;
        if node.raw().role() != Role::Leader {
            return None;
        }
        node.raw()
            .status()
            .progress
            .into_iter()
            .find(|progress| progress.id == follower)
    }

    /// A leader that a majority of the cluster (itself included) follows in its term, and that
    /// has committed an entry of its term: its office is established, not just claimed.
    pub fn established_leader(&self) -> Option<NodeId> {
        let majority = self.ids().len() / 2 + 1;
        self.leaders().into_iter().find(|&leader| {
            let term = self.term_of(leader);
            let followers = self
                .up_ids()
                .into_iter()
                .filter(|id| self.term_of(*id) == term && self.leader_known_by(*id) == Some(leader))
                .count();
            let committed = self.committed_on(leader);
            followers >= majority && self.term_at(leader, committed) == term
        })
    }

    /// Runs until some node is leader, for at most `timeout_us`; returns it.
    pub fn wait_for_leader(&mut self, timeout_us: u64) -> Option<NodeId> {
        self.run_until_condition(timeout_us, |sim| sim.leader().is_some());
        self.leader()
    }

    /// Runs until a leader is established (see [`Sim::established_leader`]), for at most
    /// `timeout_us`; returns it.
    pub fn wait_for_established_leader(&mut self, timeout_us: u64) -> Option<NodeId> {
        self.run_until_condition(timeout_us, |sim| sim.established_leader().is_some());
        self.established_leader()
    }

    /// Runs until one of `candidates` is leader, for at most `timeout_us`; returns it.
    pub fn wait_for_leader_among(
        &mut self,
        candidates: &[NodeId],
        timeout_us: u64,
    ) -> Option<NodeId> {
        let among = |sim: &Sim| sim.leader().filter(|leader| candidates.contains(leader));
        self.run_until_condition(timeout_us, |sim| among(sim).is_some());
        among(self)
    }

    /// Runs until one of `candidates` is an established leader (see
    /// [`Sim::established_leader`]), for at most `timeout_us`; returns it.
    pub fn wait_for_established_leader_among(
        &mut self,
        candidates: &[NodeId],
        timeout_us: u64,
    ) -> Option<NodeId> {
        let among = |sim: &Sim| {
            sim.established_leader()
                .filter(|leader| candidates.contains(leader))
        };
        self.run_until_condition(timeout_us, |sim| among(sim).is_some());
        among(self)
    }

    /// Runs for `duration_us`, calling `watch` before the first event and after every event.
    /// Stops early if a safety violation is found (the caller asserts there is none).
    pub fn run_watching(&mut self, duration_us: u64, mut watch: impl FnMut(&Sim)) {
        self.run_until_condition(duration_us, |sim| {
            watch(sim);
            false
        });
    }

    /// Cuts node `id` off from every other node (clients still reach it).
    pub fn isolate(&mut self, id: NodeId) {
        let rest: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|other| *other != id)
            .collect();
        self.partition(&[vec![id], rest]);
    }

    /// Crashes every node at the same instant.
    pub fn crash_all(&mut self) {
        for id in self.ids() {
            self.crash(id);
        }
    }

    /// Restarts every crashed node.
    pub fn restart_all(&mut self) {
        for id in self.ids() {
            self.restart(id);
        }
    }

    /// Client operations that have completed with a known outcome.
    pub fn operations_completed(&self) -> usize {
        self.history()
            .iter()
            .filter(|operation| operation.outcome_known())
            .count()
    }

    /// Client operations still waiting for an answer.
    pub fn operations_pending(&self) -> usize {
        self.history()
            .iter()
            .filter(|operation| operation.ret.is_none())
            .count()
    }

    /// Every client issues exactly one more write, all at once, and then stops (the liveness
    /// phase of the simulator: this also restarts every node and heals the network; faults may be
    /// installed again right after). A batch of `options.clients` concurrent proposals.
    pub fn clients_write_once(&mut self) {
        self.start_clients();
        self.heal_all();
    }

    /// Whether every running node has applied the same entries, entry for entry, compared over
    /// the indices every node still holds.
    pub fn applied_logs_agree(&self) -> bool {
        let applied = |id: NodeId| -> Vec<Entry> {
            let applied = self.applied_on(id);
            let mut log = self.log_on(id);
            log.retain(|entry| entry.index <= applied);
            log
        };
        let logs: Vec<Vec<Entry>> = self.up_ids().into_iter().map(applied).collect();
        let Some(first) = logs
            .iter()
            .map(|log| log.first().map_or(LogIndex::ZERO, |e| e.index))
            .max()
        else {
            return false;
        };
        let trimmed: Vec<&[Entry]> = logs
            .iter()
            .map(|log| {
                let skip = log.iter().take_while(|entry| entry.index < first).count();
                &log[skip..]
            })
            .collect();
        trimmed.windows(2).all(|pair| pair[0] == pair[1])
    }
}

/// Watches how leaders find where each follower's log matches theirs, by looking at the
/// leader's progress for every follower after every event.
///
/// A `search_rejections` step is a rejected append that moved the follower's next index back
/// before the leader of the term knew any index where the follower matches it: the probing that
/// repairs a divergent log. With the term-skipping hint of a rejection it grows with the number
/// of conflicting terms, not with the number of conflicting entries. A `pipeline_rewinds` step
/// moved the next index back after a match was known: a pipelined append was rejected (it
/// arrived out of order, or one before it was lost) and the leader resent from the match.
#[derive(Clone, Debug, Default)]
pub struct ProbeCounter {
    leader: Option<(NodeId, Term)>,
    next: BTreeMap<NodeId, LogIndex>,
    /// Backward moves of the next index before a match was known, per follower.
    pub search_rejections: BTreeMap<NodeId, u64>,
    /// Backward moves of the next index after a match was known, per follower.
    pub pipeline_rewinds: BTreeMap<NodeId, u64>,
}

impl ProbeCounter {
    /// A counter that has seen nothing yet.
    pub fn new() -> ProbeCounter {
        ProbeCounter::default()
    }

    /// Looks at the leader's view of every follower; call after every event.
    pub fn observe(&mut self, sim: &Sim) {
        let Some(leader) = sim.leader() else {
            return;
        };
        let term = sim.term_of(leader).unwrap_or(Term::ZERO);
        if self.leader != Some((leader, term)) {
            // A new leader starts from its own last index and knows no match yet.
            self.leader = Some((leader, term));
            self.next.clear();
        }
        for follower in sim.ids().into_iter().filter(|id| *id != leader) {
            let Some(progress) = sim.progress_of(leader, follower) else {
                continue;
            };
            if let Some(previous) = self.next.insert(follower, progress.next_index)
                && progress.next_index < previous
            {
                let counter = if progress.match_index == LogIndex::ZERO {
                    &mut self.search_rejections
                } else {
                    &mut self.pipeline_rewinds
                };
                *counter.entry(follower).or_default() += 1;
            }
        }
    }

    /// The most search steps any one follower needed.
    pub fn max_search_rejections(&self) -> u64 {
        self.search_rejections.values().copied().max().unwrap_or(0)
    }

    /// Forgets the counts (keeps tracking the current leader).
    pub fn reset_counts(&mut self) {
        self.search_rejections.clear();
        self.pipeline_rewinds.clear();
    }
}
