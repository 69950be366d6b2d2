//! The register model: what a history is made of, and the sequential specification the checker
//! holds every history against.

use std::fmt;

/// The value of a register, `None` while the key is absent.
///
/// Kept as a plain `Option<u64>` (rather than a generic state) so the search can copy, compare and
/// hash it for free: the checker's memoization cache holds one per visited search node.
pub type State = Option<u64>;

/// What a client asked for; recorded at invocation time, before anything is known about the
/// outcome, so it is all the checker may assume about an operation whose outcome was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// Observe the current value; the observation is what constrains the history.
    Read,
    /// Blindly overwrite the value; only its visibility to later reads constrains the history.
    Write(u64),
    /// Compare-and-set: replace the value with `new` only if it currently equals `Some(expected)`.
    /// Whether it matched is an observation, so even a failed Cas constrains the history.
    Cas {
        /// The value the register must hold for the swap to happen.
        expected: u64,
        /// The value stored when the comparison matched.
        new: u64,
    },
    /// Make the key absent again, so histories can exercise the `None` state after creation.
    Delete,
}

/// What the client was told; the part of an operation the checker must explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// The value a [`Input::Read`] observed (`None`: the key was absent).
    Read(Option<u64>),
    /// A [`Input::Write`] was acknowledged.
    Write,
    /// The outcome of an [`Input::Cas`]: `false` means the comparison failed at the operation's
    /// linearization point, which is as much an observation as a read.
    Cas {
        /// Whether the comparison matched and the new value was stored.
        succeeded: bool,
    },
    /// A [`Input::Delete`] was acknowledged.
    Delete,
    /// The client never learnt the outcome (timeout, crash): the operation may have taken effect at
    /// any time after its call, or never, and it is compatible with any result.
    Unknown,
}

/// One client operation on one key, as recorded by a test harness.
///
/// Only operations that *may* have taken effect belong in a history: an operation that is known
/// not to have taken effect (a definite failure, such as a write the server rejected or a read
/// that timed out) constrains nothing and should simply be left out by the recorder. A failed
/// compare-and-set is the exception: "the comparison failed" is an observation of the value, so it
/// is recorded as `Output::Cas { succeeded: false }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client (process) that issued the operation; used only in explanations, because the
    /// real-time order in `call`/`ret` already captures each client's program order.
    pub client: u64,
    /// The register the operation acts on; registers are independent, so the checker splits the
    /// history by key and checks each part on its own.
    pub key: u64,
    /// When the client invoked the operation, on any monotone clock shared by all clients.
    pub call: u64,
    /// When the client received the response, on the same clock; `None` when the outcome is
    /// unknown (the operation may take effect at any time after `call`, or never). A `ret` earlier
    /// than `call` is treated as equal to `call`.
    pub ret: Option<u64>,
    /// What was asked.
    pub input: Input,
    /// What was answered; `Output::Unknown` whenever `ret` is `None`. An operation with a `ret`
    /// but an `Unknown` output is treated as unknown too (its timing says nothing about whether it
    /// took effect).
    pub output: Output,
}

impl Operation {
    /// Whether the checker must linearize this operation (it definitely happened) or may leave it
    /// out (its outcome was lost), which decides how the search treats it.
    pub fn outcome_known(&self) -> bool {
        self.ret.is_some() && self.output != Output::Unknown
    }
}

/// Applies `input` to `state` and checks that the sequential specification could have produced
/// `output`; returns the new state, or `None` if this output is impossible from this state.
///
/// This is the whole sequential specification; everything else in the crate is about finding an
/// order in which these steps succeed. An `Output` that does not belong to the `Input` (say a
/// `Read` answered with `Write`) can never be produced, so such an operation never linearizes.
pub fn step(state: State, input: Input, output: Output) -> Option<State> {
    match (input, output) {
        (Input::Read, Output::Read(seen)) => (seen == state).then_some(state),
        (Input::Read, Output::Unknown) => Some(state),
        (Input::Write(v), Output::Write | Output::Unknown) => Some(Some(v)),
        (Input::Cas { expected, new }, Output::Cas { succeeded: true }) => {
            (state == Some(expected)).then_some(Some(new))
        }
        (Input::Cas { expected, .. }, Output::Cas { succeeded: false }) => {
            (state != Some(expected)).then_some(state)
        }
        (Input::Cas { expected, new }, Output::Unknown) => Some(if state == Some(expected) {
            Some(new)
        } else {
            state
        }),
        (Input::Delete, Output::Delete | Output::Unknown) => Some(None),
        _ => None,
    }
}

/// Formats a register value the way Jepsen does (`nil` for absent), so explanations read like the
/// logs they were computed from.
pub(crate) struct ShowState(pub State);

impl fmt::Display for ShowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("nil"),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Input::Read => f.write_str("read"),
            Input::Write(v) => write!(f, "write({v})"),
            Input::Cas { expected, new } => write!(f, "cas({expected}->{new})"),
            Input::Delete => f.write_str("delete"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Output::Read(v) => write!(f, "{}", ShowState(v)),
            Output::Write | Output::Delete => f.write_str("ok"),
            Output::Cas { succeeded: true } => f.write_str("succeeded"),
            Output::Cas { succeeded: false } => f.write_str("failed"),
            Output::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} key {} {} -> {} [call {}, ret ",
            self.client, self.key, self.input, self.output, self.call
        )?;
        match self.ret {
            Some(ret) => write!(f, "{ret}]"),
            None => f.write_str("never]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_follows_the_register_spec() {
        assert_eq!(step(None, Input::Read, Output::Read(None)), Some(None));
        assert_eq!(step(Some(1), Input::Read, Output::Read(None)), None);
        assert_eq!(step(None, Input::Write(3), Output::Write), Some(Some(3)));
        let cas = Input::Cas {
            expected: 3,
            new: 4,
        };
        assert_eq!(
            step(Some(3), cas, Output::Cas { succeeded: true }),
            Some(Some(4))
        );
        assert_eq!(step(Some(2), cas, Output::Cas { succeeded: true }), None);
        assert_eq!(
            step(Some(2), cas, Output::Cas { succeeded: false }),
            Some(Some(2))
        );
        assert_eq!(
            step(None, cas, Output::Cas { succeeded: false }),
            Some(None)
        );
        assert_eq!(step(Some(3), cas, Output::Cas { succeeded: false }), None);
        assert_eq!(step(Some(3), cas, Output::Unknown), Some(Some(4)));
        assert_eq!(step(Some(2), cas, Output::Unknown), Some(Some(2)));
        assert_eq!(step(Some(2), Input::Delete, Output::Delete), Some(None));
        assert_eq!(step(Some(2), Input::Read, Output::Write), None);
    }
}
