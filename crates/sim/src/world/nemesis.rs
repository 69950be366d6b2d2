//! The nemesis and the faults a test can inject by hand: crashes (power loss with torn
//! writes), restarts, damaged files, partitions chosen by the seed, membership changes,
//! leadership transfers, log compaction, hanging disks, and the heal before the liveness
//! phase.

use super::*;

impl Sim {
    /// Crashes node `id` by a power loss: volatile state is lost; of the writes in flight, some
    /// may have completed, the next one is torn inside the WAL's files and the disk drops or
    /// tears what was not synced, all chosen by the seed. The WAL recovers at once, so
    /// [`Sim::disk`] shows what a restart will find.
    pub fn crash(&mut self, id: NodeId) {
        let index = (id.get() - 1) as usize;
        if self.nodes[index].node.is_none() {
            return;
        }
        let in_flight = self.unacknowledged_writes(index);
        let report = self.nodes[index].disk.crash(&in_flight, &mut self.rng);
        if let Some(recovered) = report.recovered {
            self.checker
                .observe_hard_state_write(id, report.acknowledged, recovered);
        }
        if let Some(problem) = report.problem {
            self.checker
                .fail("wal-recovery", format!("{id} crashed: {problem}"));
        }
        self.stats.wal_torn_tails += u64::from(report.torn_tail);
        self.stats.wal_max_segments = self.stats.wal_max_segments.max(report.segments as u64);
        let sim_node = &mut self.nodes[index];
        sim_node.node = None;
        sim_node.epoch += 1;
        sim_node.executor = Executor::new();
        sim_node.writer_queue.clear();
        sim_node.writing.clear();
        sim_node.disk_busy_until = self.now;
        self.stats.crashes += 1;
        self.trace(format_args!(
            "n{} crashes ({} writes in flight{})",
            index + 1,
            in_flight.len(),
            if report.torn_tail {
                ", torn tail cut"
            } else {
                ""
            }
        ));
    }

    /// How many of node `id`'s writes are issued but not yet durable.
    pub fn writes_in_flight(&self, id: NodeId) -> usize {
        self.unacknowledged_writes((id.get() - 1) as usize).len()
    }

    /// Node `index`'s persist tasks handed to its writer and not yet durable, oldest first:
    /// the batch being written, then those queued behind it.
    pub(super) fn unacknowledged_writes(&self, index: usize) -> Vec<PersistTask> {
        let sim_node = &self.nodes[index];
        let queued = sim_node.writer_queue.iter().filter_map(|job| match job {
            WriterJob::Persist(task) => Some(task.clone()),
            _ => None,
        });
        sim_node.writing.iter().cloned().chain(queued).collect()
    }

    /// Node `id`'s simulated disk, to read its files (`files`, `read_file`). Damage it only
    /// through [`Sim::flip_wal_bit`] and [`Sim::truncate_wal_file`], which tell the simulator
    /// that a refusal to restart is expected.
    pub fn wal_disk(&self, id: NodeId) -> &wal::SimDisk {
        self.nodes[(id.get() - 1) as usize].disk.sim_disk()
    }

    /// Flips bit `bit` of byte `offset` of a file on crashed node `id`'s disk, durably. Its next
    /// restart opens the WAL again; a refusal then is expected (the node stays down). Until the
    /// WAL opens again, the durable-quorum check counts what it held before the damage.
    pub fn flip_wal_bit(
        &mut self,
        id: NodeId,
        path: &Path,
        offset: u64,
        bit: u8,
    ) -> io::Result<()> {
        let index = (id.get() - 1) as usize;
        assert!(
            self.nodes[index].node.is_none(),
            "damage only a crashed node's disk"
        );
        self.trace(format_args!(
            "flip bit {bit} of byte {offset} of {} on {id}",
            path.display()
        ));
        self.nodes[index].disk.flip_bit(path, offset, bit)
    }

