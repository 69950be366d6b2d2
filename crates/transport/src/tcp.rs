//! The tokio TCP transport: one long-lived outbound connection per peer, one reader task per
//! inbound connection, bounded queues everywhere, and drop-and-report instead of blocking.
//!
//! The node runtime owns a [`Transport`] and the inbound [`mpsc::Receiver`]. It hands every
//! outgoing message to [`Transport::send`], receives peers' messages from the receiver, and
//! periodically (or when [`Transport::reports_changed`] fires) takes the [`Reports`] to tell the
//! Raft core which peers were unreachable and which snapshots were (not) delivered.

use crate::codec::{
    CodecError, Decoder, Encoder, HANDSHAKE_ACCEPT, HANDSHAKE_BYTES, Handshake,
    MIN_MAX_FRAME_BYTES, snapshot_chunk_overhead_bytes,
};
use bytes::BytesMut;
use raft::{Message, MessageBody, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Everything the transport needs; every queue and size has an explicit bound here.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Identifies the cluster. Frames and handshakes of another cluster are refused, so a
    /// misconfigured address can never mix two clusters' logs.
    pub cluster_id: u64,
    /// This member's id: the `from` of its handshakes and the only `to` it accepts.
    pub local_id: NodeId,
    /// Where to listen for peers (used by [`Transport::start`]; port 0 picks a free port).
    pub listen: SocketAddr,
    /// The other members and where they listen. An entry for `local_id` is ignored. Only these
    /// ids may connect to us.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Largest frame payload written or accepted, in bytes. Bounds the memory one frame can take
    /// and must exceed the largest `AppendEntries` the Raft core builds.
    pub max_frame_bytes: usize,
    /// Largest snapshot accepted for reassembly, in bytes (a partial snapshot is held in memory).
    pub max_snapshot_bytes: u64,
    /// Snapshot data bytes per chunk frame; at most `max_frame_bytes` minus the chunk overhead.
    pub snapshot_chunk_bytes: usize,
    /// Messages queued per peer before [`Transport::send`] drops them. Bounds memory when a peer
    /// is slow; Raft retransmits what is lost.
    pub outbound_queue_len: usize,
    /// Messages buffered towards the runtime before connection readers wait (back-pressure).
    pub inbound_queue_len: usize,
    /// Bytes batched into one write before it is issued (a batch may exceed it by one message).
    pub max_batch_bytes: usize,
    /// Concurrent inbound connections accepted; more are closed at once. Bounds the tasks and
    /// buffers a flood of connections can cost.
    pub max_inbound_connections: usize,
    /// First delay before redialing a peer; doubles per failure up to `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    /// Largest delay between redials.
    pub reconnect_backoff_max: Duration,
    /// How long a dial may take, handshake answer included.
    pub connect_timeout: Duration,
    /// How long an inbound connection may take to send its handshake before it is closed, so
    /// idle or slow-loris connections cannot pin connection slots.
    pub handshake_timeout: Duration,
}

impl TransportConfig {
    /// A configuration with production defaults and no peers.
    pub fn new(cluster_id: u64, local_id: NodeId, listen: SocketAddr) -> TransportConfig {
        TransportConfig {
            cluster_id,
            local_id,
            listen,
            peers: BTreeMap::new(),
            max_frame_bytes: 8 << 20,
            max_snapshot_bytes: 256 << 20,
            snapshot_chunk_bytes: 1 << 20,
            outbound_queue_len: 4096,
            inbound_queue_len: 4096,
            max_batch_bytes: 1 << 20,
            max_inbound_connections: 64,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
        }
    }

