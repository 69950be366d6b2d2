//! etcd's Watch service: one bidirectional stream per call, carrying many watchers.
//!
//! The watch semantics live in the state machine's hub (the `watch` crate); this file only
//! connects a gRPC stream to a hub stream. Each call gets one task that owns the hub stream
//! and waits on everything that can move it:
//!
//! - the client's next request (create, cancel, progress), applied on the member's applying
//!   thread through [`crate::machine::MachineQuery::Watch`] so it sees an exact applied state;
//! - the hub's waker: the hub queued responses, which the task drains and sends. It drains
//!   again only once the client has taken what it was sent (the response channel is small and
//!   bounded), so a client that does not read makes its watchers fall behind in the hub, which
//!   costs the member a bounded queue and nothing else; they are caught up from history once
//!   the client reads again;
//! - the progress ticker (`--watch-progress-notify-interval`);
//! - the member's leader, for streams opened with `hasleader=true` metadata
//!   (`clientv3.WithRequireLeader`), which end after about three election timeouts without
//!   one so the client resumes on another member, as etcd's do;
//! - the member stopping, which ends every stream with `Unavailable`.
//!
//! The hub stream is closed when the task ends, whatever the reason ([`StreamGuard`]).

use super::kv::learner_refusal;
use super::unexpected;
use crate::machine::{MachineQuery, MachineResponse};
use crate::member::shared::Core;
use crate::member::status::{client_status, no_leader, stopped};
use ::kv::mvcc::EventKind;
use ::watch::{CreateWatch, SharedHub, StreamId, WatchRequest};
use bytes::Bytes;
use etcdpb::convert::key_value_to_pb;
use etcdpb::etcdserverpb as pb;
use etcdpb::mvccpb;
use raft::NodeId;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// etcd's Watch service.
#[derive(Clone, Debug)]
pub struct WatchApi(pub Arc<Core>);

/// Responses handed to gRPC but not yet taken by the client. Small on purpose: beyond it the
/// hub holds the backlog (bounded) or, once that is full, history does.
const SENT_AHEAD: usize = 16;

/// How many election timeouts without a leader end a stream that requires one (etcd's
/// `maxNoLeaderCnt`).
const NO_LEADER_TIMEOUTS: u32 = 3;

/// How long the last message of an ending stream (its error) may wait for room.
const FAREWELL: Duration = Duration::from_secs(1);

/// Closes the hub stream when the stream's task ends, however it ends.
struct StreamGuard {
    hub: SharedHub,
    id: StreamId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.lock().close_stream(self.id);
    }
}

/// Whether the call carries etcd's `hasleader=true` metadata.
fn requires_leader<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .get("hasleader")
        .is_some_and(|value| value.as_bytes() == b"true")
}

/// A create request as the hub takes it, with etcd's rewriting of the range: an empty key is
/// `\0` (the smallest key), so an empty key with `range_end = "\0"` watches everything.
fn create_from_pb(create: pb::WatchCreateRequest) -> CreateWatch {
    use pb::watch_create_request::FilterType;
    let key = if create.key.is_empty() {
        Bytes::from_static(&[0])
    } else {
        create.key
    };
    // Unknown filter numbers are ignored, as etcd does.
    let has = |filter: FilterType| create.filters.contains(&(filter as i32));
    CreateWatch {
        key,
        range_end: create.range_end,
        start_revision: create.start_revision,
        progress_notify: create.progress_notify,
        no_put: has(FilterType::Noput),
        no_delete: has(FilterType::Nodelete),
        prev_kv: create.prev_kv,
        watch_id: create.watch_id,
        fragment: create.fragment,
    }
}

/// A hub response for the wire, with this member's header.
fn response_to_pb(core: &Core, response: ::watch::WatchResponse) -> pb::WatchResponse {
    let events = response
        .events
        .into_iter()
        .map(|event| mvccpb::Event {
            r#type: match event.event.kind {
                EventKind::Put => mvccpb::event::EventType::Put,
                EventKind::Delete => mvccpb::event::EventType::Delete,
            } as i32,
            kv: Some(key_value_to_pb(event.event.kv)),
            prev_kv: event.prev_kv.map(key_value_to_pb),
        })
        .collect();
    pb::WatchResponse {
        header: Some(core.header(response.revision)),
        watch_id: response.watch_id,
        created: response.created,
        canceled: response.canceled,
        compact_revision: response.compact_revision,
        cancel_reason: response.cancel_reason,
        fragment: response.fragment,
        events,
    }
}

/// Why a stream ends.
enum End {
    /// The client went away (or stopped listening): nothing to tell it.
    Quietly,
    /// End the stream with this status.
    With(Status),
}

/// One stream's task state.
struct WatchStream {
    core: Arc<Core>,
    guard: StreamGuard,
    wake: Arc<Notify>,
    responses: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Drained from the hub, waiting for room in `responses`.
    pending: VecDeque<pb::WatchResponse>,
    /// The last drain found watchers behind: catch them up once `pending` is sent.
    catch_up_due: bool,
}

