//! Why a member did not start ([`StartError`]), why a client request failed ([`ClientError`]),
//! why a running member stopped ([`MemberFailure`]) and why a leadership transfer did not start
//! ([`TransferOutcome`]).

use node::RequestError;
use raft::TransferError;
use std::fmt;
use wal::WalError;

/// Why a member could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    InvalidConfig(String),
    /// The data directory or the peer listener could not be set up.
    Io(std::io::Error),
    /// The WAL refused to open or to be created (including: another member holds its lock).
    Wal(WalError),
    /// The WAL's contents could not be read back.
    Storage(raft::StorageError),
    /// The node refused its durable state.
    Node(node::NodeStartError),
    /// The peer transport could not start.
    Transport(transport::TransportError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidConfig(reason) => write!(f, "invalid configuration: {reason}"),
            StartError::Io(error) => write!(f, "i/o: {error}"),
            StartError::Wal(error) => write!(f, "wal: {error}"),
            StartError::Storage(error) => write!(f, "reading the wal: {error:?}"),
            StartError::Node(error) => write!(f, "node: {error}"),
            StartError::Transport(error) => write!(f, "transport: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<WalError> for StartError {
    fn from(error: WalError) -> StartError {
        StartError::Wal(error)
    }
}

impl From<raft::StorageError> for StartError {
    fn from(error: raft::StorageError) -> StartError {
        StartError::Storage(error)
    }
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The node's reason (not the leader, back-pressure, dropped by a leader change, outcome
    /// unknown, ...). Retrying the same command (the same session and sequence) is safe.
    Failed(RequestError),
    /// The member stopped (shut down or failed) before answering: the outcome is unknown.
    Stopped,
}

impl From<RequestError> for ClientError {
    fn from(error: RequestError) -> ClientError {
        ClientError::Failed(error)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Failed(error) => fmt::Display::fmt(error, f),
            ClientError::Stopped => f.write_str("the member stopped"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The member stopped because its storage failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFailure(pub String);

impl fmt::Display for MemberFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the member failed: {}", self.0)
    }
}

impl std::error::Error for MemberFailure {}

/// Why a leadership transfer did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The core refused it (not the leader, or the target is no voter).
    Refused(TransferError),
    /// The member stopped.
    Stopped,
}

impl fmt::Display for TransferOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferOutcome::Refused(error) => fmt::Display::fmt(error, f),
            TransferOutcome::Stopped => f.write_str("the member stopped"),
        }
    }
}

impl std::error::Error for TransferOutcome {}
