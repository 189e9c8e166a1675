//! [`AlertsProcessor`]: the [`AlertEngine`] over the `events` topic, in the runtime.
//!
//! * **Rules** come from the [`AlertsService`]'s rules in force: at each `process` call
//!   and each timer the processor compares their generation with the one it synced and
//!   [`AlertEngine::sync`]s when it moved. A rule change also schedules a timer due at once
//!   (`rules`), so an idle processor picks it up at its next round (≤ the runtime's idle
//!   wait, 250 ms by default).
//! * **The clock**: a processing-time timer (`tick`) every `alerts.tick_interval_ms`,
//!   stored with the state, calls [`AlertEngine::advance`] with its due time — only when
//!   the processor has read everything the log holds (replaying a backlog with the wall
//!   clock would make its events late). The next tick's due time is part of the state, so
//!   the chain is one: a start schedules a tick at once, which is dropped when a chain is
//!   already running.
//! * **State**: incremental — each round writes the parts of the rules and streams it
//!   touched ([`AlertEngine::take_dirty`], [`AlertEngine::snapshot_rule`],
//!   [`AlertEngine::snapshot_stream`]) and the small engine part, in the round's batch with the positions; a start (or a failed round) restores
//!   them ([`AlertEngine::restore_parts`]) and syncs with the rules in force.
//! * **Transitions** are emitted through the outbox, exactly once: a record of the
//!   `alerts` topic (the history as a stream), and per channel of the rule a notification
//!   request for that endpoint of the notify module, whose body is the Alertmanager
//!   webhook format (`status`, `alerts[]` with `labels`, `annotations`, `startsAt`,
//!   `endsAt`). The history table and the rule's evaluation ring are written in the same
//!   batch.

use crate::engine::{AlertEngine, AlertState, EngineSettings, Output, Transition};
use crate::rule::{BodyFormat, RuleId};
use crate::service::{evaluation_key, evaluation_prefix, history_key, record_round, AlertsService, HistoryEntry, EVALUATIONS_TABLE, HISTORY_TABLE, STATE_TABLE};
use bytes::Bytes;
use meridian_event::{AppId, LogEntry, Timestamp};
use meridian_log::{Log, Record, TopicName};
use meridian_runtime::{Emit, ProcessContext, Processor, Result, RuntimeError, Timer};
use meridian_state::WriteBatch;
use serde_json::json;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

/// The processor's name (and the key of its positions and timers).
pub const PROCESSOR_NAME: &str = "alerts";
/// The clock's timer.
pub(crate) const TICK_TIMER: &[u8] = b"tick";
/// The timer a rule change schedules.
pub(crate) const RULES_TIMER: &[u8] = b"rules";

const ENGINE_KEY: &[u8] = b"engine";
const TICK_KEY: &[u8] = b"tick";
const RULE_PREFIX: &[u8] = b"rule/";
const STREAM_PREFIX: &[u8] = b"stream/";
pub(crate) const FIRED_PREFIX: &[u8] = b"fired/";

/// Where the processor reads and writes.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// The topic of events.
    pub events_topic: TopicName,
    /// The alert history topic.
    pub alerts_topic: TopicName,
    /// The notify module's topic of notification requests.
    pub notifications_topic: TopicName,
}

struct Loaded {
    engine: AlertEngine,
    generation: u64,
    /// Rule → end of the window that fired it (the alert's `startsAt`).
    firing_since: HashMap<RuleId, i64>,
    /// Due time of the tick the chain waits for.
    next_tick: Option<i64>,
    /// The apps that have rules (their time zones are refreshed at each tick).
    apps: Vec<AppId>,
}

/// An app's time zone (UTC when unknown), read when rules change and at each tick.
pub type TimeZones = Arc<dyn Fn(&AppId) -> chrono_tz::Tz + Send + Sync>;

/// The alerts processor (one instance: the engine sees the whole stream).
pub struct AlertsProcessor {
    service: Arc<AlertsService>,
    log: Arc<dyn Log>,
    settings: ProcessorSettings,
    loaded: Option<Loaded>,
    out: Output,
    /// Next offset per partition of the events topic after this round's reads.
    read_to: HashMap<u32, u64>,
    time_zones: Option<TimeZones>,
}

impl std::fmt::Debug for AlertsProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsProcessor").field("loaded", &self.loaded.is_some()).finish_non_exhaustive()
    }
}

fn failed(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Processor { processor: PROCESSOR_NAME.to_owned(), message: message.into() }
}

fn stream_key(id: u64) -> Vec<u8> {
    let mut key = STREAM_PREFIX.to_vec();
    key.extend_from_slice(format!("{id:016x}").as_bytes());
    key
}

