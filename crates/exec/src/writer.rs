//! The WAL writer's rules, shared by the runtime's writer thread and the simulator's disk:
//! which queued jobs go into one batch, and how a batch of persist tasks becomes as few WAL
//! records and syncs as possible.

use node::PersistTask;
use raft::Entry;
use wal::{Disk, Wal, WalError};

/// Work for the writer, executed in the order it was queued.
#[derive(Debug)]
pub enum WriterJob {
    /// Make a persist task durable (and report it back).
    Persist(PersistTask),
    /// Record a local snapshot whose file has been written, and release the segments it
    /// covers (reported back only if it fails).
    Compact(raft::SnapshotMetadata),
    /// Record a higher commit index without a sync (`Wal::record_commit`; reported back only
    /// if it fails).
    Commit(raft::HardState),
}

/// The persist tasks queued right behind `first`, up to `max_batch` in all, taken with
/// `next_queued` (which answers `None` when nothing more is queued right now). A job of
/// another kind ends the batch and is kept in `held`, to run after it: jobs never overtake
/// one another.
pub fn gather_batch(
    first: PersistTask,
    max_batch: usize,
    mut next_queued: impl FnMut() -> Option<WriterJob>,
    held: &mut Option<WriterJob>,
) -> Vec<PersistTask> {
    debug_assert!(
        held.is_none(),
        "a held job runs before anything new is gathered"
    );
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match next_queued() {
            Some(WriterJob::Persist(task)) => batch.push(task),
            Some(other) => {
                *held = Some(other);
                break;
            }
            None => break,
        }
    }
    batch
}

/// Carries out a job that is not a persist task: a commit index recorded without a sync, or
/// a local snapshot adopted and the segments it covers released.
pub fn run_other_job<D: Disk>(wal: &mut Wal<D>, job: &WriterJob) -> Result<(), WalError> {
    match job {
        WriterJob::Persist(task) => write_batch(wal, std::slice::from_ref(task)),
        WriterJob::Commit(hard_state) => wal.record_commit(*hard_state),
        WriterJob::Compact(metadata) => {
            wal.adopt_snapshot(metadata)?;
            wal.release_to(metadata.index)?;
            Ok(())
        }
    }
}

/// Saves a leader's snapshot (local ones are written by the snapshot thread and adopted) and
/// deletes the segments it makes unnecessary.
fn compact_wal<D: Disk>(wal: &mut Wal<D>, snapshot: &raft::Snapshot) -> Result<(), WalError> {
    wal.save_snapshot(snapshot)?;
    wal.release_to(snapshot.metadata.index)?;
    Ok(())
}

