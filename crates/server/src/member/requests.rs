//! The paths a request takes: a write through the log (proposed here when this member leads,
//! passed to the leader otherwise) and a linearizable read, each retried across leader changes
//! until the request timeout.

use super::shared::Core;
use super::status::{client_status, leader_changed, no_leader, stopped, timed_out, too_large};
use crate::machine::{MachineCommand, MachineQuery, MachineResponse};
use bytes::Bytes;
use node::RequestError;
use raft::Role;
use runtime::ClientError;
use std::time::Instant;
use tonic::{Code, Status};

impl Core {
    /// Waits until some member is known to lead, or until `deadline`.
    pub async fn wait_for_leader(&self, deadline: Instant) -> Result<u64, Status> {
        let mut status = self.member.watch_status();
        loop {
            let leader = status.borrow_and_update().leader;
            if leader.is_some() {
                return Ok(leader.get());
            }
            match tokio::time::timeout_at(deadline.into(), status.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(stopped()),
                Err(_) => return Err(no_leader()),
            }
        }
    }

    /// Puts a command through the log and returns the state machine's answer: proposed here
    /// when this member leads, forwarded to the leader otherwise. A command with a session
    /// (`client_id != 0` for KV; member commands are idempotent) is retried across leader
    /// changes until `deadline`; one without is not, because it might apply twice.
    pub async fn propose(
        &self,
        command: MachineCommand,
        forwarded: bool,
    ) -> Result<MachineResponse, Status> {
        let deadline = Instant::now() + self.identity.request_timeout;
        let mut command = command;
        // A write that may leave this member always carries a session, so retrying a forward
        // whose answer was lost cannot apply it twice. The session is this write's until the
        // write is done (`_lent` lives to the end of this call).
        let mut _lent = None;
        if !forwarded
            && self.member.status().role != Role::Leader
            && let MachineCommand::Kv(kv) = &mut command
            && kv.client_id == 0
        {
            let session = self.idle_sessions.lend(|| self.fresh_session());
            kv.client_id = session.client_id;
            kv.sequence = session.sequence;
            _lent = Some(session);
        }
        let data = command.encode();
        let retryable = match &command {
            MachineCommand::Kv(kv) => kv.client_id != 0,
            MachineCommand::Member(_) => true,
        };
        if data.len() > self.identity.max_request_bytes {
            return Err(too_large());
        }
        self.propose_bytes(data, retryable, forwarded, deadline)
            .await
    }

    /// Proposes encoded command bytes (see [`Core::propose`]).
    pub async fn propose_bytes(
        &self,
        data: Bytes,
        retryable: bool,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<MachineResponse, Status> {
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            let status = self.member.status();
            let outcome = if status.role == Role::Leader {
                match self.member.propose(data.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                }
            } else if forwarded {
                // The forwarding member's view was stale; it retries with its own.
                return Err(leader_changed());
            } else if status.leader.is_some() && retryable {
                // A command with a session is unique and safe to retry: it goes to the leader
                // over the peer connection, batched with the Raft traffic, and is answered
                // when this member applies it (no second RPC stack on either side).
                match self.member.propose_anywhere(data.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                }
            } else if status.leader.is_some() {
                match self.forward(data.clone(), deadline).await {
                    Ok(response) => return Ok(response),
                    Err(error) if retryable && error.code() == Code::Unavailable => {
                        tracing::debug!(%error, "forwarding failed; retrying");
                        self.pause(deadline).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            } else {
                self.wait_for_leader(deadline).await?;
                continue;
            };
            match outcome {
                ClientError::NotLeader { .. } => continue,
                ClientError::Failed(RequestError::TransferInProgress) => {
                    self.pause(deadline).await;
                }
                ClientError::Failed(RequestError::Dropped | RequestError::OutcomeUnknown)
                    if retryable =>
                {
                    self.pause(deadline).await;
                }
                other => return Err(client_status(&other)),
            }
        }
    }

    async fn pause(&self, deadline: Instant) {
        let until = (Instant::now() + self.identity.retry_pause).min(deadline);
        tokio::time::sleep_until(until.into()).await;
    }

    /// A linearizable read through ReadIndex (followers ask the leader to confirm), retried
    /// across leader changes until the request timeout.
    pub async fn read(&self, query: MachineQuery) -> Result<MachineResponse, Status> {
        let deadline = Instant::now() + self.identity.request_timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            match self.member.read(query.clone()).await {
                Ok(response) => return Ok(response),
                Err(ClientError::NotLeader { leader_hint }) if !leader_hint.is_some() => {
                    self.wait_for_leader(deadline).await?;
                }
                Err(
                    ClientError::NotLeader { .. }
                    | ClientError::Failed(
                        RequestError::Dropped
                        | RequestError::TransferInProgress
                        | RequestError::OutcomeUnknown,
                    ),
                ) => self.pause(deadline).await,
                Err(other) => return Err(client_status(&other)),
            }
        }
    }
}
