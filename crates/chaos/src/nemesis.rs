//! The nemesis: a seeded schedule of faults against real processes and links.
//!
//! Faults run one at a time: inject, hold for a random while, undo, pause, repeat. Kinds,
//! targets, variants and timings all come from the seed; which member is *leader* when a
//! leader-biased fault strikes depends on the run, so two runs with one seed inject the same
//! sequence of fault kinds at the same times but not always against the same member.

use std::fmt;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::history::Clock;
use crate::proxy::LinkMode;
use crate::rng::Rng;

/// The kinds of fault the nemesis can inject (`--nemesis` names in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of the leader or a random member, restarted later with the same command line
    /// (`kill`).
    Kill,
    /// SIGSTOP of the leader or a random member for up to a few election timeouts, then
    /// SIGCONT (`pause`).
    Pause,
    /// Network partitions through the proxies: isolate one member, a random minority/majority
    /// split, a one-way (asymmetric) cut, a bridge, or a majorities ring (`partition`).
    Partition,
    /// Added latency on all links or on the leader's links (`delay`).
    Delay,
    /// One-way loss: bytes silently discarded on some directed links (`loss`).
    Loss,
    /// MemberRemove a member, kill it, wipe its data, MemberAdd it back with the same peer URL
    /// and start it with `--initial-cluster-state existing` (`membership`).
    Membership,
    /// kill -9, then a torn record after the valid end of the WAL, then restart (`torn-wal`).
    TornWal,
}

impl FaultKind {
    /// Every kind, in the order `--nemesis all` lists them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Membership,
        FaultKind::TornWal,
    ];

    /// The `--nemesis` name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Membership => "membership",
            FaultKind::TornWal => "torn-wal",
        }
    }

    /// Parses a comma-separated list; `all` means every kind, `none` no fault at all.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        let mut kinds = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => kinds.push(
                    *FaultKind::ALL
                        .iter()
                        .find(|kind| kind.name() == word)
                        .ok_or_else(|| {
                            format!(
                                "unknown nemesis '{word}' (expected all, none or any of: {})",
                                FaultKind::ALL.map(FaultKind::name).join(",")
                            )
                        })?,
                ),
            }
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fault injector and its log.
#[derive(Debug)]
pub struct Nemesis {
    kinds: Vec<FaultKind>,
    rng: Rng,
    clock: Clock,
    /// Timestamped description of every fault and repair, for the artifacts.
    pub log: Vec<String>,
    /// Faults injected so far.
    pub faults: u64,
    verbose: bool,
}

impl Nemesis {
    /// A nemesis drawing from `kinds` with its own random stream.
    pub fn new(kinds: Vec<FaultKind>, rng: Rng, clock: Clock, verbose: bool) -> Nemesis {
        Nemesis {
            kinds,
            rng,
            clock,
            log: Vec::new(),
            faults: 0,
            verbose,
        }
    }

    /// Records (and, when verbose, prints) one event.
    pub fn note(&mut self, message: String) {
        let line = format!("[{:>8.3}s] {message}", self.clock.now_us() as f64 / 1e6);
        if self.verbose {
            println!("nemesis {line}");
        }
        self.log.push(line);
    }

    async fn hold(&mut self, until: Instant, low_ms: u64, high_ms: u64) {
        let wanted = Duration::from_millis(self.rng.between(low_ms, high_ms));
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(wanted.min(left)).await;
    }

    /// The leader half of the time (when there is one), otherwise a random member.
    fn target(&mut self, cluster: &Cluster, leader: Option<usize>) -> usize {
        let random = self.rng.below(cluster.len() as u64) as usize;
        match leader {
            Some(leader) if self.rng.chance(1, 2) => leader,
            _ => random,
        }
    }

    /// Injects faults until `until`, each undone before the next one starts.
    pub async fn run(&mut self, cluster: &mut Cluster, until: Instant) {
        if self.kinds.is_empty() {
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            return;
        }
        loop {
            self.hold(until, 200, 1200).await;
            if Instant::now() >= until {
                return;
            }
            let kind = *self.rng.pick(&self.kinds);
            self.one(cluster, kind, until).await;
        }
    }

