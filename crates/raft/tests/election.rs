//! Elections: who wins, when, and who must refuse to vote (Raft §5.2, §5.4.1; dissertation §9.6
//! PreVote, §6.2/§4.2.3 CheckQuorum and leader stickiness).

mod common;

use common::*;
use raft::{DropReason, EntryKind, Faults, LogIndex, NodeId, Role, SoftState, Term};

#[test]
fn a_single_node_elects_itself_after_one_election_timeout() {
    let mut cluster = Cluster::new(1, |_| {});
    let ticks = cluster.run_until(100, |c| c.leader() == Some(id(1)));
    // The timeout is drawn from [T, 2T) with T = 10.
    assert!((10..20).contains(&ticks), "elected after {ticks} ticks");
    let node = cluster.node(1);
    assert_eq!(node.term(), Term(1));
    assert_eq!(node.status().hard_state.vote, id(1));
    // Its no-op is committed and applied at once (a quorum of one).
    assert_eq!(cluster.applied(1).len(), 1);
    assert_eq!(cluster.applied(1)[0].kind, EntryKind::Empty);
}

#[test]
fn three_nodes_elect_exactly_one_leader_that_everyone_follows() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.run_until(100, |c| c.leader().is_some());
    // Keep running: the leadership is stable and unique.
    cluster.run_ticks(100);
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    let leader = leaders[0];
    let term = cluster.members[&leader].node.term();
    for member in cluster.members.values() {
        assert_eq!(member.node.term(), term);
        assert_eq!(member.node.leader(), leader);
    }
    // One election, one term, no disruption afterwards.
    assert_eq!(cluster.leaders_by_term.len(), 1);
    assert_eq!(cluster.assert_converged(), 1, "only the no-op is applied");
}

#[test]
fn campaigning_increments_the_term_votes_for_itself_and_asks_only_after_persisting() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |c| c.pre_vote = false,
    );
    node.campaign();
    let out = output(&mut node);
    assert_eq!(
        out,
        Output {
            soft_state: Some(SoftState {
                leader: NodeId::NONE,
                role: Role::Candidate
            }),
            hard_state: Some(hard_state(2, 1, 1)),
            persisted_messages: vec![
                message(1, 2, 2, vote_request(1, 1)),
                message(1, 3, 2, vote_request(1, 1)),
            ],
            ..Output::default()
        }
    );
    assert_eq!(node.elections_started(), 1);
}

#[test]
fn a_pre_candidate_probes_with_the_next_term_without_changing_its_own() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |_| {},
    );
    node.campaign();
    let out = output(&mut node);
    assert_eq!(
        out,
        Output {
            soft_state: Some(SoftState {
                leader: NodeId::NONE,
                role: Role::PreCandidate
            }),
            // No new term and no vote: nothing durable changes, so the probes need not wait
            // for a write.
            hard_state: None,
            messages: vec![
                message(1, 2, 2, pre_vote_request(1, 1)),
                message(1, 3, 2, pre_vote_request(1, 1)),
            ],
            ..Output::default()
        }
    );
    assert_eq!(node.term(), Term(1));
    assert_eq!(node.elections_started(), 0);
    // Granted pre-votes from a majority start the real election in term 2.
    node.step(message(2, 1, 2, vote_response(true, true)));
    let out = output(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(2, 1, 1)));
    assert_eq!(
        out.persisted_messages,
        vec![
            message(1, 2, 2, vote_request(1, 1)),
            message(1, 3, 2, vote_request(1, 1)),
        ]
    );
    assert_eq!(node.role(), Role::Candidate);
}

