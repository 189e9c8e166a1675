//! Parsers: rewrite the raw JSON object a client sent (aliases, JSON-encoded strings,
//! type coercion, defaults, time formats) before it is validated into an event.

use crate::config::{ParserConfig, ValueType};
use crate::path::{json_kind, JsonPath};
use crate::table::convert;
use meridian_event::{AppId, ErrorCode, EventError, Timestamp, ZoneOffset};
use serde_json::{Map, Value};

/// A compiled parser.
#[derive(Debug)]
pub(crate) struct Parser {
    apps: Option<Box<[AppId]>>,
    /// Source names; `None`: every event, from a source or not.
    sources: Option<Box<[String]>>,
    json_strings: Vec<JsonPath>,
    aliases: Vec<(JsonPath, JsonPath)>,
    remove: Vec<JsonPath>,
    coerce: Vec<(JsonPath, ValueType)>,
    defaults: Vec<(JsonPath, Value)>,
    time: Option<TimeRule>,
}

#[derive(Debug)]
struct TimeRule {
    field: JsonPath,
    /// `None`: the validation policy's zone.
    zone: Option<ZoneOffset>,
    /// Whether `field` is `time` itself.
    in_place: bool,
}

/// A problem in one parser entry: the field (relative to the entry) and the message.
pub(crate) type CompileError = (String, String);

impl Parser {
    /// Compiles one `[[parsers]]` entry.
    pub(crate) fn compile(config: &ParserConfig) -> Result<Parser, CompileError> {
        let path = |field: &str, text: &str| JsonPath::parse(text).map_err(|m| (field.to_owned(), m));
        let apps = compile_apps(config.apps.as_deref()).map_err(|m| ("apps".to_owned(), m))?;
        let sources = match &config.sources {
            None => None,
            Some(list) if list.is_empty() => return Err(("sources".to_owned(), "an empty sources list matches nothing; remove it to apply to every event".into())),
            Some(list) => {
                if let Some(bad) = list.iter().find(|s| s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')) {
                    return Err(("sources".to_owned(), format!("{bad:?} is not a source name: use 1-64 of [a-z0-9_-]")));
                }
                Some(list.clone().into_boxed_slice())
            }
        };
        let json_strings = config.json_strings.iter().map(|p| path("json_strings", p)).collect::<Result<Vec<_>, _>>()?;
        let mut aliases = Vec::with_capacity(config.aliases.0.len());
        for (from, to) in config.aliases.iter() {
            let field = format!("aliases.{from}");
            let from_path = path(&field, from)?;
            let to_path = path(&field, to)?;
            if from == to {
                return Err((field, format!("alias {from:?} points to itself; remove it")));
            }
            aliases.push((from_path, to_path));
        }
        let remove = config.remove.iter().map(|p| path("remove", p)).collect::<Result<Vec<_>, _>>()?;
        let coerce = config.coerce.iter().map(|(p, ty)| Ok((path(&format!("coerce.{p}"), p)?, *ty))).collect::<Result<Vec<_>, CompileError>>()?;
        let defaults = config.set_defaults.iter().map(|(p, v)| Ok((path(&format!("set_defaults.{p}"), p)?, v.clone()))).collect::<Result<Vec<_>, CompileError>>()?;
        let time = if config.time_field.is_some() || config.time_zone.is_some() {
            let field_text = config.time_field.as_deref().unwrap_or("time");
            let field = path("time_field", field_text)?;
            let zone = match &config.time_zone {
                None => None,
                Some(text) => Some(ZoneOffset::parse(text).ok_or_else(|| {
                    ("time_zone".to_owned(), format!("time zone {text:?} is not an offset; write \"+08:00\", \"-05:30\" or \"UTC\""))
                })?),
            };
            Some(TimeRule { in_place: field_text == "time", field, zone })
        } else {
            None
        };
        Ok(Parser { apps, sources, json_strings, aliases, remove, coerce, defaults, time })
    }

