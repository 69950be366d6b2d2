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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sha1::{Digest, Sha1};

/// etcd's default `--name`.
const DEFAULT_NAME: &str = "default";
/// etcd's default `--listen-client-urls`.
const DEFAULT_LISTEN_CLIENT_URL: &str = "http://127.0.0.1:2379";
/// etcd's default `--listen-peer-urls`.
const DEFAULT_LISTEN_PEER_URL: &str = "http://127.0.0.1:2380";
/// etcd's default `--initial-cluster-token`.
const DEFAULT_TOKEN: &str = "etcd-cluster";
/// etcd's default `--heartbeat-interval`, in milliseconds.
const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// etcd's default `--election-timeout`, in milliseconds.
const DEFAULT_ELECTION_MS: u64 = 1000;
/// etcd refuses an election timeout above 50 s (it would make failover uselessly slow).
const MAX_ELECTION_MS: u64 = 50_000;
/// etcd's default `--snapshot-count`.
const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// How much log (as a percentage of the last snapshot's size) a snapshot also waits for: the
/// snapshot writes then stay within twice the log's bytes however large the state grows.
const DEFAULT_SNAPSHOT_LOG_PERCENT: u32 = 50;
/// Beyond this the WAL would hold ten times the state before a snapshot.
const MAX_SNAPSHOT_LOG_PERCENT: u32 = 1000;
/// etcd's default `--max-request-bytes` (1.5 MiB).
const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
/// Smallest accepted `--max-request-bytes`: below this even a modest Put would not fit.
const MIN_MAX_REQUEST_BYTES: u64 = 1024;
/// Largest accepted `--max-request-bytes`: bigger entries would stall replication and snapshots.
const MAX_MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;
/// etcd's default `--max-txn-ops`.
const DEFAULT_MAX_TXN_OPS: u64 = 128;
/// Our default `--log-level`: quiet unless something is wrong.
const DEFAULT_LOG_LEVEL: &str = "warn";
/// The accepted `--log-level` values, most to least severe.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Prefix of every environment variable we read.
const ENV_PREFIX: &str = "RAFTKV_";
/// Domain separator for [`cluster_id`], so a cluster id never equals a member id by construction.
const CLUSTER_ID_DOMAIN: &str = "raftkv-cluster/";

/// The raw `raftkv serve` flags, exactly as given: every setting is optional here because it may
/// also come from the environment, the `--config` file or the default. Call [`ServeArgs::resolve`]
/// to get a validated [`ServeConfig`].
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

/// One source of settings (flags, environment or file); `None` means "not set here".
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Layer {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    listen_client_urls: Option<String>,
    listen_peer_urls: Option<String>,
    advertise_client_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<ClusterState>,
    initial_cluster_token: Option<String>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    snapshot_count: Option<u64>,
    snapshot_log_percent: Option<u32>,
    read_mode: Option<ReadMode>,
    max_request_bytes: Option<u64>,
    max_txn_ops: Option<u64>,
    log_level: Option<String>,
    peer_dial_overrides: Option<String>,
}

impl Layer {
    /// Fills every setting missing here from `lower` (this layer wins).
    fn or(self, lower: Layer) -> Layer {
        Layer {
            name: self.name.or(lower.name),
            data_dir: self.data_dir.or(lower.data_dir),
            listen_client_urls: self.listen_client_urls.or(lower.listen_client_urls),
            listen_peer_urls: self.listen_peer_urls.or(lower.listen_peer_urls),
            advertise_client_urls: self.advertise_client_urls.or(lower.advertise_client_urls),
            initial_advertise_peer_urls: self
                .initial_advertise_peer_urls
                .or(lower.initial_advertise_peer_urls),
            initial_cluster: self.initial_cluster.or(lower.initial_cluster),
            initial_cluster_state: self.initial_cluster_state.or(lower.initial_cluster_state),
            initial_cluster_token: self.initial_cluster_token.or(lower.initial_cluster_token),
            heartbeat_interval: self.heartbeat_interval.or(lower.heartbeat_interval),
            election_timeout: self.election_timeout.or(lower.election_timeout),
            snapshot_count: self.snapshot_count.or(lower.snapshot_count),
            snapshot_log_percent: self.snapshot_log_percent.or(lower.snapshot_log_percent),
            read_mode: self.read_mode.or(lower.read_mode),
            max_request_bytes: self.max_request_bytes.or(lower.max_request_bytes),
            max_txn_ops: self.max_txn_ops.or(lower.max_txn_ops),
            log_level: self.log_level.or(lower.log_level),
            peer_dial_overrides: self.peer_dial_overrides.or(lower.peer_dial_overrides),
        }
    }

    /// Reads the `RAFTKV_*` variables through `env` (injected so tests need not touch the
    /// process environment).
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        fn get<T: FromStr>(
            env: &dyn Fn(&str) -> Option<String>,
            key: &str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: fmt::Display,
        {
            let var = env_var(key);
            match env(&var) {
                None => Ok(None),
                Some(v) => match v.parse() {
                    Ok(t) => Ok(Some(t)),
                    Err(e) => err(format!("{var}: invalid value '{v}': {e}")),
                },
            }
        }
        Ok(Layer {
            name: get(env, "name")?,
            data_dir: get(env, "data_dir")?,
            listen_client_urls: get(env, "listen_client_urls")?,
            listen_peer_urls: get(env, "listen_peer_urls")?,
            advertise_client_urls: get(env, "advertise_client_urls")?,
            initial_advertise_peer_urls: get(env, "initial_advertise_peer_urls")?,
            initial_cluster: get(env, "initial_cluster")?,
            initial_cluster_state: get(env, "initial_cluster_state")?,
            initial_cluster_token: get(env, "initial_cluster_token")?,
            heartbeat_interval: get(env, "heartbeat_interval")?,
            election_timeout: get(env, "election_timeout")?,
            snapshot_count: get(env, "snapshot_count")?,
            snapshot_log_percent: get(env, "snapshot_log_percent")?,
            read_mode: get(env, "read_mode")?,
            max_request_bytes: get(env, "max_request_bytes")?,
            max_txn_ops: get(env, "max_txn_ops")?,
            log_level: get(env, "log_level")?,
            peer_dial_overrides: get(env, "peer_dial_overrides")?,
        })
    }

