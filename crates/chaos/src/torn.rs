//! Torn WAL tails: the damage a crash can do to a member's write-ahead log, and nothing more.
//!
//! A crash (kill -9, power loss) can leave a write that was in progress half done: some bytes of
//! a record that was never acknowledged may or may not have reached the file, in any mix. All of
//! that lies *after* `used_bytes` of the last segment, the end of the records that were written
//! and fsynced before anything was acknowledged. So this module only ever writes garbage or a
//! partial record header into the region `[used_bytes, file length)` of the last segment (which
//! raftkv preallocates and fills with zeros). Recovery must notice the torn record, cut it, and
//! carry on.
//!
//! It deliberately never touches bytes below `used_bytes`, and never shortens the file: those
//! bytes were fsynced and acknowledged (entries a leader counted towards commitment, the vote and
//! term in the hard state), and Raft's safety argument assumes stable storage keeps them. A member
//! that forgot an acknowledged entry or its vote may legitimately help lose committed data or
//! elect two leaders in one term, so cutting into them would test a fault outside Raft's model
//! (a broken disk, which checksums must detect, not a crash). Shortening a preallocated segment is
//! likewise impossible by crash: the preallocation was synced before the segment joined the log,
//! and recovery rightly treats a short segment as truncation, not as a torn write.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::rng::Rng;

/// Writes a torn record after the valid end of the last WAL segment of the member whose data
/// directory is `data_dir` (the member must be dead). Returns a description of what was done.
pub fn tear_wal_tail(data_dir: &Path, rng: &mut Rng) -> Result<String, String> {
    let dir = data_dir.join("wal");
    let inspection =
        wal::inspect::inspect(&wal::StdDisk, &dir).map_err(|error| error.to_string())?;
    let last = inspection
        .segments
        .last()
        .ok_or_else(|| "no WAL segment".to_owned())?;
    let room = last.file_bytes.saturating_sub(last.used_bytes);
    if room == 0 {
        return Ok(format!(
            "{} is full ({} bytes): no room after the valid end, left alone",
            last.path.display(),
            last.used_bytes
        ));
    }
    let length = rng.between(1, room.min(4096));
    let mut bytes: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
    let variant = if rng.chance(1, 2) && length >= 16 {
        // What an interrupted append most often leaves: a complete, checksum-valid record
        // header (batch type) announcing more payload than made it to the file.
        let written_payload = length - 16;
        let announced = (written_payload + rng.between(1, 4096)) as u32;
        bytes[0..4].copy_from_slice(&announced.to_le_bytes());
        bytes[4] = 2;
        bytes[5..8].fill(0);
        let header_crc = crc32c::crc32c(&bytes[0..12]);
        bytes[12..16].copy_from_slice(&header_crc.to_le_bytes());
        "partial record (valid header, short payload)"
    } else {
        "garbage"
    };
    let mut file = OpenOptions::new()
        .write(true)
        .open(&last.path)
        .map_err(|error| format!("open {}: {error}", last.path.display()))?;
    file.seek(SeekFrom::Start(last.used_bytes))
        .and_then(|_| file.write_all(&bytes))
        .and_then(|_| file.sync_all())
        .map_err(|error| format!("write {}: {error}", last.path.display()))?;
    Ok(format!(
        "{variant} of {length} bytes written at offset {} (used_bytes) of {} ({} bytes)",
        last.used_bytes,
        last.path.display(),
        last.file_bytes
    ))
}
