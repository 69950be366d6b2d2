//! Majority arithmetic. Kept tiny and separate so it can be checked against a naive oracle.

use crate::types::{LogIndex, NodeId};

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority can no longer be reached.
    Lost,
    /// Neither yet.
    Pending,
}

/// The smallest number of voters that forms a majority of `voter_count`.
pub fn majority(voter_count: usize) -> usize {
    voter_count / 2 + 1
}

/// The highest index that a majority of voters has matched, given each voter's match index.
/// Sorts `matches` in place (callers pass a scratch buffer, so nothing is allocated per call).
/// An empty configuration commits nothing.
pub fn committed_index(matches: &mut [LogIndex]) -> LogIndex {
    if matches.is_empty() {
        return LogIndex::ZERO;
    }
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[majority(matches.len()) - 1]
}

/// The committed index of a possibly joint configuration: what both majorities hold.
/// `match_of` gives each voter's match index. An empty half places no constraint.
pub fn joint_committed_index(
    incoming: &[NodeId],
    outgoing: &[NodeId],
    match_of: impl Fn(NodeId) -> LogIndex,
    scratch: &mut Vec<LogIndex>,
) -> LogIndex {
    scratch.clear();
    scratch.extend(incoming.iter().map(|id| match_of(*id)));
    let incoming_index = committed_index(scratch);
    if outgoing.is_empty() {
        return incoming_index;
    }
    scratch.clear();
    scratch.extend(outgoing.iter().map(|id| match_of(*id)));
    incoming_index.min(committed_index(scratch))
}

/// Tallies a possibly joint election: won only if both halves are won, lost if either is lost.
pub fn joint_vote_result(
    incoming: &[NodeId],
    outgoing: &[NodeId],
    granted: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    let first = vote_result(incoming, &granted);
    if outgoing.is_empty() {
        return first;
    }
    match (first, vote_result(outgoing, &granted)) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// Tallies votes: `granted(id)` is `Some(true)` for a grant, `Some(false)` for a rejection and
/// `None` for no answer yet.
pub fn vote_result(voters: &[NodeId], granted: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let needed = majority(voters.len());
    let (mut yes, mut missing) = (0, 0);
    for &voter in voters {
        match granted(voter) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    if yes >= needed {
        VoteResult::Won
    } else if yes + missing >= needed {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, spelled out: the largest index that at least a majority has reached.
    fn naive_committed(matches: &[LogIndex]) -> LogIndex {
        let mut best = LogIndex::ZERO;
        for candidate in matches {
            let reached = matches.iter().filter(|m| *m >= candidate).count();
            if reached >= majority(matches.len()) && *candidate > best {
                best = *candidate;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn committed_index_matches_definition(raw in proptest::collection::vec(0u64..20, 1..8)) {
            let matches: Vec<LogIndex> = raw.into_iter().map(LogIndex).collect();
            let mut scratch = matches.clone();
            prop_assert_eq!(committed_index(&mut scratch), naive_committed(&matches));
        }

        #[test]
        fn vote_result_matches_counting(answers in proptest::collection::vec(0u8..3, 1..8)) {
            let voters: Vec<NodeId> = (1..=answers.len() as u64).map(NodeId).collect();
            let answer = |id: NodeId| match answers[(id.get() - 1) as usize] {
                0 => None,
                1 => Some(true),
                _ => Some(false),
            };
            let yes = answers.iter().filter(|a| **a == 1).count();
            let no = answers.iter().filter(|a| **a == 2).count();
            let need = answers.len() / 2 + 1;
            let expected = if yes >= need {
                VoteResult::Won
            } else if answers.len() - no >= need {
                VoteResult::Pending
            } else {
                VoteResult::Lost
            };
            prop_assert_eq!(vote_result(&voters, answer), expected);
        }
    }
}
