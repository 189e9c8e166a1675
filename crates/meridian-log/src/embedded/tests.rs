//! Tests of the embedded log: round trips, concurrency, recovery, retention, limits.

use super::format::{self, Decoded};
use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn rec(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, timestamp: i64) -> AppendRecord {
    AppendRecord { key: Bytes::from(key.into()), value: Bytes::from(value.into()), timestamp }
}

fn open(dir: &Path, config: EmbeddedLogConfig) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(dir, config).unwrap()
}

/// Reads a whole partition a few records at a time.
fn read_all(log: &dyn Log, t: &TopicName, partition: u32) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = 0;
    loop {
        let batch = log.read(t, partition, next, 7, usize::MAX).unwrap();
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

fn segment_files(dir: &Path, t: &str, partition: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("topics").join(t).join(partition.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn small_segments() -> EmbeddedLogConfig {
    EmbeddedLogConfig { segment_bytes: 1024, ..EmbeddedLogConfig::default() }
}

#[tokio::test]
async fn round_trip_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = open(dir.path(), EmbeddedLogConfig::default());
    let t = topic("events");
    assert_eq!(log.ensure_topic(&t, 4).unwrap(), 4);
    let records: Vec<AppendRecord> = (0..200).map(|i| rec(format!("user-{}", i % 20), format!("value-{i}"), 1000 + i)).collect();
    let positions = log.append(&t, records.clone()).await.unwrap();
    assert_eq!(positions.len(), 200);
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for p in 0..4 {
        by_partition.insert(p, read_all(&*log, &t, p));
    }
    assert_eq!(by_partition.values().map(Vec::len).sum::<usize>(), 200);
    assert!(by_partition.values().filter(|v| !v.is_empty()).count() > 1, "keys should spread over partitions");
    for (r, pos) in records.iter().zip(&positions) {
        assert_eq!(pos.partition, partition_for_key(&r.key, 4));
        let got = &by_partition[&pos.partition][pos.offset as usize];
        assert_eq!(got.offset, pos.offset);
        assert_eq!(got.partition, pos.partition);
        assert_eq!((&got.key, &got.value, got.timestamp), (&r.key, &r.value, r.timestamp));
    }
    for p in 0..4 {
        let o = log.offsets(&t, p).unwrap();
        assert_eq!(o, PartitionOffsets { start: 0, end: by_partition[&p].len() as u64 });
    }
    log.close().unwrap();
}

#[tokio::test]
async fn offsets_dense_and_ordered_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), EmbeddedLogConfig::default());
    let t = topic("dense");
    log.ensure_topic(&t, 3).unwrap();
    for batch in 0..10 {
        let records = (0..30).map(|i| rec(format!("k{}", i % 5), format!("{batch}:{i}"), 0)).collect();
        let positions = log.append(&t, records).await.unwrap();
        // Records of one call to one partition are contiguous and in input order.
        let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for p in positions {
            per_partition.entry(p.partition).or_default().push(p.offset);
        }
        for offsets in per_partition.values() {
            assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
        }
    }
    let mut seen_per_key: BTreeMap<Bytes, Vec<(u32, u32)>> = BTreeMap::new();
    for p in 0..3 {
        let all = read_all(&*log, &t, p);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "offsets are dense");
            let v = std::str::from_utf8(&r.value).unwrap();
            let (b, i) = v.split_once(':').unwrap();
            seen_per_key.entry(r.key.clone()).or_default().push((b.parse().unwrap(), i.parse().unwrap()));
        }
    }
    assert_eq!(seen_per_key.len(), 5);
    for seq in seen_per_key.values() {
        assert_eq!(seq.len(), 60);
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "per-key order kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_readable_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = open(dir.path(), EmbeddedLogConfig::default());
    let t = topic("concurrent");
    log.ensure_topic(&t, 4).unwrap();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let log = log.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for batch in 0..100u32 {
                let records = (0..10u32)
                    .map(|i| rec(format!("task-{task}"), format!("{task}:{}", batch * 10 + i), i64::from(task)))
                    .collect();
                positions.extend(log.append(&t, records).await.unwrap());
            }
            positions
        }));
    }
    let mut positions = HashSet::new();
    for task in tasks {
        for p in task.await.unwrap() {
            assert!(positions.insert(p), "position {p:?} handed out twice");
        }
    }
    assert_eq!(positions.len(), 8000);
    let mut seen = HashSet::new();
    let mut last_seq: BTreeMap<u32, i64> = BTreeMap::new();
    for p in 0..4 {
        for r in read_all(&*log, &t, p) {
            assert!(positions.contains(&Position { partition: p, offset: r.offset }));
            let v = std::str::from_utf8(&r.value).unwrap().to_owned();
            let (task, seq) = v.split_once(':').unwrap();
            let (task, seq): (u32, i64) = (task.parse().unwrap(), seq.parse().unwrap());
            let prev = last_seq.insert(task, seq).unwrap_or(-1);
            assert!(seq > prev, "task {task}: {seq} after {prev}");
            assert!(seen.insert(v), "record read twice");
        }
    }
    assert_eq!(seen.len(), 8000);
}

