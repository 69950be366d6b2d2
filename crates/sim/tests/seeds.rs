//! The seeded swarm: thousands of runs over 3, 5 and 7 nodes with every fault, each checked for
//! Raft safety after every event and for linearizability and recovery at the end.

use sim::{FaultSet, Options, Outcome};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Runs `count` seeds from `first` on all cores; returns the failing outcomes and the totals.
fn run_seeds(
    first: u64,
    count: u64,
    break_rules: fn(&mut Options),
    stop_at_first: bool,
) -> (Vec<Outcome>, u64) {
    let next = Arc::new(AtomicU64::new(first));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let commits = Arc::new(AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, failures, commits) = (next.clone(), failures.clone(), commits.clone());
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    let mut options = Options::for_seed(seed, &[3, 5, 7], FaultSet::ALL);
                    break_rules(&mut options);
                    let outcome = sim::run(options);
                    commits.fetch_add(outcome.stats.commits, Ordering::Relaxed);
                    if !outcome.passed() {
                        failures.lock().unwrap().push(outcome);
                        if stop_at_first {
                            next.store(u64::MAX / 2, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a simulation panicked");
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    (failures, commits.load(Ordering::Relaxed))
}

fn seed_count() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 200 } else { 2000 })
}

#[test]
fn every_seed_passes_every_check() {
    let count = seed_count();
    let (failures, commits) = run_seeds(0, count, |_| {}, false);
    for failure in &failures {
        eprintln!(
            "seed {} failed: {}\n  replay: {}",
            failure.options.seed,
            failure.violations[0],
            failure.replay_command()
        );
    }
    println!(
        "seeds={count} violations={} commits={commits}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed",
        failures.len()
    );
    assert!(
        commits > count * 50,
        "runs barely made progress: {commits} commits"
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [3, 17, 4242] {
        let options = Options::for_seed(seed, &[3, 5, 7], FaultSet::ALL);
        let mut first = sim::Sim::new(options.clone());
        let mut second = sim::Sim::new(options);
        first.start_clients();
        second.start_clients();
        first.run_for(3_000_000);
        second.run_for(3_000_000);
        assert_eq!(first.stats(), second.stats());
        assert_eq!(first.history(), second.history());
        assert!(first.stats().events > 1000);
    }
}

/// The checkers have teeth: a core that forgets to persist its vote is caught.
#[test]
fn a_core_that_forgets_its_vote_is_caught() {
    let broken = |options: &mut Options| options.core_faults.vote_without_persisting = true;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    let failure = failures.first().expect("1,000 seeds found no violation");
    assert!(
        failure.violations.iter().any(|v| matches!(
            v.property,
            "vote-once-per-term"
                | "election-safety"
                | "leader-completeness"
                | "state-machine-safety"
        )),
        "unexpected violation: {:?}",
        failure.violations
    );
}

/// The checkers have teeth: a core that grants votes without the up-to-date check is caught.
#[test]
fn a_core_that_skips_the_log_check_is_caught() {
    let broken = |options: &mut Options| options.core_faults.vote_without_log_check = true;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    assert!(!failures.is_empty(), "1,000 seeds found no violation");
}

/// The checkers have teeth beyond Raft: an etcd state machine whose applies now and then skip
/// a revision keeps every member identical and every key linearizable, and is caught by the
/// revisions clients were told of. Watchers of every key from one on may notice too: the
/// hidden write is not handed to the synced watchers (only the entry's own write is), so they
/// miss a revision that history holds.
#[test]
fn a_state_machine_that_skips_a_revision_is_caught() {
    let broken = |options: &mut Options| options.machine_faults.skip_revision_every = 7;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    let failure = failures.first().expect("1,000 seeds found no violation");
    assert!(
        failure.violations.iter().all(|v| matches!(
            v.property,
            "revisions" | "watch-reliable" | "watch-resumable"
        )),
        "unexpected violation: {:?}",
        failure.violations
    );
}

/// The checkers have teeth in the writer too: a writer that reports a batch durable when it
/// starts writing it lets a node acknowledge entries a crash then loses.
#[test]
fn a_writer_that_acknowledges_before_the_sync_is_caught() {
    let broken = |options: &mut Options| options.ack_before_sync = true;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    assert!(!failures.is_empty(), "1,000 seeds found no violation");
}

/// The watch checker has teeth: a hub that now and then leaves an event out of what it sends
/// keeps every member identical and every key linearizable, and is caught by the watchers'
/// comparison with the committed history.
#[test]
fn a_watch_hub_that_drops_an_event_is_caught() {
    let broken = |options: &mut Options| options.machine_faults.watch.drop_event_every = 20;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    let failure = failures.first().expect("1,000 seeds found no violation");
    assert!(
        failure
            .violations
            .iter()
            .all(|v| matches!(v.property, "watch-reliable" | "watch-resumable")),
        "unexpected violation: {:?}",
        failure.violations
    );
}

/// The watch checker has teeth: a hub that now and then sends a response twice is caught as
/// it arrives.
#[test]
fn a_watch_hub_that_sends_an_event_twice_is_caught() {
    let broken = |options: &mut Options| options.machine_faults.watch.duplicate_event_every = 20;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    let failure = failures.first().expect("1,000 seeds found no violation");
    assert!(
        failure
            .violations
            .iter()
            .all(|v| v.property == "watch-unique"),
        "unexpected violation: {:?}",
        failure.violations
    );
}

/// The watch checker has teeth for atomicity: a hub that now and then splits a revision of
/// several events (a multi-key write) over two responses without marking the first a
/// fragment is caught as it arrives. The events it then leaves out of the record show up at
/// the end as missing.
#[test]
fn a_watch_hub_that_splits_a_revision_is_caught() {
    let broken = |options: &mut Options| options.machine_faults.watch.split_revision_every = 3;
    let (failures, _) = run_seeds(0, 1000, broken, true);
    let failure = failures.first().expect("1,000 seeds found no violation");
    assert_eq!(
        failure.violations[0].property, "watch-atomic",
        "unexpected violation: {:?}",
        failure.violations
    );
    assert!(
        failure.violations.iter().all(|v| matches!(
            v.property,
            "watch-atomic" | "watch-reliable" | "watch-resumable"
        )),
        "unexpected violation: {:?}",
        failure.violations
    );
}
