//! `meridian bench alerts`: the demo world's event stream through a server with 10,000
//! active alert rules against the same stream through a server without rules, in the same
//! run; then, on the loaded server, the time from a window's close to its notification,
//! the time from a rule change to its effect, and the memory per rule.
//!
//! The events are sent live: each takes the wall clock as its time when it is sent, as a
//! client's would. (Replaying a day of history in seconds would close a day of windows
//! per rule in those seconds, a load no live stream causes.)

use super::{bench_key, peak_rss_kib, processors_caught_up, start_server, BENCH_MASTER_KEY};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use meridian_event::Timestamp;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(super) struct AlertsBenchArgs {
    /// Active rules on the loaded server (probe rules included).
    #[arg(long, default_value_t = 10_000)]
    rules: usize,
    /// Apps the rules and the stream are spread over (each user of the demo world belongs
    /// to one; 1 puts every rule on the one app every event goes to: the worst case).
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// Rule `i` gets an allowed lateness of `i % N` seconds. Rules that differ in lateness
    /// cannot share a pane ring, so this multiplies the distinct pane shapes of the mix by
    /// up to N (1: rules differ only in what the mix varies — the realistic case; a large N
    /// makes almost every rule count on its own: the worst case).
    #[arg(long, default_value_t = 1)]
    lateness_spread: usize,
    /// Users in the demo world.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Events of the demo world sent through each server.
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Probe rules (count of their own action over a tumbling 1 s window, notifying a
    /// webhook in this process) for the window-close-to-notification latency.
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Seconds of probing.
    #[arg(long, default_value_t = 20)]
    probe_secs: u64,
    /// Rule changes timed until they are in force.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const ACTIONS: [&str; 10] = ["view", "click", "cart", "order", "pay", "share", "favorite", "request", "crash", "checkin"];
const PLATFORMS: [&str; 3] = ["ios", "android", "miniprogram"];

/// Rule `i` of the mix: counts, distinct users, ratios, percentiles, day comparisons and
/// forecasts over the demo's actions, tumbling and sliding windows, half of them also
/// filtered on the platform; thresholds the stream does not reach (the throughput phase
/// measures evaluation, not notification).
fn mixed_rule(i: usize, lateness_spread: usize) -> Value {
    let action = ACTIONS[i % ACTIONS.len()];
    let mut filter = json!({"action": action});
    if (i / ACTIONS.len()) % 2 == 1 {
        filter["context.platform"] = json!(PLATFORMS[i % PLATFORMS.len()]);
    }
    let window = if i.is_multiple_of(3) { json!({"kind": "sliding", "size_secs": 300, "slide_secs": 60}) } else { json!({"kind": "tumbling", "size_secs": 60}) };
    let never = json!({"kind": "threshold", "op": ">", "value": 1e12});
    let (metric, filter, condition) = match (i / 7) % 10 {
        0..=3 => (json!({"kind": "count"}), filter, never),
        4 | 5 => (json!({"kind": "distinct_users"}), filter, never),
        6 => (json!({"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": action}}), Value::Null, never),
        7 => (json!({"kind": "percentile", "p": 95, "field": "props.latency_ms"}), json!({"action": "request"}), never),
        8 => (json!({"kind": "count"}), filter, json!({"kind": "change", "op": ">", "percent": 100_000, "against": "day"})),
        _ => (json!({"kind": "count"}), filter, json!({"kind": "forecast", "k": 1000, "min_history": 3})),
    };
    let mut rule = json!({"id": format!("mix-{i}"), "name": format!("mix {i}"), "metric": metric, "window": window, "condition": condition,
        "allowed_lateness_secs": i % lateness_spread.max(1)});
    if !filter.is_null() {
        rule["filter"] = filter;
    }
    rule
}

/// Probe rule `i`: fires on a window holding one `probe-{i}` event, resolves on the next
/// window without one.
fn probe_rule(i: usize, endpoint: &str) -> Value {
    json!({
        "id": format!("probe-{i}"), "name": format!("probe {i}"), "metric": {"kind": "count"},
        "filter": {"action": format!("probe-{i}")}, "window": {"kind": "tumbling", "size_secs": 1},
        "condition": {"kind": "threshold", "op": ">", "value": 0}, "channels": [endpoint],
    })
}

/// One server's run of the stream.
struct Run {
    events_per_sec: f64,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// App `a`'s id (app 0 is `bench`, which [`bench_key`] creates).
fn app_name(a: usize) -> String {
    if a == 0 {
        "bench".to_owned()
    } else {
        format!("bench-{a}")
    }
}

/// Creates the apps and a write key for each; the keys, by app.
async fn app_keys(http: &reqwest::Client, base: &str, apps: usize) -> anyhow::Result<Vec<String>> {
    let mut keys = vec![bench_key(base, &["write", "read", "admin"]).await?];
    for a in 1..apps {
        let app = app_name(a);
        let created = http.post(format!("{base}/v1/apps")).bearer_auth(BENCH_MASTER_KEY).json(&json!({"id": app})).send().await?;
        anyhow::ensure!(created.status().is_success(), "cannot create app {app}: {}", created.status());
        let key: Value = http.post(format!("{base}/v1/apps/{app}/keys")).bearer_auth(BENCH_MASTER_KEY).json(&json!({"scopes": ["write"]})).send().await?.error_for_status()?.json().await?;
        keys.push(key["key"].as_str().unwrap_or_default().to_owned());
    }
    Ok(keys)
}

/// Sends the events (by app) live, batches of 500 taking turns between the apps, 8 in
/// flight, and waits until every processor caught up; events/s over that time.
async fn stream(base: &str, keys: &[String], by_app: &[Vec<Value>]) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let mut batches: Vec<(usize, &[Value])> = Vec::new();
    let chunks: Vec<Vec<&[Value]>> = by_app.iter().map(|events| events.chunks(500).collect()).collect();
    for round in 0..chunks.iter().map(Vec::len).max().unwrap_or(0) {
        for (a, chunks) in chunks.iter().enumerate() {
            if let Some(chunk) = chunks.get(round) {
                batches.push((a, chunk));
            }
        }
    }
    let total: usize = by_app.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut answers = futures::stream::iter(batches.into_iter().map(|(a, chunk)| {
        let (http, key) = (http.clone(), keys[a].clone());
        async move {
            let now = Timestamp::now().millis();
            let live: Vec<Value> = chunk
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    v["time"] = json!(now);
                    v
                })
                .collect();
            let answer: Value = http.post(format!("{base}/v1/events")).bearer_auth(&key).json(&live).send().await?.error_for_status()?.json().await?;
            anyhow::Ok(answer["accepted"].as_u64().unwrap_or(0))
        }
    }))
    .buffer_unordered(8);
    let mut accepted = 0u64;
    while let Some(answer) = answers.next().await {
        accepted += answer?;
    }
    anyhow::ensure!(accepted as usize >= total * 9 / 10, "only {accepted} of {total} events accepted");
    while !processors_caught_up(base).await? {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(accepted as f64 / started.elapsed().as_secs_f64())
}

