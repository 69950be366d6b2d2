//! The bounded session table of `kv::mvcc`: least recently used sessions are evicted first, a
//! retry of an evicted session is applied again (documented), and the order survives
//! snapshot and restore.

use bytes::Bytes;
use kv::mvcc::{DEFAULT_MAX_SESSIONS, MvccCommand, MvccResponse, MvccStore, PutRequest};
use proptest::prelude::*;

/// A put of `key` from session `client` with `sequence`.
fn command(client: u64, sequence: u64, key: &str) -> MvccCommand {
    MvccCommand {
        client_id: client,
        sequence,
        request: PutRequest::new(
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::from_static(b"v"),
        )
        .into(),
    }
}

/// Sends `command` and tells whether it was applied (the revision moved) or answered from
/// the session table (it did not, and the answer is the recorded one).
fn applied(store: &mut MvccStore, command: MvccCommand) -> bool {
    let before = store.current_revision();
    let response = store.apply_command(command).expect("the put succeeds");
    assert!(matches!(response, MvccResponse::Put(_)));
    store.current_revision() != before
}

#[test]
fn the_default_bound_is_documented_and_zero_counts_as_one() {
    assert_eq!(MvccStore::new().max_sessions(), DEFAULT_MAX_SESSIONS);
    assert_eq!(DEFAULT_MAX_SESSIONS, 65_536);
    assert_eq!(MvccStore::with_max_sessions(0).max_sessions(), 1);
    let mut store = MvccStore::new();
    store.set_max_sessions(0);
    assert_eq!(store.max_sessions(), 1);
}

#[test]
fn sessions_are_evicted_least_recently_used_first() {
    let mut store = MvccStore::with_max_sessions(3);
    for client in 1..=3 {
        assert!(applied(&mut store, command(client, 1, "k")));
    }
    // A new command of session 1 makes it the most recently used: 2 is now the oldest.
    assert!(applied(&mut store, command(1, 2, "k")));
    assert!(applied(&mut store, command(4, 1, "k")));
    assert_eq!(store.session_count(), 3);
    // 2 was evicted: its retry is applied a second time (the documented cost of the bound) and
    // opens a new session, which in turn evicts the oldest one left, 3.
    assert!(applied(&mut store, command(2, 1, "k")));
    // 1 and 4 are still known: their retries are answered from the table.
    assert!(!applied(&mut store, command(1, 2, "k")));
    assert!(!applied(&mut store, command(4, 1, "k")));
    assert!(applied(&mut store, command(3, 1, "k")), "3 was evicted");
    assert_eq!(store.session_count(), 3);
}

#[test]
fn an_answered_retry_counts_as_a_use() {
    let mut store = MvccStore::with_max_sessions(2);
    assert!(applied(&mut store, command(1, 1, "a")));
    assert!(applied(&mut store, command(2, 1, "b")));
    // Retrying 1 (answered from the table) makes it more recent than 2.
    assert!(!applied(&mut store, command(1, 1, "a")));
    assert!(applied(&mut store, command(3, 1, "c")));
    assert!(!applied(&mut store, command(1, 1, "a")), "1 was kept");
    assert!(applied(&mut store, command(2, 1, "b")), "2 was evicted");
}

#[test]
fn sessionless_commands_never_enter_the_table() {
    let mut store = MvccStore::with_max_sessions(1);
    assert!(applied(&mut store, command(1, 1, "a")));
    assert!(applied(&mut store, command(0, 1, "a")));
    assert!(applied(&mut store, command(0, 1, "a")));
    assert_eq!(store.session_count(), 1);
    assert!(!applied(&mut store, command(1, 1, "a")));
}

#[test]
fn lowering_the_bound_evicts_the_oldest_at_once() {
    let mut store = MvccStore::with_max_sessions(10);
    for client in 1..=5 {
        assert!(applied(&mut store, command(client, 1, "k")));
    }
    let size = store.approx_size_bytes();
    store.set_max_sessions(2);
    assert_eq!(store.session_count(), 2);
    assert!(
        store.approx_size_bytes() < size,
        "evicted sessions stop counting"
    );
    store.set_max_sessions(10);
    assert!(!applied(&mut store, command(5, 1, "k")));
    assert!(!applied(&mut store, command(4, 1, "k")));
    assert!(applied(&mut store, command(3, 1, "k")));
}

/// A store whose recency order differs from client order: 5, 1, 4, 2, 3 from oldest to newest.
fn shuffled_sessions(max_sessions: usize) -> MvccStore {
    let mut store = MvccStore::with_max_sessions(max_sessions);
    for client in [5, 1, 4, 2, 3] {
        assert!(applied(&mut store, command(client, 1, "k")));
    }
    // Retries reorder too: 5 becomes the newest, then 1.
    assert!(!applied(&mut store, command(5, 1, "k")));
    assert!(!applied(&mut store, command(1, 1, "k")));
    // Oldest to newest now: 4, 2, 3, 5, 1.
    store
}

