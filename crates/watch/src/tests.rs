//! The hub against the store: etcd's answers, and the six guarantees (ordered, unique, atomic,
//! bookmarkable, reliable, resumable) under random writes, slow readers and compaction.

use super::*;
use kv::mvcc::{
    CompactionRequest, DeleteRangeRequest, MvccRequest, PutRequest, RequestOp, TxnRequest,
};
use proptest::prelude::*;

fn put(store: &mut MvccStore, hub: &mut WatchHub, key: &str, value: &str) -> i64 {
    write(
        store,
        hub,
        MvccRequest::Put(PutRequest::new(key.to_string(), value.to_string())),
    )
}

fn write(store: &mut MvccStore, hub: &mut WatchHub, request: MvccRequest) -> i64 {
    store.set_track_changes(hub.has_watchers());
    store.apply(request).expect("write applies");
    hub.notify(store);
    store.current_revision()
}

fn create(key: &str, range_end: &str, start_revision: i64) -> WatchRequest {
    WatchRequest::Create(CreateWatch {
        key: Bytes::from(key.to_string()),
        range_end: Bytes::from(range_end.to_string()),
        start_revision,
        ..CreateWatch::default()
    })
}

fn drain(hub: &mut WatchHub, stream: StreamId) -> Vec<WatchResponse> {
    let mut out = Vec::new();
    hub.drain(stream, &mut out).expect("stream open");
    out
}

fn keys_and_revisions(responses: &[WatchResponse]) -> Vec<(String, i64, EventKind)> {
    responses
        .iter()
        .flat_map(|response| &response.events)
        .map(|event| {
            (
                String::from_utf8_lossy(&event.event.kv.key).into_owned(),
                event.event.revision(),
                event.event.kind,
            )
        })
        .collect()
}

#[test]
fn a_watch_from_now_sees_later_writes_of_its_key_only() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    put(&mut store, &mut hub, "a", "0");
    let stream = hub.open_stream(None);
    hub.request(stream, create("a", "", 0), &store).unwrap();
    let created = drain(&mut hub, stream);
    assert_eq!(created.len(), 1);
    assert!(created[0].created && !created[0].canceled);
    assert_eq!((created[0].watch_id, created[0].revision), (0, 2));

    put(&mut store, &mut hub, "b", "1");
    put(&mut store, &mut hub, "a", "2");
    write(
        &mut store,
        &mut hub,
        MvccRequest::DeleteRange(DeleteRangeRequest::new("a", "")),
    );
    let events = drain(&mut hub, stream);
    assert_eq!(
        keys_and_revisions(&events),
        vec![
            ("a".into(), 4, EventKind::Put),
            ("a".into(), 5, EventKind::Delete)
        ]
    );
    // A delete's kv carries the key and the delete's revision only, as etcd's.
    let deleted = &events[1].events[0].event.kv;
    assert_eq!((deleted.version, deleted.create_revision), (0, 0));
    assert!(deleted.value.is_empty());
    assert_eq!(events[1].revision, 5);
}

#[test]
fn an_empty_key_from_key_watches_every_key() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("", "\0", 0), &store).unwrap();
    put(&mut store, &mut hub, "a", "1");
    put(&mut store, &mut hub, "\u{1}", "2");
    assert_eq!(keys_and_revisions(&drain(&mut hub, stream)).len(), 2);
}

#[test]
fn a_start_revision_in_the_past_replays_history_then_follows() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    for value in 0..5 {
        put(&mut store, &mut hub, "k", &value.to_string());
    }
    let stream = hub.open_stream(None);
    hub.request(stream, create("k", "", 3), &store).unwrap();
    put(&mut store, &mut hub, "k", "late");
    let responses = drain(&mut hub, stream);
    let revisions: Vec<i64> = keys_and_revisions(&responses)
        .into_iter()
        .map(|(_, revision, _)| revision)
        .collect();
    assert_eq!(revisions, vec![3, 4, 5, 6, 7]);
}

#[test]
fn a_start_revision_in_the_future_waits_for_it() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("k", "", 4), &store).unwrap();
    for value in 0..4 {
        put(&mut store, &mut hub, "k", &value.to_string());
    }
    let revisions: Vec<i64> = keys_and_revisions(&drain(&mut hub, stream))
        .into_iter()
        .map(|(_, revision, _)| revision)
        .collect();
    assert_eq!(revisions, vec![4, 5]);
}

