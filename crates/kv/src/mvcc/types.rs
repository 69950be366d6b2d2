//! The messages of etcd's KV service as plain Rust values.
//!
//! Field names follow etcd 3.4's protobuf (`etcdserverpb/rpc.proto`, `mvccpb/kv.proto`) so the
//! gRPC layer can map them one to one. Responses carry a [`ResponseHeader`] with only the
//! revision: cluster id, member id and raft term describe the member that answers, which the
//! state machine does not know, so the server fills them in.

use bytes::Bytes;

/// One key's state at one revision (`mvccpb.KeyValue`), exactly what etcd returns to clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key; never empty for a stored key.
    pub key: Bytes,
    /// The revision of the put that created the key in its current life (a delete ends a
    /// life; the next put starts a new one with a new `create_revision`).
    pub create_revision: i64,
    /// The revision of the last put to the key.
    pub mod_revision: i64,
    /// How many puts the key has had in its current life: 1 on create, +1 per put.
    pub version: i64,
    /// The value; empty in a `keys_only` answer.
    pub value: Bytes,
    /// The lease the key is attached to; 0 means none (leases are not supported yet, so this
    /// is always 0 today).
    pub lease: i64,
}

/// The part of etcd's `ResponseHeader` the state machine knows.
///
/// The server adds cluster_id, member_id and raft_term, which belong to the answering member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The store revision the answer reflects, following etcd's rules per operation (for a
    /// write: the revision after it; for a read: the current revision, even for a historical
    /// read; 0 for a transaction nested inside another, as etcd 3.4 leaves it).
    pub revision: i64,
}

/// The order of a Range's results (`RangeRequest.SortOrder`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SortOrder {
    /// Key order, unless `sort_target` is not KEY: then etcd sorts ascending.
    #[default]
    None = 0,
    /// Ascending by the sort target.
    Ascend = 1,
    /// Descending by the sort target.
    Descend = 2,
}

/// The field a Range sorts by (`RangeRequest.SortTarget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SortTarget {
    /// By key (bytewise).
    #[default]
    Key = 0,
    /// By version.
    Version = 1,
    /// By create_revision.
    Create = 2,
    /// By mod_revision.
    Mod = 3,
    /// By value (bytewise).
    Value = 4,
}

/// Reads the keys in a range at a revision (`RangeRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// The first key; must not be empty (`etcdserver: key is not provided`).
    pub key: Bytes,
    /// Empty: only `key`. The single byte `\0`: every key >= `key`. Otherwise the half-open
    /// range [`key`, `range_end`) in byte order (see [`prefix_range_end`] for prefixes).
    pub range_end: Bytes,
    /// At most this many kvs (0 or negative: no limit); `more` tells if some were cut.
    pub limit: i64,
    /// Read at this revision (<= 0: the current one). Below the compacted revision fails with
    /// `Compacted`, above the current one with `FutureRevision`.
    pub revision: i64,
    /// The order of the results.
    pub sort_order: SortOrder,
    /// The field to sort by.
    pub sort_target: SortTarget,
    /// A local read instead of a linearizable one. The state machine ignores it: choosing how to
    /// read is the server's business; it is kept so requests map 1:1.
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only `count`, no kvs.
    pub count_only: bool,
    /// Drop kvs whose mod_revision is below this (0: no filter).
    pub min_mod_revision: i64,
    /// Drop kvs whose mod_revision is above this (0: no filter).
    pub max_mod_revision: i64,
    /// Drop kvs whose create_revision is below this (0: no filter).
    pub min_create_revision: i64,
    /// Drop kvs whose create_revision is above this (0: no filter).
    pub max_create_revision: i64,
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// `revision` is the current revision (also for historical reads).
    pub header: ResponseHeader,
    /// The matching kvs after filtering, sorting and `limit`.
    pub kvs: Vec<KeyValue>,
    /// Whether `limit` cut off some kvs.
    pub more: bool,
    /// How many keys are in the range at the read revision, before `limit` and before the
    /// min/max revision filters (etcd counts first, then filters).
    pub count: i64,
}

/// Sets a key's value (`PutRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key; must not be empty.
    pub key: Bytes,
    /// The new value; must be empty when `ignore_value` is set.
    pub value: Bytes,
    /// The lease to attach; non-zero fails with `LeaseNotFound` because no lease exists yet.
    pub lease: i64,
    /// Return the key's previous kv in the response.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

/// The answer to a [`PutRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// `revision` is the revision of this put.
    pub header: ResponseHeader,
    /// The kv before the put, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Deletes the keys in a range (`DeleteRangeRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// The first key; must not be empty.
    pub key: Bytes,
    /// As in [`RangeRequest::range_end`].
    pub range_end: Bytes,
    /// Return the deleted kvs.
    pub prev_kv: bool,
}

