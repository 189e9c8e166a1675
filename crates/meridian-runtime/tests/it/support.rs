//! Shared pieces of the outbox, end-of-round and erasure tests: an embedded log and a
//! FjallStore in a directory, input events, and an emitting test processor.

use bytes::Bytes;
use meridian_event::{Action, AppId, Event, EventId, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{CrashPoint, Emit, ProcessContext, Processor, Runtime, RuntimeConfig, RuntimeError};
use meridian_state::{FjallStore, KvStore, WriteBatch};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Table of the emitter's state: key = processor name; value = records emitted (u64 BE).
pub(crate) const EMITTER_TABLE: &str = "test_emitter";

pub(crate) fn input_topic() -> TopicName {
    TopicName::new("events").unwrap()
}

pub(crate) fn output_topic() -> TopicName {
    TopicName::new("derived").unwrap()
}

/// A second output topic: an [`Emitter::echoing`] emits to it after each record's first
/// emit, so a round's records alternate between two topics.
pub(crate) fn echo_topic() -> TopicName {
    TopicName::new("echo").unwrap()
}

/// Opens the log and the store of a data directory.
pub(crate) fn open(dir: &Path) -> (Arc<EmbeddedLog>, Arc<FjallStore>) {
    let log = EmbeddedLog::open(dir.join("log"), EmbeddedLogConfig::default()).unwrap();
    let store = Arc::new(FjallStore::open(dir.join("state")).unwrap());
    (log, store)
}

/// A data directory with the input and output topics (3 partitions each), and its log
/// and store open.
pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) log: Arc<EmbeddedLog>,
    pub(crate) store: Arc<FjallStore>,
}

pub(crate) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = open(dir.path());
    log.ensure_topic(&input_topic(), 3).unwrap();
    log.ensure_topic(&output_topic(), 3).unwrap();
    Env { _dir: dir, log, store }
}

pub(crate) fn runtime(log: &Arc<EmbeddedLog>, store: &Arc<FjallStore>, crash_at: Option<CrashPoint>) -> Runtime {
    let config = RuntimeConfig { max_batch_records: 16, idle_wait: Duration::from_millis(10), crash_at, ..RuntimeConfig::default() };
    Runtime::new(log.clone(), store.clone(), config)
}

/// Input event number `n`: id `in{n}`, user `u{n % 13}`, binary encoding.
pub(crate) fn input_record(n: usize) -> AppendRecord {
    let event = Event {
        id: EventId::new(format!("in{n}")).unwrap(),
        app: AppId::new("shop").unwrap(),
        user: Some(UserId::new(format!("u{}", n % 13)).unwrap()),
        device: None,
        time: Timestamp::now(),
        received: Timestamp::now(),
        action: Action::new("view").unwrap(),
        target: None,
        context: Default::default(),
        props: Default::default(),
    };
    AppendRecord { key: Bytes::from(event.partition_key().to_owned()), value: Bytes::from(event.encode()), timestamp: event.received.millis() }
}

/// Appends input events `from..to` in one call and waits until they are durable.
pub(crate) fn append_input(log: &Arc<EmbeddedLog>, from: usize, to: usize) {
    futures::executor::block_on(log.append(&input_topic(), (from..to).map(input_record).collect())).unwrap();
}

/// Every record of `topic`, partition by partition.
pub(crate) fn read_topic(log: &dyn Log, topic: &TopicName) -> Vec<Record> {
    (0..log.partition_count(topic).unwrap()).flat_map(|p| log.read(topic, p, 0, usize::MAX, usize::MAX).unwrap()).collect()
}

/// The id the emitter gives the record it emits for an input record.
pub(crate) fn emitted_id(processor: &str, partition: u32, offset: u64) -> String {
    format!("{processor}/events/{partition}/{offset}")
}

/// Records the emitter has committed as emitted.
pub(crate) fn committed_emits(store: &dyn KvStore, processor: &str) -> u64 {
    store.get(EMITTER_TABLE, processor.as_bytes()).unwrap().map(|v| u64::from_be_bytes(v.try_into().unwrap())).unwrap_or(0)
}

/// Checks that the output topic holds, for every input record, the emitter's record exactly
/// once, in input order per partition, and otherwise only records whose id starts with
/// `foreign`. Returns the number of emitted records found.
pub(crate) fn assert_emitted_exactly_once(log: &dyn Log, processor: &str) -> usize {
    assert_emitted_exactly_once_to(log, processor, &output_topic(), "")
}