#[test]
fn a_node_votes_at_most_once_per_term() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |_| {},
    );
    // Candidate 2 in term 2: granted, and the vote is persisted with the answer.
    node.step(message(2, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output(&mut node),
        Output {
            hard_state: Some(hard_state(2, 2, 1)),
            persisted_messages: vec![message(1, 2, 2, vote_response(false, true))],
            ..Output::default()
        }
    );
    // Candidate 3 in the same term, with an equally good log: refused.
    node.step(message(3, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output(&mut node),
        Output {
            persisted_messages: vec![message(1, 3, 2, vote_response(false, false))],
            ..Output::default()
        }
    );
    // A retransmitted request from the candidate we voted for is granted again.
    node.step(message(2, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output(&mut node).persisted_messages,
        vec![message(1, 2, 2, vote_response(false, true))]
    );
    assert_eq!(node.status().hard_state.vote, id(2));
}

#[test]
fn a_vote_is_denied_to_a_candidate_whose_last_term_is_older() {
    // Our log ends at (2, t2); the candidate's at (5, t1): longer but older.
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 2]),
        hard_state(2, 0, 1),
        |_| {},
    );
    node.step(message(2, 1, 3, vote_request(5, 1)));
    assert_eq!(
        output(&mut node),
        Output {
            // The higher term is adopted, but no vote is cast.
            hard_state: Some(hard_state(3, 0, 1)),
            persisted_messages: vec![message(1, 2, 3, vote_response(false, false))],
            ..Output::default()
        }
    );
}

#[test]
fn a_vote_is_denied_to_a_candidate_with_the_same_last_term_but_a_shorter_log() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 2, 2]),
        hard_state(2, 0, 1),
        |_| {},
    );
    node.step(message(2, 1, 3, vote_request(2, 2)));
    assert_eq!(
        output(&mut node).persisted_messages,
        vec![message(1, 2, 3, vote_response(false, false))]
    );
    // Same last term and at least as long: granted.
    node.step(message(3, 1, 3, vote_request(3, 2)));
    assert_eq!(
        output(&mut node),
        Output {
            hard_state: Some(hard_state(3, 3, 1)),
            persisted_messages: vec![message(1, 3, 3, vote_response(false, true))],
            ..Output::default()
        }
    );
}

#[test]
fn a_vote_with_a_newer_last_term_wins_over_a_longer_log() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 1, 1, 1]),
        hard_state(1, 0, 1),
        |_| {},
    );
    node.step(message(2, 1, 3, vote_request(2, 2)));
    assert_eq!(
        output(&mut node).persisted_messages,
        vec![message(1, 2, 3, vote_response(false, true))]
    );
}

#[test]
fn a_vote_survives_a_restart() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |_| {},
    );
    node.step(message(2, 1, 2, vote_request(1, 1)));
    output(&mut node);
    // Crash: only the storage survives.
    let storage = node.storage().clone();
    let mut restarted = raft::RawNode::new(&config(1), storage).unwrap();
    while restarted.has_ready() {
        persist(&mut restarted);
    }
    assert_eq!(restarted.status().hard_state.vote, id(2));
    restarted.step(message(3, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output(&mut restarted),
        Output {
            persisted_messages: vec![message(1, 3, 2, vote_response(false, false))],
            ..Output::default()
        }
    );
}

/// Two leaders in one term, if a vote is not persisted: node 2 votes for 1, crashes, forgets, and
/// votes for 3 in the same term. With the rule kept, node 3 loses.
fn double_vote_after_crash(faults: Faults) -> Cluster {
    let mut cluster = Cluster::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    cluster.violations_are_fatal = false;
    for node in 1..=3 {
        cluster.node_mut(node).set_faults(faults);
    }
    cluster.partition(&[&[1, 2], &[3]]);
    // Node 2 must not receive the leader's no-op, so that node 3's (empty) log stays as up to
    // date as node 2's and only the vote itself decides.
    cluster.add_filter(is_append);
    cluster.elect(1);
    assert_eq!(cluster.node(1).term(), Term(1));
    cluster.crash(2);
    cluster.node_mut(2).set_faults(faults);
    cluster.heal();
    cluster.partition(&[&[1], &[2, 3]]);
    cluster.campaign(3);
    cluster.deliver_all();
    cluster
}

