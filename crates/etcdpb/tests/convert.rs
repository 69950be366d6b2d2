//! The conversions lose nothing: every store request and response survives a trip through the
//! wire types, including transactions nested inside transactions, and bad wire input is an
//! error rather than a panic.

use bytes::Bytes;
use etcdpb::convert::{self, ConvertError, HeaderContext};
use etcdpb::etcdserverpb as pb;
use kv::mvcc::{self, MvccError, MvccRequest};

const CONTEXT: HeaderContext = HeaderContext {
    cluster_id: 0xd0a9_ed06_df5d_1f3e,
    member_id: 0xfce4_ccdb_9802_da4a,
    raft_term: 7,
};

fn kv(key: &'static str, value: &'static str, revision: i64) -> mvcc::KeyValue {
    mvcc::KeyValue {
        key: Bytes::from_static(key.as_bytes()),
        create_revision: revision - 1,
        mod_revision: revision,
        version: 2,
        value: Bytes::from_static(value.as_bytes()),
        lease: 0x1234,
    }
}

fn header(revision: i64) -> mvcc::ResponseHeader {
    mvcc::ResponseHeader { revision }
}

fn full_range() -> mvcc::RangeRequest {
    mvcc::RangeRequest {
        key: Bytes::from_static(b"a"),
        range_end: Bytes::from_static(b"z"),
        limit: 10,
        revision: 5,
        sort_order: mvcc::SortOrder::Descend,
        sort_target: mvcc::SortTarget::Value,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    }
}

fn full_put() -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        lease: 42,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    }
}

fn full_delete() -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: Bytes::from_static(b"d"),
        range_end: Bytes::from_static(b"\0"),
        prev_kv: true,
    }
}

/// Every compare result, target and union variant, plus a missing union and a range_end.
fn all_compares() -> Vec<mvcc::Compare> {
    let mut compares = vec![
        mvcc::Compare::value("k", mvcc::CompareResult::Equal, "v"),
        mvcc::Compare::version("k", mvcc::CompareResult::Greater, 1),
        mvcc::Compare::create_revision("k", mvcc::CompareResult::Less, 2),
        mvcc::Compare::mod_revision("k", mvcc::CompareResult::NotEqual, 3).with_range_end("l"),
        mvcc::Compare::lease("k", mvcc::CompareResult::Equal, 4),
    ];
    compares.push(mvcc::Compare {
        target: mvcc::CompareTarget::Mod,
        key: Bytes::from_static(b"no-union"),
        target_union: None,
        ..mvcc::Compare::default()
    });
    compares
}

fn nested_txn() -> mvcc::TxnRequest {
    let inner = mvcc::TxnRequest {
        compare: vec![mvcc::Compare::version("i", mvcc::CompareResult::Equal, 0)],
        success: vec![full_put().into(), mvcc::RequestOp::Unset],
        failure: vec![full_range().into()],
    };
    let middle = mvcc::TxnRequest {
        compare: all_compares(),
        success: vec![inner.clone().into(), full_delete().into()],
        failure: vec![inner.into()],
    };
    mvcc::TxnRequest {
        compare: all_compares(),
        success: vec![
            full_range().into(),
            full_put().into(),
            full_delete().into(),
            middle.into(),
        ],
        failure: vec![mvcc::RequestOp::Unset, full_put().into()],
    }
}

#[test]
fn requests_round_trip() {
    let range = full_range();
    let back = convert::range_request_from_pb(convert::range_request_to_pb(range.clone()));
    assert_eq!(back, Ok(range));

    let put = full_put();
    assert_eq!(
        convert::put_request_from_pb(convert::put_request_to_pb(put.clone())),
        put
    );

    let delete = full_delete();
    let back =
        convert::delete_range_request_from_pb(convert::delete_range_request_to_pb(delete.clone()));
    assert_eq!(back, delete);

    let txn = nested_txn();
    let back = convert::txn_request_from_pb(convert::txn_request_to_pb(txn.clone()));
    assert_eq!(back, Ok(txn));

    let compact = mvcc::CompactionRequest {
        revision: 9,
        physical: true,
    };
    let back =
        convert::compaction_request_from_pb(convert::compaction_request_to_pb(compact.clone()));
    assert_eq!(back, compact);
}

