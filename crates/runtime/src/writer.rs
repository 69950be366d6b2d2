//! The writer thread, the one owner of the [`Wal`]: it makes the driver's persist tasks durable
//! in order, merging the ones already queued into one record and one sync, and reports each
//! batch back; it also records local snapshots and commit indexes in their place in that order.
//! Which jobs make a batch and how a batch is written are the executor's rules
//! (`exec::writer`), which the simulator's disk runs too; this file is the thread around them.

use crate::protocol::{Completion, Job};
use exec::writer::{gather_batch, run_other_job, write_batch};
use node::PersistTask;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wal::Wal;

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
            other => {
                if let Err(error) = run_other_job(&mut wal, &other) {
                    tracing::error!(%error, ?other, "WAL write failed; the member stops");
                    let _ = done.blocking_send(Err(error.to_string()));
                    break;
                }
                continue;
            }
        };
        let batch = gather_batch(first, max_batch, || jobs.try_recv().ok(), &mut next);
        if write_and_report(&mut wal, batch, &done, slow_sync).is_break() {
            break;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft::Entry;
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
