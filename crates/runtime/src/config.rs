//! How a member is run: [`MemberConfig`] and the bounds it is checked against before anything
//! starts.

#[cfg(doc)]
use crate::Member;
use crate::StartError;
use raft::NodeId;
#[cfg(doc)]
use raft::ProposeError;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use wal::WalOptions;

/// How a member is run.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// This member's id (overrides `raft.id`).
    pub id: NodeId,
    /// Identifies the cluster on the peer wire; members of other clusters are refused.
    pub cluster_id: u64,
    /// Where the write-ahead log lives (created if missing).
    pub data_dir: PathBuf,
    /// The founding members and their peer addresses. A brand-new data directory of a founder
    /// is bootstrapped with this membership (unless `join_existing`); every other entry is a
    /// peer to connect to.
    pub founders: BTreeMap<NodeId, SocketAddr>,
    /// This member joins a running cluster (etcd's `--initial-cluster-state existing`): its
    /// empty log is never bootstrapped; a leader that added it sends it the log or a snapshot.
    pub join_existing: bool,
    /// The address the peer listener binds (ignored by [`Member::start_with_listener`]).
    pub listen_peer: SocketAddr,
    /// The length of one Raft tick.
    pub tick: Duration,
    /// Raft tuning (election timeout, limits, ...).
    pub raft: raft::Config,
    /// WAL tuning.
    pub wal: WalOptions,
    /// Client requests queued for the driver before callers wait.
    pub client_queue_len: usize,
    /// Client requests waiting for their reply before new ones are refused with
    /// [`ProposeError::Backpressure`].
    pub max_waiting_requests: usize,
    /// Persist tasks queued for the writer thread; while the driver holds this many more it
    /// stops taking client requests.
    pub persist_queue_len: usize,
    /// The most persist tasks the writer merges into one write and one sync.
    pub max_persist_batch: usize,
    /// Once the applied index is this many entries past the log's first index, the driver
    /// compacts: it snapshots the state machine at the applied index, drops the covered
    /// entries from the in-memory log and has the writer save the snapshot and release the
    /// WAL segments it covers.
    pub snapshot_every_entries: u64,
    /// A snapshot also waits until the entries appended since the last one add up to at least
    /// this percentage of that snapshot's size (0: no such wait). A snapshot rewrites the whole
    /// state, so with a large state and a count-only trigger the snapshot writes grow without
    /// bound per byte of log (at 500k retained revisions, each 100k entries rewrote 150 MB on
    /// every member); with this trigger they stay within 100/percent times the log's bytes, as
    /// Redis rewrites its AOF by growth percentage. The WAL since the last snapshot grows with
    /// the state instead, and so does the replay at a restart.
    pub snapshot_log_percent: u32,
    /// About how many bytes of committed log entries stay in memory (between half of this and
    /// all of it). Older ones are read back from the WAL when a lagging follower or a replay
    /// needs them, so a member's memory does not grow with `snapshot_every_entries`.
    pub resident_log_bytes: u64,
}

impl MemberConfig {
    /// A configuration with the usual defaults (100 ms ticks, default Raft and WAL tuning).
    pub fn new(
        id: NodeId,
        data_dir: impl Into<PathBuf>,
        founders: BTreeMap<NodeId, SocketAddr>,
        listen_peer: SocketAddr,
    ) -> MemberConfig {
        MemberConfig {
            id,
            cluster_id: 1,
            data_dir: data_dir.into(),
            founders,
            join_existing: false,
            listen_peer,
            tick: Duration::from_millis(100),
            raft: raft::Config::new(id),
            wal: WalOptions::default(),
            client_queue_len: 1024,
            max_waiting_requests: 4096,
            persist_queue_len: 64,
            max_persist_batch: 64,
            snapshot_every_entries: 10_000,
            snapshot_log_percent: 0,
            resident_log_bytes: 4 << 20,
        }
    }

    /// Checks every bound.
    pub fn validate(&self) -> Result<(), StartError> {
        let invalid = |reason: &str| Err(StartError::InvalidConfig(reason.to_owned()));
        if !self.id.is_some() {
            return invalid("the member id must not be 0");
        }
        if self.tick.is_zero() {
            return invalid("tick must be longer than zero");
        }
        if self.client_queue_len == 0
            || self.max_waiting_requests == 0
            || self.persist_queue_len == 0
            || self.max_persist_batch == 0
        {
            return invalid("queue lengths and batch sizes must be at least 1");
        }
        if self.snapshot_every_entries == 0 {
            return invalid("snapshot_every_entries must be at least 1");
        }
        let mut raft = self.raft.clone();
        raft.id = self.id;
        raft.validate()
            .map_err(|error| StartError::InvalidConfig(format!("raft: {error}")))?;
        self.wal
            .validate()
            .map_err(|error| StartError::InvalidConfig(format!("wal: {error}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_every_entries_must_be_positive() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut config = MemberConfig::new(NodeId(1), "unused", [(NodeId(1), addr)].into(), addr);
        assert!(config.validate().is_ok());
        config.snapshot_every_entries = 0;
        assert!(matches!(
            config.validate(),
            Err(StartError::InvalidConfig(_))
        ));
    }
}
