//! Read-only inspection and verification of a WAL directory, for the `wal` tool (later
//! `raftkv wal inspect|verify`). Nothing here takes the lock or changes a file, so it can look
//! at the directory of a stopped member or at a copy.

use crate::disk::Disk;
use crate::error::WalError;
use crate::recovery::{SegmentInfo, TornTail, scan_dir};
use crate::snapfile::read_snapshot_file;
use raft::{HardState, LogIndex, SnapshotMetadata, Term};
use std::fmt;
use std::path::{Path, PathBuf};

/// One snapshot file and whether it verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFileReport {
    /// The file.
    pub path: PathBuf,
    /// Index from the file name.
    pub index: LogIndex,
    /// Term from the file name.
    pub term: Term,
    /// Size of the snapshot data, if the file verified.
    pub data_bytes: Option<u64>,
    /// The metadata inside the file, or why the file failed verification.
    pub verified: Result<SnapshotMetadata, String>,
    /// Whether this is the snapshot the log is based on.
    pub current: bool,
}

/// Everything `wal inspect` shows about a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The segments of the chain, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// A torn last write that the next open would cut off.
    pub torn_tail: Option<TornTail>,
    /// The recovered hard state.
    pub hard_state: HardState,
    /// The log's snapshot (index 0 and the initial configuration if none).
    pub snapshot: SnapshotMetadata,
    /// The recovered last index.
    pub last_index: LogIndex,
    /// Every snapshot file, by index.
    pub snapshot_files: Vec<SnapshotFileReport>,
    /// Files the next open would remove: temporary files and segments before a gap.
    pub leftovers: Vec<PathBuf>,
}

impl Inspection {
    /// The first snapshot file that failed verification, as an error naming it.
    pub fn first_bad_snapshot(&self) -> Option<WalError> {
        self.snapshot_files.iter().find_map(|file| {
            file.verified
                .as_ref()
                .err()
                .map(|reason| WalError::corrupt(&file.path, 0, reason.clone()))
        })
    }
}

/// Scans `dir` read-only: replays the log (verifying every record checksum), verifies the
/// current snapshot, and reads every other snapshot file. Fails with the first corruption that
/// would make `Wal::open` fail; damage to older snapshot files is reported in the result.
pub fn inspect<D: Disk>(disk: &D, dir: &Path) -> Result<Inspection, WalError> {
    let scan = scan_dir(disk, dir)?;
    let current = scan.current_snapshot_path(dir);
    let snapshot_files = scan
        .snapshot_files
        .iter()
        .map(|file| {
            let read = read_snapshot_file(disk, &file.path);
            SnapshotFileReport {
                path: file.path.clone(),
                index: file.index,
                term: file.term,
                data_bytes: read.as_ref().ok().map(|s| s.data.len() as u64),
                verified: read
                    .map(|snapshot| snapshot.metadata)
                    .map_err(|error| error.to_string()),
                current: current.as_ref() == Some(&file.path),
            }
        })
        .collect();
    let mut leftovers = scan.temp_files.clone();
    leftovers.extend(scan.stale_segments.iter().cloned());
    Ok(Inspection {
        dir: dir.to_path_buf(),
        segments: scan.segments,
        torn_tail: scan.torn,
        hard_state: scan.log.hard_state,
        snapshot: SnapshotMetadata {
            index: LogIndex(scan.log.snapshot_index),
            term: Term(scan.log.snapshot_term),
            conf_state: scan.log.conf_state.clone(),
        },
        last_index: LogIndex(scan.log.last_index),
        snapshot_files,
        leftovers,
    })
}

/// Verifies every checksum in `dir`: all segments and every snapshot file. `Ok` means `Wal::open`
/// would succeed without losing anything acknowledged (a torn tail, reported in the result, is
/// not damage to acknowledged data). The error names the file and byte offset of the first
/// problem.
pub fn verify<D: Disk>(disk: &D, dir: &Path) -> Result<Inspection, WalError> {
    let inspection = inspect(disk, dir)?;
    match inspection.first_bad_snapshot() {
        Some(error) => Err(error),
        None => Ok(inspection),
    }
}

fn ids(ids: &[raft::NodeId]) -> String {
    let list: Vec<String> = ids.iter().map(|id| id.get().to_string()).collect();
    format!("[{}]", list.join(","))
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "wal directory {}", self.dir.display())?;
        writeln!(f, "segments: {}", self.segments.len())?;
        for segment in &self.segments {
            let name = segment
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entries = match segment.entries {
                Some((low, high)) => format!("entries {}..={}", low.get(), high.get()),
                None => "no entries".to_string(),
            };
            writeln!(
                f,
                "  {name}  {entries}  records {}  used {} B of {} B  (starts after snapshot {}, last {})",
                segment.records,
                segment.used_bytes,
                segment.file_bytes,
                segment.checkpoint_snapshot_index.get(),
                segment.checkpoint_last_index.get(),
            )?;
        }
        if let Some(torn) = &self.torn_tail {
            writeln!(f, "torn tail: {torn} (cut on next open)")?;
        }
        writeln!(
            f,
            "hard state: term {} vote {} commit {}",
            self.hard_state.term.get(),
            self.hard_state.vote.get(),
            self.hard_state.commit.get()
        )?;
        writeln!(
            f,
            "log: snapshot index {} term {}, entries {}..={} ({} live)",
            self.snapshot.index.get(),
            self.snapshot.term.get(),
            self.snapshot.index.get() + 1,
            self.last_index.get(),
            self.last_index.get() - self.snapshot.index.get()
        )?;
        writeln!(
            f,
            "conf state: voters {} learners {}",
            ids(&self.snapshot.conf_state.voters),
            ids(&self.snapshot.conf_state.learners)
        )?;
        writeln!(f, "snapshots: {}", self.snapshot_files.len())?;
        for file in &self.snapshot_files {
            let name = file
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let marker = if file.current { " (current)" } else { "" };
            match &file.verified {
                Ok(metadata) => writeln!(
                    f,
                    "  {name}  index {} term {} voters {} learners {} data {} B{marker}",
                    metadata.index.get(),
                    metadata.term.get(),
                    ids(&metadata.conf_state.voters),
                    ids(&metadata.conf_state.learners),
                    file.data_bytes.unwrap_or(0)
                )?,
                Err(reason) => writeln!(f, "  {name}  DAMAGED: {reason}{marker}")?,
            }
        }
        for path in &self.leftovers {
            writeln!(f, "leftover (removed on next open): {}", path.display())?;
        }
        Ok(())
    }
}
