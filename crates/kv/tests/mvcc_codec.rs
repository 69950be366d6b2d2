//! Encodings of `kv::mvcc`: commands round-trip, snapshots round-trip, and no input bytes make
//! decoding or restoring panic (nor a restored store misbehave afterwards).

use bytes::Bytes;
use kv::mvcc::{
    CompactionRequest, Compare, CompareResult, CompareTarget, CompareTargetUnion,
    DeleteRangeRequest, MvccCommand, MvccRequest, MvccStore, PutRequest, RangeRequest, RequestOp,
    SnapshotError, SortOrder, SortTarget, TxnRequest,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> + Clone {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    (
        (bytes(6), bytes(6), any::<i64>(), any::<i64>()),
        (0usize..3, 0usize..5, any::<[bool; 3]>()),
        any::<[i64; 4]>(),
    )
        .prop_map(
            |((key, range_end, limit, revision), (order, target, flags), filters)| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order],
                sort_target: [
                    SortTarget::Key,
                    SortTarget::Version,
                    SortTarget::Create,
                    SortTarget::Mod,
                    SortTarget::Value,
                ][target],
                serializable: flags[0],
                keys_only: flags[1],
                count_only: flags[2],
                min_mod_revision: filters[0],
                max_mod_revision: filters[1],
                min_create_revision: filters[2],
                max_create_revision: filters[3],
            },
        )
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (bytes(6), bytes(16), any::<i64>(), any::<[bool; 3]>()).prop_map(
        |(key, value, lease, flags)| PutRequest {
            key,
            value,
            lease,
            prev_kv: flags[0],
            ignore_value: flags[1],
            ignore_lease: flags[2],
        },
    )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (bytes(6), bytes(6), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    let union = prop_oneof![
        Just(None),
        any::<i64>().prop_map(|v| Some(CompareTargetUnion::Version(v))),
        any::<i64>().prop_map(|v| Some(CompareTargetUnion::CreateRevision(v))),
        any::<i64>().prop_map(|v| Some(CompareTargetUnion::ModRevision(v))),
        bytes(6).prop_map(|v| Some(CompareTargetUnion::Value(v))),
        any::<i64>().prop_map(|v| Some(CompareTargetUnion::Lease(v))),
    ];
    (0usize..4, 0usize..5, bytes(6), union, bytes(4)).prop_map(
        |(result, target, key, target_union, range_end)| Compare {
            result: [
                CompareResult::Equal,
                CompareResult::Greater,
                CompareResult::Less,
                CompareResult::NotEqual,
            ][result],
            target: [
                CompareTarget::Version,
                CompareTarget::Create,
                CompareTarget::Mod,
                CompareTarget::Value,
                CompareTarget::Lease,
            ][target],
            key,
            target_union,
            range_end,
        },
    )
}

fn txn_request() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        range_request().prop_map(RequestOp::Range),
        put_request().prop_map(RequestOp::Put),
        delete_request().prop_map(RequestOp::DeleteRange),
        Just(RequestOp::Unset),
    ];
    let op = leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..3),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(compare, success, failure)| {
                RequestOp::Txn(TxnRequest {
                    compare,
                    success,
                    failure,
                })
            })
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
        range_request().prop_map(MvccRequest::Range),
        put_request().prop_map(MvccRequest::Put),
        delete_request().prop_map(MvccRequest::DeleteRange),
        txn_request().prop_map(MvccRequest::Txn),
        (any::<i64>(), any::<bool>()).prop_map(|(revision, physical)| MvccRequest::Compact(
            CompactionRequest { revision, physical }
        )),
    ]
}

fn command() -> impl Strategy<Value = MvccCommand> {
    (any::<u64>(), any::<u64>(), request()).prop_map(|(client_id, sequence, request)| MvccCommand {
        client_id,
        sequence,
        request,
    })
}

