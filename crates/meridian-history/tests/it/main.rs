//! End-to-end tests of the history subsystem: events appended to the real embedded log,
//! the history processor run by the real runtime over a redb store, read through the
//! service, with an injected clock; `crash` kills a child process in the middle of a round.

use bytes::Bytes;
use meridian_event::{Action, AppId, DeviceId, Event, EventId, Target, TargetType, Timestamp, UserId};
use meridian_history::hot::embedded::EmbeddedHotTier;
use meridian_history::hot::{HotConfig, HotTier};
use meridian_history::model::normalize_ms;
use meridian_history::{
    ColdTier, Entry, Error, HistoryConfig, HistoryService, InMemoryCatalog, ManualClock, Owner, RebuildConfig, SkuInfo,
};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{KvStore, RedbStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod crash;

const DAY: i64 = 86_400_000;
const APP: &str = "shop";

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    log: Arc<EmbeddedLog>,
    store: Arc<dyn KvStore>,
    topic: TopicName,
    clock: Arc<ManualClock>,
    hot: Arc<EmbeddedHotTier>,
    service: Arc<HistoryService>,
    runtime: Option<Runtime>,
    config: HistoryConfig,
    seq: AtomicU64,
    t0: i64,
}

/// SKU s belongs to SPU s / 10 (so 11 and 12 share an SPU); SKUs ≥ 900 are unknown.
fn catalog() -> Arc<InMemoryCatalog> {
    Arc::new(InMemoryCatalog::new((1..900u64).map(|s| (s, SkuInfo { spu: s / 10, name: format!("sku {s}").into(), image: format!("/img/{s}.jpg").into() }))))
}

fn fixture(max_items: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(dir.path().join("state.redb")).unwrap());
    fixture_on(dir, store, max_items)
}

/// A fixture over `store` (a `MemoryStore` where a test commits thousands of times and
/// fsyncs would only make it slow).
fn fixture_on(dir: tempfile::TempDir, store: Arc<dyn KvStore>, max_items: usize) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let log = rt.block_on(async { EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()) }).unwrap();
    let topic = TopicName::new("events").unwrap();
    log.ensure_topic(&topic, 3).unwrap();
    let t0 = normalize_ms(Timestamp::now().0);
    let clock = Arc::new(ManualClock::new(t0));
    let config = HistoryConfig { max_items, catalog_batch_size: 3, ..HistoryConfig::default() };
    let hot = Arc::new(EmbeddedHotTier::new(HotConfig { max_items, ttl_ms: config.hot_ttl_ms() }, 64 << 20));
    let service = Arc::new(HistoryService::new(config.clone(), hot.clone(), store.clone(), catalog(), clock.clone()).unwrap());
    let mut f = Fixture { _dir: dir, rt, log, store, topic, clock, hot, service, runtime: None, config, seq: AtomicU64::new(0), t0 };
    f.start();
    f
}

impl Fixture {
    fn start(&mut self) {
        let runtime = Runtime::new(self.log.clone(), self.store.clone(), RuntimeConfig { max_batch_records: 16, idle_wait: Duration::from_millis(10), ..RuntimeConfig::default() });
        runtime.spawn(Box::new(self.service.processor(self.topic.clone()))).unwrap();
        self.runtime = Some(runtime);
    }

    /// Simulates a restart: the runtime and the in-process hot tier are gone.
    fn restart_with_empty_hot_tier(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown();
        }
        self.hot = Arc::new(EmbeddedHotTier::new(HotConfig { max_items: self.config.max_items, ttl_ms: self.config.hot_ttl_ms() }, 64 << 20));
        self.service = Arc::new(HistoryService::new(self.config.clone(), self.hot.clone(), self.store.clone(), catalog(), self.clock.clone()).unwrap());
        self.start();
    }

    /// Deletes the whole cold tier behind the service's back (a lost disk).
    fn lose_cold_tier(&self) {
        let mut batch = meridian_state::WriteBatch::new();
        batch.delete_prefix(meridian_history::cold::COLD_TABLE, Vec::new());
        self.store.commit(batch).unwrap();
    }

    fn event(&self, user: Option<&str>, device: Option<&str>, action: &str, sku: Option<&str>, time: i64) -> Event {
        Event {
            id: EventId::new(format!("e{}", self.seq.fetch_add(1, Ordering::SeqCst))).unwrap(),
            app: AppId::new(APP).unwrap(),
            user: user.map(|u| UserId::new(u).unwrap()),
            device: device.map(|d| DeviceId::new(d).unwrap()),
            time: Timestamp(time),
            received: Timestamp(time),
            action: Action::new(action).unwrap(),
            target: sku.map(|s| Target { kind: TargetType::new("sku").unwrap(), id: s.to_owned() }),
            context: Default::default(),
            props: Default::default(),
        }
    }

    fn ingest(&self, events: Vec<Event>) {
        let records = events
            .iter()
            .map(|e| AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: e.time.0 })
            .collect();
        self.rt.block_on(self.log.append(&self.topic, records)).unwrap();
        assert!(self.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)), "processor caught up");
    }

    /// User `u` views these SKUs at these offsets (ms) from t0.
    fn views(&self, user: &str, views: &[(u64, i64)]) {
        self.ingest(views.iter().map(|(s, dt)| self.event(Some(user), None, "view", Some(&s.to_string()), self.t0 + dt)).collect());
    }

    fn skus(&self, owner: &Owner) -> Vec<u64> {
        self.service.list(owner, self.config.max_items, None).unwrap().items.iter().map(|i| i.sku).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown();
        }
    }
}

