//! The hand-written binary encoding of MVCC commands and responses.
//!
//! Integers are LEB128 varints (signed ones zigzag-encoded), byte strings are a varint length
//! followed by the bytes, flags are packed in one byte. Commands go into the Raft log, so the
//! format starts with a version byte, and decoding treats its input as hostile: every length is
//! checked against the bytes left, collections are never pre-allocated from a claimed count,
//! nesting is bounded by [`MAX_TXN_DEPTH`], unknown tags and flag bits are rejected, and no
//! input makes it panic. Decoded keys and values share the input buffer (no copies).

use super::error::MvccError;
use super::types::{
    CompactionRequest, CompactionResponse, Compare, CompareResult, CompareTarget,
    CompareTargetUnion, DeleteRangeRequest, DeleteRangeResponse, KeyValue, MvccCommand,
    MvccRequest, MvccResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use super::validate::MAX_TXN_DEPTH;
use crate::DecodeError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// First byte of an encoded [`MvccRequest`].
const REQUEST_FORMAT_V1: u8 = 0x01;
/// First byte of an encoded [`MvccCommand`]; distinct from [`REQUEST_FORMAT_V1`] so one
/// cannot be mistaken for the other.
const COMMAND_FORMAT_V1: u8 = 0x02;

const TAG_RANGE: u8 = 1;
const TAG_PUT: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;
const TAG_TXN: u8 = 4;
const TAG_COMPACT: u8 = 5;
const TAG_UNSET: u8 = 0;

impl MvccRequest {
    /// The request's bytes, starting with a format version byte.
    ///
    /// Assumes the request passed [`MvccRequest::validate`] (which bounds transaction
    /// nesting); encoding recurses once per nesting level.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + request_size_hint(self));
        out.put_u8(REQUEST_FORMAT_V1);
        put_request(&mut out, self);
        out.freeze()
    }

    /// Parses bytes made by [`MvccRequest::encode`]; never panics.
    pub fn decode(bytes: &Bytes) -> Result<MvccRequest, DecodeError> {
        let mut reader = Reader::new(bytes);
        if reader.u8()? != REQUEST_FORMAT_V1 {
            return Err(DecodeError("unknown mvcc request format"));
        }
        let request = reader.request()?;
        reader.finish()?;
        Ok(request)
    }
}

impl MvccCommand {
    /// The bytes to propose to the Raft log.
    ///
    /// Assumes the request passed [`MvccRequest::validate`], as [`MvccRequest::encode`] does.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + request_size_hint(&self.request));
        out.put_u8(COMMAND_FORMAT_V1);
        put_uvarint(&mut out, self.client_id);
        put_uvarint(&mut out, self.sequence);
        put_request(&mut out, &self.request);
        out.freeze()
    }

    /// Parses bytes made by [`MvccCommand::encode`]; never panics.
    pub fn decode(bytes: &Bytes) -> Result<MvccCommand, DecodeError> {
        let mut reader = Reader::new(bytes);
        if reader.u8()? != COMMAND_FORMAT_V1 {
            return Err(DecodeError("unknown mvcc command format"));
        }
        let client_id = reader.uvarint()?;
        let sequence = reader.uvarint()?;
        let request = reader.request()?;
        reader.finish()?;
        Ok(MvccCommand {
            client_id,
            sequence,
            request,
        })
    }
}

/// A cheap lower bound of the encoded size, to size the buffer once for big puts.
fn request_size_hint(request: &MvccRequest) -> usize {
    match request {
        MvccRequest::Put(put) => put.key.len() + put.value.len(),
        MvccRequest::Range(range) => range.key.len() + range.range_end.len(),
        MvccRequest::DeleteRange(delete) => delete.key.len() + delete.range_end.len(),
        MvccRequest::Txn(_) | MvccRequest::Compact(_) => 0,
    }
}

// ---- writing ----

