//! Conversions between etcd's KV messages on the wire and [`kv::mvcc`]'s types.
//!
//! The server decodes a client's request, converts it with a `*_from_pb` function, runs it
//! through Raft and the store, and converts the answer back with a `*_to_pb` function. A member
//! that forwards a request to the leader goes the other way: `*_to_pb` for the request it sends,
//! `*_from_pb` for the answer it gets back. Both sides hold keys and values as [`bytes::Bytes`],
//! so every conversion moves or reference-counts them; none copies key or value bytes.
//!
//! Wire → store is the only direction that can fail, and only for input etcd 3.4 does not
//! define: prost keeps enum fields as raw `i32`, so a client may send `sort_order = 99`. Such a
//! request becomes a [`ConvertError`] (gRPC `InvalidArgument`), never a panic. Unset oneofs are
//! not errors here when the store models them, exactly as etcd does:
//!
//! - an empty `RequestOp` becomes [`mvcc::RequestOp::Unset`], which
//!   [`mvcc::MvccRequest::validate`] rejects with `etcdserver: key not found` at the point of its
//!   checks where etcd does;
//! - an empty `Compare.target_union` becomes `None`, which the store compares against 0 (or the
//!   empty value), as etcd does.
//!
//! Only an empty `ResponseOp` (which the store cannot represent and etcd never sends) is an
//! error on the answer path.
//!
//! Response headers: the store knows only the revision; cluster id, member id and raft term
//! belong to the answering member, so the `*_response_to_pb` functions take them as a
//! [`HeaderContext`]. Like etcd 3.4 (whose server fills only the top-level header), the headers
//! of the responses nested in a transaction carry just their revision.

use std::fmt;

use kv::mvcc;

use crate::etcdserverpb::{self as pb, compare, range_request, request_op, response_op};
use crate::mvccpb;

/// Why a message from the wire has no [`kv::mvcc`] equivalent.
///
/// Keeps the field and the offending number so the client gets a message it can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvertError {
    /// A request's enum field holds a number etcd 3.4 does not define (etcd's Go server would
    /// not reject it but behaves arbitrarily or panics; raftkv refuses it up front).
    UnknownEnumValue {
        /// The field, as `Message.field` in the proto (e.g. `RangeRequest.sort_order`).
        field: &'static str,
        /// The number received.
        value: i32,
    },
    /// A `ResponseOp` with no response set. Only a broken or foreign peer sends this, so it is
    /// an internal error, not the client's fault.
    EmptyResponseOp,
}

