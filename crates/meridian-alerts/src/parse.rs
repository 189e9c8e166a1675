//! Reading a rule from JSON with errors that name the field (serde's own errors name no
//! path): unknown keys, missing fields, wrong types and unknown kinds each get their code.

use crate::rule::{BodyFormat, Channel, CompareOp, Condition, Direction, Metric, Period, Rule, RuleError, RuleErrorCode as C, RuleId, Severity, WindowSpec};
use meridian_event::AppId;
use meridian_pipeline::ConditionConfig;
use serde_json::{Map, Value};

impl Rule {
    /// Reads a rule from its JSON form (as sent to the API) and validates it. Every error
    /// names its field: `metric.kind` for an unknown metric, `window.slide_secs` for a
    /// slide longer than the window, `colour` for an unknown key…
    pub fn from_json(value: &Value) -> Result<Rule, RuleError> {
        let rule = parse_rule(value)?;
        rule.validate()?;
        Ok(rule)
    }
}

const RULE_KEYS: [&str; 14] = [
    "id",
    "app",
    "name",
    "version",
    "paused",
    "severity",
    "metric",
    "filter",
    "window",
    "allowed_lateness_secs",
    "condition",
    "min_samples",
    "cooldown_secs",
    "channels",
];

fn parse_rule(value: &Value) -> Result<Rule, RuleError> {
    let object = Obj::new(value, "", &RULE_KEYS)?;
    let id = RuleId::new(object.required_str("id")?)?;
    let app_text = object.required_str("app")?;
    let app = AppId::new(app_text).map_err(|e| RuleError::new("app", C::InvalidId, e.to_string()))?;
    let severity = match object.optional_str("severity")? {
        None => Severity::default(),
        Some("info") => Severity::Info,
        Some("warning") => Severity::Warning,
        Some("critical") => Severity::Critical,
        Some(other) => return Err(RuleError::new("severity", C::InvalidValue, format!("unknown severity {other:?}; use info, warning or critical"))),
    };
    let channels = match object.get("channels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().enumerate().map(|(i, item)| parse_channel(i, item)).collect::<Result<_, _>>()?,
        Some(other) => return Err(type_error("channels", "an array of channel ids", other)),
    };
    Ok(Rule {
        id,
        app,
        name: object.required_str("name")?.to_owned(),
        version: object.optional_u64("version")?.unwrap_or(0),
        paused: object.optional_bool("paused")?.unwrap_or(false),
        severity,
        metric: parse_metric(object.required("metric")?)?,
        filter: object.optional_filter("filter")?,
        window: parse_window(object.required("window")?)?,
        allowed_lateness_secs: object.optional_u64("allowed_lateness_secs")?.unwrap_or(0),
        condition: parse_condition(object.required("condition")?)?,
        min_samples: object.optional_u64("min_samples")?.unwrap_or(0),
        cooldown_secs: object.optional_u64("cooldown_secs")?.unwrap_or(0),
        channels,
    })
}

/// `"endpoint"` or `{"endpoint": "…", "format": "alertmanager" | "chat"}`.
fn parse_channel(i: usize, item: &Value) -> Result<Channel, RuleError> {
    let field = format!("channels[{i}]");
    match item {
        Value::String(endpoint) => Ok(Channel::alertmanager(endpoint.clone())),
        Value::Object(_) => {
            let object = Obj::new(item, &field, &["endpoint", "format"])?;
            let endpoint = object.required_str("endpoint")?.to_owned();
            let format = match object.optional_str("format")? {
                None | Some("alertmanager") => BodyFormat::Alertmanager,
                Some("chat") => BodyFormat::Chat,
                Some(other) => return Err(RuleError::new(format!("{field}.format"), C::InvalidValue, format!("unknown body format {other:?}; use alertmanager or chat"))),
            };
            Ok(Channel { endpoint, format })
        }
        other => Err(type_error(&field, "an endpoint id or {\"endpoint\", \"format\"}", other)),
    }
}

fn parse_metric(value: &Value) -> Result<Metric, RuleError> {
    let kind = Obj::new(value, "metric", &["kind", "numerator", "denominator", "p", "field"])?.required_str("kind")?;
    Ok(match kind {
        "count" => {
            Obj::new(value, "metric", &["kind"])?;
            Metric::Count
        }
        "distinct_users" => {
            Obj::new(value, "metric", &["kind"])?;
            Metric::DistinctUsers
        }
        "ratio" => {
            let object = Obj::new(value, "metric", &["kind", "numerator", "denominator"])?;
            let numerator = object.optional_filter("numerator")?.ok_or_else(|| object.missing("numerator"))?;
            let denominator = object.optional_filter("denominator")?.ok_or_else(|| object.missing("denominator"))?;
            Metric::Ratio { numerator, denominator }
        }
        "percentile" => {
            let object = Obj::new(value, "metric", &["kind", "p", "field"])?;
            Metric::Percentile { p: object.required_f64("p")?, field: object.required_str("field")?.to_owned() }
        }
        other => {
            return Err(RuleError::new(
                "metric.kind",
                C::UnknownMetric,
                format!("unknown metric {other:?}; use count, distinct_users, ratio or percentile"),
            ))
        }
    })
}

