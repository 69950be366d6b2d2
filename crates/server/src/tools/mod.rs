//! The `raftkv` subcommands that are not a member: a small etcd v3 client (`put`, `get`,
//! `status`, ...), a load generator (`bench`) and a local three-member cluster (`playground`).
//! They speak etcd's public v3 gRPC API only, so each works against etcd as well as raftkv.

pub mod bench;
pub mod client;
pub mod playground;
pub mod watch_bench;