#[test]
fn a_restarted_node_does_not_vote_twice_in_a_term() {
    let cluster = double_vote_after_crash(Faults::default());
    assert!(cluster.violations.is_empty(), "{:?}", cluster.violations);
    assert_ne!(cluster.node(3).role(), Role::Leader);
    assert_eq!(cluster.leaders_by_term.len(), 1);
}

#[test]
fn a_vote_not_persisted_lets_two_leaders_share_a_term() {
    // The harness must catch the deliberately broken rule.
    let cluster = double_vote_after_crash(Faults {
        vote_without_persisting: true,
        ..Faults::default()
    });
    assert_eq!(cluster.node(3).role(), Role::Leader);
    assert_eq!(cluster.node(3).term(), Term(1));
    assert!(
        cluster.violations.iter().any(|v| v.contains("two leaders")),
        "{:?}",
        cluster.violations
    );
}

#[test]
fn a_vote_without_the_log_check_is_caught() {
    // Node 1 has an entry no one else has; node 3 votes without the up-to-date check.
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 1]),
        hard_state(1, 0, 1),
        |_| {},
    );
    node.set_faults(Faults {
        vote_without_log_check: true,
        ..Faults::default()
    });
    node.step(message(2, 1, 2, vote_request(1, 1)));
    assert_eq!(
        output(&mut node).persisted_messages,
        vec![message(1, 2, 2, vote_response(false, true))]
    );
}

#[test]
fn a_message_with_a_higher_term_makes_a_leader_step_down() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let term = cluster.node(1).term().get();
    let commit = cluster.node(1).committed().get();
    let mut leader = cluster.take_node(1);
    leader.step(message(
        2,
        1,
        term + 3,
        raft::MessageBody::HeartbeatResponse { round: 0 },
    ));
    assert_eq!(
        output(&mut leader),
        Output {
            soft_state: Some(SoftState {
                leader: NodeId::NONE,
                role: Role::Follower
            }),
            hard_state: Some(hard_state(term + 3, 0, commit)),
            ..Output::default()
        }
    );
    assert_eq!(
        leader.propose(bytes::Bytes::from_static(b"x")),
        Err(raft::ProposeError::NotLeader {
            leader_hint: NodeId::NONE
        })
    );
}

#[test]
fn a_leader_steps_down_for_the_leader_of_a_higher_term() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let term = cluster.node(1).term().get();
    let last = cluster.node(1).last_index().get();
    let last_term = cluster.node(1).term_at(LogIndex(last)).unwrap().get();
    let mut leader = cluster.take_node(1);
    leader.step(message(
        2,
        1,
        term + 1,
        append(last, last_term, Vec::new(), last),
    ));
    let out = output(&mut leader);
    assert_eq!(
        out.soft_state,
        Some(SoftState {
            leader: id(2),
            role: Role::Follower
        })
    );
    assert_eq!(out.hard_state.map(|h| h.term), Some(Term(term + 1)));
    assert_eq!(
        out.persisted_messages,
        vec![message(1, 2, term + 1, accepted(last))]
    );
    assert!(out.messages.is_empty());
}

#[test]
fn an_append_from_an_older_term_is_answered_with_our_term_and_changes_nothing() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1, 3]),
        hard_state(5, 3, 1),
        |_| {},
    );
    let before = node.status();
    node.step(message(2, 1, 3, append(2, 3, entries(3, &[3]), 3)));
    assert_eq!(
        output(&mut node),
        Output {
            persisted_messages: vec![message(
                1,
                2,
                5,
                raft::MessageBody::HeartbeatResponse { round: 0 }
            )],
            ..Output::default()
        }
    );
    let after = node.status();
    assert_eq!(after.hard_state, before.hard_state);
    assert_eq!(after.soft_state, before.soft_state);
    assert_eq!(after.last_index, LogIndex(2));
    assert_eq!(node.dropped(DropReason::StaleTerm), 1);
}

#[test]
fn a_vote_request_from_an_older_term_is_refused_with_our_term() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(5, 0, 1),
        |_| {},
    );
    node.step(message(2, 1, 4, vote_request(9, 4)));
    assert_eq!(
        output(&mut node),
        Output {
            persisted_messages: vec![message(1, 2, 5, vote_response(false, false))],
            ..Output::default()
        }
    );
    assert_eq!(node.status().hard_state, hard_state(5, 0, 1));
}

