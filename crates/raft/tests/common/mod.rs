//! A deterministic in-memory cluster of [`RawNode`]s over [`MemStorage`], plus helpers to build a
//! single node in a given state and look at exactly what one event makes it do.
//!
//! Everything is single-threaded and deterministic: a "network" is a FIFO queue of messages, a
//! "disk" is the node's own `MemStorage`, and time only moves when a test calls `tick`. By
//! default a Ready's write completes at once; `deliver_chaotic` can also leave writes pending
//! (a slow disk) and lose them on a crash, and reorder, delay, duplicate and drop messages, all
//! drawn from a seeded [`Rng`]. The harness checks, for every `Ready` it handles, the durability
//! contract (no promise of durable state leaves before the write), that committed entries are
//! already durable locally, that there is at most one leader per term, and that no two members
//! ever apply different entries at the same index.

#![allow(dead_code)]

use bytes::Bytes;
use raft::{
    AppendResponse, ConfState, Config, Entry, EntryKind, HardState, LogIndex, MemStorage, Message,
    MessageBody, NodeId, ProposeError, RawNode, Ready, Rng, Role, SoftState, Storage, Term,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Shorthand for a node id.
pub fn id(n: u64) -> NodeId {
    NodeId(n)
}

/// The payload used for a pre-built log entry: unique per (index, term), so divergent logs are
/// visibly different.
pub fn payload(index: u64, term: u64) -> Bytes {
    Bytes::from(format!("i{index}t{term}"))
}

/// Entries at `first, first+1, ...` with the given terms (normal entries with [`payload`]s).
pub fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(offset, &term)| {
            let index = first + offset as u64;
            Entry {
                term: Term(term),
                index: LogIndex(index),
                kind: EntryKind::Normal,
                data: payload(index, term),
            }
        })
        .collect()
}

/// A log whose entries have the given terms, from index 1.
pub fn log_of_terms(terms: &[u64]) -> Vec<Entry> {
    entries(1, terms)
}

/// A message from `from` to `to` in `term`.
pub fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

/// A vote request body.
pub fn vote_request(last_log_index: u64, last_log_term: u64) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        transfer: false,
    }
}

/// A pre-vote request body.
pub fn pre_vote_request(last_log_index: u64, last_log_term: u64) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: true,
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        transfer: false,
    }
}

/// A vote response body.
pub fn vote_response(pre_vote: bool, granted: bool) -> MessageBody {
    MessageBody::RequestVoteResponse { pre_vote, granted }
}

/// An append body.
pub fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::AppendEntries {
        prev_log_index: LogIndex(prev_index),
        prev_log_term: Term(prev_term),
        entries,
        leader_commit: LogIndex(commit),
    }
}

/// An accepted-append response body.
pub fn accepted(match_index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
        match_index: LogIndex(match_index),
    })
}

/// A rejected-append response body.
pub fn rejected(rejected_index: u64, hint_index: u64, hint_term: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
        rejected_index: LogIndex(rejected_index),
        hint_index: LogIndex(hint_index),
        hint_term: Term(hint_term),
    })
}

/// Whether a message promises durable state of its sender (a real vote grant, an append
/// acknowledgement or rejection, or a candidate's vote request that relies on its persisted term
/// and self-vote). Such a message must never be in `Ready::messages`.
pub fn promises_durable_state(message: &Message) -> bool {
    matches!(
        message.body,
        MessageBody::AppendEntriesResponse(_)
            | MessageBody::RequestVote {
                pre_vote: false,
                ..
            }
            | MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true
            }
    )
}

/// A `Ready` without its number, comparable as a whole: what one event made a node do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
}

impl From<&Ready> for Output {
    fn from(ready: &Ready) -> Output {
        Output {
            soft_state: ready.soft_state,
            hard_state: ready.hard_state,
            entries: ready.entries.clone(),
            messages: ready.messages.clone(),
            persisted_messages: ready.persisted_messages.clone(),
            committed_entries: ready.committed_entries.clone(),
        }
    }
}

