//! Messages come from outside: whatever they say, the node must not panic, must count what it
//! drops, and must not let a nonsensical message change what it has committed.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use raft::{
    DropReason, Entry, EntryKind, LogIndex, MemStorage, Message, MessageBody, NodeId, RawNode,
    Role, Term,
};
use std::collections::BTreeMap;

/// A follower of a 3-member cluster, log `1:t1 2:t1 3:t2`, term 2, commit 1.
fn follower() -> RawNode<MemStorage> {
    node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 1, 2]),
        hard_state(2, 0, 1),
        |_| {},
    )
}

/// Node 1 as the leader of a fresh 3-member cluster (term 1, log `1:t1`, committed), taken out
/// of the cluster to be fed by hand.
fn leader() -> RawNode<MemStorage> {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.take_node(1)
}

/// Asserts that `step` was dropped for `reason` and changed nothing observable.
fn assert_dropped(node: &mut RawNode<MemStorage>, message: Message, reason: DropReason) {
    let before = node.status();
    let before_log = node.entries(LogIndex(1), node.last_index().next());
    let count = node.dropped(reason);
    node.step(message.clone());
    assert_eq!(
        node.dropped(reason),
        count + 1,
        "{message:?} not dropped for {reason:?}"
    );
    assert!(!node.has_ready(), "{message:?} produced work");
    let after = node.status();
    assert_eq!(after.hard_state, before.hard_state);
    assert_eq!(after.soft_state, before.soft_state);
    assert_eq!(
        node.entries(LogIndex(1), node.last_index().next()),
        before_log
    );
    assert_eq!(node.check_invariants(), Ok(()));
}

#[test]
fn messages_from_non_members_are_dropped() {
    let mut node = follower();
    // Nobody can be node 0, and nobody else can be us.
    for from in [0, 1] {
        assert_dropped(
            &mut node,
            message(from, 1, 2, append(3, 2, entries(4, &[2]), 4)),
            DropReason::UnknownSender,
        );
    }
    // Votes and answers from outside the configuration are ignored, so removed members cannot
    // disrupt it. (A leader's appends are accepted from anyone: a member may not yet have
    // applied the change that added its leader; terms keep stale leaders harmless.)
    for from in [0, 1, 4, 99, u64::MAX] {
        assert_dropped(
            &mut node,
            message(from, 1, 9, vote_request(100, 9)),
            DropReason::UnknownSender,
        );
        assert_dropped(
            &mut node,
            message(from, 1, 2, vote_response(false, true)),
            DropReason::UnknownSender,
        );
    }
}

#[test]
fn messages_for_another_node_are_dropped() {
    let mut node = follower();
    for to in [0, 2, 7, u64::MAX] {
        assert_dropped(
            &mut node,
            message(2, to, 2, append(3, 2, entries(4, &[2]), 4)),
            DropReason::WrongRecipient,
        );
    }
}

#[test]
fn appends_with_non_consecutive_entries_are_dropped() {
    let mut node = follower();
    let mut gap = entries(4, &[2]);
    gap.extend(entries(6, &[2]));
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, gap, 1)),
        DropReason::Malformed,
    );
    // Not starting right after prev.
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, entries(5, &[2]), 1)),
        DropReason::Malformed,
    );
    // Repeated index.
    let mut repeated = entries(4, &[2]);
    repeated.extend(entries(4, &[2]));
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, repeated, 1)),
        DropReason::Malformed,
    );
}

#[test]
fn appends_with_entries_from_a_later_term_than_the_message_are_dropped() {
    let mut node = follower();
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, entries(4, &[3]), 1)),
        DropReason::Malformed,
    );
    // A previous entry from the future, and decreasing terms, make no sense either.
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 3, Vec::new(), 1)),
        DropReason::Malformed,
    );
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, entries(4, &[2, 1]), 1)),
        DropReason::Malformed,
    );
    // A no-op carrying data.
    let mut noop = entries(4, &[2]);
    noop[0].kind = EntryKind::Empty;
    assert_dropped(
        &mut node,
        message(2, 1, 2, append(3, 2, noop, 1)),
        DropReason::Malformed,
    );
}

