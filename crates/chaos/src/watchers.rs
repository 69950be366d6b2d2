//! Watchers: etcd Watch streams on every member through every fault, recorded and checked.
//!
//! Each watcher task watches the prefix holding every chaos key from revision 1, asks for
//! progress every second, and records every response. When its stream fails (member killed,
//! paused, cut off from the leader, removed, restarted) it moves to the next member round-robin
//! and resumes from the revision after the last event it received, as a real client does.
//!
//! After the final heal the harness reads the committed history of the prefix with a fresh
//! watch from revision 1 (the *reference*, read on every member and compared), and checks every
//! watcher against it for the guarantees of docs/watch.md: ordered, unique, atomic,
//! bookmarkable, reliable and resumable; and checks that every acknowledged write of the client
//! history is in the reference (at the revision its response announced).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;
use pb::watch_client::WatchClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::key_bytes;
use crate::cluster::connect;
use crate::history::{Clock, OpRecord, Outcome};

/// The prefix every chaos key lives under (see [`key_bytes`]).
pub const PREFIX: &[u8] = b"chaos/";

/// The end of the range of [`PREFIX`] (its last byte plus one).
pub fn prefix_range_end() -> Bytes {
    let mut end = PREFIX.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    Bytes::from(end)
}

/// The gRPC metadata etcdctl sends so that a member without a leader refuses or ends the stream.
pub const HAS_LEADER_METADATA: &str = "hasleader";

/// Put or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `mvccpb::Event::PUT`.
    Put,
    /// `mvccpb::Event::DELETE`.
    Delete,
}

/// One event as a watcher saw it (keys and values are ASCII in chaos runs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event {
    /// The event's `mod_revision`.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// Put or delete.
    pub kind: EventKind,
    /// The value written (empty for a delete).
    pub value: String,
}

impl Event {
    fn from_pb(event: &mvccpb::Event) -> Event {
        let kind = if event.r#type == mvccpb::event::EventType::Delete as i32 {
            EventKind::Delete
        } else {
            EventKind::Put
        };
        let (revision, key, value) = match &event.kv {
            Some(kv) => (
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            ),
            None => (0, String::new(), String::new()),
        };
        Event {
            revision,
            key,
            kind,
            value,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventKind::Put => write!(f, "{}:put {}={}", self.revision, self.key, self.value),
            EventKind::Delete => write!(f, "{}:delete {}", self.revision, self.key),
        }
    }
}

/// What one recorded line of a watcher says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A new stream was opened and a create request sent from `start_revision`.
    Open {
        /// The create request's start revision.
        start_revision: i64,
    },
    /// The create was answered.
    Created {
        /// The id the member chose.
        watch_id: i64,
        /// Header revision.
        revision: i64,
    },
    /// A response carrying events.
    Events {
        /// Its watch id.
        watch_id: i64,
        /// Header revision.
        revision: i64,
        /// The events, in order.
        events: Vec<Event>,
    },
    /// An empty response: the answer to a progress request (or a progress notification).
    Progress {
        /// Its watch id (-1 for an answer to a progress request).
        watch_id: i64,
        /// Header revision: every event up to it has been sent.
        revision: i64,
    },
    /// The watcher was canceled by the member.
    Canceled {
        /// Its watch id.
        watch_id: i64,
        /// Non-zero when the start revision was compacted.
        compact_revision: i64,
        /// The member's reason.
        reason: String,
    },
    /// The stream ended (error, end of stream, silence, stop).
    Closed {
        /// Why.
        reason: String,
    },
    /// The negative control altered the next recorded response (not the stream itself).
    Tampered {
        /// What was altered.
        what: String,
    },
}

/// One thing a watcher saw, stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRecord {
    /// µs on the run's clock.
    pub at_us: u64,
    /// Watcher number.
    pub watcher: u64,
    /// The watcher's stream number (one per connection).
    pub stream: u64,
    /// The member it talked to.
    pub member: String,
    /// What it saw.
    pub item: Item,
}

impl fmt::Display for WatchRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12} watcher={} stream={} member={} ",
            self.at_us, self.watcher, self.stream, self.member
        )?;
        match &self.item {
            Item::Open { start_revision } => write!(f, "open start_revision={start_revision}"),
            Item::Created { watch_id, revision } => {
                write!(f, "created watch_id={watch_id} header={revision}")
            }
            Item::Events {
                watch_id,
                revision,
                events,
            } => {
                write!(f, "events watch_id={watch_id} header={revision} [")?;
                for (i, event) in events.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{event}")?;
                }
                write!(f, "]")
            }
            Item::Progress { watch_id, revision } => {
                write!(f, "progress watch_id={watch_id} header={revision}")
            }
            Item::Canceled {
                watch_id,
                compact_revision,
                reason,
            } => write!(
                f,
                "canceled watch_id={watch_id} compact_revision={compact_revision} reason={reason:?}"
            ),
            Item::Closed { reason } => write!(f, "closed: {reason}"),
            Item::Tampered { what } => write!(f, "TAMPERED (negative control): {what}"),
        }
    }
}

