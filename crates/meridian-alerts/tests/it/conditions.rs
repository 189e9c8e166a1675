//! Conditions and the lifecycle: thresholds, cool-down, min samples, day and week
//! comparisons, resolve transitions, windows without a value.

use crate::support::*;
use meridian_alerts::{AlertState, Outcome, Output, RuleId};
use serde_json::json;

/// `counts[i]` click events in minute `i`, spread over the minute.
fn minutes(counts: &[i64]) -> Vec<meridian_event::Event> {
    let mut events = Vec::new();
    for (minute, &n) in counts.iter().enumerate() {
        for i in 0..n {
            events.push(event("shop", &format!("u{i}"), "click", minute as i64 * MIN + (i + 1) * (MIN / (n + 1))));
        }
    }
    events
}

#[test]
fn the_cool_down_suppresses_a_new_firing_until_it_has_passed() {
    let mut engine = engine_with(&[rule(json!({
        "id": "c", "app": "shop", "name": "bursts", "metric": {"kind": "count"}, "filter": {"action": "click"},
        "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 2},
        "cooldown_secs": 300,
    }))]);
    let mut out = run(&mut engine, &minutes(&[5, 0, 5, 0, 0, 0, 5, 0]));
    advance(&mut engine, 8 * MIN, &mut out);
    let transitions: Vec<_> = out.transitions.iter().map(|t| (t.state, (t.window_end.0 - T0) / MIN)).collect();
    assert_eq!(transitions, vec![(AlertState::Fired, 1), (AlertState::Resolved, 2), (AlertState::Fired, 7), (AlertState::Resolved, 8)]);
    let outcomes: Vec<_> = out.evaluations.iter().map(|e| e.outcome).collect();
    use Outcome::{Breach, Ok, Suppressed};
    assert_eq!(outcomes, vec![Breach, Ok, Suppressed, Ok, Ok, Ok, Breach, Ok]);
    let metrics = engine.rule_metrics(&RuleId::new("c").unwrap()).unwrap();
    assert_eq!((metrics.fired, metrics.resolved, metrics.suppressed), (2, 2, 1));
}

#[test]
fn windows_below_min_samples_are_not_judged_and_ratios_need_a_denominator() {
    let mut engine = engine_with(&[rule(json!({
        "id": "crash-rate", "app": "shop", "name": "crashes per launch", "severity": "critical",
        "metric": {"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}},
        "filter": {"context.platform": "ios"},
        "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 0.2},
        "min_samples": 10,
    }))]);
    let ios = |action: &str, at: i64| {
        let mut e = event("shop", "u", action, at);
        e.context.platform = Some("ios".into());
        e
    };
    let mut events = vec![ios("launch", SEC), ios("launch", 2 * SEC), ios("crash", 3 * SEC), ios("crash", 4 * SEC)];
    // Minute 1: no launch at all. Minute 2: 20 launches, 10 crashes (and Android crashes that do not count).
    events.push(ios("crash", MIN + SEC));
    for i in 0..20 {
        events.push(ios("launch", 2 * MIN + i * SEC));
    }
    for i in 0..10 {
        events.push(ios("crash", 2 * MIN + 30 * SEC + i * SEC));
        events.push(event("shop", "u", "crash", 2 * MIN + 30 * SEC + i * SEC));
    }
    let mut out = run(&mut engine, &events);
    advance(&mut engine, 3 * MIN, &mut out);
    let got: Vec<_> = out.evaluations.iter().map(|e| (e.outcome, e.value, e.samples)).collect();
    assert_eq!(got, vec![(Outcome::InsufficientSamples, Some(1.0), 2), (Outcome::InsufficientSamples, None, 0), (Outcome::Breach, Some(0.5), 20)]);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].severity, meridian_alerts::Severity::Critical);
    assert!(out.transitions[0].reason.contains("ratio 0.5 > 0.2"), "{}", out.transitions[0].reason);

    let mut no_minimum = engine_with(&[rule(json!({
        "id": "r", "app": "shop", "name": "r", "metric": {"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}},
        "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 0.2},
    }))]);
    let mut out = run(&mut no_minimum, &[event("shop", "u", "crash", SEC)]);
    advance(&mut no_minimum, MIN, &mut out);
    assert_eq!(out.evaluations[0].outcome, Outcome::NoValue);
    assert!(out.transitions.is_empty());
}

#[test]
fn insufficient_samples_keep_a_firing_alert_firing() {
    let mut engine = engine_with(&[rule(json!({
        "id": "c", "app": "shop", "name": "slow", "metric": {"kind": "count"}, "filter": {"action": "click"},
        "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 3},
        "min_samples": 2,
    }))]);
    let mut out = run(&mut engine, &minutes(&[5, 1, 0, 2]));
    advance(&mut engine, 4 * MIN, &mut out);
    let got: Vec<_> = out.evaluations.iter().map(|e| (e.outcome, e.firing)).collect();
    assert_eq!(got, vec![(Outcome::Breach, true), (Outcome::InsufficientSamples, true), (Outcome::InsufficientSamples, true), (Outcome::Ok, false)]);
    assert_eq!(out.transitions.len(), 2);
    assert_eq!(out.transitions[1].window_start.0 - T0, 3 * MIN);
}

