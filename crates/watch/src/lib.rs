//! etcd's watch streams as a deterministic hub (see `docs/watch.md`).
//!
//! A member serves watches from its own applied state. Everything that must happen at an exact
//! point of the apply sequence runs on the thread that applies entries, with the store in
//! hand: the hub is told of each write right after it is applied ([`WatchHub::notify`]), and
//! creating a watcher, catching one up from history and answering a progress request
//! ([`WatchHub::request`]) read the store at a revision no write can slip past. What leaves the
//! hub waits in a bounded queue per stream ([`WatchHub::drain`]), which the stream's task (or
//! the simulator's client) empties at its own pace.
//!
//! Watchers are etcd's two groups:
//! - **synced**: caught up; [`WatchHub::notify`] hands them each new revision's events, as one
//!   response per revision (fragments aside), so a multi-key transaction arrives whole.
//! - **unsynced**: behind, because they started in the past or because their stream's queue was
//!   full when a revision came. They are caught up in bounded batches, from the hub's recent
//!   changes (the last revisions' changes to watched keys, bounded by
//!   [`WatchLimits::recent_bytes`]) or else from the store's history, when their stream asks
//!   ([`WatchRequest::CatchUp`], after a drain), and join the synced group at the revision the
//!   last batch reached. One whose next revision was compacted away
//!   is canceled with `compact_revision`, as etcd does.
//!
//! A slow stream therefore costs the store nothing and the other streams nothing: its watchers
//! drop out of the synced group and read history later. Its memory is its queue, bounded by
//! [`WatchLimits::max_queued_responses`] and [`WatchLimits::max_queued_bytes`].
//!
//! No clock and no randomness: the hub does the same thing in the simulator and in a member.
//! Maps that are iterated are ordered, so delivery order never depends on hashing.

use bytes::Bytes;
use kv::mvcc::{Event, EventKind, KeyValue, MvccStore};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Identifies a stream (one bidirectional `Watch` call) inside a hub.
pub type StreamId = u64;

/// A `watch_id` of 0 in a create request asks the server to choose (etcd's `AutoWatchID`).
pub const AUTO_WATCH_ID: i64 = 0;

/// The `watch_id` of a progress response that answers a progress request: it concerns every
/// watcher of the stream (etcd 3.4 sends -1).
pub const PROGRESS_WATCH_ID: i64 = -1;

/// etcd's message for a create whose range is empty (`key >= range_end`).
pub const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// etcd's message for a create that names a `watch_id` already used on its stream.
pub const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Called when a stream's queue gains responses (the server wakes the stream's task with it).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What bounds the hub's memory and the size of what it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchLimits {
    /// The most watchers one stream may hold; a create beyond it is refused.
    pub max_watchers_per_stream: usize,
    /// The most responses a stream's queue holds before its watchers fall back to history
    /// (etcd buffers 128 per stream; one revision queues a response per watcher it concerns,
    /// so a stream of a hundred watchers of one prefix needs room for several revisions).
    pub max_queued_responses: usize,
    /// The most bytes (keys, values and previous values) a stream's queue holds before its
    /// watchers fall back to history.
    pub max_queued_bytes: usize,
    /// A response larger than this is split into fragments, for watchers that asked for
    /// fragments (the server passes its request size limit, as etcd does).
    pub max_response_bytes: usize,
    /// The most events one catch-up batch reads from history for one watcher (etcd reads up
    /// to 1,000 revisions at a time).
    pub catch_up_events: usize,
    /// The most bytes of keys and values one catch-up batch reads for one watcher.
    pub catch_up_bytes: usize,
    /// The most bytes of keys and values of recent changes the hub keeps for catching up
    /// watchers that fell a little behind (see [`WatchHub::notify`]); older ones are read from
    /// the store's history, which costs a scan of the watcher's range.
    pub recent_bytes: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            max_watchers_per_stream: 100_000,
            max_queued_responses: 1024,
            max_queued_bytes: 8 << 20,
            max_response_bytes: (3 << 19) + 512,
            catch_up_events: 1_000,
            catch_up_bytes: 4 << 20,
            recent_bytes: 16 << 20,
        }
    }
}

/// Deliberately broken delivery, for showing that the simulator's watch checker catches it.
/// TEST-ONLY: all off by default, and a serving member never turns one on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchFaults {
    /// Every this many events queued (0: never), one event is left out of its response.
    pub drop_event_every: u64,
    /// Every this many events queued (0: never), the response holding it is queued twice.
    pub duplicate_event_every: u64,
    /// Every this many responses queued whole that hold a revision of several events (0:
    /// never), one is split in the middle of that revision into two responses, neither
    /// marked `fragment`.
    pub split_revision_every: u64,
}