/// How the negative control breaks one watcher's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakWatch {
    /// Leave one received event out of the record.
    Drop,
    /// Record one received event twice.
    Duplicate,
}

impl BreakWatch {
    /// Parses `drop` or `duplicate`.
    pub fn parse(text: &str) -> Result<BreakWatch, String> {
        match text {
            "drop" => Ok(BreakWatch::Drop),
            "duplicate" => Ok(BreakWatch::Duplicate),
            other => Err(format!(
                "unknown --break-watch '{other}' (use drop or duplicate)"
            )),
        }
    }

    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BreakWatch::Drop => "drop",
            BreakWatch::Duplicate => "duplicate",
        }
    }
}

/// Everything the watchers recorded, and how far each is known to be complete.
#[derive(Debug, Clone, Default)]
pub struct WatchLog {
    records: Arc<Mutex<Vec<WatchRecord>>>,
    /// Per watcher: the highest revision up to which it has received everything (its last
    /// event's revision or its last progress answer's).
    complete: Arc<Mutex<BTreeMap<u64, i64>>>,
}

impl WatchLog {
    fn push(&self, record: WatchRecord) {
        lock(&self.records).push(record);
    }

    fn advance(&self, watcher: u64, revision: i64) {
        let mut complete = lock(&self.complete);
        let entry = complete.entry(watcher).or_insert(0);
        *entry = (*entry).max(revision);
    }

    /// Every record, in the order they were made.
    pub fn snapshot(&self) -> Vec<WatchRecord> {
        lock(&self.records).clone()
    }

