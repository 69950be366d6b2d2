//! The etcd model's check of revisions: every answer's revision and every key's
//! `mod_revision` must agree with one total order of writes, the order etcd promises.
//!
//! Linearizability of each key (`lincheck`) says nothing about revisions, yet clients build on
//! them (watch from a revision, compare a `mod_revision`, read at a revision). etcd's own
//! robustness tests replay histories against a model that numbers writes; this is the same
//! idea, in the checks that history alone can decide:
//!
//! 1. **One revision per write.** Every acknowledged write that changed something (a put, a
//!    successful compare-and-set, a delete that deleted) has a revision of its own.
//! 2. **Real time.** An operation that began after another ended sees at least that one's
//!    revision, and a write after it gets a higher one.
//! 3. **Reads name their writers.** A read that found value `v` with `mod_revision` `m`: the
//!    write of `v`, if acknowledged, got `m`; no other acknowledged write got `m`; and `m` is
//!    at most the read's revision.
//! 4. **No gaps.** The final revision, less the initial 1, counts every change ever made, so
//!    the revisions no acknowledged write claims can be at most the writes whose outcome is
//!    unknown. A state machine that skips a revision shows up here.
//!
//! Writes outside the register model (the simulator's multi-key writes, [`OtherWrite`]) take
//! part in all four: each that changed something claims a revision of its own, no register
//! read may name it as its writer, real time orders them with everything else, and their
//! revisions (or unknown outcomes) count toward the final revision.

use crate::world::Answer;
use lincheck::{Input, Operation, Output};
use std::collections::BTreeMap;

/// A write no register reads (a multi-key write of the simulator's clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherWrite {
    /// When it was sent (virtual microseconds).
    pub call: u64,
    /// Once answered: when, at which revision, and whether it changed something. `None`: its
    /// outcome is unknown (it may have been applied, once, at any later time).
    pub answer: Option<OtherAnswer>,
}

/// The answer to an [`OtherWrite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtherAnswer {
    /// When it returned.
    pub ret: u64,
    /// The revision etcd reported.
    pub revision: i64,
    /// Whether it changed something (so `revision` is its own).
    pub wrote: bool,
}

/// One answered operation, register or other, as the real-time and per-write checks see it.
struct Timed<'a> {
    call: u64,
    ret: Option<u64>,
    revision: i64,
    wrote: bool,
    /// The register operation, or `None` for an [`OtherWrite`].
    operation: Option<&'a Operation>,
    answer: Option<&'a Answer>,
}

impl Timed<'_> {
    fn describe(&self) -> String {
        match self.operation {
            Some(operation) => format!("{:?} of key {}", operation.input, operation.key),
            None => "a multi-key write".to_string(),
        }
    }
}

/// Checks the answers of `history` (`answers[i]` is the answer to `history[i]`, if any), the
/// writes outside the register model (`others`) and, once every member converged, the
/// keyspace's final revision. Returns what is wrong.
pub fn check(
    history: &[Operation],
    answers: &[Option<Answer>],
    others: &[OtherWrite],
    final_revision: Option<i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut answered: Vec<Timed> = history
        .iter()
        .zip(answers)
        .filter_map(|(operation, answer)| {
            let answer = answer.as_ref()?;
            Some(Timed {
                call: operation.call,
                ret: operation.ret,
                revision: answer.revision,
                wrote: answer.wrote,
                operation: Some(operation),
                answer: Some(answer),
            })
        })
        .collect();
    answered.extend(others.iter().filter_map(|other| {
        let answer = other.answer?;
        Some(Timed {
            call: other.call,
            ret: Some(answer.ret),
            revision: answer.revision,
            wrote: answer.wrote,
            operation: None,
            answer: None,
        })
    }));
    let writers = check_one_revision_per_write(&answered, &mut problems);
    check_real_time(&answered, &mut problems);
    check_reads_name_their_writers(&answered, &writers, &mut problems);
    if let Some(final_revision) = final_revision {
        let unknown_others = others.iter().filter(|other| other.answer.is_none()).count();
        check_no_gaps(
            history,
            unknown_others,
            &answered,
            final_revision,
            &mut problems,
        );
    }
    problems
}

