//! The Rust `etcd-client` crate (etcd's v3 API as Rust users reach it) against real raftkv
//! members: what a Rust application would do works unchanged, through every member.

mod common;

use common::{Cluster, DEADLINE, eventually};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_client_crate_works_against_raftkv() {
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader().await;
    let endpoints: Vec<String> = cluster
        .members
        .iter()
        .map(|member| format!("http://127.0.0.1:{}", member.client_port))
        .collect();

    // One client per member: followers forward writes, reads are linearizable everywhere.
    for (index, endpoint) in endpoints.iter().enumerate() {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let key = format!("crate/{index}");
        let put = client
            .put(key.as_str(), format!("v{index}"), None)
            .await
            .expect("put");
        assert!(put.header().expect("header").revision() > 1);
        let got = client.get(key.as_str(), None).await.expect("get");
        assert_eq!(got.kvs().len(), 1);
        assert_eq!(
            got.kvs()[0].value_str().expect("utf-8"),
            format!("v{index}")
        );
        assert_eq!(got.kvs()[0].version(), 1);
    }

    let mut client = Client::connect(endpoints.clone(), None)
        .await
        .expect("connect to all");
    let prefix = client
        .get("crate/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix get");
    assert_eq!(prefix.count(), 3);
    let keys: Vec<&str> = prefix
        .kvs()
        .iter()
        .map(|kv| kv.key_str().expect("utf-8"))
        .collect();
    assert_eq!(keys, ["crate/0", "crate/1", "crate/2"]);

    // Compare-and-set through Txn: the first succeeds, the second sees the new value.
    let swap = |expected: &str, new: &str| {
        Txn::new()
            .when([Compare::value("crate/0", CompareOp::Equal, expected)])
            .and_then([TxnOp::put("crate/0", new, None)])
            .or_else([TxnOp::get("crate/0", None)])
    };
    let first = client.txn(swap("v0", "w0")).await.expect("txn");
    assert!(first.succeeded());
    let second = client.txn(swap("v0", "x0")).await.expect("txn");
    assert!(!second.succeeded());

    // Errors arrive as etcd's: an empty key is refused with etcd's exact message.
    let error = client.put("", "x", None).await.expect_err("empty key");
    assert!(
        error
            .to_string()
            .contains("etcdserver: key is not provided"),
        "{error}"
    );

    // Cluster and maintenance calls.
    let members = eventually("three published members", DEADLINE, || {
        let mut client = client.clone();
        async move {
            let list = client.member_list().await.map_err(|e| e.to_string())?;
            let published = list
                .members()
                .iter()
                .filter(|member| !member.client_urls().is_empty())
                .count();
            if published == 3 {
                Ok(list)
            } else {
                Err(format!("{} published", published))
            }
        }
    })
    .await;
    assert_eq!(members.members().len(), 3);
    let status = client.status().await.expect("status");
    assert_ne!(status.leader(), 0);
    // Bootstrap, leader no-op, three publishes and four writes at least.
    assert!(status.raft_index() >= 9, "{}", status.raft_index());
    assert!(
        status.raft_applied_index() >= 9,
        "{}",
        status.raft_applied_index()
    );

    // Deletion with a prefix counts what it removed.
    let deleted = client
        .delete(
            "crate/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete");
    assert_eq!(deleted.deleted(), 3);
}
