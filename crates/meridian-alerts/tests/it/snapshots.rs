//! Snapshot and restore: processing in one go equals processing, snapshotting, restoring
//! and processing the rest (property test); restore applies rule changes made meanwhile.

use crate::support::*;
use meridian_alerts::{AlertEngine, AlertState, Output, Rule, RuleId, SnapshotError};
use proptest::prelude::*;
use serde_json::json;

fn rules() -> Vec<Rule> {
    let window = |size: u64, slide: u64| if size == slide { json!({"kind": "tumbling", "size_secs": size}) } else { json!({"kind": "sliding", "size_secs": size, "slide_secs": slide}) };
    vec![
        rule(json!({"id": "count", "app": "shop", "name": "clicks", "metric": {"kind": "count"}, "filter": {"action": "click"},
            "window": window(60, 60), "allowed_lateness_secs": 20, "condition": {"kind": "threshold", "op": ">", "value": 3}, "cooldown_secs": 120})),
        rule(json!({"id": "users", "app": "shop", "name": "buyers", "metric": {"kind": "distinct_users"}, "filter": "action == \"order\"",
            "window": window(120, 30), "allowed_lateness_secs": 10, "condition": {"kind": "threshold", "op": "<", "value": 2}, "min_samples": 1})),
        rule(json!({"id": "ratio", "app": "shop", "name": "crash rate", "metric": {"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}},
            "window": window(60, 20), "condition": {"kind": "threshold", "op": ">=", "value": 0.5}})),
        rule(json!({"id": "latency", "app": "shop", "name": "p90 latency", "metric": {"kind": "percentile", "p": 90, "field": "props.latency_ms"},
            "filter": {"action": "request"}, "window": window(60, 30), "allowed_lateness_secs": 30, "condition": {"kind": "threshold", "op": ">", "value": 500}})),
        rule(json!({"id": "change", "app": "shop", "name": "vs yesterday", "metric": {"kind": "count"},
            "window": window(600, 300), "condition": {"kind": "change", "op": ">", "percent": 20, "against": "day"}})),
        rule(json!({"id": "forecast", "app": "shop", "name": "seasonal", "metric": {"kind": "count"}, "filter": {"action": "click"},
            "window": window(300, 300), "condition": {"kind": "forecast", "k": 3, "min_history": 1}})),
        rule(json!({"id": "other-app", "app": "blog", "name": "views", "metric": {"kind": "count"},
            "window": window(60, 60), "condition": {"kind": "threshold", "op": ">", "value": 1}})),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event { app: usize, action: usize, user: u8, at: i64, latency: f64 },
    Advance(i64),
    /// A rule change: which rule (index into `rules()`) and what.
    Change(usize, ChangeKind),
}

#[derive(Debug, Clone, Copy)]
enum ChangeKind {
    Threshold,
    Filter,
    PauseOrResume,
}

const APPS: [&str; 2] = ["shop", "blog"];
const ACTIONS: [&str; 5] = ["click", "order", "launch", "crash", "request"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => (0usize..2, 0usize..5, 0u8..6, 0i64..(30 * MIN), 1.0f64..2_000.0).prop_map(|(app, action, user, at, latency)| Step::Event { app, action, user, at, latency }),
        4 => (0i64..(40 * MIN)).prop_map(Step::Advance),
        1 => (0usize..7, prop_oneof![Just(ChangeKind::Threshold), Just(ChangeKind::Filter), Just(ChangeKind::PauseOrResume)], 0i64..(30 * MIN))
            .prop_map(|(rule, kind, _)| Step::Change(rule, kind)),
    ]
}

/// Steps in roughly increasing time, with jitter up to a minute (so some are late); rule
/// changes keep their place among the events around them.
fn ordered(steps: Vec<Step>) -> Vec<Step> {
    let mut steps = in_time_order(steps, |step| match step {
        Step::Event { at, user, .. } => Some(*at - i64::from(*user) * 10 * SEC),
        Step::Advance(at) => Some(*at),
        Step::Change(..) => None,
    });
    // Sometimes the clock runs ahead of every event (an idle stretch).
    if steps.len().is_multiple_of(3) {
        steps.insert(steps.len() / 2, Step::Advance(35 * MIN));
    }
    steps
}

/// The rules in force, as the steps change them (versions bumped like a rule set does).
fn changed(rules: &mut [Rule], index: usize, kind: ChangeKind) -> Rule {
    let rule = &mut rules[index];
    rule.version += 1;
    match kind {
        ChangeKind::Threshold => rule.min_samples = (rule.min_samples + 1) % 3,
        ChangeKind::Filter => {
            rule.filter = match rule.filter {
                None => Some(meridian_pipeline::ConditionConfig::Expr("action != \"order\"".into())),
                Some(_) => None,
            }
        }
        ChangeKind::PauseOrResume => rule.paused = !rule.paused,
    }
    rule.clone()
}

fn apply(engine: &mut AlertEngine, rules: &mut [Rule], steps: &[Step], out: &mut Output, mut after_step: impl FnMut(&mut AlertEngine)) {
    for step in steps {
        match step {
            Step::Event { app, action, user, at, latency } => {
                let e = with_prop(event(APPS[*app], &format!("u{user}"), ACTIONS[*action], *at), "latency_ms", json!(latency));
                engine.process(&e, out);
            }
            Step::Advance(at) => advance(engine, *at, out),
            Step::Change(index, kind) => {
                let rule = changed(rules, *index, *kind);
                engine.upsert(rule, out).unwrap();
            }
        }
        after_step(engine);
    }
}

/// What an incremental commit keeps: the engine part, one part per rule and one per
/// stream.
#[derive(Default)]
struct Store {
    engine: Vec<u8>,
    rules: std::collections::BTreeMap<RuleId, Vec<u8>>,
    streams: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl Store {
    fn commit(&mut self, engine: &mut AlertEngine) {
        let dirty = engine.take_dirty();
        for id in dirty.removed {
            self.rules.remove(&id);
        }
        for id in dirty.changed {
            self.rules.insert(id.clone(), engine.snapshot_rule(&id).unwrap());
        }
        for id in dirty.streams_removed {
            self.streams.remove(&id);
        }
        for id in dirty.streams {
            self.streams.insert(id, engine.snapshot_stream(id).unwrap());
        }
        self.engine = engine.snapshot_engine();
    }

    fn restore(&self) -> AlertEngine {
        AlertEngine::restore_parts(&self.engine, self.rules.values().map(Vec::as_slice), self.streams.values().map(Vec::as_slice)).unwrap()
    }
}

/// The rules' metrics without the memory estimate (vector capacities differ after a restore).
fn counters(engine: &AlertEngine) -> Vec<meridian_alerts::RuleMetrics> {
    engine.metrics().into_iter().map(|m| meridian_alerts::RuleMetrics { memory_bytes: 0, ..m }).collect()
}

fn watermarks(engine: &AlertEngine) -> Vec<Option<meridian_event::Timestamp>> {
    APPS.iter().map(|a| engine.watermark(&meridian_event::AppId::new(*a).unwrap())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn processing_across_a_snapshot_and_restore_equals_processing_in_one_go(
        steps in prop::collection::vec(step(), 0..400).prop_map(ordered),
        split in 0.0f64..=1.0,
    ) {
        let split = ((steps.len() as f64) * split) as usize;
        let mut whole_rules = rules();
        let mut whole = engine_with(&whole_rules);
        let mut whole_out = Output::default();
        apply(&mut whole, &mut whole_rules, &steps, &mut whole_out, |_| {});
        let whole_watermarks = watermarks(&whole);
        advance(&mut whole, 2 * HOUR, &mut whole_out);

        // Up to the split, committing incrementally after every step (a round each).
        let mut rules_now = rules();
        let mut first = engine_with(&rules_now);
        let mut store = Store::default();
        store.commit(&mut first);
        let mut out = Output::default();
        apply(&mut first, &mut rules_now, &steps[..split], &mut out, |engine| store.commit(engine));
        let restored = AlertEngine::restore(&first.snapshot(), rules_now.clone()).unwrap();
        prop_assert!(restored.output.transitions.is_empty() && restored.rejected.is_empty());
        prop_assert_eq!(watermarks(&restored.engine), watermarks(&first));
        let from_parts = store.restore();
        prop_assert_eq!(counters(&from_parts), counters(&first));
        drop(first);

        for (mut engine, how) in [(restored.engine, "snapshot"), (from_parts, "parts")] {
            let mut out = out.clone();
            let mut rules_after = rules_now.clone();
            apply(&mut engine, &mut rules_after, &steps[split..], &mut out, |_| {});
            prop_assert_eq!(watermarks(&engine), whole_watermarks.clone(), "{}", how);
            advance(&mut engine, 2 * HOUR, &mut out);
            prop_assert_eq!(&out.transitions, &whole_out.transitions, "{}", how);
            prop_assert_eq!(&out.evaluations, &whole_out.evaluations, "{}", how);
            prop_assert_eq!(out.late_events, whole_out.late_events, "{}", how);
            prop_assert_eq!(counters(&engine), counters(&whole), "{}", how);
            // A snapshot of the restored engine restores to the same state again.
            let again = AlertEngine::restore_exact(&engine.snapshot()).unwrap();
            prop_assert_eq!(counters(&again), counters(&engine), "{}", how);
        }
    }
}

#[test]
fn restore_applies_the_rule_changes_made_since_the_snapshot() {
    let mut engine = engine_with(&rules());
    let mut out = run(&mut engine, &(0..5).map(|i| event("shop", "u", "click", i * SEC)).collect::<Vec<_>>());
    engine.process(&event("shop", "u", "view", 90 * SEC), &mut out);
    assert_eq!(out.transitions.len(), 1, "clicks fired");
    let bytes = engine.snapshot();

    // Meanwhile: "count" deleted, "ratio" paused, "latency" got a new threshold.
    let mut now_rules: Vec<Rule> = rules().into_iter().filter(|r| r.id.as_str() != "count").collect();
    for r in &mut now_rules {
        r.version = 2;
        if r.id.as_str() == "ratio" {
            r.paused = true;
        }
    }
    let restored = AlertEngine::restore(&bytes, now_rules).unwrap();
    let resolved: Vec<_> = restored.output.transitions.iter().map(|t| (t.rule.as_str(), t.state, t.reason.as_str())).collect();
    assert_eq!(resolved, vec![("count", AlertState::Resolved, "deleted")]);
    let engine = restored.engine;
    assert!(engine.rule(&RuleId::new("count").unwrap()).is_none());
    assert!(engine.rule(&RuleId::new("ratio").unwrap()).unwrap().paused);
    assert_eq!(engine.rule(&RuleId::new("latency").unwrap()).unwrap().version, 2);
    assert_eq!(engine.watermark(&meridian_event::AppId::new("shop").unwrap()).unwrap().0, T0 + 90 * SEC);
}

#[test]
fn bytes_that_are_not_a_snapshot_are_refused() {
    assert!(matches!(AlertEngine::restore_exact(b"nope"), Err(SnapshotError::BadMagic)));
    let mut bytes = engine_with(&rules()).snapshot();
    bytes[4] = 99;
    assert!(matches!(AlertEngine::restore_exact(&bytes), Err(SnapshotError::UnknownFormat(99))));
    let bytes = engine_with(&rules()).snapshot();
    assert!(matches!(AlertEngine::restore_exact(&bytes[..bytes.len() - 3]), Err(SnapshotError::Corrupt(_))));
    let empty = AlertEngine::restore_exact(&AlertEngine::default().snapshot()).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn history_and_the_alert_state_survive_a_snapshot() {
    let rules = vec![
        rule(json!({"id": "day", "app": "shop", "name": "vs yesterday", "metric": {"kind": "count"},
            "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "change", "op": ">", "percent": 50, "against": "day"}})),
        rule(json!({"id": "season", "app": "shop", "name": "seasonal", "metric": {"kind": "count"},
            "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "forecast", "k": 3, "min_history": 1, "direction": "above"}})),
    ];
    // Eight days; every day hour 20 is busy, and on day 7 hour 5 triples.
    let mut events = Vec::new();
    for hour in 0..8 * 24 {
        let n = if hour == 7 * 24 + 5 { 18 } else if hour % 24 == 20 { 12 } else { 6 };
        for i in 0..n {
            events.push(event("shop", "u", "view", hour * HOUR + i * (HOUR / n)));
        }
    }
    let split = events.iter().position(|e| e.time.0 >= T0 + 7 * DAY + 2 * HOUR).unwrap();
    let mut whole = engine_with(&rules);
    let mut whole_out = run(&mut whole, &events);
    advance(&mut whole, 8 * DAY, &mut whole_out);

    let mut first = engine_with(&rules);
    let mut out = run(&mut first, &events[..split]);
    let restored = AlertEngine::restore(&first.snapshot(), rules.clone()).unwrap();
    let mut second = restored.engine;
    second.process_all(&events[split..], &mut out);
    advance(&mut second, 8 * DAY, &mut out);
    assert_eq!(out.evaluations, whole_out.evaluations);
    assert_eq!(out.transitions, whole_out.transitions);
    // The history was needed after the split: both rules fired on day 7, hour 5, from it.
    let fired: Vec<_> = out.transitions.iter().filter(|t| t.state == AlertState::Fired).map(|t| (t.rule.as_str(), (t.window_start.0 - T0) / HOUR)).collect();
    assert_eq!(fired, vec![("day", 7 * 24 + 5), ("season", 7 * 24 + 5)]);
}
