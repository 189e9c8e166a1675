//! `meridian bench ingest`: sustained ingest over HTTP on loopback into the durable log,
//! against a baseline measured in the same run (raw appends to the embedded log alone).
//! `meridian bench history`: history list/count latency at a fixed rate against `/healthz`,
//! and the list's p99 with a stream of DELETEs beside it against the list alone.
//!
//! The server is this binary started as a child process (`serve` on a temporary data
//! directory), so its peak RSS is its own. Each request carries `--batch` events with
//! unique ids; latency is from sending a request to its acknowledgement (after fsync).

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use meridian_event::{AppId, Event, EventId, Timestamp, ValidationPolicy};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// HTTP ingest into the durable log vs raw log appends.
    Ingest(IngestArgs),
    /// History list/count latency over HTTP at a fixed request rate, with the demo world.
    History(HistoryBenchArgs),
    /// User action queries over HTTP at a fixed rate against `/healthz`, and the latency
    /// from an event's acknowledgement to its trigger's webhook.
    Actions(ActionsBenchArgs),
    /// The long-lived client connection (WebSocket) against `POST /v1/events`: ack latency
    /// at a fixed rate on one and on many connections, and the most one connection carries.
    Connect(connect::ConnectBenchArgs),
    /// Each queue source (NATS JetStream, RabbitMQ) through the whole server against the
    /// queue's own consumer on the same data, and `POST /v1/events` of the same events.
    Sources(sources::SourcesBenchArgs),
    /// The demo stream through a server with 10,000 alert rules against one without, in
    /// the same run; window close to notification, rule change to effect, memory per rule.
    Alerts(alerts::AlertsBenchArgs),
    /// The category listing through the server: a bulk-loaded catalog, JSON pages with and
    /// without facets, shopper pages rendered and cached, product changes, each against
    /// `/healthz` in the same run.
    Listing(listing::ListingBenchArgs),
}

#[path = "bench_alerts.rs"]
mod alerts;

#[path = "bench_listing.rs"]
mod listing;

#[path = "bench_connect.rs"]
mod connect;
#[path = "bench_sources.rs"]
mod sources;

