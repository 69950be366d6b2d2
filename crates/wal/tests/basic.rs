//! The WAL's API, one behaviour per test, on the simulated and the real disk.

mod common;

use common::*;
use raft::{ConfState, HardState, LogIndex, NodeId, Storage, StorageError, Term};
use wal::{SimDisk, StdDisk, Wal, WalError, WalOptions};

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: LogIndex(commit),
    }
}

#[test]
fn a_new_wal_is_empty_with_the_initial_configuration() {
    let disk = SimDisk::new();
    let wal = create_sim(&disk, &small_options());
    assert_eq!(wal.first_index(), LogIndex(1));
    assert_eq!(wal.last_index(), LogIndex(0));
    assert_eq!(wal.term(LogIndex(0)), Ok(Term(0)));
    assert_eq!(wal.term(LogIndex(1)), Err(StorageError::Unavailable));
    assert_eq!(wal.initial_state(), Ok((HardState::default(), conf())));
    let snapshot = wal.snapshot().unwrap();
    assert_eq!(snapshot.metadata.index, LogIndex(0));
    assert_eq!(snapshot.metadata.conf_state, conf());
    drop(wal);
    let wal = open_sim(&disk, &small_options()).unwrap();
    assert_eq!(wal.initial_state(), Ok((HardState::default(), conf())));
    assert_eq!(wal.recovery_report().torn_tail, None);
}

#[test]
fn entries_and_hard_state_survive_reopen_with_one_sync_per_write() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    let mut wal = Wal::create(&dir, WalOptions::default(), conf()).unwrap();
    let batch = entries(1, 16, 1, 0, 100);
    wal.write(Some(hard_state(1, 2, 0)), &batch).unwrap();
    wal.write(Some(hard_state(1, 2, 16)), &[]).unwrap();
    drop(wal);
    let wal = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(wal.initial_state().unwrap().0, hard_state(1, 2, 16));
    assert_eq!(
        wal.entries(LogIndex(1), LogIndex(17), u64::MAX).unwrap(),
        batch
    );
    assert_eq!(wal.term(LogIndex(16)), Ok(Term(1)));
}

#[test]
fn every_write_is_durable_when_it_returns() {
    let disk = SimDisk::new();
    let mut wal = create_sim(&disk, &small_options());
    assert_eq!(disk.unsynced_ops(), 0);
    for batch in 0..30 {
        wal.write(
            Some(hard_state(1, 1, batch * 3)),
            &entries(1 + batch * 3, 3, 1, batch, 200),
        )
        .unwrap();
        assert_eq!(disk.unsynced_ops(), 0, "after batch {batch}");
    }
    assert!(segment_paths(&disk, &dir()).len() > 2);
    wal.save_snapshot(&snapshot(60, 1, conf(), b"s")).unwrap();
    assert_eq!(disk.unsynced_ops(), 0);
    assert!(wal.release_to(LogIndex(60)).unwrap() > 0);
    assert_eq!(disk.unsynced_ops(), 0);
    // And the sync is part of the write: failing it fails the write.
    disk.fail_sync(1, wal::Fault::Io);
    assert!(wal.append(&entries(91, 3, 1, 0, 10)).is_err());
    assert_eq!(wal.last_index(), LogIndex(90));
}

#[test]
fn truncating_append_replaces_the_suffix_and_recovery_replays_it() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 10, 1, 0, 50)).unwrap();
    let overwrite = entries(6, 2, 2, 1, 50);
    wal.append(&overwrite).unwrap();
    assert_eq!(wal.last_index(), LogIndex(7));
    assert_eq!(wal.term(LogIndex(6)), Ok(Term(2)));
    assert_eq!(wal.term(LogIndex(8)), Err(StorageError::Unavailable));
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.last_index(), LogIndex(7));
    let mut want = entries(1, 5, 1, 0, 50);
    want.extend(overwrite);
    assert_eq!(
        wal.entries(LogIndex(1), LogIndex(8), u64::MAX).unwrap(),
        want
    );
}

