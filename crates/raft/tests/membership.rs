//! Membership changes by joint consensus, stated as outcomes.

mod common;

use common::*;
use raft::{ConfChange, ConfChangeSingle, ConfChangeType, MessageBody, NodeId, ProposeError, Role};

fn change(ops: &[(ConfChangeType, u64)]) -> ConfChange {
    ConfChange {
        changes: ops
            .iter()
            .map(|&(change, node)| ConfChangeSingle {
                change,
                node: NodeId(node),
            })
            .collect(),
    }
}

fn voters(cluster: &Cluster, node: u64) -> Vec<u64> {
    cluster
        .node(node)
        .conf_state()
        .voters
        .iter()
        .map(|id| id.get())
        .collect()
}

#[test]
fn a_new_leader_accepts_no_change_before_its_own_entry_is_applied() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.campaign(1);
    // Votes arrive, node 1 wins, but its no-op is not yet committed and applied.
    cluster.add_filter(|m| matches!(m.body, MessageBody::AppendEntriesResponse(_)));
    cluster.deliver_all();
    assert_eq!(cluster.node(1).role(), Role::Leader);
    assert_eq!(
        cluster
            .node_mut(1)
            .propose_conf_change(&change(&[(ConfChangeType::AddVoter, 4)])),
        Err(ProposeError::ConfChangePending)
    );
    cluster.clear_filters();
    cluster.run_ticks(2);
    assert!(
        cluster
            .node_mut(1)
            .propose_conf_change(&change(&[(ConfChangeType::AddVoter, 4)]))
            .is_ok()
    );
}

#[test]
fn adding_a_learner_then_promoting_it() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.add_member(4, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[(ConfChangeType::AddLearner, 4)]))
        .unwrap();
    cluster.deliver_all();
    cluster.run_ticks(3);
    assert_eq!(cluster.node(4).conf_state().learners, vec![NodeId(4)]);
    assert_eq!(cluster.node(4).committed(), cluster.node(1).committed());
    // A learner never campaigns.
    cluster.isolate(1);
    cluster.run_ticks(60);
    assert_ne!(cluster.node(4).role(), Role::Candidate);
    assert_ne!(cluster.node(4).role(), Role::Leader);
    cluster.heal();
    cluster.run_until(100, |c| c.leader().is_some());
    let leader = cluster.leader().unwrap().get();
    // The (possibly new) leader first applies an entry of its own term.
    cluster.run_ticks(3);
    cluster
        .node_mut(leader)
        .propose_conf_change(&change(&[(ConfChangeType::AddVoter, 4)]))
        .unwrap();
    cluster.deliver_all();
    cluster.run_ticks(3);
    for node in 1..=4 {
        assert_eq!(voters(&cluster, node), vec![1, 2, 3, 4], "node {node}");
    }
}

#[test]
fn replacing_two_voters_goes_through_a_joint_configuration_and_leaves_it() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.add_member(4, |_| {});
    cluster.add_member(5, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[
            (ConfChangeType::AddVoter, 4),
            (ConfChangeType::AddVoter, 5),
            (ConfChangeType::RemoveNode, 3),
        ]))
        .unwrap();
    cluster.deliver_all();
    cluster.run_ticks(3);
    for node in [1, 2, 4, 5] {
        let conf = cluster.node(node).conf_state();
        assert!(!conf.is_joint(), "node {node} left the joint configuration");
        assert_eq!(voters(&cluster, node), vec![1, 2, 4, 5]);
    }
    // The new configuration commits with the new members.
    cluster.stop(2);
    cluster.propose(1, b"after").unwrap();
    cluster.deliver_all();
    assert_eq!(cluster.node(5).committed(), cluster.node(1).committed());
}

#[test]
fn a_joint_configuration_needs_both_majorities() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.add_member(4, |_| {});
    cluster.add_member(5, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    // Enter joint {1,2,3} -> {1,4,5}; stop the new members before anything else commits.
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[
            (ConfChangeType::AddVoter, 4),
            (ConfChangeType::AddVoter, 5),
            (ConfChangeType::RemoveNode, 2),
            (ConfChangeType::RemoveNode, 3),
        ]))
        .unwrap();
    // Keep the auto-leave entry from committing: the incoming majority {4,5} goes away once
    // the joint configuration is in force on the leader.
    cluster.deliver_all();
    if !cluster.node(1).conf_state().is_joint() {
        // Already left: both majorities were reachable. Nothing more to test in that order.
        return;
    }
    cluster.stop(4);
    cluster.stop(5);
    let before = cluster.node(1).committed();
    cluster.propose(1, b"needs both").unwrap();
    cluster.deliver_all();
    assert_eq!(
        cluster.node(1).committed(),
        before,
        "only the old majority answered"
    );
}

#[test]
fn a_removed_leader_steps_down_once_the_change_is_applied() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[(ConfChangeType::RemoveNode, 1)]))
        .unwrap();
    cluster.deliver_all();
    assert_ne!(cluster.node(1).role(), Role::Leader);
    assert_eq!(voters(&cluster, 2), vec![2, 3]);
    cluster.run_until(100, |c| {
        [2, 3].iter().any(|&n| c.node(n).role() == Role::Leader)
    });
    // The removed node cannot disrupt: its vote requests are ignored.
    let term = cluster
        .leader()
        .map(|l| cluster.node(l.get()).term())
        .unwrap();
    cluster.run_ticks(100);
    assert_ne!(cluster.node(1).role(), Role::Leader);
    let leader = cluster.leader().unwrap();
    assert_ne!(leader, NodeId(1));
    assert_eq!(cluster.node(leader.get()).term(), term, "no disruption");
}

#[test]
fn one_change_at_a_time() {
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.add_member(4, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[(ConfChangeType::AddLearner, 4)]))
        .unwrap();
    assert_eq!(
        cluster
            .node_mut(1)
            .propose_conf_change(&change(&[(ConfChangeType::AddVoter, 4)])),
        Err(ProposeError::ConfChangePending)
    );
}

#[test]
fn a_truncated_change_never_takes_effect() {
    // docs/correctness.md, K3: a change appended by a leader that loses office before committing it is
    // overwritten, and (applied at apply time) never changes anyone's configuration.
    let mut cluster = Cluster::bootstrapped(3, |_| {});
    cluster.add_member(4, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(1);
    cluster
        .node_mut(1)
        .propose_conf_change(&change(&[(ConfChangeType::AddVoter, 4)]))
        .unwrap();
    cluster.deliver_all();
    cluster.run_until(100, |c| {
        [2, 3].iter().any(|&n| c.node(n).role() == Role::Leader)
    });
    let leader = cluster.leader().unwrap().get();
    cluster.propose(leader, b"other").unwrap();
    cluster.deliver_all();
    cluster.heal();
    cluster.run_ticks(5);
    for node in 1..=3 {
        assert_eq!(voters(&cluster, node), vec![1, 2, 3], "node {node}");
    }
}
