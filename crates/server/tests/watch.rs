//! etcd's Watch service on real members: the semantics through etcd's protobuf client (tonic),
//! a client that never reads, leader loss with `hasleader=true`, member shutdown, and etcdctl.

mod common;

use common::{Cluster, DEADLINE, eventually, put_acknowledged};
use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;
use pb::watch_client::WatchClient;
use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::Code;

/// One watch stream: requests go in through `requests`, responses come out of `responses`.
struct Stream {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

/// Opens a watch stream on the member at `port`; with `has_leader`, as
/// `clientv3.WithRequireLeader` does.
async fn open(port: u16, has_leader: bool) -> Result<Stream, tonic::Status> {
    let mut client = WatchClient::new(common::channel(port))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let (requests, receiver) = mpsc::channel(64);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    if has_leader {
        request
            .metadata_mut()
            .insert("hasleader", "true".parse().expect("ascii"));
    }
    let responses = client.watch(request).await?.into_inner();
    Ok(Stream {
        requests,
        responses,
    })
}

fn create(key: &str, range_end: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: key.to_owned().into(),
        range_end: range_end.to_owned().into(),
        ..Default::default()
    }
}

impl Stream {
    async fn send(&self, union: RequestUnion) {
        self.requests
            .send(pb::WatchRequest {
                request_union: Some(union),
            })
            .await
            .expect("stream open");
    }

    /// The next response (panics after the deadline or if the stream ends).
    async fn next(&mut self) -> pb::WatchResponse {
        match tokio::time::timeout(DEADLINE, self.responses.message()).await {
            Ok(Ok(Some(response))) => response,
            other => panic!("expected a watch response, got {other:?}"),
        }
    }

    /// Whether nothing arrives within `wait` (for "nothing else was sent").
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.responses.message())
            .await
            .is_err()
    }

    /// Creates a watcher and returns its `created` answer.
    async fn create(&mut self, request: pb::WatchCreateRequest) -> pb::WatchResponse {
        self.send(RequestUnion::CreateRequest(request)).await;
        let response = self.next().await;
        assert!(response.created, "a created answer: {response:?}");
        response
    }

    /// The events of the next response, which must be for `watch_id`.
    async fn events(&mut self, watch_id: i64) -> Vec<mvccpb::Event> {
        let response = self.next().await;
        assert_eq!(response.watch_id, watch_id, "{response:?}");
        assert!(!response.events.is_empty(), "{response:?}");
        response.events
    }

    /// How the stream ended: its status (panics after the deadline).
    async fn ended(&mut self) -> tonic::Status {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.responses.message()).await {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return tonic::Status::ok("ended"),
                Ok(Err(status)) => return status,
                Err(_) => panic!("the stream did not end within {DEADLINE:?}"),
            }
        }
    }
}

