//! Loading: the TOML file (strictly, for line numbers), then environment variables and
//! overrides merged on top by figment, then extraction into the root config type.

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the settings come from, lowest precedence first: the file, the environment,
/// the overrides.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (usually `std::env::vars()`); only `MERIDIAN_*` ones are read.
    pub env: Vec<(String, String)>,
    /// `section.key` = value text, e.g. from `--set` and the CLI's convenience flags.
    pub overrides: Vec<(String, String)>,
    /// The section whose keys may also be set as `MERIDIAN_<KEY>` (e.g. `server`, so
    /// `MERIDIAN_MASTER_KEY` works).
    pub bare_section: Option<&'static str>,
    /// `MERIDIAN_*` variables that are not settings (read by the CLI or the tests), so they
    /// are not reported as unknown.
    pub not_settings: Vec<&'static str>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the config (unknown key, wrong type…); the message
    /// names the line and column.
    #[error("invalid config file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// The parser's message, with line, column and the offending text.
        message: String,
    },
    /// An override does not name a setting.
    #[error("unknown setting {key:?}; settings are section.key, e.g. history.max_items (see `meridian config check`)")]
    UnknownSetting {
        /// The key given.
        key: String,
    },
    /// An override is not `key=value`.
    #[error("invalid override {0:?}; use section.key=value")]
    InvalidOverride(String),
    /// A value from the environment or an override has the wrong type.
    #[error("{0}")]
    Value(String),
}

/// Every settable key of `T` as a dotted path (`section.key`, `section.table.key`), from
/// its defaults (options included: an unset option serialises as null).
pub fn known_keys<T: Serialize + Default>() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(fields) if !fields.is_empty() || prefix.is_empty() => {
                for (k, v) in fields {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, keys);
                }
            }
            _ => keys.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    walk("", &serde_json::to_value(T::default()).unwrap_or(serde_json::Value::Null), &mut keys);
    keys
}

