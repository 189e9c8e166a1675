//! The actions processor: one per isolation group. Per event: the group's aggregations
//! (filters, then a bucket update on the event's local day), the user's activity and
//! timeline, then — as of the event's time — the lifecycle stage, segment memberships
//! (enter/exit records on change) and triggers (a record and a webhook request each time
//! a condition turns true). A user's fields are written once per round.
//!
//! Time alone changes stages, segments and triggers (`days_inactive`, windows sliding
//! past old buckets): after a user's events the processor schedules a review at the
//! next local midnight, and each review schedules the next, until `horizon_days` after
//! the last event. A review is a runtime timer, so it fires exactly once and commits
//! with what it changes.
//!
//! Back-fills and recomputes also run here, as timers (one step of records each), so a
//! step's merged buckets commit with the step's cursor: see
//! [`crate::service::ActionsService::request_backfill`] and [`crate::recompute`].

use crate::config::{AggregationKind, DEFAULT_GROUP};
use crate::defs::{Definitions, Var, WindowRef};
use crate::expr::Val;
use crate::state::{agg_field, encode, meta_field, TimelineEntry, UserKey, UserState};
use crate::store::{ProfileStore, UserWrite};
use crate::value::{Bucket, Buckets, Input};
use crate::window::Day;
use crate::{AppZones, Clock};
use bytes::Bytes;
use meridian_event::{AppId, Event, LogEntry};
use meridian_log::{Log, Record, TopicName};
use meridian_runtime::{Emit, ProcessContext, Processor, Result, RuntimeError, Timer};
use meridian_state::WriteBatch;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Interned distinct values: key = app, 0, field path, 0, value; value = id (u32 BE).
pub const INTERN_TABLE: &str = "actions_intern";
/// Next id per (app, field path): key = app, 0, field path; value = u32 BE.
pub const INTERN_NEXT_TABLE: &str = "actions_intern_next";
/// Segment members: key = app, 0, segment, 0, user; value empty.
pub const MEMBERS_TABLE: &str = "actions_members";
/// Segment member counts: key = app, 0, segment; value = i64 BE.
pub const COUNTS_TABLE: &str = "actions_segment_counts";
/// Where each aggregation went live: key = aggregation key; value = JSON [`LiveSince`].
pub const DEFS_TABLE: &str = "actions_defs";
/// Back-fill jobs: key = aggregation key; value = JSON [`Job`].
pub const JOBS_TABLE: &str = "actions_jobs";
/// Erased users, per processor: key = processor, 0, app, 0, user; value = JSON {partition:
/// offset} of their erasures in the processor's topic. Per processor because a module's
/// processors share its store and each reads its own topic: the erasure record is at
/// another partition and offset in each.
pub const ERASURES_TABLE: &str = "actions_erasures";
/// Erased users as written before [`ERASURES_TABLE`] (key = app, 0, user, one value for
/// every group): still read, as a fallback, by a processor that has no entry of its own.
pub const LEGACY_ERASED_TABLE: &str = "actions_erased";
/// Store writes of committed rounds not yet known to be applied (non-embedded stores):
/// key = processor, 0, sequence (u64 BE); value = JSON writes.
pub const REDO_TABLE: &str = "actions_redo";

/// Timer keys of back-fill steps start with this byte (user review keys start with an
/// app id, which never does).
const JOB_TIMER: u8 = 1;

/// Timer keys of recompute steps start with this byte.
const RECOMPUTE_TIMER: u8 = 2;

/// The recompute timer key of an aggregation key.
pub fn recompute_timer_key(agg_key: &str) -> Vec<u8> {
    job_key(RECOMPUTE_TIMER, agg_key)
}

/// A job's timer key: its kind byte, then the aggregation key.
fn job_key(kind: u8, agg_key: &str) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(agg_key.as_bytes());
    k
}

/// Records read per back-fill step.
pub const BACKFILL_STEP_RECORDS: usize = 20_000;

/// Users whose decoded state is kept between rounds.
const CACHE_USERS: usize = 200_000;

/// Where an aggregation went live: the processor's positions on its topic in the first
/// round that had it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSince {
    /// The topic.
    pub topic: String,
    /// Partition → first offset counted live.
    pub positions: std::collections::BTreeMap<u32, u64>,
    /// When, ms.
    pub at_ms: i64,
}

/// A back-fill job, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The aggregation's name.
    pub aggregation: String,
    /// Its key.
    pub key: String,
    /// Whether crossings found by the back-fill fire triggers.
    pub refire: bool,
    /// The topic read.
    pub topic: String,
    /// Partition → next offset to read.
    pub cursor: std::collections::BTreeMap<u32, u64>,
    /// Partition → offset where live counting began (read up to, excluded).
    pub until: std::collections::BTreeMap<u32, u64>,
    /// Records to read in all.
    pub total: u64,
    /// Records read so far.
    pub read: u64,
    /// Events merged into profiles.
    pub merged: u64,
    /// Steps done.
    pub steps: u64,
    /// Done.
    pub done: bool,
    /// When it was asked, ms.
    pub requested_ms: i64,
    /// When it finished, ms (0 until then).
    pub finished_ms: i64,
}

/// The job timer key of an aggregation key.
pub fn job_timer_key(agg_key: &str) -> Vec<u8> {
    job_key(JOB_TIMER, agg_key)
}

/// The processor name of a group.
pub fn processor_name(group: &str) -> String {
    if group == DEFAULT_GROUP {
        "actions".to_owned()
    } else {
        format!("actions-{group}")
    }
}

/// Topics and tuning of the processors.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// The events topic (the default group's input and where erasures are).
    pub events_topic: TopicName,
    /// Segment enter/exit records.
    pub segments_topic: TopicName,
    /// Trigger records.
    pub triggers_topic: TopicName,
    /// Webhook requests for the notify module.
    pub notifications_topic: TopicName,
}

/// Local indices of a group's aggregations (a bit each below 128, a list above).
#[derive(Debug, Default, Clone)]
struct AggSet {
    low: u128,
    high: Vec<usize>,
}

impl AggSet {
    fn insert(&mut self, li: usize) {
        if li < 128 {
            self.low |= 1 << li;
        } else if !self.high.contains(&li) {
            self.high.push(li);
        }
    }

    fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let mut low = self.low;
        std::iter::from_fn(move || {
            (low != 0).then(|| {
                let li = low.trailing_zeros() as usize;
                low &= low - 1;
                li
            })
        })
        .chain(self.high.iter().copied())
    }
}

/// What changed for a user in the current round.
#[derive(Debug, Default)]
struct Dirty {
    clear: bool,
    meta: bool,
    /// Aggregations that changed.
    aggs: AggSet,
    /// Schedule the next review from this time instead of the wall clock (reviews).
    review_from: Option<i64>,
}

/// Why a condition is being evaluated: the id part of what it emits.
#[derive(Debug, Clone, Copy)]
enum Cause<'a> {
    Event { topic: &'a TopicName, partition: u32, offset: u64, event_id: &'a str },
    Review(i64),
    Backfill { key: &'a str, step: u64 },
}

impl Cause<'_> {
    fn id(&self) -> String {
        match self {
            Cause::Event { topic, partition, offset, .. } => format!("e:{topic}:{partition}:{offset}"),
            Cause::Review(due) => format!("r:{due}"),
            Cause::Backfill { key, step } => format!("b:{key}:{step}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cause::Event { event_id, .. } => serde_json::json!({"kind": "event", "event_id": event_id}),
            Cause::Review(due) => serde_json::json!({"kind": "review", "at_ms": due}),
            Cause::Backfill { key, .. } => serde_json::json!({"kind": "backfill", "aggregation": key}),
        }
    }
}

/// Erased users: app key → partition → offset of their erasure.
type Erased = FxHashMap<Vec<u8>, std::collections::BTreeMap<u32, u64>>;

/// A write a shard adds to the round's batch.
#[derive(Debug)]
enum Op {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
}

/// What a shard's work adds to the round; applied to the round's context afterwards, shard
/// by shard (a user's records keep their order: a user belongs to one shard).
#[derive(Debug, Default)]
struct Out {
    ops: Vec<Op>,
    emits: Vec<Emit>,
    timers: Vec<(i64, Vec<u8>)>,
    receipts: Vec<(String, serde_json::Value)>,
    count_deltas: FxHashMap<Vec<u8>, i64>,
    erased: Vec<(Vec<u8>, std::collections::BTreeMap<u32, u64>)>,
    writes: Vec<UserWrite>,
    publish: Vec<(UserKey, String, Arc<crate::store::Fields>)>,
}

/// What every shard of a processor reads and nobody changes while it runs.
struct Core {
    name: String,
    group: String,
    settings: ProcessorSettings,
    defs: Arc<Definitions>,
    agg_keys: Vec<String>,
    /// Global aggregation index → index within this group.
    local: Vec<Option<usize>>,
    /// The group's aggregations (global indices) whose filters name the event's action…
    by_action: FxHashMap<String, Arc<[usize]>>,
    /// …and those whose filters do not: an event is offered to these and to its action's.
    any_action: Arc<[usize]>,
    segments: Vec<usize>,
    triggers: Vec<usize>,
    evaluates_stage: bool,
    meta_field: String,
    zones: Arc<dyn AppZones>,
    clock: Arc<dyn Clock>,
    /// The store replaces every field of a written user.
    full_writes: bool,
    /// Where committed users are published for in-memory reads.
    hot: Option<crate::hot::HotProfiles>,
    /// What the stages, each segment and each trigger read.
    stage_deps: Deps,
    segment_deps: Vec<Deps>,
    trigger_deps: Vec<Deps>,
}

