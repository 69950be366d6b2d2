//! Model-based test: `MvccStore` against a naive reference that keeps every change in one
//! `Vec` and replays it from the start for every read.
//!
//! The reference shares no code with the store except the request checks
//! (`MvccRequest::validate`), whose etcd rules have their own unit tests; everything about
//! revisions, versions, history, compaction, reads and transaction execution is recomputed
//! here the slow, obvious way.

use bytes::Bytes;
use kv::mvcc::{
    CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget,
    CompareTargetUnion, DeleteRangeRequest, DeleteRangeResponse, KeyValue, MemoryValueLog,
    MvccCommand, MvccError, MvccRequest, MvccResponse, MvccStore, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse, ValueLog,
};
use proptest::prelude::*;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One change: a put (`Some(value)`) or a delete (`None`) of `key` at revision `main`.
#[derive(Clone, Debug)]
struct Change {
    main: i64,
    key: Bytes,
    value: Option<Bytes>,
}

#[derive(Clone, Debug)]
struct Model {
    changes: Vec<Change>,
    current: i64,
    compact: i64,
}

/// Which branch a transaction (and each nested one) takes.
struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

fn in_range(candidate: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        candidate == key
    } else if range_end == b"\0" {
        candidate >= key
    } else {
        key <= candidate && candidate < range_end
    }
}

impl Model {
    fn new() -> Model {
        Model {
            changes: Vec::new(),
            current: 1,
            compact: -1,
        }
    }

    /// Every key alive at `revision`, by replaying the whole history.
    fn state_at(&self, revision: i64) -> BTreeMap<Bytes, KeyValue> {
        let mut state: BTreeMap<Bytes, KeyValue> = BTreeMap::new();
        for change in self.changes.iter().filter(|change| change.main <= revision) {
            match &change.value {
                None => {
                    state.remove(&change.key);
                }
                Some(value) => {
                    let (create_revision, version) = match state.get(&change.key) {
                        Some(previous) => (previous.create_revision, previous.version + 1),
                        None => (change.main, 1),
                    };
                    state.insert(
                        change.key.clone(),
                        KeyValue {
                            key: change.key.clone(),
                            create_revision,
                            mod_revision: change.main,
                            version,
                            value: value.clone(),
                            lease: 0,
                        },
                    );
                }
            }
        }
        state
    }

    fn in_range_at(&self, revision: i64, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
        self.state_at(revision)
            .into_values()
            .filter(|kv| in_range(&kv.key, key, range_end))
            .collect()
    }

    fn apply(&mut self, request: &MvccRequest) -> Result<MvccResponse, MvccError> {
        request.validate(usize::MAX)?;
        match request {
            MvccRequest::Range(range) => self.range(range, self.current).map(MvccResponse::Range),
            MvccRequest::Put(put) => {
                if put.lease != 0 {
                    return Err(MvccError::LeaseNotFound);
                }
                let mut changed = false;
                let response = self.put(put, &mut changed)?;
                self.current += i64::from(changed);
                Ok(MvccResponse::Put(response))
            }
            MvccRequest::DeleteRange(delete) => {
                let mut changed = false;
                let response = self.delete(delete, &mut changed);
                self.current += i64::from(changed);
                Ok(MvccResponse::DeleteRange(response))
            }
            MvccRequest::Txn(txn) => self.txn(txn).map(MvccResponse::Txn),
            MvccRequest::Compact(compact) => {
                if compact.revision <= self.compact {
                    return Err(MvccError::Compacted);
                }
                if compact.revision > self.current {
                    return Err(MvccError::FutureRevision);
                }
                self.compact = compact.revision;
                Ok(MvccResponse::Compact(CompactionResponse {
                    header: ResponseHeader {
                        revision: self.current,
                    },
                }))
            }
        }
    }

