//! Crash consistency on the simulated disk: random sequences of appends (plain and truncating),
//! hard states, snapshots and releases, with power losses at random points (mid-operation and
//! mid-recovery), in every crash mode, and injected ENOSPC/EIO faults. After every crash the
//! recovered WAL must equal the state after the last acknowledged write, or the state after the
//! write that was in flight — nothing lost, nothing invented, never a mix.

mod common;

use common::*;
use proptest::prelude::*;
use raft::{HardState, LogIndex, Storage};
use wal::{CrashMode, Fault, SimDisk, Wal, WalError, WalOptions};

#[derive(Clone, Debug)]
enum Step {
    Op(OpSpec),
    /// Power loss after `after` more disk mutations during `op`; optionally another one after
    /// `reopen_crash` mutations during the recovery that follows.
    CrashDuring {
        op: OpSpec,
        after: u8,
        mode: usize,
        seed: u64,
        reopen_crash: Option<u8>,
    },
    /// The `nth` write or sync during `op` fails; then a restart, with or without power loss.
    FaultDuring {
        op: OpSpec,
        nth: u8,
        on_sync: bool,
        disk_full: bool,
        crash: Option<(usize, u64)>,
    },
    /// Power loss between operations: everything acknowledged must be there, exactly.
    CrashIdle {
        mode: usize,
        seed: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => op_spec().prop_map(Step::Op),
        4 => (op_spec(), 0u8..12, 0usize..3, any::<u64>(), prop::option::weighted(0.3, 0u8..8))
            .prop_map(|(op, after, mode, seed, reopen_crash)| Step::CrashDuring {
                op, after, mode, seed, reopen_crash,
            }),
        2 => (op_spec(), 1u8..5, any::<bool>(), any::<bool>(),
              prop::option::of((0usize..3, any::<u64>())))
            .prop_map(|(op, nth, on_sync, disk_full, crash)| Step::FaultDuring {
                op, nth, on_sync, disk_full, crash,
            }),
        1 => (0usize..3, any::<u64>()).prop_map(|(mode, seed)| Step::CrashIdle { mode, seed }),
    ]
}

fn fail(context: String) -> TestCaseError {
    TestCaseError::fail(context)
}

/// Reopens after a crash, optionally crashing again part-way through recovery.
fn reopen(
    disk: &SimDisk,
    options: &WalOptions,
    reopen_crash: Option<u8>,
    seed: u64,
) -> Result<Wal<SimDisk>, TestCaseError> {
    if let Some(after) = reopen_crash {
        disk.crash_after(u64::from(after));
        match open_sim(disk, options) {
            // Best-effort steps (deleting old snapshots) may have hit the power loss after the
            // recovery proper succeeded: then the process is dead all the same.
            Ok(wal) if !disk.is_frozen() => {
                disk.clear_faults();
                return Ok(wal);
            }
            _ => disk.crash(CrashMode::ALL[(seed % 3) as usize], seed.rotate_left(17)),
        }
    }
    open_sim(disk, options).map_err(|e| fail(format!("reopen failed: {e}")))
}

