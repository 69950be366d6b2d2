//! raftkv's internal `Forward` service: the leader's end of a follower's forwarded batches.

use crate::machine::{MachineCommand, MachineResponse};
use crate::member::forwarding::MAX_FORWARD_BATCH;
use crate::member::shared::Core;
use crate::member::status::{mvcc_status, too_large};
use bytes::Bytes;
use etcdpb::raftkvpb;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// raftkv's member-to-member forwarding of proposals.
#[derive(Clone, Debug)]
pub struct ForwardApi(pub Arc<Core>);

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
