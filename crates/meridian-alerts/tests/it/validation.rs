//! Every refused rule names its field with a stable code; JSON round trips.

use crate::support::*;
use meridian_alerts::{AlertEngine, Output, Rule, RuleErrorCode};
use serde_json::{json, Value};
use std::collections::HashSet;

fn base() -> Value {
    json!({
        "id": "crash-rate", "app": "shop", "name": "crashes per launch", "severity": "critical",
        "metric": {"kind": "ratio", "numerator": {"action": "crash"}, "denominator": {"action": "launch"}},
        "filter": {"context.platform": ["ios", "android"]},
        "window": {"kind": "sliding", "size_secs": 600, "slide_secs": 60}, "allowed_lateness_secs": 30,
        "condition": {"kind": "threshold", "op": ">", "value": 0.02},
        "min_samples": 50, "cooldown_secs": 1800, "channels": ["ops-webhook", "chat"],
    })
}

/// `base()` with `pointer` (a JSON pointer) set to `value`, or removed when `value` is None.
fn with(pointer: &str, value: Option<Value>) -> Value {
    let mut json = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() { &mut json } else { json.pointer_mut(parent).unwrap() };
    let object = target.as_object_mut().unwrap();
    match value {
        Some(v) => object.insert(key.to_owned(), v),
        None => object.remove(key),
    };
    json
}

