//! The in-memory view of the durable log: snapshot boundary, hard state, the terms of the live
//! entries (as runs) and where each batch of entries sits on disk (one small span per batch
//! record, not a copy of the entries). Recovery builds it by replaying records; the write path
//! updates it with the very same methods after each durable write, so the two cannot disagree.

use crate::record::Checkpoint;
use raft::{ConfState, HardState, LogIndex};
use std::collections::VecDeque;

/// Where a batch record starts: segment sequence number and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
}

/// Consecutive entries `first..=last` stored in one batch record whose first entry has index
/// `record_first`. `location` is `None` for entries known only from a checkpoint (their
/// segment was deleted); such entries must never be live once recovery finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub first: u64,
    pub last: u64,
    pub record_first: u64,
    pub location: Option<Location>,
}

/// The durable state, as indices and positions.
///
/// Invariants (checked by `check` in debug builds):
/// - `snapshot_index <= last_index`;
/// - `terms` covers exactly `snapshot_index + 1 ..= last_index`, with ascending run starts and
///   no two neighbouring runs of the same term;
/// - `spans` is contiguous, ends at `last_index` when not empty, and starts at or before
///   `snapshot_index + 1` whenever the log holds entries after the snapshot. Spans of entries
///   at or before the snapshot stay until their segment is released.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogState {
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub conf_state: ConfState,
    pub hard_state: HardState,
    pub last_index: u64,
    terms: VecDeque<(u64, u64)>,
    spans: VecDeque<Span>,
}

impl LogState {
    /// The state of a brand-new log.
    pub(crate) fn new(conf_state: ConfState) -> LogState {
        LogState {
            conf_state,
            ..LogState::default()
        }
    }

    /// The state a checkpoint describes; the entries it mentions have no known position yet.
    pub(crate) fn from_checkpoint(checkpoint: &Checkpoint) -> Result<LogState, String> {
        let mut state = LogState {
            snapshot_index: checkpoint.snapshot_index,
            snapshot_term: checkpoint.snapshot_term,
            conf_state: checkpoint.conf_state.clone(),
            hard_state: checkpoint.hard_state,
            last_index: checkpoint.last_index,
            terms: checkpoint.term_runs.iter().copied().collect(),
            spans: VecDeque::new(),
        };
        if state.last_index < state.snapshot_index {
            return Err(format!(
                "last index {} is before the snapshot index {}",
                state.last_index, state.snapshot_index
            ));
        }
        if state.last_index > state.snapshot_index {
            state.spans.push_back(Span {
                first: state.snapshot_index + 1,
                last: state.last_index,
                record_first: state.snapshot_index + 1,
                location: None,
            });
        }
        state.check_terms()?;
        Ok(state)
    }

    /// The checkpoint that describes this state, for the head of segment `segment_seq`
    /// preallocated to `preallocated_bytes`.
    pub(crate) fn checkpoint(&self, segment_seq: u64, preallocated_bytes: u64) -> Checkpoint {
        Checkpoint {
            segment_seq,
            preallocated_bytes,
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            conf_state: self.conf_state.clone(),
            hard_state: self.hard_state,
            last_index: self.last_index,
            term_runs: self.terms.iter().copied().collect(),
        }
    }

    /// Describes how this state differs from `checkpoint` (ignoring the segment's own fields),
    /// or `None` if they agree.
    pub(crate) fn disagreement(&self, checkpoint: &Checkpoint) -> Option<String> {
        let mine = self.checkpoint(checkpoint.segment_seq, checkpoint.preallocated_bytes);
        if mine == *checkpoint {
            return None;
        }
        Some(format!(
            "checkpoint (snapshot {}/{}, last {}, hard state {:?}) disagrees with the records \
             before it (snapshot {}/{}, last {}, hard state {:?})",
            checkpoint.snapshot_index,
            checkpoint.snapshot_term,
            checkpoint.last_index,
            checkpoint.hard_state,
            mine.snapshot_index,
            mine.snapshot_term,
            mine.last_index,
            mine.hard_state,
        ))
    }

