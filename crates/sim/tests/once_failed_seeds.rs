//! Seeds that once failed, still run with the options they failed with. They are not
//! regression tests: the simulator has changed since (new faults and an etcd workload draw from
//! the same seeded generator), so none replays the schedule that first failed, and each is named
//! `seed_N_once_...` for what it was. What pins each bug down exactly is the focused test its
//! comment names; a bug whose comment names none is guarded only by the swarm.

use sim::{FaultSet, Options};

fn replay(seed: u64, nodes: usize, faults: &str) {
    let options = Options::new(seed, nodes, FaultSet::parse(faults).expect("known faults"));
    let outcome = sim::run(options);
    assert!(
        outcome.passed(),
        "seed {seed} failed again: {:?}\n  replay: {}",
        outcome.violations,
        outcome.replay_command()
    );
}

/// The tail of a replication pipeline was lost (a reordered append was rejected after its
/// successor was accepted) and nothing resent it: a follower stayed behind forever. Fixed by
/// treating a rejection right after the match index as breaking the pipeline, and by probing
/// again after heartbeats without progress. Pinned by
/// `an_append_lost_in_replicate_state_is_resent_without_new_proposals` (crates/raft/tests).
#[test]
fn seed_79_once_lost_pipeline_tail() {
    replay(79, 5, "partition");
}

/// Same bug, found with slow disks.
#[test]
fn seed_83_once_lost_pipeline_tail_slow_disk() {
    replay(83, 7, "slow-disk");
}

/// A torn write kept a hard state whose commit index pointed past the entries that survived.
/// The simulator's crash model now writes entries before the hard state, as the WAL does.
#[test]
fn seed_crash_all_once_torn_hard_state() {
    for seed in 0..20 {
        replay(seed, 3, "crash-all");
    }
}

/// A node compacted its log while a leader's snapshot was still being written: the storage
/// kept the stale entries after the snapshot index and the node panicked reading them. Fixed
/// in `Node::compact` (no compaction while `RawNode::has_pending_snapshot`).
#[test]
fn seed_48_once_compaction_during_snapshot_install() {
    replay(
        48,
        3,
        "loss,duplicate,reorder,crash,slow-disk,give-up,churn,compaction",
    );
}

/// Same bug, other symptom (an out-of-range slice of the unstable log).
#[test]
fn seed_367_once_compaction_during_snapshot_install() {
    replay(
        367,
        5,
        "loss,duplicate,partition,crash,crash-all,slow-disk,compaction",
    );
}

/// Clients bounced between two removed members whose stale leader hints pointed at each other.
/// The simulated clients now sometimes ignore a hint, as etcd clients rotate endpoints.
#[test]
fn seed_289_once_clients_stuck_between_removed_members() {
    replay(289, 5, "membership");
}

/// A joint configuration counted on two brand-new voters that had not applied any
/// configuration, and they ignored every vote request: no leader could be elected. Fixed in the
/// core: a member that knows no configuration still votes.
#[test]
fn seed_442_once_new_voters_with_empty_configuration_vote() {
    replay(442, 5, "partition,crash,slow-disk,membership");
}

/// Same bug, with compaction and crashes of all members.
#[test]
fn seed_1389_once_new_voters_with_empty_configuration_vote() {
    replay(
        1389,
        3,
        "duplicate,partition,crash-all,give-up,membership,compaction",
    );
}
