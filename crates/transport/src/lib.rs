//! Peer-to-peer transport for raftkv members: a wire codec and a tokio TCP transport.
//!
//! This is the one crate below `server` that uses tokio: the Raft core and the node driver stay
//! sans-I/O, and this crate carries their [`raft::Message`]s between processes.
//!
//! # Guarantees
//!
//! - **Best effort.** Raft tolerates loss, so [`tcp::Transport::send`] never blocks and never
//!   retries: a message that cannot be queued or written is dropped, counted in
//!   [`tcp::TransportStats`], and reported (the peer as unreachable, a snapshot as failed) so the
//!   runtime can call `RawNode::report_unreachable` / `report_snapshot`.
//! - **Per-peer FIFO.** Messages to one peer travel on one long-lived connection written by one
//!   task, so those that arrive, arrive in the order they were sent. Nothing is promised across
//!   peers or across a reconnection (a message may be lost at the break).
//! - **Bounded memory.** Every queue has a configured length, every frame a configured maximum
//!   size (checked before allocating), and a snapshot in reassembly a configured maximum size.
//!   When the runtime's inbound channel is full, connection readers wait, and TCP flow control
//!   pushes back on the senders.
//!
//! # Connection handshake
//!
//! The dialer opens the connection and sends 32 bytes, all integers little-endian:
//!
//! ```text
//! magic "RKVT" [4] | version u8 | reserved [3] = 0 | cluster_id u64 | from u64 | to u64
//! ```
//!
//! The listener answers one byte (`0xA5`) if the cluster id is its own, `from` is a configured
//! peer and `to` is itself; otherwise it closes the connection. Connections are one-way: the
//! dialer only writes frames, the listener only reads them (each member dials each peer).
//!
//! # Frame format
//!
//! After the handshake the dialer writes frames:
//!
//! ```text
//! len u32 | version u8 | kind u8 | reserved u16 = 0 | cluster_id u64 | crc32c u32 | payload [len]
//! ```
//!
//! `len` is the payload length and must not exceed `max_frame_bytes`; the CRC32C covers the
//! first 16 header bytes and the payload. `kind` is 1 for a message, 2 for a snapshot chunk.
//!
//! A message payload is `from u64 | to u64 | term u64 | tag u8 | body`, where the body is
//! fixed-width fields in declaration order (booleans packed as flag bits, `Option` as a presence
//! byte) and, for `AppendEntries`, `count u32` entries of
//! `term u64 | index u64 | kind u8 | data_len u32 | data`.
//!
//! `InstallSnapshot` never travels as one frame: it is split into chunk frames
//! `from | to | term | snapshot_id u64 | offset u64 | total_len u64 | has_metadata u8 |
//! [metadata] | data (rest of payload)`, the metadata (index, term, four member lists as
//! `count u32` + ids, `auto_leave u8`) in the first chunk only. The receiver's
//! [`codec::SnapshotAssembler`] rebuilds the message, refusing gaps, reordering and oversize.
//!
//! Decoding is strict: unknown tags, non-canonical flags and trailing bytes are errors, and any
//! error closes the connection (the stream can no longer be trusted to be frame-aligned).

pub mod codec;
pub mod tcp;

pub use codec::{
    AssemblyError, CodecError, Decoder, Encoder, Frame, Handshake, SnapshotAssembler, SnapshotChunk,
};
pub use tcp::{Reports, SendError, Transport, TransportConfig, TransportError, TransportStats};
