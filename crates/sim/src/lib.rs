//! A deterministic simulator for raftkv.
//!
//! The real `node` + `raft` + `kv` code runs over a simulated clock, network and disk. Every
//! choice (delays, losses, partitions, crashes, client operations, election timeouts) comes from
//! one seed, so a failing seed replays event for event. Safety properties are checked after every
//! event (one leader per term, committed entries never change, leader completeness, state machine
//! safety, votes durable and unique, nothing committed without a durable quorum); at the end,
//! after all faults heal, liveness is checked (a leader, a write, every node converged) and the
//! client history is checked for linearizability.
//!
//! The run has two phases, as in TigerBeetle's VOPR: a safety phase with faults, then a liveness
//! phase in which every fault is healed and the cluster must recover within a bounded time.

pub mod checker;
pub mod options;
pub mod scenario;
pub mod world;

pub use checker::Violation;
pub use options::{FaultSet, Options};
pub use world::{Outcome, Sim, Stats};

/// Runs one seed to completion and returns what happened.
pub fn run(options: Options) -> Outcome {
    Sim::new(options).run()
}
