//! `sim`: runs seeds of the deterministic simulator and reports violations.

use sim::{FaultSet, Options, Outcome};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const USAGE: &str = "\
usage: sim [--seeds N] [--first-seed S] [--nodes K] [--faults all|none|LIST] [--threads T]
           [--duration SECS] [--clients C] [--break RULE]
       sim --seed S [--nodes K] [--faults LIST] [--duration SECS] [--clients C] [--trace]

  --seeds N       run seeds S..S+N (default 100); cluster size cycles over 3, 5, 7 unless --nodes
                  is given, and each seed picks a random subset of the allowed faults
  --seed S        replay exactly one seed with exactly the given faults
  --faults        all, none, or a comma-separated list of:
                  loss, duplicate, reorder, partition, crash, crash-all, slow-disk, give-up
  --duration SECS virtual seconds of the safety phase (faults and clients) per seed (default 6);
                  the liveness phase after it allows 30 more
  --clients C     concurrent clients per seed (default 5)
  --trace         print a timestamped trace of every event (with --seed)
  --break RULE    run with a deliberately broken rule, to see the checkers catch it:
                  commit-old-term, forget-vote, skip-log-check (the Raft core);
                  skip-revision (the etcd state machine: some puts skip a revision);
                  ack-before-sync (the writer reports a batch durable before writing it);
                  watch-drop, watch-duplicate (the watch hub drops an event, or sends one
                  twice, every 20 events it queues); watch-split (every third response
                  with a revision of several events is split in that revision, unmarked)

Prints a line for each failing seed with the command that replays it, then one summary line:
  seeds=N violations=V elections=.. commits=.. virtual_secs=.. watch_events=..
Exit status is 1 if any seed failed.";

struct Args {
    seeds: u64,
    first_seed: u64,
    single_seed: Option<u64>,
    nodes: Option<usize>,
    faults: FaultSet,
    trace: bool,
    threads: usize,
    core_faults: raft::Faults,
    machine_faults: machine::MachineFaults,
    ack_before_sync: bool,
    safety_phase_us: Option<u64>,
    clients: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        first_seed: 0,
        single_seed: None,
        nodes: None,
        faults: FaultSet::ALL,
        trace: false,
        core_faults: raft::Faults::default(),
        machine_faults: machine::MachineFaults::default(),
        ack_before_sync: false,
        safety_phase_us: None,
        clients: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--seeds" => args.seeds = parse_number(&value("--seeds")?)?,
            "--first-seed" => args.first_seed = parse_number(&value("--first-seed")?)?,
            "--seed" => args.single_seed = Some(parse_number(&value("--seed")?)?),
            "--nodes" => {
                let nodes = parse_number(&value("--nodes")?)?;
                if !(1..=9).contains(&nodes) {
                    return Err("--nodes must be between 1 and 9".into());
                }
                args.nodes = Some(nodes as usize);
            }
            "--faults" => args.faults = FaultSet::parse(&value("--faults")?)?,
            "--threads" => args.threads = parse_number(&value("--threads")?)?.max(1) as usize,
            "--trace" => args.trace = true,
            "--duration" => {
                let seconds = parse_number(&value("--duration")?)?;
                if !(1..=86_400).contains(&seconds) {
                    return Err("--duration must be between 1 and 86400 seconds".into());
                }
                args.safety_phase_us = Some(seconds * 1_000_000);
            }
            "--clients" => {
                let clients = parse_number(&value("--clients")?)?;
                if !(1..=1_000).contains(&clients) {
                    return Err("--clients must be between 1 and 1000".into());
                }
                args.clients = Some(clients as usize);
            }
            "--break" => match value("--break")?.as_str() {
                "commit-old-term" => args.core_faults.commit_old_term_by_counting = true,
                "forget-vote" => args.core_faults.vote_without_persisting = true,
                "skip-log-check" => args.core_faults.vote_without_log_check = true,
                "skip-revision" => args.machine_faults.skip_revision_every = 7,
                "ack-before-sync" => args.ack_before_sync = true,
                "watch-drop" => args.machine_faults.watch.drop_event_every = 20,
                "watch-duplicate" => args.machine_faults.watch.duplicate_event_every = 20,
                "watch-split" => args.machine_faults.watch.split_revision_every = 3,
                other => return Err(format!("unknown rule to break: {other:?}")),
            },
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// What every seed's options take from the command line.
#[derive(Clone, Copy)]
struct SeedSettings {
    core_faults: raft::Faults,
    machine_faults: machine::MachineFaults,
    ack_before_sync: bool,
    safety_phase_us: Option<u64>,
    clients: Option<usize>,
}

impl SeedSettings {
    fn apply(&self, options: &mut Options) {
        options.core_faults = self.core_faults;
        options.machine_faults = self.machine_faults;
        options.ack_before_sync = self.ack_before_sync;
        if let Some(us) = self.safety_phase_us {
            options.safety_phase_us = us;
        }
        if let Some(clients) = self.clients {
            options.clients = clients;
        }
    }
}

impl Args {
    fn shared(&self) -> SeedSettings {
        SeedSettings {
            core_faults: self.core_faults,
            machine_faults: self.machine_faults,
            ack_before_sync: self.ack_before_sync,
            safety_phase_us: self.safety_phase_us,
            clients: self.clients,
        }
    }