/// The users one thread owns during a round. A user's shard is fixed by its key
/// ([`shard_of`]), so shards never share a user and run in parallel without locks.
#[derive(Debug, Default)]
struct Shard {
    cache: FxHashMap<UserKey, UserState>,
    dirty: FxHashMap<UserKey, Dirty>,
    /// Local days, memoised.
    days: crate::window::Days,
    out: Out,
    /// Reused buffer of an event's aggregation inputs.
    inputs: Vec<(usize, Input)>,
}

/// The shard of a user among `n`.
fn shard_of(app: &str, user: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(app.as_bytes());
    h.update(&[0]);
    h.update(user.as_bytes());
    (h.digest() % n as u64) as usize
}

/// Rounds with fewer records than this run on the processor's own thread (handing work to
/// the pool costs more than a few records).
const PARALLEL_MIN_RECORDS: usize = 256;

/// The actions processor of one group (see the module docs).
pub struct ActionsProcessor {
    core: Core,
    topic: TopicName,
    store: Arc<dyn ProfileStore>,
    log: Arc<dyn Log>,
    shards: Vec<Shard>,
    interner: Interner,
    counts: FxHashMap<Vec<u8>, i64>,
    count_deltas: FxHashMap<Vec<u8>, i64>,
    /// Erased users (key = app, 0, user) and where their erasures are in this processor's
    /// topic (also in [`ERASURES_TABLE`]).
    erased: Erased,
    started: bool,
    redo_seq: u64,
    /// Redo records of the current round (not committed yet).
    redo_staged: Vec<(Vec<u8>, Vec<UserWrite>)>,
    /// Committed redo records not yet applied to the store.
    redo_unapplied: Vec<(Vec<u8>, Vec<UserWrite>)>,
    /// Applied redo records whose deletion rides in the next batch.
    redo_done: Vec<Vec<u8>>,
    /// Local days, memoised (for the processor's own thread).
    days: crate::window::Days,
    /// Where this round's records of each partition end (not committed yet): a recompute
    /// step in the same round reads up to there, so its switch-over includes them.
    round_positions: FxHashMap<u32, u64>,
    /// The round's records, handled at the end of the round.
    pending: Vec<Record>,
    /// Decoded entries per chunk of records and shard, kept between rounds (empty).
    lists: Vec<Vec<Vec<(usize, LogEntry)>>>,
    /// Users of the current round to publish once it has committed.
    publish: Vec<(UserKey, String, Arc<crate::store::Fields>)>,
}

impl std::fmt::Debug for ActionsProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsProcessor").field("name", &self.core.name).field("topic", &self.topic).field("aggregations", &self.core.agg_keys).field("threads", &self.shards.len()).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct RedoWrite {
    app: String,
    user: String,
    clear: bool,
    set: Vec<(String, Vec<u8>)>,
    remove: Vec<String>,
    scope: String,
}

fn encode_redo(writes: &[UserWrite]) -> Vec<u8> {
    let list: Vec<RedoWrite> = writes
        .iter()
        .filter_map(|w| {
            let u = w.user.as_ref()?;
            Some(RedoWrite { app: u.app.as_str().to_owned(), user: u.user.clone(), clear: w.clear, set: w.set.clone(), remove: w.remove.clone(), scope: w.scope.clone() })
        })
        .collect();
    encode(&list)
}

fn decode_redo(bytes: &[u8]) -> std::result::Result<Vec<UserWrite>, crate::Error> {
    let list: Vec<RedoWrite> = crate::state::decode("redo", bytes)?;
    list.into_iter()
        .map(|r| {
            let app = AppId::new(r.app).map_err(|e| crate::Error::Corrupt(format!("redo record: {e}")))?;
            Ok(UserWrite { user: Some(UserKey::new(app, r.user)), clear: r.clear, set: r.set, remove: r.remove, scope: r.scope, prepared: None })
        })
        .collect()
}

fn failed(name: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Processor { processor: name.to_owned(), message: e.to_string() }
}

