//! Starting and stopping one member: identity check, WAL and Raft member, gRPC services, and
//! the background duties (publishing this member's attributes, keeping the transport's peer
//! addresses in step with the membership).

use super::api::{ClusterApi, KvApi, MaintenanceApi, WatchApi};
use super::shared::{Core, Identity};
use crate::config::{ClusterState, ServeConfig};
use crate::machine::{EtcdMachine, MachineCommand, MemberCommand};
use etcdpb::etcdserverpb as pb;
use raft::NodeId;
use runtime::{Member, MemberConfig};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a member did not start: one line for the operator.
#[derive(Debug)]
pub struct ServeError(pub String);

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// A running member.
pub struct RunningMember {
    core: Arc<Core>,
    client_addr: SocketAddr,
    stop_grpc: Option<oneshot::Sender<()>>,
    grpc: Option<JoinHandle<()>>,
    duties: Vec<JoinHandle<()>>,
    removed: tokio::sync::watch::Receiver<bool>,
}

impl fmt::Debug for RunningMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningMember")
            .field("client_addr", &self.client_addr)
            .finish_non_exhaustive()
    }
}

impl RunningMember {
    /// The address clients connect to.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// What the handlers share (for tests and the playground).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Resolves once this member has been removed from the cluster (etcd's members stop then:
    /// a removed member can never vote or lead again, so there is nothing left to serve).
    pub async fn removed(&self) {
        let mut removed = self.removed.clone();
        let _ = removed.wait_for(|removed| *removed).await;
    }

    /// Stops serving clients, then stops the member and waits until its WAL is closed.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        // Watch streams would hold the gRPC server's graceful drain open: end them first.
        self.core.stop_streams();
        for duty in self.duties.drain(..) {
            duty.abort();
            // Wait until it is gone: it holds a reference to the member.
            let _ = duty.await;
        }
        if let Some(stop) = self.stop_grpc.take() {
            let _ = stop.send(());
        }
        if let Some(grpc) = self.grpc.take() {
            // In-flight calls finish or fail; a stuck one must not hold the shutdown forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
        }
        // A stream's task lets go of the core just after its stream ended: give it a moment.
        let mut core = self.core;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let core = loop {
            match Arc::try_unwrap(core) {
                Ok(core) => break core,
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    core = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    return Err(ServeError(
                        "internal: the member is still in use after the gRPC server stopped".into(),
                    ));
                }
            }
        };
        core.member
            .shutdown()
            .await
            .map_err(|error| ServeError(error.to_string()))
    }
}

/// The Raft and runtime settings derived from the operator's configuration.
pub fn member_config(config: &ServeConfig) -> Result<MemberConfig, ServeError> {
    let id = NodeId(config.member_id());
    let founders: BTreeMap<NodeId, SocketAddr> = config
        .initial_members()
        .map_err(|error| ServeError(error.to_string()))?
        .into_iter()
        .map(|(id, member)| {
            let addr = config
                .peer_dial_overrides
                .get(&member.name)
                .copied()
                .unwrap_or(member.peer_addr);
            (NodeId(id), addr)
        })
        .collect();
    let mut member = MemberConfig::new(
        id,
        config.data_dir.join("wal"),
        founders,
        config.listen_peer,
    );
    member.cluster_id = config.cluster_id();
    member.join_existing = config.initial_cluster_state == ClusterState::Existing;
    member.tick = config.heartbeat_interval;
    member.raft.election_timeout_ticks = config.election_ticks() as u32;
    member.raft.heartbeat_interval_ticks = 1;
    // Election timeouts are randomized from this seed; mixing in the clock keeps members that
    // restart together from drawing the same timeouts every time.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    member.raft.seed = id.get() ^ nanos;
    member.raft.max_entry_bytes = (config.max_request_bytes as u64) + 64 * 1024;
    member.snapshot_every_entries = config.snapshot_count;
    member.snapshot_log_percent = config.snapshot_log_percent;
    if config.read_mode == crate::config::ReadMode::Lease {
        member.raft.read_only = raft::ReadOnlyOption::LeaseBased;
    }
    member
        .validate()
        .map_err(|error| ServeError(error.to_string()))?;
    Ok(member)
}

