//! The request checks etcd makes before a request enters the Raft log
//! (`etcdserver/api/v3rpc/key.go`: `checkRangeRequest`, `checkPutRequest`, `checkTxnRequest`,
//! `checkIntervals`), in etcd's order so the same request fails with the same error.
//!
//! The server runs them before proposing ([`MvccRequest::validate`]); `apply` runs them again
//! (without the per-member operation limit) so a request that bypassed the server still cannot
//! put the store in a state etcd would never reach.

use super::error::MvccError;
use super::types::{
    DeleteRangeRequest, MvccRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use bytes::Bytes;
use std::collections::BTreeSet;

/// etcd's default `--max-txn-ops`: the most compares, or operations per branch, in one
/// transaction (nested transactions share the budget).
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// The deepest transaction nesting accepted (a top-level transaction has depth 1).
///
/// etcd's default operation budget already limits nesting to 128 levels; a fixed bound keeps
/// recursion in validation, apply and decoding bounded whatever limit the server configures.
pub const MAX_TXN_DEPTH: usize = 128;

impl MvccRequest {
    /// Runs etcd's pre-proposal checks with the server's `max_txn_ops` limit.
    ///
    /// A request that passes is applied the same way on every member; one that fails should
    /// be answered with the error at once instead of being proposed.
    pub fn validate(&self, max_txn_ops: usize) -> Result<(), MvccError> {
        check_request(self, max_txn_ops)
    }
}

/// The checks shared by [`MvccRequest::validate`] and apply.
pub(crate) fn check_request(request: &MvccRequest, max_txn_ops: usize) -> Result<(), MvccError> {
    match request {
        MvccRequest::Range(range) => check_range(range),
        MvccRequest::Put(put) => check_put(put),
        MvccRequest::DeleteRange(delete) => check_delete(delete),
        MvccRequest::Txn(txn) => {
            check_txn(txn, max_txn_ops, 1)?;
            // After the cheap checks, as etcd does, to avoid quadratic work on bad requests.
            check_intervals(&txn.success)?;
            check_intervals(&txn.failure)?;
            Ok(())
        }
        MvccRequest::Compact(_) => Ok(()),
    }
}

pub(crate) fn check_range(request: &RangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

pub(crate) fn check_put(request: &PutRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

pub(crate) fn check_delete(request: &DeleteRangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

fn check_txn(request: &TxnRequest, max_ops: usize, depth: usize) -> Result<(), MvccError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if ops > max_ops || depth > MAX_TXN_DEPTH {
        return Err(MvccError::TooManyOps);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        check_op(op, max_ops - ops, depth)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize, depth: usize) -> Result<(), MvccError> {
    match op {
        RequestOp::Range(range) => check_range(range),
        RequestOp::Put(put) => check_put(put),
        RequestOp::DeleteRange(delete) => check_delete(delete),
        RequestOp::Txn(txn) => check_txn(txn, max_ops, depth + 1),
        RequestOp::Unset => Err(MvccError::KeyNotFound),
    }
}

/// A deleted key range as etcd's duplicate check sees it (an `adt` affine interval).
enum Deleted {
    /// `key` alone.
    Point(Bytes),
    /// [`key`, `range_end`) taken literally: etcd does not translate `\0` here, so a from-key
    /// delete (`range_end` = `\0`) overlaps nothing and is never reported as a duplicate.
    Range(Bytes, Bytes),
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        match self {
            Deleted::Point(point) => point.as_ref() == key,
            Deleted::Range(start, end) => start.as_ref() <= key && key < end.as_ref(),
        }
    }
}

fn deleted_contains(deleted: &[Deleted], key: &[u8]) -> bool {
    deleted.iter().any(|range| range.contains(key))
}

/// etcd's `checkIntervals`: within one branch (including nested transactions), a key may be
/// put once and must not be both put and deleted. Puts of the same key in the success and
/// failure branches of one nested transaction are fine: only one of them runs.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Deleted>), MvccError> {
    let mut deleted: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) if delete.range_end.is_empty() => {
                Some(Deleted::Point(delete.key.clone()))
            }
            RequestOp::DeleteRange(delete) => {
                Some(Deleted::Range(delete.key.clone(), delete.range_end.clone()))
            }
            _ => None,
        })
        .collect();

    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(txn) = op else { continue };
        let (puts_then, deleted_then) = check_intervals(&txn.success)?;
        let (puts_else, deleted_else) = check_intervals(&txn.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted_contains(&deleted, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if puts.contains(&key) && !puts_then.contains(&key) {
                return Err(MvccError::DuplicateKey);
            }
            if deleted_contains(&deleted, &key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key);
        }
        // etcd unions only intervals that intersect ["\0", ∞); the ones it leaves out (ending
        // at "\0") overlap no key anyway, so taking all of them decides the same.
        deleted.extend(deleted_then);
        deleted.extend(deleted_else);
    }

    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || deleted_contains(&deleted, &put.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deleted))
}
