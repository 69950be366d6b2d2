//! etcd's HashKV (`mvcc/kvstore.go`, `hashByRev`): a CRC-32C over the key history up to a
//! revision, which members compare to detect divergence (`etcdctl endpoint hashkv`).
//!
//! etcd hashes its backend's `key` bucket: the bucket name, then for every stored revision in
//! revision order its backend key (8-byte big-endian main, `_`, 8-byte big-endian sub, and a
//! `t` for a tombstone) and its value (the protobuf `mvccpb.KeyValue`; just the key for a
//! tombstone). Revisions at or below the compacted revision count only if compacting at the
//! hashed revision would keep them (etcd's `kvindex.Keep`), unless nothing would be kept at all.
//! The store retains exactly what etcd's backend retains after a compaction, so this
//! reproduces etcd's bytes and hash for the same history.

use super::error::MvccError;
use super::index::{HistoryIter, Revision};
use super::key::Key;
use super::snapshot::crc32c_extend;
use super::store::MvccStore;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::iter::Peekable;

/// etcd's key bucket name, the first thing it hashes.
const KEY_BUCKET: &[u8] = b"key";

impl MvccStore {
    /// etcd's HashKV: the CRC-32C (Castagnoli) of the key history up to `revision` (0: the
    /// current one), and the compacted revision (-1 if never compacted), as
    /// `HashKVResponse.hash` and `compact_revision`.
    ///
    /// Members that applied the same entries get the same hash (the walk is in revision
    /// order); any difference in a retained key, value, lease, version or revision up to
    /// `revision` changes it (barring a CRC collision).
    ///
    /// Errors as etcd's `hashByRev`: a positive `revision` at or below the compacted one fails
    /// with [`MvccError::Compacted`] (note: also exactly at it, which Range can still read),
    /// one above the current revision with [`MvccError::FutureRevision`]; a negative one
    /// hashes no revisions. Costs a walk over the retained history, as in etcd.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), MvccError> {
        let compact = self.compact_revision;
        if revision > 0 && revision <= compact {
            return Err(MvccError::Compacted);
        }
        if revision > 0 && revision > self.current_revision {
            return Err(MvccError::FutureRevision);
        }
        let at = if revision == 0 {
            self.current_revision
        } else {
            revision
        };
        // Whether compacting at `at` would keep anything: etcd skips nothing when it would not.
        let mut keeps_any: Option<bool> = None;
        let mut register = crc32c_extend(!0, KEY_BUCKET);
        let mut value = Vec::new();
        let end = Revision {
            main: at.saturating_add(1),
            sub: 0,
        };
        // Every retained change up to `at` in revision order: a merge of the per-key
        // histories (each already in order), holding one cursor per key.
        let mut histories: Vec<(&Key, Peekable<HistoryIter>)> = self
            .index
            .iter()
            .map(|(key, history)| (key, history.iter().peekable()))
            .collect();
        let mut cursors: BinaryHeap<Reverse<(Revision, usize)>> = histories
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, (_, changes))| {
                let first = changes.peek()?.revision();
                (first < end).then_some(Reverse((first, slot)))
            })
            .collect();
        while let Some(Reverse((change, slot))) = cursors.pop() {
            let (key, changes) = &mut histories[slot];
            let key: &Key = key;
            let Some(entry) = changes.next() else {
                continue;
            };
            let next = changes.peek().map(|next| next.revision());
            if let Some(next) = next
                && next < end
            {
                cursors.push(Reverse((next, slot)));
            }
            if change.main <= compact {
                // Kept by a compaction at `at` only if it is the key's last change up to `at`
                // and a put (etcd's `keyIndex.keep`).
                let kept = entry.is_put() && next.is_none_or(|next| next.main > at);
                let keeps_any = *keeps_any.get_or_insert_with(|| {
                    self.index
                        .values()
                        .any(|history| history.live_at(at).is_some())
                });
                if !kept && keeps_any {
                    continue;
                }
            }
            register = crc32c_extend(register, &backend_key(change, !entry.is_put()));
            value.clear();
            let stored = if entry.is_put() {
                self.value_of(&entry)
            } else {
                Bytes::new()
            };
            let proto = if entry.is_put() {
                ProtoKv {
                    key,
                    create_revision: entry.create_revision(),
                    mod_revision: entry.mod_revision(),
                    version: entry.version(),
                    value: &stored,
                    lease: entry.lease(),
                }
            } else {
                // A tombstone's stored value is a KeyValue holding only the key.
                ProtoKv {
                    key,
                    ..ProtoKv::default()
                }
            };
            put_kv_proto(&mut value, &proto);
            register = crc32c_extend(register, &value);
        }
        Ok((!register, compact))
    }
}

/// etcd's backend key of a revision (`revToBytes`, plus `appendMarkTombstone`).
fn backend_key(revision: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&revision.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&revision.sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// The fields of an `mvccpb.KeyValue` to hash, borrowed from the index (building a
/// [`super::KeyValue`] would clone the key and value handles for every revision).
#[derive(Default)]
struct ProtoKv<'a> {
    key: &'a [u8],
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    value: &'a [u8],
    lease: i64,
}

/// `mvccpb.KeyValue` in protobuf wire format, as gogoproto marshals it: fields in number order,
/// zero values left out.
fn put_kv_proto(out: &mut Vec<u8>, kv: &ProtoKv) {
    let bytes_field = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        if !bytes.is_empty() {
            out.push(tag);
            put_proto_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    };
    let int_field = |out: &mut Vec<u8>, tag: u8, value: i64| {
        if value != 0 {
            out.push(tag);
            // Negative int64s are ten-byte two's complement varints in protobuf.
            put_proto_varint(out, value as u64);
        }
    };
    bytes_field(out, 0x0a, kv.key);
    int_field(out, 0x10, kv.create_revision);
    int_field(out, 0x18, kv.mod_revision);
    int_field(out, 0x20, kv.version);
    bytes_field(out, 0x2a, kv.value);
    int_field(out, 0x30, kv.lease);
}

fn put_proto_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_proto_matches_gogoproto() {
        let kv = ProtoKv {
            key: b"foo",
            create_revision: 2,
            mod_revision: 300,
            version: 1,
            value: b"bar",
            lease: 0,
        };
        let mut out = Vec::new();
        put_kv_proto(&mut out, &kv);
        assert_eq!(
            out,
            b"\x0a\x03foo\x10\x02\x18\xac\x02\x20\x01\x2a\x03bar".to_vec()
        );
        assert_eq!(
            backend_key(Revision { main: 2, sub: 1 }, true),
            b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x01t".to_vec()
        );
    }
}
