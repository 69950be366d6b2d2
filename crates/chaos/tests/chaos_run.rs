//! Short real runs: three real members, every nemesis, a couple of seeds; the history must be
//! linearizable, no acknowledged write may be lost, and every watcher must keep the watch
//! guarantees.

use std::time::Duration;

use chaos::{FaultKind, RunOptions, run};

async fn short_run(seed: u64) {
    let options = RunOptions {
        nodes: 3,
        duration: Duration::from_secs(20),
        seed,
        nemesis: FaultKind::ALL.to_vec(),
        clients: 4,
        keys: 5,
        recovery_timeout: Duration::from_secs(30),
        ..RunOptions::default()
    };
    let report = run(options).await.expect("the harness runs");
    println!("seed {seed}: {}", report.result_line());
    for problem in &report.problems {
        println!("seed {seed}: problem: {problem}");
    }
    assert!(
        report.verdict.is_linearizable(),
        "seed {seed}: {} (artifacts: {:?})",
        report.verdict,
        report.artifacts
    );
    assert_eq!(
        report.lost_acked, 0,
        "seed {seed}: acknowledged writes lost (artifacts: {:?})",
        report.artifacts
    );
    assert!(report.faults > 0, "seed {seed}: the nemesis did nothing");
    assert!(
        report.problems.is_empty(),
        "seed {seed}: the cluster did not fully recover: {:?} (artifacts: {:?})",
        report.problems,
        report.artifacts
    );
    assert!(
        report.watch_violations.is_empty(),
        "seed {seed}: watch guarantees broken: {:?} (artifacts: {:?})",
        report.watch_violations,
        report.artifacts
    );
    assert!(
        report.watch_events > 0,
        "seed {seed}: the watchers saw nothing"
    );
    assert!(
        report.heal_to_write_ms.is_some(),
        "seed {seed}: no write after healing (artifacts: {:?})",
        report.artifacts
    );
}

/// Two seeds one after the other (not in parallel: on a small machine two clusters at once
/// would mostly test CPU starvation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nemesis_keeps_the_history_linearizable() {
    for seed in [1, 2] {
        short_run(seed).await;
    }
}
