//! The node's view of its log: the durable part (read from [`Storage`]) followed by an unstable
//! tail of entries that were appended in memory but are not yet durable.
//!
//! Entries move from unstable to stable only when the embedder acknowledges the `Ready` that
//! carried them (`stable_to`), which is what lets the write happen on another thread while the
//! core keeps running.

use crate::storage::{Storage, StorageError};
use crate::types::{Entry, LogIndex, Snapshot, Term};

/// Entries not yet known to be durable.
///
/// Invariant: `entries[i].index == offset + i`. Entries before `offset + in_progress` have been
/// handed to the embedder for writing but not yet acknowledged.
#[derive(Debug, Default)]
struct Unstable {
    offset: LogIndex,
    entries: Vec<Entry>,
    in_progress: usize,
    /// A snapshot received from the leader, not yet durable. When present, `offset` is its index
    /// plus one and nothing in storage counts until it is persisted.
    snapshot: Option<Snapshot>,
    /// Whether `snapshot` has been handed out for writing.
    snapshot_in_progress: bool,
}

impl Unstable {
    fn last_index(&self) -> Option<LogIndex> {
        if self.entries.is_empty() {
            None
        } else {
            Some(self.offset.plus(self.entries.len() as u64 - 1))
        }
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index < self.offset {
            return match &self.snapshot {
                Some(snapshot) if snapshot.metadata.index == index => Some(snapshot.metadata.term),
                _ => None,
            };
        }
        self.entries
            .get((index.get() - self.offset.get()) as usize)
            .map(|entry| entry.term)
    }

    /// Appends `entries`, which must start at or before one past the last index; anything from
    /// their first index on is replaced.
    /// Takes the entries by value: they move into the log without being copied.
    fn truncate_and_append(&mut self, entries: Vec<Entry>) {
        let first = entries[0].index;
        let after = self.offset.plus(self.entries.len() as u64);
        if first == after {
            self.entries.extend(entries);
        } else if first <= self.offset {
            // The whole unstable tail is replaced; storage below `first` stays valid.
            self.offset = first;
            self.entries = entries;
            self.in_progress = 0;
        } else {
            let keep = (first.get() - self.offset.get()) as usize;
            self.entries.truncate(keep);
            self.entries.extend(entries);
            self.in_progress = self.in_progress.min(keep);
        }
    }

    /// Drops entries up to `index` if the entry there still has `term` (otherwise the write being
    /// acknowledged was of entries that have since been replaced).
    fn stable_to(&mut self, index: LogIndex, term: Term) {
        if self.term(index) != Some(term) {
            return;
        }
        let count = (index.get() - self.offset.get() + 1) as usize;
        self.entries.drain(..count);
        self.offset = index.next();
        self.in_progress = self.in_progress.saturating_sub(count);
    }
}

/// Why a leader's entries were not appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// The log does not hold the entry before them: the leader must back off.
    Mismatch,
    /// They would replace a committed entry: the sender is broken; drop the message.
    ConflictsWithCommitted(LogIndex),
}

/// The log as the protocol sees it: stable entries in storage, then the unstable tail.
pub struct RaftLog<S: Storage> {
    storage: S,
    unstable: Unstable,
    /// Highest index known to be committed. Never decreases.
    committed: LogIndex,
    /// Highest index handed out to the state machine. `applied <= committed`.
    applied: LogIndex,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `storage` whose committed index is `committed` and whose state machine has
    /// applied up to `applied`.
    pub fn new(storage: S, committed: LogIndex, applied: LogIndex) -> RaftLog<S> {
        let last = storage.last_index();
        RaftLog {
            storage,
            unstable: Unstable {
                offset: last.next(),
                entries: Vec::new(),
                in_progress: 0,
                snapshot: None,
                snapshot_in_progress: false,
            },
            committed,
            applied,
        }
    }

