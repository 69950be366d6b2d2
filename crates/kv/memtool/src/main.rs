//! Measures the in-memory cost of an `MvccStore` under etcd's benchmark workload, and the cost
//! of its snapshot, clone and restore paths.
//!
//! Applies `N` puts of 256-byte values over 100 000 keys (no compaction, as etcd's benchmarks
//! run), each as an encoded `MvccCommand` on one of 256 sessions taking turns, the way the
//! server proposes forwarded writes. A counting global allocator reports live and peak heap.
//!
//! Runs twice: with values in memory, then with values in a value file in the temp directory
//! (a copy of the server's `FileValueLog`: append-only, 64 KiB write buffer, `read_at`).
//!
//! Run with `cd crates/kv/memtool && cargo run --release [-- N]` (its own workspace: a global
//! allocator needs `unsafe impl GlobalAlloc`, which raftkv's workspace forbids).

use bytes::Bytes;
use kv::mvcc::{MvccCommand, MvccStore, PutRequest, ValueLog, ValueRef};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The server's value file, reduced to what measuring needs.
#[derive(Debug)]
struct FileLog {
    file: File,
    tail: Mutex<(u64, Vec<u8>)>,
}

impl FileLog {
    fn create(path: &std::path::Path) -> Arc<FileLog> {
        let _ = std::fs::remove_file(path);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("creates the value file");
        let _ = std::fs::remove_file(path);
        Arc::new(FileLog {
            file,
            tail: Mutex::new((0, Vec::with_capacity(64 * 1024))),
        })
    }
}

impl ValueLog for FileLog {
    fn append(&self, value: &[u8]) -> std::io::Result<ValueRef> {
        let mut tail = self.tail.lock().unwrap();
        let offset = tail.0 + tail.1.len() as u64;
        tail.1.extend_from_slice(value);
        if tail.1.len() >= 64 * 1024 {
            (&self.file).write_all(&tail.1)?;
            tail.0 += tail.1.len() as u64;
            tail.1.clear();
        }
        Ok(ValueRef {
            offset,
            len: value.len() as u32,
        })
    }

    fn read(&self, at: ValueRef) -> std::io::Result<Bytes> {
        {
            let tail = self.tail.lock().unwrap();
            if at.offset >= tail.0 {
                let start = (at.offset - tail.0) as usize;
                return Ok(Bytes::copy_from_slice(
                    &tail.1[start..start + at.len as usize],
                ));
            }
        }
        let mut value = vec![0; at.len as usize];
        self.file.read_exact_at(&mut value, at.offset)?;
        Ok(Bytes::from(value))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        // Everything appended so far goes to the file first, so the read is one pread.
        let mut tail = self.tail.lock().unwrap();
        (&self.file).write_all(&tail.1)?;
        tail.0 += tail.1.len() as u64;
        tail.1.clear();
        drop(tail);
        self.file.read_exact_at(buf, offset)
    }

    fn append_stretch(&self, bytes: &[u8]) -> std::io::Result<u64> {
        let mut tail = self.tail.lock().unwrap();
        let offset = tail.0 + tail.1.len() as u64;
        (&self.file).write_all(&tail.1)?;
        (&self.file).write_all(bytes)?;
        tail.0 = offset + bytes.len() as u64;
        tail.1.clear();
        Ok(offset)
    }

    fn size_bytes(&self) -> u64 {
        let tail = self.tail.lock().unwrap();
        tail.0 + tail.1.len() as u64
    }
}

/// `System`, counting live bytes and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn added(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every method delegates to `System` with the caller's arguments unchanged; the only
// addition is counting in atomics, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        added(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        added(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            added(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Resets the peak to the current live bytes, so the next [`peak_above`] measures one step.
fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak_above(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(500_000);
    println!("== values in memory ==");
    measure(n, MvccStore::new);
    println!();
    println!("== values in a value file ==");
    let path = std::env::temp_dir().join(format!("kv-memtool-values-{}", std::process::id()));
    measure(n, || {
        MvccStore::new().with_value_log(FileLog::create(&path))
    });
}

/// How many sessions the workload's writes take turns on: the server gives the writes a
/// member forwards sessions that serve one write at a time, so a member under etcd's
/// benchmark load (256 clients) uses about as many as it has writes in flight.
const SESSIONS: usize = 256;

/// The session and sequence of the workload's `i`th put: sessions take turns, each one's
/// sequence growing by one per use.
fn session_of(i: usize) -> (u64, u64) {
    let client_id = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul((i % SESSIONS) as u64 + 1) | 1;
    (client_id, (i / SESSIONS) as u64 + 1)
}

/// The `i`th put of the workload, encoded as the server proposes a forwarded write: on one of
/// [`SESSIONS`] sessions, to one of `keys` keys.
fn put_command(i: usize, keys: usize, value: &[u8]) -> Bytes {
    let (client_id, sequence) = session_of(i);
    MvccCommand {
        client_id,
        sequence,
        request: PutRequest::new(
            Bytes::from(format!("key-{:08}", i % keys)),
            Bytes::copy_from_slice(value),
        )
        .into(),
    }
    .encode()
}

