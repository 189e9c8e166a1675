//! The alert engine: rules indexed by app and action, event-time windows of panes closed by
//! a per-app watermark (or the caller's clock), evaluation, the firing → resolved
//! lifecycle, rule changes and rule-level metrics.

use crate::history::{robust_baseline, ExactRing, History, Seasonal};
use crate::metric::{window_value, Acc, CompiledRule, Contribution};
use crate::rule::{Condition, Direction, Metric, Rule, RuleError, RuleId, Severity};
use meridian_event::{AppId, Event, Timestamp};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

/// Engine-wide settings (kept in the snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSettings {
    /// How far an event's time may be ahead of its `received` time and still move its
    /// app's watermark that far: one client with a clock an hour fast must not close every
    /// window of its app an hour early. The event itself still goes to its own window.
    /// (Also how far from its `received` time an app's first event may start its rules.)
    pub max_event_time_ahead_ms: i64,
    /// When a rule with no data left must close more windows than this at once (the
    /// clock jumped, e.g. after a long stop), the oldest empty ones are skipped, not
    /// evaluated (counted in `windows_skipped`).
    pub max_catch_up_windows: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { max_event_time_ahead_ms: 60_000, max_catch_up_windows: 1_440 }
    }
}

/// A rule's alert went from ok to firing, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// It started firing.
    Fired,
    /// It stopped firing (back to normal, or the rule was paused or deleted).
    Resolved,
}

impl AlertState {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Fired => "fired",
            AlertState::Resolved => "resolved",
        }
    }
}

/// A change of a rule's alert state: what the caller turns into notifications (through
/// its outbox, with [`Transition::id`] as the deterministic id, so exactly once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The rule.
    pub rule: RuleId,
    /// Its app.
    pub app: AppId,
    /// The rule version that produced it.
    pub rule_version: u64,
    /// The rule's name (for the message).
    pub rule_name: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's channels (endpoint ids the caller resolves, with their body formats).
    pub channels: Vec<crate::rule::Channel>,
    /// Fired or resolved.
    pub state: AlertState,
    /// Start of the window that decided it (for a pause or a deletion: the last window
    /// evaluated).
    pub window_start: Timestamp,
    /// Its end.
    pub window_end: Timestamp,
    /// The metric's value in that window.
    pub value: Option<f64>,
    /// What was expected: the threshold, the earlier window's value, the seasonal median.
    pub expected: Option<f64>,
    /// The value at which the condition flips.
    pub threshold: Option<f64>,
    /// Why, in words (`"paused"` and `"deleted"` for those resolutions).
    pub reason: String,
}

impl Transition {
    /// A deterministic id: the same transition gets the same id after a crash and a replay.
    pub fn id(&self) -> String {
        format!("alert:{}:{}:{}:{}", self.rule, self.rule_version, self.window_end.0, self.state.as_str())
    }
}

/// What an evaluated window said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The condition does not hold.
    Ok,
    /// The condition holds (the rule fired, or was firing already).
    Breach,
    /// The condition holds but the rule fired less than its cool-down ago.
    Suppressed,
    /// Fewer samples than `min_samples`: not judged, the alert state is unchanged.
    InsufficientSamples,
    /// No value (a ratio over no denominator, a percentile of no values): not judged.
    NoValue,
    /// No baseline yet (no earlier window, too few weeks of history): not judged.
    NoBaseline,
}

/// One closed window of one rule: for history and preview charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The rule.
    pub rule: RuleId,
    /// Its app.
    pub app: AppId,
    /// The rule version that evaluated it.
    pub rule_version: u64,
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// The metric's value.
    pub value: Option<f64>,
    /// Its samples (events; a ratio's denominator; a percentile's values).
    pub samples: u64,
    /// The baseline: threshold, earlier value or seasonal median.
    pub expected: Option<f64>,
    /// The value at which the condition flips.
    pub threshold: Option<f64>,
    /// The verdict.
    pub outcome: Outcome,
    /// Whether the rule is firing after this window.
    pub firing: bool,
}

/// What a call produced; the caller drains it (it only grows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Alert state changes, in order.
    pub transitions: Vec<Transition>,
    /// Every evaluated window, in order.
    pub evaluations: Vec<Evaluation>,
    /// Events that arrived after at least one window they belong to had been evaluated
    /// (per rule; the rules' `late_events` metrics say which).
    pub late_events: u64,
}

impl Output {
    /// Empties it.
    pub fn clear(&mut self) {
        self.transitions.clear();
        self.evaluations.clear();
        self.late_events = 0;
    }
}

/// What a rule change did (see the crate docs for the semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// A new rule.
    Created,
    /// The same rule again: nothing to do.
    Unchanged,
    /// An older version than the one in force: ignored.
    Ignored,
    /// Threshold, condition, severity, cool-down, lateness, name, channels or min_samples
    /// changed: open windows kept, the next evaluation uses the new version.
    Soft,
    /// Metric, filter or window changed: open windows discarded, fresh windows from now.
    Reset,
    /// Paused: windows discarded, a firing alert resolved with reason "paused".
    Paused,
    /// Resumed: fresh windows from now.
    Resumed,
    /// Deleted: state discarded, a firing alert resolved with reason "deleted".
    Deleted,
}

/// Metrics of one rule, for the server to expose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMetrics {
    /// The rule.
    pub rule: RuleId,
    /// Its app.
    pub app: AppId,
    /// Version in force.
    pub version: u64,
    /// Paused.
    pub paused: bool,
    /// Firing now.
    pub firing: bool,
    /// Events that matched its filter (and metric).
    pub events_matched: u64,
    /// Matching events that arrived after a window they belong to was evaluated.
    pub late_events: u64,
    /// Windows evaluated.
    pub windows_evaluated: u64,
    /// Empty windows skipped when catching up a long gap.
    pub windows_skipped: u64,
    /// Fired transitions.
    pub fired: u64,
    /// Resolved transitions.
    pub resolved: u64,
    /// Breaches suppressed by the cool-down.
    pub suppressed: u64,
    /// Panes held now.
    pub open_panes: usize,
    /// Estimated bytes held for the rule (compiled rule, panes, history, index).
    pub memory_bytes: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    events_matched: u64,
    late_events: u64,
    windows_evaluated: u64,
    windows_skipped: u64,
    fired: u64,
    resolved: u64,
    suppressed: u64,
}

/// The open windows of a pane ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Windows {
    /// First window start of this run (events before it are not the rules').
    pub(crate) start_from: i64,
    /// Windows starting before this only feed the history (back-tests warm up with them).
    pub(crate) eval_from: i64,
    /// Start of the first window not yet evaluated.
    pub(crate) next_start: i64,
    /// Panes (start, accumulator), ascending, all at or after `next_start`.
    pub(crate) panes: VecDeque<(i64, Acc)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Firing {
    window_start: i64,
    window_end: i64,
    value: Option<f64>,
    expected: Option<f64>,
    threshold: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Lifecycle {
    firing: Option<Firing>,
    /// Window end of the last firing, for the cool-down.
    last_fired_end: Option<i64>,
}

/// A rule's membership of a stream: which one, and the stream's counters when the rule
/// joined it. The rule's `events_matched` and `late_events` are its own counters plus what
/// the stream counted since (so an event costs one increment per stream, not per rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamLink {
    pub(crate) stream: u64,
    joined_events: u64,
    joined_late: u64,
}

