//! Log compaction over loopback TCP and real WAL directories: members snapshot their state
//! machine every few entries, restart from snapshot plus log, and a member that missed the
//! compacted entries catches up from the leader's snapshot.

use bytes::Bytes;
use raft::{LogIndex, NodeId, Role};
use runtime::{Member, MemberConfig, MemberHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

/// How long any condition may take before the test fails.
const GUARD: Duration = Duration::from_secs(20);

/// Compact every this many applied entries.
const SNAPSHOT_EVERY: u64 = 20;

/// Keys written by each test.
const KEYS: usize = 200;

struct Cluster {
    dirs: BTreeMap<NodeId, TempDir>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    members: BTreeMap<NodeId, MemberHandle>,
}

fn config(id: NodeId, dir: &TempDir, addrs: &BTreeMap<NodeId, SocketAddr>) -> MemberConfig {
    let mut config = MemberConfig::new(id, dir.path(), addrs.clone(), addrs[&id]);
    config.tick = Duration::from_millis(10);
    config.snapshot_every_entries = SNAPSHOT_EVERY;
    // Small segments, so that compaction has whole segments to release.
    config.wal.segment_size_bytes = 4096;
    config.wal.preallocate = false;
    config
}

impl Cluster {
    async fn start(size: u64) -> Cluster {
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(NodeId(id), listener);
        }
        let addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(id, listener)| (*id, listener.local_addr().expect("addr")))
            .collect();
        let mut cluster = Cluster {
            dirs: BTreeMap::new(),
            addrs,
            members: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            let dir = tempfile::tempdir().expect("temp dir");
            let member = Member::start_with_listener(config(id, &dir, &cluster.addrs), listener)
                .expect("member starts");
            cluster.dirs.insert(id, dir);
            cluster.members.insert(id, member);
        }
        cluster
    }

    /// Restarts a stopped member from its data directory on its old address.
    async fn restart(&mut self, id: NodeId) {
        let listener = eventually("the old port is free again", || async {
            TcpListener::bind(self.addrs[&id]).await.ok()
        })
        .await;
        let member =
            Member::start_with_listener(config(id, &self.dirs[&id], &self.addrs), listener)
                .expect("member restarts");
        self.members.insert(id, member);
    }

    async fn stop(&mut self, id: NodeId) {
        let member = self.members.remove(&id).expect("running");
        member.shutdown().await.expect("clean shutdown");
    }

    /// Waits until one running member leads and every running member knows it.
    async fn leader(&self) -> NodeId {
        eventually("a leader known to all", || async {
            let statuses: Vec<_> = self.members.values().map(MemberHandle::status).collect();
            let leader = statuses.first()?.leader;
            let agreed = leader.is_some()
                && statuses.iter().all(|status| status.leader == leader)
                && self.members.get(&leader)?.status().role == Role::Leader;
            agreed.then_some(leader)
        })
        .await
    }

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

/// Polls `condition` every 10 ms until it gives a value; fails the test after [`GUARD`].
async fn eventually<T, F, Fut>(what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.write_keys(leader).await;

    let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
    for &id in &ids {
        cluster.caught_up(id).await;
        let status = cluster.members[&id].status();
        assert!(
            status.first_index > LogIndex(1),
            "member {id} never compacted: {status:?}"
        );
        // At most SNAPSHOT_EVERY entries stay before the applied index, plus what arrived
        // since the last check.
        assert!(
            status
                .applied
                .get()
                .saturating_sub(status.first_index.get())
                < SNAPSHOT_EVERY,
            "member {id} lags in compacting: {status:?}"
        );
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
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = *cluster
        .members
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
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