#[test]
fn pre_vote_a_partitioned_node_rejoining_neither_bumps_the_term_nor_disrupts_the_leader() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let term = cluster.node(1).term();
    cluster.isolate(3);
    // Many election timeouts alone: node 3 keeps pre-campaigning, never starts a real election.
    cluster.run_ticks(200);
    assert_eq!(cluster.node(3).term(), term);
    assert_eq!(cluster.node(3).elections_started(), 0);
    cluster.propose(1, b"while 3 was away").unwrap();
    cluster.deliver_all();
    cluster.heal();
    cluster.run_ticks(50);
    // A new proposal also repairs the append that was lost while node 3 was away (see
    // `replication::an_append_lost_in_replicate_state_is_resent_without_new_proposals`).
    cluster.propose(1, b"after").unwrap();
    cluster.run_ticks(5);
    for node in 1..=3 {
        assert_eq!(cluster.node(node).term(), term, "node {node}");
        assert_eq!(cluster.node(node).leader(), id(1), "node {node}");
    }
    assert_eq!(
        cluster.leaders_by_term.len(),
        1,
        "one leadership throughout"
    );
    assert_eq!(
        cluster.applied_data(3),
        vec![&b"while 3 was away"[..], &b"after"[..]]
    );
}

#[test]
fn without_pre_vote_and_check_quorum_a_rejoining_node_disrupts_the_leader() {
    // The contrast to the test above, so we know it tests something.
    let mut cluster = Cluster::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    cluster.elect(1);
    let term = cluster.node(1).term();
    cluster.isolate(3);
    cluster.run_ticks(200);
    assert!(cluster.node(3).term() > term);
    cluster.heal();
    cluster.run_ticks(50);
    assert!(cluster.node(1).term() > term);
    assert!(cluster.leaders_by_term.len() > 1);
}

#[test]
fn check_quorum_an_isolated_leader_steps_down_within_two_election_timeouts() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let old_term = cluster.node(1).term();
    cluster.isolate(1);
    let ticks = cluster.run_until(100, |c| c.node(1).role() != Role::Leader);
    assert!(ticks <= 20, "stepped down after {ticks} ticks (T = 10)");
    assert_eq!(cluster.node(1).leader(), NodeId::NONE);
    assert_eq!(
        cluster.node_mut(1).propose(bytes::Bytes::from_static(b"x")),
        Err(raft::ProposeError::NotLeader {
            leader_hint: NodeId::NONE
        })
    );
    // The majority elects a new leader in a later term.
    cluster.run_until(100, |c| c.leader().is_some_and(|leader| leader != id(1)));
    assert!(cluster.node(2).term() > old_term);
}

#[test]
fn without_check_quorum_an_isolated_leader_stays_leader() {
    let mut cluster = Cluster::new(3, |c| c.check_quorum = false);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.run_ticks(100);
    assert_eq!(cluster.node(1).role(), Role::Leader);
}

#[test]
fn a_follower_that_heard_from_its_leader_recently_ignores_vote_requests() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(2, 0, 1),
        |_| {},
    );
    node.step(message(
        2,
        1,
        2,
        raft::MessageBody::Heartbeat {
            commit: LogIndex(1),
            round: 1,
        },
    ));
    output(&mut node);
    assert_eq!(node.leader(), id(2));
    // A higher-term vote request while the leader is alive: ignored, no term change, no answer.
    node.step(message(3, 1, 3, vote_request(5, 2)));
    node.step(message(3, 1, 3, pre_vote_request(5, 2)));
    assert!(!node.has_ready());
    assert_eq!(node.term(), Term(2));
    assert_eq!(node.dropped(DropReason::LeaderLease), 2);
    // Once an election timeout has passed without the leader, the same request is granted.
    for _ in 0..10 {
        node.tick();
    }
    while node.has_ready() {
        persist(&mut node);
    }
    node.step(message(3, 1, 3, vote_request(5, 2)));
    let out = output(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(3, 3, 1)));
    assert_eq!(
        out.persisted_messages,
        vec![message(1, 3, 3, vote_response(false, true))]
    );
}