    /// Per watcher, the revision up to which it has received everything.
    pub fn complete(&self) -> BTreeMap<u64, i64> {
        lock(&self.complete).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one watcher task does.
#[derive(Debug, Clone)]
pub struct WatcherPlan {
    /// Watcher number.
    pub id: u64,
    /// Members in the order it tries them (round-robin from the first).
    pub members: Vec<usize>,
    /// The negative control, applied once to this watcher's record.
    pub sabotage: Option<BreakWatch>,
}

/// What all watcher tasks share.
#[derive(Debug, Clone)]
pub struct WatchContext {
    /// Client URL of every member.
    pub urls: Arc<Vec<String>>,
    /// Member names.
    pub names: Arc<Vec<String>>,
    /// The run's clock.
    pub clock: Clock,
    /// Where records go.
    pub log: WatchLog,
    /// Set when the watchers must stop.
    pub stop: Arc<AtomicBool>,
    /// The revision the first stream of every watcher starts from.
    pub start_revision: i64,
    /// How often a progress request is sent.
    pub progress_every: Duration,
    /// How long a stream may stay silent (no answer at all, progress included) before the
    /// watcher gives up on it.
    pub silence: Duration,
}

/// A watcher's memory across its streams.
struct WatcherState {
    /// The revision the next stream starts from.
    next_revision: i64,
    /// Events received so far (for the negative control's timing).
    received: u64,
    /// Whether the negative control has struck.
    sabotaged: bool,
}

/// Runs one watcher until `context.stop` is set.
pub async fn run_watcher(plan: WatcherPlan, context: WatchContext) {
    let mut state = WatcherState {
        next_revision: context.start_revision,
        received: 0,
        sabotaged: false,
    };
    let mut attempt = 0usize;
    let mut stream = 0u64;
    while !context.stop.load(Ordering::Relaxed) {
        let member = plan.members[attempt % plan.members.len()];
        attempt += 1;
        let Ok(channel) = connect(&context.urls[member], Duration::from_millis(500)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        stream += 1;
        let reason = one_stream(&plan, &context, member, stream, channel, &mut state).await;
        context.log.push(WatchRecord {
            at_us: context.clock.now_us(),
            watcher: plan.id,
            stream,
            member: context.names[member].clone(),
            item: Item::Closed { reason },
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn classify(response: &pb::WatchResponse) -> Item {
    let revision = response.header.as_ref().map_or(0, |h| h.revision);
    if response.created {
        Item::Created {
            watch_id: response.watch_id,
            revision,
        }
    } else if response.canceled {
        Item::Canceled {
            watch_id: response.watch_id,
            compact_revision: response.compact_revision,
            reason: response.cancel_reason.clone(),
        }
    } else if response.events.is_empty() {
        Item::Progress {
            watch_id: response.watch_id,
            revision,
        }
    } else {
        Item::Events {
            watch_id: response.watch_id,
            revision,
            events: response.events.iter().map(Event::from_pb).collect(),
        }
    }
}

fn create_request(start_revision: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: Bytes::from_static(PREFIX),
                range_end: prefix_range_end(),
                start_revision,
                ..Default::default()
            },
        )),
    }
}

fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

/// Opens a Watch stream with `hasleader` and a create request from `start_revision`.
async fn open(
    channel: tonic::transport::Channel,
    start_revision: i64,
    timeout: Duration,
) -> Result<
    (
        mpsc::Sender<pb::WatchRequest>,
        tonic::Streaming<pb::WatchResponse>,
    ),
    String,
> {
    let (requests, receiver) = mpsc::channel(16);
    requests
        .try_send(create_request(start_revision))
        .map_err(|error| error.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(receiver));
    if let Ok(value) = "true".parse() {
        request.metadata_mut().insert(HAS_LEADER_METADATA, value);
    }
    let mut client = WatchClient::new(channel);
    match tokio::time::timeout(timeout, client.watch(request)).await {
        Ok(Ok(response)) => Ok((requests, response.into_inner())),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer to the watch call within {timeout:?}")),
    }
}

/// One stream, until it fails or the run stops; returns why it ended.
async fn one_stream(
    plan: &WatcherPlan,
    context: &WatchContext,
    member: usize,
    stream: u64,
    channel: tonic::transport::Channel,
    state: &mut WatcherState,
) -> String {
    let record = |item: Item| WatchRecord {
        at_us: context.clock.now_us(),
        watcher: plan.id,
        stream,
        member: context.names[member].clone(),
        item,
    };
    context.log.push(record(Item::Open {
        start_revision: state.next_revision,
    }));
    let (requests, mut responses) = match open(channel, state.next_revision, context.silence).await
    {
        Ok(opened) => opened,
        Err(reason) => return reason,
    };
    let mut tick = tokio::time::interval(context.progress_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        if context.stop.load(Ordering::Relaxed) {
            return "stopped (end of run)".into();
        }
        tokio::select! {
            _ = tick.tick() => {
                if last_heard.elapsed() > context.silence {
                    return format!("silent for {:?}", last_heard.elapsed());
                }
                // A full queue means the member is not reading: silence will tell.
                let _ = requests.try_send(progress_request());
            }
            message = responses.message() => {
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return "stream ended by the member".into(),
                    Err(status) => return format!("{:?}: {}", status.code(), status.message()),
                };
                last_heard = Instant::now();
                let mut item = classify(&response);
                match &mut item {
                    Item::Events { events, .. } => {
                        let last = events.last().map_or(0, |e| e.revision);
                        state.next_revision = state.next_revision.max(last + 1);
                        state.received += events.len() as u64;
                        context.log.advance(plan.id, last);
                        if let Some(sabotage) = plan.sabotage
                            && !state.sabotaged
                            && state.received >= 10
                        {
                            state.sabotaged = true;
                            let what = match sabotage {
                                BreakWatch::Drop => {
                                    let dropped = events.remove(0);
                                    format!("the next response's event {dropped} is left out")
                                }
                                BreakWatch::Duplicate => {
                                    let copy = events[0].clone();
                                    events.insert(1, copy.clone());
                                    format!("the next response's event {copy} is recorded twice")
                                }
                            };
                            context.log.push(record(Item::Tampered { what }));
                        }
                    }
                    Item::Progress { revision, .. } => context.log.advance(plan.id, *revision),
                    _ => {}
                }
                let canceled = matches!(item, Item::Canceled { .. });
                context.log.push(record(item));
                if canceled {
                    return "canceled by the member".into();
                }
            }
        }
    }
}

/// A broken guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The watcher concerned (`None` for the reference and the client history checks).
    pub watcher: Option<u64>,
    /// Which guarantee (ordered, unique, atomic, bookmarkable, reliable, compacted, protocol,
    /// acknowledged, phantom, agreement, caught-up).
    pub guarantee: &'static str,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.watcher {
            Some(w) => write!(f, "watcher {w}: {}: {}", self.guarantee, self.detail),
            None => write!(f, "{}: {}", self.guarantee, self.detail),
        }
    }
}

