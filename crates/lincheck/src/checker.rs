//! The linearizability search: Wing & Gong's algorithm with Lowe's just-in-time linearization and
//! memoization, laid out as in Porcupine.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::hash::{FxBuildHasher, mix64};
use crate::model::{Input, Operation, Output, ShowState, State, step};

/// Knobs for [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// How many search steps the checker may spend on one key before giving up with
    /// [`Verdict::Timeout`]. A step is one look at a call or return event, or one comparison with
    /// a cached configuration, so the budget is roughly proportional to time (tens of
    /// nanoseconds per step in an optimized build).
    ///
    /// Linearizability checking is NP-complete, and a history with many concurrent operations of
    /// unknown outcome can make the search explode; the budget keeps a pathological history from
    /// hanging a test suite. Memory grows with the steps actually taken (the memoization cache
    /// holds at most one entry per step), so the budget bounds memory as well.
    pub max_steps_per_key: u64,
}

impl Default for CheckOptions {
    /// A budget that realistic histories (tens of thousands of operations, a handful of
    /// concurrent clients, a few lost outcomes) stay orders of magnitude below, while a runaway
    /// search still gives up after about a second per key in an optimized build.
    fn default() -> Self {
        CheckOptions {
            max_steps_per_key: 50_000_000,
        }
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order of the operations respects real time and the register specification, so
    /// every client's observations are explainable by a single copy of the data.
    Linearizable,
    /// No such order exists for the operations on `key`: the system under test broke
    /// linearizability (or the recorder produced a wrong history).
    NotLinearizable {
        /// The smallest key whose sub-history was found not linearizable; reported so the caller
        /// can cut the history down to the offending register.
        key: u64,
        /// A human-readable account of where the search got stuck: the operation that could not
        /// be linearized (`#i` refers to its index in the slice passed to [`check`]) and the
        /// longest linearizable prefix found, because "false" alone is useless for debugging.
        explanation: String,
    },
    /// The search on `key` exceeded [`CheckOptions::max_steps_per_key`] before reaching an
    /// answer; the history is neither known good nor known bad. Only reported when no key was
    /// found to be not linearizable.
    Timeout {
        /// The first key (in ascending order) whose search ran out of budget.
        key: u64,
    },
}

impl Verdict {
    /// Whether the history passed, so callers can `assert!(check(..).is_linearizable())` without
    /// matching on the variants; a timeout is not a pass.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable { key, explanation } => {
                write!(f, "not linearizable on key {key}: {explanation}")
            }
            Verdict::Timeout { key } => {
                write!(f, "undecided: search budget exhausted on key {key}")
            }
        }
    }
}

/// Checks whether `history` is linearizable with respect to a map of independent registers.
///
/// Linearizability is compositional (local): the history is linearizable if and only if each
/// key's sub-history is, so each key is checked on its own, in ascending key order. The first key
/// found not linearizable is reported; a key that runs out of budget is reported as
/// [`Verdict::Timeout`] only if no key is found not linearizable.
///
/// See the crate documentation for the model (in particular unknown outcomes) and the algorithm.
pub fn check(history: &[Operation], options: &CheckOptions) -> Verdict {
    let mut by_key: HashMap<u64, Vec<usize>, FxBuildHasher> = HashMap::default();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }
    let mut keys: Vec<u64> = by_key.keys().copied().collect();
    keys.sort_unstable();

    let mut timed_out = None;
    for key in keys {
        match check_key(history, &by_key[&key], options.max_steps_per_key) {
            KeyOutcome::Linearizable => {}
            KeyOutcome::NotLinearizable(explanation) => {
                return Verdict::NotLinearizable { key, explanation };
            }
            KeyOutcome::Timeout => {
                timed_out.get_or_insert(key);
            }
        }
    }
    match timed_out {
        Some(key) => Verdict::Timeout { key },
        None => Verdict::Linearizable,
    }
}

enum KeyOutcome {
    Linearizable,
    NotLinearizable(String),
    Timeout,
}

/// Sentinel at the front of the list of known-outcome events.
const HEAD: usize = 0;
/// Node kinds in the event lists.
const CALL: u8 = 0;
const RETURN: u8 = 1;
const SENTINEL: u8 = 2;
/// "No operation" for slot numbers.
const NONE: u32 = u32::MAX;

