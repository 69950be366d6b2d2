//! One chaos run: start a cluster, run clients and the nemesis, heal, read everything back,
//! check, report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use lincheck::{CheckOptions, Input, Output, Verdict};
use pb::kv_client::KvClient;

use crate::client::{ClientContext, ClientPlan, ReadMode, key_bytes, run_client};
use crate::cluster::{Cluster, ClusterConfig, connect, locate_raftkv};
use crate::history::{Clock, History, OpRecord, Outcome, counts, lost_acknowledged};
use crate::nemesis::{FaultKind, Nemesis};
use crate::rng::Rng;
use crate::watchers::{BreakWatch, WatchContext, WatchLog, WatchOutcome, conclude, spawn_watchers};

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cluster size.
    pub nodes: usize,
    /// How long clients and nemesis run before the final heal.
    pub duration: Duration,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Fault kinds the nemesis may inject.
    pub nemesis: Vec<FaultKind>,
    /// Number of concurrent client tasks.
    pub clients: usize,
    /// Number of keys (registers).
    pub keys: u64,
    /// Run directory (data, logs, artifacts); a temporary directory when `None`, removed
    /// after a passing run.
    pub out: Option<PathBuf>,
    /// Keep the run directory and write the artifacts even when the run passes.
    pub keep: bool,
    /// How long a client waits for one answer.
    pub op_timeout: Duration,
    /// The negative control: serializable reads from a member isolated in a minority while
    /// writes go to the majority; a correct checker must say "not linearizable".
    pub stale_reads: bool,
    /// The watchers' negative control: one watcher's record loses or repeats one event
    /// (client-side); a correct watch checker must report it.
    pub break_watch: Option<BreakWatch>,
    /// The `raftkv` binary; located with [`locate_raftkv`] when `None`.
    pub binary: Option<PathBuf>,
    /// Print progress and fault lines.
    pub verbose: bool,
    /// How long after healing every member must be serving with one leader (docs/correctness.md,
    /// R allows 30 s for full convergence); exceeding it fails the run.
    pub recovery_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            nodes: 3,
            duration: Duration::from_secs(60),
            seed: 1,
            nemesis: FaultKind::ALL.to_vec(),
            clients: 6,
            keys: 5,
            out: None,
            keep: false,
            op_timeout: Duration::from_millis(1500),
            stale_reads: false,
            break_watch: None,
            binary: None,
            verbose: true,
            recovery_timeout: Duration::from_secs(30),
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Acknowledged writes provably lost (see [`lost_acknowledged`]).
    pub lost_acked: u64,
    /// Operations attempted.
    pub ops: u64,
    /// Answered operations.
    pub ok: u64,
    /// Operations certainly without effect.
    pub failed: u64,
    /// Operations of unknown outcome.
    pub unknown: u64,
    /// Faults injected.
    pub faults: u64,
    /// Milliseconds from the final heal to the first acknowledged write, `None` if none came.
    pub heal_to_write_ms: Option<u64>,
    /// Problems that fail the run besides the verdict (no write after healing, a member that
    /// did not come back).
    pub problems: Vec<String>,
    /// Events received by the watchers.
    pub watch_events: u64,
    /// Broken watch guarantees (see [`crate::watchers`]), and acknowledged writes missing from
    /// the committed history read back through a watch.
    pub watch_violations: Vec<crate::watchers::Violation>,
    /// Where the history and logs were written, if they were.
    pub artifacts: Option<PathBuf>,
}

impl RunReport {
    /// Whether the history is linearizable, nothing acknowledged was lost and the cluster
    /// recovered.
    pub fn passed(&self) -> bool {
        self.verdict.is_linearizable()
            && self.lost_acked == 0
            && self.problems.is_empty()
            && self.watch_violations.is_empty()
    }