/// The benchmarks' loose limits, and room for 10,000 rules on one app.
fn server_flags() -> Vec<&'static str> {
    super::loose_limits().into_iter().chain(["--set", "alerts.max_rules_per_app=100000"]).collect()
}

/// Creates `rules` over HTTP, 8 at a time.
async fn create_rules(http: &reqwest::Client, base: &str, rules: Vec<(String, Value)>) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut answers = futures::stream::iter(rules.into_iter().map(|(app, rule)| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{base}/v1/apps/{app}/alerts/rules")).bearer_auth(BENCH_MASTER_KEY).json(&rule).send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "creating rule {}: {} {}", rule["id"], r.status(), r.text().await.unwrap_or_default());
            Ok(())
        }
    }))
    .buffer_unordered(8);
    while let Some(answer) = answers.next().await {
        answer?;
    }
    Ok(())
}

/// A webhook receiver in this process: notes when each probe rule's firing arrives, by
/// the end of the window that fired it.
async fn receiver() -> anyhow::Result<(String, Arc<Mutex<HashMap<(String, String), Instant>>>)> {
    let arrivals: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let noted = arrivals.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let noted = noted.clone();
        async move {
            let at = Instant::now();
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                for alert in v["alerts"].as_array().into_iter().flatten() {
                    if alert["status"] == "firing" {
                        let rule = alert["labels"]["rule"].as_str().unwrap_or_default().to_owned();
                        let end = alert["annotations"]["window_end"].as_str().unwrap_or_default().to_owned();
                        noted.lock().entry((rule, end)).or_insert(at);
                    }
                }
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, arrivals))
}