/// `app`, 0, `name`: the key of a user (erasures, review timers) or of a segment's count.
pub(crate) fn app_key(app: &str, name: &str) -> Vec<u8> {
    let mut k = app.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The key of a segment member in [`MEMBERS_TABLE`]; without a user, the segment's prefix.
pub(crate) fn member_key(app: &str, segment: &str, user: Option<&str>) -> Vec<u8> {
    let mut k = app_key(app, segment);
    k.push(0);
    if let Some(u) = user {
        k.extend_from_slice(u.as_bytes());
    }
    k
}

/// `processor`, 0: the prefix of a processor's rows in [`ERASURES_TABLE`] (followed by an
/// [`app_key`]) and in [`REDO_TABLE`] (followed by a sequence).
fn processor_prefix(processor: &str) -> Vec<u8> {
    let mut k = processor.as_bytes().to_vec();
    k.push(0);
    k
}

/// Reads an [`app_key`] of a user back.
fn parse_user_key(bytes: &[u8]) -> Option<UserKey> {
    let split = bytes.iter().position(|b| *b == 0)?;
    let app = AppId::new(std::str::from_utf8(&bytes[..split]).ok()?).ok()?;
    Some(UserKey::new(app, std::str::from_utf8(&bytes[split + 1..]).ok()?))
}

impl ActionsProcessor {
    /// The processor of `group`.
    pub fn new(
        group: &str,
        defs: Arc<Definitions>,
        settings: ProcessorSettings,
        store: Arc<dyn ProfileStore>,
        zones: Arc<dyn AppZones>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn Log>,
    ) -> std::result::Result<ActionsProcessor, crate::Error> {
        let g = defs.groups.iter().find(|g| g.name == group).ok_or_else(|| crate::Error::Config(format!("unknown group {group:?}")))?;
        let topic = match &g.topic {
            Some(t) => TopicName::new(t.as_str()).map_err(|e| crate::Error::Config(format!("group {group:?}: {e}")))?,
            None => settings.events_topic.clone(),
        };
        let aggs: Vec<usize> = defs.aggregations.iter().enumerate().filter(|(_, a)| a.group == group).map(|(i, _)| i).collect();
        let agg_keys = aggs.iter().map(|i| defs.aggregations[*i].key.clone()).collect();
        let mut local = vec![None; defs.aggregations.len()];
        let mut by_action_lists: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut any_action = Vec::new();
        for (n, i) in aggs.iter().enumerate() {
            local[*i] = Some(n);
            match defs.aggregations[*i].filter.as_ref().and_then(|f| f.required_actions()) {
                Some(actions) => actions.into_iter().for_each(|a| by_action_lists.entry(a).or_default().push(*i)),
                None => any_action.push(*i),
            }
        }
        let by_action = by_action_lists.into_iter().map(|(a, list)| (a, Arc::from(list))).collect();
        let any_action: Arc<[usize]> = Arc::from(any_action);
        let segments: Vec<usize> = defs.segments.iter().enumerate().filter(|(_, s)| s.group == group).map(|(i, _)| i).collect();
        let triggers: Vec<usize> = defs.triggers.iter().enumerate().filter(|(_, s)| s.group == group).map(|(i, _)| i).collect();
        let stage_deps = defs.stages.iter().fold(Deps::default(), |d, s| d.union(Deps::of(&s.cond, &local)));
        let segment_deps = segments.iter().map(|i| Deps::of(&defs.segments[*i].cond, &local)).collect();
        let trigger_deps = triggers.iter().map(|i| Deps::of(&defs.triggers[*i].cond, &local)).collect();
        let threads = match defs.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let core = Core {
            name: processor_name(group),
            group: group.to_owned(),
            settings,
            evaluates_stage: group == DEFAULT_GROUP,
            meta_field: meta_field(group),
            full_writes: store.wants_full_writes(),
            hot: None,
            defs,
            agg_keys,
            local,
            by_action,
            any_action,
            segments,
            triggers,
            zones,
            clock,
            stage_deps,
            segment_deps,
            trigger_deps,
        };
        Ok(ActionsProcessor {
            core,
            topic,
            store,
            log,
            shards: (0..threads).map(|_| Shard::default()).collect(),
            interner: Interner::default(),
            counts: FxHashMap::default(),
            count_deltas: FxHashMap::default(),
            erased: FxHashMap::default(),
            started: false,
            redo_seq: 0,
            redo_staged: Vec::new(),
            redo_unapplied: Vec::new(),
            redo_done: Vec::new(),
            days: crate::window::Days::default(),
            round_positions: FxHashMap::default(),
            pending: Vec::new(),
            lists: Vec::new(),
            publish: Vec::new(),
        })
    }

    /// Publishes committed users to `hot` (for the service's in-memory reads).
    pub fn with_hot(mut self, hot: Option<crate::hot::HotProfiles>) -> ActionsProcessor {
        self.core.hot = hot;
        self
    }

    /// The topic it reads.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// How many threads share a round's users.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    /// First call of a run: store writes left by a crash are applied, and aggregations
    /// new to this processor are recorded as live from its current positions.
    fn begin(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        if !self.started {
            let prefix = processor_prefix(&self.core.name);
            for (key, value) in ctx.store().scan_prefix(REDO_TABLE, &prefix, usize::MAX)? {
                let seq = key[prefix.len()..].try_into().map(u64::from_be_bytes).unwrap_or(0);
                self.redo_seq = self.redo_seq.max(seq + 1);
                self.redo_unapplied.push((key, decode_redo(&value).map_err(|e| failed(&self.core.name, e))?));
            }
            let partitions = match self.log.partition_count(&self.topic) {
                Ok(n) => n,
                Err(meridian_log::LogError::UnknownTopic(_)) => 0,
                Err(e) => return Err(e.into()),
            };
            // Erased users are few: all of them are kept in memory, so events need no
            // store read to learn that their user was not erased. A row whose erasure
            // retention has removed from the log (with every record before it) can skip
            // nothing any more: it is deleted.
            self.erased.clear();
            let starts: Vec<u64> = (0..partitions).map(|p| self.log.offsets(&self.topic, p).map(|o| o.start)).collect::<std::result::Result<_, _>>()?;
            let own = processor_prefix(&self.core.name);
            let mut pruned = 0usize;
            for (key, value) in ctx.store().scan_prefix(ERASURES_TABLE, &own, usize::MAX)? {
                let at: std::collections::BTreeMap<u32, u64> = serde_json::from_slice(&value).unwrap_or_default();
                if !at.is_empty() && at.iter().all(|(p, offset)| starts.get(*p as usize).is_some_and(|start| start > offset)) {
                    ctx.batch().delete(ERASURES_TABLE, key);
                    pruned += 1;
                    continue;
                }
                self.erased.insert(key[own.len()..].to_vec(), at);
            }
            if pruned > 0 {
                tracing::info!(processor = %self.core.name, pruned, "erasures the log no longer holds records before: forgotten");
            }
            for (key, value) in ctx.store().scan_prefix(LEGACY_ERASED_TABLE, &[], usize::MAX)? {
                self.erased.entry(key).or_insert_with(|| serde_json::from_slice(&value).unwrap_or_default());
            }
            for key in &self.core.agg_keys {
                if ctx.store().get(DEFS_TABLE, key.as_bytes())?.is_some() {
                    continue;
                }
                let mut since = LiveSince { topic: self.topic.as_str().to_owned(), at_ms: self.core.clock.now_ms(), ..LiveSince::default() };
                for p in 0..partitions {
                    since.positions.insert(p, ctx.committed_position(&self.topic, p)?.unwrap_or(0));
                }
                ctx.batch().put(DEFS_TABLE, key.as_bytes().to_vec(), serde_json::to_vec(&since).unwrap_or_default());
            }
            self.started = true;
        }
        self.apply_redo()
    }

    /// Applies the committed redo records to the store, in order; their deletion rides in
    /// the next batch.
    fn apply_redo(&mut self) -> Result<()> {
        if self.redo_unapplied.is_empty() {
            return Ok(());
        }
        let writes: Vec<UserWrite> = self.redo_unapplied.iter().flat_map(|(_, w)| w.iter().cloned()).collect();
        self.store.apply(&writes).map_err(|e| failed(&self.core.name, e))?;
        self.redo_done.extend(self.redo_unapplied.drain(..).map(|(k, _)| k));
        Ok(())
    }

    fn today(&mut self, tz: chrono_tz::Tz) -> Day {
        let now = self.core.clock.now_ms();
        self.days.local_day(tz, now)
    }

    /// The shard of a user.
    fn shard_index(&self, key: &UserKey) -> usize {
        shard_of(key.app.as_str(), &key.user, self.shards.len())
    }

    /// The user's state, loaded once per run (cache) or from the store; its shard.
    fn load(&mut self, key: &UserKey) -> Result<usize> {
        let s = self.shard_index(key);
        if !self.shards[s].cache.contains_key(key) {
            self.shards[s].load_missing(&self.core, &*self.store, vec![key.clone()])?;
        }
        Ok(s)
    }

    /// What an event adds to aggregation `index`, if it matches (see [`input`]).
    fn input(&self, ctx: &mut ProcessContext<'_>, index: usize, event: &Event) -> Result<Option<Input>> {
        input(&self.core, &self.interner, ctx.store(), index, event)
    }

    /// Handles the round's records: decoded in parallel, each given to its user's shard;
    /// then each shard, on a thread of its own, reads its users missing from the cache,
    /// applies its records (filters, interning through the shared interner, buckets,
    /// conditions) and encodes its changed users. What the shards wrote and emitted joins
    /// the round in shard order.
    fn handle_round(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        let threads = if self.pending.len() >= PARALLEL_MIN_RECORDS { self.shards.len() } else { 1 };
        let n = self.shards.len();
        // Decoded in contiguous chunks, each chunk's entries dealt into one list per shard
        // (lists kept between rounds: no fresh memory per round). Entry = (record index, entry).
        let mut lists = std::mem::take(&mut self.lists);
        lists.resize_with(threads, Vec::new);
        for chunk in &mut lists {
            chunk.resize_with(n, Vec::new);
        }
        let records = &self.pending;
        let chunk_len = records.len().div_ceil(threads).max(1);
        let decode = |first: usize, chunk: &[Record], out: &mut Vec<Vec<(usize, LogEntry)>>| {
            for (i, record) in chunk.iter().enumerate() {
                match LogEntry::decode(&record.value) {
                    Ok(entry) => {
                        let shard = match &entry {
                            LogEntry::Event(e) => e.user.as_ref().map_or(0, |u| shard_of(e.app.as_str(), u.as_str(), n)),
                            LogEntry::Erasure(e) => shard_of(e.app.as_str(), e.subject.as_str(), n),
                        };
                        out[shard].push((first + i, entry));
                    }
                    Err(e) => {
                        tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "actions: skipping undecodable record");
                        metrics::counter!("meridian_actions_undecodable_total").increment(1);
                    }
                }
            }
        };
        if threads > 1 {
            rayon::in_place_scope(|scope| {
                let decode = &decode;
                let mut parts = records.chunks(chunk_len).zip(lists.iter_mut()).enumerate();
                let first = parts.next();
                for (c, (chunk, out)) in parts {
                    scope.spawn(move |_| decode(c * chunk_len, chunk, out));
                }
                if let Some((_, (chunk, out))) = first {
                    decode(0, chunk, out);
                }
            });
        } else {
            decode(0, records, &mut lists[0]);
        }
        // Shard s takes list s of every chunk, in chunk order (= log order).
        let mut per_shard: Vec<Vec<Vec<(usize, LogEntry)>>> = (0..n).map(|_| Vec::with_capacity(threads)).collect();
        for chunk in &mut lists {
            for (s, list) in chunk.drain(..).enumerate() {
                per_shard[s].push(list);
            }
        }
        let round = Round { core: &self.core, store: &*self.store, kv: ctx.store(), interner: &self.interner, erased: &self.erased, topic: &self.topic, records, now: self.core.clock.now_ms() };
        let busy = per_shard.iter().filter(|w| w.iter().any(|l| !l.is_empty())).count();
        let results: Vec<Result<()>> = if threads > 1 && busy > 1 {
            let mut results: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
            rayon::in_place_scope(|scope| {
                let round = &round;
                let mut jobs = self.shards.iter_mut().zip(per_shard.iter_mut()).zip(results.iter_mut());
                let first = jobs.next();
                for ((shard, w), result) in jobs {
                    scope.spawn(move |_| *result = shard.run(round, w));
                }
                if let Some(((shard, w), result)) = first {
                    *result = shard.run(round, w);
                }
            });
            results
        } else {
            self.shards.iter_mut().zip(per_shard.iter_mut()).map(|(shard, w)| shard.run(&round, w)).collect()
        };
        // The lists (emptied by the shards) go back, chunk by chunk, for the next round.
        for shard_lists in per_shard {
            for (c, list) in shard_lists.into_iter().enumerate() {
                lists[c].push(list);
            }
        }
        self.lists = lists;
        self.pending.clear();
        results.into_iter().collect::<Result<Vec<()>>>()?;
        self.finish_flush(ctx)
    }

    /// Writes the round's changed users (stage or redo), their reviews and the segment
    /// counts.
    fn flush(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        let now = self.core.clock.now_ms();
        for shard in &mut self.shards {
            shard.flush_users(&self.core, &*self.store, now);
        }
        self.finish_flush(ctx)
    }

    /// Applies what the shards produced to the round (in shard order), then the counts
    /// and the store's writes.
    fn finish_flush(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        for key in self.redo_done.drain(..) {
            ctx.batch().delete(REDO_TABLE, key);
        }
        self.interner.write_new(ctx.batch());
        let mut writes = Vec::new();
        let cache_users = CACHE_USERS / self.shards.len().max(1);
        for shard in &mut self.shards {
            let out = std::mem::take(&mut shard.out);
            for op in out.ops {
                match op {
                    Op::Put(table, key, value) => ctx.batch().put(table, key, value),
                    Op::Delete(table, key) => ctx.batch().delete(table, key),
                }
            }
            for emit in out.emits {
                ctx.emit(emit)?;
            }
            for (due, key) in out.timers {
                ctx.schedule_timer(due, &key);
            }
            for (id, removed) in out.receipts {
                ctx.erasure_receipt(&id, removed)?;
            }
            for (key, delta) in out.count_deltas {
                *self.count_deltas.entry(key).or_default() += delta;
            }
            for (key, at) in out.erased {
                self.erased.insert(key, at);
            }
            if writes.is_empty() {
                writes = out.writes;
            } else {
                writes.extend(out.writes);
            }
            self.publish.extend(out.publish);
            if shard.cache.len() > cache_users {
                shard.cache.clear();
            }
        }
        for (key, delta) in std::mem::take(&mut self.count_deltas) {
            if delta == 0 {
                continue;
            }
            let current = match self.counts.get(&key) {
                Some(c) => *c,
                None => ctx.store().get(COUNTS_TABLE, &key)?.and_then(|v| v.try_into().ok()).map(i64::from_be_bytes).unwrap_or(0),
            };
            let next = (current + delta).max(0);
            ctx.batch().put(COUNTS_TABLE, key.clone(), next.to_be_bytes().to_vec());
            self.counts.insert(key, next);
        }
        let staged = writes.is_empty() || self.store.stage(ctx.batch(), &mut writes);
        let mut redo_key = None;
        if !staged {
            let mut key = processor_prefix(&self.core.name);
            key.extend_from_slice(&self.redo_seq.to_be_bytes());
            self.redo_seq += 1;
            ctx.batch().put(REDO_TABLE, key.clone(), encode_redo(&writes));
            redo_key = Some(key);
        }
        if self.core.hot.is_some() {
            // Full writes (and erasures) go to the memory copy as they are: moved when the
            // store has staged them, copied when the redo record still needs them.
            for w in writes.iter_mut().filter(|w| w.clear) {
                if let Some(user) = &w.user {
                    let fields = if staged { std::mem::take(&mut w.set) } else { w.set.clone() };
                    self.publish.push((user.clone(), w.scope.clone(), Arc::new(fields)));
                }
            }
        }
        if let Some(key) = redo_key {
            self.redo_staged.push((key, writes));
        }
        Ok(())
    }

    fn review(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        let Some(key) = parse_user_key(&timer.key) else { return Ok(()) };
        let s = self.load(&key)?;
        let shard = &mut self.shards[s];
        let state = shard.cache.get(&key).expect("loaded");
        if state.meta.review_at_ms != timer.due_ms {
            // Superseded by a later event (which scheduled another review) or erased.
            return Ok(());
        }
        let tz = self.core.zones.zone(&key.app);
        shard.evaluate(&self.core, &key, tz, timer.due_ms, &Cause::Review(timer.due_ms), true);
        // The next review counts from the review's own day, not the wall clock.
        let d = shard.dirty.entry(key).or_default();
        d.meta = true;
        d.review_from = Some(timer.due_ms);
        self.flush(ctx)
    }

    /// A job's change to a user's buckets of aggregation `li` (local index), then the
    /// user's conditions re-evaluated; triggers fire only when `fire`.
    fn merge_job_buckets(&mut self, key: &UserKey, li: usize, change: impl FnOnce(&mut Buckets), cause: &Cause, fire: bool) -> Result<()> {
        let s = self.load(key)?;
        let tz = self.core.zones.zone(&key.app);
        let shard = &mut self.shards[s];
        let state = shard.cache.get_mut(key).expect("loaded");
        change(&mut state.aggs[li]);
        let eval_ms = state.meta.last_active_ms.max(1);
        shard.dirty.entry(key.clone()).or_default().aggs.insert(li);
        shard.evaluate(&self.core, key, tz, eval_ms, cause, fire);
        Ok(())
    }

    /// Where `key`'s erasures are (partition → offset), if the user was ever erased.
    fn erased_at(&self, key: &UserKey) -> Option<&std::collections::BTreeMap<u32, u64>> {
        if self.erased.is_empty() {
            return None;
        }
        self.erased.get(&app_key(key.app.as_str(), &key.user))
    }
}