#[test]
fn every_enum_value_round_trips() {
    use mvcc::{CompareResult as R, CompareTarget as T, SortOrder as O, SortTarget as S};
    for sort_order in [O::None, O::Ascend, O::Descend] {
        for sort_target in [S::Key, S::Version, S::Create, S::Mod, S::Value] {
            let range = mvcc::RangeRequest {
                sort_order,
                sort_target,
                ..full_range()
            };
            let wire = convert::range_request_to_pb(range.clone());
            assert_eq!(wire.sort_order, sort_order as i32);
            assert_eq!(wire.sort_target, sort_target as i32);
            assert_eq!(convert::range_request_from_pb(wire), Ok(range));
        }
    }
    for result in [R::Equal, R::Greater, R::Less, R::NotEqual] {
        for target in [T::Version, T::Create, T::Mod, T::Value, T::Lease] {
            let compare = mvcc::Compare {
                result,
                target,
                ..mvcc::Compare::version("k", result, 1)
            };
            let wire = convert::compare_to_pb(compare.clone());
            assert_eq!(wire.result, result as i32);
            assert_eq!(wire.target, target as i32);
            assert_eq!(convert::compare_from_pb(wire), Ok(compare));
        }
    }
}

fn range_response(revision: i64) -> mvcc::RangeResponse {
    mvcc::RangeResponse {
        header: header(revision),
        kvs: vec![kv("a", "1", revision), kv("b", "", revision)],
        more: true,
        count: 3,
    }
}

fn put_response(revision: i64) -> mvcc::PutResponse {
    mvcc::PutResponse {
        header: header(revision),
        prev_kv: Some(kv("k", "old", revision - 1)),
    }
}

fn delete_response(revision: i64) -> mvcc::DeleteRangeResponse {
    mvcc::DeleteRangeResponse {
        header: header(revision),
        deleted: 2,
        prev_kvs: vec![kv("d1", "x", 3), kv("d2", "y", 4)],
    }
}

fn nested_txn_response() -> mvcc::TxnResponse {
    let inner = mvcc::TxnResponse {
        header: header(0),
        succeeded: false,
        responses: vec![mvcc::ResponseOp::Range(range_response(11))],
    };
    let middle = mvcc::TxnResponse {
        header: header(0),
        succeeded: true,
        responses: vec![
            mvcc::ResponseOp::Txn(inner),
            mvcc::ResponseOp::DeleteRange(delete_response(12)),
        ],
    };
    mvcc::TxnResponse {
        header: header(12),
        succeeded: true,
        responses: vec![
            mvcc::ResponseOp::Range(range_response(11)),
            mvcc::ResponseOp::Put(put_response(12)),
            mvcc::ResponseOp::Put(mvcc::PutResponse {
                header: header(12),
                prev_kv: None,
            }),
            mvcc::ResponseOp::DeleteRange(delete_response(12)),
            mvcc::ResponseOp::Txn(middle),
        ],
    }
}

fn expected_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: CONTEXT.cluster_id,
        member_id: CONTEXT.member_id,
        revision,
        raft_term: CONTEXT.raft_term,
    })
}

#[test]
fn responses_round_trip() {
    let range = range_response(10);
    let wire = convert::range_response_to_pb(range.clone(), CONTEXT);
    assert_eq!(wire.header, expected_header(10));
    assert_eq!(convert::range_response_from_pb(wire), range);

    let put = put_response(11);
    let wire = convert::put_response_to_pb(put.clone(), CONTEXT);
    assert_eq!(wire.header, expected_header(11));
    assert_eq!(convert::put_response_from_pb(wire), put);

    let delete = delete_response(12);
    let wire = convert::delete_range_response_to_pb(delete.clone(), CONTEXT);
    assert_eq!(wire.header, expected_header(12));
    assert_eq!(convert::delete_range_response_from_pb(wire), delete);

    let txn = nested_txn_response();
    let wire = convert::txn_response_to_pb(txn.clone(), CONTEXT);
    assert_eq!(wire.header, expected_header(12));
    assert_eq!(convert::txn_response_from_pb(wire), Ok(txn));

    let compact = mvcc::CompactionResponse { header: header(13) };
    let wire = convert::compaction_response_to_pb(compact.clone(), CONTEXT);
    assert_eq!(wire.header, expected_header(13));
    assert_eq!(convert::compaction_response_from_pb(wire), compact);

    let kv = kv("k", "v", 5);
    assert_eq!(
        convert::key_value_from_pb(convert::key_value_to_pb(kv.clone())),
        kv
    );
}

#[test]
fn nested_headers_carry_only_the_revision() {
    let wire = convert::txn_response_to_pb(nested_txn_response(), CONTEXT);
    let Some(pb::response_op::Response::ResponsePut(put)) = &wire.responses[1].response else {
        panic!("expected a put response, got {:?}", wire.responses[1]);
    };
    assert_eq!(
        put.header,
        Some(pb::ResponseHeader {
            revision: 12,
            ..pb::ResponseHeader::default()
        })
    );
    let Some(pb::response_op::Response::ResponseTxn(middle)) = &wire.responses[4].response else {
        panic!("expected a txn response, got {:?}", wire.responses[4]);
    };
    assert_eq!(middle.header, Some(pb::ResponseHeader::default()));
}

