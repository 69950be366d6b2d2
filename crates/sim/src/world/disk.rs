//! The disk model: each node's durable state is the real write-ahead log ([`wal::Wal`]) on the
//! node's own simulated disk ([`wal::SimDisk`]), which survives crashes.
//!
//! - A persist task is one [`Wal::write`] (one record, one sync) when its completion fires.
//! - A crash is a power loss in the middle of the node's write queue: a random number of the
//!   writes in flight completed (durable, but never acknowledged to the node), the next one is
//!   cut off after a random number of disk operations (before its write, between write and
//!   sync, in the middle of a segment roll), and then the disk loses, keeps in part or tears
//!   what was not synced ([`CrashMode`], chosen by the seed). The WAL's recovery runs right
//!   away, so the checker sees what a restart will find; the recovered log must be the state
//!   after the last completed write or after the interrupted one, never anything else.
//!   A crash with no write in flight and nothing unsynced changes nothing on disk, so the WAL
//!   then simply stays open.
//! - A restart rebuilds the node's in-memory view of its log from the WAL through the
//!   `Storage` trait. The WAL it uses is the one recovery opened right after the crash (the
//!   disk has not changed since, so opening it again would find the same); if a test damaged
//!   the files meanwhile, the restart opens the WAL again (recovery cuts torn tails). A WAL
//!   that refuses to open is a violation, unless a test damaged the disk on purpose: then the
//!   node stays down.
//!
//! Snapshots go through the WAL too: a leader's snapshot in a persist task is saved
//! (`Wal::save_snapshot`) before the task's entries; a node's own snapshot is written to its
//! snapshot files as a member's snapshot thread writes it (`Wal::snapshot_writer`), then the
//! writer adopts it and releases the segments it covers (`WriterJob::Compact`), in order with
//! the writes queued before it; `MemStorage::copy_of` rebuilds a log that starts at a
//! snapshot.

use node::PersistTask;
use raft::{
    ConfState, Entry, HardState, LogIndex, MemStorage, Rng, Snapshot, Storage, StorageError, Term,
};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use wal::{CrashMode, SimDisk, Wal, WalOptions};

/// Where every node keeps its WAL on its own disk.
pub const WAL_DIR: &str = "/raftkv/wal";

/// The most disk operations a torn write may get through: a write and its sync, or a segment
/// roll (create, allocate, checkpoint, sync, rename, directory sync) and then write and sync.
const MAX_MUTATIONS_IN_A_WRITE: u64 = 8;

/// A node's durable log: what its WAL holds while the node runs; after a crash, what the WAL
/// recovered (what a restart finds); or why the WAL refused to open.
#[derive(Debug)]
pub struct DurableLog {
    wal: Result<Wal<SimDisk>, String>,
}

impl DurableLog {
    /// The durable hard state (the default if the WAL refused to open).
    pub fn hard_state(&self) -> HardState {
        self.wal
            .as_ref()
            .map_or(HardState::default(), Wal::hard_state)
    }

    /// The WAL, unless it refused to open.
    pub fn wal(&self) -> Option<&Wal<SimDisk>> {
        self.wal.as_ref().ok()
    }

    /// Why the WAL refused to open (for corruption: the file and byte offset), if it did.
    pub fn error(&self) -> Option<&str> {
        self.wal.as_ref().err().map(String::as_str)
    }

    fn unreadable(&self) -> StorageError {
        StorageError::Io(self.error().unwrap_or_default().to_owned())
    }
}

/// A log that refused to open holds nothing: no entry counts as durable on it.
impl Storage for DurableLog {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        match &self.wal {
            Ok(wal) => wal.initial_state(),
            Err(_) => Err(self.unreadable()),
        }
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        match &self.wal {
            Ok(wal) => wal.entries(low, high, max_bytes),
            Err(_) => Err(self.unreadable()),
        }
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        match &self.wal {
            Ok(wal) => wal.term(index),
            Err(_) => Err(self.unreadable()),
        }
    }

    fn first_index(&self) -> LogIndex {
        self.wal.as_ref().map_or(LogIndex(1), Wal::first_index)
    }

    fn last_index(&self) -> LogIndex {
        self.wal.as_ref().map_or(LogIndex::ZERO, Wal::last_index)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match &self.wal {
            Ok(wal) => wal.snapshot(),
            Err(_) => Err(self.unreadable()),
        }
    }
}