    /// Checks the bounds are usable and consistent.
    pub fn validate(&self) -> Result<(), TransportError> {
        let invalid = |what| Err(TransportError::InvalidConfig(what));
        if !self.local_id.is_some() {
            return invalid("local_id must not be 0");
        }
        if self.max_frame_bytes < MIN_MAX_FRAME_BYTES || self.max_frame_bytes > u32::MAX as usize {
            return invalid("max_frame_bytes must be between 1 KiB and 4 GiB");
        }
        if self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes + snapshot_chunk_overhead_bytes() > self.max_frame_bytes
        {
            return invalid("snapshot_chunk_bytes must be positive and fit in max_frame_bytes");
        }
        if self.outbound_queue_len == 0 || self.inbound_queue_len == 0 {
            return invalid("queue lengths must be positive");
        }
        if self.max_batch_bytes == 0 || self.max_inbound_connections == 0 {
            return invalid("max_batch_bytes and max_inbound_connections must be positive");
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_max < self.reconnect_backoff_min
        {
            return invalid("reconnect backoff must satisfy 0 < min <= max");
        }
        if self.connect_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return invalid("timeouts must be positive");
        }
        Ok(())
    }
}

/// Why the transport could not start.
#[derive(Debug)]
pub enum TransportError {
    /// The configuration failed [`TransportConfig::validate`].
    InvalidConfig(&'static str),
    /// Binding the listener failed.
    Io(io::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::InvalidConfig(what) => write!(f, "invalid transport config: {what}"),
            TransportError::Io(e) => write!(f, "transport I/O error: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Why [`Transport::send`] dropped a message. The message is gone; it has been counted and, for
/// the last two, reported as unreachable (and as a failed snapshot, if it was one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// `to` is not a configured peer (or is this member).
    UnknownPeer(NodeId),
    /// The peer's outbound queue is full: it is slow or the link is congested.
    QueueFull(NodeId),
    /// The peer's connection is down and waiting to be redialed.
    Unreachable(NodeId),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownPeer(id) => write!(f, "unknown peer {id}"),
            SendError::QueueFull(id) => write!(f, "outbound queue to {id} is full"),
            SendError::Unreachable(id) => write!(f, "peer {id} is unreachable"),
        }
    }
}

impl std::error::Error for SendError {}

/// Counters since start, for metrics and tests. Every dropped message is counted in exactly one
/// `dropped_*` counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to a connection (a chunked snapshot counts once).
    pub messages_sent: u64,
    /// Frame bytes written.
    pub bytes_sent: u64,
    /// Messages handed to the runtime.
    pub messages_received: u64,
    /// Dropped by `send` because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Dropped because the peer was unreachable (at `send`, or queued when a dial failed).
    pub dropped_unreachable: u64,
    /// Dropped by `send` because the destination is not a peer.
    pub dropped_unknown_peer: u64,
    /// Dropped because they could not be encoded (larger than `max_frame_bytes`).
    pub dropped_too_large: u64,
    /// Dropped because the connection broke while writing them.
    pub dropped_write_failed: u64,
    /// Inbound messages dropped because `from`/`to` did not match the connection's handshake.
    pub dropped_wrong_sender: u64,
    /// Outbound connections established (handshake accepted).
    pub connections_established: u64,
    /// Outbound dials that failed (refused, timed out, handshake not accepted).
    pub dial_failures: u64,
    /// Inbound connections refused (bad handshake, wrong cluster, unknown member, wrong target,
    /// too many connections).
    pub connections_refused: u64,
    /// Inbound connections closed because their bytes did not decode.
    pub decode_errors: u64,
}

/// What the runtime must tell the Raft core, accumulated since the last
/// [`Transport::take_reports`]. Bounded by the number of peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reports {
    /// Peers a message to which was dropped or a connection to which failed: call
    /// `RawNode::report_unreachable` for each.
    pub unreachable: BTreeSet<NodeId>,
    /// The latest snapshot outcome per peer: `true` once all chunks were written to the
    /// connection, `false` if the snapshot was dropped. Call `RawNode::report_snapshot`.
    pub snapshots: BTreeMap<NodeId, bool>,
}

impl Reports {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.unreachable.is_empty() && self.snapshots.is_empty()
    }
}

