//! Reading a WAL directory back: the read-only scan shared by `Wal::open` and the inspection
//! tools, and the report of what recovery found and repaired.

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::WalError;
use crate::log::{Location, LogState};
use crate::record::{Batch, Checkpoint, Corruption, RecordType, SnapshotMarker, scan_segment};
use crate::snapfile::{
    is_snapshot_temp_name, parse_snapshot_file_name, read_snapshot_file, snapshot_file_name,
};
use raft::{HardState, LogIndex, Snapshot, Term};
use std::fmt;
use std::path::{Path, PathBuf};

const SEGMENT_SUFFIX: &str = ".wal";
const SEGMENT_TEMP_SUFFIX: &str = ".wal.tmp";
/// The name of the lock file in a WAL directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// `{seq:016x}.wal`.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:016x}{SEGMENT_SUFFIX}")
}

/// `{seq:016x}.wal.tmp`: a segment being created.
pub(crate) fn segment_temp_name(seq: u64) -> String {
    format!("{seq:016x}{SEGMENT_TEMP_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    (stem.len() == 16)
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

fn is_segment_temp_name(name: &str) -> bool {
    name.strip_suffix(".tmp")
        .is_some_and(|stem| parse_segment_name(stem).is_some())
}

/// Whether `name` is a temporary file of ours (a segment or snapshot being created).
pub(crate) fn is_temp_name(name: &str) -> bool {
    is_segment_temp_name(name) || is_snapshot_temp_name(name)
}

/// A torn write found at the end of the last segment (and cut off by `Wal::open`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub file: PathBuf,
    /// Where the valid data ends; everything from here on was discarded.
    pub offset: u64,
    /// How many bytes from `offset` on were discarded (up to the last non-zero byte; they are
    /// overwritten with zeros).
    pub discarded_bytes: u64,
    /// Why the bytes at `offset` are not a valid record.
    pub reason: String,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "torn write at the end of {} at byte {} ({} bytes discarded): {}",
            self.file.display(),
            self.offset,
            self.discarded_bytes,
            self.reason
        )
    }
}

/// What `Wal::open` found and repaired, for the embedder to log. Nothing in it means lost
/// acknowledged data: anything that would is an error instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn last write that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Temporary files of interrupted segment or snapshot creations that were removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Segments older than a gap in the sequence (left by an interrupted release) that were
    /// removed; the log was replayed from the first segment after the gap.
    pub removed_stale_segments: Vec<PathBuf>,
    /// Snapshot files newer than the log's snapshot (their save was interrupted before it was
    /// acknowledged) that were removed.
    pub removed_orphan_snapshots: Vec<PathBuf>,
    /// Older snapshot files removed beyond `WalOptions::snapshots_to_keep`.
    pub removed_old_snapshots: Vec<PathBuf>,
    /// Segments replayed.
    pub segments: usize,
    /// The recovered snapshot index (0 without a snapshot).
    pub snapshot_index: LogIndex,
    /// The recovered last index.
    pub last_index: LogIndex,
    /// The recovered hard state.
    pub hard_state: HardState,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered {} segments: snapshot {}, last index {}, hard state term {} vote {} commit {}",
            self.segments,
            self.snapshot_index,
            self.last_index,
            self.hard_state.term,
            self.hard_state.vote,
            self.hard_state.commit
        )?;
        if let Some(torn) = &self.torn_tail {
            write!(f, "; {torn}")?;
        }
        let removed = [
            ("temporary files", &self.removed_temp_files),
            ("stale segments", &self.removed_stale_segments),
            ("orphan snapshots", &self.removed_orphan_snapshots),
            ("old snapshots", &self.removed_old_snapshots),
        ];
        for (what, paths) in removed {
            if !paths.is_empty() {
                write!(f, "; removed {} {what}", paths.len())?;
            }
        }
        Ok(())
    }
}

/// What a segment holds, as found by a scan (for `wal inspect` and `Wal::segments`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's sequence number (from its name).
    pub seq: u64,
    /// The segment file.
    pub path: PathBuf,
    /// The file's length, including preallocated space.
    pub file_bytes: u64,
    /// Bytes holding valid records.
    pub used_bytes: u64,
    /// Number of valid records (the checkpoint included).
    pub records: u64,
    /// The lowest and highest entry index written in this segment (before any later truncation
    /// or compaction), or `None` if it holds no entries.
    pub entries: Option<(LogIndex, LogIndex)>,
    /// The snapshot index recorded in the segment's checkpoint.
    pub checkpoint_snapshot_index: LogIndex,
    /// The last index recorded in the segment's checkpoint (the log's end when it was created).
    pub checkpoint_last_index: LogIndex,
}

/// A snapshot file found in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotFileInfo {
    pub path: PathBuf,
    pub index: LogIndex,
    pub term: Term,
}