fn rule_key(id: &RuleId) -> Vec<u8> {
    let mut key = RULE_PREFIX.to_vec();
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn fired_key(id: &RuleId) -> Vec<u8> {
    let mut key = FIRED_PREFIX.to_vec();
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn scan_prefix(ctx: &ProcessContext<'_>, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let end = meridian_state::prefix_end(prefix);
    let end = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    Ok(ctx.store().range(STATE_TABLE, Bound::Included(prefix), end, usize::MAX)?)
}

impl AlertsProcessor {
    /// A processor over `settings.events_topic` with the rules of `service`.
    pub fn new(service: Arc<AlertsService>, log: Arc<dyn Log>, settings: ProcessorSettings) -> AlertsProcessor {
        AlertsProcessor { service, log, settings, loaded: None, out: Output::default(), read_to: HashMap::new(), time_zones: None }
    }

    /// Takes each app's time zone from `zones` (the forecast's hours of the week are the
    /// app's local hours); UTC without it.
    pub fn with_time_zones(mut self, zones: TimeZones) -> AlertsProcessor {
        self.time_zones = Some(zones);
        self
    }

    fn apply_time_zones(&mut self) {
        let (Some(zones), Some(loaded)) = (&self.time_zones, self.loaded.as_mut()) else { return };
        for app in &loaded.apps {
            loaded.engine.set_time_zone(app.as_str(), zones(app));
        }
    }

    /// Restores the engine from the committed state (once, and after a failed round) and
    /// brings it to the rules in force.
    fn ensure_loaded(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        if self.loaded.is_none() {
            let engine_part = ctx.store().get(STATE_TABLE, ENGINE_KEY)?;
            let engine = match engine_part {
                None => AlertEngine::new(EngineSettings::default()),
                Some(engine_part) => {
                    let parts = scan_prefix(ctx, RULE_PREFIX)?;
                    let streams = scan_prefix(ctx, STREAM_PREFIX)?;
                    AlertEngine::restore_parts(&engine_part, parts.iter().map(|(_, v)| v.as_slice()), streams.iter().map(|(_, v)| v.as_slice())).map_err(|e| failed(format!("cannot restore the alert engine: {e}")))?
                }
            };
            let mut firing_since = HashMap::new();
            for (key, value) in scan_prefix(ctx, FIRED_PREFIX)? {
                let id = std::str::from_utf8(&key[FIRED_PREFIX.len()..]).ok().and_then(|s| RuleId::new(s).ok());
                if let (Some(id), Ok(bytes)) = (id, <[u8; 8]>::try_from(value.as_slice())) {
                    firing_since.insert(id, i64::from_be_bytes(bytes));
                }
            }
            let next_tick = ctx.store().get(STATE_TABLE, TICK_KEY)?.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(i64::from_be_bytes);
            // Generation 0: the first sync applies the rules in force, whatever changed
            // while the processor was away.
            self.loaded = Some(Loaded { engine, generation: 0, firing_since, next_tick, apps: Vec::new() });
        }
        self.sync_rules();
        Ok(())
    }

    fn sync_rules(&mut self) {
        let Some(loaded) = self.loaded.as_mut() else { return };
        let current = self.service.rules();
        if current.generation == loaded.generation {
            return;
        }
        let rejected = loaded.engine.sync(current.rules.iter().cloned(), &mut self.out);
        for (id, error) in rejected {
            tracing::warn!(rule = %id, error = %error, "alert rule not applied");
        }
        loaded.generation = current.generation;
        let mut apps: Vec<AppId> = current.rules.iter().map(|r| r.app.clone()).collect();
        apps.sort_unstable();
        apps.dedup();
        loaded.apps = apps;
        self.apply_time_zones();
        self.service.stats().applied_generation.store(current.generation, std::sync::atomic::Ordering::Release);
        metrics::gauge!("meridian_alerts_rules_generation_applied").set(current.generation as f64);
    }

    /// Whether every partition of the events topic has been read to its end.
    fn caught_up(&self, ctx: &ProcessContext<'_>) -> Result<bool> {
        let topic = &self.settings.events_topic;
        let n = match self.log.partition_count(topic) {
            Ok(n) => n,
            Err(meridian_log::LogError::UnknownTopic(_)) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        for partition in 0..n {
            let position = match self.read_to.get(&partition) {
                Some(p) => *p,
                None => ctx.committed_position(topic, partition)?.unwrap_or(0),
            };
            let offsets = self.log.offsets(topic, partition)?;
            if position.max(offsets.start) < offsets.end {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Schedules the next tick at `due_ms` and records it as the chain's.
    fn schedule_tick(&mut self, ctx: &mut ProcessContext<'_>, due_ms: i64) {
        ctx.schedule_timer(due_ms, TICK_TIMER);
        ctx.batch().put(STATE_TABLE, TICK_KEY.to_vec(), due_ms.to_be_bytes().to_vec());
        if let Some(loaded) = self.loaded.as_mut() {
            loaded.next_tick = Some(due_ms);
        }
    }

    /// Writes what the engine produced and the state it changed into the round's batch,
    /// and emits the transitions.
    fn flush(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        let Some(loaded) = self.loaded.as_mut() else { return Ok(()) };
        let out = std::mem::take(&mut self.out);
        let now = Timestamp::now().millis();
        for transition in &out.transitions {
            let starts_ms = match transition.state {
                AlertState::Fired => {
                    loaded.firing_since.insert(transition.rule.clone(), transition.window_end.0);
                    ctx.batch().put(STATE_TABLE, fired_key(&transition.rule), transition.window_end.0.to_be_bytes().to_vec());
                    transition.window_end.0
                }
                AlertState::Resolved => {
                    ctx.batch().delete(STATE_TABLE, fired_key(&transition.rule));
                    loaded.firing_since.remove(&transition.rule).unwrap_or(transition.window_start.0)
                }
            };
            emit_transition(ctx, &self.settings, transition, starts_ms, now)?;
            metrics::counter!("meridian_alerts_transitions_total", "state" => transition.state.as_str()).increment(1);
        }
        let slots = self.service.config().evaluations_per_rule;
        for evaluation in &out.evaluations {
            let Some(rule) = loaded.engine.rule(&evaluation.rule) else { continue };
            let value = serde_json::to_vec(evaluation).map_err(|e| failed(e.to_string()))?;
            ctx.batch().put(EVALUATIONS_TABLE, evaluation_key(evaluation, rule.slide_ms(), slots), value);
        }
        if out.late_events > 0 {
            metrics::counter!("meridian_alerts_late_events_total").increment(out.late_events);
        }
        let dirty = loaded.engine.take_dirty();
        let mut state_bytes = 0u64;
        for id in &dirty.changed {
            if let Some(part) = loaded.engine.snapshot_rule(id) {
                state_bytes += part.len() as u64;
                ctx.batch().put(STATE_TABLE, rule_key(id), part);
            }
        }
        for &id in &dirty.streams {
            if let Some(part) = loaded.engine.snapshot_stream(id) {
                state_bytes += part.len() as u64;
                ctx.batch().put(STATE_TABLE, stream_key(id), part);
            }
        }
        for &id in &dirty.streams_removed {
            ctx.batch().delete(STATE_TABLE, stream_key(id));
        }
        for id in &dirty.removed {
            ctx.batch().delete(STATE_TABLE, rule_key(id));
            ctx.batch().delete_prefix(EVALUATIONS_TABLE, evaluation_prefix(id));
        }
        let engine_part = loaded.engine.snapshot_engine();
        state_bytes += engine_part.len() as u64;
        ctx.batch().put(STATE_TABLE, ENGINE_KEY.to_vec(), engine_part);
        metrics::gauge!("meridian_alerts_state_bytes_last_round").set(state_bytes as f64);
        metrics::gauge!("meridian_alerts_streams").set(loaded.engine.stream_count() as f64);
        record_round(self.service.stats(), state_bytes, dirty.changed.len() as u64, out.late_events);
        Ok(())
    }
}

/// The Alertmanager webhook body (version 4) of one transition for one receiver.
pub fn alertmanager_body(t: &Transition, starts_ms: i64, receiver: &str) -> serde_json::Value {
    let status = match t.state {
        AlertState::Fired => "firing",
        AlertState::Resolved => "resolved",
    };
    let labels = json!({
        "alertname": t.rule_name,
        "severity": t.severity.as_str(),
        "app": t.app.as_str(),
        "rule": t.rule.as_str(),
        "rule_version": t.rule_version.to_string(),
    });
    let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let annotations = json!({
        "summary": format!("{} ({})", t.rule_name, status),
        "description": t.reason,
        "value": number(t.value),
        "expected": number(t.expected),
        "threshold": number(t.threshold),
        "window_start": Timestamp(t.window_start.0).to_rfc3339(),
        "window_end": Timestamp(t.window_end.0).to_rfc3339(),
    });
    let ends_at = match t.state {
        AlertState::Fired => "0001-01-01T00:00:00Z".to_owned(),
        AlertState::Resolved => Timestamp(t.window_end.0).to_rfc3339(),
    };
    let fingerprint = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{}\0{}", t.app, t.rule).as_bytes()));
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}, app={:?}}}", t.rule_name, t.app.as_str()),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": t.rule_name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": Timestamp(starts_ms).to_rfc3339(),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": fingerprint,
        }],
    })
}