#[test]
fn a_compacted_start_gets_the_compaction_revision_and_is_canceled() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    for value in 0..5 {
        put(&mut store, &mut hub, "k", &value.to_string());
    }
    store
        .apply(MvccRequest::Compact(CompactionRequest {
            revision: 5,
            physical: false,
        }))
        .unwrap();
    let stream = hub.open_stream(None);
    hub.request(stream, create("k", "", 2), &store).unwrap();
    let responses = drain(&mut hub, stream);
    assert_eq!(responses.len(), 2);
    assert!(responses[0].created);
    assert!(responses[1].canceled);
    assert_eq!(responses[1].compact_revision, 5);
    assert_eq!(hub.stats().watchers, 0);
    // At the compaction revision itself, history is still there.
    hub.request(stream, create("k", "", 5), &store).unwrap();
    let responses = drain(&mut hub, stream);
    assert_eq!(keys_and_revisions(&responses).len(), 2);
}

#[test]
fn a_multi_key_transaction_arrives_in_one_response() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("p/", "p0", 0), &store).unwrap();
    drain(&mut hub, stream);
    let txn = TxnRequest {
        compare: Vec::new(),
        success: vec![
            RequestOp::Put(PutRequest::new("p/1", "x")),
            RequestOp::Put(PutRequest::new("q", "outside")),
            RequestOp::Put(PutRequest::new("p/2", "y")),
        ],
        failure: Vec::new(),
    };
    write(&mut store, &mut hub, MvccRequest::Txn(txn));
    let responses = drain(&mut hub, stream);
    assert_eq!(responses.len(), 1);
    assert_eq!(
        keys_and_revisions(&responses),
        vec![
            ("p/1".into(), 2, EventKind::Put),
            ("p/2".into(), 2, EventKind::Put)
        ]
    );
}

/// The TEST-ONLY split fault (for the simulator's checker): every `split_revision_every`-th
/// response holding a revision of several events is split inside it, neither part marked a
/// fragment; responses of one event per revision are left alone.
#[test]
fn the_split_fault_splits_a_multi_event_revision_unmarked() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    hub.set_faults(WatchFaults {
        split_revision_every: 2,
        ..WatchFaults::default()
    });
    let stream = hub.open_stream(None);
    hub.request(stream, create("p/", "p0", 0), &store).unwrap();
    drain(&mut hub, stream);
    let txn = || {
        MvccRequest::Txn(TxnRequest {
            compare: Vec::new(),
            success: vec![
                RequestOp::Put(PutRequest::new("p/1", "x")),
                RequestOp::Put(PutRequest::new("p/2", "y")),
            ],
            failure: Vec::new(),
        })
    };
    let mut sizes = Vec::new();
    for _ in 0..2 {
        put(&mut store, &mut hub, "p/3", "z");
        write(&mut store, &mut hub, txn());
        let responses = drain(&mut hub, stream);
        assert!(responses.iter().all(|response| !response.fragment));
        sizes.push(responses.iter().map(|r| r.events.len()).collect::<Vec<_>>());
    }
    assert_eq!(sizes, vec![vec![1, 2], vec![1, 1, 1]]);
}

