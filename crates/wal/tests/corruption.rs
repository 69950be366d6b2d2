//! Damage while the member is down: bit flips, truncation, missing and swapped files. Damage to
//! acknowledged data is refused with the file and byte offset; damage confined to the last
//! record is a torn write, cut and reported.

mod common;

use common::*;
use raft::{LogIndex, Rng, Storage};
use std::path::{Path, PathBuf};
use wal::{Disk, DiskFile, OpenMode, SimDisk, StdDisk, Wal, WalError, WalOptions};

/// Where one batch record was written.
#[derive(Clone, Debug)]
struct Written {
    path: PathBuf,
    offset: u64,
    /// Header plus payload, without padding: every byte of it is covered by a checksum.
    checked_len: u64,
    last_index: u64,
}

fn header_payload_len(bytes: &[u8], offset: u64) -> u64 {
    let at = offset as usize;
    16 + u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()))
}

/// Writes `batches` batches of growing size and returns where each record went.
fn build(disk: &SimDisk, options: &WalOptions, batches: u64) -> Vec<Written> {
    let mut wal = create_sim(disk, options);
    let mut written = Vec::new();
    let mut next = 1;
    for batch in 0..batches {
        let before = wal.segments().last().unwrap().clone();
        let count = 1 + batch % 4;
        wal.append(&entries(next, count, 1, batch, 40 + 30 * batch as usize))
            .unwrap();
        next += count;
        let after = wal.segments().last().unwrap().clone();
        let bytes = disk.read_file(&after.path).unwrap();
        let offset = if after.path == before.path {
            before.used_bytes
        } else {
            header_payload_len(&bytes, 0).next_multiple_of(8)
        };
        written.push(Written {
            path: after.path.clone(),
            offset,
            checked_len: header_payload_len(&bytes, offset),
            last_index: next - 1,
        });
    }
    written
}

fn expect_corrupt(error: WalError, file: &Path, offset: u64) {
    match &error {
        WalError::Corrupt {
            file: got_file,
            offset: got_offset,
            ..
        } => {
            assert_eq!(got_file, file, "{error}");
            assert_eq!(*got_offset, offset, "{error}");
            let message = error.to_string();
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(&format!("byte {offset}")), "{message}");
        }
        other => panic!(
            "expected corruption in {} at {offset}, got {other}",
            file.display()
        ),
    }
}

#[test]
fn a_bit_flip_in_any_acknowledged_record_but_the_last_is_refused_with_file_and_offset() {
    let disk = SimDisk::new();
    let options = small_options();
    let written = build(&disk, &options, 14);
    let segments = segment_paths(&disk, &dir());
    assert!(
        segments.len() >= 3,
        "want several segments, got {}",
        segments.len()
    );
    let mut rng = Rng::new(7);
    for record in &written[..written.len() - 1] {
        let mut positions = vec![0, 4, 12, 16, record.checked_len - 1];
        positions.push(rng.below(record.checked_len));
        for position in positions {
            let at = record.offset + position;
            disk.flip_bit(&record.path, at, (position % 8) as u8)
                .unwrap();
            let error = open_sim(&disk, &options).unwrap_err();
            expect_corrupt(error, &record.path, record.offset);
            disk.flip_bit(&record.path, at, (position % 8) as u8)
                .unwrap();
        }
    }
    // Checkpoints too (the first record of every segment).
    for segment in &segments {
        disk.flip_bit(segment, 20, 1).unwrap();
        expect_corrupt(open_sim(&disk, &options).unwrap_err(), segment, 0);
        disk.flip_bit(segment, 20, 1).unwrap();
    }
    // Undamaged, it opens with everything.
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.recovery_report().torn_tail, None);
    assert_eq!(wal.last_index().get(), written.last().unwrap().last_index);
}

#[test]
fn a_bit_flip_in_the_last_record_is_a_torn_tail_that_is_cut_and_reported() {
    let options = small_options();
    for position_seed in 0..20u64 {
        let disk = SimDisk::new();
        let written = build(&disk, &options, 6);
        let last = written.last().unwrap();
        let position = Rng::new(position_seed).below(last.checked_len);
        disk.flip_bit(&last.path, last.offset + position, 2)
            .unwrap();
        let mut wal = open_sim(&disk, &options).unwrap();
        let torn = wal.recovery_report().torn_tail.clone().expect("torn tail");
        assert_eq!(torn.file, last.path);
        assert_eq!(torn.offset, last.offset);
        assert!(torn.discarded_bytes > 0);
        assert!(wal.recovery_report().to_string().contains("torn write"));
        let previous = written[written.len() - 2].last_index;
        assert_eq!(wal.last_index().get(), previous);
        // The cut is durable and the log goes on from there.
        wal.append(&entries(previous + 1, 2, 2, 99, 10)).unwrap();
        drop(wal);
        let wal = open_sim(&disk, &options).unwrap();
        assert_eq!(wal.recovery_report().torn_tail, None);
        assert_eq!(wal.last_index().get(), previous + 2);
        assert_eq!(wal.term(LogIndex(previous + 1)).unwrap().get(), 2);
    }
}

