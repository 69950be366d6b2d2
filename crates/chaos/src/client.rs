//! Client tasks: each owns one gRPC connection to one member and runs a random mix of reads,
//! blind writes and compare-and-set on a handful of keys, recording every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use lincheck::{Input, Output};
use pb::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cluster::connect;
use crate::history::{Clock, History, OpRecord, Outcome};
use crate::rng::Rng;

/// The gRPC metadata key raftkv uses to deduplicate retried writes.
pub const REQUEST_ID_METADATA: &str = "raftkv-request-id";

/// How a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// etcd's default: the read goes through the leader's read index, so it is linearizable.
    Linearizable,
    /// `serializable: true`: the member answers from its local state, possibly stale. Only the
    /// negative control uses it, to prove that the checker notices stale reads.
    Serializable,
}

/// What one client task does.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Client number (also its id in the history).
    pub id: u64,
    /// Members it may talk to; it starts with the first and moves to another after a failure.
    pub members: Vec<usize>,
    /// Percentage of reads.
    pub read_percent: u64,
    /// Percentage of blind writes; the rest are compare-and-set.
    pub write_percent: u64,
    /// How reads are served.
    pub read_mode: ReadMode,
}

/// What all client tasks share.
#[derive(Debug, Clone)]
pub struct ClientContext {
    /// Client URL of every member, by index.
    pub urls: Arc<Vec<String>>,
    /// Names of the members, by index.
    pub names: Arc<Vec<String>>,
    /// Number of keys (registers).
    pub keys: u64,
    /// How long a client waits for one answer before declaring the outcome unknown.
    pub op_timeout: Duration,
    /// The run's clock.
    pub clock: Clock,
    /// Where records go.
    pub history: History,
    /// Set when the clients must stop issuing operations.
    pub stop: Arc<AtomicBool>,
    /// The run's seed (request ids include it).
    pub seed: u64,
}

/// The etcd key of register `key`.
pub fn key_bytes(key: u64) -> Bytes {
    Bytes::from(format!("chaos/{key}"))
}

/// Values are decimal strings of unique numbers; anything else decodes to `u64::MAX`, a value no
/// client ever writes, so a corrupted or phantom value fails the check instead of vanishing.
pub fn decode_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

enum Answer {
    Read(Option<u64>),
    Write(Option<i64>),
    Cas {
        succeeded: bool,
        found: Option<u64>,
        revision: Option<i64>,
    },
}

fn with_request_id<T>(message: T, id: &str, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = id.parse() {
        request.metadata_mut().insert(REQUEST_ID_METADATA, value);
    }
    request.set_timeout(timeout);
    request
}

fn range_request(key: u64, serializable: bool) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key_bytes(key),
        serializable,
        ..Default::default()
    }
}

fn first_value(response: &pb::RangeResponse) -> Option<u64> {
    response.kvs.first().map(|kv| decode_value(&kv.value))
}

async fn perform(
    kv: &mut KvClient<Channel>,
    key: u64,
    input: Input,
    request_id: &str,
    read_mode: ReadMode,
    timeout: Duration,
) -> Result<Answer, Status> {
    match input {
        Input::Read => {
            let mut request =
                tonic::Request::new(range_request(key, read_mode == ReadMode::Serializable));
            request.set_timeout(timeout);
            let response = kv.range(request).await?.into_inner();
            Ok(Answer::Read(first_value(&response)))
        }
        Input::Write(value) => {
            let put = pb::PutRequest {
                key: key_bytes(key),
                value: Bytes::from(value.to_string()),
                ..Default::default()
            };
            let response = kv
                .put(with_request_id(put, request_id, timeout))
                .await?
                .into_inner();
            Ok(Answer::Write(response.header.map(|h| h.revision)))
        }
        Input::Cas { expected, new } => {
            let txn = pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key: key_bytes(key),
                    target_union: Some(pb::compare::TargetUnion::Value(Bytes::from(
                        expected.to_string(),
                    ))),
                    ..Default::default()
                }],
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: key_bytes(key),
                        value: Bytes::from(new.to_string()),
                        ..Default::default()
                    })),
                }],
                // On a mismatch, learn the current value so the next cas has a chance.
                failure: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestRange(range_request(
                        key, false,
                    ))),
                }],
            };
            let response = kv
                .txn(with_request_id(txn, request_id, timeout))
                .await?
                .into_inner();
            let found = response
                .responses
                .first()
                .and_then(|op| match &op.response {
                    Some(pb::response_op::Response::ResponseRange(range)) => first_value(range),
                    _ => None,
                });
            Ok(Answer::Cas {
                succeeded: response.succeeded,
                found,
                revision: response.header.map(|h| h.revision),
            })
        }
        Input::Delete => Err(Status::unimplemented("the workload never deletes")),
    }
}

