//! The runtime: one named thread per processor, reading from committed positions,
//! committing state, positions and emitted records in one batch, then appending the
//! emitted records to the log.

use crate::erasure::read_receipts;
use crate::outbox::{
    append_runs, decode_round, encode_round, group_by_topic, offsets_key, outbox_key, outbox_prefix, outbox_sequence, OutboxCleanup, OutboxRecord,
    OUTBOX_OFFSETS_TABLE, OUTBOX_TABLE,
};
use crate::processor::{timer_prefix, ProcessContext, Processor, RoundOutput, Timer, TIMERS_TABLE};
use crate::{Result, RuntimeError};
use meridian_log::{partition_for_key, AppendRecord, Log, LogError, Position, TopicName};
use meridian_state::{prefix_end, KvStore, WriteBatch};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Table of committed positions: key = processor, 0, topic, 0, partition (u32 BE);
/// value = next offset (u64 BE).
pub(crate) const POSITIONS_TABLE: &str = "runtime_positions";

/// Most bytes of keys and values one outbox append call carries (an eighth of the
/// embedded log's default write queue, so it is rarely refused as `Overloaded`).
const OUTBOX_APPEND_BYTES: usize = 8 << 20;

/// Records read per call while outbox recovery looks for ids in a target partition.
const RECOVERY_SCAN_RECORDS: usize = 4096;

/// Where a crash test makes the process abort (`std::process::abort`), to reach the
/// windows between the outbox's steps deterministically. Never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after a round with emitted records has committed, before they are appended.
    AfterOutboxCommit,
    /// Right after a round's emitted records are appended, before their removal from the
    /// outbox is committed.
    AfterOutboxAppend,
}

/// Tuning of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Most records read from one partition per round.
    pub max_batch_records: usize,
    /// Most payload bytes read from one partition per round.
    pub max_batch_bytes: usize,
    /// Longest wait for new records before timers are checked again.
    pub idle_wait: Duration,
    /// Crash tests only: abort the process at this point (see [`CrashPoint`]). `None`.
    pub crash_at: Option<CrashPoint>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        // 16 Ki records per partition per round: measured 96.5 k vs 60.5 k events/s for the
        // history processor at 881 k owners on redb (fewer copy-on-write page copies per
        // event), at most ~0.6 s of events per round at full load (docs/benchmarks.md).
        RuntimeConfig { max_batch_records: 16_384, max_batch_bytes: 16 << 20, idle_wait: Duration::from_millis(250), crash_at: None }
    }
}

/// Position and lag of a processor on one partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset the processor will read (committed).
    pub position: u64,
    /// Next offset the log will write.
    pub end: u64,
    /// Records not yet processed.
    pub lag: u64,
}

/// What a processor is doing.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProcessorStatus {
    /// Name.
    pub name: String,
    /// Per-partition positions.
    pub partitions: Vec<PartitionStatus>,
    /// Records processed since start.
    pub records_processed: u64,
    /// Records per second over the last round that had records.
    pub records_per_second: f64,
    /// Total lag.
    pub lag: u64,
    /// Last error, if the latest round failed.
    pub last_error: Option<String>,
    /// Emitted records committed but not yet known to be in the log. Stays above zero
    /// while the log refuses them (see `last_error`); the processor then handles no new
    /// records until they are appended.
    pub outbox_pending: u64,
}

enum Command {
    Rebuild(std::sync::mpsc::Sender<Result<()>>),
    Seek(TopicName, Vec<(u32, u64)>, std::sync::mpsc::Sender<Result<()>>),
}

struct Worker {
    name: String,
    commands: std::sync::mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    /// The store its state, positions, timers, outbox and receipts commit to.
    store: Arc<dyn KvStore>,
}

/// Runs processors (see the crate docs).
pub struct Runtime {
    log: Arc<dyn Log>,
    store: Arc<dyn KvStore>,
    config: RuntimeConfig,
    workers: Mutex<Vec<Worker>>,
    statuses: Arc<RwLock<HashMap<String, ProcessorStatus>>>,
    shutdown: Arc<AtomicBool>,
    /// Wakes idle workers at shutdown (a watch keeps the value, so none can miss it).
    shutdown_signal: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("processors", &self.statuses.read().keys().collect::<Vec<_>>()).finish()
    }
}

