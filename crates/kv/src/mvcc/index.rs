//! The key index: per key, the ordered list of its changes (etcd's `treeIndex` of
//! `keyIndex`es, with the values kept beside the revisions so a read needs one lookup).

use super::types::KeyValue;
use super::values::{Spill, StoredValue, StoredValueRef, ValueRef, load};
use bytes::Bytes;
use std::borrow::Cow;
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
/// Kept compact because every key keeps its newest change as one (older changes are encoded
/// more tightly still, see [`KeyHistory`]), and a read builds one per change it finds: the key
/// is not repeated (the
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
/// There is one change per retained revision, so this is where a store's memory goes. The
/// newest change, which every write and every read at the current revision looks at, is kept
/// as an [`Entry`]; the older ones, which only reads at an older revision, compaction, hashes
/// and snapshots visit (each in one forward pass), are kept encoded back to back in one byte
/// buffer (see [`Record`]): about 10 bytes for a put whose value is in the value log, where
/// an `Entry` takes 32 plus its list's unused slots. etcd's `keyIndex` keeps 16 bytes per
/// revision in Go slices and walks them linearly too.
///
/// The history is shared copy-on-write (`Arc`), so cloning the store (a frozen copy to
/// serialize on another thread) copies one pointer per key instead of every revision; the
/// first change of a key after such a clone copies that key's history once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    inner: Arc<History>,
}

/// A [`KeyHistory`]'s contents. One form per sequence of changes (records are encoded the
/// same way whatever the order of pushes, pops and compactions that led to them), so the
/// derived equality is an equality of contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct History {
    /// Every change but the newest, as records.
    older: Vec<u8>,
    /// Where decoding may start in `older` besides its beginning: one per
    /// [`CHECKPOINT_EVERY`] records, boxed so that the many short histories pay one word.
    checkpoints: Option<Box<Checkpoints>>,
    /// How many records `older` holds (a key's buffer would need tens of gigabytes before
    /// this overflowed).
    older_count: u32,
    /// Whether `last` continues the newest record's life (a put right after a put, with the
    /// next version and the same create_revision): decided when it is pushed, while the
    /// change before it is still at hand, and used when it is encoded.
    last_continues: bool,
    /// The newest change; `None` only for an empty history.
    last: Option<Entry>,
}

/// How many records apart a history's checkpoints are: a read at an older revision binary
/// searches them and decodes at most this many records, instead of the whole history (etcd's
/// `keyIndex` walks back from the newest revision, so its cost grows with how far back the
/// read goes). One 32-byte checkpoint per 64 records of about 10 bytes is 5% more memory.
const CHECKPOINT_EVERY: u32 = if cfg!(test) { 4 } else { 64 };

/// A history's checkpoints, in record order, behind one box in [`History`] so that the many
/// histories without any pay one word instead of a `Vec`'s three.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Checkpoints(Vec<Checkpoint>);

/// A place in a history's records where decoding may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checkpoint {
    /// Where the record starts in the buffer.
    offset: usize,
    /// The record's main revision.
    main: i64,
    /// The decoder's state before the record (what a continuing record extends).
    previous: (i64, i64),
}

impl Checkpoint {
    /// The checkpoint of a record of `entry` at `offset`. Only a continuing record reads the
    /// state before it, which is then its own version - 1 and create_revision; any other
    /// record gets `(0, 0)`, so that equal records get equal checkpoints however they were
    /// built.
    fn of(entry: &Entry, continues: bool, offset: usize) -> Checkpoint {
        Checkpoint {
            offset,
            main: entry.main,
            previous: if continues {
                (entry.version() - 1, entry.create_revision())
            } else {
                (0, 0)
            },
        }
    }
}

/// The checkpoints of a buffer of records, rebuilt from scratch (after compaction re-encoded
/// it).
fn checkpoints_of(older: &[u8]) -> Option<Box<Checkpoints>> {
    let mut checkpoints = Vec::new();
    let mut records = Records::new(older);
    for index in 0u32.. {
        let offset = older.len() - records.remaining();
        let Some(record) = records.next() else { break };
        if index > 0 && index.is_multiple_of(CHECKPOINT_EVERY) {
            checkpoints.push(Checkpoint::of(&record.entry(), record.continues, offset));
        }
    }
    (!checkpoints.is_empty()).then(|| Box::new(Checkpoints(checkpoints)))
}

