//! `raftkv playground`: a local three-member cluster to try raftkv with, one process per
//! member, so killing a member (`kill -9`) behaves exactly as it would in production.
//!
//! The ports follow etcd's Procfile (clients on 2379, 22379, 32379; peers on 2380, 22380,
//! 32380), so `etcdctl` with its default endpoint talks to the playground unchanged. The
//! playground owns its members: it stops them on Ctrl-C or SIGTERM, reports any that die while
//! it runs, and kills them if it fails part way, so it never leaves processes behind.

use crate::tools::client::humanize_bytes;
use etcdpb::etcdserverpb as pb;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the cluster may take to elect a leader that every member knows.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a member's log shown when it fails.
const LOG_TAIL_LINES: usize = 20;
/// etcd's Procfile ports: (client, peer) per member.
const DEFAULT_PORTS: [(u16, u16); 3] = [(2379, 2380), (22379, 22380), (32379, 32380)];
/// Remembers the cluster token in a kept `--data-dir`, so a later playground on the same
/// directory restarts the same cluster instead of being refused by the members' identity check.
const TOKEN_FILE: &str = "playground-token";

/// `raftkv playground` flags.
#[derive(clap::Args, Debug)]
pub struct PlaygroundArgs {
    /// Keep the members' data here (kept on exit; reusing it restarts the same cluster) [default: a temporary directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Use ports P, P+1 (member 1 client, peer), P+10, P+11 and P+20, P+21 instead of etcd's 2379/2380, 22379/22380, 32379/32380
    #[arg(long, value_name = "P")]
    pub base_port: Option<u16>,

    /// Keep the temporary data directory on exit (and print where it is)
    #[arg(long)]
    pub keep: bool,
}

/// Runs the playground until Ctrl-C or SIGTERM; exit code 1 if the cluster could not start.
pub fn run(args: PlaygroundArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftkv playground: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(playground(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("raftkv playground: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One member process and where its things are.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Set once the member is seen to have exited, so it is reported once.
    exited: Option<ExitStatus>,
}

impl Member {
    fn client_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Whether the process has exited (recording its status the first time).
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exited = Some(status);
            self.child = None;
        }
        self.exited
    }
}

/// The running members; dropping it kills any still alive, so an error part way (or a panic)
/// never leaves member processes behind.
struct Cluster {
    members: Vec<Member>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The data directory: a temporary one (removed on exit unless `--keep`) or the user's.
enum DataDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Given(path) => path,
        }
    }
}

fn ports(base: Option<u16>) -> Result<[(u16, u16); 3], String> {
    let Some(base) = base else {
        return Ok(DEFAULT_PORTS);
    };
    if base == 0 || base > u16::MAX - 21 {
        return Err(format!(
            "--base-port {base}: must be between 1 and {} (the playground uses P to P+21)",
            u16::MAX - 21
        ));
    }
    Ok([
        (base, base + 1),
        (base + 10, base + 11),
        (base + 20, base + 21),
    ])
}

/// Fails with one line if a port is taken: a member that cannot bind would only fail later,
/// with the reason buried in its log.
fn check_ports_free(ports: &[(u16, u16)]) -> Result<(), String> {
    for port in ports.iter().flat_map(|(client, peer)| [*client, *peer]) {
        if let Err(error) = TcpListener::bind(("127.0.0.1", port)) {
            return Err(format!(
                "port {port} on 127.0.0.1 is not available ({error}); is another cluster running? \
                 Choose other ports with --base-port, e.g. --base-port 12379"
            ));
        }
    }
    Ok(())
}

fn unique_token() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format!("playground-{}-{seconds}", std::process::id())
}

/// The cluster token: a fresh one per run, or the one remembered in a kept data directory.
fn token_for(dir: &DataDir) -> Result<String, String> {
    let DataDir::Given(path) = dir else {
        return Ok(unique_token());
    };
    let file = path.join(TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot read {}: {error}", file.display())),
    }
    let token = unique_token();
    std::fs::write(&file, format!("{token}\n"))
        .map_err(|error| format!("cannot write {}: {error}", file.display()))?;
    Ok(token)
}

