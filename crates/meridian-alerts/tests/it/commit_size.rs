//! What the processor commits per round: the incremental parts (the rules and streams a
//! round touched, and the engine part) against the whole snapshot, on 1,000 rules — the
//! figures quoted in the server's alerts adapter docs. Run with `--nocapture` to see them.

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

/// (rules, streams, bytes) of the parts a round writes after `take_dirty`.
fn incremental_bytes(engine: &mut AlertEngine) -> (usize, usize, usize) {
    let dirty = engine.take_dirty();
    let rules: usize = dirty.changed.iter().map(|id| engine.snapshot_rule(id).map_or(0, |p| p.len())).sum();
    let streams: usize = dirty.streams.iter().map(|&id| engine.snapshot_stream(id).map_or(0, |p| p.len())).sum();
    (dirty.changed.len(), dirty.streams.len(), rules + streams + engine.snapshot_engine().len())
}

#[test]
fn a_round_commits_only_the_rules_it_touched_far_less_than_the_whole_snapshot() {
    let mut engine = engine_with(&rules(1_000));
    // Each action's ten rules count the same thing (the metric follows the action's
    // parity): one stream per action.
    assert_eq!(engine.stream_count(), 100);
    let mut out = Output::default();
    // Warm up: ten minutes of traffic over every action (every rule has open panes).
    for second in 0..600 {
        for user in 0..5 {
            engine.process(&event("shop", &format!("u{user}"), &format!("a{}", (second * 7 + user) % 100), second * SEC), &mut out);
        }
    }
    engine.take_dirty();
    // The round that crosses a slide boundary closes a window of every stream, so every
    // rule evaluates: it writes every rule's and stream's part (about the whole snapshot).
    engine.process(&event("shop", "u0", "a0", 10 * MIN), &mut out);
    let (touched, streams, boundary_bytes) = incremental_bytes(&mut engine);
    let full = engine.snapshot().len();
    println!("1,000 rules: whole snapshot {full} bytes; the round crossing a slide boundary writes {boundary_bytes} bytes ({touched} rules, {streams} streams)");
    assert_eq!((touched, streams), (1_000, 100));
    // A round of 50 events over 5 actions within the slide touches the 5 streams of those
    // actions and no rule: the panes are the streams'.
    for i in 0..50 {
        engine.process(&event("shop", &format!("u{i}"), &format!("a{}", i % 5), 10 * MIN + 100 + i * 10), &mut out);
    }
    let (touched, streams, bytes) = incremental_bytes(&mut engine);
    println!("a round of 50 events within the slide touching {streams} streams and {touched} rules writes {bytes} bytes");
    assert_eq!((touched, streams), (0, 5));
    assert!(bytes * 50 < full, "incremental {bytes} vs full {full}");
    // A round that only advances the clock (no window due) writes the engine part alone.
    engine.advance(meridian_event::Timestamp(crate::support::T0 + 10 * MIN + 900), &mut out);
    let (touched, streams, bytes) = incremental_bytes(&mut engine);
    println!("a tick with no window due writes {bytes} bytes ({touched} rules, {streams} streams)");
    assert_eq!((touched, streams), (0, 0));
    assert!(bytes < 200);
}
