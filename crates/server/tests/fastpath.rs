//! The client listener's short path for KV calls, seen from a raw HTTP/2 client: the wire
//! answers (headers, framing, trailers) and tonic's error codes and messages for malformed
//! requests, `grpc-timeout`, the hand-over of every other path to tonic, and graceful shutdown.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use etcdpb::etcdserverpb as pb;
use http::HeaderMap;
use prost::Message;
use server::config::ServeArgs;
use server::serve::RunningMember;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::Code;

/// Starts a member in this process. With `absent_peer`, the initial cluster also names a
/// second member that never starts, so there is never a leader and every linearizable call
/// waits.
async fn start_member(absent_peer: bool) -> (RunningMember, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ports = common::free_ports(3);
    let mut cluster = format!("m1=http://127.0.0.1:{}", ports[1]);
    if absent_peer {
        cluster.push_str(&format!(",m2=http://127.0.0.1:{}", ports[2]));
    }
    let args = ServeArgs {
        name: Some("m1".into()),
        data_dir: Some(dir.path().join("data")),
        listen_client_urls: Some(format!("http://127.0.0.1:{}", ports[0])),
        listen_peer_urls: Some(format!("http://127.0.0.1:{}", ports[1])),
        initial_cluster: Some(cluster),
        initial_cluster_token: Some(common::unique_token("fastpath")),
        heartbeat_interval: Some(common::HEARTBEAT_MS),
        election_timeout: Some(common::ELECTION_MS),
        ..Default::default()
    };
    let config = args.resolve_with(|_| None).expect("a valid configuration");
    let member = server::serve::start(config).await.expect("member starts");
    (member, dir)
}

/// What came back for one call.
#[derive(Debug)]
struct Answer {
    head: http::response::Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    /// The gRPC status: from the trailers, or from the headers of a trailers-only answer.
    fn status(&self) -> tonic::Status {
        let map = self.trailers.as_ref().unwrap_or(&self.head.headers);
        tonic::Status::from_header_map(map).expect("a grpc-status")
    }

    fn message<M: Message + Default>(&self) -> M {
        assert_eq!(self.status().code(), Code::Ok, "{:?}", self.status());
        assert!(self.data.len() >= 5, "a framed message: {:?}", self.data);
        assert_eq!(self.data[0], 0, "uncompressed");
        let len = u32::from_be_bytes([self.data[1], self.data[2], self.data[3], self.data[4]]);
        assert_eq!(len as usize, self.data.len() - 5, "exactly one message");
        M::decode(&self.data[5..]).expect("a valid message")
    }
}

fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.len());
    buf.put_u8(flag);
    buf.put_u32(message.len() as u32);
    buf.put_slice(message);
    buf.freeze()
}

/// One HTTP/2 connection (h2c prior knowledge, as etcd's clients), no gRPC library.
struct Raw {
    addr: SocketAddr,
    client: h2::client::SendRequest<Bytes>,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        Raw {
            addr,
            client,
            connection: tokio::spawn(connection),
        }
    }

    /// Sends `body` (in the given pieces, one DATA frame each) to `path` and reads the answer.
    async fn call(&mut self, path: &str, headers: &[(&str, &str)], pieces: &[Bytes]) -> Answer {
        let mut request = http::Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("a request");
        let client = self.client.clone().ready().await.expect("ready");
        let mut client = client;
        let (response, mut send) = client
            .send_request(request, pieces.is_empty())
            .expect("send headers");
        for (index, piece) in pieces.iter().enumerate() {
            send.send_data(piece.clone(), index + 1 == pieces.len())
                .expect("send data");
        }
        let response = response.await.expect("a response");
        let (head, mut body) = response.into_parts();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.expect("trailers");
        Answer {
            head,
            data: data.freeze(),
            trailers,
        }
    }
}