    /// Reads a `--config` TOML file.
    fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return err(format!("--config {shown}: cannot read: {e}")),
        };
        toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(&text, s.start);
                    format!(" (line {line}, column {col})")
                })
                .unwrap_or_default();
            let msg = e.message().trim().replace('\n', " ");
            ConfigError(format!("--config {shown}: {msg}{at}"))
        })
    }
}

impl From<ServeArgs> for Layer {
    fn from(a: ServeArgs) -> Layer {
        Layer {
            name: a.name,
            data_dir: a.data_dir,
            listen_client_urls: a.listen_client_urls,
            listen_peer_urls: a.listen_peer_urls,
            advertise_client_urls: a.advertise_client_urls,
            initial_advertise_peer_urls: a.initial_advertise_peer_urls,
            initial_cluster: a.initial_cluster,
            initial_cluster_state: a.initial_cluster_state,
            initial_cluster_token: a.initial_cluster_token,
            heartbeat_interval: a.heartbeat_interval,
            election_timeout: a.election_timeout,
            snapshot_count: a.snapshot_count,
            snapshot_log_percent: a.snapshot_log_percent,
            read_mode: a.read_mode,
            max_request_bytes: a.max_request_bytes,
            max_txn_ops: a.max_txn_ops,
            log_level: a.log_level,
            peer_dial_overrides: a.peer_dial_overrides,
        }
    }
}

/// The environment variable for a setting: `RAFTKV_` + its snake_case key in upper case.
fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// 1-based line and column of byte offset `at` in `text`, for file error messages.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl ServeArgs {
    /// Merges flags, the process environment, the `--config` file and the defaults (in that order
    /// of precedence) and validates the result.
    ///
    /// clap has already folded `RAFTKV_*` variables into the fields, so reading the environment
    /// again here only matters for a `ServeArgs` built by hand; either way the result is the same.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        self.resolve_with(|var| std::env::var(var).ok())
    }

    /// [`ServeArgs::resolve`] with the environment supplied by `env` (variable name -> value), so
    /// tests can check precedence without mutating the process environment, which races between
    /// test threads.
    pub fn resolve_with(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let config_var = env_var("config");
        let config = match self.config.clone() {
            Some(p) => Some(p),
            None => env(&config_var).map(PathBuf::from),
        };
        let flags = Layer::from(self);
        let environment = Layer::from_env(&env)?;
        let file = match config {
            Some(path) => Layer::from_file(&path)?,
            None => Layer::default(),
        };
        build(flags.or(environment).or(file))
    }
}