    async fn one(&mut self, cluster: &mut Cluster, kind: FaultKind, until: Instant) {
        let leader = cluster.leader().await;
        let n = cluster.len();
        let name = |i: usize| cluster.members()[i].name.clone();
        match kind {
            FaultKind::Kill | FaultKind::TornWal => {
                let t = self.target(cluster, leader);
                let who = name(t);
                cluster.kill(t);
                self.faults += 1;
                self.note(format!("{kind}: kill -9 {who}{}", leader_tag(t, leader)));
                self.hold(until, 300, 2500).await;
                if kind == FaultKind::TornWal {
                    let data_dir = cluster.members()[t].data_dir.clone();
                    match crate::torn::tear_wal_tail(&data_dir, &mut self.rng) {
                        Ok(what) => self.note(format!("torn-wal: {who}: {what}")),
                        Err(error) => self.note(format!("torn-wal: {who}: not torn: {error}")),
                    }
                }
                match cluster.start_member(t) {
                    Ok(()) => self.note(format!("{kind}: restarted {who}")),
                    Err(error) => self.note(format!("{kind}: restart of {who} failed: {error}")),
                }
            }
            FaultKind::Pause => {
                let t = self.target(cluster, leader);
                let who = name(t);
                if let Err(error) = cluster.pause(t) {
                    self.note(format!("pause: {who}: {error}"));
                    return;
                }
                self.faults += 1;
                self.note(format!("pause: SIGSTOP {who}{}", leader_tag(t, leader)));
                self.hold(until, 300, 2500).await;
                let _ = cluster.resume(t);
                self.note(format!("pause: SIGCONT {who}"));
            }
            FaultKind::Partition => {
                let description = self.partition(cluster, leader);
                self.faults += 1;
                self.note(format!("partition: {description}"));
                self.hold(until, 500, 3000).await;
                cluster.heal_network();
                self.note("partition: healed".into());
            }
            FaultKind::Delay => {
                let delay = Duration::from_millis(self.rng.between(20, 150));
                let description = match leader {
                    Some(l) if self.rng.chance(1, 2) => {
                        for j in (0..n).filter(|&j| j != l) {
                            cluster.set_link(l, j, LinkMode::Delay(delay));
                            cluster.set_link(j, l, LinkMode::Delay(delay));
                        }
                        format!("{delay:?} on every link of leader {}", name(l))
                    }
                    _ => {
                        for a in 0..n {
                            for b in (0..n).filter(|&b| b != a) {
                                cluster.set_link(a, b, LinkMode::Delay(delay));
                            }
                        }
                        format!("{delay:?} on every link")
                    }
                };
                self.faults += 1;
                self.note(format!("delay: {description}"));
                self.hold(until, 500, 3000).await;
                cluster.heal_network();
                self.note("delay: healed".into());
            }
            FaultKind::Loss => {
                let mut cut = Vec::new();
                if self.rng.chance(1, 2) {
                    let t = self.target(cluster, leader);
                    for j in (0..n).filter(|&j| j != t) {
                        cut.push((t, j));
                    }
                } else {
                    for a in 0..n {
                        for b in (0..n).filter(|&b| b != a) {
                            if self.rng.chance(1, 3) {
                                cut.push((a, b));
                            }
                        }
                    }
                    if cut.is_empty() {
                        cut.push((0, 1));
                    }
                }
                for &(a, b) in &cut {
                    cluster.set_link(a, b, LinkMode::Blackhole);
                }
                let links = cut
                    .iter()
                    .map(|&(a, b)| format!("{}->{}", name(a), name(b)))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.faults += 1;
                self.note(format!("loss: one-way blackhole on {links}"));
                self.hold(until, 500, 3000).await;
                cluster.heal_network();
                self.note("loss: healed".into());
            }
            FaultKind::Membership => self.membership(cluster, until).await,
        }
    }

