//! The commands a follower forwarded to the leader ([`Node::submit_anywhere`]) and the clients
//! waiting for them.
//!
//! A forwarded command has no index on this member until it turns up in the log, so the table
//! recognises it by its bytes when it is applied here; the state machine is deterministic, so
//! the answer this member computes is the leader's. A command not seen applied before its
//! deadline, or when the leader changes or a snapshot replaces the state, is answered
//! [`RequestError::OutcomeUnknown`]: only a retry in the same session can tell.

#[cfg(doc)]
use crate::Node;
use crate::{Action, RequestError, RequestId};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// The forwarded commands and their deadlines, on a clock of ticks.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// Commands this follower forwarded to the leader, by their bytes: a forwarded command has
    /// no index here until it turns up in the log, so it is recognised by its content (the
    /// embedder makes commands unique, e.g. with a session sequence). Identical commands share
    /// one slot and get the same answer.
    slots: HashMap<Bytes, ForwardedWaiters>,
    /// When each forwarded slot gives up: (deadline tick, command), oldest first.
    deadlines: VecDeque<(u64, Bytes)>,
    /// Ticks since start: the clock of forwarded commands' deadlines.
    ticks: u64,
    /// How long a forwarded command is waited for before its outcome is reported unknown.
    timeout_ticks: u64,
}

/// The requests waiting for one forwarded command.
#[derive(Debug, Default)]
struct ForwardedWaiters {
    requests: Vec<RequestId>,
    /// The deadline of the latest submission; earlier deadline records are stale.
    deadline: u64,
}

impl Forwarded {
    /// An empty table whose commands are waited for `timeout_ticks` ticks.
    pub(crate) fn new(timeout_ticks: u64) -> Forwarded {
        Forwarded {
            slots: HashMap::new(),
            deadlines: VecDeque::new(),
            ticks: 0,
            timeout_ticks,
        }
    }

    /// One tick of the deadlines' clock.
    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
    }

    /// `request` waits for `data`, which was just handed to the leader. A new submission of
    /// the same command moves the slot's deadline.
    pub(crate) fn insert(&mut self, request: RequestId, data: Bytes) {
        let deadline = self.ticks + self.timeout_ticks;
        let slot = self.slots.entry(data.clone()).or_default();
        slot.requests.push(request);
        slot.deadline = deadline;
        self.deadlines.push_back((deadline, data));
    }

    /// The command `data` was applied with `response`: its waiters get that answer.
    pub(crate) fn applied<R: Clone>(
        &mut self,
        data: &Bytes,
        response: &R,
        out: &mut Vec<Action<R>>,
    ) {
        if self.slots.is_empty() {
            return;
        }
        if let Some(slot) = self.slots.remove(data) {
            out.extend(slot.requests.into_iter().map(|request| Action::Reply {
                request,
                result: Ok(response.clone()),
            }));
        }
    }

    /// Answers the forwarded commands whose deadline has come.
    pub(crate) fn give_up_expired<R>(&mut self, out: &mut Vec<Action<R>>) {
        while let Some((deadline, _)) = self.deadlines.front() {
            if *deadline > self.ticks {
                break;
            }
            let (deadline, data) = self.deadlines.pop_front().expect("checked");
            // Only the latest submission's deadline counts.
            if self
                .slots
                .get(&data)
                .is_some_and(|slot| slot.deadline == deadline)
            {
                let slot = self.slots.remove(&data).expect("checked");
                out.extend(slot.requests.into_iter().map(unknown_outcome));
            }
        }
    }

    /// Answers every forwarded command: the leader they went to is gone, or a snapshot
    /// replaced the state they would have been applied to.
    ///
    /// In the order the commands were forwarded, not the map's: a `HashMap`'s order differs
    /// between runs, and the simulator must replay a seed event for event.
    pub(crate) fn give_up_all<R>(&mut self, out: &mut Vec<Action<R>>) {
        for (_, data) in std::mem::take(&mut self.deadlines) {
            if let Some(slot) = self.slots.remove(&data) {
                out.extend(slot.requests.into_iter().map(unknown_outcome));
            }
        }
        debug_assert!(self.slots.is_empty(), "every slot has a deadline record");
        let mut rest: Vec<_> = self.slots.drain().collect();
        rest.sort_by(|(a, _), (b, _)| a.cmp(b));
        for (_, slot) in rest {
            out.extend(slot.requests.into_iter().map(unknown_outcome));
        }
    }
}

fn unknown_outcome<R>(request: RequestId) -> Action<R> {
    Action::Reply {
        request,
        result: Err(RequestError::OutcomeUnknown),
    }
}