fn spawn_member(
    exe: &Path,
    member: &Member,
    initial_cluster: &str,
    token: &str,
) -> Result<Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&member.log_path)
        .map_err(|error| format!("cannot open {}: {error}", member.log_path.display()))?;
    let log_for_stdout = log
        .try_clone()
        .map_err(|error| format!("cannot open {}: {error}", member.log_path.display()))?;
    Command::new(exe)
        .arg("serve")
        .args(["--name", &member.name])
        .arg("--data-dir")
        .arg(&member.data_dir)
        .args(["--listen-client-urls", &member.client_url()])
        .args(["--listen-peer-urls", &member.peer_url()])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-token", token])
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log)
        .spawn()
        .map_err(|error| format!("cannot start {} ({}): {error}", member.name, exe.display()))
}

/// The last `lines` lines of a log file (reading at most its last 64 KiB).
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("  (no log at {})\n", path.display());
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let start = length.saturating_sub(64 * 1024);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("  (cannot read {})\n", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return "  (log is empty)\n".to_owned();
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("  | {line}\n"))
        .collect()
}

fn describe(status: ExitStatus) -> String {
    if status.success() {
        return "exited cleanly (status 0)".to_owned();
    }
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    format!("ended ({status})")
}

/// Status of every running member, or `None` for those that do not answer (yet).
async fn statuses(cluster: &Cluster) -> Vec<Option<pb::StatusResponse>> {
    let mut out = Vec::with_capacity(cluster.members.len());
    for member in &cluster.members {
        let answer = tokio::time::timeout(Duration::from_secs(1), async {
            crate::tools::client::member_status(&member.client_url()).await
        })
        .await;
        out.push(answer.ok().and_then(Result::ok));
    }
    out
}