/// Checks one watcher's records (in the order it made them) against the committed history of
/// the prefix; returns the number of events it received and what it broke.
///
/// - **ordered**: within a response revisions never decrease; across responses (and streams)
///   every response starts after the previous one's last revision.
/// - **unique**: no (revision, key) twice.
/// - **atomic**: no revision in two responses.
/// - **bookmarkable**: on one stream, after a progress answer at R, no event at or below R.
/// - **reliable + resumable**: the events over all its streams are exactly the reference's
///   from its first start revision to the highest revision it knows complete (its last event
///   or progress answer).
/// - **compacted**: a cancel with `compact_revision` (chaos never compacts).
/// - **protocol**: events before the stream's `created` answer or for another watch id; a
///   header revision below the events it carries.
pub fn check_watcher(
    watcher: u64,
    records: &[WatchRecord],
    reference: &[Event],
) -> (u64, Vec<Violation>) {
    let mut violations = Vec::new();
    let mut violation = |guarantee: &'static str, detail: String| {
        violations.push(Violation {
            watcher: Some(watcher),
            guarantee,
            detail,
        });
    };
    let mut received: Vec<&Event> = Vec::new();
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    let mut response_of: HashMap<i64, usize> = HashMap::new();
    let mut previous_last: Option<i64> = None;
    let mut first_start: Option<i64> = None;
    let mut upper = 0i64;
    let mut created: Option<i64> = None;
    let mut stream_progress = 0i64;
    for (index, record) in records.iter().filter(|r| r.watcher == watcher).enumerate() {
        let at = format!(
            "stream {} on {} at {} µs",
            record.stream, record.member, record.at_us
        );
        match &record.item {
            Item::Open { start_revision } => {
                first_start.get_or_insert(*start_revision);
                created = None;
                stream_progress = 0;
            }
            Item::Created { watch_id, .. } => {
                if created.is_some() {
                    violation("protocol", format!("a second created answer ({at})"));
                }
                created = Some(*watch_id);
            }
            Item::Events {
                watch_id,
                revision,
                events,
            } => {
                if created != Some(*watch_id) {
                    violation(
                        "protocol",
                        format!("events for watch id {watch_id}, created {created:?} ({at})"),
                    );
                }
                for pair in events.windows(2) {
                    if pair[1].revision < pair[0].revision {
                        violation(
                            "ordered",
                            format!("{} after {} in one response ({at})", pair[1], pair[0]),
                        );
                    }
                }
                if let (Some(first), Some(previous)) = (events.first(), previous_last)
                    && first.revision <= previous
                {
                    violation(
                        "ordered",
                        format!(
                            "response starts with {first} after a response that ended at \
                             revision {previous} ({at})"
                        ),
                    );
                }
                let last = events.iter().map(|e| e.revision).max().unwrap_or(0);
                if *revision < last {
                    violation(
                        "protocol",
                        format!("header revision {revision} below its events' {last} ({at})"),
                    );
                }
                for event in events {
                    if !seen.insert((event.revision, event.key.as_str())) {
                        violation("unique", format!("{event} received twice ({at})"));
                    }
                    if let Some(&other) = response_of.get(&event.revision)
                        && other != index
                    {
                        violation(
                            "atomic",
                            format!(
                                "revision {} arrives in two responses ({event}, {at})",
                                event.revision
                            ),
                        );
                    }
                    response_of.insert(event.revision, index);
                    if event.revision <= stream_progress {
                        violation(
                            "bookmarkable",
                            format!("{event} after a progress answer at {stream_progress} ({at})"),
                        );
                    }
                    received.push(event);
                }
                if !events.is_empty() {
                    previous_last = Some(last.max(previous_last.unwrap_or(0)));
                }
                upper = upper.max(last);
            }
            Item::Progress { revision, .. } => {
                stream_progress = stream_progress.max(*revision);
                upper = upper.max(*revision);
            }
            Item::Canceled {
                compact_revision,
                reason,
                ..
            } if *compact_revision != 0 => violation(
                "compacted",
                format!(
                    "canceled with compact_revision {compact_revision} ({reason:?}, {at}); \
                     chaos never compacts"
                ),
            ),
            Item::Canceled { .. } | Item::Closed { .. } | Item::Tampered { .. } => {}
        }
    }
    let count = received.len() as u64;
    let Some(start) = first_start else {
        return (count, violations);
    };
    let expected: Vec<&Event> = reference
        .iter()
        .filter(|e| e.revision >= start && e.revision <= upper)
        .collect();
    let got: HashSet<&Event> = received.iter().copied().collect();
    let wanted: HashSet<&Event> = expected.iter().copied().collect();
    for event in &expected {
        if !got.contains(event) {
            violation(
                "reliable",
                format!("missed committed {event} (watched from {start}, complete up to {upper})"),
            );
        }
    }
    for event in &received {
        if !wanted.contains(event) {
            violation(
                "reliable",
                format!(
                    "received {event}, which is not in the committed history between \
                     {start} and {upper}"
                ),
            );
        }
    }
    (count, violations)
}

