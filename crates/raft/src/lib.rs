//! The Raft consensus protocol as a pure, deterministic state machine.
//!
//! No I/O, no clock, no threads, no global randomness: time is `tick()`, input is `step()`, and
//! everything the node wants done (persist, send, apply) comes out of `ready()`.

pub mod config;
pub mod message;
pub mod rng;
pub mod storage;
pub mod types;

pub use config::{Config, ConfigError};
pub use message::{AppendResponse, Message, MessageBody};
pub use rng::Rng;
pub use storage::{MemStorage, Storage, StorageError};
pub use types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMetadata,
    SoftState, Term,
};
