//! User action system benchmark: processor throughput with 20 configured aggregations
//! (profiles on the embedded store and on Redis), against a decode-only processor (the
//! floor: reading and decoding the same records) measured in the same run; in-process
//! profile and single-aggregation reads (p50/p99); stored bytes and memory per active user.
//!
//! `cargo run --release -p meridian-actions-redis --example actions_bench [-- --users N --events M]`
//! (defaults 100,000 users, 1,000,000 events over 7 days, users Zipf 0.75 like the demo
//! world; Redis at 127.0.0.1:6379 or MERIDIAN_REDIS_URL).

use bytes::Bytes;
use meridian_actions::config::{AggregationConfig, SegmentConfig, TriggerConfig};
use meridian_actions::processor::ProcessorSettings;
use meridian_actions::{ActionsConfig, ActionsService, AggregationKind, EmbeddedProfileStore, FixedZone, ProfileStore, SystemClock};
use meridian_actions_redis::RedisProfileStore;
use meridian_event::{Action, AppId, Event, EventId, LogEntry, Target, TargetType, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_pipeline::ConditionConfig;
use meridian_runtime::{ProcessContext, Processor, Runtime, RuntimeConfig};
use meridian_state::{FjallStore, KvStore, WriteBatch};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The server binary's allocator (its default feature), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<u64> {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok())).map_or(0, |pages| pages * 4096)
}

fn agg(name: &str, kind: AggregationKind, field: Option<&str>, filter: &str) -> AggregationConfig {
    let (of, prop) = if kind == AggregationKind::Distinct { (field.map(Into::into), None) } else { (None, field.map(Into::into)) };
    AggregationConfig { name: name.into(), kind, of, prop, filter: (!filter.is_empty()).then(|| ConditionConfig::Expr(filter.into())), group: "default".into(), description: String::new() }
}

/// 20 aggregations over the demo world's actions.
/// `threads`: the processor's threads (0: one per core).
fn config(threads: usize) -> ActionsConfig {
    use AggregationKind::*;
    let bare = std::env::args().any(|a| a == "--no-conditions");
    let c = ActionsConfig {
        aggregations: vec![
            agg("views", Count, None, "action == \"view\""),
            agg("skus_viewed", Distinct, None, "action == \"view\""),
            agg("food_views", Count, None, "action == \"view\" && props.category == \"food\""),
            agg("clicks", Count, None, "action == \"click\""),
            agg("carts", Count, None, "action == \"cart\""),
            agg("skus_carted", Distinct, None, "action == \"cart\""),
            agg("orders", Count, None, "action == \"order\""),
            agg("spend", Sum, Some("props.amount"), "action == \"order\""),
            agg("smallest_order", Min, Some("props.amount"), "action == \"order\""),
            agg("largest_order", Max, Some("props.amount"), "action == \"order\""),
            agg("first_order", FirstTime, None, "action == \"order\""),
            agg("last_order", LastTime, None, "action == \"order\""),
            agg("last_view", LastTime, None, "action == \"view\""),
            agg("first_seen_any", FirstTime, None, ""),
            agg("cities", Distinct, Some("context.city"), ""),
            agg("last_city", LastValue, Some("context.city"), ""),
            agg("shares", Count, None, "action == \"share\""),
            agg("searches", Count, None, "action == \"search\""),
            agg("crashes", Count, None, "action == \"crash\""),
            agg("categories", Distinct, Some("props.category"), ""),
        ],
        segments: vec![
            SegmentConfig { name: "big_spenders".into(), when: "spend_30d >= 500".into(), description: String::new() },
            SegmentConfig { name: "browsers".into(), when: "views_7d >= 20 && orders_30d == 0".into(), description: String::new() },
        ],
        triggers: vec![
            TriggerConfig { name: "third_order".into(), when: "orders_30d >= 3".into(), webhook: true, description: String::new() },
            TriggerConfig { name: "went_dormant".into(), when: "stage == \"dormant\"".into(), webhook: true, description: String::new() },
        ],
        threads,
        ..ActionsConfig::default()
    };
    let mut c = c;
    if std::env::args().any(|a| a == "--count-only") {
        for a in &mut c.aggregations {
            a.kind = Count;
            a.of = None;
            a.prop = None;
        }
    }
    if let Some(n) = arg("--timeline") {
        c.timeline_len = n as usize;
    }
    if let Some(n) = arg("--aggs") {
        c.aggregations.truncate(n as usize);
    }
    if bare {
        // Aggregations only: one stage, no segments, no triggers (to see what conditions cost).
        return ActionsConfig { segments: vec![], triggers: vec![], lifecycle: vec![meridian_actions::config::StageConfig { stage: "all".into(), when: None }], ..c };
    }
    c
}

