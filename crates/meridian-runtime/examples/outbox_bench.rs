//! Measures what the outbox costs: one processor over N pre-appended events on an embedded
//! log + FjallStore, run twice in the same process — counting only (baseline), then
//! counting and emitting one JSON record per event to another topic — and prints events/s,
//! the ratio, and p50/p99 of the round duration (time between successive ends of rounds,
//! so it includes each round's commit and outbox append).
//!
//! Usage: `cargo run --release -p meridian-runtime --example outbox_bench [events] [partitions] [dir]`
//! (defaults: 1,000,000 events, 4 partitions, a temporary directory).

use bytes::Bytes;
use hdrhistogram::Histogram;
use meridian_event::{Action, AppId, Context, Event, EventId, Target, TargetType, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{Emit, ProcessContext, Processor, Runtime, RuntimeConfig};
use meridian_state::{FjallStore, WriteBatch};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACTIONS: [&str; 4] = ["view", "click", "cart", "order"];
const COUNTS_TABLE: &str = "bench_counts";

/// Counts events per action (state written once per round by the end-of-round hook) and,
/// when `target` is set, emits one record per event.
struct BenchProcessor {
    name: String,
    source: TopicName,
    target: Option<TopicName>,
    round_counts: HashMap<String, u64>,
    last_round_end: Option<Instant>,
    rounds: Arc<Mutex<Histogram<u64>>>,
}

impl Processor for BenchProcessor {
    fn name(&self) -> &str {
        &self.name
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.source.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for record in records {
            let Ok(event) = Event::decode(&record.value) else { continue };
            *self.round_counts.entry(event.action.as_str().to_owned()).or_default() += 1;
            if let Some(target) = &self.target {
                let id = format!("{}/{topic}/{}/{}", self.name, record.partition, record.offset);
                let value = format!(r#"{{"id":"{id}","event":"{}","action":"{}","user":"{}"}}"#, event.id.as_str(), event.action.as_str(), event.partition_key());
                ctx.emit(Emit { topic: target.clone(), key: record.key.clone(), value: Bytes::from(value), id })?;
            }
        }
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        for (action, n) in self.round_counts.drain() {
            let key = format!("{}/{action}", self.name).into_bytes();
            let current = ctx.store().get(COUNTS_TABLE, &key)?.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            ctx.batch().put(COUNTS_TABLE, key, (current + n).to_be_bytes().to_vec());
        }
        let now = Instant::now();
        if let Some(last) = self.last_round_end.replace(now) {
            let _ = self.rounds.lock().unwrap_or_else(|e| e.into_inner()).record((now - last).as_micros() as u64);
        }
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.round_counts.clear();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(COUNTS_TABLE, format!("{}/", self.name).into_bytes());
    }
}

fn event(n: u64) -> Event {
    Event {
        id: EventId::new(format!("ev-{n}")).expect("valid id"),
        app: AppId::new("shop").expect("valid app"),
        user: Some(UserId::new(format!("u{}", n.wrapping_mul(2_654_435_761) % 200_000)).expect("valid user")),
        device: None,
        time: Timestamp(1_763_700_000_000 + n as i64),
        received: Timestamp(1_763_700_000_000 + n as i64),
        action: Action::new(ACTIONS[(n % 4) as usize]).expect("valid action"),
        target: Some(Target { kind: TargetType::new("sku").expect("valid type"), id: format!("{}", n % 50_000) }),
        context: Context { platform: Some("ios".into()), version: Some("10.2.1".into()), page: Some("detail".into()), ..Context::default() },
        props: Default::default(),
    }
}

struct RunResult {
    events_per_second: f64,
    rounds: Histogram<u64>,
}

fn run(log: &Arc<EmbeddedLog>, store: &Arc<FjallStore>, name: &str, source: &TopicName, target: Option<&TopicName>, n_events: u64) -> RunResult {
    let rounds = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("valid histogram")));
    let processor = BenchProcessor {
        name: name.into(),
        source: source.clone(),
        target: target.cloned(),
        round_counts: HashMap::new(),
        last_round_end: None,
        rounds: rounds.clone(),
    };
    let runtime = Runtime::new(log.clone(), store.clone(), RuntimeConfig::default());
    let started = Instant::now();
    runtime.spawn(Box::new(processor)).expect("processor starts");
    loop {
        let status = runtime.status();
        let done = status.iter().all(|s| !s.partitions.is_empty() && s.lag == 0 && s.outbox_pending == 0);
        if done {
            break;
        }
        if let Some(error) = status.iter().find_map(|s| s.last_error.clone()) {
            panic!("processor failed: {error}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    runtime.shutdown();
    let processed: u64 = runtime.status().iter().map(|s| s.records_processed).sum();
    assert_eq!(processed, n_events, "every event processed once");
    if let Some(target) = target {
        let emitted: u64 = (0..log.partition_count(target).expect("target exists")).map(|p| log.offsets(target, p).expect("offsets").end).sum();
        assert_eq!(emitted, n_events, "one emitted record per event in the target topic");
    }
    let rounds = rounds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    RunResult { events_per_second: n_events as f64 / elapsed.as_secs_f64(), rounds }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n_events: u64 = args.get(1).map(|s| s.replace('_', "").parse()).transpose()?.unwrap_or(1_000_000);
    let partitions: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let tmp = tempfile::tempdir()?;
    let dir = args.get(3).map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let log = EmbeddedLog::open(dir.join("log"), EmbeddedLogConfig::default())?;
    let store = Arc::new(FjallStore::open(dir.join("state"))?);
    let source = TopicName::new("events")?;
    let target = TopicName::new("derived")?;
    log.ensure_topic(&source, partitions)?;
    log.ensure_topic(&target, partitions)?;

    let started = Instant::now();
    let mut value_bytes = 0usize;
    for chunk_start in (0..n_events).step_by(10_000) {
        let records: Vec<AppendRecord> = (chunk_start..(chunk_start + 10_000).min(n_events))
            .map(|n| {
                let e = event(n);
                let value = e.encode();
                value_bytes += value.len();
                AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(value), timestamp: e.received.millis() }
            })
            .collect();
        futures::executor::block_on(log.append(&source, records))?;
    }
    println!(
        "outbox bench: {n_events} events ({:.0} bytes each) on {partitions} partitions appended in {:.2} s; fjall state, fsync on",
        value_bytes as f64 / n_events.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    // Read the topic once so both runs find it in the page cache.
    for p in 0..partitions {
        let mut from = 0;
        loop {
            let chunk = log.read(&source, p, from, 65_536, 64 << 20)?;
            let Some(last) = chunk.last() else { break };
            from = last.offset + 1;
        }
    }

    let baseline = run(&log, &store, "counting", &source, None, n_events);
    let emitting = run(&log, &store, "emitting", &source, Some(&target), n_events);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (label, r) in [("baseline (no emits)", &baseline), ("emitting 1 per event", &emitting)] {
        println!(
            "{label:<22} {:>10.0} events/s   rounds {:>4}   round p50 {:>7.1} ms   p99 {:>7.1} ms",
            r.events_per_second,
            r.rounds.len() + 1,
            ms(&r.rounds, 0.5),
            ms(&r.rounds, 0.99)
        );
    }
    println!("ratio emitting / baseline: {:.3}", emitting.events_per_second / baseline.events_per_second);
    log.close()?;
    Ok(())
}
