//! Measures single-thread `Pipeline::process` throughput on a typical event with a legacy
//! parser, two transformers (sku lookup, merge) and two routes (projected JSON, binary).
//!
//! Run with `cargo run --release -p meridian-pipeline --example throughput [events]`.

use meridian_event::{AppId, Event, EventId, Timestamp, ValidationPolicy};
use meridian_pipeline::Pipeline;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

const CONFIG: &str = r#"
[[tables]]
name = "sku"
path = "dims/sku.csv"
key = "sku_id"

[[parsers]]
apps = ["shop"]
time_zone = "+08:00"
aliases = { uid = "user", evt = "action", cityId = "context.city", sku_id = "target.id" }
coerce = { "context.city" = "int" }
set_defaults = { "target.type" = "sku" }

[[transformers]]
type = "lookup"
table = "sku"
key = "target.id"
fields = { spu = "props.spu", brand = "props.brand", shop = "props.shop" }

[[transformers]]
type = "merge"
from = ["context.platform", "context.version"]
to = "props.client"

[[routes]]
topic = "views"
actions = ["view"]
fields = ["user", "target", "context.city", "props.spu"]
format = "json"

[[routes]]
topic = "events"
"#;

/// Events per second of `process` for `config` on `raw`.
fn measure(config: &str, raw: &serde_json::Value, n: usize) -> f64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let pipeline = Pipeline::from_toml_str(config, &dir).expect("config loads");
    let app = AppId::new("shop").expect("valid app");
    let policy = ValidationPolicy::default();
    let received = Timestamp(1_763_700_000_000);
    let mut bytes = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        let processed = pipeline.process(raw.clone(), &app, received, &policy, || EventId::new("generated").expect("valid id")).expect("event is valid");
        bytes += processed.routes.iter().map(|r| r.payload.len()).sum::<usize>();
    }
    let elapsed = start.elapsed();
    assert!(bytes > 0);
    n as f64 / elapsed.as_secs_f64()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let raw = json!({
        "id": "e-1", "uid": "u-12345", "evt": "view", "time": 1_763_699_990_000i64, "cityId": "1", "sku_id": "1001",
        "context": {"platform": "ios", "version": "10.2.1", "channel": "appstore", "page": "detail"},
        "props": {"price": 1999.0, "pos": 3}
    });
    let normalised = json!({
        "id": "e-1", "user": "u-12345", "action": "view", "time": 1_763_699_990_000i64, "target": {"type": "sku", "id": "1001"},
        "context": {"city": 1, "platform": "ios", "version": "10.2.1", "channel": "appstore", "page": "detail"},
        "props": {"price": 1999.0, "pos": 3}
    });
    let (parsers, rest) = CONFIG.split_once("[[transformers]]").expect("config has transformers");
    let transformers = rest.split("[[routes]]").next().unwrap_or_default();
    let stages = [
        ("default pipeline (validate + 1 binary route)", String::new(), &normalised),
        ("+ legacy parser", parsers.to_owned(), &raw),
        ("+ lookup and merge transformers", format!("{parsers}[[transformers]]{transformers}"), &raw),
        ("+ two routes (projected JSON + binary): full", CONFIG.to_owned(), &raw),
    ];
    for (name, config, input) in stages {
        let rate = measure(&config, input, n);
        println!("{name:<48} {rate:>9.0} events/s  {:>5.2} µs/event", 1e6 / rate);
    }
    // Baseline: validation and binary encoding alone, without the pipeline.
    let app = AppId::new("shop").expect("valid app");
    let start = Instant::now();
    for _ in 0..n {
        let event = Event::from_json(normalised.clone(), &app, Timestamp(1_763_700_000_000), &ValidationPolicy::default(), || EventId::new("g").expect("valid id"))
            .expect("event is valid");
        std::hint::black_box(event.encode());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{:<48} {rate:>9.0} events/s  {:>5.2} µs/event", "baseline: Event::from_json + encode", 1e6 / rate);
}
