//! The Raft consensus protocol as a pure, deterministic state machine.
//!
//! No I/O, no clock, no threads, no global randomness: time is [`RawNode::tick`], input is
//! [`RawNode::step`] and [`RawNode::propose`], and everything the node wants done (persist, send,
//! apply) comes out of [`RawNode::ready`]. That is what makes it testable by simulation, event for
//! event, and cheap to drive in production.
//!
//! Driving a node by hand (a single-member cluster, with the in-memory storage):
//!
//! ```
//! use raft::{Config, ConfState, MemStorage, NodeId, RawNode, Role};
//!
//! let storage = MemStorage::new_with_conf_state(ConfState::with_voters([NodeId(1)]));
//! let mut node = RawNode::new(&Config::new(NodeId(1)), storage).unwrap();
//! node.campaign(); // or tick() until the election timeout passes
//! let mut applied = Vec::new();
//! for round in 0..3 {
//!     if round == 1 {
//!         assert_eq!(node.role(), Role::Leader);
//!         node.propose(bytes::Bytes::from_static(b"x=1")).unwrap();
//!     }
//!     while node.has_ready() {
//!         let ready = node.ready();
//!         // 1. send ready.messages; 2. persist, then write into the storage and acknowledge;
//!         if let Some(hard_state) = ready.hard_state {
//!             node.storage_mut().set_hard_state(hard_state);
//!         }
//!         node.storage_mut().append(&ready.entries);
//!         node.on_persisted(ready.number);
//!         // 3. send ready.persisted_messages; 4. apply the committed entries.
//!         applied.extend(ready.committed_entries.into_iter().filter(|e| !e.data.is_empty()));
//!     }
//! }
//! assert_eq!(applied[0].data.as_ref(), b"x=1");
//! ```

pub mod confchange;
pub mod config;
pub mod log;
pub mod message;
pub mod quorum;
pub mod raft;
pub mod raw_node;
pub mod rng;
pub mod storage;
pub mod tracker;
pub mod types;

pub use confchange::{ConfChange, ConfChangeError, ConfChangeSingle, ConfChangeType};
pub use config::{Config, ConfigError, ReadOnlyOption};
pub use message::{AppendResponse, Message, MessageBody};
pub use raft::{
    DropReason, Faults, NewNodeError, ProposeError, ReadIndexError, ReadState, TransferError,
};
pub use raw_node::{RawNode, Ready, Status};
pub use rng::Rng;
pub use storage::{EntryLoader, MemStorage, SnapshotLoader, Storage, StorageError};
pub use types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMetadata,
    SoftState, Term,
};
