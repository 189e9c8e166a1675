//! End-to-end tests of the user action system: events appended to the real embedded log,
//! the actions processors run by the real runtime, read through the service, with an
//! injected clock; `crash` SIGKILLs a child process in the middle of a round.

use bytes::Bytes;
use meridian_actions::config::{AggregationConfig, GroupConfig, SegmentConfig, TriggerConfig};
use meridian_actions::processor::ProcessorSettings;
use meridian_actions::{ActionsConfig, ActionsService, AggregationKind, AppZones, EmbeddedProfileStore, ManualClock};
use meridian_event::{Action, AppId, Event, EventId, Target, TargetType, Timestamp, UserId};
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_pipeline::ConditionConfig;
use meridian_runtime::{Processor, Runtime, RuntimeConfig};
use meridian_state::{KvStore, MemoryStore};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod crash;
mod scenarios;

pub const DAY: i64 = 86_400_000;

/// Apps and their zones: `shop` in Shanghai (UTC+8), `ny` in New York (UTC−5/−4), others UTC.
#[derive(Debug)]
pub struct Zones;

impl AppZones for Zones {
    fn zone(&self, app: &AppId) -> chrono_tz::Tz {
        match app.as_str() {
            "shop" => chrono_tz::Asia::Shanghai,
            "ny" => chrono_tz::America::New_York,
            _ => chrono_tz::UTC,
        }
    }
}

/// Now, so that reviews (due at the next local midnight by the wall clock) stay in the
/// future: tests about other things are not disturbed by time passing.
pub fn real_now() -> i64 {
    Timestamp::now().millis()
}

/// [`real_now`], moved to 06:00 UTC when it is earlier in the day, for tests whose events a
/// few hours back must fall on today (app `z` is on UTC). The clock may then run up to six
/// hours ahead of the wall clock: reviews are due even later, at the next local midnight.
pub fn daytime_now() -> i64 {
    let now = real_now();
    now + (6 * 3_600_000 - now.rem_euclid(DAY)).max(0)
}

/// A small deterministic random stream (xorshift64) for generated event streams.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

pub fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

pub fn agg(name: &str, kind: AggregationKind, field: Option<&str>, filter: Option<&str>) -> AggregationConfig {
    let (of, prop) = match kind {
        AggregationKind::Distinct => (field.map(str::to_owned), None),
        _ => (None, field.map(str::to_owned)),
    };
    AggregationConfig {
        name: name.into(),
        kind,
        of,
        prop,
        filter: filter.map(|f| ConditionConfig::Expr(f.to_owned())),
        group: "default".into(),
        description: String::new(),
    }
}

pub fn segment(name: &str, when: &str) -> SegmentConfig {
    SegmentConfig { name: name.into(), when: when.into(), description: String::new() }
}

pub fn trigger(name: &str, when: &str) -> TriggerConfig {
    TriggerConfig { name: name.into(), when: when.into(), webhook: true, description: String::new() }
}

/// The demo-like config the tests share.
pub fn config() -> ActionsConfig {
    ActionsConfig {
        retention_days: 90,
        distinct_list_max: 4,
        aggregations: vec![
            agg("food_views", AggregationKind::Count, None, Some("action == \"view\" && target.type == \"shop\" && props.category == \"food\"")),
            agg("shops_viewed", AggregationKind::Distinct, None, Some("action == \"view\" && target.type == \"shop\"")),
            agg("cities", AggregationKind::Distinct, Some("context.city"), None),
            agg("orders", AggregationKind::Count, None, Some("action == \"order\"")),
            agg("spend", AggregationKind::Sum, Some("props.amount"), Some("action == \"order\"")),
            agg("cheapest", AggregationKind::Min, Some("props.amount"), Some("action == \"order\"")),
            agg("dearest", AggregationKind::Max, Some("props.amount"), Some("action == \"order\"")),
            agg("first_order", AggregationKind::FirstTime, None, Some("action == \"order\"")),
            agg("last_order", AggregationKind::LastTime, None, Some("action == \"order\"")),
            agg("tier", AggregationKind::LastValue, Some("props.tier"), None),
            agg("checkins", AggregationKind::Count, None, Some("action == \"checkin\"")),
        ],
        segments: vec![segment("big_spenders", "spend_30d >= 100"), segment("new_buyers", "stage == \"new\" && orders_30d >= 1")],
        triggers: vec![trigger("first_checkin", "checkins_all >= 1"), trigger("third_order", "orders_30d >= 3"), trigger("went_dormant", "stage == \"dormant\"")],
        ..ActionsConfig::default()
    }
}

#[allow(missing_debug_implementations)]
pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<dyn KvStore>,
    pub clock: Arc<ManualClock>,
    pub service: Arc<ActionsService>,
    pub runtime: Option<Runtime>,
    pub config: ActionsConfig,
    /// Records read per partition per round.
    pub batch_records: usize,
    seq: AtomicU64,
}

pub fn settings() -> ProcessorSettings {
    ProcessorSettings {
        events_topic: TopicName::new("events").unwrap(),
        segments_topic: TopicName::new("segment-changes").unwrap(),
        triggers_topic: TopicName::new("triggers").unwrap(),
        notifications_topic: TopicName::new("notifications").unwrap(),
    }
}

pub fn open_log(dir: &std::path::Path) -> Arc<EmbeddedLog> {
    open_log_with(dir, EmbeddedLogConfig::default())
}