/// Whether a write that got this error certainly did not take effect. Only errors raised by
/// request validation qualify: anything that can happen after the proposal left (timeouts,
/// `Unavailable` "leader changed", a forwarded retry hitting back-pressure, a lost connection)
/// leaves the outcome unknown, because claiming "failed" for an applied write would make the
/// checker report violations that did not happen.
fn certainly_not_applied(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

/// Runs one client until `context.stop` is set, recording every operation.
pub async fn run_client(plan: ClientPlan, context: ClientContext, mut rng: Rng) {
    let mut member = plan.members[0];
    let mut kv: Option<KvClient<Channel>> = None;
    let mut last_seen: Vec<Option<u64>> = vec![None; context.keys as usize];
    let mut sequence: u64 = 0;
    while !context.stop.load(Ordering::Relaxed) {
        let client = match kv.as_mut() {
            Some(client) => client,
            None => {
                match connect(&context.urls[member], Duration::from_millis(500)).await {
                    Ok(channel) => kv = Some(KvClient::new(channel)),
                    Err(_) => {
                        // Never sent, so not an operation: just try another member.
                        member = *rng.pick(&plan.members);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            }
        };
        sequence += 1;
        let key = rng.below(context.keys);
        let unique = ((plan.id + 1) << 32) | sequence;
        let roll = rng.below(100);
        let input = if roll < plan.read_percent {
            Input::Read
        } else if roll < plan.read_percent + plan.write_percent {
            Input::Write(unique)
        } else {
            Input::Cas {
                // A value never written when we know none, so the cas fails observably.
                expected: last_seen[key as usize].unwrap_or(unique ^ (1 << 31)),
                new: unique,
            }
        };
        let request_id = format!("chaos-{:x}-{}-{}", context.seed, plan.id, sequence);
        let call_us = context.clock.now_us();
        let answer = tokio::time::timeout(
            context.op_timeout,
            perform(
                client,
                key,
                input,
                &request_id,
                plan.read_mode,
                context.op_timeout,
            ),
        )
        .await;
        let end_us = context.clock.now_us();
        let mut revision = None;
        let (outcome, output, note) = match answer {
            Ok(Ok(Answer::Read(value))) => {
                last_seen[key as usize] = value;
                (Outcome::Ok, Output::Read(value), String::new())
            }
            Ok(Ok(Answer::Write(stored_at))) => {
                last_seen[key as usize] = Some(unique);
                revision = stored_at;
                (Outcome::Ok, Output::Write, String::new())
            }
            Ok(Ok(Answer::Cas {
                succeeded,
                found,
                revision: stored_at,
            })) => {
                last_seen[key as usize] = if succeeded { Some(unique) } else { found };
                if succeeded {
                    revision = stored_at;
                }
                (Outcome::Ok, Output::Cas { succeeded }, String::new())
            }
            Ok(Err(status)) => {
                let note = format!("{:?}: {}", status.code(), status.message());
                let outcome = if input == Input::Read || certainly_not_applied(&status) {
                    Outcome::Failed
                } else {
                    Outcome::Unknown
                };
                (outcome, Output::Unknown, note)
            }
            Err(_) => {
                let outcome = if input == Input::Read {
                    Outcome::Failed
                } else {
                    Outcome::Unknown
                };
                (outcome, Output::Unknown, "client timeout".to_owned())
            }
        };
        context.history.push(OpRecord {
            client: plan.id,
            member: context.names[member].clone(),
            key,
            input,
            output,
            call_us,
            end_us,
            outcome,
            note,
            revision,
        });
        if outcome != Outcome::Ok {
            // The connection may be dead or the member cut off: start afresh, maybe elsewhere.
            kv = None;
            member = *rng.pick(&plan.members);
        }
    }
}
