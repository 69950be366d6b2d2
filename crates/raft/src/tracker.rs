//! What a leader knows about each follower's log, and how much it may send it.

use crate::types::{LogIndex, NodeId};

/// How the leader is sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches; it sends one append at a time
    /// and waits for the answer before sending more.
    Probe,
    /// The follower's log matches up to `match_index`; the leader streams appends optimistically
    /// (pipelining), bounded by the in-flight window.
    Replicate,
    /// The follower needs entries that are compacted; a snapshot ending at `pending_index` is on
    /// its way. Nothing else is sent until it is acknowledged, reported failed, or times out.
    Snapshot {
        /// The snapshot's last index.
        pending_index: LogIndex,
    },
}

/// A bounded window of in-flight appends, each remembered by the last index it carried, so that
/// an acknowledgement frees every message up to the index it acknowledges.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: std::collections::VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    /// A window of at most `capacity` messages.
    pub fn new(capacity: usize) -> Inflights {
        Inflights {
            last_indexes: std::collections::VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether no more messages may be sent until some are acknowledged.
    pub fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    /// How many messages are in flight.
    pub fn count(&self) -> usize {
        self.last_indexes.len()
    }

    /// Records a message whose last entry is `last_index`; indices must increase.
    pub fn add(&mut self, last_index: LogIndex) {
        debug_assert!(!self.is_full(), "inflight window overflow");
        debug_assert!(
            self.last_indexes
                .back()
                .is_none_or(|last| *last < last_index)
        );
        self.last_indexes.push_back(last_index);
    }

    /// Frees every message whose last index is at or below `index`.
    pub fn free_up_to(&mut self, index: LogIndex) {
        while self
            .last_indexes
            .front()
            .is_some_and(|first| *first <= index)
        {
            self.last_indexes.pop_front();
        }
    }

    /// Frees the oldest message (used when a heartbeat answer shows the follower is alive while
    /// the window is full, so a lost acknowledgement cannot stall replication forever).
    pub fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one member's log.
///
/// Invariant: `match_index < next_index`.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The member.
    pub id: NodeId,
    /// The highest index known to be replicated on the member.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// Probe or replicate.
    pub state: ProgressState,
    /// In the probe state: an append was sent and no answer has come yet.
    pub probe_sent: bool,
    /// Appends in flight in the replicate state.
    pub inflights: Inflights,
    /// Whether the member was heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Whether the member votes (learners do not).
    pub is_voter: bool,
    /// The commit index last sent to the member, so a commit advance is announced once.
    pub sent_commit: LogIndex,
    /// Ticks spent in the snapshot state, to give up on a snapshot that was lost.
    pub snapshot_elapsed: u32,
    /// The latest heartbeat round the member answered (ReadIndex confirmation and leases).
    pub acked_round: u64,
    /// Heartbeat answers received in the replicate state while the match index stood still
    /// behind the log: a sign the tail of the pipeline was lost.
    pub stalled_heartbeats: u32,
}

impl Progress {
    /// A fresh progress for a new term: nothing known, probing from `next_index`.
    pub fn new(id: NodeId, next_index: LogIndex, max_inflight: usize, is_voter: bool) -> Progress {
        Progress {
            id,
            match_index: LogIndex::ZERO,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            recent_active: false,
            is_voter,
            sent_commit: LogIndex::ZERO,
            acked_round: 0,
            stalled_heartbeats: 0,
            snapshot_elapsed: 0,
        }
    }

    /// Whether the leader should hold off sending appends.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Switches to waiting for a snapshot that ends at `pending_index`.
    pub fn become_snapshot(&mut self, pending_index: LogIndex) {
        self.state = ProgressState::Snapshot { pending_index };
        self.probe_sent = false;
        self.snapshot_elapsed = 0;
        self.inflights.reset();
    }

    /// Switches to probing from just after the match index.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Starts over for a new term: probing from `next_index`, nothing in flight.
    pub fn restart_probe_at(&mut self, next_index: LogIndex) {
        self.state = ProgressState::Probe;
        self.next_index = next_index;
        self.probe_sent = false;
        self.sent_commit = LogIndex::ZERO;
        self.acked_round = 0;
        self.stalled_heartbeats = 0;
        self.inflights.reset();
    }

    /// Switches to pipelined replication from just after the match index.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Records that an append ending at `last_index` (and starting at `next_index`) was sent.
    pub fn sent_entries(&mut self, last_index: LogIndex, entry_count: usize) {
        match self.state {
            ProgressState::Replicate => {
                if entry_count > 0 {
                    self.next_index = last_index.next();
                    self.inflights.add(last_index);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {
                unreachable!("nothing is sent while a snapshot is pending")
            }
        }
    }

    /// Applies an acknowledgement that the member matches up to `index`. Returns whether it told
    /// the leader something new.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
            self.stalled_heartbeats = 0;
        }
        if self.next_index <= index {
            self.next_index = index.next();
        }
        updated
    }

    /// Applies a rejection of the append whose previous index was `rejected_index`, moving
    /// `next_index` back to `hint_next`-ish. Returns false if the rejection is stale (it answers an
    /// append the leader has already moved past).
    pub fn maybe_decrease_to(&mut self, rejected_index: LogIndex, probe_index: LogIndex) -> bool {
        match self.state {
            ProgressState::Replicate => {
                // A rejection of an append that started at or before the match is stale, except
                // the one that started right after it: that append was not taken, so neither
                // were the ones pipelined behind it (they arrived out of order or were lost).
                if rejected_index < self.match_index {
                    return false;
                }
                // The pipeline was built on a wrong guess: restart probing after the match.
                self.become_probe();
                true
            }
            // The snapshot's acknowledgement will tell where the follower stands.
            ProgressState::Snapshot { .. } => false,
            ProgressState::Probe => {
                if self.next_index.prev() != rejected_index {
                    return false;
                }
                let next = rejected_index.min(probe_index.next());
                self.next_index = next.max(self.match_index.next());
                self.probe_sent = false;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_free_up_to_acknowledged_index() {
        let mut window = Inflights::new(3);
        window.add(LogIndex(2));
        window.add(LogIndex(5));
        window.add(LogIndex(9));
        assert!(window.is_full());
        window.free_up_to(LogIndex(5));
        assert_eq!(window.count(), 1);
        window.free_first();
        assert_eq!(window.count(), 0);
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut progress = Progress::new(NodeId(2), LogIndex(10), 4, true);
        // Probe: only a rejection of next-1 counts.
        assert!(!progress.maybe_decrease_to(LogIndex(5), LogIndex(3)));
        assert!(progress.maybe_decrease_to(LogIndex(9), LogIndex(3)));
        assert_eq!(progress.next_index, LogIndex(4));
        // Replicate: rejections at or below match are stale.
        progress.maybe_update(LogIndex(6));
        progress.become_replicate();
        assert!(!progress.maybe_decrease_to(LogIndex(5), LogIndex(0)));
        assert!(progress.maybe_decrease_to(LogIndex(6), LogIndex(0)));
        assert_eq!(progress.state, ProgressState::Probe);
        assert_eq!(progress.next_index, LogIndex(7));
        progress.become_replicate();
        assert!(progress.maybe_decrease_to(LogIndex(7), LogIndex(0)));
    }
}
