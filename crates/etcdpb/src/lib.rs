//! etcd 3.4's v3 gRPC API for raftkv: generated message types, tonic clients and servers, and
//! conversions to the store's own [`kv::mvcc`] types.
//!
//! raftkv answers etcd clients (etcdctl, the Go and Rust client libraries) unchanged, so its
//! wire format must be etcd's to the field number. This crate owns that contract in one place:
//!
//! - `proto/` holds raftkv's own description of etcd 3.4's `mvccpb` and `etcdserverpb`
//!   packages (KV, Watch, Lease, Cluster and Maintenance; no Auth), checked field by field
//!   against etcd's files. `build.rs` compiles it with `protox`, so no `protoc` binary is
//!   needed, and maps every `bytes` field to [`bytes::Bytes`] so keys and values are shared
//!   with the store instead of copied.
//! - [`etcdserverpb`] and [`mvccpb`] are the generated code; each service has a `*_server`
//!   module (trait and tonic service, paths like `/etcdserverpb.KV/Range`) and a `*_client`
//!   module (used by a member that forwards a request to the leader).
//! - [`convert`] maps KV requests and responses between the wire and [`kv::mvcc`] in both
//!   directions. Decoding is total: a message with an enum number etcd does not define comes
//!   back as a [`convert::ConvertError`] (gRPC `InvalidArgument`), never a panic.

pub mod convert;

/// Generated from `proto/etcdserverpb/rpc.proto`: the messages and services of etcd's client
/// API. Field names follow the proto, so etcd's camel-case fields appear as prost's snake case
/// (`peerURLs` is `peer_ur_ls`, `TTL` is `ttl`, `dbSize` is `db_size`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    rustdoc::all
)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Generated from `proto/mvccpb/kv.proto`: the key-value and event messages shared by the KV
/// and Watch services.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    rustdoc::all
)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
