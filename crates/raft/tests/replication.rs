//! Replication and commitment: proposals, log repair, the Figure 8 rule, fast back-off, and the
//! bounds on messages and in-flight appends (Raft §5.3, §5.4.2).

mod common;

use bytes::Bytes;
use common::*;
use raft::{
    EntryKind, Faults, LogIndex, Message, MessageBody, NodeId, ProposeError, Role, Storage, Term,
    tracker::ProgressState,
};

#[test]
fn a_proposal_on_a_follower_is_refused_with_the_leader_hint() {
    let mut cluster = Cluster::new(3, |_| {});
    assert_eq!(
        cluster.propose(2, b"x"),
        Err(ProposeError::NotLeader {
            leader_hint: NodeId::NONE
        })
    );
    cluster.elect(1);
    assert_eq!(
        cluster.propose(2, b"x"),
        Err(ProposeError::NotLeader { leader_hint: id(1) })
    );
    assert_eq!(
        cluster.propose(3, b"x"),
        Err(ProposeError::NotLeader { leader_hint: id(1) })
    );
}

/// A follower forwards commands to the leader it knows, several in one message, and every
/// member applies them; without a leader there is nowhere to forward; a member that is not
/// leader drops forwarded commands (counted), never appends them.
#[test]
fn a_follower_forwards_proposals_to_the_leader_in_one_message() {
    let mut cluster = Cluster::new(3, |_| {});
    assert_eq!(
        cluster
            .node_mut(2)
            .forward_proposal(Bytes::from_static(b"early")),
        Err(ProposeError::NotLeader {
            leader_hint: NodeId::NONE
        })
    );
    cluster.elect(1);
    for data in [&b"a"[..], b"b", b"c"] {
        assert_eq!(
            cluster
                .node_mut(2)
                .forward_proposal(Bytes::copy_from_slice(data)),
            Ok(id(1))
        );
    }
    // The leader itself proposes; it has nobody to forward to.
    assert!(
        cluster
            .node_mut(1)
            .forward_proposal(Bytes::from_static(b"x"))
            .is_err()
    );
    let ready = cluster.node_mut(2).ready();
    let proposals: Vec<&Message> = ready
        .messages
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Propose { .. }))
        .collect();
    assert_eq!(proposals.len(), 1, "{:?}", ready.messages);
    assert_eq!(proposals[0].to, id(1));
    assert_eq!(
        proposals[0].body,
        MessageBody::Propose {
            entries: vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b"),
                Bytes::from_static(b"c")
            ]
        }
    );
    let forwarded = proposals[0].clone();
    // Delivered to a follower instead, it is dropped and counted.
    let mut misdirected = forwarded.clone();
    misdirected.to = id(3);
    cluster.node_mut(3).step(misdirected);
    assert_eq!(
        cluster.node(3).dropped(raft::DropReason::ProposalRefused),
        3
    );
    cluster.node_mut(1).step(forwarded);
    cluster.deliver_all();
    cluster.assert_converged();
    for node in 1..=3 {
        assert_eq!(
            cluster.applied_data(node),
            [&b"a"[..], b"b", b"c"].map(Bytes::from_static),
            "node {node}"
        );
    }
}

#[test]
fn proposals_commit_and_every_member_applies_the_same_entries_in_the_same_order() {
    let mut cluster = Cluster::new(5, |_| {});
    cluster.elect(1);
    let mut expected = Vec::new();
    for batch in 0..10u32 {
        // Batches of different sizes, some delivered before the next batch is proposed.
        for i in 0..=batch {
            let data = format!("b{batch}-{i}");
            let (index, term) = cluster.propose(1, data.as_bytes()).unwrap();
            assert_eq!(term, cluster.node(1).term());
            assert_eq!(index, cluster.node(1).last_index());
            expected.push(Bytes::from(data));
        }
        if batch % 3 != 0 {
            cluster.deliver_all();
        }
    }
    cluster.deliver_all();
    assert_eq!(cluster.assert_converged(), expected.len() + 1);
    for node in 1..=5 {
        assert_eq!(cluster.applied_data(node), expected, "node {node}");
    }
}

#[test]
fn the_returned_index_and_term_identify_the_committed_entry() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let (index, term) = cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    let entry = cluster
        .applied(2)
        .iter()
        .find(|entry| entry.index == index)
        .unwrap()
        .clone();
    assert_eq!(entry.term, term);
    assert_eq!(entry.data.as_ref(), b"x");
}

