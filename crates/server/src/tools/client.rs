//! `raftkv put|get|del|status|members`: a small etcd v3 client, so a raftkv (or etcd) cluster
//! can be poked at without installing etcdctl.
//!
//! The output imitates etcdctl's default ("simple") format so scripts and habits carry over:
//! `put` prints `OK`, `get` prints a key line and a value line per key, `del` the number of
//! deleted keys, `members` etcdctl's `member list` lines. `status` differs on purpose: it asks
//! *every* member (found through the member list) instead of only the given endpoints, and
//! prints a header row, because "what does each member think?" is the question it answers.
//!
//! Errors go to stderr as `Error: <message>` with exit code 1, like etcdctl.

use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Longest time spent dialing one endpoint (etcdctl's dial timeout), so a dead first endpoint
/// leaves time to try the next.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Where to send requests and how long to wait; shared by every client subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Comma-separated endpoints (host:port or http://host:port); tried in order until one answers
    #[arg(
        long,
        env = "RAFTKV_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_name = "ENDPOINTS"
    )]
    pub endpoints: String,

    /// How long the whole command may take (e.g. 5s, 500ms, 1m)
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Which read path `get` takes (etcdctl's `--consistency`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Serializable: the contacted member answers from its own state (fast, possibly stale).
    #[value(name = "s")]
    Serializable,
    /// Linearizable: the answer reflects every write acknowledged before the read began.
    #[value(name = "l")]
    Linearizable,
}

/// The client subcommands; `main.rs` flattens them into top-level `raftkv` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientArgs {
    /// Write a key (prints OK).
    Put {
        /// The key.
        key: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Endpoints and timeout.
        #[command(flatten)]
        connection: Connection,
    },
    /// Read a key, or every key with a prefix (prints key and value lines).
    Get {
        /// The key (or prefix, with --prefix).
        key: String,
        /// Read every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// l (linearizable, the default) or s (serializable: local, possibly stale).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Print only the keys.
        #[arg(long)]
        keys_only: bool,
        /// Return at most N keys (0: no limit).
        #[arg(long, default_value_t = 0, value_name = "N")]
        limit: i64,
        /// Endpoints and timeout.
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a key, or every key with a prefix (prints the number deleted).
    Del {
        /// The key (or prefix, with --prefix).
        key: String,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Endpoints and timeout.
        #[command(flatten)]
        connection: Connection,
    },
    /// Show every member's view of the cluster: leader, term, indexes, size, errors.
    Status {
        /// Endpoints and timeout.
        #[command(flatten)]
        connection: Connection,
    },
    /// List the cluster's members (like `etcdctl member list`).
    Members {
        /// Endpoints and timeout.
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs one client subcommand to completion and maps its outcome to etcdctl's exit codes
/// (0 success, 1 any error).
pub fn run(args: ClientArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = args.connection().timeout;
    let outcome = runtime.block_on(async move {
        match tokio::time::timeout(timeout, execute(args)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClientError(format!(
                "context deadline exceeded (no answer within {})",
                humantime(timeout)
            ))),
        }
    });
    match outcome {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::FAILURE
        }
    }
}

impl ClientArgs {
    fn connection(&self) -> &Connection {
        match self {
            ClientArgs::Put { connection, .. }
            | ClientArgs::Get { connection, .. }
            | ClientArgs::Del { connection, .. }
            | ClientArgs::Status { connection }
            | ClientArgs::Members { connection } => connection,
        }
    }
}

/// A failed command, already worded for the user (the gRPC message, or what went wrong
/// reaching the endpoints).
#[derive(Debug)]
pub struct ClientError(pub String);

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError(status.message().to_owned())
    }
}

/// Executes a command and returns what it prints on stdout.
async fn execute(args: ClientArgs) -> Result<String, ClientError> {
    let endpoints = parse_endpoints(&args.connection().endpoints)?;
    match args {
        ClientArgs::Put { key, value, .. } => put(&endpoints, key, value).await,
        ClientArgs::Get {
            key,
            prefix,
            consistency,
            keys_only,
            limit,
            ..
        } => {
            let request = pb::RangeRequest {
                range_end: if prefix {
                    prefix_end(key.as_bytes())
                } else {
                    Bytes::new()
                },
                key: Bytes::from(key),
                limit,
                serializable: consistency == Consistency::Serializable,
                keys_only,
                ..Default::default()
            };
            get(&endpoints, request, keys_only).await
        }
        ClientArgs::Del { key, prefix, .. } => {
            let request = pb::DeleteRangeRequest {
                range_end: if prefix {
                    prefix_end(key.as_bytes())
                } else {
                    Bytes::new()
                },
                key: Bytes::from(key),
                prev_kv: false,
            };
            delete(&endpoints, request).await
        }
        ClientArgs::Status { .. } => status(&endpoints).await,
        ClientArgs::Members { .. } => members(&endpoints).await,
    }
}