/// The default test configuration: T = 10, H = 1, PreVote and CheckQuorum on.
pub fn config(node: u64) -> Config {
    Config::new(NodeId(node))
}

/// A storage holding `log` and `hard_state`, in a cluster of `voters`.
pub fn storage_with(voters: &[u64], log: &[Entry], hard_state: HardState) -> MemStorage {
    let mut storage =
        MemStorage::new_with_conf_state(ConfState::with_voters(voters.iter().copied().map(NodeId)));
    storage.append(log);
    storage.set_hard_state(hard_state);
    storage
}

/// A hard state.
pub fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: LogIndex(commit),
    }
}

/// A node `node` of cluster `voters`, restarted from `log` and `hard_state`, with its initial
/// (empty-of-news) Ready already drained so that the next Ready shows only what the test does.
pub fn node_with(
    node: u64,
    voters: &[u64],
    log: &[Entry],
    hard_state: HardState,
    tweak: impl FnOnce(&mut Config),
) -> RawNode<MemStorage> {
    let mut config = config(node);
    tweak(&mut config);
    // The state machine has applied what the hard state says is committed: restarting does not
    // hand it out again, so outputs stay focused on the event under test.
    config.applied = hard_state.commit;
    let mut raw = RawNode::new(&config, storage_with(voters, log, hard_state)).expect("valid node");
    while raw.has_ready() {
        persist(&mut raw);
    }
    raw
}

/// Takes one Ready, writes it into the node's storage, acknowledges it and returns it (so the
/// test can look at everything it contained).
pub fn persist(node: &mut RawNode<MemStorage>) -> Ready {
    let ready = node.ready();
    write_ready(node, &ready);
    node.on_persisted(ready.number);
    ready
}

/// Takes one Ready and returns its comparable contents, after persisting it.
pub fn output(node: &mut RawNode<MemStorage>) -> Output {
    Output::from(&persist(node))
}

/// Writes a Ready's hard state and entries into the node's storage (not yet acknowledged).
pub fn write_ready(node: &mut RawNode<MemStorage>, ready: &Ready) {
    if let Some(snapshot) = &ready.snapshot {
        node.storage_mut().apply_snapshot(snapshot.clone());
    }
    if let Some(hard_state) = ready.hard_state {
        node.storage_mut().set_hard_state(hard_state);
    }
    node.storage_mut().append(&ready.entries);
}

/// One member of a [`Cluster`].
pub struct Member {
    /// The configuration the member (re)starts with.
    pub config: Config,
    /// The node. Its storage is its "disk": it survives `crash`.
    pub node: RawNode<MemStorage>,
    /// Every entry handed to the state machine since the last (re)start, in order.
    pub applied: Vec<Entry>,
    /// Whether the member is running (a stopped member neither ticks nor receives).
    pub up: bool,
    /// Readies taken whose writes have not completed yet, oldest first.
    pub pending_writes: VecDeque<Ready>,
    /// The member's disk hangs: writes are taken but never complete (until it recovers).
    pub disk_hung: bool,
}

/// How badly `Cluster::deliver_chaotic` treats messages (percent per message).
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkFaults {
    /// Lost.
    pub loss_percent: u64,
    /// Held back to a later round (reordering across rounds).
    pub delay_percent: u64,
    /// Delivered twice.
    pub duplicate_percent: u64,
    /// (The disk.) A Ready's write completes only in a later round, while the node goes on.
    pub slow_write_percent: u64,
}

/// A message the harness saw leave a node, and on which channel.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The message.
    pub message: Message,
    /// Whether it came from `persisted_messages` (sent after the write).
    pub after_persist: bool,
}

/// Looks at (and may rewrite) a message on the wire; returns true to drop it.
pub type Interceptor = Box<dyn FnMut(&mut Message) -> bool>;