/// Fills defaults into the merged settings and checks every rule.
fn build(l: Layer) -> Result<ServeConfig, ConfigError> {
    let name = l.name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    if name.is_empty() {
        return err("--name: must not be empty");
    }
    if name.contains([',', '=']) || name.trim() != name {
        return err(format!(
            "--name: '{name}' cannot be used (no ',', '=' or surrounding spaces: it must fit in --initial-cluster)"
        ));
    }
    let data_dir = l
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{name}.raftkv")));
    if data_dir.as_os_str().is_empty() {
        return err("--data-dir: must not be empty");
    }

    let heartbeat_ms = l.heartbeat_interval.unwrap_or(DEFAULT_HEARTBEAT_MS);
    if heartbeat_ms == 0 {
        return err("--heartbeat-interval: must be at least 1 ms");
    }
    let election_ms = l.election_timeout.unwrap_or(DEFAULT_ELECTION_MS);
    let min_election = heartbeat_ms.saturating_mul(5);
    if election_ms < min_election {
        return err(format!(
            "--election-timeout: {election_ms} ms is less than 5 x --heartbeat-interval ({heartbeat_ms} ms); use at least {min_election} ms"
        ));
    }
    if election_ms > MAX_ELECTION_MS {
        return err(format!(
            "--election-timeout: {election_ms} ms is more than the maximum {MAX_ELECTION_MS} ms"
        ));
    }
    let snapshot_count = l.snapshot_count.unwrap_or(DEFAULT_SNAPSHOT_COUNT);
    if snapshot_count == 0 {
        return err("--snapshot-count: must be at least 1");
    }
    let snapshot_log_percent = l
        .snapshot_log_percent
        .unwrap_or(DEFAULT_SNAPSHOT_LOG_PERCENT);
    if snapshot_log_percent > MAX_SNAPSHOT_LOG_PERCENT {
        return err(format!(
            "--snapshot-log-percent: {snapshot_log_percent} is more than the maximum {MAX_SNAPSHOT_LOG_PERCENT}"
        ));
    }
    let max_request_bytes = l.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    if !(MIN_MAX_REQUEST_BYTES..=MAX_MAX_REQUEST_BYTES).contains(&max_request_bytes) {
        return err(format!(
            "--max-request-bytes: {max_request_bytes} is outside {MIN_MAX_REQUEST_BYTES} (1 KiB) to {MAX_MAX_REQUEST_BYTES} (64 MiB)"
        ));
    }
    let max_txn_ops = l.max_txn_ops.unwrap_or(DEFAULT_MAX_TXN_OPS);
    if max_txn_ops == 0 {
        return err("--max-txn-ops: must be at least 1");
    }
    let log_level = check_log_level(l.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL))?;
    let mut peer_dial_overrides = BTreeMap::new();
    for pair in l
        .peer_dial_overrides
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((name, addr)) = pair.split_once('=') else {
            return err(format!(
                "--peer-dial-overrides: {pair:?} is not NAME=HOST:PORT"
            ));
        };
        let addr = parse_url(addr)
            .map_err(|error| ConfigError(format!("--peer-dial-overrides: {name}: {error}")))?;
        peer_dial_overrides.insert(name.trim().to_owned(), addr);
    }
    let token = l
        .initial_cluster_token
        .unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
    if token.is_empty() {
        return err("--initial-cluster-token: must not be empty");
    }

    let client_flag = "--listen-client-urls";
    let peer_flag = "--listen-peer-urls";
    let (listen_client, listen_client_url) = single_listen_url(
        client_flag,
        l.listen_client_urls
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_CLIENT_URL),
    )?;
    let (listen_peer, listen_peer_url) = single_listen_url(
        peer_flag,
        l.listen_peer_urls
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_PEER_URL),
    )?;
    let advertise_client_urls = advertise_urls(
        "--advertise-client-urls",
        l.advertise_client_urls.as_deref(),
        client_flag,
        listen_client,
        &listen_client_url,
    )?;
    let advertise_peer_urls = advertise_urls(
        "--initial-advertise-peer-urls",
        l.initial_advertise_peer_urls.as_deref(),
        peer_flag,
        listen_peer,
        &listen_peer_url,
    )?;

    let initial_cluster = match l.initial_cluster.as_deref() {
        Some(s) => parse_initial_cluster(s)?,
        None => BTreeMap::from([(name.clone(), advertise_peer_urls.clone())]),
    };
    if initial_cluster.len() > 1 {
        for (member, urls) in &initial_cluster {
            if let Some(url) = urls.iter().find(|u| u.ends_with(":0")) {
                return err(format!(
                    "--initial-cluster: member '{member}' has {url}, but other members cannot dial port 0 (it only suits a single-member cluster)"
                ));
            }
        }
    }
    let initial_cluster_state = l.initial_cluster_state.unwrap_or(ClusterState::New);
    // Both states list this member: `new` because every bootstrap member is listed, `existing`
    // because `etcdctl member add` prints the member list including the newcomer.
    let Some(listed) = initial_cluster.get(&name) else {
        let names: Vec<&str> = initial_cluster.keys().map(String::as_str).collect();
        return err(format!(
            "--initial-cluster: member '{name}' is missing (it lists {}; check --name)",
            names.join(", ")
        ));
    };
    let listed_set: BTreeSet<&String> = listed.iter().collect();
    let advertised_set: BTreeSet<&String> = advertise_peer_urls.iter().collect();
    if listed_set != advertised_set {
        return err(format!(
            "--initial-cluster: member '{name}' has {} but --initial-advertise-peer-urls is {}",
            listed.join(","),
            advertise_peer_urls.join(",")
        ));
    }

    Ok(ServeConfig {
        name,
        data_dir,
        listen_client,
        listen_peer,
        advertise_client_urls,
        advertise_peer_urls,
        initial_cluster,
        initial_cluster_state,
        initial_cluster_token: token,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        snapshot_count,
        snapshot_log_percent,
        read_mode: l.read_mode.unwrap_or(ReadMode::ReadIndex),
        max_request_bytes: to_usize("--max-request-bytes", max_request_bytes)?,
        max_txn_ops: to_usize("--max-txn-ops", max_txn_ops)?,
        log_level,
        peer_dial_overrides,
    })
}

/// Checks `--log-level`: one of [`LOG_LEVELS`] (any case; returned in lower case), or a
/// comma-separated list of `target=level` / `level` directives (as `tracing` filters take, e.g.
/// `warn,raft=debug`) for finer control. Checking here turns a typo into an error instead of the
/// logger silently falling back to its default.
fn check_log_level(s: &str) -> Result<String, ConfigError> {
    let lower = s.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        return Ok(lower);
    }
    let level_ok = |l: &str| LOG_LEVELS.contains(&l.to_ascii_lowercase().as_str());
    let directive_ok = |d: &str| match d.split_once('=') {
        Some((target, level)) => !target.trim().is_empty() && level_ok(level.trim()),
        None => level_ok(d.trim()),
    };
    if s.contains([',', '=']) && s.split(',').all(directive_ok) {
        return Ok(s.to_owned());
    }
    err(format!(
        "--log-level: '{s}' is not one of {} (or a list of target=level directives, e.g. warn,raft=debug)",
        LOG_LEVELS.join(", ")
    ))
}

/// Converts a checked count to `usize` (only fails on targets narrower than the value).
fn to_usize(flag: &str, v: u64) -> Result<usize, ConfigError> {
    usize::try_from(v).or_else(|_| err(format!("{flag}: {v} is too large for this platform")))
}

/// Splits a comma-separated URL list, refusing empty entries.
fn split_list<'a>(flag: &str, s: &'a str) -> Result<Vec<&'a str>, ConfigError> {
    let items: Vec<&str> = s.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return err(format!(
            "{flag}: empty entry in '{s}' (expected comma-separated URLs)"
        ));
    }
    Ok(items)
}

/// Parses a listen flag: a list (as etcd allows) that must hold exactly one URL for now.
/// Returns the bound address and the normalised URL.
fn single_listen_url(flag: &str, s: &str) -> Result<(SocketAddr, String), ConfigError> {
    let items = split_list(flag, s)?;
    let [url] = items.as_slice() else {
        return err(format!(
            "{flag}: exactly one URL is supported for now, got {} ({s})",
            items.len()
        ));
    };
    let addr = ctx(flag, parse_url(url))?;
    let normalised = ctx(flag, normalise_url(url))?;
    Ok((addr, normalised))
}