impl StreamLink {
    /// What the stream counted since the rule joined it.
    fn since(&self, stream: &StreamCounters) -> StreamCounters {
        StreamCounters { events_matched: stream.events_matched - self.joined_events, late_events: stream.late_events - self.joined_late }
    }
}

/// Everything the engine holds for one rule: what the snapshot keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RuleRuntime {
    /// The stream whose panes the rule reads; `None` while paused.
    pub(crate) link: Option<StreamLink>,
    /// Boxed, like the history: touched when a window closes, not per event.
    lifecycle: Box<Lifecycle>,
    pub(crate) history: Box<History>,
    counters: Counters,
}

/// [`RuleRuntime`] as snapshot format 1 kept it: every rule with windows of its own.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct RuleRuntimeV1 {
    pub(crate) windows: Option<Windows>,
    lifecycle: Box<Lifecycle>,
    history: Box<History>,
    counters: Counters,
}

impl RuleRuntimeV1 {
    /// The runtime of format 2, reading the panes of stream `stream` (the rule's own
    /// windows, which the caller makes a stream of).
    pub(crate) fn upgrade(self, stream: Option<u64>) -> RuleRuntime {
        let link = stream.map(|stream| StreamLink { stream, joined_events: 0, joined_late: 0 });
        RuleRuntime { link, lifecycle: self.lifecycle, history: self.history, counters: self.counters }
    }

    /// What format 1 would have kept of `runtime` reading `windows` (for tests of the
    /// upgrade).
    #[cfg(test)]
    pub(crate) fn downgrade(runtime: &RuleRuntime, windows: Option<Windows>) -> RuleRuntimeV1 {
        RuleRuntimeV1 { windows, lifecycle: runtime.lifecycle.clone(), history: runtime.history.clone(), counters: runtime.counters.clone() }
    }
}

impl RuleRuntime {
    /// Ends the rule's membership of the stream that counted `stream`: what it counted
    /// since the rule joined becomes the rule's own.
    fn leave(&mut self, stream: &StreamCounters) {
        if let Some(link) = self.link.take() {
            let since = link.since(stream);
            self.counters.events_matched += since.events_matched;
            self.counters.late_events += since.late_events;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) compiled: CompiledRule,
    pub(crate) runtime: RuleRuntime,
    /// Index of its stream in `AlertEngine::streams` (the stream `runtime.link` names).
    stream: Option<u32>,
    /// Changed since the last [`AlertEngine::take_dirty`].
    dirty: bool,
}

impl Slot {
    fn mark(&mut self, idx: u32, dirty: &mut Vec<u32>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(idx);
        }
    }
}

/// What a stream counted (kept in its snapshot part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamCounters {
    pub(crate) events_matched: u64,
    pub(crate) late_events: u64,
}

/// A pane ring shared by the rules of one app with the same pane shape (filter, what a
/// pane accumulates, window size and slide, lateness) and the same window state: an event
/// is matched and added once per stream, and a window's value computed once, however many
/// rules read it — 10,000 rules on one app are a few hundred streams when they differ in
/// thresholds, conditions and channels rather than in what they count.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Stable across snapshots (never reused).
    pub(crate) id: u64,
    /// A stable hash of the id: orders timers due at the same time.
    rank: u64,
    /// App and pane shape: the streams a rule of that shape may join.
    key: String,
    app: String,
    /// `None` while the app has no time yet (the stream waits for its first event).
    pub(crate) windows: Option<Windows>,
    size_ms: i64,
    slide_ms: i64,
    lateness_ms: i64,
    required_actions: Option<Vec<String>>,
    /// The member whose compiled filter and metric feed the panes (any member would do:
    /// they have the same shape).
    proto: u32,
    /// Member rules by (rank, id): the order their windows are evaluated in.
    members: Vec<u32>,
    pub(crate) counters: StreamCounters,
    /// Bumped whenever the outstanding timer becomes wrong.
    generation: u64,
    /// Changed since the last [`AlertEngine::take_dirty`].
    dirty: bool,
}

impl Stream {
    fn mark(&mut self, idx: u32, dirty: &mut Vec<u32>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(idx);
        }
    }
}

/// The state changed since the last [`AlertEngine::take_dirty`]: what an incremental
/// commit writes ([`AlertEngine::snapshot_rule`] of each changed rule,
/// [`AlertEngine::snapshot_stream`] of each changed stream, the removed ones deleted, and
/// [`AlertEngine::snapshot_engine`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyRules {
    /// Rules whose state changed (by id).
    pub changed: Vec<RuleId>,
    /// Rules removed (by id; none of them is in `changed`).
    pub removed: Vec<RuleId>,
    /// Streams (shared pane rings) whose state changed, by id.
    pub streams: Vec<u64>,
    /// Streams removed, by id (none of them is in `streams`).
    pub streams_removed: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    close_at: i64,
    rank: u64,
    /// The stream's id (breaks the rare tie; a timer of a dropped stream whose index was
    /// reused does not match it).
    key: u64,
    slot: u32,
    generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct AppState {
    /// Largest event time seen (clamped by `max_event_time_ahead_ms`).
    pub(crate) max_time: Option<i64>,
    /// Streams by the actions they require.
    by_action: FxHashMap<String, Vec<u32>>,
    /// Streams that match any action.
    any_action: Vec<u32>,
    /// Streams without windows because the app has no time yet.
    waiting: Vec<u32>,
    /// The app's time zone, when not UTC: the forecast's hours of the week are local.
    zone: Option<chrono_tz::Tz>,
    /// Streams' next window closes.
    timers: BinaryHeap<Reverse<Timer>>,
}

/// The run-time alert rule engine (see the crate docs).
pub struct AlertEngine {
    pub(crate) settings: EngineSettings,
    pub(crate) slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Slots marked dirty, in marking order (may repeat a freed and reused slot).
    dirty: Vec<u32>,
    removed: Vec<RuleId>,
    by_id: FxHashMap<RuleId, u32>,
    pub(crate) streams: Vec<Option<Stream>>,
    stream_free: Vec<u32>,
    stream_dirty: Vec<u32>,
    streams_removed: Vec<u64>,
    stream_by_id: FxHashMap<u64, u32>,
    /// Streams by (app, pane shape).
    by_shape: FxHashMap<String, Vec<u32>>,
    /// The next stream's id.
    pub(crate) next_stream: u64,
    /// Streams that closed windows in this call: candidates for merging.
    closed: Vec<u32>,
    pub(crate) apps: FxHashMap<String, AppState>,
    /// The caller's clock, from [`AlertEngine::advance`].
    pub(crate) now: Option<i64>,
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertEngine").field("rules", &self.by_id.len()).field("apps", &self.apps.len()).field("now", &self.now).finish_non_exhaustive()
    }
}

impl Default for AlertEngine {
    fn default() -> Self {
        AlertEngine::new(EngineSettings::default())
    }
}

/// `t` (ms since the epoch, UTC) as the wall-clock ms of `zone` (`t` itself for UTC).
pub(crate) fn local_ms(zone: Option<chrono_tz::Tz>, t: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    let Some(zone) = zone else { return t };
    let Some(utc) = chrono::DateTime::from_timestamp_millis(t) else { return t };
    t + i64::from(zone.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc()) * 1000
}