/// Checks the client history against the reference: every acknowledged write is in it (at the
/// revision its response announced, when recorded); every value in it on a register key was
/// written by an operation not known to have failed.
pub fn check_acknowledged(records: &[OpRecord], reference: &[Event]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let committed: HashMap<(&str, &str), i64> = reference
        .iter()
        .filter(|e| e.kind == EventKind::Put)
        .map(|e| ((e.key.as_str(), e.value.as_str()), e.revision))
        .collect();
    let mut writers: HashMap<(String, String), &OpRecord> = HashMap::new();
    for record in records {
        let Some(value) = record.written_value() else {
            continue;
        };
        let key = String::from_utf8_lossy(&key_bytes(record.key)).into_owned();
        let value = value.to_string();
        if record.acknowledged_write() {
            match committed.get(&(key.as_str(), value.as_str())) {
                None => violations.push(Violation {
                    watcher: None,
                    guarantee: "acknowledged",
                    detail: format!("acknowledged {record} is not in the committed history"),
                }),
                Some(&revision) => {
                    if let Some(announced) = record.revision
                        && announced != revision
                    {
                        violations.push(Violation {
                            watcher: None,
                            guarantee: "acknowledged",
                            detail: format!(
                                "{record} was acknowledged at revision {announced} but \
                                 committed at {revision}"
                            ),
                        });
                    }
                }
            }
        }
        if record.outcome != Outcome::Failed {
            writers.insert((key, value), record);
        }
    }
    let registers: HashSet<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&key_bytes(r.key)).into_owned())
        .collect();
    for event in reference {
        if event.kind == EventKind::Put
            && registers.contains(&event.key)
            && !writers.contains_key(&(event.key.clone(), event.value.clone()))
        {
            violations.push(Violation {
                watcher: None,
                guarantee: "phantom",
                detail: format!("committed {event} was written by no operation that may have"),
            });
        }
    }
    violations
}

/// Compares a member's history with the reference.
pub fn check_agreement(member: &str, history: &[Event], reference: &[Event]) -> Option<Violation> {
    if history == reference {
        return None;
    }
    let first = history
        .iter()
        .zip(reference)
        .position(|(a, b)| a != b)
        .unwrap_or(history.len().min(reference.len()));
    Some(Violation {
        watcher: None,
        guarantee: "agreement",
        detail: format!(
            "{member}'s history from revision 1 differs from the reference at event #{first}: \
             {} vs {} ({} vs {} events)",
            history
                .get(first)
                .map_or_else(|| "nothing".into(), Event::to_string),
            reference
                .get(first)
                .map_or_else(|| "nothing".into(), Event::to_string),
            history.len(),
            reference.len()
        ),
    })
}

