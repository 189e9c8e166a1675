//! Integration tests of the pipeline: parsers, transformers, routes, config errors, the
//! example config and a never-panics property.

mod config_errors;
mod example;
mod parsers;
mod props;
mod routes;
mod transformers;

use meridian_event::{AppId, EventError, EventId, Timestamp, ValidationPolicy, ZoneOffset};
use meridian_pipeline::{Pipeline, Processed};
use serde_json::Value;
use std::path::Path;

/// Server time of every test event: 2025-11-21T04:40:00Z.
pub(crate) const NOW: Timestamp = Timestamp(1_763_700_000_000);

pub(crate) fn pipeline(toml: &str) -> Pipeline {
    match Pipeline::from_toml_str(toml, Path::new(".")) {
        Ok(p) => p,
        Err(e) => panic!("config does not load: {e}"),
    }
}

pub(crate) fn pipeline_in(toml: &str, dir: &Path) -> Pipeline {
    match Pipeline::from_toml_str(toml, dir) {
        Ok(p) => p,
        Err(e) => panic!("config does not load: {e}"),
    }
}

pub(crate) fn process_as(p: &Pipeline, app: &str, raw: Value) -> Result<Processed, EventError> {
    let policy = ValidationPolicy { default_zone: ZoneOffset(0), ..ValidationPolicy::default() };
    p.process(raw, &AppId::new(app).unwrap(), NOW, &policy, || EventId::new("generated").unwrap())
}

pub(crate) fn process(p: &Pipeline, raw: Value) -> Result<Processed, EventError> {
    process_as(p, "shop", raw)
}

/// The error message of a config that must not load.
pub(crate) fn config_error(toml: &str) -> String {
    match Pipeline::from_toml_str(toml, Path::new(".")) {
        Ok(_) => panic!("config loaded but should not:\n{toml}"),
        Err(e) => e.to_string(),
    }
}