pub(crate) fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

pub(crate) fn ceil_to(t: i64, step: i64) -> i64 {
    let floor = floor_to(t, step);
    if floor == t {
        t
    } else {
        floor + step
    }
}

impl AlertEngine {
    /// An engine without rules.
    pub fn new(settings: EngineSettings) -> AlertEngine {
        AlertEngine {
            settings,
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            removed: Vec::new(),
            by_id: FxHashMap::default(),
            streams: Vec::new(),
            stream_free: Vec::new(),
            stream_dirty: Vec::new(),
            streams_removed: Vec::new(),
            stream_by_id: FxHashMap::default(),
            by_shape: FxHashMap::default(),
            next_stream: 0,
            closed: Vec::new(),
            apps: FxHashMap::default(),
            now: None,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// How many rules (paused ones included).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether it has no rules.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The rule `id` as in force.
    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.slot(id).map(|s| &*s.compiled.rule)
    }

    /// Every rule, in no particular order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.slots.iter().flatten().map(|s| &*s.compiled.rule)
    }

    /// Whether rule `id` is firing.
    pub fn is_firing(&self, id: &RuleId) -> Option<bool> {
        self.slot(id).map(|s| s.runtime.lifecycle.firing.is_some())
    }

    /// The event time up to which `app`'s windows can close (before each rule's lateness):
    /// the largest (clamped) event time seen, or the caller's clock if later.
    pub fn watermark(&self, app: &AppId) -> Option<Timestamp> {
        let max_time = self.apps.get(app.as_str()).and_then(|a| a.max_time);
        max_opt(max_time, self.now).map(Timestamp)
    }

    /// Sets `app`'s time zone (an IANA zone; UTC by default): the forecast condition's
    /// hours of the week are the app's local hours, so a peak at 20:00 local time stays in
    /// its slot across daylight-saving changes. Not part of the snapshot: the caller sets
    /// it after a restore and whenever it may have changed.
    pub fn set_time_zone(&mut self, app: &str, zone: chrono_tz::Tz) {
        let zone = (zone != chrono_tz::Tz::UTC).then_some(zone);
        match self.apps.get_mut(app) {
            Some(state) => state.zone = zone,
            None if zone.is_some() => self.apps.entry(app.to_owned()).or_default().zone = zone,
            None => {}
        }
    }

    pub(crate) fn slot(&self, id: &RuleId) -> Option<&Slot> {
        self.by_id.get(id).and_then(|&i| self.slots[i as usize].as_ref())
    }

