//! Carrying out a node's actions over an embedder's I/O.

use crate::writer::WriterJob;
use node::{Action, Node, PersistTask, RequestError, RequestId, StateMachine};
use raft::{ConfState, HardState, LogIndex, Message, SoftState, Term};

/// What an embedder provides: the I/O behind the actions. Every method is a hand-off that
/// must not block (queue it, schedule it); none is called with anything the embedder must
/// decide about.
pub trait MemberIo<R> {
    /// Queues a job for the writer, behind every job queued before it. Jobs run in order.
    fn queue_write(&mut self, job: WriterJob);
    /// Sends a message to a peer, best effort (Raft tolerates loss).
    fn send(&mut self, message: Message);
    /// Answers a client's request.
    fn reply(&mut self, request: RequestId, result: Result<R, RequestError>);
    /// Answers a membership change.
    fn conf_change_reply(&mut self, request: RequestId, result: Result<ConfState, RequestError>);
    /// Something happened that the embedder may log, publish or check, and need not act on.
    fn observe(&mut self, observation: Observation);
}

/// Events an embedder observes (logs, status, the simulator's checkers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The role or the known leader changed.
    RoleChanged {
        /// The term of the change.
        term: Term,
        /// The new role and leader.
        soft_state: SoftState,
    },
    /// A membership change was applied: this configuration is in force from `index` on.
    ConfChanged {
        /// The index of the change.
        index: LogIndex,
        /// The configuration now in force.
        conf_state: ConfState,
    },
    /// The state machine was replaced by a leader's snapshot ending at `index`.
    SnapshotInstalled {
        /// The snapshot's last index.
        index: LogIndex,
    },
    /// An entry was applied.
    Applied {
        /// Its index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
}

/// Carries out a node's actions. One per node incarnation; it holds only the commit index
/// waiting to be recorded.
#[derive(Debug, Default)]
pub struct Executor {
    /// A commit index the node asked to record (`Action::RecordCommit`): it goes with the next
    /// persist task, or to the writer on its own at the next tick.
    pending_commit: Option<HardState>,
}

impl Executor {
    /// A new executor with nothing pending.
    pub fn new() -> Executor {
        Executor::default()
    }

    /// Carries out `actions` (those the node emitted for inputs since the last call), then
    /// polls the node and carries out what it emits until it has nothing more to do.
    pub fn drain<M: StateMachine>(
        &mut self,
        node: &mut Node<M>,
        actions: &mut Vec<Action<M::Response>>,
        io: &mut impl MemberIo<M::Response>,
    ) {
        loop {
            node.poll(actions);
            if actions.is_empty() {
                return;
            }
            for action in actions.drain(..) {
                self.carry_out(action, io);
            }
        }
    }

    /// Carries out one action.
    pub fn carry_out<R>(&mut self, action: Action<R>, io: &mut impl MemberIo<R>) {
        match action {
            Action::Persist(task) => io.queue_write(WriterJob::Persist(self.with_commit(task))),
            Action::RecordCommit(hard_state) => self.pending_commit = Some(hard_state),
            Action::Send(message) => io.send(message),
            Action::Reply { request, result } => io.reply(request, result),
            Action::ConfChangeReply { request, result } => io.conf_change_reply(request, result),
            Action::RoleChanged { term, soft_state } => {
                io.observe(Observation::RoleChanged { term, soft_state });
            }
            Action::ConfChanged { index, conf_state } => {
                io.observe(Observation::ConfChanged { index, conf_state });
            }
            Action::SnapshotInstalled { index } => {
                io.observe(Observation::SnapshotInstalled { index });
            }
            Action::Applied { index, term } => io.observe(Observation::Applied { index, term }),
        }
    }

    /// A tick passed: a commit index no write has taken along since it was handed out is
    /// recorded alone, behind the writes queued before it. Raft does not need it durable, so
    /// it waits this long for a write to ride with instead of costing a write of its own.
    pub fn tick<R>(&mut self, io: &mut impl MemberIo<R>) {
        if let Some(hard_state) = self.pending_commit.take() {
            io.queue_write(WriterJob::Commit(hard_state));
        }
    }

    /// The commit index waiting to be recorded, if any (for tests and checks).
    pub fn pending_commit(&self) -> Option<HardState> {
        self.pending_commit
    }

    /// Forgets the pending commit index (a crash loses it, as it would lose a queued write).
    pub fn forget(&mut self) {
        self.pending_commit = None;
    }