/// How a record gives its version and create_revision (the low two bits of its header).
const FORM_TOMBSTONE: u8 = 0;
/// A put with the previous record's version + 1 and its create_revision.
const FORM_CONTINUES: u8 = 1;
/// A put with version 1 and create_revision = its own revision.
const FORM_CREATES: u8 = 2;
/// Version and create_revision follow as signed varints.
const FORM_EXPLICIT: u8 = 3;
const FORM_MASK: u8 = 0b11;
/// A signed varint sub-revision follows (else it is 0).
const HAS_SUB: u8 = 1 << 2;
/// A signed varint lease follows (else it is 0).
const HAS_LEASE: u8 = 1 << 3;
/// Where the value is (bits 4 and 5): empty, inline (a length and the bytes follow) or in the
/// value log (an offset and a length follow).
const VALUE_EMPTY: u8 = 0;
const VALUE_INLINE: u8 = 1 << 4;
const VALUE_LOGGED: u8 = 2 << 4;
const VALUE_MASK: u8 = 0b11 << 4;

/// The most bytes a record takes besides an inline value's bytes: a header byte and at most
/// seven varints of at most 10 bytes.
const MAX_RECORD_HEAD: usize = 1 + 7 * 10;

/// A record's bytes before its inline value's, built on the stack so that the history's
/// buffer can grow by exactly what the record needs.
struct RecordHead {
    bytes: [u8; MAX_RECORD_HEAD],
    len: usize,
}

impl RecordHead {
    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.push(value as u8);
    }

    fn ivarint(&mut self, value: i64) {
        self.uvarint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Encodes `entry` as a record: a header byte, then the main revision as an unsigned varint
/// (a revision is never negative in a store), then only the fields the header says are not
/// implied, and last an inline value's bytes, returned apart. `continues`: the entry is a put
/// continuing the previous record's life.
fn encode(entry: &Entry, continues: bool) -> (RecordHead, &[u8]) {
    let revision = entry.revision();
    let (version, create_revision, lease) =
        (entry.version(), entry.create_revision(), entry.lease());
    let value = entry.value();
    let empty = matches!(value, StoredValueRef::Inline([]));
    let form = if version == 0 && create_revision == 0 && lease == 0 && empty {
        FORM_TOMBSTONE
    } else if continues {
        FORM_CONTINUES
    } else if version == 1 && create_revision == revision.main {
        FORM_CREATES
    } else {
        FORM_EXPLICIT
    };
    let value_bits = match value {
        StoredValueRef::Inline([]) => VALUE_EMPTY,
        StoredValueRef::Inline(_) => VALUE_INLINE,
        StoredValueRef::Logged(_) => VALUE_LOGGED,
    };
    let mut head = RecordHead {
        bytes: [0; MAX_RECORD_HEAD],
        len: 0,
    };
    head.push(
        form | if revision.sub != 0 { HAS_SUB } else { 0 }
            | if lease != 0 { HAS_LEASE } else { 0 }
            | value_bits,
    );
    head.uvarint(revision.main as u64);
    if revision.sub != 0 {
        head.ivarint(revision.sub);
    }
    if form == FORM_EXPLICIT {
        head.ivarint(version);
        head.ivarint(create_revision);
    }
    if lease != 0 {
        head.ivarint(lease);
    }
    match value {
        StoredValueRef::Inline(bytes) => {
            if !bytes.is_empty() {
                head.uvarint(bytes.len() as u64);
            }
            (head, bytes)
        }
        StoredValueRef::Logged(at) => {
            head.uvarint(at.offset);
            head.uvarint(u64::from(at.len));
            (head, &[])
        }
    }
}

/// Appends `entry`'s record to `out`, growing it by exactly the record's size if it must grow
/// at all, or by `grow_by` if that is more.
fn append_record(out: &mut Vec<u8>, entry: &Entry, continues: bool, grow_by: usize) {
    let (head, inline) = encode(entry, continues);
    let needed = head.len + inline.len();
    if out.capacity() - out.len() < needed {
        out.reserve_exact(needed.max(grow_by));
    }
    out.extend_from_slice(head.as_slice());
    out.extend_from_slice(inline);
}

/// One decoded record, its value borrowed from the buffer: scanning for a revision builds no
/// [`Entry`] (and copies no inline value) for the records it passes.
#[derive(Clone, Copy, Debug)]
struct Record<'a> {
    revision: Revision,
    version: i64,
    create_revision: i64,
    lease: i64,
    value: StoredValueRef<'a>,
    /// Whether it was encoded as continuing the record before it.
    continues: bool,
}

