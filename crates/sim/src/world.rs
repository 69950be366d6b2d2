//! The simulated world: nodes, their disks, the network, clients, the nemesis, and the event
//! queue that orders everything in virtual time.

use crate::checker::{Checker, EntryPrint, Violation};
use crate::options::Options;
use bytes::Bytes;
use lincheck::{Input, Operation, Output};
use machine::{EtcdMachine, MachineResponse};
use node::{Action, Node, PersistTask, RequestError};
use raft::{
    ConfState, Config, HardState, LogIndex, Message, MessageBody, NodeId, ProposeError, Rng, Role,
};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

mod disk;
mod etcd_ops;
use disk::NodeDisk;
pub use disk::{DurableLog, WAL_DIR};
pub use etcd_ops::{Answer, decode_value, key_bytes, value_bytes};
use etcd_ops::{
    command_bytes, compaction, compaction_answer_ok, read_answer, read_query, request_for,
};

/// Where each node keeps its keyspace's value file, beside its WAL on its simulated disk.
pub const VALUE_FILE: &str = "/raftkv/values";

/// Virtual microseconds per Raft tick.
pub const TICK_US: u64 = 10_000;
/// Election timeout in ticks (T): followers time out after `[T, 2T)` ticks.
pub const ELECTION_TICKS: u32 = 10;
/// Heartbeat interval in ticks (H).
pub const HEARTBEAT_TICKS: u32 = 2;
/// A client retries elsewhere after this long without an answer.
const CLIENT_TIMEOUT_US: u64 = 300_000;
/// How long a client waits before retrying after a redirect or a dropped proposal.
const CLIENT_BACKOFF_US: u64 = 5_000;

/// Counters that show what a run exercised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Elections started (candidacies, not pre-votes).
    pub elections: u64,
    /// Entries known committed at the end.
    pub commits: u64,
    /// Virtual microseconds simulated.
    pub virtual_us: u64,
    /// Events processed.
    pub events: u64,
    /// Messages sent by nodes.
    pub messages: u64,
    /// Messages dropped by loss or partitions.
    pub messages_dropped: u64,
    /// Client operations recorded.
    pub operations: u64,
    /// Client operations that completed.
    pub operations_ok: u64,
    /// Client operations abandoned with an unknown outcome.
    pub operations_unknown: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Reads served through ReadIndex (not through the log).
    pub reads_by_read_index: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Snapshots installed by followers.
    pub snapshots_installed: u64,
    /// Log compactions taken by nodes.
    pub compactions: u64,
    /// Keyspace compactions (etcd's `Compact`) the clients asked for.
    pub compactions_requested: u64,
    /// Membership changes applied (distinct log indices).
    pub conf_changes: u64,
    /// Disk hangs injected.
    pub disk_hangs: u64,
    /// Partitions installed.
    pub partitions: u64,
    /// Crashes after which WAL recovery cut a torn write off the last segment.
    pub wal_torn_tails: u64,
    /// The longest segment chain a recovered WAL had.
    pub wal_max_segments: u64,
    /// Persist tasks the nodes handed to their disks (each a round trip through the writer).
    pub persist_tasks: u64,
    /// Virtual microseconds from the heal to the first leader, the first completed write, and
    /// full convergence.
    pub heal_to_leader_us: Option<u64>,
    /// See `heal_to_leader_us`.
    pub heal_to_write_us: Option<u64>,
    /// See `heal_to_leader_us`.
    pub heal_to_converged_us: Option<u64>,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The options the run used (the seed and the fault choice).
    pub options: Options,
    /// Broken properties; empty for a passing run.
    pub violations: Vec<Violation>,
    /// What the run exercised.
    pub stats: Stats,
}

impl Outcome {
    /// Whether every property held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command line that replays this run with a trace.
    pub fn replay_command(&self) -> String {
        self.options.replay_command()
    }
}

#[derive(Debug)]
enum Event {
    Tick {
        node: usize,
        epoch: u64,
    },
    Deliver {
        to: usize,
        message: Message,
    },
    PersistDone {
        node: usize,
        epoch: u64,
    },
    ClientArrive {
        node: usize,
        client: usize,
        attempt: u64,
        data: Bytes,
        /// For a read served by ReadIndex instead of through the log: the key.
        read_key: Option<u64>,
    },
    ClientReply {
        client: usize,
        attempt: u64,
        result: Result<MachineResponse, RequestError>,
    },
    ClientTimeout {
        client: usize,
        attempt: u64,
    },
    ClientRetry {
        client: usize,
        attempt: u64,
    },
    ClientNext {
        client: usize,
    },
    Nemesis,
    Churn,
    Restart {
        node: usize,
    },
}

struct Scheduled {
    at: u64,
    sequence: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest event first.
        (other.at, other.sequence).cmp(&(self.at, self.sequence))
    }
}

struct SimNode {
    id: NodeId,
    node: Option<Node<EtcdMachine>>,
    /// The node's disk and the WAL on it: survives crashes.
    disk: NodeDisk,
    /// Incarnation; events of an earlier incarnation are dropped.
    epoch: u64,
    /// Writes issued to the disk, oldest first, not yet durable.
    in_flight: VecDeque<PersistTask>,
    /// A commit index to record with the next write, or alone at a tick with no write in
    /// flight (as the runtime's driver does with `Action::RecordCommit`).
    pending_commit: Option<HardState>,
    disk_busy_until: u64,
    /// Commit index last checked, for this incarnation.
    checked_commit: LogIndex,
    /// Role last seen, to spot a new leadership.
    last_role: Role,
}

struct Pending {
    /// The operation in the history; `None` for a compaction, which is not a register
    /// operation.
    history_index: Option<usize>,
    data: Bytes,
    /// Set for reads that go through ReadIndex rather than the log.
    read_key: Option<u64>,
}

struct Client {
    id: u64,
    sequence: u64,
    pending: Option<Pending>,
    target: usize,
    attempt: u64,
    /// In the liveness phase: the one write issued after the heal has been started.
    final_write_started: bool,
    /// Values this client has seen per key, to build compare-and-sets that can succeed.
    last_seen: Vec<Option<u64>>,
    /// The highest revision this client has been told of, to pick compactions that can
    /// succeed.
    last_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness { healed_at: u64 },
}

