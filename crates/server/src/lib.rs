//! raftkv's server: one member of a replicated key-value store that speaks etcd's v3 gRPC API.
//!
//! The binary (`raftkv`, see `main.rs`) is a thin shell over this library so that integration
//! tests and the playground start exactly the code users run.

pub mod config;
pub use machine;
pub mod member;
pub mod tools;

/// Starting and stopping a member, at the path tests and embedders have always used
/// (`server::serve::start`).
pub use member::serve;

/// Installs the log subscriber: `level` is a `tracing` filter (`warn`, `info`,
/// `server=debug,raft=info`, ...); `RUST_LOG`, when set, wins. Quiet (warnings only) by
/// default so a member's terminal shows only what needs attention.
pub fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM, the signals that ask a member to stop cleanly.
pub async fn wait_for_stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