/// Who wrote at each revision: the register value written, `None` for a delete or a write
/// outside the register model.
type Writers = BTreeMap<i64, Option<u64>>;

fn written_value(input: Input) -> Option<u64> {
    match input {
        Input::Write(value) | Input::Cas { new: value, .. } => Some(value),
        Input::Read | Input::Delete => None,
    }
}

fn check_one_revision_per_write(answered: &[Timed], problems: &mut Vec<String>) -> Writers {
    let mut writers = Writers::new();
    for timed in answered.iter().filter(|timed| timed.wrote) {
        // The empty keyspace is at revision 1; the first change makes 2.
        if timed.revision < 2 {
            problems.push(format!(
                "write {} got revision {}",
                timed.describe(),
                timed.revision
            ));
        }
        let value = timed
            .operation
            .and_then(|operation| written_value(operation.input));
        if let Some(other) = writers.insert(timed.revision, value) {
            problems.push(format!(
                "two writes got revision {}: {} and one of value {other:?}",
                timed.revision,
                timed.describe()
            ));
        }
    }
    writers
}

fn check_real_time(answered: &[Timed], problems: &mut Vec<String>) {
    // Sweep the operations by call time, taking in every operation that returned before.
    let mut by_return: Vec<(u64, i64)> = answered
        .iter()
        .filter_map(|timed| Some((timed.ret?, timed.revision)))
        .collect();
    by_return.sort_unstable();
    let mut by_call: Vec<&Timed> = answered.iter().collect();
    by_call.sort_by_key(|timed| timed.call);
    let mut seen = 0;
    let mut highest_before = 0;
    for timed in by_call {
        while seen < by_return.len() && by_return[seen].0 < timed.call {
            highest_before = highest_before.max(by_return[seen].1);
            seen += 1;
        }
        let too_low = if timed.wrote {
            timed.revision <= highest_before
        } else {
            timed.revision < highest_before
        };
        if too_low {
            problems.push(format!(
                "{} called at {} got revision {} after revision {highest_before} was returned",
                timed.describe(),
                timed.call,
                timed.revision
            ));
        }
    }
}

fn check_reads_name_their_writers(
    answered: &[Timed],
    writers: &Writers,
    problems: &mut Vec<String>,
) {
    let revision_of_value: BTreeMap<u64, i64> = writers
        .iter()
        .filter_map(|(revision, value)| Some(((*value)?, *revision)))
        .collect();
    for timed in answered {
        let (Some(operation), Some(answer)) = (timed.operation, timed.answer) else {
            continue;
        };
        let Some((mod_revision, Some(value))) = answer.observed else {
            continue;
        };
        if mod_revision > answer.revision {
            problems.push(format!(
                "a read of key {} at revision {} found mod_revision {mod_revision}",
                operation.key, answer.revision
            ));
        }
        if let Some(written_at) = revision_of_value.get(&value)
            && *written_at != mod_revision
        {
            problems.push(format!(
                "value {value:#x} of key {} was written at revision {written_at} but read with \
                 mod_revision {mod_revision}",
                operation.key
            ));
        }
        if let Some(other) = writers.get(&mod_revision)
            && *other != Some(value)
        {
            problems.push(format!(
                "key {} read value {value:#x} with mod_revision {mod_revision}, where \
                 {other:?} was written",
                operation.key
            ));
        }
    }
}

