//! Back-tests: when a rule would have fired over past events, without side effects, and the
//! same answers as the live engine.

use crate::support::*;
use meridian_alerts::{backtest, AlertState, Outcome, Output, RuleId};
use meridian_event::Timestamp;
use serde_json::json;

fn latency_rule(threshold: f64) -> meridian_alerts::Rule {
    rule(json!({
        "id": "p95", "app": "shop", "name": "slow requests", "metric": {"kind": "percentile", "p": 95, "field": "props.latency_ms"},
        "filter": {"action": "request"}, "window": {"kind": "sliding", "size_secs": 600, "slide_secs": 300},
        "condition": {"kind": "threshold", "op": ">", "value": threshold}, "min_samples": 20,
    }))
}

/// Requests every 10 s for six hours; latency 100-200 ms, except 2 h–2 h 20 at ~900 ms.
fn requests() -> Vec<meridian_event::Event> {
    (0..6 * 360)
        .map(|i| {
            let at = i * 10 * SEC;
            let slow = (2 * HOUR..2 * HOUR + 20 * MIN).contains(&at);
            let latency = if slow { 850 + (i % 100) } else { 100 + (i % 100) };
            with_prop(event("shop", &format!("u{}", i % 30), "request", at), "latency_ms", json!(latency))
        })
        .collect()
}

#[test]
fn a_backtest_says_when_the_rule_would_have_fired_and_matches_the_live_engine() {
    let events = requests();
    let rule = latency_rule(500.0);
    let result = backtest(&rule, &events, Timestamp(T0 + HOUR), Timestamp(T0 + 5 * HOUR)).unwrap();
    assert!(result.evaluations.iter().all(|e| e.window_start.0 >= T0 + HOUR && e.window_end.0 <= T0 + 5 * HOUR));
    assert_eq!(result.evaluations.len(), (4 * HOUR / (5 * MIN) - 1) as usize);
    let transitions: Vec<_> = result.transitions.iter().map(|t| (t.state, (t.window_start.0 - T0) / MIN)).collect();
    // The first window holding slow requests starts at 1 h 55; the last at 2 h 15.
    assert_eq!(transitions, vec![(AlertState::Fired, 115), (AlertState::Resolved, 140)]);

    // The live engine, fed the same events, evaluates the same windows the same way.
    let mut live = engine_with(std::slice::from_ref(&rule));
    let mut out = run(&mut live, &events);
    advance(&mut live, 6 * HOUR, &mut out);
    let live_in_range: Vec<_> = out.evaluations.iter().filter(|e| e.window_start.0 >= T0 + HOUR && e.window_end.0 <= T0 + 5 * HOUR).cloned().collect();
    assert_eq!(live_in_range, result.evaluations);

    // A back-test changes nothing in the engine it was asked of.
    let before = live.rule_metrics(&RuleId::new("p95").unwrap());
    let stricter = live.backtest(&latency_rule(100.0), &events, Timestamp(T0), Timestamp(T0 + HOUR)).unwrap();
    assert!(stricter.transitions.iter().any(|t| t.state == AlertState::Fired));
    assert_eq!(live.rule_metrics(&RuleId::new("p95").unwrap()), before);
    assert_eq!(live.rule(&RuleId::new("p95").unwrap()).unwrap(), &rule);
}

#[test]
fn a_backtest_warms_history_up_from_earlier_events_or_starts_from_the_engine_history() {
    let change = rule(json!({
        "id": "d", "app": "shop", "name": "vs yesterday", "metric": {"kind": "count"},
        "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "change", "op": ">", "percent": 50, "against": "day"},
    }));
    let mut events = Vec::new();
    for hour in 0..48 {
        let n = if hour == 40 { 30 } else { 10 };
        for i in 0..n {
            events.push(event("shop", "u", "view", hour * HOUR + i * (HOUR / n)));
        }
    }
    // With the events of the day before: judged, fires at hour 40.
    let warm = backtest(&change, &events, Timestamp(T0 + 36 * HOUR), Timestamp(T0 + 48 * HOUR)).unwrap();
    assert_eq!(warm.evaluations.len(), 12);
    assert!(warm.evaluations.iter().all(|e| e.outcome != Outcome::NoBaseline));
    assert_eq!(warm.transitions.iter().map(|t| (t.window_start.0 - T0) / HOUR).collect::<Vec<_>>(), vec![40, 41]);
    // With only the span itself: no baseline.
    let recent: Vec<_> = events.iter().filter(|e| e.time.0 >= T0 + 36 * HOUR).cloned().collect();
    let cold = backtest(&change, &recent, Timestamp(T0 + 36 * HOUR), Timestamp(T0 + 48 * HOUR)).unwrap();
    assert!(cold.evaluations.iter().all(|e| e.outcome == Outcome::NoBaseline));
    // (A change rule's history holds one period back from its live time, so a back-test of
    // the last hours needs the events of a period before them: the warm path above.)
}

#[test]
fn a_forecast_backtest_starts_from_the_history_the_engine_learned() {
    let forecast = rule(json!({
        "id": "f", "app": "shop", "name": "seasonal", "metric": {"kind": "count"},
        "window": {"kind": "tumbling", "size_secs": 3600}, "condition": {"kind": "forecast", "k": 4, "min_history": 2, "direction": "above"},
    }));
    let per_hour = |hour: i64| if (9..21).contains(&(hour % 24)) { 12 } else { 3 };
    let mut events = Vec::new();
    for hour in 0..22 * 24 {
        let n = if hour == 21 * 24 + 4 { 12 } else { per_hour(hour) };
        for i in 0..n {
            events.push(event("shop", "u", "view", hour * HOUR + i * (HOUR / n)));
        }
    }
    let mut live = engine_with(std::slice::from_ref(&forecast));
    let mut out = Output::default();
    live.process_all(&events, &mut out);
    advance(&mut live, 22 * DAY, &mut out);
    // The last day alone, with the learned weeks: judged, fires at 04:00 only.
    let (from, to) = (Timestamp(T0 + 21 * DAY), Timestamp(T0 + 22 * DAY));
    let last_day: Vec<_> = events.iter().filter(|e| e.time >= from).cloned().collect();
    let seeded = live.backtest(&forecast, &last_day, from, to).unwrap();
    assert_eq!(seeded.evaluations.len(), 24);
    assert!(seeded.evaluations.iter().all(|e| e.outcome != Outcome::NoBaseline));
    let fired: Vec<_> = seeded.transitions.iter().filter(|t| t.state == AlertState::Fired).map(|t| (t.window_start.0 - T0) / HOUR).collect();
    assert_eq!(fired, vec![21 * 24 + 4]);
    // The free function starts with no history: nothing to judge against.
    let cold = backtest(&forecast, &last_day, from, to).unwrap();
    assert!(cold.evaluations.iter().all(|e| e.outcome == Outcome::NoBaseline));
    // An invalid rule is refused, naming the field.
    let mut invalid = forecast;
    invalid.name.clear();
    assert_eq!(backtest(&invalid, &events, Timestamp(T0), Timestamp(T0 + HOUR)).unwrap_err().field, "name");
}