/// One operation of a single key's sub-history, in call order.
struct SearchOp {
    /// Index in the caller's history slice, for explanations.
    orig: usize,
    input: Input,
    /// `Output::Unknown` for operations whose outcome is unknown.
    output: Output,
    /// Whether the operation must be linearized (its outcome is known) or may be left out.
    known: bool,
    /// Position among the known operations (in `known_bits`) or among the unknown ones (in
    /// `unknown_bits`), in call order.
    slot: u32,
    call_node: usize,
    /// The return event's node; `None` for unknown outcomes, whose return is at infinity.
    ret_node: Option<usize>,
    /// For an unknown-outcome operation: the previous (by call) unknown-outcome operation with
    /// the same input, or `NONE`. Such twins are interchangeable once both are called, so the
    /// search only ever linearizes the earliest unused one.
    twin: u32,
}

/// A choice made by the search, undone when backtracking.
struct Frame {
    op: u32,
    /// Search variables as they were before the choice.
    state: State,
    lo: u32,
    max_known: u32,
    /// The return node that bounded the candidates when `op` was chosen (unknown ops only).
    bound: usize,
}

/// The deepest dead end seen, kept to explain a negative verdict.
struct DeadEnd {
    prefix: Vec<u32>,
    blocked: u32,
}

fn check_key(history: &[Operation], indices: &[usize], max_steps: u64) -> KeyOutcome {
    // A read whose outcome is unknown has no effect and no observation: it constrains nothing.
    let mut selected: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| history[i].outcome_known() || history[i].input != Input::Read)
        .collect();
    selected.sort_by_key(|&i| (history[i].call, i));
    if !selected.iter().any(|&i| history[i].outcome_known()) {
        // Every remaining operation may be left out, and the empty order is a linearization.
        return KeyOutcome::Linearizable;
    }
    Search::new(history, &selected, max_steps).run()
}

/// The depth-first search over one key's sub-history.
///
/// Events live in two doubly-linked lists threaded through the same node arrays, both in time
/// order: the calls and returns of known-outcome operations (from `HEAD`), and the calls of
/// unknown-outcome operations (from `uhead`). Node numbers follow time order across both lists,
/// so "call before return" is a comparison of node numbers.
struct Search<'h> {
    history: &'h [Operation],
    ops: Vec<SearchOp>,
    next: Vec<usize>,
    prev: Vec<usize>,
    kind: Vec<u8>,
    node_op: Vec<u32>,
    /// Sentinel at the front of the unknown-call list.
    uhead: usize,
    /// The `expected` values of the unknown-outcome cas operations.
    unknown_cas_expects: HashSet<u64, FxBuildHasher>,
    /// Which known operations the current partial linearization contains.
    known_bits: Vec<u64>,
    /// Zobrist hash of `known_bits`, maintained incrementally.
    known_hash: u64,
    /// Index of the first word of `known_bits` that is not all ones.
    lo: u32,
    /// Highest linearized known slot, or `NONE`.
    max_known: u32,
    /// Which unknown-outcome operations the current partial linearization contains.
    unknown_bits: Vec<u64>,
    state: State,
    stack: Vec<Frame>,
    known_total: usize,
    known_done: usize,
    cache: Cache,
    max_steps: u64,
    deepest: Option<DeadEnd>,
}