#[test]
#[should_panic(expected = "leaves a gap")]
fn a_gap_is_an_embedder_bug() {
    let disk = SimDisk::new();
    let mut wal = create_sim(&disk, &small_options());
    let _ = wal.append(&entries(3, 1, 1, 0, 0));
}

#[test]
fn segments_roll_at_the_configured_size_and_snapshots_release_them() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    for batch in 0..40 {
        wal.append(&entries(1 + batch * 5, 5, 1, batch, 120))
            .unwrap();
    }
    let segments = segment_paths(&disk, &dir());
    assert!(segments.len() > 5, "{} segments", segments.len());
    for path in &segments[..segments.len() - 1] {
        let len = disk.read_file(path).unwrap().len() as u64;
        assert!(len <= options.segment_size_bytes, "{len}");
    }
    // Nothing is released before a snapshot covers it.
    assert_eq!(wal.release_to(LogIndex(150)).unwrap(), 0);
    let term = wal.term(LogIndex(150)).unwrap();
    wal.save_snapshot(&snapshot(150, term.get(), conf(), b"state@150"))
        .unwrap();
    assert_eq!(wal.first_index(), LogIndex(151));
    // A margin below the snapshot keeps more segments...
    let kept_margin = wal.release_to(LogIndex(50)).unwrap();
    let released = wal.release_to(LogIndex(150)).unwrap();
    assert!(released > 0);
    let remaining = segment_paths(&disk, &dir()).len();
    assert_eq!(remaining + kept_margin + released, segments.len());
    assert_eq!(wal.segments().len(), remaining);
    let tail = wal.entries(LogIndex(151), LogIndex(201), u64::MAX).unwrap();
    assert_eq!(tail.len(), 50);
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.first_index(), LogIndex(151));
    assert_eq!(wal.last_index(), LogIndex(200));
    assert_eq!(
        wal.entries(LogIndex(151), LogIndex(201), u64::MAX).unwrap(),
        tail
    );
    assert_eq!(wal.snapshot().unwrap().data.as_ref(), b"state@150");
    // The in-memory position table holds one entry per batch, not per entry.
    assert!(
        wal.position_table_len() <= 11,
        "{}",
        wal.position_table_len()
    );
}

#[test]
fn a_batch_larger_than_a_segment_gets_a_segment_of_its_own() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 1, 1, 0, 10)).unwrap();
    let big = entries(2, 3, 1, 1, 5000);
    wal.append(&big).unwrap();
    wal.append(&entries(5, 1, 1, 2, 10)).unwrap();
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(
        wal.entries(LogIndex(2), LogIndex(5), u64::MAX).unwrap(),
        big
    );
    assert_eq!(segment_paths(&disk, &dir()).len(), 3);
}

#[test]
fn batches_over_the_limit_are_refused_without_writing() {
    let disk = SimDisk::new();
    let options = WalOptions {
        max_batch_bytes: 2048,
        ..small_options()
    };
    let mut wal = create_sim(&disk, &options);
    let error = wal.append(&entries(1, 3, 1, 0, 1000)).unwrap_err();
    assert!(
        matches!(error, WalError::BatchTooLarge { limit: 2048, .. }),
        "{error}"
    );
    assert!(!wal.is_poisoned());
    wal.append(&entries(1, 1, 1, 0, 1000)).unwrap();
}

