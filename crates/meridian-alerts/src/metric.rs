//! A rule compiled for the engine (filters, field, durations in ms, index keys) and the
//! per-pane accumulators of its metric.

use crate::rule::{compile_filter, compile_numeric_field, Metric, Rule, RuleError};
use crate::sketch::QuantileSketch;
use meridian_event::Event;
use meridian_pipeline::{ConditionConfig, EventField, EventFilter, OrderedMap};
use serde_json::Value;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

/// A validated rule with everything the engine needs per event.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// Boxed: read at evaluations and changes, not per event, so it stays out of the
    /// cache lines an event touches.
    pub(crate) rule: Box<Rule>,
    /// The rule's JSON, made once for snapshots.
    rule_json: std::sync::OnceLock<String>,
    /// A stable hash of the id: orders timers that are due at the same time without
    /// comparing strings (the id breaks the rare tie).
    pub(crate) rank: u64,
    filter: Option<EventFilter>,
    metric: CompiledMetric,
    pub(crate) size_ms: i64,
    pub(crate) slide_ms: i64,
    pub(crate) lateness_ms: i64,
    pub(crate) cooldown_ms: i64,
    /// The actions an event must have to match (index keys); `None`: any action.
    pub(crate) required_actions: Option<Vec<String>>,
    /// What decides the rule's panes — filter, what a pane accumulates, size, slide and
    /// lateness — as one string: rules of one app with the same shape can share a pane
    /// ring (see the engine's streams).
    pub(crate) pane_shape: String,
}

#[derive(Debug)]
enum CompiledMetric {
    Count,
    DistinctUsers,
    Ratio { numerator: Box<EventFilter>, denominator: Box<EventFilter> },
    Percentile { field: EventField },
}

/// What one event adds to a pane.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Contribution {
    One,
    User(u64),
    Ratio { numerator: bool, denominator: bool },
    Value(f64),
}

impl CompiledRule {
    pub(crate) fn compile(rule: Rule) -> Result<CompiledRule, RuleError> {
        rule.validate()?;
        let filter = rule.filter.as_ref().map(|f| compile_filter("filter", f)).transpose()?;
        let metric = match &rule.metric {
            Metric::Count => CompiledMetric::Count,
            Metric::DistinctUsers => CompiledMetric::DistinctUsers,
            Metric::Ratio { numerator, denominator } => {
                CompiledMetric::Ratio {
                    numerator: Box::new(compile_filter("metric.numerator", numerator)?),
                    denominator: Box::new(compile_filter("metric.denominator", denominator)?),
                }
            }
            Metric::Percentile { field, .. } => CompiledMetric::Percentile { field: compile_numeric_field("metric.field", field)? },
        };
        let required_actions = match (filter.as_ref().and_then(EventFilter::required_actions), &metric) {
            (Some(actions), _) => Some(actions),
            (None, CompiledMetric::Ratio { numerator, denominator }) => match (numerator.required_actions(), denominator.required_actions()) {
                (Some(mut a), Some(b)) => {
                    for action in b {
                        if !a.contains(&action) {
                            a.push(action);
                        }
                    }
                    Some(a)
                }
                _ => None,
            },
            (None, _) => None,
        };
        // Behind the action index, a table's `action` entry always holds: leave it out.
        let filter = match (&rule.filter, &required_actions) {
            (Some(config), Some(_)) => match behind_index(config) {
                Some(reduced) => reduced.map(|f| compile_filter("filter", &f)).transpose()?,
                None => filter,
            },
            _ => filter,
        };
        let pane_metric = match &rule.metric {
            // The percentile itself is read at the window's close: panes hold the sketch.
            Metric::Percentile { field, .. } => serde_json::json!({"kind": "percentile", "field": field}),
            other => serde_json::to_value(other).unwrap_or_default(),
        };
        let pane_shape = serde_json::json!([rule.filter, pane_metric, rule.size_ms(), rule.slide_ms(), rule.lateness_ms()]).to_string();
        Ok(CompiledRule {
            pane_shape,
            rank: xxhash_rust::xxh3::xxh3_64(rule.id.as_str().as_bytes()),
            size_ms: rule.size_ms(),
            slide_ms: rule.slide_ms(),
            lateness_ms: rule.lateness_ms(),
            cooldown_ms: rule.cooldown_ms(),
            filter,
            metric,
            required_actions,
            rule: Box::new(rule),
            rule_json: std::sync::OnceLock::new(),
        })
    }

    /// The rule as JSON (made on first use, kept).
    pub(crate) fn rule_json(&self) -> &str {
        self.rule_json.get_or_init(|| serde_json::to_string(&*self.rule).unwrap_or_default())
    }