    /// The storage, for the embedder to read from.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, for the embedder to write acknowledged writes into.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The committed index.
    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    /// The applied index.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The first index still held.
    pub fn first_index(&self) -> LogIndex {
        match &self.unstable.snapshot {
            Some(snapshot) => snapshot.metadata.index.next(),
            None => self.storage.first_index(),
        }
    }

    /// The last index, stable or not.
    pub fn last_index(&self) -> LogIndex {
        if let Some(last) = self.unstable.last_index() {
            return last;
        }
        match &self.unstable.snapshot {
            Some(snapshot) => snapshot.metadata.index,
            None => self.storage.last_index(),
        }
    }

    /// The last index that is durable and will not be replaced by an unstable entry.
    pub fn stable_last_index(&self) -> LogIndex {
        if self.unstable.snapshot.is_some() {
            // Nothing counts as durable until the snapshot is; storage may hold an old log.
            return LogIndex::ZERO;
        }
        self.unstable.offset.prev().min(self.storage.last_index())
    }

    /// The term of the entry at `index`, `Term(0)` for index 0.
    pub fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if let Some(term) = self.unstable.term(index) {
            return Ok(term);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if index >= self.unstable.offset {
            return Err(StorageError::Unavailable);
        }
        if let Some(snapshot) = &self.unstable.snapshot
            && index < snapshot.metadata.index
        {
            return Err(StorageError::Compacted);
        }
        self.storage.term(index)
    }

    /// The term at `index`, or `None` if it is compacted or beyond the log.
    pub fn term_if_present(&self, index: LogIndex) -> Option<Term> {
        self.term(index).ok()
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or_else(|error| {
            panic!(
                "the last index {} has no known term ({error}): unstable offset {} len {} \
                 snapshot {:?} storage {}..={}",
                self.last_index(),
                self.unstable.offset,
                self.unstable.entries.len(),
                self.unstable.snapshot.as_ref().map(|s| s.metadata.index),
                self.storage.first_index(),
                self.storage.last_index()
            )
        })
    }

