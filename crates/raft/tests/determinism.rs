//! One seed reproduces everything: the same seed and inputs give exactly the same Readies.

mod common;

use common::*;

fn trace(seed: u64) -> Vec<String> {
    chaos_run(seed, 3, 300, true).ready_trace.expect("traced")
}

#[test]
fn the_same_seed_and_inputs_produce_the_same_readies() {
    for seed in [1, 7, 42] {
        let first = trace(seed);
        let second = trace(seed);
        assert!(first.len() > 100, "a real run: {} readies", first.len());
        assert_eq!(first.len(), second.len(), "seed {seed}");
        for (i, (a, b)) in first.iter().zip(&second).enumerate() {
            assert_eq!(a, b, "seed {seed}: Ready {i} differs");
        }
    }
}

#[test]
fn a_different_seed_produces_different_readies() {
    // Otherwise the test above would prove nothing.
    assert_ne!(trace(1), trace(2));
}

#[test]
fn election_timeouts_depend_only_on_the_node_seed() {
    let elected_after = |seed: u64| {
        let mut cluster = Cluster::new(3, |c| c.seed = seed + c.id.get());
        cluster.ready_trace = Some(Vec::new());
        let ticks = cluster.run_until(100, |c| c.leader().is_some());
        (ticks, cluster.leader(), cluster.ready_trace.unwrap())
    };
    assert_eq!(elected_after(10), elected_after(10));
    let outcomes: std::collections::BTreeSet<_> =
        (0..20).map(|seed| elected_after(seed * 7).1).collect();
    assert!(outcomes.len() > 1, "different seeds elect different nodes");
}
