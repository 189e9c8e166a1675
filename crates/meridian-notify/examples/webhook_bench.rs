//! Webhook delivery benchmark: requests appended to the log → processor → notifier → a
//! hyper receiver on loopback answering 204, against a baseline of plain POSTs from the
//! same HTTP client (no signing, no persistence) in the same run.
//!
//! `cargo run --release -p meridian-notify --example webhook_bench -- [deliveries] [paced_rate]`
//! (defaults: 20000 deliveries, then 10 s paced at 1000/s for latency at a steady rate).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use meridian_event::AppId;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log};
use meridian_notify::{DeliveryId, NewEndpoint, NotificationProcessor, NotificationRequest, Notifier, NotifyConfig, WebhookClient};
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::FjallStore;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receive times by `webhook-id` (or by sequence number header for the baseline).
#[derive(Default)]
struct Arrivals {
    by_id: Mutex<HashMap<String, Instant>>,
    count: AtomicUsize,
}

async fn receiver(arrivals: Arc<Arrivals>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let now = Instant::now();
                        let id = request.headers().get("webhook-id").or_else(|| request.headers().get("x-seq")).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                        // Read the body as a real receiver would.
                        let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                        arrivals.by_id.lock().insert(id, now);
                        arrivals.count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, std::convert::Infallible>(Response::builder().status(204).body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

fn report(name: &str, n: usize, elapsed: Duration, latencies: &Histogram<u64>) -> f64 {
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<44} {n:>6} in {:>7.3} s = {rate:>9.0} /s   latency p50 {:>8.3} ms  p99 {:>8.3} ms  p999 {:>8.3} ms  max {:>8.3} ms",
        elapsed.as_secs_f64(),
        latencies.value_at_quantile(0.5) as f64 / 1e3,
        latencies.value_at_quantile(0.99) as f64 / 1e3,
        latencies.value_at_quantile(0.999) as f64 / 1e3,
        latencies.max() as f64 / 1e3,
    );
    rate
}

/// Appends `requests` (in chunks) and returns each one's persisted time.
async fn emit(log: &Arc<EmbeddedLog>, topic: &meridian_log::TopicName, requests: &[NotificationRequest], chunk: usize) -> Vec<Instant> {
    let mut persisted = Vec::with_capacity(requests.len());
    for part in requests.chunks(chunk) {
        let records = part.iter().map(|r| AppendRecord { key: Bytes::from(r.id.clone()), value: Bytes::from(r.to_record_value()), timestamp: r.created_ms }).collect();
        log.append(topic, records).await.unwrap();
        let now = Instant::now();
        persisted.extend(std::iter::repeat_n(now, part.len()));
    }
    persisted
}