impl<'h> Search<'h> {
    fn new(history: &'h [Operation], selected: &[usize], max_steps: u64) -> Self {
        // Values that no operation ever compares the register with are indistinguishable: the
        // sequential spec only tests the state for equality with read results and cas
        // expectations. Mapping them all to one representative collapses states (and makes more
        // unknown-outcome writes interchangeable) without changing the verdict.
        let mut observed: HashSet<u64, FxBuildHasher> = HashSet::default();
        for &i in selected {
            let op = &history[i];
            match (op.input, op.output) {
                (Input::Cas { expected, .. }, _) => {
                    observed.insert(expected);
                }
                (Input::Read, Output::Read(Some(v))) if op.outcome_known() => {
                    observed.insert(v);
                }
                _ => {}
            }
        }
        let unobserved = (0..=u64::MAX)
            .rev()
            .find(|v| !observed.contains(v))
            .expect("a history has fewer than 2^64 distinct values");
        let canonical = |v: u64| {
            if observed.contains(&v) { v } else { unobserved }
        };

        let (mut known_count, mut unknown_count) = (0u32, 0u32);
        let mut last_twin: HashMap<Input, u32, FxBuildHasher> = HashMap::default();
        let mut ops: Vec<SearchOp> = selected
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let op = &history[i];
                let known = op.outcome_known();
                let input = match op.input {
                    Input::Write(v) => Input::Write(canonical(v)),
                    Input::Cas { expected, new } => Input::Cas {
                        expected,
                        new: canonical(new),
                    },
                    other => other,
                };
                let twin = if known {
                    NONE
                } else {
                    last_twin.insert(input, j as u32).unwrap_or(NONE)
                };
                let counter = if known {
                    &mut known_count
                } else {
                    &mut unknown_count
                };
                let slot = *counter;
                *counter += 1;
                SearchOp {
                    orig: i,
                    input,
                    output: if known { op.output } else { Output::Unknown },
                    known,
                    slot,
                    call_node: 0,
                    ret_node: None,
                    twin,
                }
            })
            .collect();

        // Events sorted by time; at equal times calls come first, so operations whose intervals
        // merely touch are concurrent: A precedes B only if A.ret < B.call.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * ops.len());
        for (j, &i) in selected.iter().enumerate() {
            let op = &history[i];
            events.push((op.call, CALL, j as u32));
            if ops[j].known {
                let ret = op.ret.unwrap_or(u64::MAX).max(op.call);
                events.push((ret, RETURN, j as u32));
            }
        }
        events.sort_unstable();

        // Nodes: HEAD, the events, the known list's tail, the unknown list's head and tail. The
        // tails have the highest numbers, so they bound every scan.
        let tail = events.len() + 1;
        let uhead = tail + 1;
        let utail = tail + 2;
        let nodes = utail + 1;
        let mut kind = vec![SENTINEL; nodes];
        let mut node_op = vec![NONE; nodes];
        let mut next = vec![0; nodes];
        let mut prev = vec![0; nodes];
        let (mut last_known, mut last_unknown) = (HEAD, uhead);
        for (k, &(_, event_kind, j)) in events.iter().enumerate() {
            let node = k + 1;
            kind[node] = event_kind;
            node_op[node] = j;
            let op = &mut ops[j as usize];
            if event_kind == RETURN {
                op.ret_node = Some(node);
            } else {
                op.call_node = node;
            }
            let last = if op.known {
                &mut last_known
            } else {
                &mut last_unknown
            };
            next[*last] = node;
            prev[node] = *last;
            *last = node;
        }
        next[last_known] = tail;
        prev[tail] = last_known;
        next[tail] = tail;
        next[last_unknown] = utail;
        prev[utail] = last_unknown;
        next[utail] = utail;

        let unknown_cas_expects = ops
            .iter()
            .filter_map(|op| match op.input {
                Input::Cas { expected, .. } if !op.known => Some(expected),
                _ => None,
            })
            .collect();

        Search {
            history,
            unknown_cas_expects,
            ops,
            next,
            prev,
            kind,
            node_op,
            uhead,
            known_bits: vec![0; (known_count as usize).div_ceil(64)],
            known_hash: 0,
            lo: 0,
            max_known: NONE,
            unknown_bits: vec![0; (unknown_count as usize).div_ceil(64)],
            state: None,
            stack: Vec::new(),
            known_total: known_count as usize,
            known_done: 0,
            cache: Cache::new(),
            max_steps,
            deepest: None,
        }
    }

    /// Runs the search. The candidates for the next linearization point are the operations whose
    /// call precedes the first pending return. Known-outcome candidates are tried first, and only
    /// then unknown-outcome ones: leaving an unknown operation out is always an option, and
    /// exploring the configurations with the fewest unknown operations first lets the cache's
    /// dominance check (see [`Cache`]) prune the configurations that merely add some.
    fn run(&mut self) -> KeyOutcome {
        let mut entry = self.next[HEAD];
        let mut unknown_pass = false;
        // While in the unknown pass: the return node that ended the known pass.
        let mut bound = HEAD;
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps + self.cache.comparisons > self.max_steps {
                return KeyOutcome::Timeout;
            }
            if !unknown_pass {
                if self.kind[entry] != CALL {
                    // The first pending return: now try unknown operations called before it.
                    bound = entry;
                    unknown_pass = true;
                    entry = self.next[self.uhead];
                    continue;
                }
            } else if entry >= bound {
                // Out of candidates: the operation returning at `bound` had to be linearized by
                // now and cannot be; undo the last choice.
                self.note_dead_end(bound);
                let Some(frame) = self.stack.pop() else {
                    return KeyOutcome::NotLinearizable(self.explain());
                };
                let op = frame.op as usize;
                bound = frame.bound;
                self.undo(frame);
                entry = self.next[self.ops[op].call_node];
                unknown_pass = !self.ops[op].known;
                continue;
            }
            let op = self.node_op[entry];
            if unknown_pass && !self.worth_trying(op, bound) {
                entry = self.next[entry];
                continue;
            }
            if self.try_linearize(op, bound) {
                if self.known_done == self.known_total {
                    return KeyOutcome::Linearizable;
                }
                entry = self.next[HEAD];
                unknown_pass = false;
            } else {
                entry = self.next[entry];
            }
        }
    }

    /// Whether linearizing the unknown-outcome operation `op` now could lead anywhere, judged
    /// without touching the cache. Both rules skip only choices that the search would find to be
    /// dead ends or duplicates anyway, so they save time without changing the verdict.
    fn worth_trying(&self, op: u32, bound: usize) -> bool {
        let sop = &self.ops[op as usize];
        if sop.twin != NONE && !self.is_linearized_unknown(sop.twin) {
            // Its earlier twin is unused: trying this one would only repeat that choice.
            return false;
        }
        let Some(new_state) = step(self.state, sop.input, sop.output) else {
            return false;
        };
        if new_state == self.state {
            // No effect: the configuration with one unknown operation fewer covers it.
            return false;
        }
        // The known candidates are the same after the step (it does not change which known
        // operations are linearized), and none of them could be linearized before it. The next
        // operation must accept the new value: a known candidate that observes it, or an unknown
        // cas that expects it (blind operations cannot directly follow an unknown one, and any
        // other unknown operation would have no effect).
        if new_state.is_some_and(|v| self.unknown_cas_expects.contains(&v)) {
            return true;
        }
        let mut node = self.next[HEAD];
        while node < bound {
            if self.kind[node] == CALL {
                let k = &self.ops[self.node_op[node] as usize];
                if !matches!(k.input, Input::Write(_) | Input::Delete)
                    && step(new_state, k.input, k.output).is_some()
                {
                    return true;
                }
            }
            node = self.next[node];
        }
        false
    }

    /// Linearizes `op` next if its output fits the current state and the resulting configuration
    /// is not already covered by the cache.
    fn try_linearize(&mut self, op: u32, bound: usize) -> bool {
        let sop = &self.ops[op as usize];
        if matches!(sop.input, Input::Write(_) | Input::Delete)
            && self
                .stack
                .last()
                .is_some_and(|f| !self.ops[f.op as usize].known)
        {
            // An unknown-outcome operation immediately overwritten had no visible effect: the
            // order without it is as good, and is explored separately, so skip this one.
            return false;
        }
        let Some(new_state) = step(self.state, sop.input, sop.output) else {
            return false;
        };
        let (known, slot) = (sop.known, sop.slot);
        if known && self.known_done + 1 == self.known_total {
            // The last required operation: the search is over.
            self.known_done += 1;
            return true;
        }
        let (mut lo, mut max_known) = (self.lo as usize, self.max_known);
        if known {
            self.flip_known(slot);
            while lo < self.known_bits.len() && self.known_bits[lo] == u64::MAX {
                lo += 1;
            }
            max_known = if max_known == NONE {
                slot
            } else {
                max_known.max(slot)
            };
        } else {
            self.flip_unknown(slot);
        }
        let hi = if max_known == NONE {
            0
        } else {
            max_known as usize / 64 + 1
        };
        let hash = self.known_hash ^ state_hash(new_state);
        let fresh = self.cache.insert(
            hash,
            new_state,
            lo as u32,
            &self.known_bits[lo..hi],
            &self.unknown_bits,
        );
        if !fresh {
            if known {
                self.flip_known(slot);
            } else {
                self.flip_unknown(slot);
            }
            return false;
        }
        self.stack.push(Frame {
            op,
            state: self.state,
            lo: self.lo,
            max_known: self.max_known,
            bound,
        });
        self.state = new_state;
        self.lo = lo as u32;
        self.max_known = max_known;
        self.lift(op as usize);
        if known {
            self.known_done += 1;
        }
        true
    }

    /// Reverts the choice recorded in `frame`, which must be the top of the stack just popped.
    fn undo(&mut self, frame: Frame) {
        let op = frame.op as usize;
        self.unlift(op);
        let (known, slot) = (self.ops[op].known, self.ops[op].slot);
        if known {
            self.flip_known(slot);
            self.known_done -= 1;
        } else {
            self.flip_unknown(slot);
        }
        self.state = frame.state;
        self.lo = frame.lo;
        self.max_known = frame.max_known;
    }

    #[inline]
    fn flip_known(&mut self, slot: u32) {
        self.known_bits[slot as usize / 64] ^= 1 << (slot % 64);
        self.known_hash ^= mix64(u64::from(slot));
    }

    #[inline]
    fn is_linearized_unknown(&self, op: u32) -> bool {
        let slot = self.ops[op as usize].slot;
        self.unknown_bits[slot as usize / 64] & (1 << (slot % 64)) != 0
    }

    #[inline]
    fn flip_unknown(&mut self, slot: u32) {
        self.unknown_bits[slot as usize / 64] ^= 1 << (slot % 64);
    }

    #[inline]
    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    #[inline]
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }

    /// Removes an operation's events from the lists once it is linearized.
    fn lift(&mut self, op: usize) {
        self.unlink(self.ops[op].call_node);
        if let Some(ret) = self.ops[op].ret_node {
            self.unlink(ret);
        }
    }

    /// Undoes [`Self::lift`]; must run in exact reverse order of the lifts (dancing links).
    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.ops[op].ret_node {
            self.relink(ret);
        }
        self.relink(self.ops[op].call_node);
    }

    fn note_dead_end(&mut self, blocking_node: usize) {
        let depth = self.stack.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|d| d.prefix.len() >= depth)
        {
            return;
        }
        self.deepest = Some(DeadEnd {
            prefix: self.stack.iter().map(|f| f.op).collect(),
            blocked: self.node_op[blocking_node],
        });
    }

    /// The register value after `prefix`, computed from the original inputs: the search itself
    /// works on canonicalized values, which would be confusing in an explanation.
    fn replay(&self, prefix: &[u32]) -> State {
        prefix.iter().fold(None, |state, &op| {
            let input = self.history[self.ops[op as usize].orig].input;
            step(state, input, Output::Unknown).unwrap_or(state)
        })
    }

    fn explain(&self) -> String {
        let describe = |op: u32| {
            let orig = self.ops[op as usize].orig;
            format!("#{orig} ({})", self.history[orig])
        };
        let Some(dead) = &self.deepest else {
            return "no linearization exists".to_string();
        };
        let mut out = if dead.blocked == NONE {
            "no operation order explains the history".to_string()
        } else {
            format!("operation {} cannot be linearized", describe(dead.blocked))
        };
        out.push_str(&format!(
            "; the longest linearizable prefix found orders {} of {} operations and leaves the \
             register at {}",
            dead.prefix.len(),
            self.ops.len(),
            ShowState(self.replay(&dead.prefix))
        ));
        const SHOWN: usize = 5;
        if !dead.prefix.is_empty() {
            let from = dead.prefix.len().saturating_sub(SHOWN);
            let tail: Vec<String> = dead.prefix[from..].iter().map(|&op| describe(op)).collect();
            out.push_str(&format!(
                "; it ends with{} {}",
                if from > 0 { " ..." } else { "" },
                tail.join(", ")
            ));
        }
        out
    }
}