#[test]
fn an_acknowledgement_beyond_the_leaders_last_index_is_dropped() {
    let mut node = leader();
    let last = node.last_index().get();
    let commit = node.committed();
    for match_index in [last + 1, last + 1000, u64::MAX] {
        assert_dropped(
            &mut node,
            message(2, 1, 1, accepted(match_index)),
            DropReason::Malformed,
        );
    }
    assert_eq!(node.committed(), commit);
    let progress = node.status().progress;
    assert!(progress.iter().all(|p| p.match_index.get() <= last));
}

#[test]
fn rejections_that_cannot_be_true_are_dropped() {
    let mut node = leader();
    let last = node.last_index().get();
    // Rejecting an append the leader could not have sent.
    assert_dropped(
        &mut node,
        message(2, 1, 1, rejected(u64::MAX, 0, 0)),
        DropReason::Malformed,
    );
    assert_dropped(
        &mut node,
        message(2, 1, 1, rejected(last + 1, 0, 0)),
        DropReason::Malformed,
    );
    // A hint beyond the rejected index.
    assert_dropped(
        &mut node,
        message(2, 1, 1, rejected(last, last + 1, 1)),
        DropReason::Malformed,
    );
}

#[test]
fn a_heartbeat_commit_beyond_the_last_index_is_counted_and_never_commits_beyond_it() {
    let mut node = follower();
    node.step(message(
        2,
        1,
        2,
        MessageBody::Heartbeat {
            commit: LogIndex(u64::MAX),
            round: 1,
        },
    ));
    assert_eq!(node.dropped(DropReason::Malformed), 1);
    assert!(node.committed() <= node.last_index());
    assert_eq!(node.check_invariants(), Ok(()));
}

#[test]
fn a_heartbeat_commit_beyond_the_last_index_does_not_commit_an_unmatched_tail() {
    // Our entries 2 and 3 were appended by the old leader of term 2 and never committed. The
    // leader of term 3 (node 3) has a different entry at index 2. A heartbeat claiming a commit
    // index beyond our log (a broken peer, a corrupted message) must not commit our tail: we do
    // not know that it matches the leader's log.
    let mut node = follower();
    node.step(message(
        3,
        1,
        3,
        MessageBody::Heartbeat {
            commit: LogIndex(u64::MAX),
            round: 1,
        },
    ));
    persist(&mut node);
    assert_eq!(
        node.committed(),
        LogIndex(1),
        "the unmatched tail was committed"
    );
    // What follows if it is: the leader repairs our log from index 2, we answer that we match
    // up to our commit index, keep entry 2 of term 1, and have applied it.
    node.step(message(3, 1, 3, append(1, 1, entries(2, &[3]), 2)));
    persist(&mut node);
    assert_eq!(node.term_at(LogIndex(2)), Some(Term(3)));
}

#[test]
fn absurd_indices_in_appends_are_answered_or_dropped_without_panic() {
    let mut node = follower();
    // A previous index far beyond our log: rejected, with a hint inside our log.
    node.step(message(2, 1, 2, append(u64::MAX, 2, Vec::new(), u64::MAX)));
    let out = output(&mut node);
    match &out.persisted_messages[..] {
        [
            Message {
                body:
                    MessageBody::AppendEntriesResponse(raft::AppendResponse::Rejected {
                        rejected_index,
                        hint_index,
                        ..
                    }),
                ..
            },
        ] => {
            assert_eq!(*rejected_index, LogIndex(u64::MAX));
            assert!(*hint_index <= LogIndex(3));
        }
        other => panic!("expected one rejection, got {other:?}"),
    }
    // Entries at the very end of the index space.
    let tail = vec![Entry {
        term: Term(2),
        index: LogIndex(u64::MAX),
        kind: EntryKind::Normal,
        data: bytes::Bytes::from_static(b"x"),
    }];
    node.step(message(2, 1, 2, append(u64::MAX - 1, 2, tail, u64::MAX)));
    while node.has_ready() {
        persist(&mut node);
    }
    // A huge leader commit with a valid append commits only what the append proved.
    node.step(message(2, 1, 2, append(3, 2, entries(4, &[2]), u64::MAX)));
    persist(&mut node);
    assert_eq!(node.committed(), LogIndex(4));
    assert_eq!(node.last_index(), LogIndex(4));
    // A vote request claiming an absurd log: nothing to panic about (it just looks up to date).
    node.step(message(3, 1, 9, vote_request(u64::MAX, 8)));
    while node.has_ready() {
        persist(&mut node);
    }
    assert_eq!(node.check_invariants(), Ok(()));
}

