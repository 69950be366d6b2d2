//! Interaction tests with golden output: every `tests/testdata/*.txt` is a script of commands
//! (elect, propose, deliver, partition, ...) run against in-memory nodes, each followed by the
//! output it must print (see `tests/testdata/README.md`). A script is a readable spec of one
//! behaviour of the core, message by message, in the style of etcd-io/raft's `testdata/`.
//!
//! A changed output fails the test with the file, line, command and both outputs. Run with
//! `REWRITE=1` to write the actual outputs into the files instead; then read the diff: a golden
//! file is a spec only if someone checked that it says the right thing.

#[path = "interaction/datadriven.rs"]
mod datadriven;
#[path = "interaction/env.rs"]
mod env;

use std::path::{Path, PathBuf};

/// Runs one script; returns the mismatches, described, and the rewritten text.
fn run_script(path: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(path).expect("readable script");
    let script = datadriven::Script::parse(&text)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut env = env::Env::default();
    let mut outputs = Vec::new();
    let mut mismatches = Vec::new();
    for case in script.cases() {
        let actual = env.run(case).unwrap_or_else(|error| {
            panic!("{}:{}: `{}`: {error}", path.display(), case.line, case.text)
        });
        if actual != case.expected {
            mismatches.push(describe_mismatch(path, case, &actual));
        }
        outputs.push(actual);
    }
    (mismatches, script.rewrite(&outputs))
}

/// The file, line and command, then the first differing line and both outputs in full.
fn describe_mismatch(path: &Path, case: &datadriven::Case, actual: &str) -> String {
    let expected_lines: Vec<&str> = case.expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let first = (0..expected_lines.len().max(actual_lines.len()))
        .find(|&i| expected_lines.get(i) != actual_lines.get(i))
        .unwrap_or(0);
    let mut text = format!(
        "{}:{}: output of `{}` differs at output line {}:\n  expected: {}\n  actual:   {}\n",
        path.display(),
        case.line,
        case.text,
        first + 1,
        expected_lines.get(first).unwrap_or(&"<nothing>"),
        actual_lines.get(first).unwrap_or(&"<nothing>"),
    );
    text.push_str("--- expected\n");
    for line in &expected_lines {
        text.push_str(&format!("    {line}\n"));
    }
    text.push_str("+++ actual\n");
    for line in &actual_lines {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/testdata exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn interaction_scripts() {
    let rewrite = std::env::var_os("REWRITE").is_some_and(|value| value != "0");
    let paths = scripts();
    assert!(!paths.is_empty(), "no scripts in tests/testdata");
    let mut failures = Vec::new();
    for path in &paths {
        let (mismatches, rewritten) = run_script(path);
        if rewrite {
            if !mismatches.is_empty() {
                std::fs::write(path, rewritten).expect("writable script");
                eprintln!("rewrote {}", path.display());
            }
        } else {
            failures.extend(mismatches);
        }
    }
    assert!(
        failures.is_empty(),
        "{} command(s) printed something else than their golden output (run with REWRITE=1 to \
         accept the new output, then read the diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