    pub(crate) fn slot_index(&self, id: &RuleId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    fn frontier(&self, app: &str) -> Option<i64> {
        max_opt(self.apps.get(app).and_then(|a| a.max_time), self.now)
    }

    pub(crate) fn stream_by_id(&self, id: u64) -> Option<&Stream> {
        self.stream_by_id.get(&id).and_then(|&s| self.streams[s as usize].as_ref())
    }

    /// How many streams (shared pane rings) the rules in force use.
    pub fn stream_count(&self) -> usize {
        self.stream_by_id.len()
    }

    // ----- rule changes -----

    /// Adds or changes a rule (validated; the error names the field). A firing rule that
    /// is paused resolves with reason "paused" into `out`. See the crate docs for what each
    /// kind of change keeps.
    pub fn upsert(&mut self, rule: Rule, out: &mut Output) -> Result<Applied, RuleError> {
        let Some(idx) = self.slot_index(&rule.id) else {
            let compiled = CompiledRule::compile(rule)?;
            let paused = compiled.rule.paused;
            let idx = self.insert(compiled, RuleRuntime::default());
            if !paused {
                self.ensure_history(idx);
                self.attach_fresh(idx);
            }
            return Ok(if paused { Applied::Paused } else { Applied::Created });
        };
        let old = &self.slots[idx as usize].as_ref().expect("indexed slot").compiled.rule;
        if **old == rule {
            return Ok(Applied::Unchanged);
        }
        if rule.version < old.version {
            return Ok(Applied::Ignored);
        }
        let compiled = CompiledRule::compile(rule)?;
        if old.app != compiled.rule.app {
            self.remove(&compiled.rule.id.clone(), out);
            return self.upsert(*compiled.rule, out);
        }
        let (was_paused, paused) = (old.paused, compiled.rule.paused);
        let same_shape = old.metric == compiled.rule.metric && old.filter == compiled.rule.filter;
        let same_window = old.window == compiled.rule.window;
        let history_kept = same_shape && old.window.size_secs() == compiled.rule.window.size_secs();
        let lateness_changed = old.allowed_lateness_secs != compiled.rule.allowed_lateness_secs;
        let new_slide = compiled.slide_ms;
        let applied = match (was_paused, paused) {
            (false, true) => {
                self.resolve_if_firing(idx, compiled.rule.version, "paused", out);
                self.detach(idx);
                self.slot_mut(idx).compiled = compiled;
                Applied::Paused
            }
            (true, true) => {
                self.slot_mut(idx).compiled = compiled;
                Applied::Soft
            }
            (true, false) => {
                self.slot_mut(idx).compiled = compiled;
                Applied::Resumed
            }
            (false, false) if same_shape && same_window => {
                self.slot_mut(idx).compiled = compiled;
                if lateness_changed {
                    // Lateness is part of the pane shape: the rule takes its windows to
                    // a stream of the new shape.
                    self.reshape(idx);
                }
                Applied::Soft
            }
            (false, false) => {
                self.detach(idx);
                self.slot_mut(idx).compiled = compiled;
                Applied::Reset
            }
        };
        let slot = self.slot_mut(idx);
        if !history_kept {
            *slot.runtime.history = History::default();
        } else if let Some(ring) = &slot.runtime.history.exact {
            if ring.step() != new_slide {
                let span = ring_span(&slot.compiled.rule).unwrap_or(0);
                slot.runtime.history.exact = Some(ring.regrid(new_slide, span));
            }
        }
        self.ensure_history(idx);
        if matches!(applied, Applied::Resumed | Applied::Reset) {
            self.attach_fresh(idx);
        }
        Ok(applied)
    }

    /// Deletes rule `id`: its state is discarded and a firing alert resolves with reason
    /// "deleted" into `out`. `false` when there was no such rule.
    pub fn remove(&mut self, id: &RuleId, out: &mut Output) -> bool {
        let Some(idx) = self.slot_index(id) else { return false };
        let version = self.slot_mut(idx).compiled.rule.version;
        self.resolve_if_firing(idx, version, "deleted", out);
        self.detach(idx);
        self.by_id.remove(id);
        self.slots[idx as usize] = None;
        self.free.push(idx);
        self.removed.push(id.clone());
        true
    }

    /// Makes the rules in force exactly `rules`: each is upserted (in the given order),
    /// and rules not among them are removed (by id). Invalid rules are left out and
    /// returned with their errors.
    pub fn sync(&mut self, rules: impl IntoIterator<Item = Rule>, out: &mut Output) -> Vec<(RuleId, RuleError)> {
        let mut keep = rustc_hash::FxHashSet::default();
        let mut rejected = Vec::new();
        for rule in rules {
            let id = rule.id.clone();
            keep.insert(id.clone());
            if let Err(e) = self.upsert(rule, out) {
                rejected.push((id, e));
            }
        }
        let mut gone: Vec<RuleId> = self.by_id.keys().filter(|id| !keep.contains(*id)).cloned().collect();
        gone.sort();
        for id in gone {
            self.remove(&id, out);
        }
        rejected
    }

    pub(crate) fn insert(&mut self, compiled: CompiledRule, runtime: RuleRuntime) -> u32 {
        let id = compiled.rule.id.clone();
        self.apps.entry(compiled.rule.app.as_str().to_owned()).or_default();
        let slot = Slot { compiled, runtime, stream: None, dirty: false };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(slot);
                idx
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        let AlertEngine { slots, dirty, .. } = self;
        slots[idx as usize].as_mut().expect("just inserted").mark(idx, dirty);
        idx
    }

    /// The slot, marked dirty (whoever asks for it mutably changes it).
    fn slot_mut(&mut self, idx: u32) -> &mut Slot {
        let AlertEngine { slots, dirty, .. } = self;
        let slot = slots[idx as usize].as_mut().expect("live slot");
        slot.mark(idx, dirty);
        slot
    }

    /// Makes the history parts the rule's condition reads exist (empty when new).
    pub(crate) fn ensure_history(&mut self, idx: u32) {
        let slot = self.slot_mut(idx);
        let rule = &slot.compiled.rule;
        match &rule.condition {
            Condition::Change { .. } => {
                let span = ring_span(rule).unwrap_or(0);
                match &mut slot.runtime.history.exact {
                    Some(ring) => ring.set_span(span),
                    None => slot.runtime.history.exact = Some(ExactRing::new(slot.compiled.slide_ms, span)),
                }
            }
            Condition::Forecast { .. } => {
                slot.runtime.history.seasonal.get_or_insert_with(Seasonal::default);
            }
            Condition::Threshold { .. } => {}
        }
    }

    // ----- streams -----

    /// Puts rule `idx` on fresh windows from the app's current time (the next full
    /// window) — a stream of its shape already there, or a new one — or on the stream of
    /// its shape waiting for the app's first event.
    pub(crate) fn attach_fresh(&mut self, idx: u32) {
        let compiled = &self.slots[idx as usize].as_ref().expect("live slot").compiled;
        let slide = compiled.slide_ms;
        let wanted = self.frontier(compiled.rule.app.as_str()).map(|frontier| {
            let start = ceil_to(frontier, slide);
            Windows { start_from: start, eval_from: start, next_start: start, panes: VecDeque::new() }
        });
        self.attach_with(idx, wanted);
    }

    /// Puts rule `idx` on windows starting at `start_from` (evaluated from `eval_from`).
    pub(crate) fn start_at(&mut self, idx: u32, start_from: i64, eval_from: i64) {
        self.attach_with(idx, Some(Windows { start_from, eval_from, next_start: start_from, panes: VecDeque::new() }));
    }

    /// Puts rule `idx` on a stream of its shape in state `windows`: the oldest such
    /// stream, or a new one.
    fn attach_with(&mut self, idx: u32, windows: Option<Windows>) {
        let compiled = &self.slots[idx as usize].as_ref().expect("live slot").compiled;
        let key = stream_key(compiled.rule.app.as_str(), &compiled.pane_shape);
        let found = self.by_shape.get(&key).and_then(|list| {
            list.iter()
                .filter_map(|&s| self.streams[s as usize].as_ref().map(|stream| (s, stream)))
                .filter(|(_, stream)| stream.windows == windows)
                .min_by_key(|(_, stream)| stream.id)
                .map(|(s, _)| s)
        });
        let s = match found {
            Some(s) => s,
            None => self.new_stream(idx, windows, None),
        };
        self.join(idx, s);
    }

    /// A new stream fed by rule `proto`'s filter and metric (which the caller then makes
    /// a member), indexed, with its timer — or waiting for its app's first event.
    fn new_stream(&mut self, proto: u32, windows: Option<Windows>, id: Option<u64>) -> u32 {
        let id = id.unwrap_or(self.next_stream);
        self.next_stream = self.next_stream.max(id + 1);
        let compiled = &self.slots[proto as usize].as_ref().expect("live slot").compiled;
        let app = compiled.rule.app.as_str().to_owned();
        let waiting = windows.is_none();
        let stream = Stream {
            id,
            rank: xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes()),
            key: stream_key(&app, &compiled.pane_shape),
            app: app.clone(),
            windows,
            size_ms: compiled.size_ms,
            slide_ms: compiled.slide_ms,
            lateness_ms: compiled.lateness_ms,
            required_actions: compiled.required_actions.clone(),
            proto,
            members: Vec::new(),
            counters: StreamCounters::default(),
            generation: 0,
            dirty: false,
        };
        let key = stream.key.clone();
        let actions = stream.required_actions.clone();
        let s = match self.stream_free.pop() {
            Some(s) => {
                self.streams[s as usize] = Some(stream);
                s
            }
            None => {
                self.streams.push(Some(stream));
                (self.streams.len() - 1) as u32
            }
        };
        let AlertEngine { streams, stream_dirty, .. } = self;
        streams[s as usize].as_mut().expect("just inserted").mark(s, stream_dirty);
        self.stream_by_id.insert(id, s);
        self.by_shape.entry(key).or_default().push(s);
        let app_state = self.apps.entry(app).or_default();
        match actions {
            Some(actions) => {
                for action in actions {
                    app_state.by_action.entry(action).or_default().push(s);
                }
            }
            None => app_state.any_action.push(s),
        }
        if waiting {
            app_state.waiting.push(s);
        } else {
            self.push_timer(s, true);
        }
        s
    }

    /// Restores stream `id` with its member rules (inserted with their links). A stream
    /// that was waiting for its app's first event starts at the next full window when the
    /// app has a time by now.
    pub(crate) fn restore_stream(&mut self, id: u64, windows: Option<Windows>, counters: StreamCounters, mut members: Vec<u32>) {
        let waiting = windows.is_none();
        members.sort_by_cached_key(|&m| member_order(&self.slots, m));
        let s = self.new_stream(members[0], windows, Some(id));
        for &m in &members {
            self.slots[m as usize].as_mut().expect("live slot").stream = Some(s);
        }
        let stream = self.streams[s as usize].as_mut().expect("just made");
        stream.counters = counters;
        stream.members = members;
        let (app, slide) = (stream.app.clone(), stream.slide_ms);
        if waiting {
            if let Some(frontier) = self.frontier(&app) {
                if let Some(state) = self.apps.get_mut(&app) {
                    state.waiting.retain(|&t| t != s);
                }
                self.start_stream(s, ceil_to(frontier, slide));
            }
        }
    }

    /// Forgets rule `idx`'s link to a stream that was not restored.
    pub(crate) fn unlink(&mut self, idx: u32) {
        self.slot_mut(idx).runtime.link = None;
    }

    /// Makes rule `idx` a member of stream `s` (it reads the stream's counters from now).
    fn join(&mut self, idx: u32, s: u32) {
        let AlertEngine { slots, streams, dirty, .. } = self;
        let stream = streams[s as usize].as_mut().expect("live stream");
        let link = StreamLink { stream: stream.id, joined_events: stream.counters.events_matched, joined_late: stream.counters.late_events };
        let mine = member_order(slots, idx);
        let position = stream.members.partition_point(|&m| member_order(slots, m) < mine);
        stream.members.insert(position, idx);
        let slot = slots[idx as usize].as_mut().expect("live slot");
        slot.mark(idx, dirty);
        slot.stream = Some(s);
        slot.runtime.link = Some(link);
    }