/// The revision of the last write under the prefix, from a linearizable range read (the
/// workload never deletes, so the newest `mod_revision` is the last write's).
pub async fn last_prefix_revision(url: &str) -> Result<i64, String> {
    let channel = connect(url, Duration::from_millis(500)).await?;
    let mut kv = pb::kv_client::KvClient::new(channel);
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        kv.range(pb::RangeRequest {
            key: Bytes::from_static(PREFIX),
            range_end: prefix_range_end(),
            keys_only: true,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| "range timed out".to_owned())?
    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(response
        .into_inner()
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or(0))
}

/// Reads the prefix's history from revision 1 up to `target` with one fresh watch on `url`.
pub async fn read_history(url: &str, target: i64, timeout: Duration) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    if target <= 0 {
        return Ok(events);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = connect(url, Duration::from_millis(500)).await?;
    let (_requests, mut responses) = open(channel, 1, timeout).await?;
    loop {
        let message = tokio::time::timeout_at(deadline, responses.message())
            .await
            .map_err(|_| {
                format!(
                    "reached revision {} of {target} in {timeout:?}",
                    events.last().map_or(0, |e: &Event| e.revision)
                )
            })?
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
            .ok_or_else(|| "stream ended".to_owned())?;
        match classify(&message) {
            Item::Events { events: batch, .. } => {
                events.extend(batch);
                if events.last().is_some_and(|e| e.revision >= target) {
                    return Ok(events);
                }
            }
            Item::Canceled {
                compact_revision,
                reason,
                ..
            } => {
                return Err(format!(
                    "canceled (compact_revision {compact_revision}, {reason:?})"
                ));
            }
            _ => {}
        }
    }
}

/// What the watchers add to a run's report.
#[derive(Debug, Clone, Default)]
pub struct WatchOutcome {
    /// Events received by all watchers together.
    pub events: u64,
    /// Every broken guarantee found.
    pub violations: Vec<Violation>,
    /// The committed history of the prefix, as read after the run.
    pub reference: Vec<Event>,
    /// Every watcher's records.
    pub records: Vec<WatchRecord>,
}

/// Starts one watcher per member (homed there, then round-robin) plus one on a member chosen
/// by `extra_home`; the first carries the negative control, if any.
pub fn spawn_watchers(
    context: &WatchContext,
    extra_home: usize,
    sabotage: Option<BreakWatch>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let n = context.urls.len();
    (0..=n)
        .map(|w| {
            let home = if w < n { w } else { extra_home % n };
            let plan = WatcherPlan {
                id: w as u64,
                members: (0..n).map(|k| (home + k) % n).collect(),
                sabotage: if w == 0 { sabotage } else { None },
            };
            tokio::spawn(run_watcher(plan, context.clone()))
        })
        .collect()
}

/// Ends the watchers after the final heal and checks them: waits (up to `catch_up`) until every
/// watcher has everything up to the last committed write, stops them, reads the reference on
/// every member and checks every watcher and the client history `ops` against it.
pub async fn conclude(
    context: &WatchContext,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ops: &[OpRecord],
    catch_up: Duration,
) -> WatchOutcome {
    let mut outcome = WatchOutcome::default();
    let urls = context.urls.clone();
    let names = context.names.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut target = None;
    let mut attempt = 0usize;
    while target.is_none() && Instant::now() < deadline {
        match last_prefix_revision(&urls[attempt % urls.len()]).await {
            Ok(revision) => target = Some(revision),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        attempt += 1;
    }
    let Some(target) = target else {
        context.stop.store(true, Ordering::Relaxed);
        outcome.violations.push(Violation {
            watcher: None,
            guarantee: "reference",
            detail: "no member answered a range read of the prefix within 10 s".into(),
        });
        outcome.records = context.log.snapshot();
        return outcome;
    };
    let watchers = tasks.len() as u64;
    let deadline = Instant::now() + catch_up;
    loop {
        let complete = context.log.complete();
        let behind: Vec<(u64, i64)> = (0..watchers)
            .map(|w| (w, complete.get(&w).copied().unwrap_or(0)))
            .filter(|&(_, revision)| revision < target)
            .collect();
        if behind.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for (w, revision) in behind {
                outcome.violations.push(Violation {
                    watcher: Some(w),
                    guarantee: "caught-up",
                    detail: format!(
                        "complete only up to revision {revision}, {catch_up:?} after every \
                         member recovered; the last write is at {target}"
                    ),
                });
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    context.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let mut reference: Option<Vec<Event>> = None;
    let mut others = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        match read_history(url, target, Duration::from_secs(20)).await {
            Ok(history) if reference.is_none() => reference = Some(history),
            Ok(history) => others.push((i, history)),
            Err(error) => outcome.violations.push(Violation {
                watcher: None,
                guarantee: "reference",
                detail: format!("{}: reading the history from revision 1: {error}", names[i]),
            }),
        }
    }
    let Some(reference) = reference else {
        // Nothing to check against: the reference violations above fail the run.
        outcome.records = context.log.snapshot();
        return outcome;
    };
    for (i, history) in &others {
        outcome
            .violations
            .extend(check_agreement(&names[*i], history, &reference));
    }
    outcome.records = context.log.snapshot();
    for w in 0..watchers {
        let (events, violations) = check_watcher(w, &outcome.records, &reference);
        outcome.events += events;
        outcome.violations.extend(violations);
    }
    outcome
        .violations
        .extend(check_acknowledged(ops, &reference));
    outcome.reference = reference;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use lincheck::{Input, Output};

    fn put(revision: i64, key: u64, value: u64) -> Event {
        Event {
            revision,
            key: format!("chaos/{key}"),
            kind: EventKind::Put,
            value: value.to_string(),
        }
    }

    fn rec(stream: u64, item: Item) -> WatchRecord {
        WatchRecord {
            at_us: 0,
            watcher: 0,
            stream,
            member: "m1".into(),
            item,
        }
    }

    fn open(stream: u64, start_revision: i64) -> Vec<WatchRecord> {
        vec![
            rec(stream, Item::Open { start_revision }),
            rec(
                stream,
                Item::Created {
                    watch_id: 0,
                    revision: 0,
                },
            ),
        ]
    }

    fn events(stream: u64, events: Vec<Event>) -> WatchRecord {
        let revision = events.iter().map(|e| e.revision).max().unwrap_or(0);
        rec(
            stream,
            Item::Events {
                watch_id: 0,
                revision,
                events,
            },
        )
    }

    fn progress(stream: u64, revision: i64) -> WatchRecord {
        rec(
            stream,
            Item::Progress {
                watch_id: -1,
                revision,
            },
        )
    }

    fn reference() -> Vec<Event> {
        (1..=6).map(|r| put(r, r as u64 % 2, r as u64)).collect()
    }

    fn guarantees(records: &[WatchRecord]) -> Vec<&'static str> {
        check_watcher(0, records, &reference())
            .1
            .iter()
            .map(|v| v.guarantee)
            .collect()
    }

    /// Two streams: 1..=3 on the first, a resume from 4 on the second, progress at the end.
    fn good() -> Vec<WatchRecord> {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone()]));
        records.push(events(1, vec![r[1].clone(), r[2].clone()]));
        records.push(progress(1, 3));
        records.push(rec(
            1,
            Item::Closed {
                reason: "killed".into(),
            },
        ));
        records.extend(open(2, 4));
        records.push(events(2, vec![r[3].clone()]));
        records.push(events(2, vec![r[4].clone(), r[5].clone()]));
        records.push(progress(2, 6));
        records
    }

    #[test]
    fn a_faithful_watcher_passes() {
        let (count, violations) = check_watcher(0, &good(), &reference());
        assert_eq!(count, 6);
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn a_watcher_only_answers_for_what_it_saw() {
        // Stopped after revision 2 with no progress: revisions 3.. are not its business.
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), r[1].clone()]));
        assert!(guarantees(&records).is_empty());
        // But a progress answer at 4 claims 3 and 4.
        records.push(progress(1, 4));
        assert_eq!(guarantees(&records), ["reliable", "reliable"]);
    }

    #[test]
    fn going_back_is_out_of_order() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[1].clone(), r[0].clone()]));
        records.push(events(1, vec![r[2].clone()]));
        assert_eq!(guarantees(&records), ["ordered"]);
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), r[2].clone()]));
        records.push(events(1, vec![r[1].clone()]));
        assert_eq!(guarantees(&records), ["ordered"]);
    }

    #[test]
    fn a_repeated_event_is_not_unique() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), r[0].clone(), r[1].clone()]));
        assert_eq!(guarantees(&records), ["unique"]);
        // Across a resume from the wrong revision: out of order, twice, split.
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), r[1].clone()]));
        records.extend(open(2, 2));
        records.push(events(2, vec![r[1].clone()]));
        assert_eq!(guarantees(&records), ["ordered", "unique", "atomic"]);
    }

    #[test]
    fn a_revision_split_over_two_responses_is_not_atomic() {
        // Revision 2 changed two keys.
        let reference = vec![put(1, 0, 1), put(2, 0, 2), put(2, 1, 3), put(3, 1, 4)];
        let mut records = open(1, 1);
        records.push(events(1, vec![reference[0].clone(), reference[1].clone()]));
        records.push(events(1, vec![reference[2].clone(), reference[3].clone()]));
        let found: Vec<_> = check_watcher(0, &records, &reference)
            .1
            .iter()
            .map(|v| v.guarantee)
            .collect();
        // The second response starts at the revision the first ended with.
        assert_eq!(found, ["ordered", "atomic"]);
    }

    #[test]
    fn an_event_after_a_progress_that_covered_it_breaks_bookmarks() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone()]));
        records.push(progress(1, 2));
        records.push(events(1, vec![r[1].clone()]));
        assert_eq!(guarantees(&records), ["bookmarkable"]);
    }

    #[test]
    fn progress_on_a_previous_stream_does_not_bind_the_next() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone()]));
        records.push(progress(1, 1));
        records.extend(open(2, 2));
        records.push(events(2, vec![r[1].clone()]));
        assert!(guarantees(&records).is_empty());
    }

    #[test]
    fn a_gap_or_a_foreign_event_is_unreliable() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), r[2].clone()]));
        assert_eq!(guarantees(&records), ["reliable"]);
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone(), put(2, 0, 99)]));
        assert_eq!(guarantees(&records), ["reliable", "reliable"]);
    }

    #[test]
    fn a_resume_that_skips_is_caught() {
        let r = reference();
        let mut records = open(1, 1);
        records.push(events(1, vec![r[0].clone()]));
        records.extend(open(2, 3));
        records.push(events(2, vec![r[2].clone()]));
        let violations = check_watcher(0, &records, &reference()).1;
        assert_eq!(violations.len(), 1);
        assert!(violations[0].detail.contains("missed committed 2:put"));
    }

    #[test]
    fn compaction_and_protocol_slips_are_reported() {
        let mut records = open(1, 1);
        records.push(rec(
            1,
            Item::Canceled {
                watch_id: 0,
                compact_revision: 5,
                reason: "compacted".into(),
            },
        ));
        assert_eq!(guarantees(&records), ["compacted"]);
        let r = reference();
        let records = vec![
            rec(1, Item::Open { start_revision: 1 }),
            events(1, vec![r[0].clone()]),
        ];
        assert_eq!(guarantees(&records), ["protocol"]);
    }

    #[test]
    fn the_negative_control_records_are_caught() {
        // What --break-watch leaves in the record: one event dropped, or one recorded twice.
        let r = reference();
        let mut dropped = good();
        if let Item::Events { events, .. } = &mut dropped[3].item {
            events.remove(0);
        }
        assert_eq!(guarantees(&dropped), ["reliable"]);
        let mut duplicated = good();
        if let Item::Events { events, .. } = &mut duplicated[3].item {
            events.insert(1, r[1].clone());
        }
        assert_eq!(guarantees(&duplicated), ["unique"]);
    }

    fn op(
        key: u64,
        input: Input,
        output: Output,
        outcome: Outcome,
        revision: Option<i64>,
    ) -> OpRecord {
        OpRecord {
            client: 0,
            member: "m1".into(),
            key,
            input,
            output,
            call_us: 0,
            end_us: 1,
            outcome,
            note: String::new(),
            revision,
        }
    }

    #[test]
    fn acknowledged_writes_must_be_committed_where_announced() {
        let reference = vec![put(2, 0, 7), put(3, 1, 8)];
        let ok = [
            op(0, Input::Write(7), Output::Write, Outcome::Ok, Some(2)),
            op(
                1,
                Input::Cas {
                    expected: 1,
                    new: 8,
                },
                Output::Cas { succeeded: true },
                Outcome::Ok,
                None,
            ),
        ];
        assert!(check_acknowledged(&ok, &reference).is_empty());
        let lost = [op(0, Input::Write(9), Output::Write, Outcome::Ok, None)];
        let found: Vec<_> = check_acknowledged(&lost, &reference)
            .iter()
            .map(|v| v.guarantee)
            .collect();
        // 9 is missing, and 7 was written by nobody in this history.
        assert_eq!(found, ["acknowledged", "phantom"]);
        let moved = [op(0, Input::Write(7), Output::Write, Outcome::Ok, Some(5))];
        let found: Vec<_> = check_acknowledged(&moved, &reference[..1])
            .iter()
            .map(|v| v.guarantee)
            .collect();
        assert_eq!(found, ["acknowledged"]);
        let failed = [op(
            0,
            Input::Write(7),
            Output::Unknown,
            Outcome::Failed,
            None,
        )];
        let found: Vec<_> = check_acknowledged(&failed, &reference[..1])
            .iter()
            .map(|v| v.guarantee)
            .collect();
        assert_eq!(found, ["phantom"]);
    }

    #[test]
    fn members_must_agree_on_the_history() {
        let r = reference();
        assert!(check_agreement("m2", &r, &r).is_none());
        let v = check_agreement("m2", &r[..4], &r).expect("shorter differs");
        assert!(v.detail.contains("event #4"), "{v}");
    }

    #[test]
    fn the_prefix_covers_every_key() {
        let end = prefix_range_end();
        for key in [0u64, 4, 99] {
            let k = key_bytes(key);
            assert!(k.as_ref() >= PREFIX && k.as_ref() < end.as_ref());
        }
        assert!(&b"chaos/heal"[..] < end.as_ref());
        assert_eq!(BreakWatch::parse("drop"), Ok(BreakWatch::Drop));
        assert!(BreakWatch::parse("other").is_err());
    }
}
