//! The MVCC store: etcd 3.4's applier (`etcdserver/apply.go`) and mvcc store
//! (`mvcc/kvstore*.go`, `mvcc/key_index.go`) semantics over two ordered maps.

use super::error::MvccError;
use super::index::{Entry, KeyHistory, Revision, key_bounds};
use super::key::Key;
use super::sessions::Sessions;
use super::types::{
    CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget,
    CompareTargetUnion, DeleteRangeRequest, DeleteRangeResponse, KeyValue, MvccCommand,
    MvccRequest, MvccResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use super::validate;
use super::values::{
    DEFAULT_VALUE_LOG_THRESHOLD, Spill, StoredValue, StoredValueRef, ValueLog, load,
};
use bytes::Bytes;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A deterministic multi-version key-value store with etcd v3 semantics.
///
/// Every member applies the same log entries in the same order and so computes the same
/// responses and the same state; nothing here reads a clock, a file or a random source.
///
/// Storage is etcd's in-memory `treeIndex` with the values kept beside the revisions: `index`
/// maps each key to its history (so a read walks only the keys in its range and
/// binary-searches each history). There is no second, revision-ordered copy: the rare
/// operations that need revision order or every key (compaction, HashKV) walk the index, as
/// etcd's compaction walks its `treeIndex`, so each retained revision costs one compact entry.
///
/// Values of at least a threshold can live in a [`ValueLog`] instead of the heap
/// ([`MvccStore::with_value_log`]); the index then holds a reference, and every answer, compare,
/// hash and snapshot reads the value back. A failed read or append of the log panics (a local
/// disk failure, like a failed WAL write: the member must stop rather than answer wrongly).
///
/// Equality compares the replicated state only (values by content, wherever they are kept),
/// not the configured [`max_sessions`](MvccStore::max_sessions) bound or value log.
#[derive(Clone, Debug)]
pub struct MvccStore {
    /// The revision of the last write; 1 for a fresh store, as in etcd.
    pub(crate) current_revision: i64,
    /// The last compaction's revision; -1 before any (etcd's `compactMainRev`), so that
    /// `Compact(0)` on a fresh store succeeds and a second one fails, as in etcd.
    pub(crate) compact_revision: i64,
    /// Every key with retained history, including deleted keys not compacted away yet.
    pub(crate) index: BTreeMap<Key, KeyHistory>,
    /// How many entries all histories hold together (retained puts and deletes).
    pub(crate) revisions: usize,
    /// The last request and answer of each client session, to answer retries, by recency.
    /// Each record is a few words with any large answer behind an `Arc` ([`SessionRecord`]), so
    /// cloning the store copies no answer.
    pub(crate) sessions: Sessions,
    /// The stamp the next session touch gets; only grows (part of the replicated state, so a
    /// restored store stamps exactly as the original would).
    pub(crate) session_clock: u64,
    /// Configuration, not state: the most sessions kept (at least 1).
    pub(crate) max_sessions: usize,
    /// [`MvccStore::approx_size_bytes`], kept up to date by every change.
    pub(crate) approx_size: u64,
    /// How many keys exist at the current revision, kept up to date by every change.
    pub(crate) live_keys: u64,
    /// Configuration, not state: the value log and the shortest value it takes, if any.
    pub(crate) spill: Option<Spill>,
    /// Local, not state: the bytes of logged values the retained revisions reference (a value
    /// shared by an `ignore_value` put counts once per revision).
    pub(crate) logged_live: u64,
    /// Local, not state: whether writes record the keys they change in `changed` (a member
    /// with watchers turns it on; see [`MvccStore::set_track_changes`]).
    pub(crate) track_changes: bool,
    /// Local, not state: the keys the last applied write changed, in sub-revision order.
    pub(crate) changed: Vec<Key>,
}

/// The most client sessions a store keeps unless configured otherwise.
///
/// The server opens one session per write that carries a client's idempotency key, and gives
/// the writes a member forwards sessions that each serve one write at a time (so about as many
/// as were ever in flight at once); sessions are evicted least recently used first, so the
/// bound is really "how many keyed writes back a retry can still be recognised". 65 536 covers, for example, 6 500 writes/s with a
/// 10 s retry window, or 1 000 clients with 64 requests each in flight. A session recording a
/// put's answer costs roughly 100 bytes in memory (its hash table slot at the table's load
/// factor and its entries in the recency queue; the answer is kept inline) and 25 in a
/// snapshot, so a full table stays around 7 MiB in memory and 2 MiB
/// per snapshot (more if sessions record reads' kvs, which are kept once and shared by clones).
/// Raise it (on every member alike) for higher write rates or longer retry windows.
pub const DEFAULT_MAX_SESSIONS: usize = 65_536;

/// The estimated storage cost of one retained revision beyond its key and value: roughly what
/// etcd's bbolt backend spends on it (a 17-byte revision key, the `mvccpb.KeyValue` framing
/// with three revisions and a version, and the page element header).
pub(crate) const REVISION_OVERHEAD: u64 = 48;

/// The estimated cost of one session record beyond the keys and values its answer carries.
pub(crate) const SESSION_OVERHEAD: u64 = 64;

/// The estimated cost of one kv inside a recorded answer beyond its key and value.
const ANSWER_KV_OVERHEAD: u64 = 32;

impl PartialEq for MvccStore {
    fn eq(&self, other: &Self) -> bool {
        // Everything but `max_sessions`, which is configuration.
        self.current_revision == other.current_revision
            && self.compact_revision == other.compact_revision
            && self.same_index(other)
            && self.revisions == other.revisions
            && self.sessions == other.sessions
            && self.session_clock == other.session_clock
            && self.approx_size == other.approx_size
            && self.live_keys == other.live_keys
    }
}

impl Eq for MvccStore {}

impl MvccStore {
    /// Whether both indexes hold the same keys and changes, comparing values by content
    /// (either store may keep them inline or in its value log).
    fn same_index(&self, other: &Self) -> bool {
        let same_entry = |a: &Entry, b: &Entry| {
            a.revision() == b.revision()
                && a.version() == b.version()
                && a.create_revision() == b.create_revision()
                && a.lease() == b.lease()
                && a.value().len() == b.value().len()
                && if self.spill.is_none() && other.spill.is_none() {
                    a.value() == b.value()
                } else {
                    self.value_of(a) == other.value_of(b)
                }
        };
        self.index.len() == other.index.len()
            && self
                .index
                .iter()
                .zip(&other.index)
                .all(|((ka, ha), (kb, hb))| {
                    ka == kb
                        && ha.len() == hb.len()
                        && ha.iter().zip(hb.iter()).all(|(a, b)| same_entry(&a, &b))
                })
    }
}

/// The last request of a session and its outcome.
///
/// Kept to four words with no allocation of its own for the common case, because the table
/// holds up to [`DEFAULT_MAX_SESSIONS`] of them and `MvccStore::clone()` (the server's frozen
/// copy for a snapshot) copies every record: a record must cost a copy of a few words, never a
/// deep copy of an answer. `touched` changes on every answered retry, so it stays here, outside
/// the shared part, and no record needs copy-on-write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub(crate) last_sequence: u64,
    pub(crate) last_result: RecordedResult,
    /// The session clock when the session was last touched: its place in the order of use.
    pub(crate) touched: u64,
}