#[tokio::test]
async fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("reopen");
    {
        let log = open(dir.path(), small_segments());
        log.ensure_topic(&t, 2).unwrap();
        for i in 0..50 {
            log.append(&t, vec![rec(format!("k{}", i % 3), vec![b'x'; 100], i)]).await.unwrap();
        }
        log.close().unwrap();
        assert!(matches!(log.append(&t, vec![rec("k", "v", 0)]).await, Err(LogError::Closed)));
        assert!(matches!(log.ensure_topic(&topic("other"), 1), Err(LogError::Closed)));
        // Reads still work after close.
        assert_eq!(read_all(&*log, &t, 0).len() + read_all(&*log, &t, 1).len(), 50);
    }
    let log = open(dir.path(), small_segments());
    assert_eq!(log.topics(), vec![TopicInfo { name: t.clone(), partitions: 2 }]);
    assert_eq!(log.ensure_topic(&t, 7).unwrap(), 2, "an existing topic keeps its count");
    let mut total = 0;
    for p in 0..2 {
        let all = read_all(&*log, &t, p);
        assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as u64));
        assert!(all.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        total += all.len();
        let end = log.offsets(&t, p).unwrap().end;
        assert_eq!(end, all.len() as u64);
    }
    assert_eq!(total, 50);
    let pos = log.append(&t, vec![rec("k0", "after", 99)]).await.unwrap();
    let end_before = read_all(&*log, &t, pos[0].partition).len() as u64 - 1;
    assert_eq!(pos[0].offset, end_before);
}

#[tokio::test]
async fn drop_drains_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("drop");
    let futures = {
        let log = open(dir.path(), EmbeddedLogConfig::default());
        log.ensure_topic(&t, 1).unwrap();
        (0..20).map(|i| log.append(&t, vec![rec("k", format!("{i}"), i)])).collect::<Vec<_>>()
    };
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap()[0].offset, i as u64);
    }
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(log.offsets(&t, 0).unwrap().end, 20);
}

async fn write_ten(dir: &Path, t: &TopicName) -> u64 {
    let log = open(dir, EmbeddedLogConfig::default());
    log.ensure_topic(t, 1).unwrap();
    for i in 0..10 {
        log.append(t, vec![rec("key", format!("value-{i}"), i)]).await.unwrap();
    }
    log.close().unwrap();
    let files = segment_files(dir, t.as_str(), 0);
    assert_eq!(files.len(), 1);
    simulate_crash(dir);
    std::fs::metadata(&files[0]).unwrap().len()
}

/// Removes the clean-shutdown marker, so the next open recovers as after a crash.
fn simulate_crash(dir: &Path) {
    std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_MARKER)).unwrap();
}

#[tokio::test]
async fn torn_tail_after_clean_shutdown_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("clean");
    write_ten(dir.path(), &t).await;
    // Reopening and closing again (no crash) leaves the marker.
    open(dir.path(), EmbeddedLogConfig::default()).close().unwrap();
    assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    let seg = segment_files(dir.path(), "clean", 0).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    match EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("clean shutdown"), "{reason}"),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing truncated");
}

#[tokio::test]
async fn torn_tail_garbage_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("torn");
    let len = write_ten(dir.path(), &t).await;
    let seg = segment_files(dir.path(), "torn", 0).remove(0);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xAB; 37]).unwrap();
    drop(f);
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "garbage removed");
    let all = read_all(&*log, &t, 0);
    assert_eq!(all.len(), 10);
    assert_eq!(all[9].value, Bytes::from("value-9"));
    let pos = log.append(&t, vec![rec("key", "new", 10)]).await.unwrap();
    assert_eq!(pos[0].offset, 10);
    assert_eq!(read_all(&*log, &t, 0)[10].value, Bytes::from("new"));
}