    /// Takes rule `idx` off its stream, keeping what the stream counted for it; the last
    /// member out drops the stream.
    fn detach(&mut self, idx: u32) {
        let AlertEngine { slots, streams, dirty, .. } = self;
        let slot = slots[idx as usize].as_mut().expect("live slot");
        slot.mark(idx, dirty);
        let Some(s) = slot.stream.take() else {
            slot.runtime.link = None;
            return;
        };
        let stream = streams[s as usize].as_mut().expect("live stream");
        slot.runtime.leave(&stream.counters);
        stream.members.retain(|&m| m != idx);
        if stream.members.is_empty() {
            self.drop_stream(s);
        } else if stream.proto == idx {
            stream.proto = stream.members[0];
        }
    }

    /// Rule `idx`'s pane shape changed (its lateness): it takes a copy of its windows to
    /// a stream of the new shape.
    fn reshape(&mut self, idx: u32) {
        let windows = self.slots[idx as usize].as_ref().and_then(|slot| slot.stream).and_then(|s| self.streams[s as usize].as_ref()).and_then(|s| s.windows.clone());
        self.detach(idx);
        match windows {
            Some(windows) => self.attach_with(idx, Some(windows)),
            None => self.attach_fresh(idx),
        }
    }

    fn drop_stream(&mut self, s: u32) {
        let Some(stream) = self.streams[s as usize].take() else { return };
        self.stream_free.push(s);
        self.stream_by_id.remove(&stream.id);
        if let Some(list) = self.by_shape.get_mut(&stream.key) {
            list.retain(|&t| t != s);
            if list.is_empty() {
                self.by_shape.remove(&stream.key);
            }
        }
        if let Some(app) = self.apps.get_mut(&stream.app) {
            match &stream.required_actions {
                Some(actions) => {
                    for action in actions {
                        if let Some(list) = app.by_action.get_mut(action) {
                            list.retain(|&t| t != s);
                            if list.is_empty() {
                                app.by_action.remove(action);
                            }
                        }
                    }
                }
                None => app.any_action.retain(|&t| t != s),
            }
            app.waiting.retain(|&t| t != s);
        }
        self.streams_removed.push(stream.id);
    }

    /// Starts waiting stream `s` at `start`.
    fn start_stream(&mut self, s: u32, start: i64) {
        let AlertEngine { streams, stream_dirty, .. } = self;
        let stream = streams[s as usize].as_mut().expect("live stream");
        stream.mark(s, stream_dirty);
        stream.windows = Some(Windows { start_from: start, eval_from: start, next_start: start, panes: VecDeque::new() });
        self.push_timer(s, true);
    }

    /// Queues the stream's next window close; `invalidate` first makes earlier timers stale.
    pub(crate) fn push_timer(&mut self, s: u32, invalidate: bool) {
        let stream = self.streams[s as usize].as_mut().expect("live stream");
        if invalidate {
            stream.generation += 1;
        }
        let Some(windows) = &stream.windows else { return };
        let close_at = windows.next_start.saturating_add(stream.size_ms).saturating_add(stream.lateness_ms);
        let timer = Timer { close_at, rank: stream.rank, key: stream.id, slot: s, generation: stream.generation };
        self.apps.entry(stream.app.clone()).or_default().timers.push(Reverse(timer));
    }

    /// Streams that just closed windows and now hold exactly what another stream of their
    /// shape holds (rules created at different moments whose first windows have passed)
    /// become one: the younger one's members join the older one.
    fn merge_closed(&mut self) {
        let mut closed = std::mem::take(&mut self.closed);
        for &s in &closed {
            let Some(stream) = self.streams[s as usize].as_ref() else { continue };
            let Some(windows) = &stream.windows else { continue };
            let Some(list) = self.by_shape.get(&stream.key) else { continue };
            // Past its first window (its start no longer matters) and evaluating.
            let settled = |w: &Windows| w.start_from < w.next_start && w.eval_from <= w.next_start;
            if list.len() < 2 || !settled(windows) {
                continue;
            }
            let twin = list.iter().copied().filter(|&t| t != s).find(|&t| {
                self.streams[t as usize].as_ref().and_then(|o| o.windows.as_ref()).is_some_and(|w| settled(w) && w.next_start == windows.next_start && w.panes == windows.panes)
            });
            let Some(t) = twin else { continue };
            let id_of = |i: u32| self.streams[i as usize].as_ref().map_or(u64::MAX, |st| st.id);
            let (keep, gone) = if id_of(s) < id_of(t) { (s, t) } else { (t, s) };
            self.merge(keep, gone);
        }
        closed.clear();
        self.closed = closed;
    }

    /// Moves the members of stream `gone` to `keep` (same shape, same open windows).
    fn merge(&mut self, keep: u32, gone: u32) {
        let members = std::mem::take(&mut self.streams[gone as usize].as_mut().expect("live stream").members);
        for m in members {
            let AlertEngine { slots, streams, dirty, .. } = self;
            let stream = streams[gone as usize].as_ref().expect("live stream");
            let slot = slots[m as usize].as_mut().expect("live slot");
            slot.mark(m, dirty);
            slot.runtime.leave(&stream.counters);
            slot.stream = None;
            self.join(m, keep);
        }
        self.drop_stream(gone);
        let AlertEngine { streams, stream_dirty, .. } = self;
        streams[keep as usize].as_mut().expect("live stream").mark(keep, stream_dirty);
    }

    fn resolve_if_firing(&mut self, idx: u32, version: u64, reason: &str, out: &mut Output) {
        let slot = self.slot_mut(idx);
        if let Some(firing) = slot.runtime.lifecycle.firing.take() {
            slot.runtime.counters.resolved += 1;
            out.transitions.push(transition(&slot.compiled.rule, version, AlertState::Resolved, &firing, reason.to_owned()));
        }
    }

    // ----- events and time -----

