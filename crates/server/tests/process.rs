//! End-to-end tests against real `raftkv serve` processes on loopback: the paths a user's
//! requests take (any member, forwarding, linearizable and serializable reads), crashes and
//! restarts, idempotent retries, etcd's limits and errors, and the start-up refusals.

mod common;

use bytes::Bytes;
use common::{Cluster, DEADLINE, Member, eventually, get, put_acknowledged, wait_with_output};
use etcdpb::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request as Op;
use pb::response_op::Response as OpResponse;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn put_request(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
        ..Default::default()
    }
}

fn with_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("raftkv-request-id", id.parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_writes_through_every_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;

    // A write through each member (two of them followers, which forward to the leader) is
    // visible at once to a linearizable read on another member.
    for index in 0..3 {
        let key = format!("k{index}");
        let value = format!("v{index}");
        let mut writer = cluster.members[index].kv();
        writer
            .put(put_request(&key, &value))
            .await
            .unwrap_or_else(|status| panic!("put via m{}: {status}", index + 1));
        for reader in 0..3 {
            let mut client = cluster.members[reader].kv();
            let seen = get(&mut client, &key, false)
                .await
                .unwrap_or_else(|status| panic!("get via m{}: {status}", reader + 1));
            assert_eq!(
                seen.as_deref(),
                Some(value.as_bytes()),
                "linearizable read of {key} via m{} after a put via m{} (leader m{})",
                reader + 1,
                index + 1,
                leader + 1
            );
        }
    }

    // Prefix read.
    let follower = (leader + 1) % 3;
    let mut client = cluster.members[follower].kv();
    let response = client
        .range(pb::RangeRequest {
            key: Bytes::from_static(b"k"),
            range_end: Bytes::from_static(b"l"),
            ..Default::default()
        })
        .await
        .expect("prefix range")
        .into_inner();
    let keys: Vec<&[u8]> = response.kvs.iter().map(|kv| &kv.key[..]).collect();
    assert_eq!(keys, vec![&b"k0"[..], b"k1", b"k2"]);
    assert_eq!(response.count, 3);

    // Delete through a follower.
    let deleted = client
        .delete_range(pb::DeleteRangeRequest {
            key: Bytes::from_static(b"k0"),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted, 1);
    let mut other = cluster.members[(follower + 1) % 3].kv();
    assert_eq!(get(&mut other, "k0", false).await.expect("get"), None);

    // Compare-and-set: succeeds when the value matches, then fails and runs the other branch.
    client.put(put_request("cas", "1")).await.expect("put cas");
    let cas = |expected: &str, new: &str| pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: Bytes::from_static(b"cas"),
            target_union: Some(TargetUnion::Value(expected.to_owned().into())),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(Op::RequestPut(put_request("cas", new))),
        }],
        failure: vec![pb::RequestOp {
            request: Some(Op::RequestRange(pb::RangeRequest {
                key: Bytes::from_static(b"cas"),
                ..Default::default()
            })),
        }],
    };
    let first = client.txn(cas("1", "2")).await.expect("txn").into_inner();
    assert!(first.succeeded, "value was 1: compare must succeed");
    assert!(matches!(
        first.responses.first().and_then(|op| op.response.as_ref()),
        Some(OpResponse::ResponsePut(_))
    ));
    let second = client.txn(cas("1", "3")).await.expect("txn").into_inner();
    assert!(!second.succeeded, "value is 2 now: compare must fail");
    match second.responses.first().and_then(|op| op.response.as_ref()) {
        Some(OpResponse::ResponseRange(range)) => {
            assert_eq!(&range.kvs[0].value[..], b"2");
        }
        other => panic!("failure branch answered {other:?}"),
    }

    // Serializable read on every member: local, so poll until each has applied the write.
    for index in 0..3 {
        let client = cluster.members[index].kv();
        eventually("serializable read sees cas=2", DEADLINE, || {
            let mut client = client.clone();
            async move {
                match get(&mut client, "cas", true).await {
                    Ok(Some(value)) if value == b"2" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_crash_fails_over_and_restarted_member_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader().await;
    let mut client = cluster.members[old_leader].kv();
    put_acknowledged(&mut client, "x", "1").await;

    cluster.members[old_leader].kill();
    let killed_at = Instant::now();
    let survivor = (old_leader + 1) % 3;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader);
    let mut client = cluster.members[survivor].kv();
    let put = put_acknowledged(&mut client, "x", "2").await;
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: new leader m{} and a write through m{} {failover:?} after kill -9",
        new_leader + 1,
        survivor + 1
    );
    // A few election timeouts (500 ms each), with slack for a loaded machine.
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    assert!(put.header.expect("header").revision > 0);

    cluster.members[old_leader].start();
    let restarted = cluster.members[old_leader].kv();
    eventually("restarted member catches up", DEADLINE, || {
        let mut restarted = restarted.clone();
        async move {
            match get(&mut restarted, "x", true).await {
                Ok(Some(value)) if value == b"2" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    cluster.wait_for_leader().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_of_every_member_keeps_acknowledged_writes() {
    let mut cluster = Cluster::start(3).await;
    cluster.wait_for_leader().await;
    const KEYS: usize = 200;
    for index in 0..KEYS {
        let mut client = cluster.members[index % 3].kv();
        put_acknowledged(
            &mut client,
            &format!("ack/{index:03}"),
            &format!("value-{index}"),
        )
        .await;
    }

    cluster.kill_all();
    for member in &mut cluster.members {
        member.start();
    }
    let leader = cluster.wait_for_leader().await;

    for index in 0..3 {
        let client = cluster.members[index].kv();
        let response = eventually("linearizable range after restart", DEADLINE, || {
            let mut client = client.clone();
            async move {
                client
                    .range(pb::RangeRequest {
                        key: Bytes::from_static(b"ack/"),
                        range_end: Bytes::from_static(b"ack0"),
                        ..Default::default()
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| status.to_string())
            }
        })
        .await;
        assert_eq!(
            response.kvs.len(),
            KEYS,
            "m{} (leader m{}) lost acknowledged keys",
            index + 1,
            leader + 1
        );
        for (at, kv) in response.kvs.iter().enumerate() {
            assert_eq!(&kv.key[..], format!("ack/{at:03}").as_bytes());
            assert_eq!(&kv.value[..], format!("value-{at}").as_bytes());
        }
    }
}

/// Snapshots carry the value file as their value section: a member restarted behind the
/// leader's snapshot installs one, and every member restarts from its own, with the values of
/// every retained revision intact (long values, which live in the value file; overwritten and
/// compacted ones, which leave garbage in it; short ones, kept inline).
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_with_values_install_and_restart() {
    let mut cluster = Cluster::start_with(
        3,
        &["--snapshot-count", "25", "--snapshot-log-percent", "0"],
    )
    .await;
    let leader = cluster.wait_for_leader().await;
    let lagging = (leader + 1) % 3;
    cluster.members[lagging].kill();
    let long = |round: usize, key: usize| format!("{round}-{key}-{}", "v".repeat(200));
    let mut client = cluster.members[leader].kv();
    let mut revision = 0;
    for round in 0..3 {
        for key in 0..40usize {
            let value = if key.is_multiple_of(5) {
                format!("short-{round}")
            } else {
                long(round, key)
            };
            let put = put_acknowledged(&mut client, &format!("k{key:02}"), &value).await;
            revision = put.header.expect("header").revision;
        }
        if round == 1 {
            // The first two rounds' values become garbage in the value file.
            client
                .compact(pb::CompactionRequest {
                    revision,
                    physical: true,
                })
                .await
                .expect("compact");
        }
    }
    let expect = |key: usize| {
        if key.is_multiple_of(5) {
            "short-2".to_owned()
        } else {
            long(2, key)
        }
        .into_bytes()
    };
    let check = |client: pb::kv_client::KvClient<tonic::transport::Channel>, serializable: bool| async move {
        eventually("every value", DEADLINE, || {
            let mut client = client.clone();
            async move {
                for key in 0..40 {
                    match get(&mut client, &format!("k{key:02}"), serializable).await {
                        Ok(Some(value)) if value == expect(key) => {}
                        other => return Err(format!("k{key:02}: {other:?}")),
                    }
                }
                Ok(())
            }
        })
        .await;
    };

    // The lagging member is behind the leader's compacted log: it gets the snapshot.
    cluster.members[lagging].start();
    check(cluster.members[lagging].kv(), true).await;
    let log = std::fs::read_to_string(cluster.members[lagging].log_path()).unwrap_or_default();
    assert!(
        log.contains("installed a leader's snapshot"),
        "m{} caught up without a snapshot: {}",
        lagging + 1,
        cluster.members[lagging].log_tail(20)
    );

    // Every member restarts from its own snapshot file and the log after it.
    cluster.kill_all();
    for member in &mut cluster.members {
        member.start();
    }
    cluster.wait_for_leader().await;
    for member in 0..3 {
        check(cluster.members[member].kv(), false).await;
        check(cluster.members[member].kv(), true).await;
    }
    // History older than the compaction is gone on every member alike; what is kept reads.
    let mut client = cluster.members[lagging].kv();
    let old = client
        .range(pb::RangeRequest {
            key: Bytes::from_static(b"k01"),
            revision: revision - 1,
            ..Default::default()
        })
        .await
        .expect("range at a kept revision")
        .into_inner();
    assert_eq!(old.kvs.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_makes_a_put_idempotent() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let id = common::unique_token("idempotent");

    let mut client = cluster.members[leader].kv();
    let first = client
        .put(with_id(put_request("once", "v1"), &id))
        .await
        .expect("first put")
        .into_inner();
    let revision = first.header.expect("header").revision;

    // The same request again, on the same member and through a follower: both answer with
    // the first outcome and apply nothing.
    for index in [leader, follower] {
        let mut client = cluster.members[index].kv();
        let again = client
            .put(with_id(put_request("once", "v1"), &id))
            .await
            .expect("repeated put")
            .into_inner();
        assert_eq!(
            again.header.expect("header").revision,
            revision,
            "repeat via m{}",
            index + 1
        );
    }

    let mut reader = cluster.members[follower].kv();
    let other = reader
        .range(pb::RangeRequest {
            key: Bytes::from_static(b"some-other-key"),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(
        other.header.expect("header").revision,
        revision,
        "the store revision moved"
    );
    let once = reader
        .range(pb::RangeRequest {
            key: Bytes::from_static(b"once"),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(once.kvs[0].version, 1, "applied more than once");
    assert_eq!(once.kvs[0].mod_revision, revision);
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_limits_and_errors() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    for index in [leader, (leader + 1) % 3] {
        let mut client = cluster.members[index].kv();
        let big = pb::PutRequest {
            key: Bytes::from_static(b"big"),
            value: Bytes::from(vec![b'x'; 1_600_000]),
            ..Default::default()
        };
        let status = client.put(big).await.expect_err("1.6 MB put must fail");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert_eq!(status.message(), "etcdserver: request is too large");

        let status = client
            .put(put_request("", "v"))
            .await
            .expect_err("empty key must fail");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert_eq!(status.message(), "etcdserver: key is not provided");

        let status = client
            .range(pb::RangeRequest::default())
            .await
            .expect_err("empty key range must fail");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert_eq!(status.message(), "etcdserver: key is not provided");
    }
}

/// The writes a follower forwards take turns on its sessions instead of opening one each: a
/// run of writes through a follower grows the replicated size estimate (which counts every
/// session record, 64 bytes plus its answer) by about what the same writes through the leader
/// (no session) do, not by a record more per write.
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_writes_reuse_their_sessions() {
    const WRITES: usize = 100;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let size_on = |index: usize| {
        let member = &cluster.members[index];
        async move {
            let status = member.status().await.expect("status");
            (status.db_size_in_use, status.raft_applied_index)
        }
    };

    // A member answers a write once it has applied it, so its own figure includes the run.
    let (before, _) = size_on(leader).await;
    let mut through_leader = cluster.members[leader].kv();
    for i in 0..WRITES {
        through_leader
            .put(put_request(&format!("l{i:03}"), "v"))
            .await
            .expect("put through the leader");
    }
    let (after, applied) = size_on(leader).await;
    let leader_growth = after - before;

    let follower_member = &cluster.members[follower];
    let before = eventually(
        "the follower applies the leader's run",
        DEADLINE,
        || async {
            let status = follower_member.status().await?;
            if status.raft_applied_index >= applied {
                Ok(status.db_size_in_use)
            } else {
                Err(format!("applied {} < {applied}", status.raft_applied_index))
            }
        },
    )
    .await;
    let mut through_follower = follower_member.kv();
    for i in 0..WRITES {
        through_follower
            .put(put_request(&format!("f{i:03}"), "v"))
            .await
            .expect("put through a follower");
    }
    let (after, _) = size_on(follower).await;
    let follower_growth = after - before;
    assert!(
        follower_growth.abs_diff(leader_growth) < 4 * 64,
        "{WRITES} forwarded writes grew the size by {follower_growth} bytes, the same writes \
         through the leader by {leader_growth}: more than a few session records"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_agrees_on_leader_and_applied_index() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let before = cluster.members[leader].status().await.expect("status");
    let mut client = cluster.members[(leader + 2) % 3].kv();
    client.put(put_request("s", "1")).await.expect("put");

    // The write was acknowledged, so the leader applied it: at least one entry past the
    // commit index it had before.
    let after = cluster.members[leader].status().await.expect("status");
    assert!(
        after.raft_applied_index > before.raft_index,
        "leader applied {} but had committed {} before the write",
        after.raft_applied_index,
        before.raft_index
    );
    let target = after.raft_applied_index;
    let leader_id = cluster.member_id(leader).await;
    for index in 0..3 {
        let member = &cluster.members[index];
        let status = eventually("member applies the write", DEADLINE, || async {
            let status = member.status().await?;
            if status.raft_applied_index >= target {
                Ok(status)
            } else {
                Err(format!("applied {} < {target}", status.raft_applied_index))
            }
        })
        .await;
        assert_eq!(
            status.leader,
            leader_id,
            "m{} names another leader",
            index + 1
        );
        assert_eq!(status.raft_term, after.raft_term, "m{} term", index + 1);
        assert!(status.raft_index >= status.raft_applied_index);
        assert!(status.errors.is_empty(), "{:?}", status.errors);
        assert_eq!(status.version, "3.4.23");
    }
}

/// Starts `raftkv serve` with `args` and returns its output once it exits (within the deadline).
async fn run_serve(args: &[String]) -> std::process::Output {
    let child = Command::new(common::raftkv())
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raftkv serve");
    wait_with_output(child, DEADLINE).await
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_another_members_data_directory() {
    // Member a of a one-member cluster creates (and stamps) its data directory.
    let ports = common::free_ports(4);
    let mut a = Member::new("a", ports[0], ports[1]);
    a.configure(
        &format!("a={}", a.peer_url()),
        &common::unique_token("dd"),
        &[],
    );
    a.start();
    eventually("member a answers", DEADLINE, || async { a.status().await }).await;
    // How it stops does not matter here (`sigterm_stops_a_member_cleanly` checks that); it
    // only has to release the directory.
    a.stop().await;

    // Member b must not run on a's directory.
    let b_peer = format!("http://127.0.0.1:{}", ports[3]);
    let output = run_serve(&[
        "--name".into(),
        "b".into(),
        "--data-dir".into(),
        a.data_dir().display().to_string(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{}", ports[2]),
        "--listen-peer-urls".into(),
        b_peer.clone(),
        "--initial-cluster".into(),
        format!("b={b_peer}"),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "b started on a's data directory");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains("data directory")
            && lines[0].contains(&a.data_dir().display().to_string()),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_name_missing_from_initial_cluster() {
    let ports = common::free_ports(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_serve(&[
        "--name".into(),
        "d".into(),
        "--data-dir".into(),
        dir.path().join("d").display().to_string(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{}", ports[0]),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{}", ports[1]),
        "--initial-cluster".into(),
        format!("a=http://127.0.0.1:{},b=http://127.0.0.1:1", ports[1]),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started although not in --initial-cluster"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains("--initial-cluster") && lines[0].contains("'d'"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("d").exists(),
        "a refused member must not create its data directory"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_member_cleanly() {
    // SIGTERM at several moments of a young member's life: right after it answers Status
    // (often before it has elected itself and published its attributes), and later.
    for delay_ms in [0u64, 0, 0, 100, 300, 700, 1500] {
        let ports = common::free_ports(2);
        let mut member = Member::new("solo", ports[0], ports[1]);
        member.configure(
            &format!("solo={}", member.peer_url()),
            &common::unique_token("sigterm"),
            &[],
        );
        member.start();
        eventually("member answers Status", DEADLINE, || async {
            member.status().await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let stopped = member.stop().await;
        assert!(
            stopped.success(),
            "SIGTERM {delay_ms} ms after the member answered: exit {stopped}; its log:\n{}",
            member.log_tail(30)
        );
    }
}

/// Runs `raftkv ARGS` (a client subcommand) and returns (success, stdout, stderr).
async fn raftkv_client(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(common::raftkv())
        .args(args)
        .env_remove("RAFTKV_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raftkv");
    let output = wait_with_output(child, DEADLINE).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn raftkv_client_subcommands() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let endpoints = cluster.endpoints();
    let follower = format!(
        "127.0.0.1:{}",
        cluster.members[(leader + 1) % 3].client_port
    );
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        raftkv_client(&args).await
    };
    let args = |list: &[&str], endpoints: &str| {
        let mut args: Vec<String> = list.iter().map(|arg| (*arg).to_owned()).collect();
        args.push("--endpoints".into());
        args.push(endpoints.to_owned());
        args
    };

    let (ok, out, err) = run(args(&["put", "cli/a", "1"], &follower)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "OK\n");
    let (ok, out, _) = run(args(&["put", "cli/b", "-2"], &endpoints)).await;
    assert!(ok);
    assert_eq!(out, "OK\n");
    let (ok, out, _) = run(args(&["get", "cli/", "--prefix"], &endpoints)).await;
    assert!(ok);
    assert_eq!(out, "cli/a\n1\ncli/b\n-2\n");
    let (ok, out, _) = run(args(
        &["get", "cli/", "--prefix", "--keys-only", "--limit", "1"],
        &follower,
    ))
    .await;
    assert!(ok);
    assert_eq!(out, "cli/a\n\n");
    let (ok, out, _) = run(args(&["get", "cli/a", "--consistency", "s"], &follower)).await;
    assert!(ok);
    // Serializable: the follower may not have applied the put yet, but never shows garbage.
    assert!(out == "cli/a\n1\n" || out.is_empty(), "{out}");
    let (ok, out, _) = run(args(&["del", "cli/", "--prefix"], &endpoints)).await;
    assert!(ok);
    assert_eq!(out, "2\n");

    let (ok, out, err) = run(args(&["members"], &endpoints)).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    for member in &cluster.members {
        assert!(
            out.contains(&format!(
                ", {}, {}, false",
                member.peer_url(),
                member.client_url()
            )),
            "{out}"
        );
    }

    // status asks every member, found through the member list of the one endpoint given.
    let (ok, out, err) = run(args(&["status"], &follower)).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("ENDPOINT,"), "{out}");
    assert_eq!(
        lines.iter().filter(|line| line.contains(", true,")).count(),
        1,
        "one leader:\n{out}"
    );

    // Errors: etcd's message on stderr, exit code 1.
    let (ok, _, err) = run(args(&["put", "", "v"], &endpoints)).await;
    assert!(!ok);
    assert_eq!(err.trim(), "Error: etcdserver: key is not provided");

    // A dead member: status names it and fails; reads and writes use the other endpoints.
    let dead = (leader + 2) % 3;
    cluster.members[dead].kill();
    let (ok, out, err) = run(args(&["status"], &endpoints)).await;
    assert!(!ok);
    assert!(out.contains("unreachable"), "{out}");
    assert!(err.contains("1 of 3 members unreachable"), "{err}");
    let first_dead = format!(
        "127.0.0.1:{},{endpoints}",
        cluster.members[dead].client_port
    );
    let (ok, out, err) = run(args(&["put", "cli/c", "3"], &first_dead)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "OK\n");
    let (ok, out, err) = run(args(&["get", "cli/c"], &first_dead)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "cli/c\n3\n");
}

/// As etcd: a learner that has not caught up (here: one that never started) cannot be
/// promoted, and can be removed again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_learner_is_not_promoted() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let peer = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    let added = cluster.members[follower]
        .cluster()
        .member_add(pb::MemberAddRequest {
            peer_ur_ls: vec![peer],
            is_learner: true,
        })
        .await
        .expect("member add")
        .into_inner();
    let learner = added.member.expect("the new member").id;
    // Through a follower (forwarded to the leader) and on the leader itself.
    for index in [follower, leader] {
        let refused = cluster.members[index]
            .cluster()
            .member_promote(pb::MemberPromoteRequest { id: learner })
            .await
            .expect_err("a learner with an empty log must not be promoted");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            refused.message(),
            "etcdserver: can only promote a learner member which is in sync with leader"
        );
    }
    let removed = cluster.members[leader]
        .cluster()
        .member_remove(pb::MemberRemoveRequest { id: learner })
        .await
        .expect("member remove")
        .into_inner();
    assert_eq!(removed.members.len(), 3);
    assert!(removed.members.iter().all(|member| member.id != learner));
}