#[derive(Debug, Args)]
struct ActionsBenchArgs {
    /// Users in the demo world.
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Behaviour events fed before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Requests per second of each measured query phase (open loop).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds each phase runs unmeasured first.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Orders per second of fresh users (each fires the demo's `first_order` trigger) in
    /// the event-to-webhook phase.
    #[arg(long, default_value_t = 200)]
    trigger_rate: u64,
    /// Threads of each actions processor (`actions.threads`; 0: one per core).
    #[arg(long, default_value_t = 0)]
    processor_threads: usize,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct HistoryBenchArgs {
    /// Users in the demo world.
    #[arg(long, default_value_t = 1_000_000)]
    users: usize,
    /// Behaviour events fed before measuring (about 60% are views).
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Requests per second of each measured phase (open loop).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds each phase runs unmeasured first (0 = measure from the first request, which
    /// includes first-touch costs: rate-limit buckets and cache entries being created).
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Hot tier of the server: embedded or redis.
    #[arg(long, default_value = "embedded")]
    hot: String,
    /// State store of the server (its cold tier): fjall or redb (default: the server's).
    #[arg(long)]
    state_backend: Option<String>,
    /// Items per list page.
    #[arg(long, default_value_t = 20)]
    page: usize,
    /// DELETEs per second sent beside the lists in the comparison at the end (`DELETE
    /// …/history/{sku}` of random users and SKUs: a marks commit with fsync each); 0 skips it.
    #[arg(long, default_value_t = 500)]
    delete_rate: u64,
    /// Pairs of phases in that comparison, alternating: lists alone, then lists with the
    /// DELETEs beside them (alternating spreads a noisy neighbour's bursts over both).
    #[arg(long, default_value_t = 3)]
    delete_pairs: usize,
    /// HTTP worker threads of the server under test (default: one per core).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Lists alone against lists with DELETEs beside them, over alternating pairs of phases.
#[derive(Debug)]
struct DeleteComparison {
    /// Lists alone, every pair's phase merged.
    alone: Phase,
    /// Lists with the DELETEs beside them, merged.
    beside: Phase,
    /// The DELETEs, merged.
    deletes: Phase,
    /// Per pair: list p99 alone and beside the DELETEs, ms.
    pairs: Vec<(f64, f64)>,
    /// Generator lag p99 over the phases with DELETEs, ms.
    lag_p99_ms: f64,
}

impl Phase {
    fn merge(phases: &[Phase]) -> anyhow::Result<Phase> {
        let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for p in phases {
            latency_us.add(&p.latency_us)?;
        }
        Ok(Phase {
            events: phases.iter().map(|p| p.events).sum(),
            elapsed: phases.iter().map(|p| p.elapsed).sum(),
            latency_us,
            errors: phases.iter().map(|p| p.errors).sum(),
        })
    }
}

/// Results of one load phase.
#[derive(Debug)]
struct Phase {
    events: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    errors: u64,
}

impl Phase {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn event_templates(n: usize) -> anyhow::Result<Vec<Event>> {
    let config = meridian_demo::DemoConfig { users: 50_000, spus: 5_000, malformed_share: 0.0, ..meridian_demo::DemoConfig::default() };
    let world = Arc::new(meridian_demo::DemoWorld::generate(&config)?);
    let app = AppId::new("bench")?;
    let now = Timestamp::now();
    let mut out = Vec::with_capacity(n);
    for (mut value, malformed) in world.events(n as u64 * 2).tagged() {
        if malformed.is_some() {
            continue;
        }
        value["time"] = serde_json::json!(now.millis());
        if let Ok(event) = Event::from_json(value, &app, now, &ValidationPolicy::default(), || EventId::new("x").expect("valid")) {
            out.push(event);
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

/// JSON of the event without its id (`"user":…}`), so a unique id can be put in front.
fn json_tail(event: &Event) -> String {
    let mut value = event.to_json();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("id");
        obj.remove("app");
        obj.remove("received");
    }
    let text = value.to_string();
    text[1..].to_owned()
}

async fn baseline(templates: &[Event], args: &IngestArgs, dir: &std::path::Path) -> anyhow::Result<Phase> {
    let log = EmbeddedLog::open(dir.join("baseline-log"), EmbeddedLogConfig::default())?;
    let topic = TopicName::new("events")?;
    log.ensure_topic(&topic, 4)?;
    let encoded: Arc<Vec<(Bytes, Bytes)>> = Arc::new(templates.iter().map(|e| (Bytes::from(e.partition_key().to_owned()), Bytes::from(e.encode()))).collect());
    let log: Arc<dyn Log> = log;
    let result = drive(args, {
        let log = log.clone();
        let topic = topic.clone();
        let encoded = encoded.clone();
        let batch = args.batch;
        move |n: u64| {
            let records: Vec<AppendRecord> = (0..batch)
                .map(|i| {
                    let (key, value) = &encoded[(n as usize * batch + i) % encoded.len()];
                    AppendRecord { key: key.clone(), value: value.clone(), timestamp: 0 }
                })
                .collect();
            let fut = log.append(&topic, records);
            async move { fut.await.map(|_| ()).map_err(anyhow::Error::from) }
        }
    })
    .await;
    log.close()?;
    result
}

/// Runs `args.concurrency` loops of `request(n)` for warm-up + duration.
async fn drive<F, Fut>(args: &IngestArgs, request: F) -> anyhow::Result<Phase>
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm_end = start + Duration::from_secs(args.warmup_secs);
    let end = warm_end + Duration::from_secs(args.duration_secs);
    let batch = args.batch as u64;
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let request = request.clone();
        let (counter, measured, errors) = (counter.clone(), measured.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                match request(n).await {
                    Ok(()) => {
                        if sent >= warm_end {
                            let _ = hist.record(sent.elapsed().as_micros() as u64);
                            measured.fetch_add(batch, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("request failed: {e:#}");
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            hist
        }));
    }
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        latency_us.add(task.await?)?;
    }
    let elapsed = Instant::now().saturating_duration_since(warm_end);
    Ok(Phase { events: measured.load(Ordering::Relaxed), elapsed, latency_us, errors: errors.load(Ordering::Relaxed) })
}

/// Sends requests at a fixed `rate` per second for `duration` (open loop: the schedule
/// does not wait for answers). The generator dispatches the requests due, lets the
/// runtime poll, and sleeps until the next one is due, so requests are spread over time,
/// not sent in bursts. Latency is measured from dispatch; how late dispatch was against
/// the schedule (a saturated client falls behind) is kept separately in
/// `schedule_lag_us`, so neither hides in the other.
async fn open_loop<F, Fut>(rate: u64, duration: Duration, max_in_flight: usize, request: F) -> anyhow::Result<(Phase, Histogram<u64>)>
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (mut phases, lag) = open_loop_mixed(rate, duration, max_in_flight, 1, move |k| (0, request(k))).await?;
    Ok((phases.remove(0), lag))
}

/// [`open_loop`] over requests of `kinds` kinds: `request(k)` says which kind the k-th
/// request is and sends it; each kind's answers are measured in a phase of its own
/// (requests per second over the whole run).
async fn open_loop_mixed<F, Fut>(rate: u64, duration: Duration, max_in_flight: usize, kinds: usize, request: F) -> anyhow::Result<(Vec<Phase>, Histogram<u64>)>
where
    F: Fn(u64) -> (usize, Fut) + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let errors: Arc<Vec<AtomicU64>> = Arc::new((0..kinds).map(|_| AtomicU64::new(0)).collect());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64)>();
    let mut schedule_lag_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let due = |k: u64| start + Duration::from_secs_f64(k as f64 / rate as f64);
    let mut k = 0u64;
    while k < total {
        let due_by_now = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while k < due_by_now {
            let permit = permits.clone().acquire_owned().await?;
            let dispatched = Instant::now();
            schedule_lag_us.record(dispatched.saturating_duration_since(due(k)).as_micros().max(1) as u64)?;
            let (errors, tx) = (errors.clone(), tx.clone());
            let (kind, sent) = request(k);
            tokio::spawn(async move {
                let result = sent.await;
                let latency_us = dispatched.elapsed().as_micros() as u64;
                drop(permit);
                match result {
                    Ok(()) => {
                        let _ = tx.send((kind, latency_us));
                    }
                    Err(e) => {
                        if errors[kind].fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("request failed: {e:#}");
                        }
                    }
                }
            });
            k += 1;
        }
        // Let the spawned requests write and the runtime read answers, then sleep until
        // the next request is due. tokio's timer ticks in whole milliseconds, which
        // would send 20 requests at once every ms at 20k/s and measure the burst, not
        // the server; a thread sleep (~50–100 µs with the kernel's timer slack) keeps
        // dispatch close to the schedule. This runtime is the generator's alone.
        tokio::task::yield_now().await;
        let wait = due(k).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(Duration::from_micros(200)));
        }
    }
    drop(tx);
    let mut latencies = (0..kinds).map(|_| Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)).collect::<Result<Vec<_>, _>>()?;
    let mut ok = vec![0u64; kinds];
    while let Some((kind, us)) = rx.recv().await {
        latencies[kind].record(us.max(1))?;
        ok[kind] += 1;
    }
    let elapsed = start.elapsed();
    let phases = latencies.into_iter().zip(ok).zip(errors.iter()).map(|((latency_us, events), errors)| Phase { events, elapsed, latency_us, errors: errors.load(Ordering::Relaxed) }).collect();
    Ok((phases, schedule_lag_us))
}

