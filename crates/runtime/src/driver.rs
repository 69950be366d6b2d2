//! The driver: the one task that owns the [`Node`]. It selects over the tick interval, inbound
//! peer messages, client commands, the writer's completions and the snapshot thread's report,
//! hands each input to the node, and carries out the actions the node emits (writer jobs,
//! peer messages, client replies).

use crate::config::MemberConfig;
use crate::error::MemberFailure;
use crate::protocol::{Command, Completion, Job, Reply, Status};
use crate::snapshot::Snapshots;
use exec::{Executor, MemberIo, Observation};
use node::{Action, Node, RequestError, RequestId, StateMachine};
use raft::{ConfChange, ConfState, LogIndex, Message, MessageBody, NodeId, ProposeError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use transport::Transport;

/// How many rounds (one input from each of the driver's queues per round) the driver takes
/// after the input it woke for before it produces a Ready (see `Driver::take_queued_inputs`):
/// enough to cover every client of a busy member, few enough that a Ready still leaves every
/// few hundred microseconds under load.
const QUEUED_INPUTS_PER_READY: usize = 256;

/// The driver's ends of the channels to the other tasks.
pub(crate) struct DriverChannels<M: StateMachine> {
    /// The peer transport, for sending and for its delivery reports.
    pub(crate) transport: Transport,
    /// Messages from peers.
    pub(crate) inbound: mpsc::Receiver<Message>,
    /// Commands from the member's handles.
    pub(crate) commands: mpsc::Receiver<Command<M>>,
    /// Jobs for the writer thread.
    pub(crate) jobs: mpsc::Sender<Job>,
    /// The writer thread's reports.
    pub(crate) completions: mpsc::Receiver<Completion>,
    /// Where the member's status is published.
    pub(crate) status: watch::Sender<Status>,
    /// Where the membership in force is published.
    pub(crate) membership: watch::Sender<ConfState>,
}

/// The one task that owns the node.
pub(crate) struct Driver<M: StateMachine> {
    node: Node<M>,
    /// Carries out the node's actions (the same executor the simulator runs).
    executor: Executor,
    /// Where the executor's hand-offs go.
    io: DriverIo<M>,
    inbound: mpsc::Receiver<Message>,
    commands: mpsc::Receiver<Command<M>>,
    persist_tx: mpsc::Sender<Job>,
    completions: mpsc::Receiver<Completion>,
    next_request: RequestId,
    status: watch::Sender<Status>,
    actions: Vec<Action<M::Response>>,
    tick: Duration,
    max_waiting_requests: usize,
    max_backlog: usize,
    /// See [`Status::admitted_by`].
    admitted_by: Option<LogIndex>,
}

/// The driver's I/O as the executor sees it: the transport, the writer's queue, the clients
/// waiting for answers, the published membership.
struct DriverIo<M: StateMachine> {
    transport: Transport,
    /// Writer jobs the writer's queue had no room for yet, in order.
    backlog: VecDeque<Job>,
    waiters: HashMap<RequestId, Reply<M::Response>>,
    conf_waiters: HashMap<RequestId, Reply<ConfState>>,
    membership: watch::Sender<ConfState>,
    /// When the next local snapshot is due, and the one being written.
    snapshots: Snapshots,
    /// A leader's snapshot replaced the configuration: the driver publishes the one in force
    /// once the node is free again.
    membership_stale: bool,
}

impl<M: StateMachine> MemberIo<M::Response> for DriverIo<M> {
    fn queue_write(&mut self, job: Job) {
        if let Job::Persist(task) = &job {
            let bytes: usize = task.entries.iter().map(|entry| entry.data.len()).sum();
            self.snapshots.appended(bytes as u64);
        }
        self.backlog.push_back(job);
    }

    fn send(&mut self, message: Message) {
        // Best effort: a dropped message is counted and reported by the transport, and Raft
        // retransmits.
        let _ = self.transport.send(message);
    }

    fn reply(&mut self, request: RequestId, result: Result<M::Response, RequestError>) {
        if let Some(reply) = self.waiters.remove(&request) {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn conf_change_reply(&mut self, request: RequestId, result: Result<ConfState, RequestError>) {
        if let Some(reply) = self.conf_waiters.remove(&request) {
            let _ = reply.send(result);
        }
    }

    fn observe(&mut self, observation: Observation) {
        match observation {
            Observation::RoleChanged { term, soft_state } => {
                tracing::info!(
                    term = term.get(),
                    role = ?soft_state.role,
                    leader = soft_state.leader.get(),
                    "role changed"
                );
            }
            Observation::ConfChanged { index, conf_state } => {
                tracing::info!(index = index.get(), ?conf_state, "membership changed");
                self.membership.send_replace(conf_state);
            }
            Observation::SnapshotInstalled { index } => {
                tracing::info!(index = index.get(), "installed a leader's snapshot");
                self.membership_stale = true;
            }
            Observation::Applied { .. } => {}
        }
    }
}

impl<M: StateMachine> Driver<M> {
    /// A driver for `node`, talking to the other tasks over `channels`.
    pub(crate) fn new(
        config: &MemberConfig,
        node: Node<M>,
        channels: DriverChannels<M>,
        snapshots: Snapshots,
    ) -> Driver<M> {
        Driver {
            node,
            executor: Executor::new(),
            io: DriverIo {
                transport: channels.transport,
                backlog: VecDeque::new(),
                waiters: HashMap::new(),
                conf_waiters: HashMap::new(),
                membership: channels.membership,
                snapshots,
                membership_stale: false,
            },
            inbound: channels.inbound,
            commands: channels.commands,
            persist_tx: channels.jobs,
            completions: channels.completions,
            next_request: 1,
            status: channels.status,
            actions: Vec::new(),
            tick: config.tick,
            max_waiting_requests: config.max_waiting_requests,
            max_backlog: config.persist_queue_len,
            admitted_by: None,
        }
    }

    /// Runs the member until it is shut down or fails, then waits for a snapshot still being
    /// written, so that nothing writes into the data directory once the member is gone.
    pub(crate) async fn run(mut self) -> Result<(), MemberFailure> {
        let result = self.run_until_stopped().await;
        self.io.snapshots.wait_for_thread().await;
        result
    }

    async fn run_until_stopped(&mut self) -> Result<(), MemberFailure> {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.drain()?;
            self.publish_status();
            let persist_tx = self.persist_tx.clone();
            tokio::select! {
                _ = interval.tick() => {
                    self.node.tick();
                    self.take_reports();
                    self.executor.tick::<M::Response>(&mut self.io);
                }
                Some(message) = self.inbound.recv() => {
                    self.receive(message);
                    if self.take_queued_inputs()?.is_break() {
                        return Ok(());
                    }
                }
                command = self.commands.recv(), if self.io.backlog.len() < self.max_backlog => {
                    match command {
                        None | Some(Command::Shutdown) => return Ok(()),
                        Some(command) => self.execute(command),
                    }
                    if self.take_queued_inputs()?.is_break() {
                        return Ok(());
                    }
                }
                done = self.completions.recv() => {
                    self.completed(done)?;
                    if self.take_queued_inputs()?.is_break() {
                        return Ok(());
                    }
                }
                permit = persist_tx.reserve(), if !self.io.backlog.is_empty() => match permit {
                    Ok(permit) => permit.send(self.io.backlog.pop_front().expect("checked")),
                    Err(_) => return Err(MemberFailure("the WAL writer exited".into())),
                },
                () = self.io.transport.reports_changed() => self.take_reports(),
                Some(written) = self.io.snapshots.written() => {
                    let io = &mut self.io;
                    io.snapshots.finish(written, &mut self.node, &mut io.backlog)?;
                }
            }
        }
    }

    /// Takes the inputs already queued (peer messages, client commands, WAL completions), for
    /// at most [`QUEUED_INPUTS_PER_READY`] rounds, so that the next `drain` makes one Ready of
    /// them all:
    /// the proposals of many clients then share one persist task and one append per follower,
    /// and a follower acknowledges many appends with one write and one sync, instead of a
    /// Ready per input. Breaks when the member is to stop.
    fn take_queued_inputs(&mut self) -> Result<ControlFlow<()>, MemberFailure> {
        for _ in 0..QUEUED_INPUTS_PER_READY {
            let mut took = false;
            if let Ok(message) = self.inbound.try_recv() {
                self.receive(message);
                took = true;
            }
            if self.io.backlog.len() < self.max_backlog {
                match self.commands.try_recv() {
                    Ok(Command::Shutdown) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok(command) => {
                        self.execute(command);
                        took = true;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            match self.completions.try_recv() {
                Ok(done) => {
                    self.completed(Some(done))?;
                    took = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => self.completed(None)?,
            }
            if !took {
                break;
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Hands a peer's message to the node, noting when it is the first append from a leader.
    fn receive(&mut self, message: Message) {
        let leader_commit = match (&message.body, self.admitted_by) {
            (MessageBody::AppendEntries { leader_commit, .. }, None) => {
                Some((message.from, *leader_commit))
            }
            _ => None,
        };
        self.node.receive(message);
        if let Some((from, commit)) = leader_commit
            && self.node.raw().leader() == from
        {
            self.note_admission(commit);
        }
    }

    /// Records the first index known to be at or after this incarnation's admission. A leader
    /// replicates only to the members of its configuration: the first append this member takes
    /// from one comes from a leader that applied the change adding it, so the leader's commit
    /// index then is at or past that change. A member that leads holds every committed entry,
    /// the change that admitted it among them.
    fn note_admission(&mut self, index: LogIndex) {
        if self.admitted_by.is_none() {
            let index = index.max(LogIndex(1));
            tracing::info!(index = index.get(), "admission to the cluster known");
            self.admitted_by = Some(index);
        }
    }

    /// Hands the writer's report to the node; an error or a writer gone is fatal.
    fn completed(&mut self, done: Option<Completion>) -> Result<(), MemberFailure> {
        match done {
            Some(Ok(tasks)) => {
                for task in tasks {
                    self.node.persisted(task, &mut self.actions);
                }
                Ok(())
            }
            Some(Err(error)) => Err(MemberFailure(error)),
            None => Err(MemberFailure("the WAL writer exited".into())),
        }
    }

    /// Carries out a client's command: requests go to the node (their replies come with its
    /// actions), everything else is answered at once.
    fn execute(&mut self, command: Command<M>) {
        match command {
            Command::Submit {
                data,
                reply,
                forward,
            } => {
                if let Some(id) = self.register(reply) {
                    if forward {
                        self.node.submit_anywhere(id, data, &mut self.actions);
                    } else {
                        self.node.submit(id, data, &mut self.actions);
                    }
                }
            }
            Command::Read { query, reply } => {
                if let Some(id) = self.register(reply) {
                    self.node.read(id, query, &mut self.actions);
                }
            }
            Command::LocalQuery { query, reply } => {
                let _ = reply.send(self.node.state_machine().query(&query));
            }
            Command::Defragment { reply } => {
                self.node.defragment();
                let _ = reply.send(());
            }
            Command::ConfChange { change, reply } => self.propose_conf_change(&change, reply),
            Command::TransferLeader { target, reply } => {
                let result = self.node.transfer_leader(target);
                if result.is_ok() {
                    tracing::info!(to = target.get(), "leadership transfer started");
                }
                let _ = reply.send(result);
            }
            Command::SetPeers(peers) => self.io.transport.set_peers(peers),
            Command::Progress { reply } => {
                let _ = reply.send(self.replication_progress());
            }
            Command::Shutdown => {}
        }
    }

    /// Remembers a client's reply channel under a new request id, or refuses the request when
    /// too many wait already.
    fn register(&mut self, reply: Reply<M::Response>) -> Option<RequestId> {
        if self.io.waiters.len() + self.io.conf_waiters.len() >= self.max_waiting_requests {
            let _ = reply.send(Err(ProposeError::Backpressure.into()));
            return None;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.io.waiters.insert(id, reply);
        Some(id)
    }

    /// Proposes a membership change, unless too many requests wait already.
    fn propose_conf_change(&mut self, change: &ConfChange, reply: Reply<ConfState>) {
        if self.io.waiters.len() + self.io.conf_waiters.len() >= self.max_waiting_requests {
            let _ = reply.send(Err(ProposeError::Backpressure.into()));
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.io.conf_waiters.insert(id, reply);
        self.node.propose_conf_change(id, change, &mut self.actions);
    }

    /// The leader's view of each member's match index (empty on followers).
    fn replication_progress(&self) -> BTreeMap<NodeId, LogIndex> {
        self.node
            .raw()
            .status()
            .progress
            .iter()
            .map(|progress| (progress.id, progress.match_index))
            .collect()
    }

    /// Carries out the actions of the inputs taken so far, and polls the node until it has
    /// nothing more to do (the executor); then starts a snapshot if one is due and feeds the
    /// writer.
    fn drain(&mut self) -> Result<(), MemberFailure> {
        self.executor
            .drain(&mut self.node, &mut self.actions, &mut self.io);
        if std::mem::take(&mut self.io.membership_stale) {
            let conf_state = self.node.raw().conf_state().clone();
            self.io.membership.send_replace(conf_state);
        }
        self.io.snapshots.maybe_start(&mut self.node);
        self.feed_writer()
    }

    /// Moves queued jobs into the writer's queue while it has room.
    fn feed_writer(&mut self) -> Result<(), MemberFailure> {
        while let Some(task) = self.io.backlog.pop_front() {
            match self.persist_tx.try_send(task) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(task)) => {
                    self.io.backlog.push_front(task);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(MemberFailure("the WAL writer exited".into()));
                }
            }
        }
        Ok(())
    }

    fn take_reports(&mut self) {
        let reports = self.io.transport.take_reports();
        let raw = self.node.raw_mut();
        for peer in reports.unreachable {
            raw.report_unreachable(peer);
        }
        for (peer, delivered) in reports.snapshots {
            raw.report_snapshot(peer, delivered);
        }
    }

    fn publish_status(&mut self) {
        if self.admitted_by.is_none() && self.node.raw().role() == raft::Role::Leader {
            let last = self.node.raw().last_index();
            self.note_admission(last);
        }
        let raw = self.node.raw();
        let now = Status {
            role: raw.role(),
            leader: raw.leader(),
            term: raw.term(),
            commit: raw.committed(),
            applied: self.node.applied(),
            first_index: raft::Storage::first_index(raw.storage()),
            resident_entries: raw.storage().resident().0 as u64,
            admitted_by: self.admitted_by,
        };
        self.status.send_if_modified(|status| {
            let changed = *status != now;
            *status = now;
            changed
        });
    }
}