/// What a crash did to a node's WAL.
#[derive(Debug, Default)]
pub(crate) struct CrashReport {
    /// The hard state of the last acknowledged write.
    pub acknowledged: HardState,
    /// The hard state recovery found, if the WAL opened.
    pub recovered: Option<HardState>,
    /// Recovery cut a torn write off the last segment.
    pub torn_tail: bool,
    /// Segments in the recovered chain.
    pub segments: usize,
    /// A broken promise of the WAL: a failed write before the power loss, a refusal to open,
    /// or a recovered log that is neither the state before nor after the interrupted write.
    pub problem: Option<String>,
}

/// One node's disk and the WAL on it.
pub(crate) struct NodeDisk {
    disk: SimDisk,
    options: WalOptions,
    log: DurableLog,
    /// A test damaged the files on purpose since the WAL last opened: a refusal to open is
    /// expected, not a violation.
    damaged: bool,
    /// What the WAL held when a test first damaged its files, until the WAL opens again. The
    /// durable-quorum check counts this: a leader may rightly count an acknowledgement the
    /// node sent before the damage (the check is about what the cluster was promised, and
    /// destroying a member's disk afterwards is a failure Raft tolerates, not a broken promise).
    before_damage: Option<MemStorage>,
    /// The files changed since the WAL was last opened: a restart must open it again.
    reopen: bool,
    /// After a crash: the bytes of the last segment that hold records written but never
    /// acknowledged to the node (losing them loses nothing anyone was promised).
    unacknowledged: Option<(PathBuf, Range<u64>)>,
}

impl NodeDisk {
    /// A fresh disk holding a new WAL: for a founding member, the bootstrap log that names the
    /// `founders` (see `MemStorage::bootstrap`); for a spare, nothing at all.
    pub(crate) fn create(options: WalOptions, founders: Option<&ConfState>) -> NodeDisk {
        let disk = SimDisk::new();
        let mut wal = Wal::create_on(disk.clone(), WAL_DIR, options.clone(), ConfState::default())
            .unwrap_or_else(|error| panic!("cannot create a WAL on a fresh disk: {error}"));
        if let Some(founders) = founders {
            let boot = MemStorage::bootstrap(founders);
            let entries = boot
                .entries(LogIndex(1), boot.last_index().next(), u64::MAX)
                .expect("the bootstrap entry");
            wal.write(Some(boot.hard_state()), &entries)
                .unwrap_or_else(|error| panic!("cannot bootstrap a fresh WAL: {error}"));
        }
        NodeDisk {
            disk,
            options,
            log: DurableLog { wal: Ok(wal) },
            damaged: false,
            before_damage: None,
            reopen: false,
            unacknowledged: None,
        }
    }

    /// The durable log (see [`DurableLog`]).
    pub(crate) fn log(&self) -> &DurableLog {
        &self.log
    }

    /// What the durable-quorum check counts as durable on this node: the WAL, or what it held
    /// before a test damaged it.
    pub(crate) fn quorum_view(&self) -> &dyn Storage {
        match &self.before_damage {
            Some(view) => view,
            None => &self.log,
        }
    }

    /// The simulated disk itself (a handle to the same disk).
    pub(crate) fn sim_disk(&self) -> &SimDisk {
        &self.disk
    }

    /// Whether a test damaged this disk on purpose.
    pub(crate) fn damaged(&self) -> bool {
        self.damaged
    }

    /// See the field.
    pub(crate) fn unacknowledged(&self) -> Option<(PathBuf, Range<u64>)> {
        self.unacknowledged.clone()
    }

    /// Makes a batch of persist tasks durable the way a member's writer thread does
    /// (`exec::writer::write_batch`: one record and one sync where it can).
    pub(crate) fn write_batch(&mut self, batch: &[PersistTask]) -> Result<(), String> {
        self.with_wal(|wal| exec::writer::write_batch(wal, batch))
    }

    /// Runs `write` on the open WAL.
    pub(crate) fn with_wal(
        &mut self,
        write: impl FnOnce(&mut Wal<SimDisk>) -> Result<(), wal::WalError>,
    ) -> Result<(), String> {
        match &mut self.log.wal {
            Ok(wal) => write(wal).map_err(|error| error.to_string()),
            Err(error) => Err(format!("the WAL is not open: {error}")),
        }
    }

    /// The node's snapshot files (to write its own snapshots and read them back for
    /// followers), while its WAL is open.
    pub(crate) fn snapshot_files(&self) -> Option<wal::SnapshotWriter<SimDisk>> {
        self.log.wal.as_ref().ok().map(Wal::snapshot_writer)
    }