#[test]
fn leader_snapshot_replaces_a_conflicting_log_and_keeps_its_configuration() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 10, 1, 0, 10)).unwrap();
    // A joint configuration, so every part of it must survive the round trip.
    let new_conf = ConfState {
        voters: vec![NodeId(1), NodeId(4)],
        learners: vec![NodeId(5)],
        voters_outgoing: vec![NodeId(1), NodeId(2), NodeId(3)],
        learners_next: vec![NodeId(3)],
        auto_leave: true,
    };
    // Index 8 is held, but with term 1, not 3: the whole log goes.
    wal.save_snapshot(&snapshot(8, 3, new_conf.clone(), b"leader"))
        .unwrap();
    assert_eq!(wal.first_index(), LogIndex(9));
    assert_eq!(wal.last_index(), LogIndex(8));
    assert_eq!(wal.term(LogIndex(8)), Ok(Term(3)));
    assert_eq!(wal.initial_state().unwrap().1, new_conf);
    assert_eq!(wal.hard_state().commit, LogIndex(8));
    wal.append(&entries(9, 2, 3, 1, 10)).unwrap();
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.initial_state().unwrap().1, new_conf);
    assert_eq!(wal.last_index(), LogIndex(10));
    assert_eq!(wal.term(LogIndex(9)), Ok(Term(3)));
    let snapshot = wal.snapshot().unwrap();
    assert_eq!(snapshot.metadata.conf_state, new_conf);
    assert_eq!(snapshot.data.as_ref(), b"leader");
}

#[test]
fn older_snapshots_are_ignored_and_old_files_collected() {
    let disk = SimDisk::new();
    let options = WalOptions {
        snapshots_to_keep: 2,
        ..small_options()
    };
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 20, 1, 0, 10)).unwrap();
    for index in [5, 10, 15] {
        wal.save_snapshot(&snapshot(index, 1, conf(), b"s"))
            .unwrap();
    }
    wal.save_snapshot(&snapshot(12, 1, conf(), b"older"))
        .unwrap();
    assert_eq!(wal.first_index(), LogIndex(16));
    let snaps: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps[1].ends_with("000000000000000f-0000000000000001.snap"));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let disk = SimDisk::new();
    let wal = create_sim(&disk, &small_options());
    let error = open_sim(&disk, &small_options()).unwrap_err();
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("locked"));
    drop(wal);
    open_sim(&disk, &small_options()).unwrap();
}

#[test]
fn a_second_open_on_the_real_disk_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wal");
    let wal = Wal::create(&dir, WalOptions::default(), conf()).unwrap();
    let error = Wal::open(&dir, WalOptions::default()).unwrap_err();
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
    drop(wal);
    Wal::open(&dir, WalOptions::default()).unwrap();
}

#[test]
fn create_refuses_an_existing_wal_and_open_a_missing_one() {
    let disk = SimDisk::new();
    assert!(matches!(
        open_sim(&disk, &small_options()).unwrap_err(),
        WalError::NotFound { .. }
    ));
    drop(create_sim(&disk, &small_options()));
    let error = Wal::create_on(disk.clone(), dir(), small_options(), conf()).unwrap_err();
    assert!(matches!(error, WalError::AlreadyExists { .. }), "{error}");
    let temp = tempfile::tempdir().unwrap();
    let error = Wal::open(temp.path().join("absent"), WalOptions::default()).unwrap_err();
    assert!(matches!(error, WalError::NotFound { .. }), "{error}");
}

#[test]
fn options_are_validated() {
    for options in [
        WalOptions {
            segment_size_bytes: 100,
            ..WalOptions::default()
        },
        WalOptions {
            max_batch_bytes: 0,
            ..WalOptions::default()
        },
        WalOptions {
            snapshots_to_keep: 0,
            ..WalOptions::default()
        },
    ] {
        assert!(matches!(
            options.validate(),
            Err(WalError::InvalidOptions(_))
        ));
        let disk = SimDisk::new();
        assert!(Wal::create_on(disk, dir(), options, conf()).is_err());
    }
    WalOptions::default().validate().unwrap();
}