/// Resolves an advertise flag: the explicit list, or else the listen URL — which is refused when
/// it is a wildcard address nobody can dial.
fn advertise_urls(
    flag: &str,
    given: Option<&str>,
    listen_flag: &str,
    listen: SocketAddr,
    listen_url: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(given) = given else {
        if listen.ip().is_unspecified() {
            return err(format!(
                "{flag}: required when {listen_flag} is {listen_url} (a wildcard address cannot be dialled)"
            ));
        }
        return Ok(vec![listen_url.to_owned()]);
    };
    let mut urls: Vec<String> = Vec::new();
    for item in split_list(flag, given)? {
        let url = ctx(flag, normalise_url(item))?;
        let (host, _) = ctx(flag, split_url(item))?;
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return err(format!(
                "{flag}: {url} is a wildcard address, which cannot be dialled; advertise a reachable address"
            ));
        }
        if urls.contains(&url) {
            return err(format!("{flag}: {url} is listed twice"));
        }
        urls.push(url);
    }
    Ok(urls)
}

/// Parses `--initial-cluster` (`name=url,name=url,...`; a name may repeat to give a member
/// several URLs, as in etcd). URLs are checked for syntax but not resolved: other members' hosts
/// may not be resolvable yet when this member starts.
fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    const FLAG: &str = "--initial-cluster";
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for entry in s.split(',').map(str::trim) {
        if entry.is_empty() {
            return err(format!(
                "{FLAG}: empty entry in '{s}' (expected name=url,name=url,...)"
            ));
        }
        let Some((name, url)) = entry.split_once('=') else {
            return err(format!("{FLAG}: '{entry}' is not name=url"));
        };
        let (name, url) = (name.trim(), url.trim());
        if name.is_empty() {
            return err(format!("{FLAG}: '{entry}' has an empty member name"));
        }
        let url = ctx(&format!("{FLAG}: member '{name}'"), normalise_url(url))?;
        if let Some(prev) = owner.get(&url) {
            return if prev == name {
                err(format!("{FLAG}: member '{name}' lists {url} twice"))
            } else {
                err(format!(
                    "{FLAG}: {url} is listed for both '{prev}' and '{name}'"
                ))
            };
        }
        owner.insert(url.clone(), name.to_owned());
        members.entry(name.to_owned()).or_default().push(url);
    }
    Ok(members)
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

/// First 8 bytes of a SHA-1 digest as a big-endian integer, with 0 (Raft's "no member") mapped to 1.
fn sha1_u64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

/// A member's id, computed exactly as etcd does for bootstrap members: SHA-1 over the peer URLs
/// sorted as strings and concatenated, then the cluster token; the first 8 bytes big-endian.
///
/// Using etcd's formula means a cluster started with the same flags shows the same ids as etcd,
/// and every member derives every bootstrap member's id from `--initial-cluster` alone. The URLs
/// are sorted first so the order they are listed in does not matter. A digest whose first 8 bytes
/// are 0 (probability 2^-64) maps to 1, because id 0 means "no member" in Raft and etcd's API.
/// Unlike etcd's runtime `member add`, no timestamp is mixed in, so a member re-added with the
/// same URLs and token gets its old id back.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut parts: Vec<&[u8]> = sorted.iter().map(|u| u.as_bytes()).collect();
    parts.push(token.as_bytes());
    sha1_u64(&parts)
}

/// The cluster's id: SHA-1 of `"raftkv-cluster/"` + token, first 8 bytes big-endian, 0 mapped to 1.
///
/// This deliberately differs from etcd, which hashes the bootstrap member ids: a member joining
/// with `--initial-cluster-state existing` must know the cluster id before contacting anyone (to
/// stamp its data directory and reject peers of another cluster), and the token is what names a
/// cluster in etcd too. Clients never check the cluster id (etcd 3.4), so the difference is
/// invisible to them. The prefix keeps it apart from any member id.
pub fn cluster_id(token: &str) -> u64 {
    sha1_u64(&[CLUSTER_ID_DOMAIN.as_bytes(), token.as_bytes()])
}