#[test]
fn a_change_against_the_same_hour_yesterday_fires_on_the_jump_only() {
    let mut engine = engine_with(&[rule(json!({
        "id": "d", "app": "shop", "name": "clicks vs yesterday", "metric": {"kind": "count"}, "filter": {"action": "click"},
        "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "change", "op": ">", "percent": 50, "against": "day"},
    }))]);
    let mut events = Vec::new();
    for hour in 0..48 {
        // Yesterday's shape: 10 an hour by day, 4 by night; today the same, except hour 29 doubles.
        let per_hour = if hour == 29 { 20 } else if (8..20).contains(&(hour % 24)) { 10 } else { 4 };
        for i in 0..per_hour {
            events.push(event("shop", &format!("u{i}"), "click", hour * HOUR + i * (HOUR / per_hour)));
        }
    }
    let mut out = run(&mut engine, &events);
    advance(&mut engine, 48 * HOUR, &mut out);
    assert_eq!(out.evaluations.len(), 48);
    assert!(out.evaluations[..24].iter().all(|e| e.outcome == Outcome::NoBaseline), "no yesterday on the first day");
    let fired: Vec<_> = out.transitions.iter().map(|t| (t.state, (t.window_start.0 - T0) / HOUR)).collect();
    assert_eq!(fired, vec![(AlertState::Fired, 29), (AlertState::Resolved, 30)]);
    let jump = &out.evaluations[29];
    assert_eq!((jump.value, jump.expected, jump.threshold), (Some(20.0), Some(4.0), Some(6.0)));
    assert!(out.transitions[0].reason.contains("+400% against 4"), "{}", out.transitions[0].reason);
}

#[test]
fn a_drop_against_the_same_window_last_week_fires() {
    let mut engine = engine_with(&[rule(json!({
        "id": "w", "app": "shop", "name": "orders vs last week", "metric": {"kind": "distinct_users"}, "filter": {"action": "order"},
        "window": {"kind": "sliding", "size_secs": 7200, "slide_secs": 3600},
        "condition": {"kind": "change", "op": "<=", "percent": -50, "against": "week"},
    }))]);
    let mut events = Vec::new();
    for hour in 0..(7 * 24 + 6) {
        // Six buyers an hour, two of them twice; in week 2, hours 3 and 4 have two buyers.
        let buyers = if hour == 7 * 24 + 3 || hour == 7 * 24 + 4 { 2 } else { 6 };
        for i in 0..buyers {
            events.push(event("shop", &format!("buyer{i}"), "order", hour * HOUR + i * MIN));
            if i < 2 {
                events.push(event("shop", &format!("buyer{i}"), "order", hour * HOUR + 30 * MIN));
            }
        }
    }
    let mut out = run(&mut engine, &events);
    advance(&mut engine, (7 * 24 + 6) * HOUR, &mut out);
    // Two-hour windows of six distinct users (the same names every hour): value 6; only
    // [171, 173) has two (hours 171 and 172), against six a week earlier: -66.7 %.
    let judged: Vec<_> = out.evaluations.iter().filter(|e| e.outcome != Outcome::NoBaseline).map(|e| ((e.window_start.0 - T0) / HOUR, e.value, e.outcome)).collect();
    assert_eq!(judged.first().map(|j| j.0), Some(168), "a week of history first");
    assert!(judged.contains(&(171, Some(2.0), Outcome::Breach)), "{judged:?}");
    assert!(judged.contains(&(170, Some(6.0), Outcome::Ok)), "{judged:?}");
    assert!(judged.contains(&(172, Some(6.0), Outcome::Ok)), "{judged:?}");
    let fired: Vec<_> = out.transitions.iter().map(|t| (t.state, (t.window_start.0 - T0) / HOUR)).collect();
    assert_eq!(fired, vec![(AlertState::Fired, 171), (AlertState::Resolved, 172)]);
    assert_eq!(out.evaluations.iter().find(|e| (e.window_start.0 - T0) / HOUR == 171).unwrap().samples, 8, "samples are events");
}

#[test]
fn thresholds_compare_with_each_operator() {
    for (op, value, fires) in [(">", 3.0, false), (">=", 3.0, true), ("<", 3.0, false), ("<=", 3.0, true), ("<", 4.0, true)] {
        let mut engine = engine_with(&[rule(json!({
            "id": "t", "app": "shop", "name": "t", "metric": {"kind": "count"},
            "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": op, "value": value},
        }))]);
        let mut out = run(&mut engine, &minutes(&[3]));
        advance(&mut engine, MIN, &mut out);
        assert_eq!(out.transitions.len(), usize::from(fires), "{op} {value}");
    }
    let mut out = Output { late_events: 3, ..Output::default() };
    out.clear();
    assert_eq!(out, Output::default());
}
