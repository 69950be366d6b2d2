//! etcd's v3 gRPC services (KV, Maintenance, Cluster) and raftkv's internal `Forward` service,
//! each a thin mapping between the wire and [`Core`]: check the request (size, enums, etcd's
//! request rules), put it through the log or read, and answer with etcd's header and errors.

use super::forwarding::{MAX_FORWARD_BATCH, forwarded_request, is_forwarded};
use super::members::all_members;
use super::sessions::request_key;
use super::shared::{Core, ETCD_VERSION};
use super::status::{client_status, etcd_status, leader_changed, mvcc_status, too_large};
use crate::machine::{MachineCommand, MachineQuery, MachineResponse, MemberCommand};
use bytes::Bytes;
use etcdpb::convert;
use etcdpb::etcdserverpb as pb;
use etcdpb::raftkvpb;
use kv::mvcc::{MvccCommand, MvccRequest, MvccResponse};
use prost::Message;
use raft::{ConfChange, ConfChangeSingle, ConfChangeType, NodeId, Role};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// etcd's KV service.
#[derive(Clone, Debug)]
pub struct KvApi(pub Arc<Core>);
/// etcd's Maintenance service.
#[derive(Clone, Debug)]
pub struct MaintenanceApi(pub Arc<Core>);
/// etcd's Cluster service.
#[derive(Clone, Debug)]
pub struct ClusterApi(pub Arc<Core>);
/// raftkv's member-to-member forwarding of proposals.
#[derive(Clone, Debug)]
pub struct ForwardApi(pub Arc<Core>);

fn check_size<T: Message>(core: &Core, request: &Request<T>) -> Result<(), Status> {
    if request.get_ref().encoded_len() > core.identity.max_request_bytes {
        return Err(too_large());
    }
    Ok(())
}

fn unexpected(response: MachineResponse) -> Status {
    Status::internal(format!(
        "raftkv: unexpected state machine answer {response:?}"
    ))
}

/// The outcome of a KV command, or its etcd error.
fn kv_outcome(response: MachineResponse) -> Result<MvccResponse, Status> {
    match response {
        MachineResponse::Kv(Ok(response)) => Ok(response),
        MachineResponse::Kv(Err(error)) => Err(mvcc_status(&error)),
        MachineResponse::Malformed(reason) => Err(Status::invalid_argument(format!(
            "raftkv: malformed request: {reason}"
        ))),
        other => Err(unexpected(other)),
    }
}

impl KvApi {
    /// Validates a write, proposes it (with the client's idempotency key, if any) and returns
    /// the store's answer.
    async fn write(&self, client_id: u64, mvcc: MvccRequest) -> Result<MvccResponse, Status> {
        let core = &self.0;
        // As etcd: a learner answers only Status and serializable reads; writes (Put,
        // DeleteRange, Txn, Compact) go to a voting member.
        if core.is_learner() {
            return Err(learner_refusal());
        }
        mvcc.validate(core.identity.max_txn_ops)
            .map_err(|error| mvcc_status(&error))?;
        let command = MachineCommand::Kv(MvccCommand {
            client_id,
            sequence: u64::from(client_id != 0),
            request: mvcc,
        });
        kv_outcome(core.propose(command, false).await?)
    }
}

