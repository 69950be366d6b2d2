//! What a simulation run looks like: cluster size, which faults, how long. Derived from one seed.

use raft::Rng;
use std::fmt;
use wal::WalOptions;

/// The faults a run may inject. `--faults all` lets each seed pick a random subset (swarm
/// testing: some seeds hammer one fault hard, which finds bugs that an even mix dilutes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSet {
    /// Drop messages at random.
    pub loss: bool,
    /// Deliver some messages twice.
    pub duplicate: bool,
    /// Large, variable delays, so messages overtake each other.
    pub reorder: bool,
    /// Partitions: symmetric splits, an isolated node, one-way links, a bridge node.
    pub partition: bool,
    /// Crash a node (leader-biased) and restart it later, losing unsynced writes.
    pub crash: bool,
    /// Crash every node at once.
    pub crash_all: bool,
    /// Slow, variable disk syncs.
    pub slow_disk: bool,
    /// Clients that give up on a request (its outcome becomes unknown).
    pub give_up: bool,
    /// Figure-8 churn: crash the leader right after proposals, tens of times a second, keeping
    /// just about a quorum up.
    pub churn: bool,
    /// Membership changes: add learners, promote them, remove voters (the leader too), several
    /// at once through a joint configuration. Two spare nodes wait to be added.
    pub membership: bool,
    /// Aggressive log compaction on random nodes, so lagging followers get snapshots.
    pub compaction: bool,
}

impl FaultSet {
    /// Every fault.
    pub const ALL: FaultSet = FaultSet {
        loss: true,
        duplicate: true,
        reorder: true,
        partition: true,
        crash: true,
        crash_all: true,
        slow_disk: true,
        give_up: true,
        churn: true,
        membership: true,
        compaction: true,
    };

    const NAMES: [&'static str; 11] = [
        "loss",
        "duplicate",
        "reorder",
        "partition",
        "crash",
        "crash-all",
        "slow-disk",
        "give-up",
        "churn",
        "membership",
        "compaction",
    ];

    fn flags_mut(&mut self) -> [&mut bool; 11] {
        [
            &mut self.loss,
            &mut self.duplicate,
            &mut self.reorder,
            &mut self.partition,
            &mut self.crash,
            &mut self.crash_all,
            &mut self.slow_disk,
            &mut self.give_up,
            &mut self.churn,
            &mut self.membership,
            &mut self.compaction,
        ]
    }

    fn flags(&self) -> [bool; 11] {
        [
            self.loss,
            self.duplicate,
            self.reorder,
            self.partition,
            self.crash,
            self.crash_all,
            self.slow_disk,
            self.give_up,
            self.churn,
            self.membership,
            self.compaction,
        ]
    }

    /// Parses `all`, `none` or a comma-separated list of fault names.
    pub fn parse(text: &str) -> Result<FaultSet, String> {
        match text {
            "all" => return Ok(FaultSet::ALL),
            "none" => return Ok(FaultSet::default()),
            _ => {}
        }
        let mut set = FaultSet::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let position = FaultSet::NAMES
                .iter()
                .position(|known| *known == name)
                .ok_or_else(|| {
                    format!(
                        "unknown fault {name:?}; known: all, none, {}",
                        FaultSet::NAMES.join(", ")
                    )
                })?;
            *set.flags_mut()[position] = true;
        }
        Ok(set)
    }

    /// A random non-empty subset of `self` (or `self` if empty), chosen by `rng`.
    pub fn swarm(self, rng: &mut Rng) -> FaultSet {
        let allowed = self.flags();
        if !allowed.iter().any(|f| *f) {
            return self;
        }
        loop {
            let mut chosen = FaultSet::default();
            for (slot, flag) in chosen.flags_mut().into_iter().enumerate() {
                *flag = allowed[slot] && rng.chance(1, 2);
            }
            if chosen.flags().iter().any(|f| *f) {
                return chosen;
            }
        }
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FaultSet::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = FaultSet::NAMES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Everything that determines a run besides the seed.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed: the same seed and options replay the same run, event for event.
    pub seed: u64,
    /// Founding cluster size.
    pub nodes: usize,
    /// Extra nodes that start outside the cluster and may be added by membership changes.
    pub spares: usize,
    /// Faults this run may inject (already the seed's swarm choice).
    pub faults: FaultSet,
    /// Virtual microseconds of the safety phase (faults active, clients running).
    pub safety_phase_us: u64,
    /// Virtual microseconds allowed for recovery after the last fault heals.
    pub liveness_phase_us: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients work on (few, so operations contend).
    pub keys: u64,
    /// Record a readable trace of every event.
    pub trace: bool,
    /// Deliberately broken core rules (tests of the checkers only).
    pub core_faults: raft::Faults,
    /// Deliberately broken state machine rules (tests of the checkers only).
    pub machine_faults: machine::MachineFaults,
    /// A deliberately broken writer (tests of the checkers only): it reports each batch
    /// durable when it starts writing it, so a node acknowledges what a crash can still lose.
    pub ack_before_sync: bool,
    /// The options of every node's write-ahead log. Small, preallocated segments by default, so
    /// that runs roll segments and a truncated segment is told from a torn write.
    pub wal: WalOptions,
}

