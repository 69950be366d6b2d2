//! Client subcommands (being written).
use std::process::ExitCode;
/// Client subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClientArgs {
    /// Placeholder.
    Status,
}
/// Runs a client subcommand.
pub fn run(_args: ClientArgs) -> ExitCode {
    ExitCode::FAILURE
}
