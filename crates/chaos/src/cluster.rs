//! Real `raftkv serve` processes on loopback, each behind a proxy per directed peer link.
//!
//! The harness owns the processes (start, kill -9, SIGSTOP/SIGCONT, restart with the same
//! command line) and the proxies (see [`crate::proxy`]), so every fault the nemesis injects is a
//! fault of real processes, a real disk and real sockets, with no root needed.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcdpb::etcdserverpb as pb;
use tonic::transport::{Channel, Endpoint};

use crate::proxy::{LinkMode, Proxy};
use crate::rng::Rng;

/// Finds the `raftkv` binary to test: `$RAFTKV_BIN`, else a `raftkv` next to the current
/// executable or in its parent directory (`target/release/` for both `cargo run` and the test
/// binaries in `target/release/deps/`), else builds it with cargo.
///
/// A stale binary next to the executable is possible when only `chaos` was rebuilt; the path
/// and its modification time are printed so a reader of the output can tell.
pub fn locate_raftkv() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAFTKV_BIN") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..2 {
            let Some(current) = dir else { break };
            let candidate = current.join("raftkv");
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = current.parent().map(Path::to_path_buf);
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    println!("chaos: building raftkv: cargo build --release -p server --bin raftkv");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "server", "--bin", "raftkv"])
        .current_dir(&workspace)
        .status()?;
    if !status.success() {
        return Err(io::Error::other("cargo build of raftkv failed"));
    }
    Ok(workspace.join("target/release/raftkv"))
}

/// Ports handed out by this process, so concurrent clusters (parallel tests) never share one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Picks a free loopback port for a member listener.
///
/// Member ports come from 20000–32767, below Linux's ephemeral range (32768–60999): a member
/// that is down for a while must be able to bind its port again on restart, and a port from the
/// ephemeral range could meanwhile be taken as the local end of some outgoing connection.
fn pick_port(rng: &mut Rng) -> io::Result<u16> {
    let mut used = USED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = 20_000 + rng.below(12_768) as u16;
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return Ok(port);
        }
    }
    Err(io::Error::other("no free loopback port found"))
}

/// How to run the cluster's members.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of members (3 or 5 in practice).
    pub nodes: usize,
    /// Directory holding each member's data directory and log file.
    pub run_dir: PathBuf,
    /// The `raftkv` binary.
    pub binary: PathBuf,
    /// `--heartbeat-interval` in ms; short so that failover happens many times per run.
    pub heartbeat_ms: u64,
    /// `--election-timeout` in ms.
    pub election_ms: u64,
    /// `--snapshot-count`; small so that snapshots and log compaction happen during a run.
    pub snapshot_count: u64,
    /// `--initial-cluster-token`; distinct per run so separate runs never mix.
    pub token: String,
    /// `--log-level` for the members.
    pub log_level: String,
}

/// One member process and everything needed to restart it identically.
#[derive(Debug)]
pub struct Member {
    /// `m1`, `m2`, ...
    pub name: String,
    /// Where clients reach it (never proxied).
    pub client_addr: SocketAddr,
    /// Where it listens for peers (only its proxies dial this).
    pub peer_addr: SocketAddr,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
    /// Its stdout and stderr, appended across restarts.
    pub log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Whether the member is part of the cluster configuration (false between a MemberRemove and
    /// its MemberAdd).
    in_config: bool,
    /// `--initial-cluster-state existing` and the member list it joined with, once re-added.
    rejoin_cluster: Option<String>,
    /// The member id, learnt from its Status once it answered.
    id: Option<u64>,
}

impl Member {
    /// The peer URL announced for this member; it determines the member id.
    pub fn peer_url(&self) -> String {
        format!("http://{}", self.peer_addr)
    }

    /// The client endpoint for gRPC.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.client_addr)
    }
}

/// A running cluster: members, proxies, and what faults are currently in force.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    members: Vec<Member>,
    /// `proxies[a][b]` carries a → b; `None` on the diagonal.
    proxies: Vec<Vec<Option<Proxy>>>,
}

/// Connects a gRPC channel to `url` eagerly (so a dead member is noticed before any request is
/// sent, and that request never has to be counted as of unknown outcome).
pub async fn connect(url: &str, timeout: Duration) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|error| error.to_string())?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