/// The answer to a [`DeleteRangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// `revision` is the revision of the delete, or the unchanged current revision when it
    /// deleted nothing.
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted kvs in key order, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// The comparison of a [`Compare`] (`Compare.CompareResult`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompareResult {
    /// The key's field equals the given one.
    #[default]
    Equal = 0,
    /// The key's field is greater than the given one.
    Greater = 1,
    /// The key's field is less than the given one.
    Less = 2,
    /// The key's field differs from the given one.
    NotEqual = 3,
}

/// The field a [`Compare`] looks at (`Compare.CompareTarget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompareTarget {
    /// The key's version.
    #[default]
    Version = 0,
    /// The key's create_revision.
    Create = 1,
    /// The key's mod_revision.
    Mod = 2,
    /// The key's value.
    Value = 3,
    /// The key's lease.
    Lease = 4,
}

/// The value a [`Compare`] compares against (the protobuf `target_union` oneof).
///
/// etcd reads the variant matching `target` and uses 0 (or the empty value) when the union
/// holds another variant or nothing; [`Compare`] keeps both fields to reproduce that exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTargetUnion {
    /// Compared with the key's version.
    Version(i64),
    /// Compared with the key's create_revision.
    CreateRevision(i64),
    /// Compared with the key's mod_revision.
    ModRevision(i64),
    /// Compared with the key's value, bytewise.
    Value(Bytes),
    /// Compared with the key's lease.
    Lease(i64),
}

/// One condition of a transaction (`Compare`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compare {
    /// How to compare.
    pub result: CompareResult,
    /// Which field to compare.
    pub target: CompareTarget,
    /// The key; must not be empty.
    pub key: Bytes,
    /// The value to compare with (see [`CompareTargetUnion`] for the defaulting rule).
    pub target_union: Option<CompareTargetUnion>,
    /// Empty: only `key`; otherwise every key in [`key`, `range_end`) (`\0`: every key >= `key`)
    /// must satisfy the condition.
    pub range_end: Bytes,
}

impl Compare {
    /// A compare of `key`'s value, the common case in etcdctl's `val("k") = "v"`.
    pub fn value(key: impl Into<Bytes>, result: CompareResult, value: impl Into<Bytes>) -> Self {
        Self::with(
            key,
            CompareTarget::Value,
            result,
            CompareTargetUnion::Value(value.into()),
        )
    }

    /// A compare of `key`'s version (0 when absent), e.g. "the key does not exist yet".
    pub fn version(key: impl Into<Bytes>, result: CompareResult, version: i64) -> Self {
        Self::with(
            key,
            CompareTarget::Version,
            result,
            CompareTargetUnion::Version(version),
        )
    }

    /// A compare of `key`'s create_revision (0 when absent).
    pub fn create_revision(key: impl Into<Bytes>, result: CompareResult, revision: i64) -> Self {
        let union = CompareTargetUnion::CreateRevision(revision);
        Self::with(key, CompareTarget::Create, result, union)
    }

    /// A compare of `key`'s mod_revision (0 when absent), the basis of optimistic concurrency.
    pub fn mod_revision(key: impl Into<Bytes>, result: CompareResult, revision: i64) -> Self {
        Self::with(
            key,
            CompareTarget::Mod,
            result,
            CompareTargetUnion::ModRevision(revision),
        )
    }

    /// A compare of `key`'s lease (0 when absent or unleased).
    pub fn lease(key: impl Into<Bytes>, result: CompareResult, lease: i64) -> Self {
        Self::with(
            key,
            CompareTarget::Lease,
            result,
            CompareTargetUnion::Lease(lease),
        )
    }

    fn with(
        key: impl Into<Bytes>,
        target: CompareTarget,
        result: CompareResult,
        union: CompareTargetUnion,
    ) -> Self {
        Compare {
            result,
            target,
            key: key.into(),
            target_union: Some(union),
            range_end: Bytes::new(),
        }
    }

    /// The same compare over [`key`, `range_end`), as etcd 3.4 allows.
    pub fn with_range_end(mut self, range_end: impl Into<Bytes>) -> Self {
        self.range_end = range_end.into();
        self
    }
}

/// One operation of a transaction branch (`RequestOp`, whose `request` is a protobuf oneof).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read, seeing the effects of earlier operations of the same transaction.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction (etcd 3.4 supports them; their compares see the state before the
    /// outer transaction started).
    Txn(TxnRequest),
    /// The oneof was not set. Kept representable because etcd answers it with a specific error
    /// (`etcdserver: key not found`) at a specific point of its checks.
    Unset,
}

/// The answer to one [`RequestOp`] (`ResponseOp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// The answer to a Range.
    Range(RangeResponse),
    /// The answer to a Put.
    Put(PutResponse),
    /// The answer to a DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// The answer to a nested Txn.
    Txn(TxnResponse),
}

