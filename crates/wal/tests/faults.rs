//! Failing media: ENOSPC and EIO from the disk surface as `WalError` / `StorageError::Io`,
//! never as a panic and never as a silently shortened log.

mod common;

use common::*;
use raft::{LogIndex, Storage, StorageError};
use wal::{CrashMode, Fault, SimDisk, WalError};

#[test]
fn a_full_disk_fails_the_write_poisons_the_wal_and_loses_nothing() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 5, 1, 0, 100)).unwrap();
    // Room for what exists plus a little: the next segment's preallocation cannot fit.
    let used: usize = disk
        .files()
        .iter()
        .map(|path| disk.read_file(path).unwrap().len())
        .sum();
    disk.set_capacity(Some(used as u64 + 100));
    let mut next = 6;
    let error = loop {
        match wal.append(&entries(next, 2, 1, next, 300)) {
            Ok(()) => next += 2,
            Err(error) => break error,
        }
    };
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("allocate"), "{error}");
    assert!(wal.is_poisoned());
    let refused = wal.append(&entries(next, 1, 1, 0, 1)).unwrap_err();
    assert!(matches!(refused, WalError::Poisoned { .. }), "{refused}");
    assert!(refused.to_string().contains("No space left"), "{refused}");
    // Reads still serve everything acknowledged.
    assert_eq!(wal.last_index(), LogIndex(next - 1));
    drop(wal);
    disk.set_capacity(None);
    let mut wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.last_index(), LogIndex(next - 1));
    assert!(wal.recovery_report().removed_temp_files.len() <= 1);
    wal.append(&entries(next, 1, 1, 0, 1)).unwrap();
}

#[test]
fn an_eio_on_sync_fails_the_write_and_a_power_loss_takes_it_back() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 3, 1, 0, 10)).unwrap();
    disk.fail_sync(1, Fault::Io);
    let error = wal.append(&entries(4, 3, 1, 1, 10)).unwrap_err();
    assert!(matches!(error, WalError::Io { op: "sync", .. }), "{error}");
    assert_eq!(wal.last_index(), LogIndex(3));
    drop(wal);
    disk.crash(CrashMode::LoseUnsynced, 0);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.last_index(), LogIndex(3));
}

#[test]
fn an_eio_on_sync_then_a_restart_keeps_the_write_durably() {
    // The page cache still has the record: recovery reads it and syncs it before returning,
    // so a later power loss cannot take back what the restarted member acts on.
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    disk.fail_sync(1, Fault::Io);
    assert!(wal.append(&entries(1, 3, 1, 1, 10)).is_err());
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.last_index(), LogIndex(3));
    drop(wal);
    disk.crash(CrashMode::LoseUnsynced, 0);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.last_index(), LogIndex(3));
}

#[test]
fn every_failing_write_or_sync_of_a_snapshot_is_an_error_not_a_panic() {
    for nth in 1..8 {
        for on_sync in [false, true] {
            let disk = SimDisk::new();
            let options = small_options();
            let mut wal = create_sim(&disk, &options);
            wal.append(&entries(1, 6, 1, 0, 10)).unwrap();
            let fault = if nth % 2 == 0 {
                Fault::DiskFull
            } else {
                Fault::Io
            };
            if on_sync {
                disk.fail_sync(nth, fault);
            } else {
                disk.fail_write(nth, fault);
            }
            let result = wal.save_snapshot(&snapshot(4, 1, conf(), b"data"));
            disk.clear_faults();
            if result.is_err() {
                assert!(wal.is_poisoned());
                assert_eq!(wal.first_index(), LogIndex(1));
            }
            drop(wal);
            let wal = open_sim(&disk, &options).unwrap();
            let first = wal.first_index();
            assert!(first == LogIndex(1) || first == LogIndex(5), "{first}");
            assert_eq!(wal.last_index(), LogIndex(6));
            if first == LogIndex(5) {
                assert_eq!(wal.snapshot().unwrap().data.as_ref(), b"data");
            }
        }
    }
}

#[test]
fn damage_found_by_a_read_is_a_storage_io_error_naming_the_file() {
    let disk = SimDisk::new();
    let options = small_options(); // every read goes to the file
    let mut wal = create_sim(&disk, &options);
    let first_record = wal.segments()[0].used_bytes;
    wal.append(&entries(1, 3, 1, 0, 10)).unwrap();
    wal.append(&entries(4, 3, 1, 1, 10)).unwrap();
    let path = wal.segments()[0].path.clone();
    disk.flip_bit(&path, first_record + 30, 1).unwrap();
    match wal.entries(LogIndex(1), LogIndex(7), u64::MAX) {
        Err(StorageError::Io(message)) => {
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                message.contains(&format!("byte {first_record}")),
                "{message}"
            );
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // Entries of the undamaged record are still served.
    assert_eq!(
        wal.entries(LogIndex(4), LogIndex(7), u64::MAX)
            .unwrap()
            .len(),
        3
    );
    // Handles that died with a (simulated) power loss give errors, not panics.
    disk.crash(CrashMode::LoseUnsynced, 0);
    assert!(matches!(
        wal.entries(LogIndex(1), LogIndex(2), u64::MAX),
        Err(StorageError::Io(_))
    ));
}
