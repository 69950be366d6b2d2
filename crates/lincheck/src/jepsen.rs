//! A parser for the register histories that Jepsen's etcd test logged (the format of the
//! `testdata/jepsen-etcd` corpus), so the checker can be validated against published verdicts.

use std::collections::HashMap;
use std::fmt;

use crate::hash::FxBuildHasher;
use crate::model::{Input, Operation, Output};

/// Why a Jepsen log could not be turned into a history, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number of the offending line, so the user can open the log at that spot.
    pub line: usize,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The operation kinds the etcd register test issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Read,
    Write,
    Cas,
}

/// The VALUE column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Nil,
    Num(u64),
    Pair(u64, u64),
    TimedOut,
}

/// An invocation waiting for its completion line.
struct Open {
    call: u64,
    input: Input,
}

/// Parses a Jepsen register log (`INFO  jepsen.util - PROC TYPE F VALUE`, one event per line,
/// fields separated by tabs or spaces) into a history on key 0.
///
/// Timestamps are line numbers (1-based), which is all the real-time order Jepsen's log conveys.
/// Interpretation of completions:
/// - `:ok` — the operation took effect with the logged result.
/// - `:fail :read` / `:fail :write` — the operation did not take effect; it constrains nothing and
///   is left out of the history.
/// - `:fail :cas` — the compare failed: the value differed from FROM at the operation's
///   linearization point. That is an observation, so it is kept as
///   `Output::Cas { succeeded: false }` with `ret` at the fail line (see the crate docs for why
///   this reading rather than dropping them).
/// - `:info` — unknown outcome: `ret: None`, `Output::Unknown`.
/// - An invocation with no completion line by the end of the log is unknown as well.
///
/// Blank lines are skipped; any other line that does not fit the format is an error, as is a
/// completion without a matching open invocation or an invocation by a process that still has
/// an operation open. The returned history is sorted by call time.
pub fn parse_jepsen(text: &str) -> Result<Vec<Operation>, ParseError> {
    let mut open: HashMap<u64, Open, FxBuildHasher> = HashMap::default();
    let mut history = Vec::new();

    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| ParseError {
            line: lineno,
            reason,
        };
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() < 7 || tokens[..3] != ["INFO", "jepsen.util", "-"] {
            return Err(err(format!(
                "expected `INFO  jepsen.util - PROC TYPE F VALUE`, found {line:?}"
            )));
        }
        let process: u64 = tokens[3]
            .parse()
            .map_err(|_| err(format!("bad process number {:?}", tokens[3])))?;
        let func = match tokens[5] {
            ":read" => Func::Read,
            ":write" => Func::Write,
            ":cas" => Func::Cas,
            other => return Err(err(format!("unknown function {other:?}"))),
        };
        let value = parse_value(&tokens[6..]).map_err(err)?;
        let time = lineno as u64;

        match tokens[4] {
            ":invoke" => {
                let input = match (func, value) {
                    (Func::Read, Value::Nil) => Input::Read,
                    (Func::Write, Value::Num(v)) => Input::Write(v),
                    (Func::Cas, Value::Pair(expected, new)) => Input::Cas { expected, new },
                    _ => {
                        return Err(err(format!(
                            "invalid value {} for an invocation of {}",
                            tokens[6..].join(" "),
                            tokens[5]
                        )));
                    }
                };
                if let Some(prev) = open.get(&process) {
                    return Err(err(format!(
                        "process {process} invoked an operation while its operation from line {} \
                         is still open",
                        prev.call
                    )));
                }
                open.insert(process, Open { call: time, input });
            }
            kind @ (":ok" | ":fail" | ":info") => {
                let Some(inv) = open.remove(&process) else {
                    return Err(err(format!(
                        "{kind} for process {process}, which has no open operation"
                    )));
                };
                let matches = matches!(
                    (func, inv.input),
                    (Func::Read, Input::Read)
                        | (Func::Write, Input::Write(_))
                        | (Func::Cas, Input::Cas { .. })
                );
                if !matches {
                    return Err(err(format!(
                        "{kind} {} does not match process {process}'s open {} from line {}",
                        tokens[5], inv.input, inv.call
                    )));
                }
                let mismatch = || {
                    err(format!(
                        "{kind} {} {} does not match the invocation {} from line {}",
                        tokens[5],
                        tokens[6..].join(" "),
                        inv.input,
                        inv.call
                    ))
                };
                let done = |ret: Option<u64>, output: Output| Operation {
                    client: process,
                    key: 0,
                    call: inv.call,
                    ret,
                    input: inv.input,
                    output,
                };
                match kind {
                    ":ok" => {
                        let output = match (inv.input, value) {
                            (Input::Read, Value::Nil) => Output::Read(None),
                            (Input::Read, Value::Num(v)) => Output::Read(Some(v)),
                            (Input::Write(w), Value::Num(v)) if w == v => Output::Write,
                            (Input::Cas { expected, new }, Value::Pair(e, n))
                                if (expected, new) == (e, n) =>
                            {
                                Output::Cas { succeeded: true }
                            }
                            _ => return Err(mismatch()),
                        };
                        history.push(done(Some(time), output));
                    }
                    ":fail" => match inv.input {
                        // Definitely did not take effect: constrains nothing.
                        Input::Read | Input::Write(_) | Input::Delete => {}
                        // The comparison definitely failed: an observation of the value.
                        Input::Cas { expected, new } => {
                            if !matches!(value, Value::Pair(e, n) if (e, n) == (expected, new)) {
                                return Err(mismatch());
                            }
                            history.push(done(Some(time), Output::Cas { succeeded: false }));
                        }
                    },
                    _ => history.push(done(None, Output::Unknown)),
                }
            }
            other => return Err(err(format!("unknown event type {other:?}"))),
        }
    }

    // Still open at the end of the log: outcome unknown.
    history.extend(open.into_iter().map(|(process, inv)| Operation {
        client: process,
        key: 0,
        call: inv.call,
        ret: None,
        input: inv.input,
        output: Output::Unknown,
    }));
    history.sort_by_key(|op| (op.call, op.client));
    Ok(history)
}

