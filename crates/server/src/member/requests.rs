//! The paths a request takes: a write through the log (proposed here when this member leads,
//! passed to the leader as a Raft proposal otherwise) and a linearizable read, each retried across leader changes
//! until the request timeout.

use super::shared::Core;
use super::status::{client_status, no_leader, stopped, timed_out, too_large};
use crate::machine::{MachineCommand, MachineQuery, MachineResponse};
use bytes::Bytes;
use node::RequestError::{self, Refused};
use raft::{ProposeError, Role};
use runtime::ClientError;
use std::time::Instant;
use tonic::Status;

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
    /// when this member leads, handed to the leader as a Raft proposal on the peer connection
    /// otherwise (the one way a write leaves a member). A command with a session
    /// (`client_id != 0` for KV; member commands are idempotent) is retried across leader
    /// changes until the request timeout; one without is not once it may have reached the log,
    /// because it might apply twice.
    pub async fn propose(&self, command: MachineCommand) -> Result<MachineResponse, Status> {
        let deadline = Instant::now() + self.identity.request_timeout;
        let mut command = command;
        let mut data = self.encode_for_log(&command)?;
        // The session this write borrowed when it had to leave this member: the write's until
        // the write is done (`_lent` lives to the end of this call).
        let mut _lent = None;
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
            } else if status.leader.is_some() {
                // A write that leaves this member always carries a session, so retrying one
                // whose answer was lost cannot apply it twice. One without a session has not
                // reached the log yet (the attempts that may have end the loop below), so it
                // can take one now, also when this member just lost leadership.
                if let MachineCommand::Kv(kv) = &mut command
                    && kv.client_id == 0
                {
                    let session = self.idle_sessions.lend(|| self.fresh_session());
                    kv.client_id = session.client_id;
                    kv.sequence = session.sequence;
                    _lent = Some(session);
                    data = self.encode_for_log(&command)?;
                }
                // The Raft core sends it to the leader in a `Propose` message, batched with
                // the Raft traffic, and this member answers when it applies the entry.
                match self.member.propose_anywhere(data.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                }
            } else {
                self.wait_for_leader(deadline).await?;
                continue;
            };
            let retryable = match &command {
                MachineCommand::Kv(kv) => kv.client_id != 0,
                MachineCommand::Member(_) => true,
            };
            match outcome {
                ClientError::Failed(Refused(ProposeError::NotLeader { .. })) => continue,
                ClientError::Failed(Refused(ProposeError::TransferInProgress)) => {
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

    /// The command's bytes for the log, refused with etcd's error above
    /// `--max-request-bytes`.
    fn encode_for_log(&self, command: &MachineCommand) -> Result<Bytes, Status> {
        let data = command.encode();
        if data.len() > self.identity.max_request_bytes {
            return Err(too_large());
        }
        Ok(data)
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
                Err(ClientError::Failed(Refused(ProposeError::NotLeader { leader_hint })))
                    if !leader_hint.is_some() =>
                {
                    self.wait_for_leader(deadline).await?;
                }
                Err(ClientError::Failed(
                    Refused(ProposeError::NotLeader { .. } | ProposeError::TransferInProgress)
                    | RequestError::Dropped
                    | RequestError::OutcomeUnknown,
                )) => self.pause(deadline).await,
                Err(other) => return Err(client_status(&other)),
            }
        }
    }
}
