//! The conformance suite every [`Log`] backend passes: `log_suite!(factory)` expands to one
//! `#[test]` per check.
//!
//! ```text
//! // crates/<backend>/tests/it/main.rs
//! meridian_log::log_suite!(MyLogFactory::new());
//! ```
//!
//! The factory expression is evaluated once per test. It makes fresh, empty logs and can
//! reopen one (for the durability checks); see [`LogFactory`]. Every check is also a plain
//! public function taking `&mut dyn LogFactory`, so a backend can call one on its own.
//! Each check builds its own tokio runtime (two workers) and enters it, so factories and
//! logs may spawn tasks.

use crate::{partition_for_key, AppendRecord, Log, LogError, PartitionOffsets, Position, Record, TopicInfo, TopicName};
use bytes::Bytes;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Makes the logs the suite runs against.
pub trait LogFactory {
    /// A new, empty log that nothing else uses.
    fn fresh(&mut self) -> Arc<dyn Log>;

    /// A new, empty log whose retention keeps about `retention_bytes` per partition, in
    /// segments (or the backend's unit of deletion) of about `segment_bytes`, so that
    /// [`Log::enforce_retention`] moves the start of a partition that grew past it.
    fn fresh_with_retention(&mut self, segment_bytes: u64, retention_bytes: u64) -> Arc<dyn Log>;

    /// Closes `log` (a log made by this factory; the suite holds no other handle to it)
    /// and opens the same log again, as a restarted server would.
    fn reopen(&mut self, log: Arc<dyn Log>) -> Arc<dyn Log>;
}

/// Expands to one `#[test]` per check of this suite, each running against logs made by
/// `$factory` (an expression evaluated anew in every test, whose value implements
/// [`LogFactory`]).
#[macro_export]
macro_rules! log_suite {
    ($factory:expr) => {
        $crate::log_suite!(@checks $factory;
            topic_creation_is_idempotent_and_keeps_the_partition_count,
            invalid_topic_names_and_partition_counts_are_refused,
            unknown_topics_and_partitions_are_errors,
            partition_for_key_is_stable_and_used_by_append,
            positions_follow_input_order_and_offsets_are_dense_from_zero,
            an_empty_append_returns_no_positions,
            one_call_is_contiguous_per_partition_under_concurrency,
            reads_honour_max_records_and_max_bytes,
            reading_past_the_end_is_empty,
            reading_before_the_start_is_clamped,
            offsets_report_start_and_end,
            subscribe_changes_after_a_durable_append,
            concurrent_appends_lose_nothing_and_leave_no_gaps,
            consumer_group_offsets_commit_read_and_survive_reopen,
            invalid_consumer_group_names_are_refused,
            appended_records_survive_reopen,
            after_close_appends_fail_and_reads_work,
        );
    };
    (@checks $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let mut factory = $factory;
                $crate::conformance::$check(&mut factory);
            }
        )+
    };
}

/// Runs `body` on a fresh two-worker runtime, with the runtime entered meanwhile.
fn run<F: Future>(body: impl FnOnce() -> F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let _entered = runtime.enter();
    let future = body();
    runtime.block_on(future)
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("a valid topic name")
}

fn rec(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, timestamp: i64) -> AppendRecord {
    AppendRecord { key: Bytes::from(key.into()), value: Bytes::from(value.into()), timestamp }
}