    /// Starts the node's storage: opens the WAL again if its files changed since it was last
    /// opened (recovery included), and returns the node's in-memory view of its log: all of it,
    /// or with `resident_log_bytes` only the newest committed entries, the rest read back from
    /// the WAL's files when wanted. On failure the log holds the error and the node must stay
    /// down.
    pub(crate) fn start(&mut self, resident_log_bytes: Option<u64>) -> Result<MemStorage, String> {
        self.unacknowledged = None;
        if self.reopen || self.log.wal.is_err() {
            self.reopen = false;
            // Drops the previous handle and with it the directory lock.
            self.log.wal = Err("restarting".into());
            self.log.wal = Wal::open_on(self.disk.clone(), WAL_DIR, self.options.clone())
                .map_err(|error| error.to_string());
        }
        let view = match &self.log.wal {
            Ok(wal) => match resident_log_bytes {
                None => MemStorage::copy_of(wal),
                Some(budget) => {
                    let reader = wal.reader();
                    MemStorage::copy_of_with_entry_loader(
                        wal,
                        raft::EntryLoader::new(budget, move |low, high, max_bytes| {
                            reader.entries(low, high, max_bytes)
                        }),
                    )
                }
            }
            .map_err(|error| error.to_string()),
            Err(error) => Err(error.clone()),
        };
        match &view {
            Ok(_) => {
                self.damaged = false;
                self.before_damage = None;
            }
            Err(error) => self.log.wal = Err(error.clone()),
        }
        view
    }

    /// A power loss while the writes `in_flight` (oldest first, none acknowledged) were queued,
    /// then recovery. All randomness comes from `rng`.
    pub(crate) fn crash(&mut self, in_flight: &[PersistTask], rng: &mut Rng) -> CrashReport {
        let mut report = CrashReport::default();
        let mut wal = match std::mem::replace(&mut self.log.wal, Err("crashed".into())) {
            Ok(wal) => wal,
            Err(error) => {
                self.log.wal = Err(error);
                return report;
            }
        };
        report.acknowledged = wal.hard_state();
        // Unsynced operations without a write in flight are housekeeping (the WAL deletes old
        // snapshot files without syncing the directory) or a durability bug; either way the
        // power loss below decides their fate, and recovery must still give back every
        // acknowledged write.
        let unsynced = self.disk.unsynced_ops();
        if in_flight.is_empty() && unsynced == 0 {
            // Nothing in flight and nothing unsynced: the power loss changes nothing on disk and
            // recovery would find exactly what the WAL holds, so it stays open as it is.
            report.recovered = Some(report.acknowledged);
            report.segments = wal.segments().len();
            self.log.wal = Ok(wal);
            return report;
        }
        let acknowledged_end = wal
            .segments()
            .last()
            .map(|segment| (segment.path.clone(), segment.used_bytes));

        // The writer got through some of the queue (durable, never acknowledged)...
        let completed = rng.below(in_flight.len() as u64 + 1) as usize;
        for task in &in_flight[..completed] {
            if let Err(error) = write_task(&mut wal, task) {
                report.problem = Some(format!("a write before the power loss failed: {error}"));
                break;
            }
        }
        // ...and lost power in the middle of the next one.
        let before = LogPrint::of(&wal);
        let mut allowed = vec![before.clone()];
        // (A snapshot install is written whole or not at all: the WAL's own tests cover its
        // atomicity, and the recovery expectations below describe appends only.)
        if let Some(task) = in_flight
            .get(completed)
            .filter(|task| task.snapshot.is_none())
        {
            allowed.push(before.after(task));
            // Mostly: written but not synced, so the crash mode decides what of it lands.
            let mutations = if rng.chance(3, 4) {
                1
            } else {
                rng.below(MAX_MUTATIONS_IN_A_WRITE + 1)
            };
            self.disk.crash_after(mutations);
            // Fails once the disk is gone; what reached it is the crash's to decide.
            let _ = write_task(&mut wal, task);
        }
        drop(wal);
        let mode = CrashMode::ALL[rng.below(CrashMode::ALL.len() as u64) as usize];
        self.disk.crash(mode, rng.next_u64());

        match Wal::open_on(self.disk.clone(), WAL_DIR, self.options.clone()) {
            Ok(wal) => {
                report.torn_tail = wal.recovery_report().torn_tail.is_some();
                report.recovered = Some(wal.hard_state());
                let segments = wal.segments();
                report.segments = segments.len();
                let recovered = LogPrint::of(&wal);
                if !allowed.iter().any(|print| print.admits(&recovered)) && report.problem.is_none()
                {
                    let allowed: Vec<String> = allowed
                        .iter()
                        .map(|print| {
                            let differs = print.first_difference(&recovered);
                            format!("{print} (first differing index {differs})")
                        })
                        .collect();
                    report.problem = Some(format!(
                        "recovery ({mode:?}) found {recovered}, expected {}",
                        allowed.join(" or ")
                    ));
                }
                self.unacknowledged = acknowledged_end.and_then(|(path, end)| {
                    let last = segments.last()?;
                    (last.path == path && last.used_bytes > end)
                        .then_some((path, end..last.used_bytes))
                });
                self.log.wal = Ok(wal);
            }
            Err(error) => {
                report.problem = Some(format!(
                    "the WAL refuses to open after a crash ({mode:?}): {error}"
                ));
                self.log.wal = Err(error.to_string());
            }
        }
        report
    }