fn summary(events: &[mvccpb::Event]) -> Vec<(i32, String, String)> {
    events
        .iter()
        .map(|event| {
            let kv = event.kv.clone().unwrap_or_default();
            (
                event.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

const PUT: i32 = mvccpb::event::EventType::Put as i32;
const DELETE: i32 = mvccpb::event::EventType::Delete as i32;

fn ev(kind: i32, key: &str, value: &str) -> (i32, String, String) {
    (kind, key.to_owned(), value.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_semantics_through_a_follower() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let mut writer = cluster.members[leader].kv();
    let mut stream = open(cluster.members[follower].client_port, false)
        .await
        .expect("open");

    // A single key: created with the current revision, then the leader's write arrives.
    let created = stream.create(create("foo", "")).await;
    assert_eq!(created.watch_id, 0, "auto ids count from 0");
    let header = created.header.expect("header");
    assert!(header.cluster_id != 0 && header.member_id != 0 && header.raft_term != 0);
    let put = put_acknowledged(&mut writer, "foo", "bar").await;
    let revision = put.header.expect("header").revision;
    let response = stream.next().await;
    assert_eq!(response.watch_id, 0);
    assert_eq!(response.header.expect("header").revision, revision);
    assert_eq!(summary(&response.events), vec![ev(PUT, "foo", "bar")]);
    let kv = response.events[0].kv.clone().expect("kv");
    assert_eq!((kv.mod_revision, kv.version), (revision, 1));

    // Prefix, from-key ("\0") and everything (empty key with "\0").
    let prefix = stream.create(create("p/", "p0")).await.watch_id;
    let from_key = stream.create(create("q", "\0")).await.watch_id;
    let all = stream.create(create("", "\0")).await.watch_id;
    assert_eq!((prefix, from_key, all), (1, 2, 3));
    put_acknowledged(&mut writer, "p/a", "1").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = stream.next().await;
        seen.push((response.watch_id, summary(&response.events)));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (1, vec![ev(PUT, "p/a", "1")]),
            (3, vec![ev(PUT, "p/a", "1")])
        ]
    );
    put_acknowledged(&mut writer, "r", "2").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(stream.next().await.watch_id);
    }
    seen.sort();
    assert_eq!(seen, vec![from_key, all]);
    for id in [prefix, from_key, all] {
        stream
            .send(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                watch_id: id,
            }))
            .await;
        let response = stream.next().await;
        assert!(response.canceled && response.watch_id == id, "{response:?}");
    }

    // History: from a past revision, with prev_kv; deletes carry the key and revision.
    put_acknowledged(&mut writer, "h", "1").await;
    let second = put_acknowledged(&mut writer, "h", "2").await;
    writer
        .delete_range(pb::DeleteRangeRequest {
            key: "h".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let from = second.header.expect("header").revision - 1;
    let id = stream
        .create(pb::WatchCreateRequest {
            start_revision: from,
            prev_kv: true,
            ..create("h", "")
        })
        .await
        .watch_id;
    let mut events = Vec::new();
    while events.len() < 3 {
        events.extend(stream.events(id).await);
    }
    assert_eq!(
        summary(&events),
        vec![ev(PUT, "h", "1"), ev(PUT, "h", "2"), ev(DELETE, "h", "")]
    );
    assert_eq!(events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(from));
    assert!(
        events[0].prev_kv.is_none(),
        "a create has no previous value"
    );
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.value.to_vec()),
        Some(b"1".to_vec())
    );
    assert_eq!(
        events[2].prev_kv.as_ref().map(|kv| kv.value.to_vec()),
        Some(b"2".to_vec())
    );

    // A start in the future: nothing until that revision.
    let now = put_acknowledged(&mut writer, "f", "0")
        .await
        .header
        .expect("header")
        .revision;
    let id = stream
        .create(pb::WatchCreateRequest {
            start_revision: now + 2,
            ..create("f", "")
        })
        .await
        .watch_id;
    put_acknowledged(&mut writer, "f", "1").await;
    put_acknowledged(&mut writer, "f", "2").await;
    assert_eq!(summary(&stream.events(id).await), vec![ev(PUT, "f", "2")]);

    // Filters.
    let no_put = stream
        .create(pb::WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("n", "")
        })
        .await
        .watch_id;
    let no_delete = stream
        .create(pb::WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            ..create("n", "")
        })
        .await
        .watch_id;
    put_acknowledged(&mut writer, "n", "1").await;
    assert_eq!(
        summary(&stream.events(no_delete).await),
        vec![ev(PUT, "n", "1")]
    );
    writer
        .delete_range(pb::DeleteRangeRequest {
            key: "n".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    assert_eq!(
        summary(&stream.events(no_put).await),
        vec![ev(DELETE, "n", "")]
    );

    // A client-chosen id, then the same id again: refused with etcd's reason.
    let chosen = stream
        .create(pb::WatchCreateRequest {
            watch_id: 100,
            ..create("c", "")
        })
        .await;
    assert_eq!(chosen.watch_id, 100);
    let duplicate = stream
        .create(pb::WatchCreateRequest {
            watch_id: 100,
            ..create("c", "")
        })
        .await;
    assert!(duplicate.canceled, "{duplicate:?}");
    assert_eq!(
        duplicate.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    // An empty range is refused.
    let empty = stream.create(create("b", "a")).await;
    assert!(empty.canceled && empty.watch_id == -1, "{empty:?}");

    // A request with nothing set is ignored (the stream goes on).
    stream
        .requests
        .send(pb::WatchRequest {
            request_union: None,
        })
        .await
        .expect("send");

    // Progress request: answered with the current revision and watch_id -1.
    let now = put_acknowledged(&mut writer, "elsewhere", "x")
        .await
        .header
        .expect("header")
        .revision;
    // A linearizable read through the follower: it has applied the write since.
    common::get(&mut cluster.members[follower].kv(), "elsewhere", false)
        .await
        .expect("read");
    stream
        .send(RequestUnion::ProgressRequest(pb::WatchProgressRequest {}))
        .await;
    let response = stream.next().await;
    assert_eq!(response.watch_id, -1, "{response:?}");
    assert!(response.events.is_empty());
    assert_eq!(response.header.expect("header").revision, now);

    // Many streams, many watchers each: every watcher sees the write once.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut other = open(cluster.members[follower].client_port, false)
            .await
            .expect("open");
        for _ in 0..50 {
            other.create(create("many", "")).await;
        }
        streams.push(other);
    }
    put_acknowledged(&mut writer, "many", "v").await;
    for other in &mut streams {
        let mut ids = Vec::new();
        for _ in 0..50 {
            let response = other.next().await;
            assert_eq!(summary(&response.events), vec![ev(PUT, "many", "v")]);
            ids.push(response.watch_id);
        }
        ids.sort();
        assert_eq!(ids, (0..50).collect::<Vec<i64>>());
    }
    assert!(stream.quiet_for(Duration::from_millis(200)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_fragments_and_progress_notifications() {
    // A small request limit, so that a transaction's events with their previous values
    // exceed it; frequent progress notifications (under etcd's flag name).
    let cluster = Cluster::start_with(
        1,
        &[
            "--max-request-bytes",
            "4096",
            "--experimental-watch-progress-notify-interval",
            "300ms",
        ],
    )
    .await;
    let member = &cluster.members[0];
    let mut writer = member.kv();
    let mut stream = open(member.client_port, false).await.expect("open");

    // An idle watcher that asked for progress gets empty responses at the current revision.
    let now = put_acknowledged(&mut writer, "other", "x")
        .await
        .header
        .expect("header")
        .revision;
    let mut idle = open(member.client_port, false).await.expect("open");
    let id = idle
        .create(pb::WatchCreateRequest {
            progress_notify: true,
            ..create("idle", "")
        })
        .await
        .watch_id;
    for _ in 0..2 {
        let notice = idle.next().await;
        assert_eq!(notice.watch_id, id, "{notice:?}");
        assert!(notice.events.is_empty() && !notice.canceled && !notice.created);
        assert_eq!(notice.header.expect("header").revision, now);
    }

    let first = put_acknowledged(&mut writer, "k", "1")
        .await
        .header
        .expect("header")
        .revision;
    put_acknowledged(&mut writer, "k", "2").await;
    let compacted = put_acknowledged(&mut writer, "k", "3")
        .await
        .header
        .expect("header")
        .revision;
    writer
        .compact(pb::CompactionRequest {
            revision: compacted,
            physical: true,
        })
        .await
        .expect("compact");
    stream
        .send(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            start_revision: first,
            ..create("k", "")
        }))
        .await;
    let mut canceled = None;
    for _ in 0..2 {
        let response = stream.next().await;
        if response.canceled {
            canceled = Some(response);
            break;
        }
        assert!(response.created, "{response:?}");
    }
    let canceled = canceled.expect("the watcher is canceled");
    assert_eq!(canceled.compact_revision, compacted);

    // Ten values of 300 bytes: the request fits in 4 KiB, its events with previous values do
    // not.
    let value = "v".repeat(300);
    let ops = |value: &str| -> Vec<pb::RequestOp> {
        (0..10)
            .map(|index| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: format!("big/{index}").into(),
                    value: value.to_owned().into(),
                    ..Default::default()
                })),
            })
            .collect()
    };
    writer
        .txn(pb::TxnRequest {
            success: ops(&value),
            ..Default::default()
        })
        .await
        .expect("txn");
    let fragmented = stream
        .create(pb::WatchCreateRequest {
            prev_kv: true,
            fragment: true,
            ..create("big/", "big0")
        })
        .await
        .watch_id;
    let whole = stream
        .create(pb::WatchCreateRequest {
            prev_kv: true,
            ..create("big/", "big0")
        })
        .await
        .watch_id;
    let revision = writer
        .txn(pb::TxnRequest {
            success: ops(&"w".repeat(300)),
            ..Default::default()
        })
        .await
        .expect("txn")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let mut fragments = Vec::new();
    let mut whole_events = 0;
    while fragments.last().is_none_or(|(_, more, _)| *more) || whole_events == 0 {
        let response = stream.next().await;
        assert_eq!(response.header.expect("header").revision, revision);
        if response.watch_id == whole {
            assert!(!response.fragment);
            whole_events = response.events.len();
        } else {
            assert_eq!(response.watch_id, fragmented);
            fragments.push((
                response.events.len(),
                response.fragment,
                response.events.iter().all(|event| event.prev_kv.is_some()),
            ));
        }
    }
    assert_eq!(whole_events, 10);
    assert!(fragments.len() >= 2, "{fragments:?}");
    assert_eq!(fragments.iter().map(|f| f.0).sum::<usize>(), 10);
    assert!(fragments.iter().all(|f| f.2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_stops_nothing() {
    use server::config::ServeArgs;
    let dir = tempfile::tempdir().expect("temporary directory");
    let ports = common::free_ports(2);
    let args = ServeArgs {
        name: Some("m1".into()),
        data_dir: Some(dir.path().join("data")),
        listen_client_urls: Some(format!("http://127.0.0.1:{}", ports[0])),
        listen_peer_urls: Some(format!("http://127.0.0.1:{}", ports[1])),
        initial_cluster: Some(format!("m1=http://127.0.0.1:{}", ports[1])),
        initial_cluster_token: Some(common::unique_token("watch")),
        heartbeat_interval: Some(common::HEARTBEAT_MS),
        election_timeout: Some(common::ELECTION_MS),
        ..Default::default()
    };
    let config = args.resolve_with(|_| None).expect("a valid configuration");
    let member = server::serve::start(config).await.expect("member starts");
    let port = member.client_addr().port();
    let core = member.core().clone();

    let mut slow = open(port, false).await.expect("open");
    slow.create(create("s/", "s0")).await;
    let mut fast = open(port, false).await.expect("open");
    let fast_id = fast.create(create("s/", "s0")).await.watch_id;
    assert_eq!(core.watch_stats().watchers, 2);

    // 16 MiB of events: far beyond what the slow stream's transport and queue (8 MiB) hold.
    let mut writer = pb::kv_client::KvClient::new(common::channel(port));
    let value = "x".repeat(16 * 1024);
    let writes = 1000;
    let fast_reader = tokio::spawn(async move {
        let mut got = 0;
        while got < writes {
            got += fast.events(fast_id).await.len();
        }
        fast
    });
    let mut first = 0;
    for index in 0..writes {
        let response = writer
            .put(pb::PutRequest {
                key: format!("s/{}", index % 10).into(),
                value: value.clone().into(),
                ..Default::default()
            })
            .await
            .expect("writes go on while a watcher does not read");
        if index == 0 {
            first = response.into_inner().header.expect("header").revision;
        }
    }
    let fast = tokio::time::timeout(DEADLINE, fast_reader)
        .await
        .expect("the reading watcher got every event")
        .expect("reader");
    assert!(
        core.watch_stats().unsynced >= 1,
        "the slow watcher fell back to history: {:?}",
        core.watch_stats()
    );

    // Reading again, the slow watcher gets every revision in order, from history.
    let mut next = first;
    while next < first + writes as i64 {
        for event in slow.events(0).await {
            assert_eq!(event.kv.expect("kv").mod_revision, next);
            next += 1;
        }
    }

    // Gone clients take their watchers with them.
    drop(slow);
    eventually("the slow stream's watcher is gone", DEADLINE, || async {
        let stats = core.watch_stats();
        (stats.watchers == 1 && stats.streams == 1)
            .then_some(())
            .ok_or(format!("{stats:?}"))
    })
    .await;
    drop(fast);
    eventually("every watcher is gone", DEADLINE, || async {
        let stats = core.watch_stats();
        (stats.watchers == 0 && stats.streams == 0)
            .then_some(())
            .ok_or(format!("{stats:?}"))
    })
    .await;
    drop(core);
    member.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_without_a_leader_and_at_shutdown() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let survivor = (leader + 1) % 3;
    let port = cluster.members[survivor].client_port;
    let mut requiring = open(port, true).await.expect("open with a leader");
    requiring.create(create("x", "")).await;
    let mut plain = open(port, false).await.expect("open");
    plain.create(create("x", "")).await;

    for index in 0..3 {
        if index != survivor {
            cluster.members[index].stop().await;
        }
    }
    let status = requiring.ended().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "etcdserver: no leader");
    // A new stream that requires a leader is refused at once; one that does not is served.
    let refused = open(port, true).await.err().expect("refused");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(refused.message(), "etcdserver: no leader");
    let created = plain.create(create("y", "")).await;
    assert_eq!(created.watch_id, 1);

    // Stopping the member ends its streams with Unavailable, and it exits cleanly.
    common::sigterm(cluster.members[survivor].child.as_ref().expect("running"));
    let status = plain.ended().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let exit = cluster.members[survivor].stop().await;
    assert!(exit.success(), "{exit:?}");
}

/// A running `etcdctl watch ...` whose output is read line by line.
struct EtcdctlWatch {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    stdin: Option<tokio::process::ChildStdin>,
}

impl EtcdctlWatch {
    fn spawn(endpoint: &str, args: &[&str]) -> EtcdctlWatch {
        let mut child = tokio::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("etcdctl on PATH (apt-get install etcd-client)");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        EtcdctlWatch {
            child,
            lines,
            stdin,
        }
    }

    /// The next `n` lines (panics after the deadline).
    async fn lines(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(DEADLINE, self.lines.recv()).await {
                Ok(Some(line)) => out.push(line),
                other => panic!("etcdctl printed {out:?} then {other:?}"),
            }
        }
        out
    }
}

