//! Routes: which topics an event goes to, with which fields and in which format, and
//! [`decode_payload`] for readers of those topics.

use crate::condition::Condition;
use crate::config::{PayloadFormat, RouteConfig};
use crate::error::PayloadError;
use crate::parser::compile_apps;
use crate::path::{EventPath, CONTEXT_FIELDS};
use meridian_event::{Action, AppId, Context, Event, CODEC_VERSION};
use meridian_log::TopicName;
use serde_json::{Map, Value};

/// A compiled route.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) topic: TopicName,
    apps: Option<Box<[AppId]>>,
    actions: Option<Box<[Action]>>,
    when: Option<Condition>,
    pub(crate) projection: Option<Projection>,
    pub(crate) format: PayloadFormat,
    pub(crate) is_final: bool,
}

/// Which fields a route keeps.
#[derive(Debug, Default)]
pub(crate) struct Projection {
    user: bool,
    device: bool,
    target: bool,
    /// Bit i set: keep `CONTEXT_FIELDS[i]`.
    context: u16,
    props: PropsProjection,
}

#[derive(Debug, Default)]
enum PropsProjection {
    #[default]
    None,
    All,
    Keys(Vec<Box<[String]>>),
}

/// A problem in one route entry: the field (relative to the entry) and the message.
pub(crate) type CompileError = (String, String);

impl Route {
    /// Compiles one `[[routes]]` entry.
    pub(crate) fn compile(config: &RouteConfig) -> Result<Route, CompileError> {
        let topic = TopicName::new(config.topic.as_str())
            .map_err(|e| ("topic".to_owned(), e.to_string()))?;
        let apps = compile_apps(config.apps.as_deref()).map_err(|m| ("apps".to_owned(), m))?;
        let actions = match &config.actions {
            None => None,
            Some(list) if list.is_empty() => return Err(("actions".into(), "an empty actions list matches nothing; remove it to route every action".into())),
            Some(list) => Some(
                list.iter()
                    .map(|a| Action::new(a.as_str()).map_err(|e| ("actions".to_owned(), format!("invalid action {a:?}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            ),
        };
        let when = config.when.as_ref().map(Condition::compile).transpose().map_err(|m| ("when".to_owned(), m))?;
        let projection = config.fields.as_deref().map(Projection::compile).transpose().map_err(|m| ("fields".to_owned(), m))?;
        Ok(Route { topic, apps, actions, when, projection, format: config.format, is_final: config.is_final })
    }

    /// The catch-all route of a pipeline without routes.
    pub(crate) fn catch_all(topic: TopicName) -> Route {
        Route { topic, apps: None, actions: None, when: None, projection: None, format: PayloadFormat::Binary, is_final: true }
    }

    /// Whether `event` goes to this route.
    pub(crate) fn matches(&self, event: &Event) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(&event.app))
            && self.actions.as_ref().is_none_or(|actions| actions.contains(&event.action))
            && self.when.as_ref().is_none_or(|c| c.matches(event))
    }
}

impl Projection {
    fn compile(fields: &[String]) -> Result<Projection, String> {
        let mut p = Projection::default();
        for field in fields {
            match EventPath::parse(field)? {
                EventPath::Id | EventPath::App | EventPath::Time | EventPath::Received | EventPath::Action => {}
                EventPath::User => p.user = true,
                EventPath::Device => p.device = true,
                EventPath::Target | EventPath::TargetType | EventPath::TargetId => p.target = true,
                EventPath::Context => p.context = u16::MAX,
                EventPath::ContextField(i) => p.context |= 1 << i,
                EventPath::Props => p.props = PropsProjection::All,
                EventPath::PropsKey(keys) => match &mut p.props {
                    PropsProjection::All => {}
                    PropsProjection::Keys(list) => list.push(keys),
                    PropsProjection::None => p.props = PropsProjection::Keys(vec![keys]),
                },
            }
        }
        Ok(p)
    }

    /// The event with only the projected fields (and the ones every event needs).
    pub(crate) fn apply(&self, event: &Event) -> Event {
        let mut user = if self.user { event.user.clone() } else { None };
        let mut device = if self.device { event.device.clone() } else { None };
        if user.is_none() && device.is_none() {
            // Keep the identity the event is partitioned by, so the result stays valid.
            if event.user.is_some() {
                user = event.user.clone();
            } else {
                device = event.device.clone();
            }
        }
        let c = &event.context;
        let keep = |i: usize, v: &Option<String>| if self.context & (1 << i) != 0 { v.clone() } else { None };
        let context = if self.context == u16::MAX {
            c.clone()
        } else {
            Context {
                city: if self.context & 1 != 0 { c.city } else { None },
                platform: keep(1, &c.platform),
                version: keep(2, &c.version),
                channel: keep(3, &c.channel),
                page: keep(4, &c.page),
                source: keep(5, &c.source),
                session: keep(6, &c.session),
                ip: keep(7, &c.ip),
                user_agent: keep(8, &c.user_agent),
            }
        };
        debug_assert_eq!(CONTEXT_FIELDS.len(), 9);
        let props = match &self.props {
            PropsProjection::None => Map::new(),
            PropsProjection::All => event.props.clone(),
            PropsProjection::Keys(list) => {
                let mut out = Map::new();
                for keys in list {
                    copy_props_path(&event.props, &mut out, keys);
                }
                out
            }
        };
        Event {
            id: event.id.clone(),
            app: event.app.clone(),
            user,
            device,
            time: event.time,
            received: event.received,
            action: event.action.clone(),
            target: if self.target { event.target.clone() } else { None },
            context,
            props,
        }
    }
}

/// Copies the value at `keys` in `from` to the same place in `to`.
fn copy_props_path(from: &Map<String, Value>, to: &mut Map<String, Value>, keys: &[String]) {
    let Some((last, parents)) = keys.split_last() else { return };
    let mut source = from;
    for key in parents {
        match source.get(key).and_then(Value::as_object) {
            Some(m) => source = m,
            None => return,
        }
    }
    let Some(value) = source.get(last) else { return };
    let mut dest = to;
    for key in parents {
        let slot = dest.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
        match slot.as_object_mut() {
            Some(m) => dest = m,
            None => return,
        }
    }
    dest.insert(last.clone(), value.clone());
}

/// Encodes `event` in `format`.
pub(crate) fn encode(event: &Event, format: PayloadFormat) -> Vec<u8> {
    match format {
        PayloadFormat::Binary => event.encode(),
        // Serialising an Event (string keys, JSON values, integers) cannot fail.
        PayloadFormat::Json => serde_json::to_vec(event).expect("an event always serialises to JSON"),
    }
}

/// Decodes a payload written by a route in either format: a JSON payload starts with `{`
/// (after optional whitespace), a binary one with the codec version byte.
pub fn decode_payload(bytes: &[u8]) -> Result<Event, PayloadError> {
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace()).ok_or(PayloadError::Empty)?;
    if first == b'{' {
        Ok(serde_json::from_slice(bytes)?)
    } else {
        debug_assert_ne!(CODEC_VERSION, b'{');
        Ok(Event::decode(bytes)?)
    }
}