/// A deterministic in-memory cluster.
pub struct Cluster {
    /// The members, by id.
    pub members: BTreeMap<NodeId, Member>,
    /// Messages sent and not yet delivered, in order.
    pub network: VecDeque<Message>,
    /// Directed links `(from, to)` that drop every message.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    interceptors: Vec<Interceptor>,
    /// Every message that left a node (when `record_sent` is on), in order.
    pub sent: Vec<Sent>,
    /// Whether to record `sent`.
    pub record_sent: bool,
    /// Messages delivered to a node's `step`.
    pub delivered: u64,
    /// Messages the network dropped (cut links, filters, stopped members).
    pub dropped: u64,
    /// When set, the debug form of every Ready handled, prefixed by the node id.
    pub ready_trace: Option<Vec<String>>,
    /// The leader seen in each term: at most one, or the harness panics.
    pub leaders_by_term: BTreeMap<Term, NodeId>,
    /// The first entry applied anywhere at each index; every other member must apply the same.
    pub chosen: BTreeMap<LogIndex, Entry>,
    /// Safety violations seen, when they are not fatal.
    pub violations: Vec<String>,
    /// Whether a safety violation panics at once (the default) or is only recorded.
    pub violations_are_fatal: bool,
    /// Deliberately broken rules installed on every member, also after restarts.
    pub faults: raft::Faults,
    /// Read-index results handed out, by the member that handed them out, in order.
    pub read_states: Vec<(NodeId, raft::ReadState)>,
}

impl Cluster {
    /// A brand-new cluster of members `1..=n`, each with `config(id)` changed by `tweak`.
    pub fn new(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        Cluster::with_logs(n, tweak, |_| (Vec::new(), HardState::default()))
    }

    /// A brand-new cluster of members `1..=n` bootstrapped the way a real cluster is: the founding
    /// configuration is entry 1 of every log, so members added later learn it by replication.
    pub fn bootstrapped(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let mut cluster = Cluster::new(n, &tweak);
        let founders = raft::ConfState::with_voters((1..=n).map(NodeId));
        for node in 1..=n {
            let member = cluster.members.get_mut(&NodeId(node)).expect("member");
            let storage = MemStorage::bootstrap(&founders);
            member.node = RawNode::new(&member.config, storage).expect("valid node");
        }
        // Apply entry 1 everywhere: the configuration takes effect.
        cluster.deliver_all();
        cluster
    }