/// The simulated cluster and everything around it.
pub struct Sim {
    options: Options,
    rng: Rng,
    now: u64,
    sequence: u64,
    queue: BinaryHeap<Scheduled>,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    clients_enabled: bool,
    history: Vec<Operation>,
    /// What etcd answered to each operation of `history` (revisions included), once answered.
    answers: Vec<Option<Answer>>,
    checker: Checker,
    /// `cut[from][to]`: messages on this directed link are dropped.
    cut: Vec<Vec<bool>>,
    /// `link_clear_at[from][to]`: when the last in-order message on the link arrives.
    link_clear_at: Vec<Vec<u64>>,
    /// Nodes that were ever members (never added again once removed).
    ever_members: std::collections::BTreeSet<NodeId>,
    /// Indices of membership changes applied somewhere.
    conf_changes_seen: std::collections::BTreeSet<LogIndex>,
    /// Entries a node keeps applied before it compacts (per seed: small, so snapshots happen).
    compaction_gap: u64,
    /// Whether leaders serve reads from their lease (`ReadOnlyOption::LeaseBased`).
    lease_reads: bool,
    /// Whether followers forward clients' commands to the leader (`Node::submit_anywhere`)
    /// instead of refusing them, as the server does.
    forward_proposals: bool,
    /// The byte budget of committed entries a node keeps in memory, if it evicts the rest.
    resident_log_bytes: Option<u64>,
    loss_permille: u64,
    duplicate_permille: u64,
    delay_us: (u64, u64),
    reorder_permille: u64,
    disk_latency_us: (u64, u64),
    /// Per-seed replication limits, so some seeds split batches into many small messages.
    max_size_per_msg: u64,
    max_inflight_msgs: usize,
    phase: Phase,
    stats: Stats,
    actions: Vec<Action<MachineResponse>>,
    trace: bool,
}

