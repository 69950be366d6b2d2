//! Membership changes by joint consensus (Raft §6 / dissertation chapter 4).
//!
//! A configuration change is a log entry. When it is applied, the configuration switches. A
//! change that alters at most one voter takes effect directly; anything larger first enters a
//! joint configuration (`C_old,new`: every decision needs a majority of both the outgoing and
//! the incoming voters), and the leader then proposes the empty change that leaves it
//! (`C_new`). Only one change may be pending at a time, and a new leader accepts one only after
//! it has applied everything up to its own first entry (the fix for the single-server change
//! bug Ongaro published in 2015).

use crate::types::{ConfState, NodeId};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// One membership operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeType {
    /// Make the node a voter (adding it, or promoting a learner).
    AddVoter,
    /// Make the node a learner (adding it; demoting a voter goes through a joint configuration).
    AddLearner,
    /// Remove the node from the configuration.
    RemoveNode,
}

/// One operation on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfChangeSingle {
    /// What to do.
    pub change: ConfChangeType,
    /// To whom.
    pub node: NodeId,
}

/// A membership change: several operations applied together, or none to leave a joint
/// configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfChange {
    /// The operations; empty means "leave the joint configuration".
    pub changes: Vec<ConfChangeSingle>,
}

/// Why a change cannot be applied to a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    /// A new change while a joint configuration is still in force.
    AlreadyJoint,
    /// "Leave joint" while no joint configuration is in force.
    NotJoint,
    /// The change would leave no voter.
    NoVotersLeft,
    /// The entry does not decode.
    Malformed(&'static str),
    /// A node id of zero.
    InvalidNode,
}

impl fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChangeError::AlreadyJoint => f.write_str("a joint configuration is in force"),
            ConfChangeError::NotJoint => f.write_str("no joint configuration to leave"),
            ConfChangeError::NoVotersLeft => f.write_str("the change would remove every voter"),
            ConfChangeError::Malformed(reason) => write!(f, "malformed change: {reason}"),
            ConfChangeError::InvalidNode => f.write_str("node id 0 is not a valid member"),
        }
    }
}

impl std::error::Error for ConfChangeError {}

impl ConfChange {
    /// A change of one operation.
    pub fn single(change: ConfChangeType, node: NodeId) -> ConfChange {
        ConfChange {
            changes: vec![ConfChangeSingle { change, node }],
        }
    }

    /// The empty change that leaves a joint configuration.
    pub fn leave_joint() -> ConfChange {
        ConfChange::default()
    }

    /// Whether this is the "leave joint" change.
    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty()
    }

    /// The entry payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.changes.len() * 9);
        out.put_u32_le(self.changes.len() as u32);
        for single in &self.changes {
            out.put_u8(match single.change {
                ConfChangeType::AddVoter => 1,
                ConfChangeType::AddLearner => 2,
                ConfChangeType::RemoveNode => 3,
            });
            out.put_u64_le(single.node.get());
        }
        out.freeze()
    }

    /// Parses an entry payload; never panics.
    pub fn decode(bytes: &[u8]) -> Result<ConfChange, ConfChangeError> {
        let mut input = bytes;
        if input.remaining() < 4 {
            return Err(ConfChangeError::Malformed("too short"));
        }
        let count = input.get_u32_le() as usize;
        if input.remaining() != count.saturating_mul(9) {
            return Err(ConfChangeError::Malformed(
                "length does not match the count",
            ));
        }
        let mut changes = Vec::with_capacity(count);
        for _ in 0..count {
            let change = match input.get_u8() {
                1 => ConfChangeType::AddVoter,
                2 => ConfChangeType::AddLearner,
                3 => ConfChangeType::RemoveNode,
                _ => return Err(ConfChangeError::Malformed("unknown operation")),
            };
            let node = NodeId(input.get_u64_le());
            changes.push(ConfChangeSingle { change, node });
        }
        Ok(ConfChange { changes })
    }
}

fn insert(list: &mut Vec<NodeId>, id: NodeId) {
    if let Err(position) = list.binary_search(&id) {
        list.insert(position, id);
    }
}

fn remove(list: &mut Vec<NodeId>, id: NodeId) {
    if let Ok(position) = list.binary_search(&id) {
        list.remove(position);
    }
}

