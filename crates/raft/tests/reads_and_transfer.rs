//! Linearizable reads (ReadIndex, lease) and leadership transfer, stated as outcomes.

mod common;

use common::*;
use raft::{LogIndex, MessageBody, ProposeError, ReadIndexError, ReadOnlyOption, ReadState, Role};

fn reads_of(cluster: &Cluster, node: u64) -> Vec<ReadState> {
    cluster
        .read_states
        .iter()
        .filter(|(from, _)| *from == id(node))
        .map(|(_, state)| *state)
        .collect()
}

/// Three members led by 1, with an entry of its term committed (so reads can be confirmed).
fn led_by_1_with_a_commit() -> Cluster {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"x").unwrap();
    cluster.deliver_all();
    cluster
}

#[test]
fn a_leader_confirms_many_reads_with_one_heartbeat_round() {
    let mut cluster = led_by_1_with_a_commit();
    let committed = cluster.node(1).committed();
    cluster.sent.clear();
    for context in 0..10 {
        cluster.node_mut(1).read_index(context).unwrap();
    }
    cluster.deliver_all();
    let heartbeats = cluster.count_sent(|m| matches!(m.body, MessageBody::Heartbeat { .. }));
    assert_eq!(heartbeats, 2, "one round to each of two followers");
    let reads = reads_of(&cluster, 1);
    assert_eq!(reads.len(), 10);
    assert!(reads.iter().all(|read| read.index == Some(committed)));
}

#[test]
fn reads_arriving_while_a_round_is_in_flight_share_the_next_round() {
    let mut cluster = led_by_1_with_a_commit();
    let committed = cluster.node(1).committed();
    cluster.sent.clear();
    let heartbeats =
        |cluster: &Cluster| cluster.count_sent(|m| matches!(m.body, MessageBody::Heartbeat { .. }));
    cluster.node_mut(1).read_index(1).unwrap();
    cluster.process_readies();
    assert_eq!(heartbeats(&cluster), 2, "the first read starts a round");
    // Three more batches of reads arrive before any follower has answered that round.
    for context in 2..=4 {
        cluster.node_mut(1).read_index(context).unwrap();
        cluster.process_readies();
    }
    assert_eq!(
        heartbeats(&cluster),
        2,
        "no second round while the first is in flight"
    );
    cluster.deliver_all();
    assert_eq!(
        heartbeats(&cluster),
        4,
        "one more round, sent once a quorum answered the first, confirms the rest"
    );
    let reads = reads_of(&cluster, 1);
    assert_eq!(
        reads.iter().map(|read| read.context).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(reads.iter().all(|read| read.index == Some(committed)));
}

#[test]
fn a_lost_read_round_is_replaced_by_the_next_heartbeat() {
    let mut cluster = led_by_1_with_a_commit();
    // The round's heartbeats are lost, so it stays in flight for good.
    cluster.add_filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }));
    cluster.node_mut(1).read_index(1).unwrap();
    cluster.deliver_all();
    cluster.node_mut(1).read_index(2).unwrap();
    cluster.deliver_all();
    assert!(reads_of(&cluster, 1).is_empty());
    cluster.clear_filters();
    // The heartbeat tick starts a new round, which covers both reads.
    cluster.run_until(10, |c| reads_of(c, 1).len() == 2);
    let reads = reads_of(&cluster, 1);
    assert_eq!(
        reads.iter().map(|read| read.context).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(reads.iter().all(|read| read.index.is_some()));
}

#[test]
fn a_new_leader_answers_reads_only_after_committing_in_its_term() {
    let mut cluster = led_by_1_with_a_commit();
    // Node 2 wins the next election, but its appends (and so its no-op) are held back.
    cluster.isolate(1);
    cluster.add_filter(|m| m.from == id(2) && matches!(m.body, MessageBody::AppendEntries { .. }));
    cluster.run_until(100, |c| c.node(2).role() == Role::Leader);
    assert!(cluster.node(2).committed() < cluster.node(2).last_index());
    let before = reads_of(&cluster, 2).len();
    cluster.node_mut(2).read_index(7).unwrap();
    cluster.deliver_all();
    assert_eq!(
        reads_of(&cluster, 2).len(),
        before,
        "answered before its term committed"
    );
    cluster.clear_filters();
    cluster.run_ticks(3);
    let reads = reads_of(&cluster, 2);
    assert_eq!(reads.last().map(|r| r.context), Some(7));
    let index = reads.last().unwrap().index.expect("confirmed");
    assert_eq!(
        cluster.node(2).term_at(index),
        Some(cluster.node(2).term()),
        "the read index covers the new leader's own no-op"
    );
}

#[test]
fn a_follower_reads_through_the_leader() {
    let mut cluster = led_by_1_with_a_commit();
    cluster.node_mut(3).read_index(42).unwrap();
    cluster.deliver_all();
    let reads = reads_of(&cluster, 3);
    assert_eq!(
        reads,
        vec![ReadState {
            context: 42,
            index: Some(cluster.node(1).committed())
        }]
    );
}