/// Distinct values' ids, shared by a processor's shards. Ids are given under a lock and
/// written with the round's batch (a round commits as a whole, so an id a shard used is
/// stored exactly when the user state that holds it is).
#[derive(Debug, Default)]
struct Interner {
    inner: parking_lot::RwLock<InternerState>,
}

#[derive(Debug, Default)]
struct InternerState {
    /// Key (app, 0, path, 0, value) → id.
    ids: FxHashMap<Vec<u8>, u32>,
    /// Space (app, 0, path) → next id.
    next: FxHashMap<Vec<u8>, u32>,
    /// Ids given or spaces advanced in this round, not yet in the batch.
    new_ids: Vec<(Vec<u8>, u32)>,
    new_next: FxHashSet<Vec<u8>>,
}

impl Interner {
    /// The id of `value` of `path` in `app`, given now if it has none.
    fn intern(&self, kv: &dyn meridian_state::KvStore, name: &str, app: &str, path: &str, value: &str) -> Result<u32> {
        let mut key = Vec::with_capacity(app.len() + path.len() + value.len() + 2);
        key.extend_from_slice(app.as_bytes());
        key.push(0);
        key.extend_from_slice(path.as_bytes());
        let space_len = key.len();
        key.push(0);
        key.extend_from_slice(value.as_bytes());
        if let Some(id) = self.inner.read().ids.get(key.as_slice()) {
            return Ok(*id);
        }
        let stored = kv.get(INTERN_TABLE, &key)?;
        let mut state = self.inner.write();
        if let Some(id) = state.ids.get(key.as_slice()) {
            // Another shard got here first.
            return Ok(*id);
        }
        if let Some(stored) = stored {
            let id = stored.try_into().map(u32::from_be_bytes).map_err(|_| failed(name, "corrupt interned id"))?;
            state.ids.insert(key, id);
            return Ok(id);
        }
        let space = &key[..space_len];
        let next = match state.next.get(space) {
            Some(n) => *n,
            None => kv.get(INTERN_NEXT_TABLE, space)?.and_then(|v| v.try_into().ok()).map(u32::from_be_bytes).unwrap_or(0),
        };
        let space = space.to_vec();
        state.next.insert(space.clone(), next + 1);
        state.new_next.insert(space);
        state.new_ids.push((key.clone(), next));
        state.ids.insert(key, next);
        Ok(next)
    }

    /// Adds the round's new ids and spaces' next ids to `batch`.
    fn write_new(&self, batch: &mut WriteBatch) {
        let mut state = self.inner.write();
        for (key, id) in std::mem::take(&mut state.new_ids) {
            batch.put(INTERN_TABLE, key, id.to_be_bytes().to_vec());
        }
        for space in std::mem::take(&mut state.new_next) {
            let next = state.next.get(&space).copied().unwrap_or(0);
            batch.put(INTERN_NEXT_TABLE, space, next.to_be_bytes().to_vec());
        }
    }

    /// Forgets everything (a failed round may have given ids that were never stored).
    fn clear(&self) {
        *self.inner.write() = InternerState::default();
    }
}

/// What an event adds to aggregation `index`, if it matches: its filter, then the value
/// the aggregation's kind reads (distinct values interned).
fn input(core: &Core, interner: &Interner, kv: &dyn meridian_state::KvStore, index: usize, event: &Event) -> Result<Option<Input>> {
    let agg = &core.defs.aggregations[index];
    if let Some(filter) = &agg.filter {
        if !filter.matches(event) {
            return Ok(None);
        }
    }
    let t = event.time.millis();
    Ok(match agg.kind {
        AggregationKind::Count | AggregationKind::FirstTime | AggregationKind::LastTime => Some(Input::Event(t)),
        AggregationKind::Sum | AggregationKind::Min | AggregationKind::Max => agg.field.as_ref().and_then(|f| f.number(event)).map(Input::Number),
        AggregationKind::LastValue => agg.field.as_ref().and_then(|f| f.read(event)).map(|v| {
            let text = match v {
                meridian_pipeline::FieldValue::Str(s) => serde_json::to_string(s).unwrap_or_default(),
                meridian_pipeline::FieldValue::Int(i) => i.to_string(),
                meridian_pipeline::FieldValue::Json(j) => j.to_string(),
            };
            Input::Value(t, text)
        }),
        AggregationKind::Distinct => match agg.field.as_ref().and_then(|f| f.text(event)) {
            Some(value) => Some(Input::Id(interner.intern(kv, &core.name, event.app.as_str(), &agg.field_path, &value)?)),
            None => None,
        },
    })
}

/// What a round's shards share, read-only but for the interner.
struct Round<'a> {
    core: &'a Core,
    store: &'a dyn ProfileStore,
    kv: &'a dyn meridian_state::KvStore,
    interner: &'a Interner,
    erased: &'a Erased,
    topic: &'a TopicName,
    /// The round's records (entries refer to them by index).
    records: &'a [Record],
    now: i64,
}

impl Shard {
    /// A round's records of this shard's users, in log order: users missing from the cache
    /// read in one call, each record applied, then the changed users encoded.
    fn run(&mut self, round: &Round<'_>, lists: &mut [Vec<(usize, LogEntry)>]) -> Result<()> {
        let result = self.run_lists(round, lists);
        // Emptied here (the events are dropped on this thread), kept for the next round.
        lists.iter_mut().for_each(Vec::clear);
        result
    }

    /// Reads this shard's users missing from the cache, in one call (one round trip for
    /// Redis).
    fn load_missing(&mut self, core: &Core, store: &dyn ProfileStore, missing: Vec<UserKey>) -> Result<()> {
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = core.agg_keys.iter().map(String::as_str).collect();
        let all = store.read_many(&missing).map_err(|e| failed(&core.name, e))?;
        for (key, fields) in missing.into_iter().zip(all) {
            let state = UserState::decode(&fields, &core.meta_field, &keys).map_err(|e| failed(&core.name, e))?;
            self.cache.insert(key, state);
        }
        Ok(())
    }

