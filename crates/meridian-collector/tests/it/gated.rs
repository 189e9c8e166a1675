//! The real embedded log and a memory store behind wrappers: appends can be held at a
//! gate and then passed or failed; blocking calls (log reads, store reads and commits)
//! record the thread they ran on.

use futures::future::BoxFuture;
use futures::FutureExt;
use meridian_collector::{Collector, CollectorConfig};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, LogError, PartitionOffsets, Position, Record, RetentionReport, TopicInfo, TopicName};
use meridian_pipeline::Pipeline;
use meridian_state::{KeyValue, KvStore, MemoryStore, WriteBatch};
use parking_lot::Mutex;
use std::ops::Bound;
use std::sync::Arc;
use std::thread::ThreadId;
use tokio::sync::oneshot;

/// What a held append does when the gate is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It goes on to the real log.
    Pass,
    /// It fails as a disk error would.
    Fail,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    held: Vec<oneshot::Sender<Verdict>>,
}

/// The embedded log with a gate in front of its appends.
#[derive(Debug)]
pub(crate) struct GatedLog {
    inner: Arc<EmbeddedLog>,
    gate: Mutex<Gate>,
    blocking_calls: Mutex<Vec<(&'static str, ThreadId)>>,
}

impl GatedLog {
    /// Appends from now on wait at the gate.
    pub(crate) fn close_gate(&self) {
        self.gate.lock().closed = true;
    }

    /// Appends waiting at the gate.
    pub(crate) fn held(&self) -> usize {
        self.gate.lock().held.len()
    }

    /// Opens the gate; every held append gets `verdict`.
    pub(crate) fn release(&self, verdict: Verdict) {
        let mut gate = self.gate.lock();
        gate.closed = false;
        for held in gate.held.drain(..) {
            let _ = held.send(verdict);
        }
    }

    /// Blocking calls so far, with the thread each ran on.
    pub(crate) fn blocking_calls(&self) -> Vec<(&'static str, ThreadId)> {
        self.blocking_calls.lock().clone()
    }

    fn note(&self, call: &'static str) {
        self.blocking_calls.lock().push((call, std::thread::current().id()));
    }
}

impl Log for GatedLog {
    fn ensure_topic(&self, topic: &TopicName, partitions: u32) -> meridian_log::Result<u32> {
        self.inner.ensure_topic(topic, partitions)
    }

    fn topics(&self) -> Vec<TopicInfo> {
        self.inner.topics()
    }

    fn partition_count(&self, topic: &TopicName) -> meridian_log::Result<u32> {
        self.inner.partition_count(topic)
    }

    fn append(&self, topic: &TopicName, records: Vec<AppendRecord>) -> BoxFuture<'static, meridian_log::Result<Vec<Position>>> {
        let mut gate = self.gate.lock();
        if !gate.closed {
            return self.inner.append(topic, records);
        }
        let (tx, rx) = oneshot::channel();
        gate.held.push(tx);
        let (inner, topic) = (self.inner.clone(), topic.clone());
        async move {
            match rx.await {
                Ok(Verdict::Pass) => inner.append(&topic, records).await,
                _ => Err(LogError::Io(std::io::Error::other("the disk failed (test gate)"))),
            }
        }
        .boxed()
    }

    fn read(&self, topic: &TopicName, partition: u32, from: u64, max_records: usize, max_bytes: usize) -> meridian_log::Result<Vec<Record>> {
        self.note("log.read");
        self.inner.read(topic, partition, from, max_records, max_bytes)
    }

    fn offsets(&self, topic: &TopicName, partition: u32) -> meridian_log::Result<PartitionOffsets> {
        self.note("log.offsets");
        self.inner.offsets(topic, partition)
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }

    fn commit_offset(&self, group: &str, topic: &TopicName, partition: u32, next_offset: u64) -> meridian_log::Result<()> {
        self.inner.commit_offset(group, topic, partition, next_offset)
    }

    fn committed_offset(&self, group: &str, topic: &TopicName, partition: u32) -> meridian_log::Result<Option<u64>> {
        self.inner.committed_offset(group, topic, partition)
    }

    fn enforce_retention(&self) -> meridian_log::Result<RetentionReport> {
        self.inner.enforce_retention()
    }

    fn close(&self) -> meridian_log::Result<()> {
        self.inner.close()
    }
}

/// A memory store that records the threads of its calls.
#[derive(Debug, Default)]
pub(crate) struct WatchedStore {
    inner: MemoryStore,
    calls: Mutex<Vec<(&'static str, ThreadId)>>,
}

impl WatchedStore {
    /// Calls so far, with the thread each ran on.
    pub(crate) fn calls(&self) -> Vec<(&'static str, ThreadId)> {
        self.calls.lock().clone()
    }

    fn note(&self, call: &'static str) {
        self.calls.lock().push((call, std::thread::current().id()));
    }
}

impl KvStore for WatchedStore {
    fn get(&self, table: &'static str, key: &[u8]) -> meridian_state::Result<Option<Vec<u8>>> {
        self.note("store.get");
        self.inner.get(table, key)
    }

    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> meridian_state::Result<Vec<KeyValue>> {
        self.note("store.range");
        self.inner.range(table, start, end, limit)
    }

    fn commit(&self, batch: WriteBatch) -> meridian_state::Result<()> {
        self.note("store.commit");
        self.inner.commit(batch)
    }
}

/// A collector over a gated log and a watched store in a temporary directory.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) log: Arc<GatedLog>,
    pub(crate) store: Arc<WatchedStore>,
    pub(crate) collector: Arc<Collector>,
}

pub(crate) fn fixture_with(pipeline: Pipeline) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let inner = EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()).unwrap();
    let log = Arc::new(GatedLog { inner, gate: Mutex::default(), blocking_calls: Mutex::default() });
    let store = Arc::new(WatchedStore::default());
    let collector = Arc::new(Collector::new(log.clone(), store.clone(), pipeline, CollectorConfig::default()).unwrap());
    Fixture { _dir: dir, log, store, collector }
}

pub(crate) fn fixture() -> Fixture {
    fixture_with(Pipeline::default())
}

impl Fixture {
    /// Ids of every event in the `events` topic, in partition order.
    pub(crate) fn stored_ids(&self) -> Vec<String> {
        let topic = TopicName::new("events").unwrap();
        let mut ids = Vec::new();
        for p in 0..self.log.partition_count(&topic).unwrap() {
            for record in self.log.read(&topic, p, 0, usize::MAX, usize::MAX).unwrap() {
                ids.push(meridian_event::Event::decode_any(&record.value).unwrap().id.to_string());
            }
        }
        ids.sort();
        ids
    }
}