#[test]
fn ids_are_chosen_from_zero_up_and_a_duplicate_is_refused() {
    let (store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    let with_id = |id: i64| {
        WatchRequest::Create(CreateWatch {
            key: Bytes::from_static(b"k"),
            watch_id: id,
            ..CreateWatch::default()
        })
    };
    hub.request(stream, with_id(1), &store).unwrap();
    hub.request(stream, with_id(0), &store).unwrap();
    hub.request(stream, with_id(0), &store).unwrap();
    hub.request(stream, with_id(1), &store).unwrap();
    let answers: Vec<(i64, bool, String)> = drain(&mut hub, stream)
        .into_iter()
        .map(|r| (r.watch_id, r.canceled, r.cancel_reason))
        .collect();
    assert_eq!(
        answers,
        vec![
            (1, false, String::new()),
            (0, false, String::new()),
            (2, false, String::new()),
            (-1, true, DUPLICATE_ID.to_string()),
        ]
    );
}

#[test]
fn an_empty_range_and_too_many_watchers_are_refused() {
    let store = MvccStore::new();
    let mut hub = WatchHub::new(WatchLimits {
        max_watchers_per_stream: 1,
        ..WatchLimits::default()
    });
    let stream = hub.open_stream(None);
    hub.request(stream, create("b", "a", 0), &store).unwrap();
    hub.request(stream, create("a", "", 0), &store).unwrap();
    hub.request(stream, create("c", "", 0), &store).unwrap();
    let answers = drain(&mut hub, stream);
    assert_eq!(answers[0].cancel_reason, EMPTY_RANGE);
    assert!(!answers[1].canceled);
    assert!(answers[2].canceled && answers[2].cancel_reason.contains("too many watchers"));
    assert_eq!(hub.stats().watchers, 1);
}

#[test]
fn cancel_answers_once_and_ignores_unknown_ids() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("k", "", 0), &store).unwrap();
    hub.request(stream, WatchRequest::Cancel(0), &store)
        .unwrap();
    hub.request(stream, WatchRequest::Cancel(0), &store)
        .unwrap();
    hub.request(stream, WatchRequest::Cancel(77), &store)
        .unwrap();
    let answers = drain(&mut hub, stream);
    assert_eq!(answers.len(), 2);
    assert!(answers[1].canceled && answers[1].watch_id == 0);
    put(&mut store, &mut hub, "k", "v");
    assert!(drain(&mut hub, stream).is_empty());
    assert!(!hub.has_synced());
}

#[test]
fn filters_and_prev_kv() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    put(&mut store, &mut hub, "k", "old");
    let stream = hub.open_stream(None);
    let create = |no_put, no_delete| {
        WatchRequest::Create(CreateWatch {
            key: Bytes::from_static(b"k"),
            prev_kv: true,
            no_put,
            no_delete,
            ..CreateWatch::default()
        })
    };
    hub.request(stream, create(true, false), &store).unwrap();
    hub.request(stream, create(false, true), &store).unwrap();
    drain(&mut hub, stream);
    put(&mut store, &mut hub, "k", "new");
    write(
        &mut store,
        &mut hub,
        MvccRequest::DeleteRange(DeleteRangeRequest::new("k", "")),
    );
    let answers = drain(&mut hub, stream);
    assert_eq!(answers.len(), 2);
    // Watcher 1 (no deletes) sees the put, with the old value as prev_kv.
    assert_eq!(answers[0].watch_id, 1);
    assert_eq!(answers[0].events[0].event.kind, EventKind::Put);
    assert_eq!(
        answers[0].events[0].prev_kv.as_ref().unwrap().value,
        Bytes::from_static(b"old")
    );
    // Watcher 0 (no puts) sees the delete, with the deleted value as prev_kv.
    assert_eq!(answers[1].watch_id, 0);
    assert_eq!(answers[1].events[0].event.kind, EventKind::Delete);
    assert_eq!(
        answers[1].events[0].prev_kv.as_ref().unwrap().value,
        Bytes::from_static(b"new")
    );
}

#[test]
fn large_revisions_are_fragmented_only_when_asked() {
    let mut store = MvccStore::new();
    let mut hub = WatchHub::new(WatchLimits {
        max_response_bytes: 300,
        ..WatchLimits::default()
    });
    let stream = hub.open_stream(None);
    for fragment in [false, true] {
        hub.request(
            stream,
            WatchRequest::Create(CreateWatch {
                key: Bytes::from_static(b"f/"),
                range_end: Bytes::from_static(b"f0"),
                fragment,
                ..CreateWatch::default()
            }),
            &store,
        )
        .unwrap();
    }
    drain(&mut hub, stream);
    let value = "v".repeat(100);
    let txn = TxnRequest {
        compare: Vec::new(),
        success: (0..5)
            .map(|i| RequestOp::Put(PutRequest::new(format!("f/{i}"), value.clone())))
            .collect(),
        failure: Vec::new(),
    };
    write(&mut store, &mut hub, MvccRequest::Txn(txn));
    let answers = drain(&mut hub, stream);
    let whole: Vec<&WatchResponse> = answers.iter().filter(|r| r.watch_id == 0).collect();
    let parts: Vec<&WatchResponse> = answers.iter().filter(|r| r.watch_id == 1).collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 5);
    assert!(parts.len() > 1);
    assert!(parts[..parts.len() - 1].iter().all(|r| r.fragment));
    assert!(!parts[parts.len() - 1].fragment);
    assert_eq!(parts.iter().map(|r| r.events.len()).sum::<usize>(), 5);
}