/// A session's recorded outcome, in one of two canonical forms (chosen only by
/// [`RecordedResult::new`], so equal outcomes always have equal forms and the derived
/// equality is equality of outcomes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordedResult {
    /// A successful put without `prev_kv`: by far the most common write, and its whole answer
    /// is one revision, so it is kept inline (no allocation) instead of as a 100-odd-byte
    /// `PutResponse`.
    Put { revision: i64 },
    /// Any other outcome, immutable once recorded and shared between clones of the store
    /// (recording a new outcome replaces the `Arc`, never writes through it).
    Other(Arc<Result<MvccResponse, MvccError>>),
}

impl RecordedResult {
    /// The canonical form of `result`.
    pub(crate) fn new(result: Result<MvccResponse, MvccError>) -> RecordedResult {
        match result {
            Ok(MvccResponse::Put(PutResponse {
                header,
                prev_kv: None,
            })) => RecordedResult::Put {
                revision: header.revision,
            },
            other => RecordedResult::Other(Arc::new(other)),
        }
    }

    /// The outcome exactly as it was recorded: borrowed, or rebuilt (without allocating) for a
    /// plain put.
    pub(crate) fn get(&self) -> Cow<'_, Result<MvccResponse, MvccError>> {
        match self {
            RecordedResult::Put { revision } => Cow::Owned(Ok(MvccResponse::Put(PutResponse {
                header: ResponseHeader {
                    revision: *revision,
                },
                prev_kv: None,
            }))),
            RecordedResult::Other(result) => Cow::Borrowed(result),
        }
    }
}

/// A write in progress: etcd's `storeTxnWrite`. All its changes get main revision
/// `begin + 1` and consecutive sub-revisions; the store revision moves only if one happened.
struct WriteTxn {
    begin: i64,
    changes: i64,
}

impl WriteTxn {
    fn new(begin: i64) -> Self {
        WriteTxn { begin, changes: 0 }
    }

    /// The revision reads inside the write see: including the write's own changes, if any.
    fn read_revision(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision {
            main: self.begin + 1,
            sub: self.changes,
        };
        self.changes += 1;
        revision
    }
}

/// Which branch each transaction takes, decided before any of them runs (etcd's `txnPath`).
struct TxnPath {
    succeeded: bool,
    /// One slot per operation of the chosen branch; `Some` for nested transactions.
    ops: Vec<Option<TxnPath>>,
}

impl Default for MvccStore {
    fn default() -> Self {
        MvccStore::new()
    }
}

impl MvccStore {
    /// An empty store at revision 1, never compacted, keeping at most
    /// [`DEFAULT_MAX_SESSIONS`] client sessions.
    pub fn new() -> MvccStore {
        MvccStore::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }

    /// An empty store keeping at most `max_sessions` client sessions (0 counts as 1).
    ///
    /// The bound changes which retries are recognised, so it changes the replicated state:
    /// every member must use the same bound (see [`MvccStore::set_max_sessions`]).
    pub fn with_max_sessions(max_sessions: usize) -> MvccStore {
        MvccStore {
            current_revision: 1,
            compact_revision: -1,
            index: BTreeMap::new(),
            revisions: 0,
            sessions: Sessions::default(),
            session_clock: 0,
            max_sessions: max_sessions.max(1),
            approx_size: 0,
            live_keys: 0,
            spill: None,
            logged_live: 0,
            track_changes: false,
            changed: Vec::new(),
        }
    }

