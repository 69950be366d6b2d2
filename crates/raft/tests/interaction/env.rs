//! The interaction environment: in-memory nodes that a script drives one step at a time, and the
//! text each step prints.
//!
//! Nothing happens unless a command says so: no message is delivered, no Ready is handled and no
//! clock moves by itself, so a script shows every hop of the protocol. A node is a
//! `RawNode<MemStorage>` with the default configuration (seeded by its id, so election timeouts
//! are the same on every run); its `MemStorage` is its disk. The network is one FIFO queue of
//! messages in send order, with cut links that drop what crosses them at delivery.
//!
//! Handling a Ready follows the contract of `raw_node.rs` step by step, and the output is in
//! that order: `messages` go on the network at once; the snapshot, hard state and entries are
//! written to the storage and acknowledged with `on_persisted`; only then do the
//! `persisted_messages` go out; then the committed entries are applied (a membership change by
//! `apply_conf_change`, as an embedder does). With `persist=false` the write is left pending, as
//! a slow disk leaves it, until `persist` completes it, so a script can show that nothing that
//! promises durable state leaves before the write.

use super::datadriven::{Arg, Case};
use bytes::Bytes;
use raft::{
    AppendResponse, ConfChange, ConfChangeSingle, ConfChangeType, ConfState, Config, DropReason,
    Entry, EntryKind, MemStorage, Message, MessageBody, NodeId, RawNode, Ready, Storage,
    tracker::ProgressState,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

/// One member: its node and the Readies it took whose writes have not completed.
struct Node {
    raw: RawNode<MemStorage>,
    config: Config,
    pending: VecDeque<Ready>,
}

/// The nodes, the network between them and the output of the command being run.
#[derive(Default)]
pub struct Env {
    nodes: BTreeMap<u64, Node>,
    /// Messages sent and not yet delivered or dropped, in send order.
    network: Vec<Message>,
    /// Directed links `(from, to)` that drop every message.
    cut: BTreeSet<(u64, u64)>,
    out: String,
}

/// What a command's arguments say, with errors that name the argument.
struct Args<'a>(&'a [Arg]);

impl Args<'_> {
    /// The bare numbers (node ids, counts), in order.
    fn numbers(&self) -> Result<Vec<u64>, String> {
        self.0
            .iter()
            .filter(|arg| arg.values.is_empty())
            .map(|arg| {
                arg.key
                    .parse()
                    .map_err(|_| format!("expected a number, got `{}`", arg.key))
            })
            .collect()
    }

    /// The bare words, in order.
    fn words(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|arg| arg.values.is_empty())
            .map(|arg| arg.key.as_str())
            .collect()
    }

    fn values(&self, key: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|arg| arg.key == key && !arg.values.is_empty())
            .map(|arg| arg.values.as_slice())
    }

    fn number_list(&self, key: &str) -> Result<Option<Vec<u64>>, String> {
        self.values(key)
            .map(|values| {
                values
                    .iter()
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("{key}: `{v}` is not a number"))
                    })
                    .collect()
            })
            .transpose()
    }

    fn number(&self, key: &str) -> Result<Option<u64>, String> {
        match self.values(key) {
            None => Ok(None),
            Some([value]) => value
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}: `{value}` is not a number")),
            Some(_) => Err(format!("{key} takes one value")),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        match self.values(key) {
            None => Ok(None),
            Some([value]) if value == "true" => Ok(Some(true)),
            Some([value]) if value == "false" => Ok(Some(false)),
            Some(_) => Err(format!("{key} is true or false")),
        }
    }
}

/// `(1,2,3)`.
fn ids(list: &[NodeId]) -> String {
    let items: Vec<String> = list.iter().map(|id| id.get().to_string()).collect();
    format!("({})", items.join(","))
}

/// A configuration, with only the parts in use.
fn conf(conf: &ConfState) -> String {
    let mut text = format!("voters={}", ids(&conf.voters));
    if !conf.learners.is_empty() {
        let _ = write!(text, " learners={}", ids(&conf.learners));
    }
    if conf.is_joint() {
        let _ = write!(text, " outgoing={}", ids(&conf.voters_outgoing));
    }
    if !conf.learners_next.is_empty() {
        let _ = write!(text, " learners-next={}", ids(&conf.learners_next));
    }
    if conf.auto_leave {
        text.push_str(" auto-leave");
    }
    text
}

