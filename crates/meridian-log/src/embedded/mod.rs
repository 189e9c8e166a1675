//! The embedded log: partitioned segment files on local disk with group commit.
//!
//! # Layout
//!
//! ```text
//! dir/topics/<topic>/meta.json                      {"partitions":N}
//! dir/topics/<topic>/<partition>/<base:020>.seg     records, see `format`
//! dir/groups/<group>.json                           committed consumer offsets
//! dir/lock                                          held (OS file lock) while open: holder's PID and host
//! ```
//!
//! # Durability
//!
//! Appends go to one writer thread ([`writer`]) that commits everything queued as one
//! group: write, one fdatasync per touched file, then answer the callers. Readers see a
//! partition only up to its *durable end*, published after the fsync. Every segment but
//! the last is synced before the next is created, so recovery ([`EmbeddedLog::open`])
//! truncates a torn tail only in the last segment of a partition (that tail can only hold
//! unacknowledged records) and reports anything invalid elsewhere as
//! [`LogError::Corrupt`]. `close` (or drop) leaves a `clean-shutdown` marker; when it is
//! present at open, nothing may be torn, so even the last segment's tail must be intact.

mod format;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod lock;
pub mod metrics;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

pub use groups::validate_group_name;

use crate::{
    partition_for_key, AppendRecord, Log, LogError, PartitionOffsets, Position, Record, Result, RetentionReport,
    TopicInfo, TopicName,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use segment::{ReadLimits, ScanEnd, Segment};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use writer::AppendRequest;

/// File whose presence says the log was closed cleanly (every write synced), so recovery
/// may not truncate anything.
const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 65536;

/// Settings of an [`EmbeddedLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedLogConfig {
    /// A new segment file is started when the active one would grow past this.
    pub segment_bytes: u64,
    /// Segments whose newest record is older than this (milliseconds) are deleted by
    /// [`Log::enforce_retention`].
    pub retention_ms: Option<i64>,
    /// Oldest segments are deleted while a partition holds more than this many bytes.
    pub retention_bytes: Option<u64>,
    /// Appends fail with [`LogError::Overloaded`] while more than this many encoded bytes
    /// are waiting to be made durable.
    pub max_pending_bytes: u64,
    /// Largest encoded record (key, value and 28 bytes of framing) accepted.
    pub max_record_bytes: usize,
    /// Fdatasync before acknowledging appends. Only turn off for throwaway data.
    pub fsync: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> EmbeddedLogConfig {
        EmbeddedLogConfig {
            segment_bytes: 64 << 20,
            retention_ms: None,
            retention_bytes: None,
            max_pending_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            fsync: true,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

/// One partition as readers, the writer and retention share it.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) dir: PathBuf,
    /// Segments in offset order; never empty; the last is the active one.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    /// Offset after the last durable record.
    pub(crate) durable_end: AtomicU64,
}

impl Partition {
    pub(crate) fn active_segment(&self) -> Arc<Segment> {
        self.segments.read().last().cloned().expect("a partition always has a segment")
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub(crate) struct Topic {
    /// Process-unique id (the writer keys its state by it).
    pub(crate) id: u64,
    pub(crate) name: TopicName,
    pub(crate) partitions: Vec<Partition>,
}

/// State shared by the handle and the writer thread.
pub(crate) struct Inner {
    dir: PathBuf,
    pub(crate) config: EmbeddedLogConfig,
    topics: RwLock<HashMap<TopicName, Arc<Topic>>>,
    create_lock: Mutex<()>,
    next_topic_id: AtomicU64,
    sender: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    closed: AtomicBool,
    clean_shutdown_written: AtomicBool,
    pub(crate) pending_bytes: AtomicU64,
    failed: Mutex<Option<String>>,
    pub(crate) notify: tokio::sync::watch::Sender<u64>,
    groups: groups::Groups,
    /// Held by the writer while it commits a group (tests hold it to stall the writer).
    pub(crate) group_gate: Mutex<()>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("topics", &self.topics.read().len())
            .field("pending_bytes", &self.pending_bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(crate) fn failure_error(message: &str) -> LogError {
    LogError::Io(std::io::Error::other(format!("the log writer stopped after an error: {message}")))
}

impl Inner {
    pub(crate) fn failure(&self) -> Option<LogError> {
        self.failed.lock().as_deref().map(failure_error)
    }

    pub(crate) fn set_failure(&self, message: &str) {
        self.failed.lock().get_or_insert_with(|| message.to_owned());
    }

    fn topic(&self, topic: &TopicName) -> Result<Arc<Topic>> {
        self.topics.read().get(topic).cloned().ok_or_else(|| LogError::UnknownTopic(topic.clone()))
    }
}

fn partition_of(topic: &Topic, partition: u32) -> Result<&Partition> {
    topic.partitions.get(partition as usize).ok_or_else(|| LogError::UnknownPartition {
        topic: topic.name.clone(),
        partition,
        partitions: topic.partitions.len() as u32,
    })
}

fn corrupt(path: &Path, reason: impl Into<String>) -> LogError {
    LogError::Corrupt { path: path.display().to_string(), reason: reason.into() }
}

/// The log on local files (see the module docs).
///
/// Notes on the [`Log`] methods:
/// * `append` validates and queues its records when it is called; the returned future
///   only waits for the group commit, so dropping it does not cancel the append.
///   Record size is the encoded size (key + value + 28 bytes of framing).
/// * `read`'s `max_bytes` counts key and value bytes of the returned records; the first
///   record is returned even if it alone is larger.
/// * Reads keep working after `close`; appends and `ensure_topic` fail with
///   [`LogError::Closed`]. Dropping the last handle closes the log.
/// * One handle at a time may open a directory: `open` takes an OS file lock on
///   `dir/lock` and refuses a second opener, in this or another process, with
///   [`LogError::Locked`] naming the holder. `close` (or drop) releases it; the kernel
///   releases it when the process dies.
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held from `open` until the log is closed.
    directory_lock: Mutex<Option<lock::DirectoryLock>>,
}

impl fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedLog").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovering every partition, and starts
    /// the writer thread.
    pub fn open(dir: impl AsRef<Path>, config: EmbeddedLogConfig) -> Result<Arc<EmbeddedLog>> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let directory_lock = lock::DirectoryLock::acquire(&dir)?;
        std::fs::create_dir_all(dir.join("topics"))?;
        std::fs::create_dir_all(dir.join("groups"))?;
        let mut config = config;
        config.segment_bytes = config.segment_bytes.max(1);
        config.max_record_bytes = config.max_record_bytes.min(format::MAX_BODY);
        let next_topic_id = AtomicU64::new(0);
        // After a clean shutdown nothing can be torn: any damage is corruption.
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let after_clean_shutdown = marker.exists();
        let topics = recover_topics(&dir, &next_topic_id, after_clean_shutdown)?;
        if after_clean_shutdown {
            std::fs::remove_file(&marker)?;
            segment::sync_dir(&dir)?;
        }
        let (tx, rx) = mpsc::channel();
        let (notify, _) = tokio::sync::watch::channel(0u64);
        let inner = Arc::new(Inner {
            groups: groups::Groups::new(dir.join("groups")),
            dir,
            config,
            topics: RwLock::new(topics),
            create_lock: Mutex::new(()),
            next_topic_id,
            sender: RwLock::new(Some(tx)),
            closed: AtomicBool::new(false),
            clean_shutdown_written: AtomicBool::new(false),
            pending_bytes: AtomicU64::new(0),
            failed: Mutex::new(None),
            notify,
            group_gate: Mutex::new(()),
        });
        let writer_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("meridian-log-writer".into())
            .spawn(move || writer::run(writer_inner, rx))?;
        Ok(Arc::new(EmbeddedLog { inner, writer: Mutex::new(Some(handle)), directory_lock: Mutex::new(Some(directory_lock)) }))
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings in force.
    pub fn config(&self) -> &EmbeddedLogConfig {
        &self.inner.config
    }

    fn enqueue(&self, topic: &TopicName, records: Vec<AppendRecord>) -> Result<Option<tokio::sync::oneshot::Receiver<Result<Vec<Position>>>>> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let t = inner.topic(topic)?;
        if records.is_empty() {
            return Ok(None);
        }
        if let Some(e) = inner.failure() {
            return Err(e);
        }
        let n = t.partitions.len() as u32;
        let mut bytes = 0u64;
        let mut partitions = Vec::with_capacity(records.len());
        for r in &records {
            let size = format::encoded_len(r.key.len(), r.value.len());
            if size > inner.config.max_record_bytes {
                return Err(LogError::RecordTooLarge { size, max: inner.config.max_record_bytes });
            }
            bytes += size as u64;
            partitions.push(partition_for_key(&r.key, n));
        }
        let before = inner.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        // An append is always let through when nothing is pending, so a batch larger than
        // the limit cannot be refused forever.
        if before > 0 && before + bytes > inner.config.max_pending_bytes {
            inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Overloaded { pending_bytes: before });
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let req = AppendRequest { topic: t, records, partitions, bytes, reply };
        let sent = match inner.sender.read().as_ref() {
            Some(tx) => tx.send(req).is_ok(),
            None => false,
        };
        if !sent {
            inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Closed);
        }
        Ok(Some(rx))
    }

    fn shutdown(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        // Dropping the sender lets the writer drain what is queued and stop.
        drop(self.inner.sender.write().take());
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                return Err(LogError::Io(std::io::Error::other("the log writer thread panicked")));
            }
        }
        if let Some(e) = self.inner.failure() {
            return Err(e);
        }
        if !self.inner.clean_shutdown_written.swap(true, Ordering::AcqRel) {
            groups::write_durably(&self.inner.dir, &self.inner.dir.join(CLEAN_SHUTDOWN_MARKER), b"")?;
        }
        // Nothing more is written: let the next opener in.
        drop(self.directory_lock.lock().take());
        Ok(())
    }

    fn create_topic(&self, name: &TopicName, partitions: u32) -> Result<Arc<Topic>> {
        let topics_dir = self.inner.dir.join("topics");
        let topic_dir = topics_dir.join(name.as_str());
        if topic_dir.exists() {
            // Left over from a creation that crashed before meta.json was written.
            std::fs::remove_dir_all(&topic_dir)?;
        }
        std::fs::create_dir_all(&topic_dir)?;
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let pdir = topic_dir.join(p.to_string());
            std::fs::create_dir(&pdir)?;
            let seg = Segment::create(&pdir, 0)?;
            parts.push(Partition { dir: pdir, segments: RwLock::new(vec![seg]), durable_end: AtomicU64::new(0) });
        }
        segment::sync_dir(&topic_dir)?;
        let meta = serde_json::to_vec(&TopicMeta { partitions }).map_err(std::io::Error::other)?;
        groups::write_durably(&topic_dir, &topic_dir.join("meta.json"), &meta)?;
        segment::sync_dir(&topics_dir)?;
        Ok(Arc::new(Topic {
            id: self.inner.next_topic_id.fetch_add(1, Ordering::Relaxed),
            name: name.clone(),
            partitions: parts,
        }))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "closing the log on drop failed");
        }
    }
}