impl Options {
    /// Options for `seed` with the defaults of the CLI.
    pub fn new(seed: u64, nodes: usize, faults: FaultSet) -> Options {
        Options {
            seed,
            nodes,
            spares: if faults.membership { 2 } else { 0 },
            faults,
            safety_phase_us: 6_000_000,
            liveness_phase_us: 30_000_000,
            clients: 5,
            keys: 3,
            trace: false,
            core_faults: raft::Faults::default(),
            machine_faults: machine::MachineFaults::default(),
            ack_before_sync: false,
            wal: Options::default_wal(),
        }
    }

    /// The simulator's WAL options: 16 KiB preallocated segments (a run rolls several, and a
    /// large batch outgrows one).
    pub fn default_wal() -> WalOptions {
        WalOptions {
            segment_size_bytes: 16 << 10,
            preallocate: true,
            max_batch_bytes: 16 << 20,
            snapshots_to_keep: 2,
        }
    }

    /// The command line that replays this run with a trace: the seed, the size, the faults,
    /// and whatever else differs from the defaults.
    pub fn replay_command(&self) -> String {
        let defaults = Options::new(self.seed, self.nodes, self.faults);
        let mut line = format!(
            "cargo run --release -p sim -- --seed {} --nodes {} --faults {}",
            self.seed, self.nodes, self.faults
        );
        if self.safety_phase_us != defaults.safety_phase_us {
            line += &format!(" --duration {}", self.safety_phase_us / 1_000_000);
        }
        if self.clients != defaults.clients {
            line += &format!(" --clients {}", self.clients);
        }
        for (broken, rule) in [
            (
                self.core_faults.commit_old_term_by_counting,
                "commit-old-term",
            ),
            (self.core_faults.vote_without_persisting, "forget-vote"),
            (self.core_faults.vote_without_log_check, "skip-log-check"),
            (self.machine_faults.skip_revision_every > 0, "skip-revision"),
            (self.ack_before_sync, "ack-before-sync"),
            (self.machine_faults.watch.drop_event_every > 0, "watch-drop"),
            (
                self.machine_faults.watch.duplicate_event_every > 0,
                "watch-duplicate",
            ),
            (
                self.machine_faults.watch.split_revision_every > 0,
                "watch-split",
            ),
        ] {
            if broken {
                line += &format!(" --break {rule}");
            }
        }
        line + " --trace"
    }

    /// The options that `--seeds` uses for `seed`: cluster size cycles over `sizes`, faults are a
    /// swarm subset of `faults`. Both derived from the seed so a printed replay line reproduces it.
    pub fn for_seed(seed: u64, sizes: &[usize], faults: FaultSet) -> Options {
        let mut rng = Rng::new(seed ^ 0x5157_4152_4d00_0000);
        let nodes = sizes[(seed % sizes.len() as u64) as usize];
        Options::new(seed, nodes, faults.swarm(&mut rng))
    }
}
