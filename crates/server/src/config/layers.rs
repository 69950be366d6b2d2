//! Where each setting comes from: the command line, then the environment, then the `--config`
//! TOML file (the first that has it wins); what none of them sets is left to the defaults in
//! [`super::validate`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::flags::ServeArgs;
use super::validate::build;
use super::{ClusterState, ConfigError, ReadMode, ServeConfig, err};

/// Prefix of every environment variable we read.
const ENV_PREFIX: &str = "RAFTKV_";

/// One source of settings (flags, environment or file); `None` means "not set here".
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Layer {
    pub(super) name: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) listen_client_urls: Option<String>,
    pub(super) listen_peer_urls: Option<String>,
    pub(super) advertise_client_urls: Option<String>,
    pub(super) initial_advertise_peer_urls: Option<String>,
    pub(super) initial_cluster: Option<String>,
    pub(super) initial_cluster_state: Option<ClusterState>,
    pub(super) initial_cluster_token: Option<String>,
    pub(super) heartbeat_interval: Option<u64>,
    pub(super) election_timeout: Option<u64>,
    pub(super) snapshot_count: Option<u64>,
    pub(super) snapshot_log_percent: Option<u32>,
    pub(super) read_mode: Option<ReadMode>,
    pub(super) max_request_bytes: Option<u64>,
    pub(super) max_txn_ops: Option<u64>,
    pub(super) watch_progress_notify_interval: Option<String>,
    pub(super) max_watchers_per_stream: Option<u64>,
    pub(super) log_level: Option<String>,
    pub(super) peer_dial_overrides: Option<String>,
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
            watch_progress_notify_interval: self
                .watch_progress_notify_interval
                .or(lower.watch_progress_notify_interval),
            max_watchers_per_stream: self
                .max_watchers_per_stream
                .or(lower.max_watchers_per_stream),
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
            watch_progress_notify_interval: get(env, "watch_progress_notify_interval")?,
            max_watchers_per_stream: get(env, "max_watchers_per_stream")?,
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
            watch_progress_notify_interval: a.watch_progress_notify_interval,
            max_watchers_per_stream: a.max_watchers_per_stream,
            log_level: a.log_level,
            peer_dial_overrides: a.peer_dial_overrides,
        }
    }
}

/// The environment variable for a setting: `RAFTKV_` + its snake_case key in upper case.
pub(super) fn env_var(key: &str) -> String {
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
