//! A deterministic simulator for raftkv.
//!
//! The real `node` + `raft` + `wal` code and the production state machine
//! (`machine::EtcdMachine`: etcd's MVCC keyspace with sessions, compaction, and its value file
//! on the simulated disk) run over a simulated clock, network and disk. Clients speak etcd
//! (Put, Range, DeleteRange, Txn, Compact) to any member, followers forwarding writes. Every
//! choice (delays, losses, partitions, crashes, client operations, election timeouts) comes from
//! one seed, so a failing seed replays event for event. Safety properties are checked after every
//! event (one leader per term, committed entries never change, leader completeness, state machine
//! safety, votes durable and unique, nothing committed without a durable quorum); at the end,
//! after all faults heal, liveness is checked (a leader, a write, every node converged) and the
//! client history is checked for linearizability (`lincheck`) and for revisions that agree with
//! one order of writes (`revisions`).
//!
//! The run has two phases, as in TigerBeetle's VOPR: a safety phase with faults, then a liveness
//! phase in which every fault is healed and the cluster must recover within a bounded time.

pub mod checker;
pub mod options;
pub mod revisions;
pub mod scenario;
pub mod watches;
pub mod world;

pub use checker::Violation;
pub use options::{FaultSet, Options};
pub use world::{Outcome, Sim, Stats};

/// Runs one seed to completion and returns what happened.
pub fn run(options: Options) -> Outcome {
    Sim::new(options).run()
}
