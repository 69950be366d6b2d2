//! A deterministic multi-version key-value state machine with etcd 3.4's v3 KV semantics.
//!
//! raftkv speaks etcd's gRPC API, and etcd's clients depend on its exact behaviour: revisions,
//! per-key versions, historical reads, compaction errors, transaction rules and error messages.
//! This module reproduces that behaviour (as etcd 3.4 implements it in its
//! `etcdserver/apply.go` and `mvcc/`) as a pure state machine the Raft log drives:
//!
//! - [`MvccCommand`] / [`MvccRequest`] are what gets proposed ([`MvccCommand::encode`]) and
//!   applied ([`MvccStore::apply_bytes`], [`MvccStore::apply_command`], [`MvccStore::apply`]);
//!   a `(client_id, sequence)` session header makes retried writes apply at most once.
//! - Requests and responses mirror etcd's protobuf messages field by field, so the gRPC layer
//!   maps them 1:1; [`MvccError`] displays etcd's exact messages and carries etcd's gRPC code.
//! - [`MvccRequest::validate`] runs etcd's pre-proposal checks (with the server's
//!   `max_txn_ops`); [`MvccStore::range`] serves reads that do not go through the log.
//! - [`MvccStore::snapshot`] / [`MvccStore::restore`] move the whole state between members;
//!   [`MvccStore::write_snapshot`] streams the same bytes to any `Write` (a file, or a larger
//!   buffer sized with [`MvccStore::snapshot_size`]) without holding them in memory, and
//!   `clone()` is cheap (histories are shared copy-on-write, recorded session answers are
//!   shared or a few words inline), for serializing a frozen copy on another thread.
//!   `crates/kv/memtool` measures these costs and the heap per revision.
//! - The session table is bounded ([`DEFAULT_MAX_SESSIONS`], [`MvccStore::set_max_sessions`])
//!   and evicts least recently used sessions; a retry of an evicted session is applied again.
//! - Values can live outside the heap: [`MvccStore::with_value_log`] gives the store a
//!   [`ValueLog`] (the server's is an append-only file) that takes every value of at least
//!   [`DEFAULT_VALUE_LOG_THRESHOLD`] bytes; the index keeps a reference. Everything observable
//!   (answers, hashes, snapshots) is the same with or without one.
//! - [`MvccStore::hash_kv`] is etcd's HashKV, [`MvccStore::approx_size_bytes`] its `dbSize`.
//!
//! Known differences from etcd 3.4, all at the edges:
//! - Leases do not exist yet: a put with a non-zero lease fails with `requested lease not
//!   found`, exactly what etcd answers for an unknown lease; LEASE compares see 0.
//! - Sorting is stable (ties stay in key order); etcd's Go sort leaves ties unspecified.
//! - etcd's duplicate-key check misses from-key deletes (`range_end` = `\0`), so a transaction
//!   can delete a key and then `ignore_value`-put it; etcd 3.4 panics applying that. Here the
//!   transaction is rolled back and fails with `key not found`.
//! - Transactions nested deeper than [`MAX_TXN_DEPTH`] fail with `too many operations`, as
//!   they do in etcd under its default limit.
//! - The per-member `max_txn_ops` limit is checked by [`MvccRequest::validate`] only, not in
//!   apply, because members with different limits would otherwise diverge.

mod codec;
mod error;
mod events;
mod hash;
mod index;
mod key;
mod sessions;
mod snapshot;
mod store;
mod types;
mod validate;
mod values;

pub use error::{GrpcCode, MvccError, SnapshotError};
pub use events::{Event, EventKind, History};
pub use store::{DEFAULT_MAX_SESSIONS, MvccStore};
pub use types::{
    CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget,
    CompareTargetUnion, DeleteRangeRequest, DeleteRangeResponse, KeyValue, MvccCommand,
    MvccRequest, MvccResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse, prefix_range_end,
};
pub use validate::{DEFAULT_MAX_TXN_OPS, MAX_TXN_DEPTH};
pub use values::{DEFAULT_VALUE_LOG_THRESHOLD, MemoryValueLog, ValueLog, ValueRef};
