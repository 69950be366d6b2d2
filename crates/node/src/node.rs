//! [`Node`]: events in (a tick, a peer message, a client request, "your write is durable"),
//! [`Action`]s out. Applying committed entries lives in `node/apply.rs`, snapshots of the
//! state machine in `node/snapshot.rs`.

mod apply;
mod snapshot;

use crate::forwarded::Forwarded;
use crate::reads::PendingReads;
use crate::{Action, NodeStartError, PersistTask, RequestError, RequestId, StateMachine};
use bytes::Bytes;
use raft::{Config, LogIndex, MemStorage, Message, NewNodeError, RawNode, SoftState, Term};
use std::collections::{BTreeMap, VecDeque};

/// A member: Raft core + state machine + waiting requests, owned together so that the order
/// of persisting, applying and answering is decided in one place, the same for the server and
/// the simulator.
pub struct Node<M: StateMachine> {
    raw: RawNode<MemStorage>,
    state_machine: M,
    /// Requests waiting for their entry: index -> (term, request). Application commands and
    /// membership changes alike.
    waiting: BTreeMap<LogIndex, (Term, RequestId)>,
    /// Readies in order whose persisted messages wait for their writes (or earlier writes).
    held: VecDeque<HeldReady>,
    applied: LogIndex,
    /// Reads waiting for their read index or for the state machine to reach it.
    reads: PendingReads<M::Query>,
    /// The leader last seen, to fail forwarded reads when it changes.
    known_leader: raft::NodeId,
    /// Commands this follower forwarded to the leader, waiting to be seen applied.
    forwarded: Forwarded,
}

/// The messages of one Ready that promise durable state, held until its writes (and every
/// earlier Ready's) are durable.
#[derive(Debug)]
struct HeldReady {
    number: u64,
    has_writes: bool,
    messages: Vec<Message>,
}

impl<M: StateMachine> Node<M> {
    /// Starts a member from its durable state (`storage`) and a state machine that has applied
    /// everything up to `config.applied`.
    pub fn new(
        config: &Config,
        storage: MemStorage,
        mut state_machine: M,
    ) -> Result<Self, NodeStartError> {
        // A compacted log starts from its snapshot: the state machine is restored from it, and
        // only entries after it are applied again.
        let snapshot = raft::Storage::snapshot(&storage).map_err(NewNodeError::Storage)?;
        let mut config = config.clone();
        if !snapshot.is_empty() {
            state_machine
                .restore(&snapshot.data)
                .map_err(NodeStartError::BadSnapshot)?;
            config.applied = config.applied.max(snapshot.metadata.index);
        }
        let raw = RawNode::new(&config, storage)?;
        let applied = raw.applied();
        Ok(Node {
            raw,
            state_machine,
            waiting: BTreeMap::new(),
            held: VecDeque::new(),
            applied,
            reads: PendingReads::new(),
            known_leader: raft::NodeId::NONE,
            // Long enough for a commit round under load, short enough that a command the
            // leader dropped is retried well within a client's patience.
            forwarded: Forwarded::new(2 * u64::from(config.election_timeout_ticks.max(1))),
        })
    }

    /// The Raft core, for inspection.
    pub fn raw(&self) -> &RawNode<MemStorage> {
        &self.raw
    }

    /// The Raft core, for test-only fault switches and direct control.
    pub fn raw_mut(&mut self) -> &mut RawNode<MemStorage> {
        &mut self.raw
    }

    /// The state machine, for inspection (local, possibly stale reads).
    pub fn state_machine(&self) -> &M {
        &self.state_machine
    }

    /// Runs the state machine's [`StateMachine::defragment`] between two applies.
    pub fn defragment(&mut self) {
        self.state_machine.defragment();
    }

    /// The last applied index.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// How many requests wait for their entries.
    pub fn waiting_requests(&self) -> usize {
        self.waiting.len()
    }

