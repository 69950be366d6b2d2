//! A small reader and rewriter of datadriven scripts, in the format of cockroachdb's
//! `datadriven` package that etcd-io/raft's `testdata/*.txt` use:
//!
//! ```text
//! # A comment, kept as it is.
//! command arg key=value key=(a,b)
//! ----
//! expected output, up to the next blank line
//! ```
//!
//! Output that contains blank lines is written between `----`/`----` pairs:
//!
//! ```text
//! command
//! ----
//! ----
//! first part
//!
//! second part
//! ----
//! ----
//! ```
//!
//! Ours is about 150 lines instead of a new dependency, so that the format is exactly what this
//! file says and nothing else.

use std::fmt::Write as _;

/// One argument of a command: `key`, `key=value` or `key=(v1,v2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// The key (for a bare word, the word itself).
    pub key: String,
    /// The values: none for a bare word, one for `key=value`, several for `key=(a,b)`.
    pub values: Vec<String>,
}

/// One command of a script, with the golden output that follows it.
#[derive(Clone, Debug)]
pub struct Case {
    /// The 1-based line of the command, for error messages.
    pub line: usize,
    /// The command line as written.
    pub text: String,
    /// The command's name (the first word).
    pub name: String,
    /// The arguments after the name.
    pub args: Vec<Arg>,
    /// The golden output, without a trailing newline.
    pub expected: String,
}

/// A script: its cases, and everything else (comments, blank lines) kept for rewriting.
#[derive(Debug)]
pub struct Script {
    /// The pieces in file order.
    pieces: Vec<Piece>,
}

#[derive(Debug)]
enum Piece {
    /// A comment or blank line, written back as it is.
    Verbatim(String),
    /// A case; its output is rewritten.
    Case(Case),
}

/// Splits `word` into an [`Arg`].
fn parse_arg(word: &str) -> Arg {
    let Some((key, value)) = word.split_once('=') else {
        return Arg {
            key: word.to_string(),
            values: Vec::new(),
        };
    };
    let values = match value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
        None => vec![value.to_string()],
    };
    Arg {
        key: key.to_string(),
        values,
    }
}

/// Splits a command line into words, keeping `key=(a, b)` together even with spaces inside.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

impl Script {
    /// Parses a script; an error names the line that does not fit the format.
    pub fn parse(text: &str) -> Result<Script, String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < lines.len() {
            let line = lines[pos];
            if line.trim().is_empty() || line.starts_with('#') {
                pieces.push(Piece::Verbatim(line.to_string()));
                pos += 1;
                continue;
            }
            let command_line = pos + 1;
            let words = split_words(line);
            pos += 1;
            if lines.get(pos) != Some(&"----") {
                return Err(format!(
                    "line {command_line}: command `{line}` is not followed by `----`"
                ));
            }
            pos += 1;
            let mut expected = Vec::new();
            if lines.get(pos) == Some(&"----") {
                // Output with blank lines, closed by a `----`/`----` pair.
                pos += 1;
                loop {
                    match (lines.get(pos), lines.get(pos + 1)) {
                        (Some(&"----"), Some(&"----")) => break,
                        (Some(line), _) => expected.push(*line),
                        (None, _) => {
                            return Err(format!(
                                "line {command_line}: output opened with `----` twice is never \
                                 closed"
                            ));
                        }
                    }
                    pos += 1;
                }
                pos += 2;
            } else {
                while let Some(line) = lines.get(pos).filter(|line| !line.trim().is_empty()) {
                    expected.push(*line);
                    pos += 1;
                }
            }
            pieces.push(Piece::Case(Case {
                line: command_line,
                text: line.to_string(),
                name: words[0].clone(),
                args: words[1..].iter().map(|word| parse_arg(word)).collect(),
                expected: expected.join("\n"),
            }));
        }
        Ok(Script { pieces })
    }

    /// The cases, in order.
    pub fn cases(&self) -> impl Iterator<Item = &Case> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Case(case) => Some(case),
            Piece::Verbatim(_) => None,
        })
    }

    /// The script text with each case's output replaced by `outputs` (one per case, in order).
    pub fn rewrite(&self, outputs: &[String]) -> String {
        let mut outputs = outputs.iter();
        let mut text = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Verbatim(line) => {
                    text.push_str(line);
                    text.push('\n');
                }
                Piece::Case(case) => {
                    let output = outputs.next().map_or("", String::as_str);
                    let _ = writeln!(text, "{}\n----", case.text);
                    if output.lines().any(|line| line.trim().is_empty()) {
                        let _ = writeln!(text, "----\n{output}\n----\n----");
                    } else if !output.is_empty() {
                        let _ = writeln!(text, "{output}");
                    }
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rewrites_both_output_forms() {
        let text = "# c\ncmd 1 a=b l=(1, 2)\n----\nout\n\nblank\n----\n----\nx\n\ny\n----\n----\n";
        let script = Script::parse(text).unwrap();
        let cases: Vec<&Case> = script.cases().collect();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].args[2].values, vec!["1", "2"]);
        assert_eq!(cases[0].expected, "out");
        assert_eq!(cases[1].expected, "x\n\ny");
        let outputs: Vec<String> = cases.iter().map(|case| case.expected.clone()).collect();
        assert_eq!(script.rewrite(&outputs), text);
    }
}