/// A plain-HTTP connector without Nagle's delay (as the server sets on its side).
fn http_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CPU time (user + system) a process has used so far, in microseconds (from
/// `/proc/<pid>/stat`, whose tick is USER_HZ = 100 on Linux).
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Starts `meridian serve` as a child process on `data_dir` with `extra` flags; returns
/// it (stopped with SIGTERM on drop) and its base URL once it answers.
async fn start_server(data_dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<(ChildServer, String)> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
        .args(extra)
        .env("MERIDIAN_MASTER_KEY", BENCH_MASTER_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the server")?;
    let server = ChildServer(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "server did not start within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((server, base))
}

const BENCH_MASTER_KEY: &str = "bench-master-key";

/// Server flags of the benchmarks that load it on purpose: rate limits out of the way.
const NO_RATE_LIMITS: [&str; 6] = ["--set", "rate_limits.global_per_sec=10000000", "--set", "rate_limits.caller_per_sec=10000000", "--set", "rate_limits.user_per_sec=1000000"];

/// [`NO_RATE_LIMITS`], and webhook receivers on loopback allowed (they run in the bench).
fn loose_limits() -> Vec<&'static str> {
    NO_RATE_LIMITS.into_iter().chain(["--set", "notify.network.allow_loopback=true"]).collect()
}

/// The value of the series `series` (its name and labels, as printed) in a Prometheus
/// text exposition.
fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Creates the app `bench` and returns a key with `scopes`.
async fn bench_key(base: &str, scopes: &[&str]) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let created = http.post(format!("{base}/v1/apps")).bearer_auth(BENCH_MASTER_KEY).json(&serde_json::json!({"id": "bench"})).send().await?;
    anyhow::ensure!(created.status().is_success() || created.status() == 409, "cannot create the app: {}", created.status());
    let key: serde_json::Value =
        http.post(format!("{base}/v1/apps/bench/keys")).bearer_auth(BENCH_MASTER_KEY).json(&serde_json::json!({"scopes": scopes})).send().await?.error_for_status()?.json().await?;
    Ok(key["key"].as_str().unwrap_or_default().to_owned())
}

/// Seconds the processors took, after the load stopped, to process everything the log
/// holds, and the number of records they consumed per processor.
#[derive(Debug)]
struct Drain {
    secs: f64,
    records: u64,
}

async fn http_phase(templates: &[Event], args: &IngestArgs, dir: &std::path::Path) -> anyhow::Result<(Phase, Option<u64>, Drain)> {
    let (server, base) = start_server(&dir.join("server"), &[]).await?;
    let auth = format!("Bearer {}", bench_key(&base, &["write"]).await?);
    let tails: Arc<Vec<String>> = Arc::new(templates.iter().map(json_tail).collect());
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(args.concurrency).build(http_connector());
    let uri: hyper::Uri = format!("{base}/v1/events").parse()?;
    let batch = args.batch;
    let phase = drive(args, move |n: u64| {
        let mut body = String::with_capacity(batch * 360);
        body.push('[');
        for i in 0..batch {
            if i > 0 {
                body.push(',');
            }
            body.push_str("{\"id\":\"b");
            body.push_str(&(n * batch as u64 + i as u64).to_string());
            body.push_str("\",");
            body.push_str(&tails[(n as usize * batch + i) % tails.len()]);
        }
        body.push(']');
        let request = hyper::Request::post(uri.clone())
            .header("authorization", auth.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let client = client.clone();
        async move {
            let response = client.request(request?).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status.is_success(), "status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
            anyhow::ensure!(body.windows(12).any(|w| w == b"\"rejected\":0"), "events rejected: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
            Ok(())
        }
    })
    .await?;
    let load_ended = Instant::now();
    while !processors_caught_up(&base).await? {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: serde_json::Value = reqwest::Client::new().get(format!("{base}/v1/admin/processors")).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
    let records = status["processors"][0]["partitions"].as_array().map_or(0, |ps| ps.iter().filter_map(|p| p["position"].as_u64()).sum());
    let drain = Drain { secs: load_ended.elapsed().as_secs_f64(), records };
    let rss = peak_rss_kib(server.0.id());
    drop(server);
    Ok((phase, rss, drain))
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let args = match args.command {
        BenchCommand::Ingest(args) => args,
        BenchCommand::History(args) => return history_bench(args),
        BenchCommand::Actions(args) => return actions_bench(args),
        BenchCommand::Connect(args) => return connect::connect_bench(args),
        BenchCommand::Sources(args) => return sources::sources_bench(args),
        BenchCommand::Alerts(args) => return alerts::alerts_bench(args),
        BenchCommand::Listing(args) => return listing::run(args),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        eprintln!("preparing events…");
        let templates = tokio::task::spawn_blocking(|| event_templates(20_000)).await??;
        let avg_json = templates.iter().map(|e| json_tail(e).len() + 12).sum::<usize>() / templates.len();
        let avg_bin = templates.iter().map(|e| e.encode().len()).sum::<usize>() / templates.len();
        eprintln!("baseline: raw appends to the embedded log ({}-record batches, {} in flight)…", args.batch, args.concurrency);
        let base = baseline(&templates, &args, tmp.path()).await?;
        eprintln!("http: POST /v1/events on loopback ({} events/request, {} in flight)…", args.batch, args.concurrency);
        let (http, rss_kib, drain) = http_phase(&templates, &args, tmp.path()).await?;
        let ratio = http.events_per_sec() / base.events_per_sec();
        println!("## meridian bench ingest ({} s measured, {} s warm-up, {} events/request, {} in flight)", args.duration_secs, args.warmup_secs, args.batch, args.concurrency);
        println!("average event: {avg_json} bytes JSON, {avg_bin} bytes encoded in the log");
        println!("| phase | events/s | p50 ms | p99 ms | p999 ms | errors |");
        println!("|---|---|---|---|---|---|");
        for (name, p) in [("baseline: raw log append", &base), ("HTTP ingest (server)", &http)] {
            println!("| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |", p.events_per_sec(), p.quantile_ms(0.5), p.quantile_ms(0.99), p.quantile_ms(0.999), p.errors);
        }
        println!("ratio HTTP / baseline: {ratio:.3}");
        let load_secs = (args.warmup_secs + args.duration_secs) as f64;
        println!(
            "whole pipeline (counters and history processors): {} records processed {:.1} s after the load stopped = {:.0} events/s through every processor",
            drain.records,
            drain.secs,
            drain.records as f64 / (load_secs + drain.secs)
        );
        match rss_kib {
            Some(kib) => println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0),
            None => println!("server peak RSS: unavailable"),
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "ingest", "batch": args.batch, "concurrency": args.concurrency, "duration_secs": args.duration_secs,
                "baseline_events_per_sec": base.events_per_sec().round(), "http_events_per_sec": http.events_per_sec().round(),
                "http_p50_ms": http.quantile_ms(0.5), "http_p99_ms": http.quantile_ms(0.99), "http_p999_ms": http.quantile_ms(0.999),
                "baseline_p50_ms": base.quantile_ms(0.5), "baseline_p99_ms": base.quantile_ms(0.99),
                "ratio": ratio, "server_peak_rss_mib": rss_kib.map(|k| k as f64 / 1024.0), "http_errors": http.errors,
                "pipeline_drain_secs": drain.secs, "pipeline_events_per_sec": drain.records as f64 / (load_secs + drain.secs)
            })
        );
        Ok(())
    })
}

