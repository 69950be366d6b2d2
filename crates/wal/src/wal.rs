//! The write-ahead log itself: writing batches, snapshots and releases, and serving reads.

use crate::disk::{Disk, DiskFile, OpenMode, StdDisk};
use crate::error::WalError;
use crate::log::{Location, LogState, Span};
use crate::reader::WalReader;
use crate::record::{
    Batch, HEADER_LEN, MAX_PAYLOAD, RecordType, SnapshotMarker, check_payload, encode_batch,
    parse_header,
};
use crate::recovery::{
    LOCK_FILE, RecoveryReport, SegmentInfo, check_marker, holds_wal_files, is_temp_name, scan_dir,
    segment_file_name, segment_temp_name,
};
use crate::snapfile::{read_snapshot_file, snapshot_file_name, write_snapshot_file};
use bytes::Bytes;
use raft::{
    ConfState, Entry, HardState, LogIndex, Snapshot, SnapshotMetadata, Storage, StorageError, Term,
};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Tunables of a [`Wal`]. Every field has a bound checked by [`WalOptions::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is sealed and a new one started once the next record would take it past this
    /// size. Larger segments mean fewer files and rolls; smaller ones let compaction free space
    /// sooner. 4 KiB ..= 1 GiB; default 64 MiB.
    pub segment_size_bytes: u64,
    /// Reserve each new segment's full size up front (`fallocate`), so that appends neither run
    /// out of space half-way nor make `fdatasync` update file-size metadata, and so that a
    /// truncated segment can be told from a torn write. Default on.
    pub preallocate: bool,
    /// The largest record one `write` may produce; bigger batches are refused with
    /// [`WalError::BatchTooLarge`] (limit everything). 1 KiB ..= 1 GiB; default 64 MiB.
    pub max_batch_bytes: u64,
    /// How many snapshot files to keep, the current one included; older ones are deleted after
    /// each new snapshot. At least 1; default 2.
    pub snapshots_to_keep: usize,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_size_bytes: 64 << 20,
            preallocate: true,
            max_batch_bytes: 64 << 20,
            snapshots_to_keep: 2,
        }
    }
}

impl WalOptions {
    /// Checks every bound; `Wal::create` and `Wal::open` call it first.
    pub fn validate(&self) -> Result<(), WalError> {
        let fail = |reason: String| Err(WalError::InvalidOptions(reason));
        if !(4096..=1 << 30).contains(&self.segment_size_bytes) {
            return fail(format!(
                "segment_size_bytes {} is outside 4096..=1073741824",
                self.segment_size_bytes
            ));
        }
        if !(1024..=MAX_PAYLOAD).contains(&self.max_batch_bytes) {
            return fail(format!(
                "max_batch_bytes {} is outside 1024..=1073741824",
                self.max_batch_bytes
            ));
        }
        if self.snapshots_to_keep == 0 {
            return fail("snapshots_to_keep must be at least 1".into());
        }
        Ok(())
    }
}

/// One segment file of the chain.
#[derive(Debug)]
struct Segment<F> {
    seq: u64,
    path: PathBuf,
    file: F,
    /// End of the valid records (for the active segment, `Wal::write_offset` is current).
    used_bytes: u64,
}

/// A durable Raft log in a directory: entries, hard state and snapshots, with crash recovery.
///
/// Writes (`write`, `append`, `set_hard_state`, `save_snapshot`, `release_to`) return only once
/// their effect is durable (one `fdatasync` per call; see the durability contract in the crate
/// docs); `record_commit`, for a commit index alone, writes without the sync. Reads go through
/// [`raft::Storage`] and are served from the segment files, with every record's checksum
/// verified again (a member keeps its own window of recent entries in memory, so it reads the
/// WAL only for older ones and at start).
///
/// `Wal` is `Send`, so the embedder can own it on a writer thread and hand it batches.
#[derive(Debug)]
pub struct Wal<D: Disk = StdDisk> {
    disk: D,
    dir: PathBuf,
    options: WalOptions,
    /// Oldest first; the last one is the active segment that receives appends.
    segments: VecDeque<Segment<D::File>>,
    /// End of the valid data in the active segment: where the next record goes.
    write_offset: u64,
    /// Whether the active segment holds anything after its checkpoint. One that does not is
    /// never rolled: a record larger than a segment simply makes that segment larger.
    active_has_records: bool,
    /// Whether the active segment holds a record written without a sync (a commit index, see
    /// [`Wal::record_commit`]): the next sync of that segment, or the one before it is sealed,
    /// makes it durable.
    active_unsynced: bool,
    /// The hard state a power loss now is sure to give back: `log.hard_state` except for a
    /// commit index recorded without a sync since the last sync.
    durable_hard_state: HardState,
    log: LogState,
    /// The position table as [`WalReader`]s see it, kept equal to `log`'s after every change
    /// (`sync_view`).
    view: Arc<Mutex<VecDeque<Span>>>,
    /// Set by the first failed write; every later write is refused.
    poisoned: Option<String>,
    report: RecoveryReport,
    /// Held for the lifetime of the `Wal`; declared last so that it is released last.
    _lock: D::Lock,
}

impl Wal<StdDisk> {
    /// Creates a new WAL in `dir` (created if missing) on the real file system, for a log whose
    /// initial membership is `conf_state`. Fails with [`WalError::AlreadyExists`] if `dir`
    /// already holds a WAL.
    pub fn create(
        dir: impl AsRef<Path>,
        options: WalOptions,
        conf_state: ConfState,
    ) -> Result<Wal<StdDisk>, WalError> {
        Wal::create_on(StdDisk, dir, options, conf_state)
    }

    /// Opens the WAL in `dir` on the real file system and recovers it (see the crate docs for
    /// the rules); [`Wal::recovery_report`] tells what was repaired.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal<StdDisk>, WalError> {
        Wal::open_on(StdDisk, dir, options)
    }
}

fn lock_dir<D: Disk>(disk: &D, dir: &Path) -> Result<D::Lock, WalError> {
    disk.lock(&dir.join(LOCK_FILE)).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => WalError::Locked {
            dir: dir.to_path_buf(),
        },
        io::ErrorKind::NotFound => WalError::NotFound {
            dir: dir.to_path_buf(),
        },
        _ => WalError::io("lock", dir.join(LOCK_FILE), e),
    })
}

/// Creates segment `seq` atomically: temporary file, preallocation, checkpoint, sync, rename,
/// sync of the directory. Returns the open file and the checkpoint's length.
fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    seq: u64,
    log: &LogState,
    options: &WalOptions,
) -> Result<(D::File, PathBuf, u64), WalError> {
    let temp = dir.join(segment_temp_name(seq));
    let path = dir.join(segment_file_name(seq));
    let preallocated_bytes = if options.preallocate {
        options.segment_size_bytes
    } else {
        0
    };
    let record = log.checkpoint(seq, preallocated_bytes).encode();
    let mut file = disk
        .create(&temp)
        .map_err(|e| WalError::io("create", &temp, e))?;
    if preallocated_bytes > 0 {
        file.allocate(preallocated_bytes)
            .map_err(|e| WalError::io("allocate", &temp, e))?;
    }
    file.write_at(0, &record)
        .map_err(|e| WalError::io("write", &temp, e))?;
    file.sync().map_err(|e| WalError::io("sync", &temp, e))?;
    disk.rename(&temp, &path)
        .map_err(|e| WalError::io("rename", &temp, e))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("sync directory", dir, e))?;
    Ok((file, path, record.len() as u64))
}

impl<D: Disk> Wal<D> {
    /// Creates a new WAL in `dir` on `disk`. See [`Wal::create`].
    pub fn create_on(
        disk: D,
        dir: impl AsRef<Path>,
        options: WalOptions,
        conf_state: ConfState,
    ) -> Result<Wal<D>, WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir)
            .map_err(|e| WalError::io("create directory", &dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the directory's own name durable in its parent.
            disk.sync_dir(parent)
                .map_err(|e| WalError::io("sync directory", parent, e))?;
        }
        let lock = lock_dir(&disk, &dir)?;
        if holds_wal_files(&disk, &dir)? {
            return Err(WalError::AlreadyExists { dir });
        }
        let mut report = RecoveryReport::default();
        // Temporary files of an earlier, interrupted `create`.
        let names = disk.list(&dir).map_err(|e| WalError::io("list", &dir, e))?;
        for name in names.iter().filter(|name| is_temp_name(name)) {
            let path = dir.join(name);
            disk.remove(&path)
                .map_err(|e| WalError::io("remove", &path, e))?;
            report.removed_temp_files.push(path);
        }
        let log = LogState::new(conf_state);
        let (file, path, checkpoint_len) = create_segment(&disk, &dir, 1, &log, &options)?;
        report.segments = 1;
        Ok(Wal {
            disk,
            dir,
            options,
            segments: VecDeque::from([Segment {
                seq: 1,
                path,
                file,
                used_bytes: checkpoint_len,
            }]),
            write_offset: checkpoint_len,
            active_has_records: false,
            active_unsynced: false,
            durable_hard_state: log.hard_state,
            log,
            view: Arc::default(),
            poisoned: None,
            report,
            _lock: lock,
        })
    }

    /// Opens and recovers the WAL in `dir` on `disk`. See [`Wal::open`].
    ///
    /// Recovery replays every segment, cuts a torn last write (reporting it), removes leftovers
    /// of interrupted operations and verifies the current snapshot file. Any other damage is a
    /// [`WalError::Corrupt`] naming the file and byte offset, and nothing is changed.
    pub fn open_on(
        disk: D,
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<Wal<D>, WalError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&disk, &dir)?;
        let mut scan = scan_dir(&disk, &dir)?;
        scan.snapshot = None; // verified; the data is read again when asked for
        let mut report = RecoveryReport {
            segments: scan.segments.len(),
            snapshot_index: LogIndex(scan.log.snapshot_index),
            last_index: LogIndex(scan.log.last_index),
            hard_state: scan.log.hard_state,
            ..RecoveryReport::default()
        };

        // Leftovers of interrupted operations. None of them holds acknowledged data.
        let current = (scan.log.snapshot_index, scan.log.snapshot_term);
        let orphans: Vec<PathBuf> = scan
            .snapshot_files
            .iter()
            .filter(|file| {
                file.index.get() > current.0
                    || (file.index.get() == current.0 && file.term.get() != current.1)
            })
            .map(|file| file.path.clone())
            .collect();
        let removals = [
            (&scan.temp_files, &mut report.removed_temp_files),
            (&scan.stale_segments, &mut report.removed_stale_segments),
            (&orphans, &mut report.removed_orphan_snapshots),
        ];
        let mut removed_any = false;
        for (paths, reported) in removals {
            for path in paths {
                disk.remove(path)
                    .map_err(|e| WalError::io("remove", path, e))?;
                reported.push(path.clone());
                removed_any = true;
            }
        }
        if removed_any {
            disk.sync_dir(&dir)
                .map_err(|e| WalError::io("sync directory", &dir, e))?;
        }

        // Open the chain; the last segment is the active one.
        let mut segments = VecDeque::with_capacity(scan.segments.len());
        let last_position = scan.segments.len() - 1;
        for (position, info) in scan.segments.iter().enumerate() {
            let mode = if position == last_position {
                OpenMode::ReadWrite
            } else {
                OpenMode::Read
            };
            let file = disk
                .open(&info.path, mode)
                .map_err(|e| WalError::io("open", &info.path, e))?;
            segments.push_back(Segment {
                seq: info.seq,
                path: info.path.clone(),
                file,
                used_bytes: info.used_bytes,
            });
        }
        let active_info = &scan.segments[last_position];
        let write_offset = active_info.used_bytes;
        if let Some(torn) = &scan.torn {
            // Cut the torn write by overwriting it with zeros: the file keeps its preallocated
            // length (a shorter file means truncation to recovery), and later scans never
            // mistake stale bytes for records.
            let active = segments.back_mut().expect("at least one segment");
            let zeros = vec![0u8; (torn.discarded_bytes as usize).min(1 << 20)];
            let mut at = torn.offset;
            let end = torn.offset + torn.discarded_bytes;
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                active
                    .file
                    .write_at(at, &zeros[..n])
                    .map_err(|e| WalError::io("write", &active.path, e))?;
                at += n as u64;
            }
        }
        // Make everything recovery read durable before anyone acts on it. After a failed fsync
        // the previous process may have died with records only in the page cache: we just read
        // them, so unless they are synced now, a power loss could take back a vote or an entry
        // this member is about to act on. The directory sync covers names whose creation or
        // rename was not yet made durable.
        for segment in segments.iter_mut() {
            segment
                .file
                .sync()
                .map_err(|e| WalError::io("sync", &segment.path, e))?;
        }
        disk.sync_dir(&dir)
            .map_err(|e| WalError::io("sync directory", &dir, e))?;
        report.torn_tail = scan.torn.take();

        let mut wal = Wal {
            disk,
            dir,
            options,
            segments,
            write_offset,
            active_has_records: active_info.records > 1,
            // Recovery synced every segment it kept.
            active_unsynced: false,
            durable_hard_state: scan.log.hard_state,
            log: scan.log,
            view: Arc::default(),
            poisoned: None,
            report,
            _lock: lock,
        };
        wal.sync_view();
        wal.report.removed_old_snapshots = wal.collect_old_snapshots();
        Ok(wal)
    }

    /// What recovery found and repaired when this WAL was opened (empty for `create`).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options in force.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.log.hard_state
    }

    /// The configuration of the latest snapshot, or the initial one given to `create`.
    pub fn conf_state(&self) -> &ConfState {
        &self.log.conf_state
    }

    /// The latest snapshot's metadata (index 0 and the initial configuration if none).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        SnapshotMetadata {
            index: LogIndex(self.log.snapshot_index),
            term: Term(self.log.snapshot_term),
            conf_state: self.log.conf_state.clone(),
        }
    }

    /// Whether an earlier write failed; then every write is refused until the WAL is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The segment files of the chain, oldest first, with their sizes (for metrics and tests).
    /// Record counts and index ranges are not tracked at run time (`wal inspect` computes them
    /// by scanning): here `records` is 0, `entries` `None` and the checkpoint fields zero.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let active = self.segments.back().map(|segment| segment.seq);
        self.segments
            .iter()
            .map(|segment| SegmentInfo {
                seq: segment.seq,
                path: segment.path.clone(),
                file_bytes: segment.file.len().unwrap_or(0),
                used_bytes: if Some(segment.seq) == active {
                    self.write_offset
                } else {
                    segment.used_bytes
                },
                records: 0,
                entries: None,
                checkpoint_snapshot_index: LogIndex::ZERO,
                checkpoint_last_index: LogIndex::ZERO,
            })
            .collect()
    }

    /// Number of batch positions held in memory (the position table's size), for tests and
    /// metrics: it grows with the retained log's batches, never with its bytes.
    pub fn position_table_len(&self) -> usize {
        self.log.span_count()
    }

    fn check_writable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, error: WalError) -> WalError {
        if self.poisoned.is_none() {
            self.poisoned = Some(error.to_string());
        }
        error
    }

    /// Writes an optional hard state and entries as one record with one `fdatasync`, and
    /// returns once both are durable (group commit: pass everything a `Ready` asks to persist).
    ///
    /// Entries whose index is at or below the snapshot index are skipped. If the first remaining
    /// entry's index is at or below the last index, the log is truncated there first (a leader
    /// overwrote a conflicting suffix); the record carries its first index, so recovery replays
    /// the truncation.
    ///
    /// On error nothing is known about the record on disk: the WAL is poisoned and the
    /// in-memory state stays as before the call (see the crate docs, "Durability contract").
    ///
    /// # Panics
    /// If `entries` are not consecutive, or start after `last_index + 1` (a gap): both are bugs
    /// in the embedder, not operating conditions.
    pub fn write(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        self.check_writable()?;
        for pair in entries.windows(2) {
            assert_eq!(
                pair[1].index,
                pair[0].index.next(),
                "appended entries are not consecutive"
            );
        }
        let skip = entries
            .iter()
            .take_while(|entry| entry.index.get() <= self.log.snapshot_index)
            .count();
        let entries = &entries[skip..];
        if let Some(first) = entries.first() {
            assert!(
                first.index.get() <= self.log.last_index + 1,
                "append at {} leaves a gap after last index {}",
                first.index,
                self.log.last_index
            );
        }
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        let record = encode_batch(hard_state.as_ref(), entries);
        let payload_bytes = (record.len() - HEADER_LEN) as u64;
        if payload_bytes > self.options.max_batch_bytes {
            return Err(WalError::BatchTooLarge {
                bytes: payload_bytes,
                limit: self.options.max_batch_bytes,
            });
        }
        let location = self.append_record(&record, true)?;
        if let Some(first) = entries.first() {
            self.log.append(
                first.index.get(),
                entries.iter().map(|entry| entry.term.get()),
                location,
            );
            self.sync_view();
        }
        if let Some(hard_state) = hard_state {
            self.log.hard_state = hard_state;
        }
        // The sync covered every earlier record of the segment too.
        self.durable_hard_state = self.log.hard_state;
        Ok(())
    }

    /// Records a hard state whose only change is a higher commit index, written but not
    /// synced, as etcd's WAL does (`raft.MustSync`). Raft does not need the commit index
    /// durable: a member that comes back with an older one replays less of its log and learns
    /// the rest from the leader. The record survives a process crash (it is in the page cache);
    /// a power loss may take it back, never more: the next sync of the segment (every other
    /// write syncs, and a segment is synced before it is sealed) makes it durable. Without it a
    /// follower synced twice per write, once for the entry and once for the commit index that
    /// follows it, and the second sync held up the next write's entry.
    ///
    /// A hard state that changes the term or the vote is written and synced as by
    /// [`Wal::set_hard_state`]: those must be durable before anyone acts on them. So is one
    /// that lowers the commit index (below what a snapshot marker raised it to, say), so that a
    /// power loss gives back either the durable commit index or a higher one, never a mix.
    pub fn record_commit(&mut self, hard_state: HardState) -> Result<(), WalError> {
        self.check_writable()?;
        let current = self.log.hard_state;
        if hard_state.term != current.term
            || hard_state.vote != current.vote
            || hard_state.commit < current.commit
        {
            return self.write(Some(hard_state), &[]);
        }
        if hard_state == current {
            return Ok(());
        }
        let record = encode_batch(Some(&hard_state), &[]);
        self.append_record(&record, false)?;
        self.log.hard_state = hard_state;
        Ok(())
    }

    /// The hard state a power loss now would give back: [`Wal::hard_state`], except for a
    /// commit index recorded by [`Wal::record_commit`] since the last sync.
    pub fn durable_hard_state(&self) -> HardState {
        self.durable_hard_state
    }

    /// Appends entries durably; `write(None, entries)`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        self.write(None, entries)
    }

    /// Records a hard state durably; `write(Some(hard_state), &[])`.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), WalError> {
        self.write(Some(hard_state), &[])
    }

    /// Saves a snapshot durably and makes it the log's base.
    ///
    /// The snapshot file is written atomically (temporary file, sync, rename, directory sync),
    /// then a snapshot marker record is appended and synced. If the log holds the snapshot's
    /// last entry with the same term, the entries after it are kept (a local snapshot, or a
    /// leader's snapshot of a prefix this log already has, Raft §7); otherwise the whole log is
    /// discarded. The hard state's commit index is raised to the snapshot index if below it.
    /// Older snapshot files beyond `snapshots_to_keep` are then deleted (failures to delete are
    /// ignored and retried next time). A snapshot not newer than the current one is ignored.
    ///
    /// Segments are not deleted here: call [`Wal::release_to`].
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        self.check_writable()?;
        if snapshot.metadata.index.get() <= self.log.snapshot_index {
            return Ok(());
        }
        write_snapshot_file(&self.disk, &self.dir, snapshot).map_err(|e| self.poison(e))?;
        self.record_snapshot(&snapshot.metadata)
    }

    /// Makes a snapshot whose file a [`SnapshotWriter`] of this WAL has written the current
    /// snapshot: the same as [`Wal::save_snapshot`] from the marker record on. The file is
    /// checked to exist (a marker without its file would make the WAL unopenable); its content
    /// was verified as it was written and is verified again when the WAL is opened.
    pub fn adopt_snapshot(&mut self, metadata: &SnapshotMetadata) -> Result<(), WalError> {
        self.check_writable()?;
        if metadata.index.get() <= self.log.snapshot_index {
            return Ok(());
        }
        let path = self.dir.join(snapshot_file_name(
            metadata.index.get(),
            metadata.term.get(),
        ));
        if let Err(e) = self.disk.open(&path, OpenMode::Read) {
            return Err(WalError::io("open", &path, e));
        }
        self.record_snapshot(metadata)
    }

    /// Appends the snapshot marker for a snapshot whose file is durable, and applies it.
    fn record_snapshot(&mut self, metadata: &SnapshotMetadata) -> Result<(), WalError> {
        let index = metadata.index.get();
        let marker = SnapshotMarker {
            index,
            term: metadata.term.get(),
            kept_suffix: self.log.term(index) == Some(metadata.term.get()),
            conf_state: metadata.conf_state.clone(),
        };
        debug_assert!(check_marker(&self.log, &marker).is_ok());
        self.append_record(&marker.encode(), true)?;
        self.log.apply_snapshot(
            marker.index,
            marker.term,
            marker.kept_suffix,
            marker.conf_state,
        );
        self.durable_hard_state = self.log.hard_state;
        self.sync_view();
        self.collect_old_snapshots();
        Ok(())
    }

    /// A handle that writes and reads this WAL's snapshot files from another thread: a large
    /// snapshot is written there while this WAL keeps taking log writes, then recorded with
    /// [`Wal::adopt_snapshot`].
    pub fn snapshot_writer(&self) -> SnapshotWriter<D>
    where
        D: Clone,
    {
        SnapshotWriter {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
        }
    }

    /// A handle that reads this WAL's entries from another thread, for an embedder that keeps
    /// only the newest entries in memory (see [`WalReader`]).
    pub fn reader(&self) -> WalReader<D>
    where
        D: Clone,
    {
        WalReader::new(self.disk.clone(), self.dir.clone(), Arc::clone(&self.view))
    }

    /// Copies the position table's changes to the readers' view.
    fn sync_view(&self) {
        let mut view = self
            .view
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.log.sync_spans_into(&mut view);
    }

    /// Deletes whole segment files that hold nothing after `min(index, snapshot index)`: the
    /// prefix a snapshot made unnecessary. Never deletes the active segment or anything a
    /// snapshot does not cover. Returns how many segments were deleted.
    pub fn release_to(&mut self, index: LogIndex) -> Result<usize, WalError> {
        self.check_writable()?;
        let upto = index.get().min(self.log.snapshot_index);
        let active = self.segments.back().expect("at least one segment").seq;
        let needed = self
            .log
            .first_needed_segment(upto)
            .unwrap_or(active)
            .min(active);
        let mut released = 0;
        // Oldest first: an interrupted release leaves a gap-free chain (plus stale files before
        // a gap, which recovery removes).
        while self.segments.front().is_some_and(|s| s.seq < needed) {
            let path = self.segments.front().expect("checked").path.clone();
            if let Err(e) = self.disk.remove(&path) {
                return Err(self.poison(WalError::io("remove", &path, e)));
            }
            self.segments.pop_front();
            released += 1;
        }
        if released > 0 {
            if let Err(e) = self.disk.sync_dir(&self.dir) {
                let dir = self.dir.clone();
                return Err(self.poison(WalError::io("sync directory", &dir, e)));
            }
            self.log.release_segments_before(needed);
            self.sync_view();
        }
        Ok(released)
    }

    /// Appends one record to the active segment (rolling first if it would overflow) and syncs.
    /// Poisons the WAL on any failure.
    fn append_record(&mut self, record: &[u8], sync: bool) -> Result<Location, WalError> {
        let result = self.try_append_record(record, sync);
        result.map_err(|e| self.poison(e))
    }

    fn try_append_record(&mut self, record: &[u8], sync: bool) -> Result<Location, WalError> {
        let len = record.len() as u64;
        if self.write_offset + len > self.options.segment_size_bytes && self.active_has_records {
            if self.active_unsynced {
                // Only the last segment may end in a record a power loss tears; a sealed one
                // must be whole.
                let active = self.segments.back_mut().expect("at least one segment");
                active
                    .file
                    .sync()
                    .map_err(|e| WalError::io("sync", &active.path, e))?;
                self.active_unsynced = false;
            }
            self.roll()?;
        }
        let offset = self.write_offset;
        let active = self.segments.back_mut().expect("at least one segment");
        active
            .file
            .write_at(offset, record)
            .map_err(|e| WalError::io("write", &active.path, e))?;
        if sync {
            active
                .file
                .sync()
                .map_err(|e| WalError::io("sync", &active.path, e))?;
        }
        self.active_unsynced = !sync;
        self.write_offset += len;
        self.active_has_records = true;
        Ok(Location {
            segment: active.seq,
            offset,
        })
    }

    /// Seals the active segment and starts the next. The sealed segment keeps its zeros after
    /// the last record (less than one record's worth): shrinking it would make a truncated
    /// file indistinguishable from a sealed one.
    fn roll(&mut self) -> Result<(), WalError> {
        let sealed = self.segments.back_mut().expect("at least one segment");
        sealed.used_bytes = self.write_offset;
        let seq = sealed.seq + 1;
        let (file, path, checkpoint_len) =
            create_segment(&self.disk, &self.dir, seq, &self.log, &self.options)?;
        self.segments.push_back(Segment {
            seq,
            path,
            file,
            used_bytes: checkpoint_len,
        });
        self.write_offset = checkpoint_len;
        self.active_has_records = false;
        Ok(())
    }

    /// Deletes snapshot files beyond the newest `snapshots_to_keep` (never the current one).
    /// Errors are ignored: a file that could not be deleted is retried at the next snapshot or
    /// open, and it never affects correctness.
    fn collect_old_snapshots(&mut self) -> Vec<PathBuf> {
        let Ok(names) = self.disk.list(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(u64, u64, String)> = names
            .into_iter()
            .filter_map(|name| {
                let (index, term) = crate::snapfile::parse_snapshot_file_name(&name)?;
                Some((index, term, name))
            })
            .filter(|(index, _, _)| *index <= self.log.snapshot_index)
            .collect();
        files.sort();
        let keep = self.options.snapshots_to_keep.min(files.len());
        let mut removed = Vec::new();
        for (_, _, name) in &files[..files.len() - keep] {
            let path = self.dir.join(name);
            if self.disk.remove(&path).is_ok() {
                removed.push(path);
            }
        }
        removed
    }

    /// Reads the entries `low..=high` of the batch record at `location` whose first entry is
    /// `record_first`, verifying the record's checksums.
    fn read_span(
        &self,
        location: Option<Location>,
        record_first: u64,
        low: u64,
        high: u64,
    ) -> Result<Vec<Entry>, WalError> {
        let location = location.ok_or_else(|| {
            WalError::corrupt(&self.dir, 0, format!("entry {low} has no known position"))
        })?;
        let position = self
            .segments
            .binary_search_by_key(&location.segment, |segment| segment.seq)
            .map_err(|_| {
                WalError::corrupt(
                    self.dir.join(segment_file_name(location.segment)),
                    location.offset,
                    "segment of a live entry is not open",
                )
            })?;
        let segment = &self.segments[position];
        read_batch_entries(
            &segment.file,
            &segment.path,
            location,
            record_first,
            low,
            high,
        )
    }
}

/// Reads the entries `low..=high` of the batch record at `location` of `file` (at `path`)
/// whose first entry is `record_first`, verifying the record's checksums. Shared by the WAL's
/// own reads and by [`crate::WalReader`], which opens the segment itself.
pub(crate) fn read_batch_entries(
    file: &impl DiskFile,
    path: &Path,
    location: Location,
    record_first: u64,
    low: u64,
    high: u64,
) -> Result<Vec<Entry>, WalError> {
    let corrupt = |reason: String| WalError::corrupt(path, location.offset, reason);
    let mut header_bytes = [0u8; HEADER_LEN];
    file.read_at(location.offset, &mut header_bytes)
        .map_err(|e| WalError::io("read", path, e))?;
    let header = parse_header(&header_bytes).map_err(corrupt)?;
    if header.kind != RecordType::Batch {
        return Err(corrupt(format!(
            "expected a batch record, found {:?}",
            header.kind
        )));
    }
    let mut payload = vec![0u8; header.payload_len];
    file.read_at(location.offset + HEADER_LEN as u64, &mut payload)
        .map_err(|e| WalError::io("read", path, e))?;
    check_payload(&header, &payload).map_err(corrupt)?;
    let payload = Bytes::from(payload);
    let batch = Batch::decode(&payload).map_err(corrupt)?;
    let count = batch.entries.len() as u64;
    if batch.first_index != record_first || high >= record_first + count || low < record_first {
        return Err(corrupt(format!(
            "record holds entries {}..{} but the position table expects {low}..={high}",
            batch.first_index,
            batch.first_index + count
        )));
    }
    let mut entries = batch.to_entries(&payload);
    entries.truncate((high - record_first + 1) as usize);
    entries.drain(..(low - record_first) as usize);
    Ok(entries)
}

impl<D: Disk> Storage for Wal<D> {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        Ok((self.log.hard_state, self.log.conf_state.clone()))
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let (low, high) = (low.get(), high.get());
        if low <= self.log.snapshot_index {
            return Err(StorageError::Compacted);
        }
        if high > self.log.last_index + 1 || low > high {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut total = 0u64;
        // Returns false once the size limit stops the read.
        let mut take = |entry: Entry, out: &mut Vec<Entry>| {
            total += entry.size_bytes();
            if !out.is_empty() && total > max_bytes {
                return false;
            }
            out.push(entry);
            true
        };
        let mut next = low;
        while next < high {
            let span = self.log.span(next).ok_or_else(|| {
                StorageError::Io(format!("entry {next} has no position in the WAL"))
            })?;
            let until = span.last.min(high - 1);
            let entries = self.read_span(span.location, span.record_first, next, until)?;
            for entry in entries {
                if !take(entry, &mut out) {
                    return Ok(out);
                }
            }
            next = until + 1;
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        let index = index.get();
        if index < self.log.snapshot_index {
            return Err(StorageError::Compacted);
        }
        if index > self.log.last_index {
            return Err(StorageError::Unavailable);
        }
        self.log
            .term(index)
            .map(Term)
            .ok_or_else(|| StorageError::Io(format!("term of {index} unknown")))
    }

    fn first_index(&self) -> LogIndex {
        LogIndex(self.log.snapshot_index + 1)
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.log.last_index)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        if self.log.snapshot_index == 0 {
            return Ok(Snapshot {
                metadata: self.snapshot_metadata(),
                data: Bytes::new(),
            });
        }
        let path = self.dir.join(snapshot_file_name(
            self.log.snapshot_index,
            self.log.snapshot_term,
        ));
        Ok(read_snapshot_file(&self.disk, &path)?)
    }
}

/// Writes snapshot files for a [`Wal`] from any thread, and reads durable ones back.
///
/// Writing a file changes nothing the WAL relies on until [`Wal::adopt_snapshot`] records it:
/// a file newer than the WAL's snapshot is left alone while it runs and removed by recovery if
/// the process dies before the marker is written.
#[derive(Clone, Debug)]
pub struct SnapshotWriter<D: Disk = StdDisk> {
    disk: D,
    dir: PathBuf,
}

impl<D: Disk> SnapshotWriter<D> {
    /// Writes the snapshot at `metadata` atomically (temporary file, sync, rename, directory
    /// sync), its data streamed by `write_data`. Returns the data's length.
    pub fn write(
        &self,
        metadata: &SnapshotMetadata,
        write_data: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<u64, WalError> {
        crate::snapfile::write_snapshot_file_streaming(&self.disk, &self.dir, metadata, write_data)
            .map(|(_, data_len)| data_len)
    }

    /// Reads and verifies the data of the durable snapshot at `metadata` (for sending it to a
    /// follower). Fails if the file is missing, damaged, or describes another snapshot.
    pub fn read(&self, metadata: &SnapshotMetadata) -> Result<Bytes, WalError> {
        let path = self.dir.join(snapshot_file_name(
            metadata.index.get(),
            metadata.term.get(),
        ));
        let snapshot = read_snapshot_file(&self.disk, &path)?;
        if snapshot.metadata != *metadata {
            return Err(WalError::corrupt(
                &path,
                16,
                "the snapshot file describes another snapshot".to_string(),
            ));
        }
        Ok(snapshot.data)
    }
}
