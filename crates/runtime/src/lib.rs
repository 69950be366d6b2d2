//! A raftkv member on tokio: the piece the server wraps.
//!
//! [`Member::start`] opens (or creates and bootstraps) the member's write-ahead log, rebuilds
//! the node's in-memory view of its log from it, starts the peer transport and runs:
//!
//! - ONE driver task that owns the [`node::Node`] and selects over the tick interval, inbound
//!   peer messages, client requests and persist completions, executing the node's actions;
//! - ONE writer thread that owns the [`wal::Wal`]: it makes persist tasks durable in order
//!   (consecutive queued tasks are batched into one record and one `fdatasync`) and reports
//!   each batch back to the driver, which then acknowledges the tasks to the node.
//!
//! Every [`MemberConfig::snapshot_every_entries`] applied entries the driver freezes the state
//! machine ([`node::StateMachine::freeze`]) and a snapshot thread streams it into a snapshot
//! file while the driver goes on; when the file is durable the driver drops the log entries it
//! covers and queues a job for the writer, behind the pending persist tasks, to record the
//! snapshot and release the WAL segments it covers. The node's log view keeps no snapshot data
//! in memory: a follower that needs the snapshot gets it read back from its file.
//!
//! Every channel is bounded. No lock is held across I/O: the driver and the writer share
//! nothing but channels. A storage failure stops the member (its handle then answers
//! [`ClientError::Stopped`], and [`MemberHandle::shutdown`] reports the failure).

use bytes::Bytes;
use node::{Action, Node, PersistTask, RequestError, RequestId, StateMachine};
use raft::{
    ConfChange, ConfState, Entry, LogIndex, MemStorage, Message, NodeId, Role, Storage, Term,
    TransferError,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use transport::{Transport, TransportConfig};
use wal::{Wal, WalError, WalOptions};

/// How a member is run.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// This member's id (overrides `raft.id`).
    pub id: NodeId,
    /// Identifies the cluster on the peer wire; members of other clusters are refused.
    pub cluster_id: u64,
    /// Where the write-ahead log lives (created if missing).
    pub data_dir: PathBuf,
    /// The founding members and their peer addresses. A brand-new data directory of a founder
    /// is bootstrapped with this membership (unless `join_existing`); every other entry is a
    /// peer to connect to.
    pub founders: BTreeMap<NodeId, SocketAddr>,
    /// This member joins a running cluster (etcd's `--initial-cluster-state existing`): its
    /// empty log is never bootstrapped; a leader that added it sends it the log or a snapshot.
    pub join_existing: bool,
    /// The address the peer listener binds (ignored by [`Member::start_with_listener`]).
    pub listen_peer: SocketAddr,
    /// The length of one Raft tick.
    pub tick: Duration,
    /// Raft tuning (election timeout, limits, ...).
    pub raft: raft::Config,
    /// WAL tuning.
    pub wal: WalOptions,
    /// Client requests queued for the driver before callers wait.
    pub client_queue_len: usize,
    /// Client requests waiting for their reply before new ones are refused with
    /// [`RequestError::Backpressure`].
    pub max_waiting_requests: usize,
    /// Persist tasks queued for the writer thread; while the driver holds this many more it
    /// stops taking client requests.
    pub persist_queue_len: usize,
    /// The most persist tasks the writer merges into one write and one sync.
    pub max_persist_batch: usize,
    /// Once the applied index is this many entries past the log's first index, the driver
    /// compacts: it snapshots the state machine at the applied index, drops the covered
    /// entries from the in-memory log and has the writer save the snapshot and release the
    /// WAL segments it covers.
    pub snapshot_every_entries: u64,
    /// A snapshot also waits until the entries appended since the last one add up to at least
    /// this percentage of that snapshot's size (0: no such wait). A snapshot rewrites the whole
    /// state, so with a large state and a count-only trigger the snapshot writes grow without
    /// bound per byte of log (at 500k retained revisions, each 100k entries rewrote 150 MB on
    /// every member); with this trigger they stay within 100/percent times the log's bytes, as
    /// Redis rewrites its AOF by growth percentage. The WAL since the last snapshot grows with
    /// the state instead, and so does the replay at a restart.
    pub snapshot_log_percent: u32,
    /// About how many bytes of committed log entries stay in memory (between half of this and
    /// all of it). Older ones are read back from the WAL when a lagging follower or a replay
    /// needs them, so a member's memory does not grow with `snapshot_every_entries`.
    pub resident_log_bytes: u64,
}

impl MemberConfig {
    /// A configuration with the usual defaults (100 ms ticks, default Raft and WAL tuning).
    pub fn new(
        id: NodeId,
        data_dir: impl Into<PathBuf>,
        founders: BTreeMap<NodeId, SocketAddr>,
        listen_peer: SocketAddr,
    ) -> MemberConfig {
        MemberConfig {
            id,
            cluster_id: 1,
            data_dir: data_dir.into(),
            founders,
            join_existing: false,
            listen_peer,
            tick: Duration::from_millis(100),
            raft: raft::Config::new(id),
            // The writer thread only writes its WAL: the driver keeps its own window of the
            // log (`resident_log_bytes`) and reads older entries through a `WalReader`, so the
            // WAL's cache of recent entries would be a second copy (8 MiB by default) that
            // nothing reads.
            wal: WalOptions {
                entry_cache_bytes: 0,
                ..WalOptions::default()
            },
            client_queue_len: 1024,
            max_waiting_requests: 4096,
            persist_queue_len: 64,
            max_persist_batch: 64,
            snapshot_every_entries: 10_000,
            snapshot_log_percent: 0,
            resident_log_bytes: 4 << 20,
        }
    }