/// The result of scanning a directory without changing it.
#[derive(Debug)]
pub(crate) struct Scan {
    pub log: LogState,
    pub segments: Vec<SegmentInfo>,
    pub torn: Option<TornTail>,
    pub stale_segments: Vec<PathBuf>,
    pub temp_files: Vec<PathBuf>,
    /// Every snapshot file, sorted by index.
    pub snapshot_files: Vec<SnapshotFileInfo>,
    /// The verified current snapshot (`None` when the log has none).
    pub snapshot: Option<Snapshot>,
}

impl Scan {
    /// The snapshot file of the log's snapshot, if it has one.
    pub(crate) fn current_snapshot_path(&self, dir: &Path) -> Option<PathBuf> {
        (self.log.snapshot_index > 0).then(|| {
            dir.join(snapshot_file_name(
                self.log.snapshot_index,
                self.log.snapshot_term,
            ))
        })
    }
}

/// Whether `dir` holds any segment or snapshot file (for `Wal::create`).
pub(crate) fn holds_wal_files<D: Disk>(disk: &D, dir: &Path) -> Result<bool, WalError> {
    let names = disk.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    Ok(names
        .iter()
        .any(|name| parse_segment_name(name).is_some() || parse_snapshot_file_name(name).is_some()))
}

/// Reads the whole directory, replays the log and verifies the current snapshot, changing
/// nothing. Errors name the file and offset of the first problem.
pub(crate) fn scan_dir<D: Disk>(disk: &D, dir: &Path) -> Result<Scan, WalError> {
    let names = disk.list(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WalError::NotFound {
            dir: dir.to_path_buf(),
        },
        _ => WalError::io("list", dir, e),
    })?;
    let mut segments: Vec<u64> = Vec::new();
    let mut temp_files = Vec::new();
    let mut snapshot_files = Vec::new();
    for name in &names {
        if let Some(seq) = parse_segment_name(name) {
            segments.push(seq);
        } else if let Some((index, term)) = parse_snapshot_file_name(name) {
            snapshot_files.push(SnapshotFileInfo {
                path: dir.join(name),
                index: LogIndex(index),
                term: Term(term),
            });
        } else if is_temp_name(name) {
            temp_files.push(dir.join(name));
        }
    }
    segments.sort_unstable();
    snapshot_files.sort_by_key(|file| (file.index, file.term));
    temp_files.sort();
    if segments.is_empty() {
        return Err(WalError::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    // Replay from the longest run of consecutive sequence numbers that ends with the newest
    // segment. Older segments before a gap are left over from an interrupted release (segments
    // are deleted oldest first); if they held anything still needed, the replay below finds
    // live entries without a position and fails.
    let mut chain_start = segments.len() - 1;
    while chain_start > 0 && segments[chain_start - 1] + 1 == segments[chain_start] {
        chain_start -= 1;
    }
    let stale_segments = segments[..chain_start]
        .iter()
        .map(|&seq| dir.join(segment_file_name(seq)))
        .collect();
    let chain = &segments[chain_start..];

    let mut log: Option<LogState> = None;
    let mut infos = Vec::with_capacity(chain.len());
    let mut torn = None;
    for (position, &seq) in chain.iter().enumerate() {
        let is_last = position + 1 == chain.len();
        let path = dir.join(segment_file_name(seq));
        let (info, end) = replay_segment(disk, &path, seq, is_last, &mut log)?;
        if let Some(reason) = end.torn {
            torn = Some(TornTail {
                file: path.clone(),
                offset: end.end,
                discarded_bytes: end.dirty_end - end.end,
                reason,
            });
        }
        infos.push(info);
    }
    let mut log = log.expect("at least one segment was replayed");
    if let Some(index) = log.first_missing_live() {
        return Err(WalError::corrupt(
            &infos[0].path,
            0,
            format!(
                "entry {index} is live (snapshot is at {}) but the segment that held it is missing",
                log.snapshot_index
            ),
        ));
    }
    log.drop_missing_spans();
    log.check();

    let mut scan = Scan {
        log,
        segments: infos,
        torn,
        stale_segments,
        temp_files,
        snapshot_files,
        snapshot: None,
    };
    if let Some(path) = scan.current_snapshot_path(dir) {
        let exists = scan.snapshot_files.iter().any(|file| file.path == path);
        if !exists {
            return Err(WalError::corrupt(
                &path,
                0,
                "the log's snapshot file is missing",
            ));
        }
        let snapshot = read_snapshot_file(disk, &path)?;
        let metadata = &snapshot.metadata;
        if metadata.index.get() != scan.log.snapshot_index
            || metadata.term.get() != scan.log.snapshot_term
            || metadata.conf_state != scan.log.conf_state
        {
            return Err(WalError::corrupt(
                &path,
                0,
                format!(
                    "snapshot file holds {}/{} {:?} but the log recorded {}/{} {:?}",
                    metadata.index,
                    metadata.term,
                    metadata.conf_state,
                    scan.log.snapshot_index,
                    scan.log.snapshot_term,
                    scan.log.conf_state
                ),
            ));
        }
        scan.snapshot = Some(snapshot);
    }
    Ok(scan)
}

/// Reads one segment and applies its records to `log` (creating it from the first checkpoint).
fn replay_segment<D: Disk>(
    disk: &D,
    path: &Path,
    seq: u64,
    is_last: bool,
    log: &mut Option<LogState>,
) -> Result<(SegmentInfo, crate::record::SegmentEnd), WalError> {
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| WalError::io("open", path, e))?;
    let file_bytes = file.len().map_err(|e| WalError::io("stat", path, e))?;
    let mut buf = vec![0u8; file_bytes as usize];
    file.read_at(0, &mut buf)
        .map_err(|e| WalError::io("read", path, e))?;
    drop(file);

    let mut info = SegmentInfo {
        seq,
        path: path.to_path_buf(),
        file_bytes,
        used_bytes: 0,
        records: 0,
        entries: None,
        checkpoint_snapshot_index: LogIndex::ZERO,
        checkpoint_last_index: LogIndex::ZERO,
    };
    let end = scan_segment(&buf, is_last, |offset, kind, payload| {
        info.records += 1;
        if info.records == 1 {
            if kind != RecordType::Checkpoint || offset != 0 {
                return Err(Corruption::new(
                    offset,
                    "segment does not start with a checkpoint",
                ));
            }
            let checkpoint =
                Checkpoint::decode(payload).map_err(|reason| Corruption::new(offset, reason))?;
            if checkpoint.segment_seq != seq {
                return Err(Corruption::new(
                    offset,
                    format!(
                        "checkpoint belongs to segment {} (file renamed or copied?)",
                        checkpoint.segment_seq
                    ),
                ));
            }
            if file_bytes < checkpoint.preallocated_bytes {
                return Err(Corruption::new(
                    file_bytes,
                    format!(
                        "file is {file_bytes} bytes, shorter than the {} bytes it was preallocated \
                         to before it became part of the log: it was truncated",
                        checkpoint.preallocated_bytes
                    ),
                ));
            }
            info.checkpoint_snapshot_index = LogIndex(checkpoint.snapshot_index);
            info.checkpoint_last_index = LogIndex(checkpoint.last_index);
            match log {
                None => {
                    *log = Some(
                        LogState::from_checkpoint(&checkpoint)
                            .map_err(|reason| Corruption::new(offset, reason))?,
                    );
                }
                Some(state) => {
                    if let Some(reason) = state.disagreement(&checkpoint) {
                        return Err(Corruption::new(offset, reason));
                    }
                }
            }
            return Ok(());
        }
        let state = log.as_mut().expect("created by the checkpoint");
        match kind {
            RecordType::Checkpoint => Err(Corruption::new(
                offset,
                "checkpoint record in the middle of a segment",
            )),
            RecordType::Batch => {
                let batch =
                    Batch::decode(payload).map_err(|reason| Corruption::new(offset, reason))?;
                if !batch.entries.is_empty() {
                    state
                        .check_append(batch.first_index)
                        .map_err(|reason| Corruption::new(offset, reason))?;
                    let last = batch.first_index + batch.entries.len() as u64 - 1;
                    info.entries = Some(match info.entries {
                        None => (LogIndex(batch.first_index), LogIndex(last)),
                        Some((low, high)) => (
                            low.min(LogIndex(batch.first_index)),
                            high.max(LogIndex(last)),
                        ),
                    });
                    state.append(
                        batch.first_index,
                        batch.entries.iter().map(|entry| entry.term),
                        Location {
                            segment: seq,
                            offset,
                        },
                    );
                }
                if let Some(hard_state) = batch.hard_state {
                    state.hard_state = hard_state;
                }
                Ok(())
            }
            RecordType::Snapshot => {
                let marker = SnapshotMarker::decode(payload)
                    .map_err(|reason| Corruption::new(offset, reason))?;
                check_marker(state, &marker).map_err(|reason| Corruption::new(offset, reason))?;
                state.apply_snapshot(
                    marker.index,
                    marker.term,
                    marker.kept_suffix,
                    marker.conf_state,
                );
                Ok(())
            }
        }
    })
    .map_err(|corruption| WalError::corrupt(path, corruption.offset, corruption.reason))?;
    if info.records == 0 {
        let reason = end.torn.as_deref().unwrap_or("the file is empty");
        return Err(WalError::corrupt(
            path,
            0,
            format!("segment holds no valid checkpoint: {reason}"),
        ));
    }
    info.used_bytes = end.end;
    Ok((info, end))
}

/// Checks that a snapshot marker fits the log it is applied to.
pub(crate) fn check_marker(log: &LogState, marker: &SnapshotMarker) -> Result<(), String> {
    if marker.index <= log.snapshot_index {
        return Err(format!(
            "snapshot marker at {} does not advance the snapshot at {}",
            marker.index, log.snapshot_index
        ));
    }
    if marker.kept_suffix && log.term(marker.index) != Some(marker.term) {
        return Err(format!(
            "snapshot marker {}/{} keeps the log after it, but the log does not hold that entry",
            marker.index, marker.term
        ));
    }
    Ok(())
}