fn user(id: &str) -> Owner {
    Owner::user(APP, id)
}

#[test]
fn views_are_deduplicated_trimmed_at_n_and_ordered_by_event_time() {
    let f = fixture(5);
    f.views("u1", &[(10, -20_000), (20, -18_000), (10, -16_000), (30, -14_000)]);
    assert_eq!(f.skus(&user("u1")), vec![30, 10, 20], "distinct, newest view first");
    // Out of order: an older view of 30 arrives late; it must not move 30.
    f.views("u1", &[(30, -60_000), (40, -17_000)]);
    assert_eq!(f.skus(&user("u1")), vec![30, 10, 40, 20]);
    f.views("u1", &[(50, -6_000), (60, -5_000), (70, -4_000), (20, -3_000)]);
    assert_eq!(f.skus(&user("u1")), vec![20, 70, 60, 50, 30], "trimmed to N = 5");
    assert_eq!(f.service.count(&user("u1")).unwrap(), 5);
    let items = f.service.list(&user("u1"), 1, None).unwrap().items;
    assert_eq!(items[0].viewed_ms, f.t0 - 3_000);
    assert_eq!((&*items[0].name, &*items[0].image, items[0].spu), ("sku 20", "/img/20.jpg", 2));
}

#[test]
fn spu_duplicates_are_collapsed_at_read_newest_wins_and_unknown_skus_hidden() {
    let f = fixture(200);
    f.views("u1", &[(11, -5_000), (12, -4_000), (21, -3_000), (13, -6_000), (950, -1_000)]);
    assert_eq!(f.skus(&user("u1")), vec![21, 12], "SPU 1 shown once as its newest SKU; unknown SKU 950 hidden");
    assert_eq!(f.service.count(&user("u1")).unwrap(), 2);
}

#[test]
fn pages_follow_the_cursor_and_inputs_are_validated() {
    let f = fixture(200);
    let views: Vec<(u64, i64)> = (1..=25u64).map(|i| (i * 10, -100_000 + i as i64 * 1000)).collect();
    f.views("u1", &views);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = f.service.list(&user("u1"), 7, cursor.as_deref()).unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|i| i.sku));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25u64).rev().map(|i| i * 10).collect::<Vec<_>>(), "every item once, newest first");
    assert!(matches!(f.service.list(&user("u1"), 0, None), Err(Error::InvalidLimit { limit: 0, max: 200 })));
    assert!(matches!(f.service.list(&user("u1"), 201, None), Err(Error::InvalidLimit { .. })));
    assert!(matches!(f.service.list(&user("u1"), 5, Some("nope")), Err(Error::InvalidCursor(_))));
    assert!(matches!(f.service.delete(&user("u1"), "abc"), Err(Error::InvalidSku(_))));
    assert!(matches!(f.service.list(&user(""), 5, None), Err(Error::InvalidOwner(_))));
}

#[test]
fn unknown_owner_has_an_empty_list_and_zero_count() {
    let f = fixture(200);
    let page = f.service.list(&user("nobody"), 10, None).unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
    assert_eq!(f.service.count(&user("nobody")).unwrap(), 0);
    f.service.delete(&user("nobody"), "5").unwrap();
    f.service.clear(&user("nobody")).unwrap();
}

#[test]
fn delete_hides_a_sku_until_viewed_again_and_count_cache_follows() {
    let f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000), (30, -3_000)]);
    assert_eq!(f.service.count(&user("u1")).unwrap(), 3);
    f.service.delete(&user("u1"), "20").unwrap();
    assert_eq!(f.skus(&user("u1")), vec![30, 10]);
    assert_eq!(f.service.count(&user("u1")).unwrap(), 2, "delete invalidates the cached count");
    // Deleted in both tiers: a fresh hot tier reads the cold copy, still hidden.
    let mut f = f;
    f.restart_with_empty_hot_tier();
    assert_eq!(f.skus(&user("u1")), vec![30, 10]);
    f.clock.advance(1000);
    f.views("u1", &[(20, 1_000)]);
    assert_eq!(f.skus(&user("u1")), vec![20, 30, 10], "a later view shows it again");
    assert_eq!(f.service.count(&user("u1")).unwrap(), 3, "processor writes invalidate the cached count");
}