#[test]
fn a_leader_with_check_quorum_ignores_higher_term_vote_requests() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    let term = cluster.node(1).term().get();
    let mut leader = cluster.take_node(1);
    leader.step(message(2, 1, term + 1, vote_request(100, term)));
    assert_eq!(leader.role(), Role::Leader);
    assert_eq!(leader.term(), Term(term));
    assert_eq!(leader.dropped(DropReason::LeaderLease), 1);
}

#[test]
fn a_pre_candidate_that_hears_from_the_leader_of_its_term_becomes_its_follower() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(2, 0, 1),
        |_| {},
    );
    node.campaign();
    output(&mut node);
    assert_eq!(node.role(), Role::PreCandidate);
    node.step(message(2, 1, 2, append(1, 1, entries(2, &[2]), 1)));
    assert_eq!(
        output(&mut node),
        Output {
            soft_state: Some(SoftState {
                leader: id(2),
                role: Role::Follower
            }),
            entries: entries(2, &[2]),
            persisted_messages: vec![message(1, 2, 2, accepted(2))],
            ..Output::default()
        }
    );
}

#[test]
fn a_candidate_that_hears_from_the_leader_of_its_term_becomes_its_follower() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |c| c.pre_vote = false,
    );
    node.campaign();
    output(&mut node);
    assert_eq!(node.role(), Role::Candidate);
    assert_eq!(node.term(), Term(2));
    // Node 2 won term 2 (with node 3's vote) and sends its heartbeat.
    node.step(message(
        2,
        1,
        2,
        raft::MessageBody::Heartbeat {
            commit: LogIndex(1),
            round: 1,
        },
    ));
    assert_eq!(
        output(&mut node),
        Output {
            soft_state: Some(SoftState {
                leader: id(2),
                role: Role::Follower
            }),
            persisted_messages: vec![message(
                1,
                2,
                2,
                raft::MessageBody::HeartbeatResponse { round: 1 }
            )],
            ..Output::default()
        }
    );
    // Its vote for itself in term 2 stands.
    assert_eq!(node.status().hard_state.vote, id(1));
}

#[test]
fn a_candidate_that_loses_returns_to_follower_in_its_term() {
    let mut node = node_with(
        1,
        &[1, 2, 3],
        &log_of_terms(&[1]),
        hard_state(1, 0, 1),
        |c| c.pre_vote = false,
    );
    node.campaign();
    output(&mut node);
    node.step(message(2, 1, 2, vote_response(false, false)));
    node.step(message(3, 1, 2, vote_response(false, false)));
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.term(), Term(2));
}

#[test]
fn elections_converge_despite_repeated_leader_crashes() {
    // Crash whoever leads, ten times; every new leadership is in a new term and unique.
    let mut cluster = Cluster::new(5, |_| {});
    let mut terms = Vec::new();
    for round in 0..10 {
        cluster.run_until(200, |c| c.leader().is_some());
        let leader = cluster.leader().unwrap();
        terms.push(cluster.members[&leader].node.term());
        cluster
            .propose(leader.get(), format!("round {round}").as_bytes())
            .unwrap();
        cluster.deliver_all();
        cluster.crash(leader.get());
    }
    assert!(terms.windows(2).all(|pair| pair[0] < pair[1]), "{terms:?}");
    cluster.run_until(200, |c| c.leader().is_some());
    cluster.run_ticks(20);
    cluster.assert_converged();
    let expected: Vec<Vec<u8>> = (0..10).map(|r| format!("round {r}").into_bytes()).collect();
    let applied: Vec<Vec<u8>> = cluster
        .applied_data(1)
        .iter()
        .map(|data| data.to_vec())
        .collect();
    assert_eq!(applied, expected);
}
