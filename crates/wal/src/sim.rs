//! An in-memory [`Disk`] that models what a power loss does to a file system, for crash tests and
//! for the cluster simulator.
//!
//! The model, per file: the bytes that are *durable* (as of the last [`DiskFile::sync`]) and the
//! ordered list of writes, truncations and allocations made since (the page cache). Reads see
//! the page cache. Per directory: names created, renamed or removed since the last
//! [`Disk::sync_dir`] are pending too. [`SimDisk::crash`] then decides, from a seed, what
//! survives:
//!
//! - [`CrashMode::LoseUnsynced`]: nothing pending survives.
//! - [`CrashMode::KeepPrefix`]: a random prefix of each file's pending operations survives, the
//!   last of them possibly only in part (a random prefix of its bytes); likewise a random prefix
//!   of the pending directory operations.
//! - [`CrashMode::TornPage`]: as `KeepPrefix`, and then part of the 4 KiB page being written at
//!   the moment of the crash holds garbage (only where that write was putting bytes).
//!
//! Durable bytes never change in a crash: the model assumes a device does not damage sectors
//! that are not being written. Damage to durable data is injected explicitly with
//! [`SimDisk::flip_bit`] and [`SimDisk::truncate_file`].
//!
//! Faults: [`SimDisk::fail_write`] and [`SimDisk::fail_sync`] make the N-th following write
//! (`write_at`/`allocate`) or sync (`sync`/`sync_dir`) fail with `ENOSPC` or `EIO`;
//! [`SimDisk::set_capacity`] makes writes beyond a total size fail with `ENOSPC`;
//! [`SimDisk::crash_after`] lets N more mutating operations through and then fails everything
//! (the process "died" at that point) until [`SimDisk::crash`].

use crate::disk::{Disk, DiskFile, OpenMode};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The page size used by [`CrashMode::TornPage`].
pub const SIM_PAGE_SIZE: u64 = 4096;

/// What a simulated power loss keeps of the writes that were not yet synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// Every unsynced write, truncation and name change is lost.
    LoseUnsynced,
    /// A random prefix of the unsynced operations survives, the last one possibly in part.
    KeepPrefix,
    /// Like `KeepPrefix`, and part of the page being written at the crash holds garbage.
    TornPage,
}

impl CrashMode {
    /// All modes, for tests that pick one at random.
    pub const ALL: [CrashMode; 3] = [
        CrashMode::LoseUnsynced,
        CrashMode::KeepPrefix,
        CrashMode::TornPage,
    ];
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `ENOSPC`: no space left on the device.
    DiskFull,
    /// `EIO`: the device failed.
    Io,
}

impl Fault {
    fn to_error(self) -> io::Error {
        match self {
            Fault::DiskFull => io::Error::from(rustix::io::Errno::NOSPC),
            Fault::Io => io::Error::from(rustix::io::Errno::IO),
        }
    }
}

/// A tiny seeded PRNG (SplitMix64) so that a crash is a pure function of its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound]` (inclusive), for choosing "how many of n".
    fn upto(&mut self, bound: u64) -> u64 {
        if bound == u64::MAX {
            return self.next();
        }
        self.next() % (bound + 1)
    }
}

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { path: PathBuf, inode: u64 },
    Rename { from: PathBuf, to: PathBuf },
    Unlink { path: PathBuf },
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => path.parent(),
            DirOp::Rename { to, .. } => to.parent(),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            DirOp::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
            DirOp::Unlink { path } => {
                names.remove(path);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What reads see (durable bytes with the pending operations applied).
    data: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
    /// Operations since the last sync, in order.
    pending: Vec<FileOp>,
}

fn apply_op(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write {
            offset,
            data: bytes,
        } => write_bytes(data, *offset, bytes),
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

fn write_bytes(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = offset as usize;
    let end = offset + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset..end].copy_from_slice(bytes);
}

#[derive(Debug, Default)]
struct SimState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    pending_dir_ops: Vec<DirOp>,
    locks: BTreeSet<PathBuf>,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    writes: u64,
    syncs: u64,
    write_faults: Vec<(u64, Fault)>,
    sync_faults: Vec<(u64, Fault)>,
    capacity: Option<u64>,
    mutations_until_crash: Option<u64>,
    frozen: bool,
}

impl SimState {
    fn check_alive(&self) -> io::Result<()> {
        if self.frozen {
            return Err(io::Error::other("simulated power loss: the disk is gone"));
        }
        Ok(())
    }

