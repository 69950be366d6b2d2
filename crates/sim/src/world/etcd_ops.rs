//! The simulator's clients speak etcd: each operation of the register model `lincheck` checks
//! (read, write, compare-and-set, delete) is an etcd request to the production state machine
//! (`machine::EtcdMachine`), and its answer is read back into the model together with the
//! revisions etcd reports, which `crate::revisions` checks against one order of writes.
//!
//! | model operation | etcd request |
//! |---|---|
//! | read | `Range(key)`, through the log or by ReadIndex (`MachineQuery::Range`) |
//! | write | `Put(key, value)` |
//! | compare-and-set | `Txn(if value(key) == expected then Put(key, new) else Range(key))` |
//! | delete | `DeleteRange(key)` |
//!
//! A compaction (`Compact(revision)`) is issued now and then beside them; it is not a register
//! operation, so it stays out of the linearizability history.
//!
//! So are the multi-key writes, which give watchers revisions of several events: a `Txn`
//! that puts two to four keys of the [`MULTI_PREFIX`] (and may delete another), or a
//! `DeleteRange` of the whole prefix. No register lives under that prefix (register keys are
//! 8-byte numbers below 2^56, so they start with a zero byte), so `lincheck` never sees them;
//! they take revisions like any write, so `crate::revisions` counts them
//! (`crate::revisions::OtherWrite`).

use bytes::{BufMut, Bytes, BytesMut};
use kv::mvcc::{
    CompactionRequest, Compare, CompareResult, DeleteRangeRequest, KeyValue, MvccCommand,
    MvccError, MvccRequest, MvccResponse, PutRequest, RangeRequest, RequestOp, ResponseOp,
    TxnRequest,
};
use lincheck::{Input, Output};
use machine::{MachineQuery, MachineResponse};

/// Values are this long when the value file should hold them (64 bytes or more go there), so
/// half the writes exercise the file, its snapshot section and its rewrites.
const LONG_VALUE_BYTES: usize = 80;

/// The key the simulator's client register `key` is stored under.
pub fn key_bytes(key: u64) -> Bytes {
    Bytes::copy_from_slice(&key.to_be_bytes())
}

/// The bytes stored for the model's value `value`: its 8 big-endian bytes, padded for odd
/// values so that they go to the value file.
pub fn value_bytes(value: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(LONG_VALUE_BYTES);
    out.put_u64(value);
    if value % 2 == 1 {
        out.resize(LONG_VALUE_BYTES, (value % 251) as u8);
    }
    out.freeze()
}

/// The model's value of stored bytes (their first 8 bytes), or `None` if they are not a value
/// the clients wrote in full.
pub fn decode_value(bytes: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let value = u64::from_be_bytes(raw);
    (value_bytes(value) == bytes).then_some(value)
}

/// The etcd request for a model operation on register `key`.
pub fn request_for(input: Input, key: u64) -> MvccRequest {
    let key = key_bytes(key);
    match input {
        Input::Read => MvccRequest::Range(RangeRequest::new(key, Bytes::new())),
        Input::Write(value) => MvccRequest::Put(PutRequest::new(key, value_bytes(value))),
        Input::Cas { expected, new } => MvccRequest::Txn(TxnRequest {
            compare: vec![Compare::value(
                key.clone(),
                CompareResult::Equal,
                value_bytes(expected),
            )],
            success: vec![RequestOp::Put(PutRequest::new(
                key.clone(),
                value_bytes(new),
            ))],
            failure: vec![RequestOp::Range(RangeRequest::new(key, Bytes::new()))],
        }),
        Input::Delete => MvccRequest::DeleteRange(DeleteRangeRequest::new(key, Bytes::new())),
    }
}

/// The prefix of the multi-key writes' keys (outside every register key).
pub const MULTI_PREFIX: &[u8] = b"w/";

/// The end of [`MULTI_PREFIX`]'s range.
pub const MULTI_PREFIX_END: &[u8] = b"w0";

/// How many keys the multi-key writes choose from.
pub const MULTI_KEYS: u64 = 8;

/// The key `index` (below [`MULTI_KEYS`]) of the multi-key writes.
pub fn multi_key(index: u64) -> Bytes {
    let mut key = BytesMut::from(MULTI_PREFIX);
    key.put_u8(b'0' + index as u8);
    key.freeze()
}

/// One transaction (one revision) that puts `puts` (distinct multi-key indices) with values
/// derived from `value`, and deletes `delete` (another one) if given.
pub fn multi_put_request(puts: &[u64], delete: Option<u64>, value: u64) -> MvccRequest {
    let mut success: Vec<RequestOp> = puts
        .iter()
        .zip(0..)
        .map(|(&index, offset)| {
            RequestOp::Put(PutRequest::new(
                multi_key(index),
                value_bytes(value.wrapping_add(offset)),
            ))
        })
        .collect();
    if let Some(index) = delete {
        success.push(RequestOp::DeleteRange(DeleteRangeRequest::new(
            multi_key(index),
            Bytes::new(),
        )));
    }
    MvccRequest::Txn(TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    })
}

