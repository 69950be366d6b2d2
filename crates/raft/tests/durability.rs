//! The durability order of the `Ready` contract: nothing that promises durable state leaves before
//! the write, and nothing is applied before it is durable locally (docs/correctness.md, K4).

mod common;

use bytes::Bytes;
use common::*;
use raft::{LogIndex, Message, NodeId, RawNode, Role, Storage, Term};

fn follower() -> RawNode<raft::MemStorage> {
    node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |_| {},
    )
}

#[test]
fn an_append_acknowledgement_leaves_only_after_the_entries_are_durable() {
    let mut node = follower();
    node.step(message(2, 1, 1, append(1, 1, entries(2, &[1, 1]), 3)));
    let ready = node.ready();
    assert_eq!(
        Output::from(&ready),
        Output {
            soft_state: Some(raft::SoftState {
                leader: id(2),
                role: Role::Follower
            }),
            hard_state: Some(hard_state(1, 0, 3)),
            entries: entries(2, &[1, 1]),
            messages: vec![],
            persisted_messages: vec![message(1, 2, 1, accepted(3))],
            // Committed, but not durable here yet.
            committed_entries: vec![],
        }
    );
    assert!(
        !node.has_ready(),
        "nothing to do until the write is acknowledged"
    );
    write_ready(&mut node, &ready);
    node.on_persisted(ready.number);
    assert_eq!(
        output(&mut node),
        Output {
            committed_entries: entries(2, &[1, 1]),
            ..Output::default()
        }
    );
}

#[test]
fn a_vote_grant_leaves_only_after_the_vote_is_durable() {
    let mut node = follower();
    node.step(message(2, 1, 2, vote_request(1, 1)));
    let out = output(&mut node);
    assert!(out.messages.is_empty());
    assert_eq!(out.hard_state, Some(hard_state(2, 2, 1)));
    assert_eq!(
        out.persisted_messages,
        vec![message(1, 2, 2, vote_response(false, true))]
    );
}

#[test]
fn a_leaders_appends_and_heartbeats_leave_at_once() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let mut leader = cluster.take_node(1);
    leader.propose(Bytes::from_static(b"x")).unwrap();
    let ready = leader.ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.persisted_messages.is_empty());
    assert_eq!(ready.messages.len(), 2);
    assert!(ready.messages.iter().all(is_append));
    write_ready(&mut leader, &ready);
    leader.on_persisted(ready.number);
    leader.tick();
    let ready = leader.ready();
    assert_eq!(ready.messages.len(), 2, "heartbeats");
    assert!(ready.persisted_messages.is_empty());
}

#[test]
fn a_leader_that_commits_through_its_followers_applies_only_after_its_own_write() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    // The leader's write of x is slow: take its Ready, send the appends, but do not persist.
    let slow_write = cluster.node_mut(1).ready();
    for message in slow_write.messages.clone() {
        cluster.deliver(message);
    }
    cluster.process_readies();
    let acknowledgements: Vec<Message> = cluster.network.drain(..).collect();
    assert_eq!(acknowledgements.len(), 2);
    for message in acknowledgements {
        cluster.deliver(message);
    }
    // Both followers hold x: it is committed...
    let x_index = cluster.node(1).last_index();
    assert_eq!(cluster.node(1).committed(), x_index);
    let ready = cluster.node_mut(1).ready();
    assert_eq!(ready.hard_state.map(|h| h.commit), Some(x_index));
    // ...but not applied on the leader, whose own copy is not durable yet.
    assert!(ready.committed_entries.is_empty());
    let leader = cluster.node_mut(1);
    write_ready(leader, &slow_write);
    write_ready(leader, &ready);
    leader.on_persisted(ready.number);
    let out = output(leader);
    assert_eq!(out.committed_entries.len(), 1);
    assert_eq!(out.committed_entries[0].data.as_ref(), b"x");
}

#[test]
fn entries_become_applicable_one_acknowledged_write_at_a_time() {
    let mut node = follower();
    node.step(message(2, 1, 1, append(1, 1, entries(2, &[1, 1]), 3)));
    let first = node.ready();
    node.step(message(2, 1, 1, append(3, 1, entries(4, &[1]), 4)));
    let second = node.ready();
    assert_eq!(second.entries, entries(4, &[1]));
    assert_eq!(
        second.persisted_messages,
        vec![message(1, 2, 1, accepted(4))]
    );
    assert!(second.committed_entries.is_empty());
    // The first write completes: its entries (and only they) may be applied. (The Ready that
    // says so is acknowledged only after the second write, to keep writes in order.)
    write_ready(&mut node, &first);
    node.on_persisted(first.number);
    let third = node.ready();
    assert_eq!(third.committed_entries, entries(2, &[1, 1]));
    write_ready(&mut node, &second);
    write_ready(&mut node, &third);
    node.on_persisted(third.number);
    assert_eq!(output(&mut node).committed_entries, entries(4, &[1]));
}

