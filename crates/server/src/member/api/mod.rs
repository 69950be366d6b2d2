//! etcd's v3 gRPC services, one file each (`kv.rs`, `maintenance.rs`, `cluster.rs`,
//! `watch.rs`), each a
//! thin mapping between the wire and [`Core`]: check the request (size, enums, etcd's request
//! rules), put it through the log or read, and answer with etcd's header and errors.

use super::shared::Core;
use super::status::{mvcc_status, too_large};
use crate::machine::MachineResponse;
use ::kv::mvcc::MvccResponse;
use prost::Message;
use tonic::{Request, Status};

mod cluster;
mod kv;
mod maintenance;
mod watch;

pub use cluster::ClusterApi;
pub use kv::KvApi;
pub use maintenance::{MaintenanceApi, snapshot_chunks};
pub use watch::WatchApi;

/// Refuses a request larger than `--max-request-bytes`.
pub(super) fn check_size<T: Message>(core: &Core, request: &Request<T>) -> Result<(), Status> {
    if request.get_ref().encoded_len() > core.identity.max_request_bytes {
        return Err(too_large());
    }
    Ok(())
}

/// The error for a state machine answer of the wrong kind.
pub(super) fn unexpected(response: MachineResponse) -> Status {
    Status::internal(format!(
        "raftkv: unexpected state machine answer {response:?}"
    ))
}

/// The outcome of a KV command, or its etcd error.
pub(super) fn kv_outcome(response: MachineResponse) -> Result<MvccResponse, Status> {
    match response {
        MachineResponse::Kv(Ok(response)) => Ok(response),
        MachineResponse::Kv(Err(error)) => Err(mvcc_status(&error)),
        MachineResponse::Malformed(reason) => Err(Status::invalid_argument(format!(
            "raftkv: malformed request: {reason}"
        ))),
        other => Err(unexpected(other)),
    }
}