    /// Processes one event: it updates its app's watermark, goes to the open windows of the
    /// streams it matches, and windows the new watermark closes are evaluated into `out`.
    pub fn process(&mut self, event: &Event, out: &mut Output) {
        let time = event.time.0;
        let watermark_time = time.min(event.received.0.saturating_add(self.settings.max_event_time_ahead_ms));
        let app_name = event.app.as_str();
        if !self.apps.contains_key(app_name) {
            self.apps.insert(app_name.to_owned(), AppState::default());
        }
        let app = self.apps.get_mut(app_name).expect("inserted above");
        app.max_time = Some(app.max_time.map_or(watermark_time, |m| m.max(watermark_time)));
        if !app.waiting.is_empty() {
            // The app's first time: streams start at the window holding this event — its
            // time taken within `max_event_time_ahead_ms` of when it was received, so one
            // event from a badly set client clock cannot start them a day early or late.
            let skew = self.settings.max_event_time_ahead_ms;
            let start_time = time.clamp(event.received.0.saturating_sub(skew), event.received.0.saturating_add(skew));
            for s in std::mem::take(&mut app.waiting) {
                let slide = self.streams[s as usize].as_ref().expect("live stream").slide_ms;
                self.start_stream(s, floor_to(start_time, slide));
            }
        }
        let AlertEngine { slots, streams, apps, now, settings, dirty, stream_dirty, closed, .. } = self;
        let app = apps.get_mut(app_name).expect("inserted above");
        let mut user_hash = None;
        let by_action = app.by_action.get(event.action.as_str()).map_or(&[][..], Vec::as_slice);
        for &s in by_action.iter().chain(app.any_action.iter()) {
            let Some(stream) = streams[s as usize].as_mut() else { continue };
            let Some(windows) = stream.windows.as_mut() else { continue };
            // Before its first window closes, a stream ignores events older than its start
            // (windows its rules never had); after, they are late like any other event for
            // a closed window — so a stream's start stops mattering, and streams holding
            // the same panes can merge whenever their rules were created.
            if time < windows.start_from && windows.next_start <= windows.start_from {
                continue;
            }
            let compiled = &slots[stream.proto as usize].as_ref().expect("a stream's proto is a live rule").compiled;
            let Some(contribution) = compiled.contribution(event, &mut user_hash) else { continue };
            stream.counters.events_matched += 1;
            if !stream.dirty {
                stream.dirty = true;
                stream_dirty.push(s);
            }
            if add_to_windows(windows, compiled, time, contribution) {
                stream.counters.late_events += 1;
                out.late_events += stream.members.len() as u64;
            }
        }
        let frontier = max_opt(app.max_time, *now).expect("just set");
        close_due(Closing { slots, streams, dirty, stream_dirty, closed, settings }, app, frontier, out);
        if !self.closed.is_empty() {
            self.merge_closed();
        }
    }

    /// Processes events in order.
    pub fn process_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>, out: &mut Output) {
        for event in events {
            self.process(event, out);
        }
    }

    /// Moves the caller's clock to `now` (ms since the epoch; it never goes back): for
    /// every app, windows whose end plus the rule's lateness is at or before `now` close
    /// even if no event arrives (idle apps). Call it with the wall clock only when the
    /// processor is caught up with the log: while a backlog is replayed the clock is ahead
    /// of the events, and everything still to come would be late. Rules waiting for their
    /// app's first event start at the next full window.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        self.now = Some(self.now.map_or(now.0, |n| n.max(now.0)));
        let mut names: Vec<String> = self.apps.keys().cloned().collect();
        names.sort_unstable();
        for name in names {
            let waiting = std::mem::take(&mut self.apps.get_mut(&name).expect("listed").waiting);
            for s in waiting {
                let slide = self.streams[s as usize].as_ref().expect("live stream").slide_ms;
                let frontier = self.frontier(&name).expect("the clock is set");
                self.start_stream(s, ceil_to(frontier, slide));
            }
            let frontier = self.frontier(&name).expect("the clock is set");
            let AlertEngine { slots, streams, apps, settings, dirty, stream_dirty, closed, .. } = self;
            let app = apps.get_mut(&name).expect("listed");
            close_due(Closing { slots, streams, dirty, stream_dirty, closed, settings }, app, frontier, out);
        }
        if !self.closed.is_empty() {
            self.merge_closed();
        }
    }

    /// Closes every window of every stream that ends at or before `until`, whatever the
    /// lateness (the end of a back-test).
    pub(crate) fn flush(&mut self, until: i64, out: &mut Output) {
        let mut order: Vec<(u64, u32)> = self.streams.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (s.id, i as u32))).collect();
        order.sort_unstable();
        for (_, s) in order {
            let AlertEngine { slots, streams, apps, settings, dirty, .. } = self;
            let stream = streams[s as usize].as_mut().expect("live stream");
            let zone = apps.get(&stream.app).and_then(|a| a.zone);
            close_windows(stream, slots, until, settings, zone, dirty, out);
        }
    }

    // ----- incremental commits -----

    /// The rules and streams changed and removed since the last call (see
    /// [`DirtyRules`]); the next call starts afresh. Every event, window close and rule
    /// change marks what it touched.
    pub fn take_dirty(&mut self) -> DirtyRules {
        let mut changed = Vec::new();
        for idx in std::mem::take(&mut self.dirty) {
            if let Some(slot) = self.slots[idx as usize].as_mut() {
                if slot.dirty {
                    slot.dirty = false;
                    changed.push(slot.compiled.rule.id.clone());
                }
            }
        }
        let mut streams = Vec::new();
        for s in std::mem::take(&mut self.stream_dirty) {
            if let Some(stream) = self.streams[s as usize].as_mut() {
                if stream.dirty {
                    stream.dirty = false;
                    streams.push(stream.id);
                }
            }
        }
        let mut removed: Vec<RuleId> = std::mem::take(&mut self.removed).into_iter().filter(|id| !self.by_id.contains_key(id)).collect();
        let mut streams_removed = std::mem::take(&mut self.streams_removed);
        changed.sort();
        removed.sort();
        removed.dedup();
        streams.sort_unstable();
        streams_removed.sort_unstable();
        DirtyRules { changed, removed, streams, streams_removed }
    }

    // ----- metrics -----

    /// The metrics of rule `id`.
    pub fn rule_metrics(&self, id: &RuleId) -> Option<RuleMetrics> {
        self.slot(id).map(|slot| self.metrics_of(slot))
    }

    /// The metrics of every rule, by id.
    pub fn metrics(&self) -> Vec<RuleMetrics> {
        let mut all: Vec<RuleMetrics> = self.slots.iter().flatten().map(|slot| self.metrics_of(slot)).collect();
        all.sort_by(|a, b| a.rule.cmp(&b.rule));
        all
    }

    fn stream_of(&self, slot: &Slot) -> Option<&Stream> {
        slot.stream.and_then(|s| self.streams[s as usize].as_ref())
    }

    fn metrics_of(&self, slot: &Slot) -> RuleMetrics {
        let rule = &slot.compiled.rule;
        let counters = &slot.runtime.counters;
        let stream = self.stream_of(slot);
        let since = match (stream, slot.runtime.link) {
            (Some(stream), Some(link)) => link.since(&stream.counters),
            _ => StreamCounters::default(),
        };
        RuleMetrics {
            rule: rule.id.clone(),
            app: rule.app.clone(),
            version: rule.version,
            paused: rule.paused,
            firing: slot.runtime.lifecycle.firing.is_some(),
            events_matched: counters.events_matched + since.events_matched,
            late_events: counters.late_events + since.late_events,
            windows_evaluated: counters.windows_evaluated,
            windows_skipped: counters.windows_skipped,
            fired: counters.fired,
            resolved: counters.resolved,
            suppressed: counters.suppressed,
            open_panes: stream.and_then(|s| s.windows.as_ref()).map_or(0, |w| w.panes.len()),
            memory_bytes: slot_memory(slot) + stream.map_or(0, |s| stream_memory(s) / s.members.len().max(1)),
        }
    }

    /// Estimated bytes held by the whole engine.
    pub fn memory_estimate(&self) -> usize {
        let rules: usize = self.slots.iter().flatten().map(slot_memory).sum();
        let streams: usize = self.streams.iter().flatten().map(stream_memory).sum();
        let apps: usize = self
            .apps
            .iter()
            .map(|(name, app)| name.len() + std::mem::size_of::<AppState>() + app.by_action.keys().map(|k| k.len() + 48).sum::<usize>() + app.timers.len() * 40)
            .sum();
        rules
            + streams
            + apps
            + self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
            + self.streams.capacity() * std::mem::size_of::<Option<Stream>>()
            + self.by_id.len() * 48
            + self.by_shape.keys().map(|k| k.len() + 64).sum::<usize>()
    }
}

