//! Builders shared by the tests: events, rules from JSON, time constants.

use meridian_alerts::{AlertEngine, Evaluation, Output, Rule};
use meridian_event::{Action, AppId, Context, DeviceId, Event, EventId, Timestamp, UserId};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// A day boundary (2023-11-14T00:00:00Z), so hourly and daily windows start on it.
pub(crate) const T0: i64 = 19_675 * DAY;
pub(crate) const SEC: i64 = 1_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;
pub(crate) const WEEK: i64 = 7 * DAY;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// An event of `app` by `user` at `T0 + offset_ms`, received at the same time.
pub(crate) fn event(app: &str, user: &str, action: &str, offset_ms: i64) -> Event {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    Event {
        id: EventId::new(format!("e{id}")).unwrap(),
        app: AppId::new(app).unwrap(),
        user: Some(UserId::new(user).unwrap()),
        device: None,
        time: Timestamp(T0 + offset_ms),
        received: Timestamp(T0 + offset_ms),
        action: Action::new(action).unwrap(),
        target: None,
        context: Context::default(),
        props: Map::new(),
    }
}

/// An anonymous event (device only).
pub(crate) fn anonymous(app: &str, device: &str, action: &str, offset_ms: i64) -> Event {
    let mut e = event(app, "x", action, offset_ms);
    e.user = None;
    e.device = Some(DeviceId::new(device).unwrap());
    e
}

/// `e` with a prop.
pub(crate) fn with_prop(mut e: Event, key: &str, value: Value) -> Event {
    e.props.insert(key.to_owned(), value);
    e
}

/// A rule from its JSON (through the API path: parse + validate).
pub(crate) fn rule(json: Value) -> Rule {
    match Rule::from_json(&json) {
        Ok(rule) => rule,
        Err(e) => panic!("test rule refused: {e}"),
    }
}

/// An engine with `rules`.
pub(crate) fn engine_with(rules: &[Rule]) -> AlertEngine {
    let mut engine = AlertEngine::default();
    let mut out = Output::default();
    for r in rules {
        engine.upsert(r.clone(), &mut out).unwrap();
    }
    assert!(out.transitions.is_empty());
    engine
}

/// Processes `events` in order, returning the output.
pub(crate) fn run(engine: &mut AlertEngine, events: &[Event]) -> Output {
    let mut out = Output::default();
    engine.process_all(events, &mut out);
    out
}

/// Advances the clock to `T0 + offset_ms`.
pub(crate) fn advance(engine: &mut AlertEngine, offset_ms: i64, out: &mut Output) {
    engine.advance(Timestamp(T0 + offset_ms), out);
}

/// (window start offset, value) of each evaluation.
pub(crate) fn values(evaluations: &[Evaluation]) -> Vec<(i64, Option<f64>)> {
    evaluations.iter().map(|e| (e.window_start.0 - T0, e.value)).collect()
}

/// Evaluations of one rule.
pub(crate) fn of_rule<'a>(evaluations: &'a [Evaluation], id: &str) -> Vec<&'a Evaluation> {
    evaluations.iter().filter(|e| e.rule.as_str() == id).collect()
}

/// Steps sorted by time, stable: `time(step)` is a step's time, or `None` for a step that
/// keeps its place after the one before it (a rule change among the events around it).
pub(crate) fn in_time_order<S>(steps: Vec<S>, time: impl Fn(&S) -> Option<i64>) -> Vec<S> {
    let mut keyed: Vec<(i64, usize, S)> = Vec::with_capacity(steps.len());
    let mut last = 0;
    for (i, step) in steps.into_iter().enumerate() {
        let key = time(&step).unwrap_or(last);
        last = key;
        keyed.push((key, i, step));
    }
    keyed.sort_by_key(|(key, i, _)| (*key, *i));
    keyed.into_iter().map(|(_, _, step)| step).collect()
}
