//! Where retained values live: inline in the index, or spilled to a [`ValueLog`].
//!
//! Every retained revision of a put keeps its value, and values dominate the store's memory
//! (in etcd's benchmark 256 of roughly 400 heap bytes per revision). etcd keeps them on disk
//! (bbolt); a member gives its store a [`ValueLog`] (an append-only file, in the server) so
//! that values of at least [`DEFAULT_VALUE_LOG_THRESHOLD`] bytes are appended there at apply
//! time and the index keeps only a 12-byte [`ValueRef`]. The store itself stays free of I/O:
//! it only calls the trait. Without a log, values stay in memory exactly as before.

use bytes::Bytes;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Values at least this long go to the value log (when the store has one); shorter ones stay
/// inline, where they cost less than a reference plus a read.
pub const DEFAULT_VALUE_LOG_THRESHOLD: usize = 64;

/// Where a value was appended in a [`ValueLog`]: its byte offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueRef {
    /// The offset of the value's first byte in the log.
    pub offset: u64,
    /// The value's length in bytes.
    pub len: u32,
}

/// An append-only store of values outside the heap, which an [`super::MvccStore`] reads back
/// whenever an answer, a compare, a hash or a snapshot needs a value.
///
/// Contract: a [`ValueRef`] returned by `append` stays readable (with the same bytes) for as
/// long as the log exists, whatever is appended later; a store and its clones (a frozen copy
/// serialized on another thread while the original keeps appending) share one log, so both
/// methods are called concurrently from several threads.
///
/// A failing `append` or `read` is a local disk failure, like a failed WAL write: the store
/// cannot answer correctly without the value, so it panics with the log's `Debug` (which
/// should name the file) and the error, and the member stops instead of serving wrong data.
/// The log is a cache of state rebuilt from the Raft snapshot and WAL, so it needs no fsync.
pub trait ValueLog: Send + Sync + fmt::Debug {
    /// Appends `value` and returns where it is. Values are at most `u32::MAX` bytes.
    fn append(&self, value: &[u8]) -> std::io::Result<ValueRef>;

    /// Reads back a value `append` returned.
    fn read(&self, at: ValueRef) -> std::io::Result<Bytes>;

    /// Reads `buf.len()` bytes of the log from `offset`, whatever values they belong to:
    /// snapshots copy the log in large pieces (see [`super::MvccStore::write_snapshot`])
    /// instead of reading every value back. Everything below [`ValueLog::size_bytes`] is
    /// readable.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;

    /// Appends `bytes` as one contiguous piece and returns the offset of its first byte:
    /// a restored snapshot's value section, whose values are then referenced at a fixed
    /// distance from where they were. No length limit.
    fn append_stretch(&self, bytes: &[u8]) -> std::io::Result<u64>;

    /// How many bytes the log holds in all (live values and garbage), e.g. a file's size,
    /// for reporting beside the bytes still referenced
    /// ([`super::MvccStore::value_log_live_bytes`]).
    fn size_bytes(&self) -> u64;
}

/// A [`ValueLog`] in memory: for tests (a store with it must behave exactly like one without)
/// and measurements; it saves no memory.
#[derive(Default)]
pub struct MemoryValueLog {
    bytes: Mutex<Vec<u8>>,
}

impl fmt::Debug for MemoryValueLog {
    /// The size only: a store's `Debug` (in a failing test's message) includes its log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryValueLog({} bytes)", self.size_bytes())
    }
}

impl MemoryValueLog {
    /// An empty log, shareable as a store's log.
    pub fn new() -> Arc<MemoryValueLog> {
        Arc::new(MemoryValueLog::default())
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves whole appends behind: still usable.
        self.bytes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl ValueLog for MemoryValueLog {
    fn append(&self, value: &[u8]) -> std::io::Result<ValueRef> {
        let len = u32::try_from(value.len()).map_err(std::io::Error::other)?;
        let mut bytes = self.bytes();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(value);
        Ok(ValueRef { offset, len })
    }

    fn read(&self, at: ValueRef) -> std::io::Result<Bytes> {
        let bytes = self.bytes();
        usize::try_from(at.offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(at.len as usize)?))
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{at:?} is beyond the {} bytes logged", bytes.len()),
                )
            })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let bytes = self.bytes();
        let stretch = usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes at {offset} are beyond the {} bytes logged",
                        buf.len(),
                        bytes.len()
                    ),
                )
            })?;
        buf.copy_from_slice(stretch);
        Ok(())
    }

    fn append_stretch(&self, stretch: &[u8]) -> std::io::Result<u64> {
        let mut bytes = self.bytes();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(stretch);
        Ok(offset)
    }

    fn size_bytes(&self) -> u64 {
        self.bytes().len() as u64
    }
}