#[inline]
fn state_hash(state: State) -> u64 {
    match state {
        Some(v) => mix64(v ^ 0x2545_f491_4f6c_dd1d),
        None => 0x6a09_e667_f3bc_c908,
    }
}

/// The memoization cache: the configurations the search has already entered. A configuration is
/// (K: the known-outcome operations linearized, U: the unknown-outcome operations linearized,
/// the register value). Two paths reaching the same configuration have the same future, so the
/// second can be pruned; this is what makes the search practical.
///
/// Unknown-outcome operations are optional, so having linearized fewer of them never hurts:
/// (K, U, v) can do everything (K, U', v) can whenever U ⊆ U'. The cache therefore groups entries
/// by (K, v) and keeps, per group, the antichain of U sets seen; a configuration is pruned if some
/// stored U is a subset of its own. Without this, every subset of the pending unknown operations
/// would be explored separately, which is exponential on long histories with lost outcomes.
///
/// Layout: open addressing over group indices; the K bitsets and U sets live in one arena. Only
/// the "window" of K is stored: the words below `lo` are all ones (every operation called before
/// the first still-open one is linearized) and the words from `hi` on are all zeros, and both
/// bounds are functions of the set, so comparing `(lo, window)` is comparing sets. On long
/// histories this keeps an entry at a few words however many operations there are.
struct Cache {
    /// How many stored U sets were compared against, counted towards the step budget so that it
    /// keeps bounding time when antichains grow long.
    comparisons: u64,
    slots: Vec<u32>,
    groups: Vec<Group>,
    sets: Vec<UnknownSet>,
    words: Vec<u64>,
}