/// Splits `--endpoints` into dialable `http://host:port` URLs.
pub fn parse_endpoints(text: &str) -> Result<Vec<String>, ClientError> {
    let mut urls = Vec::new();
    for raw in text.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        urls.push(endpoint_url(raw)?);
    }
    if urls.is_empty() {
        return Err(ClientError("--endpoints: no endpoint given".into()));
    }
    Ok(urls)
}

/// `host:port` or `http://host:port` as a URL tonic can dial; refuses what raftkv cannot speak.
pub fn endpoint_url(raw: &str) -> Result<String, ClientError> {
    let lower = raw.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &raw["http://".len()..]
    } else if lower.starts_with("https://") {
        return Err(ClientError(format!(
            "--endpoints: '{raw}' uses https, but this client has no TLS support; use http://"
        )));
    } else if lower.contains("://") {
        return Err(ClientError(format!(
            "--endpoints: '{raw}' has an unsupported scheme; use host:port or http://host:port"
        )));
    } else {
        raw
    };
    let rest = rest.trim_end_matches('/');
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(ClientError(format!(
            "--endpoints: '{raw}' is not host:port (e.g. 127.0.0.1:2379)"
        )));
    }
    Ok(format!("http://{rest}"))
}

/// Opens a channel to one endpoint, failing within the dial timeout if nobody answers.
pub async fn connect(url: &str) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|error| ClientError(format!("{url}: {error}")))?
        .connect_timeout(DIAL_TIMEOUT)
        .tcp_nodelay(true);
    match tokio::time::timeout(DIAL_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(ClientError(format!(
            "cannot connect to {url}: {}",
            error_chain(&error)
        ))),
        Err(_) => Err(ClientError(format!(
            "cannot connect to {url}: no answer within {}",
            humantime(DIAL_TIMEOUT)
        ))),
    }
}

/// Connects to the first endpoint that answers, starting at `start` and wrapping around.
async fn connect_any(endpoints: &[String], start: usize) -> Result<(usize, Channel), ClientError> {
    let mut failures = Vec::new();
    for offset in 0..endpoints.len() {
        let index = (start + offset) % endpoints.len();
        match connect(&endpoints[index]).await {
            Ok(channel) => return Ok((index, channel)),
            Err(error) => failures.push(error.0),
        }
    }
    Err(ClientError(failures.join("; ")))
}

/// A process-unique idempotency key for one write: the server applies writes that carry the
/// same key at most once, which makes retrying after a lost answer safe.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "raftkv-cli-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A request carrying the idempotency key in `raftkv-request-id` metadata.
fn with_request_id<T>(message: T, id: &str) -> Result<tonic::Request<T>, ClientError> {
    let mut request = tonic::Request::new(message);
    let value = id
        .parse()
        .map_err(|_| ClientError(format!("internal: bad request id {id:?}")))?;
    request
        .metadata_mut()
        .insert(crate::member::sessions::REQUEST_ID_METADATA, value);
    Ok(request)
}

/// Sends a write with an idempotency key; on `Unavailable` (leader change, lost connection)
/// sends it once more with the same key, to the next endpoint if there is one.
async fn write_with_retry<T, R, F, Fut>(
    endpoints: &[String],
    message: T,
    mut call: F,
) -> Result<R, ClientError>
where
    T: Clone,
    F: FnMut(KvClient<Channel>, tonic::Request<T>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let id = request_id();
    let (index, channel) = connect_any(endpoints, 0).await?;
    let first = call(
        KvClient::new(channel.clone()),
        with_request_id(message.clone(), &id)?,
    )
    .await;
    match first {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == tonic::Code::Unavailable => {
            let channel = if endpoints.len() > 1 {
                connect_any(endpoints, index + 1).await?.1
            } else {
                channel
            };
            let second = call(KvClient::new(channel), with_request_id(message, &id)?).await?;
            Ok(second.into_inner())
        }
        Err(status) => Err(status.into()),
    }
}

