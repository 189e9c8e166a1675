//! Do processors contend on one shared state store? fjall serialises commits of one
//! database on one writer (and one journal), so three processors committing into one
//! store might slow each other down. Runs history, counters and a synthetic write-heavy
//! processor ("last seen" per user) over the same pre-appended events in three set-ups,
//! in one process, and prints each processor's throughput:
//!
//! * alone: each processor by itself on a store of its own (the baseline);
//! * shared: all three at once in one runtime on one store (how the server runs them);
//! * separate: all three at once, each in a runtime with a store of its own.
//!
//! "shared" against "separate" is the cost of sharing the store (both compete for the same
//! two cores); either against "alone" also includes the competition for CPU.
//!
//! Usage: `cargo run --release -p meridian-counters --example state_isolation [events] [users] [runs]`
//! (defaults: 1,000,000 events, 100,000 users, 2 runs).

use bytes::Bytes;
use meridian_catalog::PassThroughCatalog;
use meridian_counters::CountersProcessor;
use meridian_event::{Action, AppId, Event, EventId, LogEntry, Target, TargetType, Timestamp, UserId};
use meridian_history::hot::embedded::EmbeddedHotTier;
use meridian_history::{HistoryConfig, HistoryService, SystemClock};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Runtime, RuntimeConfig};
use meridian_state::{FjallStore, KvStore, WriteBatch};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LAST_SEEN_TABLE: &str = "last_seen";

/// Writes, per round, each user's latest event time: one put per distinct user, like a
/// real-time profile would.
struct LastSeen {
    topic: TopicName,
    round: HashMap<String, i64>,
}

impl Processor for LastSeen {
    fn name(&self) -> &str {
        "last_seen"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn process(&mut self, _ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for record in records {
            if let Ok(LogEntry::Event(event)) = LogEntry::decode(&record.value) {
                let t = self.round.entry(event.partition_key().to_owned()).or_default();
                *t = (*t).max(event.time.0);
            }
        }
        Ok(())
    }
    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        for (user, time) in self.round.drain() {
            ctx.batch().put(LAST_SEEN_TABLE, user.into_bytes(), time.to_be_bytes().to_vec());
        }
        Ok(())
    }
    fn reset_cache(&mut self) {
        self.round.clear();
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(LAST_SEEN_TABLE, Vec::new());
    }
}

const NAMES: [&str; 3] = ["history", "counters", "last_seen"];

fn processor(name: &str, topic: &TopicName, store: &Arc<dyn KvStore>) -> Box<dyn Processor> {
    match name {
        "history" => {
            let config = HistoryConfig::default();
            let hot = Arc::new(EmbeddedHotTier::new(config.hot_config(), config.memory_budget_bytes()));
            let service = HistoryService::new(config, hot, store.clone(), Arc::new(PassThroughCatalog::default()), Arc::new(SystemClock)).expect("history opens");
            Box::new(service.processor(topic.clone()))
        }
        "counters" => Box::new(CountersProcessor::new(topic.clone())),
        _ => Box::new(LastSeen { topic: topic.clone(), round: HashMap::new() }),
    }
}

fn event(n: u64, users: u64) -> Event {
    let user = (n.wrapping_mul(2_654_435_761) >> 7) % users;
    let action = if n % 10 < 7 { "view" } else { ["click", "cart", "order"][(n % 3) as usize] };
    Event {
        id: EventId::new(format!("e{n}")).unwrap(),
        app: AppId::new("shop").unwrap(),
        user: Some(UserId::new(format!("u{user}")).unwrap()),
        device: None,
        time: Timestamp(1_796_000_000_000 + n as i64),
        received: Timestamp(1_796_000_000_000 + n as i64),
        action: Action::new(action).unwrap(),
        target: Some(Target { kind: TargetType::new("sku").unwrap(), id: (100_000 + (n * 7919) % 50_000).to_string() }),
        context: Default::default(),
        props: Default::default(),
    }
}

/// Starts one runtime per group (processors of a group share its store) and returns each
/// processor's records per second over the whole log.
fn run(log: &Arc<EmbeddedLog>, topic: &TopicName, dir: &Path, groups: &[&[&str]], n_events: u64) -> HashMap<String, f64> {
    let started = Instant::now();
    let mut runtimes = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let store: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.join(format!("state-{i}"))).expect("store opens"));
        let runtime = Runtime::new(log.clone(), store.clone(), RuntimeConfig::default());
        for name in *group {
            runtime.spawn(processor(name, topic, &store)).expect("processor starts");
        }
        runtimes.push(runtime);
    }
    let mut done: HashMap<String, f64> = HashMap::new();
    let total: usize = groups.iter().map(|g| g.len()).sum();
    while done.len() < total {
        for runtime in &runtimes {
            for status in runtime.status() {
                if !done.contains_key(&status.name) && status.records_processed >= n_events {
                    done.insert(status.name.clone(), n_events as f64 / started.elapsed().as_secs_f64());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for runtime in runtimes {
        runtime.shutdown();
    }
    done
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n_events = args.first().copied().unwrap_or(1_000_000);
    let users = args.get(1).copied().unwrap_or(100_000);
    let runs = args.get(2).copied().unwrap_or(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio");
    let log = tokio.block_on(async { EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()) }).expect("log opens");
    let topic = TopicName::new("events").unwrap();
    log.ensure_topic(&topic, 4).unwrap();
    eprintln!("appending {n_events} events of {users} users…");
    for chunk in (0..n_events).collect::<Vec<_>>().chunks(50_000) {
        let records = chunk.iter().map(|n| {
            let e = event(*n, users);
            AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: e.received.0 }
        });
        tokio.block_on(log.append(&topic, records.collect())).expect("append");
    }
    println!("state isolation: {n_events} events, {users} users, fjall, {runs} runs (records/s per processor; ratio against alone)");
    for run_no in 1..=runs {
        let mut alone = HashMap::new();
        for name in NAMES {
            let run_dir = dir.path().join(format!("r{run_no}-alone-{name}"));
            alone.extend(run(&log, &topic, &run_dir, &[&[name]], n_events));
        }
        let shared = run(&log, &topic, &dir.path().join(format!("r{run_no}-shared")), &[&NAMES], n_events);
        let separate = run(&log, &topic, &dir.path().join(format!("r{run_no}-separate")), &[&[NAMES[0]], &[NAMES[1]], &[NAMES[2]]], n_events);
        println!("run {run_no}:");
        println!("  {:<10} {:>12} {:>20} {:>20} {:>16}", "processor", "alone", "shared (×alone)", "separate (×alone)", "shared/separate");
        for name in NAMES {
            let (a, s, p) = (alone[name], shared[name], separate[name]);
            println!("  {:<10} {:>12.0} {:>12.0} ({:>4.2}) {:>12.0} ({:>4.2}) {:>16.2}", name, a, s, s / a, p, p / a, s / p);
        }
    }
}