#[test]
fn a_leader_drops_appends_and_heartbeats_from_another_leader_of_its_term() {
    let mut node = leader();
    let last = node.last_index().get();
    assert_dropped(
        &mut node,
        message(2, 1, 1, append(last, 1, Vec::new(), last)),
        DropReason::Malformed,
    );
    assert_dropped(
        &mut node,
        message(
            2,
            1,
            1,
            MessageBody::Heartbeat {
                commit: LogIndex(0),
                round: 1,
            },
        ),
        DropReason::Malformed,
    );
    assert_eq!(node.role(), Role::Leader);
}

#[test]
fn responses_a_follower_never_asked_for_are_dropped() {
    let mut node = follower();
    assert_dropped(
        &mut node,
        message(2, 1, 2, accepted(3)),
        DropReason::UnexpectedInRole,
    );
    assert_dropped(
        &mut node,
        message(2, 1, 2, vote_response(false, true)),
        DropReason::UnexpectedInRole,
    );
    assert_dropped(
        &mut node,
        message(2, 1, 3, vote_response(true, true)),
        DropReason::UnexpectedInRole,
    );
}

#[test]
fn a_granted_pre_vote_for_another_term_is_not_counted() {
    let mut node = follower();
    node.campaign();
    persist(&mut node);
    assert_eq!(node.role(), Role::PreCandidate);
    // The pre-election is for term 3; a grant echoing term 5 is stale or forged.
    node.step(message(2, 1, 5, vote_response(true, true)));
    assert_eq!(node.role(), Role::PreCandidate);
    assert_eq!(node.dropped(DropReason::StaleResponse), 1);
    assert_eq!(node.term(), Term(2));
}

// ---------------------------------------------------------------------------------------------
// Random well-typed messages.

fn term_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![40 => 0u64..6, 1 => Just(u64::MAX)]
}

fn index_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => 0u64..10,
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => any::<u64>(),
    ]
}

fn entries_strategy() -> impl Strategy<Value = (bool, Vec<(u64, u64, bool)>)> {
    (
        any::<bool>(),
        proptest::collection::vec((index_strategy(), 0u64..6, any::<bool>()), 0..5),
    )
}

/// Turns raw numbers into entries: mostly a well-formed run after `prev` (so they get past the
/// checks and exercise the log), sometimes anything at all.
fn make_entries(
    prev_index: u64,
    prev_term: u64,
    term: u64,
    well_formed: bool,
    raw: &[(u64, u64, bool)],
) -> Vec<Entry> {
    let mut terms: Vec<u64> = raw
        .iter()
        .map(|&(_, t, _)| {
            if well_formed && term >= prev_term {
                prev_term + t % (term - prev_term).saturating_add(1)
            } else {
                t
            }
        })
        .collect();
    if well_formed {
        terms.sort_unstable();
    }
    raw.iter()
        .zip(terms)
        .enumerate()
        .map(|(offset, (&(index, _, empty), entry_term))| {
            let index = if well_formed {
                prev_index.saturating_add(1 + offset as u64)
            } else {
                index
            };
            let empty = empty && well_formed;
            Entry {
                term: Term(entry_term),
                index: LogIndex(index),
                kind: if empty {
                    EntryKind::Empty
                } else {
                    EntryKind::Normal
                },
                data: if empty {
                    bytes::Bytes::new()
                } else {
                    payload(index, entry_term)
                },
            }
        })
        .collect()
}