#[test]
fn clear_hides_everything_before_it_in_both_tiers_and_after_a_rebuild() {
    let mut f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000)]);
    f.views("u2", &[(10, -5_000)]);
    f.service.clear(&user("u1")).unwrap();
    assert!(f.skus(&user("u1")).is_empty());
    assert_eq!(f.service.count(&user("u1")).unwrap(), 0);
    assert_eq!(f.skus(&user("u2")), vec![10], "other owners untouched");
    f.clock.advance(2000);
    f.views("u1", &[(30, 2_000)]);
    assert_eq!(f.skus(&user("u1")), vec![30]);
    // A rebuild from the log writes the old views into the cold tier again, but minus
    // the clear mark; even a stale copy stays hidden.
    let mut progress = Vec::new();
    let report = f.service.rebuild(&*f.log, &RebuildConfig::new(f.topic.clone()), f.clock_now(), &mut |d, t| progress.push((d, t))).unwrap();
    assert_eq!(report.records, 4);
    assert_eq!(report.hidden, 2, "the cleared views are left out");
    assert_eq!(progress.first(), Some(&(0, 4)));
    assert!(progress.contains(&(4, 4)));
    f.restart_with_empty_hot_tier();
    assert_eq!(f.skus(&user("u1")), vec![30]);
    assert_eq!(f.skus(&user("u2")), vec![10]);
}

impl Fixture {
    fn clock_now(&self) -> i64 {
        use meridian_history::Clock;
        self.clock.now_ms()
    }
}

#[test]
fn rebuild_restores_a_lost_cold_tier_within_the_window_minus_deletions() {
    let mut f = fixture(3);
    f.ingest(vec![
        f.event(Some("u1"), None, "view", Some("10"), f.t0 - 70 * DAY),
        f.event(Some("u1"), None, "view", Some("20"), f.t0 - 5_000),
        f.event(Some("u1"), None, "view", Some("30"), f.t0 - 4_000),
        f.event(Some("u1"), None, "view", Some("40"), f.t0 - 3_000),
        f.event(Some("u1"), None, "view", Some("50"), f.t0 - 2_000),
    ]);
    f.service.delete(&user("u1"), "40").unwrap();
    // Lose the cold tier (and the hot one).
    f.lose_cold_tier();
    f.restart_with_empty_hot_tier();
    assert!(f.skus(&user("u1")).is_empty());
    let report = f.service.rebuild(&*f.log, &RebuildConfig { max_items: 3, ..RebuildConfig::new(f.topic.clone()) }, f.clock_now(), &mut |_, _| {}).unwrap();
    assert_eq!(report.owners, 1);
    assert_eq!(f.skus(&user("u1")), vec![50, 30], "N newest in the window, minus the deleted SKU");
}

#[test]
fn five_thousand_deletions_all_hold_through_a_rebuild_and_a_restart() {
    let mut f = fixture_on(tempfile::tempdir().unwrap(), Arc::new(meridian_state::MemoryStore::new()), 200);
    let heavy = user("heavy");
    // 5,000 distinct SKUs, one a second: the list holds the newest 200 (4801..=5000).
    let views: Vec<(u64, i64)> = (1..=5000u64).map(|s| (s, -10_000_000 + s as i64 * 1000)).collect();
    f.views("heavy", &views);
    assert_eq!(f.service.entries(&heavy).unwrap().len(), 200);
    // Deleted newest-viewed first: the oldest deletions are of the SKUs still in the list.
    for sku in (1..=5000u64).rev() {
        f.clock.advance(1);
        f.service.delete(&heavy, &sku.to_string()).unwrap();
    }
    let back = f.service.entries(&heavy).unwrap().len();
    assert_eq!(back, 0, "every deleted SKU stays hidden: {back} deleted SKUs visible");
    // A restart: the hot tier is empty, the cold tier still holds the 200 newest views.
    f.restart_with_empty_hot_tier();
    let back = f.service.entries(&heavy).unwrap().len();
    assert_eq!(back, 0, "the cold tier's copies stay hidden: {back} deleted SKUs visible");
    // The cold tier is lost and rebuilt from the log, the hot tier restarts empty.
    f.lose_cold_tier();
    f.restart_with_empty_hot_tier();
    let report = f.service.rebuild(&*f.log, &f.service.rebuild_config(f.topic.clone()), f.clock_now(), &mut |_, _| {}).unwrap();
    assert_eq!(report.views, 5000);
    assert_eq!(report.entries, 0, "the rebuild writes none of the deleted views");
    let back = f.service.entries(&heavy).unwrap().len();
    assert_eq!(back, 0, "nothing came back after the rebuild: {back} deleted SKUs visible");
    assert_eq!(f.service.marks().get(heavy.key()).unwrap().deleted().len(), 5000);
    // A later view of a deleted SKU shows it again.
    f.clock.advance(1000);
    f.views("heavy", &[(4321, 10_000)]);
    assert_eq!(f.service.entries(&heavy).unwrap().iter().map(|e| e.sku).collect::<Vec<_>>(), vec![4321]);
}