/// Where rule `idx` goes among its stream's members: by (rank, id).
fn member_order(slots: &[Option<Slot>], idx: u32) -> (u64, RuleId) {
    let compiled = &slots[idx as usize].as_ref().expect("live slot").compiled;
    (compiled.rank, compiled.rule.id.clone())
}

fn stream_key(app: &str, shape: &str) -> String {
    format!("{app}\u{0}{shape}")
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The span of window values a change condition keeps (its period).
fn ring_span(rule: &Rule) -> Option<i64> {
    match rule.condition {
        Condition::Change { against, .. } => Some(against.millis()),
        _ => None,
    }
}

/// Adds one contribution; `true` when the event missed an evaluated window (late).
fn add_to_windows(windows: &mut Windows, compiled: &CompiledRule, time: i64, contribution: Contribution) -> bool {
    let empty = || compiled.empty_acc();
    let pane = floor_to(time, compiled.slide_ms);
    if pane < windows.next_start {
        return true;
    }
    let first_window = (pane - compiled.size_ms + compiled.slide_ms).max(windows.start_from);
    let late = first_window < windows.next_start;
    let panes = &mut windows.panes;
    // Most events go to the newest pane.
    let position = match panes.back() {
        Some((last, _)) if *last == pane => panes.len() - 1,
        Some((last, _)) if *last < pane => {
            panes.push_back((pane, empty()));
            panes.len() - 1
        }
        None => {
            panes.push_back((pane, empty()));
            0
        }
        Some(_) => match panes.binary_search_by_key(&pane, |(start, _)| *start) {
            Ok(i) => i,
            Err(i) => {
                panes.insert(i, (pane, empty()));
                i
            }
        },
    };
    panes[position].1.add(contribution);
    late
}

/// The engine's parts a window close touches (split from the app it closes).
struct Closing<'a> {
    slots: &'a mut [Option<Slot>],
    streams: &'a mut [Option<Stream>],
    dirty: &'a mut Vec<u32>,
    stream_dirty: &'a mut Vec<u32>,
    closed: &'a mut Vec<u32>,
    settings: &'a EngineSettings,
}

/// Closes the streams of `app` whose timers are due at `frontier`, in (time, stream rank)
/// order.
fn close_due(engine: Closing<'_>, app: &mut AppState, frontier: i64, out: &mut Output) {
    let Closing { slots, streams, dirty, stream_dirty, closed, settings } = engine;
    while let Some(Reverse(top)) = app.timers.peek() {
        if top.close_at > frontier {
            break;
        }
        let Some(Reverse(timer)) = app.timers.pop() else { break };
        let Some(stream) = streams[timer.slot as usize].as_mut() else { continue };
        if stream.id != timer.key || stream.generation != timer.generation || stream.windows.is_none() {
            continue;
        }
        let bound = frontier.saturating_sub(stream.lateness_ms);
        stream.mark(timer.slot, stream_dirty);
        close_windows(stream, slots, bound, settings, app.zone, dirty, out);
        closed.push(timer.slot);
        if let Some(windows) = &stream.windows {
            let close_at = windows.next_start.saturating_add(stream.size_ms).saturating_add(stream.lateness_ms);
            app.timers.push(Reverse(Timer { close_at, rank: timer.rank, key: timer.key, slot: timer.slot, generation: stream.generation }));
        }
    }
}

/// Evaluates every window of `stream` that ends at or before `bound`, for each member
/// rule (the window's value computed once per metric).
fn close_windows(stream: &mut Stream, slots: &mut [Option<Slot>], bound: i64, settings: &EngineSettings, zone: Option<chrono_tz::Tz>, dirty: &mut Vec<u32>, out: &mut Output) {
    let Stream { windows, size_ms, slide_ms, members, .. } = stream;
    let Some(windows) = windows.as_mut() else { return };
    let (size, slide) = (*size_ms, *slide_ms);
    let limit = i64::try_from(settings.max_catch_up_windows.max(1)).unwrap_or(i64::MAX);
    while windows.next_start.saturating_add(size) <= bound {
        if windows.panes.is_empty() {
            // Nothing left to count: a long gap is not worth one evaluation per empty window.
            let last_start = floor_to(bound - size, slide);
            let to_close = (last_start - windows.next_start) / slide + 1;
            if to_close > limit {
                let new_start = last_start - (limit - 1) * slide;
                let skipped = ((new_start - windows.next_start) / slide) as u64;
                for &m in members.iter() {
                    let slot = slots[m as usize].as_mut().expect("a member is a live rule");
                    slot.runtime.counters.windows_skipped += skipped;
                }
                windows.next_start = new_start;
            }
        }
        let start = windows.next_start;
        let end = start + size;
        let in_window = windows.panes.iter().take_while(|(pane, _)| *pane < end).count();
        let local_start = local_ms(zone, start);
        // (member whose metric produced it, value, samples)
        let mut last: Option<(u32, Option<f64>, u64)> = None;
        for &m in members.iter() {
            let reuse = last.filter(|(prev, ..)| {
                let metric = |i: u32| &slots[i as usize].as_ref().expect("a member is a live rule").compiled.rule.metric;
                metric(*prev) == metric(m)
            });
            let (value, samples) = match reuse {
                Some((_, value, samples)) => (value, samples),
                None => window_value(&slots[m as usize].as_ref().expect("a member is a live rule").compiled.rule, windows.panes.range(..in_window).map(|(_, acc)| acc)),
            };
            last = Some((m, value, samples));
            let slot = slots[m as usize].as_mut().expect("a member is a live rule");
            slot.mark(m, dirty);
            let Slot { compiled, runtime, .. } = slot;
            if start >= windows.eval_from {
                evaluate(compiled, &mut runtime.lifecycle, &runtime.history, &mut runtime.counters, (start, local_start), end, value, samples, out);
            }
            if let Some(value) = value {
                runtime.history.record(start, local_start, value);
            }
        }
        windows.next_start += slide;
        while windows.panes.front().is_some_and(|(pane, _)| *pane < windows.next_start) {
            windows.panes.pop_front();
        }
    }
}

struct Verdict {
    breach: bool,
    expected: Option<f64>,
    threshold: Option<f64>,
    /// What the reason needs beyond the value: the change in percent, or the deviation
    /// score and the number of past weeks.
    detail: Detail,
}