    fn check_terms(&self) -> Result<(), String> {
        let mut previous: Option<(u64, u64)> = None;
        for &(first, term) in &self.terms {
            if first <= self.snapshot_index || first > self.last_index {
                return Err(format!("term run at {first} is outside the log"));
            }
            let canonical = previous.is_none_or(|(previous_first, previous_term)| {
                first > previous_first && term != previous_term
            });
            if !canonical {
                return Err(format!("term runs are not canonical at {first}"));
            }
            previous = Some((first, term));
        }
        let covers = match self.terms.front() {
            None => self.last_index == self.snapshot_index,
            Some(&(first, _)) => first == self.snapshot_index + 1,
        };
        if !covers {
            return Err("term runs do not cover the log".into());
        }
        Ok(())
    }

    /// Asserts the invariants (debug builds only: O(runs + spans)).
    pub(crate) fn check(&self) {
        if cfg!(debug_assertions) {
            assert!(self.snapshot_index <= self.last_index);
            if let Err(reason) = self.check_terms() {
                panic!("log state invariant broken: {reason}: {self:?}");
            }
            for pair in self.spans.iter().collect::<Vec<_>>().windows(2) {
                assert_eq!(pair[1].first, pair[0].last + 1, "spans not contiguous");
            }
            for span in &self.spans {
                assert!(span.first <= span.last && span.record_first <= span.first);
            }
            if let Some(back) = self.spans.back() {
                assert_eq!(back.last, self.last_index);
            }
            if self.last_index > self.snapshot_index {
                let front = self.spans.front().expect("live entries have spans");
                assert!(front.first <= self.snapshot_index + 1);
            }
        }
    }

