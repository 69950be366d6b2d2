//! The one driver of a raftkv member.
//!
//! [`Node`] owns the Raft core, the state machine and the table of client requests waiting for
//! their entries to commit. It takes events (a tick, a peer message, a client request, "your
//! write is durable") and emits [`Action`]s (persist, send, reply). It has no tokio, no clock and
//! no I/O, so the simulator and the server run exactly the same code: the simulator executes the
//! actions over a simulated network and disk, the server over real ones.
//!
//! Durability order is enforced here: messages that promise durable state (vote grants, append
//! acknowledgements) are held back until every write before them is acknowledged with
//! [`Node::persisted`].

use bytes::Bytes;
use raft::{
    Config, Entry, EntryKind, HardState, LogIndex, MemStorage, Message, NewNodeError, ProposeError,
    RawNode, SoftState, Term,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

/// What a member replicates. Implementations must be deterministic: the same entries in the same
/// order give the same responses on every member.
pub trait StateMachine {
    /// What the client who proposed a command is told.
    type Response: Clone + fmt::Debug;
    /// A read served without going through the log (after a ReadIndex confirmation).
    type Query: fmt::Debug;

    /// Applies the command in the entry at `index` (called exactly once per index, in order).
    fn apply(&mut self, index: LogIndex, term: Term, data: &Bytes) -> Self::Response;

    /// Answers a read from the current state. Never changes the state.
    fn query(&self, query: &Self::Query) -> Self::Response;

    /// The whole state as bytes, for a Raft snapshot (log compaction, lagging followers).
    fn snapshot(&self) -> Bytes;

    /// Replaces the whole state by a snapshot. A snapshot that cannot be decoded is an error;
    /// the member must stop rather than serve a half-restored state.
    fn restore(&mut self, data: &Bytes) -> Result<(), String>;

    /// The state as it is now, to be written as a snapshot by another thread while this one
    /// goes on applying entries (see [`Node::begin_snapshot`]). Serializing a large state takes
    /// long enough to stall a member that did it in line; a state machine that can copy its
    /// state more cheaply than it serializes it (shared buffers, persistent maps) overrides
    /// this. The default serializes now, which only moves the file writing off the driver.
    fn freeze(&self) -> Box<dyn FrozenState> {
        Box::new(self.snapshot())
    }

    /// Reclaims the space of this member's own storage (etcd's `Defragment`, which is also a
    /// per-member operation that bypasses the log). It must not change anything replicated:
    /// answers, snapshots and hashes stay exactly what they were. The default has nothing to
    /// reclaim.
    fn defragment(&mut self) {}
}

/// A state machine's state frozen at one applied index, which writes the exact bytes
/// [`StateMachine::snapshot`] would have given at that index.
pub trait FrozenState: Send + 'static {
    /// Streams the snapshot bytes into `out`, so that a large state never needs a second copy
    /// of itself in memory.
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
}

impl FrozenState for Bytes {
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(self)
    }
}

/// A snapshot begun by [`Node::begin_snapshot`]: where it stands in the log, and the state to
/// write. Once the embedder has made it durable it calls [`Node::finish_snapshot`].
pub struct SnapshotJob {
    /// The applied index, its term and the configuration in force there.
    pub metadata: raft::SnapshotMetadata,
    /// The state machine's state at `metadata.index`.
    pub state: Box<dyn FrozenState>,
}

impl fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotJob")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl StateMachine for kv::KvStore {
    type Response = kv::Response;
    type Query = Bytes;

    fn apply(&mut self, _index: LogIndex, _term: Term, data: &Bytes) -> kv::Response {
        self.apply_bytes(data)
    }

    fn query(&self, key: &Bytes) -> kv::Response {
        kv::Response::Value(self.get(key).cloned())
    }

    fn snapshot(&self) -> Bytes {
        kv::KvStore::snapshot(self)
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), String> {
        *self = kv::KvStore::restore(data).map_err(|error| error.to_string())?;
        Ok(())
    }
}

/// The embedder's handle on a client request, echoed in its reply.
pub type RequestId = u64;