#[test]
fn a_new_leader_appends_an_empty_entry_of_its_term_and_commits_it() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    cluster.stop(1);
    cluster.run_until(100, |c| c.leader().is_some());
    cluster.restart(1);
    cluster.run_ticks(3);
    let new_leader = cluster.leader().unwrap().get();
    assert_ne!(new_leader, 1);
    let leader = cluster.node(new_leader);
    let last = leader.last_index();
    let entry = leader.entries(last, last.next()).pop().unwrap();
    assert_eq!(entry.kind, EntryKind::Empty);
    assert_eq!(entry.term, leader.term());
    assert!(entry.data.is_empty());
    assert_eq!(leader.committed(), last, "the no-op commits with a quorum");
    for node in 1..=3 {
        let applied = cluster.applied(node).last().unwrap();
        assert_eq!((applied.index, applied.kind), (last, EntryKind::Empty));
    }
}

#[test]
fn a_single_node_commits_only_after_its_own_write_is_durable() {
    let mut node = node_with(1, &[1], &[], hard_state(0, 0, 0), |_| {});
    node.campaign();
    let out = output(&mut node);
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(out.entries.len(), 1, "the no-op");
    assert!(
        out.committed_entries.is_empty(),
        "not durable when handed out"
    );
    // The acknowledgement of the write is what commits it.
    let out = output(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(1, 1, 1)));
    assert_eq!(out.committed_entries.len(), 1);
    node.propose(Bytes::from_static(b"x")).unwrap();
    let ready = node.ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(ready.committed_entries.is_empty());
    assert!(
        !node.has_ready(),
        "nothing more to do until the write is durable"
    );
    write_ready(&mut node, &ready);
    node.on_persisted(ready.number);
    let out = output(&mut node);
    assert_eq!(out.committed_entries.len(), 1);
    assert_eq!(out.committed_entries[0].data.as_ref(), b"x");
}

/// Figure 8 of the Raft paper, built by hand in a five-member cluster:
///
/// ```text
///       index: 1  2            S1 leads term 4 and replicates its old term-2 entry at index 2
///   S1 (t4)    1  2  [4]       to S2..S4 (a majority holds it), but its own term-4 no-op at
///   S2         1  2            index 3 never leaves it. S5, which holds a term-3 entry at
///   S3         1  2            index 2, can still win term 5 with votes from S2..S4 and
///   S4         1  2            overwrite index 2 everywhere. So S1 must not have counted
///   S5 (down)  1  3            replicas of the term-2 entry to commit it.
/// ```
/// Every entry of a member's log.
fn full_log(cluster: &Cluster, node: u64) -> Vec<raft::Entry> {
    let raw = cluster.node(node);
    raw.entries(LogIndex(1), raw.last_index().next())
}

fn figure_8(faults: Faults) -> Cluster {
    let mut cluster = Cluster::with_logs(
        5,
        |c| {
            c.pre_vote = false;
            c.check_quorum = false;
        },
        |node| match node {
            1 | 2 => (log_of_terms(&[1, 2]), hard_state(3, 0, 1)),
            3 | 4 => (log_of_terms(&[1]), hard_state(3, 5, 1)),
            _ => (log_of_terms(&[1, 3]), hard_state(3, 5, 1)),
        },
    );
    cluster.violations_are_fatal = false;
    cluster.node_mut(1).set_faults(faults);
    cluster.stop(5);
    // S1's entries of its own term never arrive anywhere...
    cluster.add_rewrite(|message| {
        if message.from == id(1)
            && let MessageBody::AppendEntries { entries, .. } = &mut message.body
        {
            entries.retain(|entry| entry.term < Term(4));
        }
    });
    // ...and nobody hears from S1 that index 2 is committed, should S1 believe it.
    cluster.add_filter(|message| {
        message.from == id(1)
            && match message.body {
                MessageBody::AppendEntries { leader_commit, .. } => leader_commit >= LogIndex(2),
                MessageBody::Heartbeat { commit, .. } => commit >= LogIndex(2),
                _ => false,
            }
    });
    cluster.elect(1);
    assert_eq!(cluster.node(1).term(), Term(4));
    // Index 2 (term 2) is on S1..S4: a majority.
    let progress = cluster.node(1).status().progress;
    for follower in 2..=4 {
        let p = progress.iter().find(|p| p.id == id(follower)).unwrap();
        assert_eq!(p.match_index, LogIndex(2), "S{follower}");
    }
    cluster
}