/// Handler-time quantiles the server itself measured (its Prometheus summary of
/// `meridian_http_request_duration_seconds`) for the benchmarked routes, in ms.
async fn server_quantiles(base: &str) -> anyhow::Result<Vec<(String, f64, f64, f64)>> {
    let text = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    let mut out = Vec::new();
    for route in ["/healthz", "/v1/apps/{app}/users/{user}/history", "/v1/apps/{app}/users/{user}/history/count"] {
        let q = |quantile: &str| {
            let needle = format!("route=\"{route}\",status=\"200\",quantile=\"{quantile}\"}}");
            text.lines()
                .find(|l| l.starts_with("meridian_http_request_duration_seconds{") && l.contains("method=\"GET\"") && l.contains(&needle))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|secs| secs * 1000.0)
                .unwrap_or(f64::NAN)
        };
        out.push((route.to_owned(), q("0.5"), q("0.99"), q("0.999")));
    }
    Ok(out)
}

async fn processors_caught_up(base: &str) -> anyhow::Result<bool> {
    let status: serde_json::Value = reqwest::Client::new().get(format!("{base}/v1/admin/processors")).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
    Ok(status["processors"].as_array().is_some_and(|all| all.iter().all(|p| p["lag"] == 0 && p["partitions"].as_array().is_some_and(|x| !x.is_empty()))))
}

fn print_phase_table(rows: &[(&str, &Phase)]) {
    println!("| phase | requests/s | p50 ms | p99 ms | p999 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for (name, p) in rows {
        println!("| {name} | {:.0} | {:.3} | {:.3} | {:.3} | {} |", p.events_per_sec(), p.quantile_ms(0.5), p.quantile_ms(0.99), p.quantile_ms(0.999), p.errors);
    }
}

