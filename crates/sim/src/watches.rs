//! etcd's watch guarantees, checked against the committed history.
//!
//! The truth is built without the watch hub: every committed entry is fed once, in log order,
//! to a reference [`MvccStore`] that records the changes of each write
//! ([`MvccStore::set_track_changes`]), so it knows every revision's events and, for each, the
//! key's value just before. What the simulated watchers received (`crate::world`'s watch
//! clients, which record it as [`Run`]s) is compared with it:
//!
//! - **ordered**: a watcher's events never go back in revision;
//! - **unique**: no event arrives twice;
//! - **atomic**: one revision's events arrive in one response; for a watcher that asked for
//!   fragments, in one response reassembled from consecutive fragments (every part but the
//!   last marked `fragment`, nothing else of that watcher in between);
//! - **bookmarkable**: after a progress answer with revision R (stream-wide, or the periodic
//!   one of a watcher), no event at or below R arrives for a watcher that existed when it was
//!   answered;
//! - **reliable**: from its start to the last revision it knows of (its last event or
//!   progress answer), a watcher received exactly the truth's events of its range, with its
//!   filters applied, and `prev_kv` values that were the key's before;
//! - **resumable**: a watcher resumed elsewhere from its last revision + 1 (after a crash, a
//!   move, or a cancel) continues that sequence exactly; only a compaction cancel (with its
//!   `compact_revision`) may skip, and only the revisions below that compaction.
//!
//! The first four are checked as responses arrive (see `crate::world`), the last two after
//! the run by [`check_run`].

use bytes::Bytes;
use kv::mvcc::{Event, EventKind, KeyValue, MvccCommand, MvccRequest, MvccStore, PutRequest};
use machine::{MachineCommand, MachineFaults};
use std::collections::{BTreeMap, HashMap};
use watch::WatchEvent;

/// What a simulated watcher watches (etcd's range forms, see `watch::CreateWatch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    /// The first key.
    pub key: Bytes,
    /// Empty: the key alone; `\0`: every key from `key` on; else `[key, range_end)`.
    pub range_end: Bytes,
    /// Leave out puts.
    pub no_put: bool,
    /// Leave out deletes.
    pub no_delete: bool,
    /// Ask for each event's previous key-value.
    pub prev_kv: bool,
}

impl WatchSpec {
    /// Whether the watcher is sent `event`.
    pub fn covers(&self, event: &Event) -> bool {
        let key = event.kv.key.as_ref();
        let in_range = if self.range_end.is_empty() {
            key == self.key.as_ref()
        } else if self.range_end.as_ref() == [0] {
            key >= self.key.as_ref()
        } else {
            key >= self.key.as_ref() && key < self.range_end.as_ref()
        };
        in_range
            && match event.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            }
    }
}

/// One change of the committed history, with the key's value just before it.
#[derive(Clone, Debug)]
struct TruthEvent {
    event: Event,
    prev: Option<KeyValue>,
}

/// The committed history as watch events, built from the committed log alone.
pub struct Truth {
    store: MvccStore,
    /// The state machine's `skip_revision_every` fault, replayed so that the truth has the
    /// revisions the members have (the truth is the log as the state machine in force reads
    /// it; the watch faults are the hub's and are not replayed).
    skip_revision_every: u64,
    /// Each key's newest value (absent once deleted).
    latest: HashMap<Bytes, KeyValue>,
    revisions: BTreeMap<i64, Vec<TruthEvent>>,
}

/// The key `MachineFaults::skip_revision_every` writes (as in `machine`).
const SKIPPED_REVISION_KEY: &[u8] = b"\xff\xffskipped-revision";

impl Truth {
    /// An empty history; `faults` are the state machine's (see `skip_revision_every`).
    pub fn new(faults: MachineFaults) -> Truth {
        let mut store = MvccStore::new();
        store.set_track_changes(true);
        Truth {
            store,
            skip_revision_every: faults.skip_revision_every,
            latest: HashMap::new(),
            revisions: BTreeMap::new(),
        }
    }

    /// The revision of the newest committed write.
    pub fn current_revision(&self) -> i64 {
        self.store.current_revision()
    }

    /// The revision of the newest committed compaction.
    pub fn compact_revision(&self) -> i64 {
        self.store.compact_revision()
    }

    /// Feeds the committed normal entry at `index` (each exactly once, in log order).
    pub fn feed(&mut self, index: u64, data: &Bytes) {
        let Ok(MachineCommand::Kv(command)) = MachineCommand::decode(data) else {
            return;
        };
        let every = self.skip_revision_every;
        if every > 0
            && index.is_multiple_of(every)
            && matches!(command.request, MvccRequest::Put(_))
        {
            self.apply(MvccCommand {
                client_id: 0,
                sequence: 0,
                request: MvccRequest::Put(PutRequest::new(SKIPPED_REVISION_KEY, Bytes::new())),
            });
        }
        self.apply(command);
    }

