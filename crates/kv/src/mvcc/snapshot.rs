//! Snapshot and restore of the whole store.
//!
//! Layout (versions 2 and 3), every integer a varint as in [`super::codec`]:
//!
//! ```text
//! magic "RKMV" | version u8 (2 or 3)
//! current_revision (signed) | compact_revision (signed)
//! version 3 only: value section length | value section bytes
//! key count, then per key in key order:
//!     key bytes | entry count | per entry in revision order:
//!         main (first: absolute, then delta to the previous entry) | sub
//!         | kind u8 (0 delete, 1 put, 2 put whose value is in the value section)
//!         put only: value bytes | create_revision | version | lease (signed)
//!         put in the section only: value offset | value length | create_revision | version
//!         | lease (signed)
//! session_clock
//! session count, then per session from least to most recently used:
//!     touched (first: absolute, then delta >= 1 to the previous) | client_id | last_sequence
//!     | recorded outcome
//! crc32c u32 little-endian over everything before it
//! ```
//!
//! Version 3 is what a store with a value log streams ([`MvccStore::write_snapshot`]): the
//! value section is a copy of the log as it stands (values still referenced and garbage left
//! by compaction alike), and each logged value is written as its place in it. Copying the log
//! in large pieces instead of reading every retained value back one by one is what makes a
//! member's snapshot cheap: those reads, a `pread` per revision, were most of the snapshot
//! thread's time. Restoring appends the section to the new store's log as one piece, so the
//! references stay valid at a fixed distance. Version 2 (values inline, nothing else) is the
//! canonical form: [`MvccStore::snapshot`] and [`MvccStore::digest`] always use it, so equal
//! states give equal bytes whatever their logs hold.
//!
//! Version 2 writes sessions in recency order with their use stamps and the session clock, so
//! a restored store evicts exactly the sessions the original would, in the same order.
//! Version 1 (sessions in client order, no clock) is still read: its sessions are taken as used
//! in client order, the only order it can offer.
//!
//! Grouping changes by key writes each key once, which keeps snapshots compact. Restore checks
//! the checksum and then every invariant the store relies on, so a damaged or hostile snapshot
//! is an error, never a panic and never a store that misbehaves later.

use super::codec::{ByteCount, Out, Reader, put_bytes, put_ivarint, put_result, put_uvarint};
use super::error::SnapshotError;
use super::index::{Entry, KeyHistory, Revision};
use super::key::Key;
use super::store::{MvccStore, RecordedResult, SessionRecord};
use super::values::{Spill, StoredValue, StoredValueRef, ValueRef};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashSet;
use std::io::Write;

const MAGIC: &[u8; 4] = b"RKMV";
const FORMAT_VERSION: u8 = 2;
/// Version 2 plus a value section (see the module docs).
const FORMAT_VERSION_SECTION: u8 = 3;
/// The first format: sessions in client order, without recency.
const FORMAT_VERSION_1: u8 = 1;

/// The buffer [`MvccStore::write_snapshot`] fills before each write to its destination.
const STREAM_BUFFER: usize = 64 * 1024;

/// Session clocks above this are refused on restore, so stamping never gets near overflow.
const MAX_SESSION_CLOCK: u64 = 1 << 62;

/// Revisions above this are refused on restore: no real history gets near it, and the bound
/// keeps every later `revision + 1` and `version + 1` far from overflowing.
const MAX_REVISION: i64 = 1 << 62;

const KIND_DELETE: u8 = 0;
const KIND_PUT: u8 = 1;
/// A put whose value is in the snapshot's value section.
const KIND_PUT_IN_SECTION: u8 = 2;

/// How much of the value log [`MvccStore::write_snapshot`] copies per read.
const SECTION_CHUNK: u64 = 256 * 1024;

impl MvccStore {
    /// The full state (history, revisions, sessions) as checksummed bytes, for Raft snapshots.
    ///
    /// Allocates exactly one buffer of exactly [`MvccStore::snapshot_size`] bytes (a growing
    /// buffer would copy the snapshot several times and briefly hold two of them). To put the
    /// snapshot into a larger buffer or a file without this intermediate copy, use
    /// [`MvccStore::write_snapshot`].
    pub fn snapshot(&self) -> Bytes {
        let size = self.snapshot_size();
        let mut out = BytesMut::with_capacity(size);
        self.write_body(&mut out, None);
        let checksum = crc32c(&out);
        out.put_u32_le(checksum);
        debug_assert_eq!(out.len(), size);
        out.freeze()
    }

