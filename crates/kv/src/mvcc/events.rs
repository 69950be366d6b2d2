//! The store's changes as etcd's watch events: the changes of the write just applied (for
//! watchers that are caught up) and the retained history between two revisions (for watchers
//! that start in the past or fell behind). See `docs/watch.md`.

use super::error::MvccError;
use super::index::{Entry, key_bounds};
use super::store::MvccStore;
use super::types::KeyValue;
use std::cmp::Ordering;

/// Whether an event is a put or a delete (etcd's `mvccpb.Event.EventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of one key, etcd's `mvccpb.Event`.
///
/// A delete's `kv` holds only the key and `mod_revision` (the delete's revision), every
/// other field zero, exactly as etcd sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change.
    pub kv: KeyValue,
    /// The position of the change inside its revision (etcd's sub-revision): events of one
    /// revision are delivered in this order.
    pub sub: i64,
}

impl Event {
    /// The revision of the write that made this change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    fn of(key: &[u8], entry: &Entry, store: &MvccStore) -> Event {
        let revision = entry.revision();
        if entry.is_put() {
            Event {
                kind: EventKind::Put,
                kv: entry.kv(key, store.spill.as_ref()),
                sub: revision.sub,
            }
        } else {
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: bytes::Bytes::copy_from_slice(key),
                    mod_revision: revision.main,
                    ..KeyValue::default()
                },
                sub: revision.sub,
            }
        }
    }
}

/// A batch of history read by [`MvccStore::history`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Whole revisions, oldest first, each in sub-revision order.
    pub events: Vec<Event>,
    /// The first revision this batch does not cover: the next read starts there. When it is
    /// past the store's current revision the reader is caught up.
    pub next_revision: i64,
}

impl MvccStore {
    /// Makes writes record the keys they change (read with [`MvccStore::last_changes`]). A
    /// member turns it on while it has watchers; it is local, not replicated state.
    pub fn set_track_changes(&mut self, track: bool) {
        self.track_changes = track;
        if !track {
            self.changed.clear();
        }
    }

    /// Whether writes record the keys they change.
    pub fn tracks_changes(&self) -> bool {
        self.track_changes
    }

    /// The changes of the last applied write (empty if it changed nothing, failed, was a
    /// retry answered from its session, or change tracking is off), in sub-revision order,
    /// for the keys `wanted` accepts. Values of logged puts are read back only for those.
    pub fn last_changes(&self, mut wanted: impl FnMut(&[u8]) -> bool) -> Vec<Event> {
        let mut events = Vec::new();
        for key in &self.changed {
            if !wanted(key) {
                continue;
            }
            // Each key changes at most once per write (etcd refuses duplicate keys in a
            // transaction), so its newest change is this write's.
            if let Some(entry) = self.index.get(key.as_slice()).and_then(|h| h.last()) {
                events.push(Event::of(key, entry, self));
            }
        }
        events
    }

    /// The key's value just before `revision` (etcd's watch `prev_kv`: a read at
    /// `revision - 1`), unless that is compacted or the key did not exist then.
    pub fn prev_kv(&self, key: &[u8], revision: i64) -> Option<KeyValue> {
        let before = revision - 1;
        if before < self.compact_revision || before < 1 {
            return None;
        }
        let entry = self.index.get(key)?.live_at(before)?;
        Some(entry.kv(key, self.spill.as_ref()))
    }

    /// The retained changes of keys in `[key, range_end)` (etcd's range forms: an empty
    /// `range_end` is the key alone, `\0` every key from `key`) at revisions from `from` on,
    /// as whole revisions, stopping after the revision that reaches `max_events` events or
    /// `max_bytes` of keys and values (at least one whole revision is returned even if it is
    /// larger).
    ///
    /// Fails with [`MvccError::Compacted`] when `from` is below the compaction revision (the
    /// changes between were dropped), as etcd cancels such a watcher.
    ///
    /// Walks every retained change of the keys in the range: the index is ordered by key,
    /// not by revision, so a watcher that falls far behind on a large range costs a scan of
    /// that range per batch (see `docs/watch.md`).
    pub fn history(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<History, MvccError> {
        if from < self.compact_revision {
            return Err(MvccError::Compacted);
        }
        let from = from.max(1);
        let current = self.current_revision;
        if from > current {
            return Ok(History {
                events: Vec::new(),
                next_revision: from,
            });
        }
        let max_events = max_events.max(1);
        // First pass: which revisions hold changes in range, to find where to stop without
        // reading values that are not sent.
        let mut found: Vec<(i64, i64, &[u8], std::borrow::Cow<'_, Entry>)> = Vec::new();
        for (stored, history) in self.index.range::<[u8], _>(key_bounds(key, range_end)) {
            for entry in history.iter() {
                if entry.mod_revision() >= from {
                    let revision = entry.revision();
                    found.push((revision.main, revision.sub, stored.as_slice(), entry));
                }
            }
        }
        found.sort_unstable_by(|a, b| match a.0.cmp(&b.0) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        });
        // The change at which a limit is reached: the batch ends with its revision.
        let mut bytes = 0usize;
        let mut limit_at = None;
        for (position, (_, _, key, entry)) in found.iter().enumerate() {
            bytes = bytes.saturating_add(key.len() + entry.value().len());
            if position + 1 >= max_events || bytes >= max_bytes {
                limit_at = Some(position);
                break;
            }
        }
        let mut end = found.len();
        let mut next_revision = current + 1;
        if let Some(position) = limit_at {
            let last_revision = found[position].0;
            end = found.partition_point(|change| change.0 <= last_revision);
            if end < found.len() {
                next_revision = last_revision + 1;
            }
        }
        let events = found[..end]
            .iter()
            .map(|(_, _, key, entry)| Event::of(key, entry, self))
            .collect();
        Ok(History {
            events,
            next_revision,
        })
    }
}
