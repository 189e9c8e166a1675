//! Crash safety of the history processor: a child process (this test binary, re-executed)
//! runs the processor over a log and is SIGKILLed in the middle of a round — after the
//! round's views went into its batch and its hot-tier write, before the commit. After a
//! restart the processor redoes exactly the uncommitted records, and the cold tier ends
//! byte for byte as a run that never crashed leaves it.

use bytes::Bytes;
use meridian_event::{Action, AppId, Event, EventId, Target, TargetType, Timestamp, UserId};
use meridian_history::hot::embedded::EmbeddedHotTier;
use meridian_history::hot::HotConfig;
use meridian_history::{HistoryConfig, HistoryService, InMemoryCatalog, Owner, SkuInfo, SystemClock};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_runtime::testing::{sigkill_mid_round, Killed, StopAt, StopsMidRound};
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{KvStore, MemoryStore, RedbStore};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "MERIDIAN_HISTORY_CRASH_CHILD_DIR";
const TEST: &str = "crash::a_sigkill_in_the_middle_of_a_round_loses_nothing_and_applies_nothing_twice";
const USERS: usize = 40;
const VIEWS: usize = 3000;
/// The round in which the child stops, mid-way (rounds of 16 records per partition).
const CRASH_ROUND: usize = 20;

fn topic() -> TopicName {
    TopicName::new("events").unwrap()
}

fn open_log(dir: &Path) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(dir.join("log"), EmbeddedLogConfig::default()).unwrap()
}

fn service(store: Arc<dyn KvStore>) -> HistoryService {
    let config = HistoryConfig { max_items: 50, ..HistoryConfig::default() };
    let hot = Arc::new(EmbeddedHotTier::new(HotConfig { max_items: 50, ttl_ms: config.hot_ttl_ms() }, 64 << 20));
    let catalog = Arc::new(InMemoryCatalog::new((1..=500u64).map(|s| (s, SkuInfo { spu: s, name: format!("sku {s}").into(), image: "/i.jpg".into() }))));
    HistoryService::new(config, hot, store, catalog, Arc::new(SystemClock)).unwrap()
}

fn runtime(log: &Arc<EmbeddedLog>, store: &Arc<dyn KvStore>) -> Runtime {
    Runtime::new(log.clone(), store.clone(), RuntimeConfig { max_batch_records: 16, idle_wait: Duration::from_millis(10), ..RuntimeConfig::default() })
}

/// Views of `VIEWS` events over `USERS` users and 500 SKUs, with repeats, in the last hour.
fn append_views(log: &EmbeddedLog) {
    let now = Timestamp::now().millis();
    let records: Vec<AppendRecord> = (0..VIEWS)
        .map(|n| {
            let user = format!("u{}", n * 7 % USERS);
            let event = Event {
                id: EventId::new(format!("v{n}")).unwrap(),
                app: AppId::new("shop").unwrap(),
                user: Some(UserId::new(user).unwrap()),
                device: None,
                time: Timestamp(now - 3_600_000 + (n as i64 * 7919 % 3_000_000)),
                received: Timestamp(now),
                action: Action::new("view").unwrap(),
                target: Some(Target { kind: TargetType::new("sku").unwrap(), id: (1 + n * 13 % 500).to_string() }),
                context: Default::default(),
                props: Default::default(),
            };
            AppendRecord { key: Bytes::from(event.partition_key().to_owned()), value: Bytes::from(event.encode()), timestamp: now }
        })
        .collect();
    futures::executor::block_on(log.append(&topic(), records)).unwrap();
}

fn child_main(dir: &Path) {
    let log = open_log(dir);
    let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(dir.join("state.redb")).unwrap());
    let service = service(store.clone());
    let rt = runtime(&log, &store);
    rt.spawn(Box::new(StopsMidRound::new(Box::new(service.processor(topic())), StopAt::EndOfRound(CRASH_ROUND)))).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the crash round was never reached");
}

/// Every cold value, by key.
fn cold_table(store: &dyn KvStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.range(meridian_history::cold::COLD_TABLE, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, usize::MAX).unwrap()
}

#[test]
fn a_sigkill_in_the_middle_of_a_round_loses_nothing_and_applies_nothing_twice() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child_main(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_log(dir.path());
        log.ensure_topic(&topic(), 3).unwrap();
        append_views(&log);
        log.close().unwrap();
    }
    let Killed { committed, in_round } = sigkill_mid_round(TEST, CHILD_DIR, dir.path());
    assert!(committed > 0 && in_round > 0 && committed + in_round < VIEWS, "killed mid-stream: committed {committed}, in round {in_round}");

    // Restart on the same data: the processor resumes from the committed positions.
    let log = open_log(dir.path());
    let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(dir.path().join("state.redb")).unwrap());
    let recovered = service(store.clone());
    let rt = runtime(&log, &store);
    rt.spawn(Box::new(recovered.processor(topic()))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rt.wait_caught_up(Duration::from_millis(100)) {
        assert!(Instant::now() < deadline, "the restarted processor did not catch up");
    }
    let status = &rt.status()[0];
    assert_eq!(status.records_processed as usize, VIEWS - committed, "exactly the uncommitted records were processed again");
    rt.shutdown();

    // A run over the same log that never crashed.
    let reference_store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let reference = service(reference_store.clone());
    let reference_rt = runtime(&log, &reference_store);
    reference_rt.spawn(Box::new(reference.processor(topic()))).unwrap();
    assert!(reference_rt.wait_caught_up(Duration::from_secs(30)));
    reference_rt.shutdown();
    let (got, want) = (cold_table(&*store), cold_table(&*reference_store));
    assert_eq!(got.len(), USERS);
    assert!(got == want, "the cold tier after the crash differs from a run without one");
    for u in 0..USERS {
        let owner = Owner::user("shop", format!("u{u}"));
        assert_eq!(recovered.list(&owner, 50, None).unwrap(), reference.list(&owner, 50, None).unwrap());
    }
}
