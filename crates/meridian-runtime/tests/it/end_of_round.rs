//! The end-of-round hook: once per round, after every partition's `process`, before the
//! commit (its writes and emits join the round), never for rounds without records.

use crate::support::{append_input, caught_up, env, eventually, input_topic, output_topic, read_topic};
use bytes::Bytes;
use meridian_event::{Action, AppId, Event, EventId, Timestamp};
use meridian_log::{Record, TopicName};
use meridian_runtime::{Emit, ProcessContext, Processor, Runtime, RuntimeConfig, RuntimeError, Timer};
use meridian_state::{KvStore, WriteBatch};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOOK_TABLE: &str = "test_hook";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Process { partition: u32, records: usize },
    EndOfRound { ok: bool },
    Timer,
}

/// Journals its calls. `process` only remembers how many records the round had; the hook
/// writes the round count and the record total once per round, emits a binary summary
/// event, and fails on its first call (after writing and emitting). The first record
/// schedules a timer, which fires in a round of its own.
struct Hooked {
    journal: Arc<Mutex<Vec<Call>>>,
    round_records: u64,
    hook_calls: usize,
    timer_scheduled: bool,
}

fn read_u64(store: &dyn KvStore, key: &[u8]) -> u64 {
    store.get(HOOK_TABLE, key).unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0)
}

impl Processor for Hooked {
    fn name(&self) -> &str {
        "hooked"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![input_topic()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        self.journal.lock().unwrap().push(Call::Process { partition: records[0].partition, records: records.len() });
        self.round_records += records.len() as u64;
        if !self.timer_scheduled {
            ctx.schedule_timer(Timestamp::now().millis() + 150, b"t");
            self.timer_scheduled = true;
        }
        Ok(())
    }
    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        self.hook_calls += 1;
        let rounds = read_u64(ctx.store(), b"rounds") + 1;
        let records = read_u64(ctx.store(), b"records") + self.round_records;
        ctx.batch().put(HOOK_TABLE, b"rounds".to_vec(), rounds.to_be_bytes().to_vec());
        ctx.batch().put(HOOK_TABLE, b"records".to_vec(), records.to_be_bytes().to_vec());
        let summary = Event {
            id: EventId::new(format!("hook/round-{rounds}")).unwrap(),
            app: AppId::new("shop").unwrap(),
            user: None,
            device: None,
            time: Timestamp::now(),
            received: Timestamp::now(),
            action: Action::new("round").unwrap(),
            target: None,
            context: Default::default(),
            props: serde_json::json!({"records": self.round_records}).as_object().unwrap().clone(),
        };
        let id = summary.id.as_str().to_owned();
        ctx.emit(Emit { topic: output_topic(), key: Bytes::from_static(b"hook"), value: Bytes::from(summary.encode()), id })?;
        let ok = self.hook_calls > 1;
        self.journal.lock().unwrap().push(Call::EndOfRound { ok });
        if !ok {
            return Err(RuntimeError::Processor { processor: "hooked".into(), message: "injected hook failure".into() });
        }
        self.round_records = 0;
        Ok(())
    }
    fn on_timer(&mut self, _ctx: &mut ProcessContext<'_>, _timer: &Timer) -> meridian_runtime::Result<()> {
        self.journal.lock().unwrap().push(Call::Timer);
        Ok(())
    }
    fn reset_cache(&mut self) {
        self.round_records = 0;
        // The failed round's timer was not committed either.
        self.timer_scheduled = false;
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(HOOK_TABLE, Vec::new());
    }
}

/// The calls of each round that ended with the hook: (partitions processed, records, hook ok).
fn rounds(journal: &[Call]) -> Vec<(BTreeSet<u32>, usize, bool)> {
    let mut out = Vec::new();
    let mut partitions = BTreeSet::new();
    let mut records = 0;
    for call in journal {
        match call {
            Call::Process { partition, records: n } => {
                assert!(partitions.insert(*partition), "partition {partition} processed twice in one round: {journal:?}");
                records += n;
            }
            Call::EndOfRound { ok } => {
                assert!(!partitions.is_empty(), "the hook ran in a round without records: {journal:?}");
                out.push((std::mem::take(&mut partitions), std::mem::take(&mut records), *ok));
            }
            Call::Timer => assert!(partitions.is_empty(), "a timer fired between process calls and the hook: {journal:?}"),
        }
    }
    assert!(partitions.is_empty(), "process calls without a hook after them: {journal:?}");
    out
}

#[test]
fn end_of_round_runs_once_per_round_after_every_partition_and_commits_with_it() {
    let e = env();
    // 30 records on the 3 partitions, fewer than a round takes from one: one round.
    append_input(&e.log, 0, 30);
    let partitions_with_input: BTreeSet<u32> = read_topic(&*e.log, &input_topic()).iter().map(|r| r.partition).collect();
    let journal = Arc::new(Mutex::new(Vec::new()));
    let config = RuntimeConfig { max_batch_records: 64, idle_wait: Duration::from_millis(10), ..RuntimeConfig::default() };
    let rt = Runtime::new(e.log.clone(), e.store.clone(), config);
    rt.spawn(Box::new(Hooked { journal: journal.clone(), round_records: 0, hook_calls: 0, timer_scheduled: false })).unwrap();
    assert!(eventually(Duration::from_secs(10), || caught_up(&rt)));
    // Idle rounds (every 10 ms) and the timer's round of its own do not call the hook.
    assert!(eventually(Duration::from_secs(5), || journal.lock().unwrap().contains(&Call::Timer)));
    std::thread::sleep(Duration::from_millis(200));
    let seen = rounds(&journal.lock().unwrap());
    assert_eq!(
        seen,
        vec![(partitions_with_input.clone(), 30, false), (partitions_with_input, 30, true)],
        "the failed hook failed its round, whose records were handed over again"
    );
    assert_eq!(journal.lock().unwrap().last(), Some(&Call::Timer), "no hook after the timer-only round");
    assert_eq!(read_u64(&*e.store, b"rounds"), 1, "the failed round's hook writes were not committed");
    assert_eq!(read_u64(&*e.store, b"records"), 30);

    append_input(&e.log, 30, 35);
    assert!(eventually(Duration::from_secs(10), || caught_up(&rt) && read_u64(&*e.store, b"rounds") == 2));
    std::thread::sleep(Duration::from_millis(100));
    rt.shutdown();
    let seen = rounds(&journal.lock().unwrap());
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].1, 5);
    assert_eq!(read_u64(&*e.store, b"records"), 35);
    // The hook's emits: one per committed round, none from the failed one.
    let mut ids: Vec<String> =
        read_topic(&*e.log, &output_topic()).iter().map(|r| meridian_event::payload_id(&r.value).unwrap().into_owned()).collect();
    ids.sort();
    assert_eq!(ids, vec!["hook/round-1", "hook/round-2"]);
}