#[derive(Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unreachable: AtomicU64,
    dropped_unknown_peer: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_write_failed: AtomicU64,
    dropped_wrong_sender: AtomicU64,
    connections_established: AtomicU64,
    dial_failures: AtomicU64,
    connections_refused: AtomicU64,
    decode_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Shared {
    config: TransportConfig,
    /// Ids allowed to connect to us; follows `set_peers`.
    members: Mutex<BTreeSet<NodeId>>,
    counters: Counters,
    reports: Mutex<Reports>,
    reports_ready: Notify,
}

/// Locks a mutex, ignoring poisoning: the data behind these locks (sets, counters, handles) is
/// valid after any panic, and the transport should keep working.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn report_unreachable(&self, id: NodeId) {
        lock(&self.reports).unreachable.insert(id);
        self.reports_ready.notify_one();
    }

    fn report_snapshot(&self, id: NodeId, delivered: bool) {
        lock(&self.reports).snapshots.insert(id, delivered);
        self.reports_ready.notify_one();
    }

    /// Counts a dropped message and reports what the Raft core must learn from it.
    fn dropped(&self, message: &Message, counter: &AtomicU64) {
        bump(counter, 1);
        if let MessageBody::InstallSnapshot { .. } = message.body {
            self.report_snapshot(message.to, false);
        }
        self.report_unreachable(message.to);
    }
}

const STATE_CONNECTING: u8 = 0;
const STATE_CONNECTED: u8 = 1;
const STATE_DOWN: u8 = 2;

struct PeerHandle {
    addr: SocketAddr,
    queue: mpsc::Sender<Message>,
    /// One of the `STATE_*` values, written by the peer task. While `DOWN` (backing off before a
    /// redial) `send` drops at once instead of filling the queue with messages that would only
    /// be stale by the time a connection exists.
    state: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running transport. Dropping it stops every task it started and closes its connections.
pub struct Transport {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    local_addr: SocketAddr,
    peers: Mutex<BTreeMap<NodeId, PeerHandle>>,
    listener_task: JoinHandle<()>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.listener_task.abort();
    }
}