fn message_strategy() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        (
            any::<bool>(),
            index_strategy(),
            term_strategy(),
            any::<bool>()
        )
            .prop_map(|(pre_vote, i, t, transfer)| MessageBody::RequestVote {
                pre_vote,
                last_log_index: LogIndex(i),
                last_log_term: Term(t),
                transfer,
            }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse { pre_vote, granted }),
        (
            index_strategy(),
            term_strategy(),
            entries_strategy(),
            index_strategy()
        )
            .prop_map(|(prev_index, prev_term, (well_formed, raw), commit)| {
                // The message term is filled in below; keep the raw parts for now.
                MessageBody::AppendEntries {
                    prev_log_index: LogIndex(prev_index),
                    prev_log_term: Term(prev_term),
                    entries: make_entries(prev_index, prev_term, u64::MAX, well_formed, &raw),
                    leader_commit: LogIndex(commit),
                }
            }),
        index_strategy().prop_map(|i| MessageBody::AppendEntriesResponse(
            raft::AppendResponse::Accepted {
                match_index: LogIndex(i)
            }
        )),
        (index_strategy(), index_strategy(), term_strategy()).prop_map(|(r, h, t)| {
            MessageBody::AppendEntriesResponse(raft::AppendResponse::Rejected {
                rejected_index: LogIndex(r),
                hint_index: LogIndex(h),
                hint_term: Term(t),
            })
        }),
        index_strategy().prop_map(|c| MessageBody::Heartbeat {
            commit: LogIndex(c),
            round: 1,
        }),
        any::<u64>().prop_map(|round| MessageBody::HeartbeatResponse { round }),
        any::<u64>().prop_map(|context| MessageBody::ReadIndex { context }),
        (any::<u64>(), proptest::option::of(index_strategy())).prop_map(|(context, index)| {
            MessageBody::ReadIndexResponse {
                context,
                index: index.map(LogIndex),
            }
        }),
        Just(MessageBody::TimeoutNow),
    ];
    (
        prop_oneof![10 => 2u64..4, 1 => 0u64..6],
        prop_oneof![10 => Just(1u64), 1 => 0u64..5],
        term_strategy(),
        body,
    )
        .prop_map(|(from, to, term, mut body)| {
            // Keep well-formed appends within the message term most of the time, so they are
            // accepted and really change the log.
            if let MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                ..
            } = &mut body
                && entries.windows(2).all(|w| w[1].index == w[0].index.next())
                && entries
                    .first()
                    .is_none_or(|e| e.index == prev_log_index.next())
            {
                let prev_term = prev_log_term.get().min(term);
                *prev_log_term = Term(prev_term);
                for entry in entries.iter_mut() {
                    let clamped = entry.term.get().clamp(prev_term, term.max(prev_term));
                    entry.term = Term(clamped);
                    entry.data = if entry.kind == EntryKind::Empty {
                        bytes::Bytes::new()
                    } else {
                        payload(entry.index.get(), clamped)
                    };
                }
            }
            Message {
                from: NodeId(from),
                to: NodeId(to),
                term: Term(term),
                body,
            }
        })
}

/// How to point a random message at the node's current state, so that it is not always
/// rejected outright: in the node's term (or just above) and near the end of its log.
#[derive(Clone, Copy, Debug)]
struct Aim {
    enabled: bool,
    term_delta: u64,
    back: u64,
}

fn aim_strategy() -> impl Strategy<Value = Aim> {
    (
        prop_oneof![2 => Just(true), 1 => Just(false)],
        0u64..3,
        0u64..4,
    )
        .prop_map(|(enabled, term_delta, back)| Aim {
            enabled,
            term_delta,
            back,
        })
}

fn aimed(mut message: Message, aim: Aim, node: &RawNode<MemStorage>) -> Message {
    if !aim.enabled {
        return message;
    }
    let term = node.term().get().saturating_add(aim.term_delta);
    let last = node.last_index().get();
    let near = last.saturating_sub(aim.back);
    message.term = Term(term);
    match &mut message.body {
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => {
            let prev_term = node.term_at(LogIndex(near)).map_or(0, Term::get).min(term);
            *prev_log_index = LogIndex(near);
            *prev_log_term = Term(prev_term);
            let raw: Vec<(u64, u64, bool)> = entries
                .iter()
                .map(|e| (0, e.term.get(), e.kind == EntryKind::Empty))
                .collect();
            *entries = make_entries(near, prev_term, term, true, &raw);
            *leader_commit = LogIndex(leader_commit.get().min(near + entries.len() as u64 + 1));
        }
        MessageBody::AppendEntriesResponse(raft::AppendResponse::Accepted { match_index }) => {
            *match_index = LogIndex(near);
        }
        MessageBody::AppendEntriesResponse(raft::AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) => {
            *rejected_index = LogIndex(near);
            *hint_index = LogIndex(near.saturating_sub(1));
            *hint_term = Term(hint_term.get().min(term));
        }
        MessageBody::Heartbeat { commit, .. } => *commit = LogIndex(near),
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            ..
        } => {
            *last_log_index = LogIndex(last + aim.back);
            *last_log_term = Term(node.term_at(node.last_index()).map_or(0, Term::get));
        }
        _ => {}
    }
    message
}

