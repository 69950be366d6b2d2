//! The simulated network: delivery with delays, loss, duplication and reordering drawn from
//! the seed, partitions and cut links, and a one-line description of a message for traces.

use super::*;

impl Sim {
    pub(super) fn send(&mut self, from: usize, message: Message) {
        self.stats.messages += 1;
        if let MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        } = message.body
        {
            self.checker
                .observe_vote_granted(message.from, message.term, message.to);
        }
        let to = (message.to.get() as usize).wrapping_sub(1);
        if to >= self.nodes.len() || self.cut[from][to] {
            self.stats.messages_dropped += 1;
            return;
        }
        if self.loss_permille > 0 && self.rng.below(1000) < self.loss_permille {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies =
            if self.duplicate_permille > 0 && self.rng.below(1000) < self.duplicate_permille {
                2
            } else {
                1
            };
        for _ in 1..copies {
            let delay = self.message_delay(from, to);
            self.schedule(
                delay,
                Event::Deliver {
                    to,
                    message: message.clone(),
                },
            );
        }
        let delay = self.message_delay(from, to);
        self.schedule(delay, Event::Deliver { to, message });
    }

    /// How long a message from `from` to `to` takes. Links deliver in order, as the TCP streams
    /// of the real transport do, except when the `reorder` fault lets a message fall behind.
    pub(super) fn message_delay(&mut self, from: usize, to: usize) -> u64 {
        let delay = self.rng.range(self.delay_us.0, self.delay_us.1);
        if self.reorder_permille > 0 && self.rng.below(1000) < self.reorder_permille {
            return delay + self.rng.range(1_000, 40_000);
        }
        let at = (self.now + delay).max(self.link_clear_at[from][to]);
        self.link_clear_at[from][to] = at;
        at - self.now
    }

    /// Cuts every link between the groups (nodes in no group are isolated from everyone).
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let n = self.nodes.len();
        let group_of = |id: usize| {
            groups
                .iter()
                .position(|group| group.contains(&NodeId(id as u64 + 1)))
        };
        for from in 0..n {
            for to in 0..n {
                let same = from == to
                    || matches!((group_of(from), group_of(to)), (Some(a), Some(b)) if a == b);
                self.cut[from][to] = !same;
            }
        }
        self.stats.partitions += 1;
        self.trace(format_args!("partition {groups:?}"));
    }

    /// Cuts the one-way link `from -> to`.
    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut[(from.get() - 1) as usize][(to.get() - 1) as usize] = true;
        self.trace(format_args!("cut {from} -> {to}"));
    }

    /// Nodes on a ring each reach only their nearest neighbours: every node sees a majority
    /// (itself and `reach` neighbours on each side), but no two nodes see the same majority.
    /// PreVote plus CheckQuorum must keep such a cluster live.
    pub fn majorities_ring(&mut self) {
        let n = self.nodes.len();
        let reach = (n / 2).div_ceil(2);
        for from in 0..n {
            for to in 0..n {
                let distance = (from + n - to) % n;
                let distance = distance.min(n - distance);
                self.cut[from][to] = distance > reach;
            }
        }
        self.stats.partitions += 1;
        self.trace(format_args!("majorities ring (reach {reach})"));
    }

    /// Restores every link.
    pub fn heal_network(&mut self) {
        for row in &mut self.cut {
            row.fill(false);
        }
        self.trace(format_args!("network healed"));
    }

    /// Makes the network perfect: no loss, duplication or reordering from now on.
    pub fn calm_network(&mut self) {
        self.loss_permille = 0;
        self.duplicate_permille = 0;
        self.reorder_permille = 0;
    }
}

/// A one-line description of a message for traces.
pub fn describe(message: &Message) -> String {
    let detail = match &message.body {
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            ..
        } => format!("last={last_log_index}/{last_log_term}"),
        MessageBody::RequestVoteResponse { granted, .. } => format!("granted={granted}"),
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => format!(
            "prev={prev_log_index}/{prev_log_term} entries={} commit={leader_commit}",
            entries.len()
        ),
        MessageBody::AppendEntriesResponse(response) => format!("{response:?}"),
        MessageBody::Heartbeat { commit, round } => format!("commit={commit} round={round}"),
        MessageBody::HeartbeatResponse { round } => format!("round={round}"),
        MessageBody::ReadIndex { context } => format!("context={context}"),
        MessageBody::ReadIndexResponse { context, index } => {
            format!("context={context} index={index:?}")
        }
        MessageBody::TimeoutNow => String::new(),
        MessageBody::Propose { entries } => format!("entries={}", entries.len()),
        MessageBody::InstallSnapshot { snapshot } => format!(
            "index={} term={} bytes={}",
            snapshot.metadata.index,
            snapshot.metadata.term,
            snapshot.data.len()
        ),
    };
    format!(
        "{} from {} {} {detail}",
        message.body.kind_name(),
        message.from,
        message.term
    )
}