#[test]
fn a_slow_stream_falls_back_to_history_without_gaps_and_progress_waits_for_it() {
    let mut store = MvccStore::new();
    let mut hub = WatchHub::new(WatchLimits {
        max_queued_responses: 2,
        catch_up_events: 3,
        ..WatchLimits::default()
    });
    let slow = hub.open_stream(None);
    let fast = hub.open_stream(None);
    hub.request(slow, create("k", "", 0), &store).unwrap();
    hub.request(fast, create("k", "", 0), &store).unwrap();
    drain(&mut hub, slow);
    drain(&mut hub, fast);
    let mut fast_seen = Vec::new();
    for value in 0..10 {
        put(&mut store, &mut hub, "k", &value.to_string());
        fast_seen.extend(drain(&mut hub, fast));
    }
    assert_eq!(keys_and_revisions(&fast_seen).len(), 10);
    assert_eq!(hub.stats().unsynced, 1);
    // A progress request must wait until the slow watcher has every event.
    hub.request(slow, WatchRequest::Progress, &store).unwrap();
    let mut slow_seen = Vec::new();
    loop {
        let mut out = Vec::new();
        let drained = hub.drain(slow, &mut out).unwrap();
        slow_seen.extend(out);
        if !drained.needs_catch_up {
            break;
        }
        hub.request(slow, WatchRequest::CatchUp, &store).unwrap();
    }
    slow_seen.extend(drain(&mut hub, slow));
    let revisions: Vec<i64> = keys_and_revisions(&slow_seen)
        .into_iter()
        .map(|(_, revision, _)| revision)
        .collect();
    assert_eq!(revisions, (2..=11).collect::<Vec<_>>());
    let progress = slow_seen.last().unwrap();
    assert_eq!(
        (progress.watch_id, progress.revision),
        (PROGRESS_WATCH_ID, 11)
    );
    assert!(progress.is_progress());
}

#[test]
fn periodic_progress_reaches_idle_caught_up_watchers_only() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    for key in ["idle", "busy"] {
        hub.request(
            stream,
            WatchRequest::Create(CreateWatch {
                key: Bytes::from(key),
                progress_notify: true,
                ..CreateWatch::default()
            }),
            &store,
        )
        .unwrap();
    }
    drain(&mut hub, stream);
    put(&mut store, &mut hub, "busy", "v");
    drain(&mut hub, stream);
    hub.request(stream, WatchRequest::PeriodicProgress, &store)
        .unwrap();
    let answers = drain(&mut hub, stream);
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].watch_id, answers[0].revision), (0, 2));
    hub.request(stream, WatchRequest::PeriodicProgress, &store)
        .unwrap();
    assert_eq!(drain(&mut hub, stream).len(), 2);
}

#[test]
fn closing_a_stream_drops_its_watchers() {
    let (mut store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("a", "", 0), &store).unwrap();
    hub.request(stream, create("a", "b", 1), &store).unwrap();
    hub.close_stream(stream);
    assert_eq!(hub.stats(), WatchStats::default());
    assert!(!hub.has_synced());
    put(&mut store, &mut hub, "a", "v");
    assert_eq!(
        hub.request(stream, WatchRequest::CatchUp, &store),
        Err(UnknownStream(stream))
    );
}

