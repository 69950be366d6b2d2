//! A harness for integration tests that run real `raftkv serve` processes on loopback.
//!
//! Each member gets free ports, its own temporary directory (data + log file) and fast Raft
//! timing (50 ms heartbeat, 500 ms election timeout). Tests never sleep and hope: they poll a
//! condition until a generous deadline ([`eventually`]). If a test panics, dropping the
//! [`Cluster`] prints the tail of every member's log; it always kills the processes it started.

#![allow(dead_code)]

use etcdpb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// The generous deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Heartbeat and election timeout of test members (milliseconds).
pub const HEARTBEAT_MS: u64 = 50;
/// See [`HEARTBEAT_MS`].
pub const ELECTION_MS: u64 = 500;

/// The `raftkv` binary under test.
pub fn raftkv() -> &'static str {
    env!("CARGO_BIN_EXE_raftkv")
}

/// `n` distinct free loopback ports (all held at once while picking, so none repeats).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local addr").port())
        .collect()
}

/// A cluster token no other test (or test run) uses.
pub fn unique_token(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "test-{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with the last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) => error,
            Err(_) => "the check itself took over 5 s".to_owned(),
        };
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {timeout:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A lazily connected channel to `http://127.0.0.1:port` (calls fail with Unavailable while
/// the member is down, which is what polling wants).
pub fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// One member process of a test cluster.
pub struct Member {
    /// `--name`.
    pub name: String,
    /// Client (gRPC) port.
    pub client_port: u16,
    /// Peer (Raft) port.
    pub peer_port: u16,
    /// Holds `data/` and `member.log`.
    pub dir: tempfile::TempDir,
    /// The `serve` arguments, reused on restart.
    pub args: Vec<String>,
    /// The running process, if any.
    pub child: Option<Child>,
    starts: usize,
}

impl Member {
    /// A member description (not started).
    pub fn new(name: &str, client_port: u16, peer_port: u16) -> Member {
        let dir = tempfile::Builder::new()
            .prefix(&format!("raftkv-test-{name}-"))
            .tempdir()
            .expect("tempdir");
        Member {
            name: name.to_owned(),
            client_port,
            peer_port,
            dir,
            args: Vec::new(),
            child: None,
            starts: 0,
        }
    }

    /// Where this member keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where this member's stdout and stderr go (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("member.log")
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Sets the `serve` command line: fast timing, this member's ports and data directory,
    /// plus `extra` (e.g. `--initial-cluster-state existing`).
    pub fn configure(&mut self, initial_cluster: &str, token: &str, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--listen-client-urls".into(),
            self.client_url(),
            "--listen-peer-urls".into(),
            self.peer_url(),
            "--initial-cluster".into(),
            initial_cluster.to_owned(),
            "--initial-cluster-token".into(),
            token.to_owned(),
            "--heartbeat-interval".into(),
            HEARTBEAT_MS.to_string(),
            "--election-timeout".into(),
            ELECTION_MS.to_string(),
            "--log-level".into(),
            "info".into(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        self.args = args;
    }

    /// Starts the process with the configured command line (the same one on every restart).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open member log");
        writeln!(log, "===== start {} of {} =====", self.starts, self.name).expect("log");
        let stdout = log.try_clone().expect("clone log");
        let child = Command::new(raftkv())
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("spawn raftkv serve");
        self.child = Some(child);
    }

    /// Whether the process has exited; takes the child if so.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// kill -9, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit (kill -9 and panic after the deadline).
    pub async fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("member is running");
        sigterm(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("{} did not exit within {DEADLINE:?} of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A KV client (lazily connected).
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(channel(self.client_port))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// A Maintenance client (lazily connected).
    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(channel(self.client_port))
    }

    /// A Cluster client (lazily connected).
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(channel(self.client_port))
    }

    /// This member's Status, or the error as text.
    pub async fn status(&self) -> Result<pb::StatusResponse, String> {
        let mut client = self.maintenance();
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(Duration::from_secs(2));
        client
            .status(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("{}: {status}", self.name))
    }

    /// The last `lines` lines of this member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("child pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
}

/// The last `lines` lines of a file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for a child to exit (polling) and collects its output; kills it and panics after
/// `timeout`.
pub async fn wait_with_output(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "process did not exit within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster of `raftkv serve` processes.
pub struct Cluster {
    /// The members, in `--initial-cluster` order (m1, m2, ...).
    pub members: Vec<Member>,
    /// `--initial-cluster-token`.
    pub token: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
}

impl Cluster {
    /// Starts `n` members and waits until they agree on a leader. Retries with new ports if
    /// a port picked as free was taken in the meantime.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// [`Cluster::start`] with `extra` flags for every member.
    pub async fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cluster = Cluster::spawn_with(n, extra);
            match cluster.wait_until_listening().await {
                Ok(()) => {
                    cluster.wait_for_leader().await;
                    return cluster;
                }
                Err(error) if attempt < 5 && error.contains("cannot listen") => {
                    eprintln!("port clash, retrying with new ports: {error}");
                    cluster.kill_all();
                }
                Err(error) => panic!("cluster did not start: {error}"),
            }
        }
    }

    /// Starts `n` members without waiting for anything.
    pub fn spawn(n: usize) -> Cluster {
        Cluster::spawn_with(n, &[])
    }

    /// [`Cluster::spawn`] with `extra` flags for every member.
    pub fn spawn_with(n: usize, extra: &[&str]) -> Cluster {
        let ports = free_ports(2 * n);
        let mut members: Vec<Member> = (0..n)
            .map(|index| {
                Member::new(
                    &format!("m{}", index + 1),
                    ports[2 * index],
                    ports[2 * index + 1],
                )
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = unique_token("cluster");
        for member in &mut members {
            member.configure(&initial_cluster, &token, extra);
            member.start();
        }
        Cluster {
            members,
            token,
            initial_cluster,
        }
    }

    /// Waits until every member answers Status (or one exits: its log tail is the error).
    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut answering = 0;
            for member in &mut self.members {
                if let Some(status) = member.exited() {
                    return Err(format!(
                        "{} exited ({status}): {}",
                        member.name,
                        member.log_tail(20)
                    ));
                }
                if member.status().await.is_ok() {
                    answering += 1;
                }
            }
            if answering == self.members.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("members did not answer Status in time".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Indexes of the members whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].child.is_some())
            .collect()
    }

    /// Waits until every running member reports the same leader, itself a running member;
    /// returns the leader's index.
    pub async fn wait_for_leader(&self) -> usize {
        let running = self.running();
        eventually("a leader every running member knows", DEADLINE, || {
            let running = running.clone();
            async move {
                let mut leaders = Vec::new();
                let mut ids = Vec::new();
                for index in &running {
                    let status = self.members[*index].status().await?;
                    leaders.push(status.leader);
                    ids.push(status.header.map_or(0, |header| header.member_id));
                }
                let leader = leaders[0];
                if leader == 0 || leaders.iter().any(|other| *other != leader) {
                    return Err(format!("leaders reported: {leaders:x?}"));
                }
                ids.iter()
                    .position(|id| *id == leader)
                    .map(|at| running[at])
                    .ok_or_else(|| format!("leader {leader:x} is not a running member"))
            }
        })
        .await
    }

    /// The member id of member `index` (from its Status header).
    pub async fn member_id(&self, index: usize) -> u64 {
        eventually("member id", DEADLINE, || async {
            let status = self.members[index].status().await?;
            Ok(status.header.map_or(0, |header| header.member_id))
        })
        .await
    }

    /// `--endpoints` value for etcdctl: every member's `127.0.0.1:port`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|member| format!("127.0.0.1:{}", member.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// kill -9 every member.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// Prints the tail of every member's log (for failures).
    pub fn dump_logs(&self) {
        for member in &self.members {
            eprintln!(
                "----- {} ({}) last lines of {} -----\n{}",
                member.name,
                member.client_url(),
                member.log_path().display(),
                member.log_tail(60)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.kill_all();
    }
}

/// Puts `key = value` through member `client`, retrying `Unavailable` (leader changes) with
/// the same idempotency key until the deadline; returns the response.
pub async fn put_acknowledged(
    client: &mut KvClient<Channel>,
    key: &str,
    value: &str,
) -> pb::PutResponse {
    let id = unique_token("put");
    let what = format!("put {key}");
    eventually(&what, DEADLINE, || {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            let mut request = tonic::Request::new(pb::PutRequest {
                key: key.to_owned().into(),
                value: value.to_owned().into(),
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("raftkv-request-id", id.parse().expect("ascii"));
            match client.put(request).await {
                Ok(response) => Ok(response.into_inner()),
                Err(status) if status.code() == tonic::Code::Unavailable => Err(status.to_string()),
                Err(status) => panic!("put {key}: {status}"),
            }
        }
    })
    .await
}

/// A Range of one key; returns its value if present.
pub async fn get(
    client: &mut KvClient<Channel>,
    key: &str,
    serializable: bool,
) -> Result<Option<Vec<u8>>, tonic::Status> {
    let response = client
        .range(pb::RangeRequest {
            key: key.to_owned().into(),
            serializable,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(response.kvs.first().map(|kv| kv.value.to_vec()))
}
