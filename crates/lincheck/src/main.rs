//! `lincheck FILE...`: checks Jepsen register logs for linearizability from the command line, so
//! a history captured by a test run can be judged without writing code.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lincheck::{CheckOptions, Verdict, check, parse_jepsen};

/// Like `eprintln!`, but a failure to write to stderr is ignored instead of panicking: there is
/// nowhere left to report it.
macro_rules! warn {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

const USAGE: &str = "\
Usage: lincheck [OPTIONS] FILE...   (FILE `-` reads standard input)

Checks each Jepsen register log (`INFO  jepsen.util - PROC TYPE F VALUE` lines)
for linearizability and prints one line per file:

    FILE linearizable=true|false ops=N

Options:
    -v, --verbose        after a non-linearizable file, print why (indented)
    --max-steps N        search budget per key (default 50000000); a file whose
                         search runs out prints linearizable=unknown
    -h, --help           print this help

Exit status: 0 if every file is linearizable, 1 if any is not, 2 on a usage,
I/O or parse error, 3 if none is known bad but some search ran out of budget.
";

fn main() -> ExitCode {
    let mut options = CheckOptions::default();
    let mut verbose = false;
    let mut files = Vec::new();
    // `args_os`, not `args`: a file name need not be UTF-8, and `args` would panic on it.
    let mut args = std::env::args_os().skip(1);
    let mut only_files = false;
    while let Some(arg) = args.next() {
        let flag = arg
            .to_str()
            .filter(|a| !only_files && a.starts_with('-') && *a != "-");
        let Some(flag) = flag else {
            files.push(PathBuf::from(arg));
            continue;
        };
        match flag {
            "-h" | "--help" => {
                let _ = io::stdout().write_all(USAGE.as_bytes());
                return ExitCode::SUCCESS;
            }
            "-v" | "--verbose" => verbose = true,
            "--" => only_files = true,
            "--max-steps" => match args.next().and_then(|n| n.to_str()?.parse::<u64>().ok()) {
                Some(n) => options.max_steps_per_key = n,
                _ => return usage_error("--max-steps needs a number"),
            },
            other => return usage_error(&format!("unknown option {other:?}")),
        }
    }
    if files.is_empty() {
        return usage_error("no input files");
    }

    let (mut errors, mut violations, mut timeouts) = (false, false, false);
    for path in &files {
        let file = path.display();
        let text = match read_input(path) {
            Ok(text) => text,
            Err(e) => {
                warn!("lincheck: {file}: {e}");
                errors = true;
                continue;
            }
        };
        let history = match parse_jepsen(&text) {
            Ok(history) => history,
            Err(e) => {
                warn!("lincheck: {file}: {e}");
                errors = true;
                continue;
            }
        };
        let verdict = check(&history, &options);
        let answer = match &verdict {
            Verdict::Linearizable => "true",
            Verdict::NotLinearizable { .. } => "false",
            Verdict::Timeout { .. } => "unknown",
        };
        let mut out = io::stdout().lock();
        let mut printed = writeln!(out, "{file} linearizable={answer} ops={}", history.len());
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { key, explanation } => {
                violations = true;
                if verbose && printed.is_ok() {
                    printed = writeln!(out, "    key {key}: {explanation}");
                }
            }
            Verdict::Timeout { key } => {
                timeouts = true;
                warn!(
                    "lincheck: {file}: search budget of {} steps exhausted on key {key}",
                    options.max_steps_per_key
                );
            }
        }
        if let Err(e) = printed.and_then(|()| out.flush()) {
            // A closed pipe (`lincheck ... | head`) is the reader's choice, not an error to report.
            if e.kind() != io::ErrorKind::BrokenPipe {
                warn!("lincheck: cannot write to standard output: {e}");
            }
            return ExitCode::from(2);
        }
    }

    ExitCode::from(if errors {
        2
    } else if violations {
        1
    } else if timeouts {
        3
    } else {
        0
    })
}

/// Reads a whole input file, `-` meaning standard input so logs can be piped in.
fn read_input(file: &Path) -> io::Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        io::stdin().lock().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}

/// Reports a command-line mistake with the usage text, exiting with status 2.
fn usage_error(message: &str) -> ExitCode {
    warn!("lincheck: {message}\nTry `lincheck --help` for usage.");
    ExitCode::from(2)
}