    fn run_lists(&mut self, round: &Round<'_>, lists: &[Vec<(usize, LogEntry)>]) -> Result<()> {
        let core = round.core;
        let mut missing: Vec<UserKey> = Vec::new();
        let mut seen: FxHashSet<(&str, &str)> = FxHashSet::default();
        for (_, entry) in lists.iter().flatten() {
            let (app, user) = match entry {
                LogEntry::Event(e) => match &e.user {
                    Some(u) => (&e.app, u.as_str()),
                    None => continue,
                },
                LogEntry::Erasure(e) => (&e.app, e.subject.as_str()),
            };
            if seen.insert((app.as_str(), user)) {
                let key = UserKey::new(app.clone(), user);
                if !self.cache.contains_key(&key) {
                    missing.push(key);
                }
            }
        }
        drop(seen);
        self.load_missing(core, round.store, missing)?;
        let mut inputs = std::mem::take(&mut self.inputs);
        for (index, entry) in lists.iter().flatten() {
            let record = &round.records[*index];
            match entry {
                LogEntry::Erasure(erasure) => self.erase(core, round.erased, record, erasure),
                LogEntry::Event(event) => {
                    let Some(user) = &event.user else {
                        metrics::counter!("meridian_actions_events_without_user_total").increment(1);
                        continue;
                    };
                    let tz = core.zones.zone(&event.app);
                    let day = self.days.local_day(tz, event.time.millis());
                    let oldest = self.days.local_day(tz, round.now) - (core.defs.retention_days as Day - 1);
                    if day < oldest {
                        metrics::counter!("meridian_actions_events_beyond_retention_total").increment(1);
                        continue;
                    }
                    if !round.erased.is_empty() {
                        let erased = round.erased.get(&app_key(event.app.as_str(), user.as_str()));
                        if erased.is_some_and(|at| at.get(&record.partition).is_some_and(|at| record.offset < *at)) {
                            continue;
                        }
                    }
                    inputs.clear();
                    let of_action = core.by_action.get(event.action.as_str());
                    for &a in core.any_action.iter().chain(of_action.into_iter().flat_map(|c| c.iter())) {
                        if let Some(input) = input(core, round.interner, round.kv, a, event)? {
                            inputs.push((a, input));
                        }
                    }
                    let cause = Cause::Event { topic: round.topic, partition: record.partition, offset: record.offset, event_id: event.id.as_str() };
                    self.handle_event(core, event, day, oldest, &inputs, &cause);
                }
            }
        }
        self.inputs = inputs;
        self.flush_users(core, round.store, round.now);
        Ok(())
    }

    /// Applies one event of a loaded user: its `inputs` (filters already passed) to the
    /// buckets of its local `day`, activity, timeline, then the conditions it may change.
    fn handle_event(&mut self, core: &Core, event: &Event, day: Day, oldest: Day, inputs: &[(usize, Input)], cause: &Cause) {
        let Some(user) = &event.user else { return };
        let key = UserKey::new(event.app.clone(), user.as_str());
        let tz = core.zones.zone(&event.app);
        let list_max = core.defs.distinct_list_max;
        let timeline_len = core.defs.timeline_len;
        // The user's state is taken out of the cache while the event is applied (one
        // lookup instead of one per step) and put back at the end.
        let mut owned = self.cache.remove(&key).expect("loaded by the round's pre-scan");
        let state = &mut owned;
        let mut touched = AggSet::default();
        for (i, input) in inputs {
            let agg = &core.defs.aggregations[*i];
            let Some(li) = core.local[*i] else { continue };
            let buckets = &mut state.aggs[li];
            if buckets.add(agg.kind, day, input, list_max) {
                buckets.prune(oldest);
                touched.insert(li);
            }
        }
        let t = event.time.millis();
        let meta = &mut state.meta;
        // Whether the first or last event's day moves, or a day gets its first event.
        let (first_before, last_before) = (meta.first_seen_ms, meta.last_active_ms);
        let new_active_day = meta.activity.0.binary_search_by_key(&day, |(d, _)| *d).is_err();
        if meta.first_seen_ms == 0 || t < meta.first_seen_ms {
            meta.first_seen_ms = t;
        }
        meta.last_active_ms = meta.last_active_ms.max(t);
        let days_moved = (first_before != meta.first_seen_ms && (first_before == 0 || self.days.local_day(tz, first_before) != day))
            || (last_before != meta.last_active_ms && (last_before == 0 || self.days.local_day(tz, last_before) != day));
        meta.activity.add(AggregationKind::Count, day, &Input::Event(t), list_max);
        meta.activity.prune(oldest);
        let full = meta.timeline.len() >= timeline_len;
        if timeline_len > 0 && !(full && meta.timeline.last().is_some_and(|e| e.time_ms >= t)) {
            // The entry that falls off lends its strings to the new one (no allocation).
            let mut entry = if full { meta.timeline.pop().expect("full") } else { TimelineEntry { time_ms: 0, action: String::new(), target: None } };
            entry.time_ms = t;
            entry.action.clear();
            entry.action.push_str(event.action.as_str());
            match (&event.target, &mut entry.target) {
                (Some(x), Some((kind, id))) => {
                    kind.clear();
                    kind.push_str(x.kind.as_str());
                    id.clear();
                    id.push_str(&x.id);
                }
                (Some(x), slot) => *slot = Some((x.kind.as_str().to_owned(), x.id.clone())),
                (None, slot) => *slot = None,
            }
            let at = meta.timeline.partition_point(|e| e.time_ms > t);
            meta.timeline.insert(at, entry);
        }
        let eval_ms = meta.last_active_ms;
        let change = Change { aggs: if touched.high.is_empty() { touched.low } else { u128::MAX }, days: days_moved, new_active_day };
        self.evaluate_state(core, &key, state, tz, eval_ms, cause, true, Some(change));
        let dirty = match self.dirty.get_mut(&key) {
            Some(d) => d,
            None => self.dirty.entry(key.clone()).or_default(),
        };
        dirty.meta = true;
        for li in touched.iter() {
            dirty.aggs.insert(li);
        }
        self.cache.insert(key, owned);
    }

    /// Re-evaluates stage, segments and triggers of a loaded user as of `eval_ms`,
    /// emitting what changed. Triggers fire only when `fire`.
    fn evaluate(&mut self, core: &Core, key: &UserKey, tz: chrono_tz::Tz, eval_ms: i64, cause: &Cause, fire: bool) {
        let mut state = self.cache.remove(key).expect("loaded");
        let changed = self.evaluate_state(core, key, &mut state, tz, eval_ms, cause, fire, None);
        self.cache.insert(key.clone(), state);
        if changed {
            self.dirty.entry(key.clone()).or_default().meta = true;
        }
    }

