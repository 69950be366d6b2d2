//! Three members in one process, over loopback TCP and real WAL directories.

mod common;

use bytes::Bytes;
use common::{Cluster, eventually};
use node::RequestError;
use raft::{NodeId, ProposeError};
use runtime::{ClientError, Member};
use tokio::net::TcpListener;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_serve_linearizable_reads_everywhere() {
    let cluster = Cluster::start(3, |_| {}).await;
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
    let follower = &cluster.follower_of(leader);
    assert_eq!(
        cluster.members[follower].put(bytes("k"), bytes("x")).await,
        Err(ClientError::Failed(RequestError::Refused(
            ProposeError::NotLeader {
                leader_hint: leader
            }
        )))
    );
}

/// `propose_anywhere` on a follower hands the command to the leader over the peer connection
/// and answers once the follower applied it: the answer is the state machine's, the write is
/// visible everywhere, and a retry of the same command is answered from its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_proposals_to_the_leader_and_answers_from_its_own_apply() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    let handle = &cluster.members[&follower];
    let mut requests = Vec::new();
    for i in 0..50 {
        requests.push(handle.next_request(kv::Command::Put {
            key: bytes(&format!("k{i}")),
            value: bytes(&format!("v{i}")),
        }));
    }
    // Many at once, so several travel in one message.
    let answers = futures_util::future::join_all(
        requests
            .iter()
            .map(|request| handle.propose_anywhere(request.encode())),
    )
    .await;
    for answer in answers {
        assert_eq!(answer, Ok(kv::Response::Done));
    }
    for member in cluster.members.values() {
        assert_eq!(member.get(bytes("k49")).await, Ok(Some(bytes("v49"))));
    }
    // The same command again is recognised by its session, not applied twice.
    assert_eq!(
        handle.propose_anywhere(requests[0].encode()).await,
        Ok(kv::Response::StaleSequence)
    );
    // On the leader it is an ordinary proposal.
    let leader_handle = &cluster.members[&leader];
    let request = leader_handle.next_request(kv::Command::Put {
        key: bytes("on-leader"),
        value: bytes("yes"),
    });
    assert_eq!(
        leader_handle.propose_anywhere(request.encode()).await,
        Ok(kv::Response::Done)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_recovers_its_data_and_catches_up() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    cluster.members[&leader]
        .put(bytes("before"), bytes("1"))
        .await
        .expect("put");
    let follower = cluster.follower_of(leader);
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
    let mut cluster = Cluster::start(3, |_| {}).await;
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
    let cluster = Cluster::start(1, |_| {}).await;
    let id = NodeId(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let second = Member::start_with_listener(
        cluster.config(id, &cluster.dirs[&id]),
        listener,
        kv::KvStore::new(),
    );
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
    let cluster = Cluster::start(3, |_| {}).await;
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
