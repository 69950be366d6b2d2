//! The gRPC statuses a member answers with: etcd's codes and exact messages, so that etcd's
//! clients recognise them (and retry the retryable ones) as they would etcd's.

use node::RequestError;
use raft::ProposeError;
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

/// Maps a member's refusal to etcd's status: the last step of the one chain by which the
/// core's errors reach a client (`raft::ProposeError` into `node::RequestError` into
/// `runtime::ClientError`, each by its crate's `From`). A `From` cannot be written here (both
/// types are other crates'), so these three functions are that step, one per layer.
pub fn client_status(error: &ClientError) -> Status {
    match error {
        ClientError::Failed(error) => request_status(error),
        ClientError::Stopped => stopped(),
    }
}

/// etcd's status for the node's reason.
fn request_status(error: &RequestError) -> Status {
    match error {
        RequestError::Refused(error) => refusal_status(error),
        RequestError::Dropped => leader_changed(),
        RequestError::OutcomeUnknown => timed_out(),
    }
}

/// etcd's status for the Raft core's refusal.
fn refusal_status(error: &ProposeError) -> Status {
    match error {
        ProposeError::NotLeader { leader_hint } if leader_hint.is_some() => leader_changed(),
        ProposeError::NotLeader { .. } => no_leader(),
        ProposeError::Backpressure => {
            etcd_status(Code::ResourceExhausted, "etcdserver: too many requests")
        }
        ProposeError::TooLarge { .. } => too_large(),
        ProposeError::TransferInProgress => leader_changed(),
        ProposeError::ConfChangePending => {
            etcd_status(Code::FailedPrecondition, "etcdserver: unhealthy cluster")
        }
        ProposeError::ConfChangeRejected(reason) => {
            Status::failed_precondition(format!("etcdserver: {reason}"))
        }
    }
}