    /// Checks every bound.
    pub fn validate(&self) -> Result<(), StartError> {
        let invalid = |reason: &str| Err(StartError::InvalidConfig(reason.to_owned()));
        if !self.id.is_some() {
            return invalid("the member id must not be 0");
        }
        if self.tick.is_zero() {
            return invalid("tick must be longer than zero");
        }
        if self.client_queue_len == 0
            || self.max_waiting_requests == 0
            || self.persist_queue_len == 0
            || self.max_persist_batch == 0
        {
            return invalid("queue lengths and batch sizes must be at least 1");
        }
        if self.snapshot_every_entries == 0 {
            return invalid("snapshot_every_entries must be at least 1");
        }
        let mut raft = self.raft.clone();
        raft.id = self.id;
        raft.validate()
            .map_err(|error| StartError::InvalidConfig(format!("raft: {error}")))?;
        self.wal
            .validate()
            .map_err(|error| StartError::InvalidConfig(format!("wal: {error}")))?;
        Ok(())
    }
}

/// Why a member could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    InvalidConfig(String),
    /// The data directory or the peer listener could not be set up.
    Io(std::io::Error),
    /// The WAL refused to open or to be created (including: another member holds its lock).
    Wal(WalError),
    /// The WAL's contents could not be read back.
    Storage(raft::StorageError),
    /// The node refused its durable state.
    Node(node::NodeStartError),
    /// The peer transport could not start.
    Transport(transport::TransportError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidConfig(reason) => write!(f, "invalid configuration: {reason}"),
            StartError::Io(error) => write!(f, "i/o: {error}"),
            StartError::Wal(error) => write!(f, "wal: {error}"),
            StartError::Storage(error) => write!(f, "reading the wal: {error:?}"),
            StartError::Node(error) => write!(f, "node: {error}"),
            StartError::Transport(error) => write!(f, "transport: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<WalError> for StartError {
    fn from(error: WalError) -> StartError {
        StartError::Wal(error)
    }
}

impl From<raft::StorageError> for StartError {
    fn from(error: raft::StorageError) -> StartError {
        StartError::Storage(error)
    }
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// This member is not the leader (or knows none); the handle does not forward. Certainly
    /// not applied.
    NotLeader {
        /// The leader this member knows of, or `NodeId::NONE`.
        leader_hint: NodeId,
    },
    /// The node's reason (back-pressure, dropped by a leader change, outcome unknown, ...).
    /// Retrying the same [`kv::Request`] (same sequence) is safe.
    Failed(RequestError),
    /// The request's sequence is older than its session's last one: not applied.
    StaleSequence,
    /// The state machine could not decode the request: not applied.
    Malformed(String),
    /// The state machine answered with a response that does not fit the request.
    Unexpected(kv::Response),
    /// The member stopped (shut down or failed) before answering: the outcome is unknown.
    Stopped,
}

impl From<RequestError> for ClientError {
    fn from(error: RequestError) -> ClientError {
        match error {
            RequestError::NotLeader { leader_hint } => ClientError::NotLeader { leader_hint },
            other => ClientError::Failed(other),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotLeader { leader_hint } => fmt::Display::fmt(
                &RequestError::NotLeader {
                    leader_hint: *leader_hint,
                },
                f,
            ),
            ClientError::Failed(error) => fmt::Display::fmt(error, f),
            ClientError::StaleSequence => f.write_str("stale request sequence"),
            ClientError::Malformed(reason) => write!(f, "malformed request: {reason}"),
            ClientError::Unexpected(response) => write!(f, "unexpected response {response:?}"),
            ClientError::Stopped => f.write_str("the member stopped"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The member stopped because its storage failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFailure(pub String);

impl fmt::Display for MemberFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the member failed: {}", self.0)
    }
}

impl std::error::Error for MemberFailure {}

/// A snapshot of a member's Raft state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Its role.
    pub role: Role,
    /// The leader it knows of, or `NodeId::NONE`.
    pub leader: NodeId,
    /// Its current term.
    pub term: Term,
    /// The highest index it knows committed.
    pub commit: LogIndex,
    /// The highest index applied to its state machine (≤ `commit`).
    pub applied: LogIndex,
    /// The first index of its in-memory log (past 1 once it compacted or installed a
    /// snapshot).
    pub first_index: LogIndex,
    /// How many entries of its log it holds in memory; the others are read back from the WAL
    /// when wanted (see [`MemberConfig::resident_log_bytes`]).
    pub resident_entries: u64,
}

type Reply<R> = oneshot::Sender<Result<R, RequestError>>;

/// What a client asks of the driver.
enum Command<M: StateMachine> {
    /// Propose a command through the log.
    Submit {
        data: Bytes,
        reply: Reply<M::Response>,
        /// A follower hands the command to the leader rather than refusing it.
        forward: bool,
    },
    /// A linearizable read (ReadIndex, or a lease when configured).
    Read {
        query: M::Query,
        reply: Reply<M::Response>,
    },
    /// A read of this member's current state, without any confirmation (serializable).
    LocalQuery {
        query: M::Query,
        reply: oneshot::Sender<M::Response>,
    },
    /// Reclaim the space of this member's local storage (not through the log).
    Defragment {
        reply: oneshot::Sender<()>,
    },
    /// A membership change through the log.
    ConfChange {
        change: ConfChange,
        reply: Reply<ConfState>,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        target: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    /// Replace the transport's peer addresses (after a membership change).
    SetPeers(BTreeMap<NodeId, SocketAddr>),
    /// The leader's view of how far each member's log matches its own (empty on followers).
    Progress {
        reply: oneshot::Sender<BTreeMap<NodeId, LogIndex>>,
    },
    Shutdown,
}

/// What a batch of persist tasks came to: the tasks, durable in order, or why not.
type Completion = Result<Vec<PersistTask>, String>;

/// How many rounds (one input from each of the driver's queues per round) the driver takes
/// after the input it woke for before it produces a Ready (see `Driver::take_queued_inputs`):
/// enough to cover every client of a busy member, few enough that a Ready still leaves every
/// few hundred microseconds under load.
const QUEUED_INPUTS_PER_READY: usize = 256;

/// Work for the writer thread, executed in order.
#[derive(Debug)]
enum Job {
    /// Make a persist task durable (and report it back).
    Persist(PersistTask),
    /// Record a local snapshot whose file the snapshot thread has written, and release the
    /// segments it covers (reported back only if it fails).
    Compact(raft::SnapshotMetadata),
    /// Record a higher commit index without a sync (`Wal::record_commit`; reported back only
    /// if it fails).
    Commit(raft::HardState),
}

/// Starts members.
#[derive(Debug)]
pub struct Member;

impl Member {
    /// Binds `config.listen_peer` and starts the member (see [`Member::start_with_listener`]).
    pub async fn start<M>(config: MemberConfig, machine: M) -> Result<MemberHandle<M>, StartError>
    where
        M: StateMachine + Send + 'static,
        M::Response: Send + 'static,
        M::Query: Send + 'static,
    {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_peer)
            .await
            .map_err(StartError::Io)?;
        Member::start_with_listener(config, listener, machine)
    }

    /// Starts the member with its peer listener already bound. Opens the WAL in
    /// `config.data_dir` (creating and, for a founder, bootstrapping it if there is none),
    /// rebuilds the node and `machine` (an empty state machine) from it, and spawns the driver
    /// task and the writer thread. Must be called within a tokio runtime.
    pub fn start_with_listener<M>(
        config: MemberConfig,
        listener: TcpListener,
        machine: M,
    ) -> Result<MemberHandle<M>, StartError>
    where
        M: StateMachine + Send + 'static,
        M::Response: Send + 'static,
        M::Query: Send + 'static,
    {
        config.validate()?;
        let wal = open_wal(&config)?;
        let entries = wal.reader();
        let storage = MemStorage::copy_of_with_entry_loader(
            &wal,
            raft::EntryLoader::new(config.resident_log_bytes, move |low, high, max_bytes| {
                entries.entries(low, high, max_bytes)
            }),
        )?;
        let mut raft_config = config.raft.clone();
        raft_config.id = config.id;
        let mut node = Node::new(&raft_config, storage, machine).map_err(StartError::Node)?;
        // The state machine holds the snapshot's state now; its bytes stay on disk only.
        let snapshot_files = wal.snapshot_writer();
        let reader = snapshot_files.clone();
        node.raw_mut()
            .storage_mut()
            .set_snapshot_loader(raft::SnapshotLoader::new(move |metadata| {
                reader.read(metadata).map_err(|error| error.to_string())
            }));
        let membership = node.raw().conf_state().clone();

        let mut transport_config =
            TransportConfig::new(config.cluster_id, config.id, config.listen_peer);
        transport_config.peers = config
            .founders
            .iter()
            .filter(|(id, _)| **id != config.id)
            .map(|(id, addr)| (*id, *addr))
            .collect();
        let (transport, inbound) = Transport::start_with_listener(transport_config, listener)
            .map_err(StartError::Transport)?;
        let peer_addr = transport.local_addr();
        tracing::info!(
            member = config.id.get(),
            peer_addr = %peer_addr,
            first_index = raft::Storage::first_index(node.raw().storage()).get(),
            last_index = raft::Storage::last_index(node.raw().storage()).get(),
            "member started"
        );

        let (persist_tx, persist_rx) = mpsc::channel(config.persist_queue_len);
        let (done_tx, done_rx) = mpsc::channel(config.persist_queue_len);
        let max_batch = config.max_persist_batch;
        let slow_sync = config.tick;
        let writer = std::thread::Builder::new()
            .name(format!("raftkv-wal-{}", config.id.get()))
            .spawn(move || run_writer(wal, persist_rx, done_tx, max_batch, slow_sync))
            .map_err(StartError::Io)?;

        let (snapshot_done_tx, snapshot_done_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::channel(config.client_queue_len);
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (membership_tx, membership_rx) = watch::channel(membership);
        let driver = Driver {
            node,
            transport,
            inbound,
            commands: commands_rx,
            persist_tx,
            backlog: VecDeque::new(),
            completions: done_rx,
            waiters: HashMap::new(),
            conf_waiters: HashMap::new(),
            next_request: 1,
            status: status_tx,
            membership: membership_tx,
            actions: Vec::new(),
            tick: config.tick,
            max_waiting_requests: config.max_waiting_requests,
            max_backlog: config.persist_queue_len,
            snapshot_every_entries: config.snapshot_every_entries,
            snapshot_log_percent: u64::from(config.snapshot_log_percent),
            log_bytes_since_snapshot: 0,
            last_snapshot_bytes: 0,
            snapshot_files,
            snapshot_thread: None,
            snapshot_done_tx,
            snapshot_done: snapshot_done_rx,
            pending_commit: None,
        };
        let task = tokio::spawn(async move {
            let result = driver.run().await;
            // The driver and with it the writer's task queue are gone: the writer finishes
            // what it was given, then exits and releases the WAL's lock.
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            match (result, joined) {
                (Err(failure), _) => Err(failure),
                (Ok(()), Ok(Ok(()))) => Ok(()),
                (Ok(()), _) => Err(MemberFailure("the WAL writer panicked".into())),
            }
        });
        Ok(MemberHandle {
            id: config.id,
            client_id: new_client_id(config.id),
            sequence: AtomicU64::new(0),
            commands: commands_tx,
            status: status_rx,
            membership: membership_rx,
            driver: Some(task),
            peer_addr,
        })
    }
}

/// Opens the WAL in the data directory, or creates it. An empty log of a founder receives the
/// bootstrap entry naming the founders (also when a previous start died between creating the
/// WAL and writing that entry).
fn open_wal(config: &MemberConfig) -> Result<Wal, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(StartError::Io)?;
    let mut wal = match Wal::open(&config.data_dir, config.wal.clone()) {
        Ok(wal) => wal,
        Err(WalError::NotFound { .. }) => {
            Wal::create(&config.data_dir, config.wal.clone(), ConfState::default())?
        }
        Err(error) => return Err(error.into()),
    };
    let empty = wal.last_index() == LogIndex::ZERO
        && wal.snapshot_metadata().index == LogIndex::ZERO
        && wal.hard_state() == raft::HardState::default();
    if empty && !config.join_existing && config.founders.contains_key(&config.id) {
        let founders = ConfState {
            voters: config.founders.keys().copied().collect(),
            ..ConfState::default()
        };
        let boot = MemStorage::bootstrap(&founders);
        let entries = boot.entries(LogIndex(1), boot.last_index().next(), u64::MAX)?;
        wal.write(Some(boot.hard_state()), &entries)?;
    }
    Ok(wal)
}

/// A session id unlikely to collide with another client's: the member id in the high bits, the
/// clock and a process-wide counter below.
fn new_client_id(id: NodeId) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    ((id.get() << 48) ^ (nanos & ((1 << 48) - 1)) ^ count.rotate_left(24)) | 1
}

/// The writer thread: takes tasks in order, merges the ones already queued into one write,
/// and reports each batch once it is durable. Stops at the first failure (the WAL is poisoned
/// then) or when the driver is gone.
fn run_writer(
    mut wal: Wal,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Completion>,
    max_batch: usize,
    slow_sync: Duration,
) {
    // A compaction job taken while gathering a batch: it runs after that batch.
    let mut next = None;
    loop {
        let Some(job) = next.take().or_else(|| jobs.blocking_recv()) else {
            break;
        };
        let first = match job {
            Job::Persist(task) => task,
            Job::Commit(hard_state) => {
                if let Err(error) = wal.record_commit(hard_state) {
                    tracing::error!(%error, "WAL write failed; the member stops");
                    let _ = done.blocking_send(Err(error.to_string()));
                    break;
                }
                continue;
            }
            Job::Compact(metadata) => {
                let adopted = wal
                    .adopt_snapshot(&metadata)
                    .and_then(|()| wal.release_to(metadata.index).map(drop));
                if let Err(error) = adopted {
                    tracing::error!(%error, "saving a snapshot failed; the member stops");
                    let _ = done.blocking_send(Err(error.to_string()));
                    break;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(Job::Persist(task)) => batch.push(task),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = write_batch(&mut wal, &batch)
            .map(|()| batch)
            .map_err(|error| error.to_string());
        let took = started.elapsed();
        if took > slow_sync {
            tracing::warn!(took_ms = took.as_millis() as u64, "slow WAL write and sync");
        }
        if let Err(error) = &result {
            tracing::error!(%error, "WAL write failed; the member stops");
        }
        let failed = result.is_err();
        if done.blocking_send(result).is_err() || failed {
            break;
        }
    }
}

/// Saves a leader's snapshot (local ones are written by the snapshot thread and adopted) and
/// deletes the segments it makes unnecessary.
fn compact_wal(wal: &mut Wal, snapshot: &raft::Snapshot) -> Result<(), WalError> {
    wal.save_snapshot(snapshot)?;
    wal.release_to(snapshot.metadata.index)?;
    Ok(())
}

/// Writes the tasks in order with as few syncs as possible: entries and hard states of
/// consecutive tasks go into one record (a later task's entries replace the conflicting tail
/// of an earlier one, as the WAL would do), split where a snapshot must be written first or
/// where the record would grow too large. A batch that only raises the commit index is not
/// synced at all (`Wal::record_commit`).
fn write_batch(wal: &mut Wal, batch: &[PersistTask]) -> Result<(), WalError> {
    let limit = wal.options().max_batch_bytes / 2;
    let mut hard_state = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut bytes = 0u64;
    for task in batch {
        let task_bytes: u64 = task
            .entries
            .iter()
            .map(|entry| entry.data.len() as u64 + 64)
            .sum();
        let pending = hard_state.is_some() || !entries.is_empty();
        if pending && (task.snapshot.is_some() || bytes + task_bytes > limit) {
            wal.write(hard_state.take(), &entries)?;
            entries.clear();
            bytes = 0;
        }
        if let Some(snapshot) = &task.snapshot {
            // A leader's snapshot replaces what this log held before it: those segments go.
            compact_wal(wal, snapshot)?;
        }
        if task.hard_state.is_some() {
            hard_state = task.hard_state;
        }
        if let Some(first) = task.entries.first() {
            entries.retain(|entry| entry.index < first.index);
            entries.extend(task.entries.iter().cloned());
        }
        bytes += task_bytes;
    }
    match hard_state {
        // A commit index alone (what a follower hears right after each acknowledged append)
        // needs no sync; a changed term or vote is synced all the same.
        Some(hard_state) if entries.is_empty() => wal.record_commit(hard_state)?,
        _ if entries.is_empty() => {}
        _ => wal.write(hard_state, &entries)?,
    }
    Ok(())
}

/// The one task that owns the node.
struct Driver<M: StateMachine> {
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
    snapshot_every_entries: u64,
    /// See [`MemberConfig::snapshot_log_percent`].
    snapshot_log_percent: u64,
    /// The bytes of entries handed to the writer since the last snapshot began.
    log_bytes_since_snapshot: u64,
    /// The size of the last snapshot this member wrote (0 before its first).
    last_snapshot_bytes: u64,
    /// Writes snapshot files from the snapshot thread (and reads them back for followers).
    snapshot_files: wal::SnapshotWriter,
    /// The thread writing a snapshot, while one is being written (one at a time).
    snapshot_thread: Option<std::thread::JoinHandle<()>>,
    snapshot_done_tx: mpsc::UnboundedSender<SnapshotWritten>,
    snapshot_done: mpsc::UnboundedReceiver<SnapshotWritten>,
    /// A commit index the node asked to record (`Action::RecordCommit`): it goes with the
    /// next persist task, or to the writer on its own at the next tick.
    pending_commit: Option<raft::HardState>,
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// Lowers the calling thread's scheduling priority (nice 10), so that under full load a
/// snapshot being written takes the CPU the request path leaves over instead of competing with
/// it (as databases run compactions at low priority). Best effort: where the call is refused,
/// the thread runs at normal priority, which is only slower for requests.
fn yield_to_the_request_path() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), SNAPSHOT_THREAD_NICE) {
        tracing::debug!(%error, "could not lower the snapshot thread's priority");
    }
}

/// The snapshot thread's nice value: well below the request path, never starved (a
/// snapshot still finishes while the member is saturated, so the log and the frozen copy do
/// not grow without end).
const SNAPSHOT_THREAD_NICE: i32 = 10;

/// What the snapshot thread reports: the snapshot whose file is durable and the bytes of state
/// it holds, or why it is not.
type SnapshotWritten = Result<(raft::SnapshotMetadata, u64), String>;

impl<M: StateMachine> Driver<M> {
    /// Runs the member until it is shut down or fails, then waits for a snapshot still being
    /// written, so that nothing writes into the data directory once the member is gone.
    async fn run(mut self) -> Result<(), MemberFailure> {
        let result = self.run_until_stopped().await;
        if let Some(thread) = self.snapshot_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
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
                Some(written) = self.snapshot_done.recv() => self.snapshot_written(written)?,
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
            Command::ConfChange { change, reply } => {
                if self.waiters.len() + self.conf_waiters.len() >= self.max_waiting_requests {
                    let _ = reply.send(Err(RequestError::Backpressure));
                    return;
                }
                let id = self.next_request;
                self.next_request += 1;
                self.conf_waiters.insert(id, reply);
                self.node
                    .propose_conf_change(id, &change, &mut self.actions);
            }
            Command::TransferLeader { target, reply } => {
                let result = self.node.transfer_leader(target);
                if result.is_ok() {
                    tracing::info!(to = target.get(), "leadership transfer started");
                }
                let _ = reply.send(result);
            }
            Command::SetPeers(peers) => self.transport.set_peers(peers),
            Command::Progress { reply } => {
                let matched = self
                    .node
                    .raw()
                    .status()
                    .progress
                    .iter()
                    .map(|progress| (progress.id, progress.match_index))
                    .collect();
                let _ = reply.send(matched);
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

    /// Executes actions and polls the node until it has nothing more to do.
    fn drain(&mut self) -> Result<(), MemberFailure> {
        loop {
            self.node.poll(&mut self.actions);
            if self.actions.is_empty() {
                break;
            }
            for action in std::mem::take(&mut self.actions) {
                match action {
                    Action::Persist(mut task) => {
                        // The commit index waiting to be recorded goes along, unless the task
                        // carries a newer hard state of its own (or a snapshot, which raises
                        // the commit index past it).
                        if let Some(hard_state) = self.pending_commit.take()
                            && task.hard_state.is_none()
                            && task.snapshot.is_none()
                        {
                            task.hard_state = Some(hard_state);
                        }
                        let bytes: usize = task.entries.iter().map(|entry| entry.data.len()).sum();
                        self.log_bytes_since_snapshot += bytes as u64;
                        self.backlog.push_back(Job::Persist(task));
                    }
                    // Best effort: a dropped message is counted and reported by the transport,
                    // and Raft retransmits.
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
        }
        self.maybe_compact();
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

    /// Starts a snapshot once enough entries were applied past the log's first index and no
    /// other snapshot is being written: the state machine is frozen here, and a snapshot
    /// thread writes it to its file (see [`Driver::snapshot_written`]).
    fn maybe_compact(&mut self) {
        if self.snapshot_thread.is_some() {
            return;
        }
        let first = raft::Storage::first_index(self.node.raw().storage());
        if self.node.applied().get().saturating_sub(first.get()) < self.snapshot_every_entries {
            return;
        }
        if self.log_bytes_since_snapshot.saturating_mul(100)
            < self
                .last_snapshot_bytes
                .saturating_mul(self.snapshot_log_percent)
        {
            return;
        }
        let frozen_at = Instant::now();
        let cpu_before = thread_cpu_time();
        let Some(job) = self.node.begin_snapshot() else {
            return;
        };
        // Entries appended from here on are after the snapshot: they count toward the next.
        self.log_bytes_since_snapshot = 0;
        // The freeze stalls this driver, so its cost is worth seeing next to the write's: the
        // time it took, and the CPU it used (less when the machine is busy and the thread
        // waited for a core).
        tracing::debug!(
            index = job.metadata.index.get(),
            took_us = frozen_at.elapsed().as_micros() as u64,
            cpu_us = thread_cpu_time().saturating_sub(cpu_before).as_micros() as u64,
            "froze the state machine for a snapshot"
        );
        let files = self.snapshot_files.clone();
        let done = self.snapshot_done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("raftkv-snapshot".into())
            .spawn(move || {
                yield_to_the_request_path();
                let started = Instant::now();
                let node::SnapshotJob { metadata, state } = job;
                let written = files
                    .write(&metadata, |out| state.write_to(out))
                    .map(|bytes| (metadata, bytes))
                    .map_err(|error| error.to_string());
                // Free the frozen state before reporting, so the next snapshot never finds
                // two of them in memory.
                drop(state);
                if let Ok((metadata, bytes)) = &written {
                    tracing::debug!(
                        index = metadata.index.get(),
                        bytes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "wrote a snapshot"
                    );
                }
                let _ = done.send(written);
            });
        match spawned {
            Ok(thread) => self.snapshot_thread = Some(thread),
            Err(error) => tracing::warn!(%error, "could not start a snapshot thread; will retry"),
        }
    }

    /// The snapshot thread is done. A durable snapshot lets the node drop the entries it
    /// covers and the writer record it; a failed one stops the member, as a failed WAL write
    /// does (the disk is full or failing).
    fn snapshot_written(&mut self, written: SnapshotWritten) -> Result<(), MemberFailure> {
        if let Some(thread) = self.snapshot_thread.take() {
            // It has sent its report, its last act: this returns at once.
            let _ = thread.join();
        }
        match written {
            Ok((metadata, bytes)) => {
                tracing::debug!(index = metadata.index.get(), "compacted the log");
                self.last_snapshot_bytes = bytes;
                self.node.finish_snapshot(metadata.clone());
                self.backlog.push_back(Job::Compact(metadata));
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "writing a snapshot failed; the member stops");
                Err(MemberFailure(format!("writing a snapshot failed: {error}")))
            }
        }
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

/// A client's handle on a running member. Dropping it stops the member (without waiting);
/// [`MemberHandle::shutdown`] stops it and waits until its WAL is closed.
///
/// Writes through the [`kv::KvStore`] helpers carry this handle's session (a client id and an
/// increasing sequence), so a retried [`kv::Request`] is applied at most once. Issue one write
/// at a time per handle: the sessions of the state machine refuse a sequence older than the
/// last one applied.
pub struct MemberHandle<M: StateMachine = kv::KvStore> {
    id: NodeId,
    client_id: u64,
    sequence: AtomicU64,
    commands: mpsc::Sender<Command<M>>,
    status: watch::Receiver<Status>,
    membership: watch::Receiver<ConfState>,
    driver: Option<JoinHandle<Result<(), MemberFailure>>>,
    peer_addr: SocketAddr,
}

impl<M: StateMachine> fmt::Debug for MemberHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberHandle")
            .field("id", &self.id)
            .field("peer_addr", &self.peer_addr)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<M: StateMachine> fmt::Debug for Command<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Submit { data, .. } => write!(f, "Submit({} bytes)", data.len()),
            Command::Read { query, .. } => write!(f, "Read({query:?})"),
            Command::LocalQuery { query, .. } => write!(f, "LocalQuery({query:?})"),
            Command::Defragment { .. } => f.write_str("Defragment"),
            Command::ConfChange { change, .. } => write!(f, "ConfChange({change:?})"),
            Command::TransferLeader { target, .. } => write!(f, "TransferLeader({target})"),
            Command::SetPeers(peers) => write!(f, "SetPeers({peers:?})"),
            Command::Progress { .. } => f.write_str("Progress"),
            Command::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl<M: StateMachine> MemberHandle<M> {
    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address its peer listener is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The member's Raft state as of its driver's last step.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// A receiver that sees every status change (to wait for a leader without polling).
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The membership in force on this member (as of its last applied change or snapshot).
    pub fn membership(&self) -> ConfState {
        self.membership.borrow().clone()
    }

    /// A receiver that sees every membership change, to update peer addresses.
    pub fn watch_membership(&self) -> watch::Receiver<ConfState> {
        self.membership.clone()
    }

    async fn send(&self, command: Command<M>) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Proposes `data` (an encoded command of the state machine) through the log and waits for
    /// the state machine's answer. The caller is responsible for deduplicating retries (the
    /// state machine's sessions).
    pub async fn propose(&self, data: Bytes) -> Result<M::Response, ClientError> {
        self.submit_command(data, false).await
    }

    /// Like [`MemberHandle::propose`], but on a follower the command goes to the leader over
    /// the peer connection (batched with the Raft traffic) and is answered when this member
    /// applies it; see [`node::Node::submit_anywhere`]. The data must be unique per attempt
    /// (a session and sequence), and an [`RequestError::OutcomeUnknown`] answer must be
    /// retried with the same data to learn the outcome.
    pub async fn propose_anywhere(&self, data: Bytes) -> Result<M::Response, ClientError> {
        self.submit_command(data, true).await
    }

    async fn submit_command(&self, data: Bytes, forward: bool) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Submit {
            data,
            reply,
            forward,
        })
        .await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// A linearizable read: answered once the member has confirmed (ReadIndex) that it applied
    /// everything committed when the read arrived. Followers ask the leader to confirm.
    pub async fn read(&self, query: M::Query) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Read { query, reply }).await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// A serializable read of this member's current state: no confirmation, possibly stale,
    /// answers without a leader.
    pub async fn read_local(&self, query: M::Query) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::LocalQuery { query, reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Has this member reclaim the space of its local storage, between two applies (see
    /// [`node::StateMachine::defragment`]); like etcd's defragmentation it blocks this member's
    /// applying while it runs and touches no other member.
    pub async fn defragment(&self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Defragment { reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Proposes a membership change (this member must lead) and waits until it is applied;
    /// returns the configuration it produced.
    pub async fn change_membership(&self, change: ConfChange) -> Result<ConfState, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ConfChange { change, reply }).await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// Starts handing leadership to `target` (this member must lead). Returns once the transfer
    /// started; watch [`MemberHandle::watch_status`] to see it complete.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), TransferOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::TransferLeader { target, reply })
            .await
            .map_err(|_| TransferOutcome::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(TransferOutcome::Refused),
            Err(_) => Err(TransferOutcome::Stopped),
        }
    }

    /// Replaces the addresses the transport connects to (every member but this one; members
    /// not listed are disconnected).
    pub async fn set_peers(&self, peers: BTreeMap<NodeId, SocketAddr>) -> Result<(), ClientError> {
        self.send(Command::SetPeers(peers)).await
    }

    /// On the leader, how far each member's log is known to match the leader's (its match
    /// index); empty on a follower. Used to refuse promoting a learner that lags.
    pub async fn replication_progress(&self) -> Result<BTreeMap<NodeId, LogIndex>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Progress { reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Stops the member and waits until its driver has stopped and its WAL is closed (its
    /// directory lock released). Reports a storage failure that stopped it earlier.
    pub async fn shutdown(mut self) -> Result<(), MemberFailure> {
        // If the queue is full or the driver is gone, dropping the sender below stops it too.
        let _ = self.commands.try_send(Command::Shutdown);
        let driver = self.driver.take().expect("taken only here");
        drop(self);
        match driver.await {
            Ok(result) => result,
            Err(error) => Err(MemberFailure(format!("the driver task failed: {error}"))),
        }
    }
}

/// Why a leadership transfer did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The core refused it (not the leader, or the target is no voter).
    Refused(TransferError),
    /// The member stopped.
    Stopped,
}

impl fmt::Display for TransferOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferOutcome::Refused(error) => fmt::Display::fmt(error, f),
            TransferOutcome::Stopped => f.write_str("the member stopped"),
        }
    }
}

impl std::error::Error for TransferOutcome {}

/// Helpers for members whose state machine is the plain [`kv::KvStore`].
impl MemberHandle<kv::KvStore> {
    /// The next request of this handle's session (a retry must reuse the returned request).
    pub fn next_request(&self, command: kv::Command) -> kv::Request {
        kv::Request {
            client_id: self.client_id,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            command,
        }
    }

    /// Proposes `request` through the log and waits for the state machine's answer.
    pub async fn submit(&self, request: kv::Request) -> Result<kv::Response, ClientError> {
        self.propose(request.encode()).await
    }

    async fn write(&self, command: kv::Command) -> Result<kv::Response, ClientError> {
        let response = self.submit(self.next_request(command)).await?;
        match response {
            kv::Response::StaleSequence => Err(ClientError::StaleSequence),
            kv::Response::Malformed(reason) => Err(ClientError::Malformed(reason)),
            other => Ok(other),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: Bytes, value: Bytes) -> Result<(), ClientError> {
        match self.write(kv::Command::Put { key, value }).await? {
            kv::Response::Done => Ok(()),
            other => Err(ClientError::Unexpected(other)),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: Bytes) -> Result<(), ClientError> {
        match self.write(kv::Command::Delete { key }).await? {
            kv::Response::Done => Ok(()),
            other => Err(ClientError::Unexpected(other)),
        }
    }

    /// Sets `key` to `new` if it holds `expected`. Returns whether it did and the value found.
    pub async fn cas(
        &self,
        key: Bytes,
        expected: Bytes,
        new: Bytes,
    ) -> Result<(bool, Option<Bytes>), ClientError> {
        let command = kv::Command::CompareAndSet { key, expected, new };
        match self.write(command).await? {
            kv::Response::CompareAndSet { succeeded, found } => Ok((succeeded, found)),
            other => Err(ClientError::Unexpected(other)),
        }
    }

    /// A linearizable read of `key` (ReadIndex; followers ask the leader to confirm).
    pub async fn get(&self, key: Bytes) -> Result<Option<Bytes>, ClientError> {
        match self.read(key).await? {
            kv::Response::Value(value) => Ok(value),
            other => Err(ClientError::Unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{EntryKind, HardState};

    fn entries(term: u64, indices: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indices
            .map(|index| Entry {
                term: Term(term),
                index: LogIndex(index),
                kind: EntryKind::Normal,
                data: Bytes::from(format!("{term}/{index}")),
            })
            .collect()
    }

    fn task(number: u64, hard_state: Option<HardState>, entries: Vec<Entry>) -> PersistTask {
        PersistTask {
            number,
            snapshot: None,
            hard_state,
            entries,
        }
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState {
            term: Term(term),
            vote: NodeId(1),
            commit: LogIndex(commit),
        }
    }

    /// A batch whose later task overwrites the tail of an earlier one (a new leader) ends up
    /// as the WAL would after writing the tasks one by one, also after a reopen.
    #[test]
    fn a_merged_batch_equals_its_tasks_written_one_by_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        let batch = [
            task(1, Some(hard_state(2, 0)), entries(2, 1..=3)),
            task(2, Some(hard_state(3, 2)), entries(3, 3..=4)),
            task(3, Some(hard_state(3, 4)), Vec::new()),
            task(4, None, entries(3, 5..=5)),
        ];
        write_batch(&mut wal, &batch).expect("write");
        let check = |wal: &Wal| {
            assert_eq!(wal.hard_state(), hard_state(3, 4));
            assert_eq!(wal.last_index(), LogIndex(5));
            let terms: Vec<Term> = (1..=5)
                .map(|index| wal.term(LogIndex(index)).expect("term"))
                .collect();
            assert_eq!(terms, [2, 2, 3, 3, 3].map(Term));
            let stored = wal
                .entries(LogIndex(3), LogIndex(4), u64::MAX)
                .expect("entries");
            assert_eq!(stored, entries(3, 3..=3));
        };
        check(&wal);
        drop(wal);
        check(&Wal::open(dir.path(), WalOptions::default()).expect("reopen"));
    }

    /// A hard state alone is written; an empty batch writes nothing.
    #[test]
    fn hard_state_only_and_empty_tasks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        write_batch(&mut wal, &[task(1, None, Vec::new())]).expect("write nothing");
        assert_eq!(wal.hard_state(), HardState::default());
        write_batch(&mut wal, &[task(2, Some(hard_state(5, 0)), Vec::new())]).expect("write");
        drop(wal);
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
        assert_eq!(wal.hard_state(), hard_state(5, 0));
        assert_eq!(wal.last_index(), LogIndex::ZERO);
    }

    /// A batch that only raises the commit index is written but not synced (a process crash
    /// keeps it, a reopen reads it); a batch with entries, or with a new term or vote, syncs.
    #[test]
    fn a_commit_index_alone_is_written_without_a_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        write_batch(
            &mut wal,
            &[task(1, Some(hard_state(2, 0)), entries(2, 1..=2))],
        )
        .expect("write");
        assert_eq!(wal.durable_hard_state(), hard_state(2, 0));
        write_batch(
            &mut wal,
            &[
                task(2, Some(hard_state(2, 1)), Vec::new()),
                task(3, Some(hard_state(2, 2)), Vec::new()),
            ],
        )
        .expect("write commit");
        assert_eq!(wal.hard_state(), hard_state(2, 2));
        assert_eq!(wal.durable_hard_state(), hard_state(2, 0), "not synced");
        write_batch(&mut wal, &[task(4, None, entries(2, 3..=3))]).expect("write entry");
        assert_eq!(
            wal.durable_hard_state(),
            hard_state(2, 2),
            "synced with the entry"
        );
        write_batch(&mut wal, &[task(5, Some(hard_state(3, 2)), Vec::new())]).expect("term");
        assert_eq!(
            wal.durable_hard_state(),
            hard_state(3, 2),
            "a new term is synced"
        );
        write_batch(&mut wal, &[task(6, Some(hard_state(3, 3)), Vec::new())]).expect("commit");
        drop(wal);
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
        assert_eq!(wal.hard_state(), hard_state(3, 3));
        assert_eq!(wal.last_index(), LogIndex(3));
    }

    /// Compaction jobs run in order with the persist tasks around them: the snapshot is saved
    /// after the entries it covers, the segments before it are released, and later entries
    /// stay. A reopened WAL starts from the snapshot.
    #[test]
    fn the_writer_runs_compaction_jobs_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = WalOptions {
            segment_size_bytes: 4096,
            preallocate: false,
            ..WalOptions::default()
        };
        let wal = Wal::create(dir.path(), options.clone(), ConfState::default()).expect("create");
        let files = wal.snapshot_writer();
        let (jobs_tx, jobs_rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::channel(16);
        let padded = |index: u64| Entry {
            data: Bytes::from(vec![b'x'; 200]),
            ..entries(1, index..=index).remove(0)
        };
        let snapshot = raft::Snapshot {
            metadata: raft::SnapshotMetadata {
                index: LogIndex(60),
                term: Term(1),
                conf_state: ConfState::default(),
            },
            data: Bytes::from_static(b"state"),
        };
        let jobs = [
            Job::Persist(task(
                1,
                Some(hard_state(1, 60)),
                (1..=60).map(padded).collect(),
            )),
            Job::Compact(snapshot.metadata.clone()),
            Job::Persist(task(2, None, (61..=70).map(padded).collect())),
        ];
        // The snapshot thread writes the file before the driver queues the job.
        files
            .write(&snapshot.metadata, |out| out.write_all(&snapshot.data))
            .expect("snapshot file");
        for job in jobs {
            jobs_tx.try_send(job).expect("queue");
        }
        drop(jobs_tx);
        run_writer(wal, jobs_rx, done_tx, 64, Duration::from_secs(1));
        let mut numbers = Vec::new();
        while let Ok(done) = done_rx.try_recv() {
            numbers.extend(done.expect("written").iter().map(|task| task.number));
        }
        assert_eq!(numbers, [1, 2]);

        let wal = Wal::open(dir.path(), options).expect("reopen");
        assert_eq!(wal.snapshot_metadata(), snapshot.metadata);
        assert_eq!(wal.last_index(), LogIndex(70));
        assert_eq!(wal.term(LogIndex(61)).expect("kept"), Term(1));
        assert_eq!(raft::Storage::first_index(&wal), LogIndex(61));
        let view = MemStorage::copy_of(&wal).expect("view");
        assert_eq!(raft::Storage::snapshot(&view).expect("snapshot"), snapshot);
        // 60 entries of ~250 bytes filled several 4 KiB segments before the snapshot.
        assert!(wal.segments().len() <= 2, "{:?}", wal.segments());
    }

    #[test]
    fn snapshot_every_entries_must_be_positive() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut config = MemberConfig::new(NodeId(1), "unused", [(NodeId(1), addr)].into(), addr);
        assert!(config.validate().is_ok());
        config.snapshot_every_entries = 0;
        assert!(matches!(
            config.validate(),
            Err(StartError::InvalidConfig(_))
        ));
    }

    /// A fresh directory of a founder is bootstrapped; a second start resumes without writing
    /// the bootstrap entry again.
    #[test]
    fn a_founder_bootstraps_a_fresh_directory_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let founders: BTreeMap<NodeId, SocketAddr> =
            [(NodeId(1), addr), (NodeId(2), addr), (NodeId(3), addr)].into();
        let config = MemberConfig::new(NodeId(2), dir.path().join("member"), founders, addr);
        let wal = open_wal(&config).expect("bootstrap");
        assert_eq!(wal.last_index(), LogIndex(1));
        assert_eq!(wal.hard_state().commit, LogIndex(1));
        drop(wal);
        let wal = open_wal(&config).expect("resume");
        assert_eq!(wal.last_index(), LogIndex(1));
        let view = MemStorage::copy_of(&wal).expect("view");
        assert_eq!(view.last_index(), LogIndex(1));

        // Not a founder: the log stays empty until a leader sends it one.
        let mut spare = config.clone();
        spare.id = NodeId(4);
        spare.data_dir = dir.path().join("spare");
        assert_eq!(
            open_wal(&spare).expect("spare").last_index(),
            LogIndex::ZERO
        );
    }
}