    fn range(&self, request: &RangeRequest, current: i64) -> Result<RangeResponse, MvccError> {
        if request.revision > current {
            return Err(MvccError::FutureRevision);
        }
        let revision = if request.revision <= 0 {
            current
        } else {
            request.revision
        };
        if revision < self.compact {
            return Err(MvccError::Compacted);
        }
        let all = self.in_range_at(revision, &request.key, &request.range_end);
        let count = all.len() as i64;
        let mut kvs = if request.count_only { Vec::new() } else { all };
        let filtered = [
            request.min_mod_revision,
            request.max_mod_revision,
            request.min_create_revision,
            request.max_create_revision,
        ]
        .iter()
        .any(|filter| *filter != 0);
        if request.sort_order == SortOrder::None && !filtered && request.limit > 0 {
            kvs.truncate(request.limit as usize + 1);
        }
        kvs.retain(|kv| {
            (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
                && (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
                && (request.min_create_revision == 0
                    || kv.create_revision >= request.min_create_revision)
                && (request.max_create_revision == 0
                    || kv.create_revision <= request.max_create_revision)
        });
        let order = match (request.sort_order, request.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        };
        let field = |kv: &KeyValue| -> (i64, Bytes) {
            match request.sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Bytes::new()),
                SortTarget::Create => (kv.create_revision, Bytes::new()),
                SortTarget::Mod => (kv.mod_revision, Bytes::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by_key(field),
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(field(kv))),
        }
        let mut more = false;
        if request.limit > 0 && kvs.len() > request.limit as usize {
            kvs.truncate(request.limit as usize);
            more = true;
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
        }
        Ok(RangeResponse {
            header: ResponseHeader { revision: current },
            kvs,
            more,
            count,
        })
    }

    /// The revision reads see inside a write that has (or has not) changed something yet.
    fn read_revision(&self, changed: bool) -> i64 {
        self.current + i64::from(changed)
    }

    fn put(&mut self, request: &PutRequest, changed: &mut bool) -> Result<PutResponse, MvccError> {
        let previous = self
            .state_at(self.read_revision(*changed))
            .remove(&request.key);
        if (request.ignore_value || request.ignore_lease) && previous.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let value = match (&previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            _ => request.value.clone(),
        };
        self.changes.push(Change {
            main: self.current + 1,
            key: request.key.clone(),
            value: Some(value),
        });
        *changed = true;
        Ok(PutResponse {
            header: ResponseHeader {
                revision: self.current + 1,
            },
            prev_kv: previous.filter(|_| request.prev_kv),
        })
    }

    fn delete(&mut self, request: &DeleteRangeRequest, changed: &mut bool) -> DeleteRangeResponse {
        let victims = self.in_range_at(
            self.read_revision(*changed),
            &request.key,
            &request.range_end,
        );
        for kv in &victims {
            self.changes.push(Change {
                main: self.current + 1,
                key: kv.key.clone(),
                value: None,
            });
            *changed = true;
        }
        DeleteRangeResponse {
            header: ResponseHeader {
                revision: self.read_revision(*changed),
            },
            deleted: victims.len() as i64,
            prev_kvs: if request.prev_kv { victims } else { Vec::new() },
        }
    }

    fn compare_holds(&self, compare: &Compare) -> bool {
        let kvs = self.in_range_at(self.current, &compare.key, &compare.range_end);
        if kvs.is_empty() {
            return compare.target != CompareTarget::Value
                && compare_one(compare, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_one(compare, kv))
    }

    fn decide(&self, request: &TxnRequest) -> Path {
        let succeeded = request
            .compare
            .iter()
            .all(|compare| self.compare_holds(compare));
        let nested = branch(request, succeeded)
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(txn) => Some(self.decide(txn)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    /// The chosen operations in order, nested ones flattened (for the pre-checks).
    fn chosen_ops<'a>(request: &'a TxnRequest, path: &'a Path, out: &mut Vec<&'a RequestOp>) {
        let mut nested = path.nested.iter();
        for op in branch(request, path.succeeded) {
            match op {
                RequestOp::Txn(txn) => Model::chosen_ops(txn, nested.next().unwrap(), out),
                other => out.push(other),
            }
        }
    }

    fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let path = self.decide(request);
        let mut ops = Vec::new();
        Model::chosen_ops(request, &path, &mut ops);
        let before = self.state_at(self.current);
        for op in &ops {
            if let RequestOp::Put(put) = op {
                if (put.ignore_value || put.ignore_lease) && !before.contains_key(&put.key) {
                    return Err(MvccError::KeyNotFound);
                }
                if put.lease != 0 {
                    return Err(MvccError::LeaseNotFound);
                }
            }
        }
        for op in &ops {
            if let RequestOp::Range(range) = op
                && range.revision != 0
            {
                if range.revision > self.current {
                    return Err(MvccError::FutureRevision);
                }
                if range.revision < self.compact {
                    return Err(MvccError::Compacted);
                }
            }
        }
        let saved = self.changes.clone();
        let mut changed = false;
        match self.execute(request, &path, &mut changed) {
            Ok(mut response) => {
                self.current += i64::from(changed);
                response.header.revision = self.current;
                Ok(response)
            }
            Err(error) => {
                self.changes = saved;
                Err(error)
            }
        }
    }

    fn execute(
        &mut self,
        request: &TxnRequest,
        path: &Path,
        changed: &mut bool,
    ) -> Result<TxnResponse, MvccError> {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch(request, path.succeeded) {
            responses.push(match op {
                RequestOp::Range(range) => {
                    ResponseOp::Range(self.range(range, self.read_revision(*changed))?)
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put(put, changed)?),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.delete(delete, changed))
                }
                RequestOp::Txn(txn) => {
                    ResponseOp::Txn(self.execute(txn, nested.next().unwrap(), changed)?)
                }
                RequestOp::Unset => unreachable!("validation rejects unset ops"),
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader { revision: 0 },
            succeeded: path.succeeded,
            responses,
        })
    }
}

fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &request.success
    } else {
        &request.failure
    }
}

