//! etcd 3.4 KV semantics of `kv::mvcc`, one behaviour per test (as etcd 3.4 behaves: its KV API
//! reference and `etcdserver/apply.go`).

use bytes::Bytes;
use kv::mvcc::{
    CompactionRequest, Compare, CompareResult, CompareTarget, CompareTargetUnion,
    DEFAULT_MAX_TXN_OPS, DeleteRangeRequest, DeleteRangeResponse, GrpcCode, KeyValue,
    MAX_TXN_DEPTH, MvccCommand, MvccError, MvccRequest, MvccResponse, MvccStore, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse, prefix_range_end,
};

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn put(store: &mut MvccStore, key: &str, value: &str) -> PutResponse {
    put_with(store, PutRequest::new(b(key), b(value))).expect("put succeeds")
}

fn put_with(store: &mut MvccStore, request: PutRequest) -> Result<PutResponse, MvccError> {
    match store.apply(request.into())? {
        MvccResponse::Put(response) => Ok(response),
        other => panic!("not a put response: {other:?}"),
    }
}

fn range(store: &mut MvccStore, request: RangeRequest) -> Result<RangeResponse, MvccError> {
    let local = store.range(&request);
    let through_log = match store.apply(request.into()) {
        Ok(MvccResponse::Range(response)) => Ok(response),
        Ok(other) => panic!("not a range response: {other:?}"),
        Err(error) => Err(error),
    };
    assert_eq!(local, through_log, "local and logged reads agree");
    through_log
}

fn get(store: &mut MvccStore, key: &str) -> Option<KeyValue> {
    let response = range(store, RangeRequest::new(b(key), Bytes::new())).expect("get succeeds");
    assert!(response.kvs.len() <= 1);
    response.kvs.into_iter().next()
}

fn delete(store: &mut MvccStore, request: DeleteRangeRequest) -> DeleteRangeResponse {
    match store.apply(request.into()).expect("delete succeeds") {
        MvccResponse::DeleteRange(response) => response,
        other => panic!("not a delete response: {other:?}"),
    }
}

fn txn(store: &mut MvccStore, request: TxnRequest) -> Result<TxnResponse, MvccError> {
    match store.apply(request.into())? {
        MvccResponse::Txn(response) => Ok(response),
        other => panic!("not a txn response: {other:?}"),
    }
}

fn compact(store: &mut MvccStore, revision: i64) -> Result<i64, MvccError> {
    let request = CompactionRequest {
        revision,
        physical: false,
    };
    match store.apply(request.into())? {
        MvccResponse::Compact(response) => Ok(response.header.revision),
        other => panic!("not a compaction response: {other:?}"),
    }
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn put_op(key: &str, value: &str) -> RequestOp {
    PutRequest::new(b(key), b(value)).into()
}

fn get_op(key: &str) -> RequestOp {
    RangeRequest::new(b(key), Bytes::new()).into()
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    DeleteRangeRequest::new(b(key), b(range_end)).into()
}

/// a=1 at rev 2, b=2 at rev 3, c=3 at rev 4, a=11 at rev 5.
fn abc() -> MvccStore {
    let mut store = MvccStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    put(&mut store, "c", "3");
    put(&mut store, "a", "11");
    store
}

// ---- revisions and versions ----

#[test]
fn a_fresh_store_is_at_revision_1_and_empty() {
    let mut store = MvccStore::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compact_revision(), -1);
    let response = range(&mut store, RangeRequest::new(b("\0"), b("\0"))).unwrap();
    assert_eq!(response.header.revision, 1);
    assert_eq!(response.count, 0);
    assert!(response.kvs.is_empty());
}

#[test]
fn each_put_bumps_the_revision_and_the_version_even_with_the_same_value() {
    let mut store = MvccStore::new();
    assert_eq!(put(&mut store, "k", "v").header.revision, 2);
    assert_eq!(put(&mut store, "k", "v").header.revision, 3);
    let kv = get(&mut store, "k").unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: b("k"),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b("v"),
            lease: 0,
        }
    );
    assert_eq!(store.current_revision(), 3);
}

