//! Metrics against brute force: ratio, distinct users and percentile over random events in
//! random order, on sliding windows (property tests).

use crate::support::*;
use meridian_alerts::sketch::{rank_of, RELATIVE_ACCURACY};
use meridian_alerts::{AlertEngine, Output};
use proptest::prelude::*;
use serde_json::json;

const SIZE: i64 = 120 * SEC;
const SLIDE: i64 = 40 * SEC;
const SPAN: i64 = 10 * MIN;

/// Windows `[s, s + SIZE)` for s = 0, SLIDE, … that end by SPAN.
fn window_starts() -> Vec<i64> {
    (0..).map(|i| i * SLIDE).take_while(|s| s + SIZE <= SPAN).collect()
}

/// Runs `rule` over `events` (any order; the lateness covers the whole span) and returns the
/// value of each window by start.
fn run_rule(rule_json: serde_json::Value, events: &[meridian_event::Event]) -> Vec<(i64, Option<f64>, u64)> {
    let mut engine = AlertEngine::default();
    let mut out = Output::default();
    engine.upsert(rule(rule_json), &mut out).unwrap();
    advance(&mut engine, 0, &mut out);
    engine.process_all(events, &mut out);
    advance(&mut engine, SPAN + 600 * SEC, &mut out);
    assert_eq!(out.late_events, 0);
    out.evaluations.iter().filter(|e| e.window_end.0 - T0 <= SPAN).map(|e| (e.window_start.0 - T0, e.value, e.samples)).collect()
}

fn window_json(metric: serde_json::Value) -> serde_json::Value {
    json!({
        "id": "m", "app": "shop", "name": "m", "metric": metric,
        "window": {"kind": "sliding", "size_secs": SIZE / SEC, "slide_secs": SLIDE / SEC}, "allowed_lateness_secs": 600,
        "condition": {"kind": "threshold", "op": ">", "value": 1e12},
    })
}

const ACTIONS: [&str; 3] = ["launch", "crash", "view"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ratio_and_distinct_users_equal_brute_force(raw in prop::collection::vec((0usize..3, 0u8..12, 0i64..SPAN, any::<bool>()), 0..300)) {
        let events: Vec<_> = raw
            .iter()
            .map(|(action, user, at, anonymous_device)| {
                if *anonymous_device && *user < 3 {
                    anonymous("shop", &format!("d{user}"), ACTIONS[*action], *at)
                } else {
                    event("shop", &format!("u{user}"), ACTIONS[*action], *at)
                }
            })
            .collect();
        let ratio = run_rule(window_json(json!({"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}})), &events);
        let distinct = run_rule(window_json(json!({"kind": "distinct_users"})), &events);
        let starts = window_starts();
        prop_assert_eq!(ratio.len(), starts.len());
        prop_assert_eq!(distinct.len(), starts.len());
        for (i, start) in starts.iter().enumerate() {
            let in_window: Vec<_> = raw.iter().filter(|(_, _, at, _)| *at >= *start && *at < start + SIZE).collect();
            let crashes = in_window.iter().filter(|(a, ..)| *a == 1).count() as u64;
            let launches = in_window.iter().filter(|(a, ..)| *a == 0).count() as u64;
            let expected_ratio = (launches > 0).then(|| crashes as f64 / launches as f64);
            prop_assert_eq!(ratio[i], (*start, expected_ratio, launches));
            let mut identities: Vec<String> = in_window.iter().map(|(_, u, _, anon)| if *anon && *u < 3 { format!("d{u}") } else { format!("u{u}") }).collect();
            identities.sort();
            identities.dedup();
            prop_assert_eq!(distinct[i], (*start, Some(identities.len() as f64), in_window.len() as u64));
        }
    }

    #[test]
    fn percentiles_are_within_one_percent_of_brute_force(
        raw in prop::collection::vec((0i64..SPAN, prop_oneof![-1e4f64..1e4, 0.5f64..5_000.0, Just(0.0)]), 1..300),
        p in 0.0f64..=100.0,
    ) {
        let events: Vec<_> = raw
            .iter()
            .enumerate()
            .map(|(i, (at, v))| {
                let e = with_prop(event("shop", "u", "request", *at), "latency_ms", json!(v));
                // Some events carry a numeric string, one no number at all: read like the pipeline reads.
                if i % 7 == 3 { with_prop(e, "latency_ms", json!(v.to_string())) } else { e }
            })
            .chain(std::iter::once(with_prop(event("shop", "u", "request", 0), "latency_ms", json!("n/a"))))
            .collect();
        let got = run_rule(window_json(json!({"kind": "percentile", "p": p, "field": "props.latency_ms"})), &events);
        for (start, value, samples) in got {
            let mut exact: Vec<f64> = raw.iter().filter(|(at, _)| *at >= start && *at < start + SIZE).map(|(_, v)| *v).collect();
            prop_assert_eq!(samples, exact.len() as u64);
            if exact.is_empty() {
                prop_assert_eq!(value, None);
                continue;
            }
            exact.sort_by(f64::total_cmp);
            let truth = exact[rank_of(p, exact.len() as u64) as usize];
            let estimate = value.unwrap();
            prop_assert!((estimate - truth).abs() <= RELATIVE_ACCURACY * truth.abs() * 1.000_001 + 1e-9, "p{} {} vs {}", p, estimate, truth);
        }
    }
}
