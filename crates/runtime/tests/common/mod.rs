//! The loopback cluster harness shared by the runtime's integration tests.
#![allow(dead_code)]

use raft::{NodeId, Role};
use runtime::{Member, MemberConfig, MemberHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

/// How long any condition may take before the test fails (a guard, not a timing assertion).
pub const GUARD: Duration = Duration::from_secs(20);

/// Members in one process, over loopback TCP, each with its own WAL directory.
pub struct Cluster {
    /// Data directories, kept across restarts.
    pub dirs: BTreeMap<NodeId, TempDir>,
    /// Peer addresses, kept across restarts.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// The running members.
    pub members: BTreeMap<NodeId, MemberHandle>,
    /// Applied to every member's configuration, at start and restart.
    tweak: fn(&mut MemberConfig),
}

impl Cluster {
    /// The configuration member `id` (re)starts with.
    pub fn config(&self, id: NodeId, dir: &TempDir) -> MemberConfig {
        let mut config = MemberConfig::new(id, dir.path(), self.addrs.clone(), self.addrs[&id]);
        config.tick = Duration::from_millis(10);
        (self.tweak)(&mut config);
        config
    }
}

impl Cluster {
    /// Starts members `1..=size`, each configuration changed by `tweak`.
    pub async fn start(size: u64, tweak: fn(&mut MemberConfig)) -> Cluster {
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
            tweak,
        };
        for (id, listener) in listeners {
            let dir = tempfile::tempdir().expect("temp dir");
            let member =
                Member::start_with_listener(cluster.config(id, &dir), listener, kv::KvStore::new())
                    .expect("member starts");
            cluster.dirs.insert(id, dir);
            cluster.members.insert(id, member);
        }
        cluster
    }

    /// Restarts a stopped member from its data directory on its old address.
    pub async fn restart(&mut self, id: NodeId) {
        let listener = eventually("the old port is free again", || async {
            TcpListener::bind(self.addrs[&id]).await.ok()
        })
        .await;
        let member = Member::start_with_listener(
            self.config(id, &self.dirs[&id]),
            listener,
            kv::KvStore::new(),
        )
        .expect("member restarts");
        self.members.insert(id, member);
    }

    /// Shuts member `id` down cleanly (its WAL lock released).
    pub async fn stop(&mut self, id: NodeId) {
        let member = self.members.remove(&id).expect("running");
        member.shutdown().await.expect("clean shutdown");
    }

    /// Waits until one running member leads and every running member knows it.
    /// A member other than `leader`.
    pub fn follower_of(&self, leader: NodeId) -> NodeId {
        *self
            .members
            .keys()
            .find(|id| **id != leader)
            .expect("a follower")
    }

    pub async fn leader(&self) -> NodeId {
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
pub async fn eventually<T, F, Fut>(what: &str, mut condition: F) -> T
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