impl Transport {
    /// Binds `config.listen` and starts the transport. Returns it with the receiver of inbound
    /// messages (bounded by `inbound_queue_len`). Must be called within a tokio runtime.
    pub async fn start(
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<Message>), TransportError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(TransportError::Io)?;
        Transport::start_with_listener(config, listener)
    }

    /// Starts the transport on an already bound listener (`config.listen` is ignored). Lets a
    /// caller learn every member's port before any of them dials, as tests and a server that
    /// binds early both need.
    pub fn start_with_listener(
        config: TransportConfig,
        listener: TcpListener,
    ) -> Result<(Transport, mpsc::Receiver<Message>), TransportError> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(TransportError::Io)?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_len);
        let peers_config = config.peers.clone();
        let shared = Arc::new(Shared {
            members: Mutex::new(BTreeSet::new()),
            config,
            counters: Counters::default(),
            reports: Mutex::new(Reports::default()),
            reports_ready: Notify::new(),
        });
        let runtime = tokio::runtime::Handle::current();
        let listener_task = runtime.spawn(run_listener(shared.clone(), listener, inbound_tx));
        let transport = Transport {
            shared,
            runtime,
            local_addr,
            peers: Mutex::new(BTreeMap::new()),
            listener_task,
        };
        transport.set_peers(peers_config);
        Ok((transport, inbound_rx))
    }

    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues `message` for its destination without blocking. On error the message has been
    /// dropped, counted and reported; the caller need not do anything more (Raft retransmits).
    pub fn send(&self, message: Message) -> Result<(), SendError> {
        let shared = &self.shared;
        let to = message.to;
        let peers = lock(&self.peers);
        let Some(peer) = peers.get(&to) else {
            bump(&shared.counters.dropped_unknown_peer, 1);
            if let MessageBody::InstallSnapshot { .. } = message.body {
                shared.report_snapshot(to, false);
            }
            return Err(SendError::UnknownPeer(to));
        };
        if peer.state.load(Ordering::Acquire) == STATE_DOWN {
            shared.dropped(&message, &shared.counters.dropped_unreachable);
            return Err(SendError::Unreachable(to));
        }
        match peer.queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(message)) => {
                shared.dropped(&message, &shared.counters.dropped_queue_full);
                Err(SendError::QueueFull(to))
            }
            Err(mpsc::error::TrySendError::Closed(message)) => {
                shared.dropped(&message, &shared.counters.dropped_unreachable);
                Err(SendError::Unreachable(to))
            }
        }
    }

    /// Replaces the peer set after a membership change. Unchanged peers keep their connection and
    /// queue; removed peers' tasks stop (their queued messages are dropped); a peer whose address
    /// changed is redialed. Only the new set may connect to us from now on.
    pub fn set_peers(&self, peers: BTreeMap<NodeId, SocketAddr>) {
        let local_id = self.shared.config.local_id;
        let mut current = lock(&self.peers);
        current.retain(|id, handle| peers.get(id) == Some(&handle.addr));
        for (&id, &addr) in &peers {
            if id != local_id && !current.contains_key(&id) {
                current.insert(id, self.spawn_peer(id, addr));
            }
        }
        *lock(&self.shared.members) = current.keys().copied().collect();
    }

    fn spawn_peer(&self, id: NodeId, addr: SocketAddr) -> PeerHandle {
        let (queue, rx) = mpsc::channel(self.shared.config.outbound_queue_len);
        let state = Arc::new(AtomicU8::new(STATE_CONNECTING));
        let task = self
            .runtime
            .spawn(run_peer(self.shared.clone(), id, addr, rx, state.clone()));
        PeerHandle {
            addr,
            queue,
            state,
            task,
        }
    }

    /// Takes the reports accumulated since the last call.
    pub fn take_reports(&self) -> Reports {
        std::mem::take(&mut *lock(&self.shared.reports))
    }

    /// Resolves when reports may have been added since it last resolved. Meant for a single
    /// runtime loop that then calls [`Transport::take_reports`].
    pub async fn reports_changed(&self) {
        self.shared.reports_ready.notified().await;
    }

    /// The counters since start.
    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportStats {
            messages_sent: get(&c.messages_sent),
            bytes_sent: get(&c.bytes_sent),
            messages_received: get(&c.messages_received),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_unreachable: get(&c.dropped_unreachable),
            dropped_unknown_peer: get(&c.dropped_unknown_peer),
            dropped_too_large: get(&c.dropped_too_large),
            dropped_write_failed: get(&c.dropped_write_failed),
            dropped_wrong_sender: get(&c.dropped_wrong_sender),
            connections_established: get(&c.connections_established),
            dial_failures: get(&c.dial_failures),
            connections_refused: get(&c.connections_refused),
            decode_errors: get(&c.decode_errors),
        }
    }
}

// ---- outbound ----

