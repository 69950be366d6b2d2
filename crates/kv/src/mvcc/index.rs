//! The key index: per key, the ordered list of its changes (etcd's `treeIndex` of
//! `keyIndex`es, with the values kept beside the revisions so a read needs one lookup).

use super::types::KeyValue;
use super::values::{Spill, StoredValue, load};
use bytes::Bytes;
use std::ops::Bound;
use std::sync::Arc;

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

/// One change of a key: a put, or a delete (a tombstone, `version == 0`).
///
/// Kept compact because there is one per retained revision: the key is not repeated (the
/// index's map key holds it; [`Entry::kv`] rebuilds a [`KeyValue`] for answers), and a
/// tombstone is marked by version 0, which no put has (a put's version is at least 1).
/// 72 bytes plus the value's own buffer (none when the value is in the store's value log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// When the change happened; `revision.main` is the put's mod_revision.
    pub(crate) revision: Revision,
    /// The put's version (1 on create, +1 per put); 0 for a tombstone.
    pub(crate) version: i64,
    /// The put's create_revision; 0 for a tombstone.
    pub(crate) create_revision: i64,
    /// The put's lease; 0 for a tombstone.
    pub(crate) lease: i64,
    /// The put's value, or where the value log holds it; empty for a tombstone.
    pub(crate) value: StoredValue,
}

impl Entry {
    /// What etcd compares against when a compare's range holds no key: every field zero.
    pub(crate) const ZERO: Entry = Entry {
        revision: Revision { main: 0, sub: 0 },
        version: 0,
        create_revision: 0,
        lease: 0,
        value: StoredValue::Inline(Bytes::new()),
    };

    /// A delete of the key at `revision`.
    pub(crate) fn tombstone(revision: Revision) -> Entry {
        Entry {
            revision,
            ..Entry::ZERO
        }
    }

    /// Whether this change is a put (else a tombstone).
    pub(crate) fn is_put(&self) -> bool {
        self.version != 0
    }

    /// The put's mod_revision.
    pub(crate) fn mod_revision(&self) -> i64 {
        self.revision.main
    }

    /// The [`KeyValue`] of this put, for an answer. Shares `key`'s buffer and an inline
    /// value's; a logged value is read back from `spill`'s log (panicking if that fails, see
    /// [`super::ValueLog`]).
    pub(crate) fn kv(&self, key: &Bytes, spill: Option<&Spill>) -> KeyValue {
        KeyValue {
            value: load(spill, &self.value),
            ..self.kv_without_value(key)
        }
    }

    /// The [`KeyValue`] of this put with an empty value, for answers that need no value
    /// (`keys_only`) or fill it in later.
    pub(crate) fn kv_without_value(&self, key: &Bytes) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.revision.main,
            version: self.version,
            value: Bytes::new(),
            lease: self.lease,
        }
    }
}

/// Every retained change of one key, in revision order.
///
/// Invariants (checked on restore): never empty; revisions strictly increase; the first entry
/// is a put; a tombstone always follows a put; a put after a put has version + 1 and the same
/// create_revision; a put after a tombstone has version 1 and create_revision = its revision.
/// After compaction at C at most one entry has `main <= C`, and it is a put.
///
/// The entries are shared copy-on-write (`Arc`), so cloning the store (a frozen copy to
/// serialize on another thread) copies one pointer per key instead of every revision; the
/// first change of a key after such a clone copies that key's entries once. Read access goes
/// through `Deref`; every change goes through [`KeyHistory::entries_mut`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    pub(crate) entries: Arc<Vec<Entry>>,
}

impl KeyHistory {
    /// The key's state now (including changes of a write in progress), if it exists.
    pub(crate) fn last_live(&self) -> Option<&Entry> {
        self.entries.last().filter(|entry| entry.is_put())
    }

    /// The key's state as of main revision `main`, if it existed then.
    pub(crate) fn live_at(&self, main: i64) -> Option<&Entry> {
        let last = self.entries.last()?;
        if last.revision.main <= main {
            // The common case: reading the current revision.
            return Some(last).filter(|entry| entry.is_put());
        }
        let after = self
            .entries
            .partition_point(|entry| entry.revision.main <= main);
        let index = after.checked_sub(1)?;
        Some(&self.entries[index]).filter(|entry| entry.is_put())
    }

    /// Appends a change, growing the list by half (not double) when full, from an exact
    /// capacity of one: most keys have few revisions, and a doubling `Vec` would leave up to
    /// half of every history's slots (72 bytes each) unused.
    pub(crate) fn push(&mut self, entry: Entry) {
        let entries = self.entries_mut();
        if entries.len() == entries.capacity() {
            entries.reserve_exact((entries.len() / 2).max(1));
        }
        entries.push(entry);
    }

    /// Gives back unused slots after compaction removed entries, when they are many.
    pub(crate) fn shrink_after_removal(&mut self) {
        if self.entries.capacity() > self.entries.len() + self.entries.len() / 2 + 1 {
            self.entries_mut().shrink_to_fit();
        }
    }

    /// The entries for changing them, copied first if a clone of the store shares them.
    pub(crate) fn entries_mut(&mut self) -> &mut Vec<Entry> {
        Arc::make_mut(&mut self.entries)
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

#[cfg(test)]
mod tests {
    use super::Entry;

    /// One entry per retained revision: its size is the store's memory per revision.
    #[test]
    fn an_entry_stays_72_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 72);
    }
}