/// Why a request was not (or may not have been) carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// This member cannot accept proposals; try the hinted leader. Certainly not applied.
    NotLeader {
        /// The leader this member knows of, or `NodeId::NONE`.
        leader_hint: raft::NodeId,
    },
    /// The leader is overloaded; retry later. Certainly not applied.
    Backpressure,
    /// Leadership is being handed over; retry shortly (at the new leader). Certainly not applied.
    TransferInProgress,
    /// Another membership change is still in progress; retry later. Certainly not applied.
    ConfChangePending,
    /// The membership change does not fit the configuration in force. Certainly not applied.
    ConfChangeRejected(String),
    /// The command is too large. Certainly not applied.
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The entry was replaced by another leader's entry at its index: this attempt will never be
    /// applied (a retry with the same session sequence is safe).
    Dropped,
    /// This member replaced its state by a leader's snapshot that may or may not include the
    /// entry: the outcome is unknown (a retry with the same session sequence is safe).
    OutcomeUnknown,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotLeader { leader_hint } if leader_hint.is_some() => {
                write!(f, "not the leader (leader is {leader_hint})")
            }
            RequestError::NotLeader { .. } => f.write_str("no leader"),
            RequestError::Backpressure => f.write_str("too many requests in flight"),
            RequestError::TooLarge { size, limit } => {
                write!(f, "request of {size} bytes exceeds the limit of {limit}")
            }
            RequestError::Dropped => f.write_str("proposal dropped by a leader change"),
            RequestError::OutcomeUnknown => f.write_str("outcome unknown; retry to find out"),
            RequestError::TransferInProgress => f.write_str("leadership transfer in progress"),
            RequestError::ConfChangePending => {
                f.write_str("a membership change is still in progress")
            }
            RequestError::ConfChangeRejected(reason) => write!(f, "membership change: {reason}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<ProposeError> for RequestError {
    fn from(error: ProposeError) -> RequestError {
        match error {
            ProposeError::NotLeader { leader_hint } => RequestError::NotLeader { leader_hint },
            ProposeError::Backpressure => RequestError::Backpressure,
            ProposeError::TooLarge { size, limit } => RequestError::TooLarge { size, limit },
            ProposeError::TransferInProgress => RequestError::TransferInProgress,
            ProposeError::ConfChangePending => RequestError::ConfChangePending,
            ProposeError::ConfChangeRejected(error) => {
                RequestError::ConfChangeRejected(error.to_string())
            }
        }
    }
}

/// Writes that must be durable before [`Node::persisted`] is called with this task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistTask {
    /// The Ready it came from; tasks must complete in increasing order.
    pub number: u64,
    /// A leader's snapshot replacing the log (written before `entries`).
    pub snapshot: Option<raft::Snapshot>,
    /// The hard state to write, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append (overwriting any conflicting tail).
    pub entries: Vec<Entry>,
}

/// Something the embedder must do.
#[derive(Debug)]
pub enum Action<R> {
    /// Make these writes durable (one sync), then call [`Node::persisted`] with the task.
    Persist(PersistTask),
    /// Record this hard state, which differs from the last one handed out only by a higher
    /// commit index, in order with the writes before and after it, without a sync and without
    /// reporting back: with the next [`Action::Persist`] (as its hard state when it has none of
    /// its own), or alone a little later (`wal::Wal::record_commit`). Raft does not need the
    /// commit index durable, and the messages of its Ready wait for nothing. Without this, a
    /// follower made a round trip through its writer for the commit index it hears right after
    /// every append.
    RecordCommit(HardState),
    /// Deliver a message to a peer (best effort: Raft tolerates loss).
    Send(Message),
    /// Answer a client request.
    Reply {
        /// The request.
        request: RequestId,
        /// The state machine's answer, or why there is none.
        result: Result<R, RequestError>,
    },
    /// Role or leader changed (for logs, metrics and the simulator's checks).
    RoleChanged {
        /// The term of the change.
        term: Term,
        /// The new role and leader.
        soft_state: SoftState,
    },
    /// Answers a membership change proposal: the configuration it produced once applied.
    ConfChangeReply {
        /// The request.
        request: RequestId,
        /// The new configuration, or why there is none.
        result: Result<raft::ConfState, RequestError>,
    },
    /// A membership change was applied: the configuration in force from `index` on.
    ConfChanged {
        /// The index of the change.
        index: LogIndex,
        /// The configuration now in force.
        conf_state: raft::ConfState,
    },
    /// The state machine was replaced by a leader's snapshot ending at `index`.
    SnapshotInstalled {
        /// The snapshot's last index.
        index: LogIndex,
    },
    /// An entry was applied to the state machine (observability and checkers).
    Applied {
        /// Its index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
}

/// Why a member could not start.
#[derive(Debug)]
pub enum NodeStartError {
    /// The core refused its configuration or durable state.
    Raft(NewNodeError),
    /// The durable snapshot does not decode into a state machine.
    BadSnapshot(String),
}

impl From<NewNodeError> for NodeStartError {
    fn from(error: NewNodeError) -> NodeStartError {
        NodeStartError::Raft(error)
    }
}

impl fmt::Display for NodeStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeStartError::Raft(error) => error.fmt(f),
            NodeStartError::BadSnapshot(reason) => write!(f, "cannot restore snapshot: {reason}"),
        }
    }
}

