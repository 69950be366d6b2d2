//! What etcd's Maintenance service reads from `kv::mvcc`: the size estimate reported as
//! `dbSize`, the key count, and HashKV.

use bytes::Bytes;
use kv::mvcc::{
    CompactionRequest, DeleteRangeRequest, MvccCommand, MvccError, MvccRequest, MvccStore,
    PutRequest, RequestOp, TxnRequest,
};
use proptest::prelude::*;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn put(store: &mut MvccStore, key: &str, value: &str) {
    store
        .apply(PutRequest::new(b(key), b(value)).into())
        .expect("put succeeds");
}

fn delete(store: &mut MvccStore, key: &str) {
    store
        .apply(DeleteRangeRequest::new(b(key), Bytes::new()).into())
        .expect("delete succeeds");
}

fn compact(store: &mut MvccStore, revision: i64) {
    store
        .apply(
            CompactionRequest {
                revision,
                physical: true,
            }
            .into(),
        )
        .expect("compaction succeeds");
}

fn restored(store: &MvccStore) -> MvccStore {
    MvccStore::restore(&store.snapshot()).expect("restores")
}

// ---- approx_size_bytes and key_count ----

#[test]
fn approx_size_grows_with_puts_and_shrinks_with_compaction() {
    let mut store = MvccStore::new();
    assert_eq!(store.approx_size_bytes(), 0);
    assert_eq!(store.key_count(), 0);

    put(&mut store, "alpha", "1");
    let one = store.approx_size_bytes();
    assert!(one >= 6, "counts the key and the value: {one}");
    put(&mut store, "alpha", &"x".repeat(1000));
    let two = store.approx_size_bytes();
    assert!(two >= one + 1000, "an update is one more revision: {two}");
    put(&mut store, "beta", "2");
    assert_eq!(store.key_count(), 2);
    assert_eq!(
        restored(&store).approx_size_bytes(),
        store.approx_size_bytes()
    );

    // A delete adds a tombstone; compaction then drops alpha's puts. The tombstone made at
    // the compaction revision itself stays (a watcher may resume from that revision), until
    // a later compaction drops it.
    delete(&mut store, "alpha");
    assert_eq!(store.key_count(), 1);
    let with_tombstone = store.approx_size_bytes();
    assert!(with_tombstone > two);
    let current = store.current_revision();
    compact(&mut store, current);
    assert_eq!(store.retained_revisions(), 2);
    assert_eq!(
        restored(&store).approx_size_bytes(),
        store.approx_size_bytes()
    );
    put(&mut store, "beta", "2");
    let current = store.current_revision();
    compact(&mut store, current);
    let compacted = store.approx_size_bytes();
    assert!(
        compacted < one + 100,
        "only beta's put remains: {compacted}"
    );
    assert_eq!(store.retained_revisions(), 1);
    assert_eq!(store.key_count(), 1);
    assert_eq!(restored(&store).approx_size_bytes(), compacted);
    assert_eq!(restored(&store).key_count(), 1);

    // Deleting the last key and compacting leaves only that delete (at the compaction
    // revision); compacting past it empties the store.
    delete(&mut store, "beta");
    let current = store.current_revision();
    compact(&mut store, current);
    assert_eq!(store.key_count(), 0);
    assert_eq!(store.retained_revisions(), 1);
    put(&mut store, "gamma", "3");
    let current = store.current_revision();
    compact(&mut store, current);
    delete(&mut store, "gamma");
    put(&mut store, "delta", "4");
    let current = store.current_revision();
    delete(&mut store, "delta");
    compact(&mut store, current);
    assert_eq!(
        store.retained_revisions(),
        2,
        "delta: its put at the compaction revision, its delete"
    );
    assert_eq!(store.key_count(), 0);
}