/// All cached configurations with the same K and register value.
struct Group {
    hash: u64,
    state: State,
    lo: u32,
    len: u32,
    start: usize,
    /// Head of this group's list in `sets`.
    first_set: u32,
}

/// One U set of a group, as a bitset in the arena, linked to the next one of the same group.
struct UnknownSet {
    start: usize,
    next: u32,
}

impl Cache {
    fn new() -> Self {
        Cache {
            comparisons: 0,
            slots: vec![0; 1 << 10],
            groups: Vec::new(),
            sets: Vec::new(),
            words: Vec::new(),
        }
    }

    /// Records the configuration; returns false if it is already covered (an equal or dominating
    /// configuration was recorded before).
    fn insert(
        &mut self,
        hash: u64,
        state: State,
        lo: u32,
        window: &[u64],
        unknown: &[u64],
    ) -> bool {
        if (self.groups.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            let g = &self.groups[slot as usize - 1];
            if g.hash == hash
                && g.state == state
                && g.lo == lo
                && self.words[g.start..g.start + g.len as usize] == *window
            {
                return self.add_to_group(slot as usize - 1, unknown);
            }
            i = (i + 1) & mask;
        }
        let start = self.words.len();
        self.words.extend_from_slice(window);
        let first_set = self.push_set(unknown, NONE);
        self.groups.push(Group {
            hash,
            state,
            lo,
            len: window.len() as u32,
            start,
            first_set,
        });
        self.slots[i] = self.groups.len() as u32;
        true
    }