#[test]
fn a_follower_asks_the_leader_once_for_the_reads_that_arrive_meanwhile() {
    let mut cluster = led_by_1_with_a_commit();
    let committed = cluster.node(1).committed();
    cluster.sent.clear();
    let requests =
        |cluster: &Cluster| cluster.count_sent(|m| matches!(m.body, MessageBody::ReadIndex { .. }));
    cluster.node_mut(3).read_index(1).unwrap();
    cluster.node_mut(3).read_index(2).unwrap();
    cluster.process_readies();
    assert_eq!(
        requests(&cluster),
        1,
        "reads queued together share a request"
    );
    for context in 3..=5 {
        cluster.node_mut(3).read_index(context).unwrap();
        cluster.process_readies();
    }
    assert_eq!(
        requests(&cluster),
        1,
        "no second request while the first is in flight"
    );
    cluster.deliver_all();
    assert_eq!(
        requests(&cluster),
        2,
        "the later reads share one more request"
    );
    let reads = reads_of(&cluster, 3);
    assert_eq!(
        reads.iter().map(|read| read.context).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(reads.iter().all(|read| read.index == Some(committed)));
}

#[test]
fn a_follower_asks_again_when_its_request_is_lost() {
    let mut cluster = led_by_1_with_a_commit();
    cluster.add_filter(|m| matches!(m.body, MessageBody::ReadIndexResponse { .. }));
    cluster.node_mut(3).read_index(1).unwrap();
    cluster.deliver_all();
    cluster.node_mut(3).read_index(2).unwrap();
    cluster.deliver_all();
    assert!(reads_of(&cluster, 3).is_empty());
    let requests = |cluster: &Cluster| {
        cluster.count_sent(|m| m.from == id(3) && matches!(m.body, MessageBody::ReadIndex { .. }))
    };
    let first_request = cluster
        .sent
        .iter()
        .find_map(|sent| match sent.message.body {
            MessageBody::ReadIndex { context } if sent.message.from == id(3) => Some(context),
            _ => None,
        })
        .expect("the follower asked");
    // A heartbeat interval later the follower asks again, for both reads, under a new id.
    cluster.run_until(10, |c| requests(c) == 2);
    assert_eq!(requests(&cluster), 2);
    // A late answer to the abandoned request confirms nothing: read 2 began after it was sent.
    let term = cluster.node(1).term().0;
    cluster.node_mut(3).step(message(
        1,
        3,
        term,
        MessageBody::ReadIndexResponse {
            context: first_request,
            index: Some(LogIndex(1)),
        },
    ));
    cluster.process_readies();
    assert!(reads_of(&cluster, 3).is_empty());
    cluster.clear_filters();
    cluster.run_until(10, |c| !reads_of(c, 3).is_empty());
    let reads = reads_of(&cluster, 3);
    assert_eq!(
        reads.iter().map(|read| read.context).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(reads.iter().all(|read| read.index.is_some()));
}

#[test]
fn a_follower_refuses_its_reads_in_flight_when_the_term_changes() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.add_filter(|m| matches!(m.body, MessageBody::ReadIndexResponse { .. }));
    cluster.node_mut(3).read_index(1).unwrap();
    cluster.deliver_all();
    cluster.node_mut(3).read_index(2).unwrap();
    cluster.campaign(3);
    cluster.process_readies();
    let reads = reads_of(&cluster, 3);
    assert_eq!(
        reads,
        vec![
            ReadState {
                context: 1,
                index: None
            },
            ReadState {
                context: 2,
                index: None
            }
        ],
        "both the asked and the queued read are refused, so their clients retry"
    );
}

#[test]
fn a_read_without_a_known_leader_fails_fast() {
    let mut cluster = Cluster::new(3, |_| {});
    assert_eq!(
        cluster.node_mut(2).read_index(1),
        Err(ReadIndexError::NoLeader)
    );
}

#[test]
fn a_stale_leader_cut_off_from_the_quorum_never_confirms_a_read() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(1);
    cluster.node_mut(1).read_index(5).unwrap();
    cluster.deliver_all();
    // The rest elect a new leader and write; the old one must not serve its read.
    cluster.run_until(100, |c| {
        [2, 3].iter().any(|&n| c.node(n).role() == Role::Leader)
    });
    let new_leader = if cluster.node(2).role() == Role::Leader {
        2
    } else {
        3
    };
    cluster.propose(new_leader, b"new").unwrap();
    cluster.deliver_all();
    cluster.run_ticks(25);
    let reads = reads_of(&cluster, 1);
    assert!(
        reads.iter().all(|read| read.index.is_none()),
        "the isolated leader confirmed a read: {reads:?}"
    );
    assert_ne!(
        cluster.node(1).role(),
        Role::Leader,
        "CheckQuorum stepped it down"
    );
    assert_eq!(reads.len(), 1, "the read was refused when it stepped down");
}