/// A retained value as the index holds it (see [`super::index::Entry`], which packs it
/// further).
///
/// An inline value is an exact boxed slice rather than a `Bytes`: half the size in every
/// entry and no spare capacity or shared header. Reading it copies it into the answer's own
/// buffer; the values that stay inline are short when the store has a value log (a member's
/// case), and an answer is copied again when it is encoded anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoredValue {
    /// The value itself (no log, or shorter than the threshold).
    Inline(Box<[u8]>),
    /// Where the store's value log holds it.
    Logged(ValueRef),
}

impl StoredValue {
    /// A borrowed view of the value.
    pub(crate) fn as_ref(&self) -> StoredValueRef<'_> {
        match self {
            StoredValue::Inline(bytes) => StoredValueRef::Inline(bytes),
            StoredValue::Logged(at) => StoredValueRef::Logged(*at),
        }
    }
}

/// A retained value as an entry lends it: the bytes, or where the value log holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredValueRef<'a> {
    /// The value itself.
    Inline(&'a [u8]),
    /// Where the store's value log holds it.
    Logged(ValueRef),
}

impl StoredValueRef<'_> {
    /// The value's length, without reading it.
    pub(crate) fn len(self) -> usize {
        match self {
            StoredValueRef::Inline(bytes) => bytes.len(),
            StoredValueRef::Logged(at) => at.len as usize,
        }
    }

    /// The value as an owned [`StoredValue`] (an inline value is copied; a logged one is
    /// referenced again, not appended again).
    pub(crate) fn to_stored(self) -> StoredValue {
        match self {
            StoredValueRef::Inline(bytes) => StoredValue::Inline(bytes.into()),
            StoredValueRef::Logged(at) => StoredValue::Logged(at),
        }
    }
}

/// A store's value log and the shortest value it takes.
#[derive(Clone, Debug)]
pub(crate) struct Spill {
    pub(crate) log: Arc<dyn ValueLog>,
    pub(crate) min_len: usize,
}

impl Spill {
    /// Stores `value`: appended to the log if long enough, else copied into a buffer of its
    /// own (never a slice of a larger buffer, which would stay alive with it). Values too
    /// long for a [`ValueRef`] stay inline too.
    ///
    /// # Panics
    /// If the log fails to append (see [`ValueLog`]).
    pub(crate) fn store(&self, value: &[u8]) -> StoredValue {
        if value.len() < self.min_len || u32::try_from(value.len()).is_err() {
            return StoredValue::Inline(value.into());
        }
        match self.log.append(value) {
            Ok(at) => StoredValue::Logged(at),
            Err(error) => panic!(
                "value log {:?}: cannot append {} bytes: {error}; stopping (a local disk \
                 failure, like a failed WAL write)",
                self.log,
                value.len()
            ),
        }
    }
}

/// Reads a stored value back: inline values are copied, logged ones read from `spill`'s log.
///
/// # Panics
/// If the log fails to read (see [`ValueLog`]), or if a logged value has no log (a broken
/// invariant: values are only logged through a store's own log).
pub(crate) fn load(spill: Option<&Spill>, value: StoredValueRef<'_>) -> Bytes {
    match value {
        StoredValueRef::Inline(bytes) => Bytes::copy_from_slice(bytes),
        StoredValueRef::Logged(at) => {
            let Some(spill) = spill else {
                panic!("a value logged at {at:?} but the store has no value log");
            };
            match spill.log.read(at) {
                Ok(bytes) => bytes,
                Err(error) => panic!(
                    "value log {:?}: cannot read {at:?}: {error}; stopping (a local disk \
                     failure, like a failed WAL write)",
                    spill.log
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_is_smaller_than_bytes() {
        // The index keeps it packed further (see `Entry`); this is its transient form.
        assert!(std::mem::size_of::<StoredValue>() < std::mem::size_of::<Bytes>());
    }

    #[test]
    fn the_memory_log_reads_back_what_it_appended() {
        let log = MemoryValueLog::new();
        let a = log.append(b"hello").expect("append");
        let b = log.append(b"world!").expect("append");
        assert_eq!(log.read(a).expect("read"), "hello");
        assert_eq!(log.read(b).expect("read"), "world!");
        assert_eq!(log.size_bytes(), 11);
        assert!(log.read(ValueRef { offset: 8, len: 4 }).is_err());
    }
}