    /// The term at `index`, for `snapshot_index ..= last_index`.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index {
            return None;
        }
        let run = self.terms.partition_point(|&(first, _)| first <= index);
        self.terms.get(run.checked_sub(1)?).map(|&(_, term)| term)
    }

    /// The span holding `index`.
    pub(crate) fn span(&self, index: u64) -> Option<Span> {
        let at = self.spans.partition_point(|span| span.first <= index);
        let span = *self.spans.get(at.checked_sub(1)?)?;
        (index <= span.last).then_some(span)
    }

    /// Checks that a batch starting at `first` may be applied: it must start after the snapshot
    /// and leave no gap after the last entry.
    pub(crate) fn check_append(&self, first: u64) -> Result<(), String> {
        if first <= self.snapshot_index || first > self.last_index + 1 {
            return Err(format!(
                "entries starting at {first} do not fit a log with snapshot {} and last index {}",
                self.snapshot_index, self.last_index
            ));
        }
        Ok(())
    }

    /// Drops every entry after `index` (which must be at least the snapshot index).
    fn truncate_after(&mut self, index: u64) {
        debug_assert!(index >= self.snapshot_index);
        while self.terms.back().is_some_and(|&(first, _)| first > index) {
            self.terms.pop_back();
        }
        while self.spans.back().is_some_and(|span| span.first > index) {
            self.spans.pop_back();
        }
        if let Some(back) = self.spans.back_mut() {
            back.last = back.last.min(index);
        }
        self.last_index = self.last_index.min(index);
    }

    /// Applies a durable batch of entries `first ..` with `terms`, stored at `location`: the
    /// entries at and after `first` are replaced. The caller checked `check_append(first)`.
    pub(crate) fn append(
        &mut self,
        first: u64,
        terms: impl IntoIterator<Item = u64>,
        location: Location,
    ) {
        debug_assert!(self.check_append(first).is_ok());
        self.truncate_after(first - 1);
        let mut index = first;
        for term in terms {
            if self
                .terms
                .back()
                .is_none_or(|&(_, last_term)| last_term != term)
            {
                self.terms.push_back((index, term));
            }
            index += 1;
        }
        if index == first {
            return;
        }
        self.spans.push_back(Span {
            first,
            last: index - 1,
            record_first: first,
            location: Some(location),
        });
        self.last_index = index - 1;
        self.check();
    }

    /// Applies a durable snapshot marker. With `kept_suffix` the log held `(index, term)` and the
    /// entries after it stay; otherwise every entry is discarded. The caller validated the marker
    /// (`index` beyond the current snapshot; with `kept_suffix`, `term(index) == term`).
    pub(crate) fn apply_snapshot(
        &mut self,
        index: u64,
        term: u64,
        kept_suffix: bool,
        conf_state: ConfState,
    ) {
        if kept_suffix {
            debug_assert_eq!(self.term(index), Some(term));
            while self.terms.len() >= 2 && self.terms[1].0 <= index + 1 {
                self.terms.pop_front();
            }
            if index == self.last_index {
                self.terms.clear();
            } else if let Some(front) = self.terms.front_mut() {
                front.0 = index + 1;
            }
        } else {
            self.terms.clear();
            self.spans.clear();
            self.last_index = index;
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.conf_state = conf_state;
        if self.hard_state.commit.get() < index {
            self.hard_state.commit = LogIndex(index);
        }
        self.check();
    }

    /// The first live index whose position is unknown (its segment is gone), if any.
    pub(crate) fn first_missing_live(&self) -> Option<u64> {
        self.spans
            .iter()
            .find(|span| span.location.is_none() && span.last > self.snapshot_index)
            .map(|span| span.first.max(self.snapshot_index + 1))
    }

    /// Forgets positionless spans, which only cover compacted entries once
    /// `first_missing_live` is `None`.
    pub(crate) fn drop_missing_spans(&mut self) {
        while self
            .spans
            .front()
            .is_some_and(|span| span.location.is_none())
        {
            self.spans.pop_front();
        }
    }

    /// The oldest segment still needed to serve entries after `upto`, or `None` if no entry
    /// after `upto` is held (then only the active segment is needed).
    pub(crate) fn first_needed_segment(&self, upto: u64) -> Option<u64> {
        self.spans
            .iter()
            .find(|span| span.last > upto)
            .and_then(|span| span.location)
            .map(|location| location.segment)
    }

    /// Forgets the spans of entries stored in segments before `segment` (deleted ones).
    pub(crate) fn release_segments_before(&mut self, segment: u64) {
        while self
            .spans
            .front()
            .is_some_and(|span| span.location.is_none_or(|l| l.segment < segment))
        {
            self.spans.pop_front();
        }
        self.check();
    }

    /// Makes `view` equal to this state's spans, touching only the ends that changed: spans
    /// are only ever pushed or cut at the back and released at the front, so this costs a few
    /// binary searches per write, however long the table is. Keeps the copy that
    /// [`crate::WalReader`] reads from other threads current.
    pub(crate) fn sync_spans_into(&self, view: &mut VecDeque<Span>) {
        let held = |span: &Span| {
            let at = self.spans.partition_point(|own| own.first < span.first);
            self.spans.get(at) == Some(span)
        };
        while view.back().is_some_and(|span| !held(span)) {
            view.pop_back();
        }
        while view.front().is_some_and(|span| !held(span)) {
            view.pop_front();
        }
        let after = view.back().map(|span| span.first);
        let from = after.map_or(0, |first| {
            self.spans.partition_point(|own| own.first <= first)
        });
        view.extend(self.spans.range(from..).copied());
    }

    /// Number of spans held (the size of the position table), for tests and inspection.
    pub(crate) fn span_count(&self) -> usize {
        self.spans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64) -> Location {
        Location { segment, offset: 0 }
    }

    #[test]
    fn append_truncate_and_snapshot_keep_terms_and_spans_consistent() {
        let mut log = LogState::new(ConfState::default());
        log.append(1, [1, 1, 1], at(1));
        log.append(4, [2, 2], at(1));
        assert_eq!(log.last_index, 5);
        assert_eq!(log.term(3), Some(1));
        assert_eq!(log.term(4), Some(2));
        // Overwrite from 3 with term 3.
        log.append(3, [3], at(2));
        assert_eq!(log.last_index, 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.term(4), None);
        assert_eq!(log.span(2).unwrap().record_first, 1);
        assert_eq!(log.span(3).unwrap().location, Some(at(2)));
        // A snapshot that matches keeps the suffix.
        log.apply_snapshot(2, 1, true, ConfState::default());
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.hard_state.commit, LogIndex(2));
        assert_eq!(log.first_needed_segment(2), Some(2));
        log.release_segments_before(2);
        assert_eq!(log.span_count(), 1);
        // One that does not discards everything.
        log.apply_snapshot(10, 4, false, ConfState::default());
        assert_eq!(log.last_index, 10);
        assert_eq!(log.term(10), Some(4));
        assert_eq!(log.first_needed_segment(10), None);
    }

    #[test]
    fn checkpoint_roundtrip_marks_entries_missing() {
        let mut log = LogState::new(ConfState::default());
        log.append(1, [1, 2, 2], at(1));
        let checkpoint = log.checkpoint(2, 0);
        let restored = LogState::from_checkpoint(&checkpoint).unwrap();
        assert_eq!(restored.disagreement(&checkpoint), None);
        assert_eq!(restored.first_missing_live(), Some(1));
        assert_eq!(restored.term(3), Some(2));
    }
}