    /// A cluster of members `1..=n` whose storages start from the log and hard state that
    /// `state(id)` returns (to build a situation by hand).
    pub fn with_logs(
        n: u64,
        tweak: impl Fn(&mut Config),
        state: impl Fn(u64) -> (Vec<Entry>, HardState),
    ) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let mut members = BTreeMap::new();
        for node in 1..=n {
            let mut config = config(node);
            tweak(&mut config);
            let (log, hard_state) = state(node);
            let storage = storage_with(&voters, &log, hard_state);
            let raw = RawNode::new(&config, storage).expect("valid node");
            members.insert(
                NodeId(node),
                Member {
                    config,
                    node: raw,
                    applied: Vec::new(),
                    up: true,
                    pending_writes: VecDeque::new(),
                    disk_hung: false,
                },
            );
        }
        Cluster {
            members,
            network: VecDeque::new(),
            cut: BTreeSet::new(),
            interceptors: Vec::new(),
            sent: Vec::new(),
            record_sent: true,
            delivered: 0,
            dropped: 0,
            ready_trace: None,
            leaders_by_term: BTreeMap::new(),
            chosen: BTreeMap::new(),
            violations: Vec::new(),
            violations_are_fatal: true,
            faults: raft::Faults::default(),
            read_states: Vec::new(),
        }
    }

    /// The ids of all members.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// A member's node.
    pub fn node(&self, node: u64) -> &RawNode<MemStorage> {
        &self.members[&NodeId(node)].node
    }

    /// A member's node, mutably (to feed it by hand).
    pub fn node_mut(&mut self, node: u64) -> &mut RawNode<MemStorage> {
        &mut self
            .members
            .get_mut(&NodeId(node))
            .expect("member exists")
            .node
    }

    /// Entries a member's state machine received since its last (re)start.
    pub fn applied(&self, node: u64) -> &[Entry] {
        &self.members[&NodeId(node)].applied
    }

    /// The application payloads a member applied (no-ops left out), in order.
    pub fn applied_data(&self, node: u64) -> Vec<Bytes> {
        self.applied(node)
            .iter()
            .filter(|entry| entry.kind == EntryKind::Normal)
            .map(|entry| entry.data.clone())
            .collect()
    }

    /// Installs deliberately broken rules on every member (kept across restarts).
    pub fn set_faults(&mut self, faults: raft::Faults) {
        self.faults = faults;
        for member in self.members.values_mut() {
            member.node.set_faults(faults);
        }
    }

    /// Ticks one member once.
    pub fn tick(&mut self, node: u64) {
        self.node_mut(node).tick();
    }

    /// Ticks every running member once, in id order.
    pub fn tick_all(&mut self) {
        for member in self.members.values_mut() {
            if member.up {
                member.node.tick();
            }
        }
    }

    /// `ticks` rounds of: tick every running member, then deliver until quiet.
    pub fn run_ticks(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.tick_all();
            self.deliver_all();
        }
    }

    /// Ticks and delivers until `done` holds; returns the number of ticks it took. Panics after
    /// `max_ticks`.
    pub fn run_until(&mut self, max_ticks: u32, mut done: impl FnMut(&Cluster) -> bool) -> u32 {
        for elapsed in 0..=max_ticks {
            if done(self) {
                return elapsed;
            }
            self.tick_all();
            self.deliver_all();
        }
        panic!("condition not reached within {max_ticks} ticks");
    }

    /// Starts an election on `node` now.
    pub fn campaign(&mut self, node: u64) {
        self.node_mut(node).campaign();
    }

    /// Adds a brand-new member `node` that knows nothing yet (empty configuration and log), as a
    /// new server joins before the leader adds it. It only starts to matter once a membership
    /// change names it.
    pub fn add_member(&mut self, node: u64, tweak: impl Fn(&mut Config)) {
        let mut config = config(node);
        tweak(&mut config);
        let raw = RawNode::new(&config, MemStorage::default()).expect("valid node");
        self.members.insert(
            NodeId(node),
            Member {
                config,
                node: raw,
                applied: Vec::new(),
                up: true,
                pending_writes: VecDeque::new(),
                disk_hung: false,
            },
        );
    }

    /// Makes `node`'s disk hang (no write completes) or recover.
    pub fn hang_disk(&mut self, node: u64, hung: bool) {
        self.members
            .get_mut(&NodeId(node))
            .expect("member exists")
            .disk_hung = hung;
    }

    /// Makes `node` campaign and delivers until quiet; asserts that it won.
    pub fn elect(&mut self, node: u64) {
        self.campaign(node);
        self.deliver_all();
        assert_eq!(
            self.leader(),
            Some(NodeId(node)),
            "node {node} should have won the election"
        );
    }

    /// Proposes `data` on `node` (not delivered yet).
    pub fn propose(&mut self, node: u64, data: &[u8]) -> Result<(LogIndex, Term), ProposeError> {
        self.node_mut(node).propose(Bytes::copy_from_slice(data))
    }

    /// The running leader of the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .iter()
            .filter(|(_, member)| member.up && member.node.role() == Role::Leader)
            .max_by_key(|(_, member)| member.node.term())
            .map(|(id, _)| *id)
    }

    /// All running members that currently believe they are leader.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, member)| member.up && member.node.role() == Role::Leader)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Cuts both directions between `a` and every other member.
    pub fn isolate(&mut self, node: u64) {
        for other in self.ids() {
            if other != NodeId(node) {
                self.cut.insert((NodeId(node), other));
                self.cut.insert((other, NodeId(node)));
            }
        }
    }

    /// Splits the cluster: members in different groups cannot talk to each other.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            self.cut.insert((NodeId(x), NodeId(y)));
                        }
                    }
                }
            }
        }
    }

    /// Cuts the one-way link `from -> to`.
    pub fn cut_link(&mut self, from: u64, to: u64) {
        self.cut.insert((NodeId(from), NodeId(to)));
    }

    /// Restores every link (filters stay).
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Drops every message for which `drop` returns true (until `clear_filters`).
    pub fn add_filter(&mut self, mut drop: impl FnMut(&Message) -> bool + 'static) {
        self.interceptors
            .push(Box::new(move |message: &mut Message| drop(message)));
    }

    /// Rewrites every message on the wire with `rewrite` (until `clear_filters`).
    pub fn add_rewrite(&mut self, mut rewrite: impl FnMut(&mut Message) + 'static) {
        self.interceptors
            .push(Box::new(move |message: &mut Message| {
                rewrite(message);
                false
            }));
    }

    /// Removes all message filters and rewrites.
    pub fn clear_filters(&mut self) {
        self.interceptors.clear();
    }

    /// Stops a member: it loses its volatile state, receives nothing and does not tick, until
    /// `restart`.
    pub fn stop(&mut self, node: u64) {
        let member = self.members.get_mut(&NodeId(node)).expect("member exists");
        member.up = false;
        // Writes not completed are lost.
        member.pending_writes.clear();
    }

    /// Restarts a member from what its storage holds (everything it acknowledged is durable in
    /// this harness), with a fresh state machine that re-applies the committed log.
    pub fn restart(&mut self, node: u64) {
        let member = self.members.get_mut(&NodeId(node)).expect("member exists");
        let storage = member.node.storage().clone();
        member.node = RawNode::new(&member.config, storage).expect("restart");
        member.node.set_faults(self.faults);
        member.applied.clear();
        member.up = true;
    }

    /// Kills and restarts a member at once: volatile state (role, leader, progress, timers,
    /// applied state) is lost, durable state (hard state, log) is kept.
    pub fn crash(&mut self, node: u64) {
        self.stop(node);
        self.restart(node);
    }

    /// Removes a member from the cluster and returns its node (to drive it by hand).
    pub fn take_node(&mut self, node: u64) -> RawNode<MemStorage> {
        self.members
            .remove(&NodeId(node))
            .expect("member exists")
            .node
    }

    /// Handles every pending Ready of every running member (in id order) once or more, until
    /// none has work. Returns whether anything was handled.
    pub fn process_readies(&mut self) -> bool {
        let mut any = false;
        for node in self.ids() {
            if self.members[&node].up && self.complete_writes(node, usize::MAX) > 0 {
                any = true;
            }
            while self.members[&node].up && self.members[&node].node.has_ready() {
                self.handle_ready(node);
                any = true;
            }
        }
        any
    }

    /// Delivers the messages queued now (those they cause are queued behind). Returns whether
    /// there were any.
    pub fn deliver_pending(&mut self) -> bool {
        let batch: Vec<Message> = self.network.drain(..).collect();
        let any = !batch.is_empty();
        for message in batch {
            self.deliver(message);
        }
        any
    }

    /// Delivers one message through the network's rules (cuts, filters, stopped members).
    pub fn deliver(&mut self, mut message: Message) {
        let cut = self.cut.contains(&(message.from, message.to));
        let mut filtered = false;
        for intercept in &mut self.interceptors {
            if intercept(&mut message) {
                filtered = true;
                break;
            }
        }
        match self.members.get_mut(&message.to) {
            Some(member) if member.up && !cut && !filtered => {
                self.delivered += 1;
                member.node.step(message);
                if let Err(violation) = member.node.check_invariants() {
                    panic!("invariant violated on {}: {violation}", member.config.id);
                }
            }
            _ => self.dropped += 1,
        }
    }

    /// Handles Readies and delivers messages until the cluster is quiet.
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            let worked = self.process_readies();
            let delivered = self.deliver_pending();
            if !worked && !delivered {
                return;
            }
        }
        panic!("the cluster did not become quiet");
    }

    /// Like `deliver_all` for at most `rounds` rounds, but the network reorders, delays,
    /// duplicates and loses messages, as chosen by `rng` (each a percentage per message).
    pub fn deliver_chaotic(&mut self, rng: &mut Rng, faults: NetworkFaults, rounds: usize) {
        for _ in 0..rounds {
            let mut worked = false;
            for node in self.ids() {
                if !self.members[&node].up {
                    continue;
                }
                let pending = self.members[&node].pending_writes.len();
                if pending > 0 && rng.chance(1, 2) {
                    let count = 1 + rng.below(pending as u64) as usize;
                    self.complete_writes(node, count);
                }
                worked |= !self.members[&node].pending_writes.is_empty();
                while self.members[&node].node.has_ready() {
                    let defer = rng.chance(faults.slow_write_percent, 100);
                    self.take_ready(node, defer);
                    worked = true;
                }
            }
            let mut batch: Vec<Message> = self.network.drain(..).collect();
            if !worked && batch.is_empty() {
                return;
            }
            for i in (1..batch.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                batch.swap(i, j);
            }
            for message in batch {
                if rng.chance(faults.loss_percent, 100) {
                    self.dropped += 1;
                } else if rng.chance(faults.delay_percent, 100) {
                    self.network.push_back(message);
                } else {
                    if rng.chance(faults.duplicate_percent, 100) {
                        self.deliver(message.clone());
                    }
                    self.deliver(message);
                }
            }
        }
    }

    /// Handles one Ready of `node` the way a correct embedder does (writing it at once),
    /// checking the core's side of the contract on the way.
    pub fn handle_ready(&mut self, node: NodeId) {
        self.take_ready(node, false);
    }

    /// Takes one Ready of `node`, checks it and sends its `messages`; its write completes now,
    /// or later (`defer_write`) with [`Cluster::complete_writes`], in order. A crash loses the
    /// writes still pending, like a power loss loses unsynced data.
    pub fn take_ready(&mut self, node: NodeId, defer_write: bool) {
        let member = self.members.get_mut(&node).expect("member exists");
        let ready = member.node.ready();
        if let Some(trace) = &mut self.ready_trace {
            trace.push(format!("{node}: {ready:?}"));
        }
        for message in &ready.messages {
            assert!(
                !promises_durable_state(message),
                "{node} would send {message:?} before its writes are durable"
            );
        }
        // Committed entries must already be durable here: they are in storage before this Ready's
        // own writes happen.
        for entry in &ready.committed_entries {
            assert_eq!(
                member.node.storage().term(entry.index),
                Ok(entry.term),
                "{node} hands out committed entry {} before it is durable",
                entry.index
            );
        }
        let role = member.node.role();
        let term = member.node.term();
        self.read_states
            .extend(ready.read_states.iter().map(|state| (node, *state)));
        // 1. Send what may go now.
        let outgoing = ready.messages.clone();
        member.pending_writes.push_back(ready);
        self.send_all(outgoing, false);
        if role == Role::Leader {
            let previous = *self.leaders_by_term.entry(term).or_insert(node);
            if previous != node {
                self.violation(format!("two leaders in {term}: {previous} and {node}"));
            }
        }
        if !defer_write {
            self.complete_writes(node, usize::MAX);
        }
    }

    /// Completes up to `count` pending writes of `node`, oldest first: write, acknowledge, send
    /// the messages that waited for the write, apply. Returns how many completed.
    pub fn complete_writes(&mut self, node: NodeId, count: usize) -> usize {
        let mut completed = 0;
        while completed < count {
            let member = self.members.get_mut(&node).expect("member exists");
            if member.disk_hung {
                break;
            }
            let Some(ready) = member.pending_writes.pop_front() else {
                break;
            };
            completed += 1;
            // 2. Write, then acknowledge.
            write_ready(&mut member.node, &ready);
            member.node.on_persisted(ready.number);
            // 3. Send what needed the write. 4. Apply (membership changes switch the
            // configuration, as an embedder does when it applies them).
            for entry in &ready.committed_entries {
                if entry.kind == raft::EntryKind::ConfChange {
                    let change = raft::ConfChange::decode(&entry.data).expect("valid change");
                    if let Ok(conf) = member.node.apply_conf_change(&change) {
                        member.node.storage_mut().set_conf_state(conf);
                    }
                }
            }
            member
                .applied
                .extend(ready.committed_entries.iter().cloned());
            self.send_all(ready.persisted_messages, true);
            for entry in ready.committed_entries {
                self.check_chosen(node, entry);
            }
        }
        completed
    }

    fn send_all(&mut self, messages: Vec<Message>, after_persist: bool) {
        for message in messages {
            if self.record_sent {
                self.sent.push(Sent {
                    message: message.clone(),
                    after_persist,
                });
            }
            self.network.push_back(message);
        }
    }

    fn check_chosen(&mut self, node: NodeId, entry: Entry) {
        match self.chosen.get(&entry.index) {
            None => {
                self.chosen.insert(entry.index, entry);
            }
            Some(first) if *first == entry => {}
            Some(first) => {
                let message = format!(
                    "{node} applied {:?} at {} where {:?} was applied before",
                    (entry.term, &entry.data),
                    entry.index,
                    (first.term, &first.data)
                );
                self.violation(message);
            }
        }
    }

    fn violation(&mut self, description: String) {
        if self.violations_are_fatal {
            panic!("safety violation: {description}");
        }
        self.violations.push(description);
    }

    /// Messages recorded in `sent` that match `predicate`.
    pub fn count_sent(&self, predicate: impl Fn(&Message) -> bool) -> usize {
        self.sent
            .iter()
            .filter(|sent| predicate(&sent.message))
            .count()
    }

    /// Asserts that every running member has applied exactly the same entries (the cluster is
    /// converged), and returns how many that is.
    pub fn assert_converged(&self) -> usize {
        let mut reference: Option<(&NodeId, Vec<(LogIndex, Term)>)> = None;
        for (id, member) in &self.members {
            if !member.up {
                continue;
            }
            let applied: Vec<(LogIndex, Term)> = member
                .applied
                .iter()
                .map(|entry| (entry.index, entry.term))
                .collect();
            match &reference {
                None => reference = Some((id, applied)),
                Some((first, expected)) => {
                    if &applied != expected {
                        let differ = applied.iter().zip(expected).position(|(a, b)| a != b);
                        panic!(
                            "{id} applied {} entries, {first} applied {}; first difference at \
                             position {differ:?}; last: {:?} vs {:?}",
                            applied.len(),
                            expected.len(),
                            applied.last(),
                            expected.last()
                        );
                    }
                }
            }
        }
        reference.map_or(0, |(_, applied)| applied.len())
    }
}