/// [`assert_emitted_exactly_once`] for `topic`, whose records' ids start with `prefix`.
pub(crate) fn assert_emitted_exactly_once_to(log: &dyn Log, processor: &str, topic: &TopicName, prefix: &str) -> usize {
    let inputs = read_topic(log, &input_topic());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order: HashMap<u32, Vec<u64>> = HashMap::new();
    for record in read_topic(log, topic) {
        let id = meridian_event::payload_id(&record.value).expect("every output record carries an id").into_owned();
        if id.starts_with("foreign") {
            continue;
        }
        let emitted = id.strip_prefix(prefix).unwrap_or_else(|| panic!("record {id:?} in {topic} lacks the prefix {prefix:?}"));
        let (source_partition, source_offset) = parse_emitted_id(processor, emitted).unwrap_or_else(|| panic!("unexpected record {id:?} in the output"));
        assert_eq!(record.partition, source_partition, "{id}: emitted with its input's key, so to the same partition");
        order.entry(record.partition).or_default().push(source_offset);
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records appended more than once: {:?}", &twice[..twice.len().min(5)]);
    let missing: Vec<String> =
        inputs.iter().map(|r| format!("{prefix}{}", emitted_id(processor, r.partition, r.offset))).filter(|id| !seen.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} of {} input records have no emitted record, e.g. {:?}", missing.len(), inputs.len(), &missing[..missing.len().min(5)]);
    for (partition, offsets) in order {
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {partition} is out of emission order: {offsets:?}");
    }
    assert_eq!(seen.len(), inputs.len());
    seen.len()
}

fn parse_emitted_id(processor: &str, id: &str) -> Option<(u32, u64)> {
    let rest = id.strip_prefix(processor)?.strip_prefix("/events/")?;
    let (partition, offset) = rest.split_once('/')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

/// Emits one JSON record per input record (id from processor, topic, partition and offset,
/// keyed like its input) and counts them in its state, written once per round by the
/// end-of-round hook. Optionally fails every `fail_every`-th `process` call after emitting.
pub(crate) struct Emitter {
    pub(crate) name: String,
    pub(crate) target: TopicName,
    pub(crate) fail_every: Option<usize>,
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) failures: Arc<AtomicUsize>,
    /// Also emits a copy of each record to this topic, right after it.
    echo: Option<TopicName>,
    round_emitted: u64,
}

impl Emitter {
    pub(crate) fn new(name: &str) -> Emitter {
        Emitter {
            name: name.into(),
            target: output_topic(),
            fail_every: None,
            calls: Arc::new(AtomicUsize::new(0)),
            failures: Arc::new(AtomicUsize::new(0)),
            echo: None,
            round_emitted: 0,
        }
    }

    /// Emits each record's copy (id `echo-` + id) to [`echo_topic`] right after it.
    pub(crate) fn echoing(self) -> Emitter {
        Emitter { echo: Some(echo_topic()), ..self }
    }
}

impl Processor for Emitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![input_topic()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for record in records {
            let source = Event::decode(&record.value).unwrap().id;
            let id = emitted_id(&self.name, record.partition, record.offset);
            assert_eq!(topic, &input_topic());
            let value = json!({"id": id, "source": source, "offset": record.offset});
            ctx.emit(Emit { topic: self.target.clone(), key: record.key.clone(), value: Bytes::from(value.to_string()), id: id.clone() })?;
            if let Some(echo) = &self.echo {
                let id = format!("echo-{id}");
                let value = json!({"id": id, "source": source, "offset": record.offset});
                ctx.emit(Emit { topic: echo.clone(), key: record.key.clone(), value: Bytes::from(value.to_string()), id })?;
            }
            self.round_emitted += 1;
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_every.is_some_and(|n| call % n == n / 2) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(RuntimeError::Processor { processor: self.name.clone(), message: "injected failure after emitting".into() });
        }
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        let committed = committed_emits(ctx.store(), &self.name);
        ctx.batch().put(EMITTER_TABLE, self.name.as_bytes().to_vec(), (committed + self.round_emitted).to_be_bytes().to_vec());
        self.round_emitted = 0;
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.round_emitted = 0;
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete(EMITTER_TABLE, self.name.as_bytes().to_vec());
    }
}

/// Every processor has processed everything it has seen and has no outbox records pending.
pub(crate) fn caught_up(rt: &Runtime) -> bool {
    rt.status().iter().all(|s| !s.partitions.is_empty() && s.lag == 0 && s.outbox_pending == 0)
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub(crate) fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
