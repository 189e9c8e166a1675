//! Crash safety of the counters: a child process (this test binary, re-executed) counts a
//! log and is SIGKILLed in the middle of a round — some partitions' counts already in the
//! round's batch, nothing committed. After a restart every event is counted exactly once.

use crate::{event_record, runtime_over};
use meridian_counters::{CountersProcessor, CountersService, PROCESSOR_NAME};
use meridian_event::AppId;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{Log, TopicName};
use meridian_runtime::testing::{sigkill_mid_round, Killed, StopAt, StopsMidRound};
use meridian_state::{FjallStore, KvStore};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "MERIDIAN_COUNTERS_CRASH_CHILD_DIR";
const TEST: &str = "crash::counters_survive_a_sigkill_in_the_middle_of_a_round_without_double_counting";
const EVENTS: usize = 2000;
/// The `process` call in which the child stops: the 2nd partition of a round well into the
/// log (3 partitions, 64 records each per round).
const CRASH_CALL: usize = 14;

fn topic() -> TopicName {
    TopicName::new("events").unwrap()
}

fn open(dir: &Path) -> (Arc<EmbeddedLog>, Arc<dyn KvStore>) {
    let log = EmbeddedLog::open(dir.join("log"), EmbeddedLogConfig::default()).unwrap();
    let store: Arc<dyn KvStore> = Arc::new(FjallStore::open(dir.join("state")).unwrap());
    (log, store)
}

fn child_main(dir: &Path) {
    let (log, store) = open(dir);
    let rt = runtime_over(log, store);
    rt.spawn(Box::new(StopsMidRound::new(Box::new(CountersProcessor::new(topic())), StopAt::ProcessCall(CRASH_CALL)))).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the crash point was never reached");
}

#[test]
fn counters_survive_a_sigkill_in_the_middle_of_a_round_without_double_counting() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child_main(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _store) = open(dir.path());
        log.ensure_topic(&topic(), 3).unwrap();
        let records = (0..EVENTS).map(|n| event_record("shop", n)).collect();
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(log.append(&topic(), records)).unwrap();
        log.close().unwrap();
    }
    let Killed { committed, in_round } = sigkill_mid_round(TEST, CHILD_DIR, dir.path());
    assert!(committed > 0 && in_round > 0 && committed + in_round < EVENTS, "killed mid-stream: committed {committed}, in round {in_round}");

    let (log, store) = open(dir.path());
    let app = AppId::new("shop").unwrap();
    let before = CountersService::new(store.clone()).app_counters(&app).unwrap();
    assert_eq!(before.total as usize, committed, "only committed rounds counted; the killed round left nothing");
    let rt = runtime_over(log, store.clone());
    rt.spawn(Box::new(CountersProcessor::new(topic()))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rt.wait_caught_up(Duration::from_millis(100)) {
        assert!(Instant::now() < deadline, "the restarted processor did not catch up");
    }
    let status = &rt.status()[0];
    assert_eq!(status.name, PROCESSOR_NAME);
    assert_eq!(status.records_processed as usize, EVENTS - committed, "the killed round was redone from the committed positions");
    let counts = CountersService::new(store).app_counters(&app).unwrap();
    assert_eq!(counts.total as usize, EVENTS, "each event counted once across the crash");
    assert_eq!(counts.by_action["order"] as usize, (0..EVENTS).filter(|n| n.is_multiple_of(3)).count());
    assert_eq!(counts.by_day.values().sum::<u64>() as usize, EVENTS);
    rt.shutdown();
}