#[test]
fn hot_expiry_falls_back_to_cold_and_promotes_then_cold_expires() {
    let f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000)]);
    let key = user("u1").key();
    assert!(f.hot.get(key, f.t0).unwrap().is_some());
    f.clock.advance(5 * DAY);
    assert_eq!(f.hot.get(key, f.t0 + 5 * DAY).unwrap(), None, "hot tier expired after 4 days");
    assert_eq!(f.skus(&user("u1")), vec![20, 10], "served from the cold tier");
    assert_eq!(f.hot.get(key, f.t0 + 5 * DAY).unwrap().map(|e| e.len()), Some(2), "and promoted to the hot tier");
    f.clock.advance(60 * DAY);
    f.hot.remove_owner(key).unwrap();
    assert!(f.skus(&user("u1")).is_empty(), "cold tier expired 62 days after the newest view");
    // Another owner's view is a later processor round: u1's round has committed, the
    // purge no longer spares it.
    f.views("u9", &[(30, 65 * DAY)]);
    assert_eq!(f.service.purge_expired().unwrap().cold_owners, 1);
}

fn cold_keys(f: &Fixture) -> usize {
    f.store.range(meridian_history::cold::COLD_TABLE, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, usize::MAX).unwrap().len()
}

#[test]
fn a_purge_frees_expired_owners_on_disk_and_in_memory_and_keeps_live_ones() {
    let mut f = fixture(200);
    // 40 owners viewed things; 10 of them again 50 days later.
    for u in 0..40 {
        f.views(&format!("p{u}"), &[(10 + u as u64, -5_000), (20, -4_000)]);
    }
    f.clock.advance(50 * DAY);
    for u in 0..10 {
        f.views(&format!("p{u}"), &[(30, 50 * DAY)]);
    }
    assert_eq!(cold_keys(&f), 40);
    // 20 days on: the 30 owners idle since the start are past the 62-day TTL.
    f.clock.advance(20 * DAY);
    let owners_before = f.hot.stats().owners;
    assert!(owners_before >= 10, "{owners_before}");
    // An idle owner comes back before the purge: its new value is not expired. (A view
    // racing the purge's read is spared by the fence: `cold` unit tests.)
    f.views("p39", &[(40, 70 * DAY)]);
    let report = f.service.purge_expired().unwrap();
    assert!(report.ran);
    assert_eq!(report.cold_owners, 29, "{report:?}");
    assert_eq!(cold_keys(&f), 11, "expired owners' keys are gone from the store");
    assert_eq!(report.hot_owners, 39, "hot owners past their 4-day TTL are freed too");
    assert_eq!(f.hot.stats().owners, 1, "only the owner written just now stays in memory");
    // Reads are unchanged: expired owners were already hidden, live ones are intact.
    f.restart_with_empty_hot_tier();
    assert!(f.skus(&user("p20")).is_empty());
    assert_eq!(f.skus(&user("p3")), vec![30, 20, 13]);
    assert_eq!(f.skus(&user("p39")), vec![40], "the fresh view survived the purge");
    assert_eq!(f.service.purge_expired().unwrap().cold_owners, 0, "nothing left to purge");
}

#[test]
fn reads_merge_partial_hot_with_cold() {
    let mut f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000)]);
    f.restart_with_empty_hot_tier();
    // A new view creates a hot entry holding only itself; the read merges the cold rest.
    f.views("u1", &[(30, -2_000), (10, -1_000)]);
    let key = user("u1").key();
    let partial = f.hot.read(key, f.t0).unwrap().unwrap();
    assert_eq!((partial.entries.len(), partial.complete_in), (2, None), "the owner had cold history: not complete");
    assert_eq!(f.skus(&user("u1")), vec![10, 30, 20], "merged, no duplicates, latest time wins");
    let promoted = f.hot.read(key, f.t0).unwrap().unwrap();
    assert_eq!((promoted.entries.len(), promoted.complete_in), (3, Some(0)), "promotion completed the hot copy and marked it");
    f.views("u1", &[(40, -500)]);
    assert_eq!(f.hot.read(key, f.t0).unwrap().unwrap().complete_in, Some(0), "later views keep the mark");
    assert_eq!(f.skus(&user("u1")), vec![40, 10, 30, 20]);
}

