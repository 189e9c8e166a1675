//! Counters tests on the real embedded log and fjall store: counts equal the events of the
//! log across a clean restart, a SIGKILL in the middle of a round (`crash`) and a rebuild.

mod crash;

use bytes::Bytes;
use meridian_counters::{CountersProcessor, CountersService, PROCESSOR_NAME};
use meridian_event::{Action, AppId, Event, EventId, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{FjallStore, KvStore};
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

/// The log record of `event(app, n)`.
fn event_record(app: &str, n: usize) -> AppendRecord {
    let e = event(app, n);
    AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: e.received.millis() }
}

/// A runtime over `log` and `store` with small rounds (64 records per partition).
fn runtime_over(log: Arc<EmbeddedLog>, store: Arc<dyn KvStore>) -> Runtime {
    let config = RuntimeConfig { max_batch_records: 64, idle_wait: Duration::from_millis(20), ..RuntimeConfig::default() };
    Runtime::new(log, store, config)
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    store: Arc<dyn KvStore>,
    topic: TopicName,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()).unwrap();
    let store: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.path().join("state")).unwrap());
    let topic = TopicName::new("events").unwrap();
    log.ensure_topic(&topic, 3).unwrap();
    Fixture { _dir: dir, log, store, topic }
}

impl Fixture {
    async fn append(&self, app: &str, from: usize, to: usize) {
        let records = (from..to).map(|n| event_record(app, n)).collect();
        self.log.append(&self.topic, records).await.unwrap();
    }

    fn runtime(&self) -> Runtime {
        let runtime = runtime_over(self.log.clone(), self.store.clone());
        runtime.spawn(Box::new(CountersProcessor::new(self.topic.clone()))).unwrap();
        runtime
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_clean_restart_without_double_counting() {
    let f = fixture();
    f.append("shop", 0, 500).await;
    {
        let rt = f.runtime();
        assert!(rt.wait_caught_up(Duration::from_secs(10)));
        rt.shutdown();
    }
    f.append("shop", 500, 800).await;
    let rt = f.runtime();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    let counts = CountersService::new(f.store.clone()).app_counters(&AppId::new("shop").unwrap()).unwrap();
    assert_eq!(counts.total, 800, "each event counted once across the restart");
    assert_eq!(counts.by_action["order"], (0..800usize).filter(|n| n.is_multiple_of(3)).count() as u64);
    assert_eq!(counts.by_day.values().sum::<u64>(), 800);
    let status = rt.status();
    assert_eq!(status[0].name, PROCESSOR_NAME);
    assert_eq!(status[0].partitions.iter().map(|p| p.position).sum::<u64>(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_counted_apart_and_a_rebuild_counts_everything_once() {
    let f = fixture();
    f.append("shop", 0, 300).await;
    f.append("blog", 300, 320).await;
    let rt = f.runtime();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    rt.rebuild(PROCESSOR_NAME).unwrap();
    assert!(rt.wait_caught_up(Duration::from_secs(10)));
    let service = CountersService::new(f.store.clone());
    assert_eq!(service.app_counters(&AppId::new("shop").unwrap()).unwrap().total, 300);
    assert_eq!(service.app_counters(&AppId::new("blog").unwrap()).unwrap().total, 20);
    assert_eq!(service.app_counters(&AppId::new("none").unwrap()).unwrap().total, 0);
}
