//! Three members in one process, over loopback TCP and real WAL directories.

mod common;

use bytes::Bytes;
use common::{Cluster, cas_outcome, cas_request, encode, eventually};
use kv::mvcc::{MvccError, MvccResponse, PutRequest};
use machine::{EtcdMachine, MachineResponse};
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

/// The revision a put was applied at, from its answer.
fn put_revision(answer: &Result<MachineResponse, ClientError>) -> i64 {
    match answer {
        Ok(MachineResponse::Kv(Ok(MvccResponse::Put(put)))) => put.header.revision,
        other => panic!("a put answered {other:?}"),
    }
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
    let mut commands = Vec::new();
    for i in 0..50 {
        let put = PutRequest::new(bytes(&format!("k{i}")), bytes(&format!("v{i}")));
        commands.push(handle.next_command(put));
    }
    // Many at once, so several travel in one message.
    let answers = futures_util::future::join_all(
        commands
            .iter()
            .map(|command| handle.propose_anywhere(encode(command))),
    )
    .await;
    // Each applied once, in the order sent (its session would refuse a later one applied
    // first): the puts took revisions 2 to 51 of the fresh keyspace.
    let revisions: Vec<i64> = answers.iter().map(put_revision).collect();
    assert_eq!(revisions, (2..=51).collect::<Vec<i64>>());
    for member in cluster.members.values() {
        assert_eq!(member.get(bytes("k49")).await, Ok(Some(bytes("v49"))));
    }
    // The same command again is recognised by its session, not applied twice.
    assert_eq!(
        handle.propose_anywhere(encode(&commands[0])).await,
        Ok(MachineResponse::Kv(Err(MvccError::StaleSequence)))
    );
    // On the leader it is an ordinary proposal.
    let leader_handle = &cluster.members[&leader];
    let command = leader_handle.next_command(PutRequest::new(bytes("on-leader"), bytes("yes")));
    let answer = leader_handle.propose_anywhere(encode(&command)).await;
    assert_eq!(put_revision(&answer), 52);
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
        EtcdMachine::new(),
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

    let swap = handle.next_command(cas_request(bytes("k"), bytes("v1"), bytes("v2")));
    let first = handle.submit(&swap).await.expect("swap");
    let retry = handle.submit(&swap).await.expect("retry");
    assert_eq!(cas_outcome(&first), (true, Some(bytes("v1"))));
    // Executed again, the swap would fail (the key holds v2) at a new revision; the session
    // answers the retry with the first outcome instead, its revision included.
    assert_eq!(retry, first);
    assert_eq!(handle.get(bytes("k")).await, Ok(Some(bytes("v2"))));
}