#[test]
fn a_hot_list_marked_complete_is_served_without_reading_the_cold_tier() {
    let f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000)]);
    let key = user("u1").key();
    assert_eq!(f.hot.read(key, f.t0).unwrap().unwrap().complete_in, Some(0), "an owner's first views make a complete hot list");
    // Plant a cold entry the hot list never saw (only a rebuild writes such entries): the
    // read does not see it, so it did not read the cold tier.
    let mut batch = meridian_state::WriteBatch::new();
    ColdTier::put(&mut batch, key, &[Entry::new(30, f.t0 - 3_000), Entry::new(20, f.t0 - 4_000), Entry::new(10, f.t0 - 5_000)]);
    f.store.commit(batch).unwrap();
    assert_eq!(f.skus(&user("u1")), vec![20, 10]);
    // A rebuild moves to a new cold generation: the old mark no longer counts.
    f.service.rebuild(&*f.log, &RebuildConfig::new(f.topic.clone()), f.clock_now(), &mut |_, _| {}).unwrap();
    assert_eq!(f.skus(&user("u1")), vec![30, 20, 10], "the cold tier is read again");
    assert_eq!(f.hot.read(key, f.t0).unwrap().unwrap().complete_in, Some(1), "and the list marked in the new generation");
}

#[test]
fn a_rebuild_shows_what_a_complete_hot_list_never_saw_even_after_a_restart() {
    let mut f = fixture(200);
    f.views("u1", &[(10, -5_000)]);
    // The cold tier is lost and the server restarts (the hot tier with it): a new view
    // starts both afresh, and the hot list is complete for the (empty) cold tier.
    f.lose_cold_tier();
    f.restart_with_empty_hot_tier();
    f.views("u1", &[(20, -1_000)]);
    assert_eq!(f.hot.read(user("u1").key(), f.t0).unwrap().unwrap().complete_in, Some(0));
    assert_eq!(f.skus(&user("u1")), vec![20]);
    // The rebuild brings the lost view back from the log; the complete mark of the old
    // generation must not hide it.
    let report = f.service.rebuild(&*f.log, &RebuildConfig::new(f.topic.clone()), f.clock_now(), &mut |_, _| {}).unwrap();
    assert_eq!(report.entries, 2);
    assert_eq!(f.skus(&user("u1")), vec![20, 10]);
    // The generation is persisted: a restarted service still counts marks of generation 1.
    f.restart_with_empty_hot_tier();
    assert_eq!(f.skus(&user("u1")), vec![20, 10]);
    assert_eq!(f.hot.read(user("u1").key(), f.clock_now()).unwrap().unwrap().complete_in, Some(1));
}

#[test]
fn identify_merges_the_device_history_into_the_user() {
    let f = fixture(200);
    f.ingest(vec![
        f.event(None, Some("d1"), "view", Some("10"), f.t0 - 9_000),
        f.event(None, Some("d1"), "view", Some("20"), f.t0 - 8_000),
        f.event(Some("u1"), None, "view", Some("30"), f.t0 - 7_000),
        f.event(None, Some("d1"), "view", Some("10"), f.t0 - 6_000),
    ]);
    f.service.delete(&Owner::device(APP, "d1"), "20").unwrap();
    f.ingest(vec![f.event(Some("u1"), Some("d1"), "identify", None, f.t0 - 1_000)]);
    assert_eq!(f.skus(&user("u1")), vec![10, 30], "device views merged (minus the device's deletions)");
    assert_eq!(f.skus(&Owner::device(APP, "d1")), vec![10]);
}

#[test]
fn a_clean_restart_loses_nothing_and_a_full_replay_changes_nothing() {
    let mut f = fixture(200);
    let views: Vec<(u64, i64)> = (1..=40u64).map(|i| (i * 10 % 800 + 1, -200_000 + i as i64 * 1000)).collect();
    f.views("u1", &views);
    let before = f.skus(&user("u1"));
    f.restart_with_empty_hot_tier();
    assert_eq!(f.skus(&user("u1")), before, "the cold tier, committed with the positions, has everything");
    // Replaying the whole log (rebuild of the processor's state) gives the same result.
    f.runtime.as_ref().unwrap().rebuild("history").unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert_eq!(f.skus(&user("u1")), before);
}

#[test]
fn non_numeric_skus_and_other_events_are_skipped() {
    let f = fixture(200);
    f.ingest(vec![
        f.event(Some("u1"), None, "view", Some("abc-1"), f.t0 - 3_000),
        f.event(Some("u1"), None, "click", Some("10"), f.t0 - 2_000),
        f.event(Some("u1"), None, "view", Some("20"), f.t0 - 1_000),
    ]);
    assert_eq!(f.skus(&user("u1")), vec![20]);
}

/// `count` user ids whose owner keys share one cold bucket (first two key bytes).
fn users_in_one_bucket(count: usize) -> Vec<String> {
    let mut by_prefix: std::collections::HashMap<[u8; 2], Vec<String>> = std::collections::HashMap::new();
    for i in 0.. {
        let id = format!("b{i}");
        let list = by_prefix.entry(user(&id).key().prefix()).or_default();
        list.push(id);
        if list.len() == count {
            return list.clone();
        }
    }
    unreachable!()
}

