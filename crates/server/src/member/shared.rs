//! What every gRPC handler shares: the running member, who this member is, and the paths a
//! request takes to the log (propose here, or forward to the leader) and to a read.
//!
//! Any member answers any request. A write on the leader is proposed directly; on a follower
//! it is forwarded to the leader over the leader's client URL (the internal `Forward`
//! service), always with an idempotency key so that retrying a forward whose answer was lost
//! cannot apply it twice. Linearizable reads use ReadIndex on whichever member received them
//! (a follower asks the leader to confirm its commit index); serializable reads are local.

use crate::machine::{MachineCommand, MachineQuery, MachineResponse, MemberAttributes, Summary};
use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use etcdpb::raftkvpb;
use node::RequestError;
use raft::{ConfState, NodeId, Role};
use runtime::{ClientError, MemberHandle};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The gRPC metadata key a client may set to make a write idempotent: a write retried with the
/// same key is applied at most once.
pub const REQUEST_ID_METADATA: &str = "raftkv-request-id";
/// Set on requests one member forwards to another, so they are never forwarded again.
pub const FORWARDED_METADATA: &str = "raftkv-forwarded";
/// The most commands a follower forwards to the leader in one call.
pub const MAX_FORWARD_BATCH: usize = 256;
/// Forwarded batches in flight at once per member.
const MAX_FORWARD_BATCHES_IN_FLIGHT: usize = 8;

/// The etcd API version Status reports (the API raftkv implements).
pub const ETCD_VERSION: &str = "3.4.23";

/// Static facts about this member and its limits.
#[derive(Clone, Debug)]
pub struct Identity {
    /// This member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's name.
    pub name: String,
    /// Where peers reach this member.
    pub peer_urls: Vec<String>,
    /// Where clients reach this member.
    pub client_urls: Vec<String>,
    /// The founding members (from `--initial-cluster`): names and peer URLs to show and dial
    /// until the members publish their own.
    pub initial: BTreeMap<u64, (String, Vec<String>, SocketAddr)>,
    /// The largest request accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// The most operations per transaction branch (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// How long a request may wait for a leader, a commit or a read confirmation.
    pub request_timeout: Duration,
    /// How long to wait before retrying after a leader change.
    pub retry_pause: Duration,
    /// The cluster token (for ids of members added at runtime).
    pub token: String,
    /// Where to dial some peers instead of their peer URLs, by name (`--peer-dial-overrides`).
    pub dial_overrides: BTreeMap<String, SocketAddr>,
}

/// Shared by all handlers of one member.
pub struct Core {
    /// The running member.
    pub member: MemberHandle<crate::machine::EtcdMachine>,
    /// Who this member is.
    pub identity: Identity,
    leader_client: Arc<LeaderClient>,
    forward_tx: tokio::sync::mpsc::Sender<Forwarded>,
    forward_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Forwarded>>>,
    keys: AtomicU64,
    key_salt: u64,
    /// Sessions of writes this member forwards, not in use now (see [`SessionPool`]).
    idle_sessions: SessionPool,
}

/// The sessions a member gives the writes it forwards, reused one write after another.
///
/// A forwarded write carries a session so that a retry whose first answer was lost is answered
/// from the state machine's session table instead of applied twice. One session per write
/// would put every forwarded write into that table (65 536 of them by default: ~7 MiB, copied
/// again by every snapshot's freeze, and an insertion plus an eviction per write). Instead a
/// session serves one write at a time, and its next write takes the next sequence: the table
/// holds about as many of this member's sessions as it ever had writes in flight at once.
///
/// Reuse is safe because a session goes back to the pool only once its write has finished,
/// however it finished, and with the next sequence: an earlier attempt still in the log applies
/// either before the next write (both apply, and the first one's outcome was reported unknown
/// to its client) or after it (refused as a stale sequence), never twice.
#[derive(Debug, Default)]
struct SessionPool {
    /// `(client_id, next sequence)`, most recently returned last.
    idle: Mutex<Vec<(u64, u64)>>,
}

