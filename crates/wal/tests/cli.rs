//! The `wal` tool: `inspect` and `verify` on real directories, exit codes, and bad arguments.

mod common;

use common::*;
use raft::{ConfState, LogIndex, NodeId};
use std::process::{Command, Output};
use wal::{Wal, WalOptions};

fn wal_tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wal"))
        .args(args)
        .output()
        .expect("run the wal binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sample(dir: &std::path::Path) -> u64 {
    let options = WalOptions {
        segment_size_bytes: 8192,
        ..WalOptions::default()
    };
    let mut wal = Wal::create(dir, options, conf()).unwrap();
    for batch in 0..20 {
        wal.write(
            Some(raft::HardState {
                term: raft::Term(2),
                vote: NodeId(3),
                commit: LogIndex(batch * 4),
            }),
            &entries(1 + batch * 4, 4, 2, batch, 200),
        )
        .unwrap();
    }
    let conf_state = ConfState {
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        learners: vec![NodeId(7)],
        ..Default::default()
    };
    let before = wal.segments().last().unwrap().clone();
    wal.save_snapshot(&snapshot(40, 2, conf_state, b"snapshot data"))
        .unwrap();
    // The snapshot marker went into the same segment, right after the last batch.
    assert_eq!(wal.segments().last().unwrap().path, before.path);
    wal.release_to(LogIndex(40)).unwrap();
    wal.append(&entries(81, 1, 2, 99, 10)).unwrap();
    before.used_bytes
}

#[test]
fn inspect_prints_segments_hard_state_and_snapshots() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    sample(&dir);
    let output = wal_tool(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    for needle in [
        ".wal  entries ",
        "hard state: term 2 vote 3 commit 76",
        "log: snapshot index 40 term 2, entries 41..=81",
        "voters [1,2,3] learners [7]",
        "0000000000000028-0000000000000002.snap  index 40 term 2",
        "data 13 B (current)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn verify_is_clean_then_reports_the_first_corruption_with_file_and_offset() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    let marker = sample(&dir);
    let output = wal_tool(&["verify", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("ok:"));

    // Damage the snapshot marker, the record before the last one in the active segment.
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    let active = segments.iter().max().unwrap();
    let mut bytes = std::fs::read(active).unwrap();
    let damaged = marker as usize + 20;
    bytes[damaged] ^= 0x40;
    std::fs::write(active, &bytes).unwrap();
    let output = wal_tool(&["verify", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = text(&output.stderr);
    assert!(err.contains(&active.display().to_string()), "{err}");
    assert!(err.contains(&format!("at byte {marker}:")), "{err}");
    let output = wal_tool(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bad_arguments_print_usage_and_exit_2() {
    for args in [
        &[][..],
        &["inspect"][..],
        &["frobnicate", "/tmp"][..],
        &["verify", "a", "b"][..],
    ] {
        let output = wal_tool(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains("usage:"), "{args:?}");
    }
    let output = wal_tool(&["verify", "/definitely/not/a/wal/dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!text(&output.stderr).is_empty());
}
