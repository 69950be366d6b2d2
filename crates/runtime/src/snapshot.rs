//! Local snapshots for log compaction: when one is due, the driver freezes the state machine
//! and a low-priority snapshot thread streams it into a snapshot file; once the file is durable
//! the node drops the entries it covers and the writer records it (see
//! [`crate::MemberConfig::snapshot_every_entries`] and
//! [`crate::MemberConfig::snapshot_log_percent`] for when one is due).

use crate::config::MemberConfig;
use crate::error::MemberFailure;
use crate::protocol::Job;
use exec::SnapshotPolicy;
use node::{Node, StateMachine};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the snapshot thread reports: the snapshot whose file is durable and the bytes of state
/// it holds, or why it is not.
type SnapshotWritten = Result<(raft::SnapshotMetadata, u64), String>;

/// The snapshot thread's nice value: well below the request path, never starved (a
/// snapshot still finishes while the member is saturated, so the log and the frozen copy do
/// not grow without end).
const SNAPSHOT_THREAD_NICE: i32 = 10;

/// The driver's side of local snapshots: when the next one is due, and the one being written.
pub(crate) struct Snapshots {
    /// When one is due (the rule the simulator runs too).
    policy: SnapshotPolicy,
    /// Writes snapshot files from the snapshot thread (and reads them back for followers).
    files: wal::SnapshotWriter,
    /// The thread writing a snapshot, while one is being written (one at a time).
    thread: Option<std::thread::JoinHandle<()>>,
    done_tx: mpsc::UnboundedSender<SnapshotWritten>,
    done: mpsc::UnboundedReceiver<SnapshotWritten>,
}

impl Snapshots {
    /// No snapshot written yet by this run; `files` writes them.
    pub(crate) fn new(config: &MemberConfig, files: wal::SnapshotWriter) -> Snapshots {
        let (done_tx, done) = mpsc::unbounded_channel();
        Snapshots {
            policy: SnapshotPolicy::new(
                config.snapshot_every_entries,
                u64::from(config.snapshot_log_percent),
            ),
            files,
            thread: None,
            done_tx,
            done,
        }
    }

    /// Entries of `bytes` bytes went to the writer: they count toward the next snapshot.
    pub(crate) fn appended(&mut self, bytes: u64) {
        self.policy.appended(bytes);
    }

    /// The snapshot thread's report (pending while no snapshot is being written).
    pub(crate) async fn written(&mut self) -> Option<SnapshotWritten> {
        self.done.recv().await
    }

    /// Waits for a snapshot still being written, so that nothing writes into the data
    /// directory once the member is gone.
    pub(crate) async fn wait_for_thread(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Starts a snapshot once enough entries were applied past the log's first index and no
    /// other snapshot is being written: the state machine is frozen here, and a snapshot
    /// thread writes it to its file (see [`Snapshots::finish`]).
    pub(crate) fn maybe_start<M: StateMachine>(&mut self, node: &mut Node<M>) {
        if self.thread.is_some() || !self.policy.due(node) {
            return;
        }
        let frozen_at = Instant::now();
        let cpu_before = thread_cpu_time();
        let Some(job) = node.begin_snapshot() else {
            return;
        };
        self.policy.started();
        // The freeze stalls this driver, so its cost is worth seeing next to the write's: the
        // time it took, and the CPU it used (less when the machine is busy and the thread
        // waited for a core).
        tracing::debug!(
            index = job.metadata.index.get(),
            took_us = frozen_at.elapsed().as_micros() as u64,
            cpu_us = thread_cpu_time().saturating_sub(cpu_before).as_micros() as u64,
            "froze the state machine for a snapshot"
        );
        let files = self.files.clone();
        let done = self.done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("raftkv-snapshot".into())
            .spawn(move || write_snapshot(job, &files, &done));
        match spawned {
            Ok(thread) => self.thread = Some(thread),
            Err(error) => tracing::warn!(%error, "could not start a snapshot thread; will retry"),
        }
    }

    /// The snapshot thread is done. A durable snapshot lets the node drop the entries it
    /// covers and the writer record it (a job queued on `backlog`); a failed one stops the
    /// member, as a failed WAL write does (the disk is full or failing).
    pub(crate) fn finish<M: StateMachine>(
        &mut self,
        written: SnapshotWritten,
        node: &mut Node<M>,
        backlog: &mut VecDeque<Job>,
    ) -> Result<(), MemberFailure> {
        if let Some(thread) = self.thread.take() {
            // It has sent its report, its last act: this returns at once.
            let _ = thread.join();
        }
        match written {
            Ok((metadata, bytes)) => {
                tracing::debug!(index = metadata.index.get(), "compacted the log");
                backlog.push_back(self.policy.finished(metadata, bytes, node));
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "writing a snapshot failed; the member stops");
                Err(MemberFailure(format!("writing a snapshot failed: {error}")))
            }
        }
    }
}

/// The snapshot thread: streams the frozen state into its file and reports the outcome.
fn write_snapshot(
    job: node::SnapshotJob,
    files: &wal::SnapshotWriter,
    done: &mpsc::UnboundedSender<SnapshotWritten>,
) {
    yield_to_the_request_path();
    let started = Instant::now();
    let node::SnapshotJob { metadata, state } = job;
    let written = files
        .write(&metadata, |out| state.write_to(out))
        .map(|bytes| (metadata, bytes))
        .map_err(|error| error.to_string());
    // Free the frozen state before reporting, so the next snapshot never finds
    // two of them in memory.
    drop(state);
    if let Ok((metadata, bytes)) = &written {
        tracing::debug!(
            index = metadata.index.get(),
            bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "wrote a snapshot"
        );
    }
    let _ = done.send(written);
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// Lowers the calling thread's scheduling priority (nice 10), so that under full load a
/// snapshot being written takes the CPU the request path leaves over instead of competing with
/// it (as databases run compactions at low priority). Best effort: where the call is refused,
/// the thread runs at normal priority, which is only slower for requests.
fn yield_to_the_request_path() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), SNAPSHOT_THREAD_NICE) {
        tracing::debug!(%error, "could not lower the snapshot thread's priority");
    }
}