#[test]
fn a_deleted_key_is_recreated_with_version_1_and_a_new_create_revision() {
    let mut store = MvccStore::new();
    put(&mut store, "k", "v1"); // 2
    put(&mut store, "k", "v2"); // 3
    let deleted = delete(&mut store, DeleteRangeRequest::new(b("k"), Bytes::new()));
    assert_eq!((deleted.deleted, deleted.header.revision), (1, 4));
    assert_eq!(get(&mut store, "k"), None);
    put(&mut store, "k", "v3"); // 5
    let kv = get(&mut store, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let mut store = abc();
    let response = delete(&mut store, DeleteRangeRequest::new(b("zzz"), Bytes::new()));
    assert_eq!(response.deleted, 0);
    assert_eq!(response.header.revision, 5);
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn a_range_delete_removes_many_keys_in_one_revision() {
    let mut store = abc();
    let response = delete(
        &mut store,
        DeleteRangeRequest {
            key: b("a"),
            range_end: b("c"),
            prev_kv: true,
        },
    );
    assert_eq!(response.deleted, 2);
    assert_eq!(response.header.revision, 6);
    let previous: Vec<_> = response
        .prev_kvs
        .iter()
        .map(|kv| kv.value.clone())
        .collect();
    assert_eq!(previous, vec![b("11"), b("2")]);
    assert_eq!(store.current_revision(), 6);
    assert_eq!(get(&mut store, "c").unwrap().mod_revision, 4);
}

#[test]
fn put_returns_the_previous_kv_only_when_asked_and_present() {
    let mut store = MvccStore::new();
    let mut request = PutRequest::new(b("k"), b("v1"));
    request.prev_kv = true;
    assert_eq!(put_with(&mut store, request.clone()).unwrap().prev_kv, None);
    request.value = b("v2");
    let previous = put_with(&mut store, request).unwrap().prev_kv.unwrap();
    assert_eq!((previous.value, previous.version), (b("v1"), 1));
    assert_eq!(put(&mut store, "k", "v3").prev_kv, None);
}

#[test]
fn ignore_value_keeps_the_value_but_counts_as_a_put() {
    let mut store = MvccStore::new();
    put(&mut store, "k", "v");
    let request = PutRequest {
        key: b("k"),
        ignore_value: true,
        ..PutRequest::default()
    };
    assert_eq!(put_with(&mut store, request).unwrap().header.revision, 3);
    let kv = get(&mut store, "k").unwrap();
    assert_eq!((kv.value, kv.version, kv.mod_revision), (b("v"), 2, 3));
}

#[test]
fn put_argument_errors_match_etcd() {
    let mut store = MvccStore::new();
    let missing = PutRequest {
        key: b("absent"),
        ignore_value: true,
        ..PutRequest::default()
    };
    assert_eq!(put_with(&mut store, missing), Err(MvccError::KeyNotFound));
    let missing_lease = PutRequest {
        key: b("absent"),
        ignore_lease: true,
        ..PutRequest::default()
    };
    assert_eq!(
        put_with(&mut store, missing_lease),
        Err(MvccError::KeyNotFound)
    );
    let value_and_ignore = PutRequest {
        key: b("k"),
        value: b("v"),
        ignore_value: true,
        ..PutRequest::default()
    };
    assert_eq!(
        put_with(&mut store, value_and_ignore),
        Err(MvccError::ValueProvided)
    );
    let lease_and_ignore = PutRequest {
        key: b("k"),
        lease: 7,
        ignore_lease: true,
        ..PutRequest::default()
    };
    assert_eq!(
        put_with(&mut store, lease_and_ignore),
        Err(MvccError::LeaseProvided)
    );
    let leased = PutRequest {
        key: b("k"),
        lease: 7,
        ..PutRequest::default()
    };
    assert_eq!(put_with(&mut store, leased), Err(MvccError::LeaseNotFound));
    assert_eq!(store.current_revision(), 1, "failed puts change nothing");
}

#[test]
fn empty_keys_are_rejected_everywhere() {
    let mut store = MvccStore::new();
    assert_eq!(
        put_with(&mut store, PutRequest::new(Bytes::new(), b("v"))),
        Err(MvccError::EmptyKey)
    );
    assert_eq!(
        range(&mut store, RangeRequest::default()),
        Err(MvccError::EmptyKey)
    );
    let delete = DeleteRangeRequest::default();
    assert_eq!(store.apply(delete.into()), Err(MvccError::EmptyKey));
    let compare = TxnRequest {
        compare: vec![Compare::version(Bytes::new(), CompareResult::Equal, 0)],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, compare), Err(MvccError::EmptyKey));
    let nested = TxnRequest {
        success: vec![put_op("", "v")],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, nested), Err(MvccError::EmptyKey));
}

// ---- ranges ----

#[test]
fn range_end_selects_single_keys_half_open_ranges_and_from_key() {
    let mut store = abc();
    put(&mut store, "ab", "x");
    let read = |store: &mut MvccStore, key: &str, end: &str| {
        keys(&range(store, RangeRequest::new(b(key), b(end))).unwrap())
    };
    assert_eq!(read(&mut store, "a", ""), ["a"]);
    assert_eq!(read(&mut store, "a", "c"), ["a", "ab", "b"]);
    assert_eq!(read(&mut store, "ab", "\0"), ["ab", "b", "c"]);
    assert_eq!(read(&mut store, "\0", "\0"), ["a", "ab", "b", "c"]);
    assert_eq!(
        read(&mut store, "c", "a"),
        Vec::<String>::new(),
        "range_end <= key is empty"
    );
    assert_eq!(read(&mut store, "b", "b"), Vec::<String>::new());
    let prefix = RangeRequest::new(b("a"), prefix_range_end(b"a"));
    assert_eq!(keys(&range(&mut store, prefix).unwrap()), ["a", "ab"]);
}