fn s5_takes_over(cluster: &mut Cluster) {
    cluster.stop(1);
    cluster.restart(5);
    // Term 4 is taken (S2..S4 voted for S1); the second try, in term 5, wins.
    cluster.campaign(5);
    cluster.deliver_all();
    cluster.campaign(5);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(id(5)));
    assert_eq!(cluster.node(5).term(), Term(5));
}

#[test]
fn figure_8_an_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    let mut cluster = figure_8(Faults::default());
    assert_eq!(cluster.node(1).committed(), LogIndex(1));
    assert_eq!(cluster.applied(1).len(), 1);
    // And rightly so: S5 overwrites index 2 on the majority.
    s5_takes_over(&mut cluster);
    for node in 2..=5 {
        assert_eq!(
            cluster.node(node).term_at(LogIndex(2)),
            Some(Term(3)),
            "S{node}"
        );
    }
    cluster.clear_filters();
    cluster.restart(1);
    cluster.run_ticks(5);
    assert_eq!(cluster.node(1).term_at(LogIndex(2)), Some(Term(3)));
    assert_eq!(cluster.assert_converged(), 3);
    assert!(cluster.violations.is_empty(), "{:?}", cluster.violations);
}

#[test]
fn figure_8_committing_by_counting_old_term_replicas_loses_a_committed_entry() {
    // The deliberately broken rule, to show the scenario (and the harness) has teeth.
    let mut cluster = figure_8(Faults {
        commit_old_term_by_counting: true,
        ..Faults::default()
    });
    assert_eq!(cluster.node(1).committed(), LogIndex(2));
    let applied = cluster.applied(1).last().unwrap();
    assert_eq!((applied.index, applied.term), (LogIndex(2), Term(2)));
    s5_takes_over(&mut cluster);
    assert!(
        cluster
            .violations
            .iter()
            .any(|violation| violation.contains("applied")),
        "S5 applies a different entry at index 2: {:?}",
        cluster.violations
    );
}

#[test]
fn a_follower_with_a_longer_divergent_log_has_its_conflicting_suffix_replaced() {
    // Node 3 led term 2 and appended three entries nobody else has.
    let mut cluster = Cluster::with_logs(
        3,
        |_| {},
        |node| match node {
            3 => (log_of_terms(&[1, 1, 2, 2, 2]), hard_state(2, 3, 2)),
            _ => (log_of_terms(&[1, 1]), hard_state(2, 0, 2)),
        },
    );
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    let leader_log = full_log(&cluster, 1);
    assert_eq!(leader_log.len(), 4);
    for node in 2..=3 {
        assert_eq!(full_log(&cluster, node), leader_log, "node {node}");
        assert_eq!(cluster.node(node).storage().last_index(), LogIndex(4));
    }
    cluster.assert_converged();
    assert!(
        cluster.applied(3).iter().all(|entry| entry.term != Term(2)),
        "the divergent entries were never applied"
    );
}

/// Builds a leader (node 3, term 6 after the election) whose log is `1:t1` then 200 entries of
/// term 4, and a follower (node 1) whose log is `1:t1` followed by a long tail from several old
/// terms, then returns how many append rejections it took to repair node 1.
fn rejections_to_repair(follower_tail_terms: &[(u64, usize)]) -> usize {
    let mut follower_terms = vec![1];
    for &(term, count) in follower_tail_terms {
        follower_terms.extend(std::iter::repeat_n(term, count));
    }
    let mut leader_terms = vec![1];
    leader_terms.extend(std::iter::repeat_n(4, 200));
    let mut cluster = Cluster::with_logs(
        3,
        |_| {},
        |node| match node {
            1 => (log_of_terms(&follower_terms), hard_state(5, 0, 1)),
            _ => (log_of_terms(&leader_terms), hard_state(5, 0, 1)),
        },
    );
    cluster.elect(3);
    cluster.deliver_all();
    let rejections = cluster.count_sent(|m| m.from == id(1) && is_rejection(m));
    assert_eq!(cluster.node(3).last_index(), LogIndex(202));
    assert!(
        full_log(&cluster, 1) == full_log(&cluster, 3),
        "the follower's log is repaired"
    );
    rejections
}