    fn apply(&mut self, command: MvccCommand) {
        let before = self.store.current_revision();
        let _ = self.store.apply_command(command);
        let revision = self.store.current_revision();
        if revision == before {
            return;
        }
        let events = self.store.last_changes(|_| true);
        let mut recorded = Vec::with_capacity(events.len());
        for event in events {
            let prev = match event.kind {
                EventKind::Put => self.latest.insert(event.kv.key.clone(), event.kv.clone()),
                EventKind::Delete => self.latest.remove(&event.kv.key),
            };
            recorded.push(TruthEvent { event, prev });
        }
        self.revisions.insert(revision, recorded);
    }
}

/// One watcher's uninterrupted sequence: from its start, through resumes, to the last
/// revision it knows of. A cancel followed by a fresh watch (from now or from a chosen past
/// revision) starts a new run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Who (for messages), e.g. `watcher 2/1`.
    pub label: String,
    /// What it watches.
    pub spec: WatchSpec,
    /// Its first revision (`None` until a from-now create is answered).
    pub start: Option<i64>,
    /// The first revision it does not know about: everything below it was received (or
    /// lost to a compaction, see `gaps`).
    pub next: i64,
    /// Revisions lost to compaction, inclusive ranges, announced by a `compact_revision`.
    pub gaps: Vec<(i64, i64)>,
    /// Where each segment (one watcher on one stream) began: (revision, member index).
    pub segments: Vec<(i64, usize)>,
    /// The events received, in order.
    pub events: Vec<WatchEvent>,
    /// (revision, sub-revision) of the last event received.
    pub last: Option<(i64, i64)>,
}

impl Run {
    /// A run to be started by a create at `start_revision` (0: from now).
    pub fn new(label: String, spec: WatchSpec, start_revision: i64) -> Run {
        Run {
            label,
            spec,
            start: (start_revision > 0).then_some(start_revision),
            next: start_revision.max(0),
            gaps: Vec::new(),
            segments: Vec::new(),
            events: Vec::new(),
            last: None,
        }
    }

    /// The segment a revision falls in (for telling reliable from resumable).
    fn segment_of(&self, revision: i64) -> usize {
        self.segments
            .iter()
            .rposition(|(from, _)| *from <= revision)
            .unwrap_or(0)
    }
}

fn describe(event: &Event) -> String {
    format!(
        "{:?} {:?} at {}.{}",
        event.kind,
        event.kv.key.as_ref(),
        event.revision(),
        event.sub
    )
}

/// Compares a run with the truth; the first problem as (property, detail).
pub fn check_run(truth: &Truth, run: &Run) -> Option<(&'static str, String)> {
    let Some(start) = run.start else {
        return (!run.events.is_empty()).then(|| {
            (
                "watch-reliable",
                format!("{}: events before its create was answered", run.label),
            )
        });
    };
    if run.next - 1 > truth.current_revision() {
        return Some((
            "watch-bookmarkable",
            format!(
                "{}: knows of revision {} but only {} is committed",
                run.label,
                run.next - 1,
                truth.current_revision()
            ),
        ));
    }
    let lost = |revision: i64| {
        run.gaps
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&revision))
    };
    let expected = truth
        .revisions
        .range(start..run.next.max(start))
        .filter(|(revision, _)| !lost(**revision))
        .flat_map(|(_, events)| events.iter())
        .filter(|truth| run.spec.covers(&truth.event));
    let mut got = run.events.iter();
    for (position, want) in expected.enumerate() {
        let property = |revision: i64| {
            let segment = run.segment_of(revision);
            if segment == 0 {
                ("watch-reliable", String::new())
            } else {
                let (from, member) = run.segments[segment];
                (
                    "watch-resumable",
                    format!(
                        " (segment {segment}, resumed at revision {from} on n{})",
                        member + 1
                    ),
                )
            }
        };
        let Some(received) = got.next() else {
            let (name, segment) = property(want.event.revision());
            return Some((
                name,
                format!(
                    "{}: missing event #{position} {}{segment}; it received {} events, knows of revisions {start}..{}",
                    run.label,
                    describe(&want.event),
                    run.events.len(),
                    run.next - 1
                ),
            ));
        };
        if received.event != want.event {
            let (name, segment) = property(want.event.revision().min(received.event.revision()));
            return Some((
                name,
                format!(
                    "{}: event #{position} is {} but the history has {}{segment} (gaps {:?})",
                    run.label,
                    describe(&received.event),
                    describe(&want.event),
                    run.gaps
                ),
            ));
        }
        let prev_ok = match (&received.prev_kv, run.spec.prev_kv) {
            (None, _) => true,
            (Some(_), false) => false,
            (Some(prev), true) => want.prev.as_ref() == Some(prev),
        };
        if !prev_ok {
            return Some((
                "watch-reliable",
                format!(
                    "{}: event {} came with prev_kv {:?}, but before it the key was {:?}",
                    run.label,
                    describe(&received.event),
                    received.prev_kv,
                    want.prev
                ),
            ));
        }
    }
    if let Some(extra) = got.next() {
        return Some((
            "watch-reliable",
            format!(
                "{}: event {} is not in the history of revisions {start}..{} it watched (gaps {:?})",
                run.label,
                describe(&extra.event),
                run.next - 1,
                run.gaps
            ),
        ));
    }
    None
}
