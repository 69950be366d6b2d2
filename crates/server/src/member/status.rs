//! The gRPC statuses a member answers with: etcd's codes and exact messages, so that etcd's
//! clients recognise them (and retry the retryable ones) as they would etcd's.

use node::RequestError;
use runtime::ClientError;
use tonic::{Code, Status};

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

/// etcd's answer once the member has stopped.
pub(super) fn stopped() -> Status {
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