pub(crate) fn position_key(processor: &str, topic: &TopicName, partition: u32) -> Vec<u8> {
    let mut k = position_prefix(processor);
    k.extend_from_slice(topic.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn position_prefix(processor: &str) -> Vec<u8> {
    let mut k = processor.as_bytes().to_vec();
    k.push(0);
    k
}

impl Runtime {
    /// A runtime over `log` keeping processor state in `store`.
    pub fn new(log: Arc<dyn Log>, store: Arc<dyn KvStore>, config: RuntimeConfig) -> Runtime {
        Runtime {
            log,
            store,
            config,
            workers: Mutex::new(Vec::new()),
            statuses: Arc::new(RwLock::new(HashMap::new())),
            shutdown: Arc::new(AtomicBool::new(false)),
            shutdown_signal: tokio::sync::watch::channel(false).0,
        }
    }

    /// Starts `processor` on a thread of its own, keeping its state in the runtime's store.
    pub fn spawn(&self, processor: Box<dyn Processor>) -> Result<()> {
        self.spawn_in(processor, self.store.clone())
    }

    /// Starts `processor` on a thread of its own, keeping its state — and with it its
    /// positions, timers, outbox and erasure receipts, so they stay atomic with the state —
    /// in `store`. Processors on different stores commit without waiting for each other.
    pub fn spawn_in(&self, processor: Box<dyn Processor>, store: Arc<dyn KvStore>) -> Result<()> {
        let name = processor.name().to_owned();
        let mut workers = self.workers.lock();
        if workers.iter().any(|w| w.name == name) {
            return Err(RuntimeError::DuplicateProcessor(name));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let cannot_start = |what: &str, e: std::io::Error| RuntimeError::Processor { processor: name.clone(), message: format!("cannot start {what}: {e}") };
        // Waits (idle, backoff, outbox appends) happen on this thread through its own
        // single-threaded runtime; it is not an async worker of anyone else's.
        let waiter = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| cannot_start("its waiting runtime", e))?;
        self.statuses.write().insert(name.clone(), ProcessorStatus { name: name.clone(), ..ProcessorStatus::default() });
        let mut run = WorkerLoop {
            name: name.clone(),
            processor,
            log: self.log.clone(),
            store: store.clone(),
            config: self.config.clone(),
            statuses: self.statuses.clone(),
            shutdown: self.shutdown.clone(),
            shutdown_signal: self.shutdown_signal.subscribe(),
            commands: rx,
            positions: HashMap::new(),
            records_processed: 0,
            waiter,
            outbox_dirty: true,
            next_outbox_seq: 0,
            in_flight: None,
            outbox_cleanup: None,
            outbox_pending: 0,
        };
        let thread = std::thread::Builder::new().name(format!("proc-{name}")).spawn(move || run.run()).map_err(|e| cannot_start("its thread", e))?;
        workers.push(Worker { name, commands: tx, thread: Some(thread), store });
        Ok(())
    }

    /// Status of every processor, sorted by name. `end` and `lag` are computed against
    /// the log's current end offsets, not the ones seen at the processor's last round, so
    /// an append that a processor has not looked at yet shows as lag at once.
    pub fn status(&self) -> Vec<ProcessorStatus> {
        let mut all: Vec<ProcessorStatus> = self.statuses.read().values().cloned().collect();
        for status in &mut all {
            for p in &mut status.partitions {
                if let Some(end) = TopicName::new(p.topic.clone()).ok().and_then(|t| self.log.offsets(&t, p.partition).ok()).map(|o| o.end) {
                    p.end = p.end.max(end);
                    p.lag = p.end.saturating_sub(p.position);
                }
            }
            status.lag = status.partitions.iter().map(|p| p.lag).sum();
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Clears the processor's state and positions so it rebuilds from the start of the
    /// log. Returns once the reset is committed.
    ///
    /// The outbox is not cleared: what it holds was emitted by committed rounds, so the
    /// world may already act on part of it (a crash can fall between two appends) and it
    /// is delivered before the reset; if the log refuses it, the rebuild fails and says
    /// why. Erasure receipts are kept too. The replay emits again whatever it emits, with
    /// the same deterministic ids: the outbox de-duplicates what it has pending, not the
    /// whole topic, so consumers of an emitting processor's topic see a rebuild's records
    /// again (recognisable by id).
    pub fn rebuild(&self, name: &str) -> Result<()> {
        self.command(name, Command::Rebuild)
    }

    /// Sends a command to a processor's thread and waits for its committed outcome.
    fn command(&self, name: &str, make: impl FnOnce(std::sync::mpsc::Sender<Result<()>>) -> Command) -> Result<()> {
        let stopped = || RuntimeError::Processor { processor: name.to_owned(), message: "processor has stopped".into() };
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let workers = self.workers.lock();
            let worker = workers.iter().find(|w| w.name == name).ok_or_else(|| RuntimeError::UnknownProcessor(name.to_owned()))?;
            worker.commands.send(make(tx)).map_err(|_| stopped())?;
        }
        rx.recv().map_err(|_| stopped())?
    }

    /// Moves the processor's committed positions on `topic` to the given
    /// `(partition, next offset)` pairs *without* clearing its state: replay (or skip) from
    /// any position. Only idempotent processors (history) give the same result after
    /// replaying; for counting ones use [`Runtime::rebuild`]. A replay emits again what it
    /// emits (same ids). Returns once committed.
    pub fn seek(&self, name: &str, topic: &TopicName, positions: Vec<(u32, u64)>) -> Result<()> {
        let partitions = self.log.partition_count(topic)?;
        if let Some((p, _)) = positions.iter().find(|(p, _)| *p >= partitions) {
            return Err(RuntimeError::Processor { processor: name.to_owned(), message: format!("topic {topic} has {partitions} partitions, there is no partition {p}") });
        }
        self.command(name, |reply| Command::Seek(topic.clone(), positions, reply))
    }

    /// Total lag over all processors, computed against the log's current end offsets.
    pub fn total_lag(&self) -> u64 {
        self.status().iter().map(|s| s.lag).sum()
    }

    /// Waits until every processor has processed everything durable at the time of the
    /// call, or `timeout` passes. Returns whether they caught up.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.status();
            let caught_up = statuses.iter().all(|s| !s.partitions.is_empty() && s.lag == 0);
            if caught_up {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What every processor reported removing for the user-erasure request `erasure_id`
    /// (see [`ProcessContext::erasure_receipt`]), as (processor, removed) sorted by
    /// processor, from every store a processor runs in. Reads the stores: from async code
    /// call it in `spawn_blocking`.
    pub fn erasure_receipts(&self, erasure_id: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let mut stores: Vec<Arc<dyn KvStore>> = vec![self.store.clone()];
        for worker in self.workers.lock().iter() {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &worker.store)) {
                stores.push(worker.store.clone());
            }
        }
        let mut receipts = Vec::new();
        for store in stores {
            receipts.extend(read_receipts(&*store, erasure_id)?);
        }
        receipts.sort_by(|a, b| a.0.cmp(&b.0));
        receipts.dedup_by(|a, b| a.0 == b.0);
        Ok(receipts)
    }

    /// Stops every processor after its current round and joins the threads. A round
    /// that has committed emitted records finishes appending them first (unless the log
    /// keeps refusing them: they stay in the outbox and are appended at the next start).
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.shutdown_signal.send_replace(true);
        let mut workers = self.workers.lock();
        for worker in workers.iter_mut() {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct WorkerLoop {
    name: String,
    processor: Box<dyn Processor>,
    log: Arc<dyn Log>,
    store: Arc<dyn KvStore>,
    config: RuntimeConfig,
    statuses: Arc<RwLock<HashMap<String, ProcessorStatus>>>,
    shutdown: Arc<AtomicBool>,
    shutdown_signal: tokio::sync::watch::Receiver<bool>,
    commands: std::sync::mpsc::Receiver<Command>,
    positions: HashMap<(TopicName, u32), u64>,
    records_processed: u64,
    /// Runs this thread's waits: idle, backoff, outbox appends.
    waiter: tokio::runtime::Runtime,
    /// The store's outbox may hold rounds not known to be in the log (at start, and after
    /// a failed round): recover them before handling new records.
    outbox_dirty: bool,
    /// Sequence of the next round's outbox entry.
    next_outbox_seq: u64,
    /// The last committed round's emitted records while their append runs.
    in_flight: Option<InFlightAppend>,
    /// Appended rounds whose removal rides in the next batch.
    outbox_cleanup: Option<OutboxCleanup>,
    /// Emitted records committed but not yet known to be in the log.
    outbox_pending: u64,
}

/// A committed round's emitted records being appended: the first run of each topic is
/// already handed to the log, so they are written (together) while the next round is
/// processed; the rest follow when the next round waits for them, before its commit.
struct InFlightAppend {
    key: Vec<u8>,
    /// The round's records, grouped by topic ([`group_by_topic`]).
    records: Vec<OutboxRecord>,
    /// Its runs ([`append_runs`]) in order, as ranges of `records`, with the append of
    /// those already handed to the log.
    runs: Vec<(std::ops::Range<usize>, Option<AppendFuture>)>,
}

type AppendFuture = std::pin::Pin<Box<dyn std::future::Future<Output = meridian_log::Result<Vec<Position>>> + Send>>;

/// Keeps the larger end offset per (topic, partition) of `into` and `from`.
fn merge_ends(into: &mut HashMap<(TopicName, u32), u64>, from: HashMap<(TopicName, u32), u64>) {
    for (at, end) in from {
        let offset = into.entry(at).or_insert(0);
        *offset = (*offset).max(end);
    }
}

/// The end offset after the last of `positions` per (topic, partition).
fn run_ends(topic: &TopicName, positions: &[Position]) -> HashMap<(TopicName, u32), u64> {
    let mut ends: HashMap<(TopicName, u32), u64> = HashMap::new();
    for position in positions {
        let end = ends.entry((topic.clone(), position.partition)).or_insert(0);
        *end = (*end).max(position.offset + 1);
    }
    ends
}

fn append_records(run: &[OutboxRecord]) -> Vec<AppendRecord> {
    run.iter().map(|r| AppendRecord { key: r.emit.key.clone(), value: r.emit.value.clone(), timestamp: r.timestamp_ms }).collect()
}

impl WorkerLoop {
    fn run(&mut self) {
        let mut appended = self.log.subscribe();
        let mut backoff = Duration::from_millis(50);
        while !self.shutdown.load(Ordering::SeqCst) {
            while let Ok(command) = self.commands.try_recv() {
                match command {
                    Command::Rebuild(reply) => {
                        let _ = reply.send(self.rebuild());
                    }
                    Command::Seek(topic, positions, reply) => {
                        let _ = reply.send(self.seek(&topic, &positions));
                    }
                }
            }
            appended.borrow_and_update();
            let round_started = Instant::now();
            match self.round() {
                Ok(0) => {
                    backoff = Duration::from_millis(50);
                    let wait = self.config.idle_wait;
                    let stop = &mut self.shutdown_signal;
                    self.waiter.block_on(async {
                        if *stop.borrow_and_update() {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::timeout(wait, appended.changed()) => {}
                            _ = stop.changed() => {}
                        }
                    });
                }
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    let rest = self.processor.min_round_interval().saturating_sub(round_started.elapsed());
                    if !rest.is_zero() {
                        let stop = &mut self.shutdown_signal;
                        self.waiter.block_on(async {
                            if !*stop.borrow_and_update() {
                                let _ = tokio::time::timeout(rest, stop.changed()).await;
                            }
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(processor = %self.name, error = %e, "processor round failed; resuming from the committed position");
                    metrics::counter!("meridian_processor_errors_total", "processor" => self.name.clone()).increment(1);
                    if let Some(status) = self.statuses.write().get_mut(&self.name) {
                        status.last_error = Some(e.to_string());
                    }
                    self.processor.reset_cache();
                    self.positions.clear();
                    // An append still running must end before recovery reads the log, or
                    // recovery could miss records about to become durable.
                    let _ = self.finish_append();
                    // The round may have committed before it failed (an outbox append, or a
                    // commit whose outcome is unknown): look at the store's outbox again.
                    self.outbox_dirty = true;
                    self.outbox_cleanup = None;
                    let stop = &mut self.shutdown_signal;
                    self.waiter.block_on(async {
                        if !*stop.borrow_and_update() {
                            let _ = tokio::time::timeout(backoff, stop.changed()).await;
                        }
                    });
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Shutdown: the last round's append finishes, and its cleanup is committed so the
        // next start has nothing to recover.
        if self.finish_append().is_ok() {
            if let Some(cleanup) = self.outbox_cleanup.take() {
                let mut batch = WriteBatch::new();
                cleanup.write_into(&self.name, &mut batch);
                if let Err(e) = self.store.commit(batch) {
                    tracing::warn!(processor = %self.name, error = %e, "cannot commit the outbox cleanup at shutdown; the next start checks the log instead");
                }
            }
        }
    }

    fn load_position(&mut self, topic: &TopicName, partition: u32) -> Result<u64> {
        if let Some(p) = self.positions.get(&(topic.clone(), partition)) {
            return Ok(*p);
        }
        let stored = self.store.get(POSITIONS_TABLE, &position_key(&self.name, topic, partition))?;
        let position = match stored {
            Some(bytes) if bytes.len() == 8 => u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])),
            _ => 0,
        };
        self.positions.insert((topic.clone(), partition), position);
        Ok(position)
    }

    /// One pass over every partition, the end-of-round hook and the due timers; the wait
    /// for the previous round's outbox append; one commit; then the start of this round's
    /// outbox append (the next round waits for it before its own commit). Returns the
    /// number of records and timers handled.
    fn round(&mut self) -> Result<usize> {
        if self.outbox_dirty {
            self.recover_outbox()?;
        }
        let started = Instant::now();
        let mut batch = WriteBatch::new();
        let mut output = RoundOutput::default();
        let mut new_positions = Vec::new();
        let mut n_records = 0usize;
        let mut partitions_status = Vec::new();
        for topic in self.processor.topics() {
            let n_partitions = match self.log.partition_count(&topic) {
                Ok(n) => n,
                Err(meridian_log::LogError::UnknownTopic(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for partition in 0..n_partitions {
                let position = self.load_position(&topic, partition)?;
                let offsets = self.log.offsets(&topic, partition)?;
                let from = position.max(offsets.start);
                let records = if from < offsets.end {
                    self.log.read(&topic, partition, from, self.config.max_batch_records, self.config.max_batch_bytes)?
                } else {
                    Vec::new()
                };
                let next = records.last().map(|r| r.offset + 1).unwrap_or(from);
                if !records.is_empty() {
                    let mut ctx = ProcessContext { processor: &self.name, store: &*self.store, batch: &mut batch, output: &mut output };
                    self.processor.process(&mut ctx, &topic, &records)?;
                    batch.put(POSITIONS_TABLE, position_key(&self.name, &topic, partition), next.to_be_bytes().to_vec());
                    new_positions.push(((topic.clone(), partition), next));
                    n_records += records.len();
                }
                partitions_status.push(PartitionStatus {
                    topic: topic.as_str().to_owned(),
                    partition,
                    position: next,
                    end: offsets.end,
                    lag: offsets.end.saturating_sub(next),
                });
            }
        }
        if n_records > 0 {
            let mut ctx = ProcessContext { processor: &self.name, store: &*self.store, batch: &mut batch, output: &mut output };
            self.processor.end_of_round(&mut ctx)?;
        }
        let n_timers = self.due_timers(&mut batch, &mut output)?;
        let emitted = group_by_topic(output.records);
        let outbox_entry = (!emitted.is_empty()).then(|| {
            let key = outbox_key(&self.name, self.next_outbox_seq);
            self.next_outbox_seq += 1;
            batch.put(OUTBOX_TABLE, key.clone(), encode_round(&emitted));
            key
        });
        // The previous round's records must be in the log before their removal from the
        // outbox commits with this round.
        self.finish_append()?;
        if let Some(cleanup) = self.outbox_cleanup.take() {
            cleanup.write_into(&self.name, &mut batch);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
            self.processor.after_commit()?;
        }
        if outbox_entry.is_some() {
            self.crash_if(CrashPoint::AfterOutboxCommit);
            // Before the status shows the round as done, so that "no lag, nothing pending"
            // means everything is in the log.
            self.set_outbox_pending(emitted.len() as u64);
        }
        for (key, next) in new_positions {
            self.positions.insert(key, next);
        }
        self.records_processed += n_records as u64;
        let elapsed = started.elapsed().as_secs_f64();
        let lag: u64 = partitions_status.iter().map(|p| p.lag).sum();
        metrics::counter!("meridian_processor_records_total", "processor" => self.name.clone()).increment(n_records as u64);
        metrics::gauge!("meridian_processor_lag_records", "processor" => self.name.clone()).set(lag as f64);
        if let Some(status) = self.statuses.write().get_mut(&self.name) {
            status.partitions = partitions_status;
            status.lag = lag;
            status.records_processed = self.records_processed;
            if n_records > 0 && elapsed > 0.0 {
                status.records_per_second = n_records as f64 / elapsed;
            }
            status.last_error = None;
        }
        if let Some(key) = outbox_entry {
            // Each topic's first run now: every topic's records are written by the log's
            // next group commit, while the next round runs. A topic's later runs wait, so
            // that a refused run is never overtaken by a later one of its topic.
            let mut runs = Vec::new();
            let mut start = 0;
            let mut topics: HashSet<&TopicName> = HashSet::new();
            for run in append_runs(&emitted, OUTBOX_APPEND_BYTES) {
                let handed = topics.insert(&run[0].emit.topic).then(|| self.log.append(&run[0].emit.topic, append_records(run)));
                runs.push((start..start + run.len(), handed));
                start += run.len();
            }
            self.in_flight = Some(InFlightAppend { key, records: emitted, runs });
        }
        Ok(n_records + n_timers)
    }

    /// Waits for the in-flight append (if any) to be durable, appending the rest of its
    /// records, and prepares its cleanup for the next batch. On failure the store's outbox
    /// is the truth again: the next round recovers from it.
    fn finish_append(&mut self) -> Result<()> {
        let Some(in_flight) = self.in_flight.take() else { return Ok(()) };
        // Until the append has succeeded, a failure (error return, crash) leaves the round
        // in the store's outbox for recovery.
        self.outbox_dirty = true;
        let InFlightAppend { key, records, runs } = in_flight;
        let mut ends: HashMap<(TopicName, u32), u64> = HashMap::new();
        for (range, handed) in runs {
            let run = &records[range];
            let run_ends_of = match handed {
                Some(append) => match self.waiter.block_on(append) {
                    Ok(positions) => {
                        self.appended(run.len() as u64);
                        run_ends(&run[0].emit.topic, &positions)
                    }
                    // Refused before anything was written: offer it again (nothing later
                    // of its topic was handed to the log).
                    Err(LogError::Overloaded { .. }) => self.append_outbox(run)?,
                    Err(e) => return Err(e.into()),
                },
                None => self.append_outbox(run)?,
            };
            merge_ends(&mut ends, run_ends_of);
        }
        self.crash_if(CrashPoint::AfterOutboxAppend);
        self.outbox_dirty = false;
        self.outbox_cleanup = Some(OutboxCleanup { keys: vec![key], offsets: ends });
        Ok(())
    }

    /// Counts records the log has taken from the outbox.
    fn appended(&mut self, n_records: u64) {
        metrics::counter!("meridian_outbox_appended_total", "processor" => self.name.clone()).increment(n_records);
        self.set_outbox_pending(self.outbox_pending.saturating_sub(n_records));
    }

    fn crash_if(&self, point: CrashPoint) {
        if self.config.crash_at == Some(point) {
            tracing::error!(processor = %self.name, ?point, "crash point reached; aborting the process (crash test)");
            std::process::abort();
        }
    }

    fn set_outbox_pending(&mut self, n_records: u64) {
        self.outbox_pending = n_records;
        metrics::gauge!("meridian_outbox_pending_records", "processor" => self.name.clone()).set(n_records as f64);
        if let Some(status) = self.statuses.write().get_mut(&self.name) {
            status.outbox_pending = n_records;
        }
    }

    /// Appends records to their topics in order, one call per run of one topic, and
    /// returns the end offset after the last record per (topic, partition). Blocks this
    /// thread until each call is durable. `Overloaded` refuses a whole call before
    /// writing anything, so the same records are offered again after a pause; any other
    /// error is returned, some runs may then be in the log already (recovery skips them).
    fn append_outbox(&mut self, records: &[OutboxRecord]) -> Result<HashMap<(TopicName, u32), u64>> {
        let mut ends: HashMap<(TopicName, u32), u64> = HashMap::new();
        for run in append_runs(records, OUTBOX_APPEND_BYTES) {
            let topic = &run[0].emit.topic;
            let mut pause = Duration::from_millis(1);
            let positions = loop {
                let append = self.log.append(topic, append_records(run));
                match self.waiter.block_on(append) {
                    Ok(positions) => break positions,
                    Err(LogError::Overloaded { .. }) if !self.shutdown.load(Ordering::SeqCst) => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            merge_ends(&mut ends, run_ends(topic, &positions));
            self.appended(run.len() as u64);
        }
        Ok(ends)
    }

    /// Appends the rounds left in the store's outbox that are not in the log yet, then
    /// commits their removal. A pending record of ours that reached the log did so after
    /// the end offset recorded at our last successful append to its partition (that
    /// record and the removal of what it covered commit together), so only the records
    /// from there to the end are scanned for pending ids.
    fn recover_outbox(&mut self) -> Result<()> {
        let rows = self.store.scan_prefix(OUTBOX_TABLE, &outbox_prefix(&self.name), usize::MAX)?;
        let mut keys = Vec::with_capacity(rows.len());
        let mut records = Vec::new();
        for (key, value) in rows {
            let sequence = outbox_sequence(&self.name, &key).ok_or_else(|| RuntimeError::Corrupt {
                table: OUTBOX_TABLE,
                owner: self.name.clone(),
                reason: format!("outbox key of {} bytes has no round sequence", key.len()),
            })?;
            self.next_outbox_seq = self.next_outbox_seq.max(sequence + 1);
            records.extend(decode_round(&self.name, value)?);
            keys.push(key);
        }
        if keys.is_empty() {
            self.outbox_dirty = false;
            self.set_outbox_pending(0);
            return Ok(());
        }
        self.set_outbox_pending(records.len() as u64);
        let mut partition_counts: HashMap<TopicName, u32> = HashMap::new();
        let mut partitions = Vec::with_capacity(records.len());
        let mut pending_ids: HashMap<(TopicName, u32), HashSet<&str>> = HashMap::new();
        for record in &records {
            let topic = &record.emit.topic;
            let n_partitions = match partition_counts.get(topic) {
                Some(n) => *n,
                None => *partition_counts.entry(topic.clone()).or_insert(self.log.partition_count(topic)?),
            };
            let partition = partition_for_key(&record.emit.key, n_partitions);
            partitions.push(partition);
            pending_ids.entry((topic.clone(), partition)).or_default().insert(&record.emit.id);
        }
        let mut in_log: HashMap<(TopicName, u32), HashSet<String>> = HashMap::new();
        let mut offsets = HashMap::new();
        for ((topic, partition), ids) in &pending_ids {
            let recorded = self
                .store
                .get(OUTBOX_OFFSETS_TABLE, &offsets_key(&self.name, topic, *partition))?
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let bounds = self.log.offsets(topic, *partition)?;
            if recorded < bounds.start {
                tracing::warn!(processor = %self.name, topic = %topic, partition, recorded, start = bounds.start,
                    "retention removed records the outbox would check; pending records whose copy was removed are appended again");
            }
            let found = in_log.entry((topic.clone(), *partition)).or_default();
            let mut from = recorded.max(bounds.start);
            while from < bounds.end {
                let chunk = self.log.read(topic, *partition, from, RECOVERY_SCAN_RECORDS, self.config.max_batch_bytes)?;
                let Some(last) = chunk.last() else { break };
                from = last.offset + 1;
                for record in &chunk {
                    if let Some(id) = meridian_event::payload_id(&record.value) {
                        if ids.contains(id.as_ref()) {
                            found.insert(id.into_owned());
                        }
                    }
                }
            }
            offsets.insert((topic.clone(), *partition), bounds.end);
        }
        drop(pending_ids);
        let n_records = records.len();
        let missing: Vec<OutboxRecord> = group_by_topic(
            records
                .into_iter()
                .zip(partitions)
                .filter(|(record, partition)| !in_log.get(&(record.emit.topic.clone(), *partition)).is_some_and(|found| found.contains(&record.emit.id)))
                .map(|(record, _)| record)
                .collect(),
        );
        self.set_outbox_pending(missing.len() as u64);
        let appended = self.append_outbox(&missing)?;
        merge_ends(&mut offsets, appended);
        let mut batch = WriteBatch::new();
        OutboxCleanup { keys, offsets }.write_into(&self.name, &mut batch);
        self.store.commit(batch)?;
        self.outbox_dirty = false;
        tracing::info!(processor = %self.name, appended = missing.len(), already_in_log = n_records - missing.len(), "outbox recovered");
        Ok(())
    }

    fn due_timers(&mut self, batch: &mut WriteBatch, output: &mut RoundOutput) -> Result<usize> {
        let prefix = timer_prefix(&self.name);
        let now = meridian_event::Timestamp::now().millis().max(0) as u64;
        let mut end = prefix.clone();
        end.extend_from_slice(&(now + 1).to_be_bytes());
        let due = self.store.range(TIMERS_TABLE, Bound::Included(&prefix), Bound::Excluded(&end), 1000)?;
        for (key, _) in &due {
            let rest = &key[prefix.len()..];
            if rest.len() < 9 {
                continue;
            }
            let due_ms = u64::from_be_bytes(rest[..8].try_into().unwrap_or([0; 8])) as i64;
            let timer = Timer { due_ms, key: rest[9..].to_vec() };
            let mut ctx = ProcessContext { processor: &self.name, store: &*self.store, batch, output };
            self.processor.on_timer(&mut ctx, &timer)?;
            batch.delete(TIMERS_TABLE, key.clone());
        }
        Ok(due.len())
    }

    fn seek(&mut self, topic: &TopicName, positions: &[(u32, u64)]) -> Result<()> {
        if !self.processor.topics().contains(topic) {
            return Err(RuntimeError::Processor { processor: self.name.clone(), message: format!("it does not consume topic {topic}") });
        }
        let mut batch = WriteBatch::new();
        for (partition, offset) in positions {
            batch.put(POSITIONS_TABLE, position_key(&self.name, topic, *partition), offset.to_be_bytes().to_vec());
        }
        self.store.commit(batch)?;
        for (partition, offset) in positions {
            self.positions.insert((topic.clone(), *partition), *offset);
        }
        if let Some(status) = self.statuses.write().get_mut(&self.name) {
            // Positions are known again after the next round; waiters must not see the old ones.
            status.partitions.clear();
        }
        tracing::info!(processor = %self.name, topic = %topic, ?positions, "positions moved");
        Ok(())
    }

    fn rebuild(&mut self) -> Result<()> {
        if let Err(e) = self.finish_append() {
            tracing::warn!(processor = %self.name, error = %e, "outbox append failed; recovering before the rebuild");
        }
        if self.outbox_dirty {
            // Emitted records of committed rounds are delivered before the state goes.
            self.recover_outbox().map_err(|e| RuntimeError::Processor {
                processor: self.name.clone(),
                message: format!(
                    "its outbox holds {} emitted records the log does not take ({e}); the rebuild runs once they are appended: fix the cause and retry",
                    self.outbox_pending
                ),
            })?;
        }
        let mut batch = WriteBatch::new();
        if let Some(cleanup) = self.outbox_cleanup.take() {
            cleanup.write_into(&self.name, &mut batch);
        }
        self.processor.clear_state(&mut batch);
        batch.delete_prefix(POSITIONS_TABLE, position_prefix(&self.name));
        batch.delete_prefix(TIMERS_TABLE, timer_prefix(&self.name));
        debug_assert!(prefix_end(&position_prefix(&self.name)).is_some());
        if let Err(e) = self.store.commit(batch) {
            self.outbox_dirty = true;
            return Err(e.into());
        }
        self.processor.reset_cache();
        self.positions.clear();
        self.records_processed = 0;
        if let Some(status) = self.statuses.write().get_mut(&self.name) {
            // Positions are unknown until the next round; waiters must not see the old ones.
            status.partitions.clear();
            status.records_processed = 0;
        }
        tracing::info!(processor = %self.name, "state cleared; rebuilding from the start of the log");
        Ok(())
    }
}
