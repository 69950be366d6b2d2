//! etcd's Maintenance service: Alarm, Status, Defragment, Hash, HashKV, Snapshot and
//! MoveLeader.

use super::unexpected;
use crate::machine::{MachineQuery, MachineResponse};
use crate::member::shared::{Core, ETCD_VERSION};
use crate::member::status::{client_status, etcd_status, mvcc_status};
use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use raft::{NodeId, Role};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// etcd's Maintenance service.
#[derive(Clone, Debug)]
pub struct MaintenanceApi(pub Arc<Core>);

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
        // etcd 3.4 answers with an empty message, no header (clients' tests check it).
        Ok(Response::new(pb::DefragmentResponse { header: None }))
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