fn parse_value(tokens: &[&str]) -> Result<Value, String> {
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("bad number {s:?} in value {:?}", tokens.join(" ")))
    };
    match tokens {
        ["nil"] => Ok(Value::Nil),
        [":timed-out"] => Ok(Value::TimedOut),
        [from, to] if from.starts_with('[') && to.ends_with(']') => Ok(Value::Pair(
            number(&from[1..])?,
            number(&to[..to.len() - 1])?,
        )),
        [n] => number(n).map(Value::Num),
        _ => Err(format!("unrecognized value {:?}", tokens.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(process: u64, kind: &str, func: &str, value: &str) -> String {
        format!("INFO  jepsen.util - {process}\t{kind}\t{func}\t{value}\n")
    }

    #[test]
    fn parses_every_event_kind() {
        let text = [
            line(0, ":invoke", ":write", "3"),
            line(1, ":invoke", ":read", "nil"),
            line(0, ":ok", ":write", "3"),
            line(1, ":ok", ":read", "3"),
            "\n".to_string(),
            line(2, ":invoke", ":cas", "[3 4]"),
            line(3, ":invoke", ":cas", "[1 2]"),
            line(2, ":ok", ":cas", "[3 4]"),
            line(3, ":fail", ":cas", "[1 2]"),
            line(4, ":invoke", ":read", "nil"),
            line(4, ":fail", ":read", ":timed-out"),
            line(5, ":invoke", ":write", "9"),
            line(5, ":info", ":write", ":timed-out"),
            "INFO  jepsen.util - 6   :invoke :read   nil\n".to_string(),
        ]
        .concat();
        let history = parse_jepsen(&text).unwrap();
        let summary: Vec<_> = history
            .iter()
            .map(|op| (op.client, op.call, op.ret, op.input, op.output))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 1, Some(3), Input::Write(3), Output::Write),
                (1, 2, Some(4), Input::Read, Output::Read(Some(3))),
                (
                    2,
                    6,
                    Some(8),
                    Input::Cas {
                        expected: 3,
                        new: 4
                    },
                    Output::Cas { succeeded: true }
                ),
                (
                    3,
                    7,
                    Some(9),
                    Input::Cas {
                        expected: 1,
                        new: 2
                    },
                    Output::Cas { succeeded: false }
                ),
                (5, 12, None, Input::Write(9), Output::Unknown),
                (6, 14, None, Input::Read, Output::Unknown),
            ]
        );
    }

    #[test]
    fn reports_the_offending_line() {
        let bad = [line(0, ":invoke", ":read", "nil"), "garbage\n".to_string()].concat();
        assert_eq!(parse_jepsen(&bad).unwrap_err().line, 2);

        let orphan = line(0, ":ok", ":read", "1");
        let e = parse_jepsen(&orphan).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("no open operation"), "{e}");

        let double = [
            line(0, ":invoke", ":read", "nil"),
            line(0, ":invoke", ":read", "nil"),
        ]
        .concat();
        assert_eq!(parse_jepsen(&double).unwrap_err().line, 2);

        let mismatched = [
            line(0, ":invoke", ":read", "nil"),
            line(0, ":ok", ":write", "1"),
        ]
        .concat();
        assert_eq!(parse_jepsen(&mismatched).unwrap_err().line, 2);

        for value in ["x", "[1 2", "-3", "[a b]", "1 2"] {
            let text = line(0, ":invoke", ":write", value);
            assert_eq!(parse_jepsen(&text).unwrap_err().line, 1, "{value}");
        }
        assert_eq!(
            parse_jepsen(&line(0, ":invoke", ":delete", "nil"))
                .unwrap_err()
                .line,
            1
        );
        assert_eq!(
            parse_jepsen(&line(0, ":begin", ":read", "nil"))
                .unwrap_err()
                .line,
            1
        );
    }
}