fn compare_one(compare: &Compare, kv: &KeyValue) -> bool {
    let union = compare.target_union.as_ref();
    let ordering = match compare.target {
        CompareTarget::Value => {
            let wanted = match union {
                Some(CompareTargetUnion::Value(value)) => value.clone(),
                _ => Bytes::new(),
            };
            kv.value.cmp(&wanted)
        }
        CompareTarget::Version => kv.version.cmp(&match union {
            Some(CompareTargetUnion::Version(version)) => *version,
            _ => 0,
        }),
        CompareTarget::Create => kv.create_revision.cmp(&match union {
            Some(CompareTargetUnion::CreateRevision(revision)) => *revision,
            _ => 0,
        }),
        CompareTarget::Mod => kv.mod_revision.cmp(&match union {
            Some(CompareTargetUnion::ModRevision(revision)) => *revision,
            _ => 0,
        }),
        CompareTarget::Lease => kv.lease.cmp(&match union {
            Some(CompareTargetUnion::Lease(lease)) => *lease,
            _ => 0,
        }),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

// ---- generators ----

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        20 => prop::sample::select(vec!["a", "b", "c", "ab", "ba", "\0"]),
        1 => Just(""),
    ]
    .prop_map(|key| Bytes::from_static(key.as_bytes()))
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"])
        .prop_map(|value| Bytes::from_static(value.as_bytes()))
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(Bytes::new()),
        1 => Just(Bytes::from_static(b"\0")),
        2 => prop::sample::select(vec!["b", "c", "z"]).prop_map(|end| Bytes::from_static(end.as_bytes())),
    ]
}

fn revision() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(0i64), 4 => -2i64..20]
}

fn filter() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0i64), 1 => 1i64..30]
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    (
        (key(), range_end(), -1i64..4, revision()),
        (0u8..3, 0u8..5, any::<bool>(), prop::bool::weighted(0.1)),
        (filter(), filter(), filter(), filter()),
    )
        .prop_map(
            |(
                (key, range_end, limit, revision),
                (order, target, keys_only, count_only),
                filters,
            )| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend]
                        [order as usize],
                    sort_target: [
                        SortTarget::Key,
                        SortTarget::Version,
                        SortTarget::Create,
                        SortTarget::Mod,
                        SortTarget::Value,
                    ][target as usize],
                    serializable: false,
                    keys_only,
                    count_only,
                    min_mod_revision: filters.0,
                    max_mod_revision: filters.1,
                    min_create_revision: filters.2,
                    max_create_revision: filters.3,
                }
            },
        )
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        prop::bool::weighted(0.05),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(key, value, leased, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value: if ignore_value { Bytes::new() } else { value },
                lease: i64::from(leased && !ignore_lease),
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        0u8..4,
        0u8..5,
        key(),
        0u8..7,
        value(),
        0i64..12,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(result, target, key, union, value, number, ranged)| {
            let target = [
                CompareTarget::Version,
                CompareTarget::Create,
                CompareTarget::Mod,
                CompareTarget::Value,
                CompareTarget::Lease,
            ][target as usize];
            let matching = match target {
                CompareTarget::Version => CompareTargetUnion::Version(number),
                CompareTarget::Create => CompareTargetUnion::CreateRevision(number),
                CompareTarget::Mod => CompareTargetUnion::ModRevision(number),
                CompareTarget::Value => CompareTargetUnion::Value(value),
                CompareTarget::Lease => CompareTargetUnion::Lease(number % 2),
            };
            Compare {
                result: [
                    CompareResult::Equal,
                    CompareResult::Greater,
                    CompareResult::Less,
                    CompareResult::NotEqual,
                ][result as usize],
                target,
                key,
                target_union: match union {
                    0 => None,
                    1 => Some(CompareTargetUnion::Version(number)),
                    _ => Some(matching),
                },
                range_end: if ranged {
                    Bytes::from_static(b"\0")
                } else {
                    Bytes::new()
                },
            }
        })
}