/// Requests that mostly succeed on a small keyspace, to build interesting stores.
fn workload_request() -> impl Strategy<Value = MvccRequest> {
    let key = prop::sample::select(vec!["a", "b", "c", "ab"])
        .prop_map(|k| Bytes::from_static(k.as_bytes()));
    let value = bytes(4);
    prop_oneof![
        6 => (key.clone(), value.clone(), any::<bool>()).prop_map(|(key, value, prev_kv)| {
            MvccRequest::Put(PutRequest { key, value, prev_kv, ..PutRequest::default() })
        }),
        2 => (key.clone(), any::<bool>()).prop_map(|(key, everything)| {
            let range_end = if everything { Bytes::from_static(b"\0") } else { Bytes::new() };
            MvccRequest::DeleteRange(DeleteRangeRequest { key, range_end, prev_kv: true })
        }),
        2 => (key.clone(), -1i64..20).prop_map(|(key, revision)| {
            MvccRequest::Range(RangeRequest { key, range_end: Bytes::from_static(b"\0"), revision, ..RangeRequest::default() })
        }),
        2 => (key.clone(), key, value.clone(), value).prop_map(|(first, second, v1, v2)| {
            MvccRequest::Txn(TxnRequest {
                compare: vec![Compare::version(first.clone(), CompareResult::Greater, 0)],
                success: vec![PutRequest::new(first.clone(), v1).into(), RangeRequest::new(second.clone(), Bytes::new()).into()],
                failure: vec![DeleteRangeRequest::new(second, Bytes::new()).into(), PutRequest::new(first, v2).into()],
            })
        }),
        1 => (0i64..20).prop_map(|revision| MvccRequest::Compact(CompactionRequest { revision, physical: false })),
    ]
}

fn build_store(requests: &[MvccRequest], clients: &[u64]) -> MvccStore {
    let mut store = MvccStore::new();
    for (index, request) in requests.iter().enumerate() {
        let client_id = clients
            .get(index % clients.len().max(1))
            .copied()
            .unwrap_or(0);
        let _ = store.apply_command(MvccCommand {
            client_id,
            sequence: index as u64,
            request: request.clone(),
        });
    }
    store
}

/// `requests` as session commands from sequence `start` on: pairs of commands share a client
/// and a sequence, so the second of each pair is a retry answered from the session table; the
/// clients cycle through the ones [`build_store`] used, a new one and sessionless 0.
fn session_commands(requests: &[MvccRequest], start: u64) -> Vec<MvccCommand> {
    requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            let pair = index as u64 / 2;
            MvccCommand {
                client_id: [1, 2, 3, 4, 0][(pair % 5) as usize],
                sequence: start + pair,
                request: request.clone(),
            }
        })
        .collect()
}

/// The standard CRC-32C, bit by bit: an independent check of the snapshot checksum.
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

/// `store`'s snapshot as a store with a value log streams it: format 3, its values in a
/// section.
fn streamed_with_value_log(store: &MvccStore) -> Vec<u8> {
    let mut logged = store.clone();
    logged.set_value_log(Some(kv::mvcc::MemoryValueLog::new()), 1);
    let mut out = Vec::new();
    logged.write_snapshot(&mut out).expect("writes to memory");
    assert_eq!(out[4], 3, "a store with a value log streams format 3");
    out
}

fn with_fixed_checksum(mut snapshot: Vec<u8>) -> Bytes {
    let body = snapshot.len() - 4;
    let checksum = crc32c(&snapshot[..body]);
    snapshot[body..].copy_from_slice(&checksum.to_le_bytes());
    Bytes::from(snapshot)
}

/// Exercises a restored store: none of this may panic, whatever state restore accepted.
fn exercise(store: &mut MvccStore) {
    let all = RangeRequest::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    for revision in [
        0,
        1,
        2,
        5,
        store.current_revision(),
        store.compact_revision(),
    ] {
        let _ = store.range(&RangeRequest {
            revision,
            ..all.clone()
        });
    }
    let _ = store.apply(PutRequest::new(Bytes::from_static(b"a"), Bytes::from_static(b"x")).into());
    let _ = store.apply(
        DeleteRangeRequest::new(Bytes::from_static(b"\0"), Bytes::from_static(b"\0")).into(),
    );
    let revision = store.current_revision();
    let _ = store.apply(
        CompactionRequest {
            revision,
            physical: true,
        }
        .into(),
    );
    let _ = store.apply_command(MvccCommand {
        client_id: 1,
        sequence: 0,
        request: all.into(),
    });
    let again =
        MvccStore::restore(&store.snapshot()).expect("a snapshot of an accepted store restores");
    assert_eq!(&again, store);
}

