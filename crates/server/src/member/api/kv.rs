//! etcd's KV service: Range, Put, DeleteRange, Txn and Compact.

use super::{check_size, kv_outcome, unexpected};
use crate::machine::{MachineCommand, MachineQuery, MachineResponse};
use crate::member::sessions::request_key;
use crate::member::shared::Core;
use crate::member::status::{client_status, etcd_status, mvcc_status};
use etcdpb::convert;
use etcdpb::etcdserverpb as pb;
use kv::mvcc::{MvccCommand, MvccRequest, MvccResponse};
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// etcd's KV service.
#[derive(Clone, Debug)]
pub struct KvApi(pub Arc<Core>);

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
        kv_outcome(core.propose(command).await?)
    }
}

/// etcd's answer to an RPC a learner does not serve.
pub(super) fn learner_refusal() -> Status {
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
