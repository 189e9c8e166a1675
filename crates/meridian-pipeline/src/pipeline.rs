//! The compiled pipeline: parse → validate → transform → route, for one raw event at a time.

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::parser::Parser;
use crate::route::{encode, Route};
use crate::table::Table;
use crate::transform::{check_event, Transformer};
use meridian_event::{AppId, Event, EventError, EventId, Timestamp, ValidationPolicy};
use meridian_log::TopicName;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use xxhash_rust::xxh3::Xxh3;

/// Topic of the catch-all route of a pipeline without `[[routes]]`.
pub const DEFAULT_TOPIC: &str = "events";

/// One destination of a processed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Topic to append to.
    pub topic: TopicName,
    /// The (projected) event encoded in the route's format.
    pub payload: Vec<u8>,
    /// Partition key: the user, else the device.
    pub partition_key: String,
}

/// The result of processing one raw event.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The validated, transformed event (before any route projection).
    pub event: Event,
    /// Where it goes; empty when no route matched.
    pub routes: Vec<Routed>,
}

/// A loaded pipeline. Immutable and `Send + Sync`: share it behind an `Arc` (or
/// `ArcSwap`) and replace it whole on reload.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    parsers: Vec<Parser>,
    transformers: Vec<Transformer>,
    routes: Vec<Route>,
    topics: Vec<TopicName>,
    revision: u64,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pipeline>();
};

impl Default for Pipeline {
    /// No parsers or transformers, one catch-all route to `events` (binary format).
    fn default() -> Self {
        Pipeline::compile(PipelineConfig::default(), Path::new("."), &Locator::default()).expect("the empty config is valid")
    }
}

/// Turns (section, index, field) into a location with file and line where known.
#[derive(Debug, Default)]
struct Locator<'a> {
    file: Option<&'a Path>,
    text: Option<&'a str>,
}

impl Locator<'_> {
    fn locate(&self, section: &str, index: usize, field: &str) -> String {
        let mut out = String::new();
        if let Some(file) = self.file {
            out.push_str(&file.display().to_string());
        }
        if let Some(line) = self.text.and_then(|t| header_line(t, section, index)) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("line {line}"));
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&format!("{section}[{index}]"));
        if !field.is_empty() {
            out.push('.');
            out.push_str(field);
        }
        out
    }

    fn syntax(&self, error: &toml::de::Error) -> Error {
        if let Some(refined) = self.refine(error) {
            return refined;
        }
        let mut location = self.file.map(|f| f.display().to_string()).unwrap_or_else(|| "pipeline config".to_owned());
        if let (Some(span), Some(text)) = (error.span(), self.text) {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            location.push_str(&format!(" line {line} column {column}"));
        }
        Error::Syntax { location, message: error.message().trim_end_matches('.').replace('\n', " ") }
    }
}

impl Locator<'_> {
    /// A schema error inside an `[[section]]` entry is reported by the TOML parser at the
    /// section's first header (the entry is buffered before it is checked). Find the entry
    /// that fails by checking the entries one by one.
    fn refine(&self, error: &toml::de::Error) -> Option<Error> {
        let text = self.text?;
        let start = error.span()?.start;
        let line = text.get(start..)?.lines().next()?.trim_start();
        if !line.starts_with("[[") {
            return None;
        }
        let document: toml::Table = toml::from_str(text).ok()?;
        let entries = |name: &str| document.get(name).and_then(toml::Value::as_array).cloned().unwrap_or_default();
        fn first_failure<T: serde::de::DeserializeOwned>(entries: Vec<toml::Value>) -> Option<(usize, String)> {
            entries.into_iter().enumerate().find_map(|(i, v)| T::deserialize(v).err().map(|e| (i, e.message().trim_end_matches('.').replace('\n', " "))))
        }
        let (section, (index, message)) = [
            ("tables", first_failure::<crate::config::TableConfig>(entries("tables"))),
            ("parsers", first_failure::<crate::config::ParserConfig>(entries("parsers"))),
            ("transformers", first_failure::<crate::config::TransformerConfig>(entries("transformers"))),
            ("routes", first_failure::<crate::config::RouteConfig>(entries("routes"))),
        ]
        .into_iter()
        .find_map(|(section, failure)| failure.map(|f| (section, f)))?;
        Some(Error::Syntax { location: self.locate(section, index, ""), message })
    }
}

/// 1-based line of the `index`-th `[[section]]` header in `text`.
fn header_line(text: &str, section: &str, index: usize) -> Option<usize> {
    let header = format!("[[{section}]]");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            line.starts_with(&header) && line[header.len()..].trim_start().is_empty_or_comment()
        })
        .nth(index)
        .map(|(i, _)| i + 1)
}

trait EmptyOrComment {
    fn is_empty_or_comment(&self) -> bool;
}

impl EmptyOrComment for str {
    fn is_empty_or_comment(&self) -> bool {
        self.is_empty() || self.starts_with('#')
    }
}

impl Pipeline {
    /// Checks and compiles `config`. Relative table paths are resolved against `base_dir`.
    pub fn from_config(config: PipelineConfig, base_dir: &Path) -> Result<Pipeline> {
        Pipeline::compile(config, base_dir, &Locator::default())
    }

