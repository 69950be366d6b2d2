//! Linearizable reads ([`Node::read`]) between their arrival and their answer: first waiting
//! for the leader to confirm a read index, then for the state machine to reach it.

#[cfg(doc)]
use crate::Node;
use crate::{Action, RequestId, StateMachine};
use raft::{LogIndex, NodeId, ProposeError, ReadState};
use std::collections::BTreeMap;

/// The reads waiting on this member, by stage.
#[derive(Debug)]
pub(crate) struct PendingReads<Q> {
    /// Reads waiting for their read index: request -> query.
    unconfirmed: BTreeMap<RequestId, Q>,
    /// Confirmed reads waiting for the state machine to reach their index: (index, request).
    confirmed: BTreeMap<(LogIndex, RequestId), Q>,
}

impl<Q> PendingReads<Q> {
    /// No reads.
    pub(crate) fn new() -> PendingReads<Q> {
        PendingReads {
            unconfirmed: BTreeMap::new(),
            confirmed: BTreeMap::new(),
        }
    }

    /// How many reads wait, at either stage.
    pub(crate) fn len(&self) -> usize {
        self.unconfirmed.len() + self.confirmed.len()
    }

    /// `request` asked the core for a read index and waits for it.
    pub(crate) fn wait_for_index(&mut self, request: RequestId, query: Q) {
        self.unconfirmed.insert(request, query);
    }

    /// Fails the reads still waiting for a read index: the leader they asked changed and may
    /// never answer. The read was not served, so this is a definite failure the client retries.
    pub(crate) fn fail_unconfirmed<R>(&mut self, leader_hint: NodeId, out: &mut Vec<Action<R>>) {
        let stranded = std::mem::take(&mut self.unconfirmed);
        for request in stranded.into_keys() {
            out.push(Action::Reply {
                request,
                result: Err(ProposeError::NotLeader { leader_hint }.into()),
            });
        }
    }

    /// Takes the core's answers: a confirmed read waits for its index to be applied, a refused
    /// one is answered `NotLeader` with `leader` as the hint.
    pub(crate) fn confirm<R>(
        &mut self,
        read_states: &[ReadState],
        leader: NodeId,
        out: &mut Vec<Action<R>>,
    ) {
        for read in read_states {
            let Some(query) = self.unconfirmed.remove(&read.context) else {
                continue;
            };
            match read.index {
                Some(index) => {
                    self.confirmed.insert((index, read.context), query);
                }
                None => out.push(Action::Reply {
                    request: read.context,
                    result: Err(ProposeError::NotLeader {
                        leader_hint: leader,
                    }
                    .into()),
                }),
            }
        }
    }

    /// Answers the confirmed reads whose index the state machine has reached.
    pub(crate) fn serve<M>(
        &mut self,
        applied: LogIndex,
        machine: &M,
        out: &mut Vec<Action<M::Response>>,
    ) where
        M: StateMachine<Query = Q>,
    {
        while let Some(entry) = self.confirmed.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let ((_, request), query) = entry.remove_entry();
            out.push(Action::Reply {
                request,
                result: Ok(machine.query(&query)),
            });
        }
    }
}
