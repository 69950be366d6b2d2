//! Three members in one process, over loopback TCP and real WAL directories.

use bytes::Bytes;
use raft::{NodeId, Role};
use runtime::{ClientError, Member, MemberConfig, MemberHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

/// How long any condition may take before the test fails.
const GUARD: Duration = Duration::from_secs(10);

struct Cluster {
    dirs: BTreeMap<NodeId, TempDir>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    members: BTreeMap<NodeId, MemberHandle>,
}

fn config(id: NodeId, dir: &TempDir, addrs: &BTreeMap<NodeId, SocketAddr>) -> MemberConfig {
    let mut config = MemberConfig::new(id, dir.path(), addrs.clone(), addrs[&id]);
    config.tick = Duration::from_millis(10);
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

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_serve_linearizable_reads_everywhere() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let handle = &cluster.members[&leader];

    handle.put(bytes("k"), bytes("v1")).await.expect("put");
    for (id, member) in &cluster.members {
        let value = member.get(bytes("k")).await;
        assert_eq!(value, Ok(Some(bytes("v1"))), "read on member {id}");
    }

    assert_eq!(
        handle.cas(bytes("k"), bytes("v1"), bytes("v2")).await,
        Ok((true, Some(bytes("v1"))))
    );
    assert_eq!(
        handle.cas(bytes("k"), bytes("v1"), bytes("v3")).await,
        Ok((false, Some(bytes("v2"))))
    );
    handle.delete(bytes("k")).await.expect("delete");
    for member in cluster.members.values() {
        assert_eq!(member.get(bytes("k")).await, Ok(None));
    }

    // A follower refuses writes and names the leader; it does not forward.
    let follower = cluster
        .members
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    assert_eq!(
        cluster.members[follower].put(bytes("k"), bytes("x")).await,
        Err(ClientError::NotLeader {
            leader_hint: leader
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_recovers_its_data_and_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.members[&leader]
        .put(bytes("before"), bytes("1"))
        .await
        .expect("put");
    let follower = *cluster
        .members
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    // Make sure the follower has the first write durably before it stops.
    eventually("the follower applied the first write", || async {
        let leader_commit = cluster.members[&leader].status().commit;
        (cluster.members[&follower].status().applied >= leader_commit).then_some(())
    })
    .await;
    cluster.stop(follower).await;

    cluster.members[&leader]
        .put(bytes("during"), bytes("2"))
        .await
        .expect("put with one member down");

    cluster.restart(follower).await;
    let leader = cluster.leader().await;
    let target = cluster.members[&leader].status().commit;
    eventually("the restarted member catches up", || async {
        (cluster.members[&follower].status().applied >= target).then_some(())
    })
    .await;
    let restarted = &cluster.members[&follower];
    assert_eq!(restarted.get(bytes("before")).await, Ok(Some(bytes("1"))));
    assert_eq!(restarted.get(bytes("during")).await, Ok(Some(bytes("2"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_after_the_leader_stops() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.leader().await;
    cluster.members[&old_leader]
        .put(bytes("a"), bytes("1"))
        .await
        .expect("put");
    cluster.stop(old_leader).await;

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    cluster.members[&new_leader]
        .put(bytes("b"), bytes("2"))
        .await
        .expect("put at the new leader");
    for member in cluster.members.values() {
        assert_eq!(member.get(bytes("a")).await, Ok(Some(bytes("1"))));
        assert_eq!(member.get(bytes("b")).await, Ok(Some(bytes("2"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_cannot_share_a_data_directory() {
    let cluster = Cluster::start(1).await;
    let id = NodeId(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let second =
        Member::start_with_listener(config(id, &cluster.dirs[&id], &cluster.addrs), listener);
    assert!(
        matches!(
            second,
            Err(runtime::StartError::Wal(wal::WalError::Locked { .. }))
        ),
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_applied_once() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let handle = &cluster.members[&leader];
    handle.put(bytes("k"), bytes("v1")).await.expect("put");

    let swap = handle.next_request(kv::Command::CompareAndSet {
        key: bytes("k"),
        expected: bytes("v1"),
        new: bytes("v2"),
    });
    let first = handle.submit(swap.clone()).await;
    let retry = handle.submit(swap).await;
    let swapped = kv::Response::CompareAndSet {
        succeeded: true,
        found: Some(bytes("v1")),
    };
    assert_eq!(first, Ok(swapped.clone()));
    // Executed again, the swap would fail (the key holds v2); the session answers the retry
    // with the first outcome instead.
    assert_eq!(retry, Ok(swapped));
    assert_eq!(handle.get(bytes("k")).await, Ok(Some(bytes("v2"))));
}