#[test]
fn fast_back_off_skips_a_long_divergent_tail_of_one_term_in_few_round_trips() {
    // 300 entries of term 2 that the leader does not have: one by one that would be 200 round
    // trips (the leader starts probing at its last index, 201).
    let rejections = rejections_to_repair(&[(2, 300)]);
    assert!(rejections < 10, "{rejections} rejections");
}

#[test]
fn fast_back_off_needs_round_trips_bounded_by_terms_not_entries() {
    // Several old terms, some above the leader's entries' term (5 > 4) at the same indices.
    let rejections = rejections_to_repair(&[(2, 50), (3, 50), (5, 50)]);
    assert!(rejections < 10, "{rejections} rejections");
    // (Never term 4 in the follower's tail: an entry of the leader's index and term would, by
    // Log Matching, imply the whole prefix matches.)
    let rejections = rejections_to_repair(&[(2, 40), (3, 40), (5, 80)]);
    assert!(rejections < 10, "{rejections} rejections");
}

#[test]
fn a_batch_of_100_proposals_travels_in_one_append_per_follower() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.sent.clear();
    for i in 0..100 {
        cluster.propose(1, format!("{i:0100}").as_bytes()).unwrap();
    }
    cluster.deliver_all();
    for follower in [2, 3] {
        let appends: Vec<usize> = cluster
            .sent
            .iter()
            .filter(|s| s.message.to == id(follower) && entry_count(&s.message) > 0)
            .map(|s| entry_count(&s.message))
            .collect();
        assert_eq!(appends, vec![100], "to node {follower}");
    }
    // Appends, acknowledgements, and the commit index (one empty append each, acknowledged).
    assert!(cluster.sent.len() <= 8, "{} messages", cluster.sent.len());
    assert_eq!(cluster.assert_converged(), 101);
}

#[test]
fn pipelining_is_bounded_by_max_size_per_msg_and_max_inflight_msgs() {
    const PAYLOAD: usize = 100;
    const PER_MESSAGE: u64 = 10;
    const INFLIGHT: usize = 4;
    let mut cluster = Cluster::new(3, |c| {
        // Room for exactly ten entries (payload plus the 24-byte header estimate).
        c.max_size_per_msg = PER_MESSAGE * (PAYLOAD as u64 + 24);
        c.max_inflight_msgs = INFLIGHT;
    });
    cluster.elect(1);
    cluster.sent.clear();
    for i in 0..100 {
        cluster.propose(1, format!("{i:0100}").as_bytes()).unwrap();
    }
    let mut max_in_network = 0;
    let mut max_tracked = 0;
    loop {
        let worked = cluster.process_readies();
        for follower in [2, 3] {
            let in_network = cluster
                .network
                .iter()
                .filter(|m| m.to == id(follower) && entry_count(m) > 0)
                .count();
            max_in_network = max_in_network.max(in_network);
        }
        for progress in cluster.node(1).status().progress {
            max_tracked = max_tracked.max(progress.inflights.count());
        }
        let delivered = cluster.deliver_pending();
        if !worked && !delivered {
            break;
        }
    }
    assert!(
        max_in_network <= INFLIGHT,
        "{max_in_network} appends in flight"
    );
    assert!(max_tracked <= INFLIGHT);
    assert_eq!(max_in_network, INFLIGHT, "the window is actually used");
    for follower in [2, 3] {
        let appends: Vec<usize> = cluster
            .sent
            .iter()
            .filter(|s| s.message.to == id(follower) && entry_count(&s.message) > 0)
            .map(|s| entry_count(&s.message))
            .collect();
        assert!(
            appends.iter().all(|&n| n as u64 <= PER_MESSAGE),
            "{appends:?}"
        );
        assert_eq!(appends.iter().sum::<usize>(), 100);
        assert_eq!(appends.len(), 10, "{appends:?}");
    }
    assert_eq!(cluster.assert_converged(), 101);
}

fn messages_for(batches: usize, batch_size: usize) -> usize {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.sent.clear();
    for batch in 0..batches {
        for i in 0..batch_size {
            cluster
                .propose(1, format!("{batch}-{i}").as_bytes())
                .unwrap();
        }
        cluster.deliver_all();
    }
    assert_eq!(cluster.assert_converged(), batches * batch_size + 1);
    cluster.sent.len()
}

#[test]
fn messages_grow_with_the_number_of_batches_not_with_proposals_squared() {
    let one = messages_for(1, 100);
    let ten = messages_for(10, 100);
    let hundred = messages_for(100, 10);
    assert!(one <= 8, "{one}");
    assert!(
        ten <= 10 * one,
        "{ten} messages for 10 batches vs {one} for one"
    );
    assert!(hundred <= 100 * one, "{hundred} for 100 batches");
}