/// The recovered state must be `before` or `after` the in-flight operation; returns which.
fn pick(wal: &Wal<SimDisk>, before: Model, after: Model) -> Result<Model, TestCaseError> {
    match (compare(wal, &after.mem), compare(wal, &before.mem)) {
        (Ok(()), _) => Ok(after),
        (_, Ok(())) => Ok(before),
        (Err(a), Err(b)) => Err(fail(format!(
            "recovered state is neither after ({a}) nor before ({b}) the interrupted write"
        ))),
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    let mut model = Model::new();
    let mut term = 0;
    for (nonce, step) in steps.iter().enumerate() {
        let nonce = nonce as u64;
        match step {
            Step::Op(spec) => {
                let Some(op) = resolve(spec, &model, &mut term, nonce) else {
                    continue;
                };
                op.run(&mut wal).map_err(|e| fail(format!("{op:?}: {e}")))?;
                model.apply(&op);
            }
            Step::CrashDuring {
                op: spec,
                after,
                mode,
                seed,
                reopen_crash,
            } => {
                let Some(op) = resolve(spec, &model, &mut term, nonce) else {
                    continue;
                };
                let before = model.clone();
                let mut after_model = model.clone();
                after_model.apply(&op);
                disk.crash_after(u64::from(*after));
                let result = op.run(&mut wal);
                drop(wal);
                disk.crash(CrashMode::ALL[*mode], *seed);
                wal = reopen(&disk, &options, *reopen_crash, *seed)?;
                model = match result {
                    Ok(()) => after_model,
                    Err(_) => pick(&wal, before, after_model)?,
                };
            }
            Step::FaultDuring {
                op: spec,
                nth,
                on_sync,
                disk_full,
                crash,
            } => {
                let Some(op) = resolve(spec, &model, &mut term, nonce) else {
                    continue;
                };
                let fault = if *disk_full {
                    Fault::DiskFull
                } else {
                    Fault::Io
                };
                if *on_sync {
                    disk.fail_sync(u64::from(*nth), fault);
                } else {
                    disk.fail_write(u64::from(*nth), fault);
                }
                let result = op.run(&mut wal);
                disk.clear_faults();
                let before = model.clone();
                let mut after_model = model.clone();
                after_model.apply(&op);
                match result {
                    Ok(()) => model = after_model,
                    Err(error) => {
                        prop_assert!(matches!(error, WalError::Io { .. }), "{error}");
                        prop_assert!(wal.is_poisoned());
                        // Reads keep serving the state before the failed write...
                        compare(&wal, &before.mem)
                            .map_err(|e| fail(format!("poisoned WAL reads: {e}")))?;
                        // ...and writes are refused.
                        let again = wal.set_hard_state(HardState::default());
                        prop_assert!(
                            matches!(again, Err(WalError::Poisoned { .. })),
                            "{:?}",
                            again
                        );
                        drop(wal);
                        if let Some((mode, seed)) = crash {
                            disk.crash(CrashMode::ALL[*mode], *seed);
                        }
                        wal = open_sim(&disk, &options)
                            .map_err(|e| fail(format!("reopen after fault: {e}")))?;
                        model = pick(&wal, before, after_model)?;
                    }
                }
            }
            Step::CrashIdle { mode, seed } => {
                drop(wal);
                disk.crash(CrashMode::ALL[*mode], *seed);
                wal = open_sim(&disk, &options)
                    .map_err(|e| fail(format!("reopen after idle crash: {e}")))?;
                prop_assert!(
                    wal.recovery_report().torn_tail.is_none(),
                    "nothing was in flight, yet: {}",
                    wal.recovery_report()
                );
            }
        }
        compare(&wal, &model.mem).map_err(|e| fail(format!("after step {nonce} {step:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_exactly_the_acknowledged_writes(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        run(&steps)?;
    }
}

/// A write whose sync never happened, torn in every way the simulator knows, over many seeds:
/// recovery always yields the acknowledged prefix or the whole write, and the torn tails are
/// reported (so the scenario really is exercised).
#[test]
fn unsynced_batches_torn_every_way_recover_to_a_valid_state() {
    let options = small_options();
    let mut torn_reports = 0;
    let mut kept_whole = 0;
    for seed in 0..300u64 {
        let disk = SimDisk::new();
        let mut wal = create_sim(&disk, &options);
        let acked = entries(1, 5, 1, 0, 100);
        wal.append(&acked).unwrap();
        let in_flight = entries(6, 3, 1, 1, 700 + (seed as usize % 5) * 200);
        // Let the write through, then lose power at the sync.
        disk.crash_after(1);
        assert!(wal.append(&in_flight).is_err());
        drop(wal);
        disk.crash(CrashMode::ALL[(seed % 3) as usize], seed);
        let wal = open_sim(&disk, &options).unwrap();
        let last = wal.last_index().get();
        assert!(last == 5 || last == 8, "seed {seed}: last {last}");
        let got = wal
            .entries(LogIndex(1), LogIndex(last + 1), u64::MAX)
            .unwrap();
        let mut want = acked.clone();
        if last == 8 {
            want.extend(in_flight.clone());
            kept_whole += 1;
        }
        assert_eq!(got, want, "seed {seed}");
        torn_reports += usize::from(wal.recovery_report().torn_tail.is_some());
    }
    assert!(torn_reports > 50, "only {torn_reports} torn tails reported");
    assert!(
        kept_whole > 10,
        "only {kept_whole} in-flight writes survived whole"
    );
}

/// Commit indices recorded without a sync (`Wal::record_commit`), then a power loss in every
/// mode, over many seeds: recovery gives back the log whole, the term and vote, and a commit
/// index between the durable one and the last recorded; every commit index still counts as
/// recorded for a process that did not lose power. Small segments make the unsynced records
/// straddle segment rolls, which must seal only whole (synced) segments.
#[test]
fn commit_indices_recorded_without_a_sync_lose_at_most_themselves() {
    let options = small_options();
    let mut rolled = 0;
    let mut lost_some = 0;
    let mut kept_all = 0;
    for seed in 0..300u64 {
        let disk = SimDisk::new();
        let mut wal = create_sim(&disk, &options);
        let hard_state = |commit| HardState {
            term: raft::Term(1),
            vote: raft::NodeId(1),
            commit: LogIndex(commit),
        };
        wal.write(Some(hard_state(0)), &entries(1, 4, 1, seed, 60))
            .unwrap();
        let mut last = 4;
        let mut commit = 0;
        for round in 0..(seed % 23) {
            // An entry (synced), then its commit index (not synced), as a follower sees them.
            if round % 3 != 2 {
                last += 1;
                let len = 300 + (round as usize * 137) % 400;
                wal.append(&entries(last, 1, 1, seed ^ round, len)).unwrap();
            }
            commit = last;
            wal.record_commit(hard_state(commit)).unwrap();
            assert_eq!(wal.hard_state(), hard_state(commit));
        }
        rolled += usize::from(wal.segments().len() > 1);
        let durable = wal.durable_hard_state().commit.get();
        assert!(durable <= commit);
        if durable < commit {
            assert!(
                disk.unsynced_ops() > 0,
                "seed {seed}: nothing left unsynced"
            );
        }
        drop(wal);
        disk.crash(CrashMode::ALL[(seed % 3) as usize], seed);
        let wal = open_sim(&disk, &options).unwrap();
        assert_eq!(
            wal.last_index(),
            LogIndex(last),
            "seed {seed}: entries lost"
        );
        let recovered = wal.hard_state();
        assert_eq!(
            (recovered.term, recovered.vote),
            (raft::Term(1), raft::NodeId(1))
        );
        let got = recovered.commit.get();
        assert!(
            (durable..=commit).contains(&got),
            "seed {seed}: commit {got} recovered, durable {durable}, recorded {commit}"
        );
        if got < commit {
            lost_some += 1;
        } else {
            kept_all += 1;
        }
    }
    assert!(
        lost_some > 30,
        "only {lost_some} runs lost an unsynced commit index"
    );
    assert!(
        kept_all > 30,
        "only {kept_all} runs kept every commit index"
    );
    assert!(rolled > 100, "only {rolled} runs rolled a segment");
}

/// A term or vote is never left unsynced by `record_commit`, and a lower commit index is synced
/// too (so recovery never mixes an older durable one with a newer lower one).
#[test]
fn record_commit_syncs_anything_but_a_raised_commit_index() {
    let disk = SimDisk::new();
    let mut wal = create_sim(&disk, &small_options());
    let hard_state = |term, vote, commit| HardState {
        term: raft::Term(term),
        vote: raft::NodeId(vote),
        commit: LogIndex(commit),
    };
    wal.write(Some(hard_state(1, 1, 0)), &entries(1, 3, 1, 0, 10))
        .unwrap();
    wal.record_commit(hard_state(1, 1, 2)).unwrap();
    assert_eq!(wal.durable_hard_state(), hard_state(1, 1, 0));
    for (next, why) in [
        (hard_state(2, 0, 2), "a new term"),
        (hard_state(2, 3, 2), "a vote"),
        (hard_state(2, 3, 1), "a lower commit index"),
    ] {
        wal.record_commit(next).unwrap();
        assert_eq!(wal.durable_hard_state(), next, "{why} must be synced");
        assert_eq!(disk.unsynced_ops(), 0, "{why} must be synced");
    }
}