    /// [`Self::evaluate`] of a state taken out of the cache; whether the meta changed.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_state(&mut self, core: &Core, key: &UserKey, state: &mut UserState, tz: chrono_tz::Tz, eval_ms: i64, cause: &Cause, fire: bool, change: Option<Change>) -> bool {
        let defs = &core.defs;
        let eval_ms = eval_ms.max(state.meta.evaluated_ms);
        // Conditions an event cannot have changed are skipped (same inputs, same answer):
        // not when the day moved (windows slide), nor before every condition was evaluated
        // once for this user in this run.
        let previous_day = (state.meta.evaluated_ms != 0).then(|| self.days.local_day(tz, state.meta.evaluated_ms));
        let change = match change {
            Some(c) if state.evaluated_all && previous_day == Some(self.days.local_day(tz, eval_ms)) => Some(c),
            _ => None,
        };
        state.evaluated_all = true;
        let (last_ms, first_ms) = (state.meta.last_active_ms, state.meta.first_seen_ms);
        let facts = DayFacts {
            today: self.days.local_day(tz, eval_ms),
            last_active: (last_ms != 0).then(|| self.days.local_day(tz, last_ms)),
            first_seen: (first_ms != 0).then(|| self.days.local_day(tz, first_ms)),
        };
        let mut changed = state.meta.evaluated_ms != eval_ms;
        state.meta.evaluated_ms = eval_ms;
        let mut stage_changed = false;
        if core.evaluates_stage && change.is_none_or(|c| c.touches(&core.stage_deps, false)) {
            let stage = defs.stages.iter().find(|s| s.cond.eval(&mut |v: &Var| value(defs, &core.local, state, &facts, v))).map_or("", |s| s.name.as_str());
            if stage != state.meta.stage {
                state.meta.stage = stage.to_owned();
                state.meta.stage_since_ms = eval_ms;
                changed = true;
                stage_changed = true;
            }
        }
        let mut member_changes: Vec<(String, bool)> = Vec::new();
        for (n, i) in core.segments.iter().enumerate() {
            if change.is_some_and(|c| !c.touches(&core.segment_deps[n], stage_changed)) {
                continue;
            }
            let seg = &defs.segments[*i];
            let now_in = seg.cond.eval(&mut |v: &Var| value(defs, &core.local, state, &facts, v));
            let was_in = state.meta.segments.binary_search(&seg.name);
            match (was_in, now_in) {
                (Err(at), true) => state.meta.segments.insert(at, seg.name.clone()),
                (Ok(at), false) => {
                    state.meta.segments.remove(at);
                }
                _ => continue,
            }
            changed = true;
            member_changes.push((seg.name.clone(), now_in));
        }
        let mut fired: Vec<String> = Vec::new();
        for (n, i) in core.triggers.iter().enumerate() {
            if change.is_some_and(|c| !c.touches(&core.trigger_deps[n], stage_changed)) {
                continue;
            }
            let trig = &defs.triggers[*i];
            let now_true = trig.cond.eval(&mut |v: &Var| value(defs, &core.local, state, &facts, v));
            match (state.meta.triggers_true.binary_search(&trig.name), now_true) {
                (Err(at), true) => {
                    state.meta.triggers_true.insert(at, trig.name.clone());
                    if fire {
                        fired.push(trig.name.clone());
                    }
                }
                (Ok(at), false) => {
                    state.meta.triggers_true.remove(at);
                }
                _ => continue,
            }
            changed = true;
        }
        let out = &mut self.out;
        let stage = if fired.is_empty() { String::new() } else { state.meta.stage.clone() };
        for (segment, entered) in member_changes {
            let change = if entered { "enter" } else { "exit" };
            let id = emit_id("seg", &[key.app.as_str(), &segment, &key.user, change, &cause.id()]);
            let body = serde_json::json!({
                "id": id, "app": key.app.as_str(), "user": key.user, "segment": segment, "change": change,
                "time_ms": eval_ms, "cause": cause.json(),
            });
            out.emits.push(Emit { topic: core.settings.segments_topic.clone(), key: Bytes::from(key.user.clone()), value: Bytes::from(body.to_string()), id });
            let member = member_key(key.app.as_str(), &segment, Some(&key.user));
            out.ops.push(if entered { Op::Put(MEMBERS_TABLE, member, Vec::new()) } else { Op::Delete(MEMBERS_TABLE, member) });
            *out.count_deltas.entry(app_key(key.app.as_str(), &segment)).or_default() += if entered { 1 } else { -1 };
        }
        for trigger in fired {
            let id = emit_id("trg", &[key.app.as_str(), &trigger, &key.user, &cause.id()]);
            let trig = defs.triggers.iter().find(|t| t.name == trigger).expect("configured");
            let body = serde_json::json!({
                "id": id, "app": key.app.as_str(), "user": key.user, "trigger": trigger, "condition": trig.text,
                "stage": stage, "time_ms": eval_ms, "cause": cause.json(),
            });
            out.emits.push(Emit { topic: core.settings.triggers_topic.clone(), key: Bytes::from(key.user.clone()), value: Bytes::from(body.to_string()), id: id.clone() });
            if trig.webhook {
                // Requested now: the notify module gives a request to the endpoints that
                // existed when it was made (an event from days ago still notifies).
                let request = notification_request(&id, &key.app, body, meridian_event::Timestamp::now().millis());
                out.emits.push(Emit { topic: core.settings.notifications_topic.clone(), key: Bytes::from(key.app.as_str().to_owned()), value: Bytes::from(request), id });
            }
            metrics::counter!("meridian_actions_triggers_fired_total", "trigger" => trigger).increment(1);
        }
        changed
    }

    /// Erases a loaded user: profile, memberships; records the erasure's position so a
    /// replay skips the user's earlier events.
    fn erase(&mut self, core: &Core, erased: &Erased, record: &Record, erasure: &meridian_event::Erasure) {
        if erasure.kind != meridian_event::SubjectKind::User {
            self.out.receipts.push((erasure.id.clone(), serde_json::json!({"profiles": 0})));
            return;
        }
        let key = UserKey::new(erasure.app.clone(), erasure.subject.as_str());
        let state = self.cache.remove(&key).unwrap_or_default();
        let existed = !state.is_empty();
        for segment in &state.meta.segments {
            self.out.ops.push(Op::Delete(MEMBERS_TABLE, member_key(key.app.as_str(), segment, Some(&key.user))));
            *self.out.count_deltas.entry(app_key(key.app.as_str(), segment)).or_default() -= 1;
        }
        self.cache.insert(key.clone(), UserState::empty(core.agg_keys.len()));
        *self.dirty.entry(key.clone()).or_default() = Dirty { clear: true, ..Dirty::default() };
        let k = app_key(key.app.as_str(), &key.user);
        // An earlier erasure of this round is not in `erased` yet.
        let mut at = self.out.erased.iter().rev().find(|(e, _)| *e == k).map(|(_, at)| at.clone()).or_else(|| erased.get(&k).cloned()).unwrap_or_default();
        at.insert(record.partition, record.offset);
        let mut stored = processor_prefix(&core.name);
        stored.extend_from_slice(&k);
        self.out.ops.push(Op::Put(ERASURES_TABLE, stored, serde_json::to_vec(&at).unwrap_or_default()));
        self.out.erased.push((k, at));
        self.out.receipts.push((
            erasure.id.clone(),
            serde_json::json!({"profiles": u64::from(existed), "aggregations": state.aggs.iter().filter(|b| !b.0.is_empty()).count(), "segments": state.meta.segments.len()}),
        ));
    }

    /// Encodes the shard's changed users into writes (and their next reviews), in `out`.
    fn flush_users(&mut self, core: &Core, store: &dyn ProfileStore, now: i64) {
        if self.dirty.is_empty() {
            return;
        }
        let horizon = i64::from(core.defs.horizon_days);
        let scope = if core.group == DEFAULT_GROUP { String::new() } else { core.group.clone() };
        self.out.writes.reserve(self.dirty.len());
        for (key, d) in std::mem::take(&mut self.dirty) {
            let Some(state) = self.cache.get_mut(&key) else { continue };
            let mut write = UserWrite { clear: d.clear, scope: scope.clone(), ..UserWrite::new(key.clone()) };
            // Erased in this round: nothing is written but the erasure, unless events
            // after the erasure (in the same round) started the user again.
            let erased = d.clear && state.is_empty();
            if !erased && state.meta.last_active_ms > 0 {
                // The next daily review, while time can still change something.
                let tz = core.zones.zone(&key.app);
                let today = self.days.local_day(tz, d.review_from.unwrap_or(now).max(state.meta.last_active_ms));
                let last = self.days.local_day(tz, state.meta.last_active_ms);
                let due = if i64::from(today - last) < horizon { self.days.day_start_ms(tz, today + 1) } else { 0 };
                if due != state.meta.review_at_ms {
                    state.meta.review_at_ms = due;
                    if due > 0 {
                        self.out.timers.push((due, app_key(key.app.as_str(), &key.user)));
                    }
                }
            }
            if !erased {
                // The changed aggregations are encoded once; unchanged ones keep their bytes.
                for li in d.aggs.iter() {
                    let b = &state.aggs[li];
                    state.encoded[li] = (!b.0.is_empty()).then(|| encode(b));
                }
                let meta = encode(&state.meta);
                if core.full_writes || d.clear {
                    // Every field of the group, replacing what is stored.
                    write.clear = true;
                    write.set = full_fields(&core.meta_field, &core.agg_keys, state, meta);
                } else {
                    if d.meta || !d.aggs.is_empty() {
                        write.set.push((core.meta_field.clone(), meta.clone()));
                    }
                    for li in d.aggs.iter() {
                        match &state.encoded[li] {
                            Some(bytes) => write.set.push((agg_field(&core.agg_keys[li]), bytes.clone())),
                            None => write.remove.push(agg_field(&core.agg_keys[li])),
                        }
                    }
                    // The memory copy needs every field (a full write's are moved there
                    // once staged).
                    if core.hot.is_some() {
                        self.out.publish.push((key.clone(), write.scope.clone(), Arc::new(full_fields(&core.meta_field, &core.agg_keys, state, meta))));
                    }
                }
            }
            store.prepare(&mut write);
            self.out.writes.push(write);
        }
    }
}

impl ActionsProcessor {
    fn backfill_step(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        let agg_key = String::from_utf8_lossy(&timer.key[1..]).into_owned();
        let Some(raw) = ctx.store().get(JOBS_TABLE, agg_key.as_bytes())? else { return Ok(()) };
        let mut job: Job = serde_json::from_slice(&raw).map_err(|e| failed(&self.core.name, format!("corrupt back-fill job {agg_key}: {e}")))?;
        if job.done {
            return Ok(());
        }
        let Some(index) = self.core.defs.aggregations.iter().position(|a| a.key == agg_key && a.group == self.core.group) else {
            job.done = true;
            job.finished_ms = self.core.clock.now_ms();
            ctx.batch().put(JOBS_TABLE, agg_key.into_bytes(), serde_json::to_vec(&job).unwrap_or_default());
            return Ok(());
        };
        let topic = TopicName::new(job.topic.as_str()).map_err(|e| failed(&self.core.name, e))?;
        let mut partial: FxHashMap<UserKey, Buckets> = FxHashMap::default();
        let budget = BACKFILL_STEP_RECORDS;
        let kind = self.core.defs.aggregations[index].kind;
        let list_max = self.core.defs.distinct_list_max;
        let targets: Vec<(u32, u64)> = job.until.iter().map(|(p, u)| (*p, *u)).collect();
        let (events, _) = self.read_for_job(&topic, &mut job.cursor, &targets, budget, &mut job.read)?;
        for (key, event) in events {
            let tz = self.core.zones.zone(&event.app);
            let day = self.days.local_day(tz, event.time.millis());
            if day < self.today(tz) - (self.core.defs.retention_days as Day - 1) {
                continue;
            }
            if let Some(input) = self.input(ctx, index, &event)? {
                partial.entry(key).or_default().add(kind, day, &input, list_max);
                job.merged += 1;
            }
        }
        let agg_key_owned = self.core.defs.aggregations[index].key.clone();
        let step = job.steps;
        let li = self.core.local[index].expect("the job's aggregation is of this group");
        for (key, buckets) in partial {
            let cause = Cause::Backfill { key: &agg_key_owned, step };
            self.merge_job_buckets(&key, li, |b| b.merge(&buckets, list_max), &cause, job.refire)?;
        }
        job.steps += 1;
        let remaining = job.until.iter().any(|(p, u)| job.cursor.get(p).copied().unwrap_or(0) < *u);
        if remaining {
            reschedule(ctx, timer);
        } else {
            job.done = true;
            job.finished_ms = self.core.clock.now_ms();
            tracing::info!(aggregation = %job.aggregation, read = job.read, merged = job.merged, "back-fill done");
        }
        ctx.batch().put(JOBS_TABLE, agg_key.into_bytes(), serde_json::to_vec(&job).unwrap_or_default());
        self.flush(ctx)
    }
}

