//! Transformers: enrich (lookup), rename, merge, split, set, drop and filter validated
//! events. Paths, tables and conditions are resolved at load.

use crate::condition::Condition;
use crate::config::{OnMissing, TransformerConfig};
use crate::parser::compile_apps;
use crate::path::{EventPath, FieldRef};
use crate::table::Table;
use meridian_event::{AppId, ErrorCode, Event, EventError, ZoneOffset};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// A compiled transformer.
#[derive(Debug)]
pub(crate) struct Transformer {
    /// `transformers[2]` or the configured name, for messages.
    label: String,
    apps: Option<Box<[AppId]>>,
    when: Option<Condition>,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Lookup { table: Arc<Table>, key: EventPath, fields: Vec<(usize, EventPath)>, reject_missing: bool },
    Rename { from: EventPath, to: EventPath },
    Merge { from: Vec<EventPath>, to: EventPath, separator: String, remove_from: bool },
    Split { from: EventPath, to: Vec<EventPath>, separator: String, remove_from: bool },
    Set { values: Vec<(EventPath, Value)> },
    Drop { paths: Vec<EventPath> },
    Filter { condition: Condition },
}

/// A problem in one transformer entry: the field (relative to the entry) and the message.
pub(crate) type CompileError = (String, String);

fn field_err(field: &str) -> impl Fn(String) -> CompileError + '_ {
    move |m| (field.to_owned(), m)
}

fn readable(field: &str, text: &str) -> Result<EventPath, CompileError> {
    let path = EventPath::parse(text).map_err(field_err(field))?;
    path.check_readable().map_err(field_err(field))?;
    Ok(path)
}

fn writable(field: &str, text: &str) -> Result<EventPath, CompileError> {
    let path = EventPath::parse(text).map_err(field_err(field))?;
    path.check_writable().map_err(field_err(field))?;
    Ok(path)
}

fn removable(field: &str, text: &str) -> Result<EventPath, CompileError> {
    let path = EventPath::parse(text).map_err(field_err(field))?;
    path.check_removable().map_err(field_err(field))?;
    Ok(path)
}