/// Reads a whole partition from `from`, a few records at a time.
fn read_all_from(log: &dyn Log, t: &TopicName, partition: u32, from: u64) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    loop {
        let batch = log.read(t, partition, next, 7, usize::MAX).expect("read");
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

fn read_all(log: &dyn Log, t: &TopicName, partition: u32) -> Vec<Record> {
    read_all_from(log, t, partition, 0)
}

fn offsets_of(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

/// An existing topic keeps its partition count whatever a later `ensure_topic` asks for.
pub fn topic_creation_is_idempotent_and_keeps_the_partition_count(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("orders");
        assert!(log.topics().is_empty(), "a fresh log has no topics: {:?}", log.topics());
        assert_eq!(log.ensure_topic(&t, 3).unwrap(), 3, "created with the asked count");
        assert_eq!(log.ensure_topic(&t, 3).unwrap(), 3, "creating again is fine");
        assert_eq!(log.ensure_topic(&t, 7).unwrap(), 3, "an existing topic keeps its count");
        assert_eq!(log.ensure_topic(&t, 1).unwrap(), 3, "an existing topic keeps its count");
        assert_eq!(log.partition_count(&t).unwrap(), 3);
        let other = topic("views.v2_x-y");
        assert_eq!(log.ensure_topic(&other, 1).unwrap(), 1);
        let mut topics = log.topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(topics, vec![TopicInfo { name: t.clone(), partitions: 3 }, TopicInfo { name: other, partitions: 1 }]);
        for p in 0..3 {
            assert_eq!(log.offsets(&t, p).unwrap(), PartitionOffsets { start: 0, end: 0 }, "a new partition is empty");
        }
    });
}

/// Topic names outside `[a-z0-9_.-]{1,128}` and partition counts outside 1-65536 are refused.
pub fn invalid_topic_names_and_partition_counts_are_refused(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let long = "x".repeat(129);
        for bad in ["", ".", "..", "Upper", "a/b", "sp ace", "ü", "a\0b", long.as_str()] {
            assert!(matches!(TopicName::new(bad), Err(LogError::InvalidTopicName(_))), "{bad:?} accepted");
            assert!(serde_json::from_value::<TopicName>(serde_json::Value::String(bad.to_owned())).is_err(), "{bad:?} deserialised");
        }
        assert!(TopicName::new("x".repeat(128)).is_ok(), "128 characters are allowed");
        let t = topic("counted");
        for bad in [0, 65_537, u32::MAX] {
            match log.ensure_topic(&t, bad) {
                Err(LogError::InvalidPartitionCount(n)) => assert_eq!(n, bad),
                other => panic!("{bad} partitions: expected InvalidPartitionCount, got {other:?}"),
            }
        }
        assert!(matches!(log.partition_count(&t), Err(LogError::UnknownTopic(_))), "a refused topic is not created");
        assert!(log.topics().is_empty());
    });
}

/// Every operation on a topic or partition that does not exist says which.
pub fn unknown_topics_and_partitions_are_errors(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let missing = topic("missing");
        let unknown_topic = |r: Result<(), LogError>, what: &str| match r {
            Err(LogError::UnknownTopic(t)) => assert_eq!(t, missing, "{what}"),
            other => panic!("{what}: expected UnknownTopic, got {other:?}"),
        };
        unknown_topic(log.partition_count(&missing).map(drop), "partition_count");
        unknown_topic(log.read(&missing, 0, 0, 1, 1).map(drop), "read");
        unknown_topic(log.offsets(&missing, 0).map(drop), "offsets");
        unknown_topic(log.append(&missing, vec![rec("k", "v", 0)]).await.map(drop), "append");
        unknown_topic(log.commit_offset("g", &missing, 0, 1), "commit_offset");
        unknown_topic(log.committed_offset("g", &missing, 0).map(drop), "committed_offset");

        let t = topic("two");
        log.ensure_topic(&t, 2).unwrap();
        let unknown_partition = |r: Result<(), LogError>, what: &str| match r {
            Err(LogError::UnknownPartition { topic, partition, partitions }) => {
                assert_eq!((topic, partition, partitions), (t.clone(), 2, 2), "{what}");
            }
            other => panic!("{what}: expected UnknownPartition, got {other:?}"),
        };
        unknown_partition(log.read(&t, 2, 0, 1, 1).map(drop), "read");
        unknown_partition(log.offsets(&t, 2).map(drop), "offsets");
        unknown_partition(log.commit_offset("g", &t, 2, 1), "commit_offset");
        unknown_partition(log.committed_offset("g", &t, 2).map(drop), "committed_offset");
        assert!(matches!(log.read(&t, u32::MAX, 0, 1, 1), Err(LogError::UnknownPartition { .. })));
    });
}