impl Record<'_> {
    fn entry(&self) -> Entry {
        Entry::put(
            self.revision,
            self.version,
            self.create_revision,
            self.lease,
            self.value.to_stored(),
        )
    }
}

/// Reads the records of a buffer [`encode`] wrote, front to back.
///
/// The buffer is the store's own memory, never input from outside (a snapshot is read into
/// entries by its own validating reader), so a buffer that does not decode is a bug here and
/// panics.
struct Records<'a> {
    bytes: &'a [u8],
    /// The previous record's version and create_revision, which a continuing record extends.
    previous: (i64, i64),
}

impl<'a> Records<'a> {
    fn new(bytes: &'a [u8]) -> Records<'a> {
        Records {
            bytes,
            previous: (0, 0),
        }
    }

    /// The records of `older` from `checkpoint` on.
    fn from_checkpoint(older: &'a [u8], checkpoint: &Checkpoint) -> Records<'a> {
        Records {
            bytes: &older[checkpoint.offset..],
            previous: checkpoint.previous,
        }
    }

    fn uvarint(&mut self) -> u64 {
        let mut value = 0u64;
        for (index, &byte) in self.bytes.iter().enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                self.bytes = &self.bytes[index + 1..];
                return value;
            }
        }
        unreachable!("a history record ends inside a varint");
    }

    fn ivarint(&mut self) -> i64 {
        let zigzag = self.uvarint();
        ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)
    }

    /// How many bytes are left: where the next record starts, from the buffer's end.
    fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let (&header, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        let main = self.uvarint() as i64;
        let sub = if header & HAS_SUB != 0 {
            self.ivarint()
        } else {
            0
        };
        let (version, create_revision) = match header & FORM_MASK {
            FORM_TOMBSTONE => (0, 0),
            FORM_CONTINUES => (self.previous.0 + 1, self.previous.1),
            FORM_CREATES => (1, main),
            _ => (self.ivarint(), self.ivarint()),
        };
        let lease = if header & HAS_LEASE != 0 {
            self.ivarint()
        } else {
            0
        };
        let value = match header & VALUE_MASK {
            VALUE_EMPTY => StoredValueRef::Inline(&[]),
            VALUE_INLINE => {
                let len = self.uvarint() as usize;
                let (bytes, rest) = self.bytes.split_at(len);
                self.bytes = rest;
                StoredValueRef::Inline(bytes)
            }
            _ => StoredValueRef::Logged(ValueRef {
                offset: self.uvarint(),
                len: self.uvarint() as u32,
            }),
        };
        self.previous = (version, create_revision);
        Some(Record {
            revision: Revision { main, sub },
            version,
            create_revision,
            lease,
            value,
            continues: header & FORM_MASK == FORM_CONTINUES,
        })
    }
}

/// A [`KeyHistory`]'s changes, oldest first: the older ones decoded (owned), the newest
/// borrowed.
pub(crate) struct HistoryIter<'a> {
    records: Records<'a>,
    last: Option<&'a Entry>,
}

impl<'a> Iterator for HistoryIter<'a> {
    type Item = Cow<'a, Entry>;

    fn next(&mut self) -> Option<Cow<'a, Entry>> {
        match self.records.next() {
            Some(record) => Some(Cow::Owned(record.entry())),
            None => self.last.take().map(Cow::Borrowed),
        }
    }
}