    /// This store, keeping values of at least [`DEFAULT_VALUE_LOG_THRESHOLD`] bytes in `log`
    /// instead of the heap. See [`MvccStore::set_value_log`].
    pub fn with_value_log(mut self, log: Arc<dyn ValueLog>) -> MvccStore {
        self.set_value_log(Some(log), DEFAULT_VALUE_LOG_THRESHOLD);
        self
    }

    /// Keeps values of at least `min_len` bytes (0 counts as 1: empty values always stay
    /// inline) in `log` from now on, or every value in memory with `None`. Configuration, not
    /// state: answers, hashes, snapshots and equality are the same either way, so members may
    /// differ in it. Clones share the log.
    ///
    /// Values already retained move to their new place (read from the old log, appended to
    /// the new one or kept inline), so this may be called at any time; on an empty store it
    /// costs nothing. Panics if a log fails (see [`ValueLog`]).
    pub fn set_value_log(&mut self, log: Option<Arc<dyn ValueLog>>, min_len: usize) {
        let new = log.map(|log| Spill {
            log,
            min_len: min_len.max(1),
        });
        let old = std::mem::replace(&mut self.spill, new);
        let mut logged_live = 0u64;
        for history in self.index.values_mut() {
            history.change_each(|entry| {
                if entry.is_put() {
                    let value = load(old.as_ref(), entry.value());
                    entry.set_value(match &self.spill {
                        Some(spill) => spill.store(&value),
                        None => StoredValue::Inline(value.as_ref().into()),
                    });
                    if let StoredValueRef::Logged(at) = entry.value() {
                        logged_live += u64::from(at.len);
                    }
                }
            });
        }
        self.logged_live = logged_live;
    }

    /// The value log, if values are kept in one.
    pub fn value_log(&self) -> Option<&Arc<dyn ValueLog>> {
        self.spill.as_ref().map(|spill| &spill.log)
    }

    /// The bytes of logged values that retained revisions still reference; the rest of the
    /// log's [`ValueLog::size_bytes`] is garbage left by compaction (and by replaced state),
    /// which rewriting the log (defragmentation) would reclaim. etcd reports the pair as
    /// `dbSizeInUse` and `dbSize`. 0 without a log.
    pub fn value_log_live_bytes(&self) -> u64 {
        self.logged_live
    }

    /// A retained value, read back from the value log if it is there.
    pub(crate) fn value_of(&self, entry: &Entry) -> Bytes {
        load(self.spill.as_ref(), entry.value())
    }

    /// Stores a new value: in the value log if it takes it, else inline in a boxed slice of
    /// its own (never a slice of the request's buffer: keys and values arriving in a request
    /// are often slices of a larger buffer, a decoded log entry or a batch, which would stay
    /// alive for as long as the revision is retained).
    fn store_value(&mut self, value: &[u8]) -> StoredValue {
        match &self.spill {
            Some(spill) => {
                let stored = spill.store(value);
                if let StoredValue::Logged(at) = stored {
                    self.logged_live += u64::from(at.len);
                }
                stored
            }
            None => StoredValue::Inline(value.into()),
        }
    }

    /// Changes the most client sessions kept (0 counts as 1), evicting the least recently
    /// used ones at once if there are more.
    ///
    /// Sessions are evicted least recently used first; a session is used when a command of it
    /// is applied or when a retry is answered from it. Once a session is evicted, a retry of
    /// its last request is applied again, so the bound must comfortably exceed the number of
    /// requests that can still be retried at any time (clients x requests in flight, or write
    /// rate x retry window when every write gets its own session).
    ///
    /// Every member must apply the same bound at the same point of the log (in practice: set
    /// it at startup, identically on every member, including right after restoring a
    /// snapshot); members with different bounds would answer the same retry differently and
    /// diverge.
    pub fn set_max_sessions(&mut self, max_sessions: usize) {
        self.max_sessions = max_sessions.max(1);
        self.evict_sessions();
        // A lowered bound gives the memory back (eviction alone keeps the tables' capacity).
        self.sessions.shrink_to_fit();
    }

    /// The most client sessions kept.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// How many client sessions are kept now.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// An estimate of the retained data in bytes, in O(1): keys and values of every retained
    /// revision plus a per-revision overhead, plus the session table. Reported as etcd's
    /// `dbSize`; it grows with writes and shrinks with compaction (and session eviction), and
    /// it is the same on every member and after a snapshot restore.
    pub fn approx_size_bytes(&self) -> u64 {
        self.approx_size
    }

    /// How many keys exist at the current revision (deleted keys not counted), in O(1).
    pub fn key_count(&self) -> u64 {
        self.live_keys
    }

    /// The revision of the last change (what response headers report for reads).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, or -1 if the store was never compacted. Reads
    /// (and watches) below it fail with [`MvccError::Compacted`].
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// How many key changes (puts and deletes) are retained; grows with writes and shrinks
    /// with compaction, so it is the store's size measure (etcd's dbSize analogue).
    pub fn retained_revisions(&self) -> usize {
        self.revisions
    }

