//! The watch checker's negative control: one watcher's record (client-side, not the stream)
//! loses one event, or holds one twice, and the run must report exactly that. Without this, a
//! run with `watch_violations=0` could just mean a checker that accepts everything.

use std::time::Duration;

use chaos::watchers::BreakWatch;
use chaos::{RunOptions, run};

async fn broken(kind: BreakWatch, guarantee: &str, seed: u64) {
    let options = RunOptions {
        nodes: 3,
        duration: Duration::from_secs(8),
        seed,
        nemesis: Vec::new(),
        clients: 4,
        keys: 3,
        break_watch: Some(kind),
        ..RunOptions::default()
    };
    let report = run(options).await.expect("the harness runs");
    println!("{}", report.result_line());
    for violation in &report.watch_violations {
        println!("{violation}");
    }
    assert!(report.verdict.is_linearizable(), "{}", report.verdict);
    assert!(report.watch_events > 0, "the watchers saw events");
    assert_eq!(
        report.watch_violations.len(),
        1,
        "exactly the tampered event is reported: {:?}",
        report.watch_violations
    );
    let violation = &report.watch_violations[0];
    assert_eq!(violation.watcher, Some(0), "{violation}");
    assert_eq!(violation.guarantee, guarantee, "{violation}");
    assert!(!report.passed());
    let artifacts = report.artifacts.expect("artifacts written on failure");
    let records = std::fs::read_to_string(artifacts.join("watch.txt")).expect("watch.txt");
    assert!(records.contains("TAMPERED (negative control)"));
    assert!(artifacts.join("watch-reference.txt").is_file());
    let _ = std::fs::remove_dir_all(artifacts.parent().expect("run directory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_repeated_watch_event_is_caught() {
    broken(BreakWatch::Drop, "reliable", 43).await;
    broken(BreakWatch::Duplicate, "unique", 44).await;
}
