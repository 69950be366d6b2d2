//! The MVCC store: etcd 3.4's applier (`etcdserver/apply.go`) and mvcc store
//! (`mvcc/kvstore*.go`, `mvcc/key_index.go`) semantics over two ordered maps.

use super::error::MvccError;
use super::index::{Entry, KeyHistory, Revision, key_bounds, owned};
use super::types::{
    CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget,
    CompareTargetUnion, DeleteRangeRequest, DeleteRangeResponse, KeyValue, MvccCommand,
    MvccRequest, MvccResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use super::validate;
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A deterministic multi-version key-value store with etcd v3 semantics.
///
/// Every member applies the same log entries in the same order and so computes the same
/// responses and the same state; nothing here reads a clock, a file or a random source.
///
/// Storage mirrors etcd's split between its in-memory `treeIndex` and its revision-keyed
/// backend: `index` maps each key to its history (so a read walks only the keys in its range
/// and binary-searches each history), and `revision_log` lists which key changed at each
/// revision (so compaction and, later, watches touch only the revisions they need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvccStore {
    /// The revision of the last write; 1 for a fresh store, as in etcd.
    pub(crate) current_revision: i64,
    /// The last compaction's revision; -1 before any (etcd's `compactMainRev`), so that
    /// `Compact(0)` on a fresh store succeeds and a second one fails, as in etcd.
    pub(crate) compact_revision: i64,
    /// Every key with retained history, including deleted keys not compacted away yet.
    pub(crate) index: BTreeMap<Bytes, KeyHistory>,
    /// The key changed at each retained revision; exactly one entry per history entry.
    pub(crate) revision_log: BTreeMap<Revision, Bytes>,
    /// The last request and answer of each client session, to answer retries.
    pub(crate) sessions: BTreeMap<u64, SessionRecord>,
}

