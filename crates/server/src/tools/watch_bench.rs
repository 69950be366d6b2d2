//! `raftkv bench --workload watch`: watchers over etcd's public Watch API while clients put.
//!
//! `--watchers` watchers are opened on `--watch-streams` streams (spread round-robin over the
//! endpoints, each stream on its own connection): all on the benchmark's key prefix, or, with
//! `--watch-keys K`, each on one of K keys (and the clients then put only those K keys). Then
//! `--clients` closed-loop clients put for `--duration`. It reports the puts' throughput and
//! latency, the events delivered per second over all watchers, and the delivery latency: from
//! the put's acknowledgement to the event's arrival (0 when the event came first), sampled on
//! one watcher per stream. With `--clients 0` the watchers only sit there, which is how the
//! memory cost of idle watchers is measured (by the caller, from the members' RSS).
//!
//! Like the rest of `raftkv bench` it speaks only etcd's API, so it measures etcd alike.

use super::bench::{BenchArgs, BenchResult, Keys, connect, endpoint_urls, summarize};
use bytes::Bytes;
use etcdpb::etcdserverpb as pb;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// What a watch run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchBenchResult {
    /// The puts.
    pub puts: BenchResult,
    /// Watchers opened.
    pub watchers: usize,
    /// Events received over all watchers during the measurement.
    pub events: u64,
    /// Events received per second.
    pub events_per_sec: f64,
    /// Delivery latency percentiles in milliseconds (acknowledgement to arrival).
    pub delivery_p50_ms: f64,
    /// 99th percentile of the delivery latency.
    pub delivery_p99_ms: f64,
    /// Samples behind the delivery percentiles.
    pub delivery_samples: usize,
}

impl WatchBenchResult {
    /// The result as one JSON object.
    pub fn to_json(&self, args: &BenchArgs) -> String {
        format!(
            "{{\"workload\":\"watch\",\"clients\":{},\"watchers\":{},\"watch_keys\":{},\"value_size\":{},\"ops\":{},\"errors\":{},\"seconds\":{:.3},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\"events\":{},\"events_per_sec\":{:.1},\"delivery_p50_ms\":{:.3},\"delivery_p99_ms\":{:.3},\"delivery_samples\":{}}}",
            args.clients,
            self.watchers,
            args.watch_keys,
            args.value_size,
            self.puts.ops,
            self.puts.errors,
            self.puts.seconds,
            self.puts.ops_per_sec,
            self.puts.p50_ms,
            self.puts.p99_ms,
            self.puts.p999_ms,
            self.puts.max_ms,
            self.events,
            self.events_per_sec,
            self.delivery_p50_ms,
            self.delivery_p99_ms,
            self.delivery_samples
        )
    }

    /// The result as one line of text.
    pub fn to_text(&self, args: &BenchArgs) -> String {
        format!(
            "watch: {} watchers, {} putting clients: {:.0} puts/s (p50 {:.3} ms, p99 {:.3} ms); {:.0} events/s delivered; delivery ms p50 {:.3} p99 {:.3} ({} samples)",
            self.watchers,
            args.clients,
            self.puts.ops_per_sec,
            self.puts.p50_ms,
            self.puts.p99_ms,
            self.events_per_sec,
            self.delivery_p50_ms,
            self.delivery_p99_ms,
            self.delivery_samples
        )
    }
}

/// The bench key a watcher or a put uses.
fn bench_key(index: u64) -> Bytes {
    Bytes::from(format!("bench-{index:08}"))
}

/// One stream's receiving side, until `stop`: counts events (into `events` while `counting`),
/// and records (revision, arrival) for the events of its first watcher.
async fn receive(
    mut responses: tonic::Streaming<pb::WatchResponse>,
    sampled_watch: i64,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
) -> Vec<(i64, Instant)> {
    let mut arrivals = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), responses.message()).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let response = match next {
            Err(_) => continue,
            Ok(Ok(Some(response))) => response,
            Ok(_) => break,
        };
        if !counting.load(Ordering::Relaxed) || response.events.is_empty() {
            continue;
        }
        let now = Instant::now();
        events.fetch_add(response.events.len() as u64, Ordering::Relaxed);
        if response.watch_id == sampled_watch {
            let revision = response.header.as_ref().map_or(0, |header| header.revision);
            arrivals.push((revision, now));
        }
    }
    arrivals
}

/// Opens one stream with `watchers` watchers and waits for every `created` answer; returns the
/// request sender (kept open), the response stream and the first watcher's id.
async fn open_stream(
    channel: Channel,
    first: usize,
    watchers: usize,
    watch_keys: u64,
) -> Result<
    (
        mpsc::Sender<pb::WatchRequest>,
        tonic::Streaming<pb::WatchResponse>,
        i64,
    ),
    String,