/// An atomic if/then/else over the store (`TxnRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions, ANDed; all evaluated against the state before the transaction.
    pub compare: Vec<Compare>,
    /// Run in order when every compare holds.
    pub success: Vec<RequestOp>,
    /// Run in order otherwise.
    pub failure: Vec<RequestOp>,
}

/// The answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// `revision` is the revision after the transaction: one more than before if anything
    /// changed, unchanged otherwise (0 for a nested transaction, as in etcd 3.4).
    pub header: ResponseHeader,
    /// Whether the compares held (so `success` ran).
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// Discards history up to a revision (`CompactionRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    /// Reads below this revision fail afterwards; reads at it still work.
    pub revision: i64,
    /// Whether the client waits for the data to be physically removed. This store removes it
    /// during apply, so the server may answer at once either way.
    pub physical: bool,
}

/// The answer to a [`CompactionRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    /// `revision` is the current revision (compaction does not create one).
    pub header: ResponseHeader,
}

/// A request to the MVCC state machine: what goes through the Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MvccRequest {
    /// A read; through the log it is linearizable without ReadIndex.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// A compaction.
    Compact(CompactionRequest),
}

/// The answer to an [`MvccRequest`], identical on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MvccResponse {
    /// The answer to a Range.
    Range(RangeResponse),
    /// The answer to a Put.
    Put(PutResponse),
    /// The answer to a DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// The answer to a Txn.
    Txn(TxnResponse),
    /// The answer to a Compact.
    Compact(CompactionResponse),
}

impl MvccResponse {
    /// The response header, so the server can fill in member fields without matching.
    pub fn header(&self) -> ResponseHeader {
        match self {
            MvccResponse::Range(response) => response.header,
            MvccResponse::Put(response) => response.header,
            MvccResponse::DeleteRange(response) => response.header,
            MvccResponse::Txn(response) => response.header,
            MvccResponse::Compact(response) => response.header,
        }
    }
}

/// An [`MvccRequest`] from a client session, the unit proposed to the Raft log.
///
/// A client that retries after a timeout or a redirect sends the same `(client_id, sequence)`
/// again; the store answers the retry from its session table instead of applying it twice
/// (see [`super::MvccStore::apply_command`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvccCommand {
    /// Identifies the client's session; 0 means "no session" (no deduplication).
    pub client_id: u64,
    /// Increases by one per new request of the session; a retry reuses the number.
    pub sequence: u64,
    /// What to do.
    pub request: MvccRequest,
}

impl RangeRequest {
    /// A read of [`key`, `range_end`) at the current revision with every option at its default.
    pub fn new(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        }
    }
}

impl PutRequest {
    /// A plain put of `value` under `key`.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }
}

impl DeleteRangeRequest {
    /// A delete of [`key`, `range_end`) without prev_kv.
    pub fn new(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        }
    }
}

impl From<RangeRequest> for RequestOp {
    fn from(request: RangeRequest) -> Self {
        RequestOp::Range(request)
    }
}

impl From<PutRequest> for RequestOp {
    fn from(request: PutRequest) -> Self {
        RequestOp::Put(request)
    }
}

impl From<DeleteRangeRequest> for RequestOp {
    fn from(request: DeleteRangeRequest) -> Self {
        RequestOp::DeleteRange(request)
    }
}

impl From<TxnRequest> for RequestOp {
    fn from(request: TxnRequest) -> Self {
        RequestOp::Txn(request)
    }
}

impl From<RangeRequest> for MvccRequest {
    fn from(request: RangeRequest) -> Self {
        MvccRequest::Range(request)
    }
}

impl From<PutRequest> for MvccRequest {
    fn from(request: PutRequest) -> Self {
        MvccRequest::Put(request)
    }
}

impl From<DeleteRangeRequest> for MvccRequest {
    fn from(request: DeleteRangeRequest) -> Self {
        MvccRequest::DeleteRange(request)
    }
}

impl From<TxnRequest> for MvccRequest {
    fn from(request: TxnRequest) -> Self {
        MvccRequest::Txn(request)
    }
}

impl From<CompactionRequest> for MvccRequest {
    fn from(request: CompactionRequest) -> Self {
        MvccRequest::Compact(request)
    }
}

/// The `range_end` that selects every key starting with `prefix`, computed as etcd's client
/// does (`clientv3.GetPrefixRangeEnd`), so `--prefix` reads here match etcdctl's.
///
/// Trailing 0xff bytes are dropped and the last remaining byte is incremented; a prefix of
/// only 0xff bytes (or an empty one) yields `\0`, meaning "every key >= prefix".
pub fn prefix_range_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}
