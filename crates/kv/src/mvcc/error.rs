//! Errors of the MVCC state machine.
//!
//! etcd's Go client turns a gRPC status into its typed error only when the message matches
//! exactly (`rpctypes.Error`), so every etcd error here displays etcd's gRPC message verbatim
//! and carries the gRPC code etcd uses; the server passes both through unchanged.

use crate::DecodeError;
use std::fmt;

/// Why an MVCC request failed. Every failure leaves the store unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MvccError {
    /// A Range, Put, DeleteRange or Compare has an empty key.
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on an absent key, or an unset transaction operation.
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    ValueProvided,
    /// `ignore_lease` together with a non-zero lease.
    LeaseProvided,
    /// A transaction has more compares or operations per branch than allowed (or is nested
    /// deeper than [`super::MAX_TXN_DEPTH`]).
    TooManyOps,
    /// A transaction branch puts a key twice or puts and deletes the same key.
    DuplicateKey,
    /// The requested revision was compacted away.
    Compacted,
    /// The requested revision is above the current one.
    FutureRevision,
    /// A put names a lease that does not exist; no lease exists yet in this store.
    LeaseNotFound,
    /// raftkv's own: the request's sequence is older than its session's last one, so this copy
    /// is a stale duplicate and was not applied. Never sent to a client as an etcd error.
    StaleSequence,
    /// raftkv's own: a log entry could not be decoded and was not applied.
    Malformed(DecodeError),
}

/// The gRPC status code etcd sends with an error, so the server need not keep its own table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrpcCode {
    /// Code 3: the request itself is wrong; retrying it cannot help.
    InvalidArgument = 3,
    /// Code 5: a named thing (a lease) does not exist.
    NotFound = 5,
    /// Code 9: the request does not fit the current state (stale session sequence).
    FailedPrecondition = 9,
    /// Code 11: a revision outside the readable window.
    OutOfRange = 11,
    /// Code 13: raftkv failed internally (an undecodable log entry).
    Internal = 13,
}

impl MvccError {
    /// etcd's gRPC code for this error.
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            MvccError::EmptyKey
            | MvccError::KeyNotFound
            | MvccError::ValueProvided
            | MvccError::LeaseProvided
            | MvccError::TooManyOps
            | MvccError::DuplicateKey => GrpcCode::InvalidArgument,
            MvccError::Compacted | MvccError::FutureRevision => GrpcCode::OutOfRange,
            MvccError::LeaseNotFound => GrpcCode::NotFound,
            MvccError::StaleSequence => GrpcCode::FailedPrecondition,
            MvccError::Malformed(_) => GrpcCode::Internal,
        }
    }

    /// The message without etcd's `etcdserver: ` prefix, as etcd's mvcc package spells it;
    /// watch cancel reasons use this form (`mvcc: required revision has been compacted`).
    pub fn mvcc_message(&self) -> String {
        let message = self.to_string();
        match message.strip_prefix("etcdserver: ") {
            Some(rest) => rest.to_owned(),
            None => message,
        }
    }
}

impl fmt::Display for MvccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            MvccError::EmptyKey => "etcdserver: key is not provided",
            MvccError::KeyNotFound => "etcdserver: key not found",
            MvccError::ValueProvided => "etcdserver: value is provided",
            MvccError::LeaseProvided => "etcdserver: lease is provided",
            MvccError::TooManyOps => "etcdserver: too many operations in txn request",
            MvccError::DuplicateKey => "etcdserver: duplicate key given in txn request",
            MvccError::Compacted => "etcdserver: mvcc: required revision has been compacted",
            MvccError::FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            MvccError::LeaseNotFound => "etcdserver: requested lease not found",
            MvccError::StaleSequence => "raftkv: stale request sequence (a newer one was applied)",
            MvccError::Malformed(error) => return write!(f, "raftkv: {error}"),
        };
        f.write_str(message)
    }
}

impl std::error::Error for MvccError {}

/// Why bytes are not a valid snapshot. Restoring never panics; it returns one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than the fixed header and checksum.
    TooShort,
    /// Does not start with the snapshot magic: not an MVCC snapshot at all.
    BadMagic,
    /// Written by a format version this build does not read.
    UnsupportedVersion(u8),
    /// The checksum does not match the contents: the bytes were damaged.
    ChecksumMismatch {
        /// The checksum stored in the snapshot.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The contents do not parse.
    Malformed(&'static str),
    /// The contents parse but break an invariant of the store.
    Inconsistent(&'static str),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::TooShort => f.write_str("mvcc snapshot: too short"),
            SnapshotError::BadMagic => f.write_str("mvcc snapshot: bad magic"),
            SnapshotError::UnsupportedVersion(version) => {
                write!(f, "mvcc snapshot: unsupported format version {version}")
            }
            SnapshotError::ChecksumMismatch { stored, computed } => write!(
                f,
                "mvcc snapshot: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            SnapshotError::Malformed(reason) => write!(f, "mvcc snapshot: malformed: {reason}"),
            SnapshotError::Inconsistent(reason) => {
                write!(f, "mvcc snapshot: inconsistent: {reason}")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<DecodeError> for SnapshotError {
    fn from(error: DecodeError) -> Self {
        SnapshotError::Malformed(error.0)
    }
}
