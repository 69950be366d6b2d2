//! etcd's own command-line client, etcdctl 3.4 (Debian's `etcd-client` package), against a
//! real three-process raftkv cluster: the compatibility that matters is the one users see.
//!
//! These tests fail (they do not skip) when etcdctl is missing, so CI cannot pass without
//! having checked compatibility.

mod common;

use common::{Cluster, DEADLINE, Member, eventually};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// etcdctl on PATH, or a failure that says how to get it.
fn etcdctl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcdctl"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcdctl is not on PATH: install the `etcd-client` package \
                 (apt-get install etcd-client; CI installs it) to run the etcdctl compatibility tests"
            )
        })
}

/// What one etcdctl run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok,
            "etcdctl {what} failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs `etcdctl --endpoints=ENDPOINTS ARGS` (stdin optional) with a deadline.
async fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(etcdctl_path());
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("etcdctl {args:?} did not finish within {DEADLINE:?}"))
        .expect("etcdctl output");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn one_endpoint(cluster: &Cluster, index: usize) -> String {
    format!("127.0.0.1:{}", cluster.members[index].client_port)
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_key_value_commands() {
    etcdctl_path();
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    // Through a follower, so forwarding is exercised as well.
    let ep = one_endpoint(&cluster, (leader + 1) % 3);

    assert_eq!(
        etcdctl(&ep, &["put", "foo", "bar"], None)
            .await
            .expect_ok("put"),
        "OK\n"
    );
    assert_eq!(
        etcdctl(&ep, &["get", "foo"], None).await.expect_ok("get"),
        "foo\nbar\n"
    );
    let all = cluster.endpoints();
    assert_eq!(
        etcdctl(&all, &["put", "fa", "1"], None)
            .await
            .expect_ok("put"),
        "OK\n"
    );
    assert_eq!(
        etcdctl(&all, &["put", "fz", "2"], None)
            .await
            .expect_ok("put"),
        "OK\n"
    );
    assert_eq!(
        etcdctl(&all, &["put", "g", "3"], None)
            .await
            .expect_ok("put"),
        "OK\n"
    );
    assert_eq!(
        etcdctl(&all, &["get", "--prefix", "f"], None)
            .await
            .expect_ok("get --prefix"),
        "fa\n1\nfoo\nbar\nfz\n2\n"
    );
    assert_eq!(
        etcdctl(&ep, &["get", "--prefix", "f", "--keys-only"], None)
            .await
            .expect_ok("get --keys-only"),
        "fa\n\nfoo\n\nfz\n\n"
    );
    assert_eq!(
        etcdctl(&ep, &["get", "foo", "--consistency=s"], None)
            .await
            .expect_ok("serializable get")
            .lines()
            .next(),
        Some("foo")
    );
    assert_eq!(
        etcdctl(&ep, &["del", "--prefix", "f"], None)
            .await
            .expect_ok("del"),
        "3\n"
    );
    assert_eq!(
        etcdctl(&ep, &["get", "--prefix", "f"], None)
            .await
            .expect_ok("get"),
        ""
    );
    assert_eq!(
        etcdctl(&ep, &["get", "g"], None).await.expect_ok("get"),
        "g\n3\n"
    );

    // txn: compares, blank line, success ops, blank line, failure ops, blank line.
    let txn = "mod(\"k\") > \"0\"\n\nput k v2\nget k\n\nput k v1\n\n";
    assert_eq!(
        etcdctl(&ep, &["txn"], Some(txn)).await.expect_ok("txn"),
        "FAILURE\n\nOK\n",
        "k does not exist yet: the failure branch runs"
    );
    assert_eq!(
        etcdctl(&ep, &["txn"], Some(txn)).await.expect_ok("txn"),
        "SUCCESS\n\nOK\n\nk\nv2\n",
        "k exists now: the success branch runs"
    );
    let txn = "val(\"k\") = \"v2\"\n\ndel k\n\n\n";
    assert_eq!(
        etcdctl(&ep, &["txn"], Some(txn)).await.expect_ok("txn"),
        "SUCCESS\n\n1\n"
    );

    // Errors: etcdctl's Error line and exit code 1.
    let run = etcdctl(&ep, &["put", "", "v"], None).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("Error: etcdserver: key is not provided"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_member_list_endpoint_status_and_health() {
    etcdctl_path();
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader().await;
    let all = cluster.endpoints();

    // Members publish their names and client URLs through the log shortly after starting.
    let list = eventually("member list shows 3 started members", DEADLINE, || async {
        let run = etcdctl(&all, &["member", "list"], None).await;
        // Founders are listed by name from the start; their client URLs appear once each
        // has published them.
        let published = cluster
            .members
            .iter()
            .all(|member| run.stdout.contains(&member.client_url()));
        if run.ok && run.stdout.lines().count() == 3 && published {
            Ok(run.stdout)
        } else {
            Err(format!("{}{}", run.stdout, run.stderr))
        }
    })
    .await;
    for (index, member) in cluster.members.iter().enumerate() {
        let id = cluster.member_id(index).await;
        let want = format!(
            "{id:x}, started, {}, {}, {}, false",
            member.name,
            member.peer_url(),
            member.client_url()
        );
        assert!(
            list.lines().any(|line| line == want),
            "missing {want:?} in\n{list}"
        );
    }

    let json = etcdctl(&all, &["endpoint", "status", "-w", "json"], None)
        .await
        .expect_ok("endpoint status");
    let statuses: serde_json::Value = serde_json::from_str(&json).expect("endpoint status JSON");
    let statuses = statuses.as_array().expect("an array");
    assert_eq!(statuses.len(), 3, "{json}");
    let mut leaders = 0;
    let mut terms = Vec::new();
    for entry in statuses {
        let status = &entry["Status"];
        let member_id = status["header"]["member_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no header.member_id in {json}"));
        let leader = status["leader"]
            .as_u64()
            .unwrap_or_else(|| panic!("no leader in {json}"));
        if leader == member_id {
            leaders += 1;
        }
        terms.push(status["raftTerm"].as_u64().expect("raftTerm"));
    }
    assert_eq!(leaders, 1, "exactly one member leads: {json}");
    assert!(
        terms.iter().all(|term| *term == terms[0]),
        "terms differ: {json}"
    );

    let table = etcdctl(&all, &["endpoint", "status"], None)
        .await
        .expect_ok("endpoint status");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|line| line.contains(", true, false,"))
            .count(),
        1,
        "one leader, no learner:\n{table}"
    );

    let run = etcdctl(&all, &["endpoint", "health"], None).await;
    assert!(
        run.ok,
        "endpoint health failed: {}{}",
        run.stdout, run.stderr
    );
    let output = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(output.matches("is healthy").count(), 3, "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_move_leader() {
    etcdctl_path();
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let target = (leader + 1) % 3;
    let leader_id = cluster.member_id(leader).await;
    let target_id = cluster.member_id(target).await;

    let out = etcdctl(
        &cluster.endpoints(),
        &["move-leader", &format!("{target_id:x}")],
        None,
    )
    .await
    .expect_ok("move-leader");
    assert_eq!(
        out.trim(),
        format!("Leadership transferred from {leader_id:x} to {target_id:x}")
    );
    assert_eq!(cluster.wait_for_leader().await, target);
}

/// Parses `ETCD_INITIAL_CLUSTER="..."` out of `etcdctl member add` output.
fn initial_cluster_from(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .map(|value| value.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {output}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_learner_add_promote_remove() {
    etcdctl_path();
    let mut cluster = Cluster::start(3).await;
    cluster.wait_for_leader().await;
    let all = cluster.endpoints();
    // etcdctl builds ETCD_INITIAL_CLUSTER from the member list's names, so wait until every
    // founder has published its name.
    eventually("member list shows 3 started members", DEADLINE, || async {
        let run = etcdctl(&all, &["member", "list"], None).await;
        // Founders are listed by name from the start; their client URLs appear once each
        // has published them.
        let published = cluster
            .members
            .iter()
            .all(|member| run.stdout.contains(&member.client_url()));
        if run.ok && run.stdout.lines().count() == 3 && published {
            Ok(())
        } else {
            Err(format!("{}{}", run.stdout, run.stderr))
        }
    })
    .await;
    let ports = common::free_ports(2);
    let mut m4 = Member::new("m4", ports[0], ports[1]);

    let added = etcdctl(
        &all,
        &[
            "member",
            "add",
            "m4",
            &format!("--peer-urls={}", m4.peer_url()),
            "--learner",
        ],
        None,
    )
    .await
    .expect_ok("member add");
    assert!(added.starts_with("Member "), "{added}");
    assert!(added.contains("added to cluster"), "{added}");
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    let initial_cluster = initial_cluster_from(&added);
    assert!(
        initial_cluster.contains(&format!("m4={}", m4.peer_url())),
        "{added}"
    );

    m4.configure(
        &initial_cluster,
        &cluster.token,
        &["--initial-cluster-state", "existing"],
    );
    m4.start();
    cluster.members.push(m4);
    let m4_index = 3;
    let m4_id = cluster.member_id(m4_index).await;

    // The learner catches up and publishes itself; member list then shows it started.
    let list = eventually(
        "member list shows the started learner",
        DEADLINE,
        || async {
            let run = etcdctl(&all, &["member", "list"], None).await;
            let line = run
                .stdout
                .lines()
                .find(|line| line.starts_with(&format!("{m4_id:x},")))
                .map(str::to_owned);
            match line {
                Some(line) if line.contains(", started, m4, ") => Ok(line),
                other => Err(format!("{other:?} / {}", run.stderr)),
            }
        },
    )
    .await;
    assert!(list.ends_with(", true"), "not a learner: {list}");
    // As etcd's, a learner refuses writes and linearizable reads, and serves serializable ones.
    let learner = cluster.members[m4_index].client_url();
    let write = etcdctl(&learner, &["put", "on-learner", "x"], None).await;
    assert!(!write.ok, "a learner took a write: {}", write.stdout);
    assert!(
        write
            .stderr
            .contains("etcdserver: rpc not supported for learner"),
        "{}",
        write.stderr
    );
    let read = etcdctl(&learner, &["get", "on-learner"], None).await;
    assert!(
        read.stderr
            .contains("etcdserver: rpc not supported for learner"),
        "{}",
        read.stderr
    );
    etcdctl(&learner, &["get", "on-learner", "--consistency=s"], None)
        .await
        .expect_ok("a serializable read on the learner");

    // Promotion may be refused until the learner has caught up: retry until the deadline.
    let promoted = eventually("member promote", DEADLINE, || async {
        let run = etcdctl(&all, &["member", "promote", &format!("{m4_id:x}")], None).await;
        if run.ok {
            Ok(run.stdout)
        } else {
            Err(run.stderr)
        }
    })
    .await;
    assert!(
        promoted.contains(&format!("Member {m4_id:16x} promoted in cluster")),
        "{promoted}"
    );
    let list = etcdctl(&all, &["member", "list"], None)
        .await
        .expect_ok("member list");
    assert!(
        list.lines().any(
            |line| line.starts_with(&format!("{m4_id:x}, started, m4, "))
                && line.ends_with(", false")
        ),
        "{list}"
    );

    // The promoted member serves linearizable reads and writes.
    let m4_endpoint = one_endpoint(&cluster, m4_index);
    eventually("put through the promoted member", DEADLINE, || async {
        let run = etcdctl(&m4_endpoint, &["put", "via-m4", "yes"], None).await;
        if run.ok { Ok(()) } else { Err(run.stderr) }
    })
    .await;
    assert_eq!(
        etcdctl(&all, &["get", "via-m4"], None)
            .await
            .expect_ok("get"),
        "via-m4\nyes\n"
    );

    let removed = etcdctl(&all, &["member", "remove", &format!("{m4_id:x}")], None)
        .await
        .expect_ok("member remove");
    assert!(
        removed.contains(&format!("Member {m4_id:16x} removed from cluster")),
        "{removed}"
    );
    cluster.members[m4_index].kill();
    let list = etcdctl(&all, &["member", "list"], None)
        .await
        .expect_ok("member list");
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains(&format!("{m4_id:x}")), "{list}");
    cluster.wait_for_leader().await;
    let first_three = (0..3)
        .map(|index| one_endpoint(&cluster, index))
        .collect::<Vec<_>>()
        .join(",");
    eventually("put after removal", DEADLINE, || async {
        let run = etcdctl(&first_three, &["put", "after-remove", "ok"], None).await;
        if run.ok { Ok(()) } else { Err(run.stderr) }
    })
    .await;
}

/// `etcdctl compact` then `etcdctl defrag`: the member's value file loses the values no
/// retained revision references (etcd's defrag reclaims its bbolt file the same way), only on
/// the member asked, and every answer stays the same.
#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_defrag_reclaims_the_value_file_after_compaction() {
    etcdctl_path();
    let cluster = Cluster::start(3).await;
    let all = cluster.endpoints();
    // Values are appended to the file in 64 KiB writes: 40 of 4 KB reach the disk.
    let value = |i: usize| format!("{i:03}-{}", "v".repeat(4000));
    for i in 0..40 {
        etcdctl(&all, &["put", "big", &value(i)], None)
            .await
            .expect_ok("put");
    }
    let revision = etcdctl(&all, &["get", "big", "-w", "json"], None)
        .await
        .expect_ok("get");
    let revision: serde_json::Value = serde_json::from_str(&revision).expect("json");
    let revision = revision["header"]["revision"].as_i64().expect("revision");
    etcdctl(&all, &["compact", &revision.to_string()], None)
        .await
        .expect_ok("compact");

    let file_size = |index: usize| {
        std::fs::metadata(cluster.members[index].data_dir().join("values"))
            .expect("the value file")
            .len()
    };
    // Both members hold at least two full 64 KiB writes of values (the rest may still sit
    // in their buffers).
    let written = 2 * 64 * 1024;
    for index in [0, 1] {
        eventually(
            "the values reach the file",
            Duration::from_secs(10),
            || async {
                let size = file_size(index);
                if size >= written {
                    Ok(())
                } else {
                    Err(format!("member {index}'s value file holds {size} bytes"))
                }
            },
        )
        .await;
    }

    let ep = one_endpoint(&cluster, 0);
    // `endpoint status` shows the unreclaimed space as etcd does: dbSize above dbSizeInUse
    // until the defragmentation, equal after it.
    let sizes = || async {
        let out = etcdctl(&ep, &["endpoint", "status", "-w", "json"], None)
            .await
            .expect_ok("endpoint status");
        let status: serde_json::Value = serde_json::from_str(&out).expect("json");
        let status = &status[0]["Status"];
        (
            status["dbSize"].as_i64().expect("dbSize"),
            status["dbSizeInUse"].as_i64().expect("dbSizeInUse"),
        )
    };
    let (size, in_use) = sizes().await;
    assert!(
        size >= in_use + 30 * 4000,
        "the garbage of 39 compacted values is not counted: {size} vs {in_use}"
    );
    let out = etcdctl(&ep, &["defrag"], None).await.expect_ok("defrag");
    let (size, in_use) = sizes().await;
    assert_eq!(size, in_use, "defragmentation left unreclaimed space");
    assert!(out.contains("Finished defragmenting etcd member"), "{out}");
    assert!(
        file_size(0) <= value(39).len() as u64,
        "more than the live value is left: {} bytes",
        file_size(0)
    );
    assert!(
        file_size(1) >= written,
        "another member was defragmented too"
    );
    assert_eq!(
        etcdctl(
            &ep,
            &["get", "big", "--print-value-only", "--consistency=s"],
            None
        )
        .await
        .expect_ok("get"),
        format!("{}\n", value(39))
    );
    // The value written next lands after the live one, and both are read back.
    etcdctl(&ep, &["put", "other", &value(99)], None)
        .await
        .expect_ok("put");
    assert_eq!(
        etcdctl(&ep, &["get", "other", "--print-value-only"], None)
            .await
            .expect_ok("get"),
        format!("{}\n", value(99))
    );
}
