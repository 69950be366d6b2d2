//! The negative control: serializable reads served by a member cut off in a minority while the
//! majority keeps accepting writes are stale, and the checker must say so. Without this, a
//! green chaos run could just mean a checker (or recorder) that accepts everything.

use std::time::Duration;

use chaos::{RunOptions, run};
use lincheck::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_serializable_reads_from_an_isolated_member_are_caught() {
    let options = RunOptions {
        nodes: 3,
        duration: Duration::from_secs(8),
        seed: 42,
        nemesis: Vec::new(),
        clients: 4,
        keys: 3,
        stale_reads: true,
        ..RunOptions::default()
    };
    let report = run(options).await.expect("the harness runs");
    println!("{}", report.result_line());
    assert!(
        matches!(report.verdict, Verdict::NotLinearizable { .. }),
        "the checker accepted stale reads: {}",
        report.verdict
    );
    assert!(!report.passed());
    assert!(report.ok > 0, "the clients did work");
    // A failing run leaves its evidence behind.
    let artifacts = report.artifacts.expect("artifacts written on failure");
    assert!(artifacts.join("history.txt").is_file());
    assert!(artifacts.join("m3.log").is_file());
    let _ = std::fs::remove_dir_all(artifacts.parent().expect("run directory"));
}