fn history_bench(args: HistoryBenchArgs) -> anyhow::Result<()> {
    // One thread for the load generator: on 2 cores it must not take both from the server.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        eprintln!("generating a demo world with {} users…", args.users);
        let config = meridian_demo::DemoConfig { users: args.users, malformed_share: 0.0, days: 3, ..meridian_demo::DemoConfig::default() };
        let world = Arc::new(tokio::task::spawn_blocking(move || meridian_demo::DemoWorld::generate(&config)).await??);
        let catalog_dir = tmp.path().join("catalog");
        std::fs::create_dir_all(&catalog_dir)?;
        let mut skus = String::new();
        for sku in &world.catalog.skus {
            skus.push_str(&serde_json::to_string(sku)?);
            skus.push('\n');
        }
        std::fs::write(catalog_dir.join("skus.jsonl"), skus)?;
        // The shared Redis: a prefix of our own, deleted at the end.
        let redis_prefix = format!("meridian:bench:{}:", std::process::id());
        let threads = args.server_threads.map(|n| n.to_string());
        let (prefix_setting, hot_setting) = (format!("history.redis_prefix={redis_prefix}"), format!("history.hot={}", args.hot));
        let mut extra = vec![
            "--set",
            &prefix_setting,
            "--catalog",
            catalog_dir.to_str().unwrap_or_default(),
            "--set",
            &hot_setting,
        ];
        extra.extend(NO_RATE_LIMITS);
        if let Some(n) = &threads {
            extra.extend(["--worker-threads", n.as_str()]);
        }
        if let Some(b) = &args.state_backend {
            extra.extend(["--state-backend", b.as_str()]);
        }
        let (server, base) = start_server(&tmp.path().join("server"), &extra).await?;
        let key = bench_key(&base, &["write", "read"]).await?;
        // Feed the events; remember who viewed what, to query users that have history.
        let Fed { users: viewers, report, ingest_secs, processed_secs } = feed_world(&base, &key, &world, args.events, |v| v["action"] == "view").await?;
        eprintln!("fed {} events ({} users with views) in {ingest_secs:.1} s; processed by {processed_secs:.1} s", report.accepted, viewers.len());
        anyhow::ensure!(!viewers.is_empty(), "no user viewed anything; feed more events");

        let client = Arc::new(crate::loadgen::KeepAliveClient::new(&base, &format!("Bearer {key}"))?);
        let viewers = Arc::new(viewers);
        let make = |path: Arc<dyn Fn(u64) -> String + Send + Sync>| {
            let client = client.clone();
            move |k: u64| {
                let (client, path) = (client.clone(), path(k));
                async move { client.get(&path).await.map(drop) }
            }
        };
        let duration = Duration::from_secs(args.duration_secs);
        let page = args.page;
        // A user drawn with a multiplicative hash of k: spread over every viewer.
        let user_of = {
            let viewers = viewers.clone();
            move |k: u64| viewers[(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % viewers.len()].clone()
        };
        let warmup = Duration::from_secs(args.warmup_secs);
        let rate = args.rate;
        let server_pid = server.0.id();
        // One phase: an unmeasured warm-up of the same requests, then the measured run,
        // with the server's CPU time per request over the measured run.
        let phase = |name: String, path: Arc<dyn Fn(u64) -> String + Send + Sync>| {
            let request = make(path);
            async move {
                eprintln!("{name} at {rate} req/s…");
                if !warmup.is_zero() {
                    open_loop(rate, warmup, 512, request.clone()).await?;
                }
                let cpu_before = cpu_micros(server_pid);
                let (measured, lag) = open_loop(rate, duration, 512, request).await?;
                let served = measured.events.max(1) as f64;
                let cpu_per_request = cpu_before.zip(cpu_micros(server_pid)).map(|(a, b)| b.saturating_sub(a) as f64 / served);
                anyhow::Ok((measured, lag, cpu_per_request))
            }
        };
        let (health, health_lag, health_cpu) = phase("baseline: GET /healthz".into(), Arc::new(|_| "/healthz".to_owned())).await?;
        let list_user = user_of.clone();
        let (list, list_lag, list_cpu) =
            phase(format!("list: GET …/history?limit={page}"), Arc::new(move |k| format!("/v1/apps/bench/users/{}/history?limit={page}", list_user(k)))).await?;
        let count_user = user_of.clone();
        let (count, count_lag, count_cpu) = phase("count: GET …/history/count".into(), Arc::new(move |k| format!("/v1/apps/bench/users/{}/history/count", count_user(k)))).await?;
        // Last, as its deletes give some users marks (their reads then go to the store):
        // lists alone and lists at the same rate with a stream of DELETEs beside them (one
        // schedule), in alternating pairs of phases.
        let with_deletes = if args.delete_rate > 0 {
            let skus: Arc<Vec<String>> = Arc::new(world.catalog.skus.iter().map(|s| s.id.clone()).collect());
            let delete_client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(64).build(http_connector());
            let (auth, base_uri, delete_rate, total_rate) = (format!("Bearer {key}"), base.clone(), args.delete_rate, rate + args.delete_rate);
            let list = make(Arc::new({
                let user_of = user_of.clone();
                move |k| format!("/v1/apps/bench/users/{}/history?limit={page}", user_of(k))
            }));
            let delete_user = user_of.clone();
            let request = move |k: u64| -> (usize, std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>) {
                // Deletes spread evenly among the lists.
                if (k + 1) * delete_rate / total_rate == k * delete_rate / total_rate {
                    return (0, Box::pin(list(k)));
                }
                let sku = &skus[(k.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 17) as usize % skus.len()];
                let uri = format!("{base_uri}/v1/apps/bench/users/{}/history/{sku}", delete_user(k.wrapping_mul(0x9E37_79B9)));
                let request = hyper::Request::delete(uri).header("authorization", auth.clone()).body(Full::new(Bytes::new()));
                let client = delete_client.clone();
                (
                    1,
                    Box::pin(async move {
                        let response = client.request(request?).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        anyhow::ensure!(status == hyper::StatusCode::NO_CONTENT, "DELETE answered {status}");
                        Ok(())
                    }),
                )
            };
            let (mut alone, mut beside, mut deletes, mut pairs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            for pair in 1..=args.delete_pairs.max(1) {
                let list_user = user_of.clone();
                let (lists, _, _) = phase(format!("pair {pair}: list alone"), Arc::new(move |k| format!("/v1/apps/bench/users/{}/history?limit={page}", list_user(k)))).await?;
                eprintln!("pair {pair}: list at {rate} req/s with {delete_rate} DELETE/s beside it…");
                if !warmup.is_zero() {
                    open_loop_mixed(total_rate, warmup, 512, 2, request.clone()).await?;
                }
                let (mut phases, phase_lag) = open_loop_mixed(total_rate, duration, 512, 2, request.clone()).await?;
                lag.add(&phase_lag)?;
                let (with, del) = (phases.remove(0), phases.remove(0));
                pairs.push((lists.quantile_ms(0.99), with.quantile_ms(0.99)));
                alone.push(lists);
                beside.push(with);
                deletes.push(del);
            }
            Some(DeleteComparison {
                alone: Phase::merge(&alone)?,
                beside: Phase::merge(&beside)?,
                deletes: Phase::merge(&deletes)?,
                pairs,
                lag_p99_ms: lag.value_at_quantile(0.99) as f64 / 1000.0,
            })
        } else {
            None
        };
        let server_side = server_quantiles(&base).await.unwrap_or_default();
        let rss = peak_rss_kib(server.0.id());
        drop(server);
        if args.hot == "redis" {
            let url = std::env::var("MERIDIAN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = redis_prefix.clone();
            let removed = tokio::task::spawn_blocking(move || {
                meridian_history_redis::RedisHotTier::connect(&url, &prefix, meridian_history::HotConfig::default()).and_then(|r| r.delete_all())
            })
            .await?;
            eprintln!("removed {} redis keys under {redis_prefix}", removed.unwrap_or(0));
        }
        println!(
            "## meridian bench history ({} hot tier, {} state store, {} users in the world, {} with history, {} events fed; {} req/s open loop, {} s measured per phase after {} s warm-up)",
            args.hot,
            args.state_backend.as_deref().unwrap_or("default"),
            args.users,
            viewers.len(),
            report.accepted,
            args.rate,
            args.duration_secs,
            args.warmup_secs
        );
        let mut rows = vec![("baseline: GET /healthz", &health), ("GET history (list)", &list), ("GET history/count", &count)];
        if let Some(c) = &with_deletes {
            rows.push(("GET history (list), alone (pairs merged)", &c.alone));
            rows.push(("GET history (list), DELETEs beside (pairs merged)", &c.beside));
            rows.push(("DELETE history/{sku} (beside the lists)", &c.deletes));
        }
        print_phase_table(&rows);
        for (route, q50, q99, q999) in &server_side {
            println!("server-side handler time {route}: p50 {q50:.3} ms, p99 {q99:.3} ms, p999 {q999:.3} ms");
        }
        let lag_ms = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
        println!("generator schedule lag p99 (dispatch vs schedule, not in the latencies): healthz {:.3} ms, list {:.3} ms, count {:.3} ms", lag_ms(&health_lag), lag_ms(&list_lag), lag_ms(&count_lag));
        println!("p99 ratio list / healthz: {:.2}; count / healthz: {:.2}", list.quantile_ms(0.99) / health.quantile_ms(0.99), count.quantile_ms(0.99) / health.quantile_ms(0.99));
        let delete_ratio = with_deletes.as_ref().map(|c| c.alone.quantile_ms(0.99) / c.beside.quantile_ms(0.99));
        if let (Some(ratio), Some(c)) = (delete_ratio, &with_deletes) {
            let pairs: Vec<String> = c.pairs.iter().map(|(a, b)| format!("{a:.3} / {b:.3} ms")).collect();
            println!(
                "list p99 alone / with {} DELETE/s beside: {:.3} / {:.3} ms = {ratio:.2} (1.0: the deletes cost the lists nothing); per pair {}; generator lag p99 beside the deletes {:.3} ms",
                args.delete_rate,
                c.alone.quantile_ms(0.99),
                c.beside.quantile_ms(0.99),
                pairs.join(", "),
                c.lag_p99_ms
            );
        }
        if let (Some(h), Some(l), Some(c)) = (health_cpu, list_cpu, count_cpu) {
            println!("server CPU per request (user + system, measured run): healthz {h:.1} µs, list {l:.1} µs, count {c:.1} µs; list / healthz {:.2}, count / healthz {:.2}", l / h, c / h);
        }
        println!("feed: {:.0} events/s accepted over HTTP; history and counters caught up {:.1} s after the feed started", report.accepted as f64 / ingest_secs, processed_secs);
        if let Some(kib) = rss {
            println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "history", "hot": args.hot, "state_backend": args.state_backend, "users": args.users, "users_with_history": viewers.len(), "events": report.accepted, "rate": args.rate,
                "health_p50_ms": health.quantile_ms(0.5), "health_p99_ms": health.quantile_ms(0.99),
                "list_rps": list.events_per_sec(), "list_p50_ms": list.quantile_ms(0.5), "list_p99_ms": list.quantile_ms(0.99), "list_p999_ms": list.quantile_ms(0.999), "list_errors": list.errors,
                "count_rps": count.events_per_sec(), "count_p50_ms": count.quantile_ms(0.5), "count_p99_ms": count.quantile_ms(0.99), "count_errors": count.errors,
                "server_peak_rss_mib": rss.map(|k| k as f64 / 1024.0),
                "server_cpu_us_per_request": {"healthz": health_cpu, "list": list_cpu, "count": count_cpu},
                "delete_rate": args.delete_rate,
                "list_alone_p99_ms": with_deletes.as_ref().map(|c| c.alone.quantile_ms(0.99)),
                "list_with_deletes_p50_ms": with_deletes.as_ref().map(|c| c.beside.quantile_ms(0.5)),
                "list_with_deletes_p99_ms": with_deletes.as_ref().map(|c| c.beside.quantile_ms(0.99)),
                "list_with_deletes_errors": with_deletes.as_ref().map(|c| c.beside.errors),
                "delete_p50_ms": with_deletes.as_ref().map(|c| c.deletes.quantile_ms(0.5)),
                "delete_p99_ms": with_deletes.as_ref().map(|c| c.deletes.quantile_ms(0.99)),
                "deletes_per_sec": with_deletes.as_ref().map(|c| c.deletes.events_per_sec()),
                "delete_errors": with_deletes.as_ref().map(|c| c.deletes.errors),
                "delete_pairs_p99_ms": with_deletes.as_ref().map(|c| c.pairs.clone()),
                "list_p99_ratio_without_over_with_deletes": delete_ratio
            })
        );
        Ok(())
    })
}