/// Checks a URL's syntax and returns its host (IPv6 still bracketed) and port.
fn split_url(url: &str) -> Result<(&str, u16), ConfigError> {
    let rest = match url.split_once("://") {
        None => url,
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => rest,
            "https" => {
                return err(format!(
                    "'{url}' uses https, but raftkv has no TLS yet; use http://"
                ));
            }
            other => {
                return err(format!(
                    "'{url}' has unsupported scheme '{other}'; use http://host:port"
                ));
            }
        },
    };
    if let Some(i) = rest.find(['/', '?', '#', '@']) {
        return err(format!(
            "'{url}' must be just http://host:port (found '{}')",
            &rest[i..]
        ));
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((ip6, after)) = inner.split_once(']') else {
            return err(format!("'{url}' has an unclosed '[' in its host"));
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return err(format!("'{url}': '{ip6}' is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return err(format!("'{url}' has no port (e.g. http://127.0.0.1:2379)"));
        };
        (&rest[..ip6.len() + 2], port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return err(format!("'{url}' has no port (e.g. http://127.0.0.1:2379)"));
        };
        if host.contains(':') {
            return err(format!(
                "'{url}': an IPv6 host needs brackets, e.g. http://[::1]:2379"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return err(format!("'{url}' has no host"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) => p,
        Err(_) => return err(format!("'{url}': '{port}' is not a port number")),
    };
    Ok((host, port))
}

/// Checks a URL and writes it as `http://host:port`, so the same address always yields the
/// same string (member ids hash the strings).
fn normalise_url(url: &str) -> Result<String, ConfigError> {
    let (host, port) = split_url(url)?;
    Ok(format!("http://{host}:{port}"))
}

/// Parses a listen or peer URL (`http://host:port`, or bare `host:port`) into a socket address.
///
/// Port 0 is accepted (listening on it picks a free port, which tests and the playground use);
/// [`ServeArgs::resolve`] refuses it where other members would have to dial it.
///
/// `https` is refused with a clear message because there is no TLS yet (silently serving
/// plaintext on an https URL would be worse). The host may be an IP address (IPv6 in brackets) or
/// a name, which is resolved with the system resolver and its first address used. The port is
/// required: guessing one would hide mistakes. A path, query or user part is refused, as in etcd.
pub fn parse_url(url: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_url(url)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Ok(addr),
            None => err(format!("'{url}': host '{host}' resolves to no address")),
        },
        Err(e) => err(format!("'{url}': cannot resolve host '{host}': {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::io::Write;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn resolve_err(args: ServeArgs) -> String {
        match args.resolve_with(no_env) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The lease read mode is an opt-in from a flag, the environment or the file; a typo is
    /// an error, and the lease reaches the Raft configuration.
    #[test]
    fn read_mode_is_read_index_unless_lease_is_asked_for() {
        let args = ServeArgs {
            read_mode: Some(ReadMode::Lease),
            ..ServeArgs::default()
        };
        let c = args.resolve_with(no_env).expect("flag");
        assert_eq!(c.read_mode, ReadMode::Lease);
        let member = crate::member::serve::member_config(&c).expect("member config");
        assert_eq!(member.raft.read_only, raft::ReadOnlyOption::LeaseBased);
        let env = |key: &str| (key == "RAFTKV_READ_MODE").then(|| "lease".to_owned());
        let c = ServeArgs::default().resolve_with(env).expect("env");
        assert_eq!(c.read_mode, ReadMode::Lease);
        let file = file_with("read_mode = \"lease\"\n");
        let args = ServeArgs {
            config: Some(file.path().to_path_buf()),
            ..ServeArgs::default()
        };
        assert_eq!(
            args.resolve_with(no_env).expect("file").read_mode,
            ReadMode::Lease
        );
        let env = |key: &str| (key == "RAFTKV_READ_MODE").then(|| "leases".to_owned());
        let error = ServeArgs::default()
            .resolve_with(env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a read mode"), "{error}");
        let c = ServeArgs::default().resolve_with(no_env).expect("defaults");
        let member = crate::member::serve::member_config(&c).expect("member config");
        assert_eq!(member.raft.read_only, raft::ReadOnlyOption::Safe);
    }

    fn three() -> String {
        "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,c=http://127.0.0.1:4380".to_owned()
    }

    #[test]
    fn defaults_match_etcd() {
        let c = ServeArgs::default().resolve_with(no_env).expect("defaults");
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.raftkv"));
        assert_eq!(c.listen_client, "127.0.0.1:2379".parse().expect("addr"));
        assert_eq!(c.listen_peer, "127.0.0.1:2380".parse().expect("addr"));
        assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:2379"]);
        assert_eq!(c.advertise_peer_urls, ["http://127.0.0.1:2380"]);
        assert_eq!(
            c.initial_cluster,
            BTreeMap::from([(
                "default".to_owned(),
                vec!["http://127.0.0.1:2380".to_owned()]
            )])
        );
        assert_eq!(c.initial_cluster_state, ClusterState::New);
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.election_timeout, Duration::from_millis(1000));
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.snapshot_log_percent, 50);
        assert_eq!(c.read_mode, ReadMode::ReadIndex);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.log_level, "warn");
        let members = c.initial_members().expect("members");
        assert_eq!(members.len(), 1);
        let (id, m) = members.iter().next().expect("one member");
        assert_eq!(*id, c.member_id());
        assert_eq!(m.peer_addr, c.listen_peer);
    }

    #[test]
    fn data_dir_default_follows_name() {
        let args = ServeArgs {
            name: Some("a".into()),
            ..Default::default()
        };
        let c = args.resolve_with(no_env).expect("config");
        assert_eq!(c.data_dir, PathBuf::from("a.raftkv"));
        assert_eq!(c.initial_cluster.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = file_with("name = \"file\"\nsnapshot_count = 3\n");
        let path = file.path().to_path_buf();
        let env = env_of(&[("RAFTKV_NAME", "env"), ("RAFTKV_SNAPSHOT_COUNT", "2")]);
        let all = ServeArgs {
            name: Some("flag".into()),
            snapshot_count: Some(1),
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = all.resolve_with(&env).expect("flag");
        assert_eq!((c.name.as_str(), c.snapshot_count), ("flag", 1));

        let no_flag = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = no_flag.clone().resolve_with(&env).expect("env");
        assert_eq!((c.name.as_str(), c.snapshot_count), ("env", 2));

        let c = no_flag.resolve_with(no_env).expect("file");
        assert_eq!((c.name.as_str(), c.snapshot_count), ("file", 3));

        let c = ServeArgs::default().resolve_with(no_env).expect("default");
        assert_eq!((c.name.as_str(), c.snapshot_count), ("default", 100_000));
    }

    #[test]
    fn config_path_from_env() {
        let file = file_with("name = \"fromfile\"\n");
        let path = file.path().to_string_lossy().into_owned();
        let env = env_of(&[("RAFTKV_CONFIG", &path)]);
        let c = ServeArgs::default().resolve_with(env).expect("config");
        assert_eq!(c.name, "fromfile");
    }

    #[test]
    fn full_toml_file() {
        let file = file_with(
            r#"
name = "b"
data_dir = "/var/lib/raftkv"
listen_client_urls = "http://127.0.0.1:3379"
listen_peer_urls = "127.0.0.1:3380"
advertise_client_urls = "http://127.0.0.1:3379,http://localhost:3379"
initial_advertise_peer_urls = "http://127.0.0.1:3380"
initial_cluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,c=http://127.0.0.1:4380"
initial_cluster_state = "existing"
initial_cluster_token = "tok"
heartbeat_interval = 50
election_timeout = 500
snapshot_count = 7
max_request_bytes = 2048
max_txn_ops = 4
log_level = "DEBUG"
"#,
        );
        let args = ServeArgs {
            config: Some(file.path().to_path_buf()),
            ..Default::default()
        };
        let c = args.resolve_with(no_env).expect("config");
        assert_eq!(c.name, "b");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/raftkv"));
        assert_eq!(c.listen_peer, "127.0.0.1:3380".parse().expect("addr"));
        assert_eq!(c.advertise_client_urls.len(), 2);
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.snapshot_count, 7);
        assert_eq!(c.max_request_bytes, 2048);
        assert_eq!(c.max_txn_ops, 4);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.initial_members().expect("members").len(), 3);
        assert_eq!(
            c.member_id(),
            member_id(&["http://127.0.0.1:3380".to_owned()], "tok")
        );
    }

    #[test]
    fn toml_unknown_key_is_an_error() {
        let file = file_with("name = \"a\"\nheartbeat_intervall = 100\n");
        let args = ServeArgs {
            config: Some(file.path().to_path_buf()),
            ..Default::default()
        };
        let e = resolve_err(args);
        assert!(e.starts_with("--config "), "{e}");
        assert!(e.contains("unknown field `heartbeat_intervall`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn toml_wrong_type_and_missing_file() {
        let file = file_with("heartbeat_interval = \"fast\"\n");
        let e = resolve_err(ServeArgs {
            config: Some(file.path().to_path_buf()),
            ..Default::default()
        });
        assert!(e.starts_with("--config ") && e.contains("line 1"), "{e}");
        let e = resolve_err(ServeArgs {
            config: Some("/nonexistent/raftkv.toml".into()),
            ..Default::default()
        });
        assert!(
            e.starts_with("--config /nonexistent/raftkv.toml: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let env = env_of(&[("RAFTKV_ELECTION_TIMEOUT", "soon")]);
        let e = ServeArgs::default()
            .resolve_with(env)
            .expect_err("bad env")
            .to_string();
        assert!(
            e.starts_with("RAFTKV_ELECTION_TIMEOUT: invalid value 'soon'"),
            "{e}"
        );
        let env = env_of(&[("RAFTKV_INITIAL_CLUSTER_STATE", "old")]);
        let e = ServeArgs::default()
            .resolve_with(env)
            .expect_err("bad env")
            .to_string();
        assert!(e.contains("'old' is not a cluster state"), "{e}");
    }

    #[test]
    fn clap_flags_and_aliases() {
        let cli = Cli::try_parse_from([
            "raftkv",
            "--name",
            "a",
            "--listen-client",
            "http://127.0.0.1:12379",
            "--listen-peer",
            "http://127.0.0.1:12380",
            "--initial-cluster",
            "a=http://127.0.0.1:12380",
            "--initial-cluster-state",
            "existing",
            "--heartbeat-interval",
            "10",
            "--election-timeout",
            "100",
        ])
        .expect("parse");
        let c = cli.serve.resolve_with(no_env).expect("config");
        assert_eq!(c.listen_client.port(), 12379);
        assert_eq!(c.listen_peer.port(), 12380);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.election_ticks(), 10);

        let cli =
            Cli::try_parse_from(["raftkv", "--listen-client-urls", "127.0.0.1:1"]).expect("parse");
        assert_eq!(cli.serve.listen_client_urls.as_deref(), Some("127.0.0.1:1"));
        assert!(Cli::try_parse_from(["raftkv", "--initial-cluster-state", "old"]).is_err());
    }

    #[test]
    fn every_flag_has_its_env_var() {
        let cmd = Cli::command();
        let mut n = 0;
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            let want = env_var(id);
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "{id}"
            );
            n += 1;
        }
        assert_eq!(n, 19);
    }

    #[test]
    fn validation_messages() {
        let cases: Vec<(ServeArgs, &str)> = vec![
            (
                ServeArgs {
                    name: Some(String::new()),
                    ..Default::default()
                },
                "--name: must not be empty",
            ),
            (
                ServeArgs {
                    heartbeat_interval: Some(0),
                    ..Default::default()
                },
                "--heartbeat-interval: must be at least 1 ms",
            ),
            (
                ServeArgs {
                    heartbeat_interval: Some(100),
                    election_timeout: Some(499),
                    ..Default::default()
                },
                "--election-timeout: 499 ms is less than 5 x --heartbeat-interval (100 ms); use at least 500 ms",
            ),
            (
                ServeArgs {
                    election_timeout: Some(60_000),
                    ..Default::default()
                },
                "--election-timeout: 60000 ms is more than the maximum 50000 ms",
            ),
            (
                ServeArgs {
                    snapshot_log_percent: Some(1001),
                    ..Default::default()
                },
                "--snapshot-log-percent: 1001 is more than the maximum 1000",
            ),
            (
                ServeArgs {
                    max_request_bytes: Some(1023),
                    ..Default::default()
                },
                "--max-request-bytes: 1023 is outside 1024 (1 KiB) to 67108864 (64 MiB)",
            ),
            (
                ServeArgs {
                    max_request_bytes: Some(64 * 1024 * 1024 + 1),
                    ..Default::default()
                },
                "--max-request-bytes: 67108865 is outside 1024 (1 KiB) to 67108864 (64 MiB)",
            ),
            (
                ServeArgs {
                    max_txn_ops: Some(0),
                    ..Default::default()
                },
                "--max-txn-ops: must be at least 1",
            ),
            (
                ServeArgs {
                    snapshot_count: Some(0),
                    ..Default::default()
                },
                "--snapshot-count: must be at least 1",
            ),
            (
                ServeArgs {
                    log_level: Some("verbose".into()),
                    ..Default::default()
                },
                "--log-level: 'verbose' is not one of error, warn, info, debug, trace (or a list of target=level directives, e.g. warn,raft=debug)",
            ),
            (
                ServeArgs {
                    log_level: Some("warn,raft=loud".into()),
                    ..Default::default()
                },
                "--log-level: 'warn,raft=loud' is not one of error, warn, info, debug, trace (or a list of target=level directives, e.g. warn,raft=debug)",
            ),
            (
                ServeArgs {
                    initial_cluster_token: Some(String::new()),
                    ..Default::default()
                },
                "--initial-cluster-token: must not be empty",
            ),
            (
                ServeArgs {
                    listen_client_urls: Some("http://127.0.0.1:2379,http://127.0.0.1:22379".into()),
                    ..Default::default()
                },
                "--listen-client-urls: exactly one URL is supported for now, got 2 (http://127.0.0.1:2379,http://127.0.0.1:22379)",
            ),
            (
                ServeArgs {
                    listen_peer_urls: Some("https://127.0.0.1:2380".into()),
                    ..Default::default()
                },
                "--listen-peer-urls: 'https://127.0.0.1:2380' uses https, but raftkv has no TLS yet; use http://",
            ),
            (
                ServeArgs {
                    listen_client_urls: Some("http://0.0.0.0:2379".into()),
                    ..Default::default()
                },
                "--advertise-client-urls: required when --listen-client-urls is http://0.0.0.0:2379 (a wildcard address cannot be dialled)",
            ),
            (
                ServeArgs {
                    listen_peer_urls: Some("http://[::]:2380".into()),
                    ..Default::default()
                },
                "--initial-advertise-peer-urls: required when --listen-peer-urls is http://[::]:2380 (a wildcard address cannot be dialled)",
            ),
            (
                ServeArgs {
                    initial_advertise_peer_urls: Some("http://0.0.0.0:2380".into()),
                    ..Default::default()
                },
                "--initial-advertise-peer-urls: http://0.0.0.0:2380 is a wildcard address, which cannot be dialled; advertise a reachable address",
            ),
            (
                ServeArgs {
                    name: Some("d".into()),
                    initial_cluster: Some(three()),
                    ..Default::default()
                },
                "--initial-cluster: member 'd' is missing (it lists a, b, c; check --name)",
            ),
            (
                ServeArgs {
                    name: Some("a".into()),
                    initial_cluster: Some(three()),
                    initial_advertise_peer_urls: Some("http://127.0.0.1:3380".into()),
                    ..Default::default()
                },
                "--initial-cluster: member 'a' has http://127.0.0.1:2380 but --initial-advertise-peer-urls is http://127.0.0.1:3380",
            ),
            (
                ServeArgs {
                    name: Some("a".into()),
                    initial_cluster: Some("a=http://127.0.0.1:2380,b=http://127.0.0.1:2380".into()),
                    ..Default::default()
                },
                "--initial-cluster: http://127.0.0.1:2380 is listed for both 'a' and 'b'",
            ),
            (
                ServeArgs {
                    name: Some("a".into()),
                    initial_cluster: Some("a=http://127.0.0.1:2380,a=127.0.0.1:2380".into()),
                    ..Default::default()
                },
                "--initial-cluster: member 'a' lists http://127.0.0.1:2380 twice",
            ),
            (
                ServeArgs {
                    initial_cluster: Some("default=http://127.0.0.1:2380,".into()),
                    ..Default::default()
                },
                "--initial-cluster: empty entry in 'default=http://127.0.0.1:2380,' (expected name=url,name=url,...)",
            ),
            (
                ServeArgs {
                    initial_cluster: Some("http://127.0.0.1:2380".into()),
                    ..Default::default()
                },
                "--initial-cluster: 'http://127.0.0.1:2380' is not name=url",
            ),
            (
                ServeArgs {
                    initial_cluster: Some("=http://127.0.0.1:2380".into()),
                    ..Default::default()
                },
                "--initial-cluster: '=http://127.0.0.1:2380' has an empty member name",
            ),
            (
                ServeArgs {
                    initial_cluster: Some("default=http://127.0.0.1".into()),
                    ..Default::default()
                },
                "--initial-cluster: member 'default': 'http://127.0.0.1' has no port (e.g. http://127.0.0.1:2379)",
            ),
            (
                ServeArgs {
                    name: Some("a,b".into()),
                    ..Default::default()
                },
                "--name: 'a,b' cannot be used (no ',', '=' or surrounding spaces: it must fit in --initial-cluster)",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(resolve_err(args), want);
        }
    }

    #[test]
    fn log_level_accepts_levels_and_directives() {
        for (given, want) in [
            ("INFO", "info"),
            ("trace", "trace"),
            ("warn,raft=debug", "warn,raft=debug"),
            ("server=DEBUG", "server=DEBUG"),
        ] {
            assert_eq!(check_log_level(given), Ok(want.to_owned()), "{given}");
        }
        assert!(check_log_level("raft=").is_err());
        assert!(check_log_level("=debug").is_err());
        assert!(check_log_level("").is_err());
    }

    #[test]
    fn port_zero_only_for_a_single_member() {
        let args = ServeArgs {
            listen_client_urls: Some("http://127.0.0.1:0".into()),
            listen_peer_urls: Some("http://127.0.0.1:0".into()),
            ..Default::default()
        };
        let c = args.resolve_with(no_env).expect("single member on port 0");
        assert_eq!(c.listen_client.port(), 0);
        assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:0"]);
        assert_eq!(c.initial_members().expect("members").len(), 1);

        let args = ServeArgs {
            name: Some("a".into()),
            listen_peer_urls: Some("http://127.0.0.1:0".into()),
            initial_cluster: Some("a=http://127.0.0.1:0,b=http://127.0.0.1:3380".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_err(args),
            "--initial-cluster: member 'a' has http://127.0.0.1:0, but other members cannot dial port 0 (it only suits a single-member cluster)"
        );
    }

    #[test]
    fn existing_member_must_be_listed_too() {
        let args = ServeArgs {
            name: Some("d".into()),
            initial_cluster: Some(three()),
            initial_cluster_state: Some(ClusterState::Existing),
            ..Default::default()
        };
        assert!(resolve_err(args).contains("member 'd' is missing"));
    }

    #[test]
    fn multi_url_member_compares_as_set() {
        let args = ServeArgs {
            name: Some("a".into()),
            initial_cluster: Some(
                "a=http://127.0.0.1:2380,b=http://127.0.0.1:3380,a=http://localhost:2380".into(),
            ),
            initial_advertise_peer_urls: Some(
                "http://localhost:2380, http://127.0.0.1:2380".into(),
            ),
            listen_peer_urls: Some("http://0.0.0.0:2380".into()),
            advertise_client_urls: Some("http://127.0.0.1:2379".into()),
            listen_client_urls: Some("http://0.0.0.0:2379".into()),
            ..Default::default()
        };
        let c = args.resolve_with(no_env).expect("config");
        assert_eq!(c.initial_cluster["a"].len(), 2);
        let members = c.initial_members().expect("members");
        assert_eq!(members[&c.member_id()].name, "a");
        assert_eq!(
            members[&c.member_id()].peer_addr,
            "127.0.0.1:2380".parse().expect("addr")
        );
    }

    #[test]
    fn member_id_matches_etcd() {
        assert_eq!(
            member_id(&["http://127.0.0.1:22380".to_owned()], "tok1"),
            0xfce4ccdb9802da4a
        );
        assert_eq!(
            member_id(&["http://127.0.0.1:23380".to_owned()], "tok3"),
            0xf7d71a44483b95c5
        );
    }

    #[test]
    fn cluster_id_depends_only_on_token() {
        assert_eq!(cluster_id("etcd-cluster"), cluster_id("etcd-cluster"));
        assert_ne!(cluster_id("etcd-cluster"), cluster_id("etcd-cluster2"));
        assert_ne!(cluster_id("tok1"), 0);
        let a = ServeArgs {
            name: Some("a".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("a");
        let b = ServeArgs::default().resolve_with(no_env).expect("b");
        assert_eq!(a.cluster_id(), b.cluster_id());
        assert_eq!(a.cluster_id(), cluster_id("etcd-cluster"));
    }

    #[test]
    fn parse_url_cases() {
        let ok = |u: &str| parse_url(u).expect(u);
        assert_eq!(
            ok("http://127.0.0.1:2379"),
            "127.0.0.1:2379".parse().expect("a")
        );
        assert_eq!(ok("127.0.0.1:2379"), "127.0.0.1:2379".parse().expect("a"));
        assert_eq!(ok("HTTP://10.0.0.1:1"), "10.0.0.1:1".parse().expect("a"));
        assert_eq!(ok("http://[::1]:2380"), "[::1]:2380".parse().expect("a"));
        assert_eq!(
            ok("http://0.0.0.0:2379"),
            "0.0.0.0:2379".parse().expect("a")
        );
        assert_eq!(ok("http://127.0.0.1:0").port(), 0);
        assert!(ok("http://localhost:2379").ip().is_loopback());
        assert_eq!(ok("localhost:7").port(), 7);

        let bad = |u: &str| parse_url(u).expect_err(u).to_string();
        assert_eq!(
            bad("https://127.0.0.1:2379"),
            "'https://127.0.0.1:2379' uses https, but raftkv has no TLS yet; use http://"
        );
        assert_eq!(
            bad("http://127.0.0.1"),
            "'http://127.0.0.1' has no port (e.g. http://127.0.0.1:2379)"
        );
        assert_eq!(
            bad("http://[::1]"),
            "'http://[::1]' has no port (e.g. http://127.0.0.1:2379)"
        );
        assert_eq!(
            bad("http://127.0.0.1:2379/"),
            "'http://127.0.0.1:2379/' must be just http://host:port (found '/')"
        );
        assert_eq!(
            bad("unix://sock:1"),
            "'unix://sock:1' has unsupported scheme 'unix'; use http://host:port"
        );
        assert_eq!(
            bad("http://127.0.0.1:http"),
            "'http://127.0.0.1:http': 'http' is not a port number"
        );
        assert_eq!(
            bad("http://127.0.0.1:70000"),
            "'http://127.0.0.1:70000': '70000' is not a port number"
        );
        assert_eq!(
            bad("http://::1:2379"),
            "'http://::1:2379': an IPv6 host needs brackets, e.g. http://[::1]:2379"
        );
        assert_eq!(bad("http://:2379"), "'http://:2379' has no host");
        assert_eq!(
            bad("http://[zz]:1"),
            "'http://[zz]:1': 'zz' is not an IPv6 address"
        );
        assert!(
            bad("http://no-such-host.invalid:2379")
                .starts_with("'http://no-such-host.invalid:2379': ")
        );
    }

    proptest! {
        #[test]
        fn member_id_ignores_url_order(ports in proptest::collection::btree_set(1u16..65535, 1..5), token in "[a-z0-9-]{0,12}") {
            let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
            let mut reversed = urls.clone();
            reversed.reverse();
            prop_assert_eq!(member_id(&urls, &token), member_id(&reversed, &token));
            prop_assert_ne!(member_id(&urls, &token), 0);
        }

        #[test]
        fn initial_cluster_round_trips(members in proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", 1u16..2000, 1..6)) {
            let text: Vec<String> = members
                .iter()
                .enumerate()
                .map(|(i, (name, port))| format!("{name}=http://10.0.0.{i}:{port}"))
                .collect();
            let parsed = parse_initial_cluster(&text.join(",")).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(parsed.len(), members.len());
            for (i, (name, port)) in members.iter().enumerate() {
                prop_assert_eq!(&parsed[name], &vec![format!("http://10.0.0.{i}:{port}")]);
            }
        }
    }
}
