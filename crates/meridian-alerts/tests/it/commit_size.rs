//! What the processor commits per round: the incremental parts (the rules a round touched
//! and the engine part) against the whole snapshot, on 1,000 rules — the figures quoted in
//! the server's alerts adapter docs. Run with `--nocapture` to see them.

use crate::support::{engine_with, event, rule, MIN, SEC};
use meridian_alerts::{AlertEngine, Output};
use serde_json::json;

fn rules(n: usize) -> Vec<meridian_alerts::Rule> {
    (0..n)
        .map(|i| {
            rule(json!({
                "id": format!("r{i}"), "app": "shop", "name": format!("rule {i}"),
                "metric": {"kind": if i % 2 == 0 { "count" } else { "distinct_users" }},
                "filter": {"action": format!("a{}", i % 100)},
                "window": {"kind": "sliding", "size_secs": 600, "slide_secs": 60},
                "condition": {"kind": "threshold", "op": ">", "value": 1000},
            }))
        })
        .collect()
}

/// Bytes of the parts a round writes after `take_dirty`.
fn incremental_bytes(engine: &mut AlertEngine) -> (usize, usize) {
    let dirty = engine.take_dirty();
    let rules: usize = dirty.changed.iter().map(|id| engine.snapshot_rule(id).map_or(0, |p| p.len())).sum();
    (dirty.changed.len(), rules + engine.snapshot_engine().len())
}

#[test]
fn a_round_commits_only_the_rules_it_touched_far_less_than_the_whole_snapshot() {
    let mut engine = engine_with(&rules(1_000));
    let mut out = Output::default();
    // Warm up: ten minutes of traffic over every action (every rule has open panes).
    for second in 0..600 {
        for user in 0..5 {
            engine.process(&event("shop", &format!("u{user}"), &format!("a{}", (second * 7 + user) % 100), second * SEC), &mut out);
        }
    }
    engine.take_dirty();
    // The round that crosses a slide boundary closes a window of every rule: it writes
    // every rule's part (about the whole snapshot).
    engine.process(&event("shop", "u0", "a0", 10 * MIN), &mut out);
    let (touched, boundary_bytes) = incremental_bytes(&mut engine);
    let full = engine.snapshot().len();
    println!("1,000 rules: whole snapshot {full} bytes; the round crossing a slide boundary writes {boundary_bytes} bytes ({touched} rules)");
    assert_eq!(touched, 1_000);
    // A round of 50 events over 5 actions within the slide: 50 of the 1,000 rules (each
    // action is the filter of 10 rules) are touched.
    for i in 0..50 {
        engine.process(&event("shop", &format!("u{i}"), &format!("a{}", i % 5), 10 * MIN + 100 + i * 10), &mut out);
    }
    let (touched, bytes) = incremental_bytes(&mut engine);
    println!("a round of 50 events within the slide touching {touched} rules writes {bytes} bytes ({} per rule)", bytes / touched.max(1));
    assert_eq!(touched, 50);
    assert!(bytes * 10 < full, "incremental {bytes} vs full {full}");
    // A round that only advances the clock (no window due) writes the engine part alone.
    engine.advance(meridian_event::Timestamp(crate::support::T0 + 10 * MIN + 900), &mut out);
    let (touched, bytes) = incremental_bytes(&mut engine);
    println!("a tick with no window due writes {bytes} bytes ({touched} rules)");
    assert_eq!(touched, 0);
    assert!(bytes < 200);
}
