//! Small hand-written histories, each pinning down one rule of the model.

mod common;

use common::op;
use lincheck::{CheckOptions, Input, Operation, Output, Verdict, check};

const READ: Input = Input::Read;
const DELETE: Input = Input::Delete;

fn w(v: u64) -> Input {
    Input::Write(v)
}

fn cas(expected: u64, new: u64) -> Input {
    Input::Cas { expected, new }
}

fn got(v: u64) -> Output {
    Output::Read(Some(v))
}

const NIL: Output = Output::Read(None);
const OK: Output = Output::Write;
const CAS_OK: Output = Output::Cas { succeeded: true };
const CAS_FAIL: Output = Output::Cas { succeeded: false };

/// An operation on key 0 by client `c` over `[call, ret]`.
fn done(c: u64, call: u64, ret: u64, input: Input, output: Output) -> Operation {
    op(c, 0, call, Some(ret), input, output)
}

/// An operation on key 0 by client `c`, called at `call`, whose outcome was lost.
fn lost(c: u64, call: u64, input: Input) -> Operation {
    op(c, 0, call, None, input, Output::Unknown)
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default())
}

fn linearizable(history: &[Operation]) -> bool {
    let v = verdict(history);
    assert!(!matches!(v, Verdict::Timeout { .. }), "{v}");
    v.is_linearizable()
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(verdict(&[]), Verdict::Linearizable);
}

#[test]
fn sequential_history_following_the_spec_is_linearizable() {
    let h = [
        done(0, 0, 1, READ, NIL),
        done(0, 2, 3, w(1), OK),
        done(1, 4, 5, READ, got(1)),
        done(0, 6, 7, cas(1, 2), CAS_OK),
        done(1, 8, 9, cas(1, 3), CAS_FAIL),
        done(0, 10, 11, READ, got(2)),
        done(1, 12, 13, DELETE, Output::Delete),
        done(0, 14, 15, READ, NIL),
        done(1, 16, 17, cas(2, 5), CAS_FAIL),
    ];
    assert!(linearizable(&h));
}

#[test]
fn read_concurrent_with_a_write_may_see_either_value() {
    for seen in [NIL, got(1)] {
        let h = [done(0, 0, 10, w(1), OK), done(1, 2, 3, READ, seen)];
        assert!(linearizable(&h), "{seen:?}");
    }
    let h = [done(0, 0, 10, w(1), OK), done(1, 2, 3, READ, got(2))];
    assert!(!linearizable(&h));
}

#[test]
fn concurrent_reads_must_agree_on_one_order_of_writes() {
    // Two concurrent writes; two later reads (concurrent with each other) see different values:
    // fine. But two sequential reads seeing 1 then 2 then 1 again are not.
    let base = [done(0, 0, 5, w(1), OK), done(1, 0, 5, w(2), OK)];
    let ok = [
        base.to_vec(),
        vec![done(2, 1, 2, READ, got(1)), done(3, 3, 4, READ, got(2))],
    ]
    .concat();
    assert!(linearizable(&ok));
    let flip_flop = [
        base.to_vec(),
        vec![
            done(2, 1, 1, READ, got(1)),
            done(3, 2, 2, READ, got(2)),
            done(2, 3, 3, READ, got(1)),
        ],
    ]
    .concat();
    assert!(!linearizable(&flip_flop));
}

#[test]
fn operations_whose_intervals_touch_are_concurrent() {
    // The write returns at 5 and the read is called at 5: either order is allowed.
    let touching = [done(0, 0, 5, w(1), OK), done(1, 5, 6, READ, NIL)];
    assert!(linearizable(&touching));
    // Returned strictly before the read was called: the read must see it.
    let before = [done(0, 0, 4, w(1), OK), done(1, 5, 6, READ, NIL)];
    assert!(!linearizable(&before));
}

#[test]
fn stale_read_is_not_linearizable() {
    let h = [
        done(0, 0, 1, w(1), OK),
        done(0, 2, 3, w(2), OK),
        done(1, 4, 5, READ, got(1)),
    ];
    assert!(!linearizable(&h));
}