fn txn_request() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        3 => range_request().prop_map(RequestOp::Range),
        4 => put_request().prop_map(RequestOp::Put),
        2 => delete_request().prop_map(RequestOp::DeleteRange),
        1 => Just(TxnRequest::default()).prop_map(RequestOp::Txn),
    ];
    let op = leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            6 => inner.clone(),
            1 => (
                prop::collection::vec(compare(), 0..2),
                prop::collection::vec(inner.clone(), 0..3),
                prop::collection::vec(inner, 0..3),
            )
                .prop_map(|(compare, success, failure)| {
                    RequestOp::Txn(TxnRequest {
                        compare,
                        success,
                        failure,
                    })
                }),
        ]
    });
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn request() -> impl Strategy<Value = MvccRequest> {
    prop_oneof![
        5 => put_request().prop_map(MvccRequest::Put),
        2 => delete_request().prop_map(MvccRequest::DeleteRange),
        3 => range_request().prop_map(MvccRequest::Range),
        3 => txn_request().prop_map(MvccRequest::Txn),
        1 => (-1i64..16, any::<bool>()).prop_map(|(revision, physical)| {
            MvccRequest::Compact(CompactionRequest { revision, physical })
        }),
    ]
}

fn read_everything(revision: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        revision,
        ..RangeRequest::default()
    }
}

proptest! {
    #[test]
    fn the_store_behaves_like_the_naive_model(requests in prop::collection::vec(request(), 1..60)) {
        let mut store = MvccStore::new();
        let mut model = Model::new();
        for (step, request) in requests.iter().enumerate() {
            let expected = model.apply(request);
            let actual = store.apply(request.clone());
            prop_assert_eq!(&actual, &expected, "step {} request {:?}", step, request);
            prop_assert_eq!(store.current_revision(), model.current);
            prop_assert_eq!(store.compact_revision(), model.compact);
        }
        // Every readable revision still reads exactly as the full history says, so compaction
        // dropped nothing it should have kept.
        for revision in model.compact.max(1)..=model.current {
            let expected = model.range(&read_everything(revision), model.current);
            prop_assert_eq!(store.range(&read_everything(revision)), expected, "revision {}", revision);
        }
        // Nothing below the compact revision is kept beyond one put per key, and the deletes
        // made exactly at it (kept so that history from the compaction revision is whole).
        let live_at_compact = if model.compact >= 1 { model.state_at(model.compact).len() } else { 0 };
        let newer = model.changes.iter().filter(|change| change.main >= model.compact).count();
        prop_assert!(store.retained_revisions() <= live_at_compact + newer);

        let restored = MvccStore::restore(&store.snapshot()).expect("a snapshot restores");
        prop_assert_eq!(&restored, &store);
        prop_assert_eq!(restored.digest(), store.digest());
    }
}

/// Applies `steps` (each a request, a session id (0: none) and whether it is a retry of the
/// session's previous sequence) to a store, returning every answer.
fn run_sessions(
    store: &mut MvccStore,
    steps: &[(MvccRequest, u64, bool)],
) -> Vec<Result<MvccResponse, MvccError>> {
    let mut sequences = BTreeMap::new();
    steps
        .iter()
        .map(|(request, client_id, retry)| {
            let sequence = sequences.entry(*client_id).or_insert(0u64);
            if !*retry || *sequence == 0 {
                *sequence += 1;
            }
            store.apply_command(MvccCommand {
                client_id: *client_id,
                sequence: if *client_id == 0 { 0 } else { *sequence },
                request: request.clone(),
            })
        })
        .collect()
}

