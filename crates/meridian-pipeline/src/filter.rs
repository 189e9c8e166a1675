//! Event filters and field readers for other capabilities: the pipeline's condition
//! language (tables of `path = value` or evalexpr expressions over event paths) and its
//! event paths, compiled once, so a capability that selects events (e.g. the user action
//! system's aggregations) speaks the same language as `when` and routes.

use crate::condition::Condition;
use crate::config::ConditionConfig;
use crate::path::{EventPath, FieldRef};
use meridian_event::Event;
use serde_json::Value;
use std::borrow::Cow;

/// A compiled condition on events.
#[derive(Debug)]
pub struct EventFilter(Condition);

impl EventFilter {
    /// Compiles a condition; the error says what to fix.
    pub fn compile(config: &ConditionConfig) -> Result<EventFilter, String> {
        Condition::compile(config).map(EventFilter)
    }

    /// Whether `event` matches (an expression that fails to evaluate does not match).
    pub fn matches(&self, event: &Event) -> bool {
        self.0.matches(event)
    }

    /// The actions an event must have to match, when the condition says so outright (a
    /// table entry `action = ...` or a conjunction with `action == "..."`): lets a caller
    /// with many filters look at only those of an event's action.
    pub fn required_actions(&self) -> Option<Vec<String>> {
        use crate::condition::{Condition, Literal};
        match &self.0 {
            Condition::StrEq(comparisons) => comparisons.iter().find(|(p, _)| matches!(p, EventPath::Action)).map(|(_, text)| vec![text.clone()]),
            Condition::Match(entries) => entries.iter().find(|(p, _)| matches!(p, EventPath::Action)).and_then(|(_, literals)| {
                literals.iter().map(|l| if let Literal::Str(s) = l { Some(s.clone()) } else { None }).collect()
            }),
            Condition::Expr(_) => None,
        }
    }
}

/// A readable event path (`target.id`, `context.city`, `props.amount`…).
#[derive(Debug, Clone)]
pub struct EventField(EventPath);

/// A field's value as read from an event.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A string (ids, actions, context text, JSON strings).
    Str(&'a str),
    /// An integer (times, city).
    Int(i64),
    /// Any other JSON value (numbers, booleans, arrays, objects).
    Json(&'a Value),
}

impl EventField {
    /// Parses a path; the error names the path and what is wrong.
    pub fn parse(path: &str) -> Result<EventField, String> {
        let path = EventPath::parse(path)?;
        path.check_readable()?;
        Ok(EventField(path))
    }

    /// The field of `event`, `None` when absent or null.
    pub fn read<'a>(&self, event: &'a Event) -> Option<FieldValue<'a>> {
        match self.0.read(event) {
            FieldRef::Absent | FieldRef::Json(Value::Null) => None,
            FieldRef::Str(s) => Some(FieldValue::Str(s)),
            FieldRef::Json(Value::String(s)) => Some(FieldValue::Str(s.as_str())),
            FieldRef::Int(i) => Some(FieldValue::Int(i)),
            FieldRef::Json(v) => Some(FieldValue::Json(v)),
        }
    }

    /// The field as text (`None` when absent or null; JSON text for arrays and objects).
    pub fn text<'a>(&self, event: &'a Event) -> Option<Cow<'a, str>> {
        self.0.read(event).as_text()
    }

    /// The field as a number: integers, JSON numbers and numeric strings; `None` otherwise.
    pub fn number(&self, event: &Event) -> Option<f64> {
        match self.0.read(event) {
            FieldRef::Int(i) => Some(i as f64),
            FieldRef::Json(Value::Number(n)) => n.as_f64(),
            FieldRef::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            FieldRef::Json(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// Whether the path is under `props` (its type is only known per event).
    pub fn is_prop(&self) -> bool {
        matches!(self.0, EventPath::PropsKey(_))
    }

    /// Whether the path can hold a number at all (props, `time`, `received`, `context.city`).
    pub fn can_be_numeric(&self) -> bool {
        matches!(self.0, EventPath::PropsKey(_) | EventPath::Time | EventPath::Received | EventPath::ContextField(0))
    }
}

impl std::fmt::Display for EventField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(props: Value) -> Event {
        let raw = json!({"id": "e1", "user": "u1", "time": 1_700_000_000_000i64, "action": "order", "target": {"type": "shop", "id": "s9"}, "context": {"city": 3}, "props": props});
        let policy = meridian_event::ValidationPolicy { max_past_ms: i64::MAX / 2, ..Default::default() };
        Event::from_json(raw, &meridian_event::AppId::new("shop").unwrap(), meridian_event::Timestamp(1_700_000_000_000), &policy, || meridian_event::EventId::new("x").unwrap()).unwrap()
    }

    #[test]
    fn filters_and_fields_read_events() {
        let e = event(json!({"amount": 12.5, "kind": "food", "qty": "3"}));
        let f = EventFilter::compile(&ConditionConfig::Expr("action == \"order\" && props.amount > 10".into())).unwrap();
        assert!(f.matches(&e));
        let f = EventFilter::compile(&ConditionConfig::Expr("props.kind == \"drink\"".into())).unwrap();
        assert!(!f.matches(&e));
        assert_eq!(EventField::parse("props.amount").unwrap().number(&e), Some(12.5));
        assert_eq!(EventField::parse("props.qty").unwrap().number(&e), Some(3.0));
        assert_eq!(EventField::parse("props.kind").unwrap().number(&e), None);
        assert_eq!(EventField::parse("target.id").unwrap().text(&e).as_deref(), Some("s9"));
        assert_eq!(EventField::parse("context.city").unwrap().read(&e), Some(FieldValue::Int(3)));
        assert_eq!(EventField::parse("props.missing").unwrap().read(&e), None);
        assert!(EventField::parse("nonsense.path").is_err());
        assert!(!EventField::parse("target.id").unwrap().can_be_numeric());
        let required = |c: ConditionConfig| EventFilter::compile(&c).unwrap().required_actions();
        assert_eq!(required(ConditionConfig::Expr("action == \"order\" && props.amount == \"1\"".into())), Some(vec!["order".to_owned()]));
        assert_eq!(required(ConditionConfig::Expr("props.amount > 1".into())), None);
        assert_eq!(required(ConditionConfig::Expr("target.type == \"shop\"".into())), None);
        let table: crate::OrderedMap<Value> = [("action".to_owned(), serde_json::json!(["view", "click"]))].into_iter().collect();
        assert_eq!(required(ConditionConfig::Match(table)), Some(vec!["view".to_owned(), "click".to_owned()]));
    }
}