#[test]
fn every_validation_error_names_its_field_with_a_stable_code() {
    use RuleErrorCode as C;
    let cases: Vec<(Value, &str, RuleErrorCode)> = vec![
        (with("/name", Some(json!("  "))), "name", C::Empty),
        (with("/name", Some(json!("n".repeat(201)))), "name", C::TooLong),
        (with("/name", None), "name", C::Required),
        (with("/id", Some(json!("Crash Rate"))), "id", C::InvalidId),
        (with("/app", Some(json!("Shop!"))), "app", C::InvalidId),
        (with("/colour", Some(json!("red"))), "colour", C::UnknownField),
        (with("/severity", Some(json!("fatal"))), "severity", C::InvalidValue),
        (with("/paused", Some(json!("yes"))), "paused", C::InvalidType),
        (with("/metric/kind", Some(json!("median"))), "metric.kind", C::UnknownMetric),
        (with("/metric/denominator", None), "metric.denominator", C::Required),
        (with("/metric/numerator", Some(json!({"planet": "mars"}))), "metric.numerator", C::UnknownField),
        (with("/metric/numerator", Some(json!(12))), "metric.numerator", C::InvalidType),
        (with("/metric/extra", Some(json!(1))), "metric.extra", C::UnknownField),
        (with("/metric", Some(json!({"kind": "percentile", "p": 101, "field": "props.latency_ms"}))), "metric.p", C::OutOfRange),
        (with("/metric", Some(json!({"kind": "percentile", "p": -1, "field": "props.latency_ms"}))), "metric.p", C::OutOfRange),
        (with("/metric", Some(json!({"kind": "percentile", "p": 95, "field": "nonsense.path"}))), "metric.field", C::UnknownField),
        (with("/metric", Some(json!({"kind": "percentile", "p": 95, "field": "target.id"}))), "metric.field", C::NotNumeric),
        (with("/metric", Some(json!({"kind": "percentile", "p": "high", "field": "props.x"}))), "metric.p", C::InvalidType),
        (with("/filter", Some(json!({"context.planet": "mars"}))), "filter", C::UnknownField),
        (with("/filter", Some(json!("action == "))), "filter", C::InvalidFilter),
        (with("/window/kind", Some(json!("hopping"))), "window.kind", C::UnknownWindow),
        (with("/window", None), "window", C::Required),
        (with("/window", Some(json!({"kind": "tumbling", "size_secs": 0}))), "window.size_secs", C::Zero),
        (with("/window", Some(json!({"kind": "tumbling", "size_secs": 8 * 86_400}))), "window.size_secs", C::TooLarge),
        (with("/window", Some(json!({"kind": "tumbling", "size_secs": 60, "slide_secs": 30}))), "window.slide_secs", C::UnknownField),
        (with("/window/slide_secs", Some(json!(0))), "window.slide_secs", C::Zero),
        (with("/window/slide_secs", Some(json!(1200))), "window.slide_secs", C::SlideLargerThanSize),
        (with("/window/slide_secs", Some(json!(70))), "window.size_secs", C::NotAMultiple),
        (with("/window", Some(json!({"kind": "sliding", "size_secs": 86_400, "slide_secs": 1}))), "window.slide_secs", C::TooManyPanes),
        (with("/window/size_secs", Some(json!(-60))), "window.size_secs", C::InvalidType),
        (with("/allowed_lateness_secs", Some(json!(100_000))), "allowed_lateness_secs", C::TooLarge),
        (with("/allowed_lateness_secs", Some(json!(-5))), "allowed_lateness_secs", C::InvalidType),
        (with("/condition/kind", Some(json!("magic"))), "condition.kind", C::UnknownCondition),
        (with("/condition/op", Some(json!("=="))), "condition.op", C::InvalidValue),
        (with("/condition/value", Some(json!("high"))), "condition.value", C::InvalidType),
        (with("/condition/value", None), "condition.value", C::Required),
        (with("/condition", Some(json!({"kind": "change", "op": ">", "percent": 50, "against": "month"}))), "condition.against", C::InvalidValue),
        (with("/window", Some(json!({"kind": "tumbling", "size_secs": 7}))).pipe(change_vs_day), "window.slide_secs", C::NotAligned),
        (with("/window", Some(json!({"kind": "tumbling", "size_secs": 2 * 86_400}))).pipe(change_vs_day), "window.size_secs", C::TooLarge),
        (with("/window", Some(json!({"kind": "sliding", "size_secs": 600, "slide_secs": 30}))).pipe(change_vs_week), "window.slide_secs", C::TooManyPanes),
        (with("/condition", Some(json!({"kind": "forecast", "k": 0, "min_history": 3}))), "condition.k", C::OutOfRange),
        (with("/condition", Some(json!({"kind": "forecast", "k": 3, "min_history": 9}))), "condition.min_history", C::OutOfRange),
        (with("/condition", Some(json!({"kind": "forecast", "k": 3, "min_history": 3, "direction": "sideways"}))), "condition.direction", C::InvalidValue),
        (with("/min_samples", Some(json!(1.5))), "min_samples", C::InvalidType),
        (with("/cooldown_secs", Some(json!(31 * 86_400))), "cooldown_secs", C::TooLarge),
        (with("/channels", Some(json!((0..17).map(|i| format!("c{i}")).collect::<Vec<_>>()))), "channels", C::TooLarge),
        (with("/channels", Some(json!([""]))), "channels[0]", C::Empty),
        (with("/channels", Some(json!(["a", "b\u{7}"]))), "channels[1]", C::InvalidValue),
        (with("/channels", Some(json!(["a", "a"]))), "channels[1]", C::Duplicate),
        (with("/channels", Some(json!([5]))), "channels[0]", C::InvalidType),
        (with("/channels", Some(json!("ops"))), "channels", C::InvalidType),
        (with("/channels", Some(json!(["ops", {"endpoint": "chat", "format": "fax"}]))), "channels[1].format", C::InvalidValue),
        (with("/channels", Some(json!([{"endpoint": "chat", "colour": "red"}]))), "channels[0].colour", C::UnknownField),
        (with("/channels", Some(json!([{"format": "chat"}]))), "channels[0].endpoint", C::Required),
        (with("/channels", Some(json!(["chat", {"endpoint": "chat", "format": "chat"}]))), "channels[1]", C::Duplicate),
        (json!([1, 2]), "rule", C::InvalidType),
    ];
    let mut codes = HashSet::new();
    for (json, field, code) in &cases {
        let err = Rule::from_json(json).expect_err(&format!("{field} should be refused"));
        assert_eq!((err.field.as_str(), err.code), (*field, *code), "{err}");
        assert!(err.to_string().starts_with(&format!("{field}: ")) && err.message.len() > 10, "{err}");
        codes.insert(err.code);
    }
    // Every code a rule alone can produce is shown above (`immutable` needs a rule set).
    let all = [
        C::Required, C::InvalidType, C::InvalidValue, C::UnknownField, C::UnknownMetric, C::UnknownWindow, C::UnknownCondition, C::InvalidId, C::Empty,
        C::TooLong, C::InvalidFilter, C::NotNumeric, C::OutOfRange, C::Zero, C::TooLarge, C::SlideLargerThanSize, C::NotAMultiple, C::TooManyPanes,
        C::NotAligned, C::Duplicate,
    ];
    for code in all {
        assert!(codes.contains(&code), "no case for {code}");
    }
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Value {}

fn change_vs_day(mut json: Value) -> Value {
    json["condition"] = json!({"kind": "change", "op": ">", "percent": 50, "against": "day"});
    json
}

fn change_vs_week(mut json: Value) -> Value {
    json["condition"] = json!({"kind": "change", "op": ">", "percent": 50, "against": "week"});
    json
}

#[test]
fn a_channel_is_an_endpoint_id_or_an_endpoint_with_its_body_format_and_round_trips() {
    let json = with("/channels", Some(json!(["ops", {"endpoint": "team-chat", "format": "chat"}, {"endpoint": "pager", "format": "alertmanager"}])));
    let parsed = Rule::from_json(&json).unwrap();
    assert_eq!(
        parsed.channels,
        vec![
            meridian_alerts::Channel::alertmanager("ops"),
            meridian_alerts::Channel { endpoint: "team-chat".into(), format: meridian_alerts::BodyFormat::Chat },
            meridian_alerts::Channel::alertmanager("pager"),
        ]
    );
    // Stored form: the Alertmanager default stays a bare string (rules stored before
    // formats existed read the same), the chat channel an object.
    let stored = serde_json::to_value(&parsed).unwrap();
    assert_eq!(stored["channels"], json!(["ops", {"endpoint": "team-chat", "format": "chat"}, "pager"]));
    let back: Rule = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(back, parsed);
    assert_eq!(Rule::from_json(&stored).unwrap(), parsed);
}

#[test]
fn non_finite_numbers_are_refused_where_json_cannot_carry_them() {
    let mut r = rule(base());
    r.condition = meridian_alerts::Condition::Threshold { op: meridian_alerts::CompareOp::Gt, value: f64::NAN };
    let err = r.validate().unwrap_err();
    assert_eq!((err.field.as_str(), err.code.as_str()), ("condition.value", "not_finite"));
    r.condition = meridian_alerts::Condition::Change { op: meridian_alerts::CompareOp::Gt, percent: f64::INFINITY, against: meridian_alerts::Period::Day };
    assert_eq!(r.validate().unwrap_err().field, "condition.percent");
    // The engine refuses what validation refuses, with the same error.
    let mut engine = AlertEngine::default();
    assert_eq!(engine.upsert(r.clone(), &mut Output::default()).unwrap_err(), r.validate().unwrap_err());
    assert!(engine.is_empty());
}

#[test]
fn rules_round_trip_through_json_and_defaults_apply() {
    let full = rule(base());
    let json = serde_json::to_value(&full).unwrap();
    assert_eq!(Rule::from_json(&json).unwrap(), full);
    assert_eq!(serde_json::from_value::<Rule>(json).unwrap(), full);
    let minimal = rule(json!({
        "id": "m", "app": "shop", "name": "m", "metric": {"kind": "percentile", "p": 99.9, "field": "props.latency_ms"},
        "window": {"kind": "tumbling", "size_secs": 60}, "condition": {"kind": "forecast", "k": 4, "min_history": 2},
    }));
    assert_eq!((minimal.version, minimal.paused, minimal.severity, minimal.min_samples), (0, false, meridian_alerts::Severity::Warning, 0));
    assert_eq!(minimal.condition, meridian_alerts::Condition::Forecast { k: 4.0, min_history: 2, direction: meridian_alerts::Direction::Both });
    let again = serde_json::to_value(&minimal).unwrap();
    assert_eq!(Rule::from_json(&again).unwrap(), minimal);
    assert_eq!(meridian_alerts::Metric::Percentile { p: 99.9, field: "props.latency_ms".into() }.describe(), "p99.9 of props.latency_ms");
}

#[test]
fn the_crate_docs_example_rule_is_valid() {
    let docs = include_str!("../../src/lib.rs");
    let start = docs.find("//! ```json\n").unwrap() + "//! ```json\n".len();
    let end = start + docs[start..].find("//! ```").unwrap();
    let json: String = docs[start..end].lines().map(|l| l.trim_start_matches("//!")).collect::<Vec<_>>().join("\n");
    let parsed = Rule::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(parsed.min_samples, 200);
    assert_eq!(parsed.window, meridian_alerts::WindowSpec::Sliding { size_secs: 600, slide_secs: 60 });
}
