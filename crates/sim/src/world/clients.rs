//! The simulated clients: each issues one etcd request at a time to the member it believes
//! leads (or any member), retries on redirects, drops and timeouts, and records every
//! operation in the history that `lincheck` and `crate::revisions` check.

use super::*;
use raft::ProposeError;

impl Sim {
    /// Lets clients issue operations (each starts after a short random delay).
    pub fn start_clients(&mut self) {
        self.clients_enabled = true;
        for client in 0..self.clients.len() {
            let delay = self.rng.below(10_000);
            self.schedule(delay, Event::ClientNext { client });
        }
        if self.watchers.is_empty() {
            self.make_watchers();
            self.start_watchers();
        }
    }

    pub(super) fn client_next(&mut self, client: usize) {
        if !self.clients_enabled || self.clients[client].pending.is_some() {
            return;
        }
        if let Phase::Liveness { .. } = self.phase {
            if self.clients[client].final_write_started {
                return;
            }
            self.clients[client].final_write_started = true;
        }
        let force_write = matches!(self.phase, Phase::Liveness { .. });
        let roll = if force_write { 50 } else { self.rng.below(100) };
        if roll == 99 && self.clients[client].last_revision > 1 {
            self.start_compaction(client);
            return;
        }
        if !force_write && self.rng.chance(1, 25) {
            self.start_multi_key_write(client);
            return;
        }
        let key = self.rng.below(self.options.keys);
        let c = &mut self.clients[client];
        c.sequence += 1;
        let unique = (c.id << 40) | c.sequence;
        let last_seen = c.last_seen[key as usize];
        let read_index = roll < 40 && self.rng.chance(1, 2);
        let input = if roll < 40 {
            Input::Read
        } else if roll < 75 {
            Input::Write(unique)
        } else if roll < 95 {
            Input::Cas {
                expected: last_seen.unwrap_or(unique ^ 1),
                new: unique,
            }
        } else {
            Input::Delete
        };
        let c = &mut self.clients[client];
        let data = command_bytes(c.id, c.sequence, request_for(input, key));
        self.history.push(Operation {
            client: c.id,
            key,
            call: self.now,
            ret: None,
            input,
            output: Output::Unknown,
        });
        self.answers.push(None);
        self.stats.operations += 1;
        c.pending = Some(Pending {
            history_index: Some(self.history.len() - 1),
            other_index: None,
            data,
            read_key: read_index.then_some(key),
        });
        self.send_attempt(client);
    }

    /// Compacts the keyspace at a revision a little below the newest this client has seen:
    /// clients race compactions against their own reads and writes, as etcd's do.
    pub(super) fn start_compaction(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.sequence += 1;
        let below = self.rng.below(8) as i64;
        let revision = (c.last_revision - below).max(1);
        let data = command_bytes(c.id, c.sequence, compaction(revision));
        self.stats.compactions_requested += 1;
        c.pending = Some(Pending {
            history_index: None,
            other_index: None,
            data,
            read_key: None,
        });
        self.send_attempt(client);
    }