impl Drop for EtcdctlWatch {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Puts `key` with fresh values until the watch prints an event (the watch is established
/// some time after etcdctl starts); returns the value that was seen and the event's lines.
async fn put_until_seen(
    writer: &mut pb::kv_client::KvClient<tonic::transport::Channel>,
    watch: &mut EtcdctlWatch,
    key: &str,
    lines: usize,
) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        put_acknowledged(writer, key, &format!("v{attempt}")).await;
        if let Ok(Some(first)) =
            tokio::time::timeout(Duration::from_millis(300), watch.lines.recv()).await
        {
            let mut all = vec![first];
            all.extend(watch.lines(lines - 1).await);
            return all;
        }
        assert!(Instant::now() < deadline, "etcdctl watch printed nothing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_watch() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let endpoint = format!(
        "127.0.0.1:{}",
        cluster.members[(leader + 1) % 3].client_port
    );
    let mut writer = cluster.members[leader].kv();

    // `watch foo`: PUT, key, value.
    let mut watch = EtcdctlWatch::spawn(&endpoint, &["watch", "foo"]);
    let seen = put_until_seen(&mut writer, &mut watch, "foo", 3).await;
    assert_eq!(seen[..2], ["PUT", "foo"]);
    assert!(seen[2].starts_with('v'), "{seen:?}");
    drop(watch);

    // `--rev`: history from that revision.
    let first = put_acknowledged(&mut writer, "r", "1")
        .await
        .header
        .expect("header")
        .revision;
    put_acknowledged(&mut writer, "r", "2").await;
    let mut watch = EtcdctlWatch::spawn(&endpoint, &["watch", "r", &format!("--rev={first}")]);
    assert_eq!(watch.lines(6).await, ["PUT", "r", "1", "PUT", "r", "2"]);
    drop(watch);

    // `--prefix --prev-kv`: the previous key and value come first.
    put_acknowledged(&mut writer, "pre/a", "old").await;
    let mut watch = EtcdctlWatch::spawn(&endpoint, &["watch", "--prefix", "pre/", "--prev-kv"]);
    let seen = put_until_seen(&mut writer, &mut watch, "pre/a", 5).await;
    assert_eq!([&seen[0], &seen[1], &seen[3]], ["PUT", "pre/a", "pre/a"]);
    // The event seen is the put of `vN`, whose previous value is `old` or `vN-1`.
    let n: u32 = seen[4][1..].parse().expect("vN");
    let previous = if n == 1 {
        "old".to_owned()
    } else {
        format!("v{}", n - 1)
    };
    assert_eq!(seen[2], previous, "{seen:?}");
    drop(watch);

    // `watch -i`: commands on stdin.
    let mut watch = EtcdctlWatch::spawn(&endpoint, &["watch", "-i"]);
    let mut stdin = watch.stdin.take().expect("stdin");
    stdin
        .write_all(b"watch interactive\n")
        .await
        .expect("write stdin");
    stdin.flush().await.expect("flush");
    let seen = put_until_seen(&mut writer, &mut watch, "interactive", 3).await;
    assert_eq!(seen[..2], ["PUT", "interactive"]);
    drop(stdin);
}
