//! The rules in force and what the processor recorded, for HTTP, the CLI and the
//! processor: rules stored one row per rule in the module's state store and shared with
//! the processor as a [`RulesInForce`] behind an `ArcSwap` (a generation number says when
//! it changed); the alert history (every fired and resolved transition, newest first) and
//! each rule's recent evaluations, both written by the processor in its rounds.
//!
//! Every method reads or commits the store: call it off async threads.

use crate::engine::{Evaluation, Transition};
use crate::processor::{PROCESSOR_NAME, RULES_TIMER};
use crate::rule::{Rule, RuleId};
use crate::ruleset::{RuleSet, RuleSetError};
use crate::AlertsConfig;
use arc_swap::ArcSwap;
use meridian_event::AppId;
use meridian_state::{KvStore, StateError, WriteBatch};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Rules: key = rule id, value = the rule's JSON (with its version).
pub const RULES_TABLE: &str = "alerts_rules";
/// The processor's engine state: `engine`, `tick`, `rule/<id>`, `fired/<id>`.
pub const STATE_TABLE: &str = "alerts_state";
/// Transitions: key = app, 0, !window end (u64 BE), rule, 0, state (0 resolved, 1 fired);
/// value = [`HistoryEntry`].
pub const HISTORY_TABLE: &str = "alerts_history";
/// Evaluations: key = rule, 0, slot (u32 BE; a ring per rule); value = [`Evaluation`].
pub const EVALUATIONS_TABLE: &str = "alerts_evaluations";

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The change is refused (invalid rule, unknown rule, stale version…).
    #[error(transparent)]
    Rules(#[from] RuleSetError),
    /// The app has as many rules as it may.
    #[error("app {app} has {max} rules already (alerts.max_rules_per_app); delete one first")]
    TooManyRules {
        /// The app.
        app: AppId,
        /// Its limit.
        max: usize,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The runtime refused (scheduling the processor's wake-up).
    #[error(transparent)]
    Runtime(#[from] meridian_runtime::RuntimeError),
    /// Something stored cannot be read.
    #[error("corrupt {what}: {message}")]
    Corrupt {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// The rules in force, as the processor sees them.
#[derive(Debug, Default)]
pub struct RulesInForce {
    /// Bumped by every change (starts at 1 once loaded).
    pub generation: u64,
    /// Every rule of every app.
    pub rules: RuleSet,
}

/// One row of the alert history: a transition and when the processor recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The transition's id (as in the `alerts` topic and the notifications).
    pub id: String,
    /// The transition.
    #[serde(flatten)]
    pub transition: Transition,
    /// When the processor recorded it, ms since the epoch.
    pub recorded_ms: i64,
}

/// What the processor measured, for operators and the benchmark.
#[derive(Debug, Default)]
pub struct AlertsStats {
    /// Rounds that committed engine state.
    pub rounds: AtomicU64,
    /// Engine state bytes written by those rounds in all.
    pub state_bytes: AtomicU64,
    /// Engine state bytes written by the last of them.
    pub last_state_bytes: AtomicU64,
    /// Rule parts written in all.
    pub rule_parts: AtomicU64,
    /// Late events seen.
    pub late_events: AtomicU64,
    /// The generation of the rules in force the processor applied last (0 before its
    /// first sync): a rule changed at a generation at or below it is in force.
    pub applied_generation: AtomicU64,
}

/// The alerts service.
pub struct AlertsService {
    store: Arc<dyn KvStore>,
    config: AlertsConfig,
    current: ArcSwap<RulesInForce>,
    writer: Mutex<()>,
    stats: AlertsStats,
    /// Generation at which each rule last changed (absent: loaded at start, generation 1).
    changed_at: Mutex<std::collections::HashMap<RuleId, u64>>,
}

impl std::fmt::Debug for AlertsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsService").field("rules", &self.current.load().rules.len()).finish_non_exhaustive()
    }
}

impl AlertsService {
    /// Opens the service over the module's store, loading the rules.
    pub fn open(store: Arc<dyn KvStore>, config: AlertsConfig) -> Result<AlertsService> {
        let mut rules = Vec::new();
        for (key, value) in store.range(RULES_TABLE, Bound::Unbounded, Bound::Unbounded, usize::MAX)? {
            let rule: Rule = serde_json::from_slice(&value).map_err(|e| Error::Corrupt { what: "rule", message: format!("{}: {e}", String::from_utf8_lossy(&key)) })?;
            rules.push(rule);
        }
        let current = RulesInForce { generation: 1, rules: RuleSet::restore(rules) };
        Ok(AlertsService { store, config, current: ArcSwap::from_pointee(current), writer: Mutex::new(()), stats: AlertsStats::default(), changed_at: Mutex::default() })
    }

    /// Its config section.
    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// The module's store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// What the processor measured.
    pub fn stats(&self) -> &AlertsStats {
        &self.stats
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<RulesInForce> {
        self.current.load_full()
    }

    /// The rules of `app`, by id.
    pub fn list(&self, app: &AppId) -> Vec<Rule> {
        self.current.load().rules.for_app(app).cloned().collect()
    }

    /// Rule `id` of `app` (another app's rule is unknown here).
    pub fn get(&self, app: &AppId, id: &RuleId) -> Result<Rule> {
        let current = self.current.load();
        match current.rules.get(id) {
            Some(rule) if &rule.app == app => Ok(rule.clone()),
            _ => Err(RuleSetError::NotFound(id.clone()).into()),
        }
    }

    /// Adds a rule (version 1).
    pub fn create(&self, rule: Rule) -> Result<Rule> {
        let _writer = self.writer.lock();
        let current = self.current.load_full();
        let count = current.rules.for_app(&rule.app).count();
        if count >= self.config.max_rules_per_app {
            rule.validate().map_err(RuleSetError::from)?;
            return Err(Error::TooManyRules { app: rule.app, max: self.config.max_rules_per_app });
        }
        let mut rules = current.rules.clone();
        let stored = rules.create(rule)?.clone();
        self.commit(&current, rules, &stored, None)?;
        Ok(stored)
    }

    /// Replaces rule `rule.id` of `rule.app`, which must be at `expected_version`; returns
    /// the rule before and after.
    pub fn update(&self, rule: Rule, expected_version: u64) -> Result<(Rule, Rule)> {
        let _writer = self.writer.lock();
        let before = self.get(&rule.app, &rule.id)?;
        let current = self.current.load_full();
        let mut rules = current.rules.clone();
        let stored = rules.update(rule, expected_version)?.clone();
        self.commit(&current, rules, &stored, None)?;
        Ok((before, stored))
    }

    /// Pauses (`true`) or resumes rule `id` of `app` at `expected_version`.
    pub fn set_paused(&self, app: &AppId, id: &RuleId, paused: bool, expected_version: u64) -> Result<(Rule, Rule)> {
        let _writer = self.writer.lock();
        let before = self.get(app, id)?;
        let current = self.current.load_full();
        let mut rules = current.rules.clone();
        let stored = rules.set_paused(id, paused, expected_version)?.clone();
        self.commit(&current, rules, &stored, None)?;
        Ok((before, stored))
    }

    /// Deletes rule `id` of `app` at `expected_version` (its evaluations go; its history
    /// stays); returns it.
    pub fn delete(&self, app: &AppId, id: &RuleId, expected_version: u64) -> Result<Rule> {
        let _writer = self.writer.lock();
        self.get(app, id)?;
        let current = self.current.load_full();
        let mut rules = current.rules.clone();
        let deleted = rules.delete(id, expected_version)?;
        self.commit(&current, rules, &deleted, Some(id))?;
        Ok(deleted)
    }

    /// Commits `changed` (or the deletion of `deleted`), then swaps the rules in force and
    /// wakes the processor (a timer due now: it picks the change up at its next round).
    fn commit(&self, current: &RulesInForce, rules: RuleSet, changed: &Rule, deleted: Option<&RuleId>) -> Result<()> {
        let mut batch = WriteBatch::new();
        match deleted {
            Some(id) => {
                batch.delete(RULES_TABLE, id.as_str().as_bytes().to_vec());
                batch.delete_prefix(EVALUATIONS_TABLE, evaluation_prefix(id));
            }
            None => {
                let json = serde_json::to_vec(changed).map_err(|e| Error::Corrupt { what: "rule", message: e.to_string() })?;
                batch.put(RULES_TABLE, changed.id.as_str().as_bytes().to_vec(), json);
            }
        }
        self.store.commit(batch)?;
        let generation = current.generation + 1;
        {
            let mut changed_at = self.changed_at.lock();
            match deleted {
                Some(id) => changed_at.remove(id),
                None => changed_at.insert(changed.id.clone(), generation),
            };
        }
        self.current.store(Arc::new(RulesInForce { generation, rules }));
        metrics::gauge!("meridian_alerts_rules_generation").set(generation as f64);
        meridian_runtime::schedule_timer(&*self.store, PROCESSOR_NAME, meridian_event::Timestamp::now().millis(), RULES_TIMER)?;
        Ok(())
    }

    /// The app's transitions, newest first (by the window that decided them), only rule
    /// `rule`'s when given; at most `limit`.
    pub fn history(&self, app: &AppId, rule: Option<&RuleId>, limit: usize) -> Result<Vec<HistoryEntry>> {
        let prefix = app_prefix(app);
        let end = meridian_state::prefix_end(&prefix);
        let mut out = Vec::new();
        let mut from: Vec<u8> = prefix.clone();
        let mut first = true;
        // Scanned in pages; a rule filter reads past other rules' rows (bounded).
        let mut scanned = 0usize;
        while out.len() < limit && scanned < 1_000_000 {
            let start = if first { Bound::Included(from.as_slice()) } else { Bound::Excluded(from.as_slice()) };
            let end_bound = match &end {
                Some(end) => Bound::Excluded(end.as_slice()),
                None => Bound::Unbounded,
            };
            let page = self.store.range(HISTORY_TABLE, start, end_bound, 1_000)?;
            first = false;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            scanned += page.len();
            for (_, value) in page {
                let entry: HistoryEntry = serde_json::from_slice(&value).map_err(|e| Error::Corrupt { what: "history entry", message: e.to_string() })?;
                if rule.is_none_or(|r| &entry.transition.rule == r) {
                    out.push(entry);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            from = last;
        }
        Ok(out)
    }

    /// Deletes the history entries whose deciding window ended before `cutoff_ms` (every
    /// app's); returns how many. Entries are keyed newest first within an app, so each
    /// app's old entries are one contiguous tail: the purge seeks to it, app by app, and
    /// reads one key per app besides the entries it deletes.
    pub fn purge_history_before(&self, cutoff_ms: i64) -> Result<u64> {
        let mut purged = 0u64;
        let mut next_app: Option<Vec<u8>> = None;
        loop {
            let start = match &next_app {
                Some(key) => Bound::Included(key.as_slice()),
                None => Bound::Unbounded,
            };
            let Some((first, _)) = self.store.range(HISTORY_TABLE, start, Bound::Unbounded, 1)?.into_iter().next() else { break };
            let Some(app_len) = first.iter().position(|&b| b == 0) else { break };
            let prefix = first[..=app_len].to_vec();
            let app_end = meridian_state::prefix_end(&prefix);
            // Newest first: keys from `prefix + (MAX - cutoff + 1)` on end before the cutoff.
            let mut old_from = prefix.clone();
            old_from.extend_from_slice(&(u64::MAX - cutoff_ms.max(0) as u64).to_be_bytes());
            loop {
                let end = match &app_end {
                    Some(end) => Bound::Excluded(end.as_slice()),
                    None => Bound::Unbounded,
                };
                let page = self.store.range(HISTORY_TABLE, Bound::Excluded(old_from.as_slice()), end, 1_000)?;
                let Some((last, _)) = page.last() else { break };
                let last = last.clone();
                let mut batch = WriteBatch::new();
                for (key, _) in page {
                    if history_key_end(&key).is_some_and(|end| end < cutoff_ms) {
                        batch.delete(HISTORY_TABLE, key);
                        purged += 1;
                    }
                }
                if !batch.is_empty() {
                    self.store.commit(batch)?;
                }
                old_from = last;
            }
            match app_end {
                Some(end) => next_app = Some(end),
                None => break,
            }
        }
        Ok(purged)
    }

    /// Whether the processor evaluates events with rule `id`'s current version (it picks a
    /// change up at its next round).
    pub fn in_force(&self, id: &RuleId) -> bool {
        let changed = self.changed_at.lock().get(id).copied().unwrap_or(1);
        self.stats.applied_generation.load(Ordering::Acquire) >= changed
    }

    /// Rule `id`'s latest evaluations (at most `evaluations_per_rule`), oldest first.
    pub fn evaluations(&self, app: &AppId, id: &RuleId, limit: usize) -> Result<Vec<Evaluation>> {
        self.get(app, id)?;
        let mut out = Vec::new();
        for (_, value) in self.store.scan_prefix(EVALUATIONS_TABLE, &evaluation_prefix(id), usize::MAX)? {
            let evaluation: Evaluation = serde_json::from_slice(&value).map_err(|e| Error::Corrupt { what: "evaluation", message: e.to_string() })?;
            out.push(evaluation);
        }
        out.sort_by_key(|e| e.window_end.0);
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }
}

fn app_prefix(app: &AppId) -> Vec<u8> {
    let mut key = app.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The history key of a transition: newest first within its app.
pub(crate) fn history_key(t: &Transition) -> Vec<u8> {
    let mut key = app_prefix(&t.app);
    key.extend_from_slice(&(u64::MAX - t.window_end.0.max(0) as u64).to_be_bytes());
    key.extend_from_slice(t.rule.as_str().as_bytes());
    key.push(0);
    // At the same window end a resolution (a pause, a deletion) follows the firing: it
    // sorts first (newest first).
    key.push(match t.state {
        crate::engine::AlertState::Resolved => 0,
        crate::engine::AlertState::Fired => 1,
    });
    key
}

/// The window end in a history key (see [`history_key`]).
fn history_key_end(key: &[u8]) -> Option<i64> {
    let app_end = key.iter().position(|&b| b == 0)?;
    let bytes: [u8; 8] = key.get(app_end + 1..app_end + 9)?.try_into().ok()?;
    Some((u64::MAX - u64::from_be_bytes(bytes)) as i64)
}

pub(crate) fn evaluation_prefix(id: &RuleId) -> Vec<u8> {
    let mut key = id.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// Where evaluation `e` of a rule sliding by `slide_ms` goes in its ring of `slots`.
pub(crate) fn evaluation_key(e: &Evaluation, slide_ms: i64, slots: u32) -> Vec<u8> {
    let mut key = evaluation_prefix(&e.rule);
    let slot = (e.window_end.0.max(0) / slide_ms.max(1)) as u64 % u64::from(slots.max(1));
    key.extend_from_slice(&(slot as u32).to_be_bytes());
    key
}

/// Counts what the processor committed.
pub(crate) fn record_round(stats: &AlertsStats, state_bytes: u64, rule_parts: u64, late_events: u64) {
    stats.rounds.fetch_add(1, Ordering::Relaxed);
    stats.state_bytes.fetch_add(state_bytes, Ordering::Relaxed);
    stats.last_state_bytes.store(state_bytes, Ordering::Relaxed);
    stats.rule_parts.fetch_add(rule_parts, Ordering::Relaxed);
    stats.late_events.fetch_add(late_events, Ordering::Relaxed);
}

impl AlertsService {
    /// The rules firing now (as of the processor's last commit), with the end of the window
    /// that fired each.
    pub fn firing(&self) -> Result<std::collections::HashMap<RuleId, i64>> {
        let prefix = crate::processor::FIRED_PREFIX;
        let mut out = std::collections::HashMap::new();
        for (key, value) in self.store.scan_prefix(STATE_TABLE, prefix, usize::MAX)? {
            let id = std::str::from_utf8(&key[prefix.len()..]).ok().and_then(|s| RuleId::new(s).ok());
            if let (Some(id), Ok(bytes)) = (id, <[u8; 8]>::try_from(value.as_slice())) {
                out.insert(id, i64::from_be_bytes(bytes));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AlertState;
    use meridian_event::Timestamp;

    fn entry(app: &str, rule: &str, end: i64) -> HistoryEntry {
        let transition = Transition {
            rule: RuleId::new(rule).unwrap(),
            app: AppId::new(app).unwrap(),
            rule_version: 1,
            rule_name: rule.to_owned(),
            severity: crate::Severity::default(),
            channels: Vec::new(),
            state: AlertState::Fired,
            window_start: Timestamp(end - 60_000),
            window_end: Timestamp(end),
            value: Some(1.0),
            expected: None,
            threshold: None,
            reason: String::new(),
        };
        HistoryEntry { id: transition.id(), transition, recorded_ms: end }
    }

    #[test]
    fn the_history_purge_deletes_every_apps_entries_older_than_the_cutoff_and_nothing_else() {
        let store: Arc<dyn KvStore> = Arc::new(meridian_state::MemoryStore::new());
        let service = AlertsService::open(store.clone(), AlertsConfig::default()).unwrap();
        let mut batch = WriteBatch::new();
        // Apps whose names are prefixes of each other, ends on both sides of the cutoff and on it.
        for (app, ends) in [("a", vec![1_000, 5_000, 9_000]), ("ab", vec![4_999, 5_000, 5_001]), ("b", vec![100, 200])] {
            for (i, end) in ends.into_iter().enumerate() {
                let e = entry(app, &format!("r{i}"), end);
                batch.put(HISTORY_TABLE, history_key(&e.transition), serde_json::to_vec(&e).unwrap());
            }
        }
        store.commit(batch).unwrap();
        assert_eq!(service.purge_history_before(5_000).unwrap(), 4);
        let ends = |app: &str| -> Vec<i64> { service.history(&AppId::new(app).unwrap(), None, 100).unwrap().iter().map(|e| e.transition.window_end.0).collect() };
        assert_eq!(ends("a"), vec![9_000, 5_000]);
        assert_eq!(ends("ab"), vec![5_001, 5_000]);
        assert!(ends("b").is_empty());
        assert_eq!(service.purge_history_before(5_000).unwrap(), 0, "nothing left to purge");
    }
}