impl Cluster {
    /// Creates the directories and proxies and starts every member with
    /// `--initial-cluster-state new`.
    pub async fn start(config: ClusterConfig, port_seed: u64) -> io::Result<Cluster> {
        fs::create_dir_all(&config.run_dir)?;
        let mut rng = Rng::new(port_seed);
        let mut members = Vec::with_capacity(config.nodes);
        for i in 0..config.nodes {
            let name = format!("m{}", i + 1);
            let client_port = pick_port(&mut rng)?;
            let peer_port = pick_port(&mut rng)?;
            let data_dir = config.run_dir.join(&name);
            fs::create_dir_all(&data_dir)?;
            members.push(Member {
                log_path: config.run_dir.join(format!("{name}.log")),
                name,
                client_addr: SocketAddr::from(([127, 0, 0, 1], client_port)),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], peer_port)),
                data_dir,
                child: None,
                paused: false,
                in_config: true,
                rejoin_cluster: None,
                id: None,
            });
        }
        let mut proxies = Vec::with_capacity(config.nodes);
        for from in 0..config.nodes {
            let mut row = Vec::with_capacity(config.nodes);
            for (to, member) in members.iter().enumerate() {
                row.push(if from == to {
                    None
                } else {
                    Some(Proxy::start(member.peer_addr).await?)
                });
            }
            proxies.push(row);
        }
        let mut cluster = Cluster {
            config,
            members,
            proxies,
        };
        for i in 0..cluster.members.len() {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    /// The configuration the cluster runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, in name order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Client URLs, one per member, for the client tasks (fixed for the whole run).
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    fn initial_cluster_all(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The full `raftkv serve` command line of member `i`, as it will be (re)started.
    pub fn command_line(&self, i: usize) -> Vec<String> {
        let member = &self.members[i];
        let overrides = (0..self.members.len())
            .filter(|&j| j != i)
            .map(|j| {
                let proxy = self.proxies[i][j].as_ref().expect("off-diagonal proxy");
                format!("{}={}", self.members[j].name, proxy.addr())
            })
            .collect::<Vec<_>>()
            .join(",");
        let (state, initial) = match &member.rejoin_cluster {
            Some(list) => ("existing", list.clone()),
            None => ("new", self.initial_cluster_all()),
        };
        let c = &self.config;
        vec![
            "serve".into(),
            "--name".into(),
            member.name.clone(),
            "--data-dir".into(),
            member.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            member.client_url(),
            "--advertise-client-urls".into(),
            member.client_url(),
            "--listen-peer-urls".into(),
            member.peer_url(),
            "--initial-advertise-peer-urls".into(),
            member.peer_url(),
            "--initial-cluster".into(),
            initial,
            "--initial-cluster-state".into(),
            state.into(),
            "--initial-cluster-token".into(),
            c.token.clone(),
            "--heartbeat-interval".into(),
            c.heartbeat_ms.to_string(),
            "--election-timeout".into(),
            c.election_ms.to_string(),
            "--snapshot-count".into(),
            c.snapshot_count.to_string(),
            // Snapshots every `snapshot_count` entries whatever the state's size, so that runs
            // exercise them often.
            "--snapshot-log-percent".into(),
            "0".into(),
            "--log-level".into(),
            c.log_level.clone(),
            "--peer-dial-overrides".into(),
            overrides,
        ]
    }

    /// Starts member `i` (it must not be running), appending to its log file.
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let args = self.command_line(i);
        let member = &mut self.members[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)?;
        use std::io::Write;
        let mut header = log.try_clone()?;
        writeln!(
            header,
            "=== chaos: starting {} {}",
            self.config.binary.display(),
            args.join(" ")
        )?;
        let child = Command::new(&self.config.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        member.child = Some(child);
        member.paused = false;
        Ok(())
    }

    /// Whether member `i`'s process is alive (possibly paused).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            None => false,
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    let log = self.members[i].log_path.clone();
                    append_log(
                        &log,
                        &format!("=== chaos: process exited on its own: {status}"),
                    );
                    self.members[i].child = None;
                    false
                }
                Err(_) => false,
            },
        }
    }

    /// Whether member `i` is stopped by SIGSTOP.
    pub fn is_paused(&self, i: usize) -> bool {
        self.members[i].paused
    }

    /// Whether member `i` belongs to the cluster configuration (as far as the harness knows).
    pub fn in_config(&self, i: usize) -> bool {
        self.members[i].in_config
    }

    /// kill -9 of member `i`, waiting until the process is gone (so its files can be touched).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            append_log(&self.members[i].log_path, "=== chaos: killed (SIGKILL)");
        }
        self.members[i].paused = false;
    }

    /// SIGSTOP: the process keeps its sockets but stops answering, like a long GC pause or a
    /// stalled VM.
    pub fn pause(&mut self, i: usize) -> io::Result<()> {
        self.signal(i, rustix::process::Signal::STOP)?;
        self.members[i].paused = true;
        Ok(())
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) -> io::Result<()> {
        if self.members[i].paused {
            self.signal(i, rustix::process::Signal::CONT)?;
            self.members[i].paused = false;
        }
        Ok(())
    }

    fn signal(&mut self, i: usize, signal: rustix::process::Signal) -> io::Result<()> {
        let child = self.members[i]
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("member not running"))?;
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, signal).map_err(io::Error::from)
    }

    /// Sets the mode of the directed link `from` → `to`.
    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        if let Some(proxy) = &self.proxies[from][to] {
            proxy.set(mode);
        }
    }

    /// The mode of the directed link `from` → `to`.
    pub fn link(&self, from: usize, to: usize) -> LinkMode {
        self.proxies[from][to]
            .as_ref()
            .map_or(LinkMode::Pass, Proxy::mode)
    }

    /// Every link back to [`LinkMode::Pass`].
    pub fn heal_network(&self) {
        for row in &self.proxies {
            for proxy in row.iter().flatten() {
                proxy.set(LinkMode::Pass);
            }
        }
    }

    /// Cuts (both ways) every link between members of different groups; members not listed in
    /// any group are left alone.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        for a in 0..self.len() {
            for b in 0..self.len() {
                if a == b {
                    continue;
                }
                if let (Some(ga), Some(gb)) = (group_of(a), group_of(b))
                    && ga != gb
                {
                    self.set_link(a, b, LinkMode::Drop);
                }
            }
        }
    }

    /// Cuts member `i` off from every peer, both ways.
    pub fn isolate(&self, i: usize) {
        for j in 0..self.len() {
            if j != i {
                self.set_link(i, j, LinkMode::Drop);
                self.set_link(j, i, LinkMode::Drop);
            }
        }
    }

    /// Asks every live member for its status (in parallel, briefly) and returns the member the
    /// reachable ones agree leads, if any. Learns member ids on the way.
    pub async fn leader(&mut self) -> Option<usize> {
        let urls: Vec<(usize, String)> = (0..self.len())
            .filter(|&i| self.members[i].child.is_some() && !self.members[i].paused)
            .map(|i| (i, self.members[i].client_url()))
            .collect();
        let mut tasks = Vec::new();
        for (i, url) in urls {
            tasks.push(tokio::spawn(async move { (i, status(&url).await) }));
        }
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for task in tasks {
            if let Ok((i, Some(status))) = task.await {
                if let Some(header) = &status.header {
                    self.members[i].id = Some(header.member_id);
                }
                if status.leader != 0 {
                    *votes.entry(status.leader).or_default() += 1;
                }
            }
        }
        let (leader_id, _) = votes.into_iter().max_by_key(|(_, count)| *count)?;
        self.members.iter().position(|m| m.id == Some(leader_id))
    }

    /// Polls until some member leads, or gives up at `deadline`.
    pub async fn wait_for_leader(&mut self, deadline: Instant) -> Option<usize> {
        loop {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The member id of `i`, asking it if not known yet.
    pub async fn member_id(&mut self, i: usize) -> Option<u64> {
        if self.members[i].id.is_none()
            && let Some(status) = status(&self.members[i].client_url()).await
        {
            self.members[i].id = status.header.map(|h| h.member_id);
        }
        self.members[i].id
    }

    /// A Cluster-service client on some running member other than `except`.
    async fn cluster_client(
        &mut self,
        except: usize,
    ) -> Option<pb::cluster_client::ClusterClient<Channel>> {
        for j in 0..self.len() {
            if j == except || !self.members[j].in_config || self.members[j].paused {
                continue;
            }
            if !self.is_running(j) {
                continue;
            }
            if let Ok(channel) =
                connect(&self.members[j].client_url(), Duration::from_millis(500)).await
            {
                return Some(pb::cluster_client::ClusterClient::new(channel));
            }
        }
        None
    }

    /// The peer URLs in the cluster's member list, as some member sees it.
    pub async fn member_list(&mut self, except: usize) -> Option<Vec<pb::Member>> {
        let mut client = self.cluster_client(except).await?;
        let list = tokio::time::timeout(
            Duration::from_secs(3),
            client.member_list(pb::MemberListRequest {}),
        )
        .await
        .ok()?
        .ok()?;
        Some(list.into_inner().members)
    }

    /// Removes member `i` from the configuration (through another member). Returns whether the
    /// member is now out; an unclear answer is settled by reading the member list.
    pub async fn member_remove(&mut self, i: usize) -> Result<(), String> {
        let id = self
            .member_id(i)
            .await
            .ok_or("member id unknown (member unreachable)")?;
        let mut client = self
            .cluster_client(i)
            .await
            .ok_or("no member to ask for the removal")?;
        let answer = tokio::time::timeout(
            Duration::from_secs(8),
            client.member_remove(pb::MemberRemoveRequest { id }),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
            Err(_) => Err("timed out".into()),
        };
        if outcome.is_err() {
            // The change may still have happened: the member list says what is true.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Some(list) = self.member_list(i).await {
                    if list.iter().all(|m| m.id != id) {
                        self.members[i].in_config = false;
                        return Ok(());
                    }
                    return outcome;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return outcome;
        }
        self.members[i].in_config = false;
        Ok(())
    }

    /// Adds member `i` back with its old peer URL (hence its old id), retrying until the
    /// cluster accepts it or `deadline` passes.
    pub async fn member_add(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        let url = self.members[i].peer_url();
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(mut client) = self.cluster_client(i).await {
                let answer = tokio::time::timeout(
                    Duration::from_secs(8),
                    client.member_add(pb::MemberAddRequest {
                        peer_ur_ls: vec![url.clone()],
                        is_learner: false,
                    }),
                )
                .await;
                match answer {
                    Ok(Ok(_)) => {
                        self.members[i].in_config = true;
                        return Ok(());
                    }
                    Ok(Err(status)) if status.message().contains("already exist") => {
                        self.members[i].in_config = true;
                        return Ok(());
                    }
                    Ok(Err(status)) => last = format!("{}: {}", status.code(), status.message()),
                    Err(_) => last = "timed out".into(),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last)
    }

    /// Prepares member `i` (killed, removed, re-added) to join as a fresh member: wipes its data
    /// directory and switches its command line to `--initial-cluster-state existing` with the
    /// current members.
    pub fn prepare_rejoin(&mut self, i: usize) -> io::Result<()> {
        let data_dir = self.members[i].data_dir.clone();
        if data_dir.exists() {
            fs::remove_dir_all(&data_dir)?;
        }
        fs::create_dir_all(&data_dir)?;
        let list = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, m)| *j == i || m.in_config)
            .map(|(_, m)| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        self.members[i].rejoin_cluster = Some(list);
        append_log(
            &self.members[i].log_path,
            "=== chaos: data directory wiped; rejoining as a new member",
        );
        Ok(())
    }

    /// Copies every member's log file into `dir`.
    pub fn copy_logs(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        for member in &self.members {
            if member.log_path.exists() {
                fs::copy(&member.log_path, dir.join(format!("{}.log", member.name)))?;
            }
        }
        Ok(())
    }

    /// Kills every member (SIGKILL also ends a stopped process).
    pub fn shutdown(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never leave member processes behind, even when a test panics.
        self.shutdown();
    }
}

fn append_log(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// A member's Status, or `None` if it does not answer quickly.
pub async fn status(url: &str) -> Option<pb::StatusResponse> {
    let channel = connect(url, Duration::from_millis(300)).await.ok()?;
    let mut client = pb::maintenance_client::MaintenanceClient::new(channel);
    let answer = tokio::time::timeout(
        Duration::from_millis(500),
        client.status(pb::StatusRequest {}),
    )
    .await
    .ok()?
    .ok()?;
    Some(answer.into_inner())
}