/// `partition_for_key` is xxh3 modulo the count (part of the on-disk contract), and
/// `append` puts every record in its key's partition.
pub fn partition_for_key_is_stable_and_used_by_append(factory: &mut dyn LogFactory) {
    // Fixed values: a change here moves users' events to other partitions.
    assert_eq!(partition_for_key(b"", 1), 0);
    assert_eq!(partition_for_key(b"user-1", 1), 0);
    for (key, partitions) in [(&b"user-1"[..], 4), (b"", 4), (b"device-9", 16), (b"\xff\x00", 7)] {
        assert_eq!(partition_for_key(key, partitions), (xxhash_rust::xxh3::xxh3_64(key) % u64::from(partitions)) as u32);
    }
    assert_eq!(partition_for_key(b"user-1", 4), 1);
    assert_eq!(partition_for_key(b"user-2", 4), 0);
    assert_eq!(partition_for_key(b"device-9", 16), 8);
    assert_eq!(partition_for_key(b"user-1", 1000), 57);
    assert_eq!(partition_for_key(b"app:shop", 64), 9);
    let log = factory.fresh();
    run(|| async move {
        let t = topic("keyed");
        log.ensure_topic(&t, 5).unwrap();
        let records: Vec<AppendRecord> = (0..100).map(|i| rec(format!("user-{i}"), format!("{i}"), i)).collect();
        let positions = log.append(&t, records.clone()).await.unwrap();
        let used: HashSet<u32> = positions.iter().map(|p| p.partition).collect();
        assert!(used.len() > 1, "100 keys all went to one partition");
        for (r, p) in records.iter().zip(&positions) {
            assert_eq!(p.partition, partition_for_key(&r.key, 5), "key {:?}", r.key);
        }
    });
}

/// Positions come back in input order; offsets run 0, 1, 2… per partition across calls;
/// each position holds exactly the record appended there.
pub fn positions_follow_input_order_and_offsets_are_dense_from_zero(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("dense");
        log.ensure_topic(&t, 3).unwrap();
        let mut appended: Vec<(AppendRecord, Position)> = Vec::new();
        for call in 0..6 {
            let records: Vec<AppendRecord> = (0..25).map(|i| rec(format!("k{}", (i * 7 + call) % 11), format!("{call}:{i}"), call * 100 + i)).collect();
            let positions = log.append(&t, records.clone()).await.unwrap();
            assert_eq!(positions.len(), records.len(), "one position per record");
            let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for p in &positions {
                per_partition.entry(p.partition).or_default().push(p.offset);
            }
            for (partition, offsets) in &per_partition {
                assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "call {call}, partition {partition}: not contiguous in input order: {offsets:?}");
            }
            appended.extend(records.into_iter().zip(positions));
        }
        let mut expected_next: BTreeMap<u32, u64> = BTreeMap::new();
        for (_, p) in &appended {
            let next = expected_next.entry(p.partition).or_insert(0);
            assert_eq!(p.offset, *next, "offsets are dense from 0 in partition {}", p.partition);
            *next += 1;
        }
        let stored: BTreeMap<u32, Vec<Record>> = (0..3).map(|p| (p, read_all(&*log, &t, p))).collect();
        for (partition, records) in &stored {
            assert_eq!(offsets_of(records), (0..expected_next.get(partition).copied().unwrap_or(0)).collect::<Vec<_>>());
            assert_eq!(log.offsets(&t, *partition).unwrap().end, records.len() as u64);
        }
        for (r, p) in &appended {
            let got = &stored[&p.partition][p.offset as usize];
            assert_eq!((got.partition, got.offset), (p.partition, p.offset));
            assert_eq!((&got.key, &got.value, got.timestamp), (&r.key, &r.value, r.timestamp), "record at {p:?}");
        }
    });
}

/// Appending nothing succeeds with no positions and changes nothing.
pub fn an_empty_append_returns_no_positions(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("empty");
        log.ensure_topic(&t, 1).unwrap();
        assert!(log.append(&t, Vec::new()).await.unwrap().is_empty());
        assert_eq!(log.offsets(&t, 0).unwrap(), PartitionOffsets { start: 0, end: 0 });
    });
}

