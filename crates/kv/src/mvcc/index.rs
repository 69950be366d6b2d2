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
/// 32 bytes plus the value's own buffer (none when the value is in the store's value log):
/// the version is kept in 32 bits, the create_revision as a 32-bit distance back from the
/// mod_revision, and the sub-revision, the lease and the value in 16 bytes (see [`Rest`]);
/// whatever does not fit goes to a [`Cold`] box with the full-width fields. The fields are
/// private so that every entry is built in that one canonical form, which keeps the derived
/// equality an equality of contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The put's mod_revision: `revision.main`.
    main: i64,
    /// The put's version (1 on create, +1 per put); 0 for a tombstone, and for a [`Cold`]
    /// entry (which holds the version itself).
    version: u32,
    /// `main - create_revision` for a put; 0 for a tombstone (create_revision 0) and for a
    /// [`Cold`] entry.
    create_back: u32,
    /// The sub-revision, the lease and the value.
    rest: Rest,
}

/// The rest of an [`Entry`], 16 bytes: the enum's tag shares a word with a 32-bit
/// sub-revision.
///
/// A sub-revision numbers the changes of one request, which are bounded by the request's
/// size and operation limits (see [`super::validate::DEFAULT_MAX_TXN_OPS`]), and a put with a
/// lease is refused (leases are not implemented), so nearly every entry is `Inline` or
/// `Logged`. A restored snapshot may still carry any sub-revision, lease, version or
/// create_revision; such an entry keeps them in a [`Cold`] box, so nothing is ever refused or
/// truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rest {
    /// Lease 0, the sub-revision fits in 32 bits, the value is in memory.
    Inline { sub: u32, value: InlineValue },
    /// Lease 0, the sub-revision fits in 32 bits, the value is in the value log at an offset
    /// below 2^40 and shorter than 2^24 bytes (see [`pack`]).
    Logged { sub: u32, at: u64 },
    /// Anything else: a nonzero lease, a sub-revision, version or create_revision beyond the
    /// compact fields, or a logged value beyond the packed reference.
    Cold(Box<Cold>),
}

/// An [`Entry`]'s fields when they do not fit the compact form, out of line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cold {
    sub: i64,
    lease: i64,
    version: i64,
    create_revision: i64,
    value: StoredValue,
}

/// An inline value behind a thin (one-word) pointer: `None` for the empty value (a
/// tombstone's), which thus allocates nothing, else the boxed bytes, never empty (one form
/// per value, so the derived equality compares contents).
#[derive(Clone, Debug, PartialEq, Eq)]
struct InlineValue(Option<Box<Box<[u8]>>>);

impl InlineValue {
    fn new(value: Box<[u8]>) -> InlineValue {
        InlineValue((!value.is_empty()).then(|| Box::new(value)))
    }

    fn as_slice(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |value| value)
    }
}

/// Bits of a packed [`ValueRef`] holding the length; the offset takes the other 40.
const LEN_BITS: u32 = 24;

/// A [`ValueRef`] in one word (offset below 2^40, length below 2^24), if it fits.
fn pack(at: ValueRef) -> Option<u64> {
    (at.offset < 1 << (64 - LEN_BITS) && at.len < 1 << LEN_BITS)
        .then(|| at.offset << LEN_BITS | u64::from(at.len))
}

