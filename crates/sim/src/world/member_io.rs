//! The simulator's I/O behind the shared executor (`exec`): where a node's writer jobs,
//! messages and replies go in virtual time. A serving member's driver hands the same calls to
//! its writer thread, its TCP transport and its clients' channels.
//!
//! The disk is the member's writer: one batch at a time. A batch is what
//! `exec::writer::gather_batch` takes from the queue (the persist tasks queued behind one
//! another, as the writer thread takes them), written with `exec::writer::write_batch` (one
//! record and one sync for all of them) once its latency has passed. A commit index recorded
//! alone (`WriterJob::Commit`) takes no sync and no time; it runs when the writer reaches it.

use super::{Event, Sim, split_request_id};
use exec::writer::{gather_batch, run_other_job};
use exec::{MemberIo, Observation, WriterJob};
use machine::MachineResponse;
use node::{RequestError, RequestId};
use raft::{ConfState, Message, Role};

/// The most persist tasks one batch takes (the runtime's writer takes up to its queue's length).
const MAX_BATCH: usize = 64;

/// Node `index`'s I/O for one call of the executor.
pub(super) struct SimIo<'a> {
    pub(super) sim: &'a mut Sim,
    pub(super) index: usize,
}

impl MemberIo<MachineResponse> for SimIo<'_> {
    fn queue_write(&mut self, job: WriterJob) {
        if let WriterJob::Persist(task) = &job {
            self.sim.stats.persist_tasks += 1;
            let bytes: usize = task.entries.iter().map(|entry| entry.data.len()).sum();
            self.sim.nodes[self.index].snapshots.appended(bytes as u64);
        }
        self.sim.nodes[self.index].writer_queue.push_back(job);
        self.sim.start_writing(self.index);
    }

    fn send(&mut self, message: Message) {
        self.sim.send(self.index, message);
    }

    fn reply(&mut self, request: RequestId, result: Result<MachineResponse, RequestError>) {
        let (client, attempt) = split_request_id(request);
        if client < self.sim.clients.len() {
            let delay = self.sim.rng.range(self.sim.delay_us.0, self.sim.delay_us.1);
            self.sim.schedule(
                delay,
                Event::ClientReply {
                    client,
                    attempt,
                    result,
                },
            );
        }
    }

    fn conf_change_reply(&mut self, _: RequestId, _: Result<ConfState, RequestError>) {}

    fn observe(&mut self, observation: Observation) {
        let (sim, index) = (&mut *self.sim, self.index);
        match observation {
            Observation::RoleChanged { term, soft_state } => {
                sim.trace(format_args!(
                    "n{} is {} in {term} (leader {})",
                    index + 1,
                    soft_state.role,
                    soft_state.leader
                ));
                if soft_state.role == Role::Candidate {
                    sim.stats.elections += 1;
                }
            }
            Observation::ConfChanged {
                index: at,
                conf_state,
            } => {
                sim.conf_changes_seen.insert(at);
                sim.trace(format_args!(
                    "n{} applies a membership change at {at}: {conf_state:?}",
                    index + 1
                ));
            }
            Observation::SnapshotInstalled { index: at } => {
                sim.stats.snapshots_installed += 1;
                sim.trace(format_args!("n{} installs a snapshot at {at}", index + 1));
            }
            Observation::Applied { index: at, term } => {
                let id = sim.nodes[index].id;
                sim.checker.observe_applied(id, at, term);
            }
        }
    }
}

impl Sim {
    /// If node `index`'s writer is idle, runs the jobs at the front of its queue: commit
    /// indexes at once, then the next batch of persist tasks, which completes after the
    /// disk's latency (`Event::PersistDone`).
    pub(super) fn start_writing(&mut self, index: usize) {
        if !self.nodes[index].writing.is_empty() {
            return;
        }
        while let Some(job) = self.nodes[index].writer_queue.pop_front() {
            let WriterJob::Persist(first) = job else {
                if let Err(error) = self.run_other_job(index, &job) {
                    self.fail_write(index, error);
                    return;
                }
                continue;
            };
            let sim_node = &mut self.nodes[index];
            let queue = &mut sim_node.writer_queue;
            let mut held = None;
            let batch = gather_batch(first, MAX_BATCH, || queue.pop_front(), &mut held);
            if let Some(job) = held {
                queue.push_front(job);
            }
            sim_node.writing = batch;
            let latency = self
                .rng
                .range(self.disk_latency_us.0, self.disk_latency_us.1);
            let sim_node = &mut self.nodes[index];
            let done_at = self.now.max(sim_node.disk_busy_until) + latency;
            sim_node.disk_busy_until = done_at;
            let epoch = sim_node.epoch;
            self.schedule(
                done_at - self.now,
                Event::PersistDone { node: index, epoch },
            );
            if self.options.ack_before_sync {
                self.report_persisted(index, self.nodes[index].writing.clone());
            }
            return;
        }
    }

    /// Node `index`'s batch reached its disk: it is written through the WAL (one record, one
    /// sync), the node hears of every task in it, and the writer takes the next jobs.
    pub(super) fn persist_done(&mut self, index: usize) {
        let batch = std::mem::take(&mut self.nodes[index].writing);
        assert!(!batch.is_empty(), "a completion for every batch");
        let id = self.nodes[index].id;
        let mut before = self.nodes[index].disk.log().hard_state();
        for hard_state in batch.iter().filter_map(|task| task.hard_state) {
            self.checker
                .observe_hard_state_write(id, before, hard_state);
            before = hard_state;
        }
        if let Err(error) = self.nodes[index].disk.write_batch(&batch) {
            self.fail_write(index, error);
            return;
        }
        if !self.options.ack_before_sync {
            self.report_persisted(index, batch);
        }
        self.start_writing(index);
    }

    /// Tells node `index` that the tasks of `batch` are durable, and carries out what follows.
    fn report_persisted(&mut self, index: usize, batch: Vec<node::PersistTask>) {
        let mut actions = std::mem::take(&mut self.actions);
        let node = self.nodes[index]
            .node
            .as_mut()
            .expect("an up node for a current-epoch completion");
        for task in batch {
            node.persisted(task, &mut actions);
        }
        self.actions = actions;
        self.drain(index);
    }

    /// Runs a writer job that is not a persist task (a commit index without a sync).
    fn run_other_job(&mut self, index: usize, job: &WriterJob) -> Result<(), String> {
        if let WriterJob::Commit(hard_state) = job {
            let id = self.nodes[index].id;
            let before = self.nodes[index].disk.log().hard_state();
            self.checker
                .observe_hard_state_write(id, before, *hard_state);
        }
        self.nodes[index]
            .disk
            .with_wal(|wal| run_other_job(wal, job))
    }

    /// A WAL write failed: a violation (the simulated disk only fails when told to), and the
    /// node stops as a member would.
    fn fail_write(&mut self, index: usize, error: String) {
        let id = self.nodes[index].id;
        self.checker
            .fail("wal-write", format!("{id}: WAL write failed: {error}"));
        self.crash(id);
    }
}
