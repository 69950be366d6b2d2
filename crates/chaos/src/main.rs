//! `chaos`: one real-process fault run against `raftkv`, ending with a `RESULT` line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chaos::watchers::BreakWatch;
use chaos::{FaultKind, RunOptions, parse_duration};
use clap::Parser;

/// Run real raftkv processes under a seeded nemesis and check the client history for
/// linearizability.
#[derive(Parser, Debug)]
#[command(name = "chaos")]
struct Args {
    /// Number of members (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How long clients and nemesis run before the final heal (e.g. 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed for every random choice of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject: all, none, or a comma-separated list of kill, pause, partition, delay,
    /// loss, membership, torn-wal.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Number of keys.
    #[arg(long, default_value_t = 5)]
    keys: u64,
    /// Run directory (kept); default a temporary directory, kept only when the run fails.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the history and logs even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Client timeout per operation (e.g. 1500ms).
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    op_timeout: Duration,
    /// The raftkv binary (default: $RAFTKV_BIN, next to this binary, or built with cargo).
    #[arg(long)]
    raftkv: Option<PathBuf>,
    /// Negative control: serializable reads from an isolated member (must fail the check).
    #[arg(long, hide = true)]
    stale_reads: bool,
    /// Negative control of the watch checker: one watcher's record loses (drop) or repeats
    /// (duplicate) one event, client-side; the run must report a watch violation.
    #[arg(long, hide = true, value_parser = BreakWatch::parse)]
    break_watch: Option<BreakWatch>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nemesis = match FaultKind::parse_list(&args.nemesis) {
        Ok(kinds) => kinds,
        Err(error) => {
            eprintln!("chaos: {error}");
            return ExitCode::from(2);
        }
    };
    if args.nodes < 1 || (args.stale_reads && args.nodes < 3) || args.clients < 1 || args.keys < 1 {
        eprintln!("chaos: need at least 1 node (3 for --stale-reads), 1 client and 1 key");
        return ExitCode::from(2);
    }
    let options = RunOptions {
        nodes: args.nodes,
        duration: args.duration,
        seed: args.seed,
        nemesis,
        clients: args.clients,
        keys: args.keys,
        out: args.out,
        keep: args.keep,
        op_timeout: args.op_timeout,
        stale_reads: args.stale_reads,
        break_watch: args.break_watch,
        binary: args.raftkv,
        verbose: true,
        ..RunOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chaos: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(chaos::run(options)) {
        Ok(report) => {
            println!("{}", report.result_line());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("chaos: {error}");
            println!(
                "RESULT linearizable=false lost_acked=0 ops=0 ok=0 failed=0 unknown=0 faults=0 heal_to_write_ms=none watch_events=0 watch_violations=0"
            );
            ExitCode::FAILURE
        }
    }
}
