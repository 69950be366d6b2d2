//! The client session table: each session's last request and outcome, evicted least recently
//! used first.
//!
//! It is laid out for the two things the server does with it all the time: one lookup, insert
//! and eviction per forwarded write (every forwarded write opens a session, so a loaded table
//! is always full), and a clone per snapshot on the thread that applies entries. A hash table
//! of records and a queue of use stamps make both cheap: the writes are O(1), and the clone
//! copies two flat arrays instead of walking two trees of 65 536 nodes each (4 ms of the 8 ms a
//! freeze took at the default bound).

use super::store::SessionRecord;
use std::collections::{HashMap, VecDeque};

/// The sessions by client id, and their order of use.
///
/// `recency` holds `(touched, client_id)` in increasing `touched` order: a session used again
/// is appended anew and its older entry left behind, stale (its stamp no longer matches the
/// record's `touched`). Stale entries are skipped when read and swept out once they are as many
/// as the live ones, so the queue stays within about twice the table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    records: HashMap<u64, SessionRecord>,
    recency: VecDeque<(u64, u64)>,
}

/// Entries the queue may hold beyond twice the live sessions before a sweep, so that a tiny
/// table is not swept on every use.
const SWEEP_SLACK: usize = 64;

impl Sessions {
    /// How many sessions are kept.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The session of `client_id`, if kept.
    pub(crate) fn get(&self, client_id: u64) -> Option<&SessionRecord> {
        self.records.get(&client_id)
    }

    /// Makes a kept session the most recently used, at `stamp`, which must exceed every stamp
    /// given before. Returns whether the session was kept.
    pub(crate) fn touch(&mut self, client_id: u64, stamp: u64) -> bool {
        let Some(record) = self.records.get_mut(&client_id) else {
            return false;
        };
        record.touched = stamp;
        self.recency.push_back((stamp, client_id));
        self.sweep_if_sparse();
        true
    }

    /// Keeps `record` as the session of `client_id`, most recently used at `record.touched`,
    /// which must exceed every stamp given before. Returns the record it replaces.
    pub(crate) fn insert(
        &mut self,
        client_id: u64,
        record: SessionRecord,
    ) -> Option<SessionRecord> {
        self.recency.push_back((record.touched, client_id));
        let previous = self.records.insert(client_id, record);
        self.sweep_if_sparse();
        previous
    }

    /// Removes and returns the least recently used session.
    pub(crate) fn pop_least_recent(&mut self) -> Option<(u64, SessionRecord)> {
        while let Some((touched, client_id)) = self.recency.pop_front() {
            if self.is_current(touched, client_id) {
                return self
                    .records
                    .remove(&client_id)
                    .map(|record| (client_id, record));
            }
        }
        None
    }

    /// Every session, least recently used first, as `(client_id, record)`.
    pub(crate) fn by_recency(&self) -> impl Iterator<Item = (u64, &SessionRecord)> {
        self.recency.iter().filter_map(|&(touched, client_id)| {
            self.records
                .get(&client_id)
                .filter(|record| record.touched == touched)
                .map(|record| (client_id, record))
        })
    }

    /// Every session, in no particular order.
    pub(crate) fn records(&self) -> impl Iterator<Item = &SessionRecord> {
        self.records.values()
    }

    /// Drops stale queue entries and gives back the capacity neither table needs now.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.drop_stale();
        self.recency.shrink_to_fit();
        self.records.shrink_to_fit();
    }

    fn is_current(&self, touched: u64, client_id: u64) -> bool {
        self.records
            .get(&client_id)
            .is_some_and(|record| record.touched == touched)
    }

    fn sweep_if_sparse(&mut self) {
        if self.recency.len() > 2 * self.records.len() + SWEEP_SLACK {
            self.drop_stale();
        }
    }

    /// Removes the queue entries of sessions touched again since, or evicted.
    fn drop_stale(&mut self) {
        let records = &self.records;
        self.recency.retain(|&(touched, client_id)| {
            records
                .get(&client_id)
                .is_some_and(|record| record.touched == touched)
        });
    }
}

/// Equal when the same sessions hold the same records in the same order of use, however many
/// stale entries either queue carries.
impl PartialEq for Sessions {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.by_recency().eq(other.by_recency())
    }
}

impl Eq for Sessions {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::store::RecordedResult;

    fn record(touched: u64) -> SessionRecord {
        SessionRecord {
            last_sequence: 1,
            last_result: RecordedResult::Put {
                revision: touched as i64,
            },
            touched,
        }
    }

    fn order(sessions: &Sessions) -> Vec<u64> {
        sessions.by_recency().map(|(client, _)| client).collect()
    }

    #[test]
    fn sessions_leave_in_order_of_last_use() {
        let mut sessions = Sessions::default();
        for client in 1..=3 {
            sessions.insert(client, record(client));
        }
        assert!(sessions.touch(1, 4));
        assert!(!sessions.touch(9, 5), "an unknown session is not kept");
        assert_eq!(order(&sessions), vec![2, 3, 1]);
        assert_eq!(
            sessions.pop_least_recent().map(|(client, _)| client),
            Some(2)
        );
        sessions.insert(3, record(6));
        assert_eq!(order(&sessions), vec![1, 3]);
        assert_eq!(
            sessions.pop_least_recent().map(|(client, _)| client),
            Some(1)
        );
        assert_eq!(
            sessions.pop_least_recent().map(|(client, _)| client),
            Some(3)
        );
        assert_eq!(sessions.pop_least_recent(), None);
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn stale_entries_are_swept_and_never_change_equality() {
        let mut churned = Sessions::default();
        let mut fresh = Sessions::default();
        let mut stamp = 0;
        for client in 1..=10 {
            churned.insert(client, record(stamp));
            stamp += 1;
        }
        // Thousands of uses of the same sessions leave thousands of stale entries behind.
        for round in 0..1000 {
            churned.touch(1 + round % 10, stamp);
            stamp += 1;
        }
        assert!(
            churned.recency.len() <= 2 * churned.len() + SWEEP_SLACK + 1,
            "the queue holds {} entries for {} sessions",
            churned.recency.len(),
            churned.len()
        );
        for (client, record) in churned.by_recency() {
            fresh.insert(client, record.clone());
        }
        assert_eq!(churned, fresh);
        assert_eq!(order(&churned), (1..=10).collect::<Vec<_>>());
        fresh.touch(1, stamp);
        assert_ne!(churned, fresh, "the order of use is part of the state");
    }
}