    /// What `event` adds to the rule, `None` when it does not match. `user_hash` is
    /// computed at most once per event, whatever the number of rules.
    pub(crate) fn contribution(&self, event: &Event, user_hash: &mut Option<u64>) -> Option<Contribution> {
        if let Some(filter) = &self.filter {
            if !filter.matches(event) {
                return None;
            }
        }
        match &self.metric {
            CompiledMetric::Count => Some(Contribution::One),
            CompiledMetric::DistinctUsers => Some(Contribution::User(*user_hash.get_or_insert_with(|| user_hash_of(event)))),
            CompiledMetric::Ratio { numerator, denominator } => {
                let (numerator, denominator) = (numerator.matches(event), denominator.matches(event));
                (numerator || denominator).then_some(Contribution::Ratio { numerator, denominator })
            }
            CompiledMetric::Percentile { field } => field.number(event).filter(|v| v.is_finite()).map(Contribution::Value),
        }
    }

    /// An empty accumulator of this rule's metric.
    pub(crate) fn empty_acc(&self) -> Acc {
        match self.metric {
            CompiledMetric::Count => Acc::Count(0),
            CompiledMetric::DistinctUsers => Acc::Distinct { events: 0, users: FxHashSet::default() },
            CompiledMetric::Ratio { .. } => Acc::Ratio { numerator: 0, denominator: 0 },
            CompiledMetric::Percentile { .. } => Acc::Percentile(Box::default()),
        }
    }

    /// Rough bytes held by the compiled rule itself.
    pub(crate) fn memory_bytes(&self) -> usize {
        let strings = self.rule.name.len() + self.rule.channels.iter().map(|c| c.endpoint.len() + 32).sum::<usize>() + self.rule.id.as_str().len();
        // Filters: the JSON of the conditions is a fair proxy of their compiled size.
        let filters = self.rule.filter.as_ref().map_or(0, |f| 64 + serde_json::to_string(f).map_or(0, |s| 2 * s.len()));
        let metric = match &self.rule.metric {
            Metric::Ratio { numerator, denominator } => 128 + 2 * (serde_json::to_string(numerator).map_or(0, |s| s.len()) + serde_json::to_string(denominator).map_or(0, |s| s.len())),
            Metric::Percentile { field, .. } => 64 + field.len(),
            _ => 0,
        };
        std::mem::size_of::<CompiledRule>() + strings + filters + metric + self.required_actions.as_ref().map_or(0, |a| a.iter().map(|s| s.len() + 24).sum())
    }
}

/// A table filter without its `action` entry when that entry lists only strings (what
/// the action index guarantees); `Some(None)` when nothing else is left. `None` when the
/// filter is not such a table.
fn behind_index(filter: &ConditionConfig) -> Option<Option<ConditionConfig>> {
    let ConditionConfig::Match(table) = filter else { return None };
    let (_, value) = table.0.iter().find(|(key, _)| key == "action")?;
    let only_strings = match value {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    };
    if !only_strings {
        return None;
    }
    let rest: Vec<(String, Value)> = table.0.iter().filter(|(key, _)| key != "action").cloned().collect();
    Some((!rest.is_empty()).then_some(ConditionConfig::Match(OrderedMap(rest))))
}

/// The stable 64-bit hash of an event's user (its device when anonymous; `u:`/`d:`
/// prefixes keep the two namespaces apart). xxh3, so snapshots restore in any process.
pub(crate) fn user_hash_of(event: &Event) -> u64 {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    match (&event.user, &event.device) {
        (Some(user), _) => xxh3_64_with_seed(user.as_str().as_bytes(), 0x75),
        (None, Some(device)) => xxh3_64_with_seed(device.as_str().as_bytes(), 0x64),
        (None, None) => xxh3_64_with_seed(event.id.as_str().as_bytes(), 0x65),
    }
}

/// What a pane (or a merged window) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Acc {
    Count(u64),
    /// Exact set of user hashes, and the events that brought them (the samples).
    Distinct { events: u64, users: FxHashSet<u64> },
    Ratio { numerator: u64, denominator: u64 },
    Percentile(Box<QuantileSketch>),
}

impl Acc {
    pub(crate) fn add(&mut self, contribution: Contribution) {
        match (self, contribution) {
            (Acc::Count(n), Contribution::One) => *n += 1,
            (Acc::Distinct { events, users }, Contribution::User(hash)) => {
                *events += 1;
                users.insert(hash);
            }
            (Acc::Ratio { numerator, denominator }, Contribution::Ratio { numerator: in_numerator, denominator: in_denominator }) => {
                *numerator += u64::from(in_numerator);
                *denominator += u64::from(in_denominator);
            }
            (Acc::Percentile(sketch), Contribution::Value(v)) => sketch.add(v),
            // A contribution of another metric cannot happen: the pane was made by the
            // same compiled rule (a metric change discards the panes).
            _ => {}
        }
    }

