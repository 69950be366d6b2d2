//! Durable storage for a Raft member: a segmented write-ahead log of entries and hard states,
//! snapshot files, and crash recovery that never silently drops acknowledged data.
//!
//! [`Wal`] implements [`raft::Storage`] for the core's reads and offers the writes an embedder
//! performs for a `Ready`: [`Wal::write`] (hard state and entries, one `fdatasync`),
//! [`Wal::save_snapshot`] and [`Wal::release_to`]; a [`WalReader`] reads entries back from
//! another thread while the WAL takes writes. All file access goes through the [`Disk`]
//! trait: [`StdDisk`] is the real file system, [`SimDisk`] an in-memory disk that loses unsynced
//! writes, tears pages and fails on command, for crash tests and the simulator.
//!
//! ```
//! use raft::{ConfState, Entry, HardState, LogIndex, NodeId, Storage, Term};
//! use wal::{SimDisk, Wal, WalOptions};
//!
//! let disk = SimDisk::new();
//! let conf = ConfState::with_voters([NodeId(1)]);
//! let mut wal = Wal::create_on(disk.clone(), "/data/wal", WalOptions::default(), conf)?;
//! let entry = Entry { term: Term(1), index: LogIndex(1), ..Entry::default() };
//! let hard_state = HardState { term: Term(1), vote: NodeId(1), commit: LogIndex(0) };
//! wal.write(Some(hard_state), &[entry])?; // durable when this returns
//! drop(wal);
//!
//! let wal = Wal::open_on(disk, "/data/wal", WalOptions::default())?;
//! assert_eq!(wal.last_index(), LogIndex(1));
//! assert_eq!(wal.initial_state()?.0, hard_state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # File format
//!
//! A WAL directory holds:
//!
//! - `LOCK`: locked exclusively (`flock`) by the one open [`Wal`]; a second open fails with
//!   [`WalError::Locked`].
//! - Segments `{seq:016x}.wal` (lower-case hex, so names sort by sequence number), numbered from
//!   1 without gaps. A segment is created as `{seq:016x}.wal.tmp`, preallocated to
//!   [`WalOptions::segment_size_bytes`] (zeros), given its checkpoint, synced, renamed and the
//!   directory synced, so a segment name on disk always has a valid checkpoint and its full
//!   preallocated length. When the next record would not fit, the next segment is started; the
//!   sealed one keeps the zeros after its last record (less than one record's worth), because
//!   a file is never shortened: a segment shorter than its preallocated length was truncated.
//! - Snapshots `{index:016x}-{term:016x}.snap`, written as `….snap.tmp`, synced, renamed and the
//!   directory synced. The newest [`WalOptions::snapshots_to_keep`] are kept.
//!
//! A segment is a sequence of records, each starting at a multiple of 8 bytes (all integers
//! little-endian):
//!
//! ```text
//! offset  size  field
//!  0      4     payload length in bytes (at most 1 GiB)
//!  4      1     record type: 1 checkpoint, 2 batch, 3 snapshot marker
//!  5      3     reserved, zero
//!  8      4     CRC32C of the payload
//! 12      4     CRC32C of bytes 0..12 (the header checks itself, so a damaged length is
//!               recognised before it is used)
//! 16      n     payload
//! 16+n    0..7  zero padding to a multiple of 8
//! ```
//!
//! Payloads (`conf` is `u32 count, u64 voter ids, u32 count, u64 learner ids`; a hard state is
//! `u64 term, u64 vote, u64 commit`):
//!
//! - **Checkpoint** (type 1, first record of every segment, and only there): `u32 format
//!   version (1), u64 segment seq, u64 preallocated length (0 if not preallocated), u64
//!   snapshot index, u64 snapshot term, conf (of the snapshot, or the initial one), hard
//!   state, u64 last index, u32 run count, (u64 first index, u64 term) runs` covering the
//!   entries after the snapshot. It is the complete state at the
//!   moment the segment was started, so replay can begin at any segment and deleting older
//!   segments loses nothing a snapshot does not cover. Recovery cross-checks every later
//!   checkpoint against the state replayed up to it.
//! - **Batch** (type 2, one per [`Wal::write`]): `u8 flags (bit 0: a hard state follows),
//!   [hard state], u64 first index, u32 count, count × (u64 term, u8 kind, u32 length, data)`.
//!   Entry kinds are tags: 1 `Normal`, 2 `Empty`; an unknown tag is reported as corruption
//!   (the file was written by a newer version, or damaged). Replaying a batch first truncates
//!   the log after `first index − 1`: that is how a leader's overwrite of a conflicting suffix
//!   is recorded and replayed.
//! - **Snapshot marker** (type 3): `u64 index, u64 term, u8 kept (1: entries after index were
//!   kept, 0: the whole log was discarded), conf`.
//!
//! A snapshot file: `"RKVSNAP\0", u32 version (1), u32 metadata length, metadata (u64 index,
//! u64 term, conf, u64 data length), data, u32 CRC32C of everything before it`.
//!
//! # Recovery rules
//!
//! [`Wal::open`] reads every segment of the chain and replays it from the first checkpoint.
//! In every segment the records come first, then only zeros up to the end of the file.
//!
//! 1. **Torn tail.** In the *last* segment, the first position that does not hold a complete,
//!    checksum-valid record ends the data. If only zeros follow, that is the clean end. If
//!    other bytes follow but no valid record starts at any 8-byte aligned offset after that
//!    position, they are the torn write of the last batch: they are cut off (overwritten with
//!    zeros and synced) and reported in [`RecoveryReport::torn_tail`]. Because one write is one
//!    record, damage confined to the last record — a partial write, garbage in its pages, or a
//!    bit flip anywhere in it — is a torn tail. Like etcd, we cannot tell a torn final write
//!    from a bit flip in the final record, and treat both as torn: that record's write is the
//!    only one that may have been in flight. (A record whose checksums hold but whose content
//!    does not decode, such as an unknown entry kind, is corruption even there.)
//! 2. **Corruption.** Anything else is [`WalError::Corrupt`] naming the file and byte offset,
//!    and the directory is left untouched: a bad record followed by a valid one (acknowledged
//!    data was damaged), non-zero bytes after the records of any segment but the last, a
//!    segment shorter than its preallocated length (truncated), a segment without its
//!    checkpoint or with another segment's, a checkpoint that disagrees with the records
//!    before it (which also catches whole records lost at the end of a sealed segment), a
//!    batch that does not fit the log, a live entry whose segment is missing, a missing or
//!    damaged current snapshot file, or one whose metadata disagrees with the log.
//! 3. **Leftovers** of interrupted operations hold nothing acknowledged and are removed (and
//!    reported): `*.tmp` files, snapshot files newer than the log's snapshot (the marker never
//!    became durable), and segments before a gap in the sequence (an interrupted release).
//! 4. **Durable before use.** Before `open` returns, every segment and the directory are synced,
//!    so that records a crashed predecessor left only in the page cache (after a failed
//!    `fsync`) cannot be taken back by a later power loss once this member acted on them.
//!
//! What no rule can see: whole records missing from the end of the *last* segment (zeroed, or
//! the whole last segment deleted), and — without preallocation — a last segment truncated at
//! any point, which looks exactly like a torn write. Keep preallocation on.
//!
//! # Durability contract
//!
//! - A write method returns `Ok` only after everything it wrote is durable: the record is
//!   written and `fdatasync`ed (the segment's name was made durable when it was created). Only
//!   then may the embedder act on it (send the vote, acknowledge the append). One call is one
//!   record and one sync, so batching a whole `Ready` into one [`Wal::write`] is the group
//!   commit.
//! - After a crash, recovery yields the state after the last write that returned `Ok`, or the
//!   state after the write that was in flight (if it reached the disk whole). Never a mix,
//!   never less.
//! - The one exception is [`Wal::record_commit`]: a hard state that only raises the commit
//!   index is written without a sync, as etcd's WAL writes it (Raft does not need the commit
//!   index durable). A process crash keeps it; a power loss may give back any commit index
//!   from [`Wal::durable_hard_state`]'s up to it, and nothing else differs. The next sync makes
//!   it durable, and a segment is synced before it is sealed, so only the last segment can
//!   end in such a record.
//! - On any write error (`ENOSPC`, `EIO`, …) the WAL is **poisoned**: the failed call's effect
//!   is unknown (after a failed `fsync` the kernel may have dropped the pages), so every later
//!   write returns [`WalError::Poisoned`]. Reads keep serving the state before the failed call.
//!   The embedder must stop the member; reopening shows the log as before the failed write,
//!   or including it if it did reach the disk. Nothing already acknowledged is lost either way.
//! - Bit flips and truncations of files while the member is down are detected by checksums and
//!   refused (except in the last record, rule 1); a snapshot file is verified when the WAL is
//!   opened and again whenever it is read.
//!
//! # Configuration
//!
//! [`raft::Storage::initial_state`] returns the configuration of the latest snapshot, or the
//! one given to [`Wal::create`] before the first snapshot. The WAL does not interpret entries,
//! so configuration changes in entries after the snapshot are the embedder's to replay.
//!
//! # Fault model of the simulated disk
//!
//! [`SimDisk`] loses, keeps in part or tears only what was not synced, and makes names durable
//! only through `sync_dir`. It assumes a device never damages durable bytes while writing
//! others (a torn write of a page that also holds the end of an earlier, synced record would
//! break that; aligning every batch to a page would be the remedy) and that a failed `fsync`
//! leaves the unsynced pages dirty (Linux may instead mark them clean while keeping them
//! cached, which no user-space check can see). Damage to durable data is injected explicitly
//! ([`SimDisk::flip_bit`], [`SimDisk::truncate_file`]).
//!
//! # Memory
//!
//! The WAL keeps the terms of live entries as runs (one per term change), one small position
//! per batch record (segment, offset, index range) for the retained log. Entry data is read
//! from the segment files on demand.

mod disk;
mod error;
pub mod inspect;
mod log;
mod reader;
mod record;
mod recovery;
mod sim;
mod snapfile;
mod wal;

pub use disk::{Disk, DiskFile, OpenMode, StdDisk, StdFile, StdLock};
pub use error::WalError;
pub use reader::WalReader;
pub use recovery::{RecoveryReport, SegmentInfo, TornTail};
pub use sim::{CrashMode, Fault, FaultDisk, SIM_PAGE_SIZE, SimDisk, SimFile, SimLock};
pub use wal::{SnapshotWriter, Wal, WalOptions};
