//! The safety properties, checked as the run goes. Each check names the property it guards.

use raft::{Entry, LogIndex, NodeId, Role, Storage, Term};
use std::collections::BTreeMap;
use std::fmt;

/// A broken property, with when and where it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time in microseconds.
    pub at_us: u64,
    /// The property, as a short stable name.
    pub property: &'static str,
    /// What exactly was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:.6}s] {}: {}",
            self.at_us as f64 / 1e6,
            self.property,
            self.detail
        )
    }
}

/// A fingerprint of an entry: term plus a hash of its payload, so comparing entries across nodes
/// does not keep copies of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPrint {
    /// The entry's term.
    pub term: Term,
    /// FNV-1a of kind and data.
    pub digest: u64,
}

impl EntryPrint {
    /// The fingerprint of `entry`.
    pub fn of(entry: &Entry) -> EntryPrint {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        hash ^= entry.kind as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        for byte in entry.data.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        EntryPrint {
            term: entry.term,
            digest: hash,
        }
    }
}

/// Global knowledge the checks compare each node against.
#[derive(Default)]
pub struct Checker {
    /// The leader of each term seen so far (Election Safety).
    leaders: BTreeMap<Term, NodeId>,
    /// Every committed entry, by index - 1 (committed entries never change).
    committed: Vec<EntryPrint>,
    /// The vote each node granted in each term, as observed on the wire.
    votes_granted: BTreeMap<(NodeId, Term), NodeId>,
    /// Violations found.
    pub violations: Vec<Violation>,
    now_us: u64,
}

impl Checker {
    /// Sets the time stamped on violations.
    pub fn set_now(&mut self, now_us: u64) {
        self.now_us = now_us;
    }

    fn violate(&mut self, property: &'static str, detail: String) {
        // The first few are what matters; a broken run can otherwise produce millions.
        if self.violations.len() < 20 {
            self.violations.push(Violation {
                at_us: self.now_us,
                property,
                detail,
            });
        }
    }

    /// How many entries are known committed.
    pub fn committed_len(&self) -> u64 {
        self.committed.len() as u64
    }

    /// The fingerprint of committed entry `index`, if known.
    pub fn committed_at(&self, index: LogIndex) -> Option<EntryPrint> {
        self.committed.get((index.get() - 1) as usize).copied()
    }