/// etcd's answer to an RPC a learner does not serve.
fn learner_refusal() -> Status {
    etcd_status(
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    )
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvApi {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let core = &self.0;
        check_size(core, &request)?;
        let range = convert::range_request_from_pb(request.into_inner())?;
        let serializable = range.serializable;
        MvccRequest::Range(range.clone())
            .validate(core.identity.max_txn_ops)
            .map_err(|error| mvcc_status(&error))?;
        let query = MachineQuery::Range(range);
        let answer = if serializable {
            core.member
                .read_local(query)
                .await
                .map_err(|error| client_status(&error))?
        } else {
            if core.is_learner() {
                return Err(learner_refusal());
            }
            core.read(query).await?
        };
        match kv_outcome(answer)? {
            MvccResponse::Range(response) => Ok(Response::new(convert::range_response_to_pb(
                response,
                core.header_context(),
            ))),
            other => Err(unexpected(MachineResponse::Kv(Ok(other)))),
        }
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        check_size(&self.0, &request)?;
        let client_id = request_key(&request).unwrap_or(0);
        let put = convert::put_request_from_pb(request.into_inner());
        match self.write(client_id, MvccRequest::Put(put)).await? {
            MvccResponse::Put(response) => Ok(Response::new(convert::put_response_to_pb(
                response,
                self.0.header_context(),
            ))),
            other => Err(unexpected(MachineResponse::Kv(Ok(other)))),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        check_size(&self.0, &request)?;
        let client_id = request_key(&request).unwrap_or(0);
        let delete = convert::delete_range_request_from_pb(request.into_inner());
        match self
            .write(client_id, MvccRequest::DeleteRange(delete))
            .await?
        {
            MvccResponse::DeleteRange(response) => Ok(Response::new(
                convert::delete_range_response_to_pb(response, self.0.header_context()),
            )),
            other => Err(unexpected(MachineResponse::Kv(Ok(other)))),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        check_size(&self.0, &request)?;
        let client_id = request_key(&request).unwrap_or(0);
        let txn = convert::txn_request_from_pb(request.into_inner())?;
        match self.write(client_id, MvccRequest::Txn(txn)).await? {
            MvccResponse::Txn(response) => Ok(Response::new(convert::txn_response_to_pb(
                response,
                self.0.header_context(),
            ))),
            other => Err(unexpected(MachineResponse::Kv(Ok(other)))),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        check_size(&self.0, &request)?;
        let client_id = request_key(&request).unwrap_or(0);
        let compact = convert::compaction_request_from_pb(request.into_inner());
        match self.write(client_id, MvccRequest::Compact(compact)).await? {
            MvccResponse::Compact(response) => Ok(Response::new(
                convert::compaction_response_to_pb(response, self.0.header_context()),
            )),
            other => Err(unexpected(MachineResponse::Kv(Ok(other)))),
        }
    }
}

#[tonic::async_trait]
impl raftkvpb::forward_server::Forward for ForwardApi {
    async fn propose_batch(
        &self,
        request: Request<raftkvpb::ProposeBatchRequest>,
    ) -> Result<Response<raftkvpb::ProposeBatchResponse>, Status> {
        let commands = request.into_inner().commands;
        if commands.len() > MAX_FORWARD_BATCH {
            return Err(Status::invalid_argument(format!(
                "raftkv: a forwarded batch holds at most {} commands",
                MAX_FORWARD_BATCH
            )));
        }
        let deadline = Instant::now() + self.0.identity.request_timeout;
        // All proposals go to the driver at once, so they share Readies, appends and syncs.
        // Each command is copied out of the request: decoded `bytes` fields are slices of
        // tonic's receive buffer (8 KiB at least), and a log entry holding such a slice would
        // keep the whole buffer alive until the entry is compacted away, which measured about
        // 2 KiB of leader memory per entry (223 MiB of 329 MiB at peak after 179k puts).
        let outcomes = futures_util::future::join_all(
            commands
                .into_iter()
                .map(|data| self.propose_one(Bytes::copy_from_slice(&data), deadline)),
        )
        .await;
        Ok(Response::new(raftkvpb::ProposeBatchResponse {
            outcomes: outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(response) => raftkvpb::Outcome {
                        code: 0,
                        response: response.encode(),
                        message: String::new(),
                    },
                    Err(status) => raftkvpb::Outcome {
                        code: status.code() as i32,
                        response: Bytes::new(),
                        message: status.message().to_owned(),
                    },
                })
                .collect(),
        }))
    }
}

impl ForwardApi {
    /// Checks one forwarded command as strictly as a client's request; returns whether it may
    /// be retried (it carries a session) or the status to answer.
    fn check_forwarded(&self, data: &Bytes) -> Result<bool, Status> {
        let core = &self.0;
        if data.len() > core.identity.max_request_bytes {
            return Err(too_large());
        }
        // Another member sent this, but it is still input from the network: it must decode
        // and pass the same checks as a client's request before it reaches the log.
        let command = MachineCommand::decode(data)
            .map_err(|reason| Status::invalid_argument(format!("raftkv: {reason}")))?;
        match &command {
            MachineCommand::Kv(kv) => {
                kv.request
                    .validate(core.identity.max_txn_ops)
                    .map_err(|error| mvcc_status(&error))?;
                Ok(kv.client_id != 0)
            }
            MachineCommand::Member(_) => Ok(true),
        }
    }

    async fn propose_one(&self, data: Bytes, deadline: Instant) -> Result<MachineResponse, Status> {
        let retryable = self.check_forwarded(&data)?;
        self.0.propose_bytes(data, retryable, true, deadline).await
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

/// Cuts snapshot bytes into etcd's stream: 32 KiB chunks counting `remaining_bytes` down,
/// zero padding to a multiple of 512 bytes, then a last chunk holding the SHA-256 of all
/// bytes before it (etcdctl checks that the total length is 32 more than a multiple of 512).
pub fn snapshot_chunks(data: &[u8]) -> Vec<(Bytes, u64)> {
    use sha2::{Digest, Sha256};
    const CHUNK: usize = 32 * 1024;
    let mut body = data.to_vec();
    body.resize(data.len().div_ceil(512) * 512, 0);
    let digest = Sha256::digest(&body);
    let total = body.len() + digest.len();
    let mut chunks = Vec::with_capacity(body.len() / CHUNK + 2);
    let mut sent = 0;
    for piece in body.chunks(CHUNK) {
        sent += piece.len();
        chunks.push((Bytes::copy_from_slice(piece), (total - sent) as u64));
    }
    chunks.push((Bytes::copy_from_slice(&digest), 0));
    chunks
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceApi {
    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // raftkv raises no alarms (no space quota, no corruption alarm yet): GET lists none,
        // and (DE)ACTIVATE changes nothing.
        let summary = self.0.summary().await?;
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.0.header(summary.revision)),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let core = &self.0;
        let summary = core.summary().await?;
        let status = core.member.status();
        let mut errors = Vec::new();
        if !status.leader.is_some() {
            errors.push("etcdserver: no leader".to_owned());
        }
        // As etcd's: dbSize still counts what compaction freed until a defragmentation
        // reclaims it (here the value file's unreferenced values); dbSizeInUse does not.
        let unreclaimed = summary
            .value_file_bytes
            .saturating_sub(summary.value_file_live_bytes);
        Ok(Response::new(pb::StatusResponse {
            header: Some(core.header(summary.revision)),
            version: ETCD_VERSION.to_owned(),
            db_size: summary.size_bytes.saturating_add(unreclaimed) as i64,
            leader: status.leader.get(),
            raft_index: status.commit.get(),
            raft_term: status.term.get(),
            raft_applied_index: status.applied.get(),
            errors,
            db_size_in_use: summary.size_bytes as i64,
            is_learner: core.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // The index lives in memory and compaction frees it at once; the value file keeps the
        // garbage of compacted revisions until it is rewritten, which is what is reclaimed
        // here. Like etcd's, on this member only.
        self.0
            .member
            .defragment()
            .await
            .map_err(|error| client_status(&error))?;
        let summary = self.0.summary().await?;
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.0.header(summary.revision)),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (hash, revision) = self.hash_at(0).await?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.0.header(revision)),
            hash: hash.0,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let (hash, revision) = self.hash_at(request.into_inner().revision).await?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.0.header(revision)),
            hash: hash.0,
            compact_revision: hash.1,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let core = &self.0;
        let summary = core.summary().await?;
        let data = match core
            .member
            .read_local(MachineQuery::Snapshot)
            .await
            .map_err(|error| client_status(&error))?
        {
            MachineResponse::Snapshot(data) => data,
            other => return Err(unexpected(other)),
        };
        let header = core.header(summary.revision);
        let messages: Vec<Result<pb::SnapshotResponse, Status>> = snapshot_chunks(&data)
            .into_iter()
            .map(|(blob, remaining_bytes)| {
                Ok(pb::SnapshotResponse {
                    header: Some(header),
                    remaining_bytes,
                    blob,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let core = &self.0;
        let target = NodeId(request.into_inner().target_id);
        let status = core.member.status();
        if status.role != Role::Leader {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ));
        }
        if !core.member.membership().voters.contains(&target) {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ));
        }
        if target.get() != core.identity.member_id {
            core.member
                .transfer_leader(target)
                .await
                .map_err(|error| Status::failed_precondition(format!("etcdserver: {error}")))?;
            let deadline = Instant::now() + core.identity.request_timeout;
            let mut watch = core.member.watch_status();
            loop {
                let now = *watch.borrow_and_update();
                if now.leader == target {
                    break;
                }
                match tokio::time::timeout_at(deadline.into(), watch.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(client_status(&runtime::ClientError::Stopped)),
                    Err(_) => {
                        return Err(etcd_status(
                            Code::Unavailable,
                            "etcdserver: request timed out, leader transfer took too long",
                        ));
                    }
                }
            }
        }
        let summary = core.summary().await?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(core.header(summary.revision)),
        }))
    }
}