    /// Accounts one mutating operation against `crash_after`.
    fn mutation(&mut self) -> io::Result<()> {
        self.check_alive()?;
        if let Some(left) = self.mutations_until_crash.as_mut() {
            if *left == 0 {
                self.frozen = true;
                return self.check_alive();
            }
            *left -= 1;
        }
        Ok(())
    }

    fn write_op(&mut self) -> io::Result<()> {
        self.mutation()?;
        self.writes += 1;
        take_fault(&mut self.write_faults, self.writes)
    }

    fn sync_op(&mut self) -> io::Result<()> {
        self.mutation()?;
        self.syncs += 1;
        take_fault(&mut self.sync_faults, self.syncs)
    }

    fn used_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.data.len() as u64)
            .sum()
    }

    /// Fails with `ENOSPC` if growing a file from `old_len` to `new_len` exceeds the capacity.
    fn check_space(&self, old_len: u64, new_len: u64) -> io::Result<()> {
        let grows_past_capacity = self.capacity.is_some_and(|capacity| {
            new_len > old_len && self.used_bytes() + (new_len - old_len) > capacity
        });
        if grows_past_capacity {
            return Err(Fault::DiskFull.to_error());
        }
        Ok(())
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() || self.dirs.contains(parent) {
            Ok(())
        } else {
            Err(not_found(parent))
        }
    }

    fn inode_mut(&mut self, inode: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&inode)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "inode vanished"))
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

/// The in-memory, fault-injecting disk. Cloning gives another handle to the same disk, so a test
/// keeps one to crash or damage the disk while a `Wal` owns the other.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

/// Another name for [`SimDisk`], after its role in tests.
pub type FaultDisk = SimDisk;