#[tokio::test]
async fn torn_tail_partial_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("partial");
    let len = write_ten(dir.path(), &t).await;
    let seg = segment_files(dir.path(), "partial", 0).remove(0);
    let record_len = format::encoded_len(3, "value-9".len()) as u64;
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - record_len);
    let all = read_all(&*log, &t, 0);
    assert_eq!(all.len(), 9);
    assert_eq!(log.offsets(&t, 0).unwrap().end, 9);
    let pos = log.append(&t, vec![rec("key", "again", 10)]).await.unwrap();
    assert_eq!(pos[0].offset, 9);
    drop(log);
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(read_all(&*log, &t, 0)[9].value, Bytes::from("again"));
}

#[tokio::test]
async fn torn_tail_checksum_mismatch_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("crc");
    let len = write_ten(dir.path(), &t).await;
    let seg = segment_files(dir.path(), "crc", 0).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(read_all(&*log, &t, 0).len(), 9);
    assert!(std::fs::metadata(&seg).unwrap().len() < len);
}

/// Writes records until partition 0 of `t` has at least `segments` segment files.
async fn fill_segments(log: &EmbeddedLog, t: &TopicName, segments: usize, timestamp: i64) -> u64 {
    let mut n = 0;
    while segment_files(log.dir(), t.as_str(), 0).len() < segments {
        log.append(t, vec![rec("k", vec![b'v'; 200], timestamp)]).await.unwrap();
        n += 1;
    }
    n
}

#[tokio::test]
async fn corruption_in_a_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("middle");
    {
        let log = open(dir.path(), small_segments());
        log.ensure_topic(&t, 1).unwrap();
        fill_segments(&log, &t, 3, 0).await;
        log.close().unwrap();
    }
    let files = segment_files(dir.path(), "middle", 0);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[40] ^= 0xFF; // inside the first record's value; valid records follow
    std::fs::write(&files[0], &bytes).unwrap();
    match EmbeddedLog::open(dir.path(), small_segments()) {
        Err(LogError::Corrupt { path, reason }) => {
            assert!(path.ends_with(".seg"), "{path}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // The file was not touched.
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
}

#[tokio::test]
async fn truncated_non_last_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("short");
    {
        let log = open(dir.path(), small_segments());
        log.ensure_topic(&t, 1).unwrap();
        fill_segments(&log, &t, 2, 0).await;
    }
    let files = segment_files(dir.path(), "short", 0);
    let len = std::fs::metadata(&files[0]).unwrap().len();
    OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(len - 3).unwrap();
    assert!(matches!(EmbeddedLog::open(dir.path(), small_segments()), Err(LogError::Corrupt { .. })));
}

#[tokio::test]
async fn missing_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("gap");
    {
        let log = open(dir.path(), small_segments());
        log.ensure_topic(&t, 1).unwrap();
        fill_segments(&log, &t, 3, 0).await;
    }
    let files = segment_files(dir.path(), "gap", 0);
    std::fs::remove_file(&files[1]).unwrap();
    assert!(matches!(EmbeddedLog::open(dir.path(), small_segments()), Err(LogError::Corrupt { .. })));
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("roll");
    let log = open(dir.path(), small_segments());
    log.ensure_topic(&t, 1).unwrap();
    let records: Vec<AppendRecord> = (0..40).map(|i| rec("k", vec![i as u8; 200], i)).collect();
    log.append(&t, records).await.unwrap();
    let files = segment_files(dir.path(), "roll", 0);
    assert!(files.len() >= 8, "{} segments", files.len());
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 1024);
    }
    let all = log.read(&t, 0, 0, 1000, usize::MAX).unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as u64 && r.value[0] == i as u8));
    let mid = log.read(&t, 0, 17, 5, usize::MAX).unwrap();
    assert_eq!(mid.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![17, 18, 19, 20, 21]);
    drop(log);
    let log = open(dir.path(), small_segments());
    assert_eq!(log.read(&t, 0, 0, 1000, usize::MAX).unwrap().len(), 40);
    assert_eq!(log.append(&t, vec![rec("k", "x", 0)]).await.unwrap()[0].offset, 40);
}