fn unpack(at: u64) -> ValueRef {
    ValueRef {
        offset: at >> LEN_BITS,
        len: (at & ((1 << LEN_BITS) - 1)) as u32,
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
        let main = revision.main;
        // The compact form of the version and create_revision: a tombstone's create_revision
        // is 0, a put's at most 2^32 - 1 revisions before its mod_revision.
        let compact = u32::try_from(version).ok().and_then(|version| {
            let create_back = if version == 0 {
                (create_revision == 0).then_some(0)
            } else {
                main.checked_sub(create_revision)
                    .and_then(|back| u32::try_from(back).ok())
            };
            Some((version, create_back?))
        });
        let sub = u32::try_from(revision.sub).ok();
        let rest = match (compact, sub, lease, value) {
            (Some(_), Some(sub), 0, StoredValue::Inline(value)) => Rest::Inline {
                sub,
                value: InlineValue::new(value),
            },
            (Some(_), Some(sub), 0, StoredValue::Logged(at)) if pack(at).is_some() => {
                Rest::Logged {
                    sub,
                    at: pack(at).unwrap_or_default(),
                }
            }
            (_, _, lease, value) => {
                return Entry {
                    main,
                    version: 0,
                    create_back: 0,
                    rest: Rest::Cold(Box::new(Cold {
                        sub: revision.sub,
                        lease,
                        version,
                        create_revision,
                        value,
                    })),
                };
            }
        };
        let (version, create_back) = compact.unwrap_or_default();
        Entry {
            main,
            version,
            create_back,
            rest,
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
            sub: match &self.rest {
                Rest::Inline { sub, .. } | Rest::Logged { sub, .. } => i64::from(*sub),
                Rest::Cold(cold) => cold.sub,
            },
        }
    }

    /// The put's version (1 on create, +1 per put); 0 for a tombstone.
    pub(crate) fn version(&self) -> i64 {
        match &self.rest {
            Rest::Cold(cold) => cold.version,
            _ => i64::from(self.version),
        }
    }

    /// The put's create_revision; 0 for a tombstone.
    pub(crate) fn create_revision(&self) -> i64 {
        match &self.rest {
            Rest::Cold(cold) => cold.create_revision,
            _ if self.version == 0 => 0,
            _ => self.main - i64::from(self.create_back),
        }
    }

    /// The put's lease; 0 for a tombstone.
    pub(crate) fn lease(&self) -> i64 {
        match &self.rest {
            Rest::Inline { .. } | Rest::Logged { .. } => 0,
            Rest::Cold(cold) => cold.lease,
        }
    }

    /// The put's value, or where the value log holds it; empty for a tombstone.
    pub(crate) fn value(&self) -> StoredValueRef<'_> {
        match &self.rest {
            Rest::Inline { value, .. } => StoredValueRef::Inline(value.as_slice()),
            Rest::Logged { at, .. } => StoredValueRef::Logged(unpack(*at)),
            Rest::Cold(cold) => cold.value.as_ref(),
        }
    }

    /// Replaces the put's value (moved between memory and a value log).
    pub(crate) fn set_value(&mut self, value: StoredValue) {
        *self = Entry::put(
            self.revision(),
            self.version(),
            self.create_revision(),
            self.lease(),
            value,
        );
    }

    /// Whether this change is a put (else a tombstone).
    pub(crate) fn is_put(&self) -> bool {
        self.version() != 0
    }

    /// The put's mod_revision.
    pub(crate) fn mod_revision(&self) -> i64 {
        self.main
    }

    /// The [`KeyValue`] of this put, for an answer, with copies of `key` and of an inline
    /// value; a logged value is read back from `spill`'s log (panicking if that fails, see
    /// [`super::ValueLog`]).
    pub(crate) fn kv(&self, key: &[u8], spill: Option<&Spill>) -> KeyValue {
        KeyValue {
            value: load(spill, self.value()),
            ..self.kv_without_value(key)
        }
    }

    /// The [`KeyValue`] of this put with an empty value, for answers that need no value
    /// (`keys_only`) or fill it in later.
    pub(crate) fn kv_without_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: self.create_revision(),
            mod_revision: self.main,
            version: self.version(),
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
    /// half of every history's slots (32 bytes each) unused.
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
/// The bounds are never inverted, which ordered maps' `range` may panic on.
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

#[cfg(test)]
mod tests {
    use super::{Entry, Rest, Revision, StoredValue, StoredValueRef, ValueRef};