    /// Decodes and applies one log entry's bytes (an encoded [`MvccCommand`]).
    pub fn apply_bytes(&mut self, bytes: &Bytes) -> Result<MvccResponse, MvccError> {
        match MvccCommand::decode(bytes) {
            Ok(command) => self.apply_command(command),
            Err(error) => Err(MvccError::Malformed(error)),
        }
    }

    /// Applies a command at most once per `(client_id, sequence)`.
    ///
    /// A retry of the session's last sequence gets the recorded outcome again (success or
    /// error) without touching the keyspace; an older sequence gets
    /// [`MvccError::StaleSequence`]. Every outcome is recorded, reads included, so sessionless
    /// clients (`client_id` 0) are the cheap choice for reads.
    ///
    /// The session table is bounded ([`MvccStore::set_max_sessions`]): applying a command and
    /// answering a retry both make the session the most recently used, and a new session
    /// beyond the bound evicts the least recently used one. A retry whose session was evicted
    /// is applied again, like a new request.
    pub fn apply_command(&mut self, command: MvccCommand) -> Result<MvccResponse, MvccError> {
        self.changed.clear();
        if command.client_id != 0
            && let Some(session) = self.sessions.get(command.client_id)
        {
            if command.sequence == session.last_sequence {
                let result = session.last_result.get().into_owned();
                // The client is still retrying, so it may retry again: keep it the longest.
                self.touch_session(command.client_id);
                return result;
            }
            if command.sequence < session.last_sequence {
                return Err(MvccError::StaleSequence);
            }
        }
        let result = self.apply(command.request);
        if command.client_id != 0 {
            // Cloning a plain put's answer (the common case) allocates nothing.
            self.record_session(command.client_id, command.sequence, result.clone());
        }
        result
    }

    /// The next session stamp. Saturates rather than wrapping: restore refuses clocks near
    /// the limit, and 2^62 touches do not happen.
    fn next_session_stamp(&mut self) -> u64 {
        let stamp = self.session_clock;
        self.session_clock = self.session_clock.saturating_add(1);
        stamp
    }

    /// Makes an existing session the most recently used.
    fn touch_session(&mut self, client_id: u64) {
        let stamp = self.next_session_stamp();
        self.sessions.touch(client_id, stamp);
    }

    /// Records a session's latest request and outcome as its most recent use, then evicts
    /// down to the bound. O(log n) plus the size of the answer.
    fn record_session(
        &mut self,
        client_id: u64,
        last_sequence: u64,
        last_result: Result<MvccResponse, MvccError>,
    ) {
        let touched = self.next_session_stamp();
        let record = SessionRecord {
            last_sequence,
            last_result: RecordedResult::new(last_result),
            touched,
        };
        self.approx_size = self.approx_size.saturating_add(session_size(&record));
        if let Some(previous) = self.sessions.insert(client_id, record) {
            self.approx_size = self.approx_size.saturating_sub(session_size(&previous));
        }
        self.evict_sessions();
    }

    /// Drops the least recently used sessions while there are more than the bound.
    pub(crate) fn evict_sessions(&mut self) {
        while self.sessions.len() > self.max_sessions {
            let Some((_, evicted)) = self.sessions.pop_least_recent() else {
                break;
            };
            self.approx_size = self.approx_size.saturating_sub(session_size(&evicted));
        }
    }

    /// Recomputes the derived counters (size estimate, live keys) from scratch, after a
    /// restore built the maps directly.
    pub(crate) fn recount(&mut self) {
        let mut size: u64 = 0;
        let mut live: u64 = 0;
        let mut revisions = 0;
        let mut logged_live = 0u64;
        for (key, history) in &self.index {
            revisions += history.len();
            for entry in history.iter() {
                size = size.saturating_add(entry_size(key, &entry));
                logged_live += logged_len(&entry);
            }
            if history.last_live().is_some() {
                live += 1;
            }
        }
        for session in self.sessions.records() {
            size = size.saturating_add(session_size(session));
        }
        self.approx_size = size;
        self.live_keys = live;
        self.revisions = revisions;
        self.logged_live = logged_live;
    }

    /// Applies one request without deduplication.
    ///
    /// Runs etcd's request checks first (except the per-member `max_txn_ops` limit, see
    /// [`MvccRequest::validate`]); on any error the store is unchanged.
    pub fn apply(&mut self, request: MvccRequest) -> Result<MvccResponse, MvccError> {
        self.changed.clear();
        validate::check_request(&request, usize::MAX)?;
        match &request {
            MvccRequest::Range(range) => self.range(range).map(MvccResponse::Range),
            MvccRequest::Put(put) => self.apply_put(put).map(MvccResponse::Put),
            MvccRequest::DeleteRange(delete) => {
                Ok(MvccResponse::DeleteRange(self.apply_delete(delete)))
            }
            MvccRequest::Txn(txn) => self.apply_txn(txn).map(MvccResponse::Txn),
            MvccRequest::Compact(compact) => self.compact(compact).map(MvccResponse::Compact),
        }
    }

