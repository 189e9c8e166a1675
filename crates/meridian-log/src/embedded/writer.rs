//! The writer thread: group commit of everything queued, one fdatasync per touched file.
//!
//! Appends are queued on a channel. The thread takes everything queued, assigns offsets,
//! encodes all records into one buffer per touched partition, writes each buffer with one
//! positional write, fdatasyncs each touched file once, then publishes the new durable
//! ends to readers, answers every caller and bumps the `subscribe` counter.
//!
//! When the active segment would grow past `segment_bytes`, it is written and synced
//! first and a new segment is created (its directory entry synced) before the record is
//! placed in it. So every segment but the last is always complete on disk, and only the
//! last one can have a torn tail after a crash.

use super::format;
use super::metrics;
use super::segment::{Segment, INDEX_INTERVAL};
use super::{Inner, Topic};
use crate::{AppendRecord, Position, Result};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One `append` call waiting for the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub(crate) topic: Arc<Topic>,
    pub(crate) records: Vec<AppendRecord>,
    /// Partition of each record.
    pub(crate) partitions: Vec<u32>,
    /// Encoded size of all records (counted in the pending bytes).
    pub(crate) bytes: u64,
    pub(crate) reply: oneshot::Sender<Result<Vec<Position>>>,
}

/// Writer-side state of a partition that has been appended to.
#[derive(Debug)]
struct ActivePartition {
    topic: Arc<Topic>,
    partition: u32,
    segment: Arc<Segment>,
    file: File,
    /// Offset the next record gets.
    next_offset: u64,
    /// Length of the active segment including bytes not yet written out.
    segment_len: u64,
    last_index_position: Option<u64>,
    /// Encoded records of this group not yet written.
    buf: Vec<u8>,
    /// Index entries of records not yet published.
    new_index: Vec<(u64, u64)>,
    max_timestamp: i64,
    touched: bool,
}

impl ActivePartition {
    fn open(topic: &Arc<Topic>, partition: u32) -> Result<ActivePartition> {
        let p = &topic.partitions[partition as usize];
        let segment = p.active_segment();
        let file = segment.open_for_write()?;
        Ok(ActivePartition {
            topic: topic.clone(),
            partition,
            file,
            next_offset: p.durable_end.load(Ordering::Acquire),
            segment_len: segment.len(),
            last_index_position: segment.last_index_position(),
            buf: Vec::new(),
            new_index: Vec::new(),
            max_timestamp: i64::MIN,
            touched: false,
            segment,
        })
    }

    fn push(&mut self, inner: &Inner, record: &AppendRecord) -> Result<u64> {
        let size = format::encoded_len(record.key.len(), record.value.len()) as u64;
        if self.segment_len > 0 && self.segment_len + size > inner.config.segment_bytes {
            self.roll(inner)?;
        }
        let pos = self.segment_len;
        if self.last_index_position.is_none_or(|l| pos - l >= INDEX_INTERVAL) {
            self.new_index.push((self.next_offset, pos));
            self.last_index_position = Some(pos);
        }
        let offset = self.next_offset;
        format::encode(&mut self.buf, offset, record.timestamp, &record.key, &record.value);
        self.next_offset += 1;
        self.segment_len += size;
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        Ok(offset)
    }