    /// The one-line summary the binary ends with.
    pub fn result_line(&self) -> String {
        format!(
            "RESULT linearizable={} lost_acked={} ops={} ok={} failed={} unknown={} faults={} heal_to_write_ms={} watch_events={} watch_violations={}",
            self.verdict.is_linearizable(),
            self.lost_acked,
            self.ops,
            self.ok,
            self.failed,
            self.unknown,
            self.faults,
            self.heal_to_write_ms
                .map_or_else(|| "none".to_owned(), |ms| ms.to_string()),
            self.watch_events,
            self.watch_violations.len()
        )
    }
}

/// The client used for the harness's own writes and final reads.
const HARNESS_CLIENT: u64 = 1_000;

fn plans(options: &RunOptions) -> Vec<ClientPlan> {
    let n = options.nodes;
    (0..options.clients)
        .map(|c| {
            let id = c as u64;
            if options.stale_reads {
                // Member 3 (index 2) is isolated for the middle of the run.
                if c == 0 {
                    ClientPlan {
                        id,
                        members: vec![2],
                        read_percent: 100,
                        write_percent: 0,
                        read_mode: ReadMode::Serializable,
                    }
                } else {
                    ClientPlan {
                        id,
                        members: vec![c % 2, (c + 1) % 2],
                        read_percent: 20,
                        write_percent: 80,
                        read_mode: ReadMode::Linearizable,
                    }
                }
            } else {
                let home = c % n;
                let mut members = vec![home];
                members.extend((0..n).filter(|&m| m != home));
                ClientPlan {
                    id,
                    members,
                    read_percent: 40,
                    write_percent: 35,
                    read_mode: ReadMode::Linearizable,
                }
            }
        })
        .collect()
}

async fn put_once(url: &str, key: Bytes, value: u64, request_id: &str) -> bool {
    let Ok(channel) = connect(url, Duration::from_millis(500)).await else {
        return false;
    };
    let mut kv = KvClient::new(channel);
    let mut request = tonic::Request::new(pb::PutRequest {
        key,
        value: Bytes::from(value.to_string()),
        ..Default::default()
    });
    if let Ok(id) = request_id.parse() {
        request
            .metadata_mut()
            .insert(crate::client::REQUEST_ID_METADATA, id);
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(1), kv.put(request)).await,
        Ok(Ok(_))
    )
}