#[test]
fn a_lease_serves_reads_without_a_round_until_a_transfer_starts() {
    let mut cluster = Cluster::new(3, |c| c.read_only = ReadOnlyOption::LeaseBased);
    cluster.run_ticks(12);
    cluster.elect(1);
    cluster.deliver_all();
    cluster.run_ticks(2);
    assert!(cluster.node(1).lease_is_valid());
    cluster.sent.clear();
    cluster.node_mut(1).read_index(1).unwrap();
    cluster.deliver_all();
    assert_eq!(
        cluster.count_sent(|m| matches!(m.body, MessageBody::Heartbeat { .. })),
        0,
        "a lease read needs no round"
    );
    assert_eq!(reads_of(&cluster, 1).len(), 1);
    // Once a transfer starts, another leader may soon exist: the lease no longer counts.
    cluster.isolate(3);
    cluster.node_mut(1).transfer_leader(id(3)).unwrap();
    assert!(!cluster.node(1).lease_is_valid());
    assert_eq!(
        cluster.node_mut(1).read_index(2),
        Err(ReadIndexError::TransferInProgress)
    );
}

#[test]
fn a_lease_expires_without_quorum_contact() {
    let mut cluster = Cluster::new(3, |c| c.read_only = ReadOnlyOption::LeaseBased);
    cluster.run_ticks(12);
    cluster.elect(1);
    cluster.deliver_all();
    cluster.run_ticks(2);
    assert!(cluster.node(1).lease_is_valid());
    cluster.isolate(1);
    cluster.run_ticks(9);
    assert!(!cluster.node(1).lease_is_valid());
}

#[test]
fn transfer_to_an_up_to_date_follower_makes_it_leader_in_the_next_term() {
    let mut cluster = led_by_1_with_a_commit();
    let term = cluster.node(1).term();
    cluster.node_mut(1).transfer_leader(id(2)).unwrap();
    cluster.deliver_all();
    assert_eq!(cluster.node(2).role(), Role::Leader);
    assert_eq!(cluster.node(2).term(), term.next());
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert_eq!(cluster.node(1).leader(), id(2));
}

#[test]
fn transfer_to_a_lagging_follower_catches_it_up_first_and_blocks_proposals() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(3);
    for i in 0..20u8 {
        cluster.propose(1, &[i]).unwrap();
    }
    cluster.deliver_all();
    cluster.heal();
    cluster.node_mut(1).transfer_leader(id(3)).unwrap();
    assert_eq!(
        cluster.propose(1, b"during"),
        Err(ProposeError::TransferInProgress)
    );
    cluster.deliver_all();
    cluster.run_ticks(3);
    assert_eq!(cluster.node(3).role(), Role::Leader);
    assert_eq!(cluster.node(3).committed(), cluster.node(1).committed());
}

#[test]
fn a_transfer_to_an_unreachable_member_is_abandoned_after_an_election_timeout() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.stop(3);
    cluster.node_mut(1).transfer_leader(id(3)).unwrap();
    assert_eq!(cluster.node(1).lead_transferee(), id(3));
    cluster.run_ticks(10);
    assert_eq!(cluster.node(1).lead_transferee(), raft::NodeId::NONE);
    assert_eq!(cluster.node(1).role(), Role::Leader);
    assert!(cluster.propose(1, b"again").is_ok());
}

#[test]
fn a_leader_whose_disk_hangs_steps_down_and_the_cluster_moves_on() {
    // docs/correctness.md, K14: a leader that keeps heartbeating with a hung disk would stall everyone.
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.propose(1, b"before").unwrap();
    cluster.deliver_all();
    cluster.hang_disk(1, true);
    cluster.propose(1, b"stuck").unwrap();
    let stall = cluster.node(1).status().hard_state.term;
    cluster.run_until(60, |c| c.node(1).role() != Role::Leader);
    assert_eq!(cluster.node(1).storage_stall_step_downs(), 1);
    assert!(cluster.node(1).storage_stalled());
    // The others elect a leader and commit without node 1; node 1 never campaigns meanwhile.
    cluster.run_until(100, |c| {
        [2, 3].iter().any(|&n| c.node(n).role() == Role::Leader)
    });
    let leader = cluster.leader().unwrap().get();
    assert_ne!(leader, 1);
    cluster.propose(leader, b"after").unwrap();
    cluster.deliver_all();
    assert!(cluster.node(leader).term() > stall);
    cluster.run_ticks(50);
    assert_ne!(cluster.node(1).role(), Role::Leader);
    // The disk recovers: node 1 catches up as a follower.
    cluster.hang_disk(1, false);
    cluster.run_ticks(5);
    assert!(!cluster.node(1).storage_stalled());
    assert_eq!(
        cluster.node(1).committed(),
        cluster.node(leader).committed()
    );
}