impl ConvertError {
    /// The gRPC code to answer with: `InvalidArgument` for a bad request (the client can fix
    /// it), `Internal` for a bad answer from another member.
    pub fn code(&self) -> tonic::Code {
        match self {
            ConvertError::UnknownEnumValue { .. } => tonic::Code::InvalidArgument,
            ConvertError::EmptyResponseOp => tonic::Code::Internal,
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::UnknownEnumValue { field, value } => {
                write!(f, "raftkv: {field} has unknown value {value}")
            }
            ConvertError::EmptyResponseOp => f.write_str("raftkv: ResponseOp has no response set"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl From<ConvertError> for tonic::Status {
    fn from(error: ConvertError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}

/// The header fields that describe the answering member rather than the store.
///
/// Passed by value to every top-level response conversion so the server states once who is
/// answering (etcd fills the same three fields in every header it sends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeaderContext {
    /// The cluster's ID (fixed at bootstrap).
    pub cluster_id: u64,
    /// The answering member's ID.
    pub member_id: u64,
    /// The answering member's current Raft term.
    pub raft_term: u64,
}

impl HeaderContext {
    /// The full wire header for a store header answered by this member.
    pub fn header(self, header: mvcc::ResponseHeader) -> pb::ResponseHeader {
        response_header_to_pb(header, self)
    }
}

/// Builds the wire header from the store's header (the revision) and the answering member's
/// fields.
pub fn response_header_to_pb(
    header: mvcc::ResponseHeader,
    context: HeaderContext,
) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: context.cluster_id,
        member_id: context.member_id,
        revision: header.revision,
        raft_term: context.raft_term,
    }
}

/// The store's part of a wire header; a missing header reads as revision 0, as in etcd.
pub fn response_header_from_pb(header: Option<pb::ResponseHeader>) -> mvcc::ResponseHeader {
    mvcc::ResponseHeader {
        revision: header.map_or(0, |header| header.revision),
    }
}

/// A nested response's header: only the revision, as etcd 3.4 sends it.
fn nested_header(header: mvcc::ResponseHeader) -> Option<pb::ResponseHeader> {
    Some(response_header_to_pb(header, HeaderContext::default()))
}

// ------------------------------------------------------------------------------ KeyValue

/// A stored key-value for the wire (shares the key and value bytes).
pub fn key_value_to_pb(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A key-value received from another member (shares the key and value bytes).
pub fn key_value_from_pb(kv: mvccpb::KeyValue) -> mvcc::KeyValue {
    mvcc::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

fn key_values_to_pb(kvs: Vec<mvcc::KeyValue>) -> Vec<mvccpb::KeyValue> {
    kvs.into_iter().map(key_value_to_pb).collect()
}

fn key_values_from_pb(kvs: Vec<mvccpb::KeyValue>) -> Vec<mvcc::KeyValue> {
    kvs.into_iter().map(key_value_from_pb).collect()
}

// ------------------------------------------------------------------------------ enums

fn sort_order_from_pb(value: i32) -> Result<mvcc::SortOrder, ConvertError> {
    match range_request::SortOrder::try_from(value) {
        Ok(range_request::SortOrder::None) => Ok(mvcc::SortOrder::None),
        Ok(range_request::SortOrder::Ascend) => Ok(mvcc::SortOrder::Ascend),
        Ok(range_request::SortOrder::Descend) => Ok(mvcc::SortOrder::Descend),
        Err(_) => Err(ConvertError::UnknownEnumValue {
            field: "RangeRequest.sort_order",
            value,
        }),
    }
}

fn sort_order_to_pb(order: mvcc::SortOrder) -> i32 {
    let order = match order {
        mvcc::SortOrder::None => range_request::SortOrder::None,
        mvcc::SortOrder::Ascend => range_request::SortOrder::Ascend,
        mvcc::SortOrder::Descend => range_request::SortOrder::Descend,
    };
    order as i32
}

fn sort_target_from_pb(value: i32) -> Result<mvcc::SortTarget, ConvertError> {
    match range_request::SortTarget::try_from(value) {
        Ok(range_request::SortTarget::Key) => Ok(mvcc::SortTarget::Key),
        Ok(range_request::SortTarget::Version) => Ok(mvcc::SortTarget::Version),
        Ok(range_request::SortTarget::Create) => Ok(mvcc::SortTarget::Create),
        Ok(range_request::SortTarget::Mod) => Ok(mvcc::SortTarget::Mod),
        Ok(range_request::SortTarget::Value) => Ok(mvcc::SortTarget::Value),
        Err(_) => Err(ConvertError::UnknownEnumValue {
            field: "RangeRequest.sort_target",
            value,
        }),
    }
}

fn sort_target_to_pb(target: mvcc::SortTarget) -> i32 {
    let target = match target {
        mvcc::SortTarget::Key => range_request::SortTarget::Key,
        mvcc::SortTarget::Version => range_request::SortTarget::Version,
        mvcc::SortTarget::Create => range_request::SortTarget::Create,
        mvcc::SortTarget::Mod => range_request::SortTarget::Mod,
        mvcc::SortTarget::Value => range_request::SortTarget::Value,
    };
    target as i32
}

fn compare_result_from_pb(value: i32) -> Result<mvcc::CompareResult, ConvertError> {
    match compare::CompareResult::try_from(value) {
        Ok(compare::CompareResult::Equal) => Ok(mvcc::CompareResult::Equal),
        Ok(compare::CompareResult::Greater) => Ok(mvcc::CompareResult::Greater),
        Ok(compare::CompareResult::Less) => Ok(mvcc::CompareResult::Less),
        Ok(compare::CompareResult::NotEqual) => Ok(mvcc::CompareResult::NotEqual),
        Err(_) => Err(ConvertError::UnknownEnumValue {
            field: "Compare.result",
            value,
        }),
    }
}

fn compare_result_to_pb(result: mvcc::CompareResult) -> i32 {
    let result = match result {
        mvcc::CompareResult::Equal => compare::CompareResult::Equal,
        mvcc::CompareResult::Greater => compare::CompareResult::Greater,
        mvcc::CompareResult::Less => compare::CompareResult::Less,
        mvcc::CompareResult::NotEqual => compare::CompareResult::NotEqual,
    };
    result as i32
}

fn compare_target_from_pb(value: i32) -> Result<mvcc::CompareTarget, ConvertError> {
    match compare::CompareTarget::try_from(value) {
        Ok(compare::CompareTarget::Version) => Ok(mvcc::CompareTarget::Version),
        Ok(compare::CompareTarget::Create) => Ok(mvcc::CompareTarget::Create),
        Ok(compare::CompareTarget::Mod) => Ok(mvcc::CompareTarget::Mod),
        Ok(compare::CompareTarget::Value) => Ok(mvcc::CompareTarget::Value),
        Ok(compare::CompareTarget::Lease) => Ok(mvcc::CompareTarget::Lease),
        Err(_) => Err(ConvertError::UnknownEnumValue {
            field: "Compare.target",
            value,
        }),
    }
}

fn compare_target_to_pb(target: mvcc::CompareTarget) -> i32 {
    let target = match target {
        mvcc::CompareTarget::Version => compare::CompareTarget::Version,
        mvcc::CompareTarget::Create => compare::CompareTarget::Create,
        mvcc::CompareTarget::Mod => compare::CompareTarget::Mod,
        mvcc::CompareTarget::Value => compare::CompareTarget::Value,
        mvcc::CompareTarget::Lease => compare::CompareTarget::Lease,
    };
    target as i32
}

// ------------------------------------------------------------------------------ requests

/// A client's Range for the store; fails only on an unknown sort order or target.
pub fn range_request_from_pb(
    request: pb::RangeRequest,
) -> Result<mvcc::RangeRequest, ConvertError> {
    Ok(mvcc::RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order: sort_order_from_pb(request.sort_order)?,
        sort_target: sort_target_from_pb(request.sort_target)?,
        serializable: request.serializable,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

/// A Range to forward to another member.
pub fn range_request_to_pb(request: mvcc::RangeRequest) -> pb::RangeRequest {
    pb::RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order: sort_order_to_pb(request.sort_order),
        sort_target: sort_target_to_pb(request.sort_target),
        serializable: request.serializable,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

/// A client's Put for the store (every wire value is valid here; the store checks the rest).
pub fn put_request_from_pb(request: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// A Put to forward to another member.
pub fn put_request_to_pb(request: mvcc::PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// A client's DeleteRange for the store (every wire value is valid here).
pub fn delete_range_request_from_pb(request: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// A DeleteRange to forward to another member.
pub fn delete_range_request_to_pb(request: mvcc::DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// A transaction condition for the store; fails on an unknown result or target. An unset
/// `target_union` stays unset (the store then compares against zero, as etcd does).
pub fn compare_from_pb(compare: pb::Compare) -> Result<mvcc::Compare, ConvertError> {
    let target_union = compare.target_union.map(|union| match union {
        compare::TargetUnion::Version(v) => mvcc::CompareTargetUnion::Version(v),
        compare::TargetUnion::CreateRevision(v) => mvcc::CompareTargetUnion::CreateRevision(v),
        compare::TargetUnion::ModRevision(v) => mvcc::CompareTargetUnion::ModRevision(v),
        compare::TargetUnion::Value(v) => mvcc::CompareTargetUnion::Value(v),
        compare::TargetUnion::Lease(v) => mvcc::CompareTargetUnion::Lease(v),
    });
    Ok(mvcc::Compare {
        result: compare_result_from_pb(compare.result)?,
        target: compare_target_from_pb(compare.target)?,
        key: compare.key,
        target_union,
        range_end: compare.range_end,
    })
}

/// A transaction condition to forward to another member.
pub fn compare_to_pb(compare: mvcc::Compare) -> pb::Compare {
    let target_union = compare.target_union.map(|union| match union {
        mvcc::CompareTargetUnion::Version(v) => compare::TargetUnion::Version(v),
        mvcc::CompareTargetUnion::CreateRevision(v) => compare::TargetUnion::CreateRevision(v),
        mvcc::CompareTargetUnion::ModRevision(v) => compare::TargetUnion::ModRevision(v),
        mvcc::CompareTargetUnion::Value(v) => compare::TargetUnion::Value(v),
        mvcc::CompareTargetUnion::Lease(v) => compare::TargetUnion::Lease(v),
    });
    pb::Compare {
        result: compare_result_to_pb(compare.result),
        target: compare_target_to_pb(compare.target),
        key: compare.key,
        range_end: compare.range_end,
        target_union,
    }
}

/// One transaction operation for the store. An empty op becomes [`mvcc::RequestOp::Unset`]
/// (not an error here): validation answers it with etcd's `etcdserver: key not found`, after
/// the checks etcd runs first.
pub fn request_op_from_pb(op: pb::RequestOp) -> Result<mvcc::RequestOp, ConvertError> {
    Ok(match op.request {
        Some(request_op::Request::RequestRange(request)) => {
            mvcc::RequestOp::Range(range_request_from_pb(request)?)
        }
        Some(request_op::Request::RequestPut(request)) => {
            mvcc::RequestOp::Put(put_request_from_pb(request))
        }
        Some(request_op::Request::RequestDeleteRange(request)) => {
            mvcc::RequestOp::DeleteRange(delete_range_request_from_pb(request))
        }
        Some(request_op::Request::RequestTxn(request)) => {
            mvcc::RequestOp::Txn(txn_request_from_pb(request)?)
        }
        None => mvcc::RequestOp::Unset,
    })
}

/// One transaction operation to forward; [`mvcc::RequestOp::Unset`] goes out empty so the
/// leader answers it as etcd would.
pub fn request_op_to_pb(op: mvcc::RequestOp) -> pb::RequestOp {
    let request = match op {
        mvcc::RequestOp::Range(request) => Some(request_op::Request::RequestRange(
            range_request_to_pb(request),
        )),
        mvcc::RequestOp::Put(request) => {
            Some(request_op::Request::RequestPut(put_request_to_pb(request)))
        }
        mvcc::RequestOp::DeleteRange(request) => Some(request_op::Request::RequestDeleteRange(
            delete_range_request_to_pb(request),
        )),
        mvcc::RequestOp::Txn(request) => {
            Some(request_op::Request::RequestTxn(txn_request_to_pb(request)))
        }
        mvcc::RequestOp::Unset => None,
    };
    pb::RequestOp { request }
}

/// A client's transaction for the store, nested transactions included; fails on the first
/// unknown enum value anywhere inside.
///
/// Recursion depth is bounded by prost's decoding limit (100 nested messages), so a hostile
/// client cannot exhaust the stack through this function.
pub fn txn_request_from_pb(request: pb::TxnRequest) -> Result<mvcc::TxnRequest, ConvertError> {
    Ok(mvcc::TxnRequest {
        compare: request
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: request
            .success
            .into_iter()
            .map(request_op_from_pb)
            .collect::<Result<_, _>>()?,
        failure: request
            .failure
            .into_iter()
            .map(request_op_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// A transaction to forward to another member.
pub fn txn_request_to_pb(request: mvcc::TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: request.compare.into_iter().map(compare_to_pb).collect(),
        success: request.success.into_iter().map(request_op_to_pb).collect(),
        failure: request.failure.into_iter().map(request_op_to_pb).collect(),
    }
}

/// A client's Compact for the store (every wire value is valid here).
pub fn compaction_request_from_pb(request: pb::CompactionRequest) -> mvcc::CompactionRequest {
    mvcc::CompactionRequest {
        revision: request.revision,
        physical: request.physical,
    }
}

/// A Compact to forward to another member.
pub fn compaction_request_to_pb(request: mvcc::CompactionRequest) -> pb::CompactionRequest {
    pb::CompactionRequest {
        revision: request.revision,
        physical: request.physical,
    }
}

// ------------------------------------------------------------------------------ responses

/// The store's Range answer for the client, headed by the answering member.
pub fn range_response_to_pb(
    response: mvcc::RangeResponse,
    context: HeaderContext,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(context.header(response.header)),
        ..range_body_to_pb(response)
    }
}

fn range_body_to_pb(response: mvcc::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: nested_header(response.header),
        kvs: key_values_to_pb(response.kvs),
        more: response.more,
        count: response.count,
    }
}

/// A forwarded Range's answer, back in the store's terms (the leader's member fields are
/// dropped; the answering member adds its own).
pub fn range_response_from_pb(response: pb::RangeResponse) -> mvcc::RangeResponse {
    mvcc::RangeResponse {
        header: response_header_from_pb(response.header),
        kvs: key_values_from_pb(response.kvs),
        more: response.more,
        count: response.count,
    }
}

/// The store's Put answer for the client, headed by the answering member.
pub fn put_response_to_pb(response: mvcc::PutResponse, context: HeaderContext) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(context.header(response.header)),
        ..put_body_to_pb(response)
    }
}

fn put_body_to_pb(response: mvcc::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: nested_header(response.header),
        prev_kv: response.prev_kv.map(key_value_to_pb),
    }
}

/// A forwarded Put's answer, back in the store's terms.
pub fn put_response_from_pb(response: pb::PutResponse) -> mvcc::PutResponse {
    mvcc::PutResponse {
        header: response_header_from_pb(response.header),
        prev_kv: response.prev_kv.map(key_value_from_pb),
    }
}

/// The store's DeleteRange answer for the client, headed by the answering member.
pub fn delete_range_response_to_pb(
    response: mvcc::DeleteRangeResponse,
    context: HeaderContext,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(context.header(response.header)),
        ..delete_range_body_to_pb(response)
    }
}

fn delete_range_body_to_pb(response: mvcc::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: nested_header(response.header),
        deleted: response.deleted,
        prev_kvs: key_values_to_pb(response.prev_kvs),
    }
}

/// A forwarded DeleteRange's answer, back in the store's terms.
pub fn delete_range_response_from_pb(
    response: pb::DeleteRangeResponse,
) -> mvcc::DeleteRangeResponse {
    mvcc::DeleteRangeResponse {
        header: response_header_from_pb(response.header),
        deleted: response.deleted,
        prev_kvs: key_values_from_pb(response.prev_kvs),
    }
}

/// The store's Txn answer for the client. Only the top-level header gets the member's fields;
/// the responses inside carry just their revision, as in etcd 3.4.
pub fn txn_response_to_pb(response: mvcc::TxnResponse, context: HeaderContext) -> pb::TxnResponse {
    pb::TxnResponse {
        header: Some(context.header(response.header)),
        ..txn_body_to_pb(response)
    }
}

fn txn_body_to_pb(response: mvcc::TxnResponse) -> pb::TxnResponse {
    pb::TxnResponse {
        header: nested_header(response.header),
        succeeded: response.succeeded,
        responses: response
            .responses
            .into_iter()
            .map(response_op_to_pb)
            .collect(),
    }
}

/// A forwarded Txn's answer, back in the store's terms; fails only if some `ResponseOp`
/// (at any depth) is empty.
pub fn txn_response_from_pb(response: pb::TxnResponse) -> Result<mvcc::TxnResponse, ConvertError> {
    Ok(mvcc::TxnResponse {
        header: response_header_from_pb(response.header),
        succeeded: response.succeeded,
        responses: response
            .responses
            .into_iter()
            .map(response_op_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// One answer inside a transaction, for the wire. Its header carries only the revision, as
/// etcd 3.4 leaves nested headers.
pub fn response_op_to_pb(op: mvcc::ResponseOp) -> pb::ResponseOp {
    let response = match op {
        mvcc::ResponseOp::Range(response) => {
            response_op::Response::ResponseRange(range_body_to_pb(response))
        }
        mvcc::ResponseOp::Put(response) => {
            response_op::Response::ResponsePut(put_body_to_pb(response))
        }
        mvcc::ResponseOp::DeleteRange(response) => {
            response_op::Response::ResponseDeleteRange(delete_range_body_to_pb(response))
        }
        mvcc::ResponseOp::Txn(response) => {
            response_op::Response::ResponseTxn(txn_body_to_pb(response))
        }
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

/// One answer inside a forwarded transaction's answer; an empty one is
/// [`ConvertError::EmptyResponseOp`] because the store has no such answer.
pub fn response_op_from_pb(op: pb::ResponseOp) -> Result<mvcc::ResponseOp, ConvertError> {
    Ok(match op.response.ok_or(ConvertError::EmptyResponseOp)? {
        response_op::Response::ResponseRange(response) => {
            mvcc::ResponseOp::Range(range_response_from_pb(response))
        }
        response_op::Response::ResponsePut(response) => {
            mvcc::ResponseOp::Put(put_response_from_pb(response))
        }
        response_op::Response::ResponseDeleteRange(response) => {
            mvcc::ResponseOp::DeleteRange(delete_range_response_from_pb(response))
        }
        response_op::Response::ResponseTxn(response) => {
            mvcc::ResponseOp::Txn(txn_response_from_pb(response)?)
        }
    })
}

/// The store's Compact answer for the client, headed by the answering member.
pub fn compaction_response_to_pb(
    response: mvcc::CompactionResponse,
    context: HeaderContext,
) -> pb::CompactionResponse {
    pb::CompactionResponse {
        header: Some(context.header(response.header)),
    }
}

/// A forwarded Compact's answer, back in the store's terms.
pub fn compaction_response_from_pb(response: pb::CompactionResponse) -> mvcc::CompactionResponse {
    mvcc::CompactionResponse {
        header: response_header_from_pb(response.header),
    }
}
