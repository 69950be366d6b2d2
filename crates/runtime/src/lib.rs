//! A raftkv member on tokio: the piece the server wraps.
//!
//! [`Member::start`] opens (or creates and bootstraps) the member's write-ahead log, rebuilds
//! the node's in-memory view of its log from it, starts the peer transport and runs:
//!
//! - ONE driver task that owns the [`node::Node`] and selects over the tick interval, inbound
//!   peer messages, client requests and persist completions, executing the node's actions;
//! - ONE writer thread that owns the [`wal::Wal`]: it makes persist tasks durable in order
//!   (consecutive queued tasks are batched into one record and one `fdatasync`) and reports
//!   each batch back to the driver, which then acknowledges the tasks to the node.
//!
//! Every [`MemberConfig::snapshot_every_entries`] applied entries the driver freezes the state
//! machine ([`node::StateMachine::freeze`]) and a snapshot thread streams it into a snapshot
//! file while the driver goes on; when the file is durable the driver drops the log entries it
//! covers and queues a job for the writer, behind the pending persist tasks, to record the
//! snapshot and release the WAL segments it covers. The node's log view keeps no snapshot data
//! in memory: a follower that needs the snapshot gets it read back from its file.
//!
//! Every channel is bounded. No lock is held across I/O: the driver and the writer share
//! nothing but channels. A storage failure stops the member (its handle then answers
//! [`ClientError::Stopped`], and [`MemberHandle::shutdown`] reports the failure).
//!
//! Where each hop lives, in the order a client's write takes them:
//!
//! - `handle.rs`: [`MemberHandle`], which turns a client call into a command for the driver
//!   and waits for its answer.
//! - `protocol.rs`: what crosses the channels between the tasks: commands (handle to driver),
//!   writer jobs (driver to writer), completions (writer to driver), and the [`Status`] the
//!   driver publishes.
//! - `driver.rs`: the driver task and its loop: inputs to the node, the node's actions carried
//!   out.
//! - `writer.rs`: the writer thread: persist tasks batched into WAL records and syncs.
//! - `snapshot.rs`: when a local snapshot is due, and the thread that writes it.
//! - `start.rs`: [`Member::start`]: the WAL opened or bootstrapped, the node rebuilt, the
//!   tasks spawned.
//! - `config.rs`: [`MemberConfig`] and its bounds; `error.rs`: the errors of each of the above.

mod config;
mod driver;
mod error;
mod handle;
mod protocol;
mod snapshot;
mod start;
mod writer;

pub use config::MemberConfig;
pub use error::{ClientError, MemberFailure, StartError, TransferOutcome};
pub use handle::MemberHandle;
pub use protocol::Status;
pub use start::Member;