#[test]
fn approx_size_counts_sessions_and_undone_transactions_leave_no_trace() {
    let mut store = MvccStore::new();
    let before = store.approx_size_bytes();
    store
        .apply_command(MvccCommand {
            client_id: 9,
            sequence: 1,
            request: MvccRequest::Compact(CompactionRequest {
                revision: 1,
                physical: false,
            }),
        })
        .expect("compacts");
    assert!(
        store.approx_size_bytes() > before,
        "a session costs something"
    );
    assert_eq!(
        restored(&store).approx_size_bytes(),
        store.approx_size_bytes()
    );

    // A transaction that fails half way (delete from-key, then ignore_value put of the deleted
    // key) is rolled back; the size and key count are back where they were.
    put(&mut store, "k", "v");
    let size = store.approx_size_bytes();
    let failing = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest::new(b("a"), Bytes::from_static(b"\0"))),
            RequestOp::Put(PutRequest {
                ignore_value: true,
                ..PutRequest::new(b("k"), Bytes::new())
            }),
        ],
        failure: vec![],
    };
    assert!(store.apply(failing.into()).is_err());
    assert_eq!(store.approx_size_bytes(), size);
    assert_eq!(store.key_count(), 1);
    assert_eq!(restored(&store), store);
}

// ---- hash_kv ----

/// A store after a fixed little history, the same every time.
fn history() -> MvccStore {
    let mut store = MvccStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    put(&mut store, "a", "3");
    delete(&mut store, "b");
    put(&mut store, "c", "4");
    store
}

#[test]
fn hash_kv_is_equal_for_equal_histories_and_differs_otherwise() {
    let first = history();
    let second = history();
    assert_eq!(first.hash_kv(0), second.hash_kv(0));
    assert_eq!(first.hash_kv(0), restored(&first).hash_kv(0));
    for revision in 1..=first.current_revision() {
        assert_eq!(first.hash_kv(revision), second.hash_kv(revision));
    }
    let (hash, compact_revision) = first.hash_kv(0).unwrap();
    assert_eq!(compact_revision, -1);

    let mut more = history();
    put(&mut more, "d", "5");
    assert_ne!(more.hash_kv(0).unwrap().0, hash);
    // ...but its history up to the old revision hashes as before.
    assert_eq!(more.hash_kv(first.current_revision()).unwrap().0, hash);

    // Same keys and revisions, one different value.
    let mut other = MvccStore::new();
    put(&mut other, "a", "1");
    put(&mut other, "b", "2");
    put(&mut other, "a", "X");
    delete(&mut other, "b");
    put(&mut other, "c", "4");
    assert_ne!(other.hash_kv(0).unwrap().0, hash);
}