#[test]
fn an_unknown_entry_kind_is_corruption_even_in_the_last_record() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 1, 1, 0, 3)).unwrap();
    let at = wal.segments().last().unwrap().used_bytes;
    wal.append(&entries(2, 1, 1, 0, 3)).unwrap();
    let path = wal.segments().last().unwrap().path.clone();
    drop(wal);
    // Rewrite the kind tag and both checksums, as a newer version with a new kind would.
    let mut bytes = disk.read_file(&path).unwrap();
    let at = at as usize;
    let payload_len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 16 + 1 + 8 + 4 + 8] = 42;
    let payload_crc = crc32c::crc32c(&bytes[at + 16..at + 16 + payload_len]);
    bytes[at + 8..at + 12].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[at..at + 12]);
    bytes[at + 12..at + 16].copy_from_slice(&header_crc.to_le_bytes());
    let mut file = disk.open(&path, OpenMode::ReadWrite).unwrap();
    file.write_at(0, &bytes).unwrap();
    file.sync().unwrap();
    drop(file);
    let error = open_sim(&disk, &options).unwrap_err();
    assert!(
        error.to_string().contains("unknown entry kind tag 42"),
        "{error}"
    );
    expect_corrupt(error, &path, at as u64);
}

#[test]
fn a_truncated_segment_is_refused() {
    let options = small_options();
    let mut rng = Rng::new(11);
    for _ in 0..10 {
        let disk = SimDisk::new();
        let written = build(&disk, &options, 14);
        let segments = segment_paths(&disk, &dir());
        let victim = &segments[rng.below(segments.len() as u64) as usize];
        let len = disk.read_file(victim).unwrap().len() as u64;
        let cut = rng.below(len);
        disk.truncate_file(victim, cut).unwrap();
        let error = open_sim(&disk, &options).unwrap_err();
        assert!(error.is_corruption(), "{error}");
        assert!(
            error.to_string().contains(&victim.display().to_string()),
            "{error}"
        );
        drop(written);
    }
}

#[test]
fn a_missing_segment_is_refused() {
    let options = small_options();
    for victim in 0..2 {
        let disk = SimDisk::new();
        build(&disk, &options, 14);
        let segments = segment_paths(&disk, &dir());
        disk.remove(&segments[victim]).unwrap();
        let error = open_sim(&disk, &options).unwrap_err();
        assert!(error.is_corruption(), "{error}");
        assert!(error.to_string().contains("missing"), "{error}");
    }
}

#[test]
fn a_segment_copied_over_another_is_refused() {
    let disk = SimDisk::new();
    let options = small_options();
    build(&disk, &options, 14);
    let segments = segment_paths(&disk, &dir());
    let bytes = disk.read_file(&segments[0]).unwrap();
    let mut file = disk.open(&segments[1], OpenMode::ReadWrite).unwrap();
    file.truncate(0).unwrap();
    file.write_at(0, &bytes).unwrap();
    file.sync().unwrap();
    drop(file);
    let error = open_sim(&disk, &options).unwrap_err();
    assert!(
        error.to_string().contains("belongs to segment 1"),
        "{error}"
    );
    expect_corrupt(error, &segments[1], 0);
}

#[test]
fn a_damaged_or_missing_current_snapshot_is_refused_an_old_one_is_not() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 10, 1, 0, 10)).unwrap();
    wal.save_snapshot(&snapshot(4, 1, conf(), b"old state"))
        .unwrap();
    wal.save_snapshot(&snapshot(8, 1, conf(), b"new state"))
        .unwrap();
    drop(wal);
    let old = dir().join("0000000000000004-0000000000000001.snap");
    let current = dir().join("0000000000000008-0000000000000001.snap");

    disk.flip_bit(&old, 30, 0).unwrap();
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.snapshot().unwrap().data.as_ref(), b"new state");
    drop(wal);
    let verify = wal::inspect::verify(&disk, &dir()).unwrap_err();
    assert!(
        verify.to_string().contains(&old.display().to_string()),
        "{verify}"
    );

    disk.flip_bit(&current, 40, 5).unwrap();
    let error = open_sim(&disk, &options).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(
        error.to_string().contains(&current.display().to_string()),
        "{error}"
    );
    disk.flip_bit(&current, 40, 5).unwrap();

    disk.remove(&current).unwrap();
    let error = open_sim(&disk, &options).unwrap_err();
    assert!(
        error.to_string().contains("snapshot file is missing"),
        "{error}"
    );
}

