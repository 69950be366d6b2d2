//! `raftkv serve` settings, with etcd's flag names, defaults and checks.
//!
//! Operators arrive with etcd habits and etcd scripts, so every setting keeps etcd's flag name
//! (`--initial-cluster`, `--heartbeat-interval`, ...) and default. Each setting can come from four
//! places; the first one that has it wins:
//!
//! 1. the command line (`--name a`);
//! 2. the environment (`RAFTKV_NAME=a`: `RAFTKV_` + the flag name in upper snake case);
//! 3. the TOML file named by `--config FILE` / `RAFTKV_CONFIG` (`name = "a"`: the flag name in
//!    snake case; an unknown key is an error, so a typo cannot silently fall back to a default);
//! 4. the default.
//!
//! [`ServeArgs`] is the raw, unchecked input (what clap parsed); [`ServeArgs::resolve`] merges the
//! layers, fills in defaults and validates everything, so the rest of the server only ever sees a
//! consistent [`ServeConfig`]. Every error is a single line that names the offending flag.
//!
//! The rooms: `flags.rs` holds the clap definitions, `layers.rs` the merge of flags,
//! environment and file, `validate.rs` the defaults and checks; `urls.rs` parses URLs and
//! `ids.rs` derives member and cluster ids. This module holds the types they produce.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

mod flags;
mod ids;
mod layers;
mod urls;
mod validate;

pub use flags::ServeArgs;
pub use ids::{cluster_id, member_id};
pub use urls::parse_url;

/// Whether this member bootstraps a new cluster or joins a running one (etcd's
/// `--initial-cluster-state`): a new cluster's members start from the same member list, while a
/// joining member must learn the current state from the others and never bootstraps on its own.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Bootstrap a brand-new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs (this member was added with `etcdctl member add`).
    Existing,
}

impl FromStr for ClusterState {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "new" => Ok(Self::New),
            "existing" => Ok(Self::Existing),
            other => Err(ConfigError(format!(
                "'{other}' is not a cluster state (expected 'new' or 'existing')"
            ))),
        }
    }
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Existing => "existing",
        })
    }
}

/// How a linearizable read is confirmed to see every write acknowledged before it began.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// ReadIndex: the leader confirms it still leads with a heartbeat round (shared by all the
    /// reads waiting for it) before the read is served. Safe whatever the clocks do; etcd's way.
    ReadIndex,
    /// Leader lease: while a quorum answered within the last election timeout (minus a drift
    /// margin), no other leader can exist, so the leader serves reads without a round. Saves a
    /// round trip per batch of reads, but relies on bounded clock drift between members.
    Lease,
}

impl FromStr for ReadMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-index" => Ok(Self::ReadIndex),
            "lease" => Ok(Self::Lease),
            other => Err(ConfigError(format!(
                "'{other}' is not a read mode (expected 'read-index' or 'lease')"
            ))),
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadIndex => "read-index",
            Self::Lease => "lease",
        })
    }
}

