//! Event-time windows: tumbling and sliding with out-of-order events, the watermark,
//! allowed lateness, late events, idle apps closed by the clock.

use crate::support::*;
use meridian_alerts::{AlertState, Outcome, Output, RuleId};
use serde_json::json;

fn count_rule(id: &str, window: serde_json::Value, lateness: u64) -> meridian_alerts::Rule {
    rule(json!({
        "id": id, "app": "shop", "name": "clicks", "metric": {"kind": "count"},
        "filter": {"action": "click"}, "window": window, "allowed_lateness_secs": lateness,
        "condition": {"kind": "threshold", "op": ">", "value": 1000},
    }))
}

#[test]
fn tumbling_windows_take_out_of_order_events_within_lateness_and_report_the_rest() {
    let mut engine = engine_with(&[count_rule("r", json!({"kind": "tumbling", "size_secs": 60}), 30)]);
    let id = RuleId::new("r").unwrap();
    let at = |s: i64| event("shop", "u1", "click", s * SEC);
    // 40 s arrives after 70 s (out of order, within lateness); the window [0, 60) closes at
    // watermark 90 (60 + 30 lateness); 20 s then arrives after it closed: late.
    let mut out = run(&mut engine, &[at(10), at(50), at(5), at(70), at(40)]);
    assert!(out.evaluations.is_empty(), "the window is still open within its lateness");
    engine.process(&at(95), &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(4.0))]);
    engine.process(&at(20), &mut out);
    assert_eq!(out.late_events, 1);
    // Other apps' and other actions' events change nothing.
    engine.process(&event("shop", "u1", "view", 100 * SEC), &mut out);
    engine.process(&event("other", "u1", "click", 100 * SEC), &mut out);
    advance(&mut engine, 209 * SEC, &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(4.0)), (60 * SEC, Some(2.0))], "[120, 180) closes at 210 s");
    advance(&mut engine, 210 * SEC, &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(4.0)), (60 * SEC, Some(2.0)), (120 * SEC, Some(0.0))]);
    let metrics = engine.rule_metrics(&id).unwrap();
    assert_eq!(metrics.late_events, 1);
    assert_eq!(metrics.events_matched, 7);
    assert_eq!(metrics.windows_evaluated, 3);
    assert!(out.evaluations.iter().all(|e| e.outcome == Outcome::Ok && e.rule_version == 0));
}

#[test]
fn sliding_windows_merge_their_panes_and_count_events_late_for_closed_windows() {
    let mut engine = engine_with(&[count_rule("s", json!({"kind": "sliding", "size_secs": 60, "slide_secs": 20}), 10)]);
    let at = |s: i64| event("shop", "u1", "click", s * SEC);
    // 15 s is out of order but in time; window [0, 60) closes at watermark 70.
    let mut out = run(&mut engine, &[at(5), at(25), at(45), at(65), at(15)]);
    assert!(out.evaluations.is_empty());
    engine.process(&at(75), &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(4.0))]);
    // 30 s missed [0, 60) (evaluated) but still belongs to [20, 80): late, and counted there.
    engine.process(&at(30), &mut out);
    assert_eq!(out.late_events, 1);
    advance(&mut engine, 190 * SEC, &mut out);
    let expected = vec![
        (0, Some(4.0)),
        (20 * SEC, Some(5.0)), // 25 30 45 65 75
        (40 * SEC, Some(3.0)), // 45 65 75
        (60 * SEC, Some(2.0)), // 65 75
        (80 * SEC, Some(0.0)),
        (100 * SEC, Some(0.0)),
        (120 * SEC, Some(0.0)),
    ];
    assert_eq!(values(&out.evaluations), expected);
    assert_eq!(engine.rule_metrics(&RuleId::new("s").unwrap()).unwrap().open_panes, 0, "panes past every open window are dropped");
}

#[test]
fn the_watermark_is_per_app_and_a_fast_client_clock_cannot_close_windows_early() {
    let mut engine = engine_with(&[count_rule("r", json!({"kind": "tumbling", "size_secs": 120}), 0)]);
    let mut out = run(&mut engine, &[event("shop", "u1", "click", 10 * SEC)]);
    // Another app far ahead closes nothing of this one.
    engine.process(&event("other", "u1", "click", 3_600 * SEC), &mut out);
    // A client clock an hour fast: its event moves the watermark only to received + 60 s.
    let mut fast = event("shop", "u2", "click", 3_600 * SEC);
    fast.received = meridian_event::Timestamp(T0 + 20 * SEC);
    engine.process(&fast, &mut out);
    assert!(out.evaluations.is_empty());
    assert_eq!(engine.watermark(&meridian_event::AppId::new("shop").unwrap()).unwrap().0, T0 + 80 * SEC);
    engine.process(&event("shop", "u1", "click", 130 * SEC), &mut out);
    assert_eq!(values(&out.evaluations), vec![(0, Some(1.0))], "the fast event is in its own window, not this one");
}