/// The most idle sessions a pool keeps; beyond it, returned sessions are forgotten (the state
/// machine evicts them in time, least recently used first).
const MAX_IDLE_SESSIONS: usize = 4096;

/// A session lent to one forwarded write: `(client_id, sequence)` to put in its command.
/// Dropping it, whether the write finished or was abandoned, returns the session with the
/// next sequence.
struct LentSession<'a> {
    pool: &'a SessionPool,
    client_id: u64,
    sequence: u64,
}

impl Drop for LentSession<'_> {
    fn drop(&mut self) {
        let mut idle = self.pool.idle.lock().expect("not poisoned");
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push((self.client_id, self.sequence.saturating_add(1)));
        }
    }
}

impl SessionPool {
    /// An idle session, or a new one from `fresh` (sequence 1).
    fn lend(&self, fresh: impl FnOnce() -> u64) -> LentSession<'_> {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let (client_id, sequence) = idle.unwrap_or_else(|| (fresh(), 1));
        LentSession {
            pool: self,
            client_id,
            sequence,
        }
    }
}

/// The cached connection to the leader's client port (a leader change replaces it; a failed
/// call drops it).
type LeaderClient = Mutex<Option<(u64, raftkvpb::forward_client::ForwardClient<Channel>)>>;

/// A command waiting to be forwarded to the leader.
struct Forwarded {
    data: Bytes,
    reply: tokio::sync::oneshot::Sender<Result<MachineResponse, Status>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A status for an error etcd reports with a fixed message.
pub fn etcd_status(code: Code, message: &str) -> Status {
    Status::new(code, message.to_owned())
}

/// etcd's "no leader" (clients retry reads on Unavailable).
pub fn no_leader() -> Status {
    etcd_status(Code::Unavailable, "etcdserver: no leader")
}

/// etcd's server-side timeout.
pub fn timed_out() -> Status {
    etcd_status(Code::Unavailable, "etcdserver: request timed out")
}

/// etcd's answer when a proposal or read was cut off by a leader change.
pub fn leader_changed() -> Status {
    etcd_status(Code::Unavailable, "etcdserver: leader changed")
}

/// etcd's answer to an oversized request.
pub fn too_large() -> Status {
    etcd_status(Code::InvalidArgument, "etcdserver: request is too large")
}

/// The gRPC status for an MVCC error: etcd's code and exact message.
pub fn mvcc_status(error: &kv::mvcc::MvccError) -> Status {
    Status::new(Code::from_i32(error.grpc_code() as i32), error.to_string())
}

/// Derives a session id from a client's idempotency key. Different keys collide with
/// probability 2^-63 per pair; a collision would answer the second write with the first's
/// outcome.
pub fn session_for_key(key: &[u8]) -> u64 {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id) | 1
}

/// The idempotency key of a request, if the client sent one.
pub fn request_key<T>(request: &tonic::Request<T>) -> Option<u64> {
    let value = request.metadata().get(REQUEST_ID_METADATA)?;
    Some(session_for_key(value.as_bytes()))
}

/// A request to another member, marked as forwarded so that it is never forwarded again.
pub fn forwarded_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// Whether another member forwarded this request.
pub fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_METADATA)
}

impl Core {
    /// Wraps a started member.
    pub fn new(member: MemberHandle<crate::machine::EtcdMachine>, identity: Identity) -> Core {
        let key_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let (forward_tx, forward_rx) = tokio::sync::mpsc::channel(4 * MAX_FORWARD_BATCH);
        Core {
            member,
            identity,
            leader_client: Arc::new(Mutex::new(None)),
            forward_tx,
            forward_rx: Mutex::new(Some(forward_rx)),
            keys: AtomicU64::new(0),
            key_salt,
            idle_sessions: SessionPool::default(),
        }
    }

