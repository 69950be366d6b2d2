//! The one driver of a raftkv member.
//!
//! [`Node`] owns the Raft core, the state machine and the table of client requests waiting for
//! their entries to commit. It takes events (a tick, a peer message, a client request, "your
//! write is durable") and emits [`Action`]s (persist, send, reply). It has no tokio, no clock and
//! no I/O, so the simulator and the server run exactly the same code: the simulator executes the
//! actions over a simulated network and disk, the server over real ones.
//!
//! Durability order is enforced here: messages that promise durable state (vote grants, append
//! acknowledgements) are held back until every write before them is acknowledged with
//! [`Node::persisted`].
//!
//! Where things live:
//!
//! - `node.rs`: [`Node`], the inputs it takes and `poll`, which turns Raft's Readies into
//!   actions and holds back messages until their writes are durable;
//!   `node/apply.rs`: committed entries and leaders' snapshots reaching the state machine, and
//!   the answers to the requests they settle; `node/snapshot.rs`: local snapshots for log
//!   compaction.
//! - `forwarded.rs`: the commands a follower handed to the leader, recognised by their bytes
//!   when they are applied, and their deadlines.
//! - `reads.rs`: linearizable reads waiting for their read index, then for the state machine
//!   to reach it.
//! - `actions.rs`: [`Action`] and [`PersistTask`], what the embedder is asked to do.
//! - `state_machine.rs`: the [`StateMachine`] a member replicates, and the frozen state a
//!   snapshot is written from. The node never looks inside commands: the state machine
//!   members run is `machine::EtcdMachine`, and the tests here use a register map.
//! - `error.rs`: [`RequestError`] and [`NodeStartError`].

mod actions;
mod error;
mod forwarded;
mod node;
mod reads;
mod state_machine;

pub use actions::{Action, PersistTask, RequestId};
pub use error::{NodeStartError, RequestError};
pub use node::Node;
pub use state_machine::{FrozenState, SnapshotJob, StateMachine};