impl std::error::Error for NodeStartError {}

/// A member: Raft core + state machine + waiting requests.
pub struct Node<M: StateMachine> {
    raw: RawNode<MemStorage>,
    state_machine: M,
    /// Requests waiting for their entry: index -> (term, request). Application commands and
    /// membership changes alike.
    waiting: BTreeMap<LogIndex, (Term, RequestId)>,
    /// Readies in order whose persisted messages wait for their writes (or earlier writes).
    held: VecDeque<HeldReady>,
    applied: LogIndex,
    /// Reads waiting for their read index: request -> query.
    reads_unconfirmed: BTreeMap<RequestId, M::Query>,
    /// Confirmed reads waiting for the state machine to reach their index: (index, request).
    reads_confirmed: BTreeMap<(LogIndex, RequestId), M::Query>,
    /// The leader last seen, to fail forwarded reads when it changes.
    known_leader: raft::NodeId,
    /// Commands this follower forwarded to the leader, by their bytes: a forwarded command has
    /// no index here until it turns up in the log, so it is recognised by its content (the
    /// embedder makes commands unique, e.g. with a session sequence). Identical commands share
    /// one slot and get the same answer.
    forwarded: HashMap<Bytes, ForwardedWaiters>,
    /// When each forwarded slot gives up: (deadline tick, command), oldest first.
    forwarded_deadlines: VecDeque<(u64, Bytes)>,
    /// Ticks since start: the clock of forwarded commands' deadlines.
    ticks: u64,
    /// How long a forwarded command is waited for before its outcome is reported unknown.
    forward_timeout_ticks: u64,
}

