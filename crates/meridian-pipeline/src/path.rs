//! Pre-parsed field paths: event paths (`context.city`, `props.a.b`) for transformers,
//! conditions and routes, and raw JSON paths for parsers.

use meridian_event::{Action, DeviceId, ErrorCode, Event, EventError, EventId, Target, TargetType, Timestamp, UserId, ZoneOffset, MAX_STRING_LEN};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// The context fields of an event, in the order of [`meridian_event::Context`].
pub(crate) const CONTEXT_FIELDS: [&str; 9] = ["city", "platform", "version", "channel", "page", "source", "session", "ip", "user_agent"];

const PATH_HELP: &str = "use id, app, user, device, action, time, received, target, target.type, target.id, context, context.<field> or props.<key>";

/// One field of an event, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventPath {
    Id,
    App,
    User,
    Device,
    Action,
    Time,
    Received,
    Target,
    TargetType,
    TargetId,
    Context,
    /// Index into [`CONTEXT_FIELDS`].
    ContextField(usize),
    Props,
    /// Keys from `props` down (at least one).
    PropsKey(Box<[String]>),
}

/// A borrowed view of a field's value, so reading allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldRef<'a> {
    Absent,
    Str(&'a str),
    Int(i64),
    Json(&'a Value),
}

impl<'a> FieldRef<'a> {
    /// The value as text, for lookup keys and merges; `None` when absent or null,
    /// JSON text for arrays and objects.
    pub(crate) fn as_text(self) -> Option<Cow<'a, str>> {
        match self {
            FieldRef::Absent | FieldRef::Json(Value::Null) => None,
            FieldRef::Str(s) => Some(Cow::Borrowed(s)),
            FieldRef::Json(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            FieldRef::Int(i) => Some(Cow::Owned(i.to_string())),
            FieldRef::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            FieldRef::Json(Value::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            FieldRef::Json(other) => Some(Cow::Owned(other.to_string())),
        }
    }
}

impl fmt::Display for EventPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventPath::Id => f.write_str("id"),
            EventPath::App => f.write_str("app"),
            EventPath::User => f.write_str("user"),
            EventPath::Device => f.write_str("device"),
            EventPath::Action => f.write_str("action"),
            EventPath::Time => f.write_str("time"),
            EventPath::Received => f.write_str("received"),
            EventPath::Target => f.write_str("target"),
            EventPath::TargetType => f.write_str("target.type"),
            EventPath::TargetId => f.write_str("target.id"),
            EventPath::Context => f.write_str("context"),
            EventPath::ContextField(i) => write!(f, "context.{}", CONTEXT_FIELDS[*i]),
            EventPath::Props => f.write_str("props"),
            EventPath::PropsKey(keys) => write!(f, "props.{}", keys.join(".")),
        }
    }
}

