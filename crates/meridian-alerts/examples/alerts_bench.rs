//! Benchmark of the alert engine: 10,000 active rules over a synthetic event stream, against
//! the same stream through the pipeline-equivalent work without rules, in the same run.
//!
//! ```text
//! cargo run --release -p meridian-alerts --example alerts_bench -- --rules 10000 --events 2000000
//! ```
//!
//! The stream: `--apps` apps (Zipf-popular), 20 actions (Zipf), 400k users, three platforms,
//! a log-normal `latency_ms` on requests and an `amount` on orders, spread over `--span-mins`
//! of event time with up to 5 s of disorder; every event is encoded in the log's binary form
//! first. The baseline decodes each record and runs one `EventFilter` (what any processor of
//! the `events` topic pays); the measured run decodes each record and gives it to the engine
//! (the clock advanced every 10,000 events, as a caught-up processor would). Then: rule
//! changes (time for `upsert` to put a change in force, p50/p99), snapshot size and time,
//! restore time, memory per rule (RSS delta and the engine's own estimate).

use meridian_alerts::{AlertEngine, Output, Rule};
use meridian_event::{Action, AppId, Context, Event, EventId, Timestamp, UserId};
use meridian_pipeline::{ConditionConfig, EventFilter};
use serde_json::{json, Map};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ACTIONS: [&str; 20] = [
    "view", "click", "request", "search", "launch", "scroll", "add_to_cart", "share", "order", "crash", "login", "like", "comment", "pay", "error", "play", "pause", "rate",
    "refund", "logout",
];
const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
const T0: i64 = 1_763_683_200_000; // 2025-11-21T00:00:00Z

struct Args {
    rules: usize,
    events: usize,
    apps: usize,
    /// Events per second of event time in the main run.
    rate: u64,
    /// The stress run: this many events over `stress_span_mins` of event time.
    stress_events: usize,
    stress_span_mins: i64,
    seed: u64,
}

