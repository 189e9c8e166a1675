//! `meridian bench connect`: the long-lived client connection (`GET /v1/connect`) against
//! `POST /v1/events` in the same run — ack latency at a fixed event rate on one connection
//! and spread over many, and the most one connection carries.

use super::{bench_key, event_templates, json_tail, open_loop, print_phase_table, start_server, Phase};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(super) struct ConnectBenchArgs {
    /// Events per second of each fixed-rate phase (open loop).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Events per batch (one HTTP request, one WebSocket frame).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Connections of the many-connections phase (the rate is spread over them).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds each phase runs unmeasured first.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Sends the k-th batch of a closed-loop phase.
type SendBatch = Arc<dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// A batch of events as JSON values without ids (the server or the client assigns them).
fn batch_values(templates: &[String], n: usize, offset: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::from_str(&format!("{{{}", &templates[(offset + i) % templates.len()])).expect("a template is a JSON object")).collect()
}

/// Runs the benchmark and prints its table.
pub(super) fn connect_bench(args: ConnectBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        let templates: Arc<Vec<String>> = Arc::new(tokio::task::spawn_blocking(|| event_templates(5_000)).await??.iter().map(json_tail).collect());
        let (server, base) = start_server(&tmp.path().join("server"), &[]).await?;
        let key = bench_key(&base, &["write"]).await?;
        let (rate, batch) = (args.rate, args.batch);
        let requests_per_sec = (rate / batch as u64).max(1);
        let (warmup, duration) = (Duration::from_secs(args.warmup_secs), Duration::from_secs(args.duration_secs));
        // A fixed-rate phase: warm-up, then measured; one "request" is one batch.
        macro_rules! fixed_rate {
            ($name:expr, $request:expr) => {{
                eprintln!("{} at {rate} events/s in batches of {batch}…", $name);
                if !warmup.is_zero() {
                    open_loop(requests_per_sec, warmup, 4096, $request).await?;
                }
                open_loop(requests_per_sec, duration, 4096, $request).await?.0
            }};
        }

        // Baseline: POST /v1/events, pre-built bodies, keep-alive connections.
        let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(256).build(super::http_connector());
        let bodies: Arc<Vec<Bytes>> = Arc::new((0..64).map(|b| Bytes::from(serde_json::to_vec(&batch_values(&templates, batch, b * batch)).expect("JSON"))).collect());
        let uri: hyper::Uri = format!("{base}/v1/events").parse()?;
        let auth = format!("Bearer {key}");
        let post = {
            let (http, bodies, uri, auth) = (http.clone(), bodies.clone(), uri.clone(), auth.clone());
            move |k: u64| {
                let request = hyper::Request::post(uri.clone()).header("authorization", auth.clone()).header("content-type", "application/json").body(Full::new(bodies[k as usize % bodies.len()].clone()));
                let http = http.clone();
                async move {
                    let response = http.request(request?).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    anyhow::ensure!(status.is_success(), "status {status}");
                    anyhow::ensure!(body.windows(12).any(|w| w == b"\"rejected\":0"), "events rejected");
                    Ok(())
                }
            }
        };
        let http_phase = fixed_rate!("baseline: POST /v1/events", post.clone());

        // One connection, every batch pipelined on it.
        let values: Arc<Vec<Vec<serde_json::Value>>> = Arc::new((0..64).map(|b| batch_values(&templates, batch, b * batch)).collect());
        let one = Arc::new(meridian_connect::connect(&base, &key).await?);
        let send_on = |clients: Arc<Vec<meridian_connect::Client>>| {
            let values = values.clone();
            move |k: u64| {
                let (clients, events) = (clients.clone(), values[k as usize % values.len()].clone());
                async move {
                    let report = clients[k as usize % clients.len()].send(events).await?;
                    anyhow::ensure!(report.rejected == 0, "events rejected");
                    Ok(())
                }
            }
        };
        let one_clients = Arc::new(vec![Arc::try_unwrap(one).map_err(|_| anyhow::anyhow!("client shared"))?]);
        let one_phase = fixed_rate!("one WebSocket connection", send_on(one_clients.clone()));

        // Many connections sharing the same rate.
        eprintln!("opening {} connections…", args.connections);
        let mut many = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            many.push(meridian_connect::connect(&base, &key).await?);
        }
        let many = Arc::new(many);
        let many_phase = fixed_rate!(format!("{} WebSocket connections", args.connections), send_on(many.clone()));

        // The most each carries: as many batches in flight as the limits allow, closed loop.
        let most = |send: SendBatch, in_flight: usize| async move {
            let started = Instant::now();
            let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut tasks = Vec::new();
            for t in 0..in_flight {
                let (send, done) = (send.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let mut k = t as u64;
                    while started.elapsed() < Duration::from_secs(5) {
                        if send(k).await.is_ok() {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        k += in_flight as u64;
                    }
                }));
            }
            for task in tasks {
                task.await?;
            }
            anyhow::Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 * batch as f64 / started.elapsed().as_secs_f64())
        };
        eprintln!("most events/s: POST /v1/events with 32 requests in flight, then one connection with 32 batches in flight…");
        let post_most = {
            let post = post.clone();
            most(Arc::new(move |k| Box::pin(post(k))), 32).await?
        };
        let one_send = send_on(one_clients.clone());
        let one_most = most(Arc::new(move |k| Box::pin(one_send(k))), 32).await?;

        let row = |p: &Phase| Phase { events: p.events * batch as u64, elapsed: p.elapsed, latency_us: p.latency_us.clone(), errors: p.errors };
        println!("## meridian bench connect ({rate} events/s in batches of {batch}; {} s measured after {} s warm-up per phase)", args.duration_secs, args.warmup_secs);
        println!("latency: POST until its response; WebSocket from sending a batch until its ack (both once the events are durable)");
        let rows = [row(&http_phase), row(&one_phase), row(&many_phase)];
        let many_name = format!("{} WebSocket connections", args.connections);
        print_phase_table(&[("baseline: POST /v1/events", &rows[0]), ("one WebSocket connection", &rows[1]), (many_name.as_str(), &rows[2])]);
        println!("(the events/s column counts events; p50/p99 are per batch)");
        println!("ack p99 ratio to POST p99: one connection {:.2}, {} connections {:.2}", rows[1].quantile_ms(0.99) / rows[0].quantile_ms(0.99), args.connections, rows[2].quantile_ms(0.99) / rows[0].quantile_ms(0.99));
        println!("most events/s (closed loop, 32 batches in flight, 5 s): POST /v1/events {post_most:.0}; one WebSocket connection {one_most:.0} ({:.2}x POST)", one_most / post_most);
        drop(many);
        drop(one_clients);
        drop(server);
        Ok(())
    })
}