    /// The exact length of [`MvccStore::snapshot`]'s bytes, computed by walking the state
    /// without allocating (one pass over every retained revision, no copying), so callers can
    /// size a buffer once, or announce a length before streaming with
    /// [`MvccStore::write_snapshot`].
    pub fn snapshot_size(&self) -> usize {
        let mut count = ByteCount::default();
        self.write_body(&mut count, None);
        count.0 + 4
    }

    /// The exact length of what [`MvccStore::write_snapshot`] writes now (while nothing is
    /// appended to the value log meanwhile), computed without reading any value.
    pub fn written_snapshot_size(&self) -> usize {
        let mut count = ByteCount::default();
        self.write_body(&mut count, self.value_section());
        count.0 + 4
    }

    /// The value section [`MvccStore::write_snapshot`] copies: the whole value log, whose
    /// length only grows, so every value this store references is inside it.
    fn value_section(&self) -> Option<&Spill> {
        self.spill.as_ref()
    }

    /// Streams a snapshot into `out`, through a 64 KiB buffer, with the checksum computed on
    /// the way; the snapshot is never held in memory as a whole. Any `Write` works efficiently
    /// (a file, a socket, `BytesMut::writer()`), and unbuffered ones get large writes.
    ///
    /// Without a value log these are exactly [`MvccStore::snapshot`]'s bytes. With one, the
    /// log is copied whole as the snapshot's value section (format version 3, see the module
    /// docs) rather than read back value by value; [`MvccStore::restore`] takes either.
    ///
    /// Returns the first error of `out`; what was written before it is then incomplete.
    ///
    /// # Panics
    /// If the value log cannot be read (a local disk failure, see [`super::ValueLog`]).
    pub fn write_snapshot<W: Write>(&self, out: W) -> std::io::Result<()> {
        let mut writer = StreamOut {
            out,
            buffer: Vec::with_capacity(STREAM_BUFFER),
            register: !0,
            error: None,
        };
        self.write_body(&mut writer, self.value_section());
        writer.flush_buffer();
        let checksum = !writer.register;
        if let Some(error) = writer.error {
            return Err(error);
        }
        writer.out.write_all(&checksum.to_le_bytes())?;
        writer.out.flush()
    }

    /// Writes everything the checksum covers: the snapshot without its last four bytes;
    /// version 3 with `section`'s log as the value section, else version 2.
    fn write_body(&self, out: &mut impl Out, section: Option<&Spill>) {
        out.write_slice(MAGIC);
        out.write_u8(if section.is_some() {
            FORMAT_VERSION_SECTION
        } else {
            FORMAT_VERSION
        });
        put_ivarint(out, self.current_revision);
        put_ivarint(out, self.compact_revision);
        if let Some(spill) = section {
            // Read once: the log may grow while this runs (the store it belongs to goes on
            // applying), and what is appended later is no value of this frozen state.
            let section_len = spill.log.size_bytes();
            put_uvarint(out, section_len);
            if !out.skip(section_len as usize) {
                copy_log(spill, section_len, out);
            }
        }
        put_uvarint(out, self.index.len() as u64);
        for (key, history) in self.index.iter() {
            put_bytes(out, key);
            put_uvarint(out, history.len() as u64);
            let mut previous_main = 0;
            for entry in history.iter() {
                let revision = entry.revision();
                put_uvarint(out, (revision.main - previous_main) as u64);
                previous_main = revision.main;
                put_uvarint(out, revision.sub as u64);
                if entry.is_put() {
                    match (section, entry.value()) {
                        (Some(_), StoredValueRef::Logged(at)) => {
                            out.write_u8(KIND_PUT_IN_SECTION);
                            put_uvarint(out, at.offset);
                            put_uvarint(out, u64::from(at.len));
                        }
                        (_, value) => {
                            out.write_u8(KIND_PUT);
                            let len = value.len();
                            put_uvarint(out, len as u64);
                            if !out.skip(len) {
                                out.write_slice(&self.value_of(&entry));
                            }
                        }
                    }
                    put_ivarint(out, entry.create_revision());
                    put_ivarint(out, entry.version());
                    put_ivarint(out, entry.lease());
                } else {
                    out.write_u8(KIND_DELETE);
                }
            }
        }
        put_uvarint(out, self.session_clock);
        put_uvarint(out, self.sessions.len() as u64);
        let mut previous_touched = 0;
        for (client_id, session) in self.sessions.by_recency() {
            put_uvarint(out, session.touched - previous_touched);
            previous_touched = session.touched;
            put_uvarint(out, client_id);
            put_uvarint(out, session.last_sequence);
            put_result(out, &session.last_result.get());
        }
    }