/// A membership change in etcd's short notation: `v4` add voter, `l5` add learner, `r2` remove.
fn change(change: &ConfChange) -> String {
    if change.is_leave_joint() {
        return "leave-joint".to_string();
    }
    let items: Vec<String> = change
        .changes
        .iter()
        .map(|single| {
            let kind = match single.change {
                ConfChangeType::AddVoter => 'v',
                ConfChangeType::AddLearner => 'l',
                ConfChangeType::RemoveNode => 'r',
            };
            format!("{kind}{}", single.node.get())
        })
        .collect();
    items.join(" ")
}

/// `t2/i3 Normal "foo"`: term and index first, as a log position is written everywhere here.
fn entry(entry: &Entry) -> String {
    let position = format!("t{}/i{}", entry.term.get(), entry.index.get());
    match entry.kind {
        EntryKind::Empty => format!("{position} Empty"),
        EntryKind::Normal => format!(
            "{position} Normal {:?}",
            String::from_utf8_lossy(&entry.data)
        ),
        EntryKind::ConfChange => match ConfChange::decode(&entry.data) {
            Ok(decoded) => format!("{position} ConfChange {}", change(&decoded)),
            Err(error) => format!("{position} ConfChange <{error}>"),
        },
    }
}

fn entries(list: &[Entry]) -> String {
    let items: Vec<String> = list.iter().map(entry).collect();
    format!("[{}]", items.join(", "))
}

/// One message on one line: `from->to Kind term=T fields`.
pub fn message(message: &Message) -> String {
    let head = format!(
        "{}->{} {} term={}",
        message.from.get(),
        message.to.get(),
        message.body.kind_name(),
        message.term.get()
    );
    let body = match &message.body {
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            transfer,
            ..
        } => format!(
            "last=t{}/i{}{}",
            last_log_term.get(),
            last_log_index.get(),
            if *transfer { " transfer" } else { "" }
        ),
        MessageBody::RequestVoteResponse { granted, .. } => {
            (if *granted { "granted" } else { "rejected" }).to_string()
        }
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: list,
            leader_commit,
        } => format!(
            "prev=t{}/i{} commit={} entries={}",
            prev_log_term.get(),
            prev_log_index.get(),
            leader_commit.get(),
            entries(list)
        ),
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => {
            format!("accepted match={}", match_index.get())
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) => format!(
            "rejected index={} hint=t{}/i{}",
            rejected_index.get(),
            hint_term.get(),
            hint_index.get()
        ),
        MessageBody::Heartbeat { commit, round } => {
            format!("commit={} round={round}", commit.get())
        }
        MessageBody::HeartbeatResponse { round } => format!("round={round}"),
        MessageBody::Propose { entries: list } => {
            let items: Vec<String> = list
                .iter()
                .map(|data| format!("{:?}", String::from_utf8_lossy(data)))
                .collect();
            format!("entries=[{}]", items.join(", "))
        }
        MessageBody::ReadIndex { context } => format!("ctx={context}"),
        MessageBody::ReadIndexResponse { context, index } => match index {
            Some(index) => format!("ctx={context} index={}", index.get()),
            None => format!("ctx={context} refused"),
        },
        MessageBody::TimeoutNow => String::new(),
        MessageBody::InstallSnapshot { snapshot } => format!(
            "snapshot=t{}/i{} {}",
            snapshot.metadata.term.get(),
            snapshot.metadata.index.get(),
            conf(&snapshot.metadata.conf_state)
        ),
    };
    if body.is_empty() {
        head
    } else {
        format!("{head} {body}")
    }
}

fn drop_counts(raw: &RawNode<MemStorage>) -> Vec<u64> {
    DropReason::ALL.iter().map(|r| raw.dropped(*r)).collect()
}