    /// One tick of logical time. The node reads no clock: the embedder decides how long a tick
    /// is (the simulator advances ticks at will), and forwarded commands' deadlines count ticks.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.forwarded.tick();
    }

    /// A message from a peer.
    pub fn receive(&mut self, message: Message) {
        self.raw.step(message);
    }

    /// Starts an election now.
    pub fn campaign(&mut self) {
        self.raw.campaign();
    }

    /// A client command. Its reply comes as an [`Action::Reply`] from a later (or this) `poll`.
    pub fn submit(&mut self, request: RequestId, data: Bytes, out: &mut Vec<Action<M::Response>>) {
        match self.raw.propose(data) {
            Ok((index, term)) => {
                // An older waiter at this index belonged to an entry that has been overwritten.
                if let Some((_, previous)) = self.waiting.insert(index, (term, request)) {
                    out.push(Action::Reply {
                        request: previous,
                        result: Err(RequestError::Dropped),
                    });
                }
            }
            Err(error) => out.push(Action::Reply {
                request,
                result: Err(error.into()),
            }),
        }
    }

    /// Like [`Node::submit`], but a follower or learner that knows the leader hands the command
    /// to it instead of refusing (etcd's proposal forwarding), and answers once it applies the
    /// command itself: the state machine is deterministic, so its answer is the leader's. A
    /// forwarded command that is not seen applied within two election timeouts, or when the
    /// leader changes or a snapshot replaces the state, is answered
    /// [`RequestError::OutcomeUnknown`]: the leader may have dropped it, or may still commit
    /// it, so only a retry in the same session can tell.
    pub fn submit_anywhere(
        &mut self,
        request: RequestId,
        data: Bytes,
        out: &mut Vec<Action<M::Response>>,
    ) {
        if self.raw.role() == raft::Role::Leader {
            self.submit(request, data, out);
            return;
        }
        match self.raw.forward_proposal(data.clone()) {
            Ok(_leader) => self.forwarded.insert(request, data),
            Err(error) => out.push(Action::Reply {
                request,
                result: Err(error.into()),
            }),
        }
    }

    /// A linearizable read (ReadIndex): answered from the state machine once the leader has
    /// confirmed its leadership and this member has applied up to the confirmed index. Served by
    /// followers too, without going through the log.
    pub fn read(
        &mut self,
        request: RequestId,
        query: M::Query,
        out: &mut Vec<Action<M::Response>>,
    ) {
        match self.raw.read_index(request) {
            Ok(()) => self.reads.wait_for_index(request, query),
            Err(raft::ReadIndexError::NoLeader) => out.push(Action::Reply {
                request,
                result: Err(raft::ProposeError::NotLeader {
                    leader_hint: raft::NodeId::NONE,
                }
                .into()),
            }),
            Err(raft::ReadIndexError::TransferInProgress) => out.push(Action::Reply {
                request,
                result: Err(raft::ProposeError::TransferInProgress.into()),
            }),
        }
    }

    /// Proposes a membership change; its reply is an [`Action::ConfChangeReply`] once it is
    /// applied (or a failure).
    pub fn propose_conf_change(
        &mut self,
        request: RequestId,
        change: &raft::ConfChange,
        out: &mut Vec<Action<M::Response>>,
    ) {
        match self.raw.propose_conf_change(change) {
            Ok((index, term)) => {
                if let Some((_, previous)) = self.waiting.insert(index, (term, request)) {
                    out.push(Action::Reply {
                        request: previous,
                        result: Err(RequestError::Dropped),
                    });
                }
            }
            Err(error) => out.push(Action::ConfChangeReply {
                request,
                result: Err(error.into()),
            }),
        }
    }

    /// Hands leadership to `target` (see `RawNode::transfer_leader`).
    pub fn transfer_leader(&mut self, target: raft::NodeId) -> Result<(), raft::TransferError> {
        self.raw.transfer_leader(target)
    }

    /// How many reads wait for confirmation or for the state machine to catch up.
    pub fn waiting_reads(&self) -> usize {
        self.reads.len()
    }

    /// The writes of `task` are durable. Records them in the node's view of its storage and
    /// releases the messages that waited for them.
    pub fn persisted(&mut self, task: PersistTask, out: &mut Vec<Action<M::Response>>) {
        let storage = self.raw.storage_mut();
        if let Some(snapshot) = task.snapshot {
            storage.apply_snapshot(snapshot);
        }
        if let Some(hard_state) = task.hard_state {
            storage.set_hard_state(hard_state);
        }
        storage.append_owned(task.entries);
        self.raw.on_persisted(task.number);
        let front = self.held.front().map(|held| held.number);
        assert_eq!(
            front,
            Some(task.number),
            "persist tasks must complete in order"
        );
        let done = self.held.pop_front().expect("checked");
        out.extend(done.messages.into_iter().map(Action::Send));
        self.release_held(out);
    }

    /// Releases held Readies without writes that no longer wait behind a write.
    fn release_held(&mut self, out: &mut Vec<Action<M::Response>>) {
        while self.held.front().is_some_and(|held| !held.has_writes) {
            let held = self.held.pop_front().expect("checked");
            self.raw.on_persisted(held.number);
            out.extend(held.messages.into_iter().map(Action::Send));
        }
    }

    /// Whether `poll` has work.
    pub fn has_work(&self) -> bool {
        self.raw.has_ready()
    }

    /// Collects all pending work as actions. Inputs taken between two polls share one Ready:
    /// their writes go into one persist task and their entries into one append per peer.
    pub fn poll(&mut self, out: &mut Vec<Action<M::Response>>) {
        self.forwarded.give_up_expired(out);
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            if let Some(soft_state) = ready.soft_state {
                self.role_changed(soft_state, out);
            }
            self.reads
                .confirm(&ready.read_states, self.raw.leader(), out);
            self.hand_out_writes(&mut ready, out);
            if let Some(snapshot) = &ready.snapshot {
                self.install_snapshot(snapshot, out);
            }
            self.apply(ready.committed_entries, out);
            self.reads.serve(self.applied, &self.state_machine, out);
        }
    }

    /// Reports a new role or leader. When the leader changed, what this member handed the old
    /// one is given up on.
    fn role_changed(&mut self, soft_state: SoftState, out: &mut Vec<Action<M::Response>>) {
        out.push(Action::RoleChanged {
            term: self.raw.term(),
            soft_state,
        });
        if soft_state.leader != self.known_leader {
            // Commands forwarded to the old leader may have been lost with it, or may still
            // commit under the next one: their outcome is unknown.
            self.forwarded.give_up_all(out);
            // A read forwarded to the old leader may never be answered: fail it so the client
            // retries (the read was not served, so this is a definite failure).
            self.known_leader = soft_state.leader;
            self.reads.fail_unconfirmed(soft_state.leader, out);
        }
    }

    /// Hands out a Ready's messages and writes: messages that need nothing durable at once, the
    /// writes as one persist task (or a commit index alone to record without a sync), and the
    /// messages that promise durable state held until those writes are acknowledged.
    fn hand_out_writes(&mut self, ready: &mut raft::Ready, out: &mut Vec<Action<M::Response>>) {
        let mut has_writes = ready.must_persist();
        out.extend(
            std::mem::take(&mut ready.messages)
                .into_iter()
                .map(Action::Send),
        );
        match ready.hard_state {
            Some(hard_state) if !ready.must_sync => {
                // A commit index alone: nothing of this Ready waits for it.
                has_writes = false;
                out.push(Action::RecordCommit(hard_state));
            }
            _ if has_writes => out.push(Action::Persist(PersistTask {
                number: ready.number,
                snapshot: ready.snapshot.clone(),
                hard_state: ready.hard_state,
                entries: std::mem::take(&mut ready.entries),
            })),
            _ => {}
        }
        self.held.push_back(HeldReady {
            number: ready.number,
            has_writes,
            messages: std::mem::take(&mut ready.persisted_messages),
        });
        self.release_held(out);
    }
}
