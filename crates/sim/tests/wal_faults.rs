//! Storage faults under the simulator: every node's durable state is the real WAL on a simulated
//! disk, so these tests damage the WAL's files of a crashed node and check what a restart makes
//! of them, and crash every node at once in the middle of its writes.

use raft::{NodeId, Rng};
use sim::{FaultSet, Options, Sim};
use std::path::{Path, PathBuf};

/// Record header: length (u32), type (u8), 3 reserved bytes, payload CRC, header CRC.
const HEADER_LEN: u64 = 16;

/// Seeds per test: fewer in debug builds; `WAL_FAULTS_SCALE=N` runs N times as many.
fn seeds(release: u64) -> u64 {
    let scale: u64 = std::env::var("WAL_FAULTS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let base = if cfg!(debug_assertions) {
        release / 4
    } else {
        release
    };
    base * scale
}

/// One record of a segment file: where it starts and how many bytes its header and payload
/// take (not counting the padding, which no checksum covers).
#[derive(Clone, Debug)]
struct Record {
    path: PathBuf,
    offset: u64,
    len: u64,
}

/// The WAL segments of node `id`'s disk, oldest first.
fn segments(sim: &Sim, id: NodeId) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = sim
        .wal_disk(id)
        .files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    paths.sort();
    paths
}

/// The records of a segment, found by their headers (a record starts at a multiple of 8; a
/// zero type byte is the zeros after the last record).
fn records(sim: &Sim, id: NodeId, path: &Path) -> Vec<Record> {
    let bytes = sim.wal_disk(id).read_file(path).expect("segment exists");
    let mut out = Vec::new();
    let mut offset = 0u64;
    while offset + HEADER_LEN <= bytes.len() as u64 && bytes[offset as usize + 4] != 0 {
        let at = offset as usize;
        let payload = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as u64;
        let len = HEADER_LEN + payload;
        out.push(Record {
            path: path.to_path_buf(),
            offset,
            len,
        });
        offset += len.next_multiple_of(8);
    }
    out
}

/// Runs a cluster with clients and some faults for a while.
fn busy_cluster(seed: u64, nodes: usize, faults: &str, preallocate: bool) -> Sim {
    let mut options = Options::new(seed, nodes, FaultSet::parse(faults).expect("known faults"));
    options.wal.preallocate = preallocate;
    let mut sim = Sim::new(options);
    sim.start_clients();
    sim
}

fn assert_passes(sim: Sim, what: &str) {
    let outcome = sim.finish();
    assert!(
        outcome.passed(),
        "{what}: {:?}\n  replay: {}",
        outcome.violations,
        outcome.replay_command()
    );
}

/// A bit flip in an acknowledged (non-tail) record of a crashed node: the restart refuses with
/// an error naming the file and the record's offset, the node stays down, and the rest of the
/// cluster stays live and safe.
#[test]
fn a_bit_flip_in_an_acknowledged_record_is_refused() {
    let mut segments_seen = 0;
    for seed in 0..seeds(24) {
        let mut rng = Rng::new(seed ^ 0xb17f);
        let nodes = [3, 5][seed as usize % 2];
        let mut sim = busy_cluster(seed, nodes, "loss,reorder,crash", true);
        sim.run_for(rng.range(1_500_000, 3_000_000));
        let victim = NodeId(rng.below(nodes as u64) + 1);
        sim.crash(victim);

        let paths = segments(&sim, victim);
        segments_seen += paths.len();
        let mut candidates: Vec<Record> = paths
            .iter()
            .flat_map(|path| records(&sim, victim, path))
            .collect();
        candidates.pop(); // the tail record: damage there is a torn write, legitimately cut
        assert!(
            !candidates.is_empty(),
            "seed {seed}: no acknowledged records"
        );
        let record = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let byte = record.offset + rng.below(record.len);
        let bit = rng.below(8) as u8;
        sim.flip_wal_bit(victim, &record.path, byte, bit)
            .expect("flip");

        sim.restart(victim);
        assert!(
            sim.node(victim).is_none(),
            "seed {seed}: {victim} restarted from a damaged WAL (bit {bit} of byte {byte} in {})",
            record.path.display()
        );
        let error = sim.disk(victim).error().expect("refused").to_owned();
        let file = record.path.display().to_string();
        assert!(
            error.contains(&file) && error.contains(&format!("at byte {}", record.offset)),
            "seed {seed}: the error must name {file} at byte {}: {error}",
            record.offset
        );
        // The others carry on without it, and it keeps refusing.
        sim.run_for(1_000_000);
        sim.restart(victim);
        assert!(sim.node(victim).is_none());
        assert!(
            sim.violations().is_empty(),
            "seed {seed}: {:?}",
            sim.violations()
        );
        assert_passes(sim, &format!("seed {seed}, {victim} refused ({error})"));
    }
    println!("segments of the victims: {segments_seen}");
    assert!(segments_seen > 0);
}

