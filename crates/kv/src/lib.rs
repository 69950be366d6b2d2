//! etcd's MVCC semantics as a deterministic state machine, without I/O.
//!
//! Everything is in [`mvcc`]: revisions and per-key versions, historical reads, compaction,
//! Range/Put/DeleteRange/Txn with etcd 3.4's rules and error messages, HashKV, snapshots, and
//! exactly-once client sessions. The state machine a member replicates (`machine::EtcdMachine`)
//! wraps it with etcd's member table.
//!
//! Every command is applied through the replicated log, so every member computes the same
//! answers from the same log. A command carries `(client_id, sequence)`: a client that retries
//! after a timeout or a redirect sends the same pair again, and the store answers the retry
//! from its session table instead of applying the command twice.
//!
//! The wire encodings are hand-written; decoding never panics on hostile bytes.

use std::fmt;
pub mod mvcc;

/// Why bytes are not a valid command, response or snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed request: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}
