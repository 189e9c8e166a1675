//! Runtime tests on the real embedded log and redb store: exactly-once effect across a
//! failing processor and a restart, timers that fire once, rebuild from the start; the
//! outbox, the end-of-round hook and erasure receipts (on fjall) in their own modules.

mod end_of_round;
mod erasure;
mod outbox;
mod support;

use bytes::Bytes;
use meridian_event::{Action, AppId, Event, EventId, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Runtime, RuntimeConfig, RuntimeError, Timer};
use meridian_state::{KvStore, RedbStore, WriteBatch};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn event(app: &str, n: usize) -> Event {
    Event {
        id: EventId::new(format!("e{n}")).unwrap(),
        app: AppId::new(app).unwrap(),
        user: Some(UserId::new(format!("u{}", n % 13)).unwrap()),
        device: None,
        time: Timestamp::now(),
        received: Timestamp::now(),
        action: Action::new(if n.is_multiple_of(3) { "order" } else { "view" }).unwrap(),
        target: None,
        context: Default::default(),
        props: Default::default(),
    }
}

async fn append_events(log: &Arc<EmbeddedLog>, topic: &TopicName, from: usize, to: usize) {
    let records = (from..to)
        .map(|n| {
            let e = event("shop", n);
            AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: e.received.millis() }
        })
        .collect();
    log.append(topic, records).await.unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    store: Arc<RedbStore>,
    topic: TopicName,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()).unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("state.redb")).unwrap());
    let topic = TopicName::new("events").unwrap();
    log.ensure_topic(&topic, 3).unwrap();
    Fixture { _dir: dir, log, store, topic }
}

fn runtime(f: &Fixture) -> Runtime {
    Runtime::new(f.log.clone(), f.store.clone(), RuntimeConfig { max_batch_records: 64, idle_wait: Duration::from_millis(20), ..RuntimeConfig::default() })
}

/// Counts the records it processes, per app, in table `counting` (key = app id).
struct Counting {
    topic: TopicName,
}

impl Processor for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        // The runtime may hand several partitions' records into one batch: start from this
        // round's pending value, else the committed one.
        let pending = ctx.batch().ops().iter().rev().find_map(|op| match op {
            meridian_state::WriteOp::Put { table: "counting", value, .. } => Some(u64::from_be_bytes(value.clone().try_into().unwrap())),
            _ => None,
        });
        let base = match pending {
            Some(n) => n,
            None => ctx.store().get("counting", b"shop")?.map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0),
        };
        ctx.batch().put("counting", b"shop".to_vec(), (base + records.len() as u64).to_be_bytes().to_vec());
        Ok(())
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix("counting", Vec::new());
    }
}

fn counted(store: &dyn KvStore) -> u64 {
    store.get("counting", b"shop").unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0)
}

/// Counts records in its state, but fails one call in seven *after* writing to it — as a
/// crash between processing and commit would. The failed batch must not count.
struct Flaky {
    topic: TopicName,
    calls: Arc<AtomicUsize>,
}

impl Processor for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        let current = ctx.store().get("flaky", b"n")?.map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0);
        // The runtime hands one batch per partition; keep a per-round running total.
        let pending = ctx.batch().ops().iter().rev().find_map(|op| match op {
            meridian_state::WriteOp::Put { table: "flaky", value, .. } => Some(u64::from_be_bytes(value.clone().try_into().unwrap())),
            _ => None,
        });
        let base = pending.unwrap_or(current);
        ctx.batch().put("flaky", b"n".to_vec(), (base + records.len() as u64).to_be_bytes().to_vec());
        if self.calls.fetch_add(1, Ordering::SeqCst) % 7 == 3 {
            return Err(RuntimeError::Processor { processor: "flaky".into(), message: "injected failure".into() });
        }
        Ok(())
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete("flaky", b"n".to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_from_the_committed_position() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 1000).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let rt = runtime(&f);
    rt.spawn(Box::new(Flaky { topic: f.topic.clone(), calls: calls.clone() })).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(30)));
    rt.shutdown();
    let n = u64::from_be_bytes(f.store.get("flaky", b"n").unwrap().unwrap().try_into().unwrap());
    assert_eq!(n, 1000, "failed rounds left no trace");
    assert!(calls.load(Ordering::SeqCst) > 3, "failures were injected");
}

