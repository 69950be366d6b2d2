//! Helpers shared by the scenario test files (each test file is its own crate, so they live
//! here rather than in the library's `scenario` module, which is for the simulator's API).
#![allow(dead_code)]

use raft::NodeId;
use sim::{Outcome, Sim};

/// One millisecond of virtual time, in microseconds.
pub const MS: u64 = 1_000;

/// A few keys, so operations contend, but about two clients per key at most, so the
/// linearizability check of a long history stays within its search budget.
pub fn keys_for(clients: usize) -> u64 {
    (clients as u64).div_ceil(2).max(3)
}

/// Fails the test with every violation the checker found.
pub fn assert_clean(sim: &Sim, seed: u64) {
    assert!(
        sim.violations().is_empty(),
        "seed {seed}: safety violated: {:#?}",
        sim.violations()
    );
}

/// Fails the test unless the run passed every check (safety, liveness, linearizability).
pub fn assert_passed(outcome: &Outcome) {
    assert!(
        outcome.passed(),
        "seed {}: {:#?}\n  stats: {:?}",
        outcome.options.seed,
        outcome.violations,
        outcome.stats
    );
}

/// `release` seeds in an optimised build, `debug` in a debug build (invariant checks everywhere
/// make the simulator several times slower there).
pub fn seeds(first: u64, release: u64, debug: u64) -> std::ops::Range<u64> {
    first
        ..first
            + if cfg!(debug_assertions) {
                debug
            } else {
                release
            }
}

pub fn others(sim: &Sim, excluded: &[NodeId]) -> Vec<NodeId> {
    sim.ids()
        .into_iter()
        .filter(|id| !excluded.contains(id))
        .collect()
}