async fn put(endpoints: &[String], key: String, value: String) -> Result<String, ClientError> {
    let request = pb::PutRequest {
        key: Bytes::from(key),
        value: Bytes::from(value),
        ..Default::default()
    };
    write_with_retry(endpoints, request, |mut client, request| async move {
        client.put(request).await
    })
    .await?;
    Ok("OK\n".to_owned())
}

async fn delete(
    endpoints: &[String],
    request: pb::DeleteRangeRequest,
) -> Result<String, ClientError> {
    let response = write_with_retry(endpoints, request, |mut client, request| async move {
        client.delete_range(request).await
    })
    .await?;
    Ok(format!("{}\n", response.deleted))
}

async fn get(
    endpoints: &[String],
    request: pb::RangeRequest,
    keys_only: bool,
) -> Result<String, ClientError> {
    // A read is safe to repeat anywhere: on Unavailable try every endpoint once.
    let mut last = None;
    for start in 0..endpoints.len() {
        let (index, channel) = match connect_any(endpoints, start).await {
            Ok(found) => found,
            Err(error) => return Err(last.unwrap_or(error)),
        };
        match KvClient::new(channel).range(request.clone()).await {
            Ok(response) => {
                let mut out = String::new();
                for kv in response.into_inner().kvs {
                    out.push_str(&String::from_utf8_lossy(&kv.key));
                    out.push('\n');
                    if !keys_only {
                        out.push_str(&String::from_utf8_lossy(&kv.value));
                    }
                    out.push('\n');
                }
                return Ok(out);
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                last = Some(ClientError(format!(
                    "{}: {}",
                    endpoints[index],
                    status.message()
                )));
                if index + 1 >= endpoints.len() {
                    break;
                }
            }
            Err(status) => return Err(status.into()),
        }
    }
    Err(last.unwrap_or_else(|| ClientError("no endpoint answered".into())))
}

/// The member list from the first endpoint that answers it.
async fn member_list(endpoints: &[String]) -> Result<(String, Vec<pb::Member>), ClientError> {
    let mut failures = Vec::new();
    for url in endpoints {
        let channel = match connect(url).await {
            Ok(channel) => channel,
            Err(error) => {
                failures.push(error.0);
                continue;
            }
        };
        match ClusterClient::new(channel)
            .member_list(pb::MemberListRequest::default())
            .await
        {
            Ok(response) => return Ok((url.clone(), response.into_inner().members)),
            Err(status) => failures.push(format!("{url}: {}", status.message())),
        }
    }
    Err(ClientError(failures.join("; ")))
}

async fn members(endpoints: &[String]) -> Result<String, ClientError> {
    let (_, members) = member_list(endpoints).await?;
    Ok(members.iter().map(member_line).collect())
}

/// One `etcdctl member list` line.
pub fn member_line(member: &pb::Member) -> String {
    format!(
        "{:x}, {}, {}, {}, {}, {}\n",
        member.id,
        if member.name.is_empty() {
            "unstarted"
        } else {
            "started"
        },
        member.name,
        member.peer_ur_ls.join(","),
        member.client_ur_ls.join(","),
        member.is_learner
    )
}

/// Asks one member for its Status.
pub async fn member_status(url: &str) -> Result<pb::StatusResponse, ClientError> {
    let channel = connect(url).await?;
    let response = MaintenanceClient::new(channel)
        .status(pb::StatusRequest {})
        .await?;
    Ok(response.into_inner())
}

/// The columns of `raftkv status`'s table.
const STATUS_COLUMNS: [&str; 10] = [
    "ENDPOINT",
    "ID",
    "NAME",
    "LEADER",
    "IS LEADER",
    "RAFT TERM",
    "RAFT INDEX",
    "APPLIED INDEX",
    "DB SIZE",
    "ERRORS",
];