fn check_no_gaps(
    history: &[Operation],
    unknown_others: usize,
    answered: &[Timed],
    final_revision: i64,
    problems: &mut Vec<String>,
) {
    let claimed = answered.iter().filter(|timed| timed.wrote).count() as i64;
    let unknown = history
        .iter()
        .filter(|operation| operation.input != Input::Read && operation.output == Output::Unknown)
        .count() as i64
        + unknown_others as i64;
    let unclaimed = final_revision - 1 - claimed;
    if unclaimed < 0 || unclaimed > unknown {
        problems.push(format!(
            "the keyspace ended at revision {final_revision}: {claimed} acknowledged changes \
             and {unknown} writes of unknown outcome cannot account for {unclaimed} revisions"
        ));
    }
    if let Some(timed) = answered
        .iter()
        .find(|timed| timed.revision > final_revision)
    {
        problems.push(format!(
            "{} got revision {} beyond the final {final_revision}",
            timed.describe(),
            timed.revision
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: u64, input: Input, output: Output) -> Operation {
        Operation {
            client: 1,
            key: 0,
            call,
            ret: Some(ret),
            input,
            output,
        }
    }

    fn answer(revision: i64, wrote: bool, observed: Option<(i64, Option<u64>)>) -> Option<Answer> {
        Some(Answer {
            output: Output::Write,
            revision,
            wrote,
            observed,
        })
    }

    fn two_writes_and_a_read(read_mod_revision: i64) -> (Vec<Operation>, Vec<Option<Answer>>) {
        let history = vec![
            op(0, 1, Input::Write(10), Output::Write),
            op(2, 3, Input::Write(11), Output::Write),
            op(4, 5, Input::Read, Output::Read(Some(11))),
        ];
        let answers = vec![
            answer(2, true, None),
            answer(3, true, None),
            answer(3, false, Some((read_mod_revision, Some(11)))),
        ];
        (history, answers)
    }

    #[test]
    fn a_consistent_history_passes() {
        let (history, answers) = two_writes_and_a_read(3);
        assert_eq!(
            check(&history, &answers, &[], Some(3)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_read_naming_the_wrong_writer_fails() {
        let (history, answers) = two_writes_and_a_read(2);
        assert_eq!(check(&history, &answers, &[], Some(3)).len(), 2);
    }

    #[test]
    fn a_skipped_revision_fails() {
        let (history, answers) = two_writes_and_a_read(3);
        let problems = check(&history, &answers, &[], Some(4));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("cannot account"), "{problems:?}");
    }

    #[test]
    fn revisions_going_back_in_real_time_fail() {
        let (history, mut answers) = two_writes_and_a_read(3);
        answers[1] = answer(2, true, None);
        answers[0] = answer(3, true, None);
        let problems = check(&history, &answers, &[], Some(3));
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("after revision")),
            "{problems:?}"
        );
    }

    fn multi_key_write(call: u64, ret: u64, revision: i64) -> OtherWrite {
        OtherWrite {
            call,
            answer: Some(OtherAnswer {
                ret,
                revision,
                wrote: true,
            }),
        }
    }

    #[test]
    fn other_writes_account_for_their_revisions() {
        let (history, answers) = two_writes_and_a_read(3);
        let others = [multi_key_write(6, 7, 4)];
        assert_eq!(
            check(&history, &answers, &others, Some(4)),
            Vec::<String>::new()
        );
        let unknown = [OtherWrite {
            call: 6,
            answer: None,
        }];
        assert_eq!(
            check(&history, &answers, &unknown, Some(4)),
            Vec::<String>::new()
        );
        let problems = check(&history, &answers, &others, Some(5));
        assert!(problems[0].contains("cannot account"), "{problems:?}");
    }

    #[test]
    fn other_writes_keep_to_the_one_order() {
        let (history, answers) = two_writes_and_a_read(3);
        // Its revision taken by a register write too.
        let problems = check(&history, &answers, &[multi_key_write(6, 7, 3)], Some(3));
        assert!(
            problems.iter().any(|p| p.contains("two writes")),
            "{problems:?}"
        );
        // Called after revision 3 was returned, yet no newer.
        let problems = check(&history, &answers, &[multi_key_write(4, 7, 2)], Some(3));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("multi-key write called")),
            "{problems:?}"
        );
    }
}