impl MaintenanceApi {
    async fn hash_at(&self, revision: i64) -> Result<((u32, i64), i64), Status> {
        let core = &self.0;
        let summary = core.summary().await?;
        match core
            .member
            .read_local(MachineQuery::HashKv(revision))
            .await
            .map_err(|error| client_status(&error))?
        {
            MachineResponse::Hash(Ok(hash)) => Ok((hash, summary.revision)),
            MachineResponse::Hash(Err(error)) => Err(mvcc_status(&error)),
            other => Err(unexpected(other)),
        }
    }
}

fn invalid_urls() -> Status {
    etcd_status(
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
}

fn member_not_found() -> Status {
    etcd_status(Code::NotFound, "etcdserver: member not found")
}

impl ClusterApi {
    /// Membership changes are decided by the leader: a follower passes the request on to the
    /// leader's Cluster service (once; a forwarded request is never forwarded again).
    async fn leader_client(
        &self,
        forwarded: bool,
    ) -> Result<Option<pb::cluster_client::ClusterClient<tonic::transport::Channel>>, Status> {
        let core = &self.0;
        let deadline = Instant::now() + core.identity.request_timeout;
        let leader = core.wait_for_leader(deadline).await?;
        if leader == core.identity.member_id {
            return Ok(None);
        }
        if forwarded {
            return Err(leader_changed());
        }
        Ok(Some(pb::cluster_client::ClusterClient::new(
            core.channel_to(leader).await?,
        )))
    }

    async fn change(&self, change: ConfChangeSingle) -> Result<(), Status> {
        self.0
            .member
            .change_membership(ConfChange {
                changes: vec![change],
            })
            .await
            .map(|_| ())
            .map_err(|error| client_status(&error))
    }

    async fn members_response(&self) -> Result<(pb::ResponseHeader, Vec<pb::Member>), Status> {
        Ok((self.0.header(0), self.0.member_list().await?))
    }

    /// etcd's refusals of a member add: the id (a function of the URLs and token) or one of
    /// the peer URLs is already in the cluster.
    async fn check_new_member(&self, id: u64, peer_urls: &[String]) -> Result<(), Status> {
        let core = &self.0;
        let conf = core.member.membership();
        let current = all_members(&conf);
        if current.contains(&NodeId(id)) {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ));
        }
        let list = core.member_list().await?;
        if list
            .iter()
            .any(|member| member.peer_ur_ls.iter().any(|url| peer_urls.contains(url)))
        {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ));
        }
        Ok(())
    }

    /// Records a new member's URLs before the change that admits it, so every member (and the
    /// transport) knows where to reach it the moment it counts.
    async fn register_urls(&self, id: u64, peer_urls: &[String]) -> Result<(), Status> {
        let register = MemberCommand::Publish {
            id,
            name: Some(String::new()),
            peer_urls: Some(peer_urls.to_vec()),
            client_urls: Some(Vec::new()),
        };
        match self
            .0
            .propose(MachineCommand::Member(register), false)
            .await?
        {
            MachineResponse::Member(Ok(())) => Ok(()),
            MachineResponse::Member(Err(reason)) => {
                Err(Status::invalid_argument(format!("etcdserver: {reason}")))
            }
            other => Err(unexpected(other)),
        }
    }
}