/// A `WatchCreateRequest`, with etcd's range forms: an empty `range_end` watches `key` alone,
/// `range_end == "\0"` every key from `key` on, anything else `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateWatch {
    /// The first key watched.
    pub key: Bytes,
    /// The end of the range (see above).
    pub range_end: Bytes,
    /// The first revision to deliver; 0 means "from the next write on".
    pub start_revision: i64,
    /// Whether the watcher gets an empty response at every periodic progress tick that finds
    /// it caught up and idle.
    pub progress_notify: bool,
    /// Leave out put events (etcd's `NOPUT` filter).
    pub no_put: bool,
    /// Leave out delete events (etcd's `NODELETE` filter).
    pub no_delete: bool,
    /// Send each event's previous key-value too.
    pub prev_kv: bool,
    /// The id the client chose, or [`AUTO_WATCH_ID`].
    pub watch_id: i64,
    /// Split responses larger than [`WatchLimits::max_response_bytes`].
    pub fragment: bool,
}

/// What a stream asks of the hub, applied with the store in hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchRequest {
    /// Add a watcher.
    Create(CreateWatch),
    /// Remove the watcher with this `watch_id` (an unknown id is ignored, as etcd does).
    Cancel(i64),
    /// The client's progress request: answered with the current revision once every watcher
    /// of the stream is caught up.
    Progress,
    /// The periodic progress tick (etcd's `progress_notify`, every few minutes).
    PeriodicProgress,
    /// Read history for the stream's watchers that are behind, as far as its queue allows.
    CatchUp,
}

/// One event as sent: the change and, if the watcher asked, the key-value before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The change.
    pub event: Event,
    /// The key-value just before the change, if asked for and still retained.
    pub prev_kv: Option<KeyValue>,
}

/// A `WatchResponse` without the member-specific parts of its header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The header's revision.
    pub revision: i64,
    /// The watcher it concerns ([`PROGRESS_WATCH_ID`] for a stream-wide progress answer).
    pub watch_id: i64,
    /// Answers a create.
    pub created: bool,
    /// The watcher is gone (canceled, refused, or compacted away).
    pub canceled: bool,
    /// Why a create was refused.
    pub cancel_reason: String,
    /// Set when the watcher needed history that compaction removed: the compaction revision.
    pub compact_revision: i64,
    /// More fragments of the same revision follow.
    pub fragment: bool,
    /// The events, whole revisions in order.
    pub events: Vec<WatchEvent>,
}

impl WatchResponse {
    /// A response with no events: a progress notification.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty()
            && !self.created
            && !self.canceled
            && self.compact_revision == 0
            && !self.fragment
    }

    /// What the response costs in a queue: keys, values and a fixed overhead per event.
    fn weight(&self) -> usize {
        64 + self.events.iter().map(event_weight).sum::<usize>()
    }
}

fn kv_weight(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len()
}

fn recent_weight(event: &Event) -> usize {
    48 + kv_weight(&event.kv)
}

fn event_weight(event: &WatchEvent) -> usize {
    32 + kv_weight(&event.event.kv) + event.prev_kv.as_ref().map_or(0, kv_weight)
}

/// What a drain found besides the responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Some watchers of the stream are behind: send [`WatchRequest::CatchUp`] once the drained
    /// responses are on their way.
    pub needs_catch_up: bool,
}

/// Counts for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Open streams.
    pub streams: usize,
    /// Watchers on all streams.
    pub watchers: usize,
    /// Watchers behind, waiting to be caught up from history.
    pub unsynced: usize,
    /// Responses waiting in stream queues.
    pub queued_responses: usize,
    /// Events handed to stream queues since the hub was made.
    pub events_queued: u64,
}

/// The hub has no such stream (it was closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownStream(pub StreamId);

impl std::fmt::Display for UnknownStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "watch stream {} is closed", self.0)
    }
}

impl std::error::Error for UnknownStream {}

/// One watcher.
#[derive(Debug)]
struct Watcher {
    stream: StreamId,
    id: i64,
    key: Bytes,
    range_end: Bytes,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision it has not been sent: every revision before it was sent or held
    /// nothing for it. Synced with a start in the future, nothing before it is delivered.
    next_revision: i64,
    synced: bool,
    /// Something was queued for it since the last periodic progress tick.
    sent_since_tick: bool,
    /// The hub's recent changes hold every change of its range from this revision on (it was
    /// registered then).
    recorded_from: i64,
}