proptest! {
    #[test]
    fn commands_round_trip(command in command()) {
        let encoded = command.encode();
        prop_assert_eq!(MvccCommand::decode(&encoded), Ok(command.clone()));
        let request = command.request;
        prop_assert_eq!(MvccRequest::decode(&request.encode()), Ok(request));
    }

    #[test]
    fn decoding_garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..96), prefix in 0u8..3, tag in 0u8..7) {
        // A valid format byte and tag in front reach deeper into the decoder.
        let mut input = Vec::new();
        if prefix > 0 {
            input.push(prefix);
            input.push(tag);
        }
        input.extend_from_slice(&garbage);
        let input = Bytes::from(input);
        let _ = MvccCommand::decode(&input);
        let _ = MvccRequest::decode(&input);
        let mut store = MvccStore::new();
        let _ = store.apply_bytes(&input);
    }

    #[test]
    fn damaged_commands_never_panic(command in command(), position in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut damaged = command.encode().to_vec();
        let at = position.index(damaged.len());
        if cut {
            damaged.truncate(at);
        } else {
            damaged[at] = byte;
        }
        let damaged = Bytes::from(damaged);
        let mut store = MvccStore::new();
        let _ = store.apply_bytes(&damaged);
    }

    #[test]
    fn snapshots_round_trip(requests in prop::collection::vec(workload_request(), 0..40), clients in prop::collection::vec(0u64..4, 0..3)) {
        let store = build_store(&requests, &clients);
        let snapshot = store.snapshot();
        let restored = MvccStore::restore(&snapshot).expect("restores");
        prop_assert_eq!(&restored, &store);
        prop_assert_eq!(restored.snapshot(), snapshot);
        // The restored store goes on exactly like the original.
        let mut original = store;
        let mut restored = restored;
        for request in &requests {
            let expected = original.apply(request.clone());
            prop_assert_eq!(restored.apply(request.clone()), expected);
        }
        prop_assert_eq!(original.digest(), restored.digest());
    }

    #[test]
    fn streamed_snapshots_are_the_snapshot(requests in prop::collection::vec(workload_request(), 0..40), clients in prop::collection::vec(0u64..4, 0..3), chunk in 1usize..50) {
        let store = build_store(&requests, &clients);
        let snapshot = store.snapshot();
        prop_assert_eq!(store.snapshot_size(), snapshot.len());
        let mut streamed = Vec::new();
        store.write_snapshot(&mut streamed).expect("a Vec accepts everything");
        prop_assert_eq!(&streamed[..], &snapshot[..]);
        // A destination that takes a few bytes per call gets the same bytes.
        let mut trickle = Trickle { bytes: Vec::new(), chunk };
        store.write_snapshot(&mut trickle).expect("a trickle accepts everything");
        prop_assert_eq!(&trickle.bytes[..], &snapshot[..]);
        let restored = MvccStore::restore(&Bytes::from(streamed)).expect("restores");
        prop_assert_eq!(&restored, &store);
    }

    #[test]
    fn clones_are_independent(first in prop::collection::vec(workload_request(), 0..30), second in prop::collection::vec(workload_request(), 0..30)) {
        // Histories are shared copy-on-write and recorded session answers are shared between
        // clones: changing either side (puts, deletes, compaction, rolled-back transactions,
        // new and replaced sessions, answered retries, evictions) must leave the other as it
        // was.
        let store = build_store(&first, &[1, 2, 3]);
        let frozen = store.snapshot();
        let mut changed = store.clone();
        let mut expected = MvccStore::restore(&frozen).expect("restores");
        for command in session_commands(&second, first.len() as u64) {
            let outcome = changed.apply_command(command.clone());
            prop_assert_eq!(expected.apply_command(command), outcome);
        }
        changed.set_max_sessions(2);
        expected.set_max_sessions(2);
        prop_assert_eq!(store.snapshot(), frozen.clone());
        prop_assert_eq!(changed.snapshot(), expected.snapshot());
        prop_assert_eq!(&changed, &expected);
        let mut original = store;
        let copy = original.clone();
        for command in session_commands(&second, first.len() as u64) {
            let _ = original.apply_command(command);
        }
        original.set_max_sessions(1);
        prop_assert_eq!(copy.snapshot(), frozen.clone());
        // The untouched copy still answers each session's retry (the last command of each
        // client) as recorded, and older sequences as stale.
        let restored = MvccStore::restore(&frozen).expect("restores");
        for (index, request) in first.iter().enumerate() {
            let retry = MvccCommand {
                client_id: [1, 2, 3][index % 3],
                sequence: index as u64,
                request: request.clone(),
            };
            prop_assert_eq!(copy.clone().apply_command(retry.clone()), restored.clone().apply_command(retry));
        }
    }

    #[test]
    fn damaged_snapshots_are_rejected(requests in prop::collection::vec(workload_request(), 1..30), position in any::<prop::sample::Index>(), flip in 1u8..=255, with_section in any::<bool>()) {
        let store = build_store(&requests, &[7]);
        let snapshot = if with_section { streamed_with_value_log(&store) } else { store.snapshot().to_vec() };
        let mut damaged = snapshot.clone();
        let at = position.index(damaged.len());
        damaged[at] ^= flip;
        prop_assert!(MvccStore::restore(&Bytes::from(damaged)).is_err());
        let truncated = Bytes::copy_from_slice(&snapshot[..at]);
        prop_assert!(MvccStore::restore(&truncated).is_err());
    }

    #[test]
    fn checksummed_nonsense_never_panics(requests in prop::collection::vec(workload_request(), 1..30), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), with_section in any::<bool>()) {
        // Damage the body but fix the checksum, so restore must rely on its own checks.
        let store = build_store(&requests, &[7, 0]);
        let mut snapshot = if with_section { streamed_with_value_log(&store) } else { store.snapshot().to_vec() };
        let body = snapshot.len() - 4;
        for (position, byte) in edits {
            let at = 5 + position.index(body - 5);
            snapshot[at] = byte;
        }
        let snapshot = with_fixed_checksum(snapshot);
        if let Ok(mut store) = MvccStore::restore(&snapshot) {
            exercise(&mut store);
        }
        // Also into a store with a value log, which takes a section's values as they are.
        let mut logged = MvccStore::new();
        logged.set_value_log(Some(kv::mvcc::MemoryValueLog::new()), 1);
        if logged.restore_in_place(&snapshot).is_ok() {
            exercise(&mut logged);
        }
    }

    #[test]
    fn damaged_session_tables_never_panic(
        requests in prop::collection::vec(workload_request(), 1..30),
        clients in prop::collection::vec(0u64..300, 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        as_version_1 in any::<bool>(),
    ) {
        // The session table sits at the end of the body: damage only its part (the last half),
        // fix the checksum, and read it as either format version.
        let mut snapshot = build_store(&requests, &clients).snapshot().to_vec();
        let body = snapshot.len() - 4;
        let start = 5 + (body - 5) / 2;
        for (position, byte) in edits {
            let at = start + position.index(body - start);
            snapshot[at] = byte;
        }
        if as_version_1 {
            snapshot[4] = 1;
        }
        if let Ok(mut store) = MvccStore::restore(&with_fixed_checksum(snapshot)) {
            prop_assert!(store.session_count() <= store.max_sessions());
            exercise(&mut store);
        }
    }

    #[test]
    fn restoring_garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..128), version in 1u8..=3) {
        let mut input = b"RKMV".to_vec();
        input.push(version);
        input.extend_from_slice(&garbage);
        input.extend_from_slice(&[0; 4]);
        if let Ok(mut store) = MvccStore::restore(&with_fixed_checksum(input)) {
            exercise(&mut store);
        }
        let _ = MvccStore::restore(&Bytes::from(garbage));
    }
}

