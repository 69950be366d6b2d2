//! The checks run on the cluster as it goes: each node's invariants, every commit against
//! the global record, log matching, and convergence at the end.

use super::*;

impl Sim {
    /// Invariants of one node after it handled an event.
    pub(super) fn check_node(&mut self, index: usize) {
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let raw = node.raw();
        let id = self.nodes[index].id;
        if let Err(violation) = raw.check_invariants() {
            self.checker.observe_node_invariant(id, violation);
        }
        let role = raw.role();
        let term = raw.term();
        self.checker.observe_role(id, term, role);
        if role == Role::Leader && self.nodes[index].last_role != Role::Leader {
            let node = self.nodes[index].node.as_ref().expect("up");
            let first_index = raft::Storage::first_index(node.raw().storage());
            self.checker
                .observe_new_leader(id, first_index, |at| node.raw().term_at(at));
            if let Phase::Liveness { healed_at } = self.phase
                && self.stats.heal_to_leader_us.is_none()
            {
                self.stats.heal_to_leader_us = Some(self.now - healed_at);
            }
        }
        self.nodes[index].last_role = role;
        self.check_commit(index, None);
    }

    /// Committed entries never change, never go back, and are durable on a quorum.
    /// `conf_before`: the configuration before the node applied entries in this event, if it
    /// may have changed since.
    pub(super) fn check_commit(&mut self, index: usize, conf_before: Option<&ConfState>) {
        let Some(node) = self.nodes[index].node.as_ref() else {
            return;
        };
        let id = self.nodes[index].id;
        let committed = node.raw().committed();
        let checked = self.nodes[index].checked_commit;
        if committed < checked {
            self.checker
                .observe_commit_regression(id, checked, committed);
        } else if committed > checked {
            let entries = node.raw().entries(checked.next(), committed.next());
            let conf = node.raw().conf_state().clone();
            let confs: Vec<&ConfState> = std::iter::once(&conf).chain(conf_before).collect();
            let disks: Vec<(NodeId, &dyn raft::Storage)> = self
                .nodes
                .iter()
                .map(|n| (n.id, n.disk.quorum_view()))
                .collect();
            let known = self.checker.committed_len();
            self.checker.observe_commit(id, &entries, &disks, &confs);
            self.nodes[index].checked_commit = committed;
            // Entries committed for the first time go to the watchers' truth, once each.
            for entry in &entries {
                let at = entry.index.get();
                if at > known
                    && at <= self.checker.committed_len()
                    && entry.kind == raft::EntryKind::Normal
                {
                    self.truth.feed(at, &entry.data);
                }
            }
        }
    }

    pub(super) fn check_log_matching(&mut self) {
        let logs: Vec<(NodeId, u64, Vec<EntryPrint>)> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref().map(|node| (n.id, node)))
            .map(|(id, node)| {
                let last = node.raw().last_index();
                let first = raft::Storage::first_index(node.raw().storage());
                let prints = node
                    .raw()
                    .entries(first, last.next())
                    .iter()
                    .map(EntryPrint::of)
                    .collect();
                (id, first.get(), prints)
            })
            .collect();
        self.checker.check_log_matching(&logs);
    }

    /// Whether every member is up and has applied the same entries to the same state. Members
    /// are those of the leader's configuration (spares never added and removed nodes are not).
    pub fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let Some(conf) = self.nodes[(leader.get() - 1) as usize]
            .node
            .as_ref()
            .map(|node| node.raw().conf_state().clone())
        else {
            return false;
        };
        // A joint configuration must have been left: membership changes finish too.
        if conf.is_joint() {
            return false;
        }
        let members = conf.members();
        // A node whose WAL refused to open stays down (and is a violation unless a test damaged
        // its disk on purpose).
        let mut nodes = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.id))
            .filter(|n| n.disk.log().error().is_none())
            .map(|n| n.node.as_ref());
        let Some(Some(first)) = nodes.next() else {
            return false;
        };
        let applied = first.applied();
        let digest = first.state_machine().digest();
        applied >= first.raw().committed()
            && applied.get() >= self.checker.committed_len()
            && nodes.all(|n| {
                n.is_some_and(|n| n.applied() == applied && n.state_machine().digest() == digest)
            })
    }
}
