//! Log compaction over loopback TCP and real WAL directories: members snapshot their state
//! machine every few entries, restart from snapshot plus log, and a member that missed the
//! compacted entries catches up from the leader's snapshot.

mod common;

use bytes::Bytes;
use common::{Cluster, eventually};
use raft::{LogIndex, NodeId};
use runtime::MemberConfig;
use std::path::Path;

/// Compact every this many applied entries.
const SNAPSHOT_EVERY: u64 = 20;

/// Keys written by each test.
const KEYS: usize = 200;

/// Compaction every few entries, and small segments so it has whole segments to release.
fn compacting(config: &mut MemberConfig) {
    config.snapshot_every_entries = SNAPSHOT_EVERY;
    config.wal.segment_size_bytes = 4096;
    config.wal.preallocate = false;
}

impl Cluster {
    /// Writes `key{i}` = `value{i}` for every i through the leader.
    async fn write_keys(&self, leader: NodeId) {
        let handle = &self.members[&leader];
        for i in 0..KEYS {
            handle
                .put(key(i), value(i))
                .await
                .unwrap_or_else(|error| panic!("put {i}: {error}"));
        }
    }

    /// Waits until `id` applied everything the leader committed.
    async fn caught_up(&self, id: NodeId) {
        let leader = self.leader().await;
        let target = self.members[&leader].status().commit;
        eventually("the member catches up", || async {
            (self.members[&id].status().applied >= target).then_some(())
        })
        .await;
    }

    /// Reads every key back on member `id`.
    async fn check_keys(&self, id: NodeId) {
        let member = &self.members[&id];
        for i in 0..KEYS {
            assert_eq!(
                member.get(key(i)).await,
                Ok(Some(value(i))),
                "key {i} on member {id}"
            );
        }
    }
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i:04}"))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i:04}-{}", "x".repeat(40)))
}

/// The names of the snapshot files in a WAL directory.
fn snapshot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".snap"))
        .collect()
}

/// How many files (segments, snapshots, lock, ...) a WAL directory holds.
fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("read the data dir").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_compact_and_restart_from_snapshot_plus_log() {
    let mut cluster = Cluster::start(3, compacting).await;
    let leader = cluster.leader().await;
    cluster.write_keys(leader).await;

    let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
    for &id in &ids {
        cluster.caught_up(id).await;
        // At most SNAPSHOT_EVERY entries stay before the applied index once the snapshot
        // being written (off the driver) is done.
        eventually(
            "the log compacted up to the last snapshot point",
            || async {
                let status = cluster.members[&id].status();
                (status.first_index > LogIndex(1)
                    && status
                        .applied
                        .get()
                        .saturating_sub(status.first_index.get())
                        < SNAPSHOT_EVERY)
                    .then_some(())
            },
        )
        .await;
        let dir = cluster.dirs[&id].path();
        assert!(!snapshot_files(dir).is_empty(), "no snapshot file of {id}");
        // 200 entries of ~100 bytes fill several 4 KiB segments; the released ones are gone
        // (snapshots_to_keep = 2 bounds the snapshot files too).
        assert!(
            file_count(dir) < 12,
            "member {id}'s WAL was not released: {:?}",
            std::fs::read_dir(dir)
                .expect("read")
                .map(|entry| entry.expect("entry").file_name())
                .collect::<Vec<_>>()
        );
    }

    // Everything comes back from disk: the state machine from the snapshot, the rest from the
    // log after it.
    for &id in &ids {
        cluster.stop(id).await;
    }
    for &id in &ids {
        cluster.restart(id).await;
        // The first status a member publishes is its state as read from disk, before any
        // message from a peer (which could carry a leader's snapshot).
        let status = eventually("the first status", || async {
            let status = cluster.members[&id].status();
            (status.first_index != LogIndex::ZERO).then_some(status)
        })
        .await;
        assert!(
            status.first_index > LogIndex(1),
            "member {id} restarted without its snapshot: {status:?}"
        );
    }
    let leader = cluster.leader().await;
    for &id in &ids {
        let status = cluster.members[&id].status();
        assert!(
            status.first_index > LogIndex(1),
            "member {id} restarted without its snapshot: {status:?}"
        );
        cluster.check_keys(id).await;
    }
    // And the cluster still takes writes.
    cluster.members[&leader]
        .put(Bytes::from_static(b"after"), Bytes::from_static(b"restart"))
        .await
        .expect("put after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_compacted_entries_catches_up_from_the_leaders_snapshot() {
    let mut cluster = Cluster::start(3, compacting).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    cluster.caught_up(follower).await;
    let stopped_at = cluster.members[&follower].status().applied;
    cluster.stop(follower).await;

    cluster.write_keys(leader).await;
    let leader_status = cluster.members[&leader].status();
    assert!(
        leader_status.first_index > stopped_at.next(),
        "the leader still holds the entries the follower misses: {leader_status:?}"
    );

    cluster.restart(follower).await;
    cluster.caught_up(follower).await;
    let status = cluster.members[&follower].status();
    assert!(
        status.first_index > stopped_at.next(),
        "the follower did not install the leader's snapshot: {status:?}"
    );
    cluster.check_keys(follower).await;

    // After a restart it comes back from the installed snapshot.
    cluster.stop(follower).await;
    cluster.restart(follower).await;
    cluster.caught_up(follower).await;
    cluster.check_keys(follower).await;
}

/// Almost no entry stays in memory and nothing is compacted: a follower that was down catches
/// up from entries the leader reads back from its WAL (not from a snapshot), and restarted
/// members replay their whole log through the same reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_and_restarts_are_served_from_entries_read_back_from_the_wal() {
    fn evicting(config: &mut MemberConfig) {
        config.snapshot_every_entries = 1_000_000;
        config.resident_log_bytes = 1024;
        config.wal.segment_size_bytes = 4096;
        config.wal.preallocate = false;
    }
    let mut cluster = Cluster::start(3, evicting).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    cluster.caught_up(follower).await;
    cluster.stop(follower).await;

    cluster.write_keys(leader).await;
    let leader_status = cluster.members[&leader].status();
    assert_eq!(
        leader_status.first_index,
        LogIndex(1),
        "nothing was compacted"
    );
    assert!(
        leader_status.resident_entries < KEYS as u64 / 4,
        "the leader keeps its log in memory: {leader_status:?}"
    );

    cluster.restart(follower).await;
    cluster.caught_up(follower).await;
    let status = cluster.members[&follower].status();
    assert_eq!(
        status.first_index,
        LogIndex(1),
        "the follower got a snapshot instead of entries: {status:?}"
    );
    cluster.check_keys(follower).await;

    let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
    for &id in &ids {
        cluster.stop(id).await;
    }
    for &id in &ids {
        cluster.restart(id).await;
    }
    for &id in &ids {
        cluster.caught_up(id).await;
        cluster.check_keys(id).await;
        let status = cluster.members[&id].status();
        assert!(
            status.resident_entries < KEYS as u64 / 4,
            "member {id} reloaded its whole log into memory: {status:?}"
        );
    }
}