/// Exponential backoff with jitter. Jitter comes from a small generator seeded from the clock and
/// the peer id: this is the I/O layer, where determinism is not required, and jitter keeps
/// members that lost a peer together from redialing in lockstep.
struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration, peer: NodeId) -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff {
            min,
            max,
            failures: 0,
            rng: (nanos ^ peer.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1,
        }
    }

    /// The next delay: `min * 2^failures` capped at `max`, then uniformly jittered into
    /// `[d/2, d]`.
    fn next_delay(&mut self) -> Duration {
        let doubled = self.min.saturating_mul(1u32 << self.failures.min(16));
        let delay = doubled.min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = delay / 2;
        let span = (delay - half).as_nanos() as u64;
        half + Duration::from_nanos(self.rng % (span + 1))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

enum WriterExit {
    /// The transport dropped this peer: stop.
    Shutdown,
    /// The connection broke: redial.
    Broken,
}

async fn run_peer(
    shared: Arc<Shared>,
    id: NodeId,
    addr: SocketAddr,
    mut queue: mpsc::Receiver<Message>,
    state: Arc<AtomicU8>,
) {
    let config = &shared.config;
    let mut encoder = Encoder::new(
        config.cluster_id,
        config.max_frame_bytes,
        config.snapshot_chunk_bytes,
    );
    let mut backoff = Backoff::new(
        config.reconnect_backoff_min,
        config.reconnect_backoff_max,
        id,
    );
    let mut buf = BytesMut::new();
    loop {
        state.store(STATE_CONNECTING, Ordering::Release);
        match dial(config, id, addr).await {
            Ok(stream) => {
                state.store(STATE_CONNECTED, Ordering::Release);
                bump(&shared.counters.connections_established, 1);
                backoff.reset();
                tracing::debug!(peer = %id, %addr, "connected to peer");
                let exit = write_loop(&shared, &mut encoder, &mut queue, stream, &mut buf).await;
                if let WriterExit::Shutdown = exit {
                    return;
                }
                tracing::debug!(peer = %id, %addr, "connection to peer broke");
            }
            Err(e) => {
                bump(&shared.counters.dial_failures, 1);
                tracing::debug!(peer = %id, %addr, error = %e, "dialing peer failed");
            }
        }
        state.store(STATE_DOWN, Ordering::Release);
        shared.report_unreachable(id);
        // What was queued for the dead connection would be stale once a new one is up; Raft
        // resends what still matters after it hears the peer was unreachable.
        while let Ok(message) = queue.try_recv() {
            shared.dropped(&message, &shared.counters.dropped_unreachable);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn dial(config: &TransportConfig, id: NodeId, addr: SocketAddr) -> io::Result<TcpStream> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let handshake = Handshake {
            cluster_id: config.cluster_id,
            from: config.local_id,
            to: id,
        };
        stream.write_all(&handshake.to_bytes()).await?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await?;
        if answer[0] != HANDSHAKE_ACCEPT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake answered with an unknown byte",
            ));
        }
        Ok(stream)
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "dial timed out"))?
}

async fn write_loop(
    shared: &Shared,
    encoder: &mut Encoder,
    queue: &mut mpsc::Receiver<Message>,
    stream: TcpStream,
    buf: &mut BytesMut,
) -> WriterExit {
    let counters = &shared.counters;
    let (mut reader, mut writer) = stream.into_split();
    let mut probe = [0u8; 1];
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => return WriterExit::Shutdown,
            },
            // The listener never writes after its handshake answer, so any read completing means
            // end-of-stream or an error: notice a dead peer now rather than at the next write.
            _ = reader.read(&mut probe) => return WriterExit::Broken,
        };
        buf.clear();
        let mut batched: u64 = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if let MessageBody::InstallSnapshot { .. } = message.body {
                // Stream the chunks one frame at a time so that a large snapshot is never copied
                // whole into the write buffer; write what is batched before it to keep FIFO.
                let to = message.to;
                if !write_batch(counters, &mut writer, buf, &mut batched).await {
                    shared.dropped(&message, &counters.dropped_write_failed);
                    return WriterExit::Broken;
                }
                let mut chunks_written = 0u64;
                for chunk in encoder.snapshot_chunks(&message) {
                    if let Err(e) = encoder.encode_chunk(&chunk, buf) {
                        tracing::warn!(peer = %to, error = %e, "cannot encode snapshot chunk");
                        shared.dropped(&message, &counters.dropped_too_large);
                        if chunks_written > 0 {
                            // The receiver holds a partial transfer; only a new connection
                            // resets it.
                            return WriterExit::Broken;
                        }
                        break;
                    }
                    let mut not_a_message = 0;
                    if !write_batch(counters, &mut writer, buf, &mut not_a_message).await {
                        shared.dropped(&message, &counters.dropped_write_failed);
                        return WriterExit::Broken;
                    }
                    chunks_written += 1;
                }
                if chunks_written > 0 {
                    bump(&counters.messages_sent, 1);
                    shared.report_snapshot(to, true);
                }
            } else {
                match encoder.encode(&message, buf) {
                    Ok(()) => batched += 1,
                    Err(e) => {
                        tracing::warn!(peer = %message.to, kind = message.body.kind_name(), error = %e, "dropping unencodable message");
                        shared.dropped(&message, &counters.dropped_too_large);
                    }
                }
            }
            if buf.len() < shared.config.max_batch_bytes {
                next = queue.try_recv().ok();
            }
        }
        if !write_batch(counters, &mut writer, buf, &mut batched).await {
            return WriterExit::Broken;
        }
    }
}

