//! Hand-built scenarios, in the spirit of the MIT 6.824 Raft labs (2A elections, 2B agreement,
//! 2C persistence and unreliable networks) and of the Raft paper's Figure 8, but deterministic:
//! every scenario runs over many seeds of the simulator, in virtual time, with the safety checker
//! watching every event. Each test states an outcome; time bounds are liveness bounds in virtual
//! time ("a leader within 5 s"), never measurements of speed.
//!
//! Every scenario ends with the checker clean: no violation during the run, and, where the
//! scenario hands the cluster back, `Sim::finish` (heal, recover, converge, linearizable history).

mod common;

use common::*;
use lincheck::{Input, Output};
use raft::{LogIndex, NodeId, Rng, Role, Term};
use sim::scenario::{ELECTION_TIMEOUT_US, ProbeCounter, SECOND_US};
use sim::world::TICK_US;
use sim::{FaultSet, Options, Sim};
use std::collections::{BTreeMap, BTreeSet};

/// A fault-free cluster of `nodes` with `clients` clients that have not started yet.
fn cluster(seed: u64, nodes: usize, clients: usize) -> Sim {
    let mut options = Options::new(seed, nodes, FaultSet::default());
    options.clients = clients;
    options.keys = keys_for(clients);
    Sim::new(options)
}

/// Waits (at most 5 s of virtual time) for an established leader; fails the test otherwise.
fn established_leader(sim: &mut Sim, seed: u64) -> NodeId {
    let leader = sim.wait_for_established_leader(5 * SECOND_US);
    assert_clean(sim, seed);
    leader.unwrap_or_else(|| {
        panic!(
            "seed {seed}: no established leader within 5 s (roles {:?})",
            sim.ids()
                .into_iter()
                .map(|id| (id, sim.role_of(id), sim.term_of(id)))
                .collect::<Vec<_>>()
        )
    })
}

/// After `heal_all` or `clients_write_once`: waits (at most 10 s) until each of the `clients`
/// clients has finished its operation and its one final write (so the history holds
/// `history_before + clients` operations, none pending) and every node has applied everything.
fn settle(sim: &mut Sim, history_before: usize, clients: usize, seed: u64) {
    let target = history_before + clients;
    let settled = sim.run_until_condition(10 * SECOND_US, |sim| {
        sim.history().len() >= target && sim.operations_pending() == 0 && sim.converged()
    });
    assert_clean(sim, seed);
    assert!(
        settled,
        "seed {seed}: clients did not settle ({} of {target} operations, {} pending)",
        sim.history().len(),
        sim.operations_pending()
    );
}

/// Every node has applied the same entries, entry for entry.
fn assert_applied_logs_agree(sim: &Sim, seed: u64) {
    assert!(
        sim.applied_logs_agree(),
        "seed {seed}: nodes applied different entries: {:?}",
        sim.ids()
            .into_iter()
            .map(|id| (id, sim.applied_on(id)))
            .collect::<Vec<_>>()
    );
}

fn max_term(sim: &Sim) -> Term {
    sim.up_ids()
        .into_iter()
        .filter_map(|id| sim.term_of(id))
        .max()
        .unwrap_or(Term::ZERO)
}

// ------------------------------------------------------------------------------------------
// Elections (6.824 2A)
// ------------------------------------------------------------------------------------------