impl Sim {
    /// A cluster of `options.nodes` fresh members, all up, with clients ready but not started.
    pub fn new(options: Options) -> Sim {
        let mut rng = Rng::new(options.seed);
        let founders = options.nodes;
        let n = options.nodes + options.spares;
        let conf = ConfState::with_voters((1..=founders as u64).map(NodeId));
        let faults = options.faults;
        let loss_permille = if faults.loss { rng.range(5, 150) } else { 0 };
        let duplicate_permille = if faults.duplicate {
            rng.range(5, 100)
        } else {
            0
        };
        let reorder_permille = if faults.reorder {
            rng.range(50, 300)
        } else {
            0
        };
        let disk_latency_us = if faults.slow_disk {
            (200, rng.range(2_000, 40_000))
        } else {
            (50, 500)
        };
        let trace = options.trace;
        let max_size_per_msg = [128, 512, 4096, 65536][rng.below(4) as usize];
        let max_inflight_msgs = [1, 4, 16, 256][rng.below(4) as usize];
        let compaction_gap = [2, 8, 32, 128][rng.below(4) as usize];
        // Some seeds serve reads from the leader's lease (no clock drift is simulated, so the
        // lease's assumption holds here; what is tested is that leases end on time: at stepping
        // down, at a transfer, and for restarted voters).
        let lease_reads = rng.chance(1, 4);
        // Half the seeds forward proposals. Chosen from the seed itself rather than drawn from
        // `rng`, so every seed's other choices stay what they were.
        let forward_proposals = options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 1;
        // Half the seeds keep only a few hundred bytes or a few KiB of committed entries in
        // memory and read the rest back from the WAL, as the server does with megabytes: every
        // lagging follower, replay and leader change then goes through those reads.
        let evict_bits = options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 & 0b11;
        let resident_log_bytes =
            (evict_bits & 1 == 1).then(|| [300, 4096][(evict_bits >> 1) as usize]);
        let mut sim = Sim {
            max_size_per_msg,
            max_inflight_msgs,
            nodes: (0..n)
                .map(|i| SimNode {
                    id: NodeId(i as u64 + 1),
                    node: None,
                    disk: NodeDisk::create(options.wal.clone(), (i < founders).then_some(&conf)),
                    epoch: 0,
                    in_flight: VecDeque::new(),
                    pending_commit: None,
                    disk_busy_until: 0,
                    checked_commit: LogIndex::ZERO,
                    last_role: Role::Follower,
                })
                .collect(),
            clients: (0..options.clients)
                .map(|i| Client {
                    id: i as u64 + 1,
                    sequence: 0,
                    pending: None,
                    target: i % founders,
                    attempt: 0,
                    final_write_started: false,
                    last_seen: vec![None; options.keys as usize],
                    last_revision: 0,
                })
                .collect(),
            clients_enabled: false,
            history: Vec::new(),
            answers: Vec::new(),
            checker: Checker::default(),
            cut: vec![vec![false; n]; n],
            link_clear_at: vec![vec![0; n]; n],
            ever_members: (1..=founders as u64).map(NodeId).collect(),
            conf_changes_seen: std::collections::BTreeSet::new(),
            compaction_gap,
            lease_reads,
            forward_proposals,
            resident_log_bytes,
            loss_permille,
            duplicate_permille,
            delay_us: (100, 2_000),
            reorder_permille,
            disk_latency_us,
            phase: Phase::Safety,
            stats: Stats::default(),
            actions: Vec::new(),
            trace,
            now: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            rng,
            options,
        };
        for index in 0..n {
            sim.start_node(index);
        }
        sim
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Scheduled {
            at: self.now + delay,
            sequence: self.sequence,
            event,
        });
    }

    fn trace(&self, line: std::fmt::Arguments<'_>) {
        if self.trace {
            println!("{:>10.6}s  {line}", self.now as f64 / 1e6);
        }
    }

    fn node_config(&self, index: usize) -> Config {
        let mut config = Config::new(NodeId(index as u64 + 1));
        config.election_timeout_ticks = ELECTION_TICKS;
        config.heartbeat_interval_ticks = HEARTBEAT_TICKS;
        config.max_size_per_msg = self.max_size_per_msg;
        config.max_inflight_msgs = self.max_inflight_msgs;
        if self.lease_reads {
            config.read_only = raft::ReadOnlyOption::LeaseBased;
        }
        config.seed = self.options.seed
            ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.nodes[index].epoch.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        config
    }

    fn start_node(&mut self, index: usize) {
        let storage = match self.nodes[index].disk.start(self.resident_log_bytes) {
            Ok(storage) => storage,
            Err(error) => {
                let id = self.nodes[index].id;
                // A disk a test damaged on purpose must be refused; anything else is a bug.
                if !self.nodes[index].disk.damaged() {
                    self.checker
                        .fail("wal-recovery", format!("{id} cannot restart: {error}"));
                }
                self.trace(format_args!("n{} refuses to start: {error}", index + 1));
                return;
            }
        };
        let config = self.node_config(index);
        let disk = self.nodes[index].disk.sim_disk().clone();
        let machine = EtcdMachine::with_value_file_on(disk, VALUE_FILE).unwrap_or_else(|error| {
            panic!("node {} cannot create its value file: {error}", index + 1)
        });
        let mut machine = machine;
        machine.set_faults(self.options.machine_faults);
        let mut node = Node::new(&config, storage, machine)
            .unwrap_or_else(|error| panic!("node {} cannot start: {error}", index + 1));
        node.raw_mut().set_faults(self.options.core_faults);
        let sim_node = &mut self.nodes[index];
        // Re-check everything this incarnation holds as committed against the global record.
        sim_node.checked_commit = LogIndex::ZERO;
        sim_node.last_role = Role::Follower;
        sim_node.node = Some(node);
        let epoch = sim_node.epoch;
        // A random phase, so nodes do not tick in lockstep.
        let phase = self.rng.below(TICK_US);
        self.schedule(phase, Event::Tick { node: index, epoch });
        self.trace(format_args!("n{} starts (epoch {epoch})", index + 1));
    }

    /// The current virtual time in microseconds.
    pub fn now_us(&self) -> u64 {
        self.now
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.checker.violations
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The recorded client history.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// The node `id` (if up), for inspection.
    pub fn node(&self, id: NodeId) -> Option<&Node<EtcdMachine>> {
        self.nodes[(id.get() - 1) as usize].node.as_ref()
    }

    /// The node's durable log (survives crashes): what its WAL holds, or after a crash what the
    /// WAL recovered. Implements `raft::Storage`; `hard_state()` gives the durable hard state.
    pub fn disk(&self, id: NodeId) -> &DurableLog {
        self.nodes[(id.get() - 1) as usize].disk.log()
    }

    /// Ids of all nodes.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The leader with the highest term among live nodes, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .filter(|n| n.raw().role() == Role::Leader)
            .max_by_key(|n| n.raw().term())
            .map(|n| n.raw().status().id)
    }

    /// Runs events until virtual time `until_us` (or the queue empties).
    pub fn run_until(&mut self, until_us: u64) {
        while self.queue.peek().is_some_and(|next| next.at <= until_us) {
            self.step();
        }
        self.now = self.now.max(until_us);
    }

    /// Runs for `duration_us` more virtual microseconds.
    pub fn run_for(&mut self, duration_us: u64) {
        self.run_until(self.now + duration_us);
    }

    /// Runs until `condition` holds (checked after every event) or `timeout_us` passes. Returns
    /// whether the condition was met.
    pub fn run_until_condition(
        &mut self,
        timeout_us: u64,
        mut condition: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let deadline = self.now + timeout_us;
        loop {
            if condition(self) {
                return true;
            }
            if !self.checker.violations.is_empty() {
                return false;
            }
            match self.queue.peek() {
                Some(next) if next.at <= deadline => self.step(),
                _ => {
                    self.now = self.now.max(deadline);
                    return condition(self);
                }
            }
        }
    }

    /// Processes the next event.
    fn step(&mut self) {
        let Some(scheduled) = self.queue.pop() else {
            return;
        };
        self.now = scheduled.at;
        self.checker.set_now(self.now);
        self.stats.events += 1;
        match scheduled.event {
            Event::Tick { node, epoch } => {
                if self.nodes[node].epoch == epoch
                    && let Some(n) = self.nodes[node].node.as_mut()
                {
                    n.tick();
                    self.schedule(TICK_US, Event::Tick { node, epoch });
                    if self.nodes[node].in_flight.is_empty()
                        && let Some(hard_state) = self.nodes[node].pending_commit.take()
                        && let Err(error) = self.record_commit(node, hard_state)
                    {
                        let id = self.nodes[node].id;
                        self.checker
                            .fail("wal-write", format!("{id}: WAL write failed: {error}"));
                        self.crash(id);
                        return;
                    }
                    self.drain(node);
                }
            }
            Event::Deliver { to, message } => {
                if self.nodes[to].node.is_some() {
                    if self.trace {
                        let line = format!("n{} <- {}", to + 1, describe(&message));
                        self.trace(format_args!("{line}"));
                    }
                    let n = self.nodes[to].node.as_mut().expect("checked");
                    n.receive(message);
                    self.drain(to);
                }
            }
            Event::PersistDone { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    let task = self.nodes[node]
                        .in_flight
                        .pop_front()
                        .expect("a completion for every issued write");
                    if let Err(error) = self.write_to_disk(node, &task) {
                        let id = self.nodes[node].id;
                        self.checker
                            .fail("wal-write", format!("{id}: WAL write failed: {error}"));
                        self.crash(id);
                        return;
                    }
                    let mut actions = std::mem::take(&mut self.actions);
                    self.nodes[node]
                        .node
                        .as_mut()
                        .expect("an up node for a current-epoch completion")
                        .persisted(task, &mut actions);
                    self.actions = actions;
                    self.drain(node);
                }
            }
            Event::ClientArrive {
                node,
                client,
                attempt,
                data,
                read_key,
            } => {
                if let Some(n) = self.nodes[node].node.as_mut() {
                    let mut actions = std::mem::take(&mut self.actions);
                    match read_key {
                        Some(key) => {
                            n.read(request_id(client, attempt), read_query(key), &mut actions)
                        }
                        None if self.forward_proposals => {
                            n.submit_anywhere(request_id(client, attempt), data, &mut actions)
                        }
                        None => n.submit(request_id(client, attempt), data, &mut actions),
                    }
                    self.actions = actions;
                    self.drain(node);
                }
            }
            Event::ClientReply {
                client,
                attempt,
                result,
            } => self.client_reply(client, attempt, result),
            Event::ClientTimeout { client, attempt } => self.client_timeout(client, attempt),
            Event::ClientRetry { client, attempt } => {
                if self.clients[client].attempt == attempt && self.clients[client].pending.is_some()
                {
                    self.send_attempt(client);
                }
            }
            Event::ClientNext { client } => self.client_next(client),
            Event::Nemesis => self.nemesis(),
            Event::Churn => self.churn(),
            Event::Restart { node } => {
                if self.nodes[node].node.is_none() {
                    self.start_node(node);
                }
            }
        }
        if self.stats.events.is_multiple_of(4096) {
            self.check_log_matching();
        }
    }

    /// Executes everything node `index` wants done, then checks it.
    fn drain(&mut self, index: usize) {
        let mut actions = std::mem::take(&mut self.actions);
        let conf_before = self.nodes[index]
            .node
            .as_ref()
            .map(|node| node.raw().conf_state().clone());
        if let Some(node) = self.nodes[index].node.as_mut() {
            node.poll(&mut actions);
        }
        // Commits first: the actions include applications of what was just committed.
        self.check_commit(index, conf_before.as_ref());
        for action in actions.drain(..) {
            self.execute(index, action);
        }
        self.actions = actions;
        self.check_node(index);
        self.maybe_compact(index);
    }

    fn execute(&mut self, index: usize, action: Action<MachineResponse>) {
        match action {
            Action::Persist(mut task) => {
                self.stats.persist_tasks += 1;
                if let Some(hard_state) = self.nodes[index].pending_commit.take()
                    && task.hard_state.is_none()
                    && task.snapshot.is_none()
                {
                    task.hard_state = Some(hard_state);
                }
                let latency = self
                    .rng
                    .range(self.disk_latency_us.0, self.disk_latency_us.1);
                let sim_node = &mut self.nodes[index];
                let done_at = self.now.max(sim_node.disk_busy_until) + latency;
                sim_node.disk_busy_until = done_at;
                sim_node.in_flight.push_back(task);
                let epoch = sim_node.epoch;
                self.schedule(
                    done_at - self.now,
                    Event::PersistDone { node: index, epoch },
                );
            }
            Action::RecordCommit(hard_state) => self.nodes[index].pending_commit = Some(hard_state),
            Action::Send(message) => self.send(index, message),
            Action::Reply { request, result } => {
                let (client, attempt) = split_request_id(request);
                if client < self.clients.len() {
                    let delay = self.rng.range(self.delay_us.0, self.delay_us.1);
                    self.schedule(
                        delay,
                        Event::ClientReply {
                            client,
                            attempt,
                            result,
                        },
                    );
                }
            }
            Action::RoleChanged { term, soft_state } => {
                self.trace(format_args!(
                    "n{} is {} in {term} (leader {})",
                    index + 1,
                    soft_state.role,
                    soft_state.leader
                ));
                if soft_state.role == Role::Candidate {
                    self.stats.elections += 1;
                }
            }
            Action::ConfChangeReply { .. } => {}
            Action::ConfChanged {
                index: at,
                conf_state,
            } => {
                self.conf_changes_seen.insert(at);
                self.trace(format_args!(
                    "n{} applies a membership change at {at}: {conf_state:?}",
                    index + 1
                ));
            }
            Action::SnapshotInstalled { index: at } => {
                self.stats.snapshots_installed += 1;
                self.trace(format_args!("n{} installs a snapshot at {at}", index + 1));
            }
            Action::Applied { index: at, term } => {
                let id = self.nodes[index].id;
                self.checker.observe_applied(id, at, term);
            }
        }
    }

    fn send(&mut self, from: usize, message: Message) {
        self.stats.messages += 1;
        if let MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        } = message.body
        {
            self.checker
                .observe_vote_granted(message.from, message.term, message.to);
        }
        let to = (message.to.get() as usize).wrapping_sub(1);
        if to >= self.nodes.len() || self.cut[from][to] {
            self.stats.messages_dropped += 1;
            return;
        }
        if self.loss_permille > 0 && self.rng.below(1000) < self.loss_permille {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies =
            if self.duplicate_permille > 0 && self.rng.below(1000) < self.duplicate_permille {
                2
            } else {
                1
            };
        for _ in 1..copies {
            let delay = self.message_delay(from, to);
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    message: message.clone(),
                },
            );
        }
        let delay = self.message_delay(from, to);
        self.schedule(delay, Event::Deliver { to, message });
    }

    /// How long a message from `from` to `to` takes. Links deliver in order, as the TCP streams
    /// of the real transport do, except when the `reorder` fault lets a message fall behind.
    fn message_delay(&mut self, from: usize, to: usize) -> u64 {
        let delay = self.rng.range(self.delay_us.0, self.delay_us.1);
        if self.reorder_permille > 0 && self.rng.below(1000) < self.reorder_permille {
            return delay + self.rng.range(1_000, 40_000);
        }
        let at = (self.now + delay).max(self.link_clear_at[from][to]);
        self.link_clear_at[from][to] = at;
        at - self.now
    }

    /// Writes a persist task through the node's WAL (one record, one sync).
    fn write_to_disk(&mut self, index: usize, task: &PersistTask) -> Result<(), String> {
        let id = self.nodes[index].id;
        if let Some(hard_state) = task.hard_state {
            let before = self.nodes[index].disk.log().hard_state();
            self.checker
                .observe_hard_state_write(id, before, hard_state);
        }
        self.nodes[index].disk.write(task)
    }

    /// Records a commit index through the node's WAL, without a sync.
    fn record_commit(&mut self, index: usize, hard_state: HardState) -> Result<(), String> {
        let id = self.nodes[index].id;
        let before = self.nodes[index].disk.log().hard_state();
        self.checker
            .observe_hard_state_write(id, before, hard_state);
        self.nodes[index].disk.record_commit(hard_state)
    }

    /// Invariants of one node after it handled an event.
    fn check_node(&mut self, index: usize) {
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let raw = node.raw();
        let id = self.nodes[index].id;
        if let Err(violation) = raw.check_invariants() {
            self.checker.observe_node_invariant(id, violation);
        }
        let role = raw.role();
        let term = raw.term();
        self.checker.observe_role(id, term, role);
        if role == Role::Leader && self.nodes[index].last_role != Role::Leader {
            let node = self.nodes[index].node.as_ref().expect("up");
            let first_index = raft::Storage::first_index(node.raw().storage());
            self.checker
                .observe_new_leader(id, first_index, |at| node.raw().term_at(at));
            if let Phase::Liveness { healed_at } = self.phase
                && self.stats.heal_to_leader_us.is_none()
            {
                self.stats.heal_to_leader_us = Some(self.now - healed_at);
            }
        }
        self.nodes[index].last_role = role;
        self.check_commit(index, None);
    }

    /// Committed entries never change, never go back, and are durable on a quorum.
    /// `conf_before`: the configuration before the node applied entries in this event, if it
    /// may have changed since.
    fn check_commit(&mut self, index: usize, conf_before: Option<&ConfState>) {
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let id = self.nodes[index].id;
        let committed = node.raw().committed();
        let checked = self.nodes[index].checked_commit;
        if committed < checked {
            self.checker
                .observe_commit_regression(id, checked, committed);
        } else if committed > checked {
            let entries = node.raw().entries(checked.next(), committed.next());
            let conf = node.raw().conf_state().clone();
            let confs: Vec<&ConfState> = std::iter::once(&conf).chain(conf_before).collect();
            let disks: Vec<(NodeId, &dyn raft::Storage)> = self
                .nodes
                .iter()
                .map(|n| (n.id, n.disk.quorum_view()))
                .collect();
            self.checker.observe_commit(id, &entries, &disks, &confs);
            self.nodes[index].checked_commit = committed;
        }
    }

    fn check_log_matching(&mut self) {
        let logs: Vec<(NodeId, u64, Vec<EntryPrint>)> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref().map(|node| (n.id, node)))
            .map(|(id, node)| {
                let last = node.raw().last_index();
                let first = raft::Storage::first_index(node.raw().storage());
                let prints = node
                    .raw()
                    .entries(first, last.next())
                    .iter()
                    .map(EntryPrint::of)
                    .collect();
                (id, first.get(), prints)
            })
            .collect();
        self.checker.check_log_matching(&logs);
    }

    // ----- clients -----

    /// Lets clients issue operations (each starts after a short random delay).
    pub fn start_clients(&mut self) {
        self.clients_enabled = true;
        for client in 0..self.clients.len() {
            let delay = self.rng.below(10_000);
            self.schedule(delay, Event::ClientNext { client });
        }
    }

    fn client_next(&mut self, client: usize) {
        if !self.clients_enabled || self.clients[client].pending.is_some() {
            return;
        }
        if let Phase::Liveness { .. } = self.phase {
            if self.clients[client].final_write_started {
                return;
            }
            self.clients[client].final_write_started = true;
        }
        let force_write = matches!(self.phase, Phase::Liveness { .. });
        let roll = if force_write { 50 } else { self.rng.below(100) };
        if roll == 99 && self.clients[client].last_revision > 1 {
            self.start_compaction(client);
            return;
        }
        let key = self.rng.below(self.options.keys);
        let c = &mut self.clients[client];
        c.sequence += 1;
        let unique = (c.id << 40) | c.sequence;
        let last_seen = c.last_seen[key as usize];
        let read_index = roll < 40 && self.rng.chance(1, 2);
        let input = if roll < 40 {
            Input::Read
        } else if roll < 75 {
            Input::Write(unique)
        } else if roll < 95 {
            Input::Cas {
                expected: last_seen.unwrap_or(unique ^ 1),
                new: unique,
            }
        } else {
            Input::Delete
        };
        let c = &mut self.clients[client];
        let data = command_bytes(c.id, c.sequence, request_for(input, key));
        self.history.push(Operation {
            client: c.id,
            key,
            call: self.now,
            ret: None,
            input,
            output: Output::Unknown,
        });
        self.answers.push(None);
        self.stats.operations += 1;
        c.pending = Some(Pending {
            history_index: Some(self.history.len() - 1),
            data,
            read_key: read_index.then_some(key),
        });
        self.send_attempt(client);
    }

    /// Compacts the keyspace at a revision a little below the newest this client has seen:
    /// clients race compactions against their own reads and writes, as etcd's do.
    fn start_compaction(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.sequence += 1;
        let below = self.rng.below(8) as i64;
        let revision = (c.last_revision - below).max(1);
        let data = command_bytes(c.id, c.sequence, compaction(revision));
        self.stats.compactions_requested += 1;
        c.pending = Some(Pending {
            history_index: None,
            data,
            read_key: None,
        });
        self.send_attempt(client);
    }

    fn send_attempt(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.attempt += 1;
        let attempt = c.attempt;
        let node = c.target;
        let pending = c.pending.as_ref().expect("pending");
        let data = pending.data.clone();
        let read_key = pending.read_key;
        let delay = self.rng.range(self.delay_us.0, self.delay_us.1);
        self.schedule(
            delay,
            Event::ClientArrive {
                node,
                client,
                attempt,
                data,
                read_key,
            },
        );
        self.schedule(CLIENT_TIMEOUT_US, Event::ClientTimeout { client, attempt });
    }

    fn client_reply(
        &mut self,
        client: usize,
        attempt: u64,
        result: Result<MachineResponse, RequestError>,
    ) {
        if self.clients[client].attempt != attempt || self.clients[client].pending.is_none() {
            return;
        }
        if self.trace {
            let line = format!(
                "client {} attempt {attempt} at n{}: {result:?}",
                client + 1,
                self.clients[client].target + 1
            );
            self.trace(format_args!("{line}"));
        }
        match result {
            Ok(response) => self.complete(client, response),
            Err(RequestError::Refused(ProposeError::NotLeader { leader_hint })) => {
                let n = self.nodes.len();
                // Follow the hint, but not blindly: removed members keep stale hints that can
                // send a client around in circles, so sometimes try any node (as etcd clients
                // rotate endpoints).
                let follow = leader_hint.is_some()
                    && (leader_hint.get() as usize) <= n
                    && !self.rng.chance(1, 4);
                let random = self.rng.below(n as u64) as usize;
                let c = &mut self.clients[client];
                c.target = if follow {
                    (leader_hint.get() - 1) as usize
                } else {
                    random
                };
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(RequestError::OutcomeUnknown) if self.forward_proposals => {
                // A command forwarded by a member the leader no longer listens to (one removed
                // from the cluster that has not noticed) is never applied: like an etcd client
                // after a timeout, sometimes try another member.
                if self.rng.chance(1, 2) {
                    let n = self.nodes.len();
                    self.clients[client].target = self.rng.below(n as u64) as usize;
                }
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(
                RequestError::Dropped
                | RequestError::OutcomeUnknown
                | RequestError::Refused(ProposeError::Backpressure | ProposeError::TransferInProgress),
            ) => {
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(
                error @ RequestError::Refused(
                    ProposeError::TooLarge { .. }
                    | ProposeError::ConfChangePending
                    | ProposeError::ConfChangeRejected(_),
                ),
            ) => {
                self.checker
                    .fail("client-error", format!("unexpected error: {error}"));
            }
        }
    }

    fn complete(&mut self, client: usize, response: MachineResponse) {
        let pending = self.clients[client].pending.take().expect("pending");
        let Some(history_index) = pending.history_index else {
            if !compaction_answer_ok(&response) {
                self.checker.fail(
                    "client-response",
                    format!("a compaction answered with {response:?}"),
                );
                return;
            }
            let think = self.rng.below(20_000);
            self.schedule(think, Event::ClientNext { client });
            return;
        };
        if pending.read_key.is_some() {
            self.stats.reads_by_read_index += 1;
        }
        let operation = &self.history[history_index];
        let (input, key) = (operation.input, operation.key as usize);
        let answer = match read_answer(input, &response) {
            Ok(answer) => answer,
            Err(detail) => {
                self.checker.fail("client-response", detail);
                return;
            }
        };
        let seen = &mut self.clients[client];
        seen.last_revision = seen.last_revision.max(answer.revision);
        seen.last_seen[key] = match (input, &answer.output) {
            (Input::Read, Output::Read(value)) => *value,
            (Input::Write(value), _) => Some(value),
            (Input::Delete, _) => None,
            (Input::Cas { new, .. }, Output::Cas { succeeded: true }) => Some(new),
            (Input::Cas { .. }, _) => answer.observed.and_then(|(_, value)| value),
            (Input::Read, _) => unreachable!("a read's answer is a read"),
        };
        let operation = &mut self.history[history_index];
        operation.ret = Some(self.now);
        operation.output = answer.output;
        self.answers[history_index] = Some(answer);
        self.stats.operations_ok += 1;
        if let Phase::Liveness { healed_at } = self.phase
            && self.stats.heal_to_write_us.is_none()
        {
            self.stats.heal_to_write_us = Some(self.now - healed_at);
        }
        let think = self.rng.below(20_000);
        self.schedule(think, Event::ClientNext { client });
    }

    fn client_timeout(&mut self, client: usize, attempt: u64) {
        if self.clients[client].attempt != attempt || self.clients[client].pending.is_none() {
            return;
        }
        let give_up =
            self.options.faults.give_up && self.phase == Phase::Safety && self.rng.chance(1, 4);
        if give_up {
            // The outcome stays unknown: the request may still be applied at any later time.
            self.clients[client].pending = None;
            self.clients[client].attempt += 1;
            self.stats.operations_unknown += 1;
            self.schedule(1_000, Event::ClientNext { client });
            return;
        }
        let n = self.nodes.len() as u64;
        let c = &mut self.clients[client];
        c.target = ((c.target as u64 + 1 + self.rng.below(n - 1).min(n - 1)) % n) as usize;
        self.send_attempt(client);
    }

    // ----- faults -----

    /// Crashes node `id` by a power loss: volatile state is lost; of the writes in flight, some
    /// may have completed, the next one is torn inside the WAL's files and the disk drops or
    /// tears what was not synced, all chosen by the seed. The WAL recovers at once, so
    /// [`Sim::disk`] shows what a restart will find.
    pub fn crash(&mut self, id: NodeId) {
        let index = (id.get() - 1) as usize;
        if self.nodes[index].node.is_none() {
            return;
        }
        let in_flight: Vec<PersistTask> = self.nodes[index].in_flight.drain(..).collect();
        let report = self.nodes[index].disk.crash(&in_flight, &mut self.rng);
        if let Some(recovered) = report.recovered {
            self.checker
                .observe_hard_state_write(id, report.acknowledged, recovered);
        }
        if let Some(problem) = report.problem {
            self.checker
                .fail("wal-recovery", format!("{id} crashed: {problem}"));
        }
        self.stats.wal_torn_tails += u64::from(report.torn_tail);
        self.stats.wal_max_segments = self.stats.wal_max_segments.max(report.segments as u64);
        let sim_node = &mut self.nodes[index];
        sim_node.node = None;
        sim_node.epoch += 1;
        sim_node.pending_commit = None;
        sim_node.disk_busy_until = self.now;
        self.stats.crashes += 1;
        self.trace(format_args!(
            "n{} crashes ({} writes in flight{})",
            index + 1,
            in_flight.len(),
            if report.torn_tail {
                ", torn tail cut"
            } else {
                ""
            }
        ));
    }

    /// How many of node `id`'s writes are issued but not yet durable.
    pub fn writes_in_flight(&self, id: NodeId) -> usize {
        self.nodes[(id.get() - 1) as usize].in_flight.len()
    }

    /// Node `id`'s simulated disk, to read its files (`files`, `read_file`). Damage it only
    /// through [`Sim::flip_wal_bit`] and [`Sim::truncate_wal_file`], which tell the simulator
    /// that a refusal to restart is expected.
    pub fn wal_disk(&self, id: NodeId) -> &wal::SimDisk {
        self.nodes[(id.get() - 1) as usize].disk.sim_disk()
    }

    /// Flips bit `bit` of byte `offset` of a file on crashed node `id`'s disk, durably. Its next
    /// restart opens the WAL again; a refusal then is expected (the node stays down). Until the
    /// WAL opens again, the durable-quorum check counts what it held before the damage.
    pub fn flip_wal_bit(
        &mut self,
        id: NodeId,
        path: &Path,
        offset: u64,
        bit: u8,
    ) -> io::Result<()> {
        let index = (id.get() - 1) as usize;
        assert!(
            self.nodes[index].node.is_none(),
            "damage only a crashed node's disk"
        );
        self.trace(format_args!(
            "flip bit {bit} of byte {offset} of {} on {id}",
            path.display()
        ));
        self.nodes[index].disk.flip_bit(path, offset, bit)
    }

    /// Cuts a file on crashed node `id`'s disk to `len` bytes, durably.
    pub fn truncate_wal_file(&mut self, id: NodeId, path: &Path, len: u64) -> io::Result<()> {
        let index = (id.get() - 1) as usize;
        assert!(
            self.nodes[index].node.is_none(),
            "damage only a crashed node's disk"
        );
        self.trace(format_args!(
            "truncate {} on {id} to {len} bytes",
            path.display()
        ));
        self.nodes[index].disk.truncate(path, len)
    }

    /// After a crash of node `id` (until it restarts): the byte range of its last WAL segment
    /// that holds records written but never acknowledged to the node, if any.
    pub fn unacknowledged_wal_bytes(&self, id: NodeId) -> Option<(PathBuf, Range<u64>)> {
        self.nodes[(id.get() - 1) as usize].disk.unacknowledged()
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let index = (id.get() - 1) as usize;
        if self.nodes[index].node.is_none() {
            self.start_node(index);
        }
    }

    /// Cuts every link between the groups (nodes in no group are isolated from everyone).
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let n = self.nodes.len();
        let group_of = |id: usize| {
            groups
                .iter()
                .position(|group| group.contains(&NodeId(id as u64 + 1)))
        };
        for from in 0..n {
            for to in 0..n {
                let same = from == to
                    || matches!((group_of(from), group_of(to)), (Some(a), Some(b)) if a == b);
                self.cut[from][to] = !same;
            }
        }
        self.stats.partitions += 1;
        self.trace(format_args!("partition {groups:?}"));
    }

    /// Cuts the one-way link `from -> to`.
    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut[(from.get() - 1) as usize][(to.get() - 1) as usize] = true;
        self.trace(format_args!("cut {from} -> {to}"));
    }

    /// Nodes on a ring each reach only their nearest neighbours: every node sees a majority
    /// (itself and `reach` neighbours on each side), but no two nodes see the same majority.
    /// PreVote plus CheckQuorum must keep such a cluster live.
    pub fn majorities_ring(&mut self) {
        let n = self.nodes.len();
        let reach = (n / 2).div_ceil(2);
        for from in 0..n {
            for to in 0..n {
                let distance = (from + n - to) % n;
                let distance = distance.min(n - distance);
                self.cut[from][to] = distance > reach;
            }
        }
        self.stats.partitions += 1;
        self.trace(format_args!("majorities ring (reach {reach})"));
    }

    /// Proposes a random membership change through the leader: add a spare as a learner,
    /// promote a learner, remove a voter (the leader too), or replace a voter by a spare in one
    /// joint change. Refusals (one change at a time) are fine: the nemesis tries again later.
    pub fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let index = (leader.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let conf = node.raw().conf_state().clone();
        let members = conf.members();
        // Spares join once; a removed node never comes back (it would need a fresh identity).
        let spares: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !members.contains(id) && !self.ever_members.contains(id))
            .collect();
        let voters = conf.voters.clone();
        use raft::{ConfChange, ConfChangeSingle, ConfChangeType};
        let single = |change, node| ConfChangeSingle { change, node };
        let change = match self.rng.below(5) {
            0 if !spares.is_empty() => ConfChange {
                changes: vec![single(ConfChangeType::AddLearner, spares[0])],
            },
            1 if !conf.learners.is_empty() => ConfChange {
                changes: vec![single(ConfChangeType::AddVoter, conf.learners[0])],
            },
            2 if voters.len() > 3 => {
                let victim = voters[self.rng.below(voters.len() as u64) as usize];
                ConfChange {
                    changes: vec![single(ConfChangeType::RemoveNode, victim)],
                }
            }
            3 if voters.len() > 3 => ConfChange {
                changes: vec![single(ConfChangeType::RemoveNode, leader)],
            },
            4 if !spares.is_empty() && voters.len() >= 3 => {
                let victim = voters[self.rng.below(voters.len() as u64) as usize];
                ConfChange {
                    changes: vec![
                        single(ConfChangeType::AddVoter, spares[0]),
                        single(ConfChangeType::RemoveNode, victim),
                    ],
                }
            }
            _ => return,
        };
        for single in &change.changes {
            self.ever_members.insert(single.node);
        }
        for id in &members {
            self.ever_members.insert(*id);
        }
        let mut actions = std::mem::take(&mut self.actions);
        let node = self.nodes[index].node.as_mut().expect("up");
        node.propose_conf_change(u64::MAX, &change, &mut actions);
        self.actions = actions;
        self.trace(format_args!("{leader} proposes {change:?}"));
        self.drain(index);
    }

    /// Proposes `change` through node `via` (normally the leader); returns whether it was
    /// accepted for proposal (it takes effect once committed and applied).
    pub fn propose_conf_change(&mut self, via: NodeId, change: &raft::ConfChange) -> bool {
        let index = (via.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return false;
        };
        let mut actions = std::mem::take(&mut self.actions);
        node.propose_conf_change(u64::MAX, change, &mut actions);
        let refused = actions
            .iter()
            .any(|action| matches!(action, Action::ConfChangeReply { result: Err(_), .. }));
        self.actions = actions;
        for single in &change.changes {
            self.ever_members.insert(single.node);
        }
        self.drain(index);
        !refused
    }

    /// Compacts node `id`'s log at its applied index now (state machine snapshot, WAL snapshot,
    /// segments released); returns the snapshot's index.
    pub fn compact(&mut self, id: NodeId) -> Option<LogIndex> {
        let index = (id.get() - 1) as usize;
        let snapshot = self.nodes[index].node.as_mut()?.compact()?;
        self.stats.compactions += 1;
        if let Err(error) = self.nodes[index].disk.save_snapshot(&snapshot) {
            self.checker.fail(
                "wal-snapshot",
                format!("{id} cannot save its snapshot: {error}"),
            );
        }
        Some(snapshot.metadata.index)
    }

    /// The configuration node `id` has applied (if it is up).
    pub fn conf_state_of(&self, id: NodeId) -> Option<ConfState> {
        self.nodes[(id.get() - 1) as usize]
            .node
            .as_ref()
            .map(|node| node.raw().conf_state().clone())
    }

    /// Sometimes compacts a node's log at its applied index: the state machine snapshot goes to
    /// its WAL, which drops the segments it covers. Followers that need those entries then get
    /// the snapshot.
    fn maybe_compact(&mut self, index: usize) {
        if !self.options.faults.compaction || !self.rng.chance(1, 8) {
            return;
        }
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        let first = raft::Storage::first_index(node.raw().storage());
        if node.applied().get() < first.get() + self.compaction_gap {
            return;
        }
        let id = self.nodes[index].id;
        self.compact(id);
    }

    /// Asks `leader` to hand leadership to `target`.
    pub fn transfer_leader(&mut self, leader: NodeId, target: NodeId) {
        let index = (leader.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        if node.transfer_leader(target).is_ok() {
            self.stats.transfers += 1;
            self.trace(format_args!("{leader} transfers leadership to {target}"));
            self.drain(index);
        }
    }

    /// Restores every link.
    pub fn heal_network(&mut self) {
        for row in &mut self.cut {
            row.fill(false);
        }
        self.trace(format_args!("network healed"));
    }

    /// Makes the network perfect: no loss, duplication or reordering from now on.
    pub fn calm_network(&mut self) {
        self.loss_permille = 0;
        self.duplicate_permille = 0;
        self.reorder_permille = 0;
    }

    fn random_node(&mut self) -> NodeId {
        NodeId(self.rng.below(self.nodes.len() as u64) + 1)
    }

    /// The leader half the time (leader faults find the most bugs), otherwise any node.
    fn victim(&mut self) -> NodeId {
        match self.leader() {
            Some(leader) if self.rng.chance(1, 2) => leader,
            _ => self.random_node(),
        }
    }

    /// Figure-8 churn: crash the leader soon after it took proposals, restart nodes so that
    /// about a quorum stays up, over and over.
    fn churn(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let n = self.nodes.len();
        if let Some(leader) = self.leader()
            && self.rng.chance(1, 2)
        {
            self.crash(leader);
        }
        let down: Vec<usize> = (0..n).filter(|i| self.nodes[*i].node.is_none()).collect();
        let up = n - down.len();
        if !down.is_empty() && (up < n / 2 + 1 || self.rng.chance(1, 3)) {
            let pick = down[self.rng.below(down.len() as u64) as usize];
            self.start_node(pick);
        }
        let next = self.rng.range(5_000, 80_000);
        self.schedule(next, Event::Churn);
    }

    fn nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let faults = self.options.faults;
        let mut choices: Vec<u8> = Vec::new();
        if faults.partition {
            choices.extend([0, 1, 2, 3, 4, 7]);
        }
        if faults.crash {
            choices.extend([5, 5]);
        }
        if faults.crash_all {
            choices.push(6);
        }
        if faults.partition || faults.crash {
            choices.push(8);
        }
        if faults.membership {
            choices.extend([9, 9, 9]);
        }
        if faults.slow_disk {
            choices.push(10);
        }
        if choices.is_empty() {
            return;
        }
        let choice = choices[self.rng.below(choices.len() as u64) as usize];
        let n = self.nodes.len() as u64;
        match choice {
            0 => self.heal_network(),
            1 => {
                // A random split into two sides.
                let mut ids: Vec<NodeId> = self.ids();
                for i in (1..ids.len()).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    ids.swap(i, j);
                }
                let cut = self.rng.range(1, n) as usize;
                let (a, b) = ids.split_at(cut);
                self.partition(&[a.to_vec(), b.to_vec()]);
            }
            2 => {
                // Isolate one node, usually the leader.
                let victim = self.victim();
                let rest: Vec<NodeId> = self.ids().into_iter().filter(|id| *id != victim).collect();
                self.partition(&[vec![victim], rest]);
            }
            3 => {
                // One-way links: a few directed links drop everything.
                self.heal_network();
                for _ in 0..self.rng.range(1, n) {
                    let from = self.random_node();
                    let to = self.random_node();
                    if from != to {
                        self.cut_link(from, to);
                    }
                }
                self.stats.partitions += 1;
            }
            4 => {
                // A bridge: two halves that only the bridge node sees both of.
                let bridge = self.victim();
                let others: Vec<NodeId> =
                    self.ids().into_iter().filter(|id| *id != bridge).collect();
                let half = others.len() / 2;
                let (a, b) = others.split_at(half);
                self.partition(&[a.to_vec(), b.to_vec()]);
                let bi = (bridge.get() - 1) as usize;
                for other in 0..self.nodes.len() {
                    self.cut[bi][other] = false;
                    self.cut[other][bi] = false;
                }
            }
            5 => {
                let victim = self.victim();
                self.crash(victim);
                let down = self.rng.range(50_000, 1_500_000);
                self.schedule(
                    down,
                    Event::Restart {
                        node: (victim.get() - 1) as usize,
                    },
                );
            }
            7 => self.majorities_ring(),
            9 => self.change_membership(),
            10 => {
                // A disk that hangs (usually the leader's): its writes complete only much later.
                let victim = self.victim();
                let hang = self.rng.range(200_000, 2_000_000);
                let node = &mut self.nodes[(victim.get() - 1) as usize];
                node.disk_busy_until = node.disk_busy_until.max(self.now) + hang;
                self.stats.disk_hangs += 1;
                self.trace(format_args!("{victim}'s disk hangs for {hang} us"));
            }
            8 => {
                if let Some(leader) = self.leader() {
                    let target = self.random_node();
                    if target != leader {
                        self.transfer_leader(leader, target);
                    }
                }
            }
            _ => {
                for index in 0..self.nodes.len() {
                    self.crash(NodeId(index as u64 + 1));
                }
                for index in 0..self.nodes.len() {
                    let down = self.rng.range(10_000, 500_000);
                    self.schedule(down, Event::Restart { node: index });
                }
            }
        }
        let next = self.rng.range(100_000, 800_000);
        self.schedule(next, Event::Nemesis);
    }

    /// Ends the safety phase: every node up, every link healed, the network calm, disks fast.
    /// Clients each finish their operation and issue one more write.
    pub fn heal_all(&mut self) {
        self.heal_network();
        self.calm_network();
        self.disk_latency_us = (50, 500);
        for index in 0..self.nodes.len() {
            self.restart(NodeId(index as u64 + 1));
        }
        self.phase = Phase::Liveness {
            healed_at: self.now,
        };
        for client in 0..self.clients.len() {
            self.schedule(0, Event::ClientNext { client });
        }
    }

    fn clients_done(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.pending.is_none() && (!self.clients_enabled || c.final_write_started))
    }

    /// Whether every member is up and has applied the same entries to the same state. Members
    /// are those of the leader's configuration (spares never added and removed nodes are not).
    pub fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let Some(conf) = self.nodes[(leader.get() - 1) as usize]
            .node
            .as_ref()
            .map(|node| node.raw().conf_state().clone())
        else {
            return false;
        };
        // A joint configuration must have been left: membership changes finish too.
        if conf.is_joint() {
            return false;
        }
        let members = conf.members();
        // A node whose WAL refused to open stays down (and is a violation unless a test damaged
        // its disk on purpose).
        let mut nodes = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .filter(|n| n.disk.log().error().is_none())
            .map(|n| n.node.as_ref());
        let Some(Some(first)) = nodes.next() else {
            return false;
        };
        let applied = first.applied();
        let digest = first.state_machine().digest();
        applied >= first.raw().committed()
            && applied.get() >= self.checker.committed_len()
            && nodes.all(|n| {
                n.is_some_and(|n| n.applied() == applied && n.state_machine().digest() == digest)
            })
    }

    /// Runs the whole scenario: the safety phase with faults and clients, then the liveness phase.
    pub fn run(mut self) -> Outcome {
        self.start_clients();
        if self.options.faults.partition
            || self.options.faults.crash
            || self.options.faults.crash_all
            || self.options.faults.membership
        {
            let first = self.rng.range(200_000, 1_000_000);
            self.schedule(first, Event::Nemesis);
        }
        if self.options.faults.churn {
            let first = self.rng.range(100_000, 500_000);
            self.schedule(first, Event::Churn);
        }
        self.run_until(self.options.safety_phase_us);
        if !self.checker.violations.is_empty() {
            return self.outcome();
        }
        self.finish()
    }

    /// Heals everything, runs the liveness phase, and performs the end-of-run checks.
    pub fn finish(mut self) -> Outcome {
        self.heal_all();
        let healed_at = self.now;
        let limit = self.options.liveness_phase_us;
        let converged =
            self.run_until_condition(limit, |sim| sim.clients_done() && sim.converged());
        if converged {
            self.stats.heal_to_converged_us = Some(self.now - healed_at);
        } else {
            let detail = format!(
                "not converged {}s after the heal: clients done={}, applied={:?}, committed={}",
                limit / 1_000_000,
                self.clients_done(),
                self.nodes
                    .iter()
                    .map(|n| n.node.as_ref().map(|n| n.applied().get()))
                    .collect::<Vec<_>>(),
                self.checker.committed_len()
            );
            self.checker.fail("liveness", detail);
        }
        match self.stats.heal_to_leader_us {
            Some(us) if us <= 5_000_000 => {}
            // A leader elected before the heal that kept its office is fine.
            None if self.leader().is_some() && converged => {}
            other => self.checker.fail(
                "liveness",
                format!("no leader within 5s of the heal ({other:?})"),
            ),
        }
        if self.clients_enabled {
            match self.stats.heal_to_write_us {
                Some(us) if us <= 10_000_000 => {}
                other => self.checker.fail(
                    "liveness",
                    format!("no write completed within 10s of the heal ({other:?})"),
                ),
            }
        }
        self.check_log_matching();
        if self.checker.violations.is_empty() {
            let final_revision = converged
                .then(|| self.leader())
                .flatten()
                .and_then(|leader| self.node(leader))
                .map(|node| node.state_machine().mvcc().current_revision());
            for problem in crate::revisions::check(&self.history, &self.answers, final_revision) {
                self.checker.fail("revisions", problem);
            }
            let verdict = lincheck::check(&self.history, &lincheck::CheckOptions::default());
            if !verdict.is_linearizable() {
                self.checker.fail(
                    "linearizability",
                    format!("history not linearizable: {verdict}"),
                );
            }
        }
        self.outcome()
    }

    fn outcome(mut self) -> Outcome {
        self.stats.commits = self.checker.committed_len();
        // Entry 1 is the founding configuration, not a change.
        self.stats.conf_changes = self
            .conf_changes_seen
            .iter()
            .filter(|index| **index > LogIndex(1))
            .count() as u64;
        self.stats.virtual_us = self.now;
        Outcome {
            options: self.options,
            violations: self.checker.violations,
            stats: self.stats,
        }
    }
}

