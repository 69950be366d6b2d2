//! WAL throughput and recovery time on the real file system.
//!
//! - `append/{batch}x{size}`: one `Wal::write` of `batch` entries of `size` bytes, i.e. one
//!   record and one `fdatasync`, per iteration (group commit). Throughput is in bytes of entry
//!   data; entries/s = bytes/s ÷ size.
//! - `raw_write_sync/{batch}x{size}`: the bound set by the medium: the same number of bytes
//!   appended to a plain file with one `write` and one `sync_data` per iteration.
//! - `recovery/{MB}MiB`: `Wal::open` of a log of `WAL_BENCH_RECOVERY_MB` MiB (default 64) of
//!   4 KiB entries in batches of 16: reading, checksumming and indexing every segment.
//!
//! The temporary directories go to `WAL_BENCH_DIR` if set (default: the system temp dir).
//! Measurement times are short (1 s per case) so that a default run takes about a minute.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft::{ConfState, Entry, LogIndex, NodeId, Term};
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use wal::{Wal, WalOptions};

/// Start over in a fresh directory after this many bytes, to bound the disk space used.
const MAX_BYTES_PER_DIR: u64 = 256 << 20;

fn bench_dir() -> TempDir {
    match std::env::var_os("WAL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn batch_of(first: u64, count: usize, data: &Bytes) -> Vec<Entry> {
    (0..count as u64)
        .map(|i| Entry {
            term: Term(1),
            index: LogIndex(first + i),
            data: data.clone(),
            ..Entry::default()
        })
        .collect()
}

fn conf() -> ConfState {
    ConfState::with_voters([NodeId(1)])
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(300));
    group.sample_size(10);
    for size in [100usize, 4096] {
        for batch in [1usize, 16, 256] {
            let bytes = (batch * size) as u64;
            group.throughput(Throughput::Bytes(bytes));
            let data = Bytes::from(vec![0xA5u8; size]);
            let id = BenchmarkId::from_parameter(format!("{batch}x{size}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut dir = bench_dir();
                    let mut wal =
                        Wal::create(dir.path(), WalOptions::default(), conf()).expect("create");
                    let mut next = 1;
                    let mut written = 0u64;
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        if written >= MAX_BYTES_PER_DIR {
                            drop(wal);
                            dir = bench_dir();
                            wal = Wal::create(dir.path(), WalOptions::default(), conf())
                                .expect("create");
                            next = 1;
                            written = 0;
                        }
                        let entries = batch_of(next, batch, &data);
                        let start = Instant::now();
                        wal.write(None, black_box(&entries)).expect("write");
                        elapsed += start.elapsed();
                        next += batch as u64;
                        written += bytes;
                    }
                    elapsed
                });
            });
        }
    }
    group.finish();
}

fn raw_write_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_write_sync");
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(300));
    group.sample_size(10);
    for size in [100usize, 4096] {
        for batch in [1usize, 16, 256] {
            let bytes = batch * size;
            group.throughput(Throughput::Bytes(bytes as u64));
            let buffer = vec![0xA5u8; bytes];
            let id = BenchmarkId::from_parameter(format!("{batch}x{size}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let dir = bench_dir();
                    let path = dir.path().join("raw");
                    let mut file = File::create(&path).expect("create");
                    let mut written = 0u64;
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        if written >= MAX_BYTES_PER_DIR {
                            file = File::create(&path).expect("recreate");
                            written = 0;
                        }
                        let start = Instant::now();
                        file.write_all(black_box(&buffer)).expect("write");
                        file.sync_data().expect("sync");
                        elapsed += start.elapsed();
                        written += bytes as u64;
                    }
                    elapsed
                });
            });
        }
    }
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let megabytes: u64 = std::env::var("WAL_BENCH_RECOVERY_MB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(64);
    let dir = bench_dir();
    let data = Bytes::from(vec![0x5Au8; 4096]);
    {
        let mut wal = Wal::create(dir.path(), WalOptions::default(), conf()).expect("create");
        let batches = (megabytes << 20) / (16 * 4096);
        for batch in 0..batches {
            wal.write(None, &batch_of(1 + batch * 16, 16, &data))
                .expect("write");
        }
    }
    let mut group = c.benchmark_group("recovery");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(300));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(megabytes << 20));
    group.bench_function(
        BenchmarkId::from_parameter(format!("{megabytes}MiB")),
        |b| {
            b.iter(|| {
                let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
                black_box(wal.recovery_report().last_index)
            });
        },
    );
    group.finish();
}

/// The benchmark groups, in a module so that the function the macro generates may go without
/// a doc comment.
#[allow(missing_docs)]
mod groups {
    use super::{append, criterion_group, raw_write_sync, recovery};
    criterion_group!(benches, append, raw_write_sync, recovery);
}
criterion_main!(groups::benches);
