//! `raftkv bench`: a closed-loop load generator over etcd's v3 API.
//!
//! It speaks only etcd's public gRPC API (the same generated client the `raftkv` client
//! subcommands use), so it measures etcd and raftkv alike: each client is one gRPC connection
//! to one endpoint (clients are spread round-robin over the endpoints) that sends its next
//! request as soon as the previous one is answered. Latencies are recorded per request in
//! microseconds; the report gives throughput and the p50/p99/p99.9/max latencies.

use crate::tools::client::parse_duration;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use etcdpb::etcdserverpb as pb;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Puts of random keys.
    Put,
    /// Gets of random keys.
    Get,
    /// Half puts, half gets.
    Mixed,
    /// Puts while `--watchers` watchers receive them (see `watch_bench`).
    Watch,
}

impl Workload {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Watch => "watch",
        }
    }
}

/// `raftkv bench` settings.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Endpoints to load, comma-separated (host:port or http://host:port).
    #[arg(long, default_value = "127.0.0.1:2379", env = "RAFTKV_ENDPOINTS")]
    pub endpoints: String,
    /// Concurrent clients, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to measure (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The request mix.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,
    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys (chosen uniformly at random).
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// Linearizable reads (the default, as etcd's).
    #[arg(long, conflicts_with = "serializable")]
    pub linearizable: bool,
    /// Serializable (local, possibly stale) reads.
    #[arg(long)]
    pub serializable: bool,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the key choice (the same seed sends the same keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Watch workload: how many watchers.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Watch workload: over how many streams (connections) the watchers are spread.
    #[arg(long, default_value_t = 10)]
    pub watch_streams: usize,
    /// Watch workload: 0 puts every watcher on the benchmark's key prefix; K > 0 gives each
    /// watcher one of K keys, and the clients put only those.
    #[arg(long, default_value_t = 0)]
    pub watch_keys: u64,
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchResult {
    /// Requests answered successfully.
    pub ops: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Wall time of the measurement.
    pub seconds: f64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

impl BenchResult {
    /// The result as one JSON object (hand-written: flat numbers only).
    pub fn to_json(&self, args: &BenchArgs) -> String {
        format!(
            "{{\"workload\":\"{}\",\"clients\":{},\"value_size\":{},\"key_space\":{},\"serializable\":{},\"ops\":{},\"errors\":{},\"seconds\":{:.3},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
            args.workload.name(),
            args.clients,
            args.value_size,
            args.key_space,
            args.serializable,
            self.ops,
            self.errors,
            self.seconds,
            self.ops_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        )
    }
}

/// Percentile of sorted latencies (microseconds) in milliseconds.
fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[index]) / 1000.0
}

/// Summarizes per-request latencies (microseconds).
pub fn summarize(mut latencies: Vec<u32>, errors: u64, elapsed: Duration) -> BenchResult {
    latencies.sort_unstable();
    let seconds = elapsed.as_secs_f64().max(1e-9);
    BenchResult {
        ops: latencies.len() as u64,
        errors,
        seconds,
        ops_per_sec: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        p999_ms: percentile(&latencies, 0.999),
        max_ms: latencies.last().map_or(0.0, |max| f64::from(*max) / 1000.0),
    }
}

/// A small PRNG for key choice (splitmix64): the same seed gives the same keys.
pub(crate) struct Keys(u64);

impl Keys {
    /// The sequence of client `index` under `seed`.
    pub(crate) fn seeded(seed: u64, index: usize) -> Keys {
        Keys(seed ^ (index as u64).wrapping_mul(0x5851_f42d_4c95_7f2d))
    }

    /// The next key number in `0..space`.
    pub(crate) fn next(&mut self, space: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % space.max(1)
    }
}