/// Polls members round-robin with a write to a key outside the checked ones until one is
/// acknowledged; returns the time it took.
async fn first_write_after_heal(urls: &[String], deadline: Instant) -> Option<Duration> {
    let start = Instant::now();
    let mut attempt = 0u64;
    while Instant::now() < deadline {
        let url = &urls[attempt as usize % urls.len()];
        attempt += 1;
        if put_once(
            url,
            Bytes::from_static(b"chaos/heal"),
            attempt,
            &format!("chaos-heal-{attempt}"),
        )
        .await
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Reads `key` linearizably (any member), recording the read; retried until `deadline`.
async fn final_read(
    urls: &[String],
    names: &[String],
    key: u64,
    clock: Clock,
    history: &History,
    deadline: Instant,
) -> Option<Option<u64>> {
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let member = attempt % urls.len();
        attempt += 1;
        let Ok(channel) = connect(&urls[member], Duration::from_millis(500)).await else {
            continue;
        };
        let mut kv = KvClient::new(channel);
        let call_us = clock.now_us();
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            kv.range(pb::RangeRequest {
                key: key_bytes(key),
                ..Default::default()
            }),
        )
        .await;
        let end_us = clock.now_us();
        if let Ok(Ok(response)) = answer {
            let value = response
                .into_inner()
                .kvs
                .first()
                .map(|kv| crate::client::decode_value(&kv.value));
            history.push(OpRecord {
                client: HARNESS_CLIENT,
                member: names[member].clone(),
                key,
                input: Input::Read,
                output: Output::Read(value),
                call_us,
                end_us,
                outcome: Outcome::Ok,
                note: "final read".into(),
                revision: None,
            });
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits until every member answers Status with the same leader.
async fn wait_all_recovered(cluster: &mut Cluster, deadline: Instant) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let mut leaders = Vec::new();
        let mut missing = Vec::new();
        for i in 0..cluster.len() {
            let running = cluster.is_running(i);
            let member = &cluster.members()[i];
            match crate::cluster::status(&member.client_url()).await {
                Some(status) if running && status.leader != 0 => leaders.push(status.leader),
                _ => missing.push(member.name.clone()),
            }
        }
        leaders.dedup();
        if missing.is_empty() && leaders.len() == 1 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "members not serving with one leader {:?} after healing: missing [{}], leaders seen {leaders:?}",
                started.elapsed(),
                missing.join(",")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the whole scenario and returns its report; errors are harness failures (could not start
/// processes, no leader at the start), not verdicts.
pub async fn run(options: RunOptions) -> Result<RunReport, String> {
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None => locate_raftkv().map_err(|error| format!("cannot find raftkv: {error}"))?,
    };
    let (temp, run_dir) = match &options.out {
        Some(dir) => (None, dir.clone()),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("raftkv-chaos-")
                .tempdir()
                .map_err(|error| error.to_string())?;
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    };
    let say = |line: String| {
        if options.verbose {
            println!("{line}");
        }
    };
    say(format!(
        "chaos: seed={} nodes={} duration={:?} clients={} keys={} nemesis={} binary={} dir={}",
        options.seed,
        options.nodes,
        options.duration,
        options.clients,
        options.keys,
        options
            .nemesis
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(","),
        binary.display(),
        run_dir.display()
    ));
    let rng = Rng::new(options.seed);
    let clock = Clock::start();
    let config = ClusterConfig {
        nodes: options.nodes,
        run_dir: run_dir.clone(),
        binary,
        heartbeat_ms: 50,
        election_ms: 500,
        snapshot_count: 500,
        token: format!("chaos-{:x}", options.seed),
        log_level: "info".into(),
    };
    let port_seed = options.seed ^ u64::from(std::process::id()).rotate_left(32) ^ clock_nanos();
    let mut cluster = Cluster::start(config, port_seed)
        .await
        .map_err(|error| format!("cannot start the cluster: {error}"))?;
    let leader = cluster
        .wait_for_leader(Instant::now() + Duration::from_secs(20))
        .await;
    if leader.is_none() {
        cluster.shutdown();
        if let Some(temp) = temp {
            let _ = temp.keep();
        }
        return Err(format!(
            "no leader 20 s after start; member logs in {}",
            run_dir.display()
        ));
    }
    say(format!(
        "chaos: cluster up, leader {}",
        cluster.members()[leader.unwrap_or(0)].name
    ));

    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let context = ClientContext {
        urls: Arc::new(cluster.client_urls()),
        names: Arc::new(cluster.members().iter().map(|m| m.name.clone()).collect()),
        keys: options.keys,
        op_timeout: options.op_timeout,
        clock,
        history: history.clone(),
        stop: stop.clone(),
        seed: options.seed,
    };
    let watch_context = WatchContext {
        urls: context.urls.clone(),
        names: context.names.clone(),
        clock,
        log: WatchLog::default(),
        stop: Arc::new(AtomicBool::new(false)),
        start_revision: 1,
        progress_every: Duration::from_secs(1),
        silence: Duration::from_secs(5),
    };
    let extra_home = rng.fork(200).below(options.nodes as u64) as usize;
    let watchers = spawn_watchers(&watch_context, extra_home, options.break_watch);
    let mut clients = Vec::new();
    for plan in plans(&options) {
        let client_rng = rng.fork(100 + plan.id);
        clients.push(tokio::spawn(run_client(plan, context.clone(), client_rng)));
    }
    let progress = {
        let history = history.clone();
        let verbose = options.verbose;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if verbose {
                    let c = counts(&history.snapshot());
                    println!(
                        "progress [{:>6.1}s] ops={} ok={} failed={} unknown={}",
                        clock.now_us() as f64 / 1e6,
                        c.ops,
                        c.ok,
                        c.failed,
                        c.unknown
                    );
                }
            }
        })
    };

    let until = Instant::now() + options.duration;
    let mut nemesis = Nemesis::new(options.nemesis.clone(), rng.fork(1), clock, options.verbose);
    if options.stale_reads {
        negative_control_schedule(&mut cluster, &mut nemesis, until).await;
    } else {
        nemesis.run(&mut cluster, until).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    progress.abort();

    let mut problems = Vec::new();
    nemesis
        .heal(&mut cluster)
        .await
        .unwrap_or_else(|error| problems.push(format!("heal failed: {error}")));
    let urls = cluster.client_urls();
    let names: Vec<String> = cluster.members().iter().map(|m| m.name.clone()).collect();
    let heal_to_write =
        first_write_after_heal(&urls, Instant::now() + Duration::from_secs(30)).await;
    let heal_to_write_ms = heal_to_write.map(|d| d.as_millis() as u64);
    match heal_to_write_ms {
        Some(ms) => say(format!(
            "chaos: healed; first write acknowledged after {ms} ms"
        )),
        None => problems.push("no write acknowledged within 30 s of healing".into()),
    }
    let mut final_values = BTreeMap::new();
    for key in 0..options.keys {
        let deadline = Instant::now() + Duration::from_secs(20);
        match final_read(&urls, &names, key, clock, &history, deadline).await {
            Some(value) => {
                final_values.insert(key, value);
            }
            None => problems.push(format!("final read of key {key} never succeeded")),
        }
    }
    if let Err(problem) =
        wait_all_recovered(&mut cluster, Instant::now() + options.recovery_timeout).await
    {
        problems.push(problem);
    }

    let records = history.snapshot();
    // The watchers ran through every fault and the heal; they must now catch up, and agree with
    // the committed history read back on every member.
    let watch = conclude(&watch_context, watchers, &records, Duration::from_secs(15)).await;
    let operations: Vec<lincheck::Operation> =
        records.iter().filter_map(OpRecord::to_operation).collect();
    let verdict =
        tokio::task::spawn_blocking(move || lincheck::check(&operations, &CheckOptions::default()))
            .await
            .map_err(|error| format!("checker panicked: {error}"))?;
    let (lost_acked, lost_details) = lost_acknowledged(&records, &final_values);
    // The harness's own final reads are not client operations.
    let c = counts(
        &records
            .iter()
            .filter(|r| r.client != HARNESS_CLIENT)
            .cloned()
            .collect::<Vec<_>>(),
    );
    cluster.shutdown();

    let mut report = RunReport {
        verdict,
        lost_acked,
        ops: c.ops,
        ok: c.ok,
        failed: c.failed,
        unknown: c.unknown,
        faults: nemesis.faults,
        heal_to_write_ms,
        problems,
        watch_events: watch.events,
        watch_violations: watch.violations.clone(),
        artifacts: None,
    };
    for problem in &report.problems {
        say(format!("chaos: PROBLEM: {problem}"));
    }
    if !report.verdict.is_linearizable() {
        say(format!("chaos: verdict: {}", report.verdict));
    }
    for line in lost_details.iter().take(20) {
        say(format!("chaos: {line}"));
    }
    for violation in report.watch_violations.iter().take(10) {
        say(format!("chaos: WATCH VIOLATION: {violation}"));
    }
    if report.watch_violations.len() > 10 {
        say(format!(
            "chaos: ... {} more watch violations (all in summary.txt)",
            report.watch_violations.len() - 10
        ));
    }
    if !report.passed() || options.keep {
        let dir = run_dir.join("artifacts");
        write_artifacts(
            &dir,
            &options,
            &records,
            &nemesis.log,
            &report,
            &lost_details,
            &cluster,
        )
        .and_then(|()| write_watch_artifacts(&dir, &watch))
        .map_err(|error| format!("writing artifacts to {}: {error}", dir.display()))?;
        // The run directory holds the evidence: never delete it now.
        if let Some(temp) = temp {
            let _ = temp.keep();
        }
        say(format!(
            "chaos: history and logs written to {}",
            dir.display()
        ));
        report.artifacts = Some(dir);
    }
    Ok(report)
}

fn clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The negative control's fixed schedule: isolate member 3 (both directions, every link) for
/// the whole middle of the run while its clients read serializably from it.
async fn negative_control_schedule(cluster: &mut Cluster, nemesis: &mut Nemesis, until: Instant) {
    let margin = Duration::from_secs(1);
    tokio::time::sleep(margin.min(until.saturating_duration_since(Instant::now()))).await;
    cluster.isolate(2);
    nemesis.faults += 1;
    nemesis.note("negative control: isolate m3 (serializable reads keep hitting it)".into());
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        until.checked_sub(margin).unwrap_or(until),
    ))
    .await;
    cluster.heal_network();
    nemesis.note("negative control: healed".into());
    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
}

