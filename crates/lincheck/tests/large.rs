//! The checker must stay fast on long histories with several keys, many clients and some lost
//! outcomes, as produced by a real end-to-end test run. (No timing assertions: a regression
//! shows up as a slow test suite, or as a `Timeout` verdict once the step budget runs out.)

mod common;

use common::{Rng, SimConfig, op, simulate};
use lincheck::{CheckOptions, Input, Output, Verdict, check};

fn config() -> SimConfig {
    SimConfig {
        keys: 10,
        clients: 8,
        ops: 10_000,
        values: 1_000,
        unknown_percent: 3,
    }
}

fn assert_linearizable(cfg: &SimConfig, seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let history = simulate(&mut Rng::new(seed), cfg);
        assert_eq!(history.len(), cfg.ops);
        assert!(history.iter().any(|op| op.ret.is_none()));
        let verdict = check(&history, &CheckOptions::default());
        assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
    }
}

#[test]
fn ten_thousand_op_history_from_a_linearizable_store_is_linearizable() {
    assert_linearizable(&config(), 1..=3);
}

#[test]
fn ten_thousand_op_history_with_ten_clients_and_five_values_is_linearizable() {
    let cfg = SimConfig {
        clients: 10,
        values: 5,
        ..config()
    };
    assert_linearizable(&cfg, 1..=3);
}

#[test]
fn ten_thousand_ops_on_a_single_key_are_linearizable() {
    let cfg = SimConfig {
        keys: 1,
        clients: 5,
        values: 100,
        ..config()
    };
    assert_linearizable(&cfg, 1..=2);
}

#[test]
fn stale_read_at_the_end_of_a_long_history_is_found() {
    let mut history = simulate(&mut Rng::new(7), &config());
    let end = history.iter().filter_map(|op| op.ret).max().unwrap() + 10;
    // Fresh values, so no operation of unknown outcome can explain the read.
    history.push(op(
        100,
        3,
        end,
        Some(end + 1),
        Input::Write(5_000),
        Output::Write,
    ));
    history.push(op(
        101,
        3,
        end + 2,
        Some(end + 3),
        Input::Write(5_001),
        Output::Write,
    ));
    history.push(op(
        102,
        3,
        end + 4,
        Some(end + 5),
        Input::Read,
        Output::Read(Some(5_000)),
    ));
    match check(&history, &CheckOptions::default()) {
        Verdict::NotLinearizable { key, explanation } => {
            assert_eq!(key, 3);
            assert!(explanation.contains("#10002"), "{explanation}");
        }
        other => panic!("expected a violation on key 3, got {other:?}"),
    }
}
