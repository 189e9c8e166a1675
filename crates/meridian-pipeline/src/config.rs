//! The pipeline config as read from TOML (`[[tables]]`, `[[parsers]]`, `[[transformers]]`,
//! `[[routes]]`). Plain data: [`crate::Pipeline::from_config`] checks and compiles it.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

/// The whole pipeline config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Dimension tables for `lookup` transformers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableConfig>,
    /// Parsers, applied in order to the raw JSON before validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parsers: Vec<ParserConfig>,
    /// Transformers, applied in order to the validated event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transformers: Vec<TransformerConfig>,
    /// Routes, tried in order. No routes at all means one catch-all route to `events`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// A dimension table loaded fully into memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name used by `lookup` transformers.
    pub name: String,
    /// File path, relative to the config file's directory unless absolute.
    pub path: PathBuf,
    /// Column holding the key.
    pub key: String,
    /// File format; by default taken from the extension (`.csv`, `.jsonl`/`.ndjson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TableFormat>,
    /// Types of CSV columns (`star = "float"`); CSV cells are strings otherwise.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub columns: OrderedMap<ValueType>,
}

/// Format of a dimension table file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A scalar type to convert a value to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// 64-bit integer.
    Int,
    /// Floating point number.
    Float,
    /// String.
    String,
    /// `true` / `false`.
    Bool,
}

/// One parser: rewrites the raw JSON object a client sent. Steps run in this order:
/// `json_strings`, `aliases`, time normalisation, `coerce`, `set_defaults`, `remove`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    /// Apps this parser applies to; all apps when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Sources (by name, `[[sources.list]]` or `/v1/admin/sources`) whose messages this
    /// parser applies to — a business message is not an event until its parser says how;
    /// only those sources' messages when set (not events sent to the API), everything
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Paths whose value may be a JSON-encoded string, decoded in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_strings: Vec<String>,
    /// Alias path → canonical path; the value moves when the canonical path is absent.
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub aliases: OrderedMap<String>,
    /// Paths removed from the raw event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Path → type the value is converted to (`"context.city" = "int"`).
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub coerce: OrderedMap<ValueType>,
    /// Path → value set when the path is absent or null (creating parent objects, except
    /// `target`: a `target.type` default only completes a target the client sent).
    #[serde(default, skip_serializing_if = "OrderedMap::is_empty")]
    pub set_defaults: OrderedMap<serde_json::Value>,
    /// Where the event time is (default `time`); normalised to epoch milliseconds in
    /// `time`. Time normalisation runs when this or `time_zone` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// Zone of local times without an offset (`+08:00`); the validation policy's zone
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// What to do when a lookup key is not in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Keep the event unchanged.
    #[default]
    Keep,
    /// Reject the event (code `filtered`).
    Reject,
}

/// One transformer, chosen by `type`. Every kind takes optional `name` (used in
/// messages), `apps` and `when` (a condition; for `filter` the condition to keep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TransformerConfig {
    /// Enrichment from a dimension table.
    Lookup(LookupConfig),
    /// Moves a value from one path to another.
    Rename(RenameConfig),
    /// Joins several values into one string.
    Merge(MergeConfig),
    /// Splits one string into several paths.
    Split(SplitConfig),
    /// Sets constant values.
    Set(SetConfig),
    /// Removes paths.
    Drop(DropConfig),
    /// Keeps only events matching `when`; others are rejected with code `filtered`.
    Filter(FilterConfig),
}

/// `type = "lookup"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Table name (from `[[tables]]`).
    pub table: String,
    /// Event path holding the key (`target.id`).
    pub key: String,
    /// Table column → event path.
    pub fields: OrderedMap<String>,
    /// What to do when the key is absent from the table (or from the event).
    #[serde(default)]
    pub on_missing: OnMissing,
}

/// `type = "rename"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Source path (removed).
    pub from: String,
    /// Destination path.
    pub to: String,
}

/// `type = "merge"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Source paths, joined in this order; absent ones are skipped.
    pub from: Vec<String>,
    /// Destination path.
    pub to: String,
    /// Separator (default `-`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Remove the sources after merging.
    #[serde(default)]
    pub remove_from: bool,
}

/// `type = "split"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Source path (a string).
    pub from: String,
    /// Destination paths, one per part; the last takes the rest of the string.
    pub to: Vec<String>,
    /// Separator (default `-`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Remove the source after splitting.
    #[serde(default)]
    pub remove_from: bool,
}

/// `type = "set"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Path → constant value, written in order.
    pub values: OrderedMap<serde_json::Value>,
}

/// `type = "drop"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Runs only for events matching this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Paths to remove.
    pub paths: Vec<String>,
}

/// `type = "filter"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apps it applies to; events of other apps pass unfiltered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Events matching this condition are kept, others rejected.
    pub when: ConditionConfig,
}

fn default_separator() -> String {
    "-".to_owned()
}

/// One route: events matching `apps`, `actions` and `when` (all that are given) are
/// written to `topic`. Every matching route receives the event, in order, until a
/// matching route with `final = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination topic.
    pub topic: String,
    /// Apps routed; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// Actions routed; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// Condition on the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionConfig>,
    /// Fields kept (projection); all when absent. `id`, `app`, `time`, `received`,
    /// `action` and an identity (`user` or `device`) are always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Payload format.
    #[serde(default)]
    pub format: PayloadFormat,
    /// Stop routing after this route when it matched.
    #[serde(default, rename = "final")]
    pub is_final: bool,
}

/// How a routed event is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// [`meridian_event::Event::encode`]; starts with the codec version byte.
    #[default]
    Binary,
    /// The event's canonical JSON object; starts with `{`.
    Json,
}

/// A condition: either an expression string (evalexpr syntax, event paths as variables:
/// `action == "view" && context.city == 1`) or a table of path → value or list of
/// values, all of which must match (`{ action = ["view", "click"], "context.city" = 1 }`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionConfig {
    /// An expression.
    Expr(String),
    /// Path → accepted value(s); `null` matches an absent field.
    Match(OrderedMap<serde_json::Value>),
}

impl Serialize for ConditionConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ConditionConfig::Expr(text) => serializer.serialize_str(text),
            ConditionConfig::Match(map) => map.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ConditionConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConditionVisitor;
        impl<'de> Visitor<'de> for ConditionVisitor {
            type Value = ConditionConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an expression string or a table of field = value(s)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConditionConfig::Expr(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(ConditionConfig::Match(OrderedMapVisitor(PhantomData).visit_map(map)?))
            }
        }
        deserializer.deserialize_any(ConditionVisitor)
    }
}

/// A TOML table read in document order (for aliases, defaults, lookups and sets, where
/// order can matter).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<T>(pub Vec<(String, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<T> OrderedMap<T> {
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<T, K: Into<String>> FromIterator<(K, T)> for OrderedMap<T> {
    fn from_iter<I: IntoIterator<Item = (K, T)>>(iter: I) -> Self {
        OrderedMap(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<T: Serialize> Serialize for OrderedMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

struct OrderedMapVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<T> {
    type Value = OrderedMap<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, T)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some((key, value)) = map.next_entry::<String, T>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            entries.push((key, value));
        }
        Ok(OrderedMap(entries))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(PhantomData))
    }
}
