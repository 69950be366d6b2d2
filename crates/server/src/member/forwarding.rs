//! A follower's writes to the leader: queued, batched, and sent to the leader's internal
//! `Forward` service over its client URL; plus the metadata that marks a request one member
//! passed to another, so it is never passed on again.

use super::shared::Core;
use super::status::{leader_changed, stopped, timed_out};
use crate::machine::MachineResponse;
use bytes::Bytes;
use etcdpb::raftkvpb;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Set on requests one member forwards to another, so they are never forwarded again.
pub const FORWARDED_METADATA: &str = "raftkv-forwarded";
/// The most commands a follower forwards to the leader in one call.
pub const MAX_FORWARD_BATCH: usize = 256;
/// Forwarded batches in flight at once per member.
const MAX_FORWARD_BATCHES_IN_FLIGHT: usize = 8;

/// The cached connection to the leader's client port (a leader change replaces it; a failed
/// call drops it).
pub(super) type LeaderClient =
    Mutex<Option<(u64, raftkvpb::forward_client::ForwardClient<Channel>)>>;

/// A command waiting to be forwarded to the leader.
pub(super) struct Forwarded {
    data: Bytes,
    reply: tokio::sync::oneshot::Sender<Result<MachineResponse, Status>>,
}

/// A request to another member, marked as forwarded so that it is never forwarded again.
pub fn forwarded_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// Whether another member forwarded this request.
pub fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_METADATA)
}

impl Core {
    /// Hands encoded command bytes to the forwarder, which sends them to the leader's
    /// `Forward` service in one batch with the other writes waiting to go.
    pub(super) async fn forward(
        &self,
        data: Bytes,
        deadline: Instant,
    ) -> Result<MachineResponse, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.forward_tx
            .send(Forwarded { data, reply })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::unavailable("raftkv: the forwarder stopped")),
            Err(_) => Err(timed_out()),
        }
    }

    /// Sends queued writes to the leader, many per call and several calls at once, until the
    /// member stops. Runs once per member (it takes the queue's receiving end).
    pub async fn run_forwarder(self: Arc<Core>) {
        let Some(mut queue) = self.forward_rx.lock().expect("not poisoned").take() else {
            return;
        };
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARD_BATCHES_IN_FLIGHT));
        loop {
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_FORWARD_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let leader = self.member.status().leader;
            if !leader.is_some() || leader.get() == self.identity.member_id {
                // The callers look again and propose here, or wait for a leader.
                for item in batch {
                    let _ = item.reply.send(Err(leader_changed()));
                }
                continue;
            }
            let client = match self.leader_client(leader.get()).await {
                Ok(client) => client,
                Err(status) => {
                    for item in batch {
                        let _ = item.reply.send(Err(status.clone()));
                    }
                    continue;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let cache = self.leader_client.clone();
            let timeout = self.identity.request_timeout;
            tokio::spawn(async move {
                send_batch(client, cache, batch, timeout).await;
                drop(permit);
            });
        }
    }

    /// A connection (made lazily) to a member's client port, at the first client URL it
    /// published; Unavailable until it has published one.
    pub async fn channel_to(&self, member: u64) -> Result<Channel, Status> {
        let table = self.member_table().await?;
        let Some(url) = table
            .get(&member)
            .and_then(|row| row.client_urls.first())
            .cloned()
        else {
            return Err(Status::unavailable(
                "etcdserver: leader has no client URL yet",
            ));
        };
        Ok(tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| Status::internal(format!("member URL {url}: {error}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy())
    }

    async fn leader_client(
        &self,
        leader: u64,
    ) -> Result<raftkvpb::forward_client::ForwardClient<Channel>, Status> {
        if let Some((cached, client)) = &*self.leader_client.lock().expect("not poisoned")
            && *cached == leader
        {
            return Ok(client.clone());
        }
        let client = raftkvpb::forward_client::ForwardClient::new(self.channel_to(leader).await?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        *self.leader_client.lock().expect("not poisoned") = Some((leader, client.clone()));
        Ok(client)
    }
}

/// One forwarded batch: one call to the leader, then each waiting writer gets its own outcome.
async fn send_batch(
    mut client: raftkvpb::forward_client::ForwardClient<Channel>,
    cache: Arc<LeaderClient>,
    batch: Vec<Forwarded>,
    timeout: Duration,
) {
    let (commands, replies): (Vec<Bytes>, Vec<_>) = batch
        .into_iter()
        .map(|item| (item.data, item.reply))
        .unzip();
    let mut request = forwarded_request(raftkvpb::ProposeBatchRequest { commands });
    request.set_timeout(timeout);
    match client.propose_batch(request).await {
        Ok(response) => {
            let outcomes = response.into_inner().outcomes;
            if outcomes.len() != replies.len() {
                for reply in replies {
                    let _ = reply.send(Err(Status::internal(
                        "raftkv: the leader answered a forwarded batch with the wrong count",
                    )));
                }
                return;
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let result = if outcome.code == 0 {
                    MachineResponse::decode(&outcome.response).map_err(|reason| {
                        Status::internal(format!("raftkv: bad forwarded answer: {reason}"))
                    })
                } else {
                    Err(Status::new(Code::from_i32(outcome.code), outcome.message))
                };
                let _ = reply.send(result);
            }
        }
        Err(status) => {
            // The leader may have moved or restarted: drop the cached channel. Every outcome
            // is unknown; the callers retry with the same sessions.
            *cache.lock().expect("not poisoned") = None;
            let status = Status::unavailable(format!(
                "raftkv: forwarding to the leader failed: {}",
                status.message()
            ));
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}