/// A delete of every multi-key key.
pub fn multi_delete_request() -> MvccRequest {
    MvccRequest::DeleteRange(DeleteRangeRequest::new(
        Bytes::from_static(MULTI_PREFIX),
        Bytes::from_static(MULTI_PREFIX_END),
    ))
}

/// Reads the answer to a multi-key write: (the revision, whether it changed something).
pub fn read_multi_answer(response: &MachineResponse) -> Result<(i64, bool), String> {
    match response {
        MachineResponse::Kv(Ok(MvccResponse::Txn(txn))) if txn.succeeded => {
            // Its puts always change something.
            Ok((txn.header.revision, true))
        }
        MachineResponse::Kv(Ok(MvccResponse::DeleteRange(delete))) => {
            Ok((delete.header.revision, delete.deleted > 0))
        }
        other => Err(format!("a multi-key write answered with {other:?}")),
    }
}

/// A compaction at `revision`.
pub fn compaction(revision: i64) -> MvccRequest {
    MvccRequest::Compact(CompactionRequest {
        revision,
        physical: false,
    })
}

/// The bytes a client proposes for `request` in its session.
pub fn command_bytes(client_id: u64, sequence: u64, request: MvccRequest) -> Bytes {
    MvccCommand {
        client_id,
        sequence,
        request,
    }
    .encode()
}

/// The query a ReadIndex read of register `key` asks.
pub fn read_query(key: u64) -> MachineQuery {
    MachineQuery::Range(RangeRequest::new(key_bytes(key), Bytes::new()))
}

/// What an answer says in the register model, plus the revisions etcd reported with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The model's output.
    pub output: Output,
    /// The revision of the store when the request was served (etcd's response header).
    pub revision: i64,
    /// Whether the request created a revision (a put, a successful compare-and-set, a delete
    /// that deleted something).
    pub wrote: bool,
    /// For a read or a failed compare-and-set that found the key: the key's `mod_revision`
    /// and the model value it holds.
    pub observed: Option<(i64, Option<u64>)>,
}

/// Reads a state machine's answer to a model operation; `Err` says why it is not an answer
/// such an operation can get (a checker violation).
pub fn read_answer(input: Input, response: &MachineResponse) -> Result<Answer, String> {
    let MachineResponse::Kv(Ok(response)) = response else {
        return Err(format!("{input:?} answered with {response:?}"));
    };
    let revision = response.header().revision;
    let answer = |output, wrote, observed| Answer {
        output,
        revision,
        wrote,
        observed,
    };
    match (input, response) {
        (Input::Read, MvccResponse::Range(range)) => {
            let (output, observed) = observe(&range.kvs)?;
            Ok(answer(output, false, observed))
        }
        (Input::Write(_), MvccResponse::Put(_)) => Ok(answer(Output::Write, true, None)),
        (Input::Delete, MvccResponse::DeleteRange(delete)) => {
            Ok(answer(Output::Delete, delete.deleted > 0, None))
        }
        (Input::Cas { .. }, MvccResponse::Txn(txn)) if txn.succeeded => {
            Ok(answer(Output::Cas { succeeded: true }, true, None))
        }
        (Input::Cas { .. }, MvccResponse::Txn(txn)) => match txn.responses.as_slice() {
            [ResponseOp::Range(range)] => {
                let (_, observed) = observe(&range.kvs)?;
                Ok(answer(Output::Cas { succeeded: false }, false, observed))
            }
            other => Err(format!("a failed compare-and-set answered {other:?}")),
        },
        (input, response) => Err(format!("{input:?} answered with {response:?}")),
    }
}

/// The model's read of a one-key range, and the key's mod_revision if it exists.
#[allow(clippy::type_complexity)]
fn observe(kvs: &[KeyValue]) -> Result<(Output, Option<(i64, Option<u64>)>), String> {
    match kvs {
        [] => Ok((Output::Read(None), None)),
        [kv] => {
            let value = decode_value(&kv.value)
                .ok_or_else(|| format!("a read returned bytes no client wrote: {kv:?}"))?;
            Ok((
                Output::Read(Some(value)),
                Some((kv.mod_revision, Some(value))),
            ))
        }
        more => Err(format!("a one-key range returned {} keys", more.len())),
    }
}

/// Whether a compaction's answer is one etcd can give (done, or refused because the revision
/// is already compacted or still in the future).
pub fn compaction_answer_ok(response: &MachineResponse) -> bool {
    matches!(
        response,
        MachineResponse::Kv(Ok(MvccResponse::Compact(_)))
            | MachineResponse::Kv(Err(MvccError::Compacted | MvccError::FutureRevision))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_short_and_long() {
        for value in [0, 1, 2, 0xdead_beef, u64::MAX] {
            let bytes = value_bytes(value);
            assert_eq!(bytes.len() >= 64, value % 2 == 1);
            assert_eq!(decode_value(&bytes), Some(value));
        }
        assert_eq!(decode_value(b"short"), None);
        assert_eq!(decode_value(&value_bytes(3)[..70]), None);
    }
}
