//! The simulated watch clients: each holds one watch stream on one member at a time, with one
//! to three watchers on it (a single key, a prefix of every client key, the prefix of the
//! multi-key writes, or every key from one on; some with filters, `prev_kv`, progress
//! notifications or fragments), starting from now or at a past revision. Each drains its stream at its own pace (some slowly, so their queue
//! fills and the hub sends their watchers back to history), asks for a catch-up when the
//! drain says so, now and then asks for progress, cancels a watcher and watches again, or
//! moves to another member. When its member crashes (the stream is gone) or it moves, it
//! resumes every watcher from the last revision it knows + 1, as etcd's clients do; after a
//! compaction cancel, from the compaction revision.
//!
//! What they receive is checked as it arrives (ordered, unique, atomic, bookmarkable) and at
//! the end against the committed history (`crate::watches`). A watcher that asked for
//! fragments reassembles them first: the parts of one response come one after the other for
//! it, all but the last marked `fragment`, with the same header revision, and nothing else
//! of its own in between; the whole is then checked as one response. Every choice comes from a
//! generator of its own, seeded by the run's seed, so the cluster's run is the same with or
//! without them.

use super::*;
use crate::watches::{Run, WatchSpec, check_run};
use machine::MachineQuery;
use node::StateMachine;
use watch::{CreateWatch, PROGRESS_WATCH_ID, StreamId, WatchRequest, WatchResponse};

/// Where a watcher is on the current stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubState {
    /// None on the current stream: to be created (resuming its run).
    Idle,
    /// Created with this id; the answer has not been drained yet.
    Creating(i64),
    /// Created and answered.
    Active(i64),
    /// Cancel sent; events may still come until its answer.
    Canceling(i64),
}

pub(super) struct Sub {
    name: String,
    spec: WatchSpec,
    progress_notify: bool,
    /// The start of the current run when it has none yet: 0 or a past revision.
    run: Run,
    state: SubState,
    /// The member's revision when its latest create was sent: what the answer must say.
    created_at: i64,
    /// How many runs this watcher had (for labels).
    runs: usize,
    /// It asks for fragments (responses over the hub's `max_response_bytes` are split).
    fragment: bool,
    /// The fragments received so far of a response still incomplete.
    partial: Option<WatchResponse>,
}

pub(super) struct WatchClient {
    member: usize,
    /// The member's incarnation the stream lives in.
    epoch: u64,
    stream: Option<StreamId>,
    next_watch_id: i64,
    /// Drains rarely, so its queue fills.
    slow: bool,
    subs: Vec<Sub>,
}

impl Sim {
    /// Creates this seed's watch clients (their choices come from `watch_rng`).
    pub(super) fn make_watchers(&mut self) {
        let rng = &mut self.watch_rng;
        let count = rng.range(2, 5) as usize;
        let keys = self.options.keys;
        let founders = self.options.nodes;
        for index in 0..count {
            let subs = (0..rng.range(1, 4))
                .map(|number| {
                    let (key, range_end) = match rng.below(4) {
                        0 => (key_bytes(rng.below(keys)), Bytes::new()),
                        // The client keys are 8-byte big-endian numbers below 2^56.
                        1 => (
                            Bytes::from_static(&[0; 7]),
                            Bytes::from_static(&[0, 0, 0, 0, 0, 0, 1]),
                        ),
                        // The multi-key writes (every revision there has several events).
                        2 => (
                            Bytes::from_static(MULTI_PREFIX),
                            Bytes::from_static(MULTI_PREFIX_END),
                        ),
                        // From a client key on: the multi-key writes' keys too.
                        _ => (key_bytes(rng.below(keys)), Bytes::from_static(&[0])),
                    };
                    let spec = WatchSpec {
                        key,
                        range_end,
                        no_put: rng.chance(1, 10),
                        no_delete: rng.chance(1, 6),
                        prev_kv: rng.chance(1, 3),
                    };
                    let label = format!("watcher {}/{number}", index + 1);
                    let start = if rng.chance(1, 2) {
                        0
                    } else {
                        1 + rng.below(3) as i64
                    };
                    Sub {
                        run: Run::new(format!("{label} run 1"), spec.clone(), start),
                        name: label,
                        spec,
                        progress_notify: rng.chance(1, 3),
                        state: SubState::Idle,
                        created_at: 0,
                        runs: 1,
                        fragment: rng.chance(1, 2),
                        partial: None,
                    }
                })
                .collect();
            self.watchers.push(WatchClient {
                member: index % founders,
                epoch: 0,
                stream: None,
                next_watch_id: 1,
                slow: rng.chance(1, 2),
                subs,
            });
        }
    }