#[test]
fn the_clock_closes_windows_of_idle_apps_and_a_silent_app_can_fire_and_resolve() {
    let no_orders = rule(json!({
        "id": "no-orders", "app": "shop", "name": "no orders", "metric": {"kind": "count"},
        "filter": "action == \"order\"", "window": {"kind": "tumbling", "size_secs": 600},
        "condition": {"kind": "threshold", "op": "<", "value": 1}, "severity": "critical", "channels": ["ops-webhook"],
    }));
    let mut engine = engine_with(&[no_orders]);
    let mut out = Output::default();
    advance(&mut engine, 0, &mut out);
    advance(&mut engine, 599 * SEC, &mut out);
    assert!(out.evaluations.is_empty());
    advance(&mut engine, 600 * SEC, &mut out);
    assert_eq!(out.transitions.len(), 1);
    let fired = out.transitions[0].clone();
    assert_eq!((fired.state, fired.window_start.0 - T0, fired.window_end.0 - T0), (AlertState::Fired, 0, 600 * SEC));
    assert_eq!(fired.channels, vec![meridian_alerts::Channel::alertmanager("ops-webhook")]);
    assert_eq!(fired.value, Some(0.0));
    assert!(fired.reason.contains("count 0 < 1"), "{}", fired.reason);
    engine.process(&event("shop", "u1", "order", 700 * SEC), &mut out);
    advance(&mut engine, 1_200 * SEC, &mut out);
    assert_eq!(out.transitions.len(), 2);
    let resolved = &out.transitions[1];
    assert_eq!((resolved.state, resolved.window_start.0 - T0), (AlertState::Resolved, 600 * SEC));
    assert!(resolved.reason.starts_with("back to normal"), "{}", resolved.reason);
    assert_ne!(fired.id(), resolved.id());
    // The clock never goes back.
    advance(&mut engine, 0, &mut out);
    assert_eq!(engine.watermark(&meridian_event::AppId::new("shop").unwrap()).unwrap().0, T0 + 1_200 * SEC);
}

#[test]
fn a_long_idle_gap_skips_empty_windows_beyond_the_catch_up_limit() {
    let mut engine = engine_with(&[count_rule("r", json!({"kind": "tumbling", "size_secs": 60}), 0)]);
    let mut out = run(&mut engine, &[event("shop", "u1", "click", 0)]);
    advance(&mut engine, 10 * DAY, &mut out);
    let metrics = engine.rule_metrics(&RuleId::new("r").unwrap()).unwrap();
    // The window with the event, then at most 1,440 empty ones; the rest skipped.
    assert_eq!(out.evaluations.len(), 1 + 1_440);
    assert_eq!(out.evaluations[0].value, Some(1.0));
    assert_eq!(metrics.windows_skipped + metrics.windows_evaluated, 10 * 1_440);
    assert_eq!(out.evaluations.last().unwrap().window_end.0, T0 + 10 * DAY);
}

#[test]
fn a_first_event_with_a_wrong_clock_does_not_start_the_rules_far_away() {
    let mut engine = engine_with(&[count_rule("r", json!({"kind": "tumbling", "size_secs": 60}), 0)]);
    // The app's first event claims to be from yesterday; it was received at 30 s.
    let mut stale = event("shop", "u1", "click", -DAY);
    stale.received = meridian_event::Timestamp(T0 + 30 * SEC);
    let mut out = run(&mut engine, &[stale, event("shop", "u1", "click", 40 * SEC), event("shop", "u1", "click", 50 * SEC)]);
    advance(&mut engine, 60 * SEC, &mut out);
    // Rules started at the window of 30 s - 60 s (the allowed skew), i.e. [-60 s, 0) and
    // [0, 60): no day of empty windows, the stale event outside both (not theirs).
    assert_eq!(values(&out.evaluations), vec![(-60 * SEC, Some(0.0)), (0, Some(2.0))]);
    assert_eq!(out.late_events, 0);
}
