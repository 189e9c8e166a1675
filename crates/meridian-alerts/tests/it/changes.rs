//! Rule changes while events flow: soft changes keep open windows, metric/filter/window
//! changes start fresh, pause/resume, delete, versions, optimistic concurrency.

use crate::support::*;
use meridian_alerts::{AlertState, Applied, Outcome, Output, Rule, RuleId, RuleSet, RuleSetError};
use serde_json::json;

fn clicks(version: u64, threshold: f64) -> Rule {
    let mut r = rule(json!({
        "id": "r", "app": "shop", "name": "clicks", "metric": {"kind": "count"},
        "filter": {"action": "click"}, "window": {"kind": "tumbling", "size_secs": 60},
        "condition": {"kind": "threshold", "op": ">", "value": threshold},
    }));
    r.version = version;
    r
}

#[test]
fn a_threshold_change_mid_window_keeps_the_window_and_the_next_evaluation_uses_the_new_version() {
    let mut engine = engine_with(&[clicks(1, 5.0)]);
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 20 * SEC), event("shop", "u", "click", 30 * SEC)]);
    assert_eq!(engine.upsert(clicks(2, 2.0), &mut out).unwrap(), Applied::Soft);
    engine.process_all(&[event("shop", "u", "click", 40 * SEC), event("shop", "u", "click", 70 * SEC)], &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(4.0))], "the events before the change still count");
    assert_eq!(out.evaluations[0].rule_version, 2);
    assert_eq!(out.evaluations[0].threshold, Some(2.0));
    assert_eq!(out.transitions.len(), 1);
    assert_eq!((out.transitions[0].state, out.transitions[0].rule_version), (AlertState::Fired, 2));
    // The same rule again changes nothing; an older version is ignored.
    assert_eq!(engine.upsert(clicks(2, 2.0), &mut out).unwrap(), Applied::Unchanged);
    assert_eq!(engine.upsert(clicks(1, 5.0), &mut out).unwrap(), Applied::Ignored);
    assert_eq!(engine.rule(&RuleId::new("r").unwrap()).unwrap().version, 2);
}

#[test]
fn a_filter_change_mid_window_discards_the_open_window_and_starts_at_the_next_full_one() {
    let mut engine = engine_with(&[clicks(1, 100.0)]);
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 20 * SEC)]);
    let mut views = clicks(2, 100.0);
    views.filter = Some(meridian_pipeline::ConditionConfig::Expr("action == \"view\"".into()));
    assert_eq!(engine.upsert(views, &mut out).unwrap(), Applied::Reset);
    engine.process_all(
        &[
            event("shop", "u", "view", 30 * SEC), // before the new start (60 s): not the new rule's
            event("shop", "u", "click", 40 * SEC),
            event("shop", "u", "view", 65 * SEC),
            event("shop", "u", "view", 70 * SEC),
        ],
        &mut out,
    );
    advance(&mut engine, 120 * SEC, &mut out);
    assert_eq!(values(&out.evaluations), vec![(60 * SEC, Some(2.0))], "no evaluation of the window open at the change");
    assert!(out.evaluations.iter().all(|e| e.rule_version == 2));
    assert_eq!(out.late_events, 0, "events before the new start are not late");
}

#[test]
fn a_window_change_mid_window_starts_fresh_windows_of_the_new_size() {
    let mut engine = engine_with(&[clicks(1, 100.0)]);
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 130 * SEC)]);
    let mut sliding = clicks(2, 100.0);
    sliding.window = meridian_alerts::WindowSpec::Sliding { size_secs: 120, slide_secs: 30 };
    assert_eq!(engine.upsert(sliding, &mut out).unwrap(), Applied::Reset);
    let before = out.evaluations.len();
    engine.process_all(&[event("shop", "u", "click", 140 * SEC), event("shop", "u", "click", 155 * SEC)], &mut out);
    advance(&mut engine, 300 * SEC, &mut out);
    // Fresh start at 150 s (the next 30 s boundary after 130 s); 140 s is before it.
    assert_eq!(values(&out.evaluations[before..]), vec![(150 * SEC, Some(1.0)), (180 * SEC, Some(0.0))]);
}

