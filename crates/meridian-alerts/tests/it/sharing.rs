//! Streams: rules of one app that count the same thing over the same windows share one
//! pane ring. Sharing must be invisible: each rule evaluates, fires and counts exactly as it
//! would alone (property test, with rule changes that move rules between streams), and
//! streams that come to hold the same panes merge.

use crate::support::*;
use meridian_alerts::{AlertEngine, Output, Rule, RuleId, RuleMetrics};
use proptest::prelude::*;
use serde_json::json;

/// Eight rules in four streams: three over the same clicks, two over the same buyers, two
/// percentiles of the same latencies, and one like the first three but with no lateness.
fn rules() -> Vec<Rule> {
    let clicks = |id: &str, condition: serde_json::Value, lateness: u64| {
        rule(json!({"id": id, "app": "shop", "name": id, "metric": {"kind": "count"}, "filter": {"action": "click"},
            "window": {"kind": "tumbling", "size_secs": 60}, "allowed_lateness_secs": lateness, "condition": condition, "cooldown_secs": 120}))
    };
    let buyers = |id: &str, op: &str, value: f64| {
        rule(json!({"id": id, "app": "shop", "name": id, "metric": {"kind": "distinct_users"}, "filter": "action == \"order\"",
            "window": {"kind": "sliding", "size_secs": 120, "slide_secs": 30}, "allowed_lateness_secs": 10,
            "condition": {"kind": "threshold", "op": op, "value": value}, "min_samples": 1}))
    };
    let latency = |id: &str, p: f64, value: f64| {
        rule(json!({"id": id, "app": "shop", "name": id, "metric": {"kind": "percentile", "p": p, "field": "props.latency_ms"},
            "filter": {"action": "request"}, "window": {"kind": "sliding", "size_secs": 60, "slide_secs": 30}, "allowed_lateness_secs": 30,
            "condition": {"kind": "threshold", "op": ">", "value": value}}))
    };
    vec![
        clicks("clicks-a", json!({"kind": "threshold", "op": ">", "value": 3}), 20),
        clicks("clicks-b", json!({"kind": "threshold", "op": ">", "value": 1}), 20),
        clicks("clicks-c", json!({"kind": "change", "op": ">", "percent": 50, "against": "day"}), 20),
        buyers("buyers-a", "<", 2.0),
        buyers("buyers-b", ">", 2.0),
        latency("p90", 90.0, 500.0),
        latency("p50", 50.0, 200.0),
        clicks("clicks-strict", json!({"kind": "threshold", "op": ">", "value": 2}), 0),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event { action: usize, user: u8, at: i64, latency: f64 },
    Advance(i64),
    Change(usize, Change),
}

#[derive(Debug, Clone, Copy)]
enum Change {
    /// A condition change: stays on its stream.
    Threshold,
    /// Leaves its stream for fresh windows of another shape, or comes back.
    Filter,
    /// Lateness 0 ↔ 20 s: takes its open windows to a stream of the other shape.
    Lateness,
    PauseOrResume,
    /// Deleted and created again: fresh windows, a new stream that may merge later.
    Recreate,
}

const ACTIONS: [&str; 3] = ["click", "order", "request"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => (0usize..3, 0u8..6, 0i64..(20 * MIN), 1.0f64..1_000.0).prop_map(|(action, user, at, latency)| Step::Event { action, user, at, latency }),
        3 => (0i64..(25 * MIN)).prop_map(Step::Advance),
        2 => (0usize..8, prop_oneof![Just(Change::Threshold), Just(Change::Filter), Just(Change::Lateness), Just(Change::PauseOrResume), Just(Change::Recreate)])
            .prop_map(|(rule, change)| Step::Change(rule, change)),
    ]
}

/// Roughly increasing time with up to 50 s of jitter (some events late).
fn ordered(steps: Vec<Step>) -> Vec<Step> {
    in_time_order(steps, |step| match step {
        Step::Event { at, user, .. } => Some(*at - i64::from(*user) * 10 * SEC),
        Step::Advance(at) => Some(*at),
        Step::Change(..) => None,
    })
}

/// Applies `change` to `rule` (version bumped; a recreate changes nothing but the version:
/// the caller deletes the rule and creates it again).
fn changed(rule: &mut Rule, change: Change) {
    rule.version += 1;
    match change {
        Change::Threshold => rule.min_samples = (rule.min_samples + 1) % 3,
        Change::Filter => {
            rule.filter = match rule.filter {
                None => Some(rule_filter(&rule.id)),
                Some(_) => None,
            }
        }
        Change::Lateness => rule.allowed_lateness_secs = if rule.allowed_lateness_secs == 0 { 20 } else { 0 },
        Change::PauseOrResume => rule.paused = !rule.paused,
        Change::Recreate => {}
    }
}