#[test]
fn lost_write_is_not_linearizable() {
    // The write of 2 completed, yet a later read still sees the value before it.
    let h = [
        done(0, 0, 1, w(1), OK),
        done(1, 2, 3, READ, got(1)),
        done(0, 4, 5, w(2), OK),
        done(1, 6, 7, READ, got(1)),
    ];
    assert!(!linearizable(&h));
    let never_seen = [done(0, 0, 1, w(1), OK), done(1, 2, 3, READ, NIL)];
    assert!(!linearizable(&never_seen));
}

#[test]
fn two_cas_from_the_same_expected_value_cannot_both_succeed() {
    let sequential = [
        done(0, 0, 1, w(1), OK),
        done(0, 2, 3, cas(1, 2), CAS_OK),
        done(1, 4, 5, cas(1, 3), CAS_OK),
    ];
    assert!(!linearizable(&sequential));
    let concurrent = [
        done(0, 0, 1, w(1), OK),
        done(1, 2, 10, cas(1, 2), CAS_OK),
        done(2, 3, 9, cas(1, 3), CAS_OK),
    ];
    assert!(!linearizable(&concurrent));
}

#[test]
fn cas_outcome_must_match_the_value() {
    let succeeded_on_other_value = [done(0, 0, 1, w(5), OK), done(1, 2, 3, cas(1, 2), CAS_OK)];
    assert!(!linearizable(&succeeded_on_other_value));
    let succeeded_on_absent = [done(1, 2, 3, cas(1, 2), CAS_OK)];
    assert!(!linearizable(&succeeded_on_absent));
    // A failed cas observed the value: it cannot fail while the value equals `expected`.
    let failed_on_expected_value = [done(0, 0, 1, w(1), OK), done(1, 2, 3, cas(1, 2), CAS_FAIL)];
    assert!(!linearizable(&failed_on_expected_value));
    // ...unless a concurrent write explains it.
    let failed_after_concurrent_write = [
        done(0, 0, 1, w(1), OK),
        done(1, 2, 5, cas(1, 2), CAS_FAIL),
        done(2, 3, 4, w(7), OK),
    ];
    assert!(linearizable(&failed_after_concurrent_write));
    // A successful cas is visible to later reads.
    let cas_then_read = [
        done(0, 0, 1, w(1), OK),
        done(1, 2, 3, cas(1, 2), CAS_OK),
        done(0, 4, 5, READ, got(1)),
    ];
    assert!(!linearizable(&cas_then_read));
}

#[test]
fn unknown_write_may_take_effect_late_or_never() {
    let observed_later = [
        lost(0, 0, w(1)),
        done(1, 10, 11, READ, NIL),
        done(1, 100, 101, READ, got(1)),
    ];
    assert!(linearizable(&observed_later));
    let never_observed = [lost(0, 0, w(1)), done(1, 10, 11, READ, NIL)];
    assert!(linearizable(&never_observed));
    // ...but takes effect at most once.
    let seen_twice = [
        lost(0, 0, w(1)),
        done(1, 2, 3, READ, got(1)),
        done(1, 4, 5, w(2), OK),
        done(1, 6, 7, READ, got(1)),
    ];
    assert!(!linearizable(&seen_twice));
    // An unknown outcome is the same whether `ret` is missing or the output is `Unknown`.
    let ret_but_unknown_output = [
        op(0, 0, 0, Some(1), w(1), Output::Unknown),
        done(1, 10, 11, READ, NIL),
    ];
    assert!(linearizable(&ret_but_unknown_output));
}

#[test]
fn unknown_write_cannot_be_observed_before_its_call() {
    let h = [done(1, 0, 1, READ, got(1)), lost(0, 2, w(1))];
    assert!(!linearizable(&h));
}