    /// `task` with the commit index waiting to be recorded, unless the task carries a newer
    /// hard state of its own, or a snapshot, which raises the commit index past it.
    fn with_commit(&mut self, mut task: PersistTask) -> PersistTask {
        if let Some(hard_state) = self.pending_commit.take() {
            if task.hard_state.is_none() && task.snapshot.is_none() {
                task.hard_state = Some(hard_state);
            } else {
                debug_assert!(
                    task.snapshot.is_some()
                        || task
                            .hard_state
                            .is_some_and(|own| own.commit >= hard_state.commit),
                    "a later hard state never lowers the commit index"
                );
            }
        }
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::{NodeId, Role};

    #[derive(Default)]
    struct Recorded {
        log: Vec<String>,
    }

    impl MemberIo<u32> for Recorded {
        fn queue_write(&mut self, job: WriterJob) {
            self.log.push(match job {
                WriterJob::Persist(task) => format!(
                    "persist #{} hard_state={:?}",
                    task.number,
                    task.hard_state.map(|hs| hs.commit.get())
                ),
                WriterJob::Commit(hard_state) => format!("commit {}", hard_state.commit.get()),
                WriterJob::Compact(metadata) => format!("compact {}", metadata.index.get()),
            });
        }
        fn send(&mut self, message: Message) {
            self.log.push(format!("send to {}", message.to));
        }
        fn reply(&mut self, request: RequestId, result: Result<u32, RequestError>) {
            self.log.push(format!("reply {request} {result:?}"));
        }
        fn conf_change_reply(&mut self, request: RequestId, _: Result<ConfState, RequestError>) {
            self.log.push(format!("conf reply {request}"));
        }
        fn observe(&mut self, observation: Observation) {
            self.log.push(format!("observe {observation:?}"));
        }
    }

    fn commit(index: u64) -> HardState {
        HardState {
            term: Term(2),
            vote: NodeId(1),
            commit: LogIndex(index),
        }
    }

    fn task(number: u64, hard_state: Option<HardState>) -> PersistTask {
        PersistTask {
            number,
            snapshot: None,
            hard_state,
            entries: Vec::new(),
        }
    }

    /// A commit index rides with the next persist task that has no hard state of its own;
    /// otherwise it waits for the tick, and goes once.
    #[test]
    fn a_commit_index_rides_with_the_next_write_or_goes_at_the_tick() {
        let mut executor = Executor::new();
        let mut io = Recorded::default();
        executor.carry_out::<u32>(Action::RecordCommit(commit(5)), &mut io);
        executor.carry_out::<u32>(Action::Persist(task(1, None)), &mut io);
        executor.tick::<u32>(&mut io);
        executor.carry_out::<u32>(Action::RecordCommit(commit(6)), &mut io);
        executor.carry_out::<u32>(Action::RecordCommit(commit(7)), &mut io);
        executor.carry_out::<u32>(Action::Persist(task(2, Some(commit(8)))), &mut io);
        executor.tick::<u32>(&mut io);
        executor.carry_out::<u32>(Action::RecordCommit(commit(9)), &mut io);
        executor.tick::<u32>(&mut io);
        executor.tick::<u32>(&mut io);
        assert_eq!(
            io.log,
            [
                "persist #1 hard_state=Some(5)",
                "persist #2 hard_state=Some(8)",
                "commit 9",
            ]
        );
    }

    #[test]
    fn every_other_action_goes_to_its_hand_off() {
        let mut executor = Executor::new();
        let mut io = Recorded::default();
        let soft_state = SoftState {
            role: Role::Leader,
            leader: NodeId(1),
        };
        for action in [
            Action::Reply {
                request: 4,
                result: Ok(7),
            },
            Action::ConfChangeReply {
                request: 5,
                result: Err(RequestError::Refused(raft::ProposeError::ConfChangePending)),
            },
            Action::RoleChanged {
                term: Term(2),
                soft_state,
            },
            Action::Applied {
                index: LogIndex(3),
                term: Term(2),
            },
        ] {
            executor.carry_out(action, &mut io);
        }
        assert_eq!(
            io.log,
            [
                "reply 4 Ok(7)".to_string(),
                "conf reply 5".to_string(),
                format!(
                    "observe {:?}",
                    Observation::RoleChanged {
                        term: Term(2),
                        soft_state
                    }
                ),
                "observe Applied { index: LogIndex(3), term: Term(2) }".to_string(),
            ]
        );
    }
}