impl EventPath {
    /// Parses a dotted event path.
    pub(crate) fn parse(text: &str) -> Result<EventPath, String> {
        let (head, rest) = match text.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (text, None),
        };
        let path = match (head, rest) {
            ("id", None) => EventPath::Id,
            ("app", None) => EventPath::App,
            ("user", None) => EventPath::User,
            ("device", None) => EventPath::Device,
            ("action", None) => EventPath::Action,
            ("time", None) => EventPath::Time,
            ("received", None) => EventPath::Received,
            ("target", None) => EventPath::Target,
            ("target", Some("type")) => EventPath::TargetType,
            ("target", Some("id")) => EventPath::TargetId,
            ("target", Some(other)) => return Err(format!("unknown field \"target.{other}\"; a target has only \"type\" and \"id\"")),
            ("context", None) => EventPath::Context,
            ("context", Some(field)) => match CONTEXT_FIELDS.iter().position(|f| *f == field) {
                Some(i) => EventPath::ContextField(i),
                None => return Err(format!("unknown context field \"{field}\"; context has {}", CONTEXT_FIELDS.join(", "))),
            },
            ("props", None) => EventPath::Props,
            ("props", Some(keys)) => {
                let keys: Vec<String> = keys.split('.').map(str::to_owned).collect();
                if keys.iter().any(String::is_empty) {
                    return Err(format!("path \"{text}\" has an empty segment; write props.<key>[.<key>…]"));
                }
                EventPath::PropsKey(keys.into_boxed_slice())
            }
            _ => return Err(format!("unknown event path \"{text}\"; {PATH_HELP}")),
        };
        Ok(path)
    }

    /// Whether the path names one value that can be read (not a whole section).
    pub(crate) fn check_readable(&self) -> Result<(), String> {
        match self {
            EventPath::Target | EventPath::Context | EventPath::Props => {
                Err(format!("\"{self}\" is a whole section and cannot be read as one value; name one field, e.g. \"{self}.{}\"", self.example_child()))
            }
            _ => Ok(()),
        }
    }

    /// Whether a transformer may write a value to this path.
    pub(crate) fn check_writable(&self) -> Result<(), String> {
        match self {
            EventPath::App => Err("\"app\" is set by the API key and cannot be written".into()),
            EventPath::Received => Err("\"received\" is set by the server and cannot be written".into()),
            EventPath::Target | EventPath::Context | EventPath::Props => {
                Err(format!("\"{self}\" is a whole section and cannot be written as one value; name one field, e.g. \"{self}.{}\"", self.example_child()))
            }
            _ => Ok(()),
        }
    }

    /// Whether a transformer may remove this path.
    pub(crate) fn check_removable(&self) -> Result<(), String> {
        match self {
            EventPath::Id | EventPath::App | EventPath::Action | EventPath::Time | EventPath::Received => {
                Err(format!("\"{self}\" is required in every event and cannot be removed"))
            }
            EventPath::TargetType | EventPath::TargetId => Err(format!("\"{self}\" cannot be removed alone; remove \"target\" to drop the whole target")),
            _ => Ok(()),
        }
    }

    fn example_child(&self) -> &'static str {
        match self {
            EventPath::Target => "id",
            EventPath::Context => "city",
            _ => "key",
        }
    }

    /// Reads the value at this path without allocating.
    pub(crate) fn read<'a>(&self, event: &'a Event) -> FieldRef<'a> {
        let opt = |s: Option<&'a str>| s.map_or(FieldRef::Absent, FieldRef::Str);
        match self {
            EventPath::Id => FieldRef::Str(event.id.as_str()),
            EventPath::App => FieldRef::Str(event.app.as_str()),
            EventPath::User => opt(event.user.as_ref().map(UserId::as_str)),
            EventPath::Device => opt(event.device.as_ref().map(DeviceId::as_str)),
            EventPath::Action => FieldRef::Str(event.action.as_str()),
            EventPath::Time => FieldRef::Int(event.time.0),
            EventPath::Received => FieldRef::Int(event.received.0),
            EventPath::TargetType => opt(event.target.as_ref().map(|t| t.kind.as_str())),
            EventPath::TargetId => opt(event.target.as_ref().map(|t| t.id.as_str())),
            EventPath::ContextField(0) => event.context.city.map_or(FieldRef::Absent, |c| FieldRef::Int(i64::from(c))),
            EventPath::ContextField(i) => opt(context_text(&event.context, *i).as_deref()),
            EventPath::PropsKey(keys) => {
                let mut current = match event.props.get(&keys[0]) {
                    Some(v) => v,
                    None => return FieldRef::Absent,
                };
                for key in &keys[1..] {
                    current = match current.get(key.as_str()) {
                        Some(v) => v,
                        None => return FieldRef::Absent,
                    };
                }
                FieldRef::Json(current)
            }
            EventPath::Target | EventPath::Context | EventPath::Props => FieldRef::Absent,
        }
    }

    /// Removes the value at this path and returns it (`None` when it was absent).
    /// Paths are checked with [`EventPath::check_removable`] at load; others do nothing.
    pub(crate) fn take(&self, event: &mut Event) -> Option<Value> {
        match self {
            EventPath::User => event.user.take().map(|u| Value::String(u.into())),
            EventPath::Device => event.device.take().map(|d| Value::String(d.into())),
            EventPath::Target => event.target.take().map(|t| serde_json::json!({"type": t.kind.as_str(), "id": t.id})),
            EventPath::Context => {
                let old = std::mem::take(&mut event.context);
                serde_json::to_value(old).ok()
            }
            EventPath::ContextField(0) => event.context.city.take().map(Value::from),
            EventPath::ContextField(i) => context_text_mut(&mut event.context, *i).take().map(Value::String),
            EventPath::Props => {
                let old = std::mem::take(&mut event.props);
                (!old.is_empty()).then_some(Value::Object(old))
            }
            EventPath::PropsKey(keys) => {
                let (last, parents) = keys.split_last()?;
                let mut map = &mut event.props;
                for key in parents {
                    map = map.get_mut(key)?.as_object_mut()?;
                }
                map.remove(last)
            }
            _ => None,
        }
    }

    /// Writes `value` at this path, validating it like [`Event::from_json`] would.
    /// `Null` clears optional fields. `zone` interprets local times written to `time`.
    pub(crate) fn write(&self, event: &mut Event, value: Value, zone: ZoneOffset) -> Result<(), EventError> {
        let field = || self.to_string();
        let fail = |message: String| EventError::field(ErrorCode::TransformFailed, field(), message);
        match self {
            EventPath::Id => {
                let text = scalar_text(&value).ok_or_else(|| fail(format!("cannot write {} to \"id\"; an event id must be a string", json_kind(&value))))?;
                event.id = EventId::new(text).map_err(|e| fail(format!("cannot write to \"id\": {e}")))?;
            }
            EventPath::User => {
                event.user = match value {
                    Value::Null => None,
                    v => {
                        let text = scalar_text(&v).ok_or_else(|| fail(format!("cannot write {} to \"user\"; a user id must be a string", json_kind(&v))))?;
                        Some(UserId::new(text).map_err(|e| fail(format!("cannot write to \"user\": {e}")))?)
                    }
                };
            }
            EventPath::Device => {
                event.device = match value {
                    Value::Null => None,
                    v => {
                        let text = scalar_text(&v).ok_or_else(|| fail(format!("cannot write {} to \"device\"; a device id must be a string", json_kind(&v))))?;
                        Some(DeviceId::new(text).map_err(|e| fail(format!("cannot write to \"device\": {e}")))?)
                    }
                };
            }
            EventPath::Action => {
                let text = scalar_text(&value).ok_or_else(|| fail(format!("cannot write {} to \"action\"; an action must be a string such as \"view\"", json_kind(&value))))?;
                event.action = Action::new(text).map_err(|e| fail(format!("cannot write to \"action\": {e}")))?;
            }
            EventPath::Time => {
                event.time = Timestamp::parse_json(&value, zone).ok_or_else(|| {
                    EventError::field(
                        ErrorCode::InvalidTimestamp,
                        "time",
                        format!("cannot write {} to \"time\"; use epoch seconds or milliseconds, RFC 3339, or \"YYYY-MM-DD HH:MM:SS\"", json_kind(&value)),
                    )
                })?;
            }
            EventPath::TargetType => {
                let text = scalar_text(&value).ok_or_else(|| fail(format!("cannot write {} to \"target.type\"; a target type must be a string such as \"sku\"", json_kind(&value))))?;
                let kind = TargetType::new(text).map_err(|e| fail(format!("cannot write to \"target.type\": {e}")))?;
                match &mut event.target {
                    Some(target) => target.kind = kind,
                    // The id must follow (checked after the transformers ran).
                    None => event.target = Some(Target { kind, id: String::new() }),
                }
            }
            EventPath::TargetId => {
                let text = scalar_text(&value).ok_or_else(|| fail(format!("cannot write {} to \"target.id\"; a target id must be a string or a number", json_kind(&value))))?;
                check_text_len(&text).map_err(fail)?;
                if text.is_empty() {
                    return Err(fail("cannot write an empty string to \"target.id\"".into()));
                }
                match &mut event.target {
                    Some(target) => target.id = text,
                    None => return Err(fail("cannot write \"target.id\" to an event without a target; write \"target.type\" first".into())),
                }
            }
            EventPath::ContextField(0) => {
                event.context.city = match &value {
                    Value::Null => None,
                    Value::Number(n) => Some(n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| fail(format!("cannot write {n} to \"context.city\"; a city is a non-negative 32-bit integer id")))?),
                    Value::String(s) => Some(s.trim().parse::<u32>().map_err(|_| fail(format!("cannot write {s:?} to \"context.city\"; a city is a non-negative 32-bit integer id")))?),
                    other => return Err(fail(format!("cannot write {} to \"context.city\"; a city is an integer id", json_kind(other)))),
                };
            }
            EventPath::ContextField(i) => {
                let new = match value {
                    Value::Null => None,
                    v => {
                        let text = scalar_text(&v).ok_or_else(|| fail(format!("cannot write {} to \"{}\"; context values are strings", json_kind(&v), field())))?;
                        check_text_len(&text).map_err(fail)?;
                        if CONTEXT_FIELDS[*i] == "version" && !is_semver_like(&text) {
                            return Err(fail(format!("cannot write {text:?} to \"context.version\"; a version is semver-like (e.g. 10.2.1)")));
                        }
                        Some(text)
                    }
                };
                *context_text_mut(&mut event.context, *i) = new;
            }
            EventPath::PropsKey(keys) => {
                let (last, parents) = keys.split_last().ok_or_else(|| fail("empty props path".into()))?;
                let mut map = &mut event.props;
                for key in parents {
                    let slot = map.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if slot.is_null() {
                        *slot = Value::Object(Map::new());
                    }
                    map = slot.as_object_mut().ok_or_else(|| fail(format!("cannot write \"{}\": \"props.{key}\" is not an object", field())))?;
                }
                if value.is_null() {
                    map.remove(last);
                } else {
                    map.insert(last.clone(), value);
                }
            }
            EventPath::App | EventPath::Received | EventPath::Target | EventPath::Context | EventPath::Props => {
                return Err(fail(format!("\"{}\" cannot be written", field())));
            }
        }
        Ok(())
    }
}