fn endpoint_url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftkv bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.workload == Workload::Watch {
        return match runtime.block_on(super::watch_bench::bench_watch(&args)) {
            Ok(result) => {
                if args.json {
                    println!("{}", result.to_json(&args));
                } else {
                    println!("{}", result.to_text(&args));
                }
                if args.clients > 0 && result.puts.ops == 0 {
                    eprintln!("raftkv bench: no put succeeded");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("raftkv bench: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(bench(&args)) {
        Ok(result) => {
            if args.json {
                println!("{}", result.to_json(&args));
            } else {
                println!(
                    "{:?} x{} clients, {} B values: {:.0} ops/s ({} ok, {} errors in {:.1} s); latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
                    args.workload,
                    args.clients,
                    args.value_size,
                    result.ops_per_sec,
                    result.ops,
                    result.errors,
                    result.seconds,
                    result.p50_ms,
                    result.p99_ms,
                    result.p999_ms,
                    result.max_ms
                );
            }
            if result.ops == 0 {
                eprintln!("raftkv bench: no request succeeded");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load and returns what it measured.
pub async fn bench(args: &BenchArgs) -> Result<BenchResult, String> {
    let clients = connect_clients(args).await?;
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for (index, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_client(
            index,
            client,
            args.clone(),
            value.clone(),
            stop.clone(),
            done.clone(),
        )));
    }
    report_progress(args, started, &done).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut task_latencies, task_errors) = task
            .await
            .map_err(|error| format!("a client task failed: {error}"))?;
        latencies.append(&mut task_latencies);
        errors += task_errors;
    }
    Ok(summarize(latencies, errors, elapsed))
}

/// The URLs of a comma-separated `--endpoints` list (at least one).
pub(crate) fn endpoint_urls(list: &str) -> Result<Vec<String>, String> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(endpoint_url)
        .collect();
    if endpoints.is_empty() {
        return Err("--endpoints is empty".into());
    }
    Ok(endpoints)
}

/// One connection to `url`, as every benchmark client makes it.
pub(crate) async fn connect(url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_owned())
        .map_err(|error| format!("{url}: {error}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {url}: {error}"))
}

/// One connection per client, spread round-robin over `--endpoints`.
async fn connect_clients(
    args: &BenchArgs,
) -> Result<Vec<pb::kv_client::KvClient<Channel>>, String> {
    let endpoints = endpoint_urls(&args.endpoints)?;
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let channel = connect(&endpoints[index % endpoints.len()]).await?;
        clients.push(pb::kv_client::KvClient::new(channel));
    }
    Ok(clients)
}

/// One closed-loop client: sends its next request as soon as the previous one is answered,
/// until `stop`; returns its latencies (microseconds) and its count of errors.
async fn run_client(
    index: usize,
    mut client: pb::kv_client::KvClient<Channel>,
    args: BenchArgs,
    value: Bytes,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> (Vec<u32>, u64) {
    let mut keys = Keys::seeded(args.seed, index);
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut errors = 0u64;
    let mut turn = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = Bytes::from(format!("bench-{:08}", keys.next(args.key_space)));
        let put = match args.workload {
            Workload::Put => true,
            Workload::Get => false,
            Workload::Mixed => turn.is_multiple_of(2),
            Workload::Watch => true,
        };
        turn += 1;
        let begin = Instant::now();
        let outcome = if put {
            let mut request = tonic::Request::new(pb::PutRequest {
                key,
                value: value.clone(),
                ..Default::default()
            });
            request.set_timeout(args.timeout);
            client.put(request).await.map(|_| ())
        } else {
            let mut request = tonic::Request::new(pb::RangeRequest {
                key,
                serializable: args.serializable,
                ..Default::default()
            });
            request.set_timeout(args.timeout);
            client.range(request).await.map(|_| ())
        };
        let micros = begin.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match outcome {
            Ok(()) => {
                latencies.push(micros);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => errors += 1,
        }
    }
    (latencies, errors)
}

/// Waits out `--duration`, printing the running count once a second (unless `--json`).
async fn report_progress(args: &BenchArgs, started: Instant, done: &AtomicU64) {
    let mut last = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    while started.elapsed() < args.duration {
        let left = args.duration.saturating_sub(started.elapsed());
        tokio::select! {
            _ = ticks.tick() => {
                let now = done.load(Ordering::Relaxed);
                if !args.json {
                    eprintln!(
                        "  {:>5.1}s  {:>9} ops  {:>9} ops/s",
                        started.elapsed().as_secs_f64(),
                        now,
                        now - last
                    );
                }
                last = now;
            }
            () = tokio::time::sleep(left) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let latencies: Vec<u32> = (1..=1000).map(|ms| ms * 1000).collect();
        let result = summarize(latencies, 2, Duration::from_secs(2));
        assert_eq!(result.ops, 1000);
        assert_eq!(result.errors, 2);
        assert!((result.ops_per_sec - 500.0).abs() < 1e-9);
        assert!((result.p50_ms - 500.0).abs() < 1e-9);
        assert!((result.p99_ms - 990.0).abs() < 1e-9);
        assert!((result.p999_ms - 999.0).abs() < 1e-9);
        assert!((result.max_ms - 1000.0).abs() < 1e-9);
        assert_eq!(summarize(Vec::new(), 0, Duration::from_secs(1)).p99_ms, 0.0);
    }

    #[test]
    fn the_same_seed_chooses_the_same_keys() {
        let mut a = Keys(7);
        let mut b = Keys(7);
        let first: Vec<u64> = (0..100).map(|_| a.next(1000)).collect();
        let second: Vec<u64> = (0..100).map(|_| b.next(1000)).collect();
        assert_eq!(first, second);
        assert!(first.iter().all(|key| *key < 1000));
        assert!(
            first
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 50
        );
    }
}