#[test]
fn a_proposal_larger_than_max_entry_bytes_is_refused() {
    let mut cluster = Cluster::new(1, |c| c.max_entry_bytes = 100);
    cluster.elect(1);
    assert_eq!(
        cluster.propose(1, &[0; 100]),
        Err(ProposeError::TooLarge {
            size: 124,
            limit: 100
        })
    );
    assert!(cluster.propose(1, &[0; 76]).is_ok());
}

#[test]
fn an_isolated_leader_refuses_proposals_beyond_max_uncommitted_bytes() {
    let mut cluster = Cluster::new(3, |c| {
        c.max_uncommitted_bytes = 1000;
        c.max_entry_bytes = 1000;
    });
    cluster.elect(1);
    cluster.isolate(1);
    let mut accepted = 0;
    while cluster.propose(1, &[7; 76]).is_ok() {
        accepted += 1;
        assert!(accepted <= 10);
    }
    assert_eq!(accepted, 10, "ten entries of 100 bytes fit in 1000");
    assert_eq!(
        cluster.propose(1, &[7; 76]),
        Err(ProposeError::Backpressure)
    );
    cluster.heal();
    cluster.deliver_all();
    cluster.run_ticks(2);
    assert!(
        cluster.propose(1, &[7; 76]).is_ok(),
        "room again once committed"
    );
}

#[test]
fn a_lagging_follower_catches_up_after_a_partition() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..50 {
        cluster.propose(1, format!("{i}").as_bytes()).unwrap();
        cluster.deliver_all();
    }
    cluster.run_ticks(3);
    cluster.heal();
    cluster.run_ticks(5);
    cluster.assert_converged();
    assert_eq!(cluster.applied_data(3).len(), 50);
}

#[test]
fn an_append_lost_in_replicate_state_is_resent_without_new_proposals() {
    // Node 2 is down, so the proposal can only commit once node 3 holds it. The single append
    // that carries it to node 3 is lost. Heartbeats keep flowing, and node 3 answers them.
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.stop(2);
    let mut lost = false;
    cluster.add_filter(move |m| {
        if !lost && m.to == id(3) && entry_count(m) > 0 {
            lost = true;
            return true;
        }
        false
    });
    cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    cluster.run_ticks(50);
    // The leader notices the stalled pipeline from the heartbeat answers and probes again:
    // committed within a few heartbeats.
    assert_eq!(cluster.applied_data(3), vec![&b"x"[..]]);
}

#[test]
fn new_proposals_are_pipelined_to_every_follower_even_when_the_commit_index_moves() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    cluster.process_readies();
    // The appends of x: node 2 gets its own now, node 3's is still on the wire.
    let mut wire: Vec<Message> = cluster.network.drain(..).collect();
    let to_3 = wire.iter().position(|m| m.to == id(3)).unwrap();
    let held_for_3 = wire.remove(to_3);
    for message in wire {
        cluster.deliver(message);
    }
    cluster.process_readies();
    let ack_from_2: Vec<Message> = cluster.network.drain(..).collect();
    // y is proposed, then node 2's acknowledgement of x arrives and commits x.
    cluster.propose(1, b"y").unwrap();
    for message in ack_from_2 {
        cluster.deliver(message);
    }
    assert_eq!(
        cluster.node(1).committed(),
        cluster.node(1).last_index().prev()
    );
    let ready = cluster.node_mut(1).ready();
    let carries_y_to_3 = ready.messages.iter().any(|m| {
        m.to == id(3)
            && matches!(&m.body, MessageBody::AppendEntries { entries, .. }
                if entries.iter().any(|e| e.data.as_ref() == b"y"))
    });
    // Node 3 is in Replicate with room in its window: y should be on its way like it is to 2.
    assert!(
        carries_y_to_3,
        "no append of y to node 3 in {:#?}",
        ready.messages
    );
    drop(held_for_3);
}

#[test]
fn a_follower_in_replicate_state_is_not_probed_one_entry_at_a_time() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    let status = cluster.node(1).status();
    for follower in [2, 3] {
        let p = status
            .progress
            .iter()
            .find(|p| p.id == id(follower))
            .unwrap();
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!(p.match_index, status.last_index);
        assert_eq!(p.next_index, status.last_index.next());
    }
}