impl Transformer {
    /// Compiles one `[[transformers]]` entry (the `index`-th) against the loaded tables.
    pub(crate) fn compile(index: usize, config: &TransformerConfig, tables: &HashMap<String, Arc<Table>>) -> Result<Transformer, CompileError> {
        let (name, apps, when) = match config {
            TransformerConfig::Lookup(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Rename(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Merge(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Split(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Set(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Drop(c) => (&c.name, &c.apps, c.when.as_ref()),
            TransformerConfig::Filter(c) => (&c.name, &c.apps, None),
        };
        let label = match name {
            Some(n) => format!("transformer {n:?}"),
            None => format!("transformers[{index}]"),
        };
        let apps = compile_apps(apps.as_deref()).map_err(field_err("apps"))?;
        let when = when.map(Condition::compile).transpose().map_err(field_err("when"))?;
        let op = match config {
            TransformerConfig::Lookup(c) => {
                let table = tables.get(&c.table).cloned().ok_or_else(|| {
                    let mut known: Vec<&str> = tables.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let known = if known.is_empty() { "none are declared; add a [[tables]] entry".to_owned() } else { format!("declared tables are {}", known.join(", ")) };
                    ("table".to_owned(), format!("unknown table {:?}; {known}", c.table))
                })?;
                let key = readable("key", &c.key)?;
                if c.fields.is_empty() {
                    return Err(("fields".into(), "a lookup needs fields = { column = \"event.path\", … }".into()));
                }
                let mut fields = Vec::with_capacity(c.fields.0.len());
                for (column, target) in c.fields.iter() {
                    let field = format!("fields.{column}");
                    let i = table.column(column).ok_or_else(|| {
                        (field.clone(), format!("table {:?} has no column {column:?}; columns are {}", table.name, table.columns().join(", ")))
                    })?;
                    fields.push((i, writable(&field, target)?));
                }
                Op::Lookup { table, key, fields, reject_missing: c.on_missing == OnMissing::Reject }
            }
            TransformerConfig::Rename(c) => {
                let from = readable("from", &c.from)?;
                from.check_removable().map_err(field_err("from"))?;
                Op::Rename { from, to: writable("to", &c.to)? }
            }
            TransformerConfig::Merge(c) => {
                if c.from.len() < 2 {
                    return Err(("from".into(), "a merge needs at least two source paths".into()));
                }
                let from = c.from.iter().map(|p| readable("from", p)).collect::<Result<Vec<_>, _>>()?;
                if c.remove_from {
                    for p in &from {
                        p.check_removable().map_err(field_err("from"))?;
                    }
                }
                Op::Merge { from, to: writable("to", &c.to)?, separator: c.separator.clone(), remove_from: c.remove_from }
            }
            TransformerConfig::Split(c) => {
                if c.separator.is_empty() {
                    return Err(("separator".into(), "the separator must not be empty".into()));
                }
                if c.to.is_empty() {
                    return Err(("to".into(), "a split needs at least one destination path".into()));
                }
                let from = readable("from", &c.from)?;
                if c.remove_from {
                    from.check_removable().map_err(field_err("from"))?;
                }
                let to = c.to.iter().map(|p| writable("to", p)).collect::<Result<Vec<_>, _>>()?;
                Op::Split { from, to, separator: c.separator.clone(), remove_from: c.remove_from }
            }
            TransformerConfig::Set(c) => {
                if c.values.is_empty() {
                    return Err(("values".into(), "a set needs values = { \"path\" = value, … }".into()));
                }
                let mut values = Vec::with_capacity(c.values.0.len());
                for (path, value) in c.values.iter() {
                    let field = format!("values.{path}");
                    let event_path = writable(&field, path)?;
                    // Check the constant once: a value that cannot be written fails now, not per event.
                    let mut probe = probe_event();
                    if let Err(e) = event_path.write(&mut probe, value.clone(), ZoneOffset(0)) {
                        return Err((field, e.message));
                    }
                    values.push((event_path, value.clone()));
                }
                Op::Set { values }
            }
            TransformerConfig::Drop(c) => {
                if c.paths.is_empty() {
                    return Err(("paths".into(), "a drop needs paths = [\"…\"]".into()));
                }
                Op::Drop { paths: c.paths.iter().map(|p| removable("paths", p)).collect::<Result<Vec<_>, _>>()? }
            }
            TransformerConfig::Filter(c) => Op::Filter { condition: Condition::compile(&c.when).map_err(field_err("when"))? },
        };
        Ok(Transformer { label, apps, when, op })
    }

    /// Whether this transformer runs for `event`.
    pub(crate) fn applies_to(&self, event: &Event) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(&event.app)) && self.when.as_ref().is_none_or(|c| c.matches(event))
    }

    /// Applies the transformer.
    pub(crate) fn apply(&self, event: &mut Event, zone: ZoneOffset) -> Result<(), EventError> {
        match &self.op {
            Op::Lookup { table, key, fields, reject_missing } => {
                let row = key.read(event).as_text().and_then(|k| table.get(&k));
                match row {
                    Some(row) => {
                        for (column, path) in fields {
                            let value = &row[*column];
                            if !value.is_null() {
                                path.write(event, value.clone(), zone).map_err(|e| self.context(e))?;
                            }
                        }
                    }
                    None if *reject_missing => {
                        let message = match key.read(event).as_text() {
                            Some(k) => format!("{}: \"{key}\" {k:?} is not in table {:?}; add it to {} or set on_missing = \"keep\"", self.label, table.name, table.path.display()),
                            None => format!("{}: the event has no \"{key}\" to look up in table {:?}; send it or set on_missing = \"keep\"", self.label, table.name),
                        };
                        return Err(EventError::field(ErrorCode::Filtered, key.to_string(), message));
                    }
                    None => {}
                }
            }
            Op::Rename { from, to } => {
                if let Some(value) = from.take(event) {
                    to.write(event, value, zone).map_err(|e| self.context(e))?;
                }
            }
            Op::Merge { from, to, separator, remove_from } => {
                let mut joined = String::new();
                let mut any = false;
                for path in from {
                    if let Some(text) = path.read(event).as_text() {
                        if any {
                            joined.push_str(separator);
                        }
                        joined.push_str(&text);
                        any = true;
                    }
                }
                if any {
                    if *remove_from {
                        for path in from {
                            path.take(event);
                        }
                    }
                    to.write(event, Value::String(joined), zone).map_err(|e| self.context(e))?;
                }
            }
            Op::Split { from, to, separator, remove_from } => {
                let text = match from.read(event) {
                    FieldRef::Str(s) => s.to_owned(),
                    FieldRef::Json(Value::String(s)) => s.clone(),
                    _ => return Ok(()),
                };
                if *remove_from {
                    from.take(event);
                }
                for (part, path) in text.splitn(to.len(), separator.as_str()).zip(to) {
                    path.write(event, Value::String(part.to_owned()), zone).map_err(|e| self.context(e))?;
                }
            }
            Op::Set { values } => {
                for (path, value) in values {
                    path.write(event, value.clone(), zone).map_err(|e| self.context(e))?;
                }
            }
            Op::Drop { paths } => {
                for path in paths {
                    path.take(event);
                }
            }
            Op::Filter { condition } => {
                if !condition.matches(event) {
                    return Err(EventError::whole(ErrorCode::Filtered, format!("{} dropped the event: it does not match the filter condition", self.label)));
                }
            }
        }
        Ok(())
    }

    fn context(&self, mut error: EventError) -> EventError {
        error.message = format!("{}: {}", self.label, error.message);
        error
    }
}

/// Checks what transformers cannot check one write at a time: an identity remains and a
/// target written piecewise got its id.
pub(crate) fn check_event(event: &Event) -> Result<(), EventError> {
    if event.user.is_none() && event.device.is_none() {
        return Err(EventError::whole(ErrorCode::TransformFailed, "the transformers removed both \"user\" and \"device\"; an event needs one of them"));
    }
    if event.target.as_ref().is_some_and(|t| t.id.is_empty()) {
        return Err(EventError::field(ErrorCode::TransformFailed, "target.id", "the transformers set \"target.type\" but no \"target.id\"; set both"));
    }
    Ok(())
}

/// An event to try constant writes on at load.
fn probe_event() -> Event {
    use meridian_event::{Action, EventId, Target, TargetType, Timestamp};
    Event {
        id: EventId::new("probe").expect("valid id"),
        app: AppId::new("probe").expect("valid id"),
        user: None,
        device: None,
        time: Timestamp(0),
        received: Timestamp(0),
        action: Action::new("probe").expect("valid id"),
        target: Some(Target { kind: TargetType::new("probe").expect("valid id"), id: "probe".into() }),
        context: Default::default(),
        props: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_event::{EventId, Timestamp, ValidationPolicy};
    use serde_json::json;

    fn event(value: Value) -> Event {
        Event::from_json(value, &AppId::new("shop").unwrap(), Timestamp(1_763_700_000_000), &ValidationPolicy::default(), || EventId::new("e").unwrap()).unwrap()
    }

    fn compile(text: &str) -> Result<Transformer, CompileError> {
        let config: TransformerConfig = toml::from_str(text).unwrap();
        Transformer::compile(0, &config, &HashMap::new())
    }

    fn run(text: &str, e: &mut Event) -> Result<(), EventError> {
        let t = compile(text).unwrap();
        if t.applies_to(e) {
            t.apply(e, ZoneOffset(0))?;
        }
        check_event(e)
    }

    #[test]
    fn rename_merge_split_set_drop() {
        let mut e = event(json!({"user": "u", "action": "view", "context": {"platform": "ios", "version": "10.2.1"}, "props": {"cat": "a/b/c", "c": "x"}}));
        run("type = \"rename\"\nfrom = \"props.c\"\nto = \"context.channel\"", &mut e).unwrap();
        assert_eq!(e.context.channel.as_deref(), Some("x"));
        assert!(!e.props.contains_key("c"));
        run("type = \"merge\"\nfrom = [\"context.platform\", \"context.version\"]\nto = \"props.pv\"\nseparator = \"@\"", &mut e).unwrap();
        assert_eq!(e.props["pv"], json!("ios@10.2.1"));
        run("type = \"split\"\nfrom = \"props.cat\"\nto = [\"props.c1\", \"props.c2\"]\nseparator = \"/\"\nremove_from = true", &mut e).unwrap();
        assert_eq!((e.props["c1"].clone(), e.props["c2"].clone()), (json!("a"), json!("b/c")));
        assert!(!e.props.contains_key("cat"));
        run("type = \"set\"\nvalues = { \"target.type\" = \"page\", \"target.id\" = 7, \"props.n\" = {a = 1} }", &mut e).unwrap();
        assert_eq!(e.target.as_ref().map(|t| (t.kind.as_str(), t.id.as_str())), Some(("page", "7")));
        assert_eq!(e.props["n"], json!({"a": 1}));
        run("type = \"drop\"\npaths = [\"props.pv\", \"context.platform\", \"target\"]", &mut e).unwrap();
        assert!(e.target.is_none() && e.context.platform.is_none() && !e.props.contains_key("pv"));
    }

    #[test]
    fn when_and_apps_scope() {
        let mut e = event(json!({"user": "u", "action": "view"}));
        run("type = \"set\"\nwhen = { action = \"click\" }\nvalues = { \"props.x\" = 1 }", &mut e).unwrap();
        run("type = \"set\"\napps = [\"other\"]\nvalues = { \"props.y\" = 1 }", &mut e).unwrap();
        run("type = \"set\"\nwhen = 'action == \"view\"'\nvalues = { \"props.z\" = 1 }", &mut e).unwrap();
        assert_eq!(serde_json::Value::Object(e.props.clone()), json!({"z": 1}));
    }

    #[test]
    fn filter_and_invalid_writes() {
        let mut e = event(json!({"user": "u", "action": "view", "props": {"kind": "Not Valid"}}));
        let err = run("type = \"filter\"\nname = \"only-clicks\"\nwhen = { action = \"click\" }", &mut e).unwrap_err();
        assert_eq!(err.code, ErrorCode::Filtered);
        assert!(err.message.contains("\"only-clicks\""), "{}", err.message);
        let err = run("type = \"rename\"\nfrom = \"props.kind\"\nto = \"action\"", &mut e).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), (ErrorCode::TransformFailed, Some("action")));
        assert!(err.message.contains("transformers[0]: cannot write to \"action\""), "{}", err.message);
        let err = run("type = \"rename\"\nfrom = \"user\"\nto = \"props.uid\"", &mut e).unwrap_err();
        assert!(err.message.contains("removed both"), "{}", err.message);
    }

    #[test]
    fn compile_errors_name_the_field() {
        let err = compile("type = \"set\"\nvalues = { action = \"Bad Action\" }").unwrap_err();
        assert_eq!(err.0, "values.action");
        assert!(err.1.contains("action"), "{}", err.1);
        assert_eq!(compile("type = \"drop\"\npaths = [\"action\"]").unwrap_err().0, "paths");
        assert_eq!(compile("type = \"rename\"\nfrom = \"props.a\"\nto = \"received\"").unwrap_err().0, "to");
        let err = compile("type = \"lookup\"\ntable = \"sku\"\nkey = \"target.id\"\nfields = { spu = \"props.spu\" }").unwrap_err();
        assert!(err.1.contains("unknown table \"sku\""), "{}", err.1);
        assert_eq!(compile("type = \"filter\"\nwhen = \"nope ==\"").unwrap_err().0, "when");
    }
}