    /// Writes the buffered records to the file (not synced).
    fn write_out(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let at = self.segment_len - self.buf.len() as u64;
            self.file.write_all_at(&self.buf, at)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn sync(&self, inner: &Inner) -> std::io::Result<()> {
        if inner.config.fsync {
            let started = Instant::now();
            self.file.sync_data()?;
            metrics::fsync(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Makes the synced state of the active segment visible to readers.
    fn publish_segment(&mut self) {
        self.segment.publish(self.segment_len, &self.new_index, self.max_timestamp);
        self.new_index.clear();
    }

    /// Completes the active segment on disk and starts a new one at `next_offset`.
    fn roll(&mut self, inner: &Inner) -> Result<()> {
        self.write_out()?;
        self.sync(inner)?;
        self.publish_segment();
        let p = &self.topic.partitions[self.partition as usize];
        let segment = Segment::create(&p.dir, self.next_offset)?;
        let file = segment.open_for_write()?;
        p.segments.write().push(segment.clone());
        self.segment = segment;
        self.file = file;
        self.segment_len = 0;
        self.last_index_position = None;
        self.max_timestamp = i64::MIN;
        Ok(())
    }
}

type PartitionKey = (u64, u32);

/// Runs the writer until the channel is closed and drained.
pub(crate) fn run(inner: Arc<Inner>, rx: mpsc::Receiver<AppendRequest>) {
    let mut parts: HashMap<PartitionKey, ActivePartition> = HashMap::new();
    let mut group: Vec<AppendRequest> = Vec::new();
    let mut touched: Vec<PartitionKey> = Vec::new();
    let mut topic_counts: Vec<(Arc<Topic>, u64, u64)> = Vec::new();
    // Requests in the previous group and how long its commit took: used to wait briefly
    // for callers that were just answered to come back (see `collect_group`).
    let mut last_requests = 0usize;
    let mut last_commit = Duration::ZERO;
    while let Ok(first) = rx.recv() {
        group.push(first);
        collect_group(&inner, &rx, &mut group, last_requests, last_commit);
        last_requests = group.len();
        let commit_started = Instant::now();
        let gate = inner.group_gate.lock();
        let bytes: u64 = group.iter().map(|r| r.bytes).sum();
        let result = match inner.failure() {
            Some(e) => Err(e),
            None => commit_group(&inner, &mut parts, &group, &mut touched),
        };
        drop(gate);
        last_commit = commit_started.elapsed();
        match result {
            Ok(positions) => {
                inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                inner.notify.send_modify(|v| *v += 1);
                let mut records = 0u64;
                for (req, pos) in group.drain(..).zip(positions) {
                    records += req.records.len() as u64;
                    match topic_counts.iter_mut().find(|c| Arc::ptr_eq(&c.0, &req.topic)) {
                        Some(c) => {
                            c.1 += req.records.len() as u64;
                            c.2 += req.bytes;
                        }
                        None => topic_counts.push((req.topic.clone(), req.records.len() as u64, req.bytes)),
                    }
                    let _ = req.reply.send(Ok(pos));
                }
                for (topic, n, b) in topic_counts.drain(..) {
                    metrics::appended(topic.name.as_str(), n, b);
                }
                metrics::group_commit(records);
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "log writer failed; refusing further appends");
                inner.set_failure(&message);
                // Offsets handed out in this group were not made durable: forget the
                // writer state so nothing builds on it.
                parts.clear();
                touched.clear();
                inner.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(super::failure_error(&message)));
                }
            }
        }
    }
}

/// Longest the writer waits for more requests before committing a group.
const MAX_COALESCE_WAIT: Duration = Duration::from_micros(500);

/// Adds everything queued to `group`. When the previous group had more requests than are
/// queued now, the callers answered last time are probably about to append again: wait
/// for them up to a quarter of the last commit's duration (at most
/// [`MAX_COALESCE_WAIT`]), so one fsync covers them all instead of a small group taking a
/// whole fsync on its own. The target adapts: after a wait that timed out, the next
/// target is what actually arrived.
fn collect_group(inner: &Inner, rx: &mpsc::Receiver<AppendRequest>, group: &mut Vec<AppendRequest>, target: usize, last_commit: Duration) {
    while let Ok(more) = rx.try_recv() {
        group.push(more);
    }
    if !inner.config.fsync || group.len() >= target {
        return;
    }
    let deadline = Instant::now() + (last_commit / 4).min(MAX_COALESCE_WAIT);
    while group.len() < target {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(more) => {
                group.push(more);
                while let Ok(more) = rx.try_recv() {
                    group.push(more);
                }
            }
            Err(_) => break,
        }
    }
}

fn commit_group(
    inner: &Inner,
    parts: &mut HashMap<PartitionKey, ActivePartition>,
    group: &[AppendRequest],
    touched: &mut Vec<PartitionKey>,
) -> Result<Vec<Vec<Position>>> {
    let mut all_positions = Vec::with_capacity(group.len());
    for req in group {
        let mut positions = Vec::with_capacity(req.records.len());
        for (record, &partition) in req.records.iter().zip(&req.partitions) {
            let key = (req.topic.id, partition);
            let ap = match parts.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(ActivePartition::open(&req.topic, partition)?),
            };
            if !ap.touched {
                ap.touched = true;
                touched.push(key);
            }
            let offset = ap.push(inner, record)?;
            positions.push(Position { partition, offset });
        }
        all_positions.push(positions);
    }
    for key in touched.iter() {
        parts.get_mut(key).expect("touched partition is open").write_out()?;
    }
    sync_all(inner, parts, touched)?;
    for key in touched.drain(..) {
        let ap = parts.get_mut(&key).expect("touched partition is open");
        ap.touched = false;
        ap.publish_segment();
        ap.max_timestamp = i64::MIN;
        ap.topic.partitions[ap.partition as usize].durable_end.store(ap.next_offset, Ordering::Release);
    }
    Ok(all_positions)
}

/// Most threads one group's fsyncs are spread over.
const MAX_SYNC_THREADS: usize = 8;

/// Fdatasyncs every touched file once; in parallel when there are several, so the
/// filesystem can merge them into fewer journal commits.
fn sync_all(inner: &Inner, parts: &HashMap<PartitionKey, ActivePartition>, touched: &[PartitionKey]) -> Result<()> {
    let files: Vec<&ActivePartition> = touched.iter().map(|k| &parts[k]).collect();
    if files.len() <= 1 || !inner.config.fsync {
        for ap in files {
            ap.sync(inner)?;
        }
        return Ok(());
    }
    let threads = files.len().min(MAX_SYNC_THREADS);
    let sync_share = |t: usize| -> std::io::Result<()> {
        files.iter().skip(t).step_by(threads).try_for_each(|ap| ap.sync(inner))
    };
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(threads - 1);
        let mut result = Ok(());
        for t in 1..threads {
            match std::thread::Builder::new().name("meridian-log-fsync".into()).spawn_scoped(s, move || sync_share(t)) {
                Ok(h) => handles.push(h),
                // No thread: sync that share here.
                Err(_) => result = result.and(sync_share(t)),
            }
        }
        result = result.and(sync_share(0));
        for h in handles {
            result = result.and(h.join().unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked"))));
        }
        result
    })?;
    Ok(())
}