#[test]
fn prefix_range_end_follows_the_etcd_client() {
    assert_eq!(prefix_range_end(b"abc"), b("abd"));
    assert_eq!(prefix_range_end(b"a\xff"), b("b"));
    assert_eq!(prefix_range_end(b"\xff\xff"), b("\0"));
    assert_eq!(prefix_range_end(b""), b("\0"));
}

#[test]
fn limit_truncates_and_sets_more_while_count_counts_everything() {
    let mut store = abc();
    let mut request = RangeRequest::new(b("\0"), b("\0"));
    request.limit = 2;
    let response = range(&mut store, request.clone()).unwrap();
    assert_eq!(keys(&response), ["a", "b"]);
    assert!(response.more);
    assert_eq!(response.count, 3);
    request.limit = 3;
    assert!(!range(&mut store, request.clone()).unwrap().more);
    request.limit = -1;
    let response = range(&mut store, request).unwrap();
    assert_eq!((response.kvs.len(), response.more), (3, false));
}

#[test]
fn count_only_and_keys_only() {
    let mut store = abc();
    let mut request = RangeRequest::new(b("a"), b("c"));
    request.count_only = true;
    request.limit = 1;
    let response = range(&mut store, request).unwrap();
    assert!(response.kvs.is_empty());
    assert_eq!((response.count, response.more), (2, false));

    let mut request = RangeRequest::new(b("a"), b("c"));
    request.keys_only = true;
    let response = range(&mut store, request).unwrap();
    assert_eq!(keys(&response), ["a", "b"]);
    assert!(response.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(
        response.kvs[0].version, 2,
        "keys_only keeps the other fields"
    );
}

#[test]
fn sorting_by_each_target_and_order() {
    let mut store = abc(); // a: create 2 mod 5 ver 2 "11"; b: 3/3/1 "2"; c: 4/4/1 "3"
    let sorted = |store: &mut MvccStore, target, order| {
        let mut request = RangeRequest::new(b("\0"), b("\0"));
        request.sort_target = target;
        request.sort_order = order;
        keys(&range(store, request).unwrap())
    };
    use SortOrder::{Ascend, Descend, None};
    assert_eq!(sorted(&mut store, SortTarget::Key, None), ["a", "b", "c"]);
    assert_eq!(
        sorted(&mut store, SortTarget::Key, Descend),
        ["c", "b", "a"]
    );
    assert_eq!(sorted(&mut store, SortTarget::Mod, Ascend), ["b", "c", "a"]);
    assert_eq!(
        sorted(&mut store, SortTarget::Mod, None),
        ["b", "c", "a"],
        "NONE with a target sorts ascending"
    );
    assert_eq!(
        sorted(&mut store, SortTarget::Mod, Descend),
        ["a", "c", "b"]
    );
    assert_eq!(
        sorted(&mut store, SortTarget::Create, Descend),
        ["c", "b", "a"]
    );
    assert_eq!(
        sorted(&mut store, SortTarget::Value, Ascend),
        ["a", "b", "c"]
    );
    assert_eq!(
        sorted(&mut store, SortTarget::Value, Descend),
        ["c", "b", "a"]
    );
    // Ties (b and c both have version 1) stay in key order in both directions.
    assert_eq!(
        sorted(&mut store, SortTarget::Version, Ascend),
        ["b", "c", "a"]
    );
    assert_eq!(
        sorted(&mut store, SortTarget::Version, Descend),
        ["a", "b", "c"]
    );
}

#[test]
fn sorting_fetches_everything_before_the_limit_but_a_bare_sort_target_does_not() {
    let mut store = abc();
    let mut request = RangeRequest::new(b("\0"), b("\0"));
    request.sort_target = SortTarget::Mod;
    request.sort_order = SortOrder::Descend;
    request.limit = 1;
    let response = range(&mut store, request.clone()).unwrap();
    assert_eq!(
        (keys(&response), response.more, response.count),
        (vec!["a".to_owned()], true, 3)
    );
    // sort_order NONE: etcd fetches limit + 1 keys in key order (a, b), then sorts those.
    request.sort_order = SortOrder::None;
    let response = range(&mut store, request).unwrap();
    assert_eq!(keys(&response), ["b"]);
    assert!(response.more);
}

#[test]
fn revision_filters_apply_after_counting() {
    let mut store = abc();
    let filtered = |store: &mut MvccStore, edit: fn(&mut RangeRequest)| {
        let mut request = RangeRequest::new(b("\0"), b("\0"));
        edit(&mut request);
        let response = range(store, request).unwrap();
        assert_eq!(response.count, 3, "count is taken before filtering");
        keys(&response)
    };
    assert_eq!(filtered(&mut store, |r| r.min_mod_revision = 4), ["a", "c"]);
    assert_eq!(filtered(&mut store, |r| r.max_mod_revision = 4), ["b", "c"]);
    assert_eq!(
        filtered(&mut store, |r| r.min_create_revision = 3),
        ["b", "c"]
    );
    assert_eq!(
        filtered(&mut store, |r| r.max_create_revision = 3),
        ["a", "b"]
    );
    assert_eq!(
        filtered(&mut store, |r| {
            r.min_create_revision = 3;
            r.limit = 1;
        }),
        ["b"]
    );
}

// ---- historical reads and compaction ----

#[test]
fn historical_reads_see_the_past_and_report_the_current_revision() {
    let mut store = abc();
    delete(&mut store, DeleteRangeRequest::new(b("b"), Bytes::new())); // rev 6
    let at = |store: &mut MvccStore, revision| {
        let mut request = RangeRequest::new(b("\0"), b("\0"));
        request.revision = revision;
        range(store, request)
    };
    let old = at(&mut store, 2).unwrap();
    assert_eq!(keys(&old), ["a"]);
    assert_eq!(old.kvs[0].value, b("1"));
    assert_eq!(old.header.revision, 6);
    assert_eq!(keys(&at(&mut store, 5).unwrap()), ["a", "b", "c"]);
    assert_eq!(keys(&at(&mut store, 6).unwrap()), ["a", "c"]);
    assert_eq!(keys(&at(&mut store, 0).unwrap()), ["a", "c"]);
    assert_eq!(
        keys(&at(&mut store, -3).unwrap()),
        ["a", "c"],
        "negative means current"
    );
    assert_eq!(keys(&at(&mut store, 1).unwrap()), Vec::<String>::new());
    assert_eq!(at(&mut store, 7), Err(MvccError::FutureRevision));
}

#[test]
fn compaction_keeps_reads_at_and_after_its_revision_identical() {
    let mut store = abc();
    delete(&mut store, DeleteRangeRequest::new(b("b"), Bytes::new())); // 6
    put(&mut store, "b", "again"); // 7
    put(&mut store, "c", "33"); // 8
    let read_all = |store: &mut MvccStore, revision| {
        let mut request = RangeRequest::new(b("\0"), b("\0"));
        request.revision = revision;
        range(store, request)
    };
    let before: Vec<_> = (5..=8)
        .map(|rev| read_all(&mut store, rev).unwrap())
        .collect();
    let retained = store.retained_revisions();
    assert_eq!(compact(&mut store, 5), Ok(8));
    assert_eq!(store.compact_revision(), 5);
    let after: Vec<_> = (5..=8)
        .map(|rev| read_all(&mut store, rev).unwrap())
        .collect();
    assert_eq!(before, after);
    assert!(
        store.retained_revisions() < retained,
        "old revisions are dropped"
    );
    assert_eq!(read_all(&mut store, 4), Err(MvccError::Compacted));
    // a@2 and b@3 are superseded at 5, so only a@5, b@3 (live at 5), c@4 and later remain.
    assert_eq!(store.retained_revisions(), 7 - 1);
}

#[test]
fn compaction_errors_match_etcd() {
    let mut store = abc();
    assert_eq!(compact(&mut store, 6), Err(MvccError::FutureRevision));
    assert_eq!(compact(&mut store, 3), Ok(5));
    assert_eq!(
        compact(&mut store, 3),
        Err(MvccError::Compacted),
        "compacting the same revision twice fails"
    );
    assert_eq!(compact(&mut store, 2), Err(MvccError::Compacted));
    assert_eq!(compact(&mut store, 5), Ok(5));
    assert_eq!(
        store.current_revision(),
        5,
        "compaction creates no revision"
    );
    let mut fresh = MvccStore::new();
    assert_eq!(
        compact(&mut fresh, 0),
        Ok(1),
        "Compact(0) succeeds once on a fresh store"
    );
    assert_eq!(compact(&mut fresh, 0), Err(MvccError::Compacted));
}

#[test]
fn compaction_drops_deleted_keys_entirely() {
    let mut store = MvccStore::new();
    put(&mut store, "k", "v"); // 2
    delete(&mut store, DeleteRangeRequest::new(b("k"), Bytes::new())); // 3
    compact(&mut store, 3).unwrap();
    // The delete at the compaction revision itself stays, so history from 3 on is whole.
    assert_eq!(store.retained_revisions(), 1);
    put(&mut store, "k", "w"); // 4
    let kv = get(&mut store, "k").unwrap();
    assert_eq!((kv.create_revision, kv.version), (4, 1));
    compact(&mut store, 4).unwrap();
    assert_eq!(
        store.retained_revisions(),
        1,
        "the delete went, the put stays"
    );
}

#[test]
fn versions_keep_counting_across_compaction() {
    let mut store = MvccStore::new();
    for value in ["1", "2", "3"] {
        put(&mut store, "k", value);
    }
    compact(&mut store, 4).unwrap();
    put(&mut store, "k", "4");
    let kv = get(&mut store, "k").unwrap();
    assert_eq!((kv.create_revision, kv.version), (2, 4));
}

// ---- transactions ----

#[test]
fn txn_compares_every_target_with_every_result() {
    let mut store = abc(); // a: create 2, mod 5, version 2, value "11"
    let holds = |store: &mut MvccStore, compare: Compare| {
        txn(
            store,
            TxnRequest {
                compare: vec![compare],
                ..TxnRequest::default()
            },
        )
        .unwrap()
        .succeeded
    };
    use CompareResult::{Equal, Greater, Less, NotEqual};
    assert!(holds(&mut store, Compare::value(b("a"), Equal, b("11"))));
    assert!(holds(&mut store, Compare::value(b("a"), Greater, b("1"))));
    assert!(holds(&mut store, Compare::value(b("a"), Less, b("2"))));
    assert!(holds(&mut store, Compare::value(b("a"), NotEqual, b("x"))));
    assert!(!holds(
        &mut store,
        Compare::value(b("a"), NotEqual, b("11"))
    ));
    assert!(holds(&mut store, Compare::version(b("a"), Equal, 2)));
    assert!(holds(&mut store, Compare::version(b("a"), Greater, 1)));
    assert!(!holds(&mut store, Compare::version(b("a"), Less, 2)));
    assert!(holds(
        &mut store,
        Compare::create_revision(b("a"), Equal, 2)
    ));
    assert!(holds(&mut store, Compare::create_revision(b("a"), Less, 3)));
    assert!(holds(&mut store, Compare::mod_revision(b("a"), Equal, 5)));
    assert!(holds(&mut store, Compare::mod_revision(b("a"), Greater, 4)));
    assert!(holds(&mut store, Compare::lease(b("a"), Equal, 0)));
    assert!(!holds(&mut store, Compare::lease(b("a"), Greater, 0)));
}

#[test]
fn absent_keys_compare_as_zero_except_for_values() {
    let mut store = abc();
    let holds = |store: &mut MvccStore, compare: Compare| {
        let request = TxnRequest {
            compare: vec![compare],
            ..TxnRequest::default()
        };
        txn(store, request).unwrap().succeeded
    };
    use CompareResult::{Equal, NotEqual};
    assert!(holds(&mut store, Compare::version(b("none"), Equal, 0)));
    assert!(holds(
        &mut store,
        Compare::create_revision(b("none"), Equal, 0)
    ));
    assert!(holds(
        &mut store,
        Compare::mod_revision(b("none"), Equal, 0)
    ));
    assert!(holds(&mut store, Compare::lease(b("none"), Equal, 0)));
    assert!(!holds(
        &mut store,
        Compare::value(b("none"), Equal, Bytes::new())
    ));
    assert!(!holds(
        &mut store,
        Compare::value(b("none"), NotEqual, b("x"))
    ));
}

#[test]
fn a_mismatched_target_union_compares_against_zero() {
    let mut store = abc();
    let compare = Compare {
        result: CompareResult::Greater,
        target: CompareTarget::Version,
        key: b("a"),
        target_union: Some(CompareTargetUnion::ModRevision(100)),
        range_end: Bytes::new(),
    };
    let request = TxnRequest {
        compare: vec![compare],
        ..TxnRequest::default()
    };
    assert!(txn(&mut store, request).unwrap().succeeded, "version 2 > 0");
}

#[test]
fn range_compares_require_every_key_in_the_range() {
    let mut store = abc(); // versions a=2, b=1, c=1
    let holds = |store: &mut MvccStore, compare: Compare| {
        let request = TxnRequest {
            compare: vec![compare],
            ..TxnRequest::default()
        };
        txn(store, request).unwrap().succeeded
    };
    let version_one =
        |end: &str| Compare::version(b("b"), CompareResult::Equal, 1).with_range_end(b(end));
    assert!(holds(&mut store, version_one("d")));
    assert!(holds(&mut store, version_one("\0")));
    let from_a = Compare::version(b("a"), CompareResult::Equal, 1).with_range_end(b("\0"));
    assert!(!holds(&mut store, from_a));
    let empty_range = Compare::version(b("x"), CompareResult::Equal, 0).with_range_end(b("z"));
    assert!(
        holds(&mut store, empty_range),
        "an empty range compares a zero kv"
    );
}

#[test]
fn a_txn_takes_one_revision_for_all_its_writes_and_later_ops_see_earlier_ones() {
    let mut store = abc(); // at 5
    let request = TxnRequest {
        compare: vec![Compare::value(b("a"), CompareResult::Equal, b("11"))],
        success: vec![get_op("x"), put_op("x", "1"), put_op("y", "2"), get_op("x")],
        failure: vec![],
    };
    let response = txn(&mut store, request).unwrap();
    assert!(response.succeeded);
    assert_eq!(response.header.revision, 6);
    assert_eq!(store.current_revision(), 6);
    let [first, put_x, put_y, second] = &response.responses[..] else {
        panic!("four responses expected: {response:?}");
    };
    let ResponseOp::Range(first) = first else {
        panic!()
    };
    assert!(first.kvs.is_empty());
    assert_eq!(
        first.header.revision, 5,
        "a read before any write sees the old revision"
    );
    let (ResponseOp::Put(put_x), ResponseOp::Put(put_y)) = (put_x, put_y) else {
        panic!()
    };
    assert_eq!((put_x.header.revision, put_y.header.revision), (6, 6));
    let ResponseOp::Range(second) = second else {
        panic!()
    };
    assert_eq!(second.header.revision, 6);
    assert_eq!(second.kvs[0].value, b("1"));
    assert_eq!(get(&mut store, "y").unwrap().mod_revision, 6);
}

#[test]
fn the_failure_branch_runs_when_a_compare_fails() {
    let mut store = abc();
    let request = TxnRequest {
        compare: vec![
            Compare::value(b("a"), CompareResult::Equal, b("11")),
            Compare::version(b("b"), CompareResult::Equal, 9),
        ],
        success: vec![put_op("s", "1")],
        failure: vec![put_op("f", "1")],
    };
    let response = txn(&mut store, request).unwrap();
    assert!(!response.succeeded);
    assert!(get(&mut store, "s").is_none());
    assert!(get(&mut store, "f").is_some());
}

#[test]
fn txns_that_change_nothing_keep_the_revision() {
    let mut store = abc();
    let read_only = TxnRequest {
        success: vec![get_op("a")],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, read_only).unwrap().header.revision, 5);
    let empty_delete = TxnRequest {
        success: vec![delete_op("nothing", "")],
        ..TxnRequest::default()
    };
    let response = txn(&mut store, empty_delete).unwrap();
    assert_eq!(response.header.revision, 5);
    let ResponseOp::DeleteRange(delete) = &response.responses[0] else {
        panic!()
    };
    assert_eq!((delete.deleted, delete.header.revision), (0, 5));
    assert_eq!(
        txn(&mut store, TxnRequest::default())
            .unwrap()
            .header
            .revision,
        5
    );
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn a_txn_can_delete_and_write_different_keys_with_sub_revisions() {
    let mut store = abc();
    let request = TxnRequest {
        success: vec![delete_op("b", ""), put_op("d", "4"), delete_op("c", "")],
        ..TxnRequest::default()
    };
    let response = txn(&mut store, request).unwrap();
    assert_eq!(response.header.revision, 6);
    let ResponseOp::DeleteRange(first) = &response.responses[0] else {
        panic!()
    };
    assert_eq!(first.header.revision, 6);
    let all = range(&mut store, RangeRequest::new(b("\0"), b("\0"))).unwrap();
    assert_eq!(keys(&all), ["a", "d"]);
}

#[test]
fn duplicate_writes_in_one_branch_are_rejected() {
    let mut store = abc();
    let branch = |ops: Vec<RequestOp>| TxnRequest {
        success: ops,
        ..TxnRequest::default()
    };
    let duplicate = Err(MvccError::DuplicateKey);
    assert_eq!(
        txn(&mut store, branch(vec![put_op("k", "1"), put_op("k", "2")])).map(|_| ()),
        duplicate
    );
    assert_eq!(
        txn(
            &mut store,
            branch(vec![put_op("k", "1"), delete_op("k", "")])
        )
        .map(|_| ()),
        duplicate
    );
    assert_eq!(
        txn(
            &mut store,
            branch(vec![delete_op("k", ""), put_op("k", "1")])
        )
        .map(|_| ()),
        duplicate
    );
    assert_eq!(
        txn(
            &mut store,
            branch(vec![delete_op("a", "z"), put_op("k", "1")])
        )
        .map(|_| ()),
        duplicate
    );
    let nested = TxnRequest {
        success: vec![put_op("k", "1")],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(
            &mut store,
            branch(vec![put_op("k", "0"), nested.clone().into()])
        )
        .map(|_| ()),
        duplicate
    );
    assert_eq!(
        txn(
            &mut store,
            branch(vec![nested.clone().into(), nested.into()])
        )
        .map(|_| ()),
        duplicate
    );
    // Allowed: two deletes overlapping, the same key in success and failure, a put of a key
    // in both branches of one nested txn, and a read of a written key.
    assert!(
        txn(
            &mut store,
            branch(vec![delete_op("a", "c"), delete_op("b", "d")])
        )
        .is_ok()
    );
    let both = TxnRequest {
        compare: vec![],
        success: vec![put_op("k", "1")],
        failure: vec![put_op("k", "2")],
    };
    assert!(txn(&mut store, both.clone()).is_ok());
    assert!(txn(&mut store, branch(vec![both.into()])).is_ok());
    assert!(txn(&mut store, branch(vec![put_op("k", "1"), get_op("k")])).is_ok());
    assert_eq!(
        MvccError::DuplicateKey.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
}

#[test]
fn etcds_duplicate_check_ignores_from_key_deletes() {
    let mut store = abc();
    let request = TxnRequest {
        success: vec![delete_op("a", "\0"), put_op("b", "new")],
        ..TxnRequest::default()
    };
    let response = txn(&mut store, request).unwrap();
    assert_eq!(response.header.revision, 6);
    let all = range(&mut store, RangeRequest::new(b("\0"), b("\0"))).unwrap();
    assert_eq!(keys(&all), ["b"]);
    let kv = &all.kvs[0];
    assert_eq!(
        (kv.create_revision, kv.version),
        (6, 1),
        "deleted then re-created in one txn"
    );
}

#[test]
fn a_txn_that_etcd_would_crash_on_is_rolled_back() {
    let mut store = abc();
    let before = store.clone();
    // The from-key delete removes b, then the ignore_value put of b finds nothing.
    let request = TxnRequest {
        success: vec![
            delete_op("a", "\0"),
            PutRequest {
                key: b("b"),
                ignore_value: true,
                ..PutRequest::default()
            }
            .into(),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, request), Err(MvccError::KeyNotFound));
    assert_eq!(store, before);
}

#[test]
fn nested_txns_decide_on_the_state_before_the_outer_txn() {
    let mut store = MvccStore::new();
    let inner = TxnRequest {
        compare: vec![Compare::version(b("k"), CompareResult::Equal, 0)],
        success: vec![put_op("inner", "saw-absent")],
        failure: vec![put_op("inner", "saw-present")],
    };
    let outer = TxnRequest {
        success: vec![put_op("k", "v"), inner.into()],
        ..TxnRequest::default()
    };
    let response = txn(&mut store, outer).unwrap();
    assert_eq!(get(&mut store, "inner").unwrap().value, b("saw-absent"));
    assert_eq!(response.header.revision, 2);
    let ResponseOp::Txn(nested) = &response.responses[1] else {
        panic!()
    };
    assert!(nested.succeeded);
    assert_eq!(
        nested.header.revision, 0,
        "etcd 3.4 leaves nested txn headers unset"
    );
    let ResponseOp::Put(nested_put) = &nested.responses[0] else {
        panic!()
    };
    assert_eq!(nested_put.header.revision, 2);
}

#[test]
fn txn_checks_happen_before_anything_changes() {
    let mut store = abc();
    put(&mut store, "d", "4"); // 6
    compact(&mut store, 4).unwrap();
    let with_range = |revision| TxnRequest {
        success: vec![
            put_op("x", "1"),
            RangeRequest {
                key: b("a"),
                revision,
                ..RangeRequest::default()
            }
            .into(),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut store, with_range(7)).map(|_| ()),
        Err(MvccError::FutureRevision)
    );
    assert_eq!(
        txn(&mut store, with_range(3)).map(|_| ()),
        Err(MvccError::Compacted)
    );
    assert_eq!(
        txn(&mut store, with_range(-1)).map(|_| ()),
        Err(MvccError::Compacted),
        "etcd compares negative revisions literally"
    );
    let ignore_absent = TxnRequest {
        success: vec![
            put_op("x", "1"),
            PutRequest {
                key: b("absent"),
                ignore_value: true,
                ..PutRequest::default()
            }
            .into(),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut store, ignore_absent).map(|_| ()),
        Err(MvccError::KeyNotFound)
    );
    let leased = TxnRequest {
        failure: vec![
            PutRequest {
                key: b("x"),
                lease: 1,
                ..PutRequest::default()
            }
            .into(),
        ],
        compare: vec![Compare::version(b("a"), CompareResult::Equal, 99)],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut store, leased).map(|_| ()),
        Err(MvccError::LeaseNotFound)
    );
    assert!(get(&mut store, "x").is_none());
    assert_eq!(store.current_revision(), 6);
    // Only the chosen branch is checked.
    let unchosen = TxnRequest {
        failure: vec![
            RangeRequest {
                key: b("a"),
                revision: 100,
                ..RangeRequest::default()
            }
            .into(),
        ],
        ..TxnRequest::default()
    };
    assert!(txn(&mut store, unchosen).is_ok());
    // The revision of the txn itself is a future revision for its reads.
    assert_eq!(txn(&mut store, with_range(6)).unwrap().header.revision, 7);
}

#[test]
fn unset_ops_and_too_many_ops_are_rejected() {
    let mut store = MvccStore::new();
    let unset = TxnRequest {
        failure: vec![RequestOp::Unset],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, unset), Err(MvccError::KeyNotFound));

    let puts = |count: usize| TxnRequest {
        success: (0..count).map(|i| put_op(&format!("k{i}"), "v")).collect(),
        ..TxnRequest::default()
    };
    let limit = DEFAULT_MAX_TXN_OPS;
    assert_eq!(MvccRequest::from(puts(limit)).validate(limit), Ok(()));
    assert_eq!(
        MvccRequest::from(puts(limit + 1)).validate(limit),
        Err(MvccError::TooManyOps)
    );
    // Apply does not enforce the per-member limit: members must never disagree.
    assert!(txn(&mut store, puts(limit + 1)).is_ok());
    // Nested txns share the budget: 64 compares at the top leave 64 for each nested level.
    let nested = TxnRequest {
        compare: (0..64)
            .map(|_| Compare::version(b("k"), CompareResult::Equal, 0))
            .collect(),
        success: vec![puts(65).into()],
        ..TxnRequest::default()
    };
    assert_eq!(
        MvccRequest::from(nested).validate(limit),
        Err(MvccError::TooManyOps)
    );
}

