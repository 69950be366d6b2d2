//! The defaults (etcd's, where etcd has the setting) and every check, on the merged layers:
//! each error is one line that names the flag at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::layers::Layer;
use super::urls::{normalise_url, parse_url, split_url};
use super::{ClusterState, ConfigError, ReadMode, ServeConfig, ctx, err};

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
/// etcd's default `--experimental-watch-progress-notify-interval` (10 minutes).
const DEFAULT_WATCH_PROGRESS_SECS: u64 = 600;
/// Below this, progress notifications would be a stream of their own.
const MIN_WATCH_PROGRESS: Duration = Duration::from_millis(100);
/// The default `--max-watchers-per-stream`.
const DEFAULT_MAX_WATCHERS_PER_STREAM: u64 = 100_000;
/// Our default `--log-level`: quiet unless something is wrong.
const DEFAULT_LOG_LEVEL: &str = "warn";
/// The accepted `--log-level` values, most to least severe.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Fills defaults into the merged settings and checks every rule. The steps run in this order,
/// so that of several problems the same one is reported first whatever the layout of the code.
pub(super) fn build(l: Layer) -> Result<ServeConfig, ConfigError> {
    let name = check_name(l.name)?;
    let data_dir = check_data_dir(l.data_dir, &name)?;
    let (heartbeat_ms, election_ms) = check_timing(l.heartbeat_interval, l.election_timeout)?;
    let (snapshot_count, snapshot_log_percent) =
        check_snapshots(l.snapshot_count, l.snapshot_log_percent)?;
    let (max_request_bytes, max_txn_ops) = check_limits(l.max_request_bytes, l.max_txn_ops)?;
    let (watch_progress_notify_interval, max_watchers_per_stream) = check_watch(
        l.watch_progress_notify_interval.as_deref(),
        l.max_watchers_per_stream,
    )?;
    let log_level = check_log_level(l.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL))?;
    let peer_dial_overrides = parse_dial_overrides(l.peer_dial_overrides.as_deref())?;
    let token = l
        .initial_cluster_token
        .unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
    if token.is_empty() {
        return err("--initial-cluster-token: must not be empty");
    }
    let urls = check_urls(
        l.listen_client_urls.as_deref(),
        l.listen_peer_urls.as_deref(),
        l.advertise_client_urls.as_deref(),
        l.initial_advertise_peer_urls.as_deref(),
    )?;
    let initial_cluster = check_initial_cluster(
        l.initial_cluster.as_deref(),
        &name,
        &urls.advertise_peer_urls,
    )?;

    Ok(ServeConfig {
        name,
        data_dir,
        listen_client: urls.listen_client,
        listen_peer: urls.listen_peer,
        advertise_client_urls: urls.advertise_client_urls,
        advertise_peer_urls: urls.advertise_peer_urls,
        initial_cluster,
        initial_cluster_state: l.initial_cluster_state.unwrap_or(ClusterState::New),
        initial_cluster_token: token,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        snapshot_count,
        snapshot_log_percent,
        read_mode: l.read_mode.unwrap_or(ReadMode::ReadIndex),
        max_request_bytes: to_usize("--max-request-bytes", max_request_bytes)?,
        max_txn_ops: to_usize("--max-txn-ops", max_txn_ops)?,
        watch_progress_notify_interval,
        max_watchers_per_stream: to_usize("--max-watchers-per-stream", max_watchers_per_stream)?,
        log_level,
        peer_dial_overrides,
    })
}

/// `--name`, defaulted: it must fit in `--initial-cluster` as a `name=url` key.
fn check_name(name: Option<String>) -> Result<String, ConfigError> {
    let name = name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    if name.is_empty() {
        return err("--name: must not be empty");
    }
    if name.contains([',', '=']) || name.trim() != name {
        return err(format!(
            "--name: '{name}' cannot be used (no ',', '=' or surrounding spaces: it must fit in --initial-cluster)"
        ));
    }
    Ok(name)
}

/// `--data-dir`, defaulting to `NAME.raftkv`.
fn check_data_dir(data_dir: Option<PathBuf>, name: &str) -> Result<PathBuf, ConfigError> {
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.raftkv")));
    if data_dir.as_os_str().is_empty() {
        return err("--data-dir: must not be empty");
    }
    Ok(data_dir)
}

/// `--heartbeat-interval` and `--election-timeout` in milliseconds: an election timeout of at
/// least five heartbeats and at most [`MAX_ELECTION_MS`].
fn check_timing(heartbeat: Option<u64>, election: Option<u64>) -> Result<(u64, u64), ConfigError> {
    let heartbeat_ms = heartbeat.unwrap_or(DEFAULT_HEARTBEAT_MS);
    if heartbeat_ms == 0 {
        return err("--heartbeat-interval: must be at least 1 ms");
    }
    let election_ms = election.unwrap_or(DEFAULT_ELECTION_MS);
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
    Ok((heartbeat_ms, election_ms))
}

/// `--snapshot-count` and `--snapshot-log-percent`.
fn check_snapshots(
    count: Option<u64>,
    log_percent: Option<u32>,
) -> Result<(u64, u32), ConfigError> {
    let snapshot_count = count.unwrap_or(DEFAULT_SNAPSHOT_COUNT);
    if snapshot_count == 0 {
        return err("--snapshot-count: must be at least 1");
    }
    let snapshot_log_percent = log_percent.unwrap_or(DEFAULT_SNAPSHOT_LOG_PERCENT);
    if snapshot_log_percent > MAX_SNAPSHOT_LOG_PERCENT {
        return err(format!(
            "--snapshot-log-percent: {snapshot_log_percent} is more than the maximum {MAX_SNAPSHOT_LOG_PERCENT}"
        ));
    }
    Ok((snapshot_count, snapshot_log_percent))
}