fn request_id(client: usize, attempt: u64) -> u64 {
    ((client as u64) << 40) | (attempt & ((1 << 40) - 1))
}

fn split_request_id(request: u64) -> (usize, u64) {
    ((request >> 40) as usize, request & ((1 << 40) - 1))
}

/// A one-line description of a message for traces.
pub fn describe(message: &Message) -> String {
    let detail = match &message.body {
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            ..
        } => format!("last={last_log_index}/{last_log_term}"),
        MessageBody::RequestVoteResponse { granted, .. } => format!("granted={granted}"),
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => format!(
            "prev={prev_log_index}/{prev_log_term} entries={} commit={leader_commit}",
            entries.len()
        ),
        MessageBody::AppendEntriesResponse(response) => format!("{response:?}"),
        MessageBody::Heartbeat { commit, round } => format!("commit={commit} round={round}"),
        MessageBody::HeartbeatResponse { round } => format!("round={round}"),
        MessageBody::ReadIndex { context } => format!("context={context}"),
        MessageBody::ReadIndexResponse { context, index } => {
            format!("context={context} index={index:?}")
        }
        MessageBody::TimeoutNow => String::new(),
        MessageBody::Propose { entries } => format!("entries={}", entries.len()),
        MessageBody::InstallSnapshot { snapshot } => format!(
            "index={} term={} bytes={}",
            snapshot.metadata.index,
            snapshot.metadata.term,
            snapshot.data.len()
        ),
    };
    format!(
        "{} from {} {} {detail}",
        message.body.kind_name(),
        message.from,
        message.term
    )
}