    fn apply(&self, options: &mut Options) {
        self.shared().apply(options);
    }
}

/// Sums over all seeds for the summary line.
#[derive(Default)]
struct Totals {
    seeds: u64,
    violations: u64,
    elections: u64,
    commits: u64,
    virtual_us: u64,
    reads: u64,
    transfers: u64,
    snapshots_installed: u64,
    conf_changes: u64,
    operations: u64,
    operations_ok: u64,
    operations_unknown: u64,
    crashes: u64,
    compactions_requested: u64,
    watch_events: u64,
    watch_resumes: u64,
    watch_compacted: u64,
    watch_progress: u64,
    multi_key_writes: u64,
    watch_multi_event_revisions: u64,
    watch_fragments: u64,
    watch_violations: u64,
}

fn parse_number(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a non-negative integer"))
}

fn report_failure(outcome: &Outcome) {
    println!(
        "FAIL seed={} nodes={} faults={}: {}",
        outcome.options.seed, outcome.options.nodes, outcome.options.faults, outcome.violations[0]
    );
    for violation in outcome.violations.iter().skip(1).take(4) {
        println!("     also: {violation}");
    }
    println!("     replay: {}", outcome.replay_command());
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("sim: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.single_seed {
        let mut options = Options::new(seed, args.nodes.unwrap_or(3), args.faults);
        options.trace = args.trace;
        args.apply(&mut options);
        let outcome = sim::run(options);
        if !outcome.passed() {
            report_failure(&outcome);
        }
        let s = &outcome.stats;
        println!(
            "seeds=1 violations={} elections={} commits={} virtual_secs={:.1} ops={} ok={} unknown={} crashes={} partitions={} messages={} snapshots_installed={} conf_changes={} reads={} transfers={} watch_events={} watch_resumes={} watch_compacted={} multi_key_writes={} watch_multi_event_revisions={} watch_fragments={} watch_violations={}",
            outcome.violations.len(),
            s.elections,
            s.commits,
            s.virtual_us as f64 / 1e6,
            s.operations,
            s.operations_ok,
            s.operations_unknown,
            s.crashes,
            s.partitions,
            s.messages,
            s.snapshots_installed,
            s.conf_changes,
            s.reads_by_read_index,
            s.transfers,
            s.watch_events,
            s.watch_resumes,
            s.watch_compacted,
            s.multi_key_writes,
            s.watch_multi_event_revisions,
            s.watch_fragments,
            s.watch_violations
        );
        return if outcome.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let sizes: Vec<usize> = match args.nodes {
        Some(n) => vec![n],
        None => vec![3, 5, 7],
    };
    let next = Arc::new(AtomicU64::new(args.first_seed));
    let end = args.first_seed + args.seeds;
    let totals = Arc::new(Mutex::new(Totals::default()));
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let next = Arc::clone(&next);
            let totals = Arc::clone(&totals);
            let sizes = sizes.clone();
            let faults = args.faults;
            let args = args.shared();
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let mut options = Options::for_seed(seed, &sizes, faults);
                    args.apply(&mut options);
                    let replay = options.replay_command();
                    let outcome = match std::panic::catch_unwind(move || sim::run(options)) {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            // A panic in the core or the driver is a failure of this seed.
                            println!(
                                "FAIL seed={seed}: panicked (message above)\n     replay: {replay}"
                            );
                            let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
                            totals.violations += 1;
                            totals.seeds += 1;
                            continue;
                        }
                    };
                    let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
                    if !outcome.passed() {
                        report_failure(&outcome);
                        totals.violations += 1;
                    }
                    let stats = &outcome.stats;
                    totals.elections += stats.elections;
                    totals.commits += stats.commits;
                    totals.virtual_us += stats.virtual_us;
                    totals.reads += stats.reads_by_read_index;
                    totals.transfers += stats.transfers;
                    totals.snapshots_installed += stats.snapshots_installed;
                    totals.conf_changes += stats.conf_changes;
                    totals.operations += stats.operations;
                    totals.operations_ok += stats.operations_ok;
                    totals.operations_unknown += stats.operations_unknown;
                    totals.crashes += stats.crashes;
                    totals.compactions_requested += stats.compactions_requested;
                    totals.watch_events += stats.watch_events;
                    totals.watch_resumes += stats.watch_resumes;
                    totals.watch_compacted += stats.watch_compacted;
                    totals.watch_progress += stats.watch_progress;
                    totals.multi_key_writes += stats.multi_key_writes;
                    totals.watch_multi_event_revisions += stats.watch_multi_event_revisions;
                    totals.watch_fragments += stats.watch_fragments;
                    totals.watch_violations += stats.watch_violations;
                    totals.seeds += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        if worker.join().is_err() {
            eprintln!("sim: a worker panicked (a panic in the core is itself a failure)");
            return ExitCode::FAILURE;
        }
    }
    let totals = totals.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "seeds={} violations={} elections={} commits={} virtual_secs={:.0} ops={} ok={} unknown={} compactions={} crashes={} snapshots_installed={} conf_changes={} reads={} transfers={} watch_events={} watch_resumes={} watch_compacted={} watch_progress={} multi_key_writes={} watch_multi_event_revisions={} watch_fragments={} watch_violations={}",
        totals.seeds,
        totals.violations,
        totals.elections,
        totals.commits,
        totals.virtual_us as f64 / 1e6,
        totals.operations,
        totals.operations_ok,
        totals.operations_unknown,
        totals.compactions_requested,
        totals.crashes,
        totals.snapshots_installed,
        totals.conf_changes,
        totals.reads,
        totals.transfers,
        totals.watch_events,
        totals.watch_resumes,
        totals.watch_compacted,
        totals.watch_progress,
        totals.multi_key_writes,
        totals.watch_multi_event_revisions,
        totals.watch_fragments,
        totals.watch_violations
    );
    if totals.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