/// A record of the notify module's `notifications` topic (its `NotificationRequest`, as
/// JSON) asking for a `trigger.fired` webhook. Written here rather than with the notify
/// crate, which carries an HTTP client this domain crate must not depend on; the test
/// `lifecycle_segments_and_triggers_follow_events_and_time` reads it with the notify crate.
pub fn notification_request(id: &str, app: &AppId, payload: serde_json::Value, created_ms: i64) -> Vec<u8> {
    serde_json::json!({"id": id, "app": app.as_str(), "event_type": "trigger.fired", "payload": payload, "created_ms": created_ms}).to_string().into_bytes()
}

impl ActionsProcessor {
    /// One step of a recompute (see [`crate::recompute`]).
    fn recompute_step(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        use crate::recompute::{batch_prefix, Phase, RecomputeJob, BATCH_TABLE, RECOMPUTE_TABLE, SWITCHED, SWITCH_USERS};
        let agg_key = String::from_utf8_lossy(&timer.key[1..]).into_owned();
        let Some(raw) = ctx.store().get(RECOMPUTE_TABLE, agg_key.as_bytes())? else { return Ok(()) };
        let mut job: RecomputeJob = serde_json::from_slice(&raw).map_err(|e| failed(&self.core.name, format!("corrupt recompute job {agg_key}: {e}")))?;
        if job.phase == Phase::Done {
            return Ok(());
        }
        let Some(index) = self.core.defs.aggregations.iter().position(|a| a.key == agg_key && a.group == self.core.group) else {
            job.phase = Phase::Done;
            job.finished_ms = self.core.clock.now_ms();
            ctx.batch().put(RECOMPUTE_TABLE, agg_key.into_bytes(), serde_json::to_vec(&job).unwrap_or_default());
            return Ok(());
        };
        let li = self.core.local[index].expect("an aggregation of this group");
        let topic = TopicName::new(job.topic.as_str()).map_err(|e| failed(&self.core.name, e))?;
        let (caught_up, mut updated) = self.recompute_read(ctx, &mut job, index, &topic)?;
        match job.phase {
            Phase::Batch if caught_up => job.phase = Phase::Switch,
            Phase::Switch if caught_up => {
                let prefix = batch_prefix(&agg_key);
                let mut end = prefix.clone();
                *end.last_mut().unwrap_or(&mut 0) = 1;
                let after = job.switch_after.clone();
                let start = match &after {
                    Some(k) => std::ops::Bound::Excluded(k.as_slice()),
                    None => std::ops::Bound::Included(prefix.as_slice()),
                };
                let rows = ctx.store().range(BATCH_TABLE, start, std::ops::Bound::Excluded(&end), SWITCH_USERS)?;
                let list_max = self.core.defs.distinct_list_max;
                let step = job.steps;
                for (k, v) in &rows {
                    job.switch_after = Some(k.clone());
                    if v.as_slice() == SWITCHED {
                        continue;
                    }
                    let Some(key) = parse_user_key(&k[prefix.len()..]) else { continue };
                    // This step's catch-up may have added to the row (in the batch, not committed).
                    let staged: Buckets = match updated.remove(k) {
                        Some(b) => b,
                        None => crate::state::decode("staged buckets", v).map_err(|e| failed(&self.core.name, e))?,
                    };
                    let tz = self.core.zones.zone(&key.app);
                    let (first, cutoff) = (self.days.local_day(tz, job.first_ms) + 1, self.days.local_day(tz, job.cutoff_ms));
                    let replace = |buckets: &mut Buckets| {
                        buckets.0.retain(|(d, _)| *d < first || *d >= cutoff);
                        buckets.merge(&staged, list_max);
                    };
                    self.merge_job_buckets(&key, li, replace, &Cause::Backfill { key: &agg_key, step }, false)?;
                    ctx.batch().put(BATCH_TABLE, k.clone(), SWITCHED.to_vec());
                    job.switched += 1;
                }
                if rows.len() < SWITCH_USERS {
                    job.phase = Phase::Cleanup;
                }
            }
            Phase::Cleanup => {
                ctx.batch().delete_prefix(BATCH_TABLE, batch_prefix(&agg_key));
                job.phase = Phase::Done;
                job.finished_ms = self.core.clock.now_ms();
                tracing::info!(aggregation = %job.aggregation, read = job.read, switched = job.switched, "recompute done");
            }
            _ => {}
        }
        job.steps += 1;
        if job.phase != Phase::Done {
            reschedule(ctx, timer);
        }
        ctx.batch().put(RECOMPUTE_TABLE, agg_key.into_bytes(), serde_json::to_vec(&job).unwrap_or_default());
        self.flush(ctx)
    }

    /// Reads up to `budget` records of `topic` for a job, from `cursor` towards each
    /// partition's target, advancing `cursor` and counting `read`: the events with a user
    /// not erased after them, and whether every partition reached its target.
    fn read_for_job(
        &mut self,
        topic: &TopicName,
        cursor: &mut std::collections::BTreeMap<u32, u64>,
        targets: &[(u32, u64)],
        mut budget: usize,
        read: &mut u64,
    ) -> Result<(Vec<(UserKey, Event)>, bool)> {
        let mut out = Vec::new();
        let mut caught_up = true;
        for &(partition, target) in targets {
            loop {
                let at = *cursor.get(&partition).unwrap_or(&0);
                let from = at.max(self.log.offsets(topic, partition)?.start);
                if from >= target {
                    cursor.insert(partition, from.max(at));
                    break;
                }
                if budget == 0 {
                    caught_up = false;
                    break;
                }
                let records = self.log.read(topic, partition, from, budget.min((target - from) as usize), 16 << 20)?;
                if records.is_empty() {
                    cursor.insert(partition, target);
                    break;
                }
                for record in records.iter().filter(|r| r.offset < target) {
                    *read += 1;
                    budget = budget.saturating_sub(1);
                    let Ok(LogEntry::Event(event)) = LogEntry::decode(&record.value) else { continue };
                    let Some(user) = &event.user else { continue };
                    let key = UserKey::new(event.app.clone(), user.as_str());
                    if self.erased_at(&key).is_some_and(|erased| erased.get(&partition).is_some_and(|at| record.offset < *at)) {
                        continue;
                    }
                    out.push((key, event));
                }
                cursor.insert(partition, records.last().map_or(target, |r| (r.offset + 1).min(target)));
            }
        }
        Ok((out, caught_up))
    }

    /// Reads up to a step of records towards the live layer's position (committed, or the
    /// end of this round's records) into the staged buckets; whether it has reached it, and
    /// the staged rows it changed (written to the batch, not committed yet).
    fn recompute_read(&mut self, ctx: &mut ProcessContext<'_>, job: &mut crate::recompute::RecomputeJob, index: usize, topic: &TopicName) -> Result<(bool, FxHashMap<Vec<u8>, Buckets>)> {
        use crate::recompute::{batch_key, BATCH_TABLE, STEP_RECORDS, SWITCHED};
        let partitions = self.log.partition_count(topic)?;
        let kind = self.core.defs.aggregations[index].kind;
        let list_max = self.core.defs.distinct_list_max;
        let mut partial: FxHashMap<UserKey, Buckets> = FxHashMap::default();
        let mut targets = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let committed = ctx.committed_position(topic, partition)?.unwrap_or(0);
            targets.push((partition, self.round_positions.get(&partition).copied().unwrap_or(committed).max(committed)));
        }
        let (events, caught_up) = self.read_for_job(topic, &mut job.cursor, &targets, STEP_RECORDS, &mut job.read)?;
        for (key, event) in events {
            let tz = self.core.zones.zone(&event.app);
            let day = self.days.local_day(tz, event.time.millis());
            let (first, cutoff) = (self.days.local_day(tz, job.first_ms) + 1, self.days.local_day(tz, job.cutoff_ms));
            if day < first || day >= cutoff {
                continue;
            }
            if let Some(input) = self.input(ctx, index, &event)? {
                partial.entry(key).or_default().add(kind, day, &input, list_max);
            }
        }
        let agg_key = self.core.defs.aggregations[index].key.clone();
        let mut updated = FxHashMap::default();
        for (key, buckets) in partial {
            let row = batch_key(&agg_key, key.app.as_str(), &key.user);
            let mut staged: Buckets = match ctx.store().get(BATCH_TABLE, &row)? {
                // Switched over: the user is live again and counts its events live.
                Some(v) if v.as_slice() == SWITCHED => continue,
                Some(v) => crate::state::decode("staged buckets", &v).map_err(|e| failed(&self.core.name, e))?,
                None => Buckets::default(),
            };
            staged.merge(&buckets, list_max);
            ctx.batch().put(BATCH_TABLE, row.clone(), encode(&staged));
            updated.insert(row, staged);
        }
        Ok((caught_up, updated))
    }
}