#[test]
fn a_restore_sends_every_watcher_back_to_history() {
    let (store, mut hub) = (MvccStore::new(), WatchHub::default());
    let stream = hub.open_stream(None);
    hub.request(stream, create("k", "", 0), &store).unwrap();
    drain(&mut hub, stream);
    // Another member's state moved on by three writes; this one installs it.
    let mut other = store.clone();
    for value in 0..3 {
        other
            .apply(MvccRequest::Put(PutRequest::new("k", value.to_string())))
            .unwrap();
    }
    let previous = store.current_revision();
    let store = other;
    hub.restored(previous, store.current_revision());
    let mut out = Vec::new();
    assert!(hub.drain(stream, &mut out).unwrap().needs_catch_up);
    hub.request(stream, WatchRequest::CatchUp, &store).unwrap();
    let revisions: Vec<i64> = keys_and_revisions(&drain(&mut hub, stream))
        .into_iter()
        .map(|(_, revision, _)| revision)
        .collect();
    assert_eq!(revisions, vec![2, 3, 4]);
}

/// What the random test does.
#[derive(Clone, Debug)]
enum Step {
    Put(u8),
    Delete(u8),
    /// A transaction putting two keys.
    PutTwo(u8, u8),
    Watch {
        key: u8,
        prefix: bool,
        back: u8,
    },
    Drain(u8),
    Compact,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => any::<u8>().prop_map(|k| Step::Put(k % 6)),
        2 => any::<u8>().prop_map(|k| Step::Delete(k % 6)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::PutTwo(a % 6, b % 6)),
        1 => (any::<u8>(), any::<bool>(), any::<u8>())
            .prop_map(|(key, prefix, back)| Step::Watch { key: key % 6, prefix, back: back % 8 }),
        3 => any::<u8>().prop_map(|s| Step::Drain(s % 3)),
        1 => Just(Step::Compact),
    ]
}

fn key_name(key: u8) -> String {
    format!("k{key}")
}

/// A watcher as the client sees it.
struct Seen {
    stream: StreamId,
    watch_id: i64,
    key: String,
    prefix: bool,
    start: i64,
    events: Vec<(String, i64, EventKind)>,
    compacted: bool,
    last_progress: i64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Every watcher's events are exactly the committed changes in its range from its start
    /// revision (ordered, unique, no gaps), each revision whole in one response, and no
    /// progress answer runs ahead of what was delivered — with tiny queues, so watchers keep
    /// falling back to history, and with compaction, which may cancel them.
    #[test]
    fn every_watcher_sees_exactly_the_history_of_its_range(
        steps in proptest::collection::vec(step(), 1..120),
        recent_bytes in prop_oneof![Just(0usize), Just(300), Just(16 << 20)],
    ) {
        let mut store = MvccStore::new();
        let mut hub = WatchHub::new(WatchLimits {
            max_queued_responses: 2,
            catch_up_events: 2,
            recent_bytes,
            ..WatchLimits::default()
        });
        let streams: Vec<StreamId> = (0..3).map(|_| hub.open_stream(None)).collect();
        // The truth: every change, by revision.
        let mut truth: Vec<(String, i64, EventKind)> = Vec::new();
        let mut watchers: Vec<Seen> = Vec::new();
        let mut next_stream = 0;
        for step in steps {
            let before = store.current_revision();
            match step {
                Step::Put(key) => {
                    put(&mut store, &mut hub, &key_name(key), "v");
                    truth.push((key_name(key), store.current_revision(), EventKind::Put));
                }
                Step::Delete(key) => {
                    let live = store
                        .range(&kv::mvcc::RangeRequest::new(key_name(key), ""))
                        .unwrap()
                        .count;
                    write(&mut store, &mut hub,
                        MvccRequest::DeleteRange(DeleteRangeRequest::new(key_name(key), "")));
                    if live > 0 {
                        truth.push((key_name(key), store.current_revision(), EventKind::Delete));
                    }
                }
                Step::PutTwo(a, b) if a != b => {
                    let txn = TxnRequest {
                        compare: Vec::new(),
                        success: vec![
                            RequestOp::Put(PutRequest::new(key_name(a), "t")),
                            RequestOp::Put(PutRequest::new(key_name(b), "t")),
                        ],
                        failure: Vec::new(),
                    };
                    write(&mut store, &mut hub, MvccRequest::Txn(txn));
                    truth.push((key_name(a), store.current_revision(), EventKind::Put));
                    truth.push((key_name(b), store.current_revision(), EventKind::Put));
                }
                Step::PutTwo(..) => {}
                Step::Watch { key, prefix, back } => {
                    let stream = streams[next_stream % streams.len()];
                    next_stream += 1;
                    let start = (before - i64::from(back)).max(0);
                    let (name, end) = if prefix {
                        ("k".to_string(), "l".to_string())
                    } else {
                        (key_name(key), String::new())
                    };
                    hub.request(stream, create(&name, &end, start), &store).unwrap();
                    watchers.push(Seen {
                        stream,
                        watch_id: -2,
                        key: name,
                        prefix,
                        start: if start == 0 { before + 1 } else { start },
                        events: Vec::new(),
                        compacted: false,
                        last_progress: 0,
                    });
                }
                Step::Drain(which) => {
                    let stream = streams[usize::from(which)];
                    if before % 2 == 0 {
                        hub.request(stream, WatchRequest::Progress, &store).unwrap();
                    }
                    let mut out = Vec::new();
                    let drained = hub.drain(stream, &mut out).unwrap();
                    absorb(&mut watchers, stream, out);
                    if drained.needs_catch_up {
                        hub.request(stream, WatchRequest::CatchUp, &store).unwrap();
                    }
                }
                Step::Compact => {
                    let at = (before - 3).max(1);
                    let _ = store.apply(MvccRequest::Compact(CompactionRequest {
                        revision: at, physical: false,
                    }));
                }
            }
        }
        // Drain everything to the end.
        for _ in 0..10_000 {
            let mut busy = false;
            for &stream in &streams {
                let mut out = Vec::new();
                let drained = hub.drain(stream, &mut out).unwrap();
                busy |= !out.is_empty() || drained.needs_catch_up;
                absorb(&mut watchers, stream, out);
                if drained.needs_catch_up {
                    hub.request(stream, WatchRequest::CatchUp, &store).unwrap();
                }
            }
            if !busy {
                break;
            }
        }
        prop_assert_eq!(hub.stats().unsynced, 0);
        for watcher in &watchers {
            let expected: Vec<(String, i64, EventKind)> = truth
                .iter()
                .filter(|(key, revision, _)| {
                    *revision >= watcher.start
                        && if watcher.prefix { key.starts_with('k') } else { *key == watcher.key }
                })
                .cloned()
                .collect();
            if watcher.compacted {
                // Canceled: what it got must be a prefix of the truth.
                prop_assert!(expected.starts_with(&watcher.events));
            } else {
                prop_assert_eq!(&watcher.events, &expected);
            }
        }
    }
}