    /// A write of several keys in one revision, outside the registers (`etcd_ops`): mostly a
    /// transaction that puts two to four keys and may delete another, sometimes a delete of
    /// them all. It gives the watchers revisions of several events.
    pub(super) fn start_multi_key_write(&mut self, client: usize) {
        let request = if self.rng.chance(1, 4) {
            multi_delete_request()
        } else {
            let count = self.rng.range(2, 5) as usize;
            let mut keys: Vec<u64> = Vec::with_capacity(count + 1);
            while keys.len() < count + 1 {
                let key = self.rng.below(MULTI_KEYS);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let delete = keys.pop().filter(|_| self.rng.chance(1, 3));
            let c = &self.clients[client];
            multi_put_request(&keys, delete, (c.id << 40) | (c.sequence + 1))
        };
        let c = &mut self.clients[client];
        c.sequence += 1;
        let data = command_bytes(c.id, c.sequence, request);
        self.other_writes.push(crate::revisions::OtherWrite {
            call: self.now,
            answer: None,
        });
        self.stats.multi_key_writes += 1;
        c.pending = Some(Pending {
            history_index: None,
            other_index: Some(self.other_writes.len() - 1),
            data,
            read_key: None,
        });
        self.send_attempt(client);
    }

    pub(super) fn send_attempt(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.attempt += 1;
        let attempt = c.attempt;
        let node = c.target;
        let pending = c.pending.as_ref().expect("pending");
        let data = pending.data.clone();
        let read_key = pending.read_key;
        let delay = self.rng.range(self.delay_us.0, self.delay_us.1);
        self.schedule(
            delay,
            Event::ClientArrive {
                node,
                client,
                attempt,
                data,
                read_key,
            },
        );
        self.schedule(CLIENT_TIMEOUT_US, Event::ClientTimeout { client, attempt });
    }

    pub(super) fn client_reply(
        &mut self,
        client: usize,
        attempt: u64,
        result: Result<MachineResponse, RequestError>,
    ) {
        if self.clients[client].attempt != attempt || self.clients[client].pending.is_none() {
            return;
        }
        if self.trace {
            let line = format!(
                "client {} attempt {attempt} at n{}: {result:?}",
                client + 1,
                self.clients[client].target + 1
            );
            self.trace(format_args!("{line}"));
        }
        match result {
            Ok(response) => self.complete(client, response),
            Err(RequestError::Refused(ProposeError::NotLeader { leader_hint })) => {
                let n = self.nodes.len();
                // Follow the hint, but not blindly: removed members keep stale hints that can
                // send a client around in circles, so sometimes try any node (as etcd clients
                // rotate endpoints).
                let follow = leader_hint.is_some()
                    && (leader_hint.get() as usize) <= n
                    && !self.rng.chance(1, 4);
                let random = self.rng.below(n as u64) as usize;
                let c = &mut self.clients[client];
                c.target = if follow {
                    (leader_hint.get() - 1) as usize
                } else {
                    random
                };
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(RequestError::OutcomeUnknown) if self.forward_proposals => {
                // A command forwarded by a member the leader no longer listens to (one removed
                // from the cluster that has not noticed) is never applied: like an etcd client
                // after a timeout, sometimes try another member.
                if self.rng.chance(1, 2) {
                    let n = self.nodes.len();
                    self.clients[client].target = self.rng.below(n as u64) as usize;
                }
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(
                RequestError::Dropped
                | RequestError::OutcomeUnknown
                | RequestError::Refused(
                    ProposeError::Backpressure | ProposeError::TransferInProgress,
                ),
            ) => {
                self.schedule(CLIENT_BACKOFF_US, Event::ClientRetry { client, attempt });
            }
            Err(
                error @ RequestError::Refused(
                    ProposeError::TooLarge { .. }
                    | ProposeError::ConfChangePending
                    | ProposeError::ConfChangeRejected(_),
                ),
            ) => {
                self.checker
                    .fail("client-error", format!("unexpected error: {error}"));
            }
        }
    }

    pub(super) fn complete(&mut self, client: usize, response: MachineResponse) {
        let pending = self.clients[client].pending.take().expect("pending");
        if let Some(other) = pending.other_index {
            match read_multi_answer(&response) {
                Ok((revision, wrote)) => {
                    self.other_writes[other].answer = Some(crate::revisions::OtherAnswer {
                        ret: self.now,
                        revision,
                        wrote,
                    });
                    let seen = &mut self.clients[client];
                    seen.last_revision = seen.last_revision.max(revision);
                }
                Err(detail) => {
                    self.checker.fail("client-response", detail);
                    return;
                }
            }
            let think = self.rng.below(20_000);
            self.schedule(think, Event::ClientNext { client });
            return;
        }
        let Some(history_index) = pending.history_index else {
            if !compaction_answer_ok(&response) {
                self.checker.fail(
                    "client-response",
                    format!("a compaction answered with {response:?}"),
                );
                return;
            }
            let think = self.rng.below(20_000);
            self.schedule(think, Event::ClientNext { client });
            return;
        };
        if pending.read_key.is_some() {
            self.stats.reads_by_read_index += 1;
        }
        let operation = &self.history[history_index];
        let (input, key) = (operation.input, operation.key as usize);
        let answer = match read_answer(input, &response) {
            Ok(answer) => answer,
            Err(detail) => {
                self.checker.fail("client-response", detail);
                return;
            }
        };
        let seen = &mut self.clients[client];
        seen.last_revision = seen.last_revision.max(answer.revision);
        seen.last_seen[key] = match (input, &answer.output) {
            (Input::Read, Output::Read(value)) => *value,
            (Input::Write(value), _) => Some(value),
            (Input::Delete, _) => None,
            (Input::Cas { new, .. }, Output::Cas { succeeded: true }) => Some(new),
            (Input::Cas { .. }, _) => answer.observed.and_then(|(_, value)| value),
            (Input::Read, _) => unreachable!("a read's answer is a read"),
        };
        let operation = &mut self.history[history_index];
        operation.ret = Some(self.now);
        operation.output = answer.output;
        self.answers[history_index] = Some(answer);
        self.stats.operations_ok += 1;
        if let Phase::Liveness { healed_at } = self.phase
            && self.stats.heal_to_write_us.is_none()
        {
            self.stats.heal_to_write_us = Some(self.now - healed_at);
        }
        let think = self.rng.below(20_000);
        self.schedule(think, Event::ClientNext { client });
    }

    pub(super) fn client_timeout(&mut self, client: usize, attempt: u64) {
        if self.clients[client].attempt != attempt || self.clients[client].pending.is_none() {
            return;
        }
        let give_up =
            self.options.faults.give_up && self.phase == Phase::Safety && self.rng.chance(1, 4);
        if give_up {
            // The outcome stays unknown: the request may still be applied at any later time.
            self.clients[client].pending = None;
            self.clients[client].attempt += 1;
            self.stats.operations_unknown += 1;
            self.schedule(1_000, Event::ClientNext { client });
            return;
        }
        let n = self.nodes.len() as u64;
        let c = &mut self.clients[client];
        c.target = ((c.target as u64 + 1 + self.rng.below(n - 1).min(n - 1)) % n) as usize;
        self.send_attempt(client);
    }

    pub(super) fn clients_done(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.pending.is_none() && (!self.clients_enabled || c.final_write_started))
    }
}

pub(super) fn request_id(client: usize, attempt: u64) -> u64 {
    ((client as u64) << 40) | (attempt & ((1 << 40) - 1))
}

pub(super) fn split_request_id(request: u64) -> (usize, u64) {
    ((request >> 40) as usize, request & ((1 << 40) - 1))
}