    /// At most one leader per term.
    pub fn observe_role(&mut self, id: NodeId, term: Term, role: Role) {
        if role != Role::Leader {
            return;
        }
        match self.leaders.get(&term) {
            Some(leader) if *leader != id => {
                let leader = *leader;
                self.violate(
                    "election-safety",
                    format!("two leaders in {term}: {leader} and {id}"),
                );
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, id);
            }
        }
    }

    /// A node granted its vote in `term` to `candidate` (seen on the wire). A second, different
    /// grant in the same term means a vote was not durable or was given twice.
    pub fn observe_vote_granted(&mut self, voter: NodeId, term: Term, candidate: NodeId) {
        match self.votes_granted.get(&(voter, term)) {
            Some(previous) if *previous != candidate => {
                let previous = *previous;
                self.violate(
                    "vote-once-per-term",
                    format!("{voter} voted for {previous} and {candidate} in {term}"),
                );
            }
            Some(_) => {}
            None => {
                self.votes_granted.insert((voter, term), candidate);
            }
        }
    }

    /// A node's committed prefix grew from `from` (exclusive) to `to` (inclusive); `entries` are
    /// its entries in that range. Committed entries must agree with every earlier commit, and a
    /// newly committed entry must be durable on a majority of `disks` (what each node's WAL
    /// holds, or for a crashed node, what its WAL recovered).
    pub fn observe_commit<S: Storage + ?Sized>(
        &mut self,
        id: NodeId,
        entries: &[Entry],
        disks: &[(NodeId, &S)],
        confs: &[&raft::ConfState],
    ) {
        for entry in entries {
            let print = EntryPrint::of(entry);
            let slot = (entry.index.get() - 1) as usize;
            if slot < self.committed.len() {
                if self.committed[slot] != print {
                    let known = self.committed[slot];
                    self.violate(
                        "state-machine-safety",
                        format!(
                            "{id} committed {} at {} but {} was committed there before",
                            print.term, entry.index, known.term
                        ),
                    );
                }
                continue;
            }
            if slot > self.committed.len() {
                self.violate(
                    "commit-gap",
                    format!("{id} committed {} past unknown entries", entry.index),
                );
                return;
            }
            // A majority of the voters in force (of both halves of a joint configuration) must
            // hold the entry durably. Configurations switch when applied, so during one event
            // the committing leader may have used the one before or the one after it applied a
            // change: one of them must have its quorum.
            let holds = |voter: &NodeId| {
                disks
                    .iter()
                    .find(|(disk_id, _)| disk_id == voter)
                    .is_some_and(|(_, disk)| disk.term(entry.index).ok() == Some(entry.term))
            };
            let quorum_holds = |conf: &raft::ConfState| {
                [&conf.voters, &conf.voters_outgoing].iter().all(|half| {
                    half.is_empty()
                        || half.iter().filter(|voter| holds(voter)).count() > half.len() / 2
                })
            };
            if !confs.iter().any(|conf| quorum_holds(conf)) {
                let holders: Vec<NodeId> = disks
                    .iter()
                    .map(|(disk_id, _)| *disk_id)
                    .filter(holds)
                    .collect();
                self.violate(
                    "durable-quorum",
                    format!(
                        "{id} committed {} ({}) but only {holders:?} hold it; configurations {confs:?}",
                        entry.index, entry.term
                    ),
                );
            }
            self.committed.push(print);
        }
    }

    /// A node applied the entry at `index` with `term`: it must be the committed one.
    pub fn observe_applied(&mut self, id: NodeId, index: LogIndex, term: Term) {
        match self.committed_at(index) {
            Some(print) if print.term == term => {}
            Some(print) => self.violate(
                "state-machine-safety",
                format!(
                    "{id} applied {term} at {index}, but {} is committed there",
                    print.term
                ),
            ),
            None => self.violate(
                "apply-uncommitted",
                format!("{id} applied {index} ({term}) which is not known committed"),
            ),
        }
    }

    /// A new leader must hold every committed entry (Leader Completeness).
    /// Entries before `first_index` are compacted into the leader's snapshot, which holds them.
    pub fn observe_new_leader(
        &mut self,
        id: NodeId,
        first_index: LogIndex,
        term_at: impl Fn(LogIndex) -> Option<Term>,
    ) {
        let first_slot = (first_index.get().saturating_sub(1)) as usize;
        for slot in first_slot..self.committed.len() {
            let index = LogIndex(slot as u64 + 1);
            let expected = self.committed[slot].term;
            if term_at(index) != Some(expected) {
                self.violate(
                    "leader-completeness",
                    format!("{id} became leader without committed entry {index} ({expected})"),
                );
                return;
            }
        }
    }

    /// Commit index never moves back within one incarnation of a node.
    pub fn observe_commit_regression(&mut self, id: NodeId, before: LogIndex, after: LogIndex) {
        self.violate(
            "commit-monotonic",
            format!("{id} commit index went back from {before} to {after}"),
        );
    }

    /// The durable term never decreases, and the durable vote never changes within a term:
    /// `before` is what the WAL held (or recovered), `after` what it holds (or recovered) next.
    pub fn observe_hard_state_write(
        &mut self,
        id: NodeId,
        before: raft::HardState,
        after: raft::HardState,
    ) {
        if after.term < before.term {
            self.violate(
                "term-monotonic",
                format!(
                    "{id} durable term went back from {} to {}",
                    before.term, after.term
                ),
            );
        }
        if after.term == before.term && before.vote.is_some() && after.vote != before.vote {
            self.violate(
                "vote-durable",
                format!(
                    "{id} durable vote in {} changed from {} to {}",
                    after.term, before.vote, after.vote
                ),
            );
        }
    }

    /// A node's own invariant check failed.
    pub fn observe_node_invariant(&mut self, id: NodeId, violation: String) {
        self.violate("node-invariant", format!("{id}: {violation}"));
    }

    /// Log Matching across two nodes: if they hold an entry with the same index and term, all
    /// earlier entries are identical.
    /// Each log is given with the index of its first entry (compacted logs start later).
    pub fn check_log_matching(&mut self, logs: &[(NodeId, u64, Vec<EntryPrint>)]) {
        for (a, (id_a, first_a, log_a)) in logs.iter().enumerate() {
            for (id_b, first_b, log_b) in &logs[a + 1..] {
                let low = (*first_a).max(*first_b);
                let high = (first_a + log_a.len() as u64).min(first_b + log_b.len() as u64);
                let at =
                    |log: &Vec<EntryPrint>, first: u64, index: u64| log[(index - first) as usize];
                // The highest index where the terms agree; everything before must be equal.
                let Some(top) = (low..high)
                    .rev()
                    .find(|&i| at(log_a, *first_a, i).term == at(log_b, *first_b, i).term)
                else {
                    continue;
                };
                if let Some(i) =
                    (low..=top).find(|&i| at(log_a, *first_a, i) != at(log_b, *first_b, i))
                {
                    self.violate(
                        "log-matching",
                        format!(
                            "{id_a} and {id_b} agree on entry {top} ({}) but differ at {i}",
                            at(log_a, *first_a, top).term,
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// A liveness or end-of-run failure.
    pub fn fail(&mut self, property: &'static str, detail: String) {
        self.violate(property, detail);
    }
}