#[test]
fn a_snapshot_interrupted_before_its_marker_is_removed_as_an_orphan() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 10, 1, 0, 10)).unwrap();
    // The snapshot file is written (create, 3 writes, sync, rename, sync_dir = 7 mutations);
    // power fails on the marker's write.
    disk.crash_after(7);
    assert!(
        wal.save_snapshot(&snapshot(5, 1, conf(), b"state"))
            .is_err()
    );
    drop(wal);
    disk.crash(wal::CrashMode::KeepPrefix, 3);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.first_index(), LogIndex(1));
    assert_eq!(wal.recovery_report().removed_orphan_snapshots.len(), 1);
    assert!(
        disk.files()
            .iter()
            .all(|path| path.extension().is_none_or(|ext| ext != "snap"))
    );
}

fn real_disk_wal(dir: &Path, options: &WalOptions, batches: u64) -> (Vec<u64>, PathBuf) {
    let mut wal = Wal::create(dir, options.clone(), conf()).unwrap();
    let mut starts = Vec::new();
    let mut next = 1;
    for batch in 0..batches {
        starts.push(wal.segments().last().unwrap().used_bytes);
        wal.append(&entries(next, 3, 1, batch, 200)).unwrap();
        next += 3;
    }
    starts.push(wal.segments().last().unwrap().used_bytes);
    (starts, wal.segments().last().unwrap().path.clone())
}

#[test]
fn real_disk_a_torn_last_write_is_cut_at_any_byte() {
    // Without preallocation a torn final write leaves a short file; truncating the last
    // segment at a random byte inside the last record models exactly that.
    let options = WalOptions {
        preallocate: false,
        ..WalOptions::default()
    };
    let mut rng = Rng::new(5);
    for _ in 0..8 {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("wal");
        let (starts, path) = real_disk_wal(&dir, &options, 10);
        let last_start = starts[starts.len() - 2];
        let end = starts[starts.len() - 1];
        let cut = last_start + 1 + rng.below(end - last_start - 1);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let wal = Wal::open(&dir, options.clone()).unwrap();
        let torn = wal.recovery_report().torn_tail.clone().expect("torn tail");
        assert_eq!((torn.file.clone(), torn.offset), (path.clone(), last_start));
        assert_eq!(wal.last_index(), LogIndex(27));
        assert_eq!(
            wal.entries(LogIndex(1), LogIndex(28), u64::MAX).unwrap(),
            (0..9)
                .flat_map(|b| entries(1 + 3 * b, 3, 1, b, 200))
                .collect::<Vec<_>>()
        );
        drop(wal);
        let wal = Wal::open(&dir, options.clone()).unwrap();
        assert_eq!(wal.recovery_report().torn_tail, None);
        assert_eq!(wal.last_index(), LogIndex(27));
    }
}

#[test]
fn real_disk_truncating_a_preallocated_segment_is_refused() {
    let options = WalOptions {
        segment_size_bytes: 1 << 20,
        ..WalOptions::default()
    };
    let mut rng = Rng::new(9);
    for _ in 0..4 {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("wal");
        let (starts, path) = real_disk_wal(&dir, &options, 10);
        // Anywhere in the records (a cut inside the checkpoint is refused as a damaged
        // checkpoint instead).
        let cut = starts[0] + rng.below(*starts.last().unwrap() - starts[0]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let error = Wal::open(&dir, options.clone()).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
        expect_corrupt(error, &path, cut);
    }
}

#[test]
fn real_disk_zeroed_garbage_after_a_crash_mid_write_is_cut() {
    // A preallocated segment whose last write landed only in part: the rest of the record is
    // still zeros from preallocation.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    let options = WalOptions::default();
    let (starts, path) = real_disk_wal(&dir, &options, 5);
    let last_start = starts[starts.len() - 2];
    let end = starts[starts.len() - 1];
    let mut file = StdDisk.open(&path, OpenMode::ReadWrite).unwrap();
    let zeros = vec![0u8; (end - last_start - 20) as usize];
    file.write_at(last_start + 20, &zeros).unwrap();
    file.sync().unwrap();
    drop(file);
    let wal = Wal::open(&dir, options).unwrap();
    assert_eq!(
        wal.recovery_report().torn_tail.as_ref().unwrap().offset,
        last_start
    );
    assert_eq!(wal.last_index(), LogIndex(12));
}
