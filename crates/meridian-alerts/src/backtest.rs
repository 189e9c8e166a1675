//! Back-tests: a rule evaluated against past events, saying when it would have fired —
//! the rule editor's "test" and preview chart. No side effects: a private engine.

use crate::engine::{ceil_to, floor_to, AlertEngine, EngineSettings, Evaluation, Output, Transition};
use crate::history::History;
use crate::metric::CompiledRule;
use crate::rule::{Rule, RuleError};
use meridian_event::{Event, Timestamp};

/// What a rule would have done over a span of past events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backtest {
    /// Every window that starts at or after `from` and ends at or before `to`.
    pub evaluations: Vec<Evaluation>,
    /// When it would have fired and resolved.
    pub transitions: Vec<Transition>,
    /// Events late for their windows (out of order by more than the allowed lateness).
    pub late_events: u64,
}

/// Evaluates `rule` (paused or not) over `events` of its app, in time order (out-of-order
/// events are handled like live ones, within the rule's lateness), reporting the windows
/// in `[from, to)`. Events before `from` only warm the history up, so a day/week
/// comparison or a forecast needs events reaching back that far.
pub fn backtest<'a>(rule: &Rule, events: impl IntoIterator<Item = &'a Event>, from: Timestamp, to: Timestamp) -> Result<Backtest, RuleError> {
    run(rule, events, from, to, History::default())
}

impl AlertEngine {
    /// Like [`backtest`], starting from the history this engine holds for the rule of the
    /// same id when its metric, filter and window are those of `rule` (so a changed
    /// threshold or condition can be tried against the learned baseline).
    pub fn backtest<'a>(&self, rule: &Rule, events: impl IntoIterator<Item = &'a Event>, from: Timestamp, to: Timestamp) -> Result<Backtest, RuleError> {
        let history = match self.slot(&rule.id) {
            Some(slot) => {
                let live = &slot.compiled.rule;
                if live.metric == rule.metric && live.filter == rule.filter && live.window == rule.window {
                    (*slot.runtime.history).clone()
                } else {
                    History::default()
                }
            }
            None => History::default(),
        };
        run(rule, events, from, to, history)
    }
}

fn run<'a>(rule: &Rule, events: impl IntoIterator<Item = &'a Event>, from: Timestamp, to: Timestamp, history: History) -> Result<Backtest, RuleError> {
    let mut rule = rule.clone();
    rule.paused = false;
    let compiled = CompiledRule::compile(rule)?;
    let slide = compiled.slide_ms;
    let app = compiled.rule.app.clone();
    let mut events = events.into_iter().filter(|e| e.app == app && e.time.0 < to.0).peekable();
    let first = events.peek().map_or(from.0, |e| e.time.0.min(from.0));
    let mut engine = AlertEngine::new(EngineSettings { max_catch_up_windows: u64::MAX, ..EngineSettings::default() });
    let idx = engine.insert(compiled, Default::default());
    *engine.slots[idx as usize].as_mut().expect("just inserted").runtime.history = history;
    engine.ensure_history(idx);
    engine.start_at(idx, floor_to(first, slide), ceil_to(from.0, slide));
    let mut out = Output::default();
    for event in events {
        engine.process(event, &mut out);
    }
    engine.flush(to.0, &mut out);
    Ok(Backtest { evaluations: out.evaluations, transitions: out.transitions, late_events: out.late_events })
}
