//! Conditions for transformer `when`, `filter` and routes, compiled once at load.
//!
//! Two forms: a declarative table (`{ action = ["view", "click"], "context.city" = 1 }`,
//! every entry must match, a list means any of its values) evaluated by direct field
//! comparison, and an evalexpr expression (`action == "view" && props.price > 100`)
//! whose variables are event paths, checked at load.

use crate::config::ConditionConfig;
use crate::path::{EventPath, FieldRef};
use evalexpr::{Context as ExprContext, EvalexprError, EvalexprResult, Node, Operator, Value as ExprValue};
use meridian_event::Event;
use serde_json::Value;

/// A compiled condition.
#[derive(Debug)]
pub(crate) enum Condition {
    /// Every (path, accepted values) pair must match.
    Match(Vec<(EventPath, Vec<Literal>)>),
    /// An expression.
    Expr(Expr),
    /// An expression that is a conjunction of `path == "text"` comparisons, evaluated
    /// without evalexpr (no context, no copies): true when every path holds a string
    /// equal to its text — exactly what evalexpr answers for such an expression.
    StrEq(Vec<(EventPath, String)>),
}

/// A compiled expression and the event paths its variables name.
#[derive(Debug)]
pub(crate) struct Expr {
    node: Node,
    vars: Vec<(String, EventPath)>,
}

/// A constant of a declarative condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// Matches an absent or null field.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Condition {
    /// Compiles a condition; the error says what to fix.
    pub(crate) fn compile(config: &ConditionConfig) -> Result<Condition, String> {
        match config {
            ConditionConfig::Match(entries) => {
                if entries.is_empty() {
                    return Err("an empty condition table matches everything; remove it or add field = value entries".into());
                }
                let mut compiled = Vec::with_capacity(entries.0.len());
                for (path, expected) in entries.iter() {
                    let event_path = EventPath::parse(path)?;
                    event_path.check_readable()?;
                    let literals = match expected {
                        Value::Array(items) => {
                            if items.is_empty() {
                                return Err(format!("\"{path}\" has an empty list, which matches nothing; list the accepted values"));
                            }
                            items.iter().map(|v| Literal::from_json(path, v)).collect::<Result<Vec<_>, _>>()?
                        }
                        other => vec![Literal::from_json(path, other)?],
                    };
                    compiled.push((event_path, literals));
                }
                Ok(Condition::Match(compiled))
            }
            ConditionConfig::Expr(text) => {
                let expr = Expr::compile(text)?;
                let mut comparisons = Vec::new();
                if string_equalities(&expr.node, &mut comparisons) && !comparisons.is_empty() {
                    let compiled = comparisons.into_iter().map(|(path, text)| EventPath::parse(&path).map(|p| (p, text))).collect::<Result<Vec<_>, _>>()?;
                    return Ok(Condition::StrEq(compiled));
                }
                Ok(Condition::Expr(expr))
            }
        }
    }

    /// Whether `event` matches. An expression that fails to evaluate (e.g. compares a
    /// missing field with `>`) or yields a non-boolean does not match.
    pub(crate) fn matches(&self, event: &Event) -> bool {
        match self {
            Condition::Match(entries) => entries.iter().all(|(path, literals)| {
                let value = path.read(event);
                literals.iter().any(|lit| lit.matches(value))
            }),
            Condition::Expr(expr) => expr.eval(event),
            Condition::StrEq(comparisons) => comparisons.iter().all(|(path, text)| match path.read(event) {
                FieldRef::Str(s) => s == text,
                FieldRef::Json(Value::String(s)) => s == text,
                _ => false,
            }),
        }
    }
}

impl Literal {
    fn from_json(path: &str, value: &Value) -> Result<Literal, String> {
        Ok(match value {
            Value::Null => Literal::Null,
            Value::Bool(b) => Literal::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Literal::Int(i),
                None => Literal::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Literal::Str(s.clone()),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!("\"{path}\" must be compared with a string, number or boolean, or a list of them; use an expression string for anything else"))
            }
        })
    }

    fn matches(&self, value: FieldRef<'_>) -> bool {
        match value {
            FieldRef::Absent | FieldRef::Json(Value::Null) => *self == Literal::Null,
            FieldRef::Str(s) => self.matches_str(s),
            FieldRef::Json(Value::String(s)) => self.matches_str(s),
            FieldRef::Int(i) => self.matches_int(i),
            FieldRef::Json(Value::Number(n)) => match n.as_i64() {
                Some(i) => self.matches_int(i),
                None => match (self, n.as_f64()) {
                    (Literal::Float(f), Some(v)) => *f == v,
                    _ => false,
                },
            },
            FieldRef::Json(Value::Bool(b)) => *self == Literal::Bool(*b),
            FieldRef::Json(_) => false,
        }
    }

    fn matches_str(&self, s: &str) -> bool {
        match self {
            Literal::Str(expected) => expected == s,
            // Ids that arrive as strings compare with numbers: "target.id" = 1001.
            Literal::Int(i) => s.parse::<i64>().is_ok_and(|v| v == *i),
            _ => false,
        }
    }

    fn matches_int(&self, i: i64) -> bool {
        match self {
            Literal::Int(expected) => *expected == i,
            Literal::Float(f) => *f == i as f64,
            Literal::Str(s) => s.parse::<i64>().is_ok_and(|v| v == i),
            _ => false,
        }
    }
}