/// Starts a member: checks that the data directory is this member's, binds the client and
/// peer listeners, opens (or creates) the WAL, and serves etcd's API on the client address.
pub async fn start(config: ServeConfig) -> Result<RunningMember, ServeError> {
    let member_id = config.member_id();
    let cluster_id = config.cluster_id();
    let identity = super::identity::Identity::from(&config);
    super::identity::open_or_create(&config.data_dir, &identity)
        .map_err(|error| ServeError(error.to_string()))?;
    let member_config = member_config(&config)?;
    let (client_listener, client_addr, peer_listener) = bind(&config).await?;
    let mut machine = EtcdMachine::with_value_file(config.data_dir.join("values"))
        .map_err(|error| ServeError(error.to_string()))?;
    // As etcd, a watch response larger than the request limit is split for watchers that
    // accept fragments.
    machine.set_watch_limits(watch::WatchLimits {
        max_watchers_per_stream: config.max_watchers_per_stream,
        max_response_bytes: config.max_request_bytes,
        ..watch::WatchLimits::default()
    });
    let watches = machine.watches();
    let member = Member::start_with_listener(member_config, peer_listener, machine)
        .map_err(|error| ServeError(format!("cannot start the member: {error}")))?;
    let core = Arc::new(Core::new(
        member,
        core_identity(&config, client_addr)?,
        watches,
    ));

    let (removed_tx, removed) = tokio::sync::watch::channel(false);
    let duties = vec![
        tokio::spawn(publish_attributes(core.clone())),
        tokio::spawn(follow_membership(core.clone())),
        tokio::spawn(watch_removal(core.clone(), removed_tx)),
    ];
    let (stop_grpc, grpc) = serve_grpc(&core, client_listener, config.max_request_bytes);
    tracing::info!(
        name = %config.name,
        member = format_args!("{member_id:x}"),
        cluster = format_args!("{cluster_id:x}"),
        client = %client_addr,
        "serving etcd's v3 API"
    );
    Ok(RunningMember {
        core,
        client_addr,
        stop_grpc: Some(stop_grpc),
        grpc: Some(grpc),
        duties,
        removed,
    })
}

/// Binds the client listener (returning the address it got: port 0 picks one) and the peer
/// listener.
async fn bind(config: &ServeConfig) -> Result<(TcpListener, SocketAddr, TcpListener), ServeError> {
    let client_listener = TcpListener::bind(config.listen_client)
        .await
        .map_err(|error| {
            ServeError(format!(
                "cannot listen for clients on {}: {error}",
                config.listen_client
            ))
        })?;
    let client_addr = client_listener
        .local_addr()
        .map_err(|error| ServeError(format!("client listener: {error}")))?;
    let peer_listener = TcpListener::bind(config.listen_peer)
        .await
        .map_err(|error| {
            ServeError(format!(
                "cannot listen for peers on {}: {error}",
                config.listen_peer
            ))
        })?;
    Ok((client_listener, client_addr, peer_listener))
}

/// What the handlers know about this member: its ids, names and URLs, the founders, and the
/// request limits and timeouts derived from the configuration.
fn core_identity(config: &ServeConfig, client_addr: SocketAddr) -> Result<Identity, ServeError> {
    let initial = config
        .initial_members()
        .map_err(|error| ServeError(error.to_string()))?
        .into_iter()
        .map(|(id, member)| (id, (member.name, member.peer_urls, member.peer_addr)))
        .collect();
    let election = config.election_timeout;
    Ok(Identity {
        member_id: config.member_id(),
        cluster_id: config.cluster_id(),
        name: config.name.clone(),
        peer_urls: config.advertise_peer_urls.clone(),
        client_urls: advertised_client_urls(config, client_addr),
        initial,
        max_request_bytes: config.max_request_bytes,
        max_txn_ops: config.max_txn_ops,
        // etcd: 5 s plus two election timeouts.
        request_timeout: Duration::from_secs(5) + 2 * election,
        election_timeout: election,
        watch_progress_interval: config.watch_progress_notify_interval,
        retry_pause: config.heartbeat_interval,
        token: config.initial_cluster_token.clone(),
        dial_overrides: config.peer_dial_overrides.clone(),
    })
}