#[test]
fn pause_resolves_a_firing_rule_stops_accumulating_and_resume_starts_fresh() {
    let mut engine = engine_with(&[clicks(1, 1.0)]);
    let id = RuleId::new("r").unwrap();
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 20 * SEC), event("shop", "u", "click", 61 * SEC)]);
    assert_eq!(engine.is_firing(&id), Some(true));
    let mut paused = clicks(2, 1.0);
    paused.paused = true;
    assert_eq!(engine.upsert(paused, &mut out).unwrap(), Applied::Paused);
    let resolved = out.transitions.last().unwrap();
    assert_eq!((resolved.state, resolved.reason.as_str(), resolved.rule_version), (AlertState::Resolved, "paused", 2));
    assert_eq!(resolved.window_end.0, T0 + 60 * SEC, "the last window evaluated");
    let matched = engine.rule_metrics(&id).unwrap().events_matched;
    let evaluated = out.evaluations.len();
    engine.process_all(&(0..20).map(|i| event("shop", "u", "click", (70 + i) * SEC)).collect::<Vec<_>>(), &mut out);
    advance(&mut engine, 600 * SEC, &mut out);
    assert_eq!(engine.rule_metrics(&id).unwrap().events_matched, matched, "a paused rule accumulates nothing");
    assert_eq!(out.evaluations.len(), evaluated, "and evaluates nothing");
    assert_eq!(engine.rule_metrics(&id).unwrap().open_panes, 0);
    assert_eq!(engine.is_firing(&id), Some(false));
    assert_eq!(engine.upsert(clicks(3, 1.0), &mut out).unwrap(), Applied::Resumed);
    engine.process_all(&[event("shop", "u", "click", 610 * SEC), event("shop", "u", "click", 661 * SEC), event("shop", "u", "click", 662 * SEC)], &mut out);
    advance(&mut engine, 720 * SEC, &mut out);
    // Fresh windows from 600 s (the clock), so 610 s counts in [600, 660).
    assert_eq!(values(&out.evaluations[evaluated..]), vec![(600 * SEC, Some(1.0)), (660 * SEC, Some(2.0))]);
    assert!(out.evaluations[evaluated..].iter().all(|e| e.rule_version == 3));
    let fired = out.transitions.last().unwrap();
    assert_eq!((fired.state, fired.rule_version, fired.window_start.0 - T0), (AlertState::Fired, 3, 660 * SEC));
}

#[test]
fn deleting_a_firing_rule_resolves_it_and_removes_its_state() {
    let mut engine = engine_with(&[clicks(1, 0.0)]);
    let id = RuleId::new("r").unwrap();
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 61 * SEC)]);
    assert_eq!(out.transitions.len(), 1);
    assert!(engine.remove(&id, &mut out));
    let resolved = out.transitions.last().unwrap();
    assert_eq!((resolved.state, resolved.reason.as_str(), resolved.rule_version), (AlertState::Resolved, "deleted", 1));
    assert!(engine.rule_metrics(&id).is_none());
    assert!(!engine.remove(&id, &mut out));
    let before = out.evaluations.len();
    engine.process(&event("shop", "u", "click", 200 * SEC), &mut out);
    assert_eq!(out.evaluations.len(), before);
    assert!(engine.is_empty());
}

#[test]
fn a_lateness_change_keeps_the_open_window_and_moves_its_close() {
    let mut engine = engine_with(&[clicks(1, 100.0)]);
    let mut out = run(&mut engine, &[event("shop", "u", "click", 10 * SEC)]);
    let mut later = clicks(2, 100.0);
    later.allowed_lateness_secs = 30;
    assert_eq!(engine.upsert(later, &mut out).unwrap(), Applied::Soft);
    engine.process_all(&[event("shop", "u", "click", 70 * SEC), event("shop", "u", "click", 50 * SEC)], &mut out);
    assert!(out.evaluations.is_empty(), "closes at 90 s now");
    engine.process(&event("shop", "u", "click", 90 * SEC), &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(2.0))]);
    assert_eq!(out.late_events, 0);
}

#[test]
fn history_survives_a_slide_change_but_not_a_filter_change() {
    let base = json!({
        "id": "d", "app": "shop", "name": "vs yesterday", "metric": {"kind": "count"}, "filter": {"action": "click"},
        "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "change", "op": ">", "percent": 50, "against": "day"},
    });
    let mut engine = engine_with(&[rule(base.clone())]);
    let mut out = Output::default();
    let events: Vec<_> = (0..26 * 6).map(|i| event("shop", "u", "click", i * 10 * MIN)).collect();
    engine.process_all(&events, &mut out);
    advance(&mut engine, 26 * HOUR, &mut out);
    assert!(out.evaluations.iter().any(|e| e.outcome == Outcome::Ok), "a day of history gives baselines");
    // Same size, another slide: history kept (re-gridded).
    let mut sliding = base.clone();
    sliding["window"] = json!({"kind": "sliding", "size_secs": 3600, "slide_secs": 1800});
    sliding["version"] = json!(2);
    assert_eq!(engine.upsert(rule(sliding.clone()), &mut out).unwrap(), Applied::Reset);
    out.clear();
    engine.process_all(&(0..12).map(|i| event("shop", "u", "click", 26 * HOUR + i * 10 * MIN)).collect::<Vec<_>>(), &mut out);
    advance(&mut engine, 28 * HOUR, &mut out);
    let on_grid: Vec<_> = out.evaluations.iter().filter(|e| (e.window_start.0 - T0) % HOUR == 0).collect();
    assert!(!on_grid.is_empty() && on_grid.iter().all(|e| e.outcome != Outcome::NoBaseline), "{:?}", out.evaluations);
    // Another filter: history gone.
    let mut other = sliding;
    other["filter"] = json!({"action": "view"});
    other["version"] = json!(3);
    assert_eq!(engine.upsert(rule(other), &mut out).unwrap(), Applied::Reset);
    out.clear();
    advance(&mut engine, 30 * HOUR, &mut out);
    assert!(!out.evaluations.is_empty());
    assert!(out.evaluations.iter().all(|e| e.outcome == Outcome::NoBaseline));
}