/// Many calls at once on the same keys: each call's records to one partition still get
/// consecutive offsets, in input order.
pub fn one_call_is_contiguous_per_partition_under_concurrency(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("interleaved");
        log.ensure_topic(&t, 2).unwrap();
        let tasks: Vec<_> = (0..8u32)
            .map(|task| {
                let (log, t) = (log.clone(), t.clone());
                tokio::spawn(async move {
                    let mut calls = Vec::new();
                    for call in 0..20u32 {
                        let records: Vec<AppendRecord> = (0..12u32).map(|i| rec(format!("shared-{}", i % 3), format!("{task}:{call}:{i}"), 0)).collect();
                        let positions = log.append(&t, records.clone()).await.unwrap();
                        calls.push((records, positions));
                    }
                    calls
                })
            })
            .collect();
        let mut calls = Vec::new();
        for task in tasks {
            calls.extend(task.await.unwrap());
        }
        let stored: BTreeMap<u32, Vec<Record>> = (0..2).map(|p| (p, read_all(&*log, &t, p))).collect();
        for (records, positions) in calls {
            let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for (r, p) in records.iter().zip(&positions) {
                per_partition.entry(p.partition).or_default().push(p.offset);
                assert_eq!(stored[&p.partition][p.offset as usize].value, r.value, "record at {p:?}");
            }
            for offsets in per_partition.values() {
                assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "one call's records interleaved with others: {offsets:?}");
            }
        }
    });
}

/// `max_records` caps the count; `max_bytes` caps key + value bytes, but at least one
/// record comes back; `max_records = 0` reads nothing.
pub fn reads_honour_max_records_and_max_bytes(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("limits");
        log.ensure_topic(&t, 1).unwrap();
        // key 2 bytes + value 98 bytes = 100 bytes of payload per record.
        let records: Vec<AppendRecord> = (0..300).map(|i| rec("kk", format!("{i:0>98}"), i)).collect();
        log.append(&t, records).await.unwrap();
        for from in [0u64, 1, 10, 150, 297] {
            let got = log.read(&t, 0, from, 3, usize::MAX).unwrap();
            assert_eq!(offsets_of(&got), (from..(from + 3).min(300)).collect::<Vec<_>>(), "3 records from {from}");
            assert_eq!(got[0].value, Bytes::from(format!("{from:0>98}")));
            assert_eq!(got[0].key, Bytes::from_static(b"kk"));
            assert_eq!(got[0].timestamp, from as i64);
        }
        assert_eq!(offsets_of(&log.read(&t, 0, 298, 10, usize::MAX).unwrap()), vec![298, 299], "fewer than asked at the end");
        assert!(log.read(&t, 0, 0, 0, usize::MAX).unwrap().is_empty(), "max_records 0 reads nothing");
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 100, 0).unwrap()), vec![10], "at least one record");
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 100, 1).unwrap()), vec![10], "at least one record");
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 100, 199).unwrap()), vec![10]);
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 100, 200).unwrap()), vec![10, 11], "exactly two records' bytes");
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 100, 250).unwrap()), vec![10, 11]);
        assert_eq!(offsets_of(&log.read(&t, 0, 10, 2, 1_000).unwrap()), vec![10, 11], "max_records wins when smaller");
        assert_eq!(log.read(&t, 0, 0, 1_000, usize::MAX).unwrap().len(), 300);
    });
}

/// Reading at or past the end returns nothing (not an error), on an empty and a filled
/// partition.
pub fn reading_past_the_end_is_empty(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("ends");
        log.ensure_topic(&t, 1).unwrap();
        assert!(log.read(&t, 0, 0, 10, usize::MAX).unwrap().is_empty(), "an empty partition");
        assert!(log.read(&t, 0, 5, 10, usize::MAX).unwrap().is_empty());
        log.append(&t, (0..5).map(|i| rec("k", format!("{i}"), i)).collect()).await.unwrap();
        assert!(log.read(&t, 0, 5, 10, usize::MAX).unwrap().is_empty(), "at the end");
        assert!(log.read(&t, 0, 6, 10, usize::MAX).unwrap().is_empty(), "past the end");
        assert!(log.read(&t, 0, u64::MAX, 10, usize::MAX).unwrap().is_empty(), "far past the end");
        assert_eq!(offsets_of(&log.read(&t, 0, 4, 10, usize::MAX).unwrap()), vec![4]);
    });
}

