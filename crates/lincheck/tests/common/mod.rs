//! Shared test support: a seeded PRNG and a simulated linearizable key-value store whose
//! recorded histories are linearizable by construction.

#![allow(dead_code)] // each test binary uses a different subset

use lincheck::{Input, Operation, Output};

/// splitmix64: tiny, seedable, good enough to drive simulations reproducibly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn op(
    client: u64,
    key: u64,
    call: u64,
    ret: Option<u64>,
    input: Input,
    output: Output,
) -> Operation {
    Operation {
        client,
        key,
        call,
        ret,
        input,
        output,
    }
}

/// The sequential register, written independently of `lincheck::step` so the tests do not
/// check the checker against itself.
pub fn apply(state: &mut Option<u64>, input: Input) -> Output {
    match input {
        Input::Read => Output::Read(*state),
        Input::Write(v) => {
            *state = Some(v);
            Output::Write
        }
        Input::Cas { expected, new } => {
            let succeeded = *state == Some(expected);
            if succeeded {
                *state = Some(new);
            }
            Output::Cas { succeeded }
        }
        Input::Delete => {
            *state = None;
            Output::Delete
        }
    }
}

pub struct SimConfig {
    pub keys: u64,
    pub clients: u64,
    pub ops: usize,
    /// Values are drawn from `0..values`; small domains make the checker's job harder.
    pub values: u64,
    /// Percentage of operations whose outcome is lost (the client then crashes and is replaced).
    pub unknown_percent: u64,
}

enum Phase {
    /// Invoked at `call`; not yet applied.
    Invoked { key: u64, call: u64, input: Input },
    /// Applied with `output`; waiting to return.
    Applied {
        key: u64,
        call: u64,
        input: Input,
        output: Output,
    },
}

/// Runs concurrent clients against an atomic in-memory store and records the history.
///
/// Each operation takes effect at one instant between its call and its return (a separate
/// simulation step), so the history is linearizable. An operation picked to have an unknown
/// outcome takes effect or not (50/50), is recorded with `ret: None`, and its client is replaced
/// by a fresh one, as a crashed Jepsen process would be.
pub fn simulate(rng: &mut Rng, cfg: &SimConfig) -> Vec<Operation> {
    let mut state = vec![None; cfg.keys as usize];
    let mut clients: Vec<(u64, Option<Phase>)> = (0..cfg.clients).map(|c| (c, None)).collect();
    let mut next_client = cfg.clients;
    let mut history = Vec::with_capacity(cfg.ops);
    let mut time = 0;
    let mut invoked = 0;
    while history.len() < cfg.ops {
        time += 1 + rng.below(3);
        let slot = rng.below(cfg.clients) as usize;
        let (client, phase) = &mut clients[slot];
        let client = *client;
        match phase.take() {
            None if invoked < cfg.ops => {
                invoked += 1;
                let key = rng.below(cfg.keys);
                let input = match rng.below(10) {
                    0..=3 => Input::Read,
                    4..=6 => Input::Write(rng.below(cfg.values)),
                    7..=8 => Input::Cas {
                        expected: rng.below(cfg.values),
                        new: rng.below(cfg.values),
                    },
                    _ => Input::Delete,
                };
                *phase = Some(Phase::Invoked {
                    key,
                    call: time,
                    input,
                });
            }
            None => {}
            Some(Phase::Invoked { key, call, input }) => {
                if rng.chance(cfg.unknown_percent) {
                    if rng.chance(50) {
                        apply(&mut state[key as usize], input);
                    }
                    history.push(op(client, key, call, None, input, Output::Unknown));
                    clients[slot] = (next_client, None);
                    next_client += 1;
                } else {
                    let output = apply(&mut state[key as usize], input);
                    *phase = Some(Phase::Applied {
                        key,
                        call,
                        input,
                        output,
                    });
                }
            }
            Some(Phase::Applied {
                key,
                call,
                input,
                output,
            }) => {
                history.push(op(client, key, call, Some(time), input, output));
            }
        }
    }
    history
}