    /// A response header as this member would send it now.
    pub fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term: self.member.status().term.get(),
        }
    }

    /// The member-describing header fields for converted KV responses.
    pub fn header_context(&self) -> etcdpb::convert::HeaderContext {
        etcdpb::convert::HeaderContext {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            raft_term: self.member.status().term.get(),
        }
    }

    /// A fresh idempotency session for a write this member forwards without a client key.
    pub fn fresh_session(&self) -> u64 {
        let count = self.keys.fetch_add(1, Ordering::Relaxed);
        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(&self.identity.member_id.to_be_bytes());
        key.extend_from_slice(&self.key_salt.to_be_bytes());
        key.extend_from_slice(&count.to_be_bytes());
        session_for_key(&key)
    }

    /// Whether this member is a learner in the configuration in force.
    pub fn is_learner(&self) -> bool {
        let id = NodeId(self.identity.member_id);
        self.member.membership().learners.contains(&id)
    }

    /// Keyspace figures from the local state machine.
    pub async fn summary(&self) -> Result<Summary, Status> {
        match self.member.read_local(MachineQuery::Summary).await {
            Ok(MachineResponse::Summary(summary)) => Ok(summary),
            Ok(other) => Err(Status::internal(format!("unexpected answer {other:?}"))),
            Err(error) => Err(client_status(&error)),
        }
    }

    /// The member table from the local state machine.
    pub async fn member_table(&self) -> Result<BTreeMap<u64, MemberAttributes>, Status> {
        match self.member.read_local(MachineQuery::Members).await {
            Ok(MachineResponse::Members(members)) => Ok(members),
            Ok(other) => Err(Status::internal(format!("unexpected answer {other:?}"))),
            Err(error) => Err(client_status(&error)),
        }
    }

    /// etcd's member list: every member of the configuration in force, sorted by id, with
    /// what it published (or what `--initial-cluster` says about a founder that has not).
    pub async fn member_list(&self) -> Result<Vec<pb::Member>, Status> {
        let table = self.member_table().await?;
        Ok(members_of(
            &self.member.membership(),
            &table,
            &self.identity.initial,
        ))
    }

    /// Waits until some member is known to lead, or until `deadline`.
    pub async fn wait_for_leader(&self, deadline: Instant) -> Result<u64, Status> {
        let mut status = self.member.watch_status();
        loop {
            let leader = status.borrow_and_update().leader;
            if leader.is_some() {
                return Ok(leader.get());
            }
            match tokio::time::timeout_at(deadline.into(), status.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(stopped()),
                Err(_) => return Err(no_leader()),
            }
        }
    }

    /// Puts a command through the log and returns the state machine's answer: proposed here
    /// when this member leads, forwarded to the leader otherwise. A command with a session
    /// (`client_id != 0` for KV; member commands are idempotent) is retried across leader
    /// changes until `deadline`; one without is not, because it might apply twice.
    pub async fn propose(
        &self,
        command: MachineCommand,
        forwarded: bool,
    ) -> Result<MachineResponse, Status> {
        let deadline = Instant::now() + self.identity.request_timeout;
        let mut command = command;
        // A write that may leave this member always carries a session, so retrying a forward
        // whose answer was lost cannot apply it twice. The session is this write's until the
        // write is done (`_lent` lives to the end of this call).
        let mut _lent = None;
        if !forwarded
            && self.member.status().role != Role::Leader
            && let MachineCommand::Kv(kv) = &mut command
            && kv.client_id == 0
        {
            let session = self.idle_sessions.lend(|| self.fresh_session());
            kv.client_id = session.client_id;
            kv.sequence = session.sequence;
            _lent = Some(session);
        }
        let data = command.encode();
        let retryable = match &command {
            MachineCommand::Kv(kv) => kv.client_id != 0,
            MachineCommand::Member(_) => true,
        };
        if data.len() > self.identity.max_request_bytes {
            return Err(too_large());
        }
        self.propose_bytes(data, retryable, forwarded, deadline)
            .await
    }

    /// Proposes encoded command bytes (see [`Core::propose`]).
    pub async fn propose_bytes(
        &self,
        data: Bytes,
        retryable: bool,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<MachineResponse, Status> {
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            let status = self.member.status();
            let outcome = if status.role == Role::Leader {
                match self.member.propose(data.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                }
            } else if forwarded {
                // The forwarding member's view was stale; it retries with its own.
                return Err(leader_changed());
            } else if status.leader.is_some() && retryable {
                // A command with a session is unique and safe to retry: it goes to the leader
                // over the peer connection, batched with the Raft traffic, and is answered
                // when this member applies it (no second RPC stack on either side).
                match self.member.propose_anywhere(data.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                }
            } else if status.leader.is_some() {
                match self.forward(data.clone(), deadline).await {
                    Ok(response) => return Ok(response),
                    Err(error) if retryable && error.code() == Code::Unavailable => {
                        tracing::debug!(%error, "forwarding failed; retrying");
                        self.pause(deadline).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            } else {
                self.wait_for_leader(deadline).await?;
                continue;
            };
            match outcome {
                ClientError::NotLeader { .. } => continue,
                ClientError::Failed(RequestError::TransferInProgress) => {
                    self.pause(deadline).await;
                }
                ClientError::Failed(RequestError::Dropped | RequestError::OutcomeUnknown)
                    if retryable =>
                {
                    self.pause(deadline).await;
                }
                other => return Err(client_status(&other)),
            }
        }
    }

    async fn pause(&self, deadline: Instant) {
        let until = (Instant::now() + self.identity.retry_pause).min(deadline);
        tokio::time::sleep_until(until.into()).await;
    }

    /// Hands encoded command bytes to the forwarder, which sends them to the leader's
    /// `Forward` service in one batch with the other writes waiting to go.
    async fn forward(&self, data: Bytes, deadline: Instant) -> Result<MachineResponse, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.forward_tx
            .send(Forwarded { data, reply })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::unavailable("raftkv: the forwarder stopped")),
            Err(_) => Err(timed_out()),
        }
    }

    /// Sends queued writes to the leader, many per call and several calls at once, until the
    /// member stops. Runs once per member (it takes the queue's receiving end).
    pub async fn run_forwarder(self: Arc<Core>) {
        let Some(mut queue) = self.forward_rx.lock().expect("not poisoned").take() else {
            return;
        };
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARD_BATCHES_IN_FLIGHT));
        loop {
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_FORWARD_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let leader = self.member.status().leader;
            if !leader.is_some() || leader.get() == self.identity.member_id {
                // The callers look again and propose here, or wait for a leader.
                for item in batch {
                    let _ = item.reply.send(Err(leader_changed()));
                }
                continue;
            }
            let client = match self.leader_client(leader.get()).await {
                Ok(client) => client,
                Err(status) => {
                    for item in batch {
                        let _ = item.reply.send(Err(status.clone()));
                    }
                    continue;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let cache = self.leader_client.clone();
            let timeout = self.identity.request_timeout;
            tokio::spawn(async move {
                send_batch(client, cache, batch, timeout).await;
                drop(permit);
            });
        }
    }

    /// A connection (made lazily) to a member's client port, at the first client URL it
    /// published; Unavailable until it has published one.
    pub async fn channel_to(&self, member: u64) -> Result<Channel, Status> {
        let table = self.member_table().await?;
        let Some(url) = table
            .get(&member)
            .and_then(|row| row.client_urls.first())
            .cloned()
        else {
            return Err(Status::unavailable(
                "etcdserver: leader has no client URL yet",
            ));
        };
        Ok(tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| Status::internal(format!("member URL {url}: {error}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy())
    }

    async fn leader_client(
        &self,
        leader: u64,
    ) -> Result<raftkvpb::forward_client::ForwardClient<Channel>, Status> {
        if let Some((cached, client)) = &*self.leader_client.lock().expect("not poisoned")
            && *cached == leader
        {
            return Ok(client.clone());
        }
        let client = raftkvpb::forward_client::ForwardClient::new(self.channel_to(leader).await?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        *self.leader_client.lock().expect("not poisoned") = Some((leader, client.clone()));
        Ok(client)
    }

    /// A linearizable read through ReadIndex (followers ask the leader to confirm), retried
    /// across leader changes until the request timeout.
    pub async fn read(&self, query: MachineQuery) -> Result<MachineResponse, Status> {
        let deadline = Instant::now() + self.identity.request_timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            match self.member.read(query.clone()).await {
                Ok(response) => return Ok(response),
                Err(ClientError::NotLeader { leader_hint }) if !leader_hint.is_some() => {
                    self.wait_for_leader(deadline).await?;
                }
                Err(
                    ClientError::NotLeader { .. }
                    | ClientError::Failed(
                        RequestError::Dropped
                        | RequestError::TransferInProgress
                        | RequestError::OutcomeUnknown,
                    ),
                ) => self.pause(deadline).await,
                Err(other) => return Err(client_status(&other)),
            }
        }
    }

    /// The peers the transport should dial: every member of the configuration but this one,
    /// at the first peer URL it published (or that `--initial-cluster` gave).
    pub async fn peer_addresses(&self) -> Result<BTreeMap<NodeId, SocketAddr>, Status> {
        let table = self.member_table().await?;
        let conf = self.member.membership();
        let mut peers = BTreeMap::new();
        for id in all_members(&conf) {
            if id.get() == self.identity.member_id {
                continue;
            }
            let row = table.get(&id.get());
            let initial = self.identity.initial.get(&id.get());
            let name = row
                .map(|row| row.name.as_str())
                .filter(|name| !name.is_empty())
                .or(initial.map(|(name, _, _)| name.as_str()));
            let overridden = name.and_then(|name| self.identity.dial_overrides.get(name).copied());
            let published = row
                .and_then(|row| row.peer_urls.first())
                .and_then(|url| crate::config::parse_url(url).ok());
            let initial = initial.map(|(_, _, addr)| *addr);
            if let Some(addr) = overridden.or(published).or(initial) {
                peers.insert(id, addr);
            }
        }
        Ok(peers)
    }
}

/// One forwarded batch: one call to the leader, then each waiting writer gets its own outcome.
async fn send_batch(
    mut client: raftkvpb::forward_client::ForwardClient<Channel>,
    cache: Arc<LeaderClient>,
    batch: Vec<Forwarded>,
    timeout: Duration,
) {
    let (commands, replies): (Vec<Bytes>, Vec<_>) = batch
        .into_iter()
        .map(|item| (item.data, item.reply))
        .unzip();
    let mut request = forwarded_request(raftkvpb::ProposeBatchRequest { commands });
    request.set_timeout(timeout);
    match client.propose_batch(request).await {
        Ok(response) => {
            let outcomes = response.into_inner().outcomes;
            if outcomes.len() != replies.len() {
                for reply in replies {
                    let _ = reply.send(Err(Status::internal(
                        "raftkv: the leader answered a forwarded batch with the wrong count",
                    )));
                }
                return;
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let result = if outcome.code == 0 {
                    MachineResponse::decode(&outcome.response).map_err(|reason| {
                        Status::internal(format!("raftkv: bad forwarded answer: {reason}"))
                    })
                } else {
                    Err(Status::new(Code::from_i32(outcome.code), outcome.message))
                };
                let _ = reply.send(result);
            }
        }
        Err(status) => {
            // The leader may have moved or restarted: drop the cached channel. Every outcome
            // is unknown; the callers retry with the same sessions.
            *cache.lock().expect("not poisoned") = None;
            let status = Status::unavailable(format!(
                "raftkv: forwarding to the leader failed: {}",
                status.message()
            ));
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}

fn stopped() -> Status {
    etcd_status(Code::Unavailable, "etcdserver: server stopped")
}

/// Maps a member's refusal to etcd's status.
pub fn client_status(error: &ClientError) -> Status {
    match error {
        ClientError::NotLeader { leader_hint } if leader_hint.is_some() => leader_changed(),
        ClientError::NotLeader { .. } => no_leader(),
        ClientError::Failed(RequestError::Backpressure) => {
            etcd_status(Code::ResourceExhausted, "etcdserver: too many requests")
        }
        ClientError::Failed(RequestError::TooLarge { .. }) => too_large(),
        ClientError::Failed(RequestError::TransferInProgress) => leader_changed(),
        ClientError::Failed(RequestError::Dropped) => leader_changed(),
        ClientError::Failed(RequestError::OutcomeUnknown) => timed_out(),
        ClientError::Failed(RequestError::ConfChangePending) => {
            etcd_status(Code::FailedPrecondition, "etcdserver: unhealthy cluster")
        }
        ClientError::Failed(RequestError::ConfChangeRejected(reason)) => {
            Status::failed_precondition(format!("etcdserver: {reason}"))
        }
        ClientError::Stopped => stopped(),
        other => Status::internal(format!("raftkv: {other}")),
    }
}

/// Every member of a configuration (voters, learners, and during a joint change the outgoing
/// side too), sorted.
pub fn all_members(conf: &ConfState) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = conf
        .voters
        .iter()
        .chain(&conf.voters_outgoing)
        .chain(&conf.learners)
        .chain(&conf.learners_next)
        .copied()
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Builds etcd's member list from the configuration and the member table.
pub fn members_of(
    conf: &ConfState,
    table: &BTreeMap<u64, MemberAttributes>,
    initial: &BTreeMap<u64, (String, Vec<String>, SocketAddr)>,
) -> Vec<pb::Member> {
    all_members(conf)
        .into_iter()
        .map(|id| {
            let row = table.get(&id.get());
            let peer_urls = row
                .map(|row| row.peer_urls.clone())
                .filter(|urls| !urls.is_empty())
                .or_else(|| initial.get(&id.get()).map(|(_, urls, _)| urls.clone()))
                .unwrap_or_default();
            pb::Member {
                id: id.get(),
                // A founder that has not published yet is still known by its
                // `--initial-cluster` name, as in etcd.
                name: row
                    .map(|row| row.name.clone())
                    .filter(|name| !name.is_empty())
                    .or_else(|| initial.get(&id.get()).map(|(name, _, _)| name.clone()))
                    .unwrap_or_default(),
                peer_ur_ls: peer_urls,
                client_ur_ls: row.map(|row| row.client_urls.clone()).unwrap_or_default(),
                is_learner: conf.learners.contains(&id) && !conf.voters.contains(&id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{MAX_IDLE_SESSIONS, SessionPool};

    /// A session serves one write at a time and comes back with the next sequence, whether
    /// its write finished or was abandoned; writes in flight together never share one.
    #[test]
    fn forwarded_writes_share_sessions_one_at_a_time() {
        let pool = SessionPool::default();
        let mut next_id = 100;
        let mut fresh = || {
            next_id += 1;
            next_id
        };
        let first = pool.lend(&mut fresh);
        let second = pool.lend(&mut fresh);
        assert_eq!((first.client_id, first.sequence), (101, 1));
        assert_eq!((second.client_id, second.sequence), (102, 1));
        drop(first);
        let third = pool.lend(&mut fresh);
        assert_eq!((third.client_id, third.sequence), (101, 2));
        drop(second);
        drop(third);
        // Most recently returned first, each with its next sequence.
        let again: Vec<_> = (0..3).map(|_| pool.lend(&mut fresh)).collect();
        let again: Vec<(u64, u64)> = again
            .iter()
            .map(|lent| (lent.client_id, lent.sequence))
            .collect();
        assert_eq!(again, [(101, 3), (102, 2), (103, 1)]);
    }

    /// However many writes were in flight at once, the pool keeps a bounded number idle.
    #[test]
    fn the_idle_pool_is_bounded() {
        let pool = SessionPool::default();
        let mut next_id = 0;
        let lent: Vec<_> = (0..MAX_IDLE_SESSIONS + 10)
            .map(|_| {
                pool.lend(|| {
                    next_id += 1;
                    next_id
                })
            })
            .collect();
        drop(lent);
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_IDLE_SESSIONS);
    }
}
