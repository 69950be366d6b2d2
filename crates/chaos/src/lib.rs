//! Real-process fault tests for raftkv, in the manner of Jepsen's etcd tests.
//!
//! The simulator proves the Raft core under every fault it can model; this crate proves the
//! shipped binary, with its real disk, network stack and runtime. A run:
//!
//! 1. starts 3 or 5 `raftkv serve` processes on loopback ([`cluster`]), each peer link going
//!    through its own fault-injecting proxy ([`proxy`]);
//! 2. runs concurrent clients ([`client`]) doing linearizable reads, blind writes of unique values
//!    and compare-and-set on a few keys through the etcd v3 API, recording every call with its
//!    outcome (ok, failed, unknown) in a [`history`];
//! 3. meanwhile a seeded [`nemesis`] kills, pauses, partitions, delays, drops, re-members and
//!    tears WALs ([`torn`]);
//! 4. heals everything, measures the time to the first acknowledged write, reads every key,
//!    and checks the history with [`lincheck`] plus an independent lost-write count ([`run`]);
//! 5. all along, [`watchers`] on every member record etcd Watch streams across every fault;
//!    they are checked against the committed history read back after the run.
//!
//! Negative controls (serializable reads from an isolated member; a watcher record that loses
//! or repeats an event) show the checkers do catch what they are for, so a green run means
//! something.

pub mod client;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod torn;
pub mod watchers;

pub use nemesis::FaultKind;
pub use run::{RunOptions, RunReport, run};

/// Parses a duration like `30s`, `2m`, `500ms`, `1h` or a bare number of seconds; used for
/// `--duration` so long runs read naturally on the command line.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 2m, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m or h)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 weeks").is_err());
    }
}