fn settings() -> ProcessorSettings {
    ProcessorSettings {
        events_topic: TopicName::new("events").unwrap(),
        segments_topic: TopicName::new("segment-changes").unwrap(),
        triggers_topic: TopicName::new("triggers").unwrap(),
        notifications_topic: TopicName::new("notifications").unwrap(),
    }
}

/// The floor: decodes every record and does nothing else.
struct DecodeOnly(u64);

impl Processor for DecodeOnly {
    fn name(&self) -> &str {
        "decode-only"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![TopicName::new("events").unwrap()]
    }
    fn process(&mut self, _ctx: &mut ProcessContext<'_>, _t: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for r in records {
            if let Ok(LogEntry::Event(e)) = LogEntry::decode(&r.value) {
                self.0 += e.props.len() as u64;
            }
        }
        Ok(())
    }
    fn clear_state(&mut self, _batch: &mut WriteBatch) {}
}

fn events(users: u64, n: u64, now: i64) -> Vec<AppendRecord> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let zipf = Zipf::new(users, 0.75).unwrap();
    let actions = [("view", 55), ("click", 15), ("cart", 8), ("order", 4), ("share", 3), ("search", 12), ("crash", 3)];
    let categories = ["food", "toys", "books", "home", "beauty", "sport"];
    (0..n)
        .map(|i| {
            let user = zipf.sample(&mut rng) as u64;
            let mut pick = rng.gen_range(0..100);
            let action = actions.iter().find(|(_, w)| if pick < *w { true } else { pick -= w; false }).map_or("view", |(a, _)| *a);
            let time = now - rng.gen_range(0..7 * 86_400_000i64);
            let mut props = serde_json::Map::new();
            props.insert("category".into(), categories[rng.gen_range(0..categories.len())].into());
            if action == "order" {
                props.insert("amount".into(), (rng.gen_range(100..50_000) as f64 / 100.0).into());
            }
            let e = Event {
                id: EventId::new(format!("b{i}")).unwrap(),
                app: AppId::new("demo").unwrap(),
                user: Some(UserId::new(format!("u{user}")).unwrap()),
                device: None,
                time: Timestamp(time),
                received: Timestamp(now),
                action: Action::new(action).unwrap(),
                target: Some(Target { kind: TargetType::new("sku").unwrap(), id: format!("{}", 100_000_000 + rng.gen_range(0..50_000)) }),
                context: meridian_event::Context { city: Some(rng.gen_range(1..40)), ..Default::default() },
                props,
            };
            AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: now }
        })
        .collect()
}