fn parse_window(value: &Value) -> Result<WindowSpec, RuleError> {
    let kind = Obj::new(value, "window", &["kind", "size_secs", "slide_secs"])?.required_str("kind")?;
    Ok(match kind {
        "tumbling" => WindowSpec::Tumbling { size_secs: Obj::new(value, "window", &["kind", "size_secs"])?.required_u64("size_secs")? },
        "sliding" => {
            let object = Obj::new(value, "window", &["kind", "size_secs", "slide_secs"])?;
            WindowSpec::Sliding { size_secs: object.required_u64("size_secs")?, slide_secs: object.required_u64("slide_secs")? }
        }
        other => return Err(RuleError::new("window.kind", C::UnknownWindow, format!("unknown window {other:?}; use tumbling or sliding"))),
    })
}

fn parse_condition(value: &Value) -> Result<Condition, RuleError> {
    let kind = Obj::new(value, "condition", &["kind", "op", "value", "percent", "against", "k", "min_history", "direction"])?.required_str("kind")?;
    Ok(match kind {
        "threshold" => {
            let object = Obj::new(value, "condition", &["kind", "op", "value"])?;
            Condition::Threshold { op: object.op("op")?, value: object.required_f64("value")? }
        }
        "change" => {
            let object = Obj::new(value, "condition", &["kind", "op", "percent", "against"])?;
            let against = match object.required_str("against")? {
                "day" => Period::Day,
                "week" => Period::Week,
                other => return Err(RuleError::new("condition.against", C::InvalidValue, format!("unknown period {other:?}; use day or week"))),
            };
            Condition::Change { op: object.op("op")?, percent: object.required_f64("percent")?, against }
        }
        "forecast" => {
            let object = Obj::new(value, "condition", &["kind", "k", "min_history", "direction"])?;
            let direction = match object.optional_str("direction")? {
                None => Direction::default(),
                Some("above") => Direction::Above,
                Some("below") => Direction::Below,
                Some("both") => Direction::Both,
                Some(other) => return Err(RuleError::new("condition.direction", C::InvalidValue, format!("unknown direction {other:?}; use above, below or both"))),
            };
            let min_history = object.required_u64("min_history")?;
            let min_history = u32::try_from(min_history).map_err(|_| RuleError::new("condition.min_history", C::OutOfRange, "min_history is 1 to 8 past weeks"))?;
            Condition::Forecast { k: object.required_f64("k")?, min_history, direction }
        }
        other => {
            return Err(RuleError::new(
                "condition.kind",
                C::UnknownCondition,
                format!("unknown condition {other:?}; use threshold, change or forecast"),
            ))
        }
    })
}

/// A JSON object being read, with its path for messages.
struct Obj<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// `value` as an object whose keys are all in `known`.
    fn new(value: &'a Value, path: &'a str, known: &[&str]) -> Result<Obj<'a>, RuleError> {
        let Value::Object(map) = value else {
            let field = if path.is_empty() { "rule" } else { path };
            return Err(type_error(field, "an object", value));
        };
        let object = Obj { path, map };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(RuleError::new(object.field(unknown), C::UnknownField, format!("unknown field {unknown:?}; expected one of {}", known.join(", "))));
        }
        Ok(object)
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn missing(&self, key: &str) -> RuleError {
        RuleError::new(self.field(key), C::Required, format!("\"{}\" is required", self.field(key)))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Err(self.missing(key)),
            Some(value) => Ok(value),
        }
    }

    fn required_str(&self, key: &str) -> Result<&'a str, RuleError> {
        let value = self.required(key)?;
        value.as_str().ok_or_else(|| type_error(&self.field(key), "a string", value))
    }

    fn optional_str(&self, key: &str) -> Result<Option<&'a str>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_str().map(Some).ok_or_else(|| type_error(&self.field(key), "a string", value)),
        }
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_bool().map(Some).ok_or_else(|| type_error(&self.field(key), "true or false", value)),
        }
    }

    fn optional_u64(&self, key: &str) -> Result<Option<u64>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| type_error(&self.field(key), "a non-negative integer", value)),
        }
    }

    fn required_u64(&self, key: &str) -> Result<u64, RuleError> {
        self.optional_u64(key)?.ok_or_else(|| self.missing(key))
    }

    fn required_f64(&self, key: &str) -> Result<f64, RuleError> {
        let value = self.required(key)?;
        value.as_f64().ok_or_else(|| type_error(&self.field(key), "a number", value))
    }

    fn op(&self, key: &str) -> Result<CompareOp, RuleError> {
        let text = self.required_str(key)?;
        CompareOp::parse(text).ok_or_else(|| RuleError::new(self.field(key), C::InvalidValue, format!("unknown comparison {text:?}; use >, >=, < or <=")))
    }

    fn optional_filter(&self, key: &str) -> Result<Option<ConditionConfig>, RuleError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value @ (Value::String(_) | Value::Object(_))) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| RuleError::new(self.field(key), C::InvalidFilter, e.to_string())),
            Some(value) => Err(type_error(&self.field(key), "an expression string or a table of field = value(s)", value)),
        }
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> RuleError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    RuleError::new(field, C::InvalidType, format!("\"{field}\" must be {expected}, got {kind}"))
}