/// Truncating a crashed node's last segment. With preallocated segments (the default), any cut
/// is told from a torn write and refused. Without preallocation a cut looks exactly like a torn
/// write; cut inside records the node wrote but never acknowledged, the restart cuts the torn
/// tail and the cluster stays safe and linearizable (a cut into acknowledged records could not
/// be detected at all: that is what preallocation is for).
#[test]
fn a_truncated_last_segment() {
    // Preallocated: refused, naming the file.
    for seed in 0..seeds(16) {
        let mut rng = Rng::new(seed ^ 0x7a11);
        let nodes = [3, 5][seed as usize % 2];
        let mut sim = busy_cluster(seed, nodes, "loss,crash", true);
        sim.run_for(rng.range(1_000_000, 2_500_000));
        let victim = NodeId(rng.below(nodes as u64) + 1);
        sim.crash(victim);
        let last = segments(&sim, victim).pop().expect("a segment");
        let len = sim.wal_disk(victim).read_file(&last).expect("exists").len() as u64;
        let cut = rng.below(len);
        sim.truncate_wal_file(victim, &last, cut).expect("truncate");
        sim.restart(victim);
        assert!(
            sim.node(victim).is_none(),
            "seed {seed}: cut at {cut} of {len}"
        );
        let error = sim.disk(victim).error().expect("refused").to_owned();
        assert!(
            error.contains(&last.display().to_string()),
            "seed {seed}: {error}"
        );
        assert_passes(sim, &format!("seed {seed}, truncated {victim} refused"));
    }

    // Not preallocated, cut inside unacknowledged records: a torn tail, cut by the restart.
    let mut torn_tails = 0;
    let mut cuts = 0;
    for seed in 0..seeds(40) {
        let mut rng = Rng::new(seed ^ 0x7a12);
        let nodes = [3, 5, 7][seed as usize % 3];
        let mut sim = busy_cluster(seed, nodes, "loss,reorder,slow-disk", false);
        sim.run_for(500_000);
        for _attempt in 0..200 {
            sim.run_for(rng.range(1_000, 20_000));
            let Some(victim) = sim
                .ids()
                .into_iter()
                .find(|id| sim.writes_in_flight(*id) >= 2)
            else {
                continue;
            };
            sim.crash(victim);
            let Some((path, range)) = sim.unacknowledged_wal_bytes(victim) else {
                sim.restart(victim);
                continue;
            };
            let cut = rng.range(range.start + 1, range.end);
            sim.truncate_wal_file(victim, &path, cut).expect("truncate");
            sim.restart(victim);
            let wal = sim
                .disk(victim)
                .wal()
                .unwrap_or_else(|| panic!("seed {seed}: refused: {:?}", sim.disk(victim).error()));
            assert!(sim.node(victim).is_some());
            cuts += 1;
            if let Some(torn) = &wal.recovery_report().torn_tail {
                assert_eq!(torn.file, path);
                torn_tails += 1;
            }
            break;
        }
        sim.run_for(1_000_000);
        assert_passes(
            sim,
            &format!("seed {seed}, truncated unacknowledged records"),
        );
    }
    println!(
        "cuts into unacknowledged records: {cuts}, torn tails cut by the restart: {torn_tails}"
    );
    assert!(cuts >= seeds(40) / 2, "only {cuts} cuts");
    assert!(
        torn_tails >= cuts / 2,
        "only {torn_tails} torn tails in {cuts} cuts"
    );
}

/// Power loss of every node at once, again and again, each crash tearing the writes in flight
/// with a seed-chosen crash mode: no acknowledged write is lost (the durable-quorum, leader
/// completeness and state machine checks, and linearizability, all hold).
#[test]
fn power_loss_of_every_node_at_once_loses_no_acknowledged_write() {
    let mut torn_tails = 0;
    let mut crashes = 0;
    for seed in 0..seeds(120) {
        let mut rng = Rng::new(seed ^ 0x9051);
        let nodes = [3, 5, 7][seed as usize % 3];
        let faults =
            ["slow-disk", "loss,slow-disk,give-up", "reorder,duplicate"][seed as usize % 3];
        let mut sim = busy_cluster(seed, nodes, faults, true);
        for _ in 0..rng.range(2, 6) {
            sim.run_for(rng.range(200_000, 900_000));
            for id in sim.ids() {
                sim.crash(id);
            }
            sim.run_for(rng.range(1_000, 100_000));
            for id in sim.ids() {
                sim.restart(id);
            }
        }
        torn_tails += sim.stats().wal_torn_tails;
        crashes += sim.stats().crashes;
        assert_passes(sim, &format!("seed {seed}"));
    }
    println!("crashes: {crashes}, torn tails cut by recovery: {torn_tails}");
    assert!(
        crashes > 0 && torn_tails > 0,
        "{torn_tails} torn tails in {crashes} crashes"
    );
}