    /// Cuts a file on crashed node `id`'s disk to `len` bytes, durably.
    pub fn truncate_wal_file(&mut self, id: NodeId, path: &Path, len: u64) -> io::Result<()> {
        let index = (id.get() - 1) as usize;
        assert!(
            self.nodes[index].node.is_none(),
            "damage only a crashed node's disk"
        );
        self.trace(format_args!(
            "truncate {} on {id} to {len} bytes",
            path.display()
        ));
        self.nodes[index].disk.truncate(path, len)
    }

    /// After a crash of node `id` (until it restarts): the byte range of its last WAL segment
    /// that holds records written but never acknowledged to the node, if any.
    pub fn unacknowledged_wal_bytes(&self, id: NodeId) -> Option<(PathBuf, Range<u64>)> {
        self.nodes[(id.get() - 1) as usize].disk.unacknowledged()
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let index = (id.get() - 1) as usize;
        if self.nodes[index].node.is_none() {
            self.start_node(index);
        }
    }

    /// Proposes a random membership change through the leader: add a spare as a learner,
    /// promote a learner, remove a voter (the leader too), or replace a voter by a spare in one
    /// joint change. Refusals (one change at a time) are fine: the nemesis tries again later.
    pub fn change_membership(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let index = (leader.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let conf = node.raw().conf_state().clone();
        let members = conf.members();
        // Spares join once; a removed node never comes back (it would need a fresh identity).
        let spares: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !members.contains(id) && !self.ever_members.contains(id))
            .collect();
        let voters = conf.voters.clone();
        use raft::{ConfChange, ConfChangeSingle, ConfChangeType};
        let single = |change, node| ConfChangeSingle { change, node };
        let change = match self.rng.below(5) {
            0 if !spares.is_empty() => ConfChange {
                changes: vec![single(ConfChangeType::AddLearner, spares[0])],
            },
            1 if !conf.learners.is_empty() => ConfChange {
                changes: vec![single(ConfChangeType::AddVoter, conf.learners[0])],
            },
            2 if voters.len() > 3 => {
                let victim = voters[self.rng.below(voters.len() as u64) as usize];
                ConfChange {
                    changes: vec![single(ConfChangeType::RemoveNode, victim)],
                }
            }
            3 if voters.len() > 3 => ConfChange {
                changes: vec![single(ConfChangeType::RemoveNode, leader)],
            },
            4 if !spares.is_empty() && voters.len() >= 3 => {
                let victim = voters[self.rng.below(voters.len() as u64) as usize];
                ConfChange {
                    changes: vec![
                        single(ConfChangeType::AddVoter, spares[0]),
                        single(ConfChangeType::RemoveNode, victim),
                    ],
                }
            }
            _ => return,
        };
        for single in &change.changes {
            self.ever_members.insert(single.node);
        }
        for id in &members {
            self.ever_members.insert(*id);
        }
        let mut actions = std::mem::take(&mut self.actions);
        let node = self.nodes[index].node.as_mut().expect("up");
        node.propose_conf_change(u64::MAX, &change, &mut actions);
        self.actions = actions;
        self.trace(format_args!("{leader} proposes {change:?}"));
        self.drain(index);
    }

    /// Proposes `change` through node `via` (normally the leader); returns whether it was
    /// accepted for proposal (it takes effect once committed and applied).
    pub fn propose_conf_change(&mut self, via: NodeId, change: &raft::ConfChange) -> bool {
        let index = (via.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return false;
        };
        let mut actions = std::mem::take(&mut self.actions);
        node.propose_conf_change(u64::MAX, change, &mut actions);
        let refused = actions
            .iter()
            .any(|action| matches!(action, Action::ConfChangeReply { result: Err(_), .. }));
        self.actions = actions;
        for single in &change.changes {
            self.ever_members.insert(single.node);
        }
        self.drain(index);
        !refused
    }