async fn status(endpoints: &[String]) -> Result<String, ClientError> {
    let (_, members) = member_list(endpoints).await?;
    let mut rows = vec![STATUS_COLUMNS.map(str::to_owned).to_vec()];
    let mut unreachable = Vec::new();
    // Ask every member at once, so one dead member costs one dial timeout, not one each.
    let queries = members.iter().map(|member| async move {
        match member.client_ur_ls.first() {
            Some(url) => (member, Some(member_status(url).await)),
            None => (member, None),
        }
    });
    for (member, answer) in futures_join_all(queries).await {
        let endpoint = member
            .client_ur_ls
            .first()
            .map_or("-", String::as_str)
            .trim_start_matches("http://")
            .to_owned();
        let name = if member.name.is_empty() {
            "-".to_owned()
        } else {
            member.name.clone()
        };
        match answer {
            Some(Ok(status)) => rows.push(answered_row(endpoint, member.id, name, status)),
            Some(Err(error)) => {
                unreachable.push(format!("{} ({endpoint})", member.name));
                rows.push(unreachable_row(endpoint, member.id, name, &error.0));
            }
            None => {
                unreachable.push(format!("{:x} (no client URL yet)", member.id));
                rows.push(unreachable_row(
                    endpoint,
                    member.id,
                    name,
                    "unstarted: no client URL published yet",
                ));
            }
        }
    }
    let table = render_rows(&rows);
    if unreachable.is_empty() {
        Ok(table)
    } else {
        print!("{table}");
        Err(ClientError(format!(
            "{} of {} members unreachable: {}",
            unreachable.len(),
            members.len(),
            unreachable.join(", ")
        )))
    }
}

/// A status row for a member that answered (its own header's id wins over the member list's).
fn answered_row(
    endpoint: String,
    member_id: u64,
    name: String,
    status: pb::StatusResponse,
) -> Vec<String> {
    let id = status.header.map_or(member_id, |header| header.member_id);
    vec![
        endpoint,
        format!("{id:x}"),
        name,
        if status.leader == 0 {
            "none".to_owned()
        } else {
            format!("{:x}", status.leader)
        },
        (status.leader != 0 && status.leader == id).to_string(),
        status.raft_term.to_string(),
        status.raft_index.to_string(),
        status.raft_applied_index.to_string(),
        humanize_bytes(status.db_size.max(0) as u64),
        status.errors.join(", "),
    ]
}

fn unreachable_row(endpoint: String, id: u64, name: String, error: &str) -> Vec<String> {
    let mut row = vec![endpoint, format!("{id:x}"), name];
    row.extend(std::iter::repeat_n("-".to_owned(), 6));
    row.push(format!("unreachable: {error}"));
    row
}

/// Runs futures concurrently on the current task and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// etcdctl's simple format separates columns with commas; the header row makes the columns
/// self-describing, and padding after each comma keeps them aligned.
fn render_rows(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if column + 1 < row.len() {
                line.push(',');
                let pad = widths[column].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// etcd's range end for "every key starting with `key`": the key with its last byte below
/// 0xff incremented (trailing 0xff bytes dropped); `\0` ("to the end") if there is none.
pub fn prefix_end(key: &[u8]) -> Bytes {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// Sizes as etcdctl prints them (go-humanize's SI `Bytes`: `9 B`, `20 kB`, `1.5 MB`).
pub fn humanize_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let mut exponent = 0;
    let mut scale = 1u64;
    while exponent + 1 < UNITS.len() && size / scale >= 1000 {
        scale *= 1000;
        exponent += 1;
    }
    let value = ((size as f64 / scale as f64) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

/// Parses `5s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 5s, 500ms, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 * 365.0 {
        return Err(format!("'{text}' must be positive and at most a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn humantime(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// A transport error with its causes (tonic's top-level message is just "transport error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_cases() {
        assert_eq!(&prefix_end(b"foo")[..], b"fop");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
        assert_eq!(&prefix_end(b"")[..], b"\0");
    }

    #[test]
    fn humanize_like_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(1_500_000), "1.5 MB");
        assert_eq!(humanize_bytes(2_147_483_648), "2.1 GB");
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoints("127.0.0.1:2379, http://localhost:22379").expect("ok"),
            vec!["http://127.0.0.1:2379", "http://localhost:22379"]
        );
        assert!(parse_endpoints("https://127.0.0.1:2379").is_err());
        assert!(parse_endpoints("127.0.0.1").is_err());
        assert!(parse_endpoints(",").is_err());
        assert!(parse_endpoints("unix://x:1").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn member_line_like_etcdctl() {
        let member = pb::Member {
            id: 0x8e9e05c52164694d,
            name: "m1".into(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
            client_ur_ls: vec!["http://127.0.0.1:2379".into()],
            is_learner: false,
        };
        assert_eq!(
            member_line(&member),
            "8e9e05c52164694d, started, m1, http://127.0.0.1:2380, http://127.0.0.1:2379, false\n"
        );
    }

    #[test]
    fn request_ids_are_unique() {
        assert_ne!(request_id(), request_id());
    }
}