impl Env {
    /// Runs one command and returns what it printed (`ok` if nothing). An error is a mistake in
    /// the script (an unknown command, a bad argument), not a behaviour of the core: the core's
    /// refusals (a proposal to a follower, ...) are printed as output.
    pub fn run(&mut self, case: &Case) -> Result<String, String> {
        self.out.clear();
        let args = Args(&case.args);
        match case.name.as_str() {
            "add-nodes" => self.add_nodes(&args)?,
            "campaign" => {
                for id in args.numbers()? {
                    self.node(id)?.raw.campaign();
                    self.state_line(id);
                }
            }
            "propose" => {
                let [id, data] = args.words()[..] else {
                    return Err("propose ID DATA".into());
                };
                let id = id.parse().map_err(|_| "propose ID DATA")?;
                let data = Bytes::copy_from_slice(data.as_bytes());
                let result = self.node(id)?.raw.propose(data);
                self.print_position(result);
            }
            "forward-proposal" => {
                let [id, data] = args.words()[..] else {
                    return Err("forward-proposal ID DATA".into());
                };
                let id = id.parse().map_err(|_| "forward-proposal ID DATA")?;
                let data = Bytes::copy_from_slice(data.as_bytes());
                match self.node(id)?.raw.forward_proposal(data) {
                    Ok(leader) => self.line(format!("forwarded to {}", leader.get())),
                    Err(error) => self.line(format!("error: {error}")),
                }
            }
            "propose-conf-change" => self.propose_conf_change(&args)?,
            "tick-heartbeat" | "tick-election" | "tick" => self.tick(&case.name, &args)?,
            "process-ready" => {
                let persist = args.flag("persist")?.unwrap_or(true);
                for id in args.numbers()? {
                    self.node(id)?;
                    self.process_ready(id, persist);
                }
            }
            "persist" => {
                for id in args.numbers()? {
                    self.node(id)?;
                    self.line(format!("> {id} completing its writes"));
                    self.complete_writes(id);
                }
            }
            "deliver-msgs" => {
                let drop = args.number_list("drop")?.unwrap_or_default();
                for id in drop {
                    self.drop_messages_to(id);
                }
                for id in args.numbers()? {
                    self.deliver(id);
                }
            }
            "stabilize" => {
                let mut ids = args.numbers()?;
                if ids.is_empty() {
                    ids = self.nodes.keys().copied().collect();
                }
                self.stabilize(&ids)?;
            }
            "status" => {
                for id in args.numbers()? {
                    self.status(id)?;
                }
            }
            "raft-state" => {
                let ids: Vec<u64> = self.nodes.keys().copied().collect();
                for id in ids {
                    self.state_line(id);
                }
            }
            "raft-log" => {
                for id in args.numbers()? {
                    self.raft_log(id)?;
                }
            }
            "isolate" => {
                let all: Vec<u64> = self.nodes.keys().copied().collect();
                for id in args.numbers()? {
                    for &other in all.iter().filter(|other| **other != id) {
                        self.cut.insert((id, other));
                        self.cut.insert((other, id));
                    }
                }
            }
            "partition" => self.partition(&case.args)?,
            "heal" => self.cut.clear(),
            "transfer-leadership" => {
                let (Some(from), Some(to)) = (args.number("from")?, args.number("to")?) else {
                    return Err("transfer-leadership from=ID to=ID".into());
                };
                match self.node(from)?.raw.transfer_leader(NodeId(to)) {
                    Ok(()) => self.line("ok".to_string()),
                    Err(error) => self.line(format!("error: {error}")),
                }
            }
            "read-index" => {
                let [id, context] = args.numbers()?[..] else {
                    return Err("read-index ID CONTEXT".into());
                };
                match self.node(id)?.raw.read_index(context) {
                    Ok(()) => self.line("ok".to_string()),
                    Err(error) => self.line(format!("error: {error}")),
                }
            }
            "restart" => {
                for id in args.numbers()? {
                    self.restart(id)?;
                }
            }
            other => return Err(format!("unknown command `{other}`")),
        }
        let mut output = std::mem::take(&mut self.out);
        if output.ends_with('\n') {
            output.pop();
        }
        if output.is_empty() {
            output = "ok".to_string();
        }
        Ok(output)
    }