    /// One entry per retained revision: its size is the store's memory per revision.
    #[test]
    fn an_entry_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    /// Every field reads back as given, in the compact form when it fits and out of line
    /// when it does not (a restored snapshot may carry any sub-revision, lease, version and
    /// create_revision, and a value log may grow beyond what a packed reference holds).
    #[test]
    fn entries_keep_every_field_in_canonical_form() {
        let max = i64::from(u32::MAX);
        let main = 9 + max + 1;
        let logged = |offset: u64, len: u32| StoredValue::Logged(ValueRef { offset, len });
        let fits = logged((1 << 40) - 1, (1 << 24) - 1);
        let inline = || StoredValue::Inline(b"v".as_slice().into());
        // (sub, version, create_revision, lease, value, cold)
        let cases = [
            (3, 2, main - 1, 0, inline(), false),
            (max, 2, main - 1, 0, fits.clone(), false),
            (max + 1, 2, main - 1, 0, fits.clone(), true),
            (
                i64::MAX,
                2,
                main - 1,
                0,
                StoredValue::Inline(Box::default()),
                true,
            ),
            (-1, 2, main - 1, 0, inline(), true),
            (0, 2, main - 1, 7, inline(), true),
            (0, 2, main - 1, -1, fits.clone(), true),
            // The version: up to 2^32 - 1, not negative.
            (0, max, main - 1, 0, fits.clone(), false),
            (0, max + 1, main - 1, 0, fits.clone(), true),
            (0, -1, main - 1, 0, inline(), true),
            (0, i64::MAX, main - 1, 0, inline(), true),
            // The create_revision: at most 2^32 - 1 before the mod_revision, not after it.
            (0, 1, main, 0, inline(), false),
            (0, 1, main - max, 0, inline(), false),
            (0, 1, main - max - 1, 0, inline(), true),
            (0, 1, main + 1, 0, inline(), true),
            (0, 1, i64::MIN, 0, inline(), true),
            // A version 0 (a tombstone's) with a create_revision is not compact.
            (0, 0, 0, 0, StoredValue::Inline(Box::default()), false),
            (0, 0, main, 0, StoredValue::Inline(Box::default()), true),
            (0, 0, 0, 0, inline(), false),
            // The packed value reference: offset below 2^40, length below 2^24.
            (0, 1, main, 0, logged((1 << 40) - 1, 0), false),
            (0, 1, main, 0, logged(1 << 40, 0), true),
            (0, 1, main, 0, logged(0, (1 << 24) - 1), false),
            (0, 1, main, 0, logged(0, 1 << 24), true),
            (0, 1, main, 0, logged(u64::MAX, u32::MAX), true),
            (0, 1, main, 0, logged(0, 0), false),
        ];
        for (sub, version, create_revision, lease, value, cold) in cases {
            let revision = Revision { main, sub };
            let new = |value| Entry::put(revision, version, create_revision, lease, value);
            let mut entry = new(value.clone());
            assert_eq!(matches!(entry.rest, Rest::Cold(_)), cold, "{entry:?}");
            assert_eq!(entry.revision(), revision);
            assert_eq!(entry.mod_revision(), main);
            assert_eq!(entry.version(), version);
            assert_eq!(entry.create_revision(), create_revision);
            assert_eq!(entry.is_put(), version != 0);
            assert_eq!(entry.lease(), lease);
            assert_eq!(entry.value(), value.as_ref());
            assert_eq!(entry, new(value.clone()));

            // Moving the value keeps the other fields and the canonical form.
            for other in [
                StoredValue::Inline(b"w".as_slice().into()),
                StoredValue::Inline(Box::default()),
                logged(5, 6),
                logged(1 << 40, 6),
            ] {
                entry.set_value(other.clone());
                assert_eq!(entry.value(), other.as_ref());
                assert_eq!(entry, new(other));
            }
        }
        let zero = Entry::zero();
        assert!(!zero.is_put());
        assert!(!matches!(zero.rest, Rest::Cold(_)));
        assert_eq!(zero.revision(), Revision { main: 0, sub: 0 });
        assert_eq!((zero.version(), zero.create_revision()), (0, 0));
        assert_eq!(zero.lease(), 0);
        assert_eq!(zero.value(), StoredValueRef::Inline(&[]));
    }

    /// A tombstone allocates nothing: its empty value is no buffer.
    #[test]
    fn a_tombstone_holds_no_buffer() {
        let tombstone = Entry::tombstone(Revision { main: 5, sub: 1 });
        assert!(matches!(&tombstone.rest, Rest::Inline { value, .. } if value.0.is_none()));
        let empty = Entry::put(
            Revision { main: 5, sub: 1 },
            1,
            5,
            0,
            StoredValue::Inline(Box::default()),
        );
        assert!(matches!(&empty.rest, Rest::Inline { value, .. } if value.0.is_none()));
    }
}