fn recover_topics(dir: &Path, next_id: &AtomicU64, strict: bool) -> Result<HashMap<TopicName, Arc<Topic>>> {
    let mut topics = HashMap::new();
    for entry in std::fs::read_dir(dir.join("topics"))? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().and_then(|n| TopicName::new(n).ok()) else {
            tracing::warn!(path = %path.display(), "ignoring an entry that is not a topic");
            continue;
        };
        let meta_path = path.join("meta.json");
        let meta = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice::<TopicMeta>(&bytes)
                .map_err(|e| corrupt(&meta_path, format!("bad topic metadata: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(topic = %name, "ignoring a topic whose creation did not finish");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if meta.partitions == 0 || meta.partitions > MAX_PARTITIONS {
            return Err(corrupt(&meta_path, format!("invalid partition count {}", meta.partitions)));
        }
        let partitions = (0..meta.partitions)
            .map(|p| recover_partition(&path.join(p.to_string()), strict))
            .collect::<Result<Vec<_>>>()?;
        let topic = Topic { id: next_id.fetch_add(1, Ordering::Relaxed), name: name.clone(), partitions };
        topics.insert(name, Arc::new(topic));
    }
    Ok(topics)
}

/// Recovers one partition. A torn tail of the last segment is truncated, unless `strict`
/// (the log was shut down cleanly, so there cannot be one).
fn recover_partition(dir: &Path, strict: bool) -> Result<Partition> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| corrupt(dir, format!("partition directory unreadable: {e}")))?;
    for entry in entries {
        let entry = entry?;
        match entry.file_name().to_str().and_then(segment::parse_segment_file_name) {
            Some(base) => files.push((base, entry.path())),
            None => tracing::warn!(path = %entry.path().display(), "ignoring a file that is not a segment"),
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(corrupt(dir, "partition has no segment files"));
    }
    let count = files.len();
    let mut segments = Vec::with_capacity(count);
    let mut expected: Option<u64> = None;
    for (i, (base, path)) in files.into_iter().enumerate() {
        if let Some(e) = expected {
            if base != e {
                return Err(corrupt(&path, format!("segment starts at offset {base} but the previous one ends at {e}")));
            }
        }
        let scan = segment::scan(&path, base)?;
        let last = i + 1 == count;
        match &scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Torn(reason) if last && !strict => {
                let dropped = scan.file_len - scan.valid_len;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(scan.valid_len)?;
                f.sync_all()?;
                tracing::warn!(
                    path = %path.display(),
                    dropped_bytes = dropped,
                    valid_bytes = scan.valid_len,
                    reason = *reason,
                    "truncated a torn tail of the last segment (unacknowledged writes)"
                );
            }
            ScanEnd::Torn(reason) if last => {
                return Err(corrupt(&path, format!("{reason} at byte {} after a clean shutdown", scan.valid_len)));
            }
            ScanEnd::Torn(reason) => {
                return Err(corrupt(&path, format!("{reason} at byte {} of a segment that is not the last", scan.valid_len)));
            }
            ScanEnd::Inconsistent(reason) => return Err(corrupt(&path, reason.clone())),
        }
        expected = Some(scan.next_offset);
        segments.push(segment::open_scanned(path, base, &scan)?);
    }
    Ok(Partition {
        dir: dir.to_path_buf(),
        segments: RwLock::new(segments),
        durable_end: AtomicU64::new(expected.unwrap_or(0)),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Log for EmbeddedLog {
    fn ensure_topic(&self, topic: &TopicName, partitions: u32) -> Result<u32> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidPartitionCount(partitions));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if let Some(t) = self.inner.topics.read().get(topic) {
            return Ok(t.partitions.len() as u32);
        }
        let _creating = self.inner.create_lock.lock();
        if let Some(t) = self.inner.topics.read().get(topic) {
            return Ok(t.partitions.len() as u32);
        }
        let created = self.create_topic(topic, partitions)?;
        self.inner.topics.write().insert(topic.clone(), created);
        Ok(partitions)
    }

    fn topics(&self) -> Vec<TopicInfo> {
        let mut list: Vec<TopicInfo> = self
            .inner
            .topics
            .read()
            .values()
            .map(|t| TopicInfo { name: t.name.clone(), partitions: t.partitions.len() as u32 })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn partition_count(&self, topic: &TopicName) -> Result<u32> {
        Ok(self.inner.topic(topic)?.partitions.len() as u32)
    }

    fn append(&self, topic: &TopicName, records: Vec<AppendRecord>) -> BoxFuture<'static, Result<Vec<Position>>> {
        match self.enqueue(topic, records) {
            Ok(Some(rx)) => async move { rx.await.map_err(|_| LogError::Closed)? }.boxed(),
            Ok(None) => futures::future::ready(Ok(Vec::new())).boxed(),
            Err(e) => futures::future::ready(Err(e)).boxed(),
        }
    }

    fn read(&self, topic: &TopicName, partition: u32, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let t = self.inner.topic(topic)?;
        let p = partition_of(&t, partition)?;
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let end = p.durable_end.load(Ordering::Acquire);
        let (from, segments) = {
            let segs = p.segments.read();
            let from = from.max(segs[0].base_offset);
            if from >= end {
                return Ok(Vec::new());
            }
            let k = segs.partition_point(|s| s.base_offset <= from);
            (from, segs[k.saturating_sub(1)..].to_vec())
        };
        let mut out = Vec::new();
        let mut limits = ReadLimits { max_records, max_bytes, bytes: 0 };
        for seg in segments {
            if seg.read_into(partition, from, end, &mut limits, &mut out)? {
                break;
            }
        }
        Ok(out)
    }

    fn offsets(&self, topic: &TopicName, partition: u32) -> Result<PartitionOffsets> {
        let t = self.inner.topic(topic)?;
        let p = partition_of(&t, partition)?;
        let end = p.durable_end.load(Ordering::Acquire);
        let start = p.segments.read()[0].base_offset;
        Ok(PartitionOffsets { start: start.min(end), end })
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    fn commit_offset(&self, group: &str, topic: &TopicName, partition: u32, next_offset: u64) -> Result<()> {
        validate_group_name(group)?;
        let t = self.inner.topic(topic)?;
        partition_of(&t, partition)?;
        self.inner.groups.commit(group, topic, partition, next_offset)
    }

    fn committed_offset(&self, group: &str, topic: &TopicName, partition: u32) -> Result<Option<u64>> {
        validate_group_name(group)?;
        let t = self.inner.topic(topic)?;
        partition_of(&t, partition)?;
        self.inner.groups.committed(group, topic, partition)
    }

    fn enforce_retention(&self) -> Result<RetentionReport> {
        let cfg = &self.inner.config;
        let mut report = RetentionReport::default();
        if cfg.retention_ms.is_none() && cfg.retention_bytes.is_none() {
            return Ok(report);
        }
        let cutoff = cfg.retention_ms.map(|ms| now_ms().saturating_sub(ms));
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        for t in topics {
            for p in &t.partitions {
                let removed = {
                    let mut segs = p.segments.write();
                    let durable_end = p.durable_end.load(Ordering::Acquire);
                    let mut total: u64 = segs.iter().map(|s| s.len()).sum();
                    let mut n = 0;
                    // Only whole segments whose records are all durable, oldest first, never
                    // the active (last) one.
                    while n + 1 < segs.len() && segs[n + 1].base_offset <= durable_end {
                        let seg = &segs[n];
                        let too_old = cutoff.is_some_and(|c| seg.max_timestamp() < c);
                        let too_big = cfg.retention_bytes.is_some_and(|b| total > b);
                        if !(too_old || too_big) {
                            break;
                        }
                        total -= seg.len();
                        n += 1;
                    }
                    segs.drain(..n).collect::<Vec<_>>()
                };
                if removed.is_empty() {
                    continue;
                }
                for seg in &removed {
                    std::fs::remove_file(&seg.path)?;
                    report.segments_deleted += 1;
                    report.bytes_freed += seg.len();
                    tracing::debug!(path = %seg.path.display(), "retention deleted a segment");
                }
                segment::sync_dir(&p.dir)?;
            }
        }
        Ok(report)
    }

    fn close(&self) -> Result<()> {
        self.shutdown()
    }
}