#[test]
fn a_late_write_acknowledgement_does_not_make_replaced_entries_count_as_durable() {
    let mut node = follower();
    // Entries 2 and 3 of term 1 are being written...
    node.step(message(2, 1, 1, append(1, 1, entries(2, &[1, 1]), 1)));
    let first = node.ready();
    // ...when the leader of term 2 replaces entry 3.
    node.step(message(3, 1, 2, append(2, 1, entries(3, &[2]), 3)));
    let second = node.ready();
    assert_eq!(second.entries, entries(3, &[2]));
    write_ready(&mut node, &first);
    node.on_persisted(first.number);
    // Entry 3 of term 1 is durable but replaced: nothing from 3 on may be applied yet.
    let third = node.ready();
    assert!(
        third
            .committed_entries
            .iter()
            .all(|e| e.index < LogIndex(3)),
        "{:?}",
        third.committed_entries
    );
    write_ready(&mut node, &second);
    write_ready(&mut node, &third);
    node.on_persisted(third.number);
    let mut applied = third.committed_entries;
    while node.has_ready() {
        applied.extend(output(&mut node).committed_entries);
    }
    let applied: Vec<(u64, u64)> = applied
        .iter()
        .map(|e| (e.index.get(), e.term.get()))
        .collect();
    assert_eq!(applied, vec![(2, 1), (3, 2)]);
    assert_eq!(node.storage().term(LogIndex(3)), Ok(Term(2)));
}

#[test]
fn acknowledging_a_later_ready_acknowledges_the_earlier_ones() {
    let mut node = follower();
    node.step(message(2, 1, 1, append(1, 1, entries(2, &[1]), 2)));
    let first = node.ready();
    node.step(message(2, 1, 1, append(2, 1, entries(3, &[1]), 3)));
    let second = node.ready();
    assert_eq!(second.number, first.number + 1);
    write_ready(&mut node, &first);
    write_ready(&mut node, &second);
    node.on_persisted(second.number);
    assert_eq!(output(&mut node).committed_entries, entries(2, &[1, 1]));
}

#[test]
fn a_candidate_asks_for_votes_only_after_its_term_and_self_vote_are_durable() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |c| c.pre_vote = false,
    );
    node.campaign();
    let ready = node.ready();
    assert_eq!(ready.hard_state, Some(hard_state(2, 1, 1)));
    assert!(ready.messages.is_empty());
    assert_eq!(ready.persisted_messages.len(), 2);
}

#[test]
fn everything_acknowledged_survives_a_crash_of_every_member() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    for i in 0..20 {
        cluster.propose(1, format!("{i}").as_bytes()).unwrap();
    }
    cluster.deliver_all();
    let before: Vec<Bytes> = cluster.applied_data(1);
    for node in 1..=3 {
        cluster.crash(node);
    }
    cluster.run_until(100, |c| c.leader().is_some());
    cluster.run_ticks(3);
    for node in 1..=3 {
        assert_eq!(cluster.applied_data(node), before, "node {node}");
    }
    assert!(
        cluster
            .members
            .values()
            .all(|m| m.node.status().hard_state.vote != NodeId::NONE)
    );
}

/// A Ready must be synced for entries and for a new term or vote, not for a commit index
/// alone (etcd's `MustSync`): the embedder may record that without a sync.
#[test]
fn only_a_commit_index_alone_needs_no_sync() {
    let mut node = follower();
    node.step(message(2, 1, 1, append(1, 1, entries(2, &[1, 1]), 1)));
    let ready = persist(&mut node);
    assert!(ready.must_sync, "entries must be synced");
    assert_eq!(ready.hard_state, None, "nothing new in the hard state");

    node.step(message(2, 1, 1, append(3, 1, Vec::new(), 3)));
    let ready = persist(&mut node);
    assert_eq!(ready.hard_state, Some(hard_state(1, 0, 3)));
    assert!(ready.entries.is_empty());
    assert!(
        !ready.must_sync,
        "a higher commit index alone need not be synced"
    );
    assert_eq!(
        ready.persisted_messages,
        vec![message(1, 2, 1, accepted(3))]
    );

    let mut node = follower();
    node.step(message(2, 1, 2, vote_request(1, 1)));
    let ready = persist(&mut node);
    assert_eq!(ready.hard_state, Some(hard_state(2, 2, 1)));
    assert!(ready.entries.is_empty());
    assert!(ready.must_sync, "a new term and vote must be synced");
}
