//! The `raftkv` binary: `serve` runs one member, `playground` a local three-member cluster,
//! and the client subcommands talk to any etcd v3 endpoint (raftkv or etcd).

use clap::{Parser, Subcommand};
use server::config::ServeArgs;
use server::tools::client::ClientArgs;
use server::tools::playground::PlaygroundArgs;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "raftkv",
    version,
    about = "A replicated key-value store on Raft that speaks etcd's v3 API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one member of a cluster.
    Serve(Box<ServeArgs>),
    /// Start a local three-member cluster (one process per member) and print how to reach it.
    Playground(PlaygroundArgs),
    /// Load etcd v3 endpoints (raftkv or etcd) with a closed loop of clients and report
    /// throughput and latency.
    Bench(server::tools::bench::BenchArgs),
    /// Client commands against etcd v3 endpoints.
    #[command(flatten)]
    Client(ClientArgs),
    /// Inspect or verify a member's write-ahead log (`DATA_DIR/wal`), offline.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// Print the WAL's segments, snapshot and hard state.
    Inspect {
        /// The WAL directory (a member's `DATA_DIR/wal`).
        dir: std::path::PathBuf,
    },
    /// Read every record and check every checksum.
    Verify {
        /// The WAL directory (a member's `DATA_DIR/wal`).
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Playground(args) => server::tools::playground::run(args),
        Command::Client(args) => server::tools::client::run(args),
        Command::Bench(args) => server::tools::bench::run(args),
        Command::Wal { command } => wal_command(command),
    }
}

fn wal_command(command: WalCommand) -> ExitCode {
    use wal::inspect::{inspect, verify};
    let result = match &command {
        WalCommand::Inspect { dir } => inspect(&wal::StdDisk, dir).map(|found| found.to_string()),
        WalCommand::Verify { dir } => verify(&wal::StdDisk, dir).map(|found| {
            let records: u64 = found.segments.iter().map(|segment| segment.records).sum();
            let mut report = format!(
                "ok: {} segments, {} records, {} snapshot files verified; last index {}\n",
                found.segments.len(),
                records,
                found.snapshot_files.len(),
                found.last_index.get()
            );
            if let Some(torn) = &found.torn_tail {
                report.push_str(&format!(
                    "note: {torn} (not acknowledged data; cut on next open)\n"
                ));
            }
            report
        }),
    };
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("raftkv: {error}");
            return ExitCode::from(2);
        }
    };
    server::init_logging(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftkv: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let member = match server::serve::start(config).await {
            Ok(member) => member,
            Err(error) => {
                eprintln!("raftkv: {error}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "raftkv: member {:x} serving clients on {}",
            member.core().identity.member_id,
            member.client_addr()
        );
        tokio::select! {
            () = server::wait_for_stop_signal() => {}
            () = member.removed() => {
                eprintln!("raftkv: this member was removed from the cluster; stopping");
            }
        }
        match member.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("raftkv: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
