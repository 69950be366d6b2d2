//! Core throughput: committed entries per second of a 3-member cluster driven in memory.
//!
//! No network and no disk: every message is delivered at once, and "persisting" a Ready is
//! writing it into the member's `MemStorage`. So this measures the Raft core itself (plus
//! `MemStorage` and the `Ready` plumbing) — the ceiling for a real member, not its speed.
//!
//! - `commit_3_members_100B/proposers/1`: one client; it proposes the next 100-byte entry only
//!   once the previous one is applied on the leader.
//! - `commit_3_members_100B/proposers/256`: 256 clients; 256 proposals are outstanding at all
//!   times, topped up between two rounds, so the proposals of one round are batched by the core
//!   into one Ready and one append per follower.
//!
//! A round is: every member with work hands over one Ready (send `messages`, write, acknowledge,
//! send `persisted_messages`, apply), then every message sent is stepped into its target. An
//! entry counts once the leader applies it. Logs are compacted every 64 Ki entries so memory
//! stays flat. Throughput is printed in elements (entries) per second.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft::{
    ConfState, Config, EntryKind, LogIndex, MemStorage, Message, NodeId, RawNode, Role, Storage,
};
use std::time::{Duration, Instant};

const MEMBERS: u64 = 3;
const ENTRY_BYTES: usize = 100;
const COMPACT_EVERY: u64 = 1 << 16;

struct InMemoryCluster {
    /// Member `i + 1` at index `i`; member 1 leads.
    nodes: Vec<RawNode<MemStorage>>,
    /// Messages sent in this round, delivered at its end.
    outbox: Vec<Message>,
    /// The previous round's messages, being delivered (kept to reuse the allocation).
    inbox: Vec<Message>,
    /// Shared by every proposal (a `Bytes` clone is a reference-count increment).
    payload: Bytes,
    /// Proposals made and not yet applied on the leader.
    in_flight: usize,
    /// Application entries applied on the leader so far.
    committed: u64,
    since_compaction: u64,
}

impl InMemoryCluster {
    fn new() -> InMemoryCluster {
        let voters = ConfState::with_voters((1..=MEMBERS).map(NodeId));
        let nodes = (1..=MEMBERS)
            .map(|id| {
                let config = Config::new(NodeId(id));
                let storage = MemStorage::new_with_conf_state(voters.clone());
                RawNode::new(&config, storage).expect("valid member")
            })
            .collect();
        let mut cluster = InMemoryCluster {
            nodes,
            outbox: Vec::new(),
            inbox: Vec::new(),
            payload: Bytes::from(vec![0x5A; ENTRY_BYTES]),
            in_flight: 0,
            committed: 0,
            since_compaction: 0,
        };
        cluster.nodes[0].campaign();
        while cluster.round() {}
        assert_eq!(cluster.nodes[0].role(), Role::Leader);
        cluster
    }

    /// One round; returns whether anything happened.
    fn round(&mut self) -> bool {
        let mut worked = false;
        for (position, node) in self.nodes.iter_mut().enumerate() {
            if !node.has_ready() {
                continue;
            }
            worked = true;
            let mut ready = node.ready();
            self.outbox.append(&mut ready.messages);
            if let Some(hard_state) = ready.hard_state {
                node.storage_mut().set_hard_state(hard_state);
            }
            node.storage_mut().append(&ready.entries);
            node.on_persisted(ready.number);
            self.outbox.append(&mut ready.persisted_messages);
            if position == 0 {
                let applied = ready
                    .committed_entries
                    .iter()
                    .filter(|entry| entry.kind == EntryKind::Normal)
                    .count();
                self.in_flight -= applied;
                self.committed += applied as u64;
                self.since_compaction += applied as u64;
            }
        }
        std::mem::swap(&mut self.outbox, &mut self.inbox);
        for message in self.inbox.drain(..) {
            worked = true;
            let target = (message.to.get() - 1) as usize;
            self.nodes[target].step(message);
        }
        worked
    }

    /// Runs until `count` more entries are applied on the leader, keeping `proposers`
    /// proposals outstanding.
    fn commit(&mut self, proposers: usize, count: u64) {
        let goal = self.committed + count;
        while self.committed < goal {
            while self.in_flight < proposers {
                self.nodes[0]
                    .propose(self.payload.clone())
                    .expect("the leader accepts");
                self.in_flight += 1;
            }
            self.round();
            if self.since_compaction >= COMPACT_EVERY {
                self.compact();
            }
        }
    }

    /// Drops log entries that every member has applied and the leader knows every follower
    /// holds (so no follower can need them again).
    fn compact(&mut self) {
        self.since_compaction = 0;
        let leader = self.nodes[0].status();
        let mut floor = leader
            .progress
            .iter()
            .map(|progress| progress.match_index)
            .min()
            .unwrap_or(LogIndex::ZERO);
        for node in &self.nodes {
            floor = floor.min(node.status().applied);
        }
        for node in &mut self.nodes {
            if floor > node.storage().first_index() {
                node.storage_mut().compact(floor, Bytes::new());
            }
        }
    }
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_members_100B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for proposers in [1usize, 256] {
        let per_iteration: u64 = if proposers == 1 { 1_000 } else { 50_000 };
        group.throughput(Throughput::Elements(per_iteration));
        group.bench_with_input(
            BenchmarkId::new("proposers", proposers),
            &proposers,
            |bencher, &proposers| {
                let mut cluster = InMemoryCluster::new();
                bencher.iter_custom(|iterations| {
                    let start = Instant::now();
                    cluster.commit(proposers, iterations * per_iteration);
                    start.elapsed()
                });
            },
        );
    }
    group.finish();
}

/// The benchmark group, in a module so that the function the macro generates may go without a
/// doc comment.
#[allow(missing_docs)]
mod groups {
    use super::{criterion_group, throughput};
    criterion_group!(benches, throughput);
}
criterion_main!(groups::benches);
