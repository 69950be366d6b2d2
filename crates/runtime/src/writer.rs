//! The writer thread, the one owner of the [`Wal`]: it makes the driver's persist tasks durable
//! in order, merging the ones already queued into one record and one sync, and reports each
//! batch back; it also records local snapshots and commit indexes in their place in that order.

use crate::protocol::{Completion, Job};
use node::PersistTask;
use raft::Entry;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wal::{Wal, WalError};

/// The writer thread: takes tasks in order, merges the ones already queued into one write,
/// and reports each batch once it is durable. Stops at the first failure (the WAL is poisoned
/// then) or when the driver is gone.
pub(crate) fn run_writer(
    mut wal: Wal,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Completion>,
    max_batch: usize,
    slow_sync: Duration,
) {
    // A compaction job taken while gathering a batch: it runs after that batch.
    let mut next = None;
    loop {
        let Some(job) = next.take().or_else(|| jobs.blocking_recv()) else {
            break;
        };
        let first = match job {
            Job::Persist(task) => task,
            Job::Commit(hard_state) => {
                if let Err(error) = wal.record_commit(hard_state) {
                    tracing::error!(%error, "WAL write failed; the member stops");
                    let _ = done.blocking_send(Err(error.to_string()));
                    break;
                }
                continue;
            }
            Job::Compact(metadata) => {
                let adopted = wal
                    .adopt_snapshot(&metadata)
                    .and_then(|()| wal.release_to(metadata.index).map(drop));
                if let Err(error) = adopted {
                    tracing::error!(%error, "saving a snapshot failed; the member stops");
                    let _ = done.blocking_send(Err(error.to_string()));
                    break;
                }
                continue;
            }
        };
        let batch = gather_batch(first, &mut jobs, max_batch, &mut next);
        if write_and_report(&mut wal, batch, &done, slow_sync).is_break() {
            break;
        }
    }
}

/// The persist tasks queued right behind `first`, up to `max_batch` in all. A job of another
/// kind ends the batch and is kept in `next`, to run after it.
fn gather_batch(
    first: PersistTask,
    jobs: &mut mpsc::Receiver<Job>,
    max_batch: usize,
    next: &mut Option<Job>,
) -> Vec<PersistTask> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match jobs.try_recv() {
            Ok(Job::Persist(task)) => batch.push(task),
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// Writes a batch and reports it to the driver. Breaks when the write failed or the driver is
/// gone.
fn write_and_report(
    wal: &mut Wal,
    batch: Vec<PersistTask>,
    done: &mpsc::Sender<Completion>,
    slow_sync: Duration,
) -> ControlFlow<()> {
    let started = Instant::now();
    let result = write_batch(wal, &batch)
        .map(|()| batch)
        .map_err(|error| error.to_string());
    let took = started.elapsed();
    if took > slow_sync {
        tracing::warn!(took_ms = took.as_millis() as u64, "slow WAL write and sync");
    }
    if let Err(error) = &result {
        tracing::error!(%error, "WAL write failed; the member stops");
    }
    let failed = result.is_err();
    if done.blocking_send(result).is_err() || failed {
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Saves a leader's snapshot (local ones are written by the snapshot thread and adopted) and
/// deletes the segments it makes unnecessary.
fn compact_wal(wal: &mut Wal, snapshot: &raft::Snapshot) -> Result<(), WalError> {
    wal.save_snapshot(snapshot)?;
    wal.release_to(snapshot.metadata.index)?;
    Ok(())
}

/// Writes the tasks in order with as few syncs as possible: entries and hard states of
/// consecutive tasks go into one record (a later task's entries replace the conflicting tail
/// of an earlier one, as the WAL would do), split where a snapshot must be written first or
/// where the record would grow too large. A batch that only raises the commit index is not
/// synced at all (`Wal::record_commit`).
fn write_batch(wal: &mut Wal, batch: &[PersistTask]) -> Result<(), WalError> {
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
    use raft::{ConfState, EntryKind, HardState, LogIndex, MemStorage, NodeId, Storage, Term};
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

    /// Compaction jobs run in order with the persist tasks around them: the snapshot is saved
    /// after the entries it covers, the segments before it are released, and later entries
    /// stay. A reopened WAL starts from the snapshot.
    #[test]
    fn the_writer_runs_compaction_jobs_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = WalOptions {
            segment_size_bytes: 4096,
            preallocate: false,
            ..WalOptions::default()
        };
        let wal = Wal::create(dir.path(), options.clone(), ConfState::default()).expect("create");
        let files = wal.snapshot_writer();
        let (jobs_tx, jobs_rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::channel(16);
        let padded = |index: u64| Entry {
            data: Bytes::from(vec![b'x'; 200]),
            ..entries(1, index..=index).remove(0)
        };
        let snapshot = raft::Snapshot {
            metadata: raft::SnapshotMetadata {
                index: LogIndex(60),
                term: Term(1),
                conf_state: ConfState::default(),
            },
            data: Bytes::from_static(b"state"),
        };
        let jobs = [
            Job::Persist(task(
                1,
                Some(hard_state(1, 60)),
                (1..=60).map(padded).collect(),
            )),
            Job::Compact(snapshot.metadata.clone()),
            Job::Persist(task(2, None, (61..=70).map(padded).collect())),
        ];
        // The snapshot thread writes the file before the driver queues the job.
        files
            .write(&snapshot.metadata, |out| out.write_all(&snapshot.data))
            .expect("snapshot file");
        for job in jobs {
            jobs_tx.try_send(job).expect("queue");
        }
        drop(jobs_tx);
        run_writer(wal, jobs_rx, done_tx, 64, Duration::from_secs(1));
        let mut numbers = Vec::new();
        while let Ok(done) = done_rx.try_recv() {
            numbers.extend(done.expect("written").iter().map(|task| task.number));
        }
        assert_eq!(numbers, [1, 2]);

        let wal = Wal::open(dir.path(), options).expect("reopen");
        assert_eq!(wal.snapshot_metadata(), snapshot.metadata);
        assert_eq!(wal.last_index(), LogIndex(70));
        assert_eq!(wal.term(LogIndex(61)).expect("kept"), Term(1));
        assert_eq!(raft::Storage::first_index(&wal), LogIndex(61));
        let view = MemStorage::copy_of(&wal).expect("view");
        assert_eq!(raft::Storage::snapshot(&view).expect("snapshot"), snapshot);
        // 60 entries of ~250 bytes filled several 4 KiB segments before the snapshot.
        assert!(wal.segments().len() <= 2, "{:?}", wal.segments());
    }
}
