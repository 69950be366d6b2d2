//! The durable log as the core sees it: read-only. The embedder writes to it (after making the
//! writes of a `Ready` durable) and the core only reads from it.

use crate::types::{ConfState, Entry, HardState, LogIndex, Snapshot, SnapshotMetadata, Term};
use std::collections::VecDeque;
use std::fmt;

/// Why a storage read could not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The requested index is before the first retained entry (it was compacted into a snapshot).
    Compacted,
    /// The requested index is after the last entry.
    Unavailable,
    /// The underlying medium failed. The core treats this as fatal for the member.
    Io(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Compacted => f.write_str("requested index is compacted"),
            StorageError::Unavailable => f.write_str("requested index is beyond the last entry"),
            StorageError::Io(reason) => write!(f, "storage I/O error: {reason}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// Read access to the durable log, hard state and snapshot.
///
/// Contract: everything returned is durable. `term(first_index() - 1)` answers the term of the
/// snapshot (or `Term(0)` for index 0), so the consistency check works right after a compaction.
pub trait Storage {
    /// The durable hard state and the configuration in force at the snapshot (the node replays
    /// later membership changes as it applies the log), read once when the node starts.
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError>;

    /// Entries in `[low, high)`, stopping early once `max_bytes` would be exceeded (but always
    /// returning at least one entry when the range is not empty).
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index`; valid for `first_index() - 1 ..= last_index()`.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// The index of the first entry still held (one past the snapshot's index).
    fn first_index(&self) -> LogIndex;

    /// The index of the last entry held (the snapshot's index if the log is empty after it).
    fn last_index(&self) -> LogIndex;

    /// The latest snapshot, for sending to a follower that needs compacted entries.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// An in-memory [`Storage`], used by tests, the simulator (as the node's view of its durable
/// log) and as the log cache of a disk-backed member.
///
/// Invariant: `entries[i].index == snapshot.metadata.index + 1 + evicted + i` for every `i`;
/// without an [`EntryLoader`] nothing is evicted.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    conf_state: ConfState,
    /// The resident entries: `entries[i].index == snapshot index + 1 + evicted + i`.
    entries: Vec<Entry>,
    /// How many entries after the snapshot are not resident (see
    /// [`MemStorage::set_entry_loader`]); they come first, before `entries`.
    evicted: u64,
    /// The terms of the evicted entries as runs `(first index, term)`, oldest first, so that
    /// term lookups (log matching, conflict search) never touch the disk.
    evicted_terms: VecDeque<(LogIndex, Term)>,
    /// `Entry::size_bytes` summed over `entries`.
    resident_bytes: u64,
    /// Where evicted entries are read from, and how much to keep resident.
    entry_loader: Option<EntryLoader>,
    /// Where the snapshot's data comes from when it is not held in memory (see
    /// [`MemStorage::set_snapshot_loader`]).
    loader: Option<SnapshotLoader>,
    /// Whether `snapshot.data` was left out and must come from the loader.
    data_elided: bool,
}

/// Reads the data of a snapshot the embedder has made durable, given its metadata.
///
/// A state machine snapshot can be as large as the whole keyspace; holding a copy in memory
/// for the rare follower that needs it would double a member's memory. With a loader, the
/// storage keeps only the metadata and reads the data when a snapshot must be sent. The loader
/// does the I/O; the core stays free of it.
#[derive(Clone)]
pub struct SnapshotLoader(std::sync::Arc<LoadSnapshotData>);

/// The function behind a [`SnapshotLoader`].
type LoadSnapshotData = dyn Fn(&SnapshotMetadata) -> Result<bytes::Bytes, String> + Send + Sync;

impl SnapshotLoader {
    /// Wraps `load`, which returns the data of the durable snapshot described by its argument.
    pub fn new(
        load: impl Fn(&SnapshotMetadata) -> Result<bytes::Bytes, String> + Send + Sync + 'static,
    ) -> SnapshotLoader {
        SnapshotLoader(std::sync::Arc::new(load))
    }
}

/// Reads entries the embedder has made durable back from its log, for a [`MemStorage`] that
/// keeps only the newest ones in memory.
///
/// A busy member's log holds a whole snapshot interval of entries, tens of megabytes, yet only
/// the newest are read often (replicating to followers that keep up, applying). With a loader
/// the storage keeps committed entries resident up to a byte budget and reads older ones from
/// the embedder's log when a lagging follower or a replay needs them. The loader does the I/O;
/// the core stays free of it. Only committed entries are ever evicted, so what the loader
/// serves can never have been overwritten.
#[derive(Clone)]
pub struct EntryLoader {
    load: std::sync::Arc<LoadEntries>,
    resident_bytes: u64,
}

/// The function behind an [`EntryLoader`]: entries `[low, high)` up to `max_bytes`, as
/// [`Storage::entries`] answers.
type LoadEntries =
    dyn Fn(LogIndex, LogIndex, u64) -> Result<Vec<Entry>, StorageError> + Send + Sync;

impl EntryLoader {
    /// Wraps `load`, which must answer like [`Storage::entries`] for durable entries, and keeps
    /// about `resident_bytes` of committed entries in memory (between half of it and all of it:
    /// entries are evicted in bulk, so the copy that eviction does stays cheap).
    pub fn new(
        resident_bytes: u64,
        load: impl Fn(LogIndex, LogIndex, u64) -> Result<Vec<Entry>, StorageError>
        + Send
        + Sync
        + 'static,
    ) -> EntryLoader {
        EntryLoader {
            load: std::sync::Arc::new(load),
            resident_bytes,
        }
    }
}

impl fmt::Debug for EntryLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryLoader")
            .field("resident_bytes", &self.resident_bytes)
            .finish()
    }
}

impl fmt::Debug for SnapshotLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotLoader")
    }
}

impl MemStorage {
    /// An empty log whose initial configuration is `conf_state` (the cluster's first members).
    pub fn new_with_conf_state(conf_state: ConfState) -> MemStorage {
        let snapshot = Snapshot {
            metadata: SnapshotMetadata {
                conf_state: conf_state.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        MemStorage {
            snapshot,
            conf_state,
            ..Default::default()
        }
    }

    /// The first members of a new cluster, written into the log as its first entry (a committed
    /// membership change at index 1, term 1), the way etcd bootstraps. Every founding member
    /// starts from the same log, so members added later learn the founding configuration by
    /// replaying the log, like every change after it. The configuration takes effect when the
    /// node applies entry 1, in its first Ready.
    pub fn bootstrap(founders: &ConfState) -> MemStorage {
        let change =
            crate::confchange::ConfChange {
                changes: founders
                    .voters
                    .iter()
                    .map(|&node| crate::confchange::ConfChangeSingle {
                        change: crate::confchange::ConfChangeType::AddVoter,
                        node,
                    })
                    .chain(founders.learners.iter().map(|&node| {
                        crate::confchange::ConfChangeSingle {
                            change: crate::confchange::ConfChangeType::AddLearner,
                            node,
                        }
                    }))
                    .collect(),
            };
        let mut storage = MemStorage::default();
        storage.append(&[Entry {
            term: Term(1),
            index: LogIndex(1),
            kind: crate::types::EntryKind::ConfChange,
            data: change.encode(),
        }]);
        storage.set_hard_state(HardState {
            term: Term(1),
            vote: crate::types::NodeId::NONE,
            commit: LogIndex(1),
        });
        storage
    }

    /// An in-memory copy of another storage (a durable log read at start-up): its snapshot,
    /// entries, hard state and configuration. Embedders keep this view for the core to read
    /// while the durable log only takes writes, as etcd keeps its MemoryStorage beside its WAL.
    pub fn copy_of(source: &impl Storage) -> Result<MemStorage, StorageError> {
        let (hard_state, conf_state) = source.initial_state()?;
        let mut storage = MemStorage::new_with_conf_state(conf_state.clone());
        let snapshot = source.snapshot()?;
        if !snapshot.is_empty() {
            storage.apply_snapshot(snapshot);
        }
        let entries = source.entries(source.first_index(), source.last_index().next(), u64::MAX)?;
        storage.append_owned(entries);
        storage.set_hard_state(hard_state);
        storage.set_conf_state(conf_state);
        Ok(storage)
    }

    /// Like [`MemStorage::copy_of`], with `loader` in place from the start: the entries are
    /// read in pieces and only the newest stay resident, so opening a long log never holds it
    /// all in memory at once.
    pub fn copy_of_with_entry_loader(
        source: &impl Storage,
        loader: EntryLoader,
    ) -> Result<MemStorage, StorageError> {
        let (hard_state, conf_state) = source.initial_state()?;
        let mut storage = MemStorage::new_with_conf_state(conf_state.clone());
        let snapshot = source.snapshot()?;
        if !snapshot.is_empty() {
            storage.apply_snapshot(snapshot);
        }
        storage.set_hard_state(hard_state);
        let piece = loader.resident_bytes.max(1);
        storage.entry_loader = Some(loader);
        let high = source.last_index().next();
        let mut next = source.first_index();
        while next < high {
            let entries = source.entries(next, high, piece)?;
            let Some(last) = entries.last() else {
                return Err(StorageError::Io(format!("no entry at {next}")));
            };
            next = last.index.next();
            storage.append_owned(entries);
        }
        storage.set_conf_state(conf_state);
        Ok(storage)
    }

    /// From now on, committed entries beyond the loader's resident budget are dropped from
    /// memory (oldest first) and read back through `loader` when asked for. Every entry held
    /// must already be durable where the loader reads, as every entry appended later must be.
    pub fn set_entry_loader(&mut self, loader: EntryLoader) {
        self.entry_loader = Some(loader);
        self.evict();
    }

    /// How many entries and bytes are held in memory, for metrics and tests.
    pub fn resident(&self) -> (usize, u64) {
        (self.entries.len(), self.resident_bytes)
    }

    /// The hard state last written.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Records a durable hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
        self.evict();
    }

    /// The configuration in force at the applied index (as last recorded with
    /// [`MemStorage::set_conf_state`]): what a snapshot taken there must carry.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Records the configuration in force at the applied index, which the next `compact` stamps
    /// into its snapshot.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// Appends entries, replacing any existing suffix that starts at or after the first new entry
    /// (the leader has overwritten it). Entries at or below the snapshot index are ignored.
    ///
    /// # Panics
    /// If the entries are not consecutive or leave a gap after the current last index: that would
    /// be a bug in the embedder, not an operating condition.
    pub fn append(&mut self, entries: &[Entry]) {
        if let Some(skip) = self.prepare_append(entries) {
            self.resident_bytes += entries[skip..].iter().map(Entry::size_bytes).sum::<u64>();
            self.entries.extend_from_slice(&entries[skip..]);
            self.evict();
        }
    }

    /// Like [`MemStorage::append`], moving the entries in instead of copying them.
    pub fn append_owned(&mut self, mut entries: Vec<Entry>) {
        if let Some(skip) = self.prepare_append(&entries) {
            entries.drain(..skip);
            self.resident_bytes += entries.iter().map(Entry::size_bytes).sum::<u64>();
            self.entries.extend(entries);
            self.evict();
        }
    }

    /// Checks `entries`, truncates the conflicting suffix they replace, and returns how many of
    /// them to skip (those at or below the snapshot), or `None` if there is nothing to append.
    fn prepare_append(&mut self, entries: &[Entry]) -> Option<usize> {
        let first_new = entries.first()?;
        for pair in entries.windows(2) {
            assert_eq!(
                pair[1].index,
                pair[0].index.next(),
                "appended entries are not consecutive"
            );
        }
        let snapshot_index = self.snapshot.metadata.index;
        let skip = snapshot_index
            .get()
            .saturating_sub(first_new.index.get() - 1) as usize;
        if skip >= entries.len() {
            return None;
        }
        let first = entries[skip].index;
        assert!(
            first <= self.last_index().next(),
            "append at {first} leaves a gap after last index {}",
            self.last_index()
        );
        self.keep_first((first.get() - snapshot_index.get() - 1) as usize);
        Some(skip)
    }

    /// Index of the first resident entry.
    fn resident_first(&self) -> LogIndex {
        self.offset().plus(self.evicted + 1)
    }

    /// Keeps the first `keep` entries after the snapshot (evicted or not) and drops the rest.
    fn keep_first(&mut self, keep: usize) {
        let keep = keep as u64;
        let resident_keep = keep.saturating_sub(self.evicted) as usize;
        if resident_keep < self.entries.len() {
            self.resident_bytes -= self.entries[resident_keep..]
                .iter()
                .map(Entry::size_bytes)
                .sum::<u64>();
            self.entries.truncate(resident_keep);
        }
        if keep < self.evicted {
            // Only committed entries are evicted and those are never replaced; handled anyway
            // so that the storage stays consistent whatever its caller does.
            self.evicted = keep;
            let last_kept = self.offset().plus(keep);
            while self
                .evicted_terms
                .back()
                .is_some_and(|&(first, _)| first > last_kept)
            {
                self.evicted_terms.pop_back();
            }
        }
    }

    /// Drops the first `count` entries after the snapshot (evicted or not), for a compaction;
    /// called before the snapshot moves.
    fn drop_first(&mut self, count: u64) {
        if count <= self.evicted {
            self.evicted -= count;
            let new_first = self.offset().plus(count + 1);
            while self.evicted_terms.len() >= 2 && self.evicted_terms[1].0 <= new_first {
                self.evicted_terms.pop_front();
            }
            if self.evicted == 0 {
                self.evicted_terms.clear();
            } else if let Some(front) = self.evicted_terms.front_mut() {
                front.0 = new_first;
            }
            return;
        }
        let resident = ((count - self.evicted) as usize).min(self.entries.len());
        self.resident_bytes -= self.entries[..resident]
            .iter()
            .map(Entry::size_bytes)
            .sum::<u64>();
        self.entries.drain(..resident);
        self.evicted = 0;
        self.evicted_terms.clear();
    }

    /// With a loader, drops committed entries from the front of the resident ones while they
    /// take more than the budget, down to half of it.
    fn evict(&mut self) {
        let Some(loader) = &self.entry_loader else {
            return;
        };
        if self.resident_bytes <= loader.resident_bytes {
            return;
        }
        let target = loader.resident_bytes / 2;
        let commit = self.hard_state.commit;
        let mut count = 0;
        let mut freed = 0u64;
        for entry in &self.entries {
            if entry.index > commit || self.resident_bytes - freed <= target {
                break;
            }
            freed += entry.size_bytes();
            count += 1;
            if self
                .evicted_terms
                .back()
                .is_none_or(|&(_, term)| term != entry.term)
            {
                self.evicted_terms.push_back((entry.index, entry.term));
            }
        }
        if count > 0 {
            self.entries.drain(..count);
            self.evicted += count as u64;
            self.resident_bytes -= freed;
        }
    }

    /// Discards entries up to and including `index`, which must be held and at most the last
    /// index; keeps their term as the new "snapshot" boundary. Used after the state machine
    /// took a snapshot at `index`.
    pub fn compact(&mut self, index: LogIndex, snapshot_data: bytes::Bytes) {
        if index <= self.snapshot.metadata.index {
            return;
        }
        assert!(index <= self.last_index(), "compact beyond last index");
        let term = self.term(index).expect("index is held");
        self.drop_first(index.get() - self.snapshot.metadata.index.get());
        self.snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state: self.conf_state.clone(),
            },
            data: snapshot_data,
        };
        self.data_elided = false;
    }

    /// Compacts like [`MemStorage::compact`], to a snapshot taken earlier (its `metadata` was
    /// captured when the state machine was frozen at `metadata.index`, and entries applied
    /// since may have changed the configuration) whose data is durable and served by the
    /// loader. Does nothing without a loader, if the snapshot is not newer than the one held,
    /// or if its index or term disagrees with the log (then the log was replaced meanwhile).
    pub fn compact_to_durable(&mut self, metadata: SnapshotMetadata) {
        let index = metadata.index;
        if self.loader.is_none()
            || index <= self.snapshot.metadata.index
            || index > self.last_index()
            || self.term(index) != Ok(metadata.term)
        {
            return;
        }
        self.drop_first(index.get() - self.snapshot.metadata.index.get());
        self.snapshot = Snapshot {
            metadata,
            data: bytes::Bytes::new(),
        };
        self.data_elided = true;
    }

    /// From now on, snapshots that are durable (installed with [`MemStorage::apply_snapshot`]
    /// after being saved, or compacted to with [`MemStorage::compact_to_durable`]) keep no data
    /// in memory: `load` reads it when [`Storage::snapshot`] is asked. The snapshot held now is
    /// taken to be durable as well and its data is dropped.
    pub fn set_snapshot_loader(&mut self, load: SnapshotLoader) {
        self.loader = Some(load);
        if !self.snapshot.is_empty() {
            self.snapshot.data = bytes::Bytes::new();
            self.data_elided = true;
        }
    }

    /// Replaces the whole log by a snapshot received from a leader. A snapshot older than the one
    /// held is ignored (never move state backwards). With a snapshot loader the data is not
    /// kept: the embedder calls this once the snapshot is durable.
    pub fn apply_snapshot(&mut self, mut snapshot: Snapshot) {
        if snapshot.metadata.index <= self.snapshot.metadata.index {
            return;
        }
        self.entries.clear();
        self.evicted = 0;
        self.evicted_terms.clear();
        self.resident_bytes = 0;
        self.conf_state = snapshot.metadata.conf_state.clone();
        if self.hard_state.commit < snapshot.metadata.index {
            self.hard_state.commit = snapshot.metadata.index;
        }
        self.data_elided = self.loader.is_some();
        if self.data_elided {
            snapshot.data = bytes::Bytes::new();
        }
        self.snapshot = snapshot;
    }

    fn offset(&self) -> LogIndex {
        self.snapshot.metadata.index
    }

    /// Reads evicted entries `[low, high)` through the loader and checks that they are the
    /// ones this log holds: consecutive from `low`, with the terms recorded at eviction.
    fn load_evicted(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let loader = self.entry_loader.as_ref().ok_or_else(|| {
            StorageError::Io(format!("entry {low} was evicted but there is no loader"))
        })?;
        let entries = (loader.load)(low, high, max_bytes)?;
        if entries.is_empty() || entries.len() as u64 > high.get() - low.get() {
            return Err(StorageError::Io(format!(
                "the entry loader returned {} entries for {low}..{high}",
                entries.len()
            )));
        }
        for (offset, entry) in entries.iter().enumerate() {
            let index = low.plus(offset as u64);
            if entry.index != index || Ok(entry.term) != self.term(index) {
                return Err(StorageError::Io(format!(
                    "the entry loader returned entry {}/{} where {index}/{:?} was evicted",
                    entry.index,
                    entry.term,
                    self.term(index)
                )));
            }
        }
        Ok(entries)
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        // The configuration at the snapshot: a restarted node replays the membership changes
        // after it as it applies the log again.
        Ok((self.hard_state, self.snapshot.metadata.conf_state.clone()))
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low <= self.offset() {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index().next() || low > high {
            return Err(StorageError::Unavailable);
        }
        let resident_first = self.resident_first();
        let mut total = 0u64;
        let mut out = Vec::new();
        if low < resident_first {
            let cold_high = high.min(resident_first);
            out = self.load_evicted(low, cold_high, max_bytes)?;
            if (out.len() as u64) < cold_high.get() - low.get() {
                return Ok(out);
            }
            total = out.iter().map(Entry::size_bytes).sum();
        }
        let start = (low.max(resident_first).get() - resident_first.get()) as usize;
        let end = (high.max(resident_first).get() - resident_first.get()) as usize;
        out.reserve(end.saturating_sub(start));
        for entry in &self.entries[start.min(end)..end] {
            total += entry.size_bytes();
            if !out.is_empty() && total > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == self.offset() {
            return Ok(self.snapshot.metadata.term);
        }
        if index < self.offset() {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        let resident_first = self.resident_first();
        if index < resident_first {
            let run = self
                .evicted_terms
                .partition_point(|&(first, _)| first <= index);
            return match run.checked_sub(1).map(|run| self.evicted_terms[run]) {
                Some((_, term)) => Ok(term),
                None => Err(StorageError::Io(format!(
                    "term of evicted entry {index} unknown"
                ))),
            };
        }
        Ok(self.entries[(index.get() - resident_first.get()) as usize].term)
    }

    fn first_index(&self) -> LogIndex {
        self.offset().next()
    }

    fn last_index(&self) -> LogIndex {
        self.offset().plus(self.evicted + self.entries.len() as u64)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        if !self.data_elided {
            return Ok(self.snapshot.clone());
        }
        let loader = self.loader.as_ref().ok_or(StorageError::Unavailable)?;
        let data = (loader.0)(&self.snapshot.metadata).map_err(StorageError::Io)?;
        Ok(Snapshot {
            metadata: self.snapshot.metadata.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            ..Default::default()
        }
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([NodeId(1)]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        storage.append(&[entry(2, 2)]);
        assert_eq!(storage.last_index(), LogIndex(2));
        assert_eq!(storage.term(LogIndex(2)), Ok(Term(2)));
        assert_eq!(storage.term(LogIndex(0)), Ok(Term(0)));
        assert_eq!(storage.term(LogIndex(3)), Err(StorageError::Unavailable));
    }

    #[test]
    fn compact_keeps_boundary_term_and_rejects_old_reads() {
        let mut storage = MemStorage::default();
        storage.append(&[entry(1, 1), entry(2, 2), entry(3, 3)]);
        storage.compact(LogIndex(2), bytes::Bytes::new());
        assert_eq!(storage.first_index(), LogIndex(3));
        assert_eq!(storage.term(LogIndex(2)), Ok(Term(2)));
        assert_eq!(storage.term(LogIndex(1)), Err(StorageError::Compacted));
        assert_eq!(
            storage.entries(LogIndex(2), LogIndex(4), u64::MAX),
            Err(StorageError::Compacted)
        );
        assert_eq!(
            storage.entries(LogIndex(3), LogIndex(4), u64::MAX),
            Ok(vec![entry(3, 3)])
        );
        // Entries at or below the snapshot are ignored on append.
        storage.append(&[entry(2, 2), entry(3, 3), entry(4, 3)]);
        assert_eq!(storage.last_index(), LogIndex(4));
    }

    /// With a loader, a durable snapshot keeps no data in memory: the loader serves it, with
    /// the metadata captured when the state was frozen, and a compaction that disagrees with
    /// the log or is overtaken by a newer snapshot changes nothing.
    #[test]
    fn a_snapshot_loader_serves_data_that_is_not_kept_in_memory() {
        use std::sync::{Arc, Mutex};
        let loads = Arc::new(Mutex::new(Vec::new()));
        let seen = loads.clone();
        let mut storage = MemStorage::new_with_conf_state(ConfState::with_voters([NodeId(1)]));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
        let frozen_conf = ConfState::with_voters([NodeId(1), NodeId(2)]);
        let metadata = |index: u64, term: u64| SnapshotMetadata {
            index: LogIndex(index),
            term: Term(term),
            conf_state: frozen_conf.clone(),
        };
        // Without a loader there is nowhere to get the data from: nothing happens.
        storage.compact_to_durable(metadata(2, 1));
        assert_eq!(storage.first_index(), LogIndex(1));

        storage.set_snapshot_loader(SnapshotLoader::new(move |metadata| {
            seen.lock().unwrap().push(metadata.index);
            Ok(bytes::Bytes::from(format!(
                "state at {}",
                metadata.index.get()
            )))
        }));
        // A term that disagrees with the log: the log was replaced since the freeze.
        storage.compact_to_durable(metadata(2, 2));
        assert_eq!(storage.first_index(), LogIndex(1));
        storage.compact_to_durable(metadata(3, 2));
        assert_eq!(storage.first_index(), LogIndex(4));
        assert_eq!(storage.term(LogIndex(3)), Ok(Term(2)));
        let snapshot = storage.snapshot().unwrap();
        assert_eq!(snapshot.metadata, metadata(3, 2));
        assert_eq!(snapshot.data, bytes::Bytes::from("state at 3"));
        assert!(storage.snapshot.data.is_empty(), "the data stays on disk");
        // Older than the one held: ignored.
        storage.compact_to_durable(metadata(2, 1));
        assert_eq!(storage.first_index(), LogIndex(4));

        // A leader's snapshot, installed once durable, keeps no data either.
        storage.apply_snapshot(Snapshot {
            metadata: metadata(9, 3),
            data: bytes::Bytes::from("leader's state"),
        });
        assert!(storage.snapshot.data.is_empty());
        assert_eq!(
            storage.snapshot().unwrap().data,
            bytes::Bytes::from("state at 9")
        );
        assert_eq!(*loads.lock().unwrap(), [LogIndex(3), LogIndex(9)]);
    }

    /// A loader that fails makes the snapshot unavailable for now, never a panic.
    #[test]
    fn a_failing_loader_is_a_storage_error() {
        let mut storage = MemStorage::default();
        storage.append(&[entry(1, 1), entry(2, 1)]);
        storage.set_snapshot_loader(SnapshotLoader::new(|_| Err("file is gone".into())));
        storage.compact_to_durable(SnapshotMetadata {
            index: LogIndex(2),
            term: Term(1),
            conf_state: ConfState::default(),
        });
        assert_eq!(
            storage.snapshot(),
            Err(StorageError::Io("file is gone".into()))
        );
    }

    #[test]
    fn entries_respects_size_limit_but_returns_at_least_one() {
        let mut storage = MemStorage::default();
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let got = storage.entries(LogIndex(1), LogIndex(4), 0).unwrap();
        assert_eq!(got.len(), 1);
        let got = storage.entries(LogIndex(1), LogIndex(4), 48).unwrap();
        assert_eq!(got.len(), 2);
    }
}

/// A storage that evicts entries to a loader answers exactly as one that keeps everything,
/// whatever sequence of appends (with overwritten suffixes), commits, compactions and
/// installed snapshots it goes through, and whatever the budget.
#[cfg(test)]
mod eviction_tests {
    use super::*;
    use crate::types::EntryKind;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Debug)]
    enum Op {
        /// Appends `count` entries of `len` bytes at `back` entries before the end (never at
        /// or below the commit index), with a new term if `new_term`.
        Append {
            back: u64,
            count: u64,
            len: usize,
            new_term: bool,
        },
        /// Commits `fraction`/8 of the way from the commit index to the last index.
        Commit { fraction: u64 },
        /// Compacts `fraction`/8 of the way from the first index to the commit index.
        Compact { fraction: u64 },
        /// Installs a snapshot `ahead` entries past the last index.
        Install { ahead: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..4, 1u64..6, 0usize..120, any::<bool>()).prop_map(
                |(back, count, len, new_term)| Op::Append { back, count, len, new_term }
            ),
            4 => (0u64..=8).prop_map(|fraction| Op::Commit { fraction }),
            1 => (0u64..=8).prop_map(|fraction| Op::Compact { fraction }),
            1 => (0u64..3).prop_map(|ahead| Op::Install { ahead }),
        ]
    }

    fn apply(storage: &mut MemStorage, op: &Op, term: u64) {
        let last = storage.last_index().get();
        let commit = storage.hard_state().commit.get();
        match *op {
            Op::Append {
                back, count, len, ..
            } => {
                let first = (last + 1).saturating_sub(back).max(commit + 1);
                let entries: Vec<Entry> = (first..first + count)
                    .map(|index| Entry {
                        index: LogIndex(index),
                        term: Term(term),
                        kind: EntryKind::Normal,
                        data: bytes::Bytes::from(vec![(index + term) as u8; len]),
                    })
                    .collect();
                storage.append_owned(entries);
            }
            Op::Commit { fraction } => {
                let mut hard_state = storage.hard_state();
                hard_state.commit = LogIndex(commit + (last - commit) * fraction / 8);
                hard_state.term = Term(term);
                storage.set_hard_state(hard_state);
            }
            Op::Compact { fraction } => {
                let first = storage.first_index().get() - 1;
                let index = first + commit.saturating_sub(first) * fraction / 8;
                storage.compact(LogIndex(index), bytes::Bytes::from_static(b"snap"));
            }
            Op::Install { ahead } => {
                storage.apply_snapshot(Snapshot {
                    metadata: SnapshotMetadata {
                        index: LogIndex(last + 1 + ahead),
                        term: Term(term),
                        conf_state: ConfState::with_voters([crate::types::NodeId(1)]),
                    },
                    data: bytes::Bytes::from_static(b"installed"),
                });
            }
        }
    }

    fn same(got: &MemStorage, want: &MemStorage) -> Result<(), TestCaseError> {
        prop_assert_eq!(got.first_index(), want.first_index());
        prop_assert_eq!(got.last_index(), want.last_index());
        prop_assert_eq!(got.hard_state(), want.hard_state());
        let (first, last) = (want.first_index().get(), want.last_index().get());
        for index in first.saturating_sub(2)..=last + 1 {
            prop_assert_eq!(got.term(LogIndex(index)), want.term(LogIndex(index)));
        }
        for low in first..=last + 1 {
            for max_bytes in [0, 100, 500, u64::MAX] {
                let high = LogIndex(last + 1);
                prop_assert_eq!(
                    got.entries(LogIndex(low), high, max_bytes),
                    want.entries(LogIndex(low), high, max_bytes),
                    "entries({}, {}, {})",
                    low,
                    high,
                    max_bytes
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn evicting_storage_answers_like_a_resident_one(
            ops in prop::collection::vec(op(), 1..60),
            budget in 0u64..1500,
        ) {
            let mut want = MemStorage::new_with_conf_state(ConfState::with_voters([
                crate::types::NodeId(1),
            ]));
            // The durable log the loader reads: everything the evicting storage was given.
            let durable = Arc::new(Mutex::new(want.clone()));
            let mut got = want.clone();
            let reader = Arc::clone(&durable);
            got.set_entry_loader(EntryLoader::new(budget, move |low, high, max_bytes| {
                reader.lock().unwrap().entries(low, high, max_bytes)
            }));
            let mut term = 1;
            for op in &ops {
                if matches!(op, Op::Append { new_term: true, .. }) {
                    term += 1;
                }
                apply(&mut durable.lock().unwrap(), op, term);
                apply(&mut want, op, term);
                apply(&mut got, op, term);
                same(&got, &want)?;
                let (_, resident) = got.resident();
                // Over budget only by what is not committed yet (or one entry's rounding).
                let uncommitted: u64 = want
                    .entries(want.hard_state().commit.next().max(want.first_index()),
                        want.last_index().next(), u64::MAX)
                    .unwrap_or_default()
                    .iter()
                    .map(Entry::size_bytes)
                    .sum();
                prop_assert!(resident <= budget + uncommitted, "{} > {} + {}", resident, budget, uncommitted);
            }
        }
    }

    #[test]
    fn a_loader_that_returns_other_entries_is_an_error_not_a_wrong_answer() {
        let mut storage = MemStorage::new_with_conf_state(ConfState::default());
        let entries: Vec<Entry> = (1..=10)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(1),
                kind: EntryKind::Normal,
                data: bytes::Bytes::from(vec![0; 100]),
            })
            .collect();
        storage.append(&entries);
        storage.set_hard_state(HardState {
            term: Term(1),
            vote: crate::types::NodeId::NONE,
            commit: LogIndex(10),
        });
        // Answers with entries of another term, as a log replaced underneath would.
        storage.set_entry_loader(EntryLoader::new(300, |low, high, _| {
            Ok((low.get()..high.get())
                .map(|index| Entry {
                    index: LogIndex(index),
                    term: Term(2),
                    ..Default::default()
                })
                .collect())
        }));
        assert!(storage.resident().0 < 10, "entries were evicted");
        assert!(matches!(
            storage.entries(LogIndex(1), LogIndex(11), u64::MAX),
            Err(StorageError::Io(_))
        ));
        assert_eq!(storage.term(LogIndex(1)), Ok(Term(1)));
        assert_eq!(
            storage.entries(LogIndex(10), LogIndex(11), u64::MAX),
            Ok(vec![entries[9].clone()])
        );
    }
}