    /// Flips a bit of a WAL file, durably (a test damaging a down node's disk).
    pub(crate) fn flip_bit(&mut self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        self.mark_damaged();
        self.disk.flip_bit(path, offset, bit)
    }

    /// Cuts a WAL file to `len` bytes, durably (a test damaging a down node's disk).
    pub(crate) fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.mark_damaged();
        self.disk.truncate_file(path, len)
    }

    fn mark_damaged(&mut self) {
        if self.before_damage.is_none()
            && let Ok(wal) = &self.log.wal
        {
            self.before_damage = MemStorage::copy_of(wal).ok();
        }
        self.damaged = true;
        self.reopen = true;
    }
}

/// Writes one persist task as the writer would write it alone.
fn write_task(wal: &mut Wal<SimDisk>, task: &PersistTask) -> Result<(), wal::WalError> {
    exec::writer::write_batch(wal, std::slice::from_ref(task))
}

/// The hard state and the term of every entry: what recovery must give back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogPrint {
    hard_state: HardState,
    /// The lowest commit index a power loss may give back: a commit index recorded without a
    /// sync (`Wal::record_commit`) may be lost, down to the last synced one.
    durable_commit: LogIndex,
    first_index: u64,
    terms: Vec<Term>,
}

impl LogPrint {
    fn of(wal: &Wal<SimDisk>) -> LogPrint {
        let first_index = wal.first_index().get();
        let terms = (first_index..=wal.last_index().get())
            .map(|index| wal.term(LogIndex(index)).unwrap_or(Term(u64::MAX)))
            .collect();
        LogPrint {
            hard_state: wal.hard_state(),
            durable_commit: wal.durable_hard_state().commit,
            first_index,
            terms,
        }
    }

    /// The state after `task` is written on top of this one (as `Wal::write` does it).
    fn after(&self, task: &PersistTask) -> LogPrint {
        let mut next = self.clone();
        if let Some(hard_state) = task.hard_state {
            next.hard_state = hard_state;
        }
        let commit_only = task.entries.is_empty()
            && task.hard_state.is_some_and(|hard_state| {
                hard_state.term == self.hard_state.term
                    && hard_state.vote == self.hard_state.vote
                    && hard_state.commit >= self.hard_state.commit
            });
        if !commit_only {
            next.durable_commit = next.hard_state.commit;
        }
        let live = task
            .entries
            .iter()
            .skip_while(|entry| entry.index.get() < self.first_index);
        let mut first = true;
        for entry in live {
            if first {
                next.terms
                    .truncate((entry.index.get() - self.first_index) as usize);
                first = false;
            }
            next.terms.push(entry.term);
        }
        next
    }

    /// Whether recovery may give back `recovered` for a WAL in this state: the same log, term
    /// and vote, and a commit index no lower than the durable one and no higher than the
    /// latest recorded.
    fn admits(&self, recovered: &LogPrint) -> bool {
        self.first_index == recovered.first_index
            && self.terms == recovered.terms
            && self.hard_state.term == recovered.hard_state.term
            && self.hard_state.vote == recovered.hard_state.vote
            && (self.durable_commit..=self.hard_state.commit).contains(&recovered.hard_state.commit)
    }

    /// The first index whose term differs between the two logs (or that only one holds).
    fn first_difference(&self, other: &LogPrint) -> u64 {
        let common = self.terms.len().min(other.terms.len());
        let same = (0..common)
            .take_while(|&i| self.terms[i] == other.terms[i])
            .count();
        self.first_index + same as u64
    }

    fn last_index(&self) -> u64 {
        self.first_index + self.terms.len() as u64 - 1
    }
}

impl fmt::Display for LogPrint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[last index {} ({}), term {} vote {} commit {} (durable {})]",
            self.last_index(),
            self.terms.last().copied().unwrap_or(Term(0)),
            self.hard_state.term,
            self.hard_state.vote,
            self.hard_state.commit,
            self.durable_commit
        )
    }
}
