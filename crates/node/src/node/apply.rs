//! Committed entries and leaders' snapshots reach the state machine, and the requests waiting
//! for them get their answers.

use super::Node;
use crate::{Action, RequestError, StateMachine};
use raft::{ConfState, Entry, EntryKind};

impl<M: StateMachine> Node<M> {
    /// Replaces the state machine by a leader's snapshot. Requests waiting at indices it covers
    /// cannot know whether their entry made it in.
    pub(super) fn install_snapshot(
        &mut self,
        snapshot: &raft::Snapshot,
        out: &mut Vec<Action<M::Response>>,
    ) {
        if let Err(reason) = self.state_machine.restore(&snapshot.data) {
            // The leader's snapshot is checksummed end to end; if it still does not decode, the
            // member cannot continue without serving wrong data.
            panic!(
                "snapshot at {} from the leader cannot be restored: {reason}",
                snapshot.metadata.index
            );
        }
        let index = snapshot.metadata.index;
        self.applied = self.applied.max(index);
        out.push(Action::SnapshotInstalled { index });
        // Forwarded commands inside the snapshot will never be applied here one by one.
        self.forwarded.give_up_all(out);
        while let Some((&at, &(_, request))) = self.waiting.first_key_value() {
            if at > index {
                break;
            }
            self.waiting.pop_first();
            out.push(Action::Reply {
                request,
                result: Err(RequestError::OutcomeUnknown),
            });
        }
    }

    /// Applies committed entries in order.
    pub(super) fn apply(&mut self, entries: Vec<Entry>, out: &mut Vec<Action<M::Response>>) {
        for entry in entries {
            self.apply_entry(entry, out);
        }
    }

    /// Applies one entry (a command, a leader's empty entry or a membership change) and
    /// answers the requests it settles.
    fn apply_entry(&mut self, entry: Entry, out: &mut Vec<Action<M::Response>>) {
        assert_eq!(
            entry.index,
            self.applied.next(),
            "entries must be applied in order without gaps"
        );
        self.applied = entry.index;
        let mut conf_reply = None;
        let response = match entry.kind {
            EntryKind::Normal => Some(self.state_machine.apply(
                entry.index,
                entry.term,
                &entry.data,
            )),
            EntryKind::Empty => None,
            EntryKind::ConfChange => {
                conf_reply = Some(self.apply_conf_change(&entry, out));
                None
            }
        };
        out.push(Action::Applied {
            index: entry.index,
            term: entry.term,
        });
        if let Some(response) = &response {
            self.forwarded.applied(&entry.data, response, out);
        }
        self.settle_waiters(&entry, response.as_ref(), conf_reply.as_ref(), out);
    }

    /// Answers the waiters at or below the applied entry's index: either this is their entry,
    /// or their entry was replaced and can never be applied.
    fn settle_waiters(
        &mut self,
        entry: &Entry,
        response: Option<&M::Response>,
        conf_reply: Option<&Result<ConfState, RequestError>>,
        out: &mut Vec<Action<M::Response>>,
    ) {
        while let Some((&index, &(term, request))) = self.waiting.first_key_value() {
            if index > entry.index {
                break;
            }
            self.waiting.pop_first();
            let ours = index == entry.index && term == entry.term;
            match (response, conf_reply, ours) {
                (Some(response), _, true) => out.push(Action::Reply {
                    request,
                    result: Ok(response.clone()),
                }),
                (_, Some(result), true) => out.push(Action::ConfChangeReply {
                    request,
                    result: result.clone(),
                }),
                _ => out.push(Action::Reply {
                    request,
                    result: Err(RequestError::Dropped),
                }),
            }
        }
    }

    /// Applies a committed membership change: the core switches configuration, and the storage
    /// records it so the next snapshot carries the configuration in force at its index.
    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        out: &mut Vec<Action<M::Response>>,
    ) -> Result<ConfState, RequestError> {
        let change = raft::ConfChange::decode(&entry.data)
            .map_err(raft::ProposeError::ConfChangeRejected)?;
        match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                self.raw.storage_mut().set_conf_state(conf_state.clone());
                out.push(Action::ConfChanged {
                    index: entry.index,
                    conf_state: conf_state.clone(),
                });
                Ok(conf_state)
            }
            // Every member rejects the same entry the same way: the configuration is unchanged.
            Err(error) => Err(raft::ProposeError::ConfChangeRejected(error).into()),
        }
    }
}