fn write_artifacts(
    dir: &std::path::Path,
    options: &RunOptions,
    records: &[OpRecord],
    nemesis_log: &[String],
    report: &RunReport,
    lost_details: &[String],
    cluster: &Cluster,
) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut summary = String::new();
    let _ = writeln!(summary, "{}", report.result_line());
    let _ = writeln!(summary, "verdict: {}", report.verdict);
    for problem in &report.problems {
        let _ = writeln!(summary, "problem: {problem}");
    }
    for line in lost_details {
        let _ = writeln!(summary, "{line}");
    }
    for violation in &report.watch_violations {
        let _ = writeln!(summary, "watch violation: {violation}");
    }
    let _ = writeln!(summary, "options: {options:?}");
    let _ = writeln!(
        summary,
        "replay: cargo run --release -p chaos -- --nodes {} --duration {}s --seed {} --nemesis {} --clients {} --keys {}{}{}",
        options.nodes,
        options.duration.as_secs(),
        options.seed,
        if options.nemesis.is_empty() {
            "none".to_owned()
        } else {
            options
                .nemesis
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(",")
        },
        options.clients,
        options.keys,
        if options.stale_reads {
            " --stale-reads"
        } else {
            ""
        },
        options
            .break_watch
            .map_or_else(String::new, |b| format!(" --break-watch {}", b.name()))
    );
    fs::write(dir.join("summary.txt"), summary)?;
    let mut text = String::from(
        "# call_us end_us client member key input -> output [outcome] note\n\
         # (times in µs since the run started; unknown writes may take effect any time after call)\n",
    );
    for record in records {
        let _ = writeln!(text, "{record}");
    }
    fs::write(dir.join("history.txt"), text)?;
    fs::write(dir.join("nemesis.txt"), nemesis_log.join("\n") + "\n")?;
    for (i, member) in cluster.members().iter().enumerate() {
        let _ = fs::write(
            dir.join(format!("{}.cmdline", member.name)),
            cluster.command_line(i).join(" ") + "\n",
        );
    }
    cluster.copy_logs(dir)
}

/// The watchers' records and the committed history they were checked against.
fn write_watch_artifacts(dir: &std::path::Path, watch: &WatchOutcome) -> std::io::Result<()> {
    let mut text =
        String::from("# at_us watcher stream member what (events as revision:kind key=value)\n");
    for record in &watch.records {
        let _ = writeln!(text, "{record}");
    }
    fs::write(dir.join("watch.txt"), text)?;
    let mut text = String::from("# the committed history of the prefix, read after the run\n");
    for event in &watch.reference {
        let _ = writeln!(text, "{event}");
    }
    fs::write(dir.join("watch-reference.txt"), text)?;
    Ok(())
}
