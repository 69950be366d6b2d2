//! The `raftkv serve` flags as clap defines them, each with its `RAFTKV_*` environment
//! variable. Nothing here has a default or a check: a flag may still come from the environment
//! or the `--config` file, so [`ServeArgs::resolve`] fills in and checks everything.

use std::path::PathBuf;

use super::{ClusterState, ReadMode};

/// The raw `raftkv serve` flags, exactly as given: every setting is optional here because it may
/// also come from the environment, the `--config` file or the default. Call [`ServeArgs::resolve`]
/// to get a validated [`ServeConfig`](super::ServeConfig).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Human-readable name of this member; it must appear in --initial-cluster [default: default]
    #[arg(long, env = "RAFTKV_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Directory for this member's data (WAL, snapshots, identity) [default: NAME.raftkv, from --name]
    #[arg(long, env = "RAFTKV_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// URL to serve clients (etcd v3 gRPC) on; exactly one for now [default: http://127.0.0.1:2379]
    #[arg(
        long,
        visible_alias = "listen-client",
        env = "RAFTKV_LISTEN_CLIENT_URLS",
        value_name = "URL"
    )]
    pub listen_client_urls: Option<String>,

    /// URL to serve other members (Raft traffic) on; exactly one for now [default: http://127.0.0.1:2380]
    #[arg(
        long,
        visible_alias = "listen-peer",
        env = "RAFTKV_LISTEN_PEER_URLS",
        value_name = "URL"
    )]
    pub listen_peer_urls: Option<String>,

    /// Comma-separated client URLs announced to clients (member list) [default: the listen client URL]
    #[arg(long, env = "RAFTKV_ADVERTISE_CLIENT_URLS", value_name = "URLS")]
    pub advertise_client_urls: Option<String>,

    /// Comma-separated peer URLs other members dial; they determine the member id [default: the listen peer URL]
    #[arg(long, env = "RAFTKV_INITIAL_ADVERTISE_PEER_URLS", value_name = "URLS")]
    pub initial_advertise_peer_urls: Option<String>,

    /// Bootstrap members as name=peer-url pairs, comma-separated (a name may repeat for several URLs) [default: NAME=ADVERTISE-PEER-URL for this member alone]
    #[arg(long, env = "RAFTKV_INITIAL_CLUSTER", value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,

    /// `new` to bootstrap a cluster, `existing` to join one (after `etcdctl member add`) [default: new]
    #[arg(long, env = "RAFTKV_INITIAL_CLUSTER_STATE", value_name = "STATE")]
    pub initial_cluster_state: Option<ClusterState>,

    /// Name of the cluster; it feeds member and cluster ids so separate clusters never mix [default: etcd-cluster]
    #[arg(long, env = "RAFTKV_INITIAL_CLUSTER_TOKEN", value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,

    /// Milliseconds between leader heartbeats; one Raft tick [default: 100]
    #[arg(long, env = "RAFTKV_HEARTBEAT_INTERVAL", value_name = "MS")]
    pub heartbeat_interval: Option<u64>,

    /// Milliseconds without a leader before a member campaigns; at least 5 heartbeats [default: 1000]
    #[arg(long, env = "RAFTKV_ELECTION_TIMEOUT", value_name = "MS")]
    pub election_timeout: Option<u64>,

    /// Applied entries between snapshots (which let the WAL be truncated) [default: 100000, as etcd 3.4]
    #[arg(long, env = "RAFTKV_SNAPSHOT_COUNT", value_name = "N")]
    pub snapshot_count: Option<u64>,

    /// A snapshot also waits until the log since the last one holds this percentage of that
    /// snapshot's size, so that rewriting a large state stays proportional to the writes; 0 makes
    /// --snapshot-count the only trigger, as in etcd [default: 50]
    #[arg(long, env = "RAFTKV_SNAPSHOT_LOG_PERCENT", value_name = "PERCENT")]
    pub snapshot_log_percent: Option<u32>,

    /// How linearizable reads are confirmed: read-index (a heartbeat round shared by many reads,
    /// as etcd) or lease (the leader answers alone while its lease holds; assumes clocks drift
    /// less than the lease's margin) [default: read-index]
    #[arg(long, env = "RAFTKV_READ_MODE", value_name = "MODE")]
    pub read_mode: Option<ReadMode>,

    /// Largest client request accepted, in bytes (1 KiB to 64 MiB) [default: 1572864]
    #[arg(long, env = "RAFTKV_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<u64>,

    /// Most operations allowed in one transaction [default: 128]
    #[arg(long, env = "RAFTKV_MAX_TXN_OPS", value_name = "N")]
    pub max_txn_ops: Option<u64>,

    /// How often a watcher that asked for progress notifications gets one while idle, as a Go
    /// duration (`10m`, `30s`, `1m30s`); etcd's --experimental-watch-progress-notify-interval
    /// [default: 10m]
    #[arg(
        long,
        visible_alias = "experimental-watch-progress-notify-interval",
        env = "RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL",
        value_name = "DURATION"
    )]
    pub watch_progress_notify_interval: Option<String>,

    /// Most watchers one watch stream may hold; a create beyond it is refused, so one client
    /// cannot grow a member's memory without bound [default: 100000]
    #[arg(long, env = "RAFTKV_MAX_WATCHERS_PER_STREAM", value_name = "N")]
    pub max_watchers_per_stream: Option<u64>,

    /// Log verbosity: error, warn, info, debug or trace, or directives like warn,raft=debug [default: warn]
    #[arg(long, env = "RAFTKV_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Dial some peers at other addresses than their peer URLs, as name=host:port pairs
    /// (e.g. through a fault-injecting proxy in tests); the member's identity is unchanged
    #[arg(long, env = "RAFTKV_PEER_DIAL_OVERRIDES", value_name = "NAME=ADDR,...")]
    pub peer_dial_overrides: Option<String>,

    /// TOML file with any of the settings above (keys in snake_case, e.g. data_dir); flags and environment win over it
    #[arg(long, env = "RAFTKV_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