    /// Whether this parser applies to events of `app` consumed from `source` (`None`: sent
    /// to the API).
    pub(crate) fn applies_to(&self, app: &AppId, source: Option<&str>) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(app)) && self.sources.as_ref().is_none_or(|sources| source.is_some_and(|s| sources.iter().any(|n| n == s)))
    }

    /// Rewrites `object` in place.
    pub(crate) fn apply(&self, object: &mut Map<String, Value>, default_zone: ZoneOffset) -> Result<(), EventError> {
        for path in &self.json_strings {
            if let Some(slot) = path.get_mut(object) {
                if let Value::String(text) = slot {
                    let trimmed = text.trim_start();
                    if trimmed.starts_with('{') || trimmed.starts_with('[') {
                        let decoded: Value = serde_json::from_str(text).map_err(|e| {
                            EventError::field(ErrorCode::InvalidJson, path.as_str(), format!("\"{path}\" holds a JSON string that does not parse: {e}"))
                        })?;
                        *slot = decoded;
                    } else if trimmed.is_empty() {
                        *slot = Value::Null;
                    }
                }
            }
        }
        for (from, to) in &self.aliases {
            let Some(value) = from.take(object) else { continue };
            // The canonical name wins when a client sent both.
            if to.get(object).is_some_and(|v| !v.is_null()) {
                continue;
            }
            to.set(object, value).map_err(|(prefix, _)| {
                EventError::field(ErrorCode::InvalidType, prefix.clone(), format!("cannot move \"{from}\" to \"{to}\": \"{prefix}\" is not an object"))
            })?;
        }
        if let Some(rule) = &self.time {
            let zone = rule.zone.unwrap_or(default_zone);
            let parse = |value: &Value| {
                Timestamp::parse_json(value, zone).ok_or_else(|| {
                    EventError::field(
                        ErrorCode::InvalidTimestamp,
                        rule.field.as_str(),
                        format!("\"{}\" is {}; send epoch seconds or milliseconds, RFC 3339, or \"YYYY-MM-DD HH:MM:SS\"", rule.field, json_kind(value)),
                    )
                })
            };
            if rule.in_place {
                // Rewrite the slot: no key or value allocation.
                if let Some(slot) = rule.field.get_mut(object) {
                    if !slot.is_null() {
                        *slot = Value::from(parse(slot)?.0);
                    }
                }
            } else if let Some(value) = rule.field.take(object) {
                if !value.is_null() {
                    object.insert("time".to_owned(), Value::from(parse(&value)?.0));
                }
            }
        }
        for (path, ty) in &self.coerce {
            if let Some(slot) = path.get_mut(object) {
                if slot.is_null() {
                    continue;
                }
                *slot = convert(slot, *ty).map_err(|m| EventError::field(ErrorCode::InvalidType, path.as_str(), format!("\"{path}\": {m}")))?;
            }
        }
        for (path, value) in &self.defaults {
            if path.is_target_field() && !object.get("target").is_some_and(Value::is_object) {
                // A target needs an id: a default only completes a target the client sent.
                continue;
            }
            if path.get(object).is_none_or(Value::is_null) {
                path.set(object, value.clone()).map_err(|(prefix, _)| {
                    EventError::field(ErrorCode::InvalidType, prefix.clone(), format!("cannot set the default of \"{path}\": \"{prefix}\" is not an object"))
                })?;
            }
        }
        for path in &self.remove {
            path.take(object);
        }
        Ok(())
    }
}

/// Validates an `apps` list.
pub(crate) fn compile_apps(apps: Option<&[String]>) -> Result<Option<Box<[AppId]>>, String> {
    let Some(apps) = apps else { return Ok(None) };
    if apps.is_empty() {
        return Err("an empty apps list matches no app; remove it to apply to every app".into());
    }
    apps.iter()
        .map(|a| AppId::new(a.as_str()).map_err(|e| format!("invalid app {a:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| Some(v.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parser(toml_text: &str) -> Parser {
        let config: ParserConfig = toml::from_str(toml_text).unwrap();
        Parser::compile(&config).unwrap()
    }

    fn run(p: &Parser, value: Value) -> Result<Value, EventError> {
        let Value::Object(mut object) = value else { panic!("not an object") };
        p.apply(&mut object, ZoneOffset(0))?;
        Ok(Value::Object(object))
    }

    #[test]
    fn aliases_move_nested_and_canonical_wins() {
        let p = parser(
            r#"
            [aliases]
            uid = "user"
            cityId = "context.city"
            "ext.sku" = "target.id"
        "#,
        );
        let out = run(&p, json!({"uid": "u1", "cityId": 3, "ext": {"sku": "9"}})).unwrap();
        assert_eq!(out, json!({"user": "u1", "context": {"city": 3}, "ext": {}, "target": {"id": "9"}}));
        let out = run(&p, json!({"uid": "old", "user": "new"})).unwrap();
        assert_eq!(out, json!({"user": "new"}));
        let err = run(&p, json!({"cityId": 3, "context": "x"})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("context"));
        assert!(err.message.contains("is not an object"), "{}", err.message);
    }

    #[test]
    fn json_strings_coerce_defaults_and_time() {
        let p = parser(
            r#"
            json_strings = ["props", "ext"]
            remove = ["ext"]
            time_field = "ts"
            time_zone = "+08:00"
            [aliases]
            "ext.city" = "context.city"
            [coerce]
            "context.city" = "int"
            [set_defaults]
            "target.type" = "sku"
        "#,
        );
        let out = run(&p, json!({"props": "{\"a\":{\"b\":1}}", "ext": "{\"city\":\"12\"}", "ts": "2025-11-21 12:40:00", "target": {"id": "1"}})).unwrap();
        assert_eq!(out, json!({"props": {"a": {"b": 1}}, "context": {"city": 12}, "target": {"id": "1", "type": "sku"}, "time": 1_763_700_000_000i64}));
        let err = run(&p, json!({"ts": "yesterday"})).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidTimestamp, Some("ts")));
        let err = run(&p, json!({"props": "{broken"})).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidJson, Some("props")));
        let err = run(&p, json!({"context": {"city": "twelve"}})).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidType, Some("context.city")));
    }

    #[test]
    fn bad_parser_configs() {
        let bad = |text: &str| Parser::compile(&toml::from_str::<ParserConfig>(text).unwrap()).unwrap_err();
        assert_eq!(bad("time_zone = \"Asia/Shanghai\"").0, "time_zone");
        assert_eq!(bad("apps = [\"Shop\"]").0, "apps");
        assert_eq!(bad("[aliases]\n\"a..b\" = \"user\"").0, "aliases.a..b");
    }
}