/// What feeding a demo world produced.
struct Fed {
    /// Distinct users of the selected events, in first-seen order.
    users: Vec<String>,
    /// The server's answers, summed.
    report: meridian_demo::SendReport,
    /// Seconds until every event was accepted.
    ingest_secs: f64,
    /// Seconds until the processors had caught up.
    processed_secs: f64,
}

/// Feeds `n` events of `world` over HTTP and waits for every processor to catch up;
/// remembers the users of the events `keep` selects.
async fn feed_world(base: &str, key: &str, world: &Arc<meridian_demo::DemoWorld>, n: u64, keep: impl Fn(&serde_json::Value) -> bool) -> anyhow::Result<Fed> {
    let mut users: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let events: Vec<serde_json::Value> = world
        .events(n)
        .tagged()
        .map(|(v, _)| {
            if keep(&v) {
                if let Some(user) = v["user"].as_str() {
                    if seen.insert(user.to_owned()) {
                        users.push(user.to_owned());
                    }
                }
            }
            v
        })
        .collect();
    let fed = Instant::now();
    let report = meridian_demo::send(base, key, events.into_iter(), None, 500, 8, true).await?;
    let ingest_secs = fed.elapsed().as_secs_f64();
    while !processors_caught_up(base).await? {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Fed { users, report, ingest_secs, processed_secs: fed.elapsed().as_secs_f64() })
}