#[test]
fn unknown_cas_and_delete_apply_their_own_semantics() {
    let unknown_cas_took_effect = [
        done(0, 0, 1, w(1), OK),
        lost(1, 2, cas(1, 2)),
        done(0, 3, 4, READ, got(2)),
    ];
    assert!(linearizable(&unknown_cas_took_effect));
    let unknown_cas_cannot_match = [
        done(0, 0, 1, w(3), OK),
        lost(1, 2, cas(1, 2)),
        done(0, 3, 4, READ, got(2)),
    ];
    assert!(!linearizable(&unknown_cas_cannot_match));
    let unknown_delete = [
        done(0, 0, 1, w(1), OK),
        lost(1, 2, DELETE),
        done(0, 3, 4, READ, NIL),
        done(0, 5, 6, READ, NIL),
    ];
    assert!(linearizable(&unknown_delete));
}

#[test]
fn lost_reads_constrain_nothing() {
    let h = [done(0, 0, 1, w(1), OK), lost(1, 2, READ)];
    assert!(linearizable(&h));
    // Even with an impossible recorded output, a read whose `ret` is unknown is ignored.
    let h = [op(1, 0, 2, None, READ, got(9))];
    assert!(linearizable(&h));
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    let h = [done(0, 0, 1, w(1), OK), done(1, 0, 2, READ, got(7))];
    assert!(!linearizable(&h));
}

#[test]
fn delete_makes_the_key_absent() {
    let h = [
        done(0, 0, 1, w(1), OK),
        done(0, 2, 3, DELETE, Output::Delete),
        done(1, 4, 5, READ, NIL),
        done(1, 6, 7, cas(1, 2), CAS_FAIL),
    ];
    assert!(linearizable(&h));
    let resurrected = [
        done(0, 0, 1, w(1), OK),
        done(0, 2, 3, DELETE, Output::Delete),
        done(1, 4, 5, READ, got(1)),
    ];
    assert!(!linearizable(&resurrected));
}

#[test]
fn output_of_the_wrong_kind_never_linearizes() {
    let h = [done(0, 0, 1, READ, OK)];
    assert!(!linearizable(&h));
}

#[test]
fn return_before_call_is_treated_as_instantaneous() {
    let h = [done(0, 5, 2, w(1), OK), done(1, 6, 7, READ, got(1))];
    assert!(linearizable(&h));
}

#[test]
fn keys_are_checked_independently_and_the_bad_key_is_reported() {
    let mut h = Vec::new();
    for key in 1..=3 {
        // The same values on every key: a checker mixing keys up would see stale reads.
        h.push(op(0, key, 10 * key, Some(10 * key + 1), w(key), OK));
        h.push(op(1, key, 10 * key + 2, Some(10 * key + 3), READ, got(key)));
    }
    assert!(linearizable(&h));
    // A stale read on key 2 only.
    h.push(op(2, 2, 40, Some(41), w(9), OK));
    h.push(op(2, 2, 42, Some(43), READ, got(2)));
    h.push(op(2, 3, 44, Some(45), READ, got(3)));
    match verdict(&h) {
        Verdict::NotLinearizable { key, explanation } => {
            assert_eq!(key, 2);
            // The explanation names the stuck read by its index in the history.
            assert!(explanation.contains("#7"), "{explanation}");
        }
        other => panic!("expected a violation on key 2, got {other}"),
    }
}

#[test]
fn search_budget_yields_timeout_but_a_definite_violation_wins() {
    let mut h: Vec<Operation> = (0..12).map(|i| op(i, 0, 0, Some(100), w(i), OK)).collect();
    h.push(op(99, 0, 200, Some(201), READ, got(100)));
    let tiny = CheckOptions {
        max_steps_per_key: 10,
    };
    assert_eq!(check(&h, &tiny), Verdict::Timeout { key: 0 });
    assert!(matches!(
        check(&h, &CheckOptions::default()),
        Verdict::NotLinearizable { key: 0, .. }
    ));
    h.push(op(0, 1, 0, Some(1), READ, got(5)));
    assert!(matches!(
        check(&h, &tiny),
        Verdict::NotLinearizable { key: 1, .. }
    ));
}