fn put(key: &str, value: &str) -> Bytes {
    framed(
        0,
        &pb::PutRequest {
            key: key.to_owned().into(),
            value: value.to_owned().into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn range(key: &str) -> Bytes {
    framed(
        0,
        &pb::RangeRequest {
            key: key.to_owned().into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// Waits until the member answers a linearizable read (it has elected itself).
async fn wait_until_serving(raw: &mut Raw) {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let answer = raw.call("/etcdserverpb.KV/Range", &[], &[range("x")]).await;
        if answer.status().code() == Code::Ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member not serving: {:?}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_calls_answer_as_tonic_did() {
    let (member, _dir) = start_member(false).await;
    let mut raw = Raw::connect(member.client_addr()).await;
    wait_until_serving(&mut raw).await;

    let answer = raw
        .call("/etcdserverpb.KV/Put", &[], &[put("a", "1")])
        .await;
    assert_eq!(answer.head.status, http::StatusCode::OK);
    assert_eq!(answer.head.headers["content-type"], "application/grpc");
    assert!(!answer.head.headers.contains_key("content-length"));
    assert!(!answer.head.headers.contains_key("grpc-status"));
    let trailers = answer.trailers.clone().expect("trailers");
    assert_eq!(trailers.len(), 1, "{trailers:?}");
    assert_eq!(trailers["grpc-status"], "0");
    let put_response: pb::PutResponse = answer.message();
    let revision = put_response.header.expect("header").revision;
    assert!(revision > 0);

    // The value is read back (the request split over frames, header included) ...
    let request = range("a");
    let pieces = [request.slice(..3), request.slice(3..6), request.slice(6..)];
    let answer = raw.call("/etcdserverpb.KV/Range", &[], &pieces).await;
    let range_response: pb::RangeResponse = answer.message();
    assert_eq!(range_response.kvs.len(), 1);
    assert_eq!(&range_response.kvs[0].value[..], b"1");
    assert_eq!(range_response.kvs[0].mod_revision, revision);

    // ... and through tonic's client, which takes the same path.
    let mut kv = common::channel(member.client_addr().port());
    let mut client = pb::kv_client::KvClient::new(&mut kv);
    let response = client
        .range(pb::RangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .await
        .expect("range through tonic")
        .into_inner();
    assert_eq!(&response.kvs[0].value[..], b"1");

    // A handler's etcd error arrives trailers-only, as tonic sent it.
    let bad_range = framed(
        0,
        &pb::RangeRequest {
            key: "a".into(),
            sort_order: 99,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let answer = raw.call("/etcdserverpb.KV/Range", &[], &[bad_range]).await;
    assert!(answer.trailers.is_none());
    assert!(answer.data.is_empty());
    assert_ne!(answer.status().code(), Code::Ok);

    // DeleteRange and Txn too.
    let delete = framed(
        0,
        &pb::DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let answer = raw
        .call("/etcdserverpb.KV/DeleteRange", &[], &[delete])
        .await;
    let deleted: pb::DeleteRangeResponse = answer.message();
    assert_eq!(deleted.deleted, 1);
    let txn = framed(0, &pb::TxnRequest::default().encode_to_vec());
    let answer = raw.call("/etcdserverpb.KV/Txn", &[], &[txn]).await;
    let txn: pb::TxnResponse = answer.message();
    assert!(txn.succeeded);

    member.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_tonics_errors() {
    let (member, _dir) = start_member(false).await;
    let mut raw = Raw::connect(member.client_addr()).await;
    wait_until_serving(&mut raw).await;
    let limit = 1536 * 1024 + 512 * 1024;

    let cases: Vec<(&str, Vec<Bytes>, Code, String)> = vec![
        (
            "compressed flag",
            vec![framed(1, b"")],
            Code::Internal,
            "protocol error: received message with compressed-flag but no grpc-encoding was specified".into(),
        ),
        (
            "invalid flag",
            vec![framed(7, b"")],
            Code::Internal,
            "protocol error: received message with invalid compression flag: 7 (valid flags are 0 and 1), while sending request".into(),
        ),
        (
            // Refused from the header alone, before the message arrives.
            "oversized",
            vec![framed(0, &vec![0u8; limit + 1]).slice(..5)],
            Code::OutOfRange,
            format!(
                "Error, decoded message length too large: found {} bytes, the limit is: {limit} bytes",
                limit + 1
            ),
        ),
        (
            "truncated",
            vec![put("k", "v").slice(..8)],
            Code::Internal,
            "Unexpected EOF decoding stream.".into(),
        ),
        (
            "empty",
            vec![],
            Code::Internal,
            "Missing request message.".into(),
        ),
        (
            // A second message is decoded (and dropped) as tonic does.
            "garbage after a request",
            vec![put("k", "v"), framed(0, &[0xff, 0xff, 0xff])],
            Code::Internal,
            String::new(),
        ),
    ];
    for (what, pieces, code, message) in cases {
        let answer = raw.call("/etcdserverpb.KV/Put", &[], &pieces).await;
        let status = answer.status();
        assert_eq!(status.code(), code, "{what}: {status:?}");
        if !message.is_empty() {
            assert_eq!(status.message(), message, "{what}");
        }
        assert!(answer.trailers.is_none(), "{what}: trailers-only");
    }

    // Garbage protobuf: Internal with prost's description, as tonic's codec reports it.
    let answer = raw
        .call(
            "/etcdserverpb.KV/Range",
            &[],
            &[framed(0, &[0xff, 0xff, 0xff])],
        )
        .await;
    let status = answer.status();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status
            .message()
            .starts_with("failed to decode Protobuf message"),
        "{status:?}"
    );

    // A declared encoding goes to tonic, which supports none.
    let answer = raw
        .call(
            "/etcdserverpb.KV/Put",
            &[("grpc-encoding", "gzip")],
            &[put("k", "v")],
        )
        .await;
    let status = answer.status();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "Content is compressed with `gzip` which isn't supported"
    );

    // Nothing above was written.
    let answer = raw.call("/etcdserverpb.KV/Range", &[], &[range("k")]).await;
    let response: pb::RangeResponse = answer.message();
    assert!(response.kvs.is_empty());

    member.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_paths_go_to_tonic() {
    let (member, _dir) = start_member(false).await;
    let mut raw = Raw::connect(member.client_addr()).await;
    wait_until_serving(&mut raw).await;

    // An unknown method of a short-path service, and an unknown service.
    for path in ["/etcdserverpb.KV/Nope", "/nosuch.Service/Call"] {
        let answer = raw.call(path, &[], &[range("a")]).await;
        assert_eq!(answer.head.status, http::StatusCode::OK, "{path}");
        assert_eq!(answer.head.headers["grpc-status"], "12", "{path}");
        assert_eq!(answer.head.headers["content-type"], "application/grpc");
        assert!(answer.trailers.is_none(), "{path}");
    }

    // Maintenance is tonic's, and answers.
    let status = framed(0, &pb::StatusRequest::default().encode_to_vec());
    let answer = raw
        .call("/etcdserverpb.Maintenance/Status", &[], &[status])
        .await;
    let response: pb::StatusResponse = answer.message();
    assert_eq!(
        response.header.expect("header").member_id,
        member.core().identity.member_id
    );
    assert!(response.leader != 0);

    member.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_timeout_cancels_waiting_calls() {
    // No leader ever: linearizable reads, writes and member changes all wait.
    let (member, _dir) = start_member(true).await;
    let mut raw = Raw::connect(member.client_addr()).await;

    for (path, body) in [
        ("/etcdserverpb.KV/Range", range("a")),
        ("/etcdserverpb.KV/Put", put("a", "1")),
        (
            // tonic's path honours the deadline as well.
            "/etcdserverpb.Cluster/MemberAdd",
            framed(
                0,
                &pb::MemberAddRequest {
                    peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                    is_learner: false,
                }
                .encode_to_vec(),
            ),
        ),
    ] {
        for timeout in ["1n", "100m"] {
            let started = Instant::now();
            let answer = raw
                .call(
                    path,
                    &[("grpc-timeout", timeout)],
                    std::slice::from_ref(&body),
                )
                .await;
            let status = answer.status();
            assert_eq!(
                status.code(),
                Code::Cancelled,
                "{path} {timeout}: {status:?}"
            );
            assert_eq!(status.message(), "Timeout expired");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} {timeout}"
            );
        }
    }

    // A malformed deadline (nine digits) is ignored, as tonic ignores it: the call is not
    // cancelled but waits for the member's own, much longer, deadline.
    let started = Instant::now();
    let pieces = [range("a")];
    let call = raw.call(
        "/etcdserverpb.KV/Range",
        &[("grpc-timeout", "123456789S")],
        &pieces,
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err(),
        "answered within {:?}",
        started.elapsed()
    );

    // A serializable read does not wait for a leader and answers within the deadline.
    let serializable = framed(
        0,
        &pb::RangeRequest {
            key: "a".into(),
            serializable: true,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let mut raw = Raw::connect(member.client_addr()).await;
    let answer = raw
        .call(
            "/etcdserverpb.KV/Range",
            &[("grpc-timeout", "10S")],
            &[serializable],
        )
        .await;
    let response: pb::RangeResponse = answer.message();
    assert!(response.kvs.is_empty());
    drop(raw);

    // The cancelled calls let go of the member.
    member.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_client_connections() {
    let (member, _dir) = start_member(false).await;
    let addr = member.client_addr();
    let mut raw = Raw::connect(addr).await;
    wait_until_serving(&mut raw).await;
    let Raw {
        client, connection, ..
    } = raw;

    // Shutdown needs every connection (and the handlers' references) gone: it fails
    // otherwise.
    tokio::time::timeout(Duration::from_secs(10), member.shutdown())
        .await
        .expect("shutdown within the bound")
        .expect("clean shutdown");
    // The idle connection was closed by the server (GOAWAY, then end of stream).
    let _closed_with: Result<(), h2::Error> =
        tokio::time::timeout(Duration::from_secs(5), connection)
            .await
            .expect("the connection ends")
            .expect("the connection task did not panic");
    drop(client);
    // And the listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