/// The chat body of one transition: `{"text": …}` in Markdown (Slack, Mattermost and
/// Rocket.Chat incoming webhooks), one headline and the numbers.
pub fn chat_body(t: &Transition) -> serde_json::Value {
    let headline = match t.state {
        AlertState::Fired => format!(":rotating_light: *FIRING* [{}] {}", t.severity.as_str(), t.rule_name),
        AlertState::Resolved => format!(":white_check_mark: *RESOLVED* [{}] {}", t.severity.as_str(), t.rule_name),
    };
    let mut text = format!("{headline} (app `{}`)\n{}", t.app, t.reason);
    if let Some(value) = t.value {
        text.push_str(&format!("\nvalue {value}"));
        if let Some(threshold) = t.threshold {
            text.push_str(&format!(", threshold {threshold}"));
        }
    }
    text.push_str(&format!(
        "\nwindow {} – {}, rule `{}` version {}",
        Timestamp(t.window_start.0).to_rfc3339(),
        Timestamp(t.window_end.0).to_rfc3339(),
        t.rule,
        t.rule_version
    ));
    json!({ "text": text })
}

fn emit_transition(ctx: &mut ProcessContext<'_>, settings: &ProcessorSettings, t: &Transition, starts_ms: i64, now: i64) -> Result<()> {
    let id = t.id();
    let app_key = Bytes::from(t.app.as_str().to_owned());
    let entry = HistoryEntry { id: id.clone(), transition: t.clone(), recorded_ms: now };
    let record = serde_json::to_vec(&entry).map_err(|e| failed(e.to_string()))?;
    ctx.batch().put(HISTORY_TABLE, history_key(t), record.clone());
    ctx.emit(Emit { topic: settings.alerts_topic.clone(), key: app_key.clone(), value: Bytes::from(record), id: id.clone() })?;
    let event_type = match t.state {
        AlertState::Fired => "alert.firing",
        AlertState::Resolved => "alert.resolved",
    };
    for channel in &t.channels {
        let endpoint = channel.endpoint.as_str();
        let request_id = format!("{id}:{endpoint}");
        let payload = match channel.format {
            BodyFormat::Alertmanager => alertmanager_body(t, starts_ms, endpoint),
            BodyFormat::Chat => chat_body(t),
        };
        // The notify module's `NotificationRequest`, for one endpoint, its payload the
        // whole body (`bare`).
        let request = json!({
            "id": request_id,
            "app": t.app.as_str(),
            "event_type": event_type,
            "payload": payload,
            "created_ms": now,
            "endpoint": endpoint,
            "bare": true,
        });
        ctx.emit(Emit { topic: settings.notifications_topic.clone(), key: app_key.clone(), value: Bytes::from(request.to_string()), id: request_id })?;
    }
    Ok(())
}