#[tokio::test]
async fn torn_tail_of_last_segment_among_many() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("many");
    let n = {
        let log = open(dir.path(), small_segments());
        log.ensure_topic(&t, 1).unwrap();
        let n = fill_segments(&log, &t, 4, 0).await;
        log.append(&t, vec![rec("k", vec![b'v'; 200], 0)]).await.unwrap();
        n + 1
    };
    simulate_crash(dir.path());
    let files = segment_files(dir.path(), "many", 0);
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    OpenOptions::new().write(true).open(last).unwrap().set_len(len - 100).unwrap();
    let log = open(dir.path(), small_segments());
    assert_eq!(log.offsets(&t, 0).unwrap().end, n - 1);
    assert_eq!(log.read(&t, 0, 0, 10_000, usize::MAX).unwrap().len() as u64, n - 1);
    assert_eq!(log.append(&t, vec![rec("k", "x", 0)]).await.unwrap()[0].offset, n - 1);
    assert_eq!(segment_files(dir.path(), "many", 0).len(), files.len());
}

#[tokio::test]
async fn retention_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("size");
    let config = EmbeddedLogConfig { retention_bytes: Some(3000), ..small_segments() };
    let log = open(dir.path(), config.clone());
    log.ensure_topic(&t, 1).unwrap();
    let n = fill_segments(&log, &t, 8, now_ms()).await;
    let before: u64 = segment_files(dir.path(), "size", 0).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let report = log.enforce_retention().unwrap();
    assert!(report.segments_deleted >= 4, "{report:?}");
    let files = segment_files(dir.path(), "size", 0);
    let after: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert_eq!(before - after, report.bytes_freed);
    assert!(after <= 3000, "{after}");
    assert!(after + 1024 > 3000, "deleted no more than needed: {after}");
    let offsets = log.offsets(&t, 0).unwrap();
    assert!(offsets.start > 0);
    assert_eq!(offsets.end, n);
    let first = files[0].file_name().unwrap().to_str().unwrap();
    assert_eq!(segment::parse_segment_file_name(first), Some(offsets.start));
    // Reading below the start is clamped to it.
    let got = log.read(&t, 0, 0, 1, usize::MAX).unwrap();
    assert_eq!(got[0].offset, offsets.start);
    assert_eq!(log.enforce_retention().unwrap(), RetentionReport::default());
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.offsets(&t, 0).unwrap(), offsets);
}

#[tokio::test]
async fn retention_by_age_keeps_recent_and_active_segments() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("age");
    let config = EmbeddedLogConfig { retention_ms: Some(60_000), ..small_segments() };
    let log = open(dir.path(), config);
    log.ensure_topic(&t, 1).unwrap();
    let old = now_ms() - 3_600_000;
    let n_old = fill_segments(&log, &t, 4, old).await;
    let n_new = fill_segments(&log, &t, 7, now_ms()).await;
    let report = log.enforce_retention().unwrap();
    // The segments holding only old records go; the one where old and new meet stays.
    assert_eq!(report.segments_deleted, 3, "{report:?}");
    let start = log.offsets(&t, 0).unwrap().start;
    assert!(start > 0 && start < n_old, "start {start}");
    let kept = log.read(&t, 0, 0, 10_000, usize::MAX).unwrap();
    assert_eq!(kept.len() as u64, n_old + n_new - start);

    // Only old records: everything but the active segment is deleted.
    let t2 = topic("age-all-old");
    log.ensure_topic(&t2, 1).unwrap();
    fill_segments(&log, &t2, 3, old).await;
    let report = log.enforce_retention().unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert_eq!(segment_files(dir.path(), "age-all-old", 0).len(), 1);
    let o = log.offsets(&t2, 0).unwrap();
    assert!(o.start > 0 && o.start < o.end);
}

#[tokio::test]
async fn overload_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("overload");
    let log = open(dir.path(), EmbeddedLogConfig { max_pending_bytes: 500, ..EmbeddedLogConfig::default() });
    log.ensure_topic(&t, 1).unwrap();
    let gate = log.inner.group_gate.lock();
    // The writer is stalled; nothing pending yet, so even a large batch is accepted.
    let first = log.append(&t, vec![rec("k", vec![0; 300], 0), rec("k", vec![0; 300], 0)]);
    for value in [vec![0; 300], b"tiny".to_vec()] {
        match log.append(&t, vec![rec("k", value, 0)]).now_or_never().expect("refused without waiting") {
            Err(LogError::Overloaded { pending_bytes }) => {
                assert_eq!(pending_bytes, 2 * format::encoded_len(1, 300) as u64)
            }
            other => panic!("expected overload, got {other:?}"),
        }
    }
    drop(gate);
    assert_eq!(first.await.unwrap().len(), 2);
    assert_eq!(log.inner.pending_bytes.load(Ordering::Acquire), 0);
    assert_eq!(log.append(&t, vec![rec("k", vec![0; 300], 0)]).await.unwrap()[0].offset, 2);
}