    fn partition(&mut self, cluster: &Cluster, leader: Option<usize>) -> String {
        let n = cluster.len();
        let names = |group: &[usize]| {
            group
                .iter()
                .map(|&i| cluster.members()[i].name.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut order: Vec<usize> = (0..n).collect();
        self.rng.shuffle(&mut order);
        let variant = self.rng.below(if n >= 5 { 5 } else { 4 });
        match variant {
            0 => {
                let t = self.target(cluster, leader);
                cluster.isolate(t);
                format!("isolate {}{}", names(&[t]), leader_tag(t, leader))
            }
            1 => {
                let minority = self.rng.between(1, ((n - 1) / 2).max(1) as u64) as usize;
                let (small, large) = order.split_at(minority);
                cluster.partition(&[small.to_vec(), large.to_vec()]);
                format!("split [{}] | [{}]", names(small), names(large))
            }
            2 => {
                let t = self.target(cluster, leader);
                let outbound = self.rng.chance(1, 2);
                for j in (0..n).filter(|&j| j != t) {
                    if outbound {
                        cluster.set_link(t, j, LinkMode::Drop);
                    } else {
                        cluster.set_link(j, t, LinkMode::Drop);
                    }
                }
                format!(
                    "one-way: {} {} everyone else{}",
                    names(&[t]),
                    if outbound {
                        "cannot reach"
                    } else {
                        "cannot be reached by"
                    },
                    leader_tag(t, leader)
                )
            }
            3 => {
                let bridge = order[0];
                let rest = &order[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                for &a in left {
                    for &b in right {
                        cluster.set_link(a, b, LinkMode::Drop);
                        cluster.set_link(b, a, LinkMode::Drop);
                    }
                }
                format!(
                    "bridge {} between [{}] and [{}]",
                    names(&[bridge]),
                    names(left),
                    names(right)
                )
            }
            _ => {
                // Majorities ring: each member sees its two ring neighbours (a majority of five
                // with itself), and no two members see the same majority.
                for (pa, &a) in order.iter().enumerate() {
                    for (pb, &b) in order.iter().enumerate() {
                        let distance = pa.abs_diff(pb).min(n - pa.abs_diff(pb));
                        if distance > 1 {
                            cluster.set_link(a, b, LinkMode::Drop);
                        }
                    }
                }
                format!("majorities ring {}", names(&order))
            }
        }
    }

    async fn membership(&mut self, cluster: &mut Cluster, until: Instant) {
        let n = cluster.len();
        let all_up = (0..n).all(|i| cluster.in_config(i) && cluster.is_running(i));
        let Some(leader) = cluster
            .wait_for_leader(Instant::now() + Duration::from_secs(2))
            .await
        else {
            self.note("membership: skipped (no leader)".into());
            return;
        };
        if !all_up || n < 3 {
            self.note("membership: skipped (not every member is up)".into());
            return;
        }
        let t = if self.rng.chance(1, 3) {
            leader
        } else {
            let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
            *self.rng.pick(&others)
        };
        let who = cluster.members()[t].name.clone();
        if let Err(error) = cluster.member_remove(t).await {
            self.note(format!("membership: remove {who} failed: {error}"));
            return;
        }
        self.faults += 1;
        self.note(format!(
            "membership: removed {who}{}",
            leader_tag(t, Some(leader))
        ));
        cluster.kill(t);
        if let Err(error) = cluster.prepare_rejoin(t) {
            self.note(format!("membership: wiping {who} failed: {error}"));
            return;
        }
        self.hold(until, 200, 1500).await;
        match cluster
            .member_add(t, Instant::now() + Duration::from_secs(20))
            .await
        {
            Ok(()) => self.note(format!("membership: re-added {who} (same peer URL)")),
            Err(error) => {
                self.note(format!("membership: re-adding {who} failed: {error}"));
                return;
            }
        }
        match cluster.start_member(t) {
            Ok(()) => self.note(format!("membership: started {who} (existing cluster)")),
            Err(error) => self.note(format!("membership: start of {who} failed: {error}")),
        }
    }

    /// Undoes everything: resumes paused members, clears the proxies, restarts dead members
    /// and re-adds any member a membership fault left out.
    pub async fn heal(&mut self, cluster: &mut Cluster) -> Result<(), String> {
        for i in 0..cluster.len() {
            cluster.resume(i).map_err(|error| error.to_string())?;
        }
        cluster.heal_network();
        for i in 0..cluster.len() {
            if !cluster.in_config(i) {
                let who = cluster.members()[i].name.clone();
                cluster.kill(i);
                cluster.prepare_rejoin(i).map_err(|e| e.to_string())?;
                cluster
                    .member_add(i, Instant::now() + Duration::from_secs(30))
                    .await
                    .map_err(|error| format!("re-adding {who}: {error}"))?;
                self.note(format!("heal: re-added {who}"));
            }
            if !cluster.is_running(i) {
                cluster.start_member(i).map_err(|error| error.to_string())?;
                let who = cluster.members()[i].name.clone();
                self.note(format!("heal: restarted {who}"));
            }
        }
        self.note("heal: all faults cleared".into());
        Ok(())
    }
}

fn leader_tag(target: usize, leader: Option<usize>) -> &'static str {
    if Some(target) == leader {
        " (leader)"
    } else {
        ""
    }
}