/// Runs `processors` over the log until caught up; events per second.
fn run(log: &Arc<EmbeddedLog>, store: Arc<dyn KvStore>, processors: Vec<Box<dyn Processor>>, n: u64) -> f64 {
    let rt = Runtime::new(log.clone(), store, RuntimeConfig::default());
    let t = Instant::now();
    for p in processors {
        rt.spawn(p).unwrap();
    }
    assert!(rt.wait_caught_up(Duration::from_secs(1800)), "caught up");
    let secs = t.elapsed().as_secs_f64();
    rt.shutdown();
    n as f64 / secs
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// Profile and one-aggregation reads of Zipf-drawn users, in µs: through the read path
/// (memory when the user is there, as the API reads; `from_store` false) or from the store.
fn reads(service: &ActionsService, users: u64, n: usize, from_store: bool) -> ((f64, f64), (f64, f64)) {
    let app = AppId::new("demo").unwrap();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
    let zipf = Zipf::new(users, 0.75).unwrap();
    let mut profile = Vec::with_capacity(n);
    let mut one = Vec::with_capacity(n);
    for _ in 0..n {
        let user = format!("u{}", zipf.sample(&mut rng) as u64);
        let t = Instant::now();
        if from_store {
            std::hint::black_box(service.profile_from_store(&app, &user).unwrap());
        } else {
            std::hint::black_box(service.profile(&app, &user).unwrap());
        }
        profile.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        if from_store {
            std::hint::black_box(service.aggregate_from_store(&app, &user, "spend", "30d").unwrap());
        } else {
            std::hint::black_box(service.aggregate(&app, &user, "spend", "30d").unwrap());
        }
        one.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (percentiles(profile), percentiles(one))
}

fn main() {
    let users = arg("--users").unwrap_or(100_000);
    let n = arg("--events").unwrap_or(1_000_000);
    let now = Timestamp::now().millis();
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()).unwrap();
    for (t, p) in [("events", 8), ("segment-changes", 4), ("triggers", 4), ("notifications", 1)] {
        log.ensure_topic(&TopicName::new(t).unwrap(), p).unwrap();
    }
    let records = events(users, n, now);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for chunk in records.chunks(10_000) {
        rt.block_on(log.append(&TopicName::new("events").unwrap(), chunk.to_vec())).unwrap();
    }
    drop(records);
    println!("actions bench: {n} events, {users} users (Zipf 0.75), 20 aggregations, 2 segments, 2 triggers, default lifecycle");

    let floor_store: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.path().join("floor")).unwrap());
    let floor = run(&log, floor_store, vec![Box::new(DecodeOnly(0))], n);
    println!("decode-only floor:            {:>9.0} events/s", floor);

    // One thread, then one per core (the default), each on a fresh store.
    let one_thread = {
        let kv: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.path().join("one-thread")).unwrap());
        let store = Arc::new(EmbeddedProfileStore::for_config(kv.clone(), &config(1)));
        let service = ActionsService::new(config(1), store, kv.clone(), Arc::new(FixedZone(chrono_tz::Asia::Shanghai)), Arc::new(SystemClock), log.clone(), settings()).unwrap();
        let processors: Vec<Box<dyn Processor>> = service.processors().unwrap().into_iter().map(|p| Box::new(p) as Box<dyn Processor>).collect();
        run(&log, kv, processors, n)
    };
    println!("embedded (fjall), one thread: {:>9.0} events/s  ({:.2}x the decode-only floor)", one_thread, one_thread / floor);

    let rss0 = rss_bytes();
    let kv: Arc<dyn KvStore> = if std::env::args().any(|a| a == "--memory") {
        Arc::new(meridian_state::MemoryStore::new())
    } else {
        Arc::new(FjallStore::open(dir.path().join("embedded")).unwrap())
    };
    let threads = arg("--threads").unwrap_or(0) as usize;
    let embedded = Arc::new(EmbeddedProfileStore::for_config(kv.clone(), &config(threads)));
    let service = ActionsService::new(config(threads), embedded.clone(), kv.clone(), Arc::new(FixedZone(chrono_tz::Asia::Shanghai)), Arc::new(SystemClock), log.clone(), settings()).unwrap();
    let processors: Vec<Box<dyn Processor>> = service.processors().unwrap().into_iter().map(|p| Box::new(p) as Box<dyn Processor>).collect();
    let eps = run(&log, kv.clone(), processors, n);
    let rss1 = rss_bytes();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("embedded (fjall), {} threads: {:>9.0} events/s  ({:.2}x the decode-only floor, {:.2}x one thread)", if threads == 0 { cores } else { threads }, eps, eps / floor, eps / one_thread);
    let app = AppId::new("demo").unwrap();
    let mut active = 0u64;
    let mut stored = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = embedded.users(&app, after.as_deref(), 10_000).unwrap();
        if page.is_empty() {
            break;
        }
        let keys: Vec<_> = page.iter().map(|u| meridian_actions::UserKey::new(app.clone(), u.as_str())).collect();
        for fields in embedded.read_many(&keys).unwrap() {
            stored += fields.iter().map(|(f, v)| (f.len() + v.len()) as u64).sum::<u64>();
        }
        active += page.len() as u64;
        after = page.last().cloned();
    }
    // Memory a user takes in the processor's cache (decoded) and in the read cache (its
    // fields as stored), from a sample.
    let defs = service.definitions();
    let keys: Vec<String> = defs.aggregations.iter().map(|a| a.key.clone()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let sample: Vec<_> = embedded.users(&app, None, 2000).unwrap().into_iter().map(|u| meridian_actions::UserKey::new(app.clone(), u)).collect();
    let mut decoded = 0usize;
    let mut fields_bytes = 0usize;
    for fields in embedded.read_many(&sample).unwrap() {
        fields_bytes += fields.iter().map(|(f, v)| f.capacity() + v.capacity() + 48).sum::<usize>();
        decoded += meridian_actions::state::UserState::decode(&fields, "m", &key_refs).unwrap().heap_bytes() + std::mem::size_of::<meridian_actions::state::UserState>();
    }
    let sampled = sample.len().max(1);
    println!(
        "active users: {active}; per active user: {} B stored (field names + values), {} B decoded in the processor's cache, {} B in the read cache; process RSS growth per user while processing: {} B",
        stored / active.max(1),
        decoded / sampled,
        fields_bytes / sampled,
        rss1.saturating_sub(rss0) / active.max(1)
    );
    let ((p50, p99), (a50, a99)) = reads(&service, users, 20_000, false);
    println!("in-process reads (embedded, read path: memory, else store): profile p50 {p50:.1} us p99 {p99:.1} us; one aggregation (spend, 30d) p50 {a50:.1} us p99 {a99:.1} us");
    let ((p50, p99), (a50, a99)) = reads(&service, users, 20_000, true);
    println!("in-process reads (embedded, from the store):                profile p50 {p50:.1} us p99 {p99:.1} us; one aggregation (spend, 30d) p50 {a50:.1} us p99 {a99:.1} us");

    let url = std::env::var("MERIDIAN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("meridian-bench:{}:", std::process::id());
    match RedisProfileStore::connect(&url, &prefix) {
        Err(e) => println!("redis: skipped ({e})"),
        Ok(redis) => {
            let redis = Arc::new(redis);
            let kv: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.path().join("redis-state")).unwrap());
            let service = ActionsService::new(config(threads), redis.clone(), kv.clone(), Arc::new(FixedZone(chrono_tz::Asia::Shanghai)), Arc::new(SystemClock), log.clone(), settings()).unwrap();
            let processors: Vec<Box<dyn Processor>> = service.processors().unwrap().into_iter().map(|p| Box::new(p) as Box<dyn Processor>).collect();
            let eps_r = run(&log, kv, processors, n);
            println!("redis processor:              {:>9.0} events/s  ({:.2}x the floor, {:.2}x embedded)", eps_r, eps_r / floor, eps_r / eps);
            let ((p50, p99), (a50, a99)) = reads(&service, users, 5_000, true);
            println!("in-process reads (redis, from the store): profile p50 {p50:.1} us p99 {p99:.1} us; one aggregation p50 {a50:.1} us p99 {a99:.1} us");
            redis.delete_all().unwrap();
        }
    }
}
