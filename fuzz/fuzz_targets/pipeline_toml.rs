//! Fuzz target: the pipeline config parser and compiler (`Pipeline::from_toml_str`,
//! `from_config`) on arbitrary text, and a loaded pipeline's `process` on a few events.
//! Never panics.
//!
//! Dimension tables are read only from the example's `dims/` folder: each `[[tables]]`
//! path is replaced by `dims/<its file name>` (so the fuzzer cannot make the target read
//! `/dev/zero` or any other file of the machine).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_event::{AppId, EventId, Timestamp, ValidationPolicy, ZoneOffset};
use meridian_pipeline::{Pipeline, PipelineConfig};
use serde_json::json;
use std::path::{Path, PathBuf};

fn examples_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/meridian-pipeline/examples"))
}

fn exercise(pipeline: &Pipeline) {
    let policy = ValidationPolicy { default_zone: ZoneOffset(8 * 3600), ..ValidationPolicy::default() };
    let now = Timestamp(1_763_700_000_000);
    let events = [
        json!({"user": "u1", "action": "view", "target": {"type": "sku", "id": "1001"}, "context": {"city": 1, "platform": "ios", "version": "10.2.1"}, "props": {"price": 120, "category": "phones/android"}}),
        json!({"uid": "u2", "evt": "order", "ts": "2025-11-21 12:00:00", "cityId": "3", "sku_id": 2001, "props": "{\"price\": 99.5, \"screen\": \"cart\"}"}),
        json!({"device": "d1", "action": "crash", "context": {"channel": "test", "ip": "10.0.0.1"}, "props": {"debug": true, "nested": {"a": [1, 2]}}}),
        json!({"action": "view"}),
        json!([1, 2, 3]),
    ];
    for app in ["shop", "mini", "fuzz"] {
        let app = AppId::new(app).unwrap();
        for event in &events {
            if let Ok(processed) = pipeline.process(event.clone(), &app, now, &policy, || EventId::new("generated").unwrap()) {
                for routed in &processed.routes {
                    assert!(pipeline.topics().contains(&routed.topic), "routed to a topic the pipeline does not list");
                    meridian_pipeline::decode_payload(&routed.payload).expect("a routed payload decodes");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match toml::from_str::<PipelineConfig>(text) {
        // Nothing is read from disk before the text parses: the error path as the server
        // reports it (line and column, the failing [[entry]]).
        Err(_) => {
            let error = Pipeline::from_toml_str(text, examples_dir()).expect_err("text that does not parse cannot load");
            let _ = error.to_string();
        }
        Ok(mut config) => {
            let had_tables = !config.tables.is_empty();
            for table in &mut config.tables {
                table.path = PathBuf::from("dims").join(table.path.file_name().unwrap_or_default());
            }
            let loaded = if had_tables { Pipeline::from_config(config, examples_dir()) } else { Pipeline::from_toml_str(text, examples_dir()) };
            match loaded {
                Ok(pipeline) => exercise(&pipeline),
                Err(error) => {
                    let _ = error.to_string();
                }
            }
        }
    }
});