#[derive(Clone, Copy)]
enum Detail {
    Threshold,
    Change { change: f64 },
    Forecast { score: f64, weeks: usize },
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    compiled: &CompiledRule,
    lifecycle: &mut Lifecycle,
    history: &History,
    counters: &mut Counters,
    (start, local_start): (i64, i64),
    end: i64,
    value: Option<f64>,
    samples: u64,
    out: &mut Output,
) {
    let rule = &compiled.rule;
    counters.windows_evaluated += 1;
    let mut expected = None;
    let mut threshold = None;
    let outcome = if samples < rule.min_samples {
        Outcome::InsufficientSamples
    } else if let Some(v) = value {
        match judge(rule, history, start, local_start, v) {
            None => Outcome::NoBaseline,
            Some(verdict) => {
                expected = verdict.expected;
                threshold = verdict.threshold;
                let firing = Firing { window_start: start, window_end: end, value, expected, threshold };
                match (verdict.breach, lifecycle.firing.is_some()) {
                    (true, true) => {
                        lifecycle.firing = Some(firing);
                        Outcome::Breach
                    }
                    (true, false) => {
                        let cooled = lifecycle.last_fired_end.is_none_or(|last| end - last >= compiled.cooldown_ms);
                        if cooled {
                            counters.fired += 1;
                            lifecycle.last_fired_end = Some(end);
                            out.transitions.push(transition(rule, rule.version, AlertState::Fired, &firing, reason(rule, v, &verdict)));
                            lifecycle.firing = Some(firing);
                            Outcome::Breach
                        } else {
                            counters.suppressed += 1;
                            Outcome::Suppressed
                        }
                    }
                    (false, true) => {
                        counters.resolved += 1;
                        lifecycle.firing = None;
                        let text = format!("back to normal: {}", reason(rule, v, &verdict));
                        out.transitions.push(transition(rule, rule.version, AlertState::Resolved, &firing, text));
                        Outcome::Ok
                    }
                    (false, false) => Outcome::Ok,
                }
            }
        }
    } else {
        Outcome::NoValue
    };
    out.evaluations.push(Evaluation {
        rule: rule.id.clone(),
        app: rule.app.clone(),
        rule_version: rule.version,
        window_start: Timestamp(start),
        window_end: Timestamp(end),
        value,
        samples,
        expected,
        threshold,
        outcome,
        firing: lifecycle.firing.is_some(),
    });
}

/// The condition on `value` of the window starting at `start` (`local_start` in the app's
/// time zone, which the forecast's hours of the week follow); `None` without a baseline.
/// Nothing is formatted here: most windows need no words.
fn judge(rule: &Rule, history: &History, start: i64, local_start: i64, value: f64) -> Option<Verdict> {
    match &rule.condition {
        Condition::Threshold { op, value: limit } => {
            Some(Verdict { breach: op.holds(value, *limit), expected: Some(*limit), threshold: Some(*limit), detail: Detail::Threshold })
        }
        Condition::Change { op, percent, against } => {
            let earlier = history.exact.as_ref()?.get(start - against.millis())?;
            let change = if earlier == 0.0 {
                if value == 0.0 {
                    0.0
                } else {
                    f64::INFINITY.copysign(value)
                }
            } else {
                (value - earlier) / earlier.abs() * 100.0
            };
            Some(Verdict {
                breach: op.holds(change, *percent),
                expected: Some(earlier),
                threshold: Some(earlier + earlier.abs() * percent / 100.0),
                detail: Detail::Change { change },
            })
        }
        Condition::Forecast { k, min_history, direction } => {
            let samples = history.seasonal.as_ref()?.samples(local_start);
            if samples.len() < *min_history as usize {
                return None;
            }
            let (center, spread) = robust_baseline(&samples);
            // A floor on the spread: identical past weeks (MAD 0) must not make every
            // wiggle an anomaly. 5 % of the median, and for counts one event.
            let count_like = matches!(rule.metric, Metric::Count | Metric::DistinctUsers);
            let floor = (0.05 * center.abs()).max(if count_like { 1.0 } else { 1e-9 });
            let sigma = spread.max(floor);
            let score = (value - center) / sigma;
            let breach = match direction {
                Direction::Above => score > *k,
                Direction::Below => score < -*k,
                Direction::Both => score.abs() > *k,
            };
            let below = matches!(direction, Direction::Below) || (matches!(direction, Direction::Both) && value < center);
            let threshold = if below { center - k * sigma } else { center + k * sigma };
            Some(Verdict { breach, expected: Some(center), threshold: Some(threshold), detail: Detail::Forecast { score, weeks: samples.len() } })
        }
    }
}

/// The words of a verdict, for a transition.
fn reason(rule: &Rule, value: f64, verdict: &Verdict) -> String {
    let metric = rule.metric.describe();
    match (&rule.condition, verdict.detail) {
        (Condition::Threshold { op, value: limit }, _) => {
            format!("{metric} {} {} {}", num(value), if verdict.breach { op.as_str() } else { negated(op.as_str()) }, num(*limit))
        }
        (Condition::Change { op, percent, against }, Detail::Change { change }) => format!(
            "{metric} {} is {}% against {} the same window a {} earlier (fires when the change is {} {}%)",
            num(value),
            signed(change),
            num(verdict.expected.unwrap_or(0.0)),
            against.as_str(),
            op.as_str(),
            num(*percent)
        ),
        (Condition::Forecast { k, .. }, Detail::Forecast { score, weeks }) => format!(
            "{metric} {} is {} deviations from the seasonal median {} of the last {weeks} weeks in this hour of the week (k = {})",
            num(value),
            signed(score),
            num(verdict.expected.unwrap_or(0.0)),
            num(*k)
        ),
        _ => format!("{metric} {}", num(value)),
    }
}

fn negated(op: &str) -> &'static str {
    match op {
        ">" => "<=",
        ">=" => "<",
        "<" => ">=",
        _ => ">",
    }
}

/// A number for messages: integers without decimals, others with up to 4.
fn num(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "∞".into() } else { "-∞".into() };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", num((v * 10.0).round() / 10.0))
    } else {
        num((v * 10.0).round() / 10.0)
    }
}

fn transition(rule: &Rule, version: u64, state: AlertState, firing: &Firing, reason: String) -> Transition {
    Transition {
        rule: rule.id.clone(),
        app: rule.app.clone(),
        rule_version: version,
        rule_name: rule.name.clone(),
        severity: rule.severity,
        channels: rule.channels.clone(),
        state,
        window_start: Timestamp(firing.window_start),
        window_end: Timestamp(firing.window_end),
        value: firing.value,
        expected: firing.expected,
        threshold: firing.threshold,
        reason,
    }
}

/// Bytes a rule holds of its own (its stream's panes are counted with the stream).
fn slot_memory(slot: &Slot) -> usize {
    // Its place among its stream's members.
    let index = 4 + 48;
    std::mem::size_of::<Option<Slot>>() + slot.compiled.memory_bytes() + slot.runtime.history.memory_bytes() + index
}

/// Bytes a stream holds: panes, shape, index entries and its timer.
fn stream_memory(stream: &Stream) -> usize {
    let panes = stream.windows.as_ref().map_or(0, |w| w.panes.capacity() * 8 + w.panes.iter().map(|(_, acc)| acc.memory_bytes()).sum::<usize>());
    let index = 4 * stream.required_actions.as_ref().map_or(1, Vec::len) + 48 + stream.members.capacity() * 4;
    std::mem::size_of::<Stream>() + stream.key.len() + stream.app.len() + panes + index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers_round_toward_the_grid() {
        assert_eq!(floor_to(125, 60), 120);
        assert_eq!(floor_to(-1, 60), -60);
        assert_eq!(ceil_to(120, 60), 120);
        assert_eq!(ceil_to(121, 60), 180);
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.125), "0.125");
        assert_eq!(signed(12.34), "+12.3");
        assert_eq!(signed(f64::INFINITY), "+∞");
    }
}
