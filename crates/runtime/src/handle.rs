//! [`MemberHandle`]: how clients reach a running member. Each method sends the driver a
//! command and waits for its answer.

use crate::error::{ClientError, MemberFailure, TransferOutcome};
use crate::protocol::{Command, Status};
use bytes::Bytes;
#[cfg(doc)]
use node::RequestError;
use node::StateMachine;
use raft::{ConfChange, ConfState, LogIndex, NodeId};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A client's handle on a running member. Dropping it stops the member (without waiting);
/// [`MemberHandle::shutdown`] stops it and waits until its WAL is closed.
///
/// The handle carries commands and queries as the state machine `M` encodes them; making a
/// retried command apply at most once is the state machine's business (its sessions) and its
/// client's.
pub struct MemberHandle<M: StateMachine> {
    id: NodeId,
    commands: mpsc::Sender<Command<M>>,
    status: watch::Receiver<Status>,
    membership: watch::Receiver<ConfState>,
    driver: Option<JoinHandle<Result<(), MemberFailure>>>,
    peer_addr: SocketAddr,
}

impl<M: StateMachine> fmt::Debug for MemberHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberHandle")
            .field("id", &self.id)
            .field("peer_addr", &self.peer_addr)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<M: StateMachine> MemberHandle<M> {
    /// The handle of a member whose driver task is `driver`.
    pub(crate) fn new(
        id: NodeId,
        commands: mpsc::Sender<Command<M>>,
        status: watch::Receiver<Status>,
        membership: watch::Receiver<ConfState>,
        driver: JoinHandle<Result<(), MemberFailure>>,
        peer_addr: SocketAddr,
    ) -> MemberHandle<M> {
        MemberHandle {
            id,
            commands,
            status,
            membership,
            driver: Some(driver),
            peer_addr,
        }
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address its peer listener is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The member's Raft state as of its driver's last step.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// A receiver that sees every status change (to wait for a leader without polling).
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The membership in force on this member (as of its last applied change or snapshot).
    pub fn membership(&self) -> ConfState {
        self.membership.borrow().clone()
    }

    /// A receiver that sees every membership change, to update peer addresses.
    pub fn watch_membership(&self) -> watch::Receiver<ConfState> {
        self.membership.clone()
    }

    async fn send(&self, command: Command<M>) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Proposes `data` (an encoded command of the state machine) through the log and waits for
    /// the state machine's answer. The caller is responsible for deduplicating retries (the
    /// state machine's sessions).
    pub async fn propose(&self, data: Bytes) -> Result<M::Response, ClientError> {
        self.submit_command(data, false).await
    }

    /// Like [`MemberHandle::propose`], but on a follower the command goes to the leader over
    /// the peer connection (batched with the Raft traffic) and is answered when this member
    /// applies it; see [`node::Node::submit_anywhere`]. The data must be unique per attempt
    /// (a session and sequence), and an [`RequestError::OutcomeUnknown`] answer must be
    /// retried with the same data to learn the outcome.
    pub async fn propose_anywhere(&self, data: Bytes) -> Result<M::Response, ClientError> {
        self.submit_command(data, true).await
    }

    async fn submit_command(&self, data: Bytes, forward: bool) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Submit {
            data,
            reply,
            forward,
        })
        .await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// A linearizable read: answered once the member has confirmed (ReadIndex) that it applied
    /// everything committed when the read arrived. Followers ask the leader to confirm.
    pub async fn read(&self, query: M::Query) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Read { query, reply }).await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// A serializable read of this member's current state: no confirmation, possibly stale,
    /// answers without a leader.
    pub async fn read_local(&self, query: M::Query) -> Result<M::Response, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::LocalQuery { query, reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Has this member reclaim the space of its local storage, between two applies (see
    /// [`node::StateMachine::defragment`]); like etcd's defragmentation it blocks this member's
    /// applying while it runs and touches no other member.
    pub async fn defragment(&self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Defragment { reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Proposes a membership change (this member must lead) and waits until it is applied;
    /// returns the configuration it produced.
    pub async fn change_membership(&self, change: ConfChange) -> Result<ConfState, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ConfChange { change, reply }).await?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// Starts handing leadership to `target` (this member must lead). Returns once the transfer
    /// started; watch [`MemberHandle::watch_status`] to see it complete.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), TransferOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::TransferLeader { target, reply })
            .await
            .map_err(|_| TransferOutcome::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(TransferOutcome::Refused),
            Err(_) => Err(TransferOutcome::Stopped),
        }
    }

    /// Replaces the addresses the transport connects to (every member but this one; members
    /// not listed are disconnected).
    pub async fn set_peers(&self, peers: BTreeMap<NodeId, SocketAddr>) -> Result<(), ClientError> {
        self.send(Command::SetPeers(peers)).await
    }

    /// On the leader, how far each member's log is known to match the leader's (its match
    /// index); empty on a follower. Used to refuse promoting a learner that lags.
    pub async fn replication_progress(&self) -> Result<BTreeMap<NodeId, LogIndex>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Progress { reply }).await?;
        answer.await.map_err(|_| ClientError::Stopped)
    }

    /// Stops the member and waits until its driver has stopped and its WAL is closed (its
    /// directory lock released). Reports a storage failure that stopped it earlier.
    pub async fn shutdown(mut self) -> Result<(), MemberFailure> {
        // If the queue is full or the driver is gone, dropping the sender below stops it too.
        let _ = self.commands.try_send(Command::Shutdown);
        let driver = self.driver.take().expect("taken only here");
        drop(self);
        match driver.await {
            Ok(result) => result,
            Err(error) => Err(MemberFailure(format!("the driver task failed: {error}"))),
        }
    }
}