/// After retention deleted the oldest records, a read from before the start begins at
/// the start.
pub fn reading_before_the_start_is_clamped(factory: &mut dyn LogFactory) {
    let log = factory.fresh_with_retention(1024, 3000);
    run(|| async move {
        let t = topic("retained");
        log.ensure_topic(&t, 1).unwrap();
        let mut appended = 0u64;
        let mut start = 0;
        // Append until retention has deleted something (a bounded number of rounds).
        for _ in 0..50 {
            for _ in 0..10 {
                log.append(&t, vec![rec("k", format!("{appended:0>200}"), 0)]).await.unwrap();
                appended += 1;
            }
            log.enforce_retention().unwrap();
            start = log.offsets(&t, 0).unwrap().start;
            if start > 0 {
                break;
            }
        }
        assert!(start > 0, "retention of 3000 bytes deleted nothing of {appended} records of 200+ bytes");
        let offsets = log.offsets(&t, 0).unwrap();
        assert_eq!(offsets.end, appended, "retention does not move the end");
        let from_zero = log.read(&t, 0, 0, 3, usize::MAX).unwrap();
        assert_eq!(offsets_of(&from_zero), vec![start, start + 1, start + 2], "a read before the start begins at it");
        assert_eq!(from_zero[0].value, Bytes::from(format!("{start:0>200}")));
        assert_eq!(offsets_of(&log.read(&t, 0, start - 1, 1, usize::MAX).unwrap()), vec![start]);
        let rest = read_all(&*log, &t, 0);
        assert_eq!(offsets_of(&rest), (start..appended).collect::<Vec<_>>(), "everything from the start to the end is kept");
    });
}

/// `offsets()` is `{start: 0, end: 0}` for a new partition and `end` moves with each
/// durable append, per partition.
pub fn offsets_report_start_and_end(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("offsets");
        log.ensure_topic(&t, 4).unwrap();
        let key = "the-key";
        let target = partition_for_key(key.as_bytes(), 4);
        for n in 1..=3u64 {
            let positions = log.append(&t, (0..n).map(|i| rec(key, format!("{i}"), 0)).collect()).await.unwrap();
            let end = positions.last().unwrap().offset + 1;
            assert_eq!(log.offsets(&t, target).unwrap(), PartitionOffsets { start: 0, end });
        }
        assert_eq!(log.offsets(&t, target).unwrap().end, 6);
        for p in (0..4).filter(|p| *p != target) {
            assert_eq!(log.offsets(&t, p).unwrap(), PartitionOffsets { start: 0, end: 0 }, "partition {p} untouched");
        }
    });
}

