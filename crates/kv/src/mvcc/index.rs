//! The key index: per key, the ordered list of its changes (etcd's `treeIndex` of
//! `keyIndex`es, with the values kept beside the revisions so a read needs one lookup).

use super::types::KeyValue;
use super::values::{Spill, StoredValue, StoredValueRef, ValueRef, load};
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
/// 48 bytes plus the value's own buffer (none when the value is in the store's value log):
/// the sub-revision is kept in 32 bits and the lease is not stored at all in the common case
/// (see [`Rest`]), and an inline value is an exact boxed slice (16 bytes, against 32 for a
/// `Bytes`). The fields are private so that every entry is built in that one canonical form,
/// which keeps the derived equality an equality of contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The put's mod_revision: `revision.main`.
    main: i64,
    /// The put's version (1 on create, +1 per put); 0 for a tombstone.
    pub(crate) version: i64,
    /// The put's create_revision; 0 for a tombstone.
    pub(crate) create_revision: i64,
    /// The sub-revision, the lease and the value.
    rest: Rest,
}

/// The rest of an [`Entry`], 24 bytes: the enum's tag shares a word with a 32-bit
/// sub-revision.
///
/// A sub-revision numbers the changes of one request, which are bounded by the request's
/// size and operation limits (see [`super::validate::DEFAULT_MAX_TXN_OPS`]), and a put with a
/// lease is refused (leases are not implemented), so nearly every entry is `Inline` or
/// `Logged`. A restored snapshot may still carry any sub-revision and lease; such an entry
/// keeps them in a [`Cold`] box, so nothing is ever refused or truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rest {
    /// Lease 0, the sub-revision fits in 32 bits, the value is in memory.
    Inline { sub: u32, value: Box<[u8]> },
    /// Lease 0, the sub-revision fits in 32 bits, the value is in the value log.
    Logged { sub: u32, at: ValueRef },
    /// Anything else: a nonzero lease or a sub-revision beyond 32 bits.
    Cold(Box<Cold>),
}

/// An [`Entry`]'s rare fields, out of line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cold {
    sub: i64,
    lease: i64,
    value: StoredValue,
}

impl Rest {
    /// The canonical form of these fields: `Cold` only when the others cannot hold them.
    fn new(sub: i64, lease: i64, value: StoredValue) -> Rest {
        match (u32::try_from(sub), lease, value) {
            (Ok(sub), 0, StoredValue::Inline(value)) => Rest::Inline { sub, value },
            (Ok(sub), 0, StoredValue::Logged(at)) => Rest::Logged { sub, at },
            (_, lease, value) => Rest::Cold(Box::new(Cold { sub, lease, value })),
        }
    }

    fn sub(&self) -> i64 {
        match self {
            Rest::Inline { sub, .. } | Rest::Logged { sub, .. } => i64::from(*sub),
            Rest::Cold(cold) => cold.sub,
        }
    }

    fn lease(&self) -> i64 {
        match self {
            Rest::Inline { .. } | Rest::Logged { .. } => 0,
            Rest::Cold(cold) => cold.lease,
        }
    }

    fn value(&self) -> StoredValueRef<'_> {
        match self {
            Rest::Inline { value, .. } => StoredValueRef::Inline(value),
            Rest::Logged { at, .. } => StoredValueRef::Logged(*at),
            Rest::Cold(cold) => cold.value.as_ref(),
        }
    }
}

impl Entry {
    /// A put of the key at `revision`.
    pub(crate) fn put(
        revision: Revision,
        version: i64,
        create_revision: i64,
        lease: i64,
        value: StoredValue,
    ) -> Entry {
        Entry {
            main: revision.main,
            version,
            create_revision,
            rest: Rest::new(revision.sub, lease, value),
        }
    }

    /// What etcd compares against when a compare's range holds no key: every field zero.
    pub(crate) fn zero() -> Entry {
        Entry::tombstone(Revision { main: 0, sub: 0 })
    }

    /// A delete of the key at `revision`.
    pub(crate) fn tombstone(revision: Revision) -> Entry {
        Entry::put(revision, 0, 0, 0, StoredValue::Inline(Box::default()))
    }

    /// When the change happened; `revision().main` is the put's mod_revision.
    pub(crate) fn revision(&self) -> Revision {
        Revision {
            main: self.main,
            sub: self.rest.sub(),
        }
    }