    /// Starts the watch clients (each after a random delay).
    pub(super) fn start_watchers(&mut self) {
        for watcher in 0..self.watchers.len() {
            let delay = self.watch_rng.below(1_000_000);
            self.schedule(delay, Event::WatchPoll { watcher });
        }
    }

    /// Records a broken watch guarantee. Kept apart from the cluster's checker until the run
    /// ends, so that a watch problem does not cut the run short (the cluster does not depend
    /// on its watchers) and the end-of-run checks still run.
    fn watch_fail(&mut self, property: &'static str, detail: String) {
        self.stats.watch_violations += 1;
        if self.watch_violations.len() < 20 {
            self.watch_violations.push(Violation {
                at_us: self.now,
                property,
                detail,
            });
        }
    }

    /// Sends a request on the watcher's stream, at the member's applied state.
    fn watch_request(&mut self, watcher: usize, request: WatchRequest) {
        let client = &self.watchers[watcher];
        let Some(stream) = client.stream else {
            return;
        };
        let Some(node) = self.nodes[client.member].node.as_ref() else {
            return;
        };
        let response = node
            .state_machine()
            .query(&MachineQuery::Watch { stream, request });
        if !matches!(response, MachineResponse::Watch(Ok(()))) {
            let member = client.member + 1;
            self.watch_fail(
                "watch-stream",
                format!("watch client {} on n{member}: {response:?}", watcher + 1),
            );
        }
    }

    /// Ends a watcher's current run after a cancel: it either resumes (the same run) or
    /// watches afresh, from now or from a past revision (a new run).
    fn after_cancel(&mut self, watcher: usize, sub: usize) {
        let resume = self.watch_rng.chance(1, 2);
        let fresh_start = if self.watch_rng.chance(1, 2) {
            0
        } else {
            (self.truth.current_revision() - self.watch_rng.below(30) as i64).max(1)
        };
        let s = &mut self.watchers[watcher].subs[sub];
        s.state = SubState::Idle;
        s.partial = None;
        if !resume {
            s.runs += 1;
            let label = format!("{} run {}", s.name, s.runs);
            let old = std::mem::replace(&mut s.run, Run::new(label, s.spec.clone(), fresh_start));
            self.finished_runs.push(old);
        }
    }

    /// The stream is gone (its member crashed or the client moves): every watcher resumes on
    /// the next one.
    fn lose_stream(&mut self, watcher: usize) {
        self.watchers[watcher].stream = None;
        for sub in 0..self.watchers[watcher].subs.len() {
            // An incomplete response is lost with its stream: the watcher resumes after what
            // it received whole.
            self.watchers[watcher].subs[sub].partial = None;
            match self.watchers[watcher].subs[sub].state {
                SubState::Canceling(_) => self.after_cancel(watcher, sub),
                _ => self.watchers[watcher].subs[sub].state = SubState::Idle,
            }
        }
    }