/// A subscriber sees the value change after an append resolved, and the appended record
/// is readable by then; a waiter parked before the append wakes.
pub fn subscribe_changes_after_a_durable_append(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("wake");
        log.ensure_topic(&t, 1).unwrap();
        let mut rx = log.subscribe();
        let before = *rx.borrow_and_update();
        let waiter = {
            let (log, t) = (log.clone(), t.clone());
            let mut rx = log.subscribe();
            rx.borrow_and_update();
            tokio::spawn(async move {
                rx.changed().await.expect("the log keeps the sender");
                log.read(&t, 0, 0, 10, usize::MAX).unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!rx.has_changed().unwrap(), "no change without an append");
        log.append(&t, vec![rec("k", "hello", 1)]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.expect("changed within 5 s").unwrap();
        assert!(*rx.borrow_and_update() > before, "the value increases");
        let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("the waiter woke").unwrap();
        assert_eq!(woken.len(), 1, "the record is readable when the change is seen");
        assert_eq!(woken[0].value, Bytes::from("hello"));
        let second = *rx.borrow();
        log.append(&t, vec![rec("k", "again", 2)]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.expect("changed again").unwrap();
        assert!(*rx.borrow() > second);
    });
}

/// Many tasks appending at once: every position is handed out once, every record is
/// stored once, partitions have no gaps, and each task's records keep their order.
pub fn concurrent_appends_lose_nothing_and_leave_no_gaps(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("concurrent");
        log.ensure_topic(&t, 4).unwrap();
        const TASKS: u32 = 16;
        const CALLS: u32 = 40;
        const PER_CALL: u32 = 5;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (log, t) = (log.clone(), t.clone());
                tokio::spawn(async move {
                    let mut positions = Vec::new();
                    for call in 0..CALLS {
                        let records = (0..PER_CALL).map(|i| rec(format!("task-{task}"), format!("{task}:{}", call * PER_CALL + i), i64::from(task))).collect();
                        positions.extend(log.append(&t, records).await.unwrap());
                    }
                    positions
                })
            })
            .collect();
        let mut positions = HashSet::new();
        for task in tasks {
            for p in task.await.unwrap() {
                assert!(positions.insert(p), "position {p:?} handed out twice");
            }
        }
        let total = (TASKS * CALLS * PER_CALL) as usize;
        assert_eq!(positions.len(), total);
        let mut seen = HashSet::new();
        let mut last_seq: BTreeMap<u32, i64> = BTreeMap::new();
        let mut stored = 0;
        for p in 0..4 {
            let records = read_all(&*log, &t, p);
            assert_eq!(offsets_of(&records), (0..records.len() as u64).collect::<Vec<_>>(), "partition {p} has a gap");
            assert_eq!(log.offsets(&t, p).unwrap().end, records.len() as u64);
            stored += records.len();
            for r in records {
                assert!(positions.contains(&Position { partition: p, offset: r.offset }), "a record nobody was told about");
                let value = String::from_utf8(r.value.to_vec()).unwrap();
                let (task, seq) = value.split_once(':').unwrap();
                let (task, seq): (u32, i64) = (task.parse().unwrap(), seq.parse().unwrap());
                let previous = last_seq.insert(task, seq).unwrap_or(-1);
                assert!(seq > previous, "task {task}: {seq} stored after {previous}");
                assert!(seen.insert(value), "record stored twice");
            }
        }
        assert_eq!(stored, total, "records lost or added");
    });
}

/// Committed offsets read back per group, topic and partition, replace earlier ones and
/// survive a reopen.
pub fn consumer_group_offsets_commit_read_and_survive_reopen(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    let t = topic("groups");
    let other = topic("groups-other");
    run(|| {
        let (log, t, other) = (log.clone(), t.clone(), other.clone());
        async move {
            log.ensure_topic(&t, 3).unwrap();
            log.ensure_topic(&other, 1).unwrap();
            assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), None, "nothing committed yet");
            log.commit_offset("g1", &t, 0, 10).unwrap();
            log.commit_offset("g1", &t, 2, 7).unwrap();
            assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(10));
            log.commit_offset("g1", &t, 0, 12).unwrap();
            assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(12), "a commit replaces the last one");
            log.commit_offset("Group_2.b-c", &t, 1, 3).unwrap();
            log.commit_offset("g1", &other, 0, 99).unwrap();
            log.commit_offset("g3", &t, 1, 0).unwrap();
            assert_eq!(log.committed_offset("g1", &t, 1).unwrap(), None, "partitions are independent");
            assert_eq!(log.committed_offset("Group_2.b-c", &t, 0).unwrap(), None, "groups are independent");
        }
    });
    let log = factory.reopen(log);
    run(|| async move {
        assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(12));
        assert_eq!(log.committed_offset("g1", &t, 1).unwrap(), None);
        assert_eq!(log.committed_offset("g1", &t, 2).unwrap(), Some(7));
        assert_eq!(log.committed_offset("Group_2.b-c", &t, 1).unwrap(), Some(3));
        assert_eq!(log.committed_offset("g1", &other, 0).unwrap(), Some(99));
        assert_eq!(log.committed_offset("g3", &t, 1).unwrap(), Some(0), "offset 0 is a committed value");
        assert_eq!(log.committed_offset("never", &t, 1).unwrap(), None);
        log.commit_offset("g1", &t, 0, 13).unwrap();
        assert_eq!(log.committed_offset("g1", &t, 0).unwrap(), Some(13), "commits go on after a reopen");
    });
}

