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

use crate::world::Answer;
use lincheck::{Input, Operation, Output};
use std::collections::BTreeMap;

/// Checks the answers of `history` (`answers[i]` is the answer to `history[i]`, if any) and,
/// once every member converged, the keyspace's final revision. Returns what is wrong.
pub fn check(
    history: &[Operation],
    answers: &[Option<Answer>],
    final_revision: Option<i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let answered: Vec<(&Operation, &Answer)> = history
        .iter()
        .zip(answers)
        .filter_map(|(operation, answer)| Some((operation, answer.as_ref()?)))
        .collect();
    let writers = check_one_revision_per_write(&answered, &mut problems);
    check_real_time(&answered, &mut problems);
    check_reads_name_their_writers(&answered, &writers, &mut problems);
    if let Some(final_revision) = final_revision {
        check_no_gaps(history, &answered, final_revision, &mut problems);
    }
    problems
}

/// Who wrote at each revision: the value written, `None` for a delete.
type Writers = BTreeMap<i64, Option<u64>>;

fn written_value(input: Input) -> Option<u64> {
    match input {
        Input::Write(value) | Input::Cas { new: value, .. } => Some(value),
        Input::Read | Input::Delete => None,
    }
}

fn check_one_revision_per_write(
    answered: &[(&Operation, &Answer)],
    problems: &mut Vec<String>,
) -> Writers {
    let mut writers = Writers::new();
    for (operation, answer) in answered.iter().filter(|(_, answer)| answer.wrote) {
        // The empty keyspace is at revision 1; the first change makes 2.
        if answer.revision < 2 {
            problems.push(format!(
                "write {:?} got revision {}",
                operation.input, answer.revision
            ));
        }
        if let Some(other) = writers.insert(answer.revision, written_value(operation.input)) {
            problems.push(format!(
                "two writes got revision {}: {:?} and one of value {other:?}",
                answer.revision, operation.input
            ));
        }
    }
    writers
}

fn check_real_time(answered: &[(&Operation, &Answer)], problems: &mut Vec<String>) {
    // Sweep the operations by call time, taking in every operation that returned before.
    let mut by_return: Vec<(u64, i64)> = answered
        .iter()
        .filter_map(|(operation, answer)| Some((operation.ret?, answer.revision)))
        .collect();
    by_return.sort_unstable();
    let mut by_call: Vec<&(&Operation, &Answer)> = answered.iter().collect();
    by_call.sort_by_key(|(operation, _)| operation.call);
    let mut seen = 0;
    let mut highest_before = 0;
    for (operation, answer) in by_call {
        while seen < by_return.len() && by_return[seen].0 < operation.call {
            highest_before = highest_before.max(by_return[seen].1);
            seen += 1;
        }
        let too_low = if answer.wrote {
            answer.revision <= highest_before
        } else {
            answer.revision < highest_before
        };
        if too_low {
            problems.push(format!(
                "{:?} of key {} called at {} got revision {} after revision {highest_before} \
                 was returned",
                operation.input, operation.key, operation.call, answer.revision
            ));
        }
    }
}

fn check_reads_name_their_writers(
    answered: &[(&Operation, &Answer)],
    writers: &Writers,
    problems: &mut Vec<String>,
) {
    let revision_of_value: BTreeMap<u64, i64> = writers
        .iter()
        .filter_map(|(revision, value)| Some(((*value)?, *revision)))
        .collect();
    for (operation, answer) in answered {
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
    answered: &[(&Operation, &Answer)],
    final_revision: i64,
    problems: &mut Vec<String>,
) {
    let claimed = answered.iter().filter(|(_, answer)| answer.wrote).count() as i64;
    let unknown = history
        .iter()
        .filter(|operation| operation.input != Input::Read && operation.output == Output::Unknown)
        .count() as i64;
    let unclaimed = final_revision - 1 - claimed;
    if unclaimed < 0 || unclaimed > unknown {
        problems.push(format!(
            "the keyspace ended at revision {final_revision}: {claimed} acknowledged changes \
             and {unknown} writes of unknown outcome cannot account for {unclaimed} revisions"
        ));
    }
    if let Some((operation, answer)) = answered
        .iter()
        .find(|(_, answer)| answer.revision > final_revision)
    {
        problems.push(format!(
            "{:?} got revision {} beyond the final {final_revision}",
            operation.input, answer.revision
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
        assert_eq!(check(&history, &answers, Some(3)), Vec::<String>::new());
    }

    #[test]
    fn a_read_naming_the_wrong_writer_fails() {
        let (history, answers) = two_writes_and_a_read(2);
        assert_eq!(check(&history, &answers, Some(3)).len(), 2);
    }

    #[test]
    fn a_skipped_revision_fails() {
        let (history, answers) = two_writes_and_a_read(3);
        let problems = check(&history, &answers, Some(4));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("cannot account"), "{problems:?}");
    }

    #[test]
    fn revisions_going_back_in_real_time_fail() {
        let (history, mut answers) = two_writes_and_a_read(3);
        answers[1] = answer(2, true, None);
        answers[0] = answer(3, true, None);
        let problems = check(&history, &answers, Some(3));
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("after revision")),
            "{problems:?}"
        );
    }
}