/// The demo's `[actions]` as a config file section.
fn actions_config_file(dir: &std::path::Path, threads: usize) -> anyhow::Result<std::path::PathBuf> {
    #[derive(serde::Serialize)]
    struct File<T> {
        actions: T,
    }
    // The same [actions] `serve --demo` uses.
    let mut config = meridian_server::Config::default();
    crate::serve::demo_actions(&mut config)?;
    config.actions.threads = threads;
    let path = dir.join("actions.toml");
    std::fs::write(&path, toml::to_string(&File { actions: config.actions })?)?;
    Ok(path)
}

fn actions_bench(args: ActionsBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        eprintln!("generating a demo world with {} users…", args.users);
        let config = meridian_demo::DemoConfig { users: args.users, malformed_share: 0.0, days: 3, ..meridian_demo::DemoConfig::default() };
        let world = Arc::new(tokio::task::spawn_blocking(move || meridian_demo::DemoWorld::generate(&config)).await??);
        let config_file = actions_config_file(tmp.path(), args.processor_threads)?;
        let extra: Vec<&str> = ["--config", config_file.to_str().unwrap_or_default()].into_iter().chain(loose_limits()).collect();
        let (server, base) = start_server(&tmp.path().join("server"), &extra).await?;
        let key = bench_key(&base, &["write", "read", "admin"]).await?;
        let Fed { users, report, ingest_secs, processed_secs } = feed_world(&base, &key, &world, args.events, |_| true).await?;
        eprintln!("fed {} events ({} users) in {ingest_secs:.1} s; processed by {processed_secs:.1} s", report.accepted, users.len());
        anyhow::ensure!(!users.is_empty(), "no user in the events; feed more");

        let client = Arc::new(crate::loadgen::KeepAliveClient::new(&base, &format!("Bearer {key}"))?);
        let users = Arc::new(users);
        let user_of = {
            let users = users.clone();
            move |k: u64| users[(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % users.len()].clone()
        };
        let (warmup, duration, rate, server_pid) = (Duration::from_secs(args.warmup_secs), Duration::from_secs(args.duration_secs), args.rate, server.0.id());
        let phase = |name: String, path: Arc<dyn Fn(u64) -> String + Send + Sync>| {
            let client = client.clone();
            let request = move |k: u64| {
                let (client, path) = (client.clone(), path(k));
                async move { client.get(&path).await.map(drop) }
            };
            async move {
                eprintln!("{name} at {rate} req/s…");
                if !warmup.is_zero() {
                    open_loop(rate, warmup, 512, request.clone()).await?;
                }
                let cpu_before = cpu_micros(server_pid);
                let (measured, lag) = open_loop(rate, duration, 512, request).await?;
                let cpu = cpu_before.zip(cpu_micros(server_pid)).map(|(a, b)| b.saturating_sub(a) as f64 / measured.events.max(1) as f64);
                anyhow::Ok((measured, lag, cpu))
            }
        };
        let (health, _, health_cpu) = phase("baseline: GET /healthz".into(), Arc::new(|_| "/healthz".to_owned())).await?;
        let u = user_of.clone();
        let (one, _, one_cpu) = phase("GET …/actions/order_amount?window=30d".into(), Arc::new(move |k| format!("/v1/apps/bench/users/{}/actions/order_amount?window=30d", u(k)))).await?;
        let u = user_of.clone();
        let (profile, _, profile_cpu) = phase("GET …/profile".into(), Arc::new(move |k| format!("/v1/apps/bench/users/{}/profile", u(k)))).await?;
        let u = user_of.clone();
        let (member, _, member_cpu) =
            phase("GET …/segments/window_shoppers/members/{user}".into(), Arc::new(move |k| format!("/v1/apps/bench/segments/window_shoppers/members/{}", u(k)))).await?;

        // Event to webhook: orders of fresh users, each crossing `first_order` once; the
        // webhook receiver (in this process) notes when each user's webhook arrives.
        let arrivals: Arc<parking_lot::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver_url = format!("http://{}/hook", receiver.local_addr()?);
        {
            let arrivals = arrivals.clone();
            // A fallback, not a route: the receiver is the bench's, not part of the API.
            let app = axum::Router::new().fallback(
                move |body: Bytes| {
                    let arrivals = arrivals.clone();
                    async move {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            if let Some(user) = v["data"]["user"].as_str() {
                                arrivals.lock().entry(user.to_owned()).or_insert_with(Instant::now);
                            }
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            );
            tokio::spawn(async move { axum::serve(receiver, app).await });
        }
        let http = reqwest::Client::new();
        let created = http
            .post(format!("{base}/v1/apps/bench/webhooks"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"url": receiver_url, "event_types": ["trigger.fired"]}))
            .send()
            .await?;
        anyhow::ensure!(created.status().is_success(), "cannot create the webhook: {} {}", created.status(), created.text().await.unwrap_or_default());
        eprintln!("event to webhook: {} orders/s of fresh users for {} s…", args.trigger_rate, args.duration_secs);
        let acked: Arc<parking_lot::Mutex<Vec<(String, Instant)>>> = Arc::default();
        let (http2, base2, key2, acked2) = (http.clone(), base.clone(), key.clone(), acked.clone());
        let run_id = std::process::id();
        open_loop(args.trigger_rate, duration, 256, move |k: u64| {
            let (http, base, key, acked) = (http2.clone(), base2.clone(), key2.clone(), acked2.clone());
            async move {
                let user = format!("lat-{run_id}-{k}");
                let event = serde_json::json!([{"id": user, "user": user, "action": "order", "time": Timestamp::now().millis(), "props": {"amount": 100}}]);
                let answer = http.post(format!("{base}/v1/events")).bearer_auth(&key).json(&event).send().await?;
                anyhow::ensure!(answer.status().is_success(), "POST /v1/events answered {}", answer.status());
                acked.lock().push((user, Instant::now()));
                Ok(())
            }
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrivals.lock().len() < acked.lock().len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut trigger_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut missing, sent) = (0usize, acked.lock().len());
        {
            let arrivals = arrivals.lock();
            for (user, at) in acked.lock().iter() {
                match arrivals.get(user) {
                    Some(arrived) => trigger_us.record(arrived.saturating_duration_since(*at).as_micros().max(1) as u64)?,
                    None => missing += 1,
                }
            }
        }
        let rss = peak_rss_kib(server.0.id());
        drop(server);
        println!(
            "## meridian bench actions ({} users in the world, {} with events, {} events fed; {} req/s open loop, {} s measured per phase after {} s warm-up)",
            args.users,
            users.len(),
            report.accepted,
            args.rate,
            args.duration_secs,
            args.warmup_secs
        );
        print_phase_table(&[("baseline: GET /healthz", &health), ("GET one aggregation (30d)", &one), ("GET profile", &profile), ("GET segment membership", &member)]);
        let p99 = |p: &Phase| p.quantile_ms(0.99);
        println!(
            "p99 ratio to healthz: aggregation {:.2}, profile {:.2}, membership {:.2}",
            p99(&one) / p99(&health),
            p99(&profile) / p99(&health),
            p99(&member) / p99(&health)
        );
        if let (Some(h), Some(a), Some(p), Some(m)) = (health_cpu, one_cpu, profile_cpu, member_cpu) {
            println!("server CPU per request: healthz {h:.1} µs, aggregation {a:.1} µs, profile {p:.1} µs, membership {m:.1} µs");
        }
        let q = |x: f64| trigger_us.value_at_quantile(x) as f64 / 1000.0;
        println!(
            "event acknowledged → trigger.fired webhook received: {} of {sent} arrived ({missing} missing after 30 s); p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            sent - missing,
            q(0.5),
            q(0.99),
            trigger_us.max() as f64 / 1000.0
        );
        println!("feed: {:.0} events/s accepted over HTTP; the processors caught up {:.1} s after the feed started", report.accepted as f64 / ingest_secs, processed_secs);
        if let Some(kib) = rss {
            println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_metric_value_is_read_by_its_whole_series_name_and_labels() {
        let text = "# TYPE meridian_alerts_streams gauge\nmeridian_alerts_streams_total 9\nmeridian_alerts_streams 332\nmeridian_source_batch_messages_sum{source=\"nats\"} 4100\nmeridian_source_batch_messages_sum{source=\"nats-2\"} 7\n";
        assert_eq!(super::metric_value(text, "meridian_alerts_streams"), Some(332.0));
        assert_eq!(super::metric_value(text, "meridian_source_batch_messages_sum{source=\"nats\"}"), Some(4100.0));
        assert_eq!(super::metric_value(text, "meridian_alerts_missing"), None);
    }
}