proptest! {
    /// A store keeping values in a value log (every non-empty value, or only the longer ones)
    /// is observably the same as one keeping them in memory: every answer, HashKV at every
    /// revision, snapshot bytes, digest and equality, also through clones and restores.
    #[test]
    fn a_value_log_changes_nothing_observable(
        steps in prop::collection::vec((request(), 0u64..3, prop::bool::weighted(0.1)), 1..60),
        min_len in 1usize..3,
        split in 0usize..60,
    ) {
        let mut plain = MvccStore::new();
        let log = MemoryValueLog::new();
        let mut logged = MvccStore::new();
        logged.set_value_log(Some(log.clone()), min_len);
        let split = split.min(steps.len());
        let (first, second) = steps.split_at(split);
        prop_assert_eq!(run_sessions(&mut plain, first), run_sessions(&mut logged, first));
        // A frozen clone keeps its snapshot while the original goes on appending.
        let frozen = logged.clone();
        let frozen_snapshot = plain.snapshot();
        prop_assert_eq!(run_sessions(&mut plain, second), run_sessions(&mut logged, second));
        prop_assert_eq!(frozen.snapshot(), &frozen_snapshot);
        // Its streamed snapshot copies the log as it stands now, values appended since the
        // freeze included, and still restores to the frozen state.
        let mut frozen_streamed = Vec::new();
        frozen.write_snapshot(&mut frozen_streamed).expect("writes to memory");
        prop_assert_eq!(frozen_streamed.len(), frozen.written_snapshot_size());
        let restored = MvccStore::restore(&Bytes::from(frozen_streamed)).expect("restores");
        prop_assert_eq!(restored.snapshot(), frozen_snapshot);

        prop_assert_eq!(&logged, &plain);
        let snapshot = plain.snapshot();
        prop_assert_eq!(logged.snapshot_size(), snapshot.len());
        prop_assert_eq!(&logged.snapshot(), &snapshot);
        // Streamed, the values are the log copied whole (format 3): another encoding of the
        // same state, restored alike with or without a log.
        let mut streamed = Vec::new();
        logged.write_snapshot(&mut streamed).expect("writes to memory");
        prop_assert_eq!(streamed.len(), logged.written_snapshot_size());
        let streamed = Bytes::from(streamed);
        prop_assert_eq!(&MvccStore::restore(&streamed).expect("restores"), &plain);
        let mut plain_streamed = Vec::new();
        plain.write_snapshot(&mut plain_streamed).expect("writes to memory");
        prop_assert_eq!(&plain_streamed[..], &snapshot[..]);
        prop_assert_eq!(logged.digest(), plain.digest());
        for revision in -1..=plain.current_revision() + 1 {
            prop_assert_eq!(logged.hash_kv(revision), plain.hash_kv(revision));
            let read = RangeRequest { revision, ..read_everything(0) };
            prop_assert_eq!(logged.range(&read), plain.range(&read));
        }
        // Referenced bytes count once per revision, so an ignore_value put counts twice.
        prop_assert!(log.size_bytes() > 0 || logged.value_log_live_bytes() == 0);

        // Restoring into a logged store appends the snapshot's values to its log.
        let mut restored = MvccStore::new();
        restored.set_value_log(Some(MemoryValueLog::new()), min_len);
        restored.restore_in_place(&snapshot).expect("restores");
        prop_assert_eq!(&restored, &plain);
        prop_assert_eq!(&restored.snapshot(), &snapshot);
        prop_assert_eq!(restored.value_log_live_bytes(), logged.value_log_live_bytes());
        let mut from_section = MvccStore::new();
        let section_log = MemoryValueLog::new();
        section_log.append(b"earlier").expect("append");
        from_section.set_value_log(Some(section_log.clone()), min_len);
        from_section.restore_in_place(&streamed).expect("restores");
        prop_assert_eq!(&from_section, &plain);
        prop_assert_eq!(&from_section.snapshot(), &snapshot);
        prop_assert_eq!(from_section.value_log_live_bytes(), logged.value_log_live_bytes());
        prop_assert_eq!(section_log.size_bytes(), 7 + log.size_bytes());
        prop_assert_eq!(&MvccStore::restore(&logged.snapshot()).expect("restores"), &plain);

        // Moving the values out of the log (and back in) keeps the state.
        logged.set_value_log(None, 0);
        prop_assert_eq!(logged.value_log_live_bytes(), 0);
        prop_assert_eq!(&logged.snapshot(), &snapshot);
        logged.set_value_log(Some(MemoryValueLog::new()), 1);
        prop_assert_eq!(&logged.snapshot(), &snapshot);
        prop_assert_eq!(&logged, &plain);
    }
}