/// Runs the benchmark and prints its table.
pub(super) fn alerts_bench(args: AlertsBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        eprintln!("generating a demo world with {} users…", args.users);
        let config = meridian_demo::DemoConfig { users: args.users, malformed_share: 0.0, days: 1, ..meridian_demo::DemoConfig::default() };
        let n = args.events;
        let events: Vec<Value> = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Value>> {
            let world = Arc::new(meridian_demo::DemoWorld::generate(&config)?);
            Ok(world.events(n).tagged().map(|(v, _)| v).collect())
        })
        .await??;
        // Each user (or anonymous device) belongs to one app.
        let apps = args.apps.max(1);
        let mut by_app: Vec<Vec<Value>> = vec![Vec::new(); apps];
        for event in &events {
            let who = event["user"].as_str().or(event["device"].as_str()).unwrap_or_default();
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(who, &mut hasher);
            by_app[(std::hash::Hasher::finish(&hasher) % apps as u64) as usize].push(event.clone());
        }
        let http = reqwest::Client::new();
        let mixed = args.rules.saturating_sub(args.probes);

        // Without rules.
        let (server, base) = start_server(&tmp.path().join("without"), &server_flags()).await?;
        let keys = app_keys(&http, &base, apps).await?;
        let pid = server.0.id();
        let rss_before_kib = rss_kib(pid);
        eprintln!("without rules: {n} events over {apps} apps…");
        let without = Run { events_per_sec: stream(&base, &keys, &by_app).await?, rss_before_kib, rss_after_kib: rss_kib(pid) };
        drop(server);

        // With the rules.
        let (server, base) = start_server(&tmp.path().join("with"), &server_flags()).await?;
        let keys = app_keys(&http, &base, apps).await?;
        let key = keys[0].clone();
        let pid = server.0.id();
        let (hook_url, arrivals) = receiver().await?;
        let endpoint: Value = http
            .post(format!("{base}/v1/apps/bench/webhooks"))
            .bearer_auth(BENCH_MASTER_KEY)
            .json(&json!({"url": hook_url, "event_types": ["alert.firing", "alert.resolved"]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let endpoint = endpoint["id"].as_str().unwrap_or_default().to_owned();
        let rss_no_rules = rss_kib(pid);
        eprintln!("creating {} rules ({mixed} mixed, {} probes)…", args.rules, args.probes);
        let created = Instant::now();
        let rules: Vec<(String, Value)> = (0..mixed).map(|i| (app_name(i % apps), mixed_rule(i, args.lateness_spread))).chain((0..args.probes).map(|i| ("bench".to_owned(), probe_rule(i, &endpoint)))).collect();
        create_rules(&http, &base, rules).await?;
        let create_secs = created.elapsed().as_secs_f64();
        // Every rule in force before the stream starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (mut all, mut in_force) = (0, 0);
            for a in 0..apps {
                let list: Value = http.get(format!("{base}/v1/apps/{}/alerts/rules", app_name(a))).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
                all += list["rules"].as_array().map_or(0, Vec::len);
                in_force += list["rules"].as_array().map_or(0, |r| r.iter().filter(|r| r["in_force"] == true).count());
            }
            if all == args.rules && in_force == all {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{in_force} of {all} rules in force after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rss_before_kib = rss_kib(pid);
        eprintln!("with {} rules: {n} events…", args.rules);
        let with = Run { events_per_sec: stream(&base, &keys, &by_app).await?, rss_before_kib, rss_after_kib: rss_kib(pid) };
        // How many pane rings the rules share (rules counting the same thing over the same
        // windows share one).
        let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
        let streams = super::metric_value(&metrics, "meridian_alerts_streams");

        // Window close → notification: each probe rule gets one event every other second
        // (fires, then resolves), among a steady stream of demo events that moves the
        // watermark on.
        eprintln!("probing {} rules for {} s…", args.probes, args.probe_secs);
        let probe_start = Instant::now();
        let mut sent_windows: Vec<(String, i64)> = Vec::new();
        let mut background = events.iter().cycle();
        let mut second = 0u64;
        while probe_start.elapsed() < Duration::from_secs(args.probe_secs) {
            let now = Timestamp::now().millis();
            let window_start = now - now.rem_euclid(1000);
            let mut batch: Vec<Value> = Vec::new();
            for i in 0..args.probes {
                if (second + i as u64).is_multiple_of(2) {
                    batch.push(json!({"id": format!("probe-{i}-{window_start}"), "user": "prober", "action": format!("probe-{i}"), "time": now}));
                    sent_windows.push((format!("probe-{i}"), window_start + 1000));
                }
            }
            // About 2,000 demo events a second alongside, 20 batches of 100.
            for _ in 0..20 {
                let live: Vec<Value> = background
                    .by_ref()
                    .take(100)
                    .map(|v| {
                        let mut v = v.clone();
                        v["time"] = json!(Timestamp::now().millis());
                        if let Some(id) = v["id"].as_str() {
                            v["id"] = json!(format!("{id}-p{second}"));
                        }
                        v
                    })
                    .collect();
                batch.extend(live);
                let answer = http.post(format!("{base}/v1/events")).bearer_auth(&key).json(&batch).send().await?;
                anyhow::ensure!(answer.status().is_success(), "POST /v1/events answered {}", answer.status());
                let answer: Value = answer.json().await?;
                anyhow::ensure!(answer["rejected"] == 0, "probe events refused: {answer}");
                batch = Vec::new();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            second += 1;
            // Next whole second.
            let ms = Timestamp::now().millis().rem_euclid(1000);
            tokio::time::sleep(Duration::from_millis((1000 - ms) as u64 + 5)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The arrival instant of each notification, as wall-clock ms, against its window's end.
        let (wall_now, instant_now) = (Timestamp::now().millis(), Instant::now());
        let mut close_to_notify = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut missing = 0usize;
        {
            let arrivals = arrivals.lock();
            for (rule, end) in &sent_windows {
                let key = (rule.clone(), Timestamp(*end).to_rfc3339());
                match arrivals.get(&key) {
                    Some(at) => {
                        let arrived_ms = wall_now - instant_now.saturating_duration_since(*at).as_millis() as i64;
                        close_to_notify.record(((arrived_ms - end).max(0) as u64 * 1000).max(1))?;
                    }
                    None => missing += 1,
                }
            }
        }

        // Rule change → in force: change a probe rule's threshold and poll until the
        // processor evaluates with the new version.
        eprintln!("timing {} rule changes…", args.changes);
        let mut change_to_force = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for c in 0..args.changes {
            let id = format!("probe-{}", c % args.probes.max(1));
            let url = format!("{base}/v1/apps/bench/alerts/rules/{id}");
            let current: Value = http.get(&url).bearer_auth(BENCH_MASTER_KEY).send().await?.error_for_status()?.json().await?;
            let mut rule = probe_rule(c % args.probes.max(1), &endpoint);
            rule["condition"]["value"] = json!(c % 3);
            rule["version"] = current["version"].clone();
            let started = Instant::now();
            http.put(&url).bearer_auth(BENCH_MASTER_KEY).json(&rule).send().await?.error_for_status()?;
            loop {
                let now: Value = http.get(&url).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
                if now["in_force"] == true {
                    break;
                }
                anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "rule {id} not in force after 30 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            change_to_force.record(started.elapsed().as_micros().max(1) as u64)?;
        }
        let peak = peak_rss_kib(pid);
        if missing > 0 {
            let history: Value = http.get(format!("{base}/v1/apps/bench/alerts/history?limit=3")).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
            eprintln!("probe notifications missing; the alert history's newest: {history}");
            let evaluations: Value = http.get(format!("{base}/v1/apps/bench/alerts/rules/probe-0/evaluations?limit=4")).bearer_auth(BENCH_MASTER_KEY).send().await?.json().await?;
            eprintln!("probe-0's latest evaluations: {evaluations}");
            eprintln!("arrived: {:?}", arrivals.lock().keys().take(3).collect::<Vec<_>>());
            eprintln!("expected e.g.: {:?}", sent_windows.iter().take(3).map(|(r, e)| (r, Timestamp(*e).to_rfc3339())).collect::<Vec<_>>());
        }
        drop(server);

        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!("## meridian bench alerts ({n} demo events sent live through each server, batches of 500, 8 in flight; {} rules over {apps} apps, each event's app has {} of them)", args.rules, args.rules / apps);
        println!("| server | events/s (sent until every processor caught up) | RSS before → after the stream |");
        println!("|---|---|---|");
        let mib = |k: Option<u64>| k.map_or("?".to_owned(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        println!("| without rules (baseline) | {:.0} | {} → {} |", without.events_per_sec, mib(without.rss_before_kib), mib(without.rss_after_kib));
        println!("| with {} rules | {:.0} | {} → {} |", args.rules, with.events_per_sec, mib(with.rss_before_kib), mib(with.rss_after_kib));
        if let Some(streams) = streams {
            println!("the {} rules share {streams:.0} streams (pane rings)", args.rules);
        }
        println!("ratio with / without rules: {:.2} (target ≥ 0.80)", with.events_per_sec / without.events_per_sec);
        println!("rules created over HTTP in {create_secs:.1} s ({:.0} rules/s)", args.rules as f64 / create_secs);
        if let (Some(a), Some(b), Some(c), Some(d)) = (rss_no_rules, with.rss_before_kib, without.rss_after_kib, with.rss_after_kib) {
            println!(
                "memory per rule: {:.1} KB after creation (RSS {} → {}), {:.1} KB after the stream (RSS against the server without rules)",
                (b as f64 - a as f64) * 1.024 / args.rules as f64,
                mib(Some(a)),
                mib(Some(b)),
                (d as f64 - c as f64) * 1.024 / args.rules as f64
            );
        }
        println!(
            "window close → firing notification received (probe rules, tumbling 1 s, lateness 0): {} of {} arrived ({missing} missing); p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            sent_windows.len() - missing,
            sent_windows.len(),
            ms(&close_to_notify, 0.5),
            ms(&close_to_notify, 0.99),
            close_to_notify.max() as f64 / 1000.0
        );
        println!(
            "rule change answered → in force in the processor ({} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 1,000 ms)",
            args.changes,
            ms(&change_to_force, 0.5),
            ms(&change_to_force, 0.99),
            change_to_force.max() as f64 / 1000.0
        );
        if let Some(kib) = peak {
            println!("loaded server peak RSS: {:.0} MiB", kib as f64 / 1024.0);
        }
        anyhow::ensure!(missing == 0, "{missing} probe notifications did not arrive");
        Ok(())
    })
}