/// With `snapshot_log_percent`, a member whose state has grown waits for more log than
/// `snapshot_every_entries` before its next snapshot: here the second snapshot would need 30
/// times the first one's size in log (about 1.3 KB after 20 writes of about 70 bytes), far
/// more than the 200 writes hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_wait_for_log_in_proportion_to_the_state() {
    let cluster = Cluster::start(3, |config| {
        compacting(config);
        config.snapshot_log_percent = 3000;
    })
    .await;
    let leader = cluster.leader().await;
    cluster.write_keys(leader).await;
    let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
    for &id in &ids {
        cluster.caught_up(id).await;
        // The first snapshot needs no log beyond the entry count (there was none before it).
        let status = eventually("the first snapshot", || async {
            let status = cluster.members[&id].status();
            (status.first_index > LogIndex(1)).then_some(status)
        })
        .await;
        let retained = status.applied.get() - status.first_index.get();
        assert!(
            retained > 100,
            "member {id} kept only {retained} entries: it snapshotted as if by count alone"
        );
    }
}

/// A member removed and added again under the same id joins afresh. Fewer entries than a
/// snapshot needs follow the removal, so the leader's latest snapshot most likely predates it:
/// the member installs that snapshot (a configuration with its id in it, its predecessor's),
/// replays the removal, then its own admission. Its status says from which index on the
/// configuration concerns it: its admission or later, past the removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_member_learns_an_admission_index_past_its_predecessors_removal() {
    let mut cluster = Cluster::start(3, compacting).await;
    let leader = cluster.leader().await;
    cluster.write_keys(leader).await;
    let gone = cluster.follower_of(leader);
    cluster.caught_up(gone).await;
    eventually("the leader compacted its log", || async {
        (cluster.members[&leader].status().first_index > LogIndex(1)).then_some(())
    })
    .await;

    let single = |change, node| raft::ConfChange::single(change, node);
    let removed = cluster.members[&leader]
        .change_membership(single(raft::ConfChangeType::RemoveNode, gone))
        .await
        .expect("remove");
    assert!(!removed.voters.contains(&gone));
    let removal = cluster.members[&leader].status().applied;
    cluster.stop(gone).await;
    // A fresh data directory, as an operator re-adding the member would give it.
    cluster
        .dirs
        .insert(gone, tempfile::tempdir().expect("temp dir"));
    cluster.members[&leader]
        .change_membership(single(raft::ConfChangeType::AddVoter, gone))
        .await
        .expect("add again");
    let admission = cluster.members[&leader].status().applied;
    assert!(admission > removal);

    let listener = eventually("the old port is free again", || async {
        tokio::net::TcpListener::bind(cluster.addrs[&gone])
            .await
            .ok()
    })
    .await;
    let mut config = cluster.config(gone, &cluster.dirs[&gone]);
    config.join_existing = true;
    let member =
        runtime::Member::start_with_listener(config, listener, machine::EtcdMachine::new())
            .expect("the fresh member starts");
    assert_eq!(member.status().admitted_by, None);
    cluster.members.insert(gone, common::Client::new(member));
    let admitted = eventually("the admission is known", || async {
        cluster.members[&gone].status().admitted_by
    })
    .await;
    assert!(admitted >= admission, "{admitted:?} < {admission:?}");
    cluster.caught_up(gone).await;
    let status = cluster.members[&gone].status();
    assert!(status.applied >= admitted);
    assert!(cluster.members[&gone].membership().voters.contains(&gone));
    cluster.check_keys(gone).await;
}
