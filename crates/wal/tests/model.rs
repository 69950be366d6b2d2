//! Model-based tests: long random sequences of appends (plain and truncating), hard states,
//! local and leader snapshots, releases and reopens give the same answers through
//! `raft::Storage` as `raft::MemStorage` with the WAL's documented snapshot rule.

mod common;

use common::*;
use proptest::prelude::*;
use raft::Storage;
use wal::{SimDisk, StdDisk, Wal};

#[derive(Clone, Debug)]
enum Step {
    Op(OpSpec),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => op_spec().prop_map(Step::Op),
        1 => Just(Step::Reopen),
    ]
}

fn run_model<D: wal::Disk + Clone>(
    disk: D,
    dir: &std::path::Path,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let options = small_options();
    let mut wal = Wal::create_on(disk.clone(), dir, options.clone(), conf()).unwrap();
    // Taken once per open WAL and kept across its writes, as an embedder holds it.
    let mut reader = wal.reader();
    let mut model = Model::new();
    let mut term = 0;
    for (nonce, step) in steps.iter().enumerate() {
        match step {
            Step::Op(spec) => {
                let Some(op) = resolve(spec, &model, &mut term, nonce as u64) else {
                    continue;
                };
                op.run(&mut wal)
                    .map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
                model.apply(&op);
            }
            Step::Reopen => {
                drop(wal);
                wal = Wal::open_on(disk.clone(), dir, options.clone())
                    .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
                prop_assert!(wal.recovery_report().torn_tail.is_none());
                reader = wal.reader();
            }
        }
        compare(&wal, &model.mem)
            .map_err(|e| TestCaseError::fail(format!("after step {nonce} {step:?}: {e}")))?;
        compare_reader(&reader, &model.mem)
            .map_err(|e| TestCaseError::fail(format!("reader after step {nonce} {step:?}: {e}")))?;
    }
    // Whatever happened, a final reopen agrees too, and released segments stay released.
    let segments = wal.segments().len();
    drop(wal);
    let wal = Wal::open_on(disk, dir, options).unwrap();
    compare(&wal, &model.mem).map_err(|e| TestCaseError::fail(format!("final reopen: {e}")))?;
    prop_assert_eq!(wal.segments().len(), segments);
    prop_assert!(wal.position_table_len() <= (wal.last_index().get() + 1) as usize * 2);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    #[test]
    fn wal_agrees_with_mem_storage(
        steps in prop::collection::vec(step(), 1..120),
    ) {
        run_model(SimDisk::new(), &dir(), &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// The same on the real file system (fewer cases: every write is an fdatasync).
    #[test]
    fn wal_agrees_with_mem_storage_on_real_disk(
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let temp = tempfile::tempdir().unwrap();
        run_model(StdDisk, &temp.path().join("wal"), &steps)?;
    }
}

/// A `WalReader` serves every entry after the snapshot as the model holds it, from any start,
/// under any byte limit, and nothing beyond the last entry.
fn compare_reader<D: wal::Disk>(
    reader: &wal::WalReader<D>,
    want: &impl Storage,
) -> Result<(), String> {
    let (first, last) = (want.first_index().get(), want.last_index().get());
    for low in first..=last {
        for max_bytes in [u64::MAX, 0, 300] {
            let high = raft::LogIndex(last + 1);
            let (got, expected) = (
                reader.entries(raft::LogIndex(low), high, max_bytes),
                want.entries(raft::LogIndex(low), high, max_bytes),
            );
            if got != expected {
                return Err(format!(
                    "entries({low}, {high}, {max_bytes}): {got:?} vs {expected:?}"
                ));
            }
        }
    }
    if reader
        .entries(raft::LogIndex(last + 1), raft::LogIndex(last + 2), u64::MAX)
        .is_ok()
    {
        return Err(format!("entry {} beyond the last one was served", last + 1));
    }
    Ok(())
}