#[test]
fn entries_respect_max_bytes() {
    {
        let disk = SimDisk::new();
        let mut wal = create_sim(&disk, &small_options());
        wal.append(&entries(1, 10, 1, 0, 76)).unwrap();
        let one = wal.entries(LogIndex(1), LogIndex(11), 0).unwrap();
        assert_eq!(one.len(), 1);
        let size = one[0].size_bytes();
        let three = wal.entries(LogIndex(1), LogIndex(11), size * 3).unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(
            wal.entries(LogIndex(0), LogIndex(2), u64::MAX),
            Err(StorageError::Compacted)
        );
        assert_eq!(
            wal.entries(LogIndex(5), LogIndex(12), u64::MAX),
            Err(StorageError::Unavailable)
        );
        assert_eq!(wal.entries(LogIndex(5), LogIndex(5), u64::MAX), Ok(vec![]));
    }
}

#[test]
fn the_wal_can_move_to_a_writer_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Wal<StdDisk>>();
    assert_send::<Wal<SimDisk>>();
    let disk = SimDisk::new();
    let mut wal = create_sim(&disk, &small_options());
    let handle = std::thread::spawn(move || {
        wal.append(&entries(1, 4, 1, 0, 10)).unwrap();
        wal
    });
    let wal = handle.join().unwrap();
    assert_eq!(wal.last_index(), LogIndex(4));
}

/// A snapshot streamed by a `SnapshotWriter` from another thread, in pieces, while the WAL
/// takes more writes, and then adopted, is the same snapshot `save_snapshot` would have saved:
/// it survives a reopen, and it can be read back for a follower.
#[test]
fn a_streamed_snapshot_written_off_thread_is_adopted_like_a_saved_one() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 100, 1, 0, 100)).unwrap();
    let files = wal.snapshot_writer();
    let state: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let want = snapshot(80, 1, conf(), &state);
    let metadata = want.metadata.clone();
    let writer = std::thread::spawn(move || {
        files.write(&metadata, |out| {
            // Pieces smaller and larger than the writer's buffer.
            for piece in state.chunks(700_000) {
                out.write_all(&piece[..10])?;
                out.write_all(&piece[10..])?;
            }
            Ok(())
        })
    });
    wal.append(&entries(101, 20, 1, 1, 100)).unwrap();
    assert_eq!(writer.join().unwrap().unwrap(), want.data.len() as u64);
    wal.adopt_snapshot(&want.metadata).unwrap();
    assert_eq!(wal.first_index(), LogIndex(81));
    assert_eq!(
        wal.snapshot_writer().read(&want.metadata).unwrap(),
        want.data
    );
    // Another snapshot's metadata does not match the file.
    let mut other = want.metadata.clone();
    other.conf_state = ConfState::with_voters([NodeId(7)]);
    assert!(wal.snapshot_writer().read(&other).is_err());
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.snapshot().unwrap(), want);
    assert_eq!(wal.last_index(), LogIndex(120));
}

/// A snapshot whose data could not be produced leaves no file behind, and a snapshot whose
/// file was never written cannot be adopted (its marker would make the WAL unopenable).
#[test]
fn a_failed_or_missing_snapshot_file_is_never_adopted() {
    let disk = SimDisk::new();
    let options = small_options();
    let mut wal = create_sim(&disk, &options);
    wal.append(&entries(1, 10, 1, 0, 100)).unwrap();
    let metadata = snapshot(5, 1, conf(), b"").metadata;
    let failed = wal.snapshot_writer().write(&metadata, |out| {
        out.write_all(b"half")?;
        Err(std::io::Error::other("the state could not be serialized"))
    });
    assert!(failed.is_err());
    let snapshot_files: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("snap"))
        .collect();
    assert!(snapshot_files.is_empty(), "{snapshot_files:?}");
    assert!(wal.adopt_snapshot(&metadata).is_err());
    drop(wal);
    let wal = open_sim(&disk, &options).unwrap();
    assert_eq!(wal.first_index(), LogIndex(1));
    assert_eq!(wal.last_index(), LogIndex(10));
}