impl Expr {
    fn compile(text: &str) -> Result<Expr, String> {
        let node = evalexpr::build_operator_tree(text).map_err(|e| format!("invalid expression {text:?}: {e}"))?;
        check_shape(&node).map_err(|m| format!("invalid expression {text:?}: {m}"))?;
        let mut vars: Vec<(String, EventPath)> = Vec::new();
        for op in node.iter().map(Node::operator) {
            match op {
                Operator::FunctionIdentifier { identifier } => {
                    let probe = EventContext { vars: &[], values: Vec::new() };
                    if let Err(EvalexprError::FunctionIdentifierNotFound(_)) = evalexpr::eval_with_context(&format!("{identifier}(())"), &probe) {
                        return Err(format!("invalid expression {text:?}: unknown function {identifier:?}"));
                    }
                }
                Operator::VariableIdentifierWrite { identifier } => {
                    return Err(format!("invalid expression {text:?}: it assigns to {identifier:?}; conditions may only compare (use == for equality)"));
                }
                Operator::Assign
                | Operator::AddAssign
                | Operator::SubAssign
                | Operator::MulAssign
                | Operator::DivAssign
                | Operator::ModAssign
                | Operator::ExpAssign
                | Operator::AndAssign
                | Operator::OrAssign => {
                    return Err(format!("invalid expression {text:?}: conditions may not assign (use == for equality)"));
                }
                Operator::VariableIdentifierRead { identifier } => {
                    if vars.iter().any(|(name, _)| name == identifier) {
                        continue;
                    }
                    let path = EventPath::parse(identifier).map_err(|e| format!("invalid expression {text:?}: {e}"))?;
                    path.check_readable().map_err(|e| format!("invalid expression {text:?}: {e}"))?;
                    vars.push((identifier.clone(), path));
                }
                _ => {}
            }
        }
        Ok(Expr { node, vars })
    }

    fn eval(&self, event: &Event) -> bool {
        let values = self.vars.iter().map(|(_, path)| to_expr_value(path.read(event))).collect();
        let context = EventContext { vars: &self.vars, values };
        matches!(self.node.eval_with_context(&context), Ok(ExprValue::Boolean(true)))
    }
}

/// Collects the comparisons of an expression that is only `&&`s of `identifier == "text"`
/// (either side); false for any other shape.
fn string_equalities(node: &Node, out: &mut Vec<(String, String)>) -> bool {
    let children = node.children();
    match node.operator() {
        Operator::RootNode if children.len() == 1 => string_equalities(&children[0], out),
        Operator::And if children.len() == 2 => string_equalities(&children[0], out) && string_equalities(&children[1], out),
        Operator::Eq if children.len() == 2 => {
            let (a, b) = (children[0].operator(), children[1].operator());
            let pair = match (a, b) {
                (Operator::VariableIdentifierRead { identifier }, Operator::Const { value: ExprValue::String(text) })
                | (Operator::Const { value: ExprValue::String(text) }, Operator::VariableIdentifierRead { identifier }) => (identifier.clone(), text.clone()),
                _ => return false,
            };
            if children.iter().any(|c| !c.children().is_empty()) {
                return false;
            }
            out.push(pair);
            true
        }
        _ => false,
    }
}

/// Checks every operator has its operands: evalexpr builds `action ==` into a tree and
/// only fails when evaluating it.
fn check_shape(node: &Node) -> Result<(), String> {
    let children = node.children().len();
    let expected = match node.operator() {
        Operator::RootNode => {
            if children == 0 {
                return Err("the expression is empty".into());
            }
            Some(1)
        }
        Operator::Not | Operator::Neg => Some(1),
        Operator::Tuple | Operator::Chain => None,
        Operator::Const { .. } | Operator::VariableIdentifierRead { .. } | Operator::VariableIdentifierWrite { .. } => Some(0),
        Operator::FunctionIdentifier { .. } => (children > 1).then_some(1),
        _ => Some(2),
    };
    if let Some(expected) = expected {
        if children != expected {
            return Err(format!("operator {} needs {expected} operand(s), found {children}", node.operator()));
        }
    }
    node.children().iter().try_for_each(check_shape)
}

fn to_expr_value(value: FieldRef<'_>) -> ExprValue {
    match value {
        FieldRef::Absent => ExprValue::Empty,
        FieldRef::Str(s) => ExprValue::String(s.to_owned()),
        FieldRef::Int(i) => ExprValue::Int(i),
        FieldRef::Json(v) => json_to_expr(v),
    }
}

fn json_to_expr(value: &Value) -> ExprValue {
    match value {
        Value::Null => ExprValue::Empty,
        Value::Bool(b) => ExprValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ExprValue::Int(i),
            None => ExprValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => ExprValue::String(s.clone()),
        Value::Array(items) => ExprValue::Tuple(items.iter().map(json_to_expr).collect()),
        Value::Object(_) => ExprValue::String(value.to_string()),
    }
}