    /// Parses TOML text and compiles it; errors give the line of the offending entry.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Pipeline> {
        let locator = Locator { file: None, text: Some(text) };
        let config: PipelineConfig = toml::from_str(text).map_err(|e| locator.syntax(&e))?;
        Pipeline::compile(config, base_dir, &locator)
    }

    /// Reads a TOML config file; tables are resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig { path: path.to_owned(), source })?;
        let locator = Locator { file: Some(path), text: Some(&text) };
        let config: PipelineConfig = toml::from_str(&text).map_err(|e| locator.syntax(&e))?;
        let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Pipeline::compile(config, base_dir, &locator)
    }

    fn compile(config: PipelineConfig, base_dir: &Path, locator: &Locator<'_>) -> Result<Pipeline> {
        let invalid = |section: &str, index: usize, (field, message): (String, String)| Error::Invalid { location: locator.locate(section, index, &field), message };
        let mut hasher = Xxh3::new();
        hasher.update(&serde_json::to_vec(&config).expect("a pipeline config (strings, numbers, tables) always serialises as JSON"));

        let mut tables: HashMap<String, Arc<Table>> = HashMap::new();
        for (i, table_config) in config.tables.iter().enumerate() {
            if table_config.name.is_empty() {
                return Err(invalid("tables", i, ("name".into(), "a table needs a non-empty name".into())));
            }
            if tables.contains_key(&table_config.name) {
                return Err(invalid("tables", i, ("name".into(), format!("table {:?} is declared twice; table names must be unique", table_config.name))));
            }
            let (table, bytes) = Table::load(table_config, base_dir)?;
            hasher.update(&bytes);
            tables.insert(table_config.name.clone(), Arc::new(table));
        }
        let parsers = config.parsers.iter().enumerate().map(|(i, p)| Parser::compile(p).map_err(|e| invalid("parsers", i, e))).collect::<Result<Vec<_>>>()?;
        let transformers =
            config.transformers.iter().enumerate().map(|(i, t)| Transformer::compile(i, t, &tables).map_err(|e| invalid("transformers", i, e))).collect::<Result<Vec<_>>>()?;
        let mut routes = config.routes.iter().enumerate().map(|(i, r)| Route::compile(r).map_err(|e| invalid("routes", i, e))).collect::<Result<Vec<_>>>()?;
        if routes.is_empty() {
            routes.push(Route::catch_all(TopicName::new(DEFAULT_TOPIC).expect("valid topic name")));
        }
        let mut topics: Vec<TopicName> = Vec::new();
        for route in &routes {
            if !topics.contains(&route.topic) {
                topics.push(route.topic.clone());
            }
        }
        Ok(Pipeline { config, parsers, transformers, routes, topics, revision: hasher.digest() })
    }

    /// Parses, validates, transforms and routes one raw event.
    ///
    /// `policy` and `fallback_id` are passed to [`Event::from_json`]; the policy's zone also
    /// interprets local times in parsers without `time_zone` and in transformer writes.
    pub fn process(&self, raw: Value, app: &AppId, received: Timestamp, policy: &ValidationPolicy, fallback_id: impl FnOnce() -> EventId) -> Result<Processed, EventError> {
        self.process_from(raw, app, None, received, policy, fallback_id)
    }

    /// [`Pipeline::process`] for a message consumed from the source named `source` (`None`:
    /// sent to the API): parsers scoped to sources apply only to their sources' messages.
    pub fn process_from(
        &self,
        mut raw: Value,
        app: &AppId,
        source: Option<&str>,
        received: Timestamp,
        policy: &ValidationPolicy,
        fallback_id: impl FnOnce() -> EventId,
    ) -> Result<Processed, EventError> {
        if let Value::Object(object) = &mut raw {
            for parser in &self.parsers {
                if parser.applies_to(app, source) {
                    parser.apply(object, policy.default_zone)?;
                }
            }
        }
        let mut event = Event::from_json(raw, app, received, policy, fallback_id)?;
        let mut transformed = false;
        for transformer in &self.transformers {
            if transformer.applies_to(&event) {
                transformer.apply(&mut event, policy.default_zone)?;
                transformed = true;
            }
        }
        if transformed {
            check_event(&event)?;
        }
        let routes = self.route(&event);
        Ok(Processed { event, routes })
    }

    /// Routes an already validated event (no parsing or transforming): every matching
    /// route in order, up to the first matching route with `final = true`.
    pub fn route(&self, event: &Event) -> Vec<Routed> {
        let mut routed: Vec<Routed> = Vec::with_capacity(1);
        // Index in `routed` of an unprojected payload per format, to encode it only once.
        let mut unprojected: [Option<usize>; 2] = [None, None];
        let key = event.partition_key();
        for route in &self.routes {
            if !route.matches(event) {
                continue;
            }
            let payload = match &route.projection {
                Some(projection) => encode(&projection.apply(event), route.format),
                None => {
                    let slot = &mut unprojected[route.format as usize];
                    match *slot {
                        Some(i) => routed[i].payload.clone(),
                        None => {
                            *slot = Some(routed.len());
                            encode(event, route.format)
                        }
                    }
                }
            };
            routed.push(Routed { topic: route.topic.clone(), payload, partition_key: key.to_owned() });
            if route.is_final {
                break;
            }
        }
        routed
    }

    /// Every topic a route can write to, in route order, without duplicates.
    pub fn topics(&self) -> Vec<TopicName> {
        self.topics.clone()
    }

    /// A hash of the config and the dimension tables' contents: equal revisions mean
    /// equal behaviour.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The config this pipeline was compiled from.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }
}
