//! Cross-checks the checker against an exhaustive search on many small random histories. The
//! checker's pruning (memoization with dominance, twin and overwrite elimination, value
//! canonicalization) must never change a verdict; the brute force has none of it.

mod common;

use common::{Rng, apply, op};
use lincheck::{CheckOptions, Input, Operation, Output, Verdict, check};

/// Does some order of a subset of `ops` (containing every op with a known outcome) respect real
/// time and the register spec? Plain depth-first search over permutations.
fn brute_force(ops: &[Operation]) -> bool {
    fn known(op: &Operation) -> bool {
        op.ret.is_some() && op.output != Output::Unknown
    }
    fn search(ops: &[Operation], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
        if ops
            .iter()
            .zip(placed.iter())
            .all(|(op, &p)| p || !known(op))
        {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // Every op that returned before `i` was called must already be placed.
            let blocked = ops.iter().zip(placed.iter()).any(|(other, &p)| {
                !p && known(other) && other.ret.is_some_and(|r| r.max(other.call) < ops[i].call)
            });
            if blocked {
                continue;
            }
            let mut next = state;
            let output = apply(&mut next, ops[i].input);
            if known(&ops[i]) && output != ops[i].output {
                continue;
            }
            placed[i] = true;
            if search(ops, placed, next) {
                return true;
            }
            placed[i] = false;
        }
        false
    }
    search(ops, &mut vec![false; ops.len()], None)
}

/// A random small history: random intervals, random inputs from a tiny value domain, outputs
/// produced by a real register at random linearization points (so about half are
/// linearizable), then sometimes one output or interval corrupted.
fn random_history(rng: &mut Rng, max_ops: u64, unknown_percent: u64) -> Vec<Operation> {
    let n = 1 + rng.below(max_ops) as usize;
    let values = 1 + rng.below(3);
    let mut ops: Vec<Operation> = (0..n)
        .map(|i| {
            let call = rng.below(12);
            let input = match rng.below(10) {
                0..=3 => Input::Read,
                4..=6 => Input::Write(rng.below(values)),
                7..=8 => Input::Cas {
                    expected: rng.below(values),
                    new: rng.below(values),
                },
                _ => Input::Delete,
            };
            let ret = (!rng.chance(unknown_percent)).then(|| call + rng.below(6));
            op(i as u64, 0, call, ret, input, Output::Unknown)
        })
        .collect();
    // Linearization points within the intervals; unknown ops take effect half of the time.
    let mut points: Vec<(u64, usize)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        match o.ret {
            Some(ret) => points.push((2 * o.call + rng.below(2 * (ret - o.call) + 1), i)),
            None if rng.chance(50) => points.push((2 * o.call + rng.below(20), i)),
            None => {}
        }
    }
    points.sort_unstable();
    let mut state = None;
    for (_, i) in points {
        let output = apply(&mut state, ops[i].input);
        if ops[i].ret.is_some() {
            ops[i].output = output;
        }
    }
    if rng.chance(75) {
        let i = rng.below(n as u64) as usize;
        let o = &mut ops[i];
        match (o.input, o.ret) {
            (_, None) => o.call += rng.below(10),
            (Input::Read, _) => {
                o.output = Output::Read(rng.chance(80).then(|| rng.below(values + 1)))
            }
            (Input::Cas { .. }, _) => {
                o.output = Output::Cas {
                    succeeded: rng.chance(50),
                }
            }
            (_, Some(ret)) => o.ret = Some(ret.saturating_sub(rng.below(4)).max(o.call)),
        }
    }
    ops
}

fn cross_check(seed: u64, rounds: usize, unknown_percent: u64) {
    let mut rng = Rng::new(seed);
    let (mut yes, mut no) = (0, 0);
    for round in 0..rounds {
        let history = random_history(&mut rng, 9, unknown_percent);
        let expected = brute_force(&history);
        let verdict = check(&history, &CheckOptions::default());
        assert!(
            !matches!(verdict, Verdict::Timeout { .. }),
            "round {round}: timeout"
        );
        assert_eq!(
            verdict.is_linearizable(),
            expected,
            "round {round}: {verdict}\n{history:#?}"
        );
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    // The generator must exercise both answers substantially.
    assert!(yes > rounds / 5 && no > rounds / 10, "yes {yes}, no {no}");
}

#[test]
fn agrees_with_exhaustive_search_on_small_random_histories() {
    cross_check(0x11ce_c0de, 40_000, 20);
}

#[test]
fn agrees_with_exhaustive_search_when_many_outcomes_are_unknown() {
    cross_check(0x5eed, 40_000, 60);
}
