//! The simulated world: nodes, their disks, the network, clients, the nemesis, and the event
//! queue that orders everything in virtual time.

use crate::checker::{Checker, EntryPrint, Violation};
use crate::options::Options;
use bytes::Bytes;
use exec::{Executor, SnapshotPolicy, WriterJob};
use lincheck::{Input, Operation, Output};
use machine::{EtcdMachine, MachineResponse};
use node::{Action, Node, PersistTask, RequestError};
use raft::{ConfState, Config, LogIndex, Message, MessageBody, NodeId, Rng, Role};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

mod checks;
mod clients;
mod disk;
mod etcd_ops;
mod member_io;
mod nemesis;
mod network;
mod watchers;
use clients::{request_id, split_request_id};
use disk::NodeDisk;
pub use disk::{DurableLog, WAL_DIR};
pub use etcd_ops::{Answer, decode_value, key_bytes, value_bytes};
use etcd_ops::{
    MULTI_KEYS, MULTI_PREFIX, MULTI_PREFIX_END, command_bytes, compaction, compaction_answer_ok,
    multi_delete_request, multi_put_request, read_answer, read_multi_answer, read_query,
    request_for,
};
use member_io::SimIo;
pub use network::describe;

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
    /// Events the simulated watchers received.
    pub watch_events: u64,
    /// Times a watch client resumed its watchers on another stream (crash or move).
    pub watch_resumes: u64,
    /// Watchers canceled because the history they needed was compacted.
    pub watch_compacted: u64,
    /// Progress notifications the watchers received.
    pub watch_progress: u64,
    /// Multi-key writes the clients sent (transactions and deletes of the multi-key prefix).
    pub multi_key_writes: u64,
    /// Revisions of two or more events a watcher received (in one response, or in the
    /// fragments of one), which the atomic check is about.
    pub watch_multi_event_revisions: u64,
    /// Fragments (responses marked `fragment`: more of the same follows) the watchers received.
    pub watch_fragments: u64,
    /// Broken watch guarantees seen.
    pub watch_violations: u64,
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
    WatchPoll {
        watcher: usize,
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
    /// Carries out the node's actions (the executor a serving member runs).
    executor: Executor,
    /// When this node takes a snapshot (the rule a serving member runs).
    snapshots: SnapshotPolicy,
    /// Writer jobs queued behind the batch being written, oldest first.
    writer_queue: VecDeque<WriterJob>,
    /// The batch of persist tasks being written (not yet durable); empty when the writer is
    /// idle.
    writing: Vec<PersistTask>,
    disk_busy_until: u64,
    /// Commit index last checked, for this incarnation.
    checked_commit: LogIndex,
    /// Role last seen, to spot a new leadership.
    last_role: Role,
}

