//! The one executor of a member's actions, and the one WAL writer's batching.
//!
//! [`node::Node`] decides; this crate carries out what it decides, the same way in a serving
//! member (`runtime`, over tokio, a writer thread and TCP) and in the simulator (`sim`, over a
//! simulated clock, disk and network). What differs between the two is only the [`MemberIo`]
//! an embedder passes in: where a message goes, how a client is answered, how a writer job
//! reaches the writer. Everything with a rule in it is here once:
//!
//! - [`Executor`]: how each [`node::Action`] is carried out, and the commit index a node asks to
//!   record without a sync, which rides along with the next write or goes alone at the next
//!   tick ([`Executor::tick`]).
//! - [`SnapshotPolicy`]: when a local snapshot is due, and how a durable one compacts the log
//!   and the WAL.
//! - [`writer`]: how the writer takes the jobs queued behind one another
//!   ([`writer::gather_batch`]) and makes a batch of persist tasks durable with as few records
//!   and syncs as possible ([`writer::write_batch`]).

mod executor;
mod snapshot;
pub mod writer;

pub use executor::{Executor, MemberIo, Observation};
pub use snapshot::SnapshotPolicy;
pub use writer::WriterJob;