/// Waits until every member answers Status naming the same leader. Fails early if a member
/// exits (its log says why), or after [`READY_TIMEOUT`].
async fn wait_until_ready(cluster: &mut Cluster) -> Result<Vec<pb::StatusResponse>, String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for member in &mut cluster.members {
            if let Some(status) = member.poll_exit() {
                return Err(format!(
                    "{} {} while the cluster was starting; its log ({}):\n{}",
                    member.name,
                    describe(status),
                    member.log_path.display(),
                    log_tail(&member.log_path, LOG_TAIL_LINES)
                ));
            }
        }
        let answers = statuses(cluster).await;
        if answers.iter().all(Option::is_some) {
            let answers: Vec<pb::StatusResponse> = answers.into_iter().flatten().collect();
            let leader = answers[0].leader;
            if leader != 0 && answers.iter().all(|status| status.leader == leader) {
                return Ok(answers);
            }
        }
        if Instant::now() >= deadline {
            let mut message = format!(
                "the cluster did not agree on a leader within {} s; the members' logs:\n",
                READY_TIMEOUT.as_secs()
            );
            for member in &cluster.members {
                message.push_str(&format!(
                    "{} ({}):\n{}",
                    member.name,
                    member.log_path.display(),
                    log_tail(&member.log_path, LOG_TAIL_LINES)
                ));
            }
            return Err(message);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends SIGTERM (a clean stop: the member closes its WAL) to every member still running.
fn terminate(member: &Member) {
    if let Some(child) = &member.child {
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

/// Stops every member: SIGTERM to all, then up to [`STOP_TIMEOUT`] each before SIGKILL.
/// Reports each member's exit; returns whether all exited cleanly.
async fn stop_all(cluster: &mut Cluster) -> bool {
    for member in &cluster.members {
        terminate(member);
    }
    let mut all_clean = true;
    for member in &mut cluster.members {
        if let Some(status) = member.exited {
            all_clean = false;
            eprintln!(
                "  {}: had already stopped ({})",
                member.name,
                describe(status)
            );
            continue;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = member.poll_exit() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match status {
            Some(status) => {
                all_clean &= status.success();
                eprintln!("  {}: {}", member.name, describe(status));
            }
            None => {
                all_clean = false;
                if let Some(mut child) = member.child.take() {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    member.exited = status;
                }
                eprintln!(
                    "  {}: did not stop within {} s; killed",
                    member.name,
                    STOP_TIMEOUT.as_secs()
                );
            }
        }
    }
    all_clean
}

async fn playground(args: PlaygroundArgs) -> Result<ExitCode, String> {
    let ports = ports(args.base_port)?;
    check_ports_free(&ports)?;
    let exe = std::env::current_exe()
        .map_err(|error| format!("cannot find the raftkv executable: {error}"))?;
    let data = data_dir(args.data_dir.as_ref())?;
    let token = token_for(&data)?;
    let root = data.path().to_path_buf();

    let mut cluster = new_cluster(&ports, &root);
    let initial_cluster = cluster
        .members
        .iter()
        .map(|member| format!("{}={}", member.name, member.peer_url()))
        .collect::<Vec<_>>()
        .join(",");

    eprintln!(
        "raftkv playground: starting 3 members in {} (logs: m1.log, m2.log, m3.log there)",
        root.display()
    );
    for index in 0..cluster.members.len() {
        let child = spawn_member(&exe, &cluster.members[index], &initial_cluster, &token)?;
        cluster.members[index].child = Some(child);
    }

    let ready = match wait_until_ready(&mut cluster).await {
        Ok(ready) => ready,
        Err(message) => {
            eprintln!("raftkv playground: {message}");
            eprintln!("raftkv playground: stopping the members");
            stop_all(&mut cluster).await;
            keep_or_remove(data, args.keep);
            return Ok(ExitCode::FAILURE);
        }
    };
    print_ready(&cluster, &ready, &root, &data, args.keep);

    if !watch_members(&mut cluster).await {
        keep_or_remove(data, args.keep);
        return Ok(ExitCode::FAILURE);
    }

    eprintln!("\nraftkv playground: stopping the members");
    let clean = stop_all(&mut cluster).await;
    drop(cluster);
    keep_or_remove(data, args.keep);
    if !clean {
        eprintln!("raftkv playground: not every member stopped cleanly (see above)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The playground's data directory: `--data-dir` (created if missing), or a temporary one.
fn data_dir(given: Option<&PathBuf>) -> Result<DataDir, String> {
    Ok(match given {
        Some(path) => {
            std::fs::create_dir_all(path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            DataDir::Given(path.clone())
        }
        None => DataDir::Temporary(
            tempfile::Builder::new()
                .prefix("raftkv-playground-")
                .tempdir()
                .map_err(|error| format!("cannot create a temporary directory: {error}"))?,
        ),
    })
}

/// The three members, `m1` to `m3`, each with its ports, data directory and log under `root`;
/// none started yet.
fn new_cluster(ports: &[(u16, u16)], root: &Path) -> Cluster {
    Cluster {
        members: ports
            .iter()
            .enumerate()
            .map(|(index, (client_port, peer_port))| {
                let name = format!("m{}", index + 1);
                Member {
                    data_dir: root.join(&name),
                    log_path: root.join(format!("{name}.log")),
                    name,
                    client_port: *client_port,
                    peer_port: *peer_port,
                    child: None,
                    exited: None,
                }
            })
            .collect(),
    }
}

/// Watches the members, reporting each that exits, until Ctrl-C or SIGTERM (`true`) or until
/// every member has exited (`false`).
async fn watch_members(cluster: &mut Cluster) -> bool {
    let stop = crate::wait_for_stop_signal();
    tokio::pin!(stop);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut stop => return true,
            _ = check.tick() => {
                let newly_dead = report_exits(cluster);
                let alive = cluster.members.iter().filter(|member| member.exited.is_none()).count();
                if newly_dead {
                    if alive == 0 {
                        eprintln!("raftkv playground: every member has exited; stopping");
                        return false;
                    }
                    eprintln!(
                        "raftkv playground: {alive} of 3 members still running{}",
                        if alive >= 2 { " (a majority: the cluster still serves)" } else { " (no majority: writes will fail)" }
                    );
                }
            }
        }
    }
}

/// Reports every member that exited since the last look, with its log's last lines; whether
/// there was one.
fn report_exits(cluster: &mut Cluster) -> bool {
    let mut newly_dead = false;
    for member in &mut cluster.members {
        let was_running = member.exited.is_none();
        if was_running && let Some(status) = member.poll_exit() {
            newly_dead = true;
            eprintln!(
                "raftkv playground: member {} {}; last lines of {}:\n{}",
                member.name,
                describe(status),
                member.log_path.display(),
                log_tail(&member.log_path, LOG_TAIL_LINES)
            );
        }
    }
    newly_dead
}

/// Removes a temporary data directory, or says where the kept data is.
fn keep_or_remove(data: DataDir, keep: bool) {
    match data {
        DataDir::Temporary(dir) if keep => {
            let path = dir.keep();
            eprintln!("raftkv playground: data kept in {}", path.display());
        }
        DataDir::Temporary(dir) => {
            let path = dir.path().to_path_buf();
            if let Err(error) = dir.close() {
                eprintln!(
                    "raftkv playground: could not remove {}: {error}",
                    path.display()
                );
            }
        }
        DataDir::Given(path) => {
            eprintln!("raftkv playground: data kept in {}", path.display());
        }
    }
}

fn print_ready(
    cluster: &Cluster,
    ready: &[pb::StatusResponse],
    root: &Path,
    data: &DataDir,
    keep: bool,
) {
    let leader = ready.first().map_or(0, |status| status.leader);
    let mut out = String::new();
    out.push_str("raftkv playground: 3 members are up\n\n");
    out.push_str(
        "  NAME  ID                CLIENT                  PEER                    DB SIZE  LOG\n",
    );
    for (member, status) in cluster.members.iter().zip(ready) {
        let id = status.header.map_or(0, |header| header.member_id);
        out.push_str(&format!(
            "  {:<4}  {:<16x}  {:<22}  {:<22}  {:<7}  {}{}\n",
            member.name,
            id,
            member.client_url(),
            member.peer_url(),
            humanize_bytes(status.db_size.max(0) as u64),
            member.log_path.display(),
            if id == leader { "  (leader)" } else { "" }
        ));
    }
    let endpoints = cluster
        .members
        .iter()
        .map(Member::client_endpoint)
        .collect::<Vec<_>>()
        .join(",");
    out.push_str(&format!(
        "\nData: {} ({})\n\nTry:\n  etcdctl --endpoints={endpoints} put hello world\n  raftkv get hello --endpoints {endpoints}\n  raftkv status --endpoints {endpoints}\n\nCtrl-C stops the cluster.\n",
        root.display(),
        match (data, keep) {
            (DataDir::Temporary(_), false) => "removed on exit; --keep keeps it",
            _ => "kept on exit",
        }
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_etcds_procfile() {
        assert_eq!(ports(None), Ok(DEFAULT_PORTS));
        assert_eq!(
            ports(Some(12379)),
            Ok([(12379, 12380), (12389, 12390), (12399, 12400)])
        );
        assert!(ports(Some(0)).is_err());
        assert!(ports(Some(65530)).is_err());
    }

    #[test]
    fn busy_port_is_one_clear_line() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let error = check_ports_free(&[(port, port)]).expect_err("taken");
        assert!(error.contains(&port.to_string()), "{error}");
        assert!(error.contains("--base-port"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn log_tail_shows_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(log_tail(&path, 2), "  | b\n  | c\n");
    }
}