/// The validated settings of one `raftkv serve` process: every default filled in and every
/// cross-setting rule checked, so the server can use them without re-checking.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// This member's name (its key in `initial_cluster`).
    pub name: String,
    /// Where this member keeps its WAL, snapshots and identity file.
    pub data_dir: PathBuf,
    /// Address the client (etcd v3 gRPC) listener binds.
    pub listen_client: SocketAddr,
    /// Address the peer (Raft) listener binds.
    pub listen_peer: SocketAddr,
    /// Client URLs announced in member lists, normalised to `http://host:port`.
    pub advertise_client_urls: Vec<String>,
    /// Peer URLs other members dial, normalised to `http://host:port`; they determine the member id.
    pub advertise_peer_urls: Vec<String>,
    /// Bootstrap members: name -> peer URLs (normalised, in the order given).
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    /// Bootstrap a new cluster or join an existing one.
    pub initial_cluster_state: ClusterState,
    /// The cluster's token; it feeds [`member_id`] and [`cluster_id`].
    pub initial_cluster_token: String,
    /// Time between leader heartbeats; also the length of one Raft tick.
    pub heartbeat_interval: Duration,
    /// Time without a leader before a follower campaigns.
    pub election_timeout: Duration,
    /// Applied entries between snapshots.
    pub snapshot_count: u64,
    /// The log a snapshot also waits for, as a percentage of the last snapshot's size.
    pub snapshot_log_percent: u32,
    /// How linearizable reads are confirmed.
    pub read_mode: ReadMode,
    /// Largest client request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Most operations allowed in one transaction.
    pub max_txn_ops: usize,
    /// How often an idle watcher that asked for progress notifications gets one.
    pub watch_progress_notify_interval: Duration,
    /// Most watchers one watch stream may hold.
    pub max_watchers_per_stream: usize,
    /// One of `error`, `warn`, `info`, `debug`, `trace` (lower case), or a checked list of
    /// `target=level` directives for the `tracing` filter (e.g. `warn,raft=debug`).
    pub log_level: String,
    /// Where to dial peers instead of their peer URLs, by member name.
    pub peer_dial_overrides: BTreeMap<String, SocketAddr>,
}

/// A member of the bootstrap cluster, as the Raft layer needs it: who, where to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// The member's name in `--initial-cluster`.
    pub name: String,
    /// The member's peer URLs (normalised); they determine its id.
    pub peer_urls: Vec<String>,
    /// The address to dial: the first peer URL, resolved.
    pub peer_addr: SocketAddr,
}

/// A configuration problem, as one line that names the flag (or file, or environment variable) at
/// fault, so an operator can fix it without reading code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand for building an error.
fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Prefixes an error's message with its flag or source.
fn ctx<T>(what: &str, r: Result<T, ConfigError>) -> Result<T, ConfigError> {
    r.map_err(|e| ConfigError(format!("{what}: {}", e.0)))
}

impl ServeConfig {
    /// This member's id: [`member_id`] of its advertised peer URLs and the cluster token, the same
    /// id etcd would give it, so ids match what etcd users see and every member computes every
    /// bootstrap member's id alike without talking to it.
    pub fn member_id(&self) -> u64 {
        member_id(&self.advertise_peer_urls, &self.initial_cluster_token)
    }

    /// This cluster's id: [`cluster_id`] of the token (see there for why it is not etcd's formula).
    pub fn cluster_id(&self) -> u64 {
        cluster_id(&self.initial_cluster_token)
    }

    /// The Raft election timeout in ticks, where one tick is one heartbeat interval (as in etcd);
    /// validation guarantees at least 5.
    pub fn election_ticks(&self) -> usize {
        let tick = self.heartbeat_interval.as_millis().max(1);
        usize::try_from(self.election_timeout.as_millis() / tick).unwrap_or(usize::MAX)
    }

    /// The bootstrap members by id, each with its first peer URL resolved to a dialable address.
    ///
    /// Resolution happens here rather than in [`ServeArgs::resolve`] so that a peer whose name is
    /// not resolvable yet (containers starting together) does not prevent parsing the config.
    pub fn initial_members(&self) -> Result<BTreeMap<u64, InitialMember>, ConfigError> {
        let mut members = BTreeMap::new();
        for (name, urls) in &self.initial_cluster {
            let what = format!("--initial-cluster: member '{name}'");
            let Some(first) = urls.first() else {
                return err(format!("{what} has no peer URL"));
            };
            let peer_addr = ctx(&what, parse_url(first))?;
            let id = member_id(urls, &self.initial_cluster_token);
            let member = InitialMember {
                name: name.clone(),
                peer_urls: urls.clone(),
                peer_addr,
            };
            if let Some(other) = members.insert(id, member) {
                return err(format!(
                    "{what} has the same id {id:x} as member '{}'",
                    other.name
                ));
            }
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests;
