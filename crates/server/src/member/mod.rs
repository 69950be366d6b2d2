//! One member of a cluster: how it starts and stops ([`serve`]), the data directory's stamp
//! ([`identity`]), etcd's gRPC services ([`api`]) and their hot path ([`fastpath`]), and what
//! the handlers share ([`shared`]) with the paths a request takes: to the log or a read
//! ([`requests`]), Cluster calls passed to the leader ([`forwarding`]), under an idempotency session
//! ([`sessions`]), to the member list ([`members`]), and back as etcd's errors ([`status`]).

pub mod api;
pub mod fastpath;
pub mod forwarding;
pub mod identity;
pub mod members;
pub mod requests;
pub mod serve;
pub mod sessions;
pub mod shared;
pub mod status;