#[derive(Clone, Debug)]
enum Action {
    Step(Message, Aim),
    Tick,
    Propose,
    Campaign,
    Restart,
}

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        20 => (message_strategy(), aim_strategy())
            .prop_map(|(message, aim)| Action::Step(message, aim)),
        4 => Just(Action::Tick),
        2 => Just(Action::Propose),
        1 => Just(Action::Campaign),
        1 => Just(Action::Restart),
    ]
}

fn drain(node: &mut RawNode<MemStorage>, applied: &mut BTreeMap<LogIndex, Entry>) {
    while node.has_ready() {
        let ready = persist(node);
        for entry in ready.committed_entries {
            if let Some(previous) = applied.get(&entry.index) {
                assert_eq!(previous, &entry, "two entries applied at {}", entry.index);
            }
            applied.insert(entry.index, entry);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_0f4a_5700),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_messages_never_panic_a_node_or_break_its_invariants(
        start_as_leader in any::<bool>(),
        actions in proptest::collection::vec(action_strategy(), 1..60),
    ) {
        let mut node = if start_as_leader { leader() } else { follower() };
        let config = config(1);
        let mut applied = BTreeMap::new();
        drain(&mut node, &mut applied);
        let mut term = node.term();
        let mut committed = node.committed();
        for action in actions {
            match action {
                Action::Step(message, aim) => {
                    let message = aimed(message, aim, &node);
                    node.step(message);
                }
                Action::Tick => node.tick(),
                Action::Propose => {
                    let _ = node.propose(bytes::Bytes::from_static(b"p"));
                }
                Action::Campaign => node.campaign(),
                Action::Restart => {
                    let storage = node.storage().clone();
                    node = RawNode::new(&config, storage).expect("restart from own storage");
                    applied.clear();
                }
            }
            prop_assert_eq!(node.check_invariants(), Ok(()));
            drain(&mut node, &mut applied);
            prop_assert_eq!(node.check_invariants(), Ok(()));
            prop_assert!(node.term() >= term, "term went back");
            prop_assert!(node.committed() >= committed, "commit went back");
            term = node.term();
            committed = node.committed();

            // What is committed stays in the log as it was applied.
            for (index, entry) in applied.range(..=committed) {
                prop_assert_eq!(node.term_at(*index), Some(entry.term));
            }
        }
    }
}

#[test]
fn a_node_at_the_largest_term_never_votes_twice_in_it() {
    // A message with the largest term (a corrupted or hostile peer) is refused: no term could
    // follow it, so adopting it would leave the node unable to campaign without voting twice.
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 1, 2]),
        hard_state(2, 0, 1),
        |c| c.pre_vote = false,
    );
    node.step(message(2, 1, u64::MAX, vote_request(3, 2)));
    assert_eq!(node.status().hard_state, hard_state(2, 0, 1));
    assert_eq!(node.dropped(DropReason::Malformed), 1);

    // A node that reached the largest term by its own campaign votes in it once, then never
    // campaigns again (there is no term left to campaign in).
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 1, 2]),
        hard_state(u64::MAX - 1, 0, 1),
        |c| c.pre_vote = false,
    );
    node.campaign();
    while node.has_ready() {
        persist(&mut node);
    }
    assert_eq!(node.status().hard_state, hard_state(u64::MAX, 1, 1));
    for _ in 0..40 {
        node.tick();
        while node.has_ready() {
            persist(&mut node);
        }
    }
    let hard = node.status().hard_state;
    assert_eq!(hard.vote, id(1), "voted again in the same term: {hard:?}");
    assert_eq!(node.elections_started(), 1);
}
