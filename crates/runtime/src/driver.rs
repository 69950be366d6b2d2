//! The driver: the one task that owns the [`Node`]. It selects over the tick interval, inbound
//! peer messages, client commands, the writer's completions and the snapshot thread's report,
//! hands each input to the node, and carries out the actions the node emits (writer jobs,
//! peer messages, client replies).

use crate::config::MemberConfig;
use crate::error::MemberFailure;
use crate::protocol::{Command, Completion, Job, Reply, Status};
use crate::snapshot::Snapshots;
use node::{Action, Node, PersistTask, RequestError, RequestId, StateMachine};
use raft::{ConfChange, ConfState, LogIndex, Message, NodeId};
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
    transport: Transport,
    inbound: mpsc::Receiver<Message>,
    commands: mpsc::Receiver<Command<M>>,
    persist_tx: mpsc::Sender<Job>,
    /// Writer jobs the writer's queue had no room for yet, in order.
    backlog: VecDeque<Job>,
    completions: mpsc::Receiver<Completion>,
    waiters: HashMap<RequestId, Reply<M::Response>>,
    conf_waiters: HashMap<RequestId, Reply<ConfState>>,
    next_request: RequestId,
    status: watch::Sender<Status>,
    membership: watch::Sender<ConfState>,
    actions: Vec<Action<M::Response>>,
    tick: Duration,
    max_waiting_requests: usize,
    max_backlog: usize,
    /// When the next local snapshot is due, and the one being written.
    snapshots: Snapshots,
    /// A commit index the node asked to record (`Action::RecordCommit`): it goes with the
    /// next persist task, or to the writer on its own at the next tick.
    pending_commit: Option<raft::HardState>,
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
            transport: channels.transport,
            inbound: channels.inbound,
            commands: channels.commands,
            persist_tx: channels.jobs,
            backlog: VecDeque::new(),
            completions: channels.completions,
            waiters: HashMap::new(),
            conf_waiters: HashMap::new(),
            next_request: 1,
            status: channels.status,
            membership: channels.membership,
            actions: Vec::new(),
            tick: config.tick,
            max_waiting_requests: config.max_waiting_requests,
            max_backlog: config.persist_queue_len,
            snapshots,
            pending_commit: None,
        }
    }

    /// Runs the member until it is shut down or fails, then waits for a snapshot still being
    /// written, so that nothing writes into the data directory once the member is gone.
    pub(crate) async fn run(mut self) -> Result<(), MemberFailure> {
        let result = self.run_until_stopped().await;
        self.snapshots.wait_for_thread().await;
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
                    // A commit index no write has taken along by the next tick is recorded
                    // alone, behind the writes queued before it.
                    if let Some(hard_state) = self.pending_commit.take() {
                        self.backlog.push_back(Job::Commit(hard_state));
                    }
                }
                Some(message) = self.inbound.recv() => {
                    self.node.receive(message);
                    if self.take_queued_inputs()?.is_break() {
                        return Ok(());
                    }
                }
                command = self.commands.recv(), if self.backlog.len() < self.max_backlog => {
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
                permit = persist_tx.reserve(), if !self.backlog.is_empty() => match permit {
                    Ok(permit) => permit.send(self.backlog.pop_front().expect("checked")),
                    Err(_) => return Err(MemberFailure("the WAL writer exited".into())),
                },
                () = self.transport.reports_changed() => self.take_reports(),
                Some(written) = self.snapshots.written() => {
                    self.snapshots.finish(written, &mut self.node, &mut self.backlog)?;
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
                self.node.receive(message);
                took = true;
            }
            if self.backlog.len() < self.max_backlog {
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
            Command::SetPeers(peers) => self.transport.set_peers(peers),
            Command::Progress { reply } => {
                let _ = reply.send(self.replication_progress());
            }
            Command::Shutdown => {}
        }
    }

    /// Remembers a client's reply channel under a new request id, or refuses the request when
    /// too many wait already.
    fn register(&mut self, reply: Reply<M::Response>) -> Option<RequestId> {
        if self.waiters.len() + self.conf_waiters.len() >= self.max_waiting_requests {
            let _ = reply.send(Err(RequestError::Backpressure));
            return None;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.waiters.insert(id, reply);
        Some(id)
    }

    /// Proposes a membership change, unless too many requests wait already.
    fn propose_conf_change(&mut self, change: &ConfChange, reply: Reply<ConfState>) {
        if self.waiters.len() + self.conf_waiters.len() >= self.max_waiting_requests {
            let _ = reply.send(Err(RequestError::Backpressure));
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.conf_waiters.insert(id, reply);
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

    /// Executes actions and polls the node until it has nothing more to do.
    fn drain(&mut self) -> Result<(), MemberFailure> {
        loop {
            self.node.poll(&mut self.actions);
            if self.actions.is_empty() {
                break;
            }
            for action in std::mem::take(&mut self.actions) {
                self.carry_out(action);
            }
        }
        self.snapshots.maybe_start(&mut self.node);
        self.feed_writer()
    }

    /// Carries out one of the node's actions.
    fn carry_out(&mut self, action: Action<M::Response>) {
        match action {
            Action::Persist(task) => self.queue_persist(task),
            // Best effort: a dropped message is counted and reported by the transport, and
            // Raft retransmits.
            Action::Send(message) => {
                let _ = self.transport.send(message);
            }
            Action::RecordCommit(hard_state) => self.pending_commit = Some(hard_state),
            Action::Reply { request, result } => {
                if let Some(reply) = self.waiters.remove(&request) {
                    // The caller may have given up waiting; nothing to do then.
                    let _ = reply.send(result);
                }
            }
            Action::ConfChangeReply { request, result } => {
                if let Some(reply) = self.conf_waiters.remove(&request) {
                    let _ = reply.send(result);
                }
            }
            Action::RoleChanged { term, soft_state } => {
                tracing::info!(
                    term = term.get(),
                    role = ?soft_state.role,
                    leader = soft_state.leader.get(),
                    "role changed"
                );
            }
            Action::ConfChanged { index, conf_state } => {
                tracing::info!(index = index.get(), ?conf_state, "membership changed");
                self.membership.send_replace(conf_state);
            }
            Action::SnapshotInstalled { index } => {
                tracing::info!(index = index.get(), "installed a leader's snapshot");
                let conf_state = self.node.raw().conf_state().clone();
                self.membership.send_replace(conf_state);
            }
            Action::Applied { .. } => {}
        }
    }

    /// Queues a persist task for the writer, with the commit index waiting to be recorded.
    fn queue_persist(&mut self, mut task: PersistTask) {
        // The commit index waiting to be recorded goes along, unless the task carries a newer
        // hard state of its own (or a snapshot, which raises the commit index past it).
        if let Some(hard_state) = self.pending_commit.take()
            && task.hard_state.is_none()
            && task.snapshot.is_none()
        {
            task.hard_state = Some(hard_state);
        }
        let bytes: usize = task.entries.iter().map(|entry| entry.data.len()).sum();
        self.snapshots.appended(bytes as u64);
        self.backlog.push_back(Job::Persist(task));
    }

    /// Moves queued jobs into the writer's queue while it has room.
    fn feed_writer(&mut self) -> Result<(), MemberFailure> {
        while let Some(task) = self.backlog.pop_front() {
            match self.persist_tx.try_send(task) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(task)) => {
                    self.backlog.push_front(task);
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
        let reports = self.transport.take_reports();
        let raw = self.node.raw_mut();
        for peer in reports.unreachable {
            raw.report_unreachable(peer);
        }
        for (peer, delivered) in reports.snapshots {
            raw.report_snapshot(peer, delivered);
        }
    }

    fn publish_status(&self) {
        let raw = self.node.raw();
        let now = Status {
            role: raw.role(),
            leader: raw.leader(),
            term: raw.term(),
            commit: raw.committed(),
            applied: self.node.applied(),
            first_index: raft::Storage::first_index(raw.storage()),
            resident_entries: raw.storage().resident().0 as u64,
        };
        self.status.send_if_modified(|status| {
            let changed = *status != now;
            *status = now;
            changed
        });
    }
}
