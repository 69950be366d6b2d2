//! The playground (being written).
use std::process::ExitCode;
/// Playground settings.
#[derive(clap::Args, Debug)]
pub struct PlaygroundArgs {}
/// Runs the playground.
pub fn run(_args: PlaygroundArgs) -> ExitCode {
    ExitCode::FAILURE
}