    fn add_to_group(&mut self, group: usize, unknown: &[u64]) -> bool {
        let n = unknown.len();
        let subset = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x & !y == 0);
        let mut prev = NONE;
        let mut cur = self.groups[group].first_set;
        while cur != NONE {
            self.comparisons += 1;
            let set = &self.sets[cur as usize];
            let next = set.next;
            let stored = &self.words[set.start..set.start + n];
            if subset(stored, unknown) {
                return false;
            }
            if subset(unknown, stored) {
                // The new set dominates this one: drop it to keep the list short.
                if prev == NONE {
                    self.groups[group].first_set = next;
                } else {
                    self.sets[prev as usize].next = next;
                }
            } else {
                prev = cur;
            }
            cur = next;
        }
        let head = self.groups[group].first_set;
        self.groups[group].first_set = self.push_set(unknown, head);
        true
    }

    fn push_set(&mut self, unknown: &[u64], next: u32) -> u32 {
        let start = self.words.len();
        self.words.extend_from_slice(unknown);
        self.sets.push(UnknownSet { start, next });
        self.sets.len() as u32 - 1
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let mask = size - 1;
        let mut slots = vec![0u32; size];
        for (idx, g) in self.groups.iter().enumerate() {
            let mut i = g.hash as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = idx as u32 + 1;
        }
        self.slots = slots;
    }
}