fn parse_args() -> Args {
    let mut args = Args { rules: 10_000, events: 2_000_000, apps: 200, rate: 150_000, stress_events: 500_000, stress_span_mins: 240, seed: 42 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--rules" => args.rules = value() as usize,
            "--events" => args.events = value() as usize,
            "--apps" => args.apps = value() as usize,
            "--rate" => args.rate = value().max(1),
            "--stress-events" => args.stress_events = value() as usize,
            "--stress-span-mins" => args.stress_span_mins = value() as i64,
            "--seed" => args.seed = value(),
            "--help" | "-h" => {
                println!("alerts_bench [--rules N] [--events N] [--apps N] [--rate EVENTS_PER_EVENT_TIME_SEC] [--stress-events N] [--stress-span-mins N] [--seed N]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// SplitMix64: small, deterministic, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Zipf(s) over `n` items, by inverse CDF.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = cdf.iter().sum();
        let mut acc = 0.0;
        for w in &mut cdf {
            acc += *w / total;
            *w = acc;
        }
        Zipf(cdf)
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

fn app_name(i: usize) -> String {
    format!("app{i:04}")
}

/// Encoded records: one buffer and the offsets of each record (and of the end).
struct Records {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
}

impl Records {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i]..self.offsets[i + 1]]
    }
}

fn generate_events(args: &Args, count: usize, span_ms: i64, rng: &mut Rng) -> Records {
    let app_zipf = Zipf::new(args.apps, 0.9);
    let action_zipf = Zipf::new(ACTIONS.len(), 1.1);
    let apps: Vec<AppId> = (0..args.apps).map(|i| AppId::new(app_name(i)).unwrap()).collect();
    let actions: Vec<Action> = ACTIONS.iter().map(|a| Action::new(*a).unwrap()).collect();
    let mut bytes = Vec::with_capacity(count * 110);
    let mut offsets = Vec::with_capacity(count + 1);
    for i in 0..count {
        let base = T0 + (i as i64 * span_ms) / count as i64;
        let time = base - (rng.next() % 5_000) as i64;
        let action = action_zipf.sample(rng);
        let mut props = Map::new();
        match ACTIONS[action] {
            "request" => {
                let latency = (4.8 + 0.6 * rng.normal()).exp().round();
                props.insert("latency_ms".into(), json!(latency));
                props.insert("status".into(), json!(if rng.unit() < 0.02 { 500 } else { 200 }));
            }
            "order" | "pay" => {
                props.insert("amount".into(), json!(((rng.unit() * 300.0) * 100.0).round() / 100.0));
            }
            _ => {}
        }
        let event = Event {
            id: EventId::new(format!("e{i}")).unwrap(),
            app: apps[app_zipf.sample(rng)].clone(),
            user: Some(UserId::new(format!("u{}", rng.below(400_000))).unwrap()),
            device: None,
            time: Timestamp(time),
            received: Timestamp(base),
            action: actions[action].clone(),
            target: None,
            context: Context { platform: Some(PLATFORMS[rng.below(3)].into()), version: Some("10.2.1".into()), ..Context::default() },
            props,
        };
        offsets.push(bytes.len());
        event.encode_into(&mut bytes);
    }
    offsets.push(bytes.len());
    Records { bytes, offsets }
}

fn make_rules(args: &Args, rng: &mut Rng) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(args.rules);
    for i in 0..args.rules {
        let app = app_name(i % args.apps);
        let action = ACTIONS[rng.below(ACTIONS.len())];
        let platform = PLATFORMS[rng.below(3)];
        let filter = match rng.below(100) {
            0 => json!(format!("action == \"order\" && props.amount > {}", 50 + rng.below(200))),
            1..=40 => json!({"action": action, "context.platform": platform}),
            41..=95 => json!({"action": action}),
            _ => json!({"context.platform": platform}),
        };
        let (metric, filter) = match rng.below(100) {
            0..=44 => (json!({"kind": "count"}), filter),
            45..=64 => (json!({"kind": "distinct_users"}), filter),
            65..=79 => {
                if rng.below(2) == 0 {
                    (json!({"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}}), json!({"context.platform": platform}))
                } else {
                    (json!({"kind": "ratio", "numerator": "props.status >= 500", "denominator": {"action": "request"}}), json!({"action": "request"}))
                }
            }
            _ => (json!({"kind": "percentile", "p": ([50, 95, 99][rng.below(3)]), "field": "props.latency_ms"}), json!({"action": "request"})),
        };
        let window = match rng.below(10) {
            0..=3 => json!({"kind": "tumbling", "size_secs": 60}),
            4..=5 => json!({"kind": "tumbling", "size_secs": 300}),
            6..=7 => json!({"kind": "sliding", "size_secs": 600, "slide_secs": 60}),
            8 => json!({"kind": "sliding", "size_secs": 3600, "slide_secs": 300}),
            _ => json!({"kind": "tumbling", "size_secs": 3600}),
        };
        let condition = match rng.below(10) {
            0..=6 => json!({"kind": "threshold", "op": ([">", "<"][rng.below(2)]), "value": (1 + rng.below(50)) as f64}),
            7..=8 => json!({"kind": "change", "op": ">", "percent": 50, "against": (["day", "week"][rng.below(2)])}),
            _ => json!({"kind": "forecast", "k": 4, "min_history": 3, "direction": "above"}),
        };
        let rule = json!({
            "id": format!("rule-{i:05}"), "app": app, "name": format!("rule {i}"), "version": 1,
            "severity": (["info", "warning", "critical"][rng.below(3)]), "metric": metric, "filter": filter,
            "window": window, "allowed_lateness_secs": ([0, 10, 30, 60][rng.below(4)]), "condition": condition,
            "min_samples": rng.below(5), "cooldown_secs": ([0, 300, 1800][rng.below(3)]), "channels": ["ops-webhook"],
        });
        rules.push(Rule::from_json(&rule).unwrap_or_else(|e| panic!("bench rule {i}: {e}")));
    }
    rules
}

/// What the engine produced (the caller would turn it into records).
#[derive(Default)]
struct Totals {
    evaluations: u64,
    transitions: u64,
    late: u64,
}

impl Totals {
    fn drain(&mut self, out: &mut Output) {
        self.evaluations += out.evaluations.len() as u64;
        self.transitions += out.transitions.len() as u64;
        self.late += out.late_events;
        out.clear();
    }
}

fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn micros(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

/// What one run through the engine measured.
struct Run {
    /// Processing time, commits excluded.
    elapsed: Duration,
    /// Incremental commits, one per 10,000 events (a round): rules written per round, bytes
    /// per round, time to encode them.
    commits: Vec<(usize, usize, Duration)>,
    /// Sampled (every 16th event) `process` times, ns, sorted.
    sampled_ns: Vec<u64>,
    totals: Totals,
}

/// Decodes every record and runs one filter: the work of any processor without rules.
fn baseline(records: &Records) -> Duration {
    let filter = EventFilter::compile(&ConditionConfig::Match([("action", json!("order")), ("context.platform", json!("ios"))].into_iter().collect())).unwrap();
    let started = Instant::now();
    let mut matched = 0u64;
    for i in 0..records.len() {
        let event = Event::decode(records.get(i)).expect("valid record");
        matched += u64::from(filter.matches(black_box(&event)));
    }
    black_box(matched);
    started.elapsed()
}

/// Decodes every record and gives it to the engine; the clock follows the records'
/// `received` times every 10,000 events, as a caught-up processor's would.
fn through_engine(engine: &mut AlertEngine, records: &Records) -> Run {
    let mut out = Output::default();
    let mut totals = Totals::default();
    let mut sampled_ns = Vec::with_capacity(records.len() / 16 + 1);
    let mut clock = 0i64;
    let mut commits = Vec::new();
    let mut commit_time = Duration::ZERO;
    let started = Instant::now();
    for i in 0..records.len() {
        let event = Event::decode(records.get(i)).expect("valid record");
        clock = clock.max(event.received.0);
        if i % 16 == 0 {
            let t = Instant::now();
            engine.process(&event, &mut out);
            sampled_ns.push(t.elapsed().as_nanos() as u64);
        } else {
            engine.process(&event, &mut out);
        }
        if i % 10_000 == 9_999 {
            engine.advance(Timestamp(clock), &mut out);
            totals.drain(&mut out);
            // The round's incremental commit: the rules it touched, and the engine part.
            let t = Instant::now();
            let dirty = engine.take_dirty();
            let mut bytes = engine.snapshot_engine().len();
            for id in &dirty.changed {
                bytes += engine.snapshot_rule(id).map_or(0, |b| b.len());
            }
            for &id in &dirty.streams {
                bytes += engine.snapshot_stream(id).map_or(0, |b| b.len());
            }
            let spent = t.elapsed();
            commit_time += spent;
            commits.push((dirty.changed.len(), bytes, spent));
        }
    }
    engine.advance(Timestamp(clock), &mut out);
    totals.drain(&mut out);
    let elapsed = started.elapsed() - commit_time;
    sampled_ns.sort_unstable();
    Run { elapsed, commits, sampled_ns, totals }
}

fn report(label: &str, events: usize, base: Duration, run: &Run, rules: usize) {
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("  baseline: decode + one EventFilter  {:>10.0} events/s  ({:.2?})", rate(base), base);
    println!("  decode + engine, {rules} rules       {:>10.0} events/s  ({:.2?})", rate(run.elapsed), run.elapsed);
    println!("  ratio engine / baseline             {:>10.2}   [{label}]", rate(run.elapsed) / rate(base));
    let q = |p: f64| micros(quantile(&run.sampled_ns, p));
    println!("  engine.process per event: p50 {}  p99 {}  p99.9 {}  max {}", q(0.5), q(0.99), q(0.999), micros(*run.sampled_ns.last().unwrap_or(&0)));
    println!(
        "  {} windows evaluated ({:.0} per s of run), {} transitions, {} late events",
        run.totals.evaluations,
        run.totals.evaluations as f64 / run.elapsed.as_secs_f64(),
        run.totals.transitions,
        run.totals.late
    );
    if !run.commits.is_empty() {
        let n = run.commits.len();
        let rules: usize = run.commits.iter().map(|c| c.0).sum();
        let bytes: usize = run.commits.iter().map(|c| c.1).sum();
        let mut times: Vec<u64> = run.commits.iter().map(|c| c.2.as_nanos() as u64).collect();
        times.sort_unstable();
        println!(
            "  incremental commit per 10,000-event round: {} rules, {:.0} KB, encoded in p50 {} / p99 {} (excluded from the rate)",
            rules / n,
            bytes as f64 / n as f64 / 1000.0,
            micros(quantile(&times, 0.5)),
            micros(quantile(&times, 0.99))
        );
    }
}

fn main() {
    let args = parse_args();
    let mut rng = Rng(args.seed);
    let span_ms = (args.events as i64 * 1000) / args.rate as i64;
    println!(
        "alerts_bench: {} rules over {} apps; main run {} events at {} events per second of event time ({:.1} s of event time); stress run {} events over {} min",
        args.rules,
        args.apps,
        args.events,
        args.rate,
        span_ms as f64 / 1000.0,
        args.stress_events,
        args.stress_span_mins
    );
    let started = Instant::now();
    let records = generate_events(&args, args.events, span_ms, &mut rng);
    let stress_records = generate_events(&args, args.stress_events, args.stress_span_mins * 60_000, &mut rng);
    println!(
        "  generated and encoded in {:.1?} ({} MB of records)",
        started.elapsed(),
        (records.bytes.len() + stress_records.bytes.len()) / 1_000_000
    );
    let rules = make_rules(&args, &mut rng);
    let base = baseline(&records);
    let stress_base = baseline(&stress_records);

    // Stress first, on a heap holding only the records: hours of event time compressed
    // into seconds, so window evaluations dominate and every rule holds its steady-state
    // panes. Memory (RSS around it), changes and snapshots are measured on this engine.
    let rss_before = rss_bytes();
    let mut engine = AlertEngine::default();
    let mut out = Output::default();
    for rule in &rules {
        engine.upsert(rule.clone(), &mut out).unwrap();
    }
    let stress = through_engine(&mut engine, &stress_records);
    let rss_after = rss_bytes();
    drop(stress_records);

    // Main: event time at the server's ingest rate, on its own engine.
    let started = Instant::now();
    let mut main_engine = AlertEngine::default();
    for rule in &rules {
        main_engine.upsert(rule.clone(), &mut out).unwrap();
    }
    let load_time = started.elapsed();
    let run = through_engine(&mut main_engine, &records);
    let matched: u64 = main_engine.metrics().iter().map(|m| m.events_matched).sum();
    drop(main_engine);
    println!();
    println!("main run: event time at the server's ingest rate (real time at full load)");
    report("main", records.len(), base, &run, args.rules);
    println!("  {:.2} rule matches per event; {:.1?} to load the rules", matched as f64 / records.len() as f64, load_time);
    drop(records);
    println!();
    println!("stress run: {} min of event time in {} events (every window of every rule closes)", args.stress_span_mins, args.stress_events);
    report("stress", args.stress_events, stress_base, &stress, args.rules);
    let mut totals = Totals::default();

    // Rule changes: time until the change is in force (upsert returns; the next event sees it).
    let mut change_ns: [Vec<u64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let names = ["threshold (keeps windows)", "filter (fresh windows)", "pause / resume"];
    for n in 0..3_000 {
        let mut rule = engine.rule(&rules[rng.below(rules.len())].id).unwrap().clone();
        rule.version += 1;
        let kind = n % 3;
        match kind {
            0 => rule.min_samples += 1,
            1 => rule.filter = Some(ConditionConfig::Match([("action", json!(ACTIONS[rng.below(ACTIONS.len())]))].into_iter().collect())),
            _ => rule.paused = !rule.paused,
        }
        let t = Instant::now();
        engine.upsert(rule, &mut out).unwrap();
        change_ns[kind].push(t.elapsed().as_nanos() as u64);
    }
    totals.drain(&mut out);
    println!("rule change until in force (AlertEngine::upsert)");
    for (kind, samples) in change_ns.iter_mut().enumerate() {
        samples.sort_unstable();
        println!("  {:<28} p50 {:>10}   p99 {:>10}   max {:>10}", names[kind], micros(quantile(samples, 0.5)), micros(quantile(samples, 0.99)), micros(*samples.last().unwrap_or(&0)));
    }

    // Snapshot.
    let t = Instant::now();
    let snapshot = engine.snapshot();
    let snapshot_time = t.elapsed();
    let t = Instant::now();
    let restored = AlertEngine::restore_exact(&snapshot).expect("restores");
    let restore_time = t.elapsed();
    assert_eq!(restored.len(), engine.len());
    drop(restored);
    println!("snapshot");
    println!(
        "  {:.1} MB ({} bytes per rule), written in {:.1?}, restored in {:.1?}",
        snapshot.len() as f64 / 1e6,
        snapshot.len() / args.rules.max(1),
        snapshot_time,
        restore_time
    );

    let estimate = engine.memory_estimate();
    println!("memory");
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => println!(
            "  RSS delta {:.1} MB = {} bytes per rule (engine built and run; allocator slack included)",
            after.saturating_sub(before) as f64 / 1e6,
            after.saturating_sub(before) / args.rules.max(1) as u64
        ),
        _ => println!("  RSS not available on this system"),
    }
    println!("  engine estimate {:.1} MB = {} bytes per rule", estimate as f64 / 1e6, estimate / args.rules.max(1));
    let metrics = engine.metrics();
    let mut per_rule: Vec<usize> = metrics.iter().map(|m| m.memory_bytes).collect();
    per_rule.sort_unstable();
    println!("  per rule: median {} B, p99 {} B, max {} B", per_rule[per_rule.len() / 2], per_rule[per_rule.len() * 99 / 100], per_rule.last().unwrap());
    // History grows until its retention is full: a day or a week of values for change
    // conditions, eight weeks of hour-of-week means for forecasts.
    let full_history: usize = rules.iter().map(full_history_bytes).sum();
    println!(
        "  history at full retention (computed): {:.1} MB more = {} bytes per rule on average",
        full_history as f64 / 1e6,
        full_history / args.rules.max(1)
    );
}

/// Bytes a rule's history holds once its retention is full.
fn full_history_bytes(rule: &Rule) -> usize {
    match rule.condition {
        meridian_alerts::Condition::Change { against, .. } => (against.millis() / rule.slide_ms()) as usize * 4 + 64,
        meridian_alerts::Condition::Forecast { .. } => (meridian_alerts::rule::HISTORY_WEEKS as usize + 1) * (168 * 6 + 64),
        meridian_alerts::Condition::Threshold { .. } => 0,
    }
}
