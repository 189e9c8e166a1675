//! Crash safety of the counters: a child process (this test binary, re-executed) counts a
//! log and is SIGKILLed in the middle of a round — some partitions' counts already in the
//! round's batch, nothing committed. After a restart every event is counted exactly once.

use crate::{event_record, runtime_over};
use meridian_counters::{CountersProcessor, CountersService, PROCESSOR_NAME};
use meridian_event::AppId;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{Log, Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Timer};
use meridian_state::{FjallStore, KvStore, WriteBatch};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "MERIDIAN_COUNTERS_CRASH_CHILD_DIR";
const MID_ROUND: &str = "MID-ROUND";
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

/// The counters processor, stopping for good in its `CRASH_CALL`-th `process` call, after
/// counting that call's records into the round's batch.
struct StopsMidRound {
    inner: CountersProcessor,
    calls: usize,
    committed_records: usize,
    round_records: usize,
}

impl Processor for StopsMidRound {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn topics(&self) -> Vec<TopicName> {
        self.inner.topics()
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        self.inner.process(ctx, topic, records)?;
        self.calls += 1;
        self.round_records += records.len();
        if self.calls == CRASH_CALL {
            assert!(self.round_records > records.len(), "an earlier partition of this round is in the batch too");
            println!("{MID_ROUND} committed={} in_round={}", self.committed_records, self.round_records);
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
            panic!("the child was not killed");
        }
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        // Every earlier round commits before the next one starts.
        self.committed_records += std::mem::take(&mut self.round_records);
        self.inner.end_of_round(ctx)
    }

    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> meridian_runtime::Result<()> {
        self.inner.on_timer(ctx, timer)
    }

    fn reset_cache(&mut self) {
        self.inner.reset_cache();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        self.inner.clear_state(batch);
    }
}

fn child_main(dir: &Path) {
    let (log, store) = open(dir);
    let rt = runtime_over(log, store);
    rt.spawn(Box::new(StopsMidRound { inner: CountersProcessor::new(topic()), calls: 0, committed_records: 0, round_records: 0 })).unwrap();
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
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(at) = line.find(MID_ROUND) {
                let _ = tx.send(line[at..].to_owned());
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("the child reached the middle of a round");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9), "killed by SIGKILL");
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)?.parse::<usize>().ok()).unwrap();
    let (committed, in_round) = (field("committed="), field("in_round="));
    assert!(committed > 0 && in_round > 0 && committed + in_round < EVENTS, "killed mid-stream: {line}");

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