/// `--max-request-bytes` and `--max-txn-ops`.
fn check_limits(
    max_request_bytes: Option<u64>,
    max_txn_ops: Option<u64>,
) -> Result<(u64, u64), ConfigError> {
    let max_request_bytes = max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    if !(MIN_MAX_REQUEST_BYTES..=MAX_MAX_REQUEST_BYTES).contains(&max_request_bytes) {
        return err(format!(
            "--max-request-bytes: {max_request_bytes} is outside {MIN_MAX_REQUEST_BYTES} (1 KiB) to {MAX_MAX_REQUEST_BYTES} (64 MiB)"
        ));
    }
    let max_txn_ops = max_txn_ops.unwrap_or(DEFAULT_MAX_TXN_OPS);
    if max_txn_ops == 0 {
        return err("--max-txn-ops: must be at least 1");
    }
    Ok((max_request_bytes, max_txn_ops))
}

/// `--watch-progress-notify-interval` (a Go duration, at least [`MIN_WATCH_PROGRESS`]) and
/// `--max-watchers-per-stream` (at least 1).
fn check_watch(
    interval: Option<&str>,
    max_watchers: Option<u64>,
) -> Result<(Duration, u64), ConfigError> {
    let interval = match interval {
        None => Duration::from_secs(DEFAULT_WATCH_PROGRESS_SECS),
        Some(text) => ctx("--watch-progress-notify-interval", parse_go_duration(text))?,
    };
    if interval < MIN_WATCH_PROGRESS {
        return err(format!(
            "--watch-progress-notify-interval: {interval:?} is less than the minimum {MIN_WATCH_PROGRESS:?}"
        ));
    }
    let max_watchers = max_watchers.unwrap_or(DEFAULT_MAX_WATCHERS_PER_STREAM);
    if max_watchers == 0 {
        return err("--max-watchers-per-stream: must be at least 1");
    }
    Ok((interval, max_watchers))
}

/// Parses a duration as Go's `time.ParseDuration` writes it (etcd's flags take those): numbers
/// with an optional fraction, each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`),
/// as in `10m`, `1.5s` or `1h2m`; a bare `0` is zero.
pub(super) fn parse_go_duration(text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "'{text}' is not a duration (e.g. 10m, 30s, 1m30s, 500ms)"
        ))
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Parses `--peer-dial-overrides` (`name=host:port,...`; empty entries are skipped).
fn parse_dial_overrides(s: Option<&str>) -> Result<BTreeMap<String, SocketAddr>, ConfigError> {
    let mut peer_dial_overrides = BTreeMap::new();
    for pair in s
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
    Ok(peer_dial_overrides)
}

/// The listen addresses and advertised URLs, checked.
struct Urls {
    listen_client: SocketAddr,
    listen_peer: SocketAddr,
    advertise_client_urls: Vec<String>,
    advertise_peer_urls: Vec<String>,
}

/// The listen flags (defaulted) and the advertise flags (defaulting to the listen URLs).
fn check_urls(
    listen_client: Option<&str>,
    listen_peer: Option<&str>,
    advertise_client: Option<&str>,
    advertise_peer: Option<&str>,
) -> Result<Urls, ConfigError> {
    let client_flag = "--listen-client-urls";
    let peer_flag = "--listen-peer-urls";
    let (listen_client, listen_client_url) = single_listen_url(
        client_flag,
        listen_client.unwrap_or(DEFAULT_LISTEN_CLIENT_URL),
    )?;
    let (listen_peer, listen_peer_url) =
        single_listen_url(peer_flag, listen_peer.unwrap_or(DEFAULT_LISTEN_PEER_URL))?;
    let advertise_client_urls = advertise_urls(
        "--advertise-client-urls",
        advertise_client,
        client_flag,
        listen_client,
        &listen_client_url,
    )?;
    let advertise_peer_urls = advertise_urls(
        "--initial-advertise-peer-urls",
        advertise_peer,
        peer_flag,
        listen_peer,
        &listen_peer_url,
    )?;
    Ok(Urls {
        listen_client,
        listen_peer,
        advertise_client_urls,
        advertise_peer_urls,
    })
}

/// `--initial-cluster` (defaulting to this member alone): no port 0 when other members must
/// dial it, and this member listed with exactly its advertised peer URLs.
fn check_initial_cluster(
    given: Option<&str>,
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let initial_cluster = match given {
        Some(s) => parse_initial_cluster(s)?,
        None => BTreeMap::from([(name.to_owned(), advertise_peer_urls.to_vec())]),
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
    // Both states list this member: `new` because every bootstrap member is listed, `existing`
    // because `etcdctl member add` prints the member list including the newcomer.
    let Some(listed) = initial_cluster.get(name) else {
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
    Ok(initial_cluster)
}

/// Checks `--log-level`: one of [`LOG_LEVELS`] (any case; returned in lower case), or a
/// comma-separated list of `target=level` / `level` directives (as `tracing` filters take, e.g.
/// `warn,raft=debug`) for finer control. Checking here turns a typo into an error instead of the
/// logger silently falling back to its default.
pub(super) fn check_log_level(s: &str) -> Result<String, ConfigError> {
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
pub(super) fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
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
