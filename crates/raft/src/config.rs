//! Node configuration and its validation. Every bound the core relies on is here.

use crate::types::{LogIndex, NodeId};
use std::fmt;

/// How a node behaves. Times are in ticks: the embedder decides how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never [`NodeId::NONE`].
    pub id: NodeId,
    /// T: a follower that hears nothing from a leader for a random time in `[T, 2T)` ticks starts
    /// an election. Must be larger than `heartbeat_interval_ticks`.
    pub election_timeout_ticks: u32,
    /// H: a leader sends heartbeats every H ticks.
    pub heartbeat_interval_ticks: u32,
    /// Seeds the node's own PRNG (election timeouts). The same seed gives the same timeouts, which
    /// is what makes simulations replayable.
    pub seed: u64,
    /// Probe with a PreVote round before bumping the term, so a partitioned node that rejoins does
    /// not depose a healthy leader (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and a node
    /// that heard from a leader within the minimum election timeout ignores vote requests.
    pub check_quorum: bool,
    /// Upper bound on the payload bytes of one AppendEntries message (at least one entry is
    /// always sent).
    pub max_size_per_msg: u64,
    /// How many AppendEntries messages may be in flight to one follower in the replicate state.
    pub max_inflight_msgs: usize,
    /// Upper bound on the bytes of proposed but not yet committed entries on a leader; proposals
    /// beyond it are refused with `ProposeError::Backpressure`.
    pub max_uncommitted_bytes: u64,
    /// Upper bound on the bytes of committed entries handed out in one `Ready`.
    pub max_committed_bytes_per_ready: u64,
    /// Upper bound on the bytes of one proposal.
    pub max_entry_bytes: u64,
    /// A leader waits this many ticks for a snapshot it sent to be acknowledged (or reported
    /// failed by the transport) before it probes the follower again and, if still needed, resends
    /// it. Long enough for a large snapshot to stream; short enough that a lost one is retried.
    pub snapshot_timeout_ticks: u32,
    /// A node whose writes have not completed for this many ticks considers its storage stalled:
    /// a leader steps down (its followers may commit without it, but it can apply and answer
    /// nothing) and no stalled node campaigns. docs/correctness.md, K14: a leader with a hung disk that
    /// keeps heartbeating would stall the cluster.
    pub storage_stall_ticks: u32,
    /// How the leader confirms it may serve a read.
    pub read_only: ReadOnlyOption,
    /// With [`ReadOnlyOption::LeaseBased`]: how many ticks a member's clock may run slow relative
    /// to the leader's over one election timeout. The lease is shortened by this much.
    pub lease_drift_ticks: u32,
    /// The index the state machine has already applied when the node (re)starts, so committed
    /// entries are not handed out twice.
    pub applied: LogIndex,
}

impl Config {
    /// A configuration with the usual defaults (T = 10, H = 1, PreVote and CheckQuorum on).
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            seed: id.get(),
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            max_committed_bytes_per_ready: 16 * 1024 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            snapshot_timeout_ticks: 200,
            storage_stall_ticks: 30,
            read_only: ReadOnlyOption::Safe,
            lease_drift_ticks: 2,
            applied: LogIndex::ZERO,
        }
    }

    /// Checks every bound; the node refuses to start with an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.id.is_some() {
            return Err(ConfigError("id must not be 0".into()));
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError(
                "heartbeat_interval_ticks must be at least 1".into(),
            ));
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError(format!(
                "election_timeout_ticks ({}) must be larger than heartbeat_interval_ticks ({})",
                self.election_timeout_ticks, self.heartbeat_interval_ticks
            )));
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError("max_inflight_msgs must be at least 1".into()));
        }
        if self.max_size_per_msg == 0 {
            return Err(ConfigError("max_size_per_msg must be at least 1".into()));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > self.max_uncommitted_bytes {
            return Err(ConfigError(
                "max_entry_bytes must be at least 1 and at most max_uncommitted_bytes".into(),
            ));
        }
        if self.storage_stall_ticks <= self.election_timeout_ticks {
            return Err(ConfigError(
                "storage_stall_ticks must be larger than election_timeout_ticks".into(),
            ));
        }
        if self.snapshot_timeout_ticks == 0 {
            return Err(ConfigError(
                "snapshot_timeout_ticks must be at least 1".into(),
            ));
        }
        if self.max_committed_bytes_per_ready == 0 {
            return Err(ConfigError(
                "max_committed_bytes_per_ready must be at least 1".into(),
            ));
        }
        if self.read_only == ReadOnlyOption::LeaseBased {
            if !self.check_quorum {
                return Err(ConfigError(
                    "lease-based reads need check_quorum (the lease is what it guarantees)".into(),
                ));
            }
            if self.lease_drift_ticks >= self.election_timeout_ticks {
                return Err(ConfigError(
                    "lease_drift_ticks must be smaller than election_timeout_ticks".into(),
                ));
            }
        }
        Ok(())
    }
}

/// How a leader makes sure it is still leader before serving a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadOnlyOption {
    /// Confirm leadership with a quorum heartbeat round per batch of reads (ReadIndex). Safe
    /// under any clock behaviour.
    #[default]
    Safe,
    /// Serve reads without a round while the leader's lease holds: a quorum answered a heartbeat
    /// sent less than `election_timeout - lease_drift_ticks` ticks ago, so no other leader can
    /// have been elected since. Requires CheckQuorum, and clocks whose rates differ by less than
    /// the drift bound; pauses of the leader process longer than that break it (docs/correctness.md, K8).
    LeaseBased,
}

/// A configuration that cannot work, with the reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_bounds_are_refused() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
        let mut config = Config::new(NodeId(1));
        config.election_timeout_ticks = 1;
        assert!(config.validate().is_err());
        assert!(Config::new(NodeId(0)).validate().is_err());
        let mut config = Config::new(NodeId(1));
        config.max_inflight_msgs = 0;
        assert!(config.validate().is_err());
        let mut config = Config::new(NodeId(1));
        config.read_only = ReadOnlyOption::LeaseBased;
        config.check_quorum = false;
        assert!(config.validate().is_err());
    }
}