#[test]
fn owners_sharing_a_bucket_keep_their_own_histories_across_calls_restarts_clears_and_rebuilds() {
    let mut f = fixture(200);
    let users = users_in_one_bucket(5);
    // Interleaved views over many process() calls of one runtime round (16 records per
    // partition per call): each call rewrites the shared bucket from the committed value
    // plus the processor's recent writes.
    let mut events = Vec::new();
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); users.len()];
    for k in 0..30u64 {
        for (u, id) in users.iter().enumerate() {
            let sku = 1 + (k * 7 + u as u64 * 13) % 800;
            events.push(f.event(Some(id), None, "view", Some(&sku.to_string()), f.t0 - 100_000 + (k * 10 + u as u64) as i64 * 100));
            expected[u].retain(|s| *s != sku);
            expected[u].insert(0, sku);
        }
    }
    f.ingest(events);
    let spu_dedup = |skus: &[u64]| {
        let mut seen = std::collections::HashSet::new();
        skus.iter().copied().filter(|s| seen.insert(s / 10)).collect::<Vec<_>>()
    };
    for (u, id) in users.iter().enumerate() {
        assert_eq!(f.skus(&user(id)), spu_dedup(&expected[u]), "{id} from the hot tier");
    }
    f.restart_with_empty_hot_tier();
    for (u, id) in users.iter().enumerate() {
        assert_eq!(f.skus(&user(id)), spu_dedup(&expected[u]), "{id} from the cold bucket");
        assert_eq!(f.service.cold().get(user(id).key(), f.clock_now()).unwrap().unwrap().len(), expected[u].len());
    }
    // A clear is applied physically by the processor's next batch; bucket neighbours stay.
    f.service.clear(&user(&users[0])).unwrap();
    f.clock.advance(1000);
    f.views(&users[1], &[(5, 1_000)]);
    assert_eq!(f.service.cold().get(user(&users[0]).key(), f.clock_now()).unwrap(), None, "cleared from the cold bucket");
    expected[1].insert(0, 5);
    assert_eq!(f.service.cold().get(user(&users[1]).key(), f.clock_now()).unwrap().unwrap().len(), expected[1].len());
    f.views(&users[0], &[(7, 1_500)]);
    assert_eq!(f.skus(&user(&users[0])), vec![7]);
    // A rebuild merges the log into the buckets: the same lists, the clear respected.
    f.service.rebuild(&*f.log, &RebuildConfig::new(f.topic.clone()), f.clock_now(), &mut |_, _| {}).unwrap();
    f.restart_with_empty_hot_tier();
    assert_eq!(f.skus(&user(&users[0])), vec![7]);
    for (u, id) in users.iter().enumerate().skip(1) {
        assert_eq!(f.skus(&user(id)), spu_dedup(&expected[u]), "{id} after the rebuild");
    }
}

impl Fixture {
    /// Appends an erasure of `owner_id` (as the server does) and waits for the processor.
    fn erase(&self, kind: meridian_event::SubjectKind, owner_id: &str, erasure_id: &str) {
        let erasure = meridian_event::Erasure {
            id: erasure_id.into(),
            app: AppId::new(APP).unwrap(),
            kind,
            subject: owner_id.into(),
            requested_ms: self.clock_now(),
            requested_by: "test".into(),
        };
        let record = AppendRecord { key: Bytes::from(owner_id.to_owned()), value: Bytes::from(erasure.encode()), timestamp: self.clock_now() };
        self.rt.block_on(self.log.append(&self.topic, vec![record])).unwrap();
        assert!(self.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)), "processor caught up");
    }
}

#[test]
fn an_erasure_removes_every_tier_files_a_receipt_and_holds_through_replays() {
    use meridian_event::SubjectKind;
    let mut f = fixture(200);
    f.views("ann", &[(11, 1000), (25, 2000), (37, 3000)]);
    f.views("bob", &[(11, 1000)]);
    f.service.delete(&user("ann"), "25").unwrap();
    assert_eq!(f.skus(&user("ann")), vec![37, 11]);
    f.erase(SubjectKind::User, "ann", "er-1");
    assert!(f.skus(&user("ann")).is_empty(), "nothing left of ann");
    assert_eq!(f.service.count(&user("ann")).unwrap(), 0, "the cached count went too");
    assert!(f.hot.get(user("ann").key(), f.clock_now()).unwrap().is_none(), "hot list removed");
    assert!(f.service.cold().get(user("ann").key(), f.clock_now()).unwrap().is_none(), "cold value removed");
    assert!(f.service.marks().get(user("ann").key()).unwrap().is_empty(), "her deletion marks are personal data too");
    assert_eq!(f.skus(&user("bob")), vec![11], "others keep theirs");
    let receipts = f.runtime.as_ref().unwrap().erasure_receipts("er-1").unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].0, "history");
    // The delete took SKU 25 out of the hot list; the cold value keeps it behind the mark.
    assert_eq!(receipts[0].1, serde_json::json!({"cold_entries": 3, "hot_entries": 2, "deletion_marks": 1, "linked_devices": 0}));

    // She comes back: new views count, the old ones stay gone.
    f.views("ann", &[(48, 5000)]);
    assert_eq!(f.skus(&user("ann")), vec![48]);

    // Replaying the whole log (the processor rebuilt from the start) erases again.
    f.runtime.as_ref().unwrap().rebuild("history").unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    f.restart_with_empty_hot_tier();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert_eq!(f.skus(&user("ann")), vec![48], "after a replay only what came after the erasure");
    assert_eq!(f.runtime.as_ref().unwrap().erasure_receipts("er-1").unwrap()[0].1["cold_entries"], 3, "the first receipt is kept");

    // The offline rebuild of the cold tier honours the record too.
    f.lose_cold_tier();
    f.restart_with_empty_hot_tier();
    let config = f.service.rebuild_config(f.topic.clone());
    let report = f.service.rebuild(&*f.log, &config, f.clock_now(), &mut |_, _| {}).unwrap();
    assert!(report.hidden >= 3, "{report:?}");
    assert_eq!(f.skus(&user("ann")), vec![48], "the rebuild brought back nothing from before the erasure");
    assert_eq!(f.skus(&user("bob")), vec![11]);
}