#[tokio::test]
async fn overload_while_stalled_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("stalled");
    let log = open(dir.path(), EmbeddedLogConfig { max_pending_bytes: 1000, ..EmbeddedLogConfig::default() });
    log.ensure_topic(&t, 2).unwrap();
    let gate = log.inner.group_gate.lock();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let f = log.append(&t, vec![rec(format!("k{i}"), vec![0; 100], 0)]);
        match f.now_or_never() {
            None => accepted.push(i),
            Some(Err(LogError::Overloaded { .. })) => refused += 1,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    // 1000 bytes hold 7 records of 128 bytes.
    assert_eq!(accepted.len(), 7);
    assert_eq!(refused, 13);
    drop(gate);
}

#[tokio::test]
async fn record_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("large");
    let log = open(dir.path(), EmbeddedLogConfig { max_record_bytes: 1000, ..EmbeddedLogConfig::default() });
    log.ensure_topic(&t, 1).unwrap();
    let ok = vec![0; 1000 - format::RECORD_OVERHEAD - 1];
    log.append(&t, vec![rec("k", ok, 0)]).await.unwrap();
    match log.append(&t, vec![rec("k", "small", 0), rec("k", vec![0; 1000], 0)]).await {
        Err(LogError::RecordTooLarge { size, max }) => {
            assert_eq!(max, 1000);
            assert_eq!(size, 1000 + 1 + format::RECORD_OVERHEAD);
        }
        other => panic!("expected too large, got {other:?}"),
    }
    // Nothing of the refused batch was written.
    assert_eq!(log.offsets(&t, 0).unwrap().end, 1);
}