#[test]
fn header_context_fills_member_fields() {
    let built = CONTEXT.header(header(99));
    assert_eq!(built, expected_header(99).unwrap());
    assert_eq!(convert::response_header_to_pb(header(99), CONTEXT), built);
    assert_eq!(convert::response_header_from_pb(Some(built)), header(99));
    assert_eq!(convert::response_header_from_pb(None), header(0));
}

#[test]
fn conversions_share_key_and_value_bytes() {
    let key = Bytes::from(b"shared-key".to_vec());
    let value = Bytes::from(vec![7u8; 1024]);
    let put = mvcc::PutRequest::new(key.clone(), value.clone());
    let wire = convert::put_request_to_pb(put);
    assert_eq!(wire.key.as_ptr(), key.as_ptr());
    let back = convert::put_request_from_pb(wire);
    assert_eq!(back.value.as_ptr(), value.as_ptr());
}

#[test]
fn unknown_sort_order_is_an_error() {
    let request = pb::RangeRequest {
        key: Bytes::from_static(b"k"),
        sort_order: 99,
        ..pb::RangeRequest::default()
    };
    let error = convert::range_request_from_pb(request).unwrap_err();
    assert_eq!(
        error,
        ConvertError::UnknownEnumValue {
            field: "RangeRequest.sort_order",
            value: 99
        }
    );
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "raftkv: RangeRequest.sort_order has unknown value 99"
    );
}

#[test]
fn unknown_enum_values_are_errors_at_any_depth() {
    let bad_target = pb::RangeRequest {
        sort_target: -1,
        ..pb::RangeRequest::default()
    };
    assert!(matches!(
        convert::range_request_from_pb(bad_target.clone()),
        Err(ConvertError::UnknownEnumValue {
            field: "RangeRequest.sort_target",
            value: -1
        })
    ));
    let bad_result = pb::Compare {
        result: 4,
        ..pb::Compare::default()
    };
    assert!(matches!(
        convert::compare_from_pb(bad_result.clone()),
        Err(ConvertError::UnknownEnumValue {
            field: "Compare.result",
            value: 4
        })
    ));
    let bad_compare_target = pb::Compare {
        target: 5,
        ..pb::Compare::default()
    };
    assert!(matches!(
        convert::compare_from_pb(bad_compare_target),
        Err(ConvertError::UnknownEnumValue {
            field: "Compare.target",
            value: 5
        })
    ));

    // Buried two transactions deep, in the failure branch.
    let op = |request| pb::RequestOp {
        request: Some(request),
    };
    let inner = pb::TxnRequest {
        failure: vec![op(pb::request_op::Request::RequestRange(bad_target))],
        ..pb::TxnRequest::default()
    };
    let outer = pb::TxnRequest {
        compare: vec![pb::Compare::default()],
        success: vec![op(pb::request_op::Request::RequestTxn(inner))],
        ..pb::TxnRequest::default()
    };
    assert!(convert::txn_request_from_pb(outer).is_err());
    let in_compare = pb::TxnRequest {
        compare: vec![bad_result],
        ..pb::TxnRequest::default()
    };
    assert!(convert::txn_request_from_pb(in_compare).is_err());
}

#[test]
fn empty_request_op_is_answered_key_not_found() {
    let request = pb::TxnRequest {
        success: vec![pb::RequestOp::default()],
        ..pb::TxnRequest::default()
    };
    let txn = convert::txn_request_from_pb(request).expect("an empty op converts");
    assert_eq!(txn.success, vec![mvcc::RequestOp::Unset]);
    let error = MvccRequest::Txn(txn)
        .validate(mvcc::DEFAULT_MAX_TXN_OPS)
        .unwrap_err();
    assert_eq!(error, MvccError::KeyNotFound);
    assert_eq!(error.to_string(), "etcdserver: key not found");
}

#[test]
fn empty_response_op_is_an_internal_error() {
    let response = pb::TxnResponse {
        responses: vec![pb::ResponseOp::default()],
        ..pb::TxnResponse::default()
    };
    let error = convert::txn_response_from_pb(response).unwrap_err();
    assert_eq!(error, ConvertError::EmptyResponseOp);
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Internal);
}

#[test]
fn empty_compare_union_stays_empty() {
    let compare = pb::Compare {
        key: Bytes::from_static(b"k"),
        ..pb::Compare::default()
    };
    let converted = convert::compare_from_pb(compare).unwrap();
    assert_eq!(converted.target_union, None);
}