/// Writes and clears `buf` (the `batched` messages in it) in one `write_all`. Returns false if the
/// connection broke, counting the batch as dropped.
async fn write_batch(
    counters: &Counters,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    buf: &mut BytesMut,
    batched: &mut u64,
) -> bool {
    if buf.is_empty() {
        return true;
    }
    let result = writer.write_all(buf).await;
    let len = buf.len() as u64;
    buf.clear();
    let count = std::mem::take(batched);
    match result {
        Ok(()) => {
            bump(&counters.messages_sent, count);
            bump(&counters.bytes_sent, len);
            true
        }
        Err(_) => {
            bump(&counters.dropped_write_failed, count);
            false
        }
    }
}

// ---- inbound ----

async fn run_listener(shared: Arc<Shared>, listener: TcpListener, inbound: mpsc::Sender<Message>) {
    // Connection tasks live in this set: aborting the listener task drops it, which aborts them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if connections.len() >= shared.config.max_inbound_connections {
                        bump(&shared.counters.connections_refused, 1);
                        tracing::warn!(%remote, "too many inbound connections; refusing");
                        continue;
                    }
                    connections.spawn(serve_connection(shared.clone(), stream, remote, inbound.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    remote: SocketAddr,
    inbound: mpsc::Sender<Message>,
) {
    let config = &shared.config;
    let counters = &shared.counters;
    let Some(peer) = accept_handshake(&shared, &mut stream).await else {
        bump(&counters.connections_refused, 1);
        tracing::info!(%remote, "refused peer connection");
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new(
        config.cluster_id,
        config.max_frame_bytes,
        config.max_snapshot_bytes,
    );
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    if message.from != peer || message.to != config.local_id {
                        bump(&counters.dropped_wrong_sender, 1);
                        continue;
                    }
                    bump(&counters.messages_received, 1);
                    // Awaiting here is the back-pressure: while the runtime is behind we stop
                    // reading, the socket buffer fills, and the peer's writes stall.
                    if inbound.send(message).await.is_err() {
                        return; // the runtime is gone
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log_decode_error(peer, remote, &e);
                    bump(&counters.decode_errors, 1);
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn log_decode_error(peer: NodeId, remote: SocketAddr, error: &CodecError) {
    tracing::warn!(peer = %peer, %remote, error = %error, "closing peer connection: undecodable bytes");
}

/// Reads and checks the dialer's handshake; answers and returns the peer's id if it is
/// acceptable, or `None` (and the caller closes the connection) if not.
async fn accept_handshake(shared: &Shared, stream: &mut TcpStream) -> Option<NodeId> {
    let config = &shared.config;
    let mut bytes = [0u8; HANDSHAKE_BYTES];
    tokio::time::timeout(config.handshake_timeout, stream.read_exact(&mut bytes))
        .await
        .ok()?
        .ok()?;
    let handshake = Handshake::from_bytes(&bytes).ok()?;
    if handshake.cluster_id != config.cluster_id
        || handshake.to != config.local_id
        || !lock(&shared.members).contains(&handshake.from)
    {
        return None;
    }
    stream.write_all(&[HANDSHAKE_ACCEPT]).await.ok()?;
    Some(handshake.from)
}