#[test]
fn erasing_a_user_erases_the_devices_identify_linked_to_it_also_after_a_rebuild() {
    use meridian_event::SubjectKind;
    let mut f = fixture(200);
    let device = |id: &str| Owner::device(APP, id);
    f.ingest(vec![
        f.event(None, Some("d1"), "view", Some("10"), f.t0 - 9_000),
        f.event(None, Some("d2"), "view", Some("20"), f.t0 - 8_000),
        f.event(None, Some("d3"), "view", Some("30"), f.t0 - 7_000),
        f.event(Some("u1"), None, "view", Some("40"), f.t0 - 6_000),
    ]);
    f.ingest(vec![f.event(Some("u1"), Some("d1"), "identify", None, f.t0 - 5_000)]);
    assert_eq!(f.skus(&user("u1")), vec![40, 10]);
    // d2 is linked in the same append, so the same round, as the erasure: its link is not
    // in the store yet when the erasure is met.
    let identify = f.event(Some("u1"), Some("d2"), "identify", None, f.t0 - 4_000);
    let erasure = meridian_event::Erasure {
        id: "er-linked".into(),
        app: AppId::new(APP).unwrap(),
        kind: SubjectKind::User,
        subject: "u1".into(),
        requested_ms: f.t0 - 3_000,
        requested_by: "test".into(),
    };
    let records = vec![
        AppendRecord { key: Bytes::from(identify.partition_key().to_owned()), value: Bytes::from(identify.encode()), timestamp: f.t0 - 4_000 },
        AppendRecord { key: Bytes::from(erasure.partition_key().to_owned()), value: Bytes::from(erasure.encode()), timestamp: f.t0 - 3_000 },
    ];
    f.rt.block_on(f.log.append(&f.topic, records)).unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert!(f.skus(&user("u1")).is_empty());
    assert!(f.skus(&device("d1")).is_empty(), "a linked device's own history is the user's behaviour too");
    assert!(f.skus(&device("d2")).is_empty());
    assert_eq!(f.skus(&device("d3")), vec![30], "an unlinked device keeps its history");
    let receipts = f.runtime.as_ref().unwrap().erasure_receipts("er-linked").unwrap();
    assert_eq!(receipts[0].1["linked_devices"], 2, "{:?}", receipts[0].1);
    assert_eq!(receipts[0].1["cold_entries"], 3 + 1 + 1, "u1's three entries and one of each device");

    // The offline rebuild from the log (all partitions, in any order) brings nothing back.
    f.lose_cold_tier();
    f.restart_with_empty_hot_tier();
    let config = f.service.rebuild_config(f.topic.clone());
    f.service.rebuild(&*f.log, &config, f.clock_now(), &mut |_, _| {}).unwrap();
    assert!(f.skus(&user("u1")).is_empty(), "after the rebuild: {:?}", f.skus(&user("u1")));
    assert!(f.skus(&device("d1")).is_empty() && f.skus(&device("d2")).is_empty(), "linked devices stay erased after the rebuild");
    assert_eq!(f.skus(&device("d3")), vec![30]);
    // So does a replay of the processor from the start.
    f.runtime.as_ref().unwrap().rebuild("history").unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    f.restart_with_empty_hot_tier();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert!(f.skus(&user("u1")).is_empty() && f.skus(&device("d1")).is_empty() && f.skus(&device("d2")).is_empty());
    assert_eq!(f.skus(&device("d3")), vec![30]);
}