impl Watcher {
    fn single_key(&self) -> bool {
        self.range_end.is_empty()
    }

    fn contains(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_ref()
        } else {
            range_contains(key, &self.key, &self.range_end)
        }
    }

    fn keeps(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }

    fn watch_event(&self, event: &Event, store: &MvccStore) -> WatchEvent {
        WatchEvent {
            prev_kv: if self.prev_kv {
                store.prev_kv(&event.kv.key, event.revision())
            } else {
                None
            },
            event: event.clone(),
        }
    }
}

/// One stream's state.
struct Stream {
    /// Its watchers by `watch_id`, to their hub-wide numbers.
    watchers: BTreeMap<i64, u64>,
    /// Where the search for a free automatic id starts (etcd counts up from 0).
    next_watch_id: i64,
    outbox: VecDeque<WatchResponse>,
    queued_bytes: usize,
    /// How many of its watchers are unsynced.
    unsynced: usize,
    /// A progress request waits for the unsynced watchers.
    progress_pending: bool,
    waker: Option<Waker>,
}

impl Stream {
    fn has_room(&self, limits: &WatchLimits) -> bool {
        self.outbox.len() < limits.max_queued_responses
            && self.queued_bytes < limits.max_queued_bytes
    }

    fn push(&mut self, response: WatchResponse) {
        self.queued_bytes += response.weight();
        self.outbox.push_back(response);
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            waker();
        }
    }
}

/// Every watch stream of a member. See the crate documentation.
pub struct WatchHub {
    limits: WatchLimits,
    streams: BTreeMap<StreamId, Stream>,
    next_stream: StreamId,
    watchers: BTreeMap<u64, Watcher>,
    next_watcher: u64,
    /// Synced single-key watchers by key.
    synced_keys: HashMap<Bytes, BTreeSet<u64>>,
    /// Synced range watchers, grouped by their exact range so that many watchers of one
    /// prefix cost one comparison per event.
    synced_ranges: BTreeMap<(Bytes, Bytes), BTreeSet<u64>>,
    /// Every watcher's key (single-key watchers) and range, synced or not, with how many
    /// watchers have it: what the recent changes record.
    watched_keys: HashMap<Bytes, usize>,
    watched_ranges: BTreeMap<(Bytes, Bytes), usize>,
    /// The changes of recent revisions to watched keys, oldest first, bounded by
    /// [`WatchLimits::recent_bytes`]: a watcher that fell behind a little (its stream's queue
    /// was full) catches up from here instead of scanning its range in the store.
    recent: VecDeque<(i64, Vec<Event>)>,
    recent_bytes: usize,
    /// Every revision from this one on is complete in `recent` (for the watchers registered
    /// by then).
    recent_from: i64,
    events_queued: u64,
    /// Responses queued whole that held a revision of several events (for
    /// [`WatchFaults::split_revision_every`]).
    splittable_responses: u64,
    /// Broken delivery (tests of the simulator's checker only).
    faults: WatchFaults,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub::new(WatchLimits::default())
    }
}