/// The last request of a session and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub(crate) last_sequence: u64,
    pub(crate) last_result: Result<MvccResponse, MvccError>,
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
    /// An empty store at revision 1, never compacted.
    pub fn new() -> MvccStore {
        MvccStore {
            current_revision: 1,
            compact_revision: -1,
            index: BTreeMap::new(),
            revision_log: BTreeMap::new(),
            sessions: BTreeMap::new(),
        }
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
        self.revision_log.len()
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
    /// error) without touching the store; an older sequence gets [`MvccError::StaleSequence`].
    /// Every outcome is recorded, reads included, so sessionless clients (`client_id` 0) are
    /// the cheap choice for reads.
    pub fn apply_command(&mut self, command: MvccCommand) -> Result<MvccResponse, MvccError> {
        if command.client_id != 0
            && let Some(session) = self.sessions.get(&command.client_id)
        {
            if command.sequence == session.last_sequence {
                return session.last_result.clone();
            }
            if command.sequence < session.last_sequence {
                return Err(MvccError::StaleSequence);
            }
        }
        let result = self.apply(command.request);
        if command.client_id != 0 {
            self.sessions.insert(
                command.client_id,
                SessionRecord {
                    last_sequence: command.sequence,
                    last_result: result.clone(),
                },
            );
        }
        result
    }

    /// Applies one request without deduplication.
    ///
    /// Runs etcd's request checks first (except the per-member `max_txn_ops` limit, see
    /// [`MvccRequest::validate`]); on any error the store is unchanged.
    pub fn apply(&mut self, request: MvccRequest) -> Result<MvccResponse, MvccError> {
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
        let previous = self.compact_revision;
        self.compact_revision = revision;
        self.drop_history(previous, revision);
        Ok(CompactionResponse {
            header: ResponseHeader {
                revision: self.current_revision,
            },
        })
    }

    /// Removes what compaction at `at` makes unreachable, given the last compaction was at
    /// `previous`: per key, every change at or before `at` except the latest, and that one
    /// too if it is a delete (etcd's `keyIndex.compact`).
    ///
    /// Only keys changed in (`previous`, `at`] can have anything to drop: every other key
    /// already has at most one change at or before `previous`. So the work is proportional to
    /// the history being discarded, not to the size of the store.
    fn drop_history(&mut self, previous: i64, at: i64) {
        let start = Revision {
            main: previous.saturating_add(1).max(0),
            sub: 0,
        };
        let end = Revision {
            main: at,
            sub: i64::MAX,
        };
        if start > end {
            return;
        }
        let touched: BTreeSet<Bytes> = self
            .revision_log
            .range(start..=end)
            .map(|(_, key)| key.clone())
            .collect();
        for key in touched {
            let Some(history) = self.index.get_mut(&key) else {
                continue;
            };
            let at_or_before = history
                .entries
                .partition_point(|entry| entry.revision.main <= at);
            let Some(latest) = at_or_before.checked_sub(1) else {
                continue;
            };
            let keep_latest = history.entries[latest].kv.is_some();
            let drop_count = if keep_latest { latest } else { at_or_before };
            for entry in history.entries.drain(..drop_count) {
                self.revision_log.remove(&entry.revision);
            }
            if history.entries.is_empty() {
                self.index.remove(&key);
            }
        }
    }

    fn commit(&mut self, txn: &WriteTxn) {
        if txn.changes > 0 {
            self.current_revision = txn.begin + 1;
        }
    }

    /// Undoes every change of `txn`: they are the newest entries of their histories.
    fn rollback(&mut self, txn: &WriteTxn) {
        if txn.changes == 0 {
            return;
        }
        let written = self.revision_log.split_off(&Revision {
            main: txn.begin + 1,
            sub: 0,
        });
        for (revision, key) in written.into_iter().rev() {
            if let Some(history) = self.index.get_mut(&key) {
                if history.entries.last().map(|entry| entry.revision) == Some(revision) {
                    history.entries.pop();
                }
                if history.entries.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
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

        let mut kvs = Vec::new();
        let mut count: i64 = 0;
        let bounds = key_bounds(&request.key, &request.range_end);
        for history in self
            .index
            .range::<[u8], _>(bounds)
            .map(|(_, history)| history)
        {
            let Some(kv) = history.live_at(revision) else {
                continue;
            };
            count += 1;
            if !request.count_only && kvs.len() < fetch_limit {
                kvs.push(kv.clone());
            }
        }

        if request.max_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision <= request.max_mod_revision);
        }
        if request.min_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision >= request.min_mod_revision);
        }
        if request.max_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision <= request.max_create_revision);
        }
        if request.min_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision >= request.min_create_revision);
        }
        sort_kvs(&mut kvs, request.sort_order, request.sort_target);

        let mut more = false;
        if let Ok(limit) = usize::try_from(request.limit)
            && limit > 0
            && kvs.len() > limit
        {
            kvs.truncate(limit);
            more = true;
        }
        if request.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse {
            header: ResponseHeader { revision: current },
            kvs,
            more,
            count,
        })
    }

    fn latest(&self, key: &[u8]) -> Option<&KeyValue> {
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
            self.latest(&request.key).cloned()
        } else {
            None
        };
        let (value, lease) = match (&previous, request.ignore_value || request.ignore_lease) {
            (None, true) => return Err(MvccError::KeyNotFound),
            (Some(previous), true) => (
                if request.ignore_value {
                    previous.value.clone()
                } else {
                    owned(&request.value)
                },
                if request.ignore_lease {
                    previous.lease
                } else {
                    request.lease
                },
            ),
            (_, false) => (owned(&request.value), request.lease),
        };
        self.write_put(txn, &request.key, value, lease);
        Ok(PutResponse {
            header: ResponseHeader {
                revision: txn.begin + 1,
            },
            prev_kv: if request.prev_kv { previous } else { None },
        })
    }

    fn write_put(&mut self, txn: &mut WriteTxn, key: &[u8], value: Bytes, lease: i64) {
        let revision = txn.next_revision();
        // Share one buffer per key between the index, its kvs and the revision log.
        let stored_key = match self.index.get_key_value(key) {
            Some((stored, _)) => stored.clone(),
            None => owned(key),
        };
        let history = self.index.entry(stored_key.clone()).or_default();
        let (create_revision, version) = match history.last_live() {
            Some(previous) => (previous.create_revision, previous.version + 1),
            None => (revision.main, 1),
        };
        history.entries.push(Entry {
            revision,
            kv: Some(KeyValue {
                key: stored_key.clone(),
                create_revision,
                mod_revision: revision.main,
                version,
                value,
                lease,
            }),
        });
        self.revision_log.insert(revision, stored_key);
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
        for (key, history) in self.index.range_mut::<[u8], _>(bounds) {
            let Some(previous) = history.last_live() else {
                continue;
            };
            if request.prev_kv {
                prev_kvs.push(previous.clone());
            }
            let revision = txn.next_revision();
            history.entries.push(Entry { revision, kv: None });
            self.revision_log.insert(revision, key.clone());
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
            let Some(kv) = history.last_live() else {
                continue;
            };
            matched = true;
            if !compare_kv(compare, kv) {
                return false;
            }
        }
        if matched {
            true
        } else if compare.target == CompareTarget::Value {
            false
        } else {
            compare_kv(compare, &KeyValue::default())
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
/// (0 or empty when the union holds another kind or nothing).
fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    let number = |pick: fn(&CompareTargetUnion) -> Option<i64>| {
        compare.target_union.as_ref().and_then(pick).unwrap_or(0)
    };
    let ordering = match compare.target {
        CompareTarget::Value => {
            let value: &[u8] = match &compare.target_union {
                Some(CompareTargetUnion::Value(value)) => value,
                _ => &[],
            };
            kv.value.as_ref().cmp(value)
        }
        CompareTarget::Create => kv.create_revision.cmp(&number(|union| match union {
            CompareTargetUnion::CreateRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&number(|union| match union {
            CompareTargetUnion::ModRevision(revision) => Some(*revision),
            _ => None,
        })),
        CompareTarget::Version => kv.version.cmp(&number(|union| match union {
            CompareTargetUnion::Version(version) => Some(*version),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&number(|union| match union {
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
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = if target != SortTarget::Key && order == SortOrder::None {
        SortOrder::Ascend
    } else {
        order
    };
    let compare = |a: &KeyValue, b: &KeyValue| match target {
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