#[tokio::test]
async fn consumer_offsets_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("groups");
    {
        let log = open(dir.path(), EmbeddedLogConfig::default());
        log.ensure_topic(&t, 3).unwrap();
        assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), None);
        log.commit_offset("g1", &t, 0, 10).unwrap();
        log.commit_offset("g1", &t, 2, 7).unwrap();
        log.commit_offset("g1", &t, 0, 12).unwrap();
        log.commit_offset("Group_2.b-c", &t, 1, 3).unwrap();
        assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(12));
    }
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(12));
    assert_eq!(log.committed_offset("g1", &t, 1).unwrap(), None);
    assert_eq!(log.committed_offset("g1", &t, 2).unwrap(), Some(7));
    assert_eq!(log.committed_offset("Group_2.b-c", &t, 1).unwrap(), Some(3));
    assert_eq!(log.committed_offset("other", &t, 1).unwrap(), None);
    for bad in ["", "a/b", "../x", "sp ace", "ü", &"x".repeat(129)] {
        assert!(matches!(log.commit_offset(bad, &t, 0, 1), Err(LogError::InvalidGroupName(_))), "{bad:?}");
        assert!(matches!(log.committed_offset(bad, &t, 0), Err(LogError::InvalidGroupName(_))), "{bad:?}");
    }
    assert!(log.commit_offset(&"x".repeat(128), &t, 0, 1).is_ok());
    assert!(matches!(log.commit_offset("g1", &t, 3, 1), Err(LogError::UnknownPartition { partitions: 3, .. })));
    assert!(matches!(log.commit_offset("g1", &topic("nope"), 0, 1), Err(LogError::UnknownTopic(_))));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("groups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn subscribe_wakes_after_append() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("wake");
    let log = open(dir.path(), EmbeddedLogConfig::default());
    log.ensure_topic(&t, 1).unwrap();
    let mut rx = log.subscribe();
    let before = *rx.borrow_and_update();
    let reader = {
        let log = log.clone();
        let t = t.clone();
        tokio::spawn(async move {
            loop {
                let got = log.read(&t, 0, 0, 10, usize::MAX).unwrap();
                if !got.is_empty() {
                    return got;
                }
                rx.changed().await.unwrap();
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    log.append(&t, vec![rec("k", "hello", 1)]).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await.unwrap().unwrap();
    assert_eq!(got[0].value, Bytes::from("hello"));
    assert!(*log.subscribe().borrow() > before);
}

#[tokio::test]
async fn read_limits_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("limits");
    let log = open(dir.path(), EmbeddedLogConfig::default());
    log.ensure_topic(&t, 1).unwrap();
    let records = (0..5000).map(|i| rec("kk", format!("{i:0>98}"), i)).collect();
    log.append(&t, records).await.unwrap();
    // Random access through the sparse index.
    for from in [0u64, 1, 39, 40, 41, 1234, 2500, 4999] {
        let got = log.read(&t, 0, from, 3, usize::MAX).unwrap();
        let want: Vec<u64> = (from..(from + 3).min(5000)).collect();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), want);
        assert_eq!(got[0].value, Bytes::from(format!("{from:0>98}")));
    }
    assert!(log.read(&t, 0, 5000, 10, usize::MAX).unwrap().is_empty());
    assert!(log.read(&t, 0, 9999, 10, usize::MAX).unwrap().is_empty());
    assert!(log.read(&t, 0, 0, 0, usize::MAX).unwrap().is_empty());
    // max_bytes counts key + value (100 bytes here); at least one record comes back.
    assert_eq!(log.read(&t, 0, 10, 100, 1).unwrap().len(), 1);
    assert_eq!(log.read(&t, 0, 10, 100, 250).unwrap().len(), 2);
    assert_eq!(log.read(&t, 0, 10, 100, 300).unwrap().len(), 3);
    assert_eq!(log.read(&t, 0, 0, 100_000, usize::MAX).unwrap().len(), 5000);
    assert!(matches!(log.read(&t, 1, 0, 1, 1), Err(LogError::UnknownPartition { partition: 1, partitions: 1, .. })));
    assert!(matches!(log.read(&topic("nope"), 0, 0, 1, 1), Err(LogError::UnknownTopic(_))));
    assert!(matches!(log.offsets(&topic("nope"), 0), Err(LogError::UnknownTopic(_))));
    assert!(matches!(log.append(&topic("nope"), vec![rec("k", "v", 0)]).await, Err(LogError::UnknownTopic(_))));
    assert!(log.append(&t, Vec::new()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_while_appending_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), EmbeddedLogConfig::default());
    let busy = topic("busy");
    log.ensure_topic(&busy, 2).unwrap();
    let appender = {
        let log = log.clone();
        let busy = busy.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                log.append(&busy, vec![rec(format!("{i}"), "v", i)]).await.unwrap();
            }
        })
    };
    let creators: Vec<_> = (0..4)
        .map(|i| {
            let log = log.clone();
            tokio::task::spawn_blocking(move || {
                let t = topic(&format!("new-{}", i % 2));
                let n = log.ensure_topic(&t, 3).unwrap();
                assert_eq!(n, 3);
                t
            })
        })
        .collect();
    for c in creators {
        let t = c.await.unwrap();
        log.append(&t, vec![rec("k", "v", 0)]).await.unwrap();
    }
    appender.await.unwrap();
    let names: Vec<String> = log.topics().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, vec!["busy", "new-0", "new-1"]);
    assert!(matches!(log.ensure_topic(&topic("zero"), 0), Err(LogError::InvalidPartitionCount(0))));
    drop(log);
    let log = open(dir.path(), EmbeddedLogConfig::default());
    assert_eq!(log.partition_count(&topic("new-1")).unwrap(), 3);
    assert_eq!((0..2).map(|p| log.offsets(&busy, p).unwrap().end).sum::<u64>(), 200);
}