    fn line(&mut self, text: String) {
        self.out.push_str(&text);
        self.out.push('\n');
    }

    fn node(&mut self, id: u64) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn print_position<E: std::fmt::Display>(
        &mut self,
        result: Result<(raft::LogIndex, raft::Term), E>,
    ) {
        match result {
            Ok((index, term)) => self.line(format!("proposed at t{}/i{}", term.get(), index.get())),
            Err(error) => self.line(format!("error: {error}")),
        }
    }

    /// `add-nodes N [voters=(..)] [learners=(..)] [join=true] [prevote=..] [checkquorum=..]
    /// [max-size-per-msg=..] [max-inflight=..]`: nodes with the next N ids. A founding node's
    /// log starts with the founding configuration as entry 1 (`MemStorage::bootstrap`, as every
    /// real member starts), applied at once; a joining node (`join=true`) starts empty, as a new
    /// server does before a membership change names it.
    fn add_nodes(&mut self, args: &Args) -> Result<(), String> {
        let [count] = args.numbers()?[..] else {
            return Err("add-nodes N [options]".into());
        };
        let first = self.nodes.keys().last().map_or(1, |last| last + 1);
        let new_ids: Vec<u64> = (first..first + count).collect();
        let voters = args.number_list("voters")?.unwrap_or(new_ids.clone());
        let learners = args.number_list("learners")?.unwrap_or_default();
        let join = args.flag("join")?.unwrap_or(false);
        for &id in &new_ids {
            let mut config = Config::new(NodeId(id));
            if let Some(pre_vote) = args.flag("prevote")? {
                config.pre_vote = pre_vote;
            }
            if let Some(check_quorum) = args.flag("checkquorum")? {
                config.check_quorum = check_quorum;
            }
            if let Some(size) = args.number("max-size-per-msg")? {
                config.max_size_per_msg = size;
            }
            if let Some(inflight) = args.number("max-inflight")? {
                config.max_inflight_msgs = inflight as usize;
            }
            let storage = if join {
                MemStorage::default()
            } else {
                let mut founders = ConfState::with_voters(voters.iter().copied().map(NodeId));
                founders.learners = learners.iter().copied().map(NodeId).collect();
                MemStorage::bootstrap(&founders)
            };
            let raw = RawNode::new(&config, storage).map_err(|e| format!("{e}"))?;
            self.nodes.insert(
                id,
                Node {
                    raw,
                    config,
                    pending: VecDeque::new(),
                },
            );
            // Applying entry 1 is setup, not behaviour under test: done quietly.
            let before = self.out.len();
            while self.nodes[&id].raw.has_ready() {
                self.process_ready(id, true);
            }
            self.out.truncate(before);
            self.state_line(id);
        }
        Ok(())
    }

    /// `propose-conf-change ID v4 l5 r2 ...`; no operation at all proposes leaving a joint
    /// configuration.
    fn propose_conf_change(&mut self, args: &Args) -> Result<(), String> {
        let words = args.words();
        let Some((id, operations)) = words.split_first() else {
            return Err("propose-conf-change ID [v4 l5 r2 ...]".into());
        };
        let id: u64 = id.parse().map_err(|_| "propose-conf-change ID ...")?;
        let mut changes = Vec::new();
        for operation in operations {
            let (kind, node) = operation.split_at(1);
            let change = match kind {
                "v" => ConfChangeType::AddVoter,
                "l" => ConfChangeType::AddLearner,
                "r" => ConfChangeType::RemoveNode,
                _ => return Err(format!("`{operation}`: expected v<id>, l<id> or r<id>")),
            };
            let node = node
                .parse()
                .map_err(|_| format!("`{operation}`: bad node id"))?;
            changes.push(ConfChangeSingle {
                change,
                node: NodeId(node),
            });
        }
        let result = self
            .node(id)?
            .raw
            .propose_conf_change(&ConfChange { changes });
        self.print_position(result);
        Ok(())
    }

