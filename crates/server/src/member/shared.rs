//! What every gRPC handler of a member shares: the running member and who this member is
//! ([`Core`]). The paths a request takes are in the sibling modules: [`super::requests`] (to
//! the log, or to a linearizable read), [`super::forwarding`] (Cluster calls passed to the
//! leader), [`super::sessions`] (idempotency), [`super::members`] (the member list) and
//! [`super::status`] (etcd's errors).
//!
//! Any member answers any request. A write on the leader is proposed directly; on a follower
//! it travels to the leader as a Raft proposal on the peer connection, always with an
//! idempotency session so that retrying a forward whose answer was lost cannot apply it twice. Linearizable reads use ReadIndex on whichever
//! member received them (a follower asks the leader to confirm its commit index); serializable
//! reads are local.

use super::sessions::SessionPool;
use super::status::client_status;
use crate::machine::{MachineQuery, MachineResponse, Summary};
use etcdpb::etcdserverpb as pb;
use raft::NodeId;
use runtime::MemberHandle;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tonic::Status;

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
    /// Raft's election timeout: a stream that requires a leader ends after three of these
    /// without one (etcd's `monitorLeader`).
    pub election_timeout: Duration,
    /// How often an idle watcher that asked for progress notifications gets one.
    pub watch_progress_interval: Duration,
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
    /// How many fresh sessions this member made ([`Core::fresh_session`]).
    pub(super) keys: AtomicU64,
    /// Makes this run's fresh sessions differ from an earlier run's.
    pub(super) key_salt: u64,
    /// Sessions of writes this member forwards, not in use now (see [`SessionPool`]).
    pub(super) idle_sessions: SessionPool,
    /// The state machine's watch hub, where watch streams are opened, drained and closed.
    pub(super) watches: watch::SharedHub,
    /// Turns true when the member stops: long-lived streams (Watch) end on it, so that the
    /// gRPC server can drain and the member can shut down.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Wraps a started member; `watches` is its state machine's hub
    /// ([`crate::machine::EtcdMachine::watches`], taken before the machine moved into the member).
    pub fn new(
        member: MemberHandle<crate::machine::EtcdMachine>,
        identity: Identity,
        watches: watch::SharedHub,
    ) -> Core {
        let key_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Core {
            member,
            identity,
            keys: AtomicU64::new(0),
            key_salt,
            idle_sessions: SessionPool::default(),
            watches,
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Tells every long-lived stream to end (the member is stopping).
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// A receiver that turns true once [`Core::stop_streams`] was called.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The watch hub's counts (open streams, watchers, ...), for tests and status.
    pub fn watch_stats(&self) -> watch::WatchStats {
        self.watches.lock().stats()
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
}