/// Whether `message` is an AppendEntries rejection.
pub fn is_rejection(message: &Message) -> bool {
    matches!(
        message.body,
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected { .. })
    )
}

/// Whether `message` is an AppendEntries (with or without entries).
pub fn is_append(message: &Message) -> bool {
    matches!(message.body, MessageBody::AppendEntries { .. })
}

/// The number of entries an AppendEntries carries (0 for other messages).
pub fn entry_count(message: &Message) -> usize {
    match &message.body {
        MessageBody::AppendEntries { entries, .. } => entries.len(),
        _ => 0,
    }
}

/// A random but fully seeded schedule: ticks, proposals on the leader, crashes, partitions and
/// heals, over a network that loses, delays, duplicates and reorders messages. The harness checks
/// safety all along; afterwards everything is healed and the cluster must converge (liveness).
pub fn chaos_run(seed: u64, members: u64, steps: usize, trace: bool) -> Cluster {
    let mut cluster = chaos_faults(seed, members, steps, trace);
    heal_and_converge(&mut cluster, seed);
    cluster
}

/// The fault phase of [`chaos_run`] only.
pub fn chaos_faults(seed: u64, members: u64, steps: usize, trace: bool) -> Cluster {
    let cluster = Cluster::new(members, |c| {
        c.seed = seed.wrapping_mul(1000).wrapping_add(c.id.get());
        c.max_inflight_msgs = 4;
        c.max_size_per_msg = 400;
    });
    chaos_schedule(cluster, seed, steps, trace)
}