#[test]
fn a_stale_version_is_refused_by_the_rule_set() {
    let mut rules = RuleSet::new();
    let created = rules.create(clicks(0, 5.0)).unwrap().clone();
    assert_eq!(created.version, 1);
    let id = created.id.clone();
    assert!(matches!(rules.create(clicks(0, 5.0)), Err(RuleSetError::AlreadyExists(_))));
    assert_eq!(rules.update(clicks(0, 6.0), 1).unwrap().version, 2);
    // A second editor still holding version 1 loses nothing silently: refused.
    let err = rules.update(clicks(0, 7.0), 1).unwrap_err();
    assert_eq!(err, RuleSetError::StaleVersion { id: id.clone(), expected: 1, current: 2 });
    assert_eq!(err.code(), "stale_version");
    assert_eq!(rules.get(&id).unwrap().condition, meridian_alerts::Condition::Threshold { op: meridian_alerts::CompareOp::Gt, value: 6.0 });
    assert_eq!(rules.set_paused(&id, true, 1).unwrap_err().code(), "stale_version");
    assert!(rules.set_paused(&id, true, 2).unwrap().paused);
    assert_eq!(rules.delete(&id, 2).unwrap_err().code(), "stale_version");
    let mut moved = clicks(0, 6.0);
    moved.app = meridian_event::AppId::new("other").unwrap();
    let err = rules.update(moved, 3).unwrap_err();
    assert_eq!((err.code(), matches!(&err, RuleSetError::Invalid(e) if e.field == "app")), ("immutable", true));
    let mut invalid = clicks(0, 6.0);
    invalid.name = String::new();
    assert_eq!(rules.update(invalid, 3).unwrap_err().code(), "empty");
    assert_eq!(rules.delete(&id, 3).unwrap().version, 3);
    assert_eq!(rules.delete(&id, 3).unwrap_err().code(), "not_found");
    // Stored as JSON and read back, the set is the same.
    let mut again = RuleSet::new();
    again.create(clicks(0, 1.0)).unwrap();
    let text = serde_json::to_string(&again).unwrap();
    assert_eq!(serde_json::from_str::<RuleSet>(&text).unwrap(), again);
}

#[test]
fn sync_applies_the_rule_set_adding_changing_and_deleting() {
    let mut rules = RuleSet::new();
    rules.create(clicks(0, 0.0)).unwrap();
    let mut other = clicks(0, 0.0);
    other.id = RuleId::new("other").unwrap();
    rules.create(other.clone()).unwrap();
    let mut engine = engine_with(&[]);
    let mut out = Output::default();
    assert!(engine.sync(rules.iter().cloned(), &mut out).is_empty());
    assert_eq!(engine.len(), 2);
    engine.process_all(&[event("shop", "u", "click", 10 * SEC), event("shop", "u", "click", 61 * SEC)], &mut out);
    assert_eq!(out.transitions.iter().filter(|t| t.state == AlertState::Fired).count(), 2);
    rules.delete(&other.id, 1).unwrap();
    let r = rules.get(&RuleId::new("r").unwrap()).unwrap().clone();
    rules.update(Rule { condition: meridian_alerts::Condition::Threshold { op: meridian_alerts::CompareOp::Gt, value: 10.0 }, ..r }, 1).unwrap();
    out.clear();
    assert!(engine.sync(rules.iter().cloned(), &mut out).is_empty());
    assert_eq!(engine.len(), 1);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!((out.transitions[0].rule.as_str(), out.transitions[0].reason.as_str()), ("other", "deleted"));
    assert_eq!(engine.rule(&RuleId::new("r").unwrap()).unwrap().version, 2);
    let mut invalid = clicks(5, 1.0);
    invalid.window = meridian_alerts::WindowSpec::Tumbling { size_secs: 0 };
    let rejected = engine.sync([invalid], &mut out);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1.field, "window.size_secs");
}