/// Writes the tasks in order with as few syncs as possible: entries and hard states of
/// consecutive tasks go into one record (a later task's entries replace the conflicting tail
/// of an earlier one, as the WAL would do), split where a snapshot must be written first or
/// where the record would grow too large. A batch that only raises the commit index is not
/// synced at all (`Wal::record_commit`).
pub fn write_batch<D: Disk>(wal: &mut Wal<D>, batch: &[PersistTask]) -> Result<(), WalError> {
    let limit = wal.options().max_batch_bytes / 2;
    let mut hard_state = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut bytes = 0u64;
    for task in batch {
        let task_bytes: u64 = task
            .entries
            .iter()
            .map(|entry| entry.data.len() as u64 + 64)
            .sum();
        let pending = hard_state.is_some() || !entries.is_empty();
        if pending && (task.snapshot.is_some() || bytes + task_bytes > limit) {
            wal.write(hard_state.take(), &entries)?;
            entries.clear();
            bytes = 0;
        }
        if let Some(snapshot) = &task.snapshot {
            // A leader's snapshot replaces what this log held before it: those segments go.
            compact_wal(wal, snapshot)?;
        }
        if task.hard_state.is_some() {
            hard_state = task.hard_state;
        }
        if let Some(first) = task.entries.first() {
            entries.retain(|entry| entry.index < first.index);
            entries.extend(task.entries.iter().cloned());
        }
        bytes += task_bytes;
    }
    match hard_state {
        // A commit index alone (what a follower hears right after each acknowledged append)
        // needs no sync; a changed term or vote is synced all the same.
        Some(hard_state) if entries.is_empty() => wal.record_commit(hard_state)?,
        _ if entries.is_empty() => {}
        _ => wal.write(hard_state, &entries)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft::{ConfState, EntryKind, HardState, LogIndex, NodeId, Storage, Term};
    use wal::WalOptions;

    fn entries(term: u64, indices: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indices
            .map(|index| Entry {
                term: Term(term),
                index: LogIndex(index),
                kind: EntryKind::Normal,
                data: Bytes::from(format!("{term}/{index}")),
            })
            .collect()
    }

    fn task(number: u64, hard_state: Option<HardState>, entries: Vec<Entry>) -> PersistTask {
        PersistTask {
            number,
            snapshot: None,
            hard_state,
            entries,
        }
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState {
            term: Term(term),
            vote: NodeId(1),
            commit: LogIndex(commit),
        }
    }

    /// A batch whose later task overwrites the tail of an earlier one (a new leader) ends up
    /// as the WAL would after writing the tasks one by one, also after a reopen.
    #[test]
    fn a_merged_batch_equals_its_tasks_written_one_by_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        let batch = [
            task(1, Some(hard_state(2, 0)), entries(2, 1..=3)),
            task(2, Some(hard_state(3, 2)), entries(3, 3..=4)),
            task(3, Some(hard_state(3, 4)), Vec::new()),
            task(4, None, entries(3, 5..=5)),
        ];
        write_batch(&mut wal, &batch).expect("write");
        let check = |wal: &Wal| {
            assert_eq!(wal.hard_state(), hard_state(3, 4));
            assert_eq!(wal.last_index(), LogIndex(5));
            let terms: Vec<Term> = (1..=5)
                .map(|index| wal.term(LogIndex(index)).expect("term"))
                .collect();
            assert_eq!(terms, [2, 2, 3, 3, 3].map(Term));
            let stored = wal
                .entries(LogIndex(3), LogIndex(4), u64::MAX)
                .expect("entries");
            assert_eq!(stored, entries(3, 3..=3));
        };
        check(&wal);
        drop(wal);
        check(&Wal::open(dir.path(), WalOptions::default()).expect("reopen"));
    }

    /// A hard state alone is written; an empty batch writes nothing.
    #[test]
    fn hard_state_only_and_empty_tasks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        write_batch(&mut wal, &[task(1, None, Vec::new())]).expect("write nothing");
        assert_eq!(wal.hard_state(), HardState::default());
        write_batch(&mut wal, &[task(2, Some(hard_state(5, 0)), Vec::new())]).expect("write");
        drop(wal);
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
        assert_eq!(wal.hard_state(), hard_state(5, 0));
        assert_eq!(wal.last_index(), LogIndex::ZERO);
    }

    /// A batch that only raises the commit index is written but not synced (a process crash
    /// keeps it, a reopen reads it); a batch with entries, or with a new term or vote, syncs.
    #[test]
    fn a_commit_index_alone_is_written_without_a_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal =
            Wal::create(dir.path(), WalOptions::default(), ConfState::default()).expect("create");
        write_batch(
            &mut wal,
            &[task(1, Some(hard_state(2, 0)), entries(2, 1..=2))],
        )
        .expect("write");
        assert_eq!(wal.durable_hard_state(), hard_state(2, 0));
        write_batch(
            &mut wal,
            &[
                task(2, Some(hard_state(2, 1)), Vec::new()),
                task(3, Some(hard_state(2, 2)), Vec::new()),
            ],
        )
        .expect("write commit");
        assert_eq!(wal.hard_state(), hard_state(2, 2));
        assert_eq!(wal.durable_hard_state(), hard_state(2, 0), "not synced");
        write_batch(&mut wal, &[task(4, None, entries(2, 3..=3))]).expect("write entry");
        assert_eq!(
            wal.durable_hard_state(),
            hard_state(2, 2),
            "synced with the entry"
        );
        write_batch(&mut wal, &[task(5, Some(hard_state(3, 2)), Vec::new())]).expect("term");
        assert_eq!(
            wal.durable_hard_state(),
            hard_state(3, 2),
            "a new term is synced"
        );
        write_batch(&mut wal, &[task(6, Some(hard_state(3, 3)), Vec::new())]).expect("commit");
        drop(wal);
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
        assert_eq!(wal.hard_state(), hard_state(3, 3));
        assert_eq!(wal.last_index(), LogIndex(3));
    }
}
