//! The generated code speaks etcd's wire format: field numbers checked against hand-encoded
//! protobuf bytes, and gRPC paths checked by routing raw HTTP requests through a server.

use bytes::Bytes;
use etcdpb::etcdserverpb::{self as pb, kv_server};
use etcdpb::mvccpb;
use prost::Message;
use tonic::codegen::Service;
use tonic::codegen::http;

#[test]
fn put_request_matches_hand_encoded_bytes() {
    let request = pb::PutRequest {
        key: Bytes::from_static(b"foo"),
        value: Bytes::from_static(b"bar"),
        lease: 300,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 3, b'f', b'o', b'o', // field 1 (key), length-delimited
        0x12, 3, b'b', b'a', b'r', // field 2 (value), length-delimited
        0x18, 0xac, 0x02,          // field 3 (lease), varint 300
        0x20, 1,                   // field 4 (prev_kv), varint
        0x28, 1,                   // field 5 (ignore_value), varint
        0x30, 1,                   // field 6 (ignore_lease), varint
    ];
    assert_eq!(request.encode_to_vec(), expected);
    assert_eq!(pb::PutRequest::decode(expected).unwrap(), request);
}

#[test]
fn compare_matches_hand_encoded_bytes() {
    let compare = pb::Compare {
        result: pb::compare::CompareResult::NotEqual as i32,
        target: pb::compare::CompareTarget::Value as i32,
        key: Bytes::from_static(b"k"),
        range_end: Bytes::from_static(b"\0"),
        target_union: Some(pb::compare::TargetUnion::Value(Bytes::from_static(b"v"))),
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x08, 3,             // field 1 (result) = NOT_EQUAL
        0x10, 3,             // field 2 (target) = VALUE
        0x1a, 1, b'k',       // field 3 (key)
        0x3a, 1, b'v',       // field 7 (value, in target_union)
        0x82, 0x04, 1, 0,    // field 64 (range_end): tag 64 << 3 | 2 = 514, a two-byte varint
    ];
    assert_eq!(compare.encode_to_vec(), expected);
}

#[test]
fn range_response_matches_hand_encoded_bytes() {
    let response = pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        }),
        kvs: vec![mvccpb::KeyValue {
            key: Bytes::from_static(b"a"),
            create_revision: 5,
            mod_revision: 6,
            version: 7,
            value: Bytes::from_static(b"b"),
            lease: 8,
        }],
        more: true,
        count: 9,
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 8, 0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4, // header: cluster_id, member_id, revision, raft_term
        0x12, 14,                                    // kvs[0]
            0x0a, 1, b'a', 0x10, 5, 0x18, 6, 0x20, 7, 0x2a, 1, b'b', 0x30, 8,
        0x18, 1,                                     // more
        0x20, 9,                                     // count
    ];
    assert_eq!(response.encode_to_vec(), expected);
}

#[test]
fn service_names_are_etcds() {
    assert_eq!(kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(pb::watch_server::SERVICE_NAME, "etcdserverpb.Watch");
    assert_eq!(pb::lease_server::SERVICE_NAME, "etcdserverpb.Lease");
    assert_eq!(pb::cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
    assert_eq!(
        pb::maintenance_server::SERVICE_NAME,
        "etcdserverpb.Maintenance"
    );
}

/// Answers every KV method with a distinct error naming the method, so a test can tell from
/// the gRPC status which handler a path reached.
struct NamingKv;

fn reached(method: &str) -> tonic::Status {
    tonic::Status::not_found(method.to_owned())
}

#[tonic::async_trait]
impl kv_server::Kv for NamingKv {
    async fn range(
        &self,
        _: tonic::Request<pb::RangeRequest>,
    ) -> Result<tonic::Response<pb::RangeResponse>, tonic::Status> {
        Err(reached("range"))
    }
    async fn put(
        &self,
        _: tonic::Request<pb::PutRequest>,
    ) -> Result<tonic::Response<pb::PutResponse>, tonic::Status> {
        Err(reached("put"))
    }
    async fn delete_range(
        &self,
        _: tonic::Request<pb::DeleteRangeRequest>,
    ) -> Result<tonic::Response<pb::DeleteRangeResponse>, tonic::Status> {
        Err(reached("delete_range"))
    }
    async fn txn(
        &self,
        _: tonic::Request<pb::TxnRequest>,
    ) -> Result<tonic::Response<pb::TxnResponse>, tonic::Status> {
        Err(reached("txn"))
    }
    async fn compact(
        &self,
        _: tonic::Request<pb::CompactionRequest>,
    ) -> Result<tonic::Response<pb::CompactionResponse>, tonic::Status> {
        Err(reached("compact"))
    }
}

/// Posts an empty message (a valid encoding of every request type) to `path` and returns
/// the response's `grpc-status` and `grpc-message` headers.
async fn call(path: &str) -> (String, String) {
    // gRPC framing: uncompressed flag, then a 4-byte big-endian length of 0.
    let frame = Bytes::from_static(&[0, 0, 0, 0, 0]);
    let request = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(frame)))
        .unwrap();
    let mut server = kv_server::KvServer::new(NamingKv);
    let response = server.call(request).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

#[tokio::test]
async fn kv_paths_are_etcds() {
    let not_found = (tonic::Code::NotFound as i32).to_string();
    for (path, method) in [
        ("/etcdserverpb.KV/Range", "range"),
        ("/etcdserverpb.KV/Put", "put"),
        ("/etcdserverpb.KV/DeleteRange", "delete_range"),
        ("/etcdserverpb.KV/Txn", "txn"),
        ("/etcdserverpb.KV/Compact", "compact"),
    ] {
        assert_eq!(
            call(path).await,
            (not_found.clone(), method.to_owned()),
            "{path}"
        );
    }
    let unimplemented = (tonic::Code::Unimplemented as i32).to_string();
    assert_eq!(call("/etcdserverpb.KV/Nope").await.0, unimplemented);
}
