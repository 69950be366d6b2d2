//! One member of a cluster: how it starts and stops ([`serve`]), the data directory's stamp
//! ([`identity`]), etcd's gRPC services ([`api`]) and their hot path ([`fastpath`]), and what
//! every handler shares ([`shared`]).

pub mod api;
pub mod fastpath;
pub mod identity;
pub mod serve;
pub mod shared;