    /// Bytes held (heap included).
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Acc>()
            + match self {
                // hashbrown: 8 bytes per bucket plus one control byte, buckets ≥ 8/7 of entries.
                Acc::Distinct { users, .. } => users.capacity() * 9 * 8 / 7,
                Acc::Percentile(sketch) => sketch.memory_bytes(),
                _ => 0,
            }
    }
}

/// A window's metric: its value (`None`: nothing to measure — a ratio over no
/// denominator, a percentile of no values) and its samples.
pub(crate) fn window_value<'a>(rule: &Rule, panes: impl Iterator<Item = &'a Acc>) -> (Option<f64>, u64) {
    match &rule.metric {
        Metric::Count => {
            let n: u64 = panes.map(|acc| if let Acc::Count(n) = acc { *n } else { 0 }).sum();
            (Some(n as f64), n)
        }
        Metric::DistinctUsers => {
            let sets: Vec<(u64, &FxHashSet<u64>)> = panes.filter_map(|acc| if let Acc::Distinct { events, users } = acc { Some((*events, users)) } else { None }).collect();
            let events: u64 = sets.iter().map(|(events, _)| events).sum();
            let sets: Vec<&FxHashSet<u64>> = sets.into_iter().map(|(_, users)| users).collect();
            let distinct = match sets.as_slice() {
                [] => 0,
                [one] => one.len(),
                many => {
                    let largest = many.iter().copied().max_by_key(|s| s.len()).unwrap_or(many[0]);
                    let mut union = largest.clone();
                    for set in many {
                        if !std::ptr::eq(*set, largest) {
                            union.extend(set.iter().copied());
                        }
                    }
                    union.len()
                }
            };
            (Some(distinct as f64), events)
        }
        Metric::Ratio { .. } => {
            let (mut numerator, mut denominator) = (0u64, 0u64);
            for acc in panes {
                if let Acc::Ratio { numerator: n, denominator: d } = acc {
                    numerator += n;
                    denominator += d;
                }
            }
            ((denominator > 0).then(|| numerator as f64 / denominator as f64), denominator)
        }
        Metric::Percentile { p, .. } => {
            let sketches: Vec<&QuantileSketch> = panes.filter_map(|acc| if let Acc::Percentile(s) = acc { Some(&**s) } else { None }).collect();
            match sketches.as_slice() {
                [] => (None, 0),
                [one] => (one.quantile(*p), one.count()),
                many => {
                    let mut merged = QuantileSketch::new();
                    for sketch in many {
                        merged.merge(sketch);
                    }
                    (merged.quantile(*p), merged.count())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled(filter: Value) -> CompiledRule {
        let rule = json!({
            "id": "r", "app": "shop", "name": "r", "metric": {"kind": "count"}, "filter": filter,
            "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "threshold", "op": ">", "value": 1},
        });
        CompiledRule::compile(Rule::from_json(&rule).unwrap()).unwrap()
    }

    fn event(action: &str, platform: &str) -> Event {
        let raw = json!({"user": "u", "action": action, "time": 1_700_000_000_000i64, "context": {"platform": platform}});
        let policy = meridian_event::ValidationPolicy { max_past_ms: i64::MAX / 2, ..Default::default() };
        let app = meridian_event::AppId::new("shop").unwrap();
        Event::from_json(raw, &app, meridian_event::Timestamp(1_700_000_000_000), &policy, || meridian_event::EventId::new("e").unwrap()).unwrap()
    }

    #[test]
    fn the_action_entry_of_a_table_is_left_to_the_index_and_the_rest_still_filters() {
        let rule = compiled(json!({"action": ["view", "click"], "context.platform": "ios"}));
        assert_eq!(rule.required_actions, Some(vec!["view".to_owned(), "click".to_owned()]));
        let mut hash = None;
        assert!(rule.contribution(&event("view", "ios"), &mut hash).is_some());
        assert!(rule.contribution(&event("click", "android"), &mut hash).is_none());
        let only_action = compiled(json!({"action": "view"}));
        assert!(only_action.filter.is_none(), "nothing left to evaluate");
        // Not a plain list of actions: kept whole, not indexed.
        let mixed = compiled(json!({"action": ["view", null]}));
        assert!(mixed.required_actions.is_none() && mixed.filter.is_some());
        assert!(mixed.contribution(&event("click", "ios"), &mut hash).is_none());
        let expression = compiled(json!("action == \"view\" && context.platform == \"ios\""));
        assert_eq!(expression.required_actions, Some(vec!["view".to_owned()]));
        assert!(expression.contribution(&event("view", "android"), &mut hash).is_none());
    }
}