/// Every field of a group for `state`: its encoded meta and each non-empty aggregation's
/// stored bytes (`state.encoded`, up to date for the changed ones).
fn full_fields(meta_field: &str, agg_keys: &[String], state: &mut UserState, meta: Vec<u8>) -> crate::store::Fields {
    let mut all = vec![(meta_field.to_owned(), meta)];
    for (li, b) in state.aggs.iter().enumerate() {
        if !b.0.is_empty() {
            let bytes = state.encoded[li].get_or_insert_with(|| encode(b)).clone();
            all.push((agg_field(&agg_keys[li]), bytes));
        }
    }
    all
}

/// Schedules a job's next step at once, under a new key: never the fired timer's own (the
/// runtime deletes that one after this call).
fn reschedule(ctx: &mut ProcessContext<'_>, timer: &Timer) {
    ctx.schedule_timer(meridian_event::Timestamp::now().millis().max(timer.due_ms + 1), &timer.key);
}

/// An id for an emitted record: readable when short, hashed when long.
fn emit_id(kind: &str, parts: &[&str]) -> String {
    let readable = format!("{kind}:{}", parts.join(":"));
    if readable.len() <= 200 {
        readable
    } else {
        format!("{kind}:{:032x}", xxhash_rust::xxh3::xxh3_128(readable.as_bytes()))
    }
}

/// What a condition reads, to skip it when an event changed none of it (its answer would
/// be the same).
#[derive(Debug, Clone, Copy, Default)]
struct Deps {
    /// Aggregations of the group (local indices < 128).
    aggs: u128,
    /// Reads the stage.
    stage: bool,
    /// Reads days since the first or last event.
    days: bool,
    /// Reads active days.
    active_days: bool,
    /// Must always be evaluated (reads every event's count, or an aggregation ≥ 128).
    always: bool,
}

impl Deps {
    fn of(cond: &crate::expr::Cond<Var>, local: &[Option<usize>]) -> Deps {
        let mut d = Deps::default();
        for var in cond.vars() {
            match var {
                Var::Stage => d.stage = true,
                Var::DaysInactive | Var::DaysSinceFirstSeen => d.days = true,
                Var::ActiveDays(_) => d.active_days = true,
                Var::Events(_) => d.always = true,
                Var::Agg(i, _) => match local[*i] {
                    Some(li) if li < 128 => d.aggs |= 1 << li,
                    _ => d.always = true,
                },
            }
        }
        d
    }

    fn union(self, other: Deps) -> Deps {
        Deps { aggs: self.aggs | other.aggs, stage: self.stage || other.stage, days: self.days || other.days, active_days: self.active_days || other.active_days, always: self.always || other.always }
    }
}

/// What an event changed, for [`Deps`].
#[derive(Debug, Clone, Copy)]
struct Change {
    /// Aggregations changed (local indices < 128; `u128::MAX` when unsure).
    aggs: u128,
    /// The first or last event's day moved.
    days: bool,
    /// A day got its first event.
    new_active_day: bool,
}

impl Change {
    /// Whether a condition reading `d` may answer differently, given whether the stage
    /// changed in this evaluation.
    fn touches(&self, d: &Deps, stage_changed: bool) -> bool {
        d.always || d.aggs & self.aggs != 0 || (d.days && self.days) || (d.active_days && self.new_active_day) || (d.stage && stage_changed)
    }
}

/// Local days a condition needs, computed once per evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DayFacts {
    /// The day evaluated as of.
    pub(crate) today: Day,
    /// The day of the last event.
    pub(crate) last_active: Option<Day>,
    /// The day of the first event.
    pub(crate) first_seen: Option<Day>,
}

/// The value of a variable for a user, as of the day of `facts`.
pub(crate) fn value<'a>(defs: &Definitions, local: &[Option<usize>], state: &'a UserState, facts: &DayFacts, var: &Var) -> Val<'a> {
    let retention = defs.retention_days;
    let today = facts.today;
    let range = |w: WindowRef| w.window().days(today, retention);
    match var {
        Var::Stage => Val::Str(&state.meta.stage),
        Var::DaysInactive => match facts.last_active {
            None => Val::Empty,
            Some(day) => Val::Num(f64::from(today - day).max(0.0)),
        },
        Var::DaysSinceFirstSeen => match facts.first_seen {
            None => Val::Empty,
            Some(day) => Val::Num(f64::from(today - day).max(0.0)),
        },
        Var::Events(w) => {
            let (from, to) = range(*w);
            match state.meta.activity.window(AggregationKind::Count, from, to, defs.distinct_list_max) {
                crate::value::Summary::Int(n) => Val::Num(n as f64),
                _ => Val::Num(0.0),
            }
        }
        Var::ActiveDays(w) => {
            let (from, to) = range(*w);
            Val::Num(state.meta.activity.0.iter().filter(|(d, _)| *d >= from && *d <= to).count() as f64)
        }
        Var::Agg(i, w) => {
            let agg = &defs.aggregations[*i];
            let (from, to) = range(*w);
            let empty = match agg.kind {
                AggregationKind::Count | AggregationKind::Distinct | AggregationKind::Sum => Val::Num(0.0),
                _ => Val::Empty,
            };
            let Some(buckets) = local[*i].and_then(|li| state.aggs.get(li)) else { return empty };
            if agg.kind == AggregationKind::LastValue {
                let mut best: Option<(i64, &'a str)> = None;
                for (d, b) in &buckets.0 {
                    if *d < from || *d > to {
                        continue;
                    }
                    if let Bucket::LastValue(t, v) = b {
                        if best.is_none_or(|(bt, bv)| *t > bt || (*t == bt && v.as_str() > bv)) {
                            best = Some((*t, v.as_str()));
                        }
                    }
                }
                return match best {
                    None => Val::Empty,
                    Some((_, text)) => match text.parse::<f64>() {
                        Ok(n) => Val::Num(n),
                        Err(_) if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') && !text.contains('\\') => Val::Str(&text[1..text.len() - 1]),
                        Err(_) => Val::Str(text),
                    },
                };
            }
            match buckets.window(agg.kind, from, to, defs.distinct_list_max) {
                crate::value::Summary::Empty => empty,
                crate::value::Summary::Int(n) => Val::Num(n as f64),
                crate::value::Summary::Float(f) => Val::Num(f),
                crate::value::Summary::Time(t) => Val::Num(t as f64),
                crate::value::Summary::Value(..) => Val::Empty,
            }
        }
    }
}

impl Processor for ActionsProcessor {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> Result<()> {
        self.begin(ctx)?;
        if let Some(last) = records.last() {
            if topic == &self.topic {
                self.round_positions.insert(last.partition, last.offset + 1);
            }
        }
        // Handled at the end of the round, every partition's records together (a record
        // is cheap to keep: its payload is shared).
        self.pending.extend_from_slice(records);
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        self.handle_round(ctx)
    }

    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        self.begin(ctx)?;
        if timer.key.first() == Some(&JOB_TIMER) {
            self.backfill_step(ctx, timer)
        } else if timer.key.first() == Some(&RECOMPUTE_TIMER) {
            self.recompute_step(ctx, timer)
        } else {
            self.review(ctx, timer)
        }
    }

    fn after_commit(&mut self) -> Result<()> {
        self.round_positions.clear();
        if let Some(hot) = &self.core.hot {
            // The read cache is concurrent: a large round publishes from every thread.
            let threads = if self.publish.len() >= PARALLEL_MIN_RECORDS { self.shards.len() } else { 1 };
            // A user may be published twice in a round (its records, then a review): parts
            // by user keep each user's publications in order.
            let mut parts: Vec<Vec<_>> = (0..threads).map(|_| Vec::with_capacity(self.publish.len() / threads + 1)).collect();
            for item in self.publish.drain(..) {
                parts[shard_of(item.0.app.as_str(), &item.0.user, threads)].push(item);
            }
            let first = parts.swap_remove(0);
            let publish = |part: Vec<(UserKey, String, Arc<crate::store::Fields>)>| {
                for (user, scope, fields) in part {
                    hot.publish(user, scope, fields);
                }
            };
            if parts.is_empty() {
                publish(first);
            } else {
                let publish = &publish;
                rayon::in_place_scope(|scope| {
                    for part in parts {
                        scope.spawn(move |_| publish(part));
                    }
                    publish(first);
                });
            }
        }
        self.redo_unapplied.append(&mut self.redo_staged);
        self.apply_redo()
    }

    fn reset_cache(&mut self) {
        for shard in &mut self.shards {
            *shard = Shard::default();
        }
        self.pending.clear();
        self.lists.clear();
        self.interner.clear();
        self.counts.clear();
        self.count_deltas.clear();
        self.erased.clear();
        self.redo_staged.clear();
        self.publish.clear();
        self.round_positions.clear();
        // A failed round may have been the first: look for new aggregations again.
        self.started = false;
        self.redo_unapplied.clear();
        self.redo_done.clear();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        for table in [INTERN_TABLE, INTERN_NEXT_TABLE, MEMBERS_TABLE, COUNTS_TABLE, crate::store::USERS_TABLE] {
            batch.delete_prefix(table, Vec::new());
        }
    }
}