/// Each rule's original filter (what a filter toggle restores).
fn rule_filter(id: &RuleId) -> meridian_pipeline::ConditionConfig {
    rules().into_iter().find(|r| &r.id == id).and_then(|r| r.filter).expect("every rule here has a filter")
}

/// Runs the steps on an engine holding the rules `which` selects (changes of other rules
/// are not its business).
fn play(steps: &[Step], which: impl Fn(usize) -> bool) -> (AlertEngine, Output, usize) {
    let mut rules = rules();
    let chosen: Vec<Rule> = rules.iter().enumerate().filter(|(i, _)| which(*i)).map(|(_, r)| r.clone()).collect();
    let mut engine = engine_with(&chosen);
    let streams_at_start = engine.stream_count();
    let mut out = Output::default();
    for step in steps {
        match step {
            Step::Event { action, user, at, latency } => {
                engine.process(&with_prop(event("shop", &format!("u{user}"), ACTIONS[*action], *at), "latency_ms", json!(latency)), &mut out);
            }
            Step::Advance(at) => advance(&mut engine, *at, &mut out),
            Step::Change(i, change) => {
                changed(&mut rules[*i], *change);
                if !which(*i) {
                    continue;
                }
                if matches!(change, Change::Recreate) {
                    engine.remove(&rules[*i].id, &mut out);
                }
                engine.upsert(rules[*i].clone(), &mut out).unwrap();
            }
        }
    }
    advance(&mut engine, 2 * HOUR, &mut out);
    (engine, out, streams_at_start)
}

fn metrics_of(engine: &AlertEngine, id: &RuleId) -> RuleMetrics {
    RuleMetrics { memory_bytes: 0, ..engine.rule_metrics(id).unwrap() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rules_sharing_streams_give_exactly_what_each_gives_alone(steps in prop::collection::vec(step(), 0..300).prop_map(ordered)) {
        let (together, out, streams) = play(&steps, |_| true);
        prop_assert_eq!(streams, 4, "eight rules, four pane shapes");
        let mut late = 0;
        for (i, rule) in rules().iter().enumerate() {
            let (alone, alone_out, _) = play(&steps, |j| j == i);
            let mine = |o: &Output| (
                o.evaluations.iter().filter(|e| e.rule == rule.id).cloned().collect::<Vec<_>>(),
                o.transitions.iter().filter(|t| t.rule == rule.id).cloned().collect::<Vec<_>>(),
            );
            prop_assert_eq!(mine(&out), mine(&alone_out), "{}", rule.id);
            prop_assert_eq!(metrics_of(&together, &rule.id), metrics_of(&alone, &rule.id), "{}", rule.id);
            late += alone_out.late_events;
        }
        prop_assert_eq!(out.late_events, late);
    }
}

#[test]
fn a_rule_created_later_gets_its_own_stream_and_merges_once_its_first_window_has_passed() {
    let rules = rules();
    let (a, b) = (rules[0].clone(), rules[1].clone());
    let mut engine = engine_with(std::slice::from_ref(&a));
    let mut out = Output::default();
    for s in 0..90 {
        engine.process(&event("shop", "u", "click", s * SEC), &mut out);
    }
    engine.upsert(b.clone(), &mut out).unwrap();
    assert_eq!(engine.stream_count(), 2, "b starts at the next full window (2 min), a is a minute in");
    for s in 90..300 {
        engine.process(&event("shop", "u", "click", s * SEC), &mut out);
    }
    assert_eq!(engine.stream_count(), 1, "from b's first window on they hold the same panes");
    let value_at = |id: &RuleId, start: i64| out.evaluations.iter().find(|e| &e.rule == id && e.window_start.0 == T0 + start).map(|e| e.value);
    assert_eq!(value_at(&b.id, 0), None, "b did not exist then");
    assert_eq!(value_at(&a.id, 2 * MIN), Some(Some(60.0)));
    assert_eq!(value_at(&b.id, 2 * MIN), Some(Some(60.0)));
    assert_eq!(value_at(&b.id, 3 * MIN), value_at(&a.id, 3 * MIN));
    let matched = |engine: &AlertEngine, id: &RuleId| engine.rule_metrics(id).unwrap().events_matched;
    assert_eq!(matched(&engine, &a.id), 300);
    assert_eq!(matched(&engine, &b.id), 180, "b counts from its start (2 min) only");
    // A late event for a closed window counts for both, once each.
    engine.process(&event("shop", "u", "click", 30 * SEC), &mut out);
    assert_eq!((matched(&engine, &a.id), matched(&engine, &b.id)), (301, 181));
    assert_eq!(engine.rule_metrics(&b.id).unwrap().late_events, 1);
}