pub fn open_log_with(dir: &std::path::Path, config: EmbeddedLogConfig) -> Arc<EmbeddedLog> {
    let log = EmbeddedLog::open(dir.join("log"), config).unwrap();
    for (topic, partitions) in [("events", 3), ("orders", 2), ("segment-changes", 2), ("triggers", 2), ("notifications", 1)] {
        log.ensure_topic(&TopicName::new(topic).unwrap(), partitions).unwrap();
    }
    log
}

pub fn service_on(config: &ActionsConfig, store: Arc<dyn KvStore>, log: Arc<EmbeddedLog>, clock: Arc<ManualClock>) -> ActionsService {
    let profiles = Arc::new(EmbeddedProfileStore::for_config(store.clone(), config));
    ActionsService::new(config.clone(), profiles, store, Arc::new(Zones), clock, log, settings()).unwrap()
}

impl Fixture {
    pub fn new(config: ActionsConfig, now: i64) -> Fixture {
        Fixture::with_batch(config, now, 64)
    }

    /// With rounds of up to `batch_records` records per partition.
    pub fn with_batch(config: ActionsConfig, now: i64, batch_records: usize) -> Fixture {
        Fixture::with_log(config, now, batch_records, EmbeddedLogConfig::default())
    }

    /// With a log of its own settings (small segments and retention, for tests of what
    /// retention removes).
    pub fn with_log(config: ActionsConfig, now: i64, batch_records: usize, log_config: EmbeddedLogConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let log = rt.block_on(async { open_log_with(dir.path(), log_config) });
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::at(now));
        let service = Arc::new(service_on(&config, store.clone(), log.clone(), clock.clone()));
        let mut f = Fixture { _dir: dir, rt, log, store, clock, service, runtime: None, config, batch_records, seq: AtomicU64::new(0) };
        f.start();
        f
    }

    pub fn start(&mut self) {
        self.start_wrapped(&mut |p| p);
    }

    pub fn start_wrapped(&mut self, wrap: &mut dyn FnMut(Box<dyn Processor>) -> Box<dyn Processor>) {
        let runtime = Runtime::new(self.log.clone(), self.store.clone(), RuntimeConfig { max_batch_records: self.batch_records, idle_wait: Duration::from_millis(5), ..RuntimeConfig::default() });
        for p in self.service.processors().unwrap() {
            runtime.spawn(wrap(Box::new(p))).unwrap();
        }
        self.runtime = Some(runtime);
    }

    /// Restarts with another config (a changed or added definition).
    pub fn restart_with(&mut self, config: ActionsConfig) {
        if let Some(r) = self.runtime.take() {
            r.shutdown();
        }
        self.config = config;
        self.service = Arc::new(service_on(&self.config, self.store.clone(), self.log.clone(), self.clock.clone()));
        self.start();
    }

    pub fn event(&self, app: &str, user: &str, action: &str, target: Option<(&str, &str)>, time: i64, props: Value) -> Event {
        Event {
            id: EventId::new(format!("e{}", self.seq.fetch_add(1, Ordering::SeqCst))).unwrap(),
            app: AppId::new(app).unwrap(),
            user: Some(UserId::new(user).unwrap()),
            device: None,
            time: Timestamp(time),
            received: Timestamp(time),
            action: Action::new(action).unwrap(),
            target: target.map(|(k, id)| Target { kind: TargetType::new(k).unwrap(), id: id.to_owned() }),
            context: Default::default(),
            props: props.as_object().cloned().unwrap_or_default(),
        }
    }

    pub fn append(&self, topic: &str, events: &[Event]) {
        let records = events.iter().map(|e| AppendRecord { key: Bytes::from(e.partition_key().to_owned()), value: Bytes::from(e.encode()), timestamp: e.time.0 }).collect();
        self.rt.block_on(self.log.append(&TopicName::new(topic).unwrap(), records)).unwrap();
    }

    pub fn ingest(&self, events: &[Event]) {
        self.append("events", events);
        self.caught_up();
    }

    /// Waits until the processors have no lag and their emitted records are in the log.
    pub fn caught_up(&self) {
        let runtime = self.runtime.as_ref().unwrap();
        assert!(runtime.wait_caught_up(Duration::from_secs(30)), "processors caught up");
        self.eventually("the outbox is empty", || runtime.status().iter().all(|s| s.outbox_pending == 0));
    }

    pub fn value(&self, app: &str, user: &str, name: &str, window: &str) -> Value {
        self.service.aggregate(&AppId::new(app).unwrap(), user, name, window).unwrap().value
    }

    /// JSON records of a topic, in partition then offset order.
    pub fn records(&self, topic: &str) -> Vec<Value> {
        let topic = TopicName::new(topic).unwrap();
        let mut out = Vec::new();
        for p in 0..self.log.partition_count(&topic).unwrap() {
            for r in self.log.read(&topic, p, 0, 100_000, 64 << 20).unwrap() {
                out.push(serde_json::from_slice(&r.value).unwrap());
            }
        }
        out
    }

    /// Waits until `check` holds (reviews run as timers, asynchronously).
    pub fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            if Instant::now() >= deadline {
                let errors: Vec<String> = self.runtime.as_ref().map(|r| r.status().into_iter().filter_map(|s| s.last_error.map(|e| format!("{}: {e}", s.name))).collect()).unwrap_or_default();
                panic!("timed out waiting for: {what}; processor errors: {errors:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn app(id: &str) -> AppId {
    AppId::new(id).unwrap()
}

pub fn group_config(name: &str, topic: &str) -> GroupConfig {
    GroupConfig { name: name.into(), topic: topic.into() }
}