impl Processor for AlertsProcessor {
    fn name(&self) -> &str {
        PROCESSOR_NAME
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.settings.events_topic.clone()]
    }

    fn min_round_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.service.config().min_round_interval_ms)
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> Result<()> {
        self.ensure_loaded(ctx)?;
        if self.loaded.as_ref().is_some_and(|l| l.next_tick.is_none()) {
            // No clock yet (a new data directory, a rebuild): start it.
            self.schedule_tick(ctx, Timestamp::now().millis());
        }
        let Some(loaded) = self.loaded.as_mut() else { return Ok(()) };
        for record in records {
            match LogEntry::decode(&record.value) {
                Ok(LogEntry::Event(event)) => loaded.engine.process(&event, &mut self.out),
                // Windows hold counts and, for distinct users, hashes only until they close.
                Ok(LogEntry::Erasure(_)) => {}
                Err(e) => {
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "skipping undecodable record");
                    metrics::counter!("meridian_alerts_undecodable_total").increment(1);
                }
            }
        }
        if let Some(last) = records.last() {
            self.read_to.insert(last.partition, last.offset + 1);
        }
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        self.flush(ctx)
    }

    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        self.ensure_loaded(ctx)?;
        if timer.key == TICK_TIMER {
            let tick = self.service.config().tick_interval_ms as i64;
            let now = Timestamp::now().millis();
            let chain = self.loaded.as_ref().and_then(|l| l.next_tick);
            // One chain: a tick of another (the one a start schedules while a chain runs)
            // is dropped, unless the chain's own tick is long overdue (lost).
            let ours = chain.is_none_or(|due| due == timer.due_ms || due < now - 10 * tick);
            if ours {
                self.apply_time_zones();
                if self.caught_up(ctx)? {
                    if let Some(loaded) = self.loaded.as_mut() {
                        loaded.engine.advance(Timestamp(timer.due_ms), &mut self.out);
                    }
                }
                self.schedule_tick(ctx, (timer.due_ms + tick).max(now));
            }
        }
        self.flush(ctx)
    }

    fn reset_cache(&mut self) {
        self.loaded = None;
        self.out.clear();
        self.read_to.clear();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(STATE_TABLE, Vec::new());
        batch.delete_prefix(EVALUATIONS_TABLE, Vec::new());
        self.loaded = None;
        self.out.clear();
        self.read_to.clear();
    }
}