fn measure(n: usize, new_store: impl Fn() -> MvccStore) {
    let keys = 100_000;
    let value = vec![b'v'; 256];

    let before = live();
    let mut store = new_store();
    let started = Instant::now();
    for i in 0..n {
        let bytes = put_command(i, keys, &value);
        store.apply_bytes(&bytes).expect("put applies");
    }
    let apply_time = started.elapsed();
    let store_heap = live() - before;
    let revisions = store.retained_revisions();
    println!(
        "applied {n} puts in {:.2?} ({:.0} ns/put); {} revisions, {} sessions",
        apply_time,
        apply_time.as_nanos() as f64 / n as f64,
        revisions,
        store.session_count()
    );
    println!(
        "store heap: {:.1} MiB = {:.0} bytes per retained revision (incl. sessions); {:.1} MiB of values in the value log",
        mib(store_heap),
        store_heap as f64 / revisions as f64,
        mib(store.value_log_live_bytes() as usize)
    );

    let base = reset_peak();
    let started = Instant::now();
    let snapshot = store.snapshot();
    let snapshot_time = started.elapsed();
    let snapshot_peak = peak_above(base);
    println!(
        "snapshot(): {} bytes ({:.1} MiB) in {:.2?}, peak heap during it +{:.1} MiB",
        snapshot.len(),
        mib(snapshot.len()),
        snapshot_time,
        mib(snapshot_peak)
    );
    drop(snapshot);

    let base = reset_peak();
    let started = Instant::now();
    let mut sink = std::io::sink();
    store
        .write_snapshot(&mut sink)
        .expect("writing to a sink succeeds");
    println!(
        "write_snapshot(sink): {:.2?}, peak heap during it +{:.1} KiB; snapshot_size() = {}",
        started.elapsed(),
        peak_above(base) as f64 / 1024.0,
        store.snapshot_size()
    );

    let snapshot = store.snapshot();
    let base = reset_peak();
    let started = Instant::now();
    let mut restored = new_store();
    restored.restore_in_place(&snapshot).expect("restores");
    println!(
        "restore(): {:.2?}, peak heap during it +{:.1} MiB",
        started.elapsed(),
        mib(peak_above(base))
    );
    assert_eq!(restored.current_revision(), store.current_revision());
    let started = Instant::now();
    let hash = store.hash_kv(0).expect("hashes");
    println!("hash_kv(0): {:.2?} -> {:08x}", started.elapsed(), hash.0);
    let base = reset_peak();
    let started = Instant::now();
    let copy = store.clone();
    let clone_time = started.elapsed();
    let clone_heap = live() - base;
    // A second clone shows the cost of every later freeze: the first clone may convert
    // shared buffers (e.g. a session's answer) from a plain buffer to a shared one, which
    // later clones do not repeat.
    let base = reset_peak();
    let started = Instant::now();
    let again = store.clone();
    let again_time = started.elapsed();
    let again_heap = live() - base;
    drop(again);
    println!(
        "clone(): {:.2?}, heap +{:.1} MiB ({:.0} bytes per key + session); again: {:.2?}, heap +{:.1} MiB ({:.0} bytes per key + session)",
        clone_time,
        mib(clone_heap),
        clone_heap as f64 / (keys + store.session_count()) as f64,
        again_time,
        mib(again_heap),
        again_heap as f64 / (keys + store.session_count()) as f64
    );
    // The first write to each key after a clone may copy shared state: compare 100 000
    // more puts (one per key) with the clone alive against 100 000 without one.
    let mut next = n;
    let mut more_puts = |store: &mut MvccStore| {
        let started = Instant::now();
        for _ in 0..keys {
            let (client_id, sequence) = session_of(next);
            let command = MvccCommand {
                client_id,
                sequence,
                request: PutRequest::new(
                    Bytes::from(format!("key-{:08}", next % keys)),
                    Bytes::copy_from_slice(&value),
                )
                .into(),
            };
            next += 1;
            store.apply_bytes(&command.encode()).expect("put applies");
        }
        started.elapsed()
    };
    let with_clone = more_puts(&mut store);
    drop(copy);
    let without_clone = more_puts(&mut store);
    println!(
        "{keys} more puts: {with_clone:.2?} right after a clone (clone alive), {without_clone:.2?} without"
    );

    drop(restored);
    report_sessions(&mut store, store_heap, revisions);
    drop(store);
    println!(
        "apply only (commands encoded beforehand, fresh store): best of 3 {:.0} ns/put",
        best_apply_ns(n, &new_store)
    );
}

/// The apply time alone of `n` puts into a fresh store, in ns per put, the best of three
/// runs (the least disturbed by other work on the machine). Commands are encoded in chunks
/// outside the timed part, so only `apply_bytes` is timed.
fn best_apply_ns(n: usize, new_store: impl Fn() -> MvccStore) -> f64 {
    let keys = 100_000;
    let value = vec![b'v'; 256];
    let chunk = 10_000;
    (0..3)
        .map(|_| {
            let mut store = new_store();
            let mut elapsed = std::time::Duration::ZERO;
            let mut commands = Vec::with_capacity(chunk);
            for start in (0..n).step_by(chunk) {
                commands.clear();
                commands
                    .extend((start..n.min(start + chunk)).map(|i| put_command(i, keys, &value)));
                let started = Instant::now();
                for command in &commands {
                    store.apply_bytes(command).expect("put applies");
                }
                elapsed += started.elapsed();
            }
            elapsed.as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn report_sessions(store: &mut MvccStore, store_heap: usize, revisions: usize) {
    let sessions = store.session_count();
    let with_sessions = live();
    store.set_max_sessions(1);
    let freed = with_sessions.saturating_sub(live());
    println!(
        "sessions: {} cost {:.1} MiB = {:.0} bytes each; store without them: {:.0} bytes per revision",
        sessions,
        mib(freed),
        freed as f64 / sessions as f64,
        (store_heap - freed) as f64 / revisions as f64
    );
}