#[test]
fn views_from_before_an_erasure_that_arrive_after_it_stay_erased() {
    use meridian_event::SubjectKind;
    let mut f = fixture(200);
    f.views("eve", &[(11, -5_000)]);
    f.erase(SubjectKind::User, "eve", "er-late");
    // A client re-sends buffered events from before the erasure, and one from after it.
    f.views("eve", &[(12, -4_000), (13, -1)]);
    f.clock.advance(1_000);
    f.views("eve", &[(14, 500)]);
    assert_eq!(f.skus(&user("eve")), vec![14], "only the view made after the erasure");
    // Also across a restart (the erased owners are read back from the store) and a replay.
    f.restart_with_empty_hot_tier();
    f.views("eve", &[(15, -3_000)]);
    assert_eq!(f.skus(&user("eve")), vec![14]);
    f.runtime.as_ref().unwrap().rebuild("history").unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    f.restart_with_empty_hot_tier();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert_eq!(f.skus(&user("eve")), vec![14]);
}

#[test]
fn views_before_an_erasure_in_the_same_round_are_erased_and_later_ones_kept() {
    use meridian_event::SubjectKind;
    let f = fixture(200);
    // One append: view, view, erasure, view — all in one processor round.
    let before = [f.event(Some("cy"), None, "view", Some("11"), f.t0 + 1000), f.event(Some("cy"), None, "view", Some("25"), f.t0 + 2000)];
    let erasure = meridian_event::Erasure {
        id: "er-2".into(),
        app: AppId::new(APP).unwrap(),
        kind: SubjectKind::User,
        subject: "cy".into(),
        requested_ms: f.t0 + 2500,
        requested_by: "test".into(),
    };
    let after = f.event(Some("cy"), None, "view", Some("37"), f.t0 + 3000);
    let mut records: Vec<AppendRecord> = before.iter().map(|e| AppendRecord { key: Bytes::from("cy"), value: Bytes::from(e.encode()), timestamp: e.time.0 }).collect();
    records.push(AppendRecord { key: Bytes::from("cy"), value: Bytes::from(erasure.encode()), timestamp: f.t0 + 2500 });
    records.push(AppendRecord { key: Bytes::from("cy"), value: Bytes::from(after.encode()), timestamp: after.time.0 });
    f.rt.block_on(f.log.append(&f.topic, records)).unwrap();
    assert!(f.runtime.as_ref().unwrap().wait_caught_up(Duration::from_secs(20)));
    assert_eq!(f.skus(&user("cy")), vec![37]);
    let receipts = f.runtime.as_ref().unwrap().erasure_receipts("er-2").unwrap();
    assert_eq!(receipts[0].1["cold_entries"], 2, "the two views of the same round were counted and erased");
}

#[test]
fn reads_that_need_no_store_are_answered_from_memory_and_agree_with_full_reads() {
    let mut f = fixture(200);
    f.views("u1", &[(10, -5_000), (20, -4_000), (30, -3_000)]);
    let u1 = user("u1");
    // A complete hot list and no marks: answered without the store, the same as a read.
    let fast = f.service.list_in_memory(&u1, 2, None).unwrap().expect("complete hot list, no marks: no store read needed");
    assert_eq!(fast, f.service.list(&u1, 2, None).unwrap());
    let next = f.service.list_in_memory(&u1, 2, fast.next_cursor.as_deref()).unwrap().unwrap();
    assert_eq!(next.items.iter().map(|i| i.sku).collect::<Vec<_>>(), vec![10]);
    assert_eq!(f.service.count_in_memory(&u1).unwrap(), Some(3));
    assert!(matches!(f.service.list_in_memory(&u1, 0, None), Err(Error::InvalidLimit { .. })), "inputs are checked the same way");
    // Once the owner has marks, they live in the store: the in-memory path declines.
    f.service.delete(&u1, "20").unwrap();
    assert_eq!(f.service.list_in_memory(&u1, 10, None).unwrap(), None);
    assert_eq!(f.service.count_in_memory(&u1).unwrap(), None, "the delete dropped the cached count");
    assert_eq!(f.skus(&u1), vec![30, 10]);
    assert_eq!(f.service.count(&u1).unwrap(), 2);
    assert_eq!(f.service.count_in_memory(&u1).unwrap(), Some(2), "a cached count needs no store");
    // A hot list that is not known to be complete needs the cold tier.
    f.views("u2", &[(40, -2_000)]);
    f.restart_with_empty_hot_tier();
    assert_eq!(f.service.list_in_memory(&user("u2"), 10, None).unwrap(), None, "nothing in memory after a restart");
    assert_eq!(f.skus(&user("u2")), vec![40]);
    assert!(f.service.list_in_memory(&user("u2"), 10, None).unwrap().is_some(), "promoted and marked complete by the read");
    // The presence filter is rebuilt from the store at restart: u1 still reads its marks.
    assert_eq!(f.service.list_in_memory(&u1, 10, None).unwrap(), None);
    assert_eq!(f.skus(&u1), vec![30, 10]);
}