/// Serves etcd's services on the client listener until
/// the returned sender fires (or is dropped).
fn serve_grpc(
    core: &Arc<Core>,
    client_listener: TcpListener,
    max_request_bytes: usize,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let limit = max_request_bytes + 512 * 1024;
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(
            pb::kv_server::KvServer::new(KvApi(core.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            pb::maintenance_server::MaintenanceServer::new(MaintenanceApi(core.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            pb::cluster_server::ClusterServer::new(ClusterApi(core.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            pb::watch_server::WatchServer::new(WatchApi(core.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        );
    // The hot unary calls skip tonic's per-request machinery; the rest go through `routes`.
    let service = super::fastpath::GrpcService::new(KvApi(core.clone()), routes.routes(), limit);
    let (stop_grpc, stopped) = oneshot::channel::<()>();
    let grpc = tokio::spawn(super::fastpath::serve(client_listener, service, async {
        let _ = stopped.await;
    }));
    (stop_grpc, grpc)
}

/// The client URLs this member publishes: the configured ones, with a port of 0 replaced by
/// the port actually bound (tests and the playground bind port 0).
fn advertised_client_urls(config: &ServeConfig, bound: SocketAddr) -> Vec<String> {
    config
        .advertise_client_urls
        .iter()
        .map(|url| match url.strip_suffix(":0") {
            Some(prefix) => format!("{prefix}:{}", bound.port()),
            None => url.clone(),
        })
        .collect()
}

/// Makes this member's name and URLs part of the replicated member table (as etcd's members
/// publish themselves when they start), retrying until it is there.
async fn publish_attributes(core: Arc<Core>) {
    let identity = &core.identity;
    loop {
        if let Ok(table) = core.member_table().await
            && let Some(row) = table.get(&identity.member_id)
            && row.name == identity.name
            && row.peer_urls == identity.peer_urls
            && row.client_urls == identity.client_urls
        {
            return;
        }
        let publish = MemberCommand::Publish {
            id: identity.member_id,
            name: Some(identity.name.clone()),
            peer_urls: Some(identity.peer_urls.clone()),
            client_urls: Some(identity.client_urls.clone()),
        };
        match core.propose(MachineCommand::Member(publish)).await {
            Ok(_) => tracing::info!("published this member's name and URLs"),
            Err(error) => {
                tracing::debug!(%error, "publishing this member's attributes; will retry");
                tokio::time::sleep(identity.retry_pause * 5).await;
            }
        }
    }
}

/// Keeps the transport dialing every member of the configuration in force: on each
/// membership change, and periodically (a member's peer URLs may change without one).
async fn follow_membership(core: Arc<Core>) {
    let mut membership = core.member.watch_membership();
    let mut current = BTreeMap::new();
    loop {
        // A member that joined and has not yet received the configuration knows no one from
        // the log: keep dialing the members it was started with until it does.
        let known = !core.member.membership().voters.is_empty();
        if known
            && let Ok(peers) = core.peer_addresses().await
            && peers != current
        {
            tracing::info!(?peers, "peer addresses changed");
            if core.member.set_peers(peers.clone()).await.is_err() {
                return;
            }
            current = peers;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), membership.changed()).await;
        if membership.has_changed().is_err() {
            return;
        }
    }
}

/// Reports when this member has been removed from the cluster (see [`is_removed`]).
async fn watch_removal(core: Arc<Core>, removed: tokio::sync::watch::Sender<bool>) {
    let me = NodeId(core.identity.member_id);
    let mut membership = core.member.watch_membership();
    let mut status = core.member.watch_status();
    loop {
        // The status first: the configuration published is never older than its applied index.
        let now = *status.borrow_and_update();
        let gone = is_removed(me, &membership.borrow_and_update(), &now);
        if gone {
            tracing::warn!("this member was removed from the cluster; stopping");
            let _ = removed.send(true);
            return;
        }
        tokio::select! {
            changed = membership.changed() => if changed.is_err() { return },
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}

/// Whether a member whose configuration in force is `conf` and whose state is `status` has been
/// removed: it has applied the log up to an index at or past the change that admitted this
/// incarnation ([`runtime::Status::admitted_by`]), and the configuration in force there no
/// longer includes it. Configurations before that index say nothing about this incarnation:
/// ids derive from peer URLs, so a member removed and added again with the same URL has the
/// same id, and a fresh member catching up replays its predecessor's removal (often from a
/// snapshot taken while the predecessor was still a member).
pub fn is_removed(me: NodeId, conf: &raft::ConfState, status: &runtime::Status) -> bool {
    status
        .admitted_by
        .is_some_and(|admitted| status.applied >= admitted)
        && !super::members::all_members(conf).contains(&me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{ConfState, LogIndex};

    fn conf(ids: &[u64]) -> ConfState {
        ConfState::with_voters(ids.iter().copied().map(NodeId))
    }

    fn status(applied: u64, admitted_by: Option<u64>) -> runtime::Status {
        runtime::Status {
            applied: LogIndex(applied),
            admitted_by: admitted_by.map(LogIndex),
            ..runtime::Status::default()
        }
    }

    /// What a member removed and added again (same URL, same id) saw in chaos seed 12 while it
    /// caught up: the leader's snapshot at 18054 (taken while its predecessor was a member),
    /// its predecessor's removal at 18394, its own admission at 18401. The first append it took
    /// carried the leader's commit index 18410. It must not stop.
    #[test]
    fn a_re_added_member_replaying_its_predecessors_removal_keeps_serving() {
        let me = NodeId(3);
        let seen = [
            (conf(&[]), status(0, None)),
            (conf(&[1, 2, 3]), status(18054, Some(18410))),
            (conf(&[1, 2]), status(18394, Some(18410))),
            (conf(&[1, 2, 3]), status(18401, Some(18410))),
            (conf(&[1, 2, 3]), status(18410, Some(18410))),
            (conf(&[1, 2, 3]), status(20000, Some(18410))),
        ];
        for (conf, status) in &seen {
            assert!(!is_removed(me, conf, status), "{conf:?} {status:?}");
        }
        // The rule it replaces: a configuration without the member after one with it.
        let mut seen_myself = false;
        let old_rule_stops = seen.iter().any(|(conf, _)| {
            let present = super::super::members::all_members(conf).contains(&me);
            seen_myself |= present;
            seen_myself && !present
        });
        assert!(old_rule_stops);
    }

    /// A member removed after its admission stops, whether it applies the removal live or
    /// replays it when catching up past the index it learned from the leader.
    #[test]
    fn a_removed_member_stops() {
        let me = NodeId(3);
        assert!(!is_removed(me, &conf(&[1, 2, 3]), &status(100, Some(50))));
        assert!(is_removed(me, &conf(&[1, 2]), &status(120, Some(50))));
        // Removed at 40, before the leader that first reached it had applied the removal.
        assert!(!is_removed(me, &conf(&[1, 2]), &status(40, Some(50))));
        assert!(is_removed(me, &conf(&[1, 2]), &status(50, Some(50))));
        // Not admitted yet (it knows no configuration, or only others'): it waits.
        assert!(!is_removed(me, &conf(&[]), &status(0, None)));
        assert!(!is_removed(me, &conf(&[1, 2]), &status(30, None)));
    }

    /// A learner is a member too; a member leaving a joint configuration is not gone before it
    /// is out of both halves.
    #[test]
    fn learners_and_outgoing_voters_are_members() {
        let me = NodeId(3);
        let mut learner = conf(&[1, 2]);
        learner.learners = vec![me].into_iter().collect();
        assert!(!is_removed(me, &learner, &status(10, Some(1))));
        let mut leaving = conf(&[1, 2, 4]);
        leaving.voters_outgoing = [1, 2, 3].into_iter().map(NodeId).collect();
        assert!(!is_removed(me, &leaving, &status(10, Some(1))));
    }
}
