//! Why the node refuses a request ([`RequestError`]) or refuses to start ([`NodeStartError`]).

use raft::{NewNodeError, ProposeError};
use std::fmt;

/// Why a request was not (or may not have been) carried out: the core's refusal, or what
/// the node learned afterwards about a command the core took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The core refused it (not the leader, back-pressure, a transfer, a membership change
    /// that is pending or does not fit, too large): certainly not applied.
    Refused(ProposeError),
    /// The entry was replaced by another leader's entry at its index: this attempt will never be
    /// applied (a retry with the same session sequence is safe).
    Dropped,
    /// This member replaced its state by a leader's snapshot that may or may not include the
    /// entry: the outcome is unknown (a retry with the same session sequence is safe).
    OutcomeUnknown,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Refused(error) => fmt::Display::fmt(error, f),
            RequestError::Dropped => f.write_str("proposal dropped by a leader change"),
            RequestError::OutcomeUnknown => f.write_str("outcome unknown; retry to find out"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<ProposeError> for RequestError {
    fn from(error: ProposeError) -> RequestError {
        RequestError::Refused(error)
    }
}

/// Why a member could not start.
#[derive(Debug)]
pub enum NodeStartError {
    /// The core refused its configuration or durable state.
    Raft(NewNodeError),
    /// The durable snapshot does not decode into a state machine.
    BadSnapshot(String),
}

impl From<NewNodeError> for NodeStartError {
    fn from(error: NewNodeError) -> NodeStartError {
        NodeStartError::Raft(error)
    }
}

impl fmt::Display for NodeStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeStartError::Raft(error) => error.fmt(f),
            NodeStartError::BadSnapshot(reason) => write!(f, "cannot restore snapshot: {reason}"),
        }
    }
}

impl std::error::Error for NodeStartError {}