/// The requests waiting for one forwarded command.
#[derive(Debug, Default)]
struct ForwardedWaiters {
    requests: Vec<RequestId>,
    /// The deadline of the latest submission; earlier deadline records are stale.
    deadline: u64,
}

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
            reads_unconfirmed: BTreeMap::new(),
            reads_confirmed: BTreeMap::new(),
            known_leader: raft::NodeId::NONE,
            forwarded: HashMap::new(),
            forwarded_deadlines: VecDeque::new(),
            ticks: 0,
            // Long enough for a commit round under load, short enough that a command the
            // leader dropped is retried well within a client's patience.
            forward_timeout_ticks: 2 * u64::from(config.election_timeout_ticks.max(1)),
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

    /// One tick of logical time.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
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
            Ok(_leader) => {
                let deadline = self.ticks + self.forward_timeout_ticks;
                let slot = self.forwarded.entry(data.clone()).or_default();
                slot.requests.push(request);
                slot.deadline = deadline;
                self.forwarded_deadlines.push_back((deadline, data));
            }
            Err(error) => out.push(Action::Reply {
                request,
                result: Err(error.into()),
            }),
        }
    }

    /// Answers forwarded commands whose wait is over, or all of them.
    fn give_up_forwarded(&mut self, all: bool, out: &mut Vec<Action<M::Response>>) {
        if all {
            self.forwarded_deadlines.clear();
            for (_, slot) in self.forwarded.drain() {
                out.extend(slot.requests.into_iter().map(|request| Action::Reply {
                    request,
                    result: Err(RequestError::OutcomeUnknown),
                }));
            }
            return;
        }
        while let Some((deadline, _)) = self.forwarded_deadlines.front() {
            if *deadline > self.ticks {
                break;
            }
            let (deadline, data) = self.forwarded_deadlines.pop_front().expect("checked");
            // Only the latest submission's deadline counts.
            if self
                .forwarded
                .get(&data)
                .is_some_and(|slot| slot.deadline == deadline)
            {
                let slot = self.forwarded.remove(&data).expect("checked");
                out.extend(slot.requests.into_iter().map(|request| Action::Reply {
                    request,
                    result: Err(RequestError::OutcomeUnknown),
                }));
            }
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
            Ok(()) => {
                self.reads_unconfirmed.insert(request, query);
            }
            Err(raft::ReadIndexError::NoLeader) => out.push(Action::Reply {
                request,
                result: Err(RequestError::NotLeader {
                    leader_hint: raft::NodeId::NONE,
                }),
            }),
            Err(raft::ReadIndexError::TransferInProgress) => out.push(Action::Reply {
                request,
                result: Err(RequestError::TransferInProgress),
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
        self.reads_unconfirmed.len() + self.reads_confirmed.len()
    }

    fn serve_reads(&mut self, out: &mut Vec<Action<M::Response>>) {
        while let Some(entry) = self.reads_confirmed.first_entry() {
            if entry.key().0 > self.applied {
                break;
            }
            let ((_, request), query) = entry.remove_entry();
            out.push(Action::Reply {
                request,
                result: Ok(self.state_machine.query(&query)),
            });
        }
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

    /// Collects all pending work as actions.
    pub fn poll(&mut self, out: &mut Vec<Action<M::Response>>) {
        self.give_up_forwarded(false, out);
        while self.raw.has_ready() {
            let ready = self.raw.ready();
            if let Some(soft_state) = ready.soft_state {
                out.push(Action::RoleChanged {
                    term: self.raw.term(),
                    soft_state,
                });
                if soft_state.leader != self.known_leader {
                    // Commands forwarded to the old leader may have been lost with it, or may
                    // still commit under the next one: their outcome is unknown.
                    self.give_up_forwarded(true, out);
                    // A read forwarded to the old leader may never be answered: fail it so the
                    // client retries (the read was not served, so this is a definite failure).
                    self.known_leader = soft_state.leader;
                    let stranded = std::mem::take(&mut self.reads_unconfirmed);
                    for request in stranded.into_keys() {
                        out.push(Action::Reply {
                            request,
                            result: Err(RequestError::NotLeader {
                                leader_hint: soft_state.leader,
                            }),
                        });
                    }
                }
            }
            for read in &ready.read_states {
                let Some(query) = self.reads_unconfirmed.remove(&read.context) else {
                    continue;
                };
                match read.index {
                    Some(index) => {
                        self.reads_confirmed.insert((index, read.context), query);
                    }
                    None => out.push(Action::Reply {
                        request: read.context,
                        result: Err(RequestError::NotLeader {
                            leader_hint: self.raw.leader(),
                        }),
                    }),
                }
            }
            let mut has_writes = ready.must_persist();
            out.extend(ready.messages.into_iter().map(Action::Send));
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
                    entries: ready.entries,
                })),
                _ => {}
            }
            self.held.push_back(HeldReady {
                number: ready.number,
                has_writes,
                messages: ready.persisted_messages,
            });
            self.release_held(out);
            if let Some(snapshot) = &ready.snapshot {
                self.install_snapshot(snapshot, out);
            }
            self.apply(ready.committed_entries, out);
            self.serve_reads(out);
        }
    }

    /// Replaces the state machine by a leader's snapshot. Requests waiting at indices it covers
    /// cannot know whether their entry made it in.
    fn install_snapshot(&mut self, snapshot: &raft::Snapshot, out: &mut Vec<Action<M::Response>>) {
        if let Err(reason) = self.state_machine.restore(&snapshot.data) {
            // The leader's snapshot is checksummed end to end; if it still does not decode, the
            // member cannot continue without serving wrong data.
            panic!(
                "snapshot at {} from the leader cannot be restored: {reason}",
                snapshot.metadata.index
            );
        }
        let index = snapshot.metadata.index;
        self.applied = self.applied.max(index);
        out.push(Action::SnapshotInstalled { index });
        // Forwarded commands inside the snapshot will never be applied here one by one.
        self.give_up_forwarded(true, out);
        while let Some((&at, &(_, request))) = self.waiting.first_key_value() {
            if at > index {
                break;
            }
            self.waiting.pop_first();
            out.push(Action::Reply {
                request,
                result: Err(RequestError::OutcomeUnknown),
            });
        }
    }

    /// Applies a committed membership change: the core switches configuration, and the storage
    /// records it so the next snapshot carries the configuration in force at its index.
    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        out: &mut Vec<Action<M::Response>>,
    ) -> Result<raft::ConfState, RequestError> {
        let change = raft::ConfChange::decode(&entry.data)
            .map_err(|error| RequestError::ConfChangeRejected(error.to_string()))?;
        match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                self.raw.storage_mut().set_conf_state(conf_state.clone());
                out.push(Action::ConfChanged {
                    index: entry.index,
                    conf_state: conf_state.clone(),
                });
                Ok(conf_state)
            }
            // Every member rejects the same entry the same way: the configuration is unchanged.
            Err(error) => Err(RequestError::ConfChangeRejected(error.to_string())),
        }
    }

    /// Compacts the log up to the applied index: takes a state machine snapshot there and drops
    /// the entries it covers. Returns the snapshot, which the embedder must make durable (with
    /// the log's own compaction) before relying on it after a restart. Followers that need the
    /// dropped entries receive the snapshot instead.
    pub fn compact(&mut self) -> Option<raft::Snapshot> {
        if !self.can_snapshot() {
            return None;
        }
        let applied = self.applied;
        let data = self.state_machine.snapshot();
        let storage = self.raw.storage_mut();
        storage.compact(applied, data);
        raft::Storage::snapshot(storage).ok()
    }

    /// Starts a snapshot at the applied index without compacting anything yet: freezes the
    /// state machine (see [`StateMachine::freeze`]) and records the index, its term and the
    /// configuration in force there. `None` under the same conditions as [`Node::compact`].
    /// The embedder writes the state durably (off the driver) and then calls
    /// [`Node::finish_snapshot`]; the node goes on working meanwhile.
    pub fn begin_snapshot(&mut self) -> Option<SnapshotJob> {
        if !self.can_snapshot() {
            return None;
        }
        let applied = self.applied;
        let storage = self.raw.storage();
        let term = raft::Storage::term(storage, applied).ok()?;
        let metadata = raft::SnapshotMetadata {
            index: applied,
            term,
            // The storage's configuration is the one in force at the applied index.
            conf_state: storage.conf_state().clone(),
        };
        Some(SnapshotJob {
            metadata,
            state: self.state_machine.freeze(),
        })
    }

    /// Whether the state machine can be snapshotted at the applied index now: not when nothing
    /// new was applied since the last snapshot, nor when it runs ahead of the storage because a
    /// leader's snapshot is still being written (try again later).
    fn can_snapshot(&self) -> bool {
        let storage = self.raw.storage();
        self.applied >= raft::Storage::first_index(storage)
            && self.applied <= raft::Storage::last_index(storage)
            && !self.raw.has_pending_snapshot()
    }

    /// A snapshot from [`Node::begin_snapshot`] is durable: drops the log entries it covers.
    /// The storage must have a snapshot loader (see [`MemStorage::set_snapshot_loader`]) to
    /// send it to followers that need it. A snapshot overtaken meanwhile (a leader's snapshot
    /// was installed past it) changes nothing.
    pub fn finish_snapshot(&mut self, metadata: raft::SnapshotMetadata) {
        self.raw.storage_mut().compact_to_durable(metadata);
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Vec<Action<M::Response>>) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied.next(),
                "entries must be applied in order without gaps"
            );
            self.applied = entry.index;
            let mut conf_reply = None;
            let response = match entry.kind {
                EntryKind::Normal => Some(self.state_machine.apply(
                    entry.index,
                    entry.term,
                    &entry.data,
                )),
                EntryKind::Empty => None,
                EntryKind::ConfChange => {
                    conf_reply = Some(self.apply_conf_change(&entry, out));
                    None
                }
            };
            out.push(Action::Applied {
                index: entry.index,
                term: entry.term,
            });
            if let Some(response) = &response
                && !self.forwarded.is_empty()
                && let Some(slot) = self.forwarded.remove(&entry.data)
            {
                out.extend(slot.requests.into_iter().map(|request| Action::Reply {
                    request,
                    result: Ok(response.clone()),
                }));
            }
            // Waiters at or below this index are settled: either this is their entry, or their
            // entry was replaced and can never be applied.
            while let Some((&index, &(term, request))) = self.waiting.first_key_value() {
                if index > entry.index {
                    break;
                }
                self.waiting.pop_first();
                let ours = index == entry.index && term == entry.term;
                match (&response, &conf_reply, ours) {
                    (Some(response), _, true) => out.push(Action::Reply {
                        request,
                        result: Ok(response.clone()),
                    }),
                    (_, Some(result), true) => out.push(Action::ConfChangeReply {
                        request,
                        result: result.clone(),
                    }),
                    _ => out.push(Action::Reply {
                        request,
                        result: Err(RequestError::Dropped),
                    }),
                }
            }
        }
    }
}