/// Hands a stream's responses to its watchers (in creation order for `created` answers) and
/// checks each response on arrival: whole revisions, progress never ahead of events.
fn absorb(watchers: &mut [Seen], stream: StreamId, responses: Vec<WatchResponse>) {
    for response in responses {
        if response.created {
            let waiting = watchers
                .iter_mut()
                .find(|w| w.stream == stream && w.watch_id == -2)
                .expect("a create waits for its answer");
            waiting.watch_id = response.watch_id;
            continue;
        }
        if response.watch_id == PROGRESS_WATCH_ID {
            // It concerns the watchers created before it was answered (in queue order).
            for watcher in watchers
                .iter_mut()
                .filter(|w| w.stream == stream && w.watch_id != -2)
            {
                if let Some(last) = watcher.events.last() {
                    assert!(last.1 <= response.revision, "progress behind an event");
                }
                watcher.last_progress = response.revision;
            }
            continue;
        }
        let Some(watcher) = watchers
            .iter_mut()
            .find(|w| w.stream == stream && w.watch_id == response.watch_id && !w.compacted)
        else {
            continue;
        };
        if response.compact_revision != 0 {
            watcher.compacted = true;
            watcher.watch_id = i64::MIN;
            continue;
        }
        if let (Some(last), Some(first)) = (watcher.events.last(), response.events.first()) {
            assert!(
                first.event.revision() > last.1,
                "revision {} split across responses (or out of order)",
                last.1
            );
        }
        for event in &response.events {
            let revision = event.event.revision();
            assert!(
                revision > watcher.last_progress,
                "an event at {revision} arrived after progress claimed {}",
                watcher.last_progress
            );
            watcher.events.push((
                String::from_utf8_lossy(&event.event.kv.key).into_owned(),
                revision,
                event.event.kind,
            ));
        }
    }
}