#[test]
fn eviction_order_survives_snapshot_and_restore() {
    let mut original = shuffled_sessions(5);
    let snapshot = original.snapshot();

    let mut restored = MvccStore::with_max_sessions(5);
    restored.restore_in_place(&snapshot).expect("restores");
    assert_eq!(restored, original);
    assert_eq!(restored.max_sessions(), 5);

    // New sessions evict 4, then 2, then 3 on both.
    for (client, evicted) in [(6, 4), (7, 2), (8, 3)] {
        assert!(applied(&mut original, command(client, 1, "n")));
        assert!(applied(&mut restored, command(client, 1, "n")));
        assert_eq!(original.digest(), restored.digest());
        let mut probe_original = original.clone();
        let mut probe_restored = restored.clone();
        assert!(applied(&mut probe_original, command(evicted, 1, "k")));
        assert!(applied(&mut probe_restored, command(evicted, 1, "k")));
    }
    // 5 and 1 survived everywhere.
    for client in [5, 1] {
        assert!(!applied(&mut original, command(client, 1, "k")));
        assert!(!applied(&mut restored, command(client, 1, "k")));
    }
    assert_eq!(original, restored);
    assert_eq!(original.snapshot(), restored.snapshot());
}

#[test]
fn restore_keeps_the_configured_bound() {
    let original = shuffled_sessions(5);
    let snapshot = original.snapshot();

    // `restore` builds a store with the default bound...
    let restored = MvccStore::restore(&snapshot).expect("restores");
    assert_eq!(restored.max_sessions(), DEFAULT_MAX_SESSIONS);
    assert_eq!(restored, original, "equality ignores the bound");

    // ...`restore_in_place` keeps the receiver's, keeping the most recent sessions only.
    let mut small = MvccStore::with_max_sessions(2);
    small.restore_in_place(&snapshot).expect("restores");
    assert_eq!(small.max_sessions(), 2);
    assert_eq!(small.session_count(), 2);
    assert!(!applied(&mut small.clone(), command(1, 1, "k")));
    assert!(!applied(&mut small.clone(), command(5, 1, "k")));
    assert!(applied(&mut small.clone(), command(3, 1, "k")));

    // A failed restore leaves the store as it was.
    let before = small.clone();
    assert!(
        small
            .restore_in_place(&Bytes::from_static(b"nonsense"))
            .is_err()
    );
    assert_eq!(small, before);
    assert_eq!(small.max_sessions(), 2);
}

/// One step of a session workload: a session, and whether it retries its last request or
/// sends a new one.
fn steps() -> impl Strategy<Value = Vec<(u64, bool)>> {
    prop::collection::vec((1u64..8, any::<bool>()), 1..80)
}

proptest! {
    /// The store evicts exactly as a naive LRU list does, and a store restored from a snapshot
    /// taken at any point goes on identically.
    #[test]
    fn sessions_behave_like_a_naive_lru(
        steps in steps(),
        bound in 1usize..5,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut store = MvccStore::with_max_sessions(bound);
        // Oldest first; each with its last sequence.
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut next_sequence = [1u64; 8];
        let cut = cut.index(steps.len());
        let mut restored: Option<MvccStore> = None;
        for (step, (client, retry)) in steps.iter().copied().enumerate() {
            if step == cut {
                let mut copy = MvccStore::with_max_sessions(bound);
                copy.restore_in_place(&store.snapshot()).expect("restores");
                restored = Some(copy);
            }
            let slot = usize::try_from(client).unwrap();
            let sequence = if retry {
                next_sequence[slot] - 1
            } else {
                next_sequence[slot] += 1;
                next_sequence[slot] - 1
            };
            let known = model
                .iter()
                .position(|(id, last)| *id == client && *last == sequence);
            let stale = model.iter().any(|(id, last)| *id == client && *last > sequence);
            let cmd = command(client, sequence, "k");
            let before = store.current_revision();
            let result = store.apply_command(cmd.clone());
            if let Some(copy) = restored.as_mut() {
                prop_assert_eq!(copy.apply_command(cmd), result.clone());
            }
            if stale {
                prop_assert!(result.is_err());
                continue;
            }
            prop_assert!(result.is_ok());
            let answered = store.current_revision() == before;
            prop_assert_eq!(answered, known.is_some(), "step {}", step);
            model.retain(|(id, _)| *id != client);
            model.push((client, sequence));
            if model.len() > bound {
                model.remove(0);
            }
            prop_assert_eq!(store.session_count(), model.len());
        }
        if let Some(copy) = restored {
            prop_assert_eq!(&copy, &store);
            prop_assert_eq!(copy.snapshot(), store.snapshot());
        }
    }
}