#[test]
fn hash_kv_matches_etcds_backend_bytes() {
    // One put of foo=bar at revision 2: etcd hashes "key", the revision key and the
    // marshalled mvccpb.KeyValue.
    let mut store = MvccStore::new();
    put(&mut store, "foo", "bar");
    let mut bytes = b"key".to_vec();
    bytes.extend_from_slice(b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\0");
    bytes.extend_from_slice(b"\x0a\x03foo\x10\x02\x18\x02\x20\x01\x2a\x03bar");
    assert_eq!(store.hash_kv(0), Ok((crc32c(&bytes), -1)));
    // A tombstone adds its marked revision key and a KeyValue holding only the key.
    delete(&mut store, "foo");
    bytes.extend_from_slice(b"\0\0\0\0\0\0\0\x03_\0\0\0\0\0\0\0\0t");
    bytes.extend_from_slice(b"\x0a\x03foo");
    assert_eq!(store.hash_kv(0), Ok((crc32c(&bytes), -1)));
    // An empty history hashes only the bucket name.
    assert_eq!(MvccStore::new().hash_kv(0), Ok((crc32c(b"key"), -1)));
}

/// etcd's backend key of revision `main` (sub 0), with a tombstone mark if asked.
fn revision_key(main: u8, tombstone: bool) -> Vec<u8> {
    let mut key = vec![0, 0, 0, 0, 0, 0, 0, main, b'_', 0, 0, 0, 0, 0, 0, 0, 0];
    if tombstone {
        key.push(b't');
    }
    key
}

#[test]
fn hash_kv_below_the_compaction_follows_etcds_keep_rule() {
    let mut store = MvccStore::new();
    put(&mut store, "foo", "bar"); // 2
    put(&mut store, "foo", "baz"); // 3
    put(&mut store, "x", "y"); // 4
    compact(&mut store, 3); // keeps foo@3 and x@4
    delete(&mut store, "x"); // 5
    put(&mut store, "foo", "q"); // 6
    let foo3 = [
        revision_key(3, false),
        b"\x0a\x03foo\x10\x02\x18\x03\x20\x02\x2a\x03baz".to_vec(),
    ]
    .concat();
    let x4 = [
        revision_key(4, false),
        b"\x0a\x01x\x10\x04\x18\x04\x20\x01\x2a\x01y".to_vec(),
    ]
    .concat();
    let x5 = [revision_key(5, true), b"\x0a\x01x".to_vec()].concat();
    let foo6 = [
        revision_key(6, false),
        b"\x0a\x03foo\x10\x02\x18\x06\x20\x03\x2a\x01q".to_vec(),
    ]
    .concat();
    let foo7 = [revision_key(7, true), b"\x0a\x03foo".to_vec()].concat();
    let hash = |parts: &[&[u8]]| crc32c(&[b"key".as_slice(), &parts.concat()].concat());

    // At 5, foo@3 is still foo's latest put: a compaction at 5 would keep it.
    assert_eq!(store.hash_kv(5), Ok((hash(&[&foo3, &x4, &x5]), 3)));
    // At 6 it is superseded by foo@6, so etcd skips it.
    assert_eq!(store.hash_kv(6), Ok((hash(&[&x4, &x5, &foo6]), 3)));
    // When a compaction would keep nothing at all, etcd skips nothing.
    delete(&mut store, "foo"); // 7
    assert_eq!(
        store.hash_kv(7),
        Ok((hash(&[&foo3, &x4, &x5, &foo6, &foo7]), 3))
    );
}

#[test]
fn hash_kv_refuses_compacted_and_future_revisions_like_etcd() {
    let mut store = history();
    let current = store.current_revision();
    assert_eq!(store.hash_kv(current + 1), Err(MvccError::FutureRevision));
    compact(&mut store, 3);
    // etcd's hashByRev refuses the compacted revision itself, unlike Range.
    assert_eq!(store.hash_kv(3), Err(MvccError::Compacted));
    assert_eq!(store.hash_kv(2), Err(MvccError::Compacted));
    assert_eq!(store.hash_kv(4).map(|(_, compact)| compact), Ok(3));
    assert_eq!(store.hash_kv(0).map(|(_, compact)| compact), Ok(3));
    assert_eq!(store.hash_kv(current + 1), Err(MvccError::FutureRevision));
}

#[test]
fn hash_kv_after_compaction_counts_only_what_compaction_keeps() {
    // Two members that compacted at the same revision agree, and agree with a restored copy.
    let mut first = history();
    let mut second = history();
    compact(&mut first, 4);
    compact(&mut second, 4);
    assert_eq!(first.hash_kv(0), second.hash_kv(0));
    assert_eq!(first.hash_kv(0), restored(&first).hash_kv(0));
    // Revision 3's put of a is kept below the compaction; a history without it differs.
    put(&mut first, "a", "5");
    put(&mut second, "a", "5");
    assert_eq!(first.hash_kv(0), second.hash_kv(0));
    let (at_five, _) = first.hash_kv(5).unwrap();
    let (now, _) = first.hash_kv(0).unwrap();
    assert_ne!(at_five, now);
}

proptest! {
    /// Stores fed the same writes hash alike at every readable revision, before and after a
    /// snapshot round trip, and keep their size estimate exact.
    #[test]
    fn hash_kv_and_size_agree_across_members(
        ops in prop::collection::vec((0u8..4, 0u8..4, 0u8..3), 1..40),
    ) {
        let mut first = MvccStore::new();
        let mut second = MvccStore::new();
        for (kind, key, value) in ops {
            let key = Bytes::from(vec![b'a' + key]);
            let request: MvccRequest = match kind {
                0 | 1 => {
                    PutRequest::new(key, Bytes::from(vec![b'0'; usize::from(value)])).into()
                }
                2 => DeleteRangeRequest::new(key, Bytes::new()).into(),
                _ => {
                    let revision = first.current_revision() - i64::from(value);
                    CompactionRequest { revision, physical: false }.into()
                }
            };
            prop_assert_eq!(first.apply(request.clone()), second.apply(request));
        }
        let copy = restored(&first);
        prop_assert_eq!(&copy, &first);
        prop_assert_eq!(copy.approx_size_bytes(), first.approx_size_bytes());
        for revision in 0..=first.current_revision() + 1 {
            let hash = first.hash_kv(revision);
            prop_assert_eq!(&second.hash_kv(revision), &hash);
            prop_assert_eq!(&copy.hash_kv(revision), &hash);
        }
    }
}

/// The standard CRC-32C, bit by bit: an independent check of the hash.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