/// Where the writers below put bytes: a buffer, a byte counter (to size a buffer exactly
/// before filling it) or a streaming snapshot writer. Two methods suffice, which keeps each
/// format written by exactly one piece of code whatever the destination.
pub(crate) trait Out {
    fn write_u8(&mut self, byte: u8);
    fn write_slice(&mut self, bytes: &[u8]);

    /// If this destination only counts bytes, counts `len` more and returns true, so a
    /// caller can skip producing them (reading a value back from the value log just to
    /// measure a snapshot). Others return false and must be given the bytes.
    fn skip(&mut self, _len: usize) -> bool {
        false
    }
}

impl Out for BytesMut {
    fn write_u8(&mut self, byte: u8) {
        self.put_u8(byte);
    }

    fn write_slice(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Counts the bytes a writer would produce, without storing them.
#[derive(Default)]
pub(crate) struct ByteCount(pub(crate) usize);

impl Out for ByteCount {
    fn write_u8(&mut self, _byte: u8) {
        self.0 += 1;
    }

    fn write_slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn skip(&mut self, len: usize) -> bool {
        self.0 += len;
        true
    }
}

pub(crate) fn put_uvarint(out: &mut impl Out, mut value: u64) {
    while value >= 0x80 {
        out.write_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.write_u8(value as u8);
}

pub(crate) fn put_ivarint(out: &mut impl Out, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

pub(crate) fn put_bytes(out: &mut impl Out, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.write_slice(bytes);
}

fn put_bool(out: &mut impl Out, value: bool) {
    out.write_u8(u8::from(value));
}

fn flags(bits: &[bool]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0, |acc, (bit, set)| acc | (u8::from(*set) << bit))
}

fn put_request(out: &mut impl Out, request: &MvccRequest) {
    match request {
        MvccRequest::Range(range) => {
            out.write_u8(TAG_RANGE);
            put_range(out, range);
        }
        MvccRequest::Put(put) => {
            out.write_u8(TAG_PUT);
            put_put(out, put);
        }
        MvccRequest::DeleteRange(delete) => {
            out.write_u8(TAG_DELETE_RANGE);
            put_delete(out, delete);
        }
        MvccRequest::Txn(txn) => {
            out.write_u8(TAG_TXN);
            put_txn(out, txn);
        }
        MvccRequest::Compact(compact) => {
            out.write_u8(TAG_COMPACT);
            put_ivarint(out, compact.revision);
            put_bool(out, compact.physical);
        }
    }
}

fn put_range(out: &mut impl Out, range: &RangeRequest) {
    put_bytes(out, &range.key);
    put_bytes(out, &range.range_end);
    put_ivarint(out, range.limit);
    put_ivarint(out, range.revision);
    out.write_u8(range.sort_order as u8);
    out.write_u8(range.sort_target as u8);
    out.write_u8(flags(&[
        range.serializable,
        range.keys_only,
        range.count_only,
    ]));
    put_ivarint(out, range.min_mod_revision);
    put_ivarint(out, range.max_mod_revision);
    put_ivarint(out, range.min_create_revision);
    put_ivarint(out, range.max_create_revision);
}

fn put_put(out: &mut impl Out, put: &PutRequest) {
    put_bytes(out, &put.key);
    put_bytes(out, &put.value);
    put_ivarint(out, put.lease);
    out.write_u8(flags(&[put.prev_kv, put.ignore_value, put.ignore_lease]));
}

fn put_delete(out: &mut impl Out, delete: &DeleteRangeRequest) {
    put_bytes(out, &delete.key);
    put_bytes(out, &delete.range_end);
    put_bool(out, delete.prev_kv);
}

fn put_txn(out: &mut impl Out, txn: &TxnRequest) {
    put_uvarint(out, txn.compare.len() as u64);
    for compare in &txn.compare {
        put_compare(out, compare);
    }
    for branch in [&txn.success, &txn.failure] {
        put_uvarint(out, branch.len() as u64);
        for op in branch {
            put_request_op(out, op);
        }
    }
}

fn put_compare(out: &mut impl Out, compare: &Compare) {
    out.write_u8(compare.result as u8);
    out.write_u8(compare.target as u8);
    put_bytes(out, &compare.key);
    match &compare.target_union {
        None => out.write_u8(0),
        Some(CompareTargetUnion::Version(version)) => {
            out.write_u8(1);
            put_ivarint(out, *version);
        }
        Some(CompareTargetUnion::CreateRevision(revision)) => {
            out.write_u8(2);
            put_ivarint(out, *revision);
        }
        Some(CompareTargetUnion::ModRevision(revision)) => {
            out.write_u8(3);
            put_ivarint(out, *revision);
        }
        Some(CompareTargetUnion::Value(value)) => {
            out.write_u8(4);
            put_bytes(out, value);
        }
        Some(CompareTargetUnion::Lease(lease)) => {
            out.write_u8(5);
            put_ivarint(out, *lease);
        }
    }
    put_bytes(out, &compare.range_end);
}

fn put_request_op(out: &mut impl Out, op: &RequestOp) {
    match op {
        RequestOp::Unset => out.write_u8(TAG_UNSET),
        RequestOp::Range(range) => {
            out.write_u8(TAG_RANGE);
            put_range(out, range);
        }
        RequestOp::Put(put) => {
            out.write_u8(TAG_PUT);
            put_put(out, put);
        }
        RequestOp::DeleteRange(delete) => {
            out.write_u8(TAG_DELETE_RANGE);
            put_delete(out, delete);
        }
        RequestOp::Txn(txn) => {
            out.write_u8(TAG_TXN);
            put_txn(out, txn);
        }
    }
}

pub(crate) fn put_kv(out: &mut impl Out, kv: &KeyValue) {
    put_bytes(out, &kv.key);
    put_ivarint(out, kv.create_revision);
    put_ivarint(out, kv.mod_revision);
    put_ivarint(out, kv.version);
    put_bytes(out, &kv.value);
    put_ivarint(out, kv.lease);
}

fn put_kvs(out: &mut impl Out, kvs: &[KeyValue]) {
    put_uvarint(out, kvs.len() as u64);
    for kv in kvs {
        put_kv(out, kv);
    }
}

fn put_header(out: &mut impl Out, header: &ResponseHeader) {
    put_ivarint(out, header.revision);
}

fn put_range_response(out: &mut impl Out, response: &RangeResponse) {
    put_header(out, &response.header);
    put_kvs(out, &response.kvs);
    put_bool(out, response.more);
    put_ivarint(out, response.count);
}

fn put_put_response(out: &mut impl Out, response: &PutResponse) {
    put_header(out, &response.header);
    match &response.prev_kv {
        None => out.write_u8(0),
        Some(kv) => {
            out.write_u8(1);
            put_kv(out, kv);
        }
    }
}

fn put_delete_response(out: &mut impl Out, response: &DeleteRangeResponse) {
    put_header(out, &response.header);
    put_ivarint(out, response.deleted);
    put_kvs(out, &response.prev_kvs);
}

fn put_txn_response(out: &mut impl Out, response: &TxnResponse) {
    put_header(out, &response.header);
    put_bool(out, response.succeeded);
    put_uvarint(out, response.responses.len() as u64);
    for op in &response.responses {
        match op {
            ResponseOp::Range(range) => {
                out.write_u8(TAG_RANGE);
                put_range_response(out, range);
            }
            ResponseOp::Put(put) => {
                out.write_u8(TAG_PUT);
                put_put_response(out, put);
            }
            ResponseOp::DeleteRange(delete) => {
                out.write_u8(TAG_DELETE_RANGE);
                put_delete_response(out, delete);
            }
            ResponseOp::Txn(txn) => {
                out.write_u8(TAG_TXN);
                put_txn_response(out, txn);
            }
        }
    }
}

/// Encodes a recorded outcome (for session records in snapshots).
pub(crate) fn put_result(out: &mut impl Out, result: &Result<MvccResponse, MvccError>) {
    match result {
        Ok(response) => {
            out.write_u8(0);
            match response {
                MvccResponse::Range(range) => {
                    out.write_u8(TAG_RANGE);
                    put_range_response(out, range);
                }
                MvccResponse::Put(put) => {
                    out.write_u8(TAG_PUT);
                    put_put_response(out, put);
                }
                MvccResponse::DeleteRange(delete) => {
                    out.write_u8(TAG_DELETE_RANGE);
                    put_delete_response(out, delete);
                }
                MvccResponse::Txn(txn) => {
                    out.write_u8(TAG_TXN);
                    put_txn_response(out, txn);
                }
                MvccResponse::Compact(compact) => {
                    out.write_u8(TAG_COMPACT);
                    put_header(out, &compact.header);
                }
            }
        }
        Err(error) => {
            out.write_u8(1);
            out.write_u8(error_code(error));
        }
    }
}

/// Error codes for recorded outcomes. `StaleSequence` and `Malformed` are never recorded (they
/// arise before a request is applied), so they get codes that decoding rejects.
fn error_code(error: &MvccError) -> u8 {
    match error {
        MvccError::EmptyKey => 1,
        MvccError::KeyNotFound => 2,
        MvccError::ValueProvided => 3,
        MvccError::LeaseProvided => 4,
        MvccError::TooManyOps => 5,
        MvccError::DuplicateKey => 6,
        MvccError::Compacted => 7,
        MvccError::FutureRevision => 8,
        MvccError::LeaseNotFound => 9,
        MvccError::StaleSequence => 0xfe,
        MvccError::Malformed(_) => 0xff,
    }
}

// ---- reading ----

/// A cursor over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader {
    input: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: &Bytes) -> Reader {
        Reader {
            input: bytes.clone(),
        }
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.input.has_remaining() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if !self.input.has_remaining() {
            return Err(DecodeError("truncated"));
        }
        Ok(self.input.get_u8())
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, DecodeError> {
        if self.input.remaining() < 4 {
            return Err(DecodeError("truncated"));
        }
        Ok(self.input.get_u32_le())
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.u8()?;
            if index == 9 && byte > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    pub(crate) fn ivarint(&mut self) -> Result<i64, DecodeError> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.uvarint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.input.remaining() => Ok(self.input.split_to(len)),
            _ => Err(DecodeError("length beyond the input")),
        }
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }

    /// A collection length. Every element takes at least one byte, so a count above the bytes
    /// left is a lie; checking it keeps allocations proportional to the input.
    pub(crate) fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.uvarint()?;
        match usize::try_from(count) {
            Ok(count) if count <= self.input.remaining() => Ok(count),
            _ => Err(DecodeError("count beyond the input")),
        }
    }