/// The configuration that results from applying `change` to `conf`.
pub fn apply(conf: &ConfState, change: &ConfChange) -> Result<ConfState, ConfChangeError> {
    if change.is_leave_joint() {
        if !conf.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        let mut next = conf.clone();
        next.voters_outgoing.clear();
        for id in std::mem::take(&mut next.learners_next) {
            insert(&mut next.learners, id);
        }
        next.auto_leave = false;
        return Ok(next);
    }
    if conf.is_joint() {
        return Err(ConfChangeError::AlreadyJoint);
    }
    let mut next = conf.clone();
    for single in &change.changes {
        let id = single.node;
        if !id.is_some() {
            return Err(ConfChangeError::InvalidNode);
        }
        match single.change {
            ConfChangeType::AddVoter => {
                remove(&mut next.learners, id);
                remove(&mut next.learners_next, id);
                insert(&mut next.voters, id);
            }
            ConfChangeType::AddLearner => {
                remove(&mut next.voters, id);
                if conf.voters.contains(&id) {
                    // A voter becomes a learner only once the joint configuration is left.
                    insert(&mut next.learners_next, id);
                } else {
                    insert(&mut next.learners, id);
                }
            }
            ConfChangeType::RemoveNode => {
                remove(&mut next.voters, id);
                remove(&mut next.learners, id);
                remove(&mut next.learners_next, id);
            }
        }
    }
    if next.voters.is_empty() {
        return Err(ConfChangeError::NoVotersLeft);
    }
    let changed_voters = conf
        .voters
        .iter()
        .filter(|id| !next.voters.contains(id))
        .count()
        + next
            .voters
            .iter()
            .filter(|id| !conf.voters.contains(id))
            .count();
    let bootstrap = conf.voters.is_empty() && conf.learners.is_empty();
    if bootstrap || (changed_voters <= 1 && next.learners_next.is_empty()) {
        // The founding configuration, or one voter more or less: no joint phase is needed
        // (nothing was decided before the first, and any majority of the old and any of the new
        // overlap for the second).
        return Ok(next);
    }
    next.voters_outgoing = conf.voters.clone();
    next.auto_leave = true;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum;
    use proptest::prelude::*;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn one_voter_changes_directly_and_two_go_through_joint() {
        let conf = ConfState::with_voters(ids(&[1, 2, 3]));
        let add = apply(
            &conf,
            &ConfChange::single(ConfChangeType::AddVoter, NodeId(4)),
        )
        .unwrap();
        assert_eq!(add.voters, ids(&[1, 2, 3, 4]));
        assert!(!add.is_joint());

        let swap = ConfChange {
            changes: vec![
                ConfChangeSingle {
                    change: ConfChangeType::AddVoter,
                    node: NodeId(4),
                },
                ConfChangeSingle {
                    change: ConfChangeType::RemoveNode,
                    node: NodeId(1),
                },
            ],
        };
        let joint = apply(&conf, &swap).unwrap();
        assert!(joint.is_joint());
        assert_eq!(joint.voters, ids(&[2, 3, 4]));
        assert_eq!(joint.voters_outgoing, ids(&[1, 2, 3]));
        assert_eq!(
            apply(&joint, &swap),
            Err(ConfChangeError::AlreadyJoint),
            "one change at a time"
        );
        let left = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left.voters, ids(&[2, 3, 4]));
        assert!(!left.is_joint());
    }

    #[test]
    fn demoting_a_voter_waits_for_leaving_the_joint_configuration() {
        let conf = ConfState::with_voters(ids(&[1, 2, 3]));
        let joint = apply(
            &conf,
            &ConfChange::single(ConfChangeType::AddLearner, NodeId(3)),
        )
        .unwrap();
        assert!(joint.is_joint());
        assert_eq!(joint.learners_next, ids(&[3]));
        assert!(joint.voters_outgoing.contains(&NodeId(3)));
        let left = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left.learners, ids(&[3]));
        assert_eq!(left.voters, ids(&[1, 2]));
    }

    #[test]
    fn promoting_a_learner_and_refusing_to_remove_everyone() {
        let mut conf = ConfState::with_voters(ids(&[1]));
        conf = apply(
            &conf,
            &ConfChange::single(ConfChangeType::AddLearner, NodeId(2)),
        )
        .unwrap();
        assert_eq!(conf.learners, ids(&[2]));
        conf = apply(
            &conf,
            &ConfChange::single(ConfChangeType::AddVoter, NodeId(2)),
        )
        .unwrap();
        assert_eq!(conf.voters, ids(&[1, 2]));
        assert!(conf.learners.is_empty());
        let remove_all = ConfChange {
            changes: vec![
                ConfChangeSingle {
                    change: ConfChangeType::RemoveNode,
                    node: NodeId(1),
                },
                ConfChangeSingle {
                    change: ConfChangeType::RemoveNode,
                    node: NodeId(2),
                },
            ],
        };
        assert_eq!(
            apply(&conf, &remove_all),
            Err(ConfChangeError::NoVotersLeft)
        );
    }

    proptest! {
        /// Whatever the change, any quorum of the configuration before and any quorum of every
        /// configuration after it overlap: the property that makes changes safe.
        #[test]
        fn quorums_of_consecutive_configurations_overlap(
            start in proptest::collection::btree_set(1u64..8, 1..6),
            ops in proptest::collection::vec((0u8..3, 1u64..8), 0..4),
        ) {
            let conf = ConfState::with_voters(start.iter().copied().map(NodeId));
            let change = ConfChange {
                changes: ops
                    .into_iter()
                    .map(|(op, node)| ConfChangeSingle {
                        change: match op {
                            0 => ConfChangeType::AddVoter,
                            1 => ConfChangeType::AddLearner,
                            _ => ConfChangeType::RemoveNode,
                        },
                        node: NodeId(node),
                    })
                    .collect(),
            };
            let Ok(next) = apply(&conf, &change) else { return Ok(()); };
            // Every decision in `next` needs a majority of `next.voters` and, if joint, of the
            // outgoing voters (= `conf.voters`). Either way it overlaps every `conf` majority
            // when the configurations differ by one voter, or it is joint.
            let old = &conf.voters;
            if !next.is_joint() {
                let differ = old.iter().filter(|v| !next.voters.contains(v)).count()
                    + next.voters.iter().filter(|v| !old.contains(v)).count();
                prop_assert!(differ <= 1);
                // With one voter of difference, majorities intersect: |M_old| + |M_new| > |union|.
                let union: std::collections::BTreeSet<_> = old.iter().chain(next.voters.iter()).collect();
                prop_assert!(quorum::majority(old.len()) + quorum::majority(next.voters.len()) > union.len());
            } else {
                prop_assert_eq!(&next.voters_outgoing, old);
            }
            let round_trip = ConfChange::decode(&change.encode());
            prop_assert_eq!(round_trip, Ok(change));
        }
    }
}