    /// Compacts node `id`'s log at its applied index now (state machine snapshot, WAL snapshot,
    /// segments released); returns the snapshot's index.
    pub fn compact(&mut self, id: NodeId) -> Option<LogIndex> {
        let index = (id.get() - 1) as usize;
        let job = self.nodes[index].node.as_mut()?.begin_snapshot()?;
        self.stats.compactions += 1;
        self.nodes[index].snapshots.started();
        let node::SnapshotJob { metadata, state } = job;
        let written = self.nodes[index].disk.snapshot_files().map_or_else(
            || Err("the WAL is not open".to_string()),
            |files| {
                files
                    .write(&metadata, |out| state.write_to(out))
                    .map_err(|error| error.to_string())
            },
        );
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(error) => {
                self.checker.fail(
                    "wal-snapshot",
                    format!("{id} cannot write its snapshot: {error}"),
                );
                return None;
            }
        };
        let at = metadata.index;
        let sim_node = &mut self.nodes[index];
        let node = sim_node.node.as_mut().expect("up: it began the snapshot");
        let job = sim_node.snapshots.finished(metadata, bytes, node);
        exec::MemberIo::queue_write(&mut SimIo { sim: self, index }, job);
        Some(at)
    }

    /// The configuration node `id` has applied (if it is up).
    pub fn conf_state_of(&self, id: NodeId) -> Option<ConfState> {
        self.nodes[(id.get() - 1) as usize]
            .node
            .as_ref()
            .map(|node| node.raw().conf_state().clone())
    }

    /// Sometimes compacts a node's log at its applied index: the state machine snapshot goes to
    /// its WAL, which drops the segments it covers. Followers that need those entries then get
    /// the snapshot.
    pub(super) fn maybe_compact(&mut self, index: usize) {
        if !self.options.faults.compaction || !self.rng.chance(1, 8) {
            return;
        }
        let sim_node = &self.nodes[index];
        let Some(node) = sim_node.node.as_ref() else {
            return;
        };
        if !sim_node.snapshots.due(node) {
            return;
        }
        let id = self.nodes[index].id;
        self.compact(id);
    }

    /// Asks `leader` to hand leadership to `target`.
    pub fn transfer_leader(&mut self, leader: NodeId, target: NodeId) {
        let index = (leader.get() - 1) as usize;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return;
        };
        if node.transfer_leader(target).is_ok() {
            self.stats.transfers += 1;
            self.trace(format_args!("{leader} transfers leadership to {target}"));
            self.drain(index);
        }
    }

    pub(super) fn random_node(&mut self) -> NodeId {
        NodeId(self.rng.below(self.nodes.len() as u64) + 1)
    }

    /// The leader half the time (leader faults find the most bugs), otherwise any node.
    pub(super) fn victim(&mut self) -> NodeId {
        match self.leader() {
            Some(leader) if self.rng.chance(1, 2) => leader,
            _ => self.random_node(),
        }
    }

    /// Figure-8 churn: crash the leader soon after it took proposals, restart nodes so that
    /// about a quorum stays up, over and over.
    pub(super) fn churn(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let n = self.nodes.len();
        if let Some(leader) = self.leader()
            && self.rng.chance(1, 2)
        {
            self.crash(leader);
        }
        let down: Vec<usize> = (0..n).filter(|i| self.nodes[*i].node.is_none()).collect();
        let up = n - down.len();
        if !down.is_empty() && (up < n / 2 + 1 || self.rng.chance(1, 3)) {
            let pick = down[self.rng.below(down.len() as u64) as usize];
            self.start_node(pick);
        }
        let next = self.rng.range(5_000, 80_000);
        self.schedule(next, Event::Churn);
    }

    pub(super) fn nemesis(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let faults = self.options.faults;
        let mut choices: Vec<u8> = Vec::new();
        if faults.partition {
            choices.extend([0, 1, 2, 3, 4, 7]);
        }
        if faults.crash {
            choices.extend([5, 5]);
        }
        if faults.crash_all {
            choices.push(6);
        }
        if faults.partition || faults.crash {
            choices.push(8);
        }
        if faults.membership {
            choices.extend([9, 9, 9]);
        }
        if faults.slow_disk {
            choices.push(10);
        }
        if choices.is_empty() {
            return;
        }
        let choice = choices[self.rng.below(choices.len() as u64) as usize];
        let n = self.nodes.len() as u64;
        match choice {
            0 => self.heal_network(),
            1 => {
                // A random split into two sides.
                let mut ids: Vec<NodeId> = self.ids();
                for i in (1..ids.len()).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    ids.swap(i, j);
                }
                let cut = self.rng.range(1, n) as usize;
                let (a, b) = ids.split_at(cut);
                self.partition(&[a.to_vec(), b.to_vec()]);
            }
            2 => {
                // Isolate one node, usually the leader.
                let victim = self.victim();
                let rest: Vec<NodeId> = self.ids().into_iter().filter(|id| *id != victim).collect();
                self.partition(&[vec![victim], rest]);
            }
            3 => {
                // One-way links: a few directed links drop everything.
                self.heal_network();
                for _ in 0..self.rng.range(1, n) {
                    let from = self.random_node();
                    let to = self.random_node();
                    if from != to {
                        self.cut_link(from, to);
                    }
                }
                self.stats.partitions += 1;
            }
            4 => {
                // A bridge: two halves that only the bridge node sees both of.
                let bridge = self.victim();
                let others: Vec<NodeId> =
                    self.ids().into_iter().filter(|id| *id != bridge).collect();
                let half = others.len() / 2;
                let (a, b) = others.split_at(half);
                self.partition(&[a.to_vec(), b.to_vec()]);
                let bi = (bridge.get() - 1) as usize;
                for other in 0..self.nodes.len() {
                    self.cut[bi][other] = false;
                    self.cut[other][bi] = false;
                }
            }
            5 => {
                let victim = self.victim();
                self.crash(victim);
                let down = self.rng.range(50_000, 1_500_000);
                self.schedule(
                    down,
                    Event::Restart {
                        node: (victim.get() - 1) as usize,
                    },
                );
            }
            7 => self.majorities_ring(),
            9 => self.change_membership(),
            10 => {
                // A disk that hangs (usually the leader's): its writes complete only much later.
                let victim = self.victim();
                let hang = self.rng.range(200_000, 2_000_000);
                let node = &mut self.nodes[(victim.get() - 1) as usize];
                node.disk_busy_until = node.disk_busy_until.max(self.now) + hang;
                self.stats.disk_hangs += 1;
                self.trace(format_args!("{victim}'s disk hangs for {hang} us"));
            }
            8 => {
                if let Some(leader) = self.leader() {
                    let target = self.random_node();
                    if target != leader {
                        self.transfer_leader(leader, target);
                    }
                }
            }
            _ => {
                for index in 0..self.nodes.len() {
                    self.crash(NodeId(index as u64 + 1));
                }
                for index in 0..self.nodes.len() {
                    let down = self.rng.range(10_000, 500_000);
                    self.schedule(down, Event::Restart { node: index });
                }
            }
        }
        let next = self.rng.range(100_000, 800_000);
        self.schedule(next, Event::Nemesis);
    }

    /// Ends the safety phase: every node up, every link healed, the network calm, disks fast.
    /// Clients each finish their operation and issue one more write.
    pub fn heal_all(&mut self) {
        self.heal_network();
        self.calm_network();
        self.disk_latency_us = (50, 500);
        for index in 0..self.nodes.len() {
            self.restart(NodeId(index as u64 + 1));
        }
        self.phase = Phase::Liveness {
            healed_at: self.now,
        };
        for client in 0..self.clients.len() {
            self.schedule(0, Event::ClientNext { client });
        }
    }
}