    fn flags(&mut self, known: u8) -> Result<[bool; 3], DecodeError> {
        let byte = self.u8()?;
        if byte & !known != 0 {
            return Err(DecodeError("unknown flag bits"));
        }
        Ok([byte & 1 != 0, byte & 2 != 0, byte & 4 != 0])
    }

    fn request(&mut self) -> Result<MvccRequest, DecodeError> {
        Ok(match self.u8()? {
            TAG_RANGE => MvccRequest::Range(self.range()?),
            TAG_PUT => MvccRequest::Put(self.put()?),
            TAG_DELETE_RANGE => MvccRequest::DeleteRange(self.delete()?),
            TAG_TXN => MvccRequest::Txn(self.txn(1)?),
            TAG_COMPACT => MvccRequest::Compact(CompactionRequest {
                revision: self.ivarint()?,
                physical: self.bool()?,
            }),
            _ => return Err(DecodeError("unknown mvcc request tag")),
        })
    }

    fn range(&mut self) -> Result<RangeRequest, DecodeError> {
        let key = self.bytes()?;
        let range_end = self.bytes()?;
        let limit = self.ivarint()?;
        let revision = self.ivarint()?;
        let sort_order = match self.u8()? {
            0 => SortOrder::None,
            1 => SortOrder::Ascend,
            2 => SortOrder::Descend,
            _ => return Err(DecodeError("unknown sort order")),
        };
        let sort_target = match self.u8()? {
            0 => SortTarget::Key,
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            _ => return Err(DecodeError("unknown sort target")),
        };
        let [serializable, keys_only, count_only] = self.flags(0b111)?;
        Ok(RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable,
            keys_only,
            count_only,
            min_mod_revision: self.ivarint()?,
            max_mod_revision: self.ivarint()?,
            min_create_revision: self.ivarint()?,
            max_create_revision: self.ivarint()?,
        })
    }

    fn put(&mut self) -> Result<PutRequest, DecodeError> {
        let key = self.bytes()?;
        let value = self.bytes()?;
        let lease = self.ivarint()?;
        let [prev_kv, ignore_value, ignore_lease] = self.flags(0b111)?;
        Ok(PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        })
    }

    fn delete(&mut self) -> Result<DeleteRangeRequest, DecodeError> {
        Ok(DeleteRangeRequest {
            key: self.bytes()?,
            range_end: self.bytes()?,
            prev_kv: self.bool()?,
        })
    }

    fn txn(&mut self, depth: usize) -> Result<TxnRequest, DecodeError> {
        if depth > MAX_TXN_DEPTH {
            return Err(DecodeError("txn nested too deeply"));
        }
        let compares = self.count()?;
        let mut compare = Vec::new();
        for _ in 0..compares {
            compare.push(self.compare()?);
        }
        let mut branches = [Vec::new(), Vec::new()];
        for branch in &mut branches {
            let ops = self.count()?;
            for _ in 0..ops {
                branch.push(self.request_op(depth)?);
            }
        }
        let [success, failure] = branches;
        Ok(TxnRequest {
            compare,
            success,
            failure,
        })
    }

    fn compare(&mut self) -> Result<Compare, DecodeError> {
        let result = match self.u8()? {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            _ => return Err(DecodeError("unknown compare result")),
        };
        let target = match self.u8()? {
            0 => CompareTarget::Version,
            1 => CompareTarget::Create,
            2 => CompareTarget::Mod,
            3 => CompareTarget::Value,
            4 => CompareTarget::Lease,
            _ => return Err(DecodeError("unknown compare target")),
        };
        let key = self.bytes()?;
        let target_union = match self.u8()? {
            0 => None,
            1 => Some(CompareTargetUnion::Version(self.ivarint()?)),
            2 => Some(CompareTargetUnion::CreateRevision(self.ivarint()?)),
            3 => Some(CompareTargetUnion::ModRevision(self.ivarint()?)),
            4 => Some(CompareTargetUnion::Value(self.bytes()?)),
            5 => Some(CompareTargetUnion::Lease(self.ivarint()?)),
            _ => return Err(DecodeError("unknown compare target union")),
        };
        Ok(Compare {
            result,
            target,
            key,
            target_union,
            range_end: self.bytes()?,
        })
    }

    fn request_op(&mut self, depth: usize) -> Result<RequestOp, DecodeError> {
        Ok(match self.u8()? {
            TAG_UNSET => RequestOp::Unset,
            TAG_RANGE => RequestOp::Range(self.range()?),
            TAG_PUT => RequestOp::Put(self.put()?),
            TAG_DELETE_RANGE => RequestOp::DeleteRange(self.delete()?),
            TAG_TXN => RequestOp::Txn(self.txn(depth + 1)?),
            _ => return Err(DecodeError("unknown txn operation tag")),
        })
    }

    pub(crate) fn kv(&mut self) -> Result<KeyValue, DecodeError> {
        Ok(KeyValue {
            key: self.bytes()?,
            create_revision: self.ivarint()?,
            mod_revision: self.ivarint()?,
            version: self.ivarint()?,
            value: self.bytes()?,
            lease: self.ivarint()?,
        })
    }

    fn kvs(&mut self) -> Result<Vec<KeyValue>, DecodeError> {
        let count = self.count()?;
        let mut kvs = Vec::new();
        for _ in 0..count {
            kvs.push(self.kv()?);
        }
        Ok(kvs)
    }

    fn header(&mut self) -> Result<ResponseHeader, DecodeError> {
        Ok(ResponseHeader {
            revision: self.ivarint()?,
        })
    }

    fn range_response(&mut self) -> Result<RangeResponse, DecodeError> {
        Ok(RangeResponse {
            header: self.header()?,
            kvs: self.kvs()?,
            more: self.bool()?,
            count: self.ivarint()?,
        })
    }

    fn put_response(&mut self) -> Result<PutResponse, DecodeError> {
        let header = self.header()?;
        let prev_kv = match self.u8()? {
            0 => None,
            1 => Some(self.kv()?),
            _ => return Err(DecodeError("bad prev_kv marker")),
        };
        Ok(PutResponse { header, prev_kv })
    }

    fn delete_response(&mut self) -> Result<DeleteRangeResponse, DecodeError> {
        Ok(DeleteRangeResponse {
            header: self.header()?,
            deleted: self.ivarint()?,
            prev_kvs: self.kvs()?,
        })
    }

    fn txn_response(&mut self, depth: usize) -> Result<TxnResponse, DecodeError> {
        if depth > MAX_TXN_DEPTH {
            return Err(DecodeError("txn response nested too deeply"));
        }
        let header = self.header()?;
        let succeeded = self.bool()?;
        let count = self.count()?;
        let mut responses = Vec::new();
        for _ in 0..count {
            responses.push(match self.u8()? {
                TAG_RANGE => ResponseOp::Range(self.range_response()?),
                TAG_PUT => ResponseOp::Put(self.put_response()?),
                TAG_DELETE_RANGE => ResponseOp::DeleteRange(self.delete_response()?),
                TAG_TXN => ResponseOp::Txn(self.txn_response(depth + 1)?),
                _ => return Err(DecodeError("unknown txn response tag")),
            });
        }
        Ok(TxnResponse {
            header,
            succeeded,
            responses,
        })
    }

    /// Decodes an outcome written by [`put_result`].
    pub(crate) fn result(&mut self) -> Result<Result<MvccResponse, MvccError>, DecodeError> {
        match self.u8()? {
            0 => Ok(Ok(match self.u8()? {
                TAG_RANGE => MvccResponse::Range(self.range_response()?),
                TAG_PUT => MvccResponse::Put(self.put_response()?),
                TAG_DELETE_RANGE => MvccResponse::DeleteRange(self.delete_response()?),
                TAG_TXN => MvccResponse::Txn(self.txn_response(1)?),
                TAG_COMPACT => MvccResponse::Compact(CompactionResponse {
                    header: self.header()?,
                }),
                _ => return Err(DecodeError("unknown response tag")),
            })),
            1 => Ok(Err(match self.u8()? {
                1 => MvccError::EmptyKey,
                2 => MvccError::KeyNotFound,
                3 => MvccError::ValueProvided,
                4 => MvccError::LeaseProvided,
                5 => MvccError::TooManyOps,
                6 => MvccError::DuplicateKey,
                7 => MvccError::Compacted,
                8 => MvccError::FutureRevision,
                9 => MvccError::LeaseNotFound,
                _ => return Err(DecodeError("unknown recorded error")),
            })),
            _ => Err(DecodeError("bad result marker")),
        }
    }
}