/// Runs the random fault schedule of [`chaos_faults`] on a cluster built by the caller.
pub fn chaos_schedule(mut cluster: Cluster, seed: u64, steps: usize, trace: bool) -> Cluster {
    let members = cluster.members.len() as u64;
    let mut rng = Rng::new(seed);
    cluster.record_sent = false;
    if trace {
        cluster.ready_trace = Some(Vec::new());
    }
    // Swarm testing: each seed draws its own fault rates, so some runs are gentle and some are
    // brutal.
    let faults = NetworkFaults {
        loss_percent: rng.below(20),
        delay_percent: rng.below(30),
        duplicate_percent: rng.below(10),
        slow_write_percent: rng.below(50),
    };
    let crash_percent = rng.below(6);
    let mut proposals = 0u64;
    for _ in 0..steps {
        match rng.below(100) {
            0..=59 => cluster.tick_all(),
            60..=84 => {
                if let Some(leader) = cluster.leader() {
                    let data = format!("s{seed}-p{proposals}");
                    if cluster.propose(leader.get(), data.as_bytes()).is_ok() {
                        proposals += 1;
                    }
                }
            }
            85..=88 => {
                if rng.chance(crash_percent, 5) {
                    let victim = 1 + rng.below(members);
                    cluster.crash(victim);
                }
            }
            89..=94 => {
                cluster.heal();
                let split = 1 + rng.below(members - 1);
                let mut shuffled: Vec<u64> = (1..=members).collect();
                for i in (1..shuffled.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    shuffled.swap(i, j);
                }
                let (a, b) = shuffled.split_at(split as usize);
                cluster.partition(&[a, b]);
            }
            _ => cluster.heal(),
        }
        cluster.deliver_chaotic(&mut rng, faults, 3);
    }
    cluster
}