struct Ticker {
    topic: TopicName,
    fired: Arc<AtomicUsize>,
    scheduled: bool,
}

impl Processor for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, _records: &[Record]) -> meridian_runtime::Result<()> {
        if !self.scheduled {
            ctx.schedule_timer(Timestamp::now().millis() + 100, b"window-1");
            self.scheduled = true;
        }
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> meridian_runtime::Result<()> {
        assert_eq!(timer.key, b"window-1");
        self.fired.fetch_add(1, Ordering::SeqCst);
        ctx.batch().put("ticker", b"fired".to_vec(), b"1".to_vec());
        Ok(())
    }
    fn clear_state(&mut self, _batch: &mut WriteBatch) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_once_after_their_time() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 10).await;
    let fired = Arc::new(AtomicUsize::new(0));
    let rt = runtime(&f);
    rt.spawn(Box::new(Ticker { topic: f.topic.clone(), fired: fired.clone(), scheduled: false })).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(fired.load(Ordering::SeqCst), 0, "not before its time");
    tokio::time::sleep(Duration::from_millis(600)).await;
    rt.shutdown();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(f.store.get("ticker", b"fired").unwrap().as_deref(), Some(&b"1"[..]));
    // A restarted runtime does not fire it again: its removal was committed.
    let fired_again = Arc::new(AtomicUsize::new(0));
    let rt = runtime(&f);
    rt.spawn(Box::new(Ticker { topic: f.topic.clone(), fired: fired_again.clone(), scheduled: true })).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.shutdown();
    assert_eq!(fired_again.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_replays_from_the_start_and_duplicate_names_are_refused() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 300).await;
    let rt = runtime(&f);
    rt.spawn(Box::new(Counting { topic: f.topic.clone() })).unwrap();
    let err = rt.spawn(Box::new(Counting { topic: f.topic.clone() })).unwrap_err();
    assert!(matches!(err, RuntimeError::DuplicateProcessor(_)), "{err}");
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*f.store), 300);
    rt.rebuild("counting").unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*f.store), 300, "state cleared and every record counted once again");
    assert!(matches!(rt.rebuild("nope"), Err(RuntimeError::UnknownProcessor(_))));
}

/// Processes freely while its gate is open; blocks in `process` while it is closed.
struct Gated {
    topic: TopicName,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Processor for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn process(&mut self, _ctx: &mut ProcessContext<'_>, _topic: &TopicName, _records: &[Record]) -> meridian_runtime::Result<()> {
        let (lock, cvar) = &*self.open;
        let _open = cvar.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
        Ok(())
    }
    fn clear_state(&mut self, _batch: &mut WriteBatch) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_lag_of_appends_the_processor_has_not_processed() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 50).await;
    let open = Arc::new((std::sync::Mutex::new(true), std::sync::Condvar::new()));
    let rt = runtime(&f);
    rt.spawn(Box::new(Gated { topic: f.topic.clone(), open: open.clone() })).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    *open.0.lock().unwrap() = false;
    append_events(&f.log, &f.topic, 50, 60).await;
    assert_eq!(rt.status()[0].lag, 10, "the 10 new records show as lag while the processor is held");
    assert!(!rt.wait_caught_up(Duration::from_millis(200)));
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(rt.status()[0].lag, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_replays_from_a_position_without_clearing_state() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 90).await;
    let rt = runtime(&f);
    rt.spawn(Box::new(Counting { topic: f.topic.clone() })).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*f.store), 90);
    let before: Vec<u64> = rt.status()[0].partitions.iter().map(|p| p.position).collect();
    // Replay the last 5 records of partition 0 and 2 of partition 1: a counter counts them again.
    rt.seek("counting", &f.topic, vec![(0, before[0] - 5), (1, before[1] - 2)]).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*f.store), 97, "state was kept and the 7 records were processed again");
    let err = rt.seek("counting", &f.topic, vec![(9, 0)]).unwrap_err();
    assert!(err.to_string().contains("no partition 9"), "{err}");
    let other = TopicName::new("other").unwrap();
    f.log.ensure_topic(&other, 1).unwrap();
    assert!(rt.seek("counting", &other, vec![(0, 0)]).unwrap_err().to_string().contains("does not consume"));
    assert!(matches!(rt.seek("nope", &f.topic, vec![]), Err(RuntimeError::UnknownProcessor(_))));
}