impl WatchStream {
    /// Applies a request to the hub stream at the member's applied state.
    async fn apply(&self, request: WatchRequest) -> Result<(), End> {
        let query = MachineQuery::Watch {
            stream: self.guard.id,
            request,
        };
        match self.core.member.read_local(query).await {
            Ok(MachineResponse::Watch(Ok(()))) => Ok(()),
            Ok(MachineResponse::Watch(Err(closed))) => {
                Err(End::With(Status::internal(format!("raftkv: {closed}"))))
            }
            Ok(other) => Err(End::With(unexpected(other))),
            Err(error) => Err(End::With(client_status(&error))),
        }
    }

    /// A client's request; a request with nothing set is ignored, as etcd does.
    async fn client_request(&self, request: pb::WatchRequest) -> Result<(), End> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                self.apply(WatchRequest::Create(create_from_pb(create)))
                    .await
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.apply(WatchRequest::Cancel(cancel.watch_id)).await
            }
            Some(RequestUnion::ProgressRequest(_)) => self.apply(WatchRequest::Progress).await,
            None => Ok(()),
        }
    }

    /// Takes what the hub queued for this stream.
    fn drain(&mut self) -> Result<(), End> {
        let mut out = Vec::new();
        let drained = self
            .guard
            .hub
            .lock()
            .drain(self.guard.id, &mut out)
            .map_err(|closed| End::With(Status::internal(format!("raftkv: {closed}"))))?;
        self.catch_up_due |= drained.needs_catch_up;
        self.pending.extend(
            out.into_iter()
                .map(|response| response_to_pb(&self.core, response)),
        );
        Ok(())
    }

    /// Once everything drained is on its way, has the hub read history for the watchers that
    /// are behind (it queues what it reads and wakes the task).
    async fn catch_up_if_due(&mut self) -> Result<(), End> {
        if self.pending.is_empty() && self.catch_up_due {
            self.catch_up_due = false;
            self.apply(WatchRequest::CatchUp).await?;
        }
        Ok(())
    }

    /// Serves the stream until it ends.
    async fn run(mut self, mut incoming: Streaming<pb::WatchRequest>, require_leader: bool) -> End {
        let core = self.core.clone();
        let mut stopping = core.stopping();
        let progress_every = core.identity.watch_progress_interval;
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + progress_every, progress_every);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let election = core.identity.election_timeout;
        let mut leader_check =
            tokio::time::interval_at(tokio::time::Instant::now() + election, election);
        leader_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut without_leader = 0;
        // Locals, so that the futures below do not borrow `self`, which the branches change.
        let responses = self.responses.clone();
        let wake = self.wake.clone();
        // The client may close its sending side and keep reading (etcd keeps such a stream).
        let mut reading = true;
        loop {
            let step = tokio::select! {
                biased;
                () = async {
                    let _ = stopping.wait_for(|stop| *stop).await;
                } => return End::With(stopped()),
                () = responses.closed() => return End::Quietly,
                _ = leader_check.tick(), if require_leader => {
                    if core.member.status().leader == NodeId::NONE {
                        without_leader += 1;
                        if without_leader >= NO_LEADER_TIMEOUTS {
                            return End::With(no_leader());
                        }
                    } else {
                        without_leader = 0;
                    }
                    Ok(())
                }
                permit = responses.reserve(), if !self.pending.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(response) = self.pending.pop_front() {
                            permit.send(Ok(response));
                        }
                        self.catch_up_if_due().await
                    }
                    Err(_) => return End::Quietly,
                },
                () = wake.notified(), if self.pending.is_empty() => {
                    match self.drain() {
                        Ok(()) => self.catch_up_if_due().await,
                        Err(end) => Err(end),
                    }
                }
                message = incoming.message(), if reading => match message {
                    Ok(Some(request)) => self.client_request(request).await,
                    Ok(None) => {
                        reading = false;
                        Ok(())
                    }
                    // The client reset the stream or the connection dropped.
                    Err(_) => return End::Quietly,
                },
                _ = progress.tick() => self.apply(WatchRequest::PeriodicProgress).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }
}

type ResponseStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchApi {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let core = self.0.clone();
        if *core.stopping().borrow() {
            return Err(stopped());
        }
        // As etcd 3.4's stream interceptor: a learner serves no streams.
        if core.is_learner() {
            return Err(learner_refusal());
        }
        let require_leader = requires_leader(&request);
        if require_leader && core.member.status().leader == NodeId::NONE {
            return Err(no_leader());
        }
        let wake = Arc::new(Notify::new());
        let waker: ::watch::Waker = {
            let wake = wake.clone();
            Arc::new(move || wake.notify_one())
        };
        let hub = core.watches.clone();
        let id = hub.lock().open_stream(Some(waker));
        let guard = StreamGuard { hub, id };
        let (responses, receiver) = mpsc::channel(SENT_AHEAD);
        let stream = WatchStream {
            core,
            guard,
            wake,
            responses: responses.clone(),
            pending: VecDeque::new(),
            catch_up_due: false,
        };
        let incoming = request.into_inner();
        tokio::spawn(async move {
            let end = stream.run(incoming, require_leader).await;
            if let End::With(status) = end {
                tracing::debug!(%status, "ending a watch stream");
                let _ = tokio::time::timeout(FAREWELL, responses.send(Err(status))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