    /// Rebuilds a store from [`MvccStore::snapshot`] bytes. Never panics: damaged or
    /// inconsistent input is a [`SnapshotError`].
    ///
    /// The session bound is configuration, not part of the snapshot: the result keeps
    /// [`super::DEFAULT_MAX_SESSIONS`] (evicting the least recently used sessions beyond it).
    /// To keep another bound use [`MvccStore::restore_in_place`], or call
    /// [`MvccStore::set_max_sessions`] right after restoring.
    ///
    /// Keys and values are copied out of `bytes`, so the snapshot buffer is not kept alive.
    pub fn restore(bytes: &Bytes) -> Result<MvccStore, SnapshotError> {
        let mut store = MvccStore::new();
        store.restore_in_place(bytes)?;
        Ok(store)
    }

    /// Replaces this store's state by a snapshot's, keeping this store's session bound: if
    /// the snapshot holds more sessions, only the most recently used ones are kept. This is
    /// what a node's `StateMachine::restore` wants. On error the store is unchanged; never
    /// panics.
    pub fn restore_in_place(&mut self, bytes: &Bytes) -> Result<(), SnapshotError> {
        let mut store = decode(bytes, self.spill.as_ref())?;
        store.max_sessions = self.max_sessions;
        store.evict_sessions();
        *self = store;
        Ok(())
    }

    /// A digest of the whole state, for comparing members cheaply in tests and the simulator.
    /// Costs a full snapshot encoding.
    pub fn digest(&self) -> u64 {
        // FNV-1a over the canonical snapshot bytes.
        self.snapshot()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325, |hash: u64, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }
}

/// The destination of [`MvccStore::write_snapshot`]: batches bytes into large writes and
/// feeds them to the running checksum. Keeps the first write error and drops everything after
/// it, so the encoder itself never has to handle errors.
struct StreamOut<W: Write> {
    out: W,
    buffer: Vec<u8>,
    register: u32,
    error: Option<std::io::Error>,
}

impl<W: Write> StreamOut<W> {
    fn flush_buffer(&mut self) {
        self.register = crc32c_extend(self.register, &self.buffer);
        if self.error.is_none()
            && let Err(error) = self.out.write_all(&self.buffer)
        {
            self.error = Some(error);
        }
        self.buffer.clear();
    }
}

impl<W: Write> Out for StreamOut<W> {
    fn write_u8(&mut self, byte: u8) {
        if self.buffer.len() == STREAM_BUFFER {
            self.flush_buffer();
        }
        self.buffer.push(byte);
    }