/// `Counting` under another name.
struct Named {
    name: &'static str,
    inner: Counting,
}

impl Processor for Named {
    fn name(&self) -> &str {
        self.name
    }
    fn topics(&self) -> Vec<TopicName> {
        self.inner.topics()
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        self.inner.process(ctx, topic, records)?;
        if let Some(first) = records.first() {
            ctx.erasure_receipt("er-1", serde_json::json!({"by": self.name, "first_offset": first.offset}))?;
        }
        Ok(())
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        self.inner.clear_state(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_in_a_store_of_its_own_keeps_state_positions_and_receipts_there() {
    let f = fixture();
    append_events(&f.log, &f.topic, 0, 120).await;
    let own_dir = tempfile::tempdir().unwrap();
    let own: Arc<dyn KvStore> = Arc::new(meridian_state::FjallStore::open(own_dir.path().join("own")).unwrap());
    let rt = runtime(&f);
    rt.spawn(Box::new(Named { name: "shared", inner: Counting { topic: f.topic.clone() } })).unwrap();
    rt.spawn_in(Box::new(Named { name: "apart", inner: Counting { topic: f.topic.clone() } }), own.clone()).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*f.store), 120, "the shared one counted into the runtime's store");
    assert_eq!(counted(&*own), 120, "the other one into its own store");
    let receipts = rt.erasure_receipts("er-1").unwrap();
    assert_eq!(receipts.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), vec!["apart", "shared"], "receipts from both stores");
    // Its positions are in its own store: a restart resumes it from there.
    rt.shutdown();
    append_events(&f.log, &f.topic, 120, 150).await;
    let rt = runtime(&f);
    rt.spawn_in(Box::new(Named { name: "apart", inner: Counting { topic: f.topic.clone() } }), own.clone()).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*own), 150, "resumed from its own committed positions, nothing counted twice");
    assert_eq!(counted(&*f.store), 120, "the shared store was not touched");
    rt.rebuild("apart").unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    assert_eq!(counted(&*own), 150, "a rebuild clears and replays in its own store");
}

/// Notes the start of every round that processes records; waits `interval` between rounds.
struct Lingering {
    topic: TopicName,
    interval: Duration,
    rounds: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl Processor for Lingering {
    fn name(&self) -> &str {
        "lingering"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }
    fn min_round_interval(&self) -> Duration {
        self.interval
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        let base = ctx.batch().ops().iter().rev().find_map(|op| match op {
            meridian_state::WriteOp::Put { table: "lingering", value, .. } => Some(u64::from_be_bytes(value.clone().try_into().unwrap())),
            _ => None,
        });
        let base = match base {
            Some(n) => n,
            None => {
                self.rounds.lock().unwrap().push(std::time::Instant::now());
                ctx.store().get("lingering", b"n")?.map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0)
            }
        };
        ctx.batch().put("lingering", b"n".to_vec(), (base + records.len() as u64).to_be_bytes().to_vec());
        Ok(())
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete("lingering", b"n".to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_with_a_minimum_round_interval_takes_small_appends_together_and_loses_none() {
    let f = fixture();
    let rt = Runtime::new(f.log.clone(), f.store.clone(), RuntimeConfig { idle_wait: Duration::from_millis(20), ..RuntimeConfig::default() });
    let rounds = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.spawn(Box::new(Lingering { topic: f.topic.clone(), interval: Duration::from_millis(300), rounds: rounds.clone() })).unwrap();
    // 40 appends of 5 records, one every 20 ms: 800 ms of small appends.
    for i in 0..40 {
        append_events(&f.log, &f.topic, i * 5, i * 5 + 5).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    let n = f.store.get("lingering", b"n").unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap();
    assert_eq!(n, 200, "every record processed once");
    let rounds = rounds.lock().unwrap().clone();
    assert!(rounds.len() <= 6, "rounds at most every 300 ms over ~800 ms, not one per append: {}", rounds.len());
    assert!(rounds.windows(2).all(|w| w[1] - w[0] >= Duration::from_millis(290)), "{:?}", rounds.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>());
}