#[test]
fn transactions_nest_up_to_the_depth_limit() {
    let nest = |depth: usize| {
        let mut request = TxnRequest {
            success: vec![put_op("deep", "v")],
            ..TxnRequest::default()
        };
        for _ in 1..depth {
            request = TxnRequest {
                success: vec![request.into()],
                ..TxnRequest::default()
            };
        }
        request
    };
    let mut store = MvccStore::new();
    let response = txn(&mut store, nest(MAX_TXN_DEPTH)).unwrap();
    assert_eq!(response.header.revision, 2);
    assert_eq!(
        MvccRequest::from(nest(MAX_TXN_DEPTH)).validate(DEFAULT_MAX_TXN_OPS),
        Ok(())
    );
    let encoded = MvccRequest::from(nest(MAX_TXN_DEPTH)).encode();
    assert!(MvccRequest::decode(&encoded).is_ok());
    assert_eq!(
        txn(&mut store, nest(MAX_TXN_DEPTH + 1)),
        Err(MvccError::TooManyOps)
    );
    let too_deep = MvccRequest::from(nest(MAX_TXN_DEPTH + 1)).encode();
    assert!(MvccRequest::decode(&too_deep).is_err());
}

// ---- sessions ----

#[test]
fn retried_commands_apply_once_and_get_the_same_answer() {
    let mut store = MvccStore::new();
    let command = |sequence, value: &str| MvccCommand {
        client_id: 9,
        sequence,
        request: PutRequest::new(b("k"), b(value)).into(),
    };
    let first = store.apply_command(command(1, "a"));
    let retry = store.apply_command(command(1, "a"));
    assert_eq!(first, retry);
    assert_eq!(store.current_revision(), 2);
    let bytes = command(2, "b").encode();
    let second = store.apply_bytes(&bytes);
    assert_eq!(store.apply_bytes(&bytes), second);
    assert_eq!(store.current_revision(), 3);
    assert_eq!(
        store.apply_command(command(1, "a")),
        Err(MvccError::StaleSequence)
    );
    // Errors are recorded too: the retry does not get a different outcome.
    let failing = MvccCommand {
        client_id: 9,
        sequence: 3,
        request: CompactionRequest {
            revision: 10,
            physical: false,
        }
        .into(),
    };
    assert_eq!(
        store.apply_command(failing.clone()),
        Err(MvccError::FutureRevision)
    );
    assert_eq!(store.apply_command(failing), Err(MvccError::FutureRevision));
    // Without a session nothing is deduplicated.
    let sessionless = MvccCommand {
        client_id: 0,
        sequence: 1,
        request: PutRequest::new(b("k"), b("c")).into(),
    };
    store.apply_command(sessionless.clone()).unwrap();
    store.apply_command(sessionless).unwrap();
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn malformed_entries_are_reported_not_applied() {
    let mut store = MvccStore::new();
    let error = store
        .apply_bytes(&Bytes::from_static(b"\x02\x01"))
        .unwrap_err();
    assert!(matches!(error, MvccError::Malformed(_)));
    assert_eq!(error.grpc_code(), GrpcCode::Internal);
    assert_eq!(store, MvccStore::new());
}

// ---- errors ----

#[test]
fn error_messages_are_etcds_exactly() {
    let cases = [
        (
            MvccError::EmptyKey,
            "etcdserver: key is not provided",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::KeyNotFound,
            "etcdserver: key not found",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::ValueProvided,
            "etcdserver: value is provided",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::LeaseProvided,
            "etcdserver: lease is provided",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::TooManyOps,
            "etcdserver: too many operations in txn request",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::DuplicateKey,
            "etcdserver: duplicate key given in txn request",
            GrpcCode::InvalidArgument,
        ),
        (
            MvccError::Compacted,
            "etcdserver: mvcc: required revision has been compacted",
            GrpcCode::OutOfRange,
        ),
        (
            MvccError::FutureRevision,
            "etcdserver: mvcc: required revision is a future revision",
            GrpcCode::OutOfRange,
        ),
        (
            MvccError::LeaseNotFound,
            "etcdserver: requested lease not found",
            GrpcCode::NotFound,
        ),
    ];
    for (error, message, code) in cases {
        assert_eq!(error.to_string(), message);
        assert_eq!(error.grpc_code(), code);
    }
    assert_eq!(
        MvccError::Compacted.mvcc_message(),
        "mvcc: required revision has been compacted"
    );
}