async fn wait_for(arrivals: &Arrivals, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while arrivals.count.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "only {} of {n} deliveries arrived", arrivals.count.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn latencies(arrivals: &Arrivals, ids: &[DeliveryId], persisted: &[Instant]) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let by_id = arrivals.by_id.lock();
    for (id, sent) in ids.iter().zip(persisted) {
        let got = by_id.get(id.as_str()).expect("every delivery arrived");
        histogram.record(got.saturating_duration_since(*sent).as_micros() as u64).unwrap();
    }
    histogram
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse().expect("deliveries: a number")).unwrap_or(20_000);
    let paced_rate: usize = args.next().map(|a| a.parse().expect("paced rate: a number")).unwrap_or(1_000);

    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()).unwrap();
    let store = Arc::new(FjallStore::open(dir.path().join("state")).unwrap());
    let mut config = NotifyConfig::default();
    config.network.allow_loopback = true;
    let topic = config.topic_name().unwrap();
    log.ensure_topic(&topic, 4).unwrap();

    let arrivals = Arc::new(Arrivals::default());
    let addr = receiver(arrivals.clone()).await;
    let url = format!("http://{addr}/hook");

    let notifier = Arc::new(Notifier::new(store.clone(), config.clone()).unwrap());
    let app = AppId::new("bench").unwrap();
    let endpoint = notifier.create_endpoint(NewEndpoint { app: app.clone(), url: url.clone(), description: "bench".into(), event_types: vec![], disabled: false }).await.unwrap();
    let runtime = Runtime::new(log.clone(), store.clone(), RuntimeConfig::default());
    runtime.spawn(Box::new(NotificationProcessor::new(&config).unwrap().with_waker(notifier.waker()))).unwrap();
    let notifier_task = notifier.clone().spawn(&tokio::runtime::Handle::current());

    println!("webhook_bench: {n} deliveries, max_concurrency {}, embedded log + fjall (fsync on), 2 tokio workers", config.max_concurrency);
    let make = |prefix: &str, count: usize| -> Vec<NotificationRequest> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        (0..count)
            .map(|i| NotificationRequest {
                id: format!("{prefix}-{i}"),
                app: app.clone(),
                event_type: "trigger.fired".into(),
                payload: serde_json::json!({"user": format!("u{i}"), "rule": "third-order", "count": 3}),
                created_ms: now,
                endpoint: None,
                bare: false,
            })
            .collect()
    };

    // Warm-up: connections, tables.
    let warm = make("warm", 200);
    emit(&log, &topic, &warm, 200).await;
    wait_for(&arrivals, 200, Duration::from_secs(30)).await;

    // 1. Burst: n requests appended as fast as the log takes them.
    let requests = make("burst", n);
    let ids: Vec<DeliveryId> = requests.iter().map(|r| DeliveryId::derive(&r.id, &endpoint.id)).collect();
    let before = arrivals.count.load(Ordering::Relaxed);
    let started = Instant::now();
    let persisted = emit(&log, &topic, &requests, 1_000).await;
    wait_for(&arrivals, before + n, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let burst_rate = report("notifier, burst (request persisted → received)", n, elapsed, &latencies(&arrivals, &ids, &persisted));

    // 2. Paced: steady rate, latency without a backlog.
    let paced_n = paced_rate * 10;
    let requests = make("paced", paced_n);
    let ids: Vec<DeliveryId> = requests.iter().map(|r| DeliveryId::derive(&r.id, &endpoint.id)).collect();
    let before = arrivals.count.load(Ordering::Relaxed);
    let per_tick = (paced_rate / 100).max(1);
    let mut persisted = Vec::with_capacity(paced_n);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut requests = requests;
    for part in requests.chunks_mut(per_tick) {
        ticker.tick().await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        for r in part.iter_mut() {
            r.created_ms = now;
        }
        persisted.extend(emit(&log, &topic, part, per_tick).await);
    }
    wait_for(&arrivals, before + paced_n, Duration::from_secs(120)).await;
    report(&format!("notifier, paced at {paced_rate}/s"), paced_n, started.elapsed(), &latencies(&arrivals, &ids, &persisted));
    // Where the paced latency goes: persisted → first attempt started (processor round and
    // commit, dispatch), from the delivery log.
    let mut to_attempt = Histogram::<u64>::new(3).unwrap();
    for (id, request) in ids.iter().zip(&requests).step_by(10) {
        let detail = notifier.delivery(id).await.unwrap();
        to_attempt.record((detail.attempts[0].started_ms - request.created_ms).max(0) as u64).unwrap();
    }
    println!(
        "  of which request created → attempt started (ms, 1 in 10 sampled): p50 {} p99 {} max {}",
        to_attempt.value_at_quantile(0.5),
        to_attempt.value_at_quantile(0.99),
        to_attempt.max()
    );

    notifier.shutdown();
    notifier_task.await.unwrap();
    tokio::task::spawn_blocking(move || runtime.shutdown()).await.unwrap();
    let stats = notifier.stats();
    assert_eq!(stats.delivered as usize, 200 + n + paced_n, "every delivery once: {stats:?}");

    // 3. Baseline: the same client, same concurrency, plain POSTs of the same body, no
    // signing, no store, no log.
    let client = Arc::new(WebhookClient::new(&config).unwrap());
    let body = Bytes::from(make("x", 1)[0].webhook_body());
    let permits = Arc::new(tokio::sync::Semaphore::new(config.max_concurrency));
    let latencies_us = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, body, url, latencies_us) = (client.clone(), body.clone(), url.clone(), latencies_us.clone());
        tasks.spawn(async move {
            let header = [(hyper::header::HeaderName::from_static("x-seq"), hyper::header::HeaderValue::from_str(&format!("base-{i}")).unwrap())];
            let sent = Instant::now();
            let outcome = client.post(&url, &header, body).await;
            assert_eq!(outcome.status, Some(204), "{outcome:?}");
            latencies_us.lock().record(sent.elapsed().as_micros() as u64).unwrap();
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let baseline_rate = report("baseline: plain POSTs, same client (sent → answered)", n, started.elapsed(), &latencies_us.lock());
    println!("ratio notifier burst / baseline throughput: {:.3}", burst_rate / baseline_rate);
    log.close().unwrap();
}