/// Group names outside `[A-Za-z0-9_.-]{1,128}` are refused by both commit and read.
pub fn invalid_consumer_group_names_are_refused(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("groups");
        log.ensure_topic(&t, 1).unwrap();
        let long = "x".repeat(129);
        for bad in ["", "a/b", "../x", "sp ace", "ü", long.as_str()] {
            assert!(matches!(log.commit_offset(bad, &t, 0, 1), Err(LogError::InvalidGroupName(_))), "commit with {bad:?}");
            assert!(matches!(log.committed_offset(bad, &t, 0), Err(LogError::InvalidGroupName(_))), "read with {bad:?}");
        }
        log.commit_offset(&"x".repeat(128), &t, 0, 1).unwrap();
        assert_eq!(log.committed_offset(&"x".repeat(128), &t, 0).unwrap(), Some(1));
    });
}

/// Every record whose append resolved is there after a reopen, at the same position, and
/// appends after the reopen continue the offsets.
pub fn appended_records_survive_reopen(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    let t = topic("durable");
    let appended = run(|| {
        let (log, t) = (log.clone(), t.clone());
        async move {
            log.ensure_topic(&t, 2).unwrap();
            let mut appended = Vec::new();
            for call in 0..20 {
                let records: Vec<AppendRecord> = (0..3).map(|i| rec(format!("k{}", (call + i) % 5), format!("{call}:{i}"), call * 10 + i)).collect();
                let positions = log.append(&t, records.clone()).await.unwrap();
                appended.extend(records.into_iter().zip(positions));
            }
            appended
        }
    });
    let log = factory.reopen(log);
    run(|| async move {
        assert_eq!(log.partition_count(&t).unwrap(), 2, "topics survive with their partition count");
        let stored: BTreeMap<u32, Vec<Record>> = (0..2).map(|p| (p, read_all(&*log, &t, p))).collect();
        assert_eq!(stored.values().map(Vec::len).sum::<usize>(), appended.len(), "every acknowledged record is there");
        for (r, p) in &appended {
            let got = &stored[&p.partition][p.offset as usize];
            assert_eq!((&got.key, &got.value, got.timestamp), (&r.key, &r.value, r.timestamp), "record at {p:?}");
        }
        let key = "k0";
        let partition = partition_for_key(key.as_bytes(), 2);
        let end = log.offsets(&t, partition).unwrap().end;
        assert_eq!(end, stored[&partition].len() as u64);
        let positions = log.append(&t, vec![rec(key, "after", 1)]).await.unwrap();
        assert_eq!(positions, vec![Position { partition, offset: end }], "offsets continue after a reopen");
    });
}

/// After `close`, appends fail with `Closed`; reads, offsets and topic listings still work.
pub fn after_close_appends_fail_and_reads_work(factory: &mut dyn LogFactory) {
    let log = factory.fresh();
    run(|| async move {
        let t = topic("closing");
        log.ensure_topic(&t, 1).unwrap();
        let positions = log.append(&t, (0..10).map(|i| rec("k", format!("{i}"), i)).collect()).await.unwrap();
        assert_eq!(positions.len(), 10);
        log.close().unwrap();
        match log.append(&t, vec![rec("k", "late", 0)]).await {
            Err(LogError::Closed) => {}
            other => panic!("append after close: expected Closed, got {other:?}"),
        }
        let records = read_all(&*log, &t, 0);
        assert_eq!(offsets_of(&records), (0..10).collect::<Vec<_>>(), "reads work after close");
        assert_eq!(records[9].value, Bytes::from("9"));
        assert_eq!(log.offsets(&t, 0).unwrap(), PartitionOffsets { start: 0, end: 10 });
        assert_eq!(log.partition_count(&t).unwrap(), 1);
        assert_eq!(log.topics().len(), 1);
    });
}