struct Pending {
    /// The operation in the history; `None` for a compaction or a multi-key write, which are
    /// not register operations.
    history_index: Option<usize>,
    /// The multi-key write in `other_writes`.
    other_index: Option<usize>,
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
    /// The multi-key writes, outside the register history (see `etcd_ops`).
    other_writes: Vec<crate::revisions::OtherWrite>,
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
    /// The log, as a percentage of the last snapshot's size, a node appends before its next
    /// snapshot (`--snapshot-log-percent`; per seed: 0 or 50).
    snapshot_log_percent: u64,
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
    /// The watch clients (`watchers`), their own generator (so the cluster's run does not
    /// depend on them), the hubs' limits, and what they are checked against.
    watchers: Vec<watchers::WatchClient>,
    watch_rng: Rng,
    watch_limits: watch::WatchLimits,
    truth: crate::watches::Truth,
    finished_runs: Vec<crate::watches::Run>,
    watch_violations: Vec<Violation>,
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
        // Small limits, so that watchers fall back to history and catch up all the time, and
        // split responses into fragments.
        let mut watch_rng = Rng::new(options.seed ^ 0x5741_5443_4845_5253);
        let watch_limits = watch::WatchLimits {
            max_queued_responses: watch_rng.range(2, 5) as usize,
            catch_up_events: watch_rng.range(1, 5) as usize,
            // A few events at most: the watchers that ask for fragments get them (an event
            // weighs 48 to 200 bytes, see `watch`).
            max_response_bytes: watch_rng.range(120, 600) as usize,
            // From none to plenty of recent changes: watchers that fall behind catch up from
            // them or from the store's history.
            recent_bytes: [0, 500, 5_000, 16 << 20][watch_rng.range(0, 4) as usize],
            ..watch::WatchLimits::default()
        };
        let truth = crate::watches::Truth::new(options.machine_faults);
        let mut sim = Sim {
            watchers: Vec::new(),
            watch_rng,
            watch_limits,
            truth,
            finished_runs: Vec::new(),
            watch_violations: Vec::new(),
            max_size_per_msg,
            max_inflight_msgs,
            nodes: (0..n)
                .map(|i| SimNode {
                    id: NodeId(i as u64 + 1),
                    node: None,
                    disk: NodeDisk::create(options.wal.clone(), (i < founders).then_some(&conf)),
                    epoch: 0,
                    executor: Executor::new(),
                    snapshots: SnapshotPolicy::new(1, 0),
                    writer_queue: VecDeque::new(),
                    writing: Vec::new(),
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
            other_writes: Vec::new(),
            checker: Checker::default(),
            cut: vec![vec![false; n]; n],
            link_clear_at: vec![vec![0; n]; n],
            ever_members: (1..=founders as u64).map(NodeId).collect(),
            conf_changes_seen: std::collections::BTreeSet::new(),
            compaction_gap,
            snapshot_log_percent: if (options.seed >> 3).is_multiple_of(2) {
                0
            } else {
                50
            },
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
        machine.set_watch_limits(self.watch_limits);
        machine.set_faults(self.options.machine_faults);
        let mut node = Node::new(&config, storage, machine)
            .unwrap_or_else(|error| panic!("node {} cannot start: {error}", index + 1));
        // A follower that needs a snapshot gets it read back from this node's snapshot
        // files, as a member's does.
        if let Some(files) = self.nodes[index].disk.snapshot_files() {
            node.raw_mut()
                .storage_mut()
                .set_snapshot_loader(raft::SnapshotLoader::new(move |metadata| {
                    files.read(metadata).map_err(|error| error.to_string())
                }));
        }
        // A fresh incarnation counts its log toward the next snapshot from zero, as a member
        // that restarts does.
        self.nodes[index].snapshots =
            SnapshotPolicy::new(self.compaction_gap, self.snapshot_log_percent);
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
                    let mut executor = std::mem::take(&mut self.nodes[node].executor);
                    executor.tick(&mut SimIo {
                        sim: self,
                        index: node,
                    });
                    if self.nodes[node].epoch != epoch {
                        return;
                    }
                    self.nodes[node].executor = executor;
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
                    self.persist_done(node);
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
            Event::WatchPoll { watcher } => self.watch_poll(watcher),
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
        let epoch = self.nodes[index].epoch;
        let mut executor = std::mem::take(&mut self.nodes[index].executor);
        for action in actions.drain(..) {
            executor.carry_out(action, &mut SimIo { sim: self, index });
            if self.nodes[index].epoch != epoch {
                // A failed write stopped the node: the rest of what it wanted done is gone.
                break;
            }
        }
        if self.nodes[index].epoch == epoch {
            self.nodes[index].executor = executor;
        }
        self.actions = actions;
        self.check_node(index);
        self.maybe_compact(index);
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
            self.check_watches();
            let problems = crate::revisions::check(
                &self.history,
                &self.answers,
                &self.other_writes,
                final_revision,
            );
            for problem in problems {
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
        let watch_violations = std::mem::take(&mut self.watch_violations);
        self.checker.violations.extend(watch_violations);
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