    /// `tick-heartbeat ID...` ticks a heartbeat interval; `tick-election ID...` ticks until an
    /// election timeout has passed: on a leader exactly `election_timeout_ticks` (when CheckQuorum
    /// looks), elsewhere until the node acts (its randomized timeout is in `[T, 2T)`), at most
    /// 2T ticks; `tick ID... n=K` ticks K times. Each node's state is printed afterwards.
    fn tick(&mut self, name: &str, args: &Args) -> Result<(), String> {
        for id in args.numbers()? {
            let node = self.node(id)?;
            let election = node.config.election_timeout_ticks;
            let ticks = match name {
                "tick-heartbeat" => node.config.heartbeat_interval_ticks,
                "tick" => args.number("n")?.unwrap_or(1) as u32,
                _ => {
                    if node.raw.role() == raft::Role::Leader {
                        election
                    } else {
                        let mut ticked = 0;
                        // The timer fired if the role or term changed, or if a node with
                        // nothing to hand out has something now (a pre-candidate that
                        // pre-campaigns again).
                        let before = (node.raw.role(), node.raw.term());
                        let had_ready = node.raw.has_ready();
                        while ticked < 2 * election {
                            node.raw.tick();
                            ticked += 1;
                            if (node.raw.role(), node.raw.term()) != before
                                || (!had_ready && node.raw.has_ready())
                            {
                                break;
                            }
                        }
                        self.line(format!("{id} ticked {ticked} times"));
                        self.state_line(id);
                        continue;
                    }
                }
            };
            for _ in 0..ticks {
                self.node(id)?.raw.tick();
            }
            self.state_line(id);
        }
        Ok(())
    }