fn context_text(c: &meridian_event::Context, i: usize) -> &Option<String> {
    match i {
        1 => &c.platform,
        2 => &c.version,
        3 => &c.channel,
        4 => &c.page,
        5 => &c.source,
        6 => &c.session,
        7 => &c.ip,
        _ => &c.user_agent,
    }
}

fn context_text_mut(c: &mut meridian_event::Context, i: usize) -> &mut Option<String> {
    match i {
        1 => &mut c.platform,
        2 => &mut c.version,
        3 => &mut c.channel,
        4 => &mut c.page,
        5 => &mut c.source,
        6 => &mut c.session,
        7 => &mut c.ip,
        _ => &mut c.user_agent,
    }
}

/// Text of a string, integer or boolean; `None` for other kinds.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_text_len(text: &str) -> Result<(), String> {
    if text.len() > MAX_STRING_LEN {
        return Err(format!("the value is {} bytes, the limit is {MAX_STRING_LEN}", text.len()));
    }
    Ok(())
}

fn is_semver_like(version: &str) -> bool {
    version.len() <= 32
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
}

/// A short description of a JSON value's kind, for messages.
pub(crate) fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            format!("the string {shown:?}")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A dotted path into a raw JSON object (before validation), split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    text: String,
    keys: Box<[String]>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parses `a.b.c`.
    pub(crate) fn parse(text: &str) -> Result<JsonPath, String> {
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if keys.iter().any(String::is_empty) {
            return Err(format!("path \"{text}\" has an empty segment; write dotted keys such as \"context.city\""));
        }
        Ok(JsonPath { text: text.to_owned(), keys: keys.into_boxed_slice() })
    }

    /// The path as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is `target.<field>`.
    pub(crate) fn is_target_field(&self) -> bool {
        self.keys.len() == 2 && self.keys[0] == "target"
    }

    /// The value at this path.
    pub(crate) fn get<'a>(&self, root: &'a Map<String, Value>) -> Option<&'a Value> {
        let (last, parents) = self.keys.split_last()?;
        let mut map = root;
        for key in parents {
            map = map.get(key)?.as_object()?;
        }
        map.get(last)
    }

    /// The value at this path, mutably.
    pub(crate) fn get_mut<'a>(&self, root: &'a mut Map<String, Value>) -> Option<&'a mut Value> {
        let (last, parents) = self.keys.split_last()?;
        let mut map = root;
        for key in parents {
            map = map.get_mut(key)?.as_object_mut()?;
        }
        map.get_mut(last)
    }

    /// Removes and returns the value at this path.
    pub(crate) fn take(&self, root: &mut Map<String, Value>) -> Option<Value> {
        let (last, parents) = self.keys.split_last()?;
        let mut map = root;
        for key in parents {
            map = map.get_mut(key)?.as_object_mut()?;
        }
        map.remove(last)
    }

    /// Sets the value at this path, creating intermediate objects (and replacing
    /// intermediate nulls). Returns the value back, with the prefix that is not an
    /// object, when it cannot be placed.
    pub(crate) fn set(&self, root: &mut Map<String, Value>, value: Value) -> Result<(), (String, Value)> {
        let Some((last, parents)) = self.keys.split_last() else { return Err((String::new(), value)) };
        let mut map = root;
        for (i, key) in parents.iter().enumerate() {
            let slot = map.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            if slot.is_null() {
                *slot = Value::Object(Map::new());
            }
            match slot.as_object_mut() {
                Some(m) => map = m,
                None => return Err((self.keys[..=i].join("."), value)),
            }
        }
        map.insert(last.clone(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_event::{AppId, ValidationPolicy};
    use serde_json::json;

    fn event() -> Event {
        let app = AppId::new("shop").unwrap();
        Event::from_json(
            json!({"user": "u1", "action": "view", "target": {"type": "sku", "id": "42"}, "context": {"city": 3, "platform": "ios"}, "props": {"a": {"b": 1}}}),
            &app,
            Timestamp(1_763_700_000_000),
            &ValidationPolicy::default(),
            || EventId::new("e").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["user", "device", "action", "time", "target.type", "target.id", "context.city", "context.user_agent", "props.a.b", "props", "context", "target"] {
            assert_eq!(EventPath::parse(text).unwrap().to_string(), text);
        }
        assert!(EventPath::parse("contex.city").unwrap_err().contains("unknown event path"));
        assert!(EventPath::parse("context.planet").unwrap_err().contains("context has city"));
        assert!(EventPath::parse("target.name").unwrap_err().contains("only \"type\" and \"id\""));
        assert!(EventPath::parse("props..a").unwrap_err().contains("empty segment"));
    }

    #[test]
    fn read_write_take() {
        let mut e = event();
        let zone = ZoneOffset(0);
        assert!(matches!(EventPath::parse("context.city").unwrap().read(&e), FieldRef::Int(3)));
        assert!(matches!(EventPath::parse("props.a.b").unwrap().read(&e), FieldRef::Json(v) if v == &json!(1)));
        assert!(matches!(EventPath::parse("props.a.c").unwrap().read(&e), FieldRef::Absent));
        EventPath::parse("props.x.y").unwrap().write(&mut e, json!("z"), zone).unwrap();
        assert_eq!(e.props["x"], json!({"y": "z"}));
        EventPath::parse("context.city").unwrap().write(&mut e, json!("12"), zone).unwrap();
        assert_eq!(e.context.city, Some(12));
        let err = EventPath::Action.write(&mut e, json!("Not Valid"), zone).unwrap_err();
        assert_eq!(err.code, ErrorCode::TransformFailed);
        assert_eq!(err.field.as_deref(), Some("action"));
        assert!(err.message.contains("cannot write to \"action\""), "{}", err.message);
        let err = EventPath::parse("context.version").unwrap().write(&mut e, json!("latest"), zone).unwrap_err();
        assert!(err.message.contains("semver"), "{}", err.message);
        assert_eq!(EventPath::parse("props.a.b").unwrap().take(&mut e), Some(json!(1)));
        assert_eq!(EventPath::User.take(&mut e), Some(json!("u1")));
        assert!(e.user.is_none());
    }

    #[test]
    fn json_paths_create_intermediates() {
        let mut root = Map::new();
        let p = JsonPath::parse("context.city").unwrap();
        p.set(&mut root, json!(1)).unwrap();
        assert_eq!(Value::Object(root.clone()), json!({"context": {"city": 1}}));
        assert_eq!(p.get(&root), Some(&json!(1)));
        root.insert("x".into(), json!(5));
        let err = JsonPath::parse("x.y").unwrap().set(&mut root, json!(1)).unwrap_err();
        assert_eq!(err.0, "x");
        assert_eq!(p.take(&mut root), Some(json!(1)));
        assert_eq!(p.take(&mut root), None);
    }
}
