//! What the clients saw: one record per operation, its translation into lincheck's model, the
//! independent lost-acknowledged-write count, and a readable dump.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lincheck::{Input, Operation, Output};

/// The clock every client stamps invocations and completions with: microseconds since the run
/// started, from one monotonic source, so real-time order across clients is meaningful.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock reading zero now.
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// How an operation ended, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (a cas whose comparison failed is `Ok` too: it observed the value).
    Ok,
    /// Certainly not applied: a read that got no answer (reads change nothing), or a write the
    /// server rejected before proposing it (invalid argument).
    Failed,
    /// The write may or may not take effect, now or later: a timeout, `Unavailable` after the
    /// request was sent, a lost connection.
    Unknown,
}

/// One client operation as recorded.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// Which client task issued it.
    pub client: u64,
    /// The member it was sent to (`m1`, ...).
    pub member: String,
    /// The register (key index).
    pub key: u64,
    /// What was asked.
    pub input: Input,
    /// What was answered (`Unknown` unless `outcome` is `Ok`).
    pub output: Output,
    /// Invocation time (µs on the run's [`Clock`]), taken before the request was sent.
    pub call_us: u64,
    /// When the client got the answer or gave up (µs).
    pub end_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, for failed and unknown operations.
    pub note: String,
    /// The revision an acknowledged write or successful cas was stored at (its response
    /// header's), when known.
    pub revision: Option<i64>,
}

impl OpRecord {
    /// The operation as lincheck should see it, or `None` if it constrains nothing: failed
    /// operations and reads without an answer are left out (see [`lincheck::Operation`]); a
    /// write or cas of unknown outcome stays in with `ret: None`, so the checker may place it
    /// anywhere after its call or drop it.
    pub fn to_operation(&self) -> Option<Operation> {
        let base = Operation {
            client: self.client,
            key: self.key,
            call: self.call_us,
            ret: None,
            input: self.input,
            output: Output::Unknown,
        };
        match (self.outcome, self.input) {
            (Outcome::Ok, _) => Some(Operation {
                ret: Some(self.end_us),
                output: self.output,
                ..base
            }),
            (Outcome::Unknown, Input::Write(_) | Input::Cas { .. } | Input::Delete) => Some(base),
            _ => None,
        }
    }

    /// The value this operation stores if it takes effect (writes and cas).
    pub fn written_value(&self) -> Option<u64> {
        match self.input {
            Input::Write(v) => Some(v),
            Input::Cas { new, .. } => Some(new),
            _ => None,
        }
    }

    /// Whether the client was told that its value was stored.
    pub fn acknowledged_write(&self) -> bool {
        self.outcome == Outcome::Ok
            && matches!(
                (self.input, self.output),
                (Input::Write(_), Output::Write)
                    | (Input::Cas { .. }, Output::Cas { succeeded: true })
            )
    }
}

impl fmt::Display for OpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        write!(
            f,
            "{:>12} {:>12} client={} member={} key={} {} -> {} [{}]",
            self.call_us,
            self.end_us,
            self.client,
            self.member,
            self.key,
            self.input,
            self.output,
            outcome
        )?;
        if let Some(revision) = self.revision {
            write!(f, " rev={revision}")?;
        }
        if !self.note.is_empty() {
            write!(f, " {}", self.note)?;
        }
        Ok(())
    }
}

/// The shared, append-only history of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    records: Arc<Mutex<Vec<OpRecord>>>,
}

impl History {
    /// Appends one completed (or abandoned) operation.
    pub fn push(&self, record: OpRecord) {
        self.lock().push(record);
    }

    /// A copy of everything recorded so far, sorted by invocation time.
    pub fn snapshot(&self) -> Vec<OpRecord> {
        let mut records = self.lock().clone();
        records.sort_by_key(|r| (r.call_us, r.client));
        records
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OpRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Operations attempted (sent to a member).
    pub ops: u64,
    /// Answered.
    pub ok: u64,
    /// Certainly without effect.
    pub failed: u64,
    /// Outcome unknown.
    pub unknown: u64,
}

/// Tallies outcomes.
pub fn counts(records: &[OpRecord]) -> Counts {
    let mut counts = Counts::default();
    for record in records {
        counts.ops += 1;
        match record.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Unknown => counts.unknown += 1,
        }
    }
    counts
}

