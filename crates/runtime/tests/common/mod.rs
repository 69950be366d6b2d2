//! The loopback cluster harness shared by the runtime's integration tests: members running the
//! production state machine ([`EtcdMachine`]), and a client session on each to write and read
//! keys with.
#![allow(dead_code)]

use bytes::Bytes;
use kv::mvcc::{
    Compare, CompareResult, DeleteRangeRequest, MvccCommand, MvccRequest, MvccResponse, PutRequest,
    RangeRequest, RequestOp, ResponseOp, TxnRequest,
};
use machine::{EtcdMachine, MachineCommand, MachineQuery, MachineResponse};
use raft::{NodeId, Role};
use runtime::{ClientError, Member, MemberConfig, MemberFailure, MemberHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The running members, each with a client session.
    pub members: BTreeMap<NodeId, Client>,
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
                Member::start_with_listener(cluster.config(id, &dir), listener, EtcdMachine::new())
                    .expect("member starts");
            cluster.dirs.insert(id, dir);
            cluster.members.insert(id, Client::new(member));
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
            EtcdMachine::new(),
        )
        .expect("member restarts");
        self.members.insert(id, Client::new(member));
    }

    /// Shuts member `id` down cleanly (its WAL lock released).
    pub async fn stop(&mut self, id: NodeId) {
        let member = self.members.remove(&id).expect("running");
        member.shutdown().await.expect("clean shutdown");
    }

    /// A member other than `leader`.
    pub fn follower_of(&self, leader: NodeId) -> NodeId {
        *self
            .members
            .keys()
            .find(|id| **id != leader)
            .expect("a follower")
    }

    /// Waits until one running member leads and every running member knows it.
    pub async fn leader(&self) -> NodeId {
        eventually("a leader known to all", || async {
            let statuses: Vec<_> = self
                .members
                .values()
                .map(|member| member.status())
                .collect();
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

/// A running member's handle with a client session of its own: a non-zero client id no other
/// session in the process has, and a sequence that grows by one per new command, so that a
/// retried command is applied at most once. Issue one write at a time per client: the session
/// refuses a sequence older than the last one applied.
pub struct Client {
    handle: MemberHandle<EtcdMachine>,
    client_id: u64,
    sequence: AtomicU64,
}

impl Deref for Client {
    type Target = MemberHandle<EtcdMachine>;

    fn deref(&self) -> &MemberHandle<EtcdMachine> {
        &self.handle
    }
}

impl Client {
    /// A new session on `handle`.
    pub fn new(handle: MemberHandle<EtcdMachine>) -> Client {
        static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);
        Client {
            handle,
            client_id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            sequence: AtomicU64::new(0),
        }
    }

    /// Stops the member; see [`MemberHandle::shutdown`].
    pub async fn shutdown(self) -> Result<(), MemberFailure> {
        self.handle.shutdown().await
    }

    /// The next command of this session (a retry must reuse the returned command).
    pub fn next_command(&self, request: impl Into<MvccRequest>) -> MvccCommand {
        MvccCommand {
            client_id: self.client_id,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            request: request.into(),
        }
    }

    /// Proposes `command` through the log and waits for the state machine's answer.
    pub async fn submit(&self, command: &MvccCommand) -> Result<MachineResponse, ClientError> {
        self.propose(encode(command)).await
    }

    /// Proposes the session's next command and returns the KV answer; any other answer (an
    /// error of the state machine, a stale sequence) fails the test.
    async fn write(&self, request: impl Into<MvccRequest>) -> Result<MvccResponse, ClientError> {
        match self.submit(&self.next_command(request)).await? {
            MachineResponse::Kv(Ok(response)) => Ok(response),
            other => panic!("member {} answered a write with {other:?}", self.id()),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: Bytes, value: Bytes) -> Result<(), ClientError> {
        match self.write(PutRequest::new(key, value)).await? {
            MvccResponse::Put(_) => Ok(()),
            other => panic!("a put answered {other:?}"),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: Bytes) -> Result<(), ClientError> {
        match self
            .write(DeleteRangeRequest::new(key, Bytes::new()))
            .await?
        {
            MvccResponse::DeleteRange(_) => Ok(()),
            other => panic!("a delete answered {other:?}"),
        }
    }

    /// Sets `key` to `new` if it holds `expected` (a transaction, see [`cas_request`]).
    /// Returns whether it did and the value found.
    pub async fn cas(
        &self,
        key: Bytes,
        expected: Bytes,
        new: Bytes,
    ) -> Result<(bool, Option<Bytes>), ClientError> {
        let response = self.write(cas_request(key, expected, new)).await?;
        Ok(cas_outcome(&MachineResponse::Kv(Ok(response))))
    }

    /// A linearizable read of `key` (ReadIndex; followers ask the leader to confirm).
    pub async fn get(&self, key: Bytes) -> Result<Option<Bytes>, ClientError> {
        let query = MachineQuery::Range(RangeRequest::new(key, Bytes::new()));
        match self.read(query).await? {
            MachineResponse::Kv(Ok(MvccResponse::Range(range))) => {
                Ok(range.kvs.first().map(|kv| kv.value.clone()))
            }
            other => panic!("a read answered {other:?}"),
        }
    }
}

/// The bytes a member proposes for `command`.
pub fn encode(command: &MvccCommand) -> Bytes {
    MachineCommand::Kv(command.clone()).encode()
}

/// Compare-and-set as etcd clients write it: if `key`'s value is `expected`, put `new` and
/// return the previous value; otherwise read the key. An absent key never matches.
pub fn cas_request(key: Bytes, expected: Bytes, new: Bytes) -> TxnRequest {
    let put = PutRequest {
        prev_kv: true,
        ..PutRequest::new(key.clone(), new)
    };
    TxnRequest {
        compare: vec![Compare::value(key.clone(), CompareResult::Equal, expected)],
        success: vec![RequestOp::Put(put)],
        failure: vec![RequestOp::Range(RangeRequest::new(key, Bytes::new()))],
    }
}

/// What a [`cas_request`] answered: whether it swapped, and the value it found.
pub fn cas_outcome(response: &MachineResponse) -> (bool, Option<Bytes>) {
    let MachineResponse::Kv(Ok(MvccResponse::Txn(txn))) = response else {
        panic!("a compare-and-set answered {response:?}");
    };
    let found = match txn.responses.as_slice() {
        [ResponseOp::Put(put)] if txn.succeeded => put.prev_kv.as_ref().map(|kv| kv.value.clone()),
        [ResponseOp::Range(range)] if !txn.succeeded => {
            range.kvs.first().map(|kv| kv.value.clone())
        }
        _ => panic!("a compare-and-set answered {txn:?}"),
    };
    (txn.succeeded, found)
}
