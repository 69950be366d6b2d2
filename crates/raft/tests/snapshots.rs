//! Log compaction and snapshot installation, stated as outcomes.

mod common;

use bytes::Bytes;
use common::*;
use raft::{LogIndex, MessageBody, Role, Storage};

/// Compacts `node`'s storage up to its applied index, as an embedder does after taking a state
/// machine snapshot there.
fn compact(cluster: &mut Cluster, node: u64) -> LogIndex {
    let applied = cluster.node(node).applied();
    let data = Bytes::from(format!("state@{}", applied.get()));
    cluster.node_mut(node).storage_mut().compact(applied, data);
    applied
}

fn is_snapshot(message: &raft::Message) -> bool {
    matches!(message.body, MessageBody::InstallSnapshot { .. })
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(3);
    for i in 0..30u8 {
        cluster.propose(1, &[i]).unwrap();
        cluster.deliver_all();
    }
    let snapshot_index = compact(&mut cluster, 1);
    cluster.propose(1, b"after").unwrap();
    cluster.deliver_all();
    cluster.heal();
    cluster.sent.clear();
    cluster.run_ticks(3);
    assert_eq!(
        cluster.count_sent(is_snapshot),
        1,
        "exactly one snapshot sent"
    );
    let follower = cluster.node(3);
    assert_eq!(follower.storage().first_index(), snapshot_index.next());
    assert_eq!(
        follower.storage().snapshot().unwrap().data,
        Bytes::from(format!("state@{}", snapshot_index.get()))
    );
    assert_eq!(follower.committed(), cluster.node(1).committed());
    assert_eq!(follower.applied(), cluster.node(1).applied());
    assert_eq!(cluster.node(1).snapshot_counts().0, 1);
    assert_eq!(cluster.node(3).snapshot_counts().1, 1);
    // Normal replication resumes after it.
    cluster.propose(1, b"later").unwrap();
    cluster.deliver_all();
    assert_eq!(cluster.node(3).last_index(), cluster.node(1).last_index());
}

#[test]
fn a_snapshot_older_than_the_commit_index_is_ignored() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    for i in 0..5u8 {
        cluster.propose(1, &[i]).unwrap();
    }
    cluster.deliver_all();
    let committed = cluster.node(2).committed();
    let old = raft::Snapshot {
        metadata: raft::SnapshotMetadata {
            index: LogIndex(2),
            term: cluster.node(2).term_at(LogIndex(2)).unwrap(),
            conf_state: cluster.node(2).conf_state().clone(),
        },
        data: Bytes::from_static(b"old"),
    };
    let term = cluster.node(1).term().get();
    cluster.node_mut(2).step(message(
        1,
        2,
        term,
        MessageBody::InstallSnapshot { snapshot: old },
    ));
    let ready = cluster.node_mut(2).ready();
    assert!(
        ready.snapshot.is_none(),
        "an older snapshot must not be restored"
    );
    assert!(
        ready
            .persisted_messages
            .iter()
            .any(|m| m.body == accepted(committed.get()))
    );
    assert_eq!(cluster.node(2).committed(), committed);
}

#[test]
fn a_snapshot_whose_last_entry_we_hold_only_advances_the_commit_index() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    for i in 0..5u8 {
        cluster.propose(1, &[i]).unwrap();
    }
    // Node 2 receives the entries but not yet the commit index.
    cluster.add_filter(|m| m.to == id(2) && matches!(m.body, MessageBody::Heartbeat { .. }));
    cluster.deliver_all();
    let last = cluster.node(2).last_index();
    let snapshot = raft::Snapshot {
        metadata: raft::SnapshotMetadata {
            index: last,
            term: cluster.node(2).term_at(last).unwrap(),
            conf_state: cluster.node(2).conf_state().clone(),
        },
        data: Bytes::from_static(b"s"),
    };
    let term = cluster.node(1).term().get();
    cluster.node_mut(2).step(message(
        1,
        2,
        term,
        MessageBody::InstallSnapshot { snapshot },
    ));
    let ready = cluster.node_mut(2).ready();
    assert!(
        ready.snapshot.is_none(),
        "no restore when the log already holds it"
    );
    assert_eq!(cluster.node(2).committed(), last);
    assert_eq!(cluster.node(2).last_index(), last);
}

#[test]
fn a_lost_snapshot_is_sent_again_after_the_snapshot_timeout() {
    let mut cluster = Cluster::new(3, |c| c.snapshot_timeout_ticks = 15);
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(3);
    for i in 0..10u8 {
        cluster.propose(1, &[i]).unwrap();
        cluster.deliver_all();
    }
    compact(&mut cluster, 1);
    cluster.heal();
    let mut first = true;
    cluster.add_filter(move |m| {
        let drop = is_snapshot(m) && first;
        if drop {
            first = false;
        }
        drop
    });
    cluster.sent.clear();
    cluster.run_until(40, |c| c.node(3).committed() == c.node(1).committed());
    assert_eq!(
        cluster.count_sent(is_snapshot),
        2,
        "resent once after being lost"
    );
}

#[test]
fn a_failed_snapshot_report_lets_the_follower_leave_the_snapshot_state() {
    let mut cluster = Cluster::new(3, |_| {});
    cluster.elect(1);
    cluster.deliver_all();
    cluster.isolate(3);
    for i in 0..10u8 {
        cluster.propose(1, &[i]).unwrap();
        cluster.deliver_all();
    }
    compact(&mut cluster, 1);
    cluster.heal();
    cluster.add_filter(is_snapshot);
    let progress_state = |c: &Cluster| {
        c.node(1)
            .status()
            .progress
            .iter()
            .find(|p| p.id == id(3))
            .unwrap()
            .state
    };
    cluster.run_until(10, |c| {
        matches!(
            progress_state(c),
            raft::tracker::ProgressState::Snapshot { .. }
        )
    });
    cluster.node_mut(1).report_snapshot(id(3), false);
    assert_eq!(
        progress_state(&cluster),
        raft::tracker::ProgressState::Probe
    );
    cluster.clear_filters();
    cluster.run_ticks(3);
    assert_eq!(cluster.node(3).committed(), cluster.node(1).committed());
    assert_eq!(cluster.node(1).role(), Role::Leader);
}