    /// `partition (1,2) (3,4,5)`: members of different groups cannot talk to each other.
    fn partition(&mut self, raw_args: &[Arg]) -> Result<(), String> {
        let mut groups = Vec::new();
        for arg in raw_args {
            let list = arg
                .key
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or("partition (1,2) (3,4,5)")?;
            let group: Result<Vec<u64>, _> =
                list.split(',').map(|id| id.trim().parse::<u64>()).collect();
            groups.push(group.map_err(|_| "partition (1,2) (3,4,5)")?);
        }
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a {
                        for &y in b {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `id: role term=.. vote=.. lead=.. commit=.. applied=.. last=..`.
    fn state_line(&mut self, id: u64) {
        let raw = &self.nodes[&id].raw;
        let status = raw.status();
        let text = format!(
            "{id}: {} term={} vote={} lead={} commit={} applied={} last={}",
            status.soft_state.role,
            status.hard_state.term.get(),
            status.hard_state.vote.get(),
            status.soft_state.leader.get(),
            status.hard_state.commit.get(),
            status.applied.get(),
            status.last_index.get(),
        );
        self.line(text);
    }

    fn status(&mut self, id: u64) -> Result<(), String> {
        self.node(id)?;
        self.state_line(id);
        let raw = &self.nodes[&id].raw;
        let mut text = format!("config: {}\n", conf(raw.conf_state()));
        if raw.lead_transferee().is_some() {
            let _ = writeln!(text, "transferring to {}", raw.lead_transferee().get());
        }
        let progress = raw.status().progress;
        if !progress.is_empty() {
            text.push_str("progress:\n");
        }
        for p in progress {
            let state = match p.state {
                ProgressState::Probe if p.probe_sent => "probe (waiting)".to_string(),
                ProgressState::Probe => "probe".to_string(),
                ProgressState::Replicate => format!("replicate inflight={}", p.inflights.count()),
                ProgressState::Snapshot { pending_index } => {
                    format!("snapshot pending={}", pending_index.get())
                }
            };
            let _ = writeln!(
                text,
                "  {}: {} match={} next={} {state}{}",
                p.id.get(),
                if p.is_voter { "voter" } else { "learner" },
                p.match_index.get(),
                p.next_index.get(),
                if p.recent_active { " active" } else { "" }
            );
        }
        self.out.push_str(&text);
        Ok(())
    }

    /// The durable log (what the storage holds).
    fn raft_log(&mut self, id: u64) -> Result<(), String> {
        let storage = self.node(id)?.raw.storage();
        let first = storage.first_index();
        let list = storage
            .entries(first, storage.last_index().next(), u64::MAX)
            .map_err(|e| format!("{e:?}"))?;
        let text: Vec<String> = list.iter().map(entry).collect();
        if text.is_empty() {
            self.line(format!("{id}: log is empty"));
        }
        for line in text {
            self.line(line);
        }
        Ok(())
    }

    /// Rebuilds the node from its storage: everything volatile (role, leader, timers, progress,
    /// writes not completed) is lost, the durable hard state and log are kept. The state
    /// machine starts empty and replays the committed log, quietly, as `add-nodes` applies
    /// entry 1: the configuration comes back by replaying the membership changes (the storage
    /// only gives the one at its snapshot).
    fn restart(&mut self, id: u64) -> Result<(), String> {
        let node = self.node(id)?;
        node.pending.clear();
        let storage = node.raw.storage().clone();
        node.raw = RawNode::new(&node.config, storage).map_err(|e| format!("{e}"))?;
        let before = self.out.len();
        while self.nodes[&id].raw.has_ready() {
            self.process_ready(id, true);
        }
        self.out.truncate(before);
        self.state_line(id);
        Ok(())
    }

    /// Takes one Ready of `id` and prints it in contract order; with `persist`, completes its
    /// write at once.
    fn process_ready(&mut self, id: u64, persist: bool) {
        let node = self.nodes.get_mut(&id).expect("checked");
        if !node.raw.has_ready() {
            self.line(format!("> {id} has no Ready"));
            return;
        }
        let ready = node.raw.ready();
        let mut text = format!(
            "> {id} handling Ready{}\n",
            if persist { "" } else { " (write left pending)" }
        );
        if let Some(soft) = ready.soft_state {
            let _ = writeln!(text, "  {} lead={}", soft.role, soft.leader.get());
        }
        if let Some(hard) = ready.hard_state {
            let _ = writeln!(
                text,
                "  hard state: term={} vote={} commit={}{}",
                hard.term.get(),
                hard.vote.get(),
                hard.commit.get(),
                if ready.must_sync {
                    ""
                } else {
                    " (no sync needed)"
                }
            );
        }
        if let Some(snapshot) = &ready.snapshot {
            let _ = writeln!(
                text,
                "  snapshot: t{}/i{} {}",
                snapshot.metadata.term.get(),
                snapshot.metadata.index.get(),
                conf(&snapshot.metadata.conf_state)
            );
        }
        if !ready.entries.is_empty() {
            text.push_str("  entries:\n");
            for e in &ready.entries {
                let _ = writeln!(text, "    {}", entry(e));
            }
        }
        if !ready.messages.is_empty() {
            text.push_str("  messages:\n");
            for m in &ready.messages {
                let _ = writeln!(text, "    {}", message(m));
            }
        }
        if !persist && !ready.persisted_messages.is_empty() {
            let _ = writeln!(
                text,
                "  ({} persisted messages wait for the write)",
                ready.persisted_messages.len()
            );
        }
        let empty = ready.soft_state.is_none()
            && ready.hard_state.is_none()
            && ready.snapshot.is_none()
            && ready.entries.is_empty()
            && ready.messages.is_empty()
            && ready.persisted_messages.is_empty()
            && ready.committed_entries.is_empty()
            && ready.read_states.is_empty();
        if empty {
            text.push_str("  (an empty Ready)\n");
        }
        self.out.push_str(&text);
        self.network.extend(ready.messages.iter().cloned());
        let node = self.nodes.get_mut(&id).expect("checked");
        node.pending.push_back(ready);
        if persist {
            self.complete_writes(id);
        }
    }

    /// Completes every pending write of `id`, oldest first: write to the storage, acknowledge,
    /// send the messages that waited for the write, apply.
    fn complete_writes(&mut self, id: u64) {
        let mut text = String::new();
        let node = self.nodes.get_mut(&id).expect("checked");
        while let Some(ready) = node.pending.pop_front() {
            if let Some(snapshot) = &ready.snapshot {
                node.raw.storage_mut().apply_snapshot(snapshot.clone());
            }
            if let Some(hard_state) = ready.hard_state {
                node.raw.storage_mut().set_hard_state(hard_state);
            }
            node.raw.storage_mut().append(&ready.entries);
            node.raw.on_persisted(ready.number);
            if !ready.persisted_messages.is_empty() {
                text.push_str("  persisted messages (sent after the write):\n");
                for m in &ready.persisted_messages {
                    let _ = writeln!(text, "    {}", message(m));
                }
            }
            self.network
                .extend(ready.persisted_messages.iter().cloned());
            if !ready.committed_entries.is_empty() {
                text.push_str("  committed entries (applied):\n");
            }
            for e in &ready.committed_entries {
                let _ = writeln!(text, "    {}", entry(e));
                if e.kind != EntryKind::ConfChange {
                    continue;
                }
                let applied = ConfChange::decode(&e.data)
                    .map_err(|error| error.to_string())
                    .and_then(|decoded| {
                        node.raw
                            .apply_conf_change(&decoded)
                            .map_err(|error| error.to_string())
                    });
                match applied {
                    Ok(conf_state) => {
                        let _ = writeln!(text, "      config now {}", conf(&conf_state));
                        node.raw.storage_mut().set_conf_state(conf_state);
                    }
                    Err(error) => {
                        let _ = writeln!(text, "      not applied: {error}");
                    }
                }
            }
            for read in &ready.read_states {
                let _ = match read.index {
                    Some(index) => writeln!(
                        text,
                        "  read state: ctx={} index={}",
                        read.context,
                        index.get()
                    ),
                    None => writeln!(text, "  read state: ctx={} refused", read.context),
                };
            }
        }
        self.out.push_str(&text);
    }

    /// Drops every queued message to `id`, printing each.
    fn drop_messages_to(&mut self, id: u64) {
        let (dropped, kept): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| m.to.get() == id);
        self.network = kept;
        for m in dropped {
            self.line(format!("dropped: {}", message(&m)));
        }
    }

    /// Delivers every queued message to `id`, in send order, printing each; those across a cut
    /// link or to an unknown node are dropped; a message the node ignores is marked with the
    /// reason it counted.
    fn deliver(&mut self, id: u64) {
        let (batch, kept): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| m.to.get() == id);
        self.network = kept;
        if batch.is_empty() {
            return;
        }
        self.line(format!("> {id} receiving messages"));
        for m in batch {
            let text = message(&m);
            if self.cut.contains(&(m.from.get(), id)) {
                self.line(format!("  {text} DROPPED (partitioned)"));
                continue;
            }
            let Some(node) = self.nodes.get_mut(&id) else {
                self.line(format!("  {text} DROPPED (no such node)"));
                continue;
            };
            let before = drop_counts(&node.raw);
            node.raw.step(m);
            let after = drop_counts(&node.raw);
            let reasons: Vec<String> = DropReason::ALL
                .iter()
                .zip(before.iter().zip(&after))
                .filter(|(_, (b, a))| a > b)
                .map(|(reason, _)| format!("{reason:?}"))
                .collect();
            if reasons.is_empty() {
                self.line(format!("  {text}"));
            } else {
                self.line(format!("  {text} IGNORED ({})", reasons.join(", ")));
            }
        }
    }

    /// Handles Readies and delivers messages among `ids` until none has anything left to do.
    fn stabilize(&mut self, ids: &[u64]) -> Result<(), String> {
        for id in ids {
            self.node(*id)?;
        }
        for _ in 0..1000 {
            let mut done = true;
            for &id in ids {
                if !self.nodes[&id].pending.is_empty() {
                    self.line(format!("> {id} completing its writes"));
                    self.complete_writes(id);
                    done = false;
                }
                if self.nodes[&id].raw.has_ready() {
                    self.process_ready(id, true);
                    done = false;
                }
            }
            for &id in ids {
                if self.network.iter().any(|m| m.to.get() == id) {
                    self.deliver(id);
                    done = false;
                }
            }
            if done {
                return Ok(());
            }
        }
        Err("stabilize: the nodes did not become quiet in 1000 rounds".into())
    }
}