/// Counts acknowledged writes that the final state proves lost, independently of the
/// linearizability search (a second, simpler witness for the "D — durable" criterion).
///
/// Definition. Every write and successful cas stores a value no other operation stores, and the
/// workload never deletes. For each key `k` with a final value `f` (read linearizably after
/// every fault healed), an acknowledged write `w` of value `v ≠ f` to `k` is *lost* when
/// - `f` is absent (nothing can remove `v` without a delete), or
/// - no operation ever wrote `f` (a phantom value: then nothing explains the final state), or
/// - the operation `x` that wrote `f` was acknowledged before `w` was invoked
///   (`x.end < w.call`): then `x` precedes `w` in every linearization, so a write after `w`
///   must have replaced `v`, and it cannot have stored `f` again because values are unique.
///
/// When `x` is concurrent with or later than `w`, or of unknown outcome, `x` may legitimately
/// have overwritten `w`, so `w` is not counted. The count is therefore sound (it never blames a
/// correct system) but not complete: a lost write whose loss is masked by a concurrent one is
/// left to the linearizability check.
pub fn lost_acknowledged(
    records: &[OpRecord],
    final_values: &BTreeMap<u64, Option<u64>>,
) -> (u64, Vec<String>) {
    let mut writer: BTreeMap<(u64, u64), &OpRecord> = BTreeMap::new();
    for record in records {
        if record.outcome == Outcome::Failed {
            continue;
        }
        if let Some(value) = record.written_value() {
            writer.insert((record.key, value), record);
        }
    }
    let mut lost = 0;
    let mut details = Vec::new();
    for w in records.iter().filter(|r| r.acknowledged_write()) {
        let Some(&final_value) = final_values.get(&w.key) else {
            continue;
        };
        let value = w
            .written_value()
            .expect("acknowledged writes store a value");
        if final_value == Some(value) {
            continue;
        }
        let why = match final_value {
            None => Some("the key is absent at the end".to_owned()),
            Some(f) => match writer.get(&(w.key, f)) {
                None => Some(format!("final value {f} was never written")),
                Some(x) if x.outcome == Outcome::Ok && x.end_us < w.call_us => Some(format!(
                    "final value {f} was written by an op acknowledged at {} before this one \
                     was invoked",
                    x.end_us
                )),
                Some(_) => None,
            },
        };
        if let Some(why) = why {
            lost += 1;
            details.push(format!("lost: {w} — {why}"));
        }
    }
    (lost, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: u64, input: Input, output: Output, call: u64, end: u64) -> OpRecord {
        OpRecord {
            client: 0,
            member: "m1".into(),
            key,
            input,
            output,
            call_us: call,
            end_us: end,
            outcome: if output == Output::Unknown {
                Outcome::Unknown
            } else {
                Outcome::Ok
            },
            note: String::new(),
            revision: None,
        }
    }

    #[test]
    fn overwritten_by_a_later_write_is_not_lost() {
        let records = [
            record(0, Input::Write(1), Output::Write, 0, 10),
            record(0, Input::Write(2), Output::Write, 20, 30),
        ];
        let finals = BTreeMap::from([(0, Some(2))]);
        assert_eq!(lost_acknowledged(&records, &finals).0, 0);
    }

    #[test]
    fn final_value_older_than_an_acknowledged_write_means_it_was_lost() {
        let records = [
            record(0, Input::Write(1), Output::Write, 0, 10),
            record(0, Input::Write(2), Output::Write, 20, 30),
        ];
        let finals = BTreeMap::from([(0, Some(1))]);
        assert_eq!(lost_acknowledged(&records, &finals).0, 1);
        let finals = BTreeMap::from([(0, None)]);
        assert_eq!(lost_acknowledged(&records, &finals).0, 2);
    }

    #[test]
    fn concurrent_or_unknown_writers_may_win() {
        let records = [
            record(0, Input::Write(1), Output::Write, 0, 10),
            record(0, Input::Write(2), Output::Unknown, 5, 6),
        ];
        let finals = BTreeMap::from([(0, Some(2))]);
        assert_eq!(lost_acknowledged(&records, &finals).0, 0);
    }
}