#[test]
fn config_deserializes_with_defaults() {
    let c: EmbeddedLogConfig = serde_json::from_str(r#"{"segment_bytes": 1000, "retention_ms": 5}"#).unwrap();
    assert_eq!(c.segment_bytes, 1000);
    assert_eq!(c.retention_ms, Some(5));
    assert_eq!(c.max_pending_bytes, EmbeddedLogConfig::default().max_pending_bytes);
    assert!(c.fsync);
    assert!(serde_json::from_str::<EmbeddedLogConfig>(r#"{"segment_byte": 1}"#).is_err());
}

#[test]
fn segment_file_names_round_trip() {
    assert_eq!(segment::segment_file_name(42), "00000000000000000042.seg");
    assert_eq!(segment::parse_segment_file_name("00000000000000000042.seg"), Some(42));
    assert_eq!(segment::parse_segment_file_name("42.seg"), None);
    assert_eq!(segment::parse_segment_file_name("0000000000000000004x.seg"), None);
    assert_eq!(segment::parse_segment_file_name("00000000000000000042.seg.tmp"), None);
}

fn encode_one(offset: u64, timestamp: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    format::encode(&mut buf, offset, timestamp, key, value);
    buf
}

proptest! {
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Decoded::Record(f) = format::decode(&bytes) {
            prop_assert!(f.size <= bytes.len());
        }
    }

    #[test]
    fn records_round_trip(
        offset in any::<u64>(),
        timestamp in any::<i64>(),
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..512),
        trailing in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = encode_one(offset, timestamp, &key, &value);
        prop_assert_eq!(buf.len(), format::encoded_len(key.len(), value.len()));
        let size = buf.len();
        buf.extend_from_slice(&trailing);
        match format::decode(&buf) {
            Decoded::Record(f) => {
                prop_assert_eq!(f.offset, offset);
                prop_assert_eq!(f.timestamp, timestamp);
                prop_assert_eq!(&buf[f.key.clone()], &key[..]);
                prop_assert_eq!(&buf[f.value.clone()], &value[..]);
                prop_assert_eq!(f.size, size);
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
        // Every strict prefix is incomplete, never a record.
        for cut in [0, 1, 7, 8, size / 2, size - 1] {
            let is_incomplete = matches!(format::decode(&buf[..cut]), Decoded::Incomplete { .. });
            prop_assert!(is_incomplete);
        }
    }

    #[test]
    fn mutated_records_are_detected(
        key in proptest::collection::vec(any::<u8>(), 0..32),
        value in proptest::collection::vec(any::<u8>(), 0..128),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        extra in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut buf = encode_one(7, 9, &key, &value);
        let i = at.index(buf.len());
        buf[i] ^= 1 << bit;
        let decoded = format::decode(&buf);
        if i >= 4 {
            // A single flipped bit outside the length is always caught by crc32c.
            prop_assert!(matches!(decoded, Decoded::Invalid(_)), "flip at {} decoded as {:?}", i, decoded);
        } else {
            prop_assert!(!matches!(decoded, Decoded::Record(_)));
        }
        for (at, byte) in extra {
            let i = at.index(buf.len());
            buf[i] = byte;
            if let Decoded::Record(f) = format::decode(&buf) {
                prop_assert!(f.size <= buf.len());
            }
        }
    }
}

proptest! {
    #[test]
    fn scan_results_do_not_depend_on_the_read_chunk(
        records in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..16), proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        chunk in 1usize..200,
    ) {
        let mut bytes = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            format::encode(&mut bytes, 5 + i as u64, i as i64, key, value);
        }
        let records_len = bytes.len() as u64;
        bytes.extend_from_slice(&tail);
        let whole = segment::scan_source(&bytes[..], 5, 1 << 20).unwrap();
        let chunked = segment::scan_source(&bytes[..], 5, chunk).unwrap();
        prop_assert_eq!((whole.valid_len, whole.next_offset, &whole.index, &whole.end), (chunked.valid_len, chunked.next_offset, &chunked.index, &chunked.end));
        prop_assert!(whole.valid_len >= records_len, "every encoded record is valid");
        prop_assert!(whole.next_offset >= 5 + records.len() as u64);
        prop_assert_eq!(whole.end == segment::ScanEnd::Clean, whole.valid_len == bytes.len() as u64);
    }
}

#[test]
fn a_scan_of_a_file_and_of_its_bytes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(segment::segment_file_name(0));
    let mut bytes = Vec::new();
    for i in 0..50u64 {
        format::encode(&mut bytes, i, i as i64, b"key", &vec![i as u8; 300]);
    }
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();
    let from_file = segment::scan(&path, 0).unwrap();
    let from_bytes = segment::scan_source(&bytes[..], 0, 7).unwrap();
    assert_eq!((from_file.valid_len, from_file.next_offset, &from_file.index), (from_bytes.valid_len, from_bytes.next_offset, &from_bytes.index));
    assert_eq!(from_file.end, segment::ScanEnd::Torn("partial record"));
    assert_eq!(from_bytes.end, from_file.end);
    assert_eq!(from_file.next_offset, 50);
}