fn parse_peer_urls(urls: &[String]) -> Result<(), Status> {
    if urls.is_empty() || urls.len() > crate::machine::MAX_URLS {
        return Err(invalid_urls());
    }
    for url in urls {
        if url.len() > crate::machine::MAX_URL_BYTES
            || !url.starts_with("http://")
            || crate::config::parse_url(url).is_err()
        {
            return Err(invalid_urls());
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterApi {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let add = request.into_inner();
        parse_peer_urls(&add.peer_ur_ls)?;
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_add(forwarded_request(add)).await;
        }
        let id = crate::config::member_id(&add.peer_ur_ls, &self.0.identity.token);
        self.check_new_member(id, &add.peer_ur_ls).await?;
        self.register_urls(id, &add.peer_ur_ls).await?;
        let kind = if add.is_learner {
            ConfChangeType::AddLearner
        } else {
            ConfChangeType::AddVoter
        };
        self.change(ConfChangeSingle {
            change: kind,
            node: NodeId(id),
        })
        .await?;
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(header),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: add.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: add.is_learner,
            }),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let remove = request.into_inner();
        if !all_members(&self.0.member.membership()).contains(&NodeId(remove.id)) {
            return Err(member_not_found());
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_remove(forwarded_request(remove)).await;
        }
        self.change(ConfChangeSingle {
            change: ConfChangeType::RemoveNode,
            node: NodeId(remove.id),
        })
        .await?;
        if remove.id != self.0.identity.member_id {
            // Tidy the table; the configuration already excludes the member, so a failure
            // here only leaves an invisible row behind.
            let forget = MemberCommand::Forget { id: remove.id };
            if let Err(error) = self.0.propose(MachineCommand::Member(forget), false).await {
                tracing::debug!(%error, "forgetting a removed member's attributes failed");
            }
        }
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let update = request.into_inner();
        parse_peer_urls(&update.peer_ur_ls)?;
        if !all_members(&self.0.member.membership()).contains(&NodeId(update.id)) {
            return Err(member_not_found());
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_update(forwarded_request(update)).await;
        }
        let publish = MemberCommand::Publish {
            id: update.id,
            name: None,
            peer_urls: Some(update.peer_ur_ls),
            client_urls: None,
        };
        match self
            .0
            .propose(MachineCommand::Member(publish), false)
            .await?
        {
            MachineResponse::Member(Ok(())) => {}
            other => return Err(unexpected(other)),
        }
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let promote = request.into_inner();
        let conf = self.0.member.membership();
        if !all_members(&conf).contains(&NodeId(promote.id)) {
            return Err(member_not_found());
        }
        if !conf.learners.contains(&NodeId(promote.id)) {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ));
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_promote(forwarded_request(promote)).await;
        }
        // As etcd: a learner is promoted only once its log holds at least 90% of what the
        // leader has committed, so the new voter does not stall commits while it catches up.
        let progress = self
            .0
            .member
            .replication_progress()
            .await
            .map_err(|error| client_status(&error))?;
        let committed = self.0.member.status().commit.get();
        let matched = progress
            .get(&NodeId(promote.id))
            .map_or(0, |index| index.get());
        if (matched as f64) < (committed as f64) * 0.9 {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ));
        }
        self.change(ConfChangeSingle {
            change: ConfChangeType::AddVoter,
            node: NodeId(promote.id),
        })
        .await?;
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(header),
            members,
        }))
    }
}