fn range_contains(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl WatchHub {
    /// An empty hub.
    pub fn new(limits: WatchLimits) -> WatchHub {
        WatchHub {
            limits,
            streams: BTreeMap::new(),
            next_stream: 1,
            watchers: BTreeMap::new(),
            next_watcher: 1,
            synced_keys: HashMap::new(),
            synced_ranges: BTreeMap::new(),
            watched_keys: HashMap::new(),
            watched_ranges: BTreeMap::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            recent_from: i64::MAX,
            events_queued: 0,
            splittable_responses: 0,
            faults: WatchFaults::default(),
        }
    }

    /// Breaks delivery as `faults` says (tests of the simulator's checker only).
    pub fn set_faults(&mut self, faults: WatchFaults) {
        self.faults = faults;
    }

    /// The limits in force.
    pub fn limits(&self) -> WatchLimits {
        self.limits
    }

    /// Opens a stream; `waker` is called whenever its queue gains responses.
    pub fn open_stream(&mut self, waker: Option<Waker>) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            id,
            Stream {
                watchers: BTreeMap::new(),
                next_watch_id: 0,
                outbox: VecDeque::new(),
                queued_bytes: 0,
                unsynced: 0,
                progress_pending: false,
                waker,
            },
        );
        id
    }

    /// Closes a stream and drops its watchers and queue (the client went away, or the member
    /// ends the stream).
    pub fn close_stream(&mut self, stream: StreamId) {
        let Some(state) = self.streams.remove(&stream) else {
            return;
        };
        for number in state.watchers.into_values() {
            if let Some(watcher) = self.watchers.remove(&number) {
                self.unindex(number, &watcher);
                self.unregister(&watcher);
            }
        }
    }

    /// Whether any synced watcher exists.
    pub fn has_synced(&self) -> bool {
        !self.synced_keys.is_empty() || !self.synced_ranges.is_empty()
    }

    /// Whether any watcher exists: only then must writes record their changes.
    pub fn has_watchers(&self) -> bool {
        !self.watchers.is_empty()
    }

    /// Whether a watcher (synced or not) covers `key`.
    pub fn wants(&self, key: &[u8]) -> bool {
        self.watched_keys.contains_key(key)
            || self
                .watched_ranges
                .keys()
                .any(|(start, end)| range_contains(key, start, end))
    }

    /// Counts a watcher's range among the watched ones.
    fn register(&mut self, watcher: &Watcher) {
        if watcher.single_key() {
            *self.watched_keys.entry(watcher.key.clone()).or_default() += 1;
        } else {
            *self
                .watched_ranges
                .entry((watcher.key.clone(), watcher.range_end.clone()))
                .or_default() += 1;
        }
    }

    /// Undoes [`WatchHub::register`].
    fn unregister(&mut self, watcher: &Watcher) {
        if watcher.single_key() {
            if let Some(count) = self.watched_keys.get_mut(&watcher.key) {
                *count -= 1;
                if *count == 0 {
                    self.watched_keys.remove(&watcher.key);
                }
            }
        } else {
            let range = (watcher.key.clone(), watcher.range_end.clone());
            if let Some(count) = self.watched_ranges.get_mut(&range) {
                *count -= 1;
                if *count == 0 {
                    self.watched_ranges.remove(&range);
                }
            }
        }
    }

    /// Keeps the changes of `revision` among the recent ones, dropping the oldest beyond the
    /// bound.
    fn record(&mut self, revision: i64, events: &[Event]) {
        self.recent_bytes += events.iter().map(recent_weight).sum::<usize>();
        self.recent.push_back((revision, events.to_vec()));
        while self.recent_bytes > self.limits.recent_bytes
            && let Some((dropped, events)) = self.recent.pop_front()
        {
            self.recent_bytes -= events.iter().map(recent_weight).sum::<usize>();
            self.recent_from = dropped + 1;
        }
    }

    /// Forgets the recent changes: from `next` on they will be complete again.
    fn forget_recent(&mut self, next: i64) {
        self.recent.clear();
        self.recent_bytes = 0;
        self.recent_from = next;
    }

    /// Counts for status and metrics.
    pub fn stats(&self) -> WatchStats {
        WatchStats {
            streams: self.streams.len(),
            watchers: self.watchers.len(),
            unsynced: self.streams.values().map(|s| s.unsynced).sum(),
            queued_responses: self.streams.values().map(|s| s.outbox.len()).sum(),
            events_queued: self.events_queued,
        }
    }

    /// Takes the stream's queued responses (appending them to `out`).
    pub fn drain(
        &mut self,
        stream: StreamId,
        out: &mut Vec<WatchResponse>,
    ) -> Result<Drained, UnknownStream> {
        let state = self.streams.get_mut(&stream).ok_or(UnknownStream(stream))?;
        out.extend(state.outbox.drain(..));
        state.queued_bytes = 0;
        Ok(Drained {
            needs_catch_up: state.unsynced > 0,
        })
    }

    /// Applies a stream's request at the store's current state.
    pub fn request(
        &mut self,
        stream: StreamId,
        request: WatchRequest,
        store: &MvccStore,
    ) -> Result<(), UnknownStream> {
        if !self.streams.contains_key(&stream) {
            return Err(UnknownStream(stream));
        }
        match request {
            WatchRequest::Create(create) => self.create(stream, create, store),
            WatchRequest::Cancel(watch_id) => self.cancel(stream, watch_id, store),
            WatchRequest::Progress => {
                if let Some(state) = self.streams.get_mut(&stream) {
                    state.progress_pending = true;
                }
                self.catch_up(stream, store);
            }
            WatchRequest::PeriodicProgress => self.periodic_progress(stream, store),
            WatchRequest::CatchUp => self.catch_up(stream, store),
        }
        if let Some(state) = self.streams.get(&stream)
            && !state.outbox.is_empty()
        {
            state.wake();
        }
        Ok(())
    }

    /// After the store's state was replaced by a snapshot: every watcher reads history from
    /// where it was (and is canceled if that was compacted). `previous_revision` is the
    /// replaced state's revision, up to which the synced watchers have been sent everything;
    /// `current_revision` the new state's.
    pub fn restored(&mut self, previous_revision: i64, current_revision: i64) {
        // The recent changes do not cover the jump.
        self.forget_recent(current_revision + 1);
        let synced: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, watcher)| watcher.synced)
            .map(|(&number, _)| number)
            .collect();
        for number in synced {
            let from = self
                .watchers
                .get(&number)
                .map(|watcher| watcher.next_revision.max(previous_revision + 1));
            self.demote(number, from);
        }
        for state in self.streams.values() {
            if state.unsynced > 0 {
                state.wake();
            }
        }
    }

    /// Hands the write just applied to the synced watchers it concerns, and keeps its changes
    /// to watched keys among the recent ones (the store must track changes,
    /// [`MvccStore::set_track_changes`], while [`WatchHub::has_watchers`]).
    pub fn notify(&mut self, store: &MvccStore) {
        if !self.has_watchers() {
            return;
        }
        let events = store.last_changes(|key| self.wants(key));
        if events.is_empty() {
            return;
        }
        let revision = store.current_revision();
        self.record(revision, &events);
        if !self.has_synced() {
            return;
        }
        let mut matched: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (position, event) in events.iter().enumerate() {
            if let Some(numbers) = self.synced_keys.get(&event.kv.key) {
                for &number in numbers {
                    matched.entry(number).or_default().push(position);
                }
            }
            for ((start, end), numbers) in &self.synced_ranges {
                if range_contains(&event.kv.key, start, end) {
                    for &number in numbers {
                        matched.entry(number).or_default().push(position);
                    }
                }
            }
        }
        let mut woken = BTreeSet::new();
        for (number, positions) in matched {
            let Some(watcher) = self.watchers.get(&number) else {
                continue;
            };
            if revision < watcher.next_revision {
                continue;
            }
            if let Some(watcher) = self.watchers.get_mut(&number) {
                watcher.next_revision = revision + 1;
            }
            let Some(watcher) = self.watchers.get(&number) else {
                continue;
            };
            let selected: Vec<WatchEvent> = positions
                .iter()
                .map(|&position| &events[position])
                .filter(|event| watcher.keeps(event))
                .map(|event| watcher.watch_event(event, store))
                .collect();
            if selected.is_empty() {
                continue;
            }
            let stream = watcher.stream;
            let Some(state) = self.streams.get(&stream) else {
                continue;
            };
            if state.has_room(&self.limits) {
                let (id, fragment) = (watcher.id, watcher.fragment);
                self.queue_events(stream, number, id, revision, fragment, selected);
            } else {
                self.demote(number, Some(revision));
            }
            woken.insert(stream);
        }
        for stream in woken {
            if let Some(state) = self.streams.get(&stream) {
                state.wake();
            }
        }
    }

    fn create(&mut self, stream: StreamId, mut create: CreateWatch, store: &MvccStore) {
        // etcd reads an empty key as "\0", so `key = "", range_end = "\0"` watches every key.
        if create.key.is_empty() {
            create.key = Bytes::from_static(&[0]);
        }
        let current = store.current_revision();
        let limits = self.limits;
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let refuse = |reason: &str| WatchResponse {
            revision: current,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        };
        let range_end = create.range_end.as_ref();
        if !range_end.is_empty() && range_end != [0] && create.key.as_ref() >= range_end {
            state.push(refuse(EMPTY_RANGE));
            return;
        }
        if state.watchers.len() >= limits.max_watchers_per_stream {
            state.push(refuse(&format!(
                "raftkv: too many watchers on one stream (the limit is {})",
                limits.max_watchers_per_stream
            )));
            return;
        }
        let id = if create.watch_id == AUTO_WATCH_ID {
            while state.watchers.contains_key(&state.next_watch_id) {
                state.next_watch_id += 1;
            }
            let id = state.next_watch_id;
            state.next_watch_id += 1;
            id
        } else if state.watchers.contains_key(&create.watch_id) {
            state.push(refuse(DUPLICATE_ID));
            return;
        } else {
            create.watch_id
        };
        let number = self.next_watcher;
        self.next_watcher += 1;
        state.watchers.insert(id, number);
        if self.watchers.is_empty() {
            // Writes recorded nothing while nobody watched.
            self.forget_recent(current + 1);
        }
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        state.push(WatchResponse {
            revision: current,
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        });
        let from_now = create.start_revision <= 0 || create.start_revision > current;
        let watcher = Watcher {
            stream,
            id,
            key: create.key,
            range_end: create.range_end,
            prev_kv: create.prev_kv,
            no_put: create.no_put,
            no_delete: create.no_delete,
            progress_notify: create.progress_notify,
            fragment: create.fragment,
            next_revision: if from_now {
                create.start_revision.max(current + 1)
            } else {
                create.start_revision
            },
            synced: from_now,
            sent_since_tick: false,
            recorded_from: current + 1,
        };
        if from_now {
            self.index(number, &watcher);
        } else {
            state.unsynced += 1;
        }
        self.register(&watcher);
        self.watchers.insert(number, watcher);
        if !from_now {
            self.catch_up(stream, store);
        }
    }

    fn cancel(&mut self, stream: StreamId, watch_id: i64, store: &MvccStore) {
        let Some(number) = self
            .streams
            .get_mut(&stream)
            .and_then(|state| state.watchers.remove(&watch_id))
        else {
            return;
        };
        self.remove(number);
        if let Some(state) = self.streams.get_mut(&stream) {
            state.push(WatchResponse {
                revision: store.current_revision(),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            });
        }
        self.answer_progress(stream, store);
    }

    /// Removes a watcher already taken out of its stream's map.
    fn remove(&mut self, number: u64) {
        if let Some(watcher) = self.watchers.remove(&number) {
            if !watcher.synced
                && let Some(state) = self.streams.get_mut(&watcher.stream)
            {
                state.unsynced -= 1;
            }
            self.unindex(number, &watcher);
            self.unregister(&watcher);
        }
    }

    fn index(&mut self, number: u64, watcher: &Watcher) {
        if watcher.single_key() {
            self.synced_keys
                .entry(watcher.key.clone())
                .or_default()
                .insert(number);
        } else {
            self.synced_ranges
                .entry((watcher.key.clone(), watcher.range_end.clone()))
                .or_default()
                .insert(number);
        }
    }

    fn unindex(&mut self, number: u64, watcher: &Watcher) {
        if !watcher.synced {
            return;
        }
        if watcher.single_key() {
            if let Some(numbers) = self.synced_keys.get_mut(&watcher.key) {
                numbers.remove(&number);
                if numbers.is_empty() {
                    self.synced_keys.remove(&watcher.key);
                }
            }
        } else {
            let range = (watcher.key.clone(), watcher.range_end.clone());
            if let Some(numbers) = self.synced_ranges.get_mut(&range) {
                numbers.remove(&number);
                if numbers.is_empty() {
                    self.synced_ranges.remove(&range);
                }
            }
        }
    }

    /// Moves a synced watcher to the unsynced group; `from` is the first revision it has not
    /// been sent (None keeps what it has).
    fn demote(&mut self, number: u64, from: Option<i64>) {
        let Some(watcher) = self.watchers.get(&number) else {
            return;
        };
        if !watcher.synced {
            return;
        }
        let stream = watcher.stream;
        // Unindex needs the watcher as it is (synced); take it out briefly.
        if let Some(mut watcher) = self.watchers.remove(&number) {
            self.unindex(number, &watcher);
            watcher.synced = false;
            if let Some(from) = from {
                watcher.next_revision = from;
            }
            self.watchers.insert(number, watcher);
        }
        if let Some(state) = self.streams.get_mut(&stream) {
            state.unsynced += 1;
        }
    }

    fn promote(&mut self, number: u64) {
        let Some(watcher) = self.watchers.get_mut(&number) else {
            return;
        };
        if watcher.synced {
            return;
        }
        watcher.synced = true;
        let stream = watcher.stream;
        if let Some(watcher) = self.watchers.remove(&number) {
            self.index(number, &watcher);
            self.watchers.insert(number, watcher);
        }
        if let Some(state) = self.streams.get_mut(&stream) {
            state.unsynced -= 1;
        }
    }

    /// Queues one revision's (or one history batch's) events for a watcher, in fragments if
    /// it asked for them and the events are too large for one response.
    fn queue_events(
        &mut self,
        stream: StreamId,
        number: u64,
        watch_id: i64,
        revision: i64,
        fragment: bool,
        events: Vec<WatchEvent>,
    ) {
        let limit = self.limits.max_response_bytes;
        let before = self.events_queued;
        self.events_queued += events.len() as u64;
        // TEST-ONLY faults (off unless a checker test turns them on): the `n`-th event queued
        // is hit when a multiple of `every` falls in this response.
        let hit = |every: u64| every > 0 && (before / every) != (self.events_queued / every);
        let duplicate = hit(self.faults.duplicate_event_every);
        let mut events = events;
        if hit(self.faults.drop_event_every) {
            events.pop();
            if events.is_empty() {
                return;
            }
        }
        let total: usize = events.iter().map(event_weight).sum();
        let whole = !fragment || total <= limit;
        let mut split_at = None;
        if whole && self.faults.split_revision_every > 0 {
            split_at = (1..events.len())
                .find(|&i| events[i - 1].event.revision() == events[i].event.revision());
            if split_at.is_some() {
                self.splittable_responses += 1;
                if !self
                    .splittable_responses
                    .is_multiple_of(self.faults.split_revision_every)
                {
                    split_at = None;
                }
            }
        }
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if whole {
            let mut response = WatchResponse {
                revision,
                watch_id,
                events,
                ..WatchResponse::default()
            };
            if let Some(at) = split_at {
                let rest = response.events.split_off(at);
                state.push(response.clone());
                response.events = rest;
            }
            if duplicate {
                state.push(response.clone());
            }
            state.push(response);
        } else {
            let mut chunk = Vec::new();
            let mut chunk_bytes = 0;
            let mut chunks = Vec::new();
            for event in events {
                let weight = event_weight(&event);
                if !chunk.is_empty() && chunk_bytes + weight > limit {
                    chunks.push(std::mem::take(&mut chunk));
                    chunk_bytes = 0;
                }
                chunk_bytes += weight;
                chunk.push(event);
            }
            chunks.push(chunk);
            let last = chunks.len() - 1;
            for (position, events) in chunks.into_iter().enumerate() {
                state.push(WatchResponse {
                    revision,
                    watch_id,
                    events,
                    fragment: position < last,
                    ..WatchResponse::default()
                });
            }
        }
        if let Some(watcher) = self.watchers.get_mut(&number) {
            watcher.sent_since_tick = true;
        }
    }

    /// Reads history for the stream's unsynced watchers while its queue has room.
    fn catch_up(&mut self, stream: StreamId, store: &MvccStore) {
        let current = store.current_revision();
        let limits = self.limits;
        let behind: Vec<u64> = match self.streams.get(&stream) {
            Some(state) if state.unsynced > 0 => state
                .watchers
                .values()
                .copied()
                .filter(|number| self.watchers.get(number).is_some_and(|w| !w.synced))
                .collect(),
            Some(_) => Vec::new(),
            None => return,
        };
        for number in behind {
            loop {
                let has_room = self
                    .streams
                    .get(&stream)
                    .is_some_and(|state| state.has_room(&limits));
                if !has_room {
                    return;
                }
                let Some(watcher) = self.watchers.get(&number) else {
                    break;
                };
                let from = watcher.next_revision;
                let history = if from < store.compact_revision() {
                    Err(())
                } else if from >= self.recent_from.max(watcher.recorded_from) {
                    Ok(self.recent_history(watcher, current, &limits))
                } else {
                    store
                        .history(
                            &watcher.key,
                            &watcher.range_end,
                            from,
                            limits.catch_up_events,
                            limits.catch_up_bytes,
                        )
                        .map_err(|_| ())
                };
                match history {
                    Err(_) => {
                        let watch_id = watcher.id;
                        if let Some(state) = self.streams.get_mut(&stream) {
                            state.watchers.remove(&watch_id);
                        }
                        self.remove(number);
                        if let Some(state) = self.streams.get_mut(&stream) {
                            state.push(WatchResponse {
                                revision: current,
                                watch_id,
                                canceled: true,
                                compact_revision: store.compact_revision(),
                                ..WatchResponse::default()
                            });
                        }
                        break;
                    }
                    Ok(history) => {
                        let selected: Vec<WatchEvent> = history
                            .events
                            .iter()
                            .filter(|event| watcher.keeps(event))
                            .map(|event| watcher.watch_event(event, store))
                            .collect();
                        let (watch_id, fragment) = (watcher.id, watcher.fragment);
                        if !selected.is_empty() {
                            self.queue_events(
                                stream, number, watch_id, current, fragment, selected,
                            );
                        }
                        let caught_up = history.next_revision > current;
                        if let Some(watcher) = self.watchers.get_mut(&number) {
                            watcher.next_revision = history.next_revision;
                        }
                        if caught_up {
                            self.promote(number);
                            break;
                        }
                    }
                }
            }
        }
        self.answer_progress(stream, store);
    }

    /// The next catch-up batch of `watcher` from the recent changes (which hold all of it
    /// from its next revision on), as [`MvccStore::history`] would read it from the store.
    fn recent_history(
        &self,
        watcher: &Watcher,
        current: i64,
        limits: &WatchLimits,
    ) -> kv::mvcc::History {
        let from = watcher.next_revision;
        let start = self
            .recent
            .partition_point(|(revision, _)| *revision < from);
        let mut events = Vec::new();
        let mut bytes = 0usize;
        for (revision, changes) in self.recent.range(start..) {
            let before = events.len();
            for event in changes
                .iter()
                .filter(|event| watcher.contains(&event.kv.key))
            {
                bytes = bytes.saturating_add(event.kv.key.len() + event.kv.value.len());
                events.push(event.clone());
            }
            if events.len() > before
                && (events.len() >= limits.catch_up_events || bytes >= limits.catch_up_bytes)
            {
                return kv::mvcc::History {
                    events,
                    next_revision: revision + 1,
                };
            }
        }
        kv::mvcc::History {
            events,
            next_revision: from.max(current + 1),
        }
    }

    /// Sends a waiting progress answer once every watcher of the stream is caught up: all
    /// events up to the current revision are queued before it, so it never claims a revision
    /// whose events are still to come.
    fn answer_progress(&mut self, stream: StreamId, store: &MvccStore) {
        if let Some(state) = self.streams.get_mut(&stream)
            && state.progress_pending
            && state.unsynced == 0
        {
            state.progress_pending = false;
            state.push(WatchResponse {
                revision: store.current_revision(),
                watch_id: PROGRESS_WATCH_ID,
                ..WatchResponse::default()
            });
        }
    }

    fn periodic_progress(&mut self, stream: StreamId, store: &MvccStore) {
        let current = store.current_revision();
        let Some(state) = self.streams.get(&stream) else {
            return;
        };
        let numbers: Vec<u64> = state.watchers.values().copied().collect();
        let mut notices = Vec::new();
        for number in numbers {
            if let Some(watcher) = self.watchers.get_mut(&number) {
                if watcher.progress_notify && watcher.synced && !watcher.sent_since_tick {
                    notices.push(watcher.id);
                }
                watcher.sent_since_tick = false;
            }
        }
        if let Some(state) = self.streams.get_mut(&stream) {
            for watch_id in notices {
                state.push(WatchResponse {
                    revision: current,
                    watch_id,
                    ..WatchResponse::default()
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A hub shared by the thread that applies entries and the tasks that serve streams.
///
/// [`SharedHub::is_active`] is read without the lock on every apply: while no watcher
/// exists, writes neither record their changes nor take the lock.
#[derive(Clone, Default)]
pub struct SharedHub {
    hub: Arc<std::sync::Mutex<WatchHub>>,
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SharedHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHub")
            .field("active", &self.is_active())
            .finish_non_exhaustive()
    }
}

/// The locked hub; on release it republishes whether any watcher exists.
pub struct HubGuard<'a> {
    hub: std::sync::MutexGuard<'a, WatchHub>,
    active: &'a std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for HubGuard<'_> {
    type Target = WatchHub;

    fn deref(&self) -> &WatchHub {
        &self.hub
    }
}

impl std::ops::DerefMut for HubGuard<'_> {
    fn deref_mut(&mut self) -> &mut WatchHub {
        &mut self.hub
    }
}

impl Drop for HubGuard<'_> {
    fn drop(&mut self) {
        self.active.store(
            self.hub.has_watchers(),
            std::sync::atomic::Ordering::Release,
        );
    }
}

impl SharedHub {
    /// An empty hub with `limits`.
    pub fn new(limits: WatchLimits) -> SharedHub {
        SharedHub {
            hub: Arc::new(std::sync::Mutex::new(WatchHub::new(limits))),
            active: Arc::default(),
        }
    }

    /// Locks the hub. A panic while it was held (a bug) does not make it unusable: the hub's
    /// state is still consistent between calls.
    pub fn lock(&self) -> HubGuard<'_> {
        HubGuard {
            hub: self
                .hub
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            active: &self.active,
        }
    }

    /// Whether any watcher exists (so writes must record their changes and notify).
    pub fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }
}