/// The variables of one evaluation: only the paths the expression names.
struct EventContext<'a> {
    vars: &'a [(String, EventPath)],
    values: Vec<ExprValue>,
}

impl ExprContext for EventContext<'_> {
    fn get_value(&self, identifier: &str) -> Option<&ExprValue> {
        let i = self.vars.iter().position(|(name, _)| name == identifier)?;
        self.values.get(i)
    }

    fn call_function(&self, identifier: &str, _argument: &ExprValue) -> EvalexprResult<ExprValue> {
        Err(EvalexprError::FunctionIdentifierNotFound(identifier.to_owned()))
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(&mut self, _disabled: bool) -> EvalexprResult<()> {
        Err(EvalexprError::ContextNotMutable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrderedMap;
    use meridian_event::{AppId, EventId, Timestamp, ValidationPolicy};
    use serde_json::json;

    fn event(value: Value) -> Event {
        Event::from_json(value, &AppId::new("shop").unwrap(), Timestamp(1_763_700_000_000), &ValidationPolicy::default(), || EventId::new("e").unwrap()).unwrap()
    }

    fn table(value: Value) -> Condition {
        let map: OrderedMap<Value> = value.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Condition::compile(&ConditionConfig::Match(map)).unwrap()
    }

    fn expr(text: &str) -> Result<Condition, String> {
        Condition::compile(&ConditionConfig::Expr(text.into()))
    }

    #[test]
    fn declarative_tables() {
        let e = event(json!({"user": "u", "action": "click", "target": {"type": "sku", "id": "1001"}, "context": {"city": 2}, "props": {"vip": true}}));
        assert!(table(json!({"action": ["view", "click"], "target.type": "sku", "context.city": [1, 2]})).matches(&e));
        assert!(table(json!({"target.id": 1001, "props.vip": true})).matches(&e));
        assert!(!table(json!({"action": "view"})).matches(&e));
        assert!(table(json!({"device": null})).matches(&e));
        assert!(!table(json!({"context.city": [3, 4]})).matches(&e));
    }

    #[test]
    fn expressions_with_dotted_paths() {
        let e = event(json!({"user": "u", "action": "view", "context": {"city": 1, "platform": "ios"}, "props": {"price": 150.5}}));
        assert!(expr(r#"action == "view" && context.city == 1"#).unwrap().matches(&e));
        assert!(expr("props.price > 100").unwrap().matches(&e));
        assert!(expr(r#"str::to_uppercase(context.platform) == "IOS""#).unwrap().matches(&e));
        assert!(!expr("props.missing > 1").unwrap().matches(&e), "a type error does not match");
        assert!(!expr("context.city").unwrap().matches(&e), "a non-boolean does not match");
    }

    #[test]
    fn string_equality_conjunctions_take_the_fast_path_and_answer_like_evalexpr() {
        let events = [
            event(json!({"user": "u", "action": "view", "target": {"type": "shop", "id": "7"}, "context": {"city": 3}, "props": {"category": "food", "n": 1}})),
            event(json!({"user": "u", "action": "view", "target": {"type": "sku", "id": "7"}, "props": {"category": 5}})),
            event(json!({"user": "u", "action": "order", "props": {"category": "food"}})),
            event(json!({"user": "u", "action": "view", "context": {"city": 3}, "props": {"category": ["food"]}})),
        ];
        for text in [
            r#"action == "view""#,
            r#""view" == action"#,
            r#"action == "view" && target.type == "shop" && props.category == "food""#,
            r#"props.category == "food""#,
            r#"target.id == "7" && (action == "view")"#,
            r#"context.city == "3""#,
        ] {
            let fast = expr(text).unwrap();
            assert!(matches!(fast, Condition::StrEq(_)), "{text} takes the fast path");
            let slow = Condition::Expr(Expr::compile(text).unwrap());
            for (i, e) in events.iter().enumerate() {
                assert_eq!(fast.matches(e), slow.matches(e), "{text} on event {i}");
            }
        }
        for text in [r#"action == "view" || action == "click""#, "props.n == 1", r#"action != "view""#, r#"str::to_lowercase(action) == "view""#] {
            assert!(matches!(expr(text).unwrap(), Condition::Expr(_)), "{text} stays an expression");
        }
    }

    #[test]
    fn bad_expressions_are_refused_at_load() {
        let err = expr("action == ").unwrap_err();
        assert!(err.contains("invalid expression \"action == \"") && err.contains("needs 2 operand(s), found 1"), "{err}");
        assert!(expr("(").unwrap_err().contains("invalid expression"));
        assert!(expr("").unwrap_err().contains("empty"));
        assert!(expr("nope(action)").unwrap_err().contains("unknown function \"nope\""));
        assert!(expr("str::to_lowercase(action) == \"view\"").is_ok());
        assert!(expr("contains((1, 2), context.city)").is_ok());
        assert!(expr("cty == 1").unwrap_err().contains("unknown event path \"cty\""));
        assert!(expr("action = 1").unwrap_err().contains("may not assign"));
        assert!(expr("props == 1").unwrap_err().contains("whole section"));
    }
}