    /// The put's lease; 0 for a tombstone.
    pub(crate) fn lease(&self) -> i64 {
        self.rest.lease()
    }

    /// The put's value, or where the value log holds it; empty for a tombstone.
    pub(crate) fn value(&self) -> StoredValueRef<'_> {
        self.rest.value()
    }

    /// Replaces the put's value (moved between memory and a value log).
    pub(crate) fn set_value(&mut self, value: StoredValue) {
        self.rest = Rest::new(self.rest.sub(), self.rest.lease(), value);
    }

    /// Whether this change is a put (else a tombstone).
    pub(crate) fn is_put(&self) -> bool {
        self.version != 0
    }

    /// The put's mod_revision.
    pub(crate) fn mod_revision(&self) -> i64 {
        self.main
    }

    /// The [`KeyValue`] of this put, for an answer. Shares `key`'s buffer and an inline
    /// value's; a logged value is read back from `spill`'s log (panicking if that fails, see
    /// [`super::ValueLog`]).
    pub(crate) fn kv(&self, key: &Bytes, spill: Option<&Spill>) -> KeyValue {
        KeyValue {
            value: load(spill, self.value()),
            ..self.kv_without_value(key)
        }
    }

    /// The [`KeyValue`] of this put with an empty value, for answers that need no value
    /// (`keys_only`) or fill it in later.
    pub(crate) fn kv_without_value(&self, key: &Bytes) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.main,
            version: self.version,
            value: Bytes::new(),
            lease: self.lease(),
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
        if last.main <= main {
            // The common case: reading the current revision.
            return Some(last).filter(|entry| entry.is_put());
        }
        let after = self.entries.partition_point(|entry| entry.main <= main);
        let index = after.checked_sub(1)?;
        Some(&self.entries[index]).filter(|entry| entry.is_put())
    }

    /// Appends a change, growing the list by half (not double) when full, from an exact
    /// capacity of one: most keys have few revisions, and a doubling `Vec` would leave up to
    /// half of every history's slots (48 bytes each) unused.
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
    use super::{Entry, Rest, Revision, StoredValue, StoredValueRef, ValueRef};

    /// One entry per retained revision: its size is the store's memory per revision.
    #[test]
    fn an_entry_stays_48_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    /// Every field reads back as given, in the compact form when it fits and out of line
    /// when it does not (a restored snapshot may carry any sub-revision and lease).
    #[test]
    fn entries_keep_every_field_in_canonical_form() {
        let logged = ValueRef {
            offset: u64::MAX,
            len: u32::MAX,
        };
        let cases = [
            (3, 0, StoredValue::Inline(b"v".as_slice().into()), false),
            (i64::from(u32::MAX), 0, StoredValue::Logged(logged), false),
            (
                i64::from(u32::MAX) + 1,
                0,
                StoredValue::Logged(logged),
                true,
            ),
            (i64::MAX, 0, StoredValue::Inline(Box::default()), true),
            (0, 7, StoredValue::Inline(b"v".as_slice().into()), true),
            (0, -1, StoredValue::Logged(logged), true),
        ];
        for (sub, lease, value, cold) in cases {
            let revision = Revision { main: 9, sub };
            let mut entry = Entry::put(revision, 2, 5, lease, value.clone());
            assert_eq!(matches!(entry.rest, Rest::Cold(_)), cold, "{entry:?}");
            assert_eq!(entry.revision(), revision);
            assert_eq!(entry.mod_revision(), 9);
            assert_eq!((entry.version, entry.create_revision), (2, 5));
            assert_eq!(entry.lease(), lease);
            assert_eq!(entry.value(), value.as_ref());
            assert_eq!(entry, Entry::put(revision, 2, 5, lease, value.clone()));

            // Moving the value keeps the other fields and the canonical form.
            let other = match value {
                StoredValue::Inline(_) => StoredValue::Logged(logged),
                StoredValue::Logged(_) => StoredValue::Inline(b"w".as_slice().into()),
            };
            entry.set_value(other.clone());
            assert_eq!(entry, Entry::put(revision, 2, 5, lease, other));
        }
        let zero = Entry::zero();
        assert!(!zero.is_put());
        assert_eq!(zero.revision(), Revision { main: 0, sub: 0 });
        assert_eq!((zero.create_revision, zero.lease()), (0, 0));
        assert_eq!(zero.value(), StoredValueRef::Inline(&[]));
    }
}