> {
    let mut client = pb::watch_client::WatchClient::new(channel);
    // Every create is queued before the call: a server may send the response headers only
    // with its first message, so awaiting the call before sending anything could wait forever.
    let (requests, outbound) = mpsc::channel(watchers.max(1) + 16);
    for index in first..first + watchers {
        let (key, range_end) = if watch_keys == 0 {
            (Bytes::from_static(b"bench-"), Bytes::from_static(b"bench."))
        } else {
            (bench_key(index as u64 % watch_keys), Bytes::new())
        };
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key,
                    range_end,
                    ..Default::default()
                },
            )),
        };
        requests
            .send(create)
            .await
            .map_err(|_| "the watch stream closed".to_string())?;
    }
    let mut responses = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .map_err(|status| format!("cannot open a watch stream: {}", status.message()))?
        .into_inner();
    let mut first_id = None;
    let mut created = 0;
    while created < watchers {
        let response = tokio::time::timeout(Duration::from_secs(30), responses.message())
            .await
            .map_err(|_| "timed out waiting for watchers to be created".to_string())?
            .map_err(|status| format!("watch stream failed: {}", status.message()))?
            .ok_or("the watch stream ended while creating watchers")?;
        if response.created {
            if response.canceled {
                return Err(format!("a watcher was refused: {}", response.cancel_reason));
            }
            first_id.get_or_insert(response.watch_id);
            created += 1;
        }
    }
    Ok((requests, responses, first_id.unwrap_or(0)))
}

/// Runs the watch workload.
pub async fn bench_watch(args: &BenchArgs) -> Result<WatchBenchResult, String> {
    let endpoints = endpoint_urls(&args.endpoints)?;
    let streams = args.watch_streams.max(1).min(args.watchers.max(1));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut opened = 0;
    for stream in 0..streams {
        let share = args.watchers / streams + usize::from(stream < args.watchers % streams);
        let channel = connect(&endpoints[stream % endpoints.len()]).await?;
        let (sender, responses, sampled) =
            open_stream(channel, opened, share, args.watch_keys).await?;
        opened += share;
        senders.push(sender);
        receivers.push(tokio::spawn(receive(
            responses,
            sampled,
            counting.clone(),
            stop.clone(),
            events.clone(),
        )));
    }
    if !args.json {
        eprintln!("  {opened} watchers on {streams} streams are ready");
    }

    let mut putters = Vec::new();
    for index in 0..args.clients {
        let channel = connect(&endpoints[index % endpoints.len()]).await?;
        putters.push(pb::kv_client::KvClient::new(channel));
    }
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let key_space = if args.watch_keys == 0 {
        args.key_space
    } else {
        args.watch_keys
    };
    let done = Arc::new(AtomicU64::new(0));
    let put_stop = Arc::new(AtomicBool::new(false));
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, mut client) in putters.into_iter().enumerate() {
        let (value, stop, done, timeout) =
            (value.clone(), put_stop.clone(), done.clone(), args.timeout);
        let mut keys = Keys::seeded(args.seed, index);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut acks = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut request = tonic::Request::new(pb::PutRequest {
                    key: bench_key(keys.next(key_space)),
                    value: value.clone(),
                    ..Default::default()
                });
                request.set_timeout(timeout);
                let begin = Instant::now();
                match client.put(request).await {
                    Ok(response) => {
                        let now = Instant::now();
                        let micros = (now - begin).as_micros().min(u128::from(u32::MAX)) as u32;
                        latencies.push(micros);
                        let revision = response.into_inner().header.map_or(0, |h| h.revision);
                        acks.push((revision, now));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, acks, errors)
        }));
    }
    tokio::time::sleep(args.duration).await;
    put_stop.store(true, Ordering::Relaxed);
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let delivered = events.load(Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut acks: HashMap<i64, Instant> = HashMap::new();
    let mut errors = 0;
    for task in tasks {
        let (mut task_latencies, task_acks, task_errors) = task
            .await
            .map_err(|error| format!("a client task failed: {error}"))?;
        latencies.append(&mut task_latencies);
        acks.extend(task_acks);
        errors += task_errors;
    }
    stop.store(true, Ordering::Relaxed);
    drop(senders);
    let mut delivery: Vec<u32> = Vec::new();
    for receiver in receivers {
        let arrivals = receiver
            .await
            .map_err(|error| format!("a watch task failed: {error}"))?;
        for (revision, arrived) in arrivals {
            if let Some(acked) = acks.get(&revision) {
                let micros = arrived.saturating_duration_since(*acked).as_micros();
                delivery.push(micros.min(u128::from(u32::MAX)) as u32);
            }
        }
    }
    let samples = delivery.len();
    let delivery_summary = summarize(delivery, 0, elapsed);
    Ok(WatchBenchResult {
        puts: summarize(latencies, errors, elapsed),
        watchers: opened,
        events: delivered,
        events_per_sec: delivered as f64 / elapsed.as_secs_f64().max(1e-9),
        delivery_p50_ms: delivery_summary.p50_ms,
        delivery_p99_ms: delivery_summary.p99_ms,
        delivery_samples: samples,
    })
}