/// A fresh cluster elects exactly one leader, every node learns its term, and with no failures
/// nobody starts another election: the same leader keeps the same term for 10 s.
#[test]
fn initial_election() {
    for seed in seeds(1_000, 100, 30) {
        let nodes = [3, 5, 7][(seed % 3) as usize];
        let mut sim = cluster(seed, nodes, 0);
        let leader = established_leader(&mut sim, seed);
        assert_eq!(sim.leaders(), vec![leader], "seed {seed}: one leader");
        let term = sim.term_of(leader).expect("up");
        let all_agree = sim.run_until_condition(SECOND_US, |sim| {
            sim.ids()
                .into_iter()
                .all(|id| sim.term_of(id) == Some(term) && sim.leader_known_by(id) == Some(leader))
        });
        assert!(all_agree, "seed {seed}: nodes do not agree on {term}");

        let elections = sim.elections_started();
        let mut disturbed = None;
        sim.run_watching(10 * SECOND_US, |sim| {
            if disturbed.is_none() && (sim.leaders() != vec![leader] || max_term(sim) != term) {
                disturbed = Some((sim.now_us(), sim.leaders(), max_term(sim)));
            }
        });
        assert_eq!(
            disturbed, None,
            "seed {seed}: leadership changed without failures"
        );
        assert_eq!(
            sim.elections_started(),
            elections,
            "seed {seed}: spurious election"
        );
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// When the leader is cut off (or crashes), the others elect a new leader in a higher term; when
/// the old leader comes back it does not disturb the new one (PreVote) and becomes its follower.
#[test]
fn re_election_after_leader_lost() {
    for seed in seeds(2_000, 100, 30) {
        let nodes = [3, 5][(seed % 2) as usize];
        let crash = seed % 4 >= 2;
        let mut sim = cluster(seed, nodes, 2);
        sim.start_clients();
        let old = established_leader(&mut sim, seed);
        let old_term = sim.term_of(old).expect("up");
        if crash {
            sim.crash(old);
        } else {
            sim.isolate(old);
        }
        let new = sim
            .wait_for_established_leader_among(&others(&sim, &[old]), 5 * SECOND_US)
            .unwrap_or_else(|| panic!("seed {seed}: no new leader within 5 s"));
        let new_term = sim.term_of(new).expect("up");
        assert!(
            new_term > old_term,
            "seed {seed}: {new_term} after {old_term}"
        );
        if !crash {
            // CheckQuorum: the isolated old leader steps down within two election timeouts.
            let stepped_down = sim
                .run_until_condition(2 * ELECTION_TIMEOUT_US + 2 * TICK_US, |sim| {
                    sim.role_of(old) != Some(Role::Leader)
                });
            assert!(
                stepped_down,
                "seed {seed}: the isolated leader kept its office"
            );
        }

        if crash {
            sim.restart(old);
        } else {
            sim.heal_network();
        }
        let mut disturbed = None;
        sim.run_watching(2 * SECOND_US, |sim| {
            if disturbed.is_none() && (sim.leader() != Some(new) || max_term(sim) != new_term) {
                disturbed = Some((sim.now_us(), sim.leader(), max_term(sim)));
            }
        });
        assert_eq!(
            disturbed, None,
            "seed {seed}: the returning node disrupted the leader"
        );
        assert_eq!(sim.role_of(old), Some(Role::Follower), "seed {seed}");
        assert_eq!(sim.term_of(old), Some(new_term), "seed {seed}");
        assert_eq!(sim.leader_known_by(old), Some(new), "seed {seed}");
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// With a majority crashed or cut off, nobody becomes leader (and PreVote keeps terms still);
/// once the majority is back, a leader is elected.
#[test]
fn no_leader_without_quorum() {
    for seed in seeds(3_000, 100, 30) {
        let crash = seed % 2 == 0;
        let mut sim = cluster(seed, 5, 0);
        let leader = established_leader(&mut sim, seed);
        let followers = others(&sim, &[leader]);
        if crash {
            // The leader and two followers crash: two of five remain.
            for id in [leader, followers[0], followers[1]] {
                sim.crash(id);
            }
        } else {
            // The leader keeps one follower; the other three are each alone.
            sim.partition(&[
                vec![leader, followers[0]],
                vec![followers[1]],
                vec![followers[2]],
                vec![followers[3]],
            ]);
        }
        // A leader cut off from its quorum steps down within two election timeouts.
        sim.run_for(2 * ELECTION_TIMEOUT_US + 2 * TICK_US);
        assert_eq!(
            sim.leaders(),
            vec![],
            "seed {seed}: a leader without quorum"
        );
        let terms: Vec<_> = sim.ids().into_iter().map(|id| sim.term_of(id)).collect();
        let mut leader_seen = None;
        sim.run_watching(5 * SECOND_US, |sim| {
            if leader_seen.is_none() && !sim.leaders().is_empty() {
                leader_seen = Some((sim.now_us(), sim.leaders()));
            }
        });
        assert_eq!(leader_seen, None, "seed {seed}: elected without a quorum");
        let terms_after: Vec<_> = sim.ids().into_iter().map(|id| sim.term_of(id)).collect();
        assert_eq!(
            terms, terms_after,
            "seed {seed}: PreVote should keep terms still"
        );

        if crash {
            sim.restart_all();
        } else {
            sim.heal_network();
        }
        established_leader(&mut sim, seed);
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// Seven nodes; over and over, three random nodes crash or are cut off. The remaining four always
/// elect a leader among themselves, and after every heal the whole cluster has one.
#[test]
fn many_elections_with_churn() {
    for seed in seeds(4_000, 50, 15) {
        let mut rng = Rng::new(seed);
        let mut sim = cluster(seed, 7, 3);
        sim.start_clients();
        established_leader(&mut sim, seed);
        for round in 0..8 {
            let mut ids = sim.ids();
            for i in (1..ids.len()).rev() {
                ids.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let (out, remaining) = ids.split_at(3);
            let crash = rng.chance(1, 2);
            if crash {
                for id in out {
                    sim.crash(*id);
                }
            } else {
                sim.partition(&[out.to_vec(), remaining.to_vec()]);
            }
            let found = sim.run_until_condition(5 * SECOND_US, |sim| {
                sim.established_leader()
                    .is_some_and(|leader| remaining.contains(&leader))
            });
            assert!(
                found,
                "seed {seed} round {round}: four of seven elected no leader"
            );
            sim.restart_all();
            sim.heal_network();
            established_leader(&mut sim, seed);
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

// ------------------------------------------------------------------------------------------
// Agreement (6.824 2B)
// ------------------------------------------------------------------------------------------

/// Commands that one client proposes, one after another, are applied by every node in the same
/// order, and every node ends with the same values.
#[test]
fn basic_agreement() {
    for seed in seeds(5_000, 100, 30) {
        let nodes = [3, 5][(seed % 2) as usize];
        let mut sim = cluster(seed, nodes, 1);
        sim.start_clients();
        let progressed =
            sim.run_until_condition(10 * SECOND_US, |sim| sim.operations_completed() >= 30);
        assert!(progressed, "seed {seed}: 30 commands did not complete");
        let history_before = sim.history().len();
        sim.heal_all();
        settle(&mut sim, history_before, 1, seed);
        let ids = sim.ids();
        let reference = sim.applied_requests(ids[0]);
        // Every write, compare-and-set and delete went through the log (reads may not).
        let updates = sim
            .history()
            .iter()
            .filter(|operation| operation.input != Input::Read)
            .count();
        assert!(updates >= 5, "seed {seed}: only {updates} updates");
        assert!(
            reference.len() >= updates,
            "seed {seed}: {} commands applied for {updates} updates",
            reference.len()
        );
        for id in &ids {
            assert_eq!(
                sim.applied_requests(*id),
                reference,
                "seed {seed}: {id} differs"
            );
            for key in 0..3 {
                assert_eq!(
                    sim.applied_value(*id, key),
                    sim.applied_value(ids[0], key),
                    "seed {seed}: {id} key {key}"
                );
            }
        }
        // Every acknowledged write is in the log, once.
        for operation in sim.history() {
            if let (Input::Write(value), Output::Write) = (operation.input, operation.output) {
                let copies = reference
                    .iter()
                    .filter(|(_, request)| written_value(request) == Some(value))
                    .count();
                assert_eq!(
                    copies, 1,
                    "seed {seed}: write {value:#x} in the log {copies} times"
                );
            }
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// A follower syncs its WAL, and waits for its writer, once per append it acknowledges, not a
/// second time for the commit index the leader sends right after (that goes with the next
/// write, or alone and without a sync at the next tick); and once the cluster is idle, every
/// member's WAL holds its commit index.
#[test]
fn a_commit_index_costs_no_write_of_its_own() {
    for seed in seeds(7_000, 20, 5) {
        let mut sim = cluster(seed, 3, 1);
        let leader = established_leader(&mut sim, seed);
        let followers: Vec<NodeId> = sim.ids().into_iter().filter(|id| *id != leader).collect();
        let syncs = |sim: &Sim| -> Vec<u64> {
            followers
                .iter()
                .map(|id| sim.wal_disk(*id).syncs())
                .collect()
        };
        let syncs_before = syncs(&sim);
        let tasks_before = sim.stats().persist_tasks;
        let first = sim.last_index_on(leader);
        sim.start_clients();
        sim.run_for(2 * SECOND_US);
        let appended = sim.last_index_on(leader).get() - first.get();
        assert!(
            appended >= 40,
            "seed {seed}: only {appended} entries appended"
        );
        for ((id, before), after) in followers.iter().zip(syncs_before).zip(syncs(&sim)) {
            // One sync per entry at most (one client: an append carries one), plus a few for
            // segment rolls; syncing the commit index too made it about two per entry.
            assert!(
                after - before <= appended + appended / 10,
                "seed {seed}: {id} synced {} times for {appended} entries",
                after - before
            );
        }
        // One writer round trip per entry on each member; handing the commit index to the
        // writer on its own made it about two on each follower.
        let tasks = sim.stats().persist_tasks - tasks_before;
        assert!(
            tasks <= 3 * (appended + appended / 10),
            "seed {seed}: {tasks} persist tasks for {appended} entries on 3 members"
        );
        let history_before = sim.history().len();
        sim.heal_all();
        settle(&mut sim, history_before, 1, seed);
        sim.run_for(5 * TICK_US);
        for id in sim.ids() {
            assert_eq!(
                sim.disk(id).hard_state().commit,
                sim.committed_on(id),
                "seed {seed}: {id}'s WAL lags its commit index once idle"
            );
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

fn written_value(command: &kv::mvcc::MvccCommand) -> Option<u64> {
    match &command.request {
        kv::mvcc::MvccRequest::Put(put) => sim::world::decode_value(&put.value),
        _ => None,
    }
}

/// In a three-node cluster with one follower down, commands keep committing; when the follower
/// comes back it catches up with everything it missed.
#[test]
fn agreement_despite_follower_failure() {
    for seed in seeds(6_000, 60, 20) {
        let mut sim = cluster(seed, 3, 3);
        sim.start_clients();
        let leader = established_leader(&mut sim, seed);
        sim.run_for(300 * MS);
        let follower = others(&sim, &[leader])[(seed % 2) as usize];
        sim.crash(follower);
        let committed = sim.max_committed();
        let completed = sim.operations_completed();
        sim.run_for(2 * SECOND_US);
        assert!(
            sim.max_committed() >= committed.plus(10),
            "seed {seed}: commits stalled with one follower down ({committed} -> {})",
            sim.max_committed()
        );
        assert!(sim.operations_completed() >= completed + 10, "seed {seed}");

        sim.restart(follower);
        let target = sim.max_committed();
        let caught_up =
            sim.run_until_condition(5 * SECOND_US, |sim| sim.applied_on(follower) >= target);
        assert!(
            caught_up,
            "seed {seed}: {follower} did not catch up to {target}"
        );
        let leader = sim.leader().expect("a leader");
        for index in 1..=target.get() {
            assert_eq!(
                sim.term_at(follower, LogIndex(index)),
                sim.term_at(leader, LogIndex(index)),
                "seed {seed}: entry {index}"
            );
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// Three of five followers are cut off: the leader (still taking proposals for a while) cannot
/// commit anything, and no node's commit index moves, until the network heals; then commits
/// resume and every node converges.
#[test]
fn no_commit_without_majority() {
    let mut uncommitted_proposals = 0;
    for seed in seeds(7_000, 100, 30) {
        let mut sim = cluster(seed, 5, 5);
        sim.start_clients();
        let leader = established_leader(&mut sim, seed);
        sim.run_for(200 * MS);
        let followers = others(&sim, &[leader]);
        sim.partition(&[
            vec![leader, followers[0]],
            vec![followers[1]],
            vec![followers[2]],
            vec![followers[3]],
        ]);
        // Let the messages already on the wire land.
        sim.run_for(20 * MS);
        let committed = sim.max_committed();
        let mut moved = None;
        sim.run_watching(3 * SECOND_US, |sim| {
            if moved.is_none() && sim.max_committed() > committed {
                moved = Some((sim.now_us(), sim.max_committed()));
            }
        });
        assert_eq!(moved, None, "seed {seed}: committed without a majority");
        if sim.last_index_on(leader) > committed {
            uncommitted_proposals += 1;
        }
        assert!(
            sim.leaders().is_empty(),
            "seed {seed}: a leader without a quorum"
        );

        sim.heal_network();
        let resumed =
            sim.run_until_condition(5 * SECOND_US, |sim| sim.max_committed() > committed.plus(5));
        assert!(
            resumed,
            "seed {seed}: commits did not resume after the heal"
        );
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(
        uncommitted_proposals > 0,
        "no seed had the cut-off leader take a proposal"
    );
}

/// Fifty clients propose at once: every command commits exactly once, and every node applies
/// them in one order.
#[test]
fn concurrent_proposals() {
    for seed in seeds(8_000, 60, 20) {
        let clients = 50;
        let nodes = [3, 5][(seed % 2) as usize];
        let mut sim = cluster(seed, nodes, clients);
        established_leader(&mut sim, seed);
        sim.clients_write_once();
        settle(&mut sim, 0, clients, seed);
        assert_eq!(sim.history().len(), clients, "seed {seed}");
        assert!(
            sim.history()
                .iter()
                .all(|operation| operation.output == Output::Write),
            "seed {seed}: every write is acknowledged"
        );
        let ids = sim.ids();
        let reference = sim.applied_requests(ids[0]);
        let sessions: BTreeSet<(u64, u64)> = reference
            .iter()
            .map(|(_, request)| (request.client_id, request.sequence))
            .collect();
        assert_eq!(
            sessions.len(),
            clients,
            "seed {seed}: one command per client"
        );
        for id in &ids {
            assert_eq!(
                sim.applied_requests(*id),
                reference,
                "seed {seed}: order on {id}"
            );
            // Revisions start at 1 and each put adds one.
            assert_eq!(
                sim.revision_on(*id),
                Some(1 + clients as i64),
                "seed {seed}: {id} applied a command twice or missed one"
            );
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// A leader is cut off and keeps taking proposals that cannot commit; the others elect a new
/// leader and commit past them. When the old leader rejoins, its uncommitted entries are
/// overwritten and every log converges.
#[test]
fn partitioned_old_leader_rejoining() {
    let mut seeds_with_stale_entries = 0;
    let mut all_seeds = 0;
    for seed in seeds(9_000, 100, 30) {
        all_seeds += 1;
        let mut sim = cluster(seed, 5, 10);
        sim.start_clients();
        let old = established_leader(&mut sim, seed);
        sim.run_for(200 * MS);
        sim.isolate(old);
        // Everything appended from now on never leaves the old leader.
        let last_shared = sim.last_index_on(old);
        let stepped_down =
            sim.run_until_condition(SECOND_US, |sim| sim.role_of(old) != Some(Role::Leader));
        assert!(
            stepped_down,
            "seed {seed}: the cut-off leader kept its office"
        );
        let stale: Vec<(LogIndex, Term)> = sim
            .log_on(old)
            .into_iter()
            .filter(|entry| entry.index > last_shared)
            .map(|entry| (entry.index, entry.term))
            .collect();
        if !stale.is_empty() {
            seeds_with_stale_entries += 1;
        }

        let majority = others(&sim, &[old]);
        let new = sim.wait_for_established_leader_among(&majority, 5 * SECOND_US);
        assert!(new.is_some(), "seed {seed}: the majority elected no leader");
        let beyond = sim.last_index_on(old);
        let committed_past =
            sim.run_until_condition(5 * SECOND_US, |sim| sim.max_committed() > beyond);
        assert!(committed_past, "seed {seed}: the new leader did not commit");

        let history_before = sim.history().len();
        sim.heal_all();
        settle(&mut sim, history_before, 10, seed);
        assert_applied_logs_agree(&sim, seed);
        for (index, term) in &stale {
            assert_ne!(
                sim.term_at(old, *index),
                Some(*term),
                "seed {seed}: the old leader's uncommitted entry {index} survived"
            );
        }
        assert_ne!(sim.role_of(old), Some(Role::Leader), "seed {seed}");
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(
        seeds_with_stale_entries * 2 >= all_seeds,
        "only {seeds_with_stale_entries} of {all_seeds} seeds built uncommitted entries"
    );
}

/// 6.824 TestBackup2B: long divergent logs (entries to a cut-off leader, others to the majority,
/// twice). The leaders bring diverging followers back in a few round trips each, by skipping a
/// whole term per rejection, not one entry at a time.
#[test]
fn fast_backup_over_long_divergent_logs() {
    let mut longest_divergence = 0;
    for seed in seeds(10_000, 30, 10) {
        let mut sim = cluster(seed, 5, 40);
        sim.start_clients();
        let first = established_leader(&mut sim, seed);
        sim.run_for(300 * MS);

        // 1. The leader and one follower are cut off; the leader takes proposals that cannot
        //    commit while the other three elect a leader and commit.
        let others1 = others(&sim, &[first]);
        let buddy = others1[0];
        let majority = others1[1..].to_vec();
        sim.partition(&[vec![first, buddy], majority.clone()]);
        sim.run_for(20 * MS);
        let committed = sim.max_committed();
        sim.run_until_condition(SECOND_US, |sim| sim.role_of(first) != Some(Role::Leader));
        let divergence1 = sim.last_index_on(first).get() - committed.get();
        let second = sim
            .wait_for_established_leader_among(&majority, 5 * SECOND_US)
            .unwrap_or_else(|| panic!("seed {seed}: the majority elected no leader"));
        let target = sim.last_index_on(first).plus(20);
        sim.run_until_condition(5 * SECOND_US, |sim| sim.max_committed() > target);

        // 2. The new leader keeps one follower and is cut off too: more divergent entries.
        let rest: Vec<NodeId> = majority
            .iter()
            .copied()
            .filter(|id| *id != second)
            .collect();
        let (partner, third_member) = (rest[0], rest[1]);
        sim.partition(&[vec![second, partner], vec![first, buddy, third_member]]);
        sim.run_for(20 * MS);
        let committed2 = sim.max_committed();
        let mut probes = ProbeCounter::new();
        // 3. The first leader's side (with a member of the second majority) elects a leader,
        //    which must bring `first` and `buddy` back over their divergent entries.
        let caught_up = sim.run_until_condition(10 * SECOND_US, |sim| {
            probes.observe(sim);
            let leader = sim.leader();
            leader.is_some_and(|l| {
                [first, buddy].iter().all(|id| {
                    sim.applied_on(*id) > committed2 && sim.applied_on(*id) >= sim.committed_on(l)
                })
            }) && sim.role_of(second) != Some(Role::Leader)
        });
        assert!(caught_up, "seed {seed}: the first two did not catch up");
        let divergence2 = sim.last_index_on(second).get() - committed2.get();
        assert!(
            probes.max_search_rejections() <= 10,
            "seed {seed}: {:?} rejections to repair {divergence1} divergent entries",
            probes.search_rejections
        );

        // 4. Everyone together: `second` and `partner` are repaired in turn.
        probes.reset_counts();
        let history_before = sim.history().len();
        sim.heal_all();
        let converged = sim.run_until_condition(10 * SECOND_US, |sim| {
            probes.observe(sim);
            sim.history().len() >= history_before + 40
                && sim.operations_pending() == 0
                && sim.converged()
        });
        assert!(converged, "seed {seed}: the cluster did not converge");
        assert_applied_logs_agree(&sim, seed);
        assert!(
            probes.max_search_rejections() <= 10,
            "seed {seed}: {:?} rejections to repair {divergence2} divergent entries",
            probes.search_rejections
        );
        longest_divergence = longest_divergence.max(divergence1).max(divergence2);
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    // The bound means something only if repairing one entry at a time would have exceeded it.
    assert!(
        longest_divergence >= 25,
        "divergent logs were too short to test anything: {longest_divergence}"
    );
}

/// 6.824 TestCount2B: a batch of proposals costs a bounded number of messages per proposal and
/// follower: 30 + 4 per proposal and follower (the append and its answer, and, when the commit
/// index moves while the follower is caught up, the empty append that announces it and its
/// answer), plus the heartbeats of the time the batch takes, plus one per proposal that a
/// client sent to a follower (which forwards it to the leader). The answers to announcements
/// leave at once (a commit index waits for no write): while they waited behind a write each,
/// many were still unsent when the batch settled, which hid the forwarded proposals in the
/// slack. Linear, not more: a pipeline that
/// rewinds and resends on every out-of-order answer costs thousands of messages here (it did,
/// before links delivered in order: 13,302 messages for 100 proposals in seed 11004).
#[test]
fn message_count_bounded() {
    let proposals: u64 = 100;
    let nodes = 3;
    let mut over_budget = Vec::new();
    for seed in seeds(11_000, 20, 5) {
        let mut sim = cluster(seed, nodes, proposals as usize);
        established_leader(&mut sim, seed);
        let before = sim.messages_sent();
        let started = sim.now_us();
        sim.clients_write_once();
        settle(&mut sim, 0, proposals as usize, seed);
        let messages = sim.messages_sent() - before;
        let elapsed = sim.now_us() - started;
        // Per follower: a heartbeat and its answer every heartbeat interval, and the budget.
        let heartbeats = 2 * elapsed.div_ceil(2 * TICK_US);
        let budget = (nodes as u64 - 1) * (heartbeats + 30 + 4 * proposals) + proposals;
        if messages > budget {
            over_budget.push((seed, messages, budget));
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(
        over_budget.is_empty(),
        "(seed, messages, budget) over budget for {proposals} proposals: {over_budget:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Persistence and unreliable networks (6.824 2C)
// ------------------------------------------------------------------------------------------

/// Every node crashes at the same instant (twice). After the restart, every committed entry is
/// still there, unchanged, and applied on every node; no node's term went back.
#[test]
fn persistence_across_crash_of_all_nodes() {
    for seed in seeds(12_000, 60, 20) {
        let nodes = [3, 5][(seed % 2) as usize];
        let mut sim = cluster(seed, nodes, 5);
        sim.start_clients();
        for round in 0..2 {
            established_leader(&mut sim, seed);
            sim.run_for(500 * MS);
            let committed = sim.max_committed();
            let holder = sim
                .up_ids()
                .into_iter()
                .find(|id| sim.committed_on(*id) == committed)
                .expect("someone holds the commit index");
            let prefix: Vec<raft::Entry> = sim
                .log_on(holder)
                .into_iter()
                .filter(|entry| entry.index <= committed)
                .collect();
            let terms: BTreeMap<NodeId, Term> = sim
                .ids()
                .into_iter()
                .map(|id| (id, sim.term_of(id).expect("up")))
                .collect();
            assert!(committed.get() > 5, "seed {seed}: little committed");

            sim.crash_all();
            sim.run_for(100 * MS);
            sim.restart_all();
            for (id, term) in &terms {
                assert!(
                    sim.term_of(*id) >= Some(*term),
                    "seed {seed} round {round}: {id} restarted in an older term"
                );
            }
            established_leader(&mut sim, seed);
            let recovered = sim.run_until_condition(5 * SECOND_US, |sim| {
                sim.ids()
                    .into_iter()
                    .all(|id| sim.applied_on(id) >= committed)
            });
            assert!(
                recovered,
                "seed {seed} round {round}: committed entries not re-applied"
            );
            for id in sim.ids() {
                for entry in &prefix {
                    assert_eq!(
                        sim.entry_at(id, entry.index).as_ref(),
                        Some(entry),
                        "seed {seed} round {round}: {id} lost or changed committed entry {}",
                        entry.index
                    );
                }
            }
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// 6.824 TestFigure8Unreliable2C: messages are lost, duplicated and reordered while the leader
/// is crashed again and again right after it took proposals. At the end, with the network healed,
/// the cluster commits again and converges, and nothing committed was ever lost or changed.
#[test]
fn figure_8_unreliable() {
    let iterations = if cfg!(debug_assertions) { 40 } else { 150 };
    for seed in seeds(14_000, 30, 8) {
        let faults = FaultSet {
            loss: true,
            duplicate: true,
            reorder: true,
            ..FaultSet::default()
        };
        let mut options = Options::new(seed, 5, faults);
        options.clients = 5;
        let mut sim = Sim::new(options);
        let mut rng = Rng::new(seed ^ 0xF18);
        sim.start_clients();
        for _ in 0..iterations {
            if let Some(leader) = sim.leader() {
                // Let a few proposals in, then crash the leader before it can replicate them all.
                sim.run_for(rng.range(0, 20 * MS));
                if rng.chance(1, 2) && sim.is_up(leader) {
                    sim.crash(leader);
                }
            }
            let down: Vec<NodeId> = sim.ids().into_iter().filter(|id| !sim.is_up(*id)).collect();
            if !down.is_empty() && (sim.up_ids().len() < 3 || rng.chance(1, 3)) {
                sim.restart(down[rng.below(down.len() as u64) as usize]);
            }
            sim.run_for(rng.range(5 * MS, 80 * MS));
            assert_clean(&sim, seed);
        }
        let outcome = sim.finish();
        assert_passed(&outcome);
        assert!(
            outcome.stats.commits > 10,
            "seed {seed}: {:?}",
            outcome.stats
        );
    }
}

/// 6.824 TestUnreliableChurn2C: random crashes and restarts of any node over a lossy, duplicating,
/// reordering network while clients keep working. The run passes every check.
#[test]
fn unreliable_churn() {
    for seed in seeds(15_000, 40, 10) {
        let faults = FaultSet {
            loss: true,
            duplicate: true,
            reorder: true,
            ..FaultSet::default()
        };
        let nodes = [3, 5][(seed % 2) as usize];
        let mut options = Options::new(seed, nodes, faults);
        options.clients = 6;
        let mut sim = Sim::new(options);
        let mut rng = Rng::new(seed ^ 0xC4);
        sim.start_clients();
        while sim.now_us() < 6 * SECOND_US {
            let victim = NodeId(rng.range(1, nodes as u64 + 1));
            if sim.is_up(victim) {
                if rng.chance(1, 2) {
                    sim.crash(victim);
                }
            } else {
                sim.restart(victim);
            }
            sim.run_for(rng.range(20 * MS, 400 * MS));
            assert_clean(&sim, seed);
        }
        let outcome = sim.finish();
        assert_passed(&outcome);
        assert!(
            outcome.stats.operations_ok > 10,
            "seed {seed}: {:?}",
            outcome.stats
        );
    }
}

// ------------------------------------------------------------------------------------------
// Partial partitions, PreVote and CheckQuorum
// ------------------------------------------------------------------------------------------

/// Five nodes on a ring where each sees only its two neighbours: every node sees a majority, no
/// two see the same one. The cluster still elects a leader that stays, commits client commands,
/// and does not cycle through elections (the term barely moves over 10 s).
#[test]
fn majorities_ring_stays_live() {
    for seed in seeds(16_000, 12, 4) {
        let mut sim = cluster(seed, 5, 5);
        sim.majorities_ring();
        sim.start_clients();
        let leader = established_leader(&mut sim, seed);
        sim.run_for(SECOND_US);
        let term = max_term(&sim);
        let completed = sim.operations_completed();
        sim.run_for(10 * SECOND_US);
        assert!(
            max_term(&sim).get() <= term.get() + 2,
            "seed {seed}: endless elections ({term} -> {})",
            max_term(&sim)
        );
        assert!(
            sim.operations_completed() >= completed + 50,
            "seed {seed}: the ring stopped committing ({} operations)",
            sim.operations_completed() - completed
        );
        assert!(
            sim.established_leader().is_some(),
            "seed {seed}: no stable leader (first was {leader})"
        );
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// A follower cut off for many election timeouts does not inflate its term (PreVote), and when
/// it rejoins the leader keeps its office and term; the follower catches up.
#[test]
fn rejoining_partitioned_node_does_not_disrupt() {
    for seed in seeds(17_000, 60, 20) {
        let nodes = [3, 5][(seed % 2) as usize];
        let mut sim = cluster(seed, nodes, 2);
        sim.start_clients();
        let leader = established_leader(&mut sim, seed);
        let term = sim.term_of(leader).expect("up");
        let follower = others(&sim, &[leader])[0];
        sim.isolate(follower);
        sim.run_for(3 * SECOND_US);
        assert_eq!(
            sim.term_of(follower),
            Some(term),
            "seed {seed}: term inflated"
        );
        assert_ne!(sim.role_of(follower), Some(Role::Leader), "seed {seed}");

        sim.heal_network();
        let mut disturbed = None;
        sim.run_watching(2 * SECOND_US, |sim| {
            if disturbed.is_none() && (sim.leader() != Some(leader) || max_term(sim) != term) {
                disturbed = Some((sim.now_us(), sim.leader(), max_term(sim)));
            }
        });
        assert_eq!(
            disturbed, None,
            "seed {seed}: the rejoining node disrupted the leader"
        );
        let caught_up = sim.run_until_condition(SECOND_US, |sim| {
            sim.applied_on(follower) >= sim.committed_on(leader)
        });
        assert!(
            caught_up,
            "seed {seed}: the rejoined follower did not catch up"
        );
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
}

/// A leader cut off from everyone steps down within two election timeouts (CheckQuorum); the
/// proposals it took meanwhile are never committed or applied anywhere, so no client is ever told
/// they succeeded.
#[test]
fn isolated_leader_steps_down_and_acknowledges_nothing() {
    let mut proposals_taken = 0;
    for seed in seeds(19_000, 100, 30) {
        let mut sim = cluster(seed, 5, 5);
        sim.start_clients();
        let old = established_leader(&mut sim, seed);
        sim.run_for(200 * MS);
        sim.isolate(old);
        let isolated_at = sim.now_us();
        let last_shared = sim.last_index_on(old);
        let stepped_down =
            sim.run_until_condition(SECOND_US, |sim| sim.role_of(old) != Some(Role::Leader));
        assert!(stepped_down, "seed {seed}");
        let took = sim.now_us() - isolated_at;
        assert!(
            took <= 2 * ELECTION_TIMEOUT_US + 2 * TICK_US,
            "seed {seed}: stepped down after {} ms",
            took / MS
        );
        let stale: Vec<(LogIndex, Term)> = sim
            .log_on(old)
            .into_iter()
            .filter(|entry| entry.index > last_shared)
            .map(|entry| (entry.index, entry.term))
            .collect();
        proposals_taken += stale.len();
        let committed_while_isolated = sim.committed_on(old);
        assert!(
            stale
                .iter()
                .all(|(index, _)| *index > committed_while_isolated),
            "seed {seed}: the isolated leader committed its own proposal"
        );

        established_leader(&mut sim, seed);
        let beyond = sim.last_index_on(old);
        let committed_past =
            sim.run_until_condition(5 * SECOND_US, |sim| sim.max_committed() > beyond);
        assert!(committed_past, "seed {seed}: the new leader did not commit");
        let history_before = sim.history().len();
        sim.heal_all();
        settle(&mut sim, history_before, 5, seed);
        assert_applied_logs_agree(&sim, seed);
        for id in sim.ids() {
            for (index, term) in &stale {
                assert_ne!(
                    sim.term_at(id, *index),
                    Some(*term),
                    "seed {seed}: {id} holds the isolated leader's entry {index}"
                );
            }
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(proposals_taken > 0, "no isolated leader took a proposal");
}

// ------------------------------------------------------------------------------------------
// Exactly once (docs/correctness.md, K13)
// ------------------------------------------------------------------------------------------

/// Clients retry requests (same session sequence) at other nodes after leader crashes, so the log
/// holds some commands twice; the state machine still applies each command at most once.
#[test]
fn client_retries_apply_once() {
    let mut duplicated_in_log = 0;
    for seed in seeds(18_000, 60, 20) {
        let mut sim = cluster(seed, 5, 8);
        let mut rng = Rng::new(seed ^ 0x13);
        sim.start_clients();
        for _ in 0..12 {
            established_leader(&mut sim, seed);
            sim.run_for(rng.range(0, 20 * MS));
            if let Some(leader) = sim.leader() {
                sim.crash(leader);
                sim.run_for(rng.range(10 * MS, 400 * MS));
                sim.restart(leader);
            }
        }
        let history_before = sim.history().len();
        sim.heal_all();
        settle(&mut sim, history_before, 8, seed);
        for id in sim.ids() {
            let requests = sim.applied_requests(id);
            let distinct: BTreeSet<(u64, u64)> = requests
                .iter()
                .map(|(_, request)| (request.client_id, request.sequence))
                .collect();
            if id == NodeId(1) {
                duplicated_in_log += requests.len() - distinct.len();
            }
            assert_eq!(
                sim.revision_on(id),
                sim.revision_applying_each_command_once(id),
                "seed {seed}: {id} applied a retried command twice"
            );
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(
        duplicated_in_log > 0,
        "no retry ever reached the log twice: the scenario tested nothing"
    );
}

// ------------------------------------------------------------------------------------------
// The Raft paper's Figure 8 (docs/correctness.md, K1)
// ------------------------------------------------------------------------------------------

/// What one attempt at building Figure 8 came to.
struct Figure8 {
    sim: Sim,
    /// Whether the situation of Figure 8 (c) arose: an entry of an old term on a majority
    /// through the leader of a later term, while no entry of that later term is.
    built: bool,
    /// The index X wrote in its own term and the old leader in the old one.
    contested: LogIndex,
    /// The old term of the entry at `contested` on the majority.
    old_term: Term,
    /// The leader of the later term (S1 of the paper in (c)).
    later_leader: NodeId,
    /// That leader's commit index while the old-term entry sat on a majority.
    committed_in_c: LogIndex,
    /// The node of the majority that takes part in (d) (S3 of the paper).
    witness: NodeId,
    /// The node that wrote `contested` in its own term (S5 of the paper).
    rival: NodeId,
}

/// Builds Figure 8 of the Raft paper on five nodes with crashes, in the terms of the paper:
/// (a) S1 leads and replicates entries of its term to S2 only; (b) S5 is elected by S3 and S4
/// and writes an entry of its own term at the same index, alone; (c) S1 is elected again by S2
/// and S3 and replicates its old-term entry to S3, so a majority holds it, while its own term's
/// entry is on at most S1 and S2; then S1 crashes; (d) S5 is elected again (by S3 and S4) and
/// overwrites the old-term entry everywhere. Step (c) depends on the seed's message size limit:
/// the old-term entries must travel to S3 without the new leader's no-op, so some seeds cannot
/// build it (`built` is false).
fn build_figure_8(seed: u64, core_faults: raft::Faults) -> Figure8 {
    let mut options = Options::new(seed, 5, FaultSet::default());
    options.clients = 20;
    options.keys = keys_for(20);
    options.core_faults = core_faults;
    let mut sim = Sim::new(options);
    sim.start_clients();
    established_leader(&mut sim, seed);
    sim.run_for(300 * MS);
    // (a) S1 (the leader) keeps only S2; clients keep proposing to it until it steps down.
    let s1 = established_leader(&mut sim, seed);
    let rest = others(&sim, &[s1]);
    let s2 = rest[0];
    for id in &rest[1..] {
        sim.crash(*id);
    }
    sim.run_for(300 * MS);
    let old_term = sim.term_of(s1).expect("up");
    let s1_last = sim.last_index_on(s1);
    sim.crash(s1);
    sim.crash(s2);
    // Messages still on the wire are lost before anyone restarts.
    sim.run_for(50 * MS);
    // (b) The other three elect S5; S5 writes the no-op of its term and crashes before anyone
    // else receives it.
    for id in &rest[1..] {
        sim.restart(*id);
    }
    let s5 = sim
        .wait_for_leader(5 * SECOND_US)
        .unwrap_or_else(|| panic!("seed {seed}: (b) no leader"));
    let bystanders: Vec<NodeId> = rest[1..].iter().copied().filter(|id| *id != s5).collect();
    for id in &bystanders {
        sim.crash(*id);
    }
    let s5_term = sim.term_of(s5).expect("up");
    let contested = sim
        .log_terms(s5)
        .into_iter()
        .find(|(_, term)| *term == s5_term)
        .map(|(index, _)| index)
        .expect("the no-op of its term");
    let durable = sim.run_until_condition(SECOND_US, |sim| {
        sim.durable_term_at(s5, contested) == Some(s5_term)
    });
    assert!(durable, "seed {seed}: (b) the no-op never became durable");
    sim.crash(s5);
    sim.run_for(50 * MS);
    let (s3, s4) = (bystanders[0], bystanders[1]);
    // (c) S1 or S2 is elected by the other and S3, and replicates to S3.
    for id in [s1, s2, s3] {
        sim.restart(id);
    }
    let later_leader = sim
        .wait_for_leader_among(&[s1, s2], 5 * SECOND_US)
        .unwrap_or_else(|| panic!("seed {seed}: (c) neither {s1} nor {s2} was elected"));
    let partner = if later_leader == s1 { s2 } else { s1 };
    let reached = sim.run_until_condition(2 * SECOND_US, |sim| {
        let matched = |follower| {
            sim.progress_of(later_leader, follower)
                .map_or(LogIndex::ZERO, |progress| progress.match_index)
        };
        sim.role_of(later_leader) != Some(Role::Leader)
            || (matched(partner) >= contested && matched(s3) >= contested)
    });
    let majority_holds = |sim: &Sim| {
        [partner, s3]
            .iter()
            .filter_map(|id| sim.progress_of(later_leader, *id))
            .map(|progress| progress.match_index)
            .min()
    };
    let shared = majority_holds(&sim).unwrap_or(LogIndex::ZERO);
    // S5 can only win (d) if S3 did not receive the later leader's own entry (a higher term).
    let s3_last_term = sim
        .log_terms(s3)
        .last()
        .map(|(_, term)| *term)
        .unwrap_or_default();
    let built = reached
        && shared >= contested
        && s1_last >= contested
        && s3_last_term < s5_term
        && sim.term_at(later_leader, shared) == Some(old_term);
    let committed_in_c = sim.committed_on(later_leader);
    for id in [s1, s2, s3] {
        sim.crash(id);
    }
    sim.run_for(50 * MS);
    // (d) S5 comes back with S3 and S4, is elected, and overwrites the contested entry.
    for id in [s5, s3, s4] {
        sim.restart(id);
    }
    Figure8 {
        sim,
        built,
        contested,
        old_term,
        later_leader,
        committed_in_c,
        witness: s3,
        rival: s5,
    }
}

/// Figure 8: an entry of an old term that a later leader has replicated to a majority is not
/// committed until an entry of the leader's own term is; so when the rival leader of (d)
/// overwrites it, nothing committed is lost, and the run passes every check.
#[test]
fn figure_8() {
    let mut built = 0;
    let attempts = seeds(13_000, 96, 24);
    let count = attempts.end - attempts.start;
    for seed in attempts {
        let Figure8 {
            mut sim,
            built: this_built,
            contested,
            old_term,
            later_leader,
            committed_in_c,
            witness,
            rival,
        } = build_figure_8(seed, raft::Faults::default());
        assert_clean(&sim, seed);
        if this_built {
            built += 1;
            assert!(
                committed_in_c < contested,
                "seed {seed}: {later_leader} committed {contested} of {old_term} by counting replicas"
            );
            let elected = sim
                .run_until_condition(5 * SECOND_US, |sim| sim.established_leader() == Some(rival));
            assert!(elected, "seed {seed}: (d) {rival} was not elected");
            let overwritten = sim.run_until_condition(2 * SECOND_US, |sim| {
                sim.term_at(witness, contested)
                    .is_some_and(|term| term != old_term)
                    && sim.committed_on(witness) >= contested
            });
            assert!(
                overwritten,
                "seed {seed}: (d) the old-term entry was not overwritten"
            );
        }
        assert_clean(&sim, seed);
        assert_passed(&sim.finish());
    }
    assert!(
        built * 3 >= count,
        "only {built} of {count} seeds built Figure 8 (c)"
    );
}

/// The checker has teeth: a core that commits an old-term entry by counting its replicas (the
/// Figure 8 bug, which LogCabin shipped) commits in (c) and loses the entry in (d), and the
/// checker reports it.
#[test]
fn figure_8_counting_replicas_is_caught() {
    let broken = raft::Faults {
        commit_old_term_by_counting: true,
        ..raft::Faults::default()
    };
    let mut caught = 0;
    for seed in seeds(13_000, 96, 24) {
        let Figure8 {
            mut sim,
            built,
            contested,
            committed_in_c,
            ..
        } = build_figure_8(seed, broken);
        if !built {
            continue;
        }
        assert!(
            committed_in_c >= contested,
            "seed {seed}: the broken core did not commit by counting"
        );
        sim.run_until_condition(5 * SECOND_US, |sim| !sim.violations().is_empty());
        let properties: Vec<&str> = sim.violations().iter().map(|v| v.property).collect();
        assert!(
            properties
                .iter()
                .any(|p| matches!(*p, "state-machine-safety" | "leader-completeness")),
            "seed {seed}: Figure 8 not caught: {:?}",
            sim.violations()
        );
        caught += 1;
    }
    assert!(caught >= 4, "only {caught} seeds built Figure 8 (c)");
}