    /// Reads at the current state without going through the log: for serializable reads and
    /// for linearizable reads once ReadIndex confirmed this member has applied far enough.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        validate::check_range(request)?;
        self.range_at(request, self.current_revision)
    }

    fn apply_put(&mut self, request: &PutRequest) -> Result<PutResponse, MvccError> {
        if request.lease != 0 {
            // Leases are not implemented: no lease exists, so etcd's answer is "not found".
            return Err(MvccError::LeaseNotFound);
        }
        let mut txn = WriteTxn::new(self.current_revision);
        let response = self.put_in(&mut txn, request)?;
        self.commit(&txn);
        Ok(response)
    }

    fn apply_delete(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let mut txn = WriteTxn::new(self.current_revision);
        let response = self.delete_in(&mut txn, request);
        self.commit(&txn);
        response
    }

    fn apply_txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        // etcd decides every branch (nested ones too) against the state before the txn, then
        // checks the chosen operations (puts first, then ranges) before changing anything.
        let path = self.txn_path(request);
        self.check_txn_puts(request, &path)?;
        self.check_txn_ranges(request, &path)?;
        let mut txn = WriteTxn::new(self.current_revision);
        match self.execute_txn(&mut txn, request, &path) {
            Ok(mut response) => {
                self.commit(&txn);
                response.header.revision = self.current_revision;
                Ok(response)
            }
            Err(error) => {
                // Only reachable through etcd's from-key duplicate-check gap (a from-key delete
                // followed by an ignore_value put of a deleted key), where etcd 3.4 panics. We
                // undo the partial transaction and report the put's error instead.
                self.rollback(&txn);
                Err(error)
            }
        }
    }

    fn compact(&mut self, request: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        let revision = request.revision;
        if revision <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        self.compact_revision = revision;
        self.drop_history(revision);
        Ok(CompactionResponse {
            header: ResponseHeader {
                revision: self.current_revision,
            },
        })
    }

    /// Removes what compaction at `at` makes unreachable: per key, every change at or before
    /// `at` except the latest, and that one too if it is a delete (etcd's `keyIndex.compact`).
    ///
    /// Walks every key, as etcd's compaction walks its whole `treeIndex`: keys not changed
    /// since the previous compaction have at most one change at or before it, a put, so
    /// nothing is dropped from them. Compaction is rare; keeping a revision-ordered list just to
    /// visit fewer keys would cost memory on every revision.
    fn drop_history(&mut self, at: i64) {
        let approx_size = &mut self.approx_size;
        let revisions = &mut self.revisions;
        let logged_live = &mut self.logged_live;
        self.index.retain(|key, history| {
            *revisions -= history.compact(at, |entry| {
                *approx_size = approx_size.saturating_sub(entry_size(key, entry));
                *logged_live = logged_live.saturating_sub(logged_len(entry));
            });
            !history.is_empty()
        });
    }

    fn commit(&mut self, txn: &WriteTxn) {
        if txn.changes > 0 {
            self.current_revision = txn.begin + 1;
        }
    }

    /// Undoes every change of `txn`: they are the newest entries of their histories.
    ///
    /// Walks every key: only reachable through etcd's from-key duplicate-check gap (see
    /// [`MvccStore::apply`]'s transaction path), so it is not worth tracking changed keys on
    /// every write.
    fn rollback(&mut self, txn: &WriteTxn) {
        self.changed.clear();
        if txn.changes == 0 {
            return;
        }
        let main = txn.begin + 1;
        let approx_size = &mut self.approx_size;
        let revisions = &mut self.revisions;
        let live_keys = &mut self.live_keys;
        let logged_live = &mut self.logged_live;
        self.index.retain(|key, history| {
            let was_live = history.last_live().is_some();
            while history
                .last()
                .is_some_and(|entry| entry.mod_revision() == main)
            {
                if let Some(entry) = history.pop() {
                    *approx_size = approx_size.saturating_sub(entry_size(key, &entry));
                    *logged_live = logged_live.saturating_sub(logged_len(&entry));
                    *revisions -= 1;
                }
            }
            match (was_live, history.last_live().is_some()) {
                (true, false) => *live_keys -= 1,
                (false, true) => *live_keys += 1,
                _ => {}
            }
            !history.is_empty()
        });
    }

    /// The effective read revision of a request revision, with etcd's `rangeKeys` checks.
    fn read_revision(&self, requested: i64, current: i64) -> Result<i64, MvccError> {
        if requested > current {
            return Err(MvccError::FutureRevision);
        }
        let revision = if requested <= 0 { current } else { requested };
        if revision < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        Ok(revision)
    }

    /// etcd's applier `Range` with `current` as the reading transaction's revision.
    fn range_at(&self, request: &RangeRequest, current: i64) -> Result<RangeResponse, MvccError> {
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        // Sorting or filtering needs every kv; otherwise fetch one more than the limit to
        // learn whether there are more. (A sort_target with sort_order NONE still fetches only
        // limit + 1 and then sorts those, as etcd does.)
        let fetch_limit = if request.sort_order != SortOrder::None || filtered {
            usize::MAX
        } else if request.limit > 0 {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        } else {
            usize::MAX
        };
        let revision = self.read_revision(request.revision, current)?;

        // Values are read (from the value log, perhaps) only for the kvs answered, after
        // filtering and the limit, unless sorting by value needs them all first.
        let sort_by_value = request.sort_target == SortTarget::Value;
        let mut found: Vec<(KeyValue, Cow<'_, Entry>)> = Vec::new();
        let mut count: i64 = 0;
        let bounds = key_bounds(&request.key, &request.range_end);
        for (key, history) in self.index.range::<[u8], _>(bounds) {
            let Some(entry) = history.live_at(revision) else {
                continue;
            };
            count += 1;
            if !request.count_only && found.len() < fetch_limit {
                found.push((entry.kv_without_value(key), entry));
            }
        }
        let read_values = |found: &mut Vec<(KeyValue, Cow<'_, Entry>)>| {
            for (kv, entry) in found {
                kv.value = self.value_of(entry);
            }
        };
        if sort_by_value {
            read_values(&mut found);
        }

        if request.max_mod_revision != 0 {
            found.retain(|(kv, _)| kv.mod_revision <= request.max_mod_revision);
        }
        if request.min_mod_revision != 0 {
            found.retain(|(kv, _)| kv.mod_revision >= request.min_mod_revision);
        }
        if request.max_create_revision != 0 {
            found.retain(|(kv, _)| kv.create_revision <= request.max_create_revision);
        }
        if request.min_create_revision != 0 {
            found.retain(|(kv, _)| kv.create_revision >= request.min_create_revision);
        }
        sort_kvs(&mut found, request.sort_order, request.sort_target);

        let mut more = false;
        if let Ok(limit) = usize::try_from(request.limit)
            && limit > 0
            && found.len() > limit
        {
            found.truncate(limit);
            more = true;
        }
        if request.keys_only {
            if sort_by_value {
                for (kv, _) in &mut found {
                    kv.value = Bytes::new();
                }
            }
        } else if !sort_by_value {
            read_values(&mut found);
        }
        let kvs = found.into_iter().map(|(kv, _)| kv).collect();
        Ok(RangeResponse {
            header: ResponseHeader { revision: current },
            kvs,
            more,
            count,
        })
    }

    fn latest(&self, key: &[u8]) -> Option<&Entry> {
        self.index.get(key)?.last_live()
    }

    /// etcd's applier `Put` inside a write. Fails only before changing anything.
    fn put_in(
        &mut self,
        txn: &mut WriteTxn,
        request: &PutRequest,
    ) -> Result<PutResponse, MvccError> {
        let needs_previous = request.ignore_value || request.ignore_lease || request.prev_kv;
        let previous = if needs_previous {
            self.index
                .get_key_value(&request.key[..])
                .and_then(|(key, history)| Some((key, history.last_live()?)))
        } else {
            None
        };
        let prev_kv = match previous {
            Some((key, entry)) if request.prev_kv => Some(entry.kv(key, self.spill.as_ref())),
            _ => None,
        };
        // An ignore_value put keeps the previous value as stored (a logged one is not
        // appended again: both revisions reference it).
        let (kept_value, lease) = match (previous, request.ignore_value || request.ignore_lease) {
            (None, true) => return Err(MvccError::KeyNotFound),
            (Some((_, previous)), true) => (
                request.ignore_value.then(|| previous.value().to_stored()),
                if request.ignore_lease {
                    previous.lease()
                } else {
                    request.lease
                },
            ),
            (_, false) => (None, request.lease),
        };
        let value = match kept_value {
            Some(kept) => {
                if let StoredValue::Logged(at) = kept {
                    self.logged_live += u64::from(at.len);
                }
                kept
            }
            None => self.store_value(&request.value),
        };
        self.write_put(txn, &request.key, value, lease);
        Ok(PutResponse {
            header: ResponseHeader {
                revision: txn.begin + 1,
            },
            prev_kv,
        })
    }

    fn write_put(&mut self, txn: &mut WriteTxn, key: &[u8], value: StoredValue, lease: i64) {
        let revision = txn.next_revision();
        if self.track_changes {
            self.changed.push(Key::new(key));
        }
        // One search for a key already indexed (the common case), and no allocation.
        let history = match self.index.get_mut(key) {
            Some(history) => history,
            None => self.index.entry(Key::new(key)).or_default(),
        };
        let (create_revision, version) = match history.last_live() {
            Some(previous) => (previous.create_revision(), previous.version() + 1),
            None => {
                self.live_keys += 1;
                (revision.main, 1)
            }
        };
        let size = revision_size(key.len(), value.as_ref().len());
        self.approx_size = self.approx_size.saturating_add(size);
        self.revisions += 1;
        history.push(Entry::put(revision, version, create_revision, lease, value));
    }

    /// etcd's applier `DeleteRange` inside a write.
    fn delete_in(
        &mut self,
        txn: &mut WriteTxn,
        request: &DeleteRangeRequest,
    ) -> DeleteRangeResponse {
        let mut prev_kvs = Vec::new();
        let mut deleted = 0;
        let bounds = key_bounds(&request.key, &request.range_end);
        let spill = self.spill.as_ref();
        for (key, history) in self.index.range_mut::<[u8], _>(bounds) {
            let Some(previous) = history.last_live() else {
                continue;
            };
            if request.prev_kv {
                prev_kvs.push(previous.kv(key, spill));
            }
            let revision = txn.next_revision();
            if self.track_changes {
                self.changed.push(key.clone());
            }
            history.push(Entry::tombstone(revision));
            self.revisions += 1;
            self.live_keys -= 1;
            self.approx_size = self.approx_size.saturating_add(revision_size(key.len(), 0));
            deleted += 1;
        }
        DeleteRangeResponse {
            header: ResponseHeader {
                revision: txn.read_revision(),
            },
            deleted,
            prev_kvs,
        }
    }

    fn txn_path(&self, request: &TxnRequest) -> TxnPath {
        let succeeded = request
            .compare
            .iter()
            .all(|compare| self.compare_holds(compare));
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        TxnPath {
            succeeded,
            ops: ops
                .iter()
                .map(|op| match op {
                    RequestOp::Txn(nested) => Some(self.txn_path(nested)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// etcd's `applyCompare` at the current revision: every key in the range must satisfy the
    /// compare; an empty range compares a zero kv, except that a VALUE compare then fails.
    fn compare_holds(&self, compare: &Compare) -> bool {
        let mut matched = false;
        let bounds = key_bounds(&compare.key, &compare.range_end);
        for history in self
            .index
            .range::<[u8], _>(bounds)
            .map(|(_, history)| history)
        {
            let Some(entry) = history.last_live() else {
                continue;
            };
            matched = true;
            if !compare_kv(compare, entry, |entry| self.value_of(entry)) {
                return false;
            }
        }
        if matched {
            true
        } else if compare.target == CompareTarget::Value {
            false
        } else {
            compare_kv(compare, &Entry::zero(), |entry| self.value_of(entry))
        }
    }

    /// etcd's `checkRequestPut` over the chosen operations, against the state before the txn.
    fn check_txn_puts(&self, request: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        for (op, nested) in chosen(request, path) {
            match (op, nested) {
                (RequestOp::Txn(txn), Some(nested)) => self.check_txn_puts(txn, nested)?,
                (RequestOp::Put(put), _) => {
                    if (put.ignore_value || put.ignore_lease) && self.latest(&put.key).is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    if put.lease != 0 {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's `checkRequestRange`: explicit revisions must be readable before the txn starts.
    fn check_txn_ranges(&self, request: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        for (op, nested) in chosen(request, path) {
            match (op, nested) {
                (RequestOp::Txn(txn), Some(nested)) => self.check_txn_ranges(txn, nested)?,
                (RequestOp::Range(range), _) => {
                    if range.revision == 0 {
                        continue;
                    }
                    if range.revision > self.current_revision {
                        return Err(MvccError::FutureRevision);
                    }
                    // Taken literally, as etcd does: a negative revision counts as compacted
                    // once the compacted revision is above it.
                    if range.revision < self.compact_revision {
                        return Err(MvccError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn execute_txn(
        &mut self,
        txn: &mut WriteTxn,
        request: &TxnRequest,
        path: &TxnPath,
    ) -> Result<TxnResponse, MvccError> {
        let mut responses = Vec::with_capacity(path.ops.len());
        for (op, nested) in chosen(request, path) {
            let response = match (op, nested) {
                (RequestOp::Range(range), _) => {
                    ResponseOp::Range(self.range_at(range, txn.read_revision())?)
                }
                (RequestOp::Put(put), _) => ResponseOp::Put(self.put_in(txn, put)?),
                (RequestOp::DeleteRange(delete), _) => {
                    ResponseOp::DeleteRange(self.delete_in(txn, delete))
                }
                (RequestOp::Txn(nested_request), Some(nested_path)) => {
                    ResponseOp::Txn(self.execute_txn(txn, nested_request, nested_path)?)
                }
                // Validation rejects unset operations before a txn runs.
                (RequestOp::Txn(_), None) | (RequestOp::Unset, _) => {
                    return Err(MvccError::KeyNotFound);
                }
            };
            responses.push(response);
        }
        Ok(TxnResponse {
            // etcd 3.4 sets the header revision only on the outermost response.
            header: ResponseHeader { revision: 0 },
            succeeded: path.succeeded,
            responses,
        })
    }
}

/// The operations of the branch `path` chose, each with its nested path.
fn chosen<'a>(
    request: &'a TxnRequest,
    path: &'a TxnPath,
) -> impl Iterator<Item = (&'a RequestOp, Option<&'a TxnPath>)> {
    let ops = if path.succeeded {
        &request.success
    } else {
        &request.failure
    };
    ops.iter().zip(path.ops.iter().map(Option::as_ref))
}

/// etcd's `compareKV`: the field named by `target`, against the union's value of that kind
/// (0 or empty when the union holds another kind or nothing). `value_of` reads the entry's
/// value, only for a VALUE compare.
fn compare_kv(compare: &Compare, kv: &Entry, value_of: impl Fn(&Entry) -> Bytes) -> bool {
    let number = |pick: fn(&CompareTargetUnion) -> Option<i64>| {
        compare.target_union.as_ref().and_then(pick).unwrap_or(0)
    };
    let ordering = match compare.target {
        CompareTarget::Value => {
            let value: &[u8] = match &compare.target_union {
                Some(CompareTargetUnion::Value(value)) => value,
                _ => &[],
            };
            value_of(kv).as_ref().cmp(value)
        }
        CompareTarget::Create => kv.create_revision().cmp(&number(|union| match union {
            CompareTargetUnion::CreateRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision().cmp(&number(|union| match union {
            CompareTargetUnion::ModRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Version => kv.version().cmp(&number(|union| match union {
            CompareTargetUnion::Version(version) => Some(*version),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease().cmp(&number(|union| match union {
            CompareTargetUnion::Lease(lease) => Some(*lease),
            _ => None,
        })),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// etcd's Range sorting. Go's `sort.Sort` is not stable, so etcd leaves the order of equal
/// elements unspecified; we sort stably, so ties stay in key order in both directions
/// (which is also what Go produces for small result sets).
/// Sorts kvs found with their entries (values may not be read yet unless sorting by value).
fn sort_kvs(kvs: &mut [(KeyValue, Cow<'_, Entry>)], order: SortOrder, target: SortTarget) {
    let order = if target != SortTarget::Key && order == SortOrder::None {
        SortOrder::Ascend
    } else {
        order
    };
    let compare =
        |(a, _): &(KeyValue, Cow<'_, Entry>), (b, _): &(KeyValue, Cow<'_, Entry>)| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(compare),
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
    }
}

/// The estimated storage cost of a revision with a key and value of these lengths.
fn revision_size(key_len: usize, value_len: usize) -> u64 {
    (key_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(REVISION_OVERHEAD)
}

/// The bytes of `entry`'s value kept in the value log (0 if inline).
fn logged_len(entry: &Entry) -> u64 {
    match entry.value() {
        StoredValueRef::Logged(at) => u64::from(at.len),
        StoredValueRef::Inline(_) => 0,
    }
}

/// The estimated storage cost of one retained change of `key`.
pub(crate) fn entry_size(key: &[u8], entry: &Entry) -> u64 {
    revision_size(key.len(), entry.value().len())
}

/// The estimated cost of a session record: a fixed part plus the kvs its answer carries.
/// Proportional to the answer, which was just built (or decoded), so it adds no asymptotic
/// cost.
pub(crate) fn session_size(session: &SessionRecord) -> u64 {
    let answer = match session.last_result.get().as_ref() {
        Ok(response) => response_size(response),
        Err(_) => 0,
    };
    SESSION_OVERHEAD.saturating_add(answer)
}

fn kvs_size<'a>(kvs: impl IntoIterator<Item = &'a KeyValue>) -> u64 {
    kvs.into_iter().fold(0u64, |total, kv| {
        total
            .saturating_add(kv.key.len() as u64)
            .saturating_add(kv.value.len() as u64)
            .saturating_add(ANSWER_KV_OVERHEAD)
    })
}

fn response_size(response: &MvccResponse) -> u64 {
    match response {
        MvccResponse::Range(range) => kvs_size(&range.kvs),
        MvccResponse::Put(put) => kvs_size(&put.prev_kv),
        MvccResponse::DeleteRange(delete) => kvs_size(&delete.prev_kvs),
        MvccResponse::Txn(txn) => txn_response_size(txn),
        MvccResponse::Compact(_) => 0,
    }
}

fn txn_response_size(txn: &TxnResponse) -> u64 {
    txn.responses.iter().fold(0u64, |total, op| {
        let op_size = match op {
            ResponseOp::Range(range) => kvs_size(&range.kvs),
            ResponseOp::Put(put) => kvs_size(&put.prev_kv),
            ResponseOp::DeleteRange(delete) => kvs_size(&delete.prev_kvs),
            ResponseOp::Txn(nested) => txn_response_size(nested),
        };
        total
            .saturating_add(op_size)
            .saturating_add(ANSWER_KV_OVERHEAD)
    })
}

#[cfg(test)]
mod tests {
    use super::{MvccStore, SessionRecord};
    use crate::mvcc::{MvccCommand, MvccRequest, PutRequest};

    /// `MvccStore::clone()` copies every session record (up to `DEFAULT_MAX_SESSIONS`), and
    /// the table holds them inline: keep one a few words, with any answer behind an `Arc`.
    #[test]
    fn a_session_record_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<SessionRecord>(), 32);
    }

    /// A freeze for a snapshot is a clone: later writes, and sessions opened and evicted
    /// meanwhile, must not reach the frozen copy.
    #[test]
    fn a_clone_stays_frozen() {
        let mut store = MvccStore::with_max_sessions(100);
        let put = |store: &mut MvccStore, client_id: u64, key: String| {
            store
                .apply_command(MvccCommand {
                    client_id,
                    sequence: 1,
                    request: MvccRequest::Put(PutRequest {
                        key: key.into_bytes().into(),
                        value: vec![1; 8].into(),
                        ..PutRequest::default()
                    }),
                })
                .unwrap();
        };
        for n in 0..1000u64 {
            put(&mut store, n + 1, format!("key-{n}"));
        }
        let frozen = store.clone();
        let before = frozen.snapshot();
        for n in 0..1000u64 {
            put(&mut store, 5000 + n, format!("key-{}", n % 10));
        }
        assert_eq!(frozen.snapshot(), before);
        assert_ne!(store.snapshot(), before);
        assert_eq!(MvccStore::restore(&before).unwrap(), frozen);
    }
}
