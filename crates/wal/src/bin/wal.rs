//! `wal inspect DIR` and `wal verify DIR`: look at a WAL directory without changing it.
//!
//! Exit codes: 0 success (for `verify`: every checksum holds); 1 corruption or an I/O error,
//! with the file and byte offset of the first problem on stderr; 2 bad usage.

use std::path::Path;
use std::process::ExitCode;
use wal::StdDisk;
use wal::inspect::{inspect, verify};

const USAGE: &str = "usage: wal inspect DIR   print segments, hard state and snapshots
       wal verify DIR    verify every checksum (exit 0 clean, 1 corrupt)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, dir) = match args.as_slice() {
        [command, dir] if command == "inspect" || command == "verify" => (command.as_str(), dir),
        [flag] if flag == "-h" || flag == "--help" || flag == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = Path::new(dir);
    match command {
        "inspect" => match inspect(&StdDisk, dir) {
            Ok(inspection) => {
                print!("{inspection}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(1)
            }
        },
        _ => match verify(&StdDisk, dir) {
            Ok(inspection) => {
                let records: u64 = inspection.segments.iter().map(|s| s.records).sum();
                println!(
                    "ok: {} segments, {} records, {} snapshot files verified; last index {}",
                    inspection.segments.len(),
                    records,
                    inspection.snapshot_files.len(),
                    inspection.last_index.get()
                );
                if let Some(torn) = &inspection.torn_tail {
                    println!("note: {torn} (not acknowledged data; cut on next open)");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(1)
            }
        },
    }
}