#[test]
fn snapshot_errors_name_the_problem() {
    let store = build_store(
        &[MvccRequest::Put(PutRequest::new(
            Bytes::from_static(b"k"),
            Bytes::from_static(b"v"),
        ))],
        &[3],
    );
    let snapshot = store.snapshot().to_vec();
    assert_eq!(
        MvccStore::restore(&Bytes::from_static(b"RK")),
        Err(SnapshotError::TooShort)
    );
    let mut wrong_magic = snapshot.clone();
    wrong_magic[0] = b'X';
    assert_eq!(
        MvccStore::restore(&Bytes::from(wrong_magic)),
        Err(SnapshotError::BadMagic)
    );
    let mut wrong_version = snapshot.clone();
    wrong_version[4] = 9;
    assert_eq!(
        MvccStore::restore(&Bytes::from(wrong_version)),
        Err(SnapshotError::UnsupportedVersion(9))
    );
    let mut flipped = snapshot.clone();
    flipped[6] ^= 1;
    assert!(matches!(
        MvccStore::restore(&Bytes::from(flipped)),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
    // A fresh store and the checksum of a known snapshot are stable across builds.
    let empty = MvccStore::new().snapshot();
    assert_eq!(
        &empty[..],
        &with_fixed_checksum(b"RKMV\x02\x02\x01\x00\x00\x00\0\0\0\0".to_vec())[..]
    );
    assert_eq!(MvccStore::restore(&empty), Ok(MvccStore::new()));
    // Version 1 snapshots (no session clock) are still read.
    let empty_v1 = with_fixed_checksum(b"RKMV\x01\x02\x01\x00\x00\0\0\0\0".to_vec());
    assert_eq!(MvccStore::restore(&empty_v1), Ok(MvccStore::new()));
}

/// A restored snapshot may carry a lease and a sub-revision beyond 32 bits, which no write of
/// this store produces (leases are refused, requests are bounded); the index keeps such an
/// entry out of line, and every answer, snapshot and hash must still carry them unchanged.
#[test]
fn restored_leases_and_large_sub_revisions_survive() {
    // current 3, compact -1, one key "k" with a put at revision {2, 2^32}, value "v",
    // create_revision 2, version 1, lease 7.
    let body =
        b"RKMV\x01\x06\x01\x01\x01k\x01\x02\x80\x80\x80\x80\x10\x01\x01v\x04\x02\x0e\x00\0\0\0\0"
            .to_vec();
    let store = MvccStore::restore(&with_fixed_checksum(body)).expect("consistent");
    let all = RangeRequest::new(Bytes::from_static(b"k"), Bytes::new());
    let kvs = store.range(&all).unwrap().kvs;
    assert_eq!(kvs.len(), 1);
    assert_eq!(
        (kvs[0].mod_revision, kvs[0].lease, &kvs[0].value[..]),
        (2, 7, &b"v"[..])
    );
    let snapshot = store.snapshot();
    // The sub-revision is written back as it was read.
    assert!(
        snapshot
            .windows(7)
            .any(|window| window == b"\x80\x80\x80\x80\x10\x01\x01")
    );
    let again = MvccStore::restore(&snapshot).expect("round trip");
    assert_eq!(again, store);
    assert_eq!(again.snapshot(), snapshot);
    // The same with the value in a value log.
    let mut logged = store.clone();
    logged.set_value_log(Some(kv::mvcc::MemoryValueLog::new()), 1);
    assert_eq!(logged, store);
    assert_eq!(logged.range(&all).unwrap().kvs, kvs);
    assert_eq!(logged.snapshot(), snapshot);
    assert_eq!(logged.hash_kv(0), store.hash_kv(0));
}

#[test]
fn section_values_are_taken_from_inside_the_section_only() {
    use kv::mvcc::ValueLog;
    // Format 3: current 3, compact -1, section "hello", one key "k" with a put at 2 whose
    // value is the section's 3 bytes at 1 ("ell"); session clock 0, no sessions.
    let snapshot = |version: u8, offset: u8, len: u8| {
        let mut body = b"RKMV".to_vec();
        body.push(version);
        body.extend_from_slice(b"\x06\x01\x05hello\x01\x01k\x01\x02\x00\x02");
        body.extend_from_slice(&[offset, len]);
        body.extend_from_slice(b"\x04\x02\x00\x00\x00\0\0\0\0");
        with_fixed_checksum(body)
    };
    let all = RangeRequest::new(Bytes::from_static(b"k"), Bytes::new());
    let store = MvccStore::restore(&snapshot(3, 1, 3)).expect("consistent");
    assert_eq!(&store.range(&all).unwrap().kvs[0].value[..], b"ell");
    let log = kv::mvcc::MemoryValueLog::new();
    log.append(b"before").expect("append");
    let mut logged = MvccStore::new();
    logged.set_value_log(Some(log.clone()), 64);
    logged
        .restore_in_place(&snapshot(3, 1, 3))
        .expect("consistent");
    assert_eq!(logged, store);
    assert_eq!(&logged.range(&all).unwrap().kvs[0].value[..], b"ell");
    // The section went to the log whole, and the value is referenced inside it.
    assert_eq!(log.size_bytes(), 11);
    assert_eq!(logged.value_log_live_bytes(), 3);
    for (offset, len) in [(3, 3), (0, 6), (6, 0), (0x7f, 1)] {
        for mut restoring in [MvccStore::new(), logged.clone()] {
            assert!(
                matches!(
                    restoring.restore_in_place(&snapshot(3, offset, len)),
                    Err(SnapshotError::Inconsistent(_))
                ),
                "offset {offset} len {len}"
            );
        }
    }
    // A value in a section is refused from a format without sections.
    assert!(matches!(
        MvccStore::restore(&snapshot(2, 1, 3)),
        Err(SnapshotError::Malformed(_))
    ));
}

#[test]
fn inconsistent_histories_are_refused() {
    // current 3, compact -1, one key "k" with a put at 2 claiming version 5.
    let body = b"RKMV\x01\x06\x01\x01\x01k\x01\x02\x00\x01\x01v\x04\x0a\x00\x00\0\0\0\0".to_vec();
    assert!(matches!(
        MvccStore::restore(&with_fixed_checksum(body)),
        Err(SnapshotError::Inconsistent(_))
    ));
    // The same with version 1 and create_revision 2 is fine.
    let body = b"RKMV\x01\x06\x01\x01\x01k\x01\x02\x00\x01\x01v\x04\x02\x00\x00\0\0\0\0".to_vec();
    let store = MvccStore::restore(&with_fixed_checksum(body)).expect("consistent");
    assert_eq!(store.current_revision(), 3);
    let kv = store
        .range(&RangeRequest::new(Bytes::from_static(b"k"), Bytes::new()))
        .unwrap()
        .kvs
        .remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
}

/// A `Write` that accepts at most `chunk` bytes per call, as sockets and pipes may.
struct Trickle {
    bytes: Vec<u8>,
    chunk: usize,
}

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let take = buf.len().min(self.chunk);
        self.bytes.extend_from_slice(&buf[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Write` that fails after accepting `left` bytes.
struct FailsAfter {
    left: usize,
}

impl std::io::Write for FailsAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let take = buf.len().min(self.left);
        self.left -= take;
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_snapshots_stream_through_the_buffer_and_report_write_errors() {
    // Several times the 64 KiB stream buffer, with values larger than it too.
    let mut store = MvccStore::new();
    for i in 0..3000u32 {
        let value = vec![(i % 251) as u8; if i % 500 == 0 { 100_000 } else { 300 }];
        store
            .apply(PutRequest::new(Bytes::from(format!("key-{:05}", i % 700)), value).into())
            .expect("put applies");
        if i % 3 == 0 {
            let _ = store.apply_command(MvccCommand {
                client_id: u64::from(i) + 1,
                sequence: 1,
                request: RangeRequest::new(
                    Bytes::from(format!("key-{:05}", i % 700)),
                    Bytes::new(),
                )
                .into(),
            });
        }
    }
    let snapshot = store.snapshot();
    assert!(snapshot.len() > 8 * 64 * 1024);
    assert_eq!(store.snapshot_size(), snapshot.len());
    let mut streamed = Vec::new();
    store
        .write_snapshot(&mut streamed)
        .expect("a Vec accepts everything");
    assert_eq!(streamed, snapshot.to_vec());
    assert_eq!(MvccStore::restore(&snapshot).expect("restores"), store);

    for left in [0, 10, 64 * 1024, snapshot.len() - 2] {
        let error = store
            .write_snapshot(FailsAfter { left })
            .expect_err("the destination's error is returned");
        assert_eq!(error.to_string(), "disk full");
    }
    store
        .write_snapshot(FailsAfter {
            left: snapshot.len(),
        })
        .expect("exactly enough room");
}