    /// Whether the log holds an entry at `index` with `term`.
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term_if_present(index) == Some(term)
    }

    /// Whether a candidate whose log ends at `(last_index, last_term)` is at least as up to date
    /// as this log (Raft §5.4.1: compare last terms, then lengths).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[low, last_index]` up to `max_bytes` (at least one if any).
    pub fn entries_from(&self, low: LogIndex, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let high = self.last_index().next();
        self.slice(low, high, max_bytes)
    }

    /// Entries in `[low, high)` up to `max_bytes` (at least one if the range is not empty).
    pub fn slice(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index().next() {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        if low < self.unstable.offset {
            let stable_high = high.min(self.unstable.offset);
            out = self.storage.entries(low, stable_high, max_bytes)?;
            size = out.iter().map(Entry::size_bytes).sum();
            if (out.len() as u64) < stable_high.get() - low.get() {
                return Ok(out);
            }
        }
        if high > self.unstable.offset {
            let start = low.max(self.unstable.offset);
            let from = (start.get() - self.unstable.offset.get()) as usize;
            let to = (high.get() - self.unstable.offset.get()) as usize;
            for entry in &self.unstable.entries[from..to] {
                size += entry.size_bytes();
                if !out.is_empty() && size > max_bytes {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    /// The largest index `<= index` whose term is `<= term`, used to skip a whole term of
    /// mismatching entries per round trip when a follower rejects an append (§5.3 optimisation).
    /// Stops at the first index whose term is unknown (compacted), which is still a valid guess.
    pub fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut probe = index.min(self.last_index());
        loop {
            match self.term(probe) {
                Ok(found) if found > term && probe > LogIndex::ZERO => probe = probe.prev(),
                _ => return probe,
            }
        }
    }

    /// Appends entries from a leader after `(prev_index, prev_term)` matched; returns the last
    /// index now known to match the leader, or why nothing was appended.
    ///
    /// Entries already present with the same term are skipped (an append may be a duplicate or a
    /// reordered older message); from the first conflicting entry on, the suffix is replaced.
    pub fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        mut entries: Vec<Entry>,
    ) -> Result<LogIndex, AppendError> {
        if !self.matches(prev_index, prev_term) {
            return Err(AppendError::Mismatch);
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let conflict = entries
            .iter()
            .position(|entry| !self.matches(entry.index, entry.term));
        if let Some(position) = conflict {
            let first_conflict = entries[position].index;
            if first_conflict <= self.committed {
                // Only a broken or malicious leader sends this; never overwrite committed state.
                return Err(AppendError::ConflictsWithCommitted(first_conflict));
            }
            entries.drain(..position);
            self.append(entries);
        }
        Ok(last_new)
    }

    /// Appends one entry right after the last (a leader's own proposal), without allocating.
    pub fn append_one(&mut self, entry: Entry) -> LogIndex {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "a leader appends right after its last entry"
        );
        if entry.index
            == self
                .unstable
                .offset
                .plus(self.unstable.entries.len() as u64)
        {
            self.unstable.entries.push(entry);
            self.last_index()
        } else {
            self.append(vec![entry])
        }
    }

    /// Appends entries at the end (or over a conflicting tail) and returns the new last index.
    pub fn append(&mut self, entries: Vec<Entry>) -> LogIndex {
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.committed,
                "appending at {} would overwrite committed {}",
                first.index,
                self.committed
            );
            self.unstable.truncate_and_append(entries);
        }
        self.last_index()
    }

    /// Raises the commit index to `index` (never lowers it). Returns whether it moved.
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {}",
                self.last_index()
            );
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Unstable entries not yet handed out for writing; marks them as handed out.
    pub fn take_unpersisted(&mut self) -> Vec<Entry> {
        let start = self.unstable.in_progress;
        self.unstable.in_progress = self.unstable.entries.len();
        self.unstable.entries[start..].to_vec()
    }

    /// Whether some unstable entries have not been handed out for writing yet.
    pub fn has_unpersisted(&self) -> bool {
        self.unstable.in_progress < self.unstable.entries.len()
    }

    /// The embedder has made entries up to `(index, term)` durable and put them into storage.
    pub fn stable_to(&mut self, index: LogIndex, term: Term) {
        self.unstable.stable_to(index, term);
    }

    /// Replaces the whole log by a snapshot from the leader (its index is beyond our commit
    /// index, and our log does not hold its last entry). Entries after it arrive later.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(index > self.committed, "restoring an older snapshot");
        self.unstable.offset = index.next();
        self.unstable.entries.clear();
        self.unstable.in_progress = 0;
        self.unstable.snapshot = Some(snapshot);
        self.unstable.snapshot_in_progress = false;
        self.committed = index;
    }

    /// The snapshot to persist and restore, if one arrived and was not handed out yet. Marks it
    /// handed out and the state machine as having applied it.
    pub fn take_unpersisted_snapshot(&mut self) -> Option<Snapshot> {
        if self.unstable.snapshot_in_progress {
            return None;
        }
        let snapshot = self.unstable.snapshot.clone()?;
        self.unstable.snapshot_in_progress = true;
        self.applied = self.applied.max(snapshot.metadata.index);
        Some(snapshot)
    }

    /// Whether a received snapshot is not yet durable (the storage may still hold the old log it
    /// replaces, which must not be compacted or read).
    pub fn has_pending_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    /// Whether a received snapshot waits to be handed out.
    pub fn has_unpersisted_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some() && !self.unstable.snapshot_in_progress
    }

    /// The embedder has made the snapshot at `index` durable and installed it in storage.
    pub fn stable_snapshot_to(&mut self, index: LogIndex) {
        if self
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.metadata.index == index)
        {
            self.unstable.snapshot = None;
            self.unstable.snapshot_in_progress = false;
        }
    }

    /// The highest index that is both committed and durable here, so it may be applied.
    fn applicable_limit(&self) -> LogIndex {
        self.committed.min(self.stable_last_index())
    }

    /// Whether committed, durable entries wait to be applied.
    pub fn has_entries_to_apply(&self) -> bool {
        self.applicable_limit() > self.applied
    }

    /// The next batch (up to `max_bytes`) of committed, durable entries to apply; marks them as
    /// applied.
    pub fn take_entries_to_apply(&mut self, max_bytes: u64) -> Vec<Entry> {
        let limit = self.applicable_limit();
        if limit <= self.applied {
            return Vec::new();
        }
        let entries = self
            .slice(self.applied.next(), limit.next(), max_bytes)
            .unwrap_or_else(|error| {
                panic!(
                    "committed entries {}..={limit} unreadable: {error}",
                    self.applied.next()
                )
            });
        if let Some(last) = entries.last() {
            self.applied = last.index;
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            ..Default::default()
        }
    }

    fn log_with(entries: &[Entry]) -> RaftLog<MemStorage> {
        let mut storage = MemStorage::default();
        storage.append(entries);
        RaftLog::new(storage, LogIndex(0), LogIndex(0))
    }

    #[test]
    fn maybe_append_skips_duplicates_and_truncates_conflicts() {
        let mut log = log_with(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
        // Duplicate of what is there: no change.
        assert_eq!(
            log.maybe_append(LogIndex(1), Term(1), vec![entry(2, 1)]),
            Ok(LogIndex(2))
        );
        assert_eq!(log.last_index(), LogIndex(3));
        // Conflict at 3: replaced.
        assert_eq!(
            log.maybe_append(LogIndex(2), Term(1), vec![entry(3, 3), entry(4, 3)]),
            Ok(LogIndex(4))
        );
        assert_eq!(log.term(LogIndex(3)), Ok(Term(3)));
        // Mismatching previous entry.
        assert_eq!(
            log.maybe_append(LogIndex(4), Term(2), vec![]),
            Err(AppendError::Mismatch)
        );
        // Never over committed entries.
        log.commit_to(LogIndex(2));
        assert_eq!(
            log.maybe_append(LogIndex(1), Term(1), vec![entry(2, 5)]),
            Err(AppendError::ConflictsWithCommitted(LogIndex(2)))
        );
        // Stable index stops before the unstable replacement.
        assert_eq!(log.stable_last_index(), LogIndex(2));
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        let log = log_with(&[
            entry(1, 1),
            entry(2, 2),
            entry(3, 2),
            entry(4, 4),
            entry(5, 4),
        ]);
        assert_eq!(log.find_conflict_by_term(LogIndex(5), Term(3)), LogIndex(3));
        assert_eq!(log.find_conflict_by_term(LogIndex(5), Term(1)), LogIndex(1));
        assert_eq!(log.find_conflict_by_term(LogIndex(9), Term(9)), LogIndex(5));
        assert_eq!(log.find_conflict_by_term(LogIndex(5), Term(0)), LogIndex(0));
    }

    #[test]
    fn only_committed_and_durable_entries_are_applied() {
        let mut log = log_with(&[entry(1, 1)]);
        log.append(vec![entry(2, 1), entry(3, 1)]);
        log.commit_to(LogIndex(3));
        let applied: Vec<_> = log
            .take_entries_to_apply(u64::MAX)
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(applied, vec![LogIndex(1)]);
        let written = log.take_unpersisted();
        assert_eq!(written.len(), 2);
        log.storage_mut().append(&written);
        log.stable_to(LogIndex(3), Term(1));
        assert_eq!(log.take_entries_to_apply(u64::MAX).len(), 2);
        assert!(!log.has_entries_to_apply());
    }

    #[test]
    fn stale_stable_ack_after_truncation_is_ignored() {
        let mut log = log_with(&[]);
        log.append(vec![entry(1, 1), entry(2, 1)]);
        let first_write = log.take_unpersisted();
        log.append(vec![entry(2, 2)]);
        // The write of (2, t1) completes, but 2 now holds t2: it must stay unstable.
        log.storage_mut().append(&first_write);
        log.stable_to(LogIndex(2), Term(1));
        assert_eq!(log.term(LogIndex(2)), Ok(Term(2)));
        assert!(log.has_unpersisted());
    }
}