impl SimDisk {
    /// An empty disk with no faults armed and unlimited capacity.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic in a test thread must not hide the disk from the assertions that follow.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Simulates a power loss: decides from `seed` what of the unsynced state survives (see
    /// [`CrashMode`]), invalidates every open handle and lock, and clears `crash_after`.
    /// Armed `fail_write`/`fail_sync` faults and the capacity stay.
    pub fn crash(&self, mode: CrashMode, seed: u64) {
        let mut state = self.state();
        let mut rng = SplitMix64(seed);
        let state = &mut *state;

        let pending = std::mem::take(&mut state.pending_dir_ops);
        let keep = match mode {
            CrashMode::LoseUnsynced => 0,
            _ => rng.upto(pending.len() as u64) as usize,
        };
        for op in &pending[..keep] {
            op.apply(&mut state.durable_names);
        }
        state.names = state.durable_names.clone();

        for inode in state.inodes.values_mut() {
            let ops = std::mem::take(&mut inode.pending);
            if mode != CrashMode::LoseUnsynced && !ops.is_empty() {
                crash_file(&mut inode.durable, &ops, mode, &mut rng);
            }
            inode.data = inode.durable.clone();
        }
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));

        state.generation += 1;
        state.locks.clear();
        state.frozen = false;
        state.mutations_until_crash = None;
    }

    /// Lets `mutations` more mutating operations (write, truncate, allocate, sync, create,
    /// rename, remove, sync_dir) succeed; the one after that and every operation after it fail,
    /// as if the process lost power right there. Follow with [`SimDisk::crash`].
    pub fn crash_after(&self, mutations: u64) {
        self.state().mutations_until_crash = Some(mutations);
    }

    /// Whether `crash_after` has triggered and the disk now fails everything.
    pub fn is_frozen(&self) -> bool {
        self.state().frozen
    }

    /// Makes the `n`-th write from now (1 = the next; `write_at` and `allocate` count) fail with
    /// `fault`, writing nothing.
    pub fn fail_write(&self, n: u64, fault: Fault) {
        let mut state = self.state();
        let at = state.writes + n.max(1);
        state.write_faults.push((at, fault));
    }

    /// Makes the `n`-th sync from now (1 = the next; `sync` and `sync_dir` count) fail with
    /// `fault`. Nothing becomes durable, but the page cache keeps the writes (as Linux may).
    pub fn fail_sync(&self, n: u64, fault: Fault) {
        let mut state = self.state();
        let at = state.syncs + n.max(1);
        state.sync_faults.push((at, fault));
    }

    /// Disarms every pending `fail_write`/`fail_sync` fault and `crash_after`.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.write_faults.clear();
        state.sync_faults.clear();
        state.mutations_until_crash = None;
    }

    /// Limits the total size of all files; growth beyond fails with `ENOSPC`. `None` lifts it.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity = bytes;
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` in `path`, durably (a bit rotting while the
    /// member is down).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut state = self.state();
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inode_mut(id)?;
        let offset = offset as usize;
        if offset >= inode.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "flip_bit beyond the end of the file",
            ));
        }
        let mask = 1u8 << (bit % 8);
        inode.data[offset] ^= mask;
        if offset < inode.durable.len() {
            inode.durable[offset] ^= mask;
        }
        for op in &mut inode.pending {
            if let FileOp::Write { offset: at, data } = op {
                let at = *at as usize;
                if (at..at + data.len()).contains(&offset) {
                    data[offset - at] ^= mask;
                }
            }
        }
        Ok(())
    }

    /// Cuts `path` to `len` bytes, durably (an operator or a broken copy truncating a file).
    pub fn truncate_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inode_mut(id)?;
        inode.data.truncate(len as usize);
        inode.durable.truncate(len as usize);
        inode.pending.clear();
        Ok(())
    }

    /// The current contents of `path` (as reads see them), or `None` if there is no such file.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let id = state.names.get(path)?;
        state.inodes.get(id).map(|inode| inode.data.clone())
    }

    /// The paths of all files, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state().names.keys().cloned().collect()
    }

    /// How many file and directory syncs were asked of this disk so far (failed ones included):
    /// what a test counts to see how often a writer waits for the device.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// How many file and directory operations are not yet durable, over the whole disk: what a
    /// crash in [`CrashMode::LoseUnsynced`] would undo (0 means a crash now loses nothing).
    pub fn unsynced_ops(&self) -> usize {
        let state = self.state();
        state
            .inodes
            .values()
            .map(|inode| inode.pending.len())
            .sum::<usize>()
            + state.pending_dir_ops.len()
    }
}

/// Applies to `durable` what a crash keeps of `ops`.
fn crash_file(durable: &mut Vec<u8>, ops: &[FileOp], mode: CrashMode, rng: &mut SplitMix64) {
    let keep = rng.upto(ops.len() as u64) as usize;
    for op in &ops[..keep] {
        apply_op(durable, op);
    }
    // The operation in flight at the crash (if any) lands in part.
    let mut tear: Option<(u64, &[u8], usize)> = None;
    if let Some(op) = ops.get(keep) {
        match op {
            FileOp::Write { offset, data } => {
                let kept = rng.upto(data.len() as u64) as usize;
                write_bytes(durable, *offset, &data[..kept]);
                tear = Some((*offset, data, kept));
            }
            FileOp::SetLen(_) => {
                if rng.next() & 1 == 0 {
                    apply_op(durable, op);
                }
            }
        }
    } else if let Some(FileOp::Write { offset, data }) = ops.last() {
        tear = Some((*offset, data, data.len()));
    }
    if mode != CrashMode::TornPage {
        return;
    }
    let Some((offset, data, kept)) = tear else {
        return;
    };
    if data.is_empty() {
        return;
    }
    // The page holding the tear point, clipped to the bytes this write was putting down.
    let tear_point = offset + kept as u64;
    let page_start = (tear_point.saturating_sub(1) / SIM_PAGE_SIZE) * SIM_PAGE_SIZE;
    let low = page_start.max(offset);
    let high = (page_start + SIM_PAGE_SIZE).min(offset + data.len() as u64);
    if low >= high {
        return;
    }
    let a = low + rng.upto(high - low - 1);
    let b = a + 1 + rng.upto(high - a - 1);
    let garbage: Vec<u8> = (a..b).map(|_| rng.next() as u8).collect();
    write_bytes(durable, a, &garbage);
}

/// A file of [`SimDisk`].
#[derive(Debug)]
pub struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: u64,
    generation: u64,
    writable: bool,
}

/// A lock of [`SimDisk`], released on drop (or by a crash).
#[derive(Debug)]
pub struct SimLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.generation == self.generation {
            state.locks.remove(&self.path);
        }
    }
}

impl SimFile {
    fn with_state<T>(&self, f: impl FnOnce(&mut SimState) -> io::Result<T>) -> io::Result<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.generation != self.generation {
            return Err(io::Error::other(
                "stale file handle from before a simulated crash",
            ));
        }
        f(&mut state)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let inode = self.inode;
        self.with_state(|state| {
            state.check_alive()?;
            Ok(state.inode_mut(inode)?.data.len() as u64)
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let inode = self.inode;
        self.with_state(|state| {
            state.check_alive()?;
            let data = &state.inode_mut(inode)?.data;
            let start = offset as usize;
            let end = start.checked_add(buf.len());
            match end {
                Some(end) if end <= data.len() => {
                    buf.copy_from_slice(&data[start..end]);
                    Ok(())
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read beyond the end of the file",
                )),
            }
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_writable()?;
        let inode = self.inode;
        self.with_state(|state| {
            state.write_op()?;
            let old_len = state.inode_mut(inode)?.data.len() as u64;
            state.check_space(old_len, old_len.max(offset + data.len() as u64))?;
            let file = state.inode_mut(inode)?;
            let op = FileOp::Write {
                offset,
                data: data.to_vec(),
            };
            apply_op(&mut file.data, &op);
            file.pending.push(op);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let inode = self.inode;
        self.with_state(|state| {
            state.sync_op()?;
            let file = state.inode_mut(inode)?;
            for op in std::mem::take(&mut file.pending) {
                apply_op(&mut file.durable, &op);
            }
            debug_assert_eq!(file.durable, file.data);
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let inode = self.inode;
        self.with_state(|state| {
            state.mutation()?;
            let old_len = state.inode_mut(inode)?.data.len() as u64;
            state.check_space(old_len, len)?;
            let file = state.inode_mut(inode)?;
            let op = FileOp::SetLen(len);
            apply_op(&mut file.data, &op);
            file.pending.push(op);
            Ok(())
        })
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let inode = self.inode;
        self.with_state(|state| {
            state.write_op()?;
            let old_len = state.inode_mut(inode)?.data.len() as u64;
            if len <= old_len {
                return Ok(());
            }
            state.check_space(old_len, len)?;
            let file = state.inode_mut(inode)?;
            let op = FileOp::SetLen(len);
            apply_op(&mut file.data, &op);
            file.pending.push(op);
            Ok(())
        })
    }
}

impl Disk for SimDisk {
    type File = SimFile;
    type Lock = SimLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.check_alive()?;
        // Directories themselves are modelled as always durable: the WAL syncs the parent after
        // creating its directory, and nothing here tests that step.
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        state.check_alive()?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let state = self.state();
        state.check_alive()?;
        let inode = *state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(SimFile {
            state: Arc::clone(&self.state),
            inode,
            generation: state.generation,
            writable: mode == OpenMode::ReadWrite,
        })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.state();
        state.mutation()?;
        state.parent_exists(path)?;
        let inode = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(inode, Inode::default());
        let op = DirOp::Link {
            path: path.to_path_buf(),
            inode,
        };
        op.apply(&mut state.names);
        state.pending_dir_ops.push(op);
        Ok(SimFile {
            state: Arc::clone(&self.state),
            inode,
            generation: state.generation,
            writable: true,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.mutation()?;
        if !state.names.contains_key(from) {
            return Err(not_found(from));
        }
        if from.parent() != to.parent() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the simulated disk renames only within one directory",
            ));
        }
        let op = DirOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        };
        op.apply(&mut state.names);
        state.pending_dir_ops.push(op);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.mutation()?;
        if !state.names.contains_key(path) {
            return Err(not_found(path));
        }
        let op = DirOp::Unlink {
            path: path.to_path_buf(),
        };
        op.apply(&mut state.names);
        state.pending_dir_ops.push(op);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.sync_op()?;
        let state = &mut *state;
        let pending = std::mem::take(&mut state.pending_dir_ops);
        for op in pending {
            if op.dir() == Some(dir) {
                op.apply(&mut state.durable_names);
            } else {
                state.pending_dir_ops.push(op);
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<SimLock> {
        {
            let mut state = self.state();
            state.check_alive()?;
            if state.locks.contains(path) {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "lock is held elsewhere",
                ));
            }
            if !state.names.contains_key(path) {
                state.parent_exists(path)?;
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Inode::default());
                let op = DirOp::Link {
                    path: path.to_path_buf(),
                    inode,
                };
                op.apply(&mut state.names);
                state.pending_dir_ops.push(op);
            }
            state.locks.insert(path.to_path_buf());
        }
        let generation = self.state().generation;
        Ok(SimLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            generation,
        })
    }
}

/// Fires (and forgets) the fault planned for the `count`-th operation of its kind, if any.
fn take_fault(planned: &mut Vec<(u64, Fault)>, count: u64) -> io::Result<()> {
    match planned.iter().position(|(at, _)| *at == count) {
        Some(position) => Err(planned.remove(position).1.to_error()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimDisk, PathBuf) {
        let disk = SimDisk::new();
        let dir = PathBuf::from("/d");
        disk.create_dir_all(&dir).unwrap();
        (disk, dir)
    }

    #[test]
    fn unsynced_bytes_are_lost_and_synced_bytes_survive() {
        let (disk, dir) = setup();
        let path = dir.join("f");
        let mut file = disk.create(&path).unwrap();
        disk.sync_dir(&dir).unwrap();
        file.write_at(0, b"hello").unwrap();
        file.sync().unwrap();
        file.write_at(5, b" world").unwrap();
        assert_eq!(disk.read_file(&path).unwrap(), b"hello world");
        disk.crash(CrashMode::LoseUnsynced, 1);
        assert_eq!(disk.read_file(&path).unwrap(), b"hello");
        // The old handle died with the "process".
        assert!(file.len().is_err());
    }

    #[test]
    fn names_become_durable_only_on_sync_dir() {
        let (disk, dir) = setup();
        let mut a = disk.create(&dir.join("a")).unwrap();
        a.write_at(0, b"x").unwrap();
        a.sync().unwrap();
        disk.crash(CrashMode::LoseUnsynced, 0);
        assert!(disk.read_file(&dir.join("a")).is_none());

        let mut a = disk.create(&dir.join("a")).unwrap();
        a.write_at(0, b"x").unwrap();
        a.sync().unwrap();
        disk.sync_dir(&dir).unwrap();
        disk.rename(&dir.join("a"), &dir.join("b")).unwrap();
        disk.crash(CrashMode::LoseUnsynced, 0);
        assert_eq!(disk.read_file(&dir.join("a")).unwrap(), b"x");
        assert!(disk.read_file(&dir.join("b")).is_none());
    }

    #[test]
    fn keep_prefix_keeps_a_prefix_of_the_writes() {
        for seed in 0..200 {
            let (disk, dir) = setup();
            let path = dir.join("f");
            let mut file = disk.create(&path).unwrap();
            disk.sync_dir(&dir).unwrap();
            file.write_at(0, b"abc").unwrap();
            file.sync().unwrap();
            file.write_at(3, b"defgh").unwrap();
            file.write_at(8, b"ijk").unwrap();
            disk.crash(CrashMode::KeepPrefix, seed);
            let got = disk.read_file(&path).unwrap();
            assert!(b"abcdefghijk".starts_with(&got), "seed {seed}: {got:?}");
            assert!(got.len() >= 3);
        }
    }

    #[test]
    fn torn_page_damages_only_unsynced_bytes() {
        let mut saw_garbage = false;
        for seed in 0..200 {
            let (disk, dir) = setup();
            let path = dir.join("f");
            let mut file = disk.create(&path).unwrap();
            disk.sync_dir(&dir).unwrap();
            file.write_at(0, &[7u8; 100]).unwrap();
            file.sync().unwrap();
            file.write_at(100, &[9u8; 100]).unwrap();
            disk.crash(CrashMode::TornPage, seed);
            let got = disk.read_file(&path).unwrap();
            assert_eq!(&got[..100], &[7u8; 100][..]);
            assert!(got.len() <= 200);
            saw_garbage |= got[100..].iter().any(|&b| b != 9);
        }
        assert!(saw_garbage);
    }

    #[test]
    fn faults_fire_at_the_nth_operation() {
        let (disk, dir) = setup();
        let mut file = disk.create(&dir.join("f")).unwrap();
        disk.fail_write(2, Fault::DiskFull);
        file.write_at(0, b"a").unwrap();
        let error = file.write_at(1, b"b").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        file.write_at(1, b"c").unwrap();
        disk.fail_sync(1, Fault::Io);
        assert!(file.sync().is_err());
        file.sync().unwrap();
        disk.set_capacity(Some(4));
        assert!(file.write_at(2, b"xyz").is_err());
        file.write_at(2, b"xy").unwrap();
        assert_eq!(disk.read_file(&dir.join("f")).unwrap(), b"acxy");
    }

    #[test]
    fn crash_after_freezes_the_disk() {
        let (disk, dir) = setup();
        let mut file = disk.create(&dir.join("f")).unwrap();
        disk.crash_after(1);
        file.write_at(0, b"a").unwrap();
        assert!(file.sync().is_err());
        assert!(file.len().is_err());
        assert!(disk.is_frozen());
        disk.crash(CrashMode::LoseUnsynced, 0);
        assert!(!disk.is_frozen());
        assert!(disk.files().is_empty());
    }

    #[test]
    fn locks_exclude_and_release() {
        let (disk, dir) = setup();
        let lock = disk.lock(&dir.join("LOCK")).unwrap();
        assert_eq!(
            disk.lock(&dir.join("LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(lock);
        let _again = disk.lock(&dir.join("LOCK")).unwrap();
    }
}