    fn write_slice(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.buffer.len() == STREAM_BUFFER {
                self.flush_buffer();
            }
            let take = bytes.len().min(STREAM_BUFFER - self.buffer.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }
}

/// Copies the first `len` bytes of `spill`'s log into `out`, in large reads.
///
/// # Panics
/// If the log cannot be read (see [`super::ValueLog`]): the store cannot be snapshotted
/// without its values, as it could not answer without them.
fn copy_log(spill: &Spill, len: u64, out: &mut impl Out) {
    let mut chunk = vec![0; len.min(SECTION_CHUNK) as usize];
    let mut offset = 0;
    while offset < len {
        let take = (len - offset).min(SECTION_CHUNK) as usize;
        if let Err(error) = spill.log.read_at(offset, &mut chunk[..take]) {
            panic!(
                "value log {:?}: cannot read {take} bytes at {offset} for a snapshot: {error}; \
                 stopping (a local disk failure, like a failed WAL write)",
                spill.log
            );
        }
        out.write_slice(&chunk[..take]);
        offset += take as u64;
    }
}

/// Checks and decodes snapshot bytes into a store with the default session bound, keeping
/// values in `spill`'s log if given (values of a failed decode stay there as garbage).
fn decode(bytes: &Bytes, spill: Option<&Spill>) -> Result<MvccStore, SnapshotError> {
    let header_len = MAGIC.len() + 1;
    if bytes.len() < header_len + 4 {
        return Err(SnapshotError::TooShort);
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = bytes[MAGIC.len()];
    if ![FORMAT_VERSION_1, FORMAT_VERSION, FORMAT_VERSION_SECTION].contains(&version) {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let body_end = bytes.len() - 4;
    let computed = crc32c(&bytes[..body_end]);
    let mut trailer = Reader::new(&bytes.slice(body_end..));
    let stored = trailer.u32_le()?;
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    let mut reader = Reader::new(&bytes.slice(header_len..body_end));
    let mut store = read_store(&mut reader, version, spill)?;
    reader.finish()?;
    store.recount();
    Ok(store)
}

fn inconsistent(reason: &'static str) -> SnapshotError {
    SnapshotError::Inconsistent(reason)
}

fn read_store(
    reader: &mut Reader,
    version: u8,
    spill: Option<&Spill>,
) -> Result<MvccStore, SnapshotError> {
    let current_revision = reader.ivarint()?;
    let compact_revision = reader.ivarint()?;
    if !(1..=MAX_REVISION).contains(&current_revision) {
        return Err(inconsistent("current revision out of range"));
    }
    if !(-1..=current_revision).contains(&compact_revision) {
        return Err(inconsistent("compact revision out of range"));
    }
    let mut store = MvccStore::new();
    store.spill = spill.cloned();
    store.current_revision = current_revision;
    store.compact_revision = compact_revision;
    let section = if version == FORMAT_VERSION_SECTION {
        Some(ValueSection::read(reader, spill)?)
    } else {
        None
    };

    let key_count = reader.count()?;
    // Every revision read so far, to refuse one used by two keys; dropped after the keys.
    let mut seen: HashSet<Revision> = HashSet::new();
    let mut previous_key: Option<Bytes> = None;
    for _ in 0..key_count {
        let key = reader.bytes()?;
        if key.is_empty() {
            return Err(inconsistent("empty key"));
        }
        if previous_key
            .as_ref()
            .is_some_and(|previous| *previous >= key)
        {
            return Err(inconsistent("keys out of order"));
        }
        let history = read_history(
            reader,
            current_revision,
            compact_revision,
            spill,
            section.as_ref(),
        )?;
        for entry in history.iter() {
            if !seen.insert(entry.revision()) {
                return Err(inconsistent("revision used twice"));
            }
        }
        store.index.insert(Key::new(&key), history);
        previous_key = Some(key);
    }

    if version == FORMAT_VERSION_1 {
        read_sessions_v1(reader, &mut store)?;
    } else {
        read_sessions(reader, &mut store)?;
    }
    Ok(store)
}

/// A version 3 snapshot's value section, and where it went in the new store's log.
struct ValueSection {
    bytes: Bytes,
    /// The offset of the section's first byte in the store's log; `None` without a log (or
    /// for an empty section), when values are copied out of the section instead.
    base: Option<u64>,
}

impl ValueSection {
    /// Reads the section and appends it to `spill`'s log as one piece.
    ///
    /// # Panics
    /// If the log fails to append (a local disk failure, see [`super::ValueLog`]), as storing
    /// a single value does.
    fn read(reader: &mut Reader, spill: Option<&Spill>) -> Result<ValueSection, SnapshotError> {
        let bytes = reader.bytes()?;
        let base = match spill {
            Some(spill) if !bytes.is_empty() => match spill.log.append_stretch(&bytes) {
                Ok(base) => Some(base),
                Err(error) => panic!(
                    "value log {:?}: cannot append a snapshot's {} bytes of values: {error}; \
                     stopping (a local disk failure, like a failed WAL write)",
                    spill.log,
                    bytes.len()
                ),
            },
            _ => None,
        };
        Ok(ValueSection { bytes, base })
    }

    /// The value at `offset`, `len` bytes long, as the store keeps it.
    fn value(&self, offset: u64, len: u64) -> Result<StoredValue, SnapshotError> {
        let outside = || inconsistent("value outside the value section");
        let end = offset.checked_add(len).ok_or_else(outside)?;
        if end > self.bytes.len() as u64 {
            return Err(outside());
        }
        let len32 = u32::try_from(len).map_err(|_| outside())?;
        Ok(match self.base {
            Some(base) => StoredValue::Logged(ValueRef {
                offset: base + offset,
                len: len32,
            }),
            None => StoredValue::Inline(self.bytes[offset as usize..end as usize].into()),
        })
    }
}

/// Reads version 2's session clock and sessions in recency order.
fn read_sessions(reader: &mut Reader, store: &mut MvccStore) -> Result<(), SnapshotError> {
    let clock = reader.uvarint()?;
    if clock > MAX_SESSION_CLOCK {
        return Err(inconsistent("session clock out of range"));
    }
    store.session_clock = clock;
    let session_count = reader.count()?;
    let mut previous_touched: Option<u64> = None;
    for _ in 0..session_count {
        let delta = reader.uvarint()?;
        let touched = match previous_touched {
            None => Some(delta),
            Some(_) if delta == 0 => None,
            Some(previous) => previous.checked_add(delta),
        }
        .filter(|touched| *touched < clock)
        .ok_or(inconsistent(
            "session stamps out of order or beyond the clock",
        ))?;
        previous_touched = Some(touched);
        let client_id = reader.uvarint()?;
        if client_id == 0 {
            return Err(inconsistent("session of client 0"));
        }
        let last_sequence = reader.uvarint()?;
        let last_result = reader.result()?;
        let record = SessionRecord {
            last_sequence,
            last_result: RecordedResult::new(last_result),
            touched,
        };
        if store.sessions.insert(client_id, record).is_some() {
            return Err(inconsistent("session listed twice"));
        }
    }
    Ok(())
}

/// Reads version 1's sessions (client order, no recency): they are stamped as used in that
/// order.
fn read_sessions_v1(reader: &mut Reader, store: &mut MvccStore) -> Result<(), SnapshotError> {
    let session_count = reader.count()?;
    let mut previous_client = 0;
    for _ in 0..session_count {
        let client_id = reader.uvarint()?;
        if client_id <= previous_client {
            return Err(inconsistent("sessions out of order or client 0"));
        }
        previous_client = client_id;
        let last_sequence = reader.uvarint()?;
        let last_result = reader.result()?;
        let touched = store.session_clock;
        store.session_clock += 1;
        store.sessions.insert(
            client_id,
            SessionRecord {
                last_sequence,
                last_result: RecordedResult::new(last_result),
                touched,
            },
        );
    }
    Ok(())
}

/// Reads one key's entries and checks the [`KeyHistory`] invariants.
fn read_history(
    reader: &mut Reader,
    current_revision: i64,
    compact_revision: i64,
    spill: Option<&Spill>,
    section: Option<&ValueSection>,
) -> Result<KeyHistory, SnapshotError> {
    let entry_count = reader.count()?;
    if entry_count == 0 {
        return Err(inconsistent("key without history"));
    }
    // A history counts its changes in 32 bits (see `KeyHistory::push`).
    if u32::try_from(entry_count).is_err() {
        return Err(inconsistent("more changes of one key than a history holds"));
    }
    // Grown as entries are read, never reserved from the claimed count: a hostile count is
    // bounded only by the bytes left.
    let mut history = KeyHistory::default();
    for _ in 0..entry_count {
        let delta = reader.uvarint()?;
        let sub = reader.uvarint()?;
        let previous_main = history.last().map_or(0, Entry::mod_revision);
        let main = i64::try_from(delta)
            .ok()
            .and_then(|delta| previous_main.checked_add(delta))
            .filter(|main| (1..=current_revision).contains(main))
            .ok_or(inconsistent("revision out of range"))?;
        let sub = i64::try_from(sub).map_err(|_| inconsistent("sub-revision out of range"))?;
        let revision = Revision { main, sub };
        if history
            .last()
            .is_some_and(|entry| entry.revision() >= revision)
        {
            return Err(inconsistent("revisions out of order"));
        }
        if main <= compact_revision && !history.is_empty() {
            return Err(inconsistent("history kept below the compact revision"));
        }
        let entry = match reader.u8()? {
            KIND_DELETE => {
                // Compaction keeps a delete made exactly at its revision as the oldest change.
                let oldest_at_compaction = history.is_empty() && main == compact_revision;
                if !oldest_at_compaction && history.last().is_none_or(|entry| !entry.is_put()) {
                    return Err(inconsistent("delete of an absent key"));
                }
                Entry::tombstone(revision)
            }
            kind @ (KIND_PUT | KIND_PUT_IN_SECTION) => {
                /// A value copied in, or one already in the log with the section.
                enum Value {
                    Bytes(Bytes),
                    Stored(StoredValue),
                }
                let value = if kind == KIND_PUT {
                    Value::Bytes(reader.bytes()?)
                } else {
                    let Some(section) = section else {
                        return Err(SnapshotError::Malformed(
                            "a value in a section the format has not",
                        ));
                    };
                    let offset = reader.uvarint()?;
                    let len = reader.uvarint()?;
                    Value::Stored(section.value(offset, len)?)
                };
                let create_revision = reader.ivarint()?;
                let version = reader.ivarint()?;
                let lease = reader.ivarint()?;
                check_put(
                    history.last(),
                    main,
                    compact_revision,
                    create_revision,
                    version,
                )?;
                // Stored after every check, so a refused entry appends nothing.
                let stored = match value {
                    Value::Stored(stored) => stored,
                    Value::Bytes(value) => match spill {
                        Some(spill) => spill.store(&value),
                        None => StoredValue::Inline(value.as_ref().into()),
                    },
                };
                Entry::put(revision, version, create_revision, lease, stored)
            }
            _ => return Err(SnapshotError::Malformed("unknown entry kind")),
        };
        history.push(entry);
    }
    history.shrink_to_fit();
    Ok(history)
}

/// A put's create_revision and version must continue the key's life (or start a new one).
fn check_put(
    previous: Option<&Entry>,
    main: i64,
    compact_revision: i64,
    create_revision: i64,
    version: i64,
) -> Result<(), SnapshotError> {
    let consistent = match previous.map(|entry| Some(entry).filter(|entry| entry.is_put())) {
        // Continues a life: one more put of the same creation.
        Some(Some(previous)) => {
            create_revision == previous.create_revision() && version == previous.version() + 1
        }
        // Starts a new life after a delete.
        Some(None) => create_revision == main && version == 1,
        // The oldest retained change. Above the compact revision nothing older was dropped,
        // so it must be the creation; at or below it, it may be any put of a life, and a life
        // has at most one put per revision.
        None if main > compact_revision => create_revision == main && version == 1,
        None => {
            (1..=main).contains(&create_revision)
                && (1..=main - create_revision + 1).contains(&version)
                && ((version == 1) == (create_revision == main))
        }
    };
    if consistent {
        Ok(())
    } else {
        Err(inconsistent("put does not continue the key's history"))
    }
}

/// CRC-32C (Castagnoli), the checksum etcd's WAL uses.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    !crc32c_extend(!0, bytes)
}

/// Feeds `bytes` into a running CRC-32C register (start from `!0`, finish with `!`), for
/// checksums over data not held in one buffer.
///
/// Uses the CPU's CRC-32C instruction where there is one (the `crc32c` crate, as the WAL and
/// the transport do): snapshots and HashKV checksum every retained value, and the
/// table-driven version this replaced was about 0.7% of a loaded cluster's CPU.
pub(crate) fn crc32c_extend(register: u32, bytes: &[u8]) -> u32 {
    // The crate continues from a finished checksum, which is the register inverted.
    !crc32c::crc32c_append(!register, bytes)
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn crc32c_is_the_same_in_pieces_and_at_any_alignment() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let bitwise = |bytes: &[u8]| {
            let mut crc = !0u32;
            for byte in bytes {
                crc ^= u32::from(*byte);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0x82f6_3b78
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        };
        for (start, end) in [(0, 1000), (1, 999), (3, 10), (5, 5), (7, 64)] {
            let piece = &data[start..end];
            assert_eq!(crc32c(piece), bitwise(piece));
            for split in [0, 1, 7, piece.len() / 2, piece.len()].map(|at| at.min(piece.len())) {
                let register = super::crc32c_extend(!0, &piece[..split]);
                assert_eq!(
                    !super::crc32c_extend(register, &piece[split..]),
                    bitwise(piece)
                );
            }
        }
    }
}