/// The environment variable that sets `key` (`history.max_items` → `MERIDIAN_HISTORY_MAX_ITEMS`).
pub fn env_var_name(key: &str) -> String {
    format!("MERIDIAN_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// One layer of `key = value` settings with a name for error messages.
struct Layer {
    name: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Parses a value as the environment provider would (numbers, booleans, arrays), except
/// that a key whose default is a string stays the exact text given.
fn parse_value(text: &str, default_is_string: bool) -> Value {
    if default_is_string {
        return Value::from(text.to_owned());
    }
    text.parse::<Value>().unwrap_or_else(|_| Value::from(text.to_owned()))
}

/// Sets a dotted key in a dict, creating the tables on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        Some((table, rest)) => {
            let entry = dict.entry(table.to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
        None => {
            dict.insert(key.to_owned(), value);
        }
    }
}

/// Loads `T` from `sources` (see the crate docs). Returns the config and warnings (e.g.
/// `MERIDIAN_*` variables that set nothing). The caller validates the result.
pub fn load<T: Serialize + DeserializeOwned + Default>(sources: &Sources) -> Result<(T, Vec<String>), LoadError> {
    let base: T = match &sources.file {
        Some(path) => read_file(path)?,
        None => T::default(),
    };
    let defaults = serde_json::to_value(T::default()).unwrap_or(serde_json::Value::Null);
    let default_is_string = |key: &str| key.split('.').try_fold(&defaults, |v, k| v.get(k)).is_some_and(serde_json::Value::is_string);
    let keys = known_keys::<T>();
    let mut env_names: BTreeMap<String, &str> = BTreeMap::new();
    for key in &keys {
        env_names.insert(env_var_name(key), key);
        if let Some(bare) = sources.bare_section {
            if let Some(field) = key.strip_prefix(bare).and_then(|k| k.strip_prefix('.')) {
                env_names.insert(env_var_name(field), key);
            }
        }
    }
    // Layers in precedence order: (source name, key, value text).
    let mut layers: Vec<(String, String, String)> = Vec::new();
    let mut warnings = Vec::new();
    let mut env_vars: Vec<&(String, String)> = sources.env.iter().filter(|(name, _)| name.starts_with("MERIDIAN_")).collect();
    env_vars.sort();
    for (name, value) in env_vars {
        match env_names.get(name.as_str()) {
            Some(key) => layers.push((format!("environment variable {name}"), key.to_string(), value.clone())),
            None if sources.not_settings.contains(&name.as_str()) => {}
            None => warnings.push(format!("environment variable {name} sets nothing: no setting has that name (see `meridian config check`)")),
        }
    }
    for (key, value) in &sources.overrides {
        if !keys.iter().any(|k| k == key) {
            return Err(LoadError::UnknownSetting { key: key.clone() });
        }
        layers.push((format!("override {key}={value}"), key.clone(), value.clone()));
    }
    // Values are parsed like TOML scalars (`8`, `true`), except for keys whose default is
    // text. An unset option (`master_key`) has no default to tell, so a value that parsed
    // as a number but must be text is retried as the text given.
    let mut as_text: Vec<String> = Vec::new();
    loop {
        let mut figment = Figment::from(figment::providers::Serialized::defaults(&base));
        for (name, key, value) in &layers {
            let mut dict = Dict::new();
            insert(&mut dict, key, parse_value(value, default_is_string(key) || as_text.contains(key)));
            figment = figment.merge(Layer { name: name.clone(), dict });
        }
        match figment.extract::<T>() {
            Ok(config) => return Ok((config, warnings)),
            Err(e) => {
                let path = e.path.iter().filter(|p| p.as_str() != "default").cloned().collect::<Vec<_>>().join(".");
                let retry = matches!(e.kind, figment::error::Kind::InvalidType(_, ref expected) if expected.contains("string"))
                    && layers.iter().any(|(_, key, _)| *key == path)
                    && !as_text.contains(&path);
                if !retry {
                    return Err(LoadError::Value(e.to_string().replace("for key \"default.", "for key \"")));
                }
                as_text.push(path);
            }
        }
    }
}

/// Parses `key=value` overrides.
pub fn parse_override(text: &str) -> Result<(String, String), LoadError> {
    let (key, value) = text.split_once('=').ok_or_else(|| LoadError::InvalidOverride(text.to_owned()))?;
    Ok((key.trim().to_owned(), value.to_owned()))
}

fn read_file<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
    toml::from_str(&text).map_err(|e| LoadError::File { path: path.display().to_string(), message: e.to_string().trim_end().to_owned() })
}

/// The config as TOML with the values of `secrets` (dotted keys) masked; unset options
/// are shown as comments.
pub fn masked_toml<T: Serialize>(config: &T, secrets: &[String]) -> String {
    fn table(out: &mut String, path: &str, fields: &serde_json::Map<String, serde_json::Value>, secrets: &[String]) {
        out.push_str(&format!("[{path}]\n"));
        let mut nested = Vec::new();
        for (field, value) in fields {
            let key = format!("{path}.{field}");
            match value {
                serde_json::Value::Null => out.push_str(&format!("# {field} is not set\n")),
                serde_json::Value::Object(inner) => nested.push((key, inner)),
                serde_json::Value::String(s) if secrets.contains(&key) && !s.is_empty() => out.push_str(&format!("{field} = \"********\"\n")),
                other => out.push_str(&format!("{field} = {}\n", toml_value(other))),
            }
        }
        out.push('\n');
        for (key, inner) in nested {
            table(out, &key, inner, secrets);
        }
    }
    let mut out = String::new();
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(config) {
        for (section, value) in sections {
            if let serde_json::Value::Object(fields) = value {
                table(&mut out, &section, &fields, secrets);
            }
        }
    }
    out
}

fn toml_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => toml::Value::String(s.clone()).to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Object(map) => {
            format!("{{ {} }}", map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k} = {}", toml_value(v))).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Null => "\"\"".into(),
    }
}