impl KeyHistory {
    /// A history of `entries`, in revision order (the [`KeyHistory`] invariants are the
    /// caller's to keep), with no unused capacity.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = Entry>) -> KeyHistory {
        let mut history = KeyHistory::default();
        for entry in entries {
            history.push(entry);
        }
        history.shrink_to_fit();
        history
    }

    /// How many changes are retained.
    pub(crate) fn len(&self) -> usize {
        self.inner.older_count as usize + usize::from(self.inner.last.is_some())
    }

    /// Whether no change is retained (only transiently, before the store drops the key).
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.last.is_none()
    }

    /// The newest change, a put or a tombstone.
    pub(crate) fn last(&self) -> Option<&Entry> {
        self.inner.last.as_ref()
    }

    /// The key's state now (including changes of a write in progress), if it exists.
    pub(crate) fn last_live(&self) -> Option<&Entry> {
        self.last().filter(|entry| entry.is_put())
    }

    /// Every change, oldest first.
    pub(crate) fn iter(&self) -> HistoryIter<'_> {
        HistoryIter {
            records: Records::new(&self.inner.older),
            last: self.inner.last.as_ref(),
        }
    }

    /// The key's state as of main revision `main`, if it existed then: borrowed when that is
    /// the newest change (the common case, a read at the current revision), else decoded from
    /// the last checkpoint at or before it.
    pub(crate) fn live_at(&self, main: i64) -> Option<Cow<'_, Entry>> {
        let last = self.last()?;
        if last.main <= main {
            return Some(Cow::Borrowed(last)).filter(|entry| entry.is_put());
        }
        let older = &self.inner.older;
        let start = self.inner.checkpoints.as_ref().and_then(|checkpoints| {
            let after = checkpoints
                .0
                .partition_point(|checkpoint| checkpoint.main <= main);
            after.checked_sub(1).map(|index| &checkpoints.0[index])
        });
        let records = match start {
            Some(checkpoint) => Records::from_checkpoint(older, checkpoint),
            None => Records::new(older),
        };
        let found = records
            .take_while(|record| record.revision.main <= main)
            .last()?;
        (found.version != 0).then(|| Cow::Owned(found.entry()))
    }

    /// Appends a change. The buffer grows by half (not double) when full: most keys have few
    /// changes, and doubling would leave up to half of every history unused.
    pub(crate) fn push(&mut self, entry: Entry) {
        let history = Arc::make_mut(&mut self.inner);
        let continues = history.last.as_ref().is_some_and(|last| {
            last.is_put()
                && entry.is_put()
                && last.version().checked_add(1) == Some(entry.version())
                && last.create_revision() == entry.create_revision()
        });
        if let Some(last) = history.last.take() {
            let index = history.older_count;
            if index > 0 && index.is_multiple_of(CHECKPOINT_EVERY) {
                let checkpoint = Checkpoint::of(&last, history.last_continues, history.older.len());
                history
                    .checkpoints
                    .get_or_insert_with(Box::default)
                    .0
                    .push(checkpoint);
            }
            let grow_by = history.older.len() / 2;
            append_record(&mut history.older, &last, history.last_continues, grow_by);
            history.older_count = index
                .checked_add(1)
                .expect("a key keeps fewer than 2^32 changes");
        }
        history.last = Some(entry);
        history.last_continues = continues;
    }

    /// Removes and returns the newest change (undoing a write). Decodes the older changes to
    /// find the one before it, so it costs a pass over the history: only a rare rollback
    /// needs it.
    pub(crate) fn pop(&mut self) -> Option<Entry> {
        let history = Arc::make_mut(&mut self.inner);
        let popped = history.last.take()?;
        let mut records = Records::new(&history.older);
        let mut newest = None;
        let mut start = 0;
        loop {
            let before = records.remaining();
            let Some(record) = records.next() else { break };
            start = history.older.len() - before;
            newest = Some(record);
        }
        if let Some(record) = newest {
            history.last = Some(record.entry());
            history.last_continues = record.continues;
            history.older.truncate(start);
            history.older_count -= 1;
            if let Some(checkpoints) = &mut history.checkpoints {
                checkpoints.0.retain(|checkpoint| checkpoint.offset < start);
                if checkpoints.0.is_empty() {
                    history.checkpoints = None;
                }
            }
        } else {
            history.last_continues = false;
        }
        Some(popped)
    }

    /// Removes what compaction at `at` makes unreachable: every change at or before `at`
    /// except the latest, and that one too if it is a delete before `at` (etcd's
    /// `keyIndex.compact`, except that etcd also drops a delete made exactly at `at`: kept
    /// here, the history from `at` on stays complete, so a watcher may resume from the
    /// compaction revision without missing that delete; see `docs/watch.md`).
    /// Calls `dropped` with each change removed and returns how many there were.
    pub(crate) fn compact(&mut self, at: i64, mut dropped: impl FnMut(&Entry)) -> usize {
        let Some(last) = self.last() else {
            return 0;
        };
        let mut at_or_before = 0;
        let mut latest_is_kept = false;
        for record in Records::new(&self.inner.older) {
            if record.revision.main > at {
                break;
            }
            at_or_before += 1;
            latest_is_kept = record.version != 0 || record.revision.main == at;
        }
        if at_or_before == self.inner.older_count as usize && last.main <= at {
            at_or_before += 1;
            latest_is_kept = last.is_put() || last.main == at;
        }
        let drop_count = if latest_is_kept {
            at_or_before - 1
        } else {
            at_or_before
        };
        if drop_count == 0 {
            return 0;
        }
        let history = Arc::make_mut(&mut self.inner);
        let mut records = Records::new(&history.older);
        for record in records.by_ref().take(drop_count) {
            dropped(&record.entry());
        }
        if drop_count > history.older_count as usize {
            if let Some(last) = history.last.take() {
                dropped(&last);
            }
            *history = History::default();
            return drop_count;
        }
        // The first change kept is encoded anew (it no longer continues a record); the ones
        // after it are copied as they are.
        let mut kept = Vec::new();
        if let Some(first) = records.next() {
            let rest = &history.older[history.older.len() - records.remaining()..];
            let first = first.entry();
            let (head, inline) = encode(&first, false);
            kept.reserve_exact(head.len + inline.len() + rest.len());
            kept.extend_from_slice(head.as_slice());
            kept.extend_from_slice(inline);
            kept.extend_from_slice(rest);
        } else {
            history.last_continues = false;
        }
        history.checkpoints = checkpoints_of(&kept);
        history.older = kept;
        // At most `older_count` here (all of them and the newest change went above).
        history.older_count -= drop_count as u32;
        drop_count
    }

    /// Changes every entry through `change` (moving values between memory and a value log).
    pub(crate) fn change_each(&mut self, mut change: impl FnMut(&mut Entry)) {
        let mut entries: Vec<Entry> = self.iter().map(Cow::into_owned).collect();
        entries.iter_mut().for_each(&mut change);
        *self = KeyHistory::from_entries(entries);
    }

    /// Gives back the buffers' unused capacity.
    pub(crate) fn shrink_to_fit(&mut self) {
        let spare = |capacity: usize, len: usize| capacity > len;
        let history = &self.inner;
        if spare(history.older.capacity(), history.older.len())
            || history
                .checkpoints
                .as_ref()
                .is_some_and(|checkpoints| spare(checkpoints.0.capacity(), checkpoints.0.len()))
        {
            let history = Arc::make_mut(&mut self.inner);
            history.older.shrink_to_fit();
            if let Some(checkpoints) = &mut history.checkpoints {
                checkpoints.0.shrink_to_fit();
            }
        }
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
    use super::{Entry, KeyHistory, Rest, Revision, StoredValue, StoredValueRef, ValueRef};
    use proptest::prelude::*;

    /// One entry per key (its newest change): its size is part of the store's memory per key.
    #[test]
    fn an_entry_stays_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    /// One history header per key, behind its `Arc`: 72 bytes plus the `Arc`'s two counts make
    /// an allocation of 88, the last size before the allocator's next 16-byte step.
    #[test]
    fn a_history_header_stays_72_bytes() {
        assert_eq!(std::mem::size_of::<super::History>(), 72);
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

    /// A change to apply to a history and to its model, a plain list of entries.
    #[derive(Clone, Debug)]
    enum Step {
        /// A put continuing the key's life (or starting one), with these fields.
        Put {
            gap: i64,
            sub: i64,
            lease: i64,
            value: StoredValue,
        },
        /// A put whose version and create_revision come from nowhere, as the first change a
        /// compaction leaves or a restored snapshot gives (only applied to an empty history).
        Odd {
            gap: i64,
            version: i64,
            back: i64,
        },
        Delete {
            gap: i64,
        },
        Pop,
        Compact {
            back: i64,
        },
    }

    fn value() -> impl Strategy<Value = StoredValue> {
        prop_oneof![
            Just(StoredValue::Inline(Box::default())),
            prop::collection::vec(any::<u8>(), 1..40)
                .prop_map(|bytes| StoredValue::Inline(bytes.into_boxed_slice())),
            (any::<u64>(), any::<u32>())
                .prop_map(|(offset, len)| StoredValue::Logged(ValueRef { offset, len })),
            (0u64..1 << 30, 0u32..300)
                .prop_map(|(offset, len)| StoredValue::Logged(ValueRef { offset, len })),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let gap = prop_oneof![Just(0i64), 1i64..5, 1i64..100_000, Just(1i64 << 40)];
        let sub = prop_oneof![Just(0i64), 0i64..5, any::<i64>()];
        let lease = prop_oneof![Just(0i64), Just(0), any::<i64>()];
        prop_oneof![
            6 => (gap.clone(), sub, lease, value()).prop_map(|(gap, sub, lease, value)| {
                Step::Put { gap, sub, lease, value }
            }),
            1 => (gap.clone(), prop_oneof![1i64..5, any::<i64>()], prop_oneof![0i64..5, any::<i64>()])
                .prop_map(|(gap, version, back)| Step::Odd { gap, version, back }),
            2 => gap.prop_map(|gap| Step::Delete { gap }),
            1 => Just(Step::Pop),
            1 => (0i64..200_000).prop_map(|back| Step::Compact { back }),
        ]
    }

    /// The revision after `last` by `gap` main revisions (0: the same main, the next sub).
    fn next_revision(last: Option<&Entry>, gap: i64, sub: i64) -> Option<Revision> {
        let Some(last) = last else {
            return Some(Revision {
                main: gap.max(1),
                sub,
            });
        };
        let previous = last.revision();
        if gap == 0 {
            return Some(Revision {
                main: previous.main,
                sub: previous.sub.checked_add(1)?,
            });
        }
        Some(Revision {
            main: previous.main.checked_add(gap)?,
            sub,
        })
    }

    /// Compaction as the list of entries does it (etcd's `keyIndex.compact`, keeping a delete
    /// made exactly at the compaction revision).
    fn compact_model(entries: &mut Vec<Entry>, at: i64) -> Vec<Entry> {
        let at_or_before = entries.partition_point(|entry| entry.main <= at);
        let Some(latest) = at_or_before.checked_sub(1) else {
            return Vec::new();
        };
        let drop_count = if entries[latest].is_put() || entries[latest].main == at {
            latest
        } else {
            at_or_before
        };
        entries.drain(..drop_count).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The encoded history holds exactly the changes a plain list of them would, through
        /// pushes, pops and compactions, with every field of every entry (cold ones
        /// included), reads at every revision, and one form per contents.
        #[test]
        fn a_history_is_the_list_of_its_changes(steps in prop::collection::vec(step(), 1..40)) {
            let mut history = KeyHistory::default();
            let mut model: Vec<Entry> = Vec::new();
            for step in steps {
                let last = model.last();
                match step {
                    Step::Put { gap, sub, lease, value } => {
                        let Some(revision) = next_revision(last, gap, sub) else { continue };
                        let (version, create_revision) = match last.filter(|entry| entry.is_put()) {
                            Some(live) => (live.version() + 1, live.create_revision()),
                            None => (1, revision.main),
                        };
                        let entry = Entry::put(revision, version, create_revision, lease, value);
                        history.push(entry.clone());
                        model.push(entry);
                    }
                    Step::Odd { gap, version, back } => {
                        if last.is_some() {
                            continue;
                        }
                        let Some(revision) = next_revision(None, gap, 0) else { continue };
                        let create_revision = revision.main.wrapping_sub(back);
                        let entry = Entry::put(
                            revision,
                            version.max(1),
                            create_revision,
                            0,
                            StoredValue::Inline(b"odd".as_slice().into()),
                        );
                        history.push(entry.clone());
                        model.push(entry);
                    }
                    Step::Delete { gap } => {
                        if !last.is_some_and(Entry::is_put) {
                            continue;
                        }
                        let Some(revision) = next_revision(last, gap, 0) else { continue };
                        history.push(Entry::tombstone(revision));
                        model.push(Entry::tombstone(revision));
                    }
                    Step::Pop => {
                        prop_assert_eq!(history.pop(), model.pop());
                    }
                    Step::Compact { back } => {
                        let at = last.map_or(0, |entry| entry.main) - back;
                        let expected = compact_model(&mut model, at);
                        let mut dropped = Vec::new();
                        let count = history.compact(at, |entry| dropped.push(entry.clone()));
                        prop_assert_eq!(count, expected.len());
                        prop_assert_eq!(dropped, expected);
                    }
                }
                prop_assert_eq!(history.len(), model.len());
                prop_assert_eq!(history.is_empty(), model.is_empty());
                prop_assert_eq!(history.last(), model.last());
                let entries: Vec<Entry> = history.iter().map(|entry| entry.into_owned()).collect();
                prop_assert_eq!(&entries, &model);
                for entry in &model {
                    for main in [entry.main - 1, entry.main, entry.main.saturating_add(1)] {
                        let expected = model
                            .iter()
                            .rev()
                            .find(|entry| entry.main <= main)
                            .filter(|entry| entry.is_put());
                        let found = history.live_at(main);
                        prop_assert_eq!(found.as_deref(), expected);
                    }
                }
                prop_assert_eq!(&KeyHistory::from_entries(model.clone()), &history);
            }
        }
    }
}
