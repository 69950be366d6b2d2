//! The key index: per key, the ordered list of its changes (etcd's `treeIndex` of
//! `keyIndex`es, with the values kept beside the revisions so a read needs one lookup).

use super::types::KeyValue;
use bytes::Bytes;
use std::ops::Bound;

/// A point in the store's history: `main` is the revision of a write request, `sub` numbers
/// the changes inside it (etcd's `revision{main, sub}`), so several keys changed by one
/// transaction stay ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    /// The revision of the write request; what clients see as mod_revision.
    pub(crate) main: i64,
    /// The position of the change within that request, from 0.
    pub(crate) sub: i64,
}

/// One change of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// When the change happened.
    pub(crate) revision: Revision,
    /// The key's state after a put; `None` for a delete (a tombstone).
    pub(crate) kv: Option<KeyValue>,
}

/// Every retained change of one key, in revision order.
///
/// Invariants (checked on restore): never empty; revisions strictly increase; the first entry
/// is a put; a tombstone always follows a put; a put after a put has version + 1 and the same
/// create_revision; a put after a tombstone has version 1 and create_revision = its revision.
/// After compaction at C at most one entry has `main <= C`, and it is a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    pub(crate) entries: Vec<Entry>,
}

impl KeyHistory {
    /// The key's state now (including changes of a write in progress), if it exists.
    pub(crate) fn last_live(&self) -> Option<&KeyValue> {
        self.entries.last()?.kv.as_ref()
    }

    /// The key's state as of main revision `main`, if it existed then.
    pub(crate) fn live_at(&self, main: i64) -> Option<&KeyValue> {
        let last = self.entries.last()?;
        if last.revision.main <= main {
            // The common case: reading the current revision.
            return last.kv.as_ref();
        }
        let after = self
            .entries
            .partition_point(|entry| entry.revision.main <= main);
        let index = after.checked_sub(1)?;
        self.entries[index].kv.as_ref()
    }
}

/// The index bounds selecting etcd's key range: empty `range_end` = only `key`, `\0` = every
/// key >= `key`, otherwise [`key`, `range_end`) (empty when `range_end <= key`).
///
/// The bounds are always valid for `BTreeMap::range`, which panics on inverted ones.
pub(crate) fn key_bounds<'a>(
    key: &'a [u8],
    range_end: &'a [u8],
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if range_end.is_empty() {
        (Bound::Included(key), Bound::Included(key))
    } else if range_end == [0] {
        (Bound::Included(key), Bound::Unbounded)
    } else if range_end <= key {
        (Bound::Included(key), Bound::Excluded(key))
    } else {
        (Bound::Included(key), Bound::Excluded(range_end))
    }
}

/// Copies `bytes` into a buffer of their own.
///
/// Keys and values arriving in a request are often slices of a larger buffer (a decoded log
/// entry, a batch); storing such a slice would keep the whole buffer alive for as long as the
/// revision is retained.
pub(crate) fn owned(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}