    pub(super) fn watch_poll(&mut self, watcher: usize) {
        let client = &self.watchers[watcher];
        let alive = |sim: &Sim, member: usize, epoch: u64| {
            sim.nodes[member].node.is_some() && sim.nodes[member].epoch == epoch
        };
        if client.stream.is_some() && !alive(self, client.member, client.epoch) {
            self.lose_stream(watcher);
            self.stats.watch_resumes += 1;
        }
        if self.watchers[watcher].stream.is_some() && self.watch_rng.chance(1, 40) {
            // Move to another member, as a client rotating endpoints does.
            let client = &self.watchers[watcher];
            if let (Some(stream), Some(node)) =
                (client.stream, self.nodes[client.member].node.as_ref())
            {
                node.state_machine().watches().lock().close_stream(stream);
            }
            self.lose_stream(watcher);
            self.stats.watch_resumes += 1;
        }
        if self.watchers[watcher].stream.is_none() {
            let up: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].node.is_some())
                .collect();
            if !up.is_empty() {
                let member = up[self.watch_rng.below(up.len() as u64) as usize];
                let node = self.nodes[member].node.as_ref().expect("up");
                let stream = node.state_machine().watches().lock().open_stream(None);
                let epoch = self.nodes[member].epoch;
                let client = &mut self.watchers[watcher];
                client.member = member;
                client.epoch = epoch;
                client.stream = Some(stream);
                client.next_watch_id = 1;
            }
        }
        if self.watchers[watcher].stream.is_some() {
            self.watch_exchange(watcher);
        }
        // After the heal, the run ends once the cluster converges, which is checked after
        // every event (a digest of every member): poll rarely then, not to slow it.
        let delay = if matches!(self.phase, Phase::Liveness { .. }) {
            self.watch_rng.range(100_000, 300_000)
        } else if self.watchers[watcher].slow {
            self.watch_rng.range(30_000, 400_000)
        } else {
            self.watch_rng.range(1_000, 20_000)
        };
        self.schedule(delay, Event::WatchPoll { watcher });
    }

    /// Drains the stream, checks and records what came, and sends what follows from it.
    fn watch_exchange(&mut self, watcher: usize) {
        let client = &self.watchers[watcher];
        let (member, stream) = (client.member, client.stream.expect("open"));
        let node = self.nodes[member].node.as_ref().expect("alive");
        let mut responses = Vec::new();
        let drained = node
            .state_machine()
            .watches()
            .lock()
            .drain(stream, &mut responses);
        let needs_catch_up = match drained {
            Ok(drained) => drained.needs_catch_up,
            Err(error) => {
                self.watch_fail(
                    "watch-stream",
                    format!("watch client {}: {error}", watcher + 1),
                );
                return;
            }
        };
        for response in responses {
            self.watch_receive(watcher, response);
        }
        // Watch (again) what is not watched on this stream.
        let member_revision = self.nodes[member]
            .node
            .as_ref()
            .map_or(0, |node| node.state_machine().mvcc().current_revision());
        for sub in 0..self.watchers[watcher].subs.len() {
            if self.watchers[watcher].subs[sub].state != SubState::Idle {
                continue;
            }
            let client = &mut self.watchers[watcher];
            let id = client.next_watch_id;
            client.next_watch_id += 1;
            let s = &mut client.subs[sub];
            s.state = SubState::Creating(id);
            s.created_at = member_revision;
            // Resume from the next revision it needs (0, from now, if it never started).
            let start_revision = s.run.next;
            if s.run.start.is_some() {
                s.run.segments.push((start_revision, member));
            }
            let create = CreateWatch {
                key: s.spec.key.clone(),
                range_end: s.spec.range_end.clone(),
                start_revision,
                progress_notify: s.progress_notify,
                no_put: s.spec.no_put,
                no_delete: s.spec.no_delete,
                prev_kv: s.spec.prev_kv,
                watch_id: id,
                fragment: s.fragment,
            };
            self.watch_request(watcher, WatchRequest::Create(create));
        }
        if needs_catch_up {
            self.watch_request(watcher, WatchRequest::CatchUp);
        }
        if self.watch_rng.chance(1, 8) {
            self.watch_request(watcher, WatchRequest::Progress);
        }
        if self.watch_rng.chance(1, 12) {
            self.watch_request(watcher, WatchRequest::PeriodicProgress);
        }
        for sub in 0..self.watchers[watcher].subs.len() {
            if let SubState::Active(id) = self.watchers[watcher].subs[sub].state
                && self.watch_rng.chance(1, 30)
            {
                self.watchers[watcher].subs[sub].state = SubState::Canceling(id);
                self.watch_request(watcher, WatchRequest::Cancel(id));
            }
        }
    }

    /// Takes one response: checks it as it arrives and records its events.
    fn watch_receive(&mut self, watcher: usize, response: WatchResponse) {
        let who = format!(
            "watch client {} on n{}",
            watcher + 1,
            self.watchers[watcher].member + 1
        );
        if response.created && response.canceled {
            self.watch_fail(
                "watch-stream",
                format!("{who}: create refused: {response:?}"),
            );
            return;
        }
        if response.watch_id == PROGRESS_WATCH_ID {
            if !response.is_progress() {
                self.watch_fail("watch-stream", format!("{who}: odd response {response:?}"));
                return;
            }
            self.stats.watch_progress += 1;
            // Every watcher whose create was answered before it, and not yet its cancel.
            for s in &mut self.watchers[watcher].subs {
                if matches!(s.state, SubState::Active(_) | SubState::Canceling(_)) {
                    s.run.next = s.run.next.max(response.revision + 1);
                }
            }
            return;
        }
        let Some(sub) = self.watchers[watcher].subs.iter().position(|s| {
            matches!(s.state, SubState::Creating(id) | SubState::Active(id) | SubState::Canceling(id) if id == response.watch_id)
        }) else {
            self.watch_fail(
                "watch-stream",
                format!("{who}: a response for a watch id it does not have: {response:?}"),
            );
            return;
        };
        let state = self.watchers[watcher].subs[sub].state;
        let is_events = !response.created && !response.canceled && !response.events.is_empty();
        if let Some(partial) = &self.watchers[watcher].subs[sub].partial
            && (!is_events || partial.revision != response.revision)
        {
            let detail = format!(
                "{who}: an incomplete fragmented response (revision {}, {} events) followed by {response:?}",
                partial.revision,
                partial.events.len()
            );
            self.watchers[watcher].subs[sub].partial = None;
            self.watch_fail("watch-atomic", detail);
            return;
        }
        if response.fragment {
            let s = &mut self.watchers[watcher].subs[sub];
            if !s.fragment || !is_events {
                self.watch_fail(
                    "watch-atomic",
                    format!("{who}: a fragment, not asked for: {response:?}"),
                );
                return;
            }
            self.stats.watch_fragments += 1;
            match &mut s.partial {
                Some(partial) => partial.events.extend(response.events),
                None => s.partial = Some(response),
            }
            return;
        }
        let response = match self.watchers[watcher].subs[sub].partial.take() {
            // The last fragment: check the whole.
            Some(mut whole) => {
                whole.events.extend(response.events);
                whole
            }
            None => response,
        };
        if response.created {
            let s = &mut self.watchers[watcher].subs[sub];
            let SubState::Creating(id) = state else {
                self.watch_fail(
                    "watch-stream",
                    format!("{who}: created twice: {response:?}"),
                );
                return;
            };
            s.state = SubState::Active(id);
            if response.revision != s.created_at {
                let detail = format!(
                    "{who}: create answered at revision {} but the member was at {}",
                    response.revision, s.created_at
                );
                self.watch_fail("watch-reliable", detail);
                return;
            }
            let s = &mut self.watchers[watcher].subs[sub];
            if s.run.start.is_none() {
                let start = response.revision + 1;
                s.run.start = Some(start);
                s.run.next = start;
                let member = self.watchers[watcher].member;
                self.watchers[watcher].subs[sub]
                    .run
                    .segments
                    .push((start, member));
            }
            return;
        }
        if response.canceled {
            if response.compact_revision > 0 {
                self.stats.watch_compacted += 1;
                let compacted = self.truth.compact_revision();
                let run = &mut self.watchers[watcher].subs[sub].run;
                // Only history it needed and that a committed compaction removed excuses it.
                if response.compact_revision <= run.next || response.compact_revision > compacted {
                    let detail = format!(
                        "{who}, {}: canceled by compaction at {} while it needed revisions from {} (compactions committed up to {compacted})",
                        run.label, response.compact_revision, run.next
                    );
                    self.watch_fail("watch-reliable", detail);
                }
                let run = &mut self.watchers[watcher].subs[sub].run;
                if response.compact_revision > run.next {
                    run.gaps.push((run.next, response.compact_revision - 1));
                    run.next = response.compact_revision;
                }
                // Resume from the compaction revision, as etcd's clients do.
                self.watchers[watcher].subs[sub].state = SubState::Idle;
            } else if matches!(state, SubState::Canceling(_)) {
                self.after_cancel(watcher, sub);
            } else {
                self.watch_fail(
                    "watch-stream",
                    format!("{who}: canceled unasked: {response:?}"),
                );
            }
            return;
        }
        let run = &mut self.watchers[watcher].subs[sub].run;
        let label = run.label.clone();
        if response.events.is_empty() {
            // A watcher's periodic progress notification.
            run.next = run.next.max(response.revision + 1);
            self.stats.watch_progress += 1;
            return;
        }
        let mut problem = None;
        let mut previous_in_response: Option<(i64, i64)> = None;
        let mut multi_event_revisions = 0;
        for (position, pair) in response.events.windows(2).enumerate() {
            let revision = pair[1].event.revision();
            let first_of_several = pair[0].event.revision() == revision
                && (position == 0 || response.events[position - 1].event.revision() != revision);
            if first_of_several {
                multi_event_revisions += 1;
            }
        }
        self.stats.watch_multi_event_revisions += multi_event_revisions;
        let run = &mut self.watchers[watcher].subs[sub].run;
        for event in &response.events {
            let at = (event.event.revision(), event.event.sub);
            let revision = at.0;
            let seen = |run: &Run| {
                run.events
                    .binary_search_by_key(&at, |e| (e.event.revision(), e.event.sub))
                    .is_ok()
            };
            let found = if let Some(previous) = previous_in_response.filter(|p| at <= *p) {
                Some((
                    "watch-ordered",
                    format!("event at {at:?} after {previous:?} in one response"),
                ))
            } else if run.last.is_some_and(|last| at <= last) && seen(run) {
                Some(("watch-unique", format!("event at {at:?} received twice")))
            } else if previous_in_response.is_none()
                && run.last.is_some_and(|last| revision == last.0)
            {
                Some((
                    "watch-atomic",
                    format!("revision {revision} split over two responses"),
                ))
            } else if run.last.is_some_and(|last| at < last) {
                Some((
                    "watch-ordered",
                    format!("event at {at:?} after {:?}", run.last),
                ))
            } else if run.start.is_some_and(|start| revision < start) {
                Some((
                    "watch-reliable",
                    format!("event at {at:?} before its start {:?}", run.start),
                ))
            } else if revision < run.next && previous_in_response.is_none_or(|p| p.0 != revision) {
                Some((
                    "watch-bookmarkable",
                    format!(
                        "event at {at:?} after it was told of revision {}",
                        run.next - 1
                    ),
                ))
            } else if revision > response.revision {
                Some((
                    "watch-ordered",
                    format!(
                        "event at {at:?} in a response of revision {}",
                        response.revision
                    ),
                ))
            } else if !run.spec.covers(&event.event) {
                Some((
                    "watch-reliable",
                    format!("event at {at:?} outside its range or filters"),
                ))
            } else {
                None
            };
            if found.is_some() {
                // Left out of the record: the first problem is reported, and the rest of
                // the response is still checked and recorded.
                problem = problem.or(found);
                continue;
            }
            previous_in_response = Some(at);
            run.events.push(event.clone());
            run.last = Some(at);
            run.next = run.next.max(revision + 1);
        }
        self.stats.watch_events += response.events.len() as u64;
        if let Some((property, detail)) = problem {
            self.watch_fail(property, format!("{who}, {label}: {detail}"));
        }
    }

    /// After the run: every watcher's runs against the committed history.
    pub(super) fn check_watches(&mut self) {
        let mut runs = std::mem::take(&mut self.finished_runs);
        for client in &self.watchers {
            runs.extend(client.subs.iter().map(|s| s.run.clone()));
        }
        for run in &runs {
            if let Some((property, detail)) = check_run(&self.truth, run) {
                self.watch_fail(property, detail);
            }
        }
    }
}
