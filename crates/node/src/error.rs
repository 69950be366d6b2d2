//! Why the node refuses a request ([`RequestError`]) or refuses to start ([`NodeStartError`]).

use raft::{NewNodeError, ProposeError};
use std::fmt;

/// Why a request was not (or may not have been) carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// This member cannot accept proposals; try the hinted leader. Certainly not applied.
    NotLeader {
        /// The leader this member knows of, or `NodeId::NONE`.
        leader_hint: raft::NodeId,
    },
    /// The leader is overloaded; retry later. Certainly not applied.
    Backpressure,
    /// Leadership is being handed over; retry shortly (at the new leader). Certainly not applied.
    TransferInProgress,
    /// Another membership change is still in progress; retry later. Certainly not applied.
    ConfChangePending,
    /// The membership change does not fit the configuration in force. Certainly not applied.
    ConfChangeRejected(String),
    /// The command is too large. Certainly not applied.
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
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
            RequestError::NotLeader { leader_hint } if leader_hint.is_some() => {
                write!(f, "not the leader (leader is {leader_hint})")
            }
            RequestError::NotLeader { .. } => f.write_str("no leader"),
            RequestError::Backpressure => f.write_str("too many requests in flight"),
            RequestError::TooLarge { size, limit } => {
                write!(f, "request of {size} bytes exceeds the limit of {limit}")
            }
            RequestError::Dropped => f.write_str("proposal dropped by a leader change"),
            RequestError::OutcomeUnknown => f.write_str("outcome unknown; retry to find out"),
            RequestError::TransferInProgress => f.write_str("leadership transfer in progress"),
            RequestError::ConfChangePending => {
                f.write_str("a membership change is still in progress")
            }
            RequestError::ConfChangeRejected(reason) => write!(f, "membership change: {reason}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<ProposeError> for RequestError {
    fn from(error: ProposeError) -> RequestError {
        match error {
            ProposeError::NotLeader { leader_hint } => RequestError::NotLeader { leader_hint },
            ProposeError::Backpressure => RequestError::Backpressure,
            ProposeError::TooLarge { size, limit } => RequestError::TooLarge { size, limit },
            ProposeError::TransferInProgress => RequestError::TransferInProgress,
            ProposeError::ConfChangePending => RequestError::ConfChangePending,
            ProposeError::ConfChangeRejected(error) => {
                RequestError::ConfChangeRejected(error.to_string())
            }
        }
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