/// The liveness phase of [`chaos_run`]: heal everything; a leader is elected and a new write
/// reaches every member. (A write may be lost to a leader change, like any uncommitted
/// proposal; the client then retries, with a new marker.)
pub fn heal_and_converge(cluster: &mut Cluster, seed: u64) {
    let ids: Vec<u64> = cluster.ids().iter().map(|id| id.get()).collect();
    cluster.heal();
    cluster.network.clear();
    for attempt in 0..5 {
        cluster.run_until(500, |c| c.leader().is_some());
        let leader = cluster.leader().expect("leader");
        let marker = format!("s{seed}-final{attempt}");
        if cluster.propose(leader.get(), marker.as_bytes()).is_err() {
            continue;
        }
        for _ in 0..100 {
            let everywhere = ids.iter().all(|&node| {
                cluster
                    .applied(node)
                    .iter()
                    .any(|e| e.data.as_ref() == marker.as_bytes())
            });
            if everywhere {
                // Elections may still settle (a member that was partitioned away can force one
                // more term without PreVote): give the last no-op time to reach everyone.
                cluster.run_until(200, |c| {
                    let lengths: BTreeSet<usize> =
                        c.members.values().map(|m| m.applied.len()).collect();
                    lengths.len() == 1
                });
                cluster.assert_converged();
                return;
            }
            cluster.tick_all();
            cluster.deliver_all();
        }
    }
    panic!("seed {seed}: no write reached every member after healing");
}
