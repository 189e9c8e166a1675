//! The documented example config loads and behaves as its comments say.

use crate::{process, process_as, NOW};
use meridian_event::ErrorCode;
use meridian_pipeline::{decode_payload, Pipeline};
use serde_json::json;
use std::path::Path;

fn example() -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipeline.toml");
    Pipeline::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_config_loads_and_runs() {
    let p = example();
    assert_eq!(p.topics().iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["views", "big-orders", "crashes", "events"]);
    assert_eq!(p.config().tables.len(), 2);

    // A legacy v1 view: aliases, JSON strings, local time, string city, default target type,
    // then sku and shop lookups, category split and platform@version merge.
    let raw = json!({
        "uid": "u1", "evt": "view", "ts": "2025-11-21 12:00:00", "cityId": "1", "sku_id": "1001",
        "ext": "{\"page\": \"detail\", \"junk\": 1}",
        "context": {"platform": "ios", "version": "10.2.1", "ip": "10.0.0.1"},
        "props": "{\"screen\": \"detail-v2\", \"debug\": true}"
    });
    let processed = process(&p, raw).unwrap();
    let e = &processed.event;
    assert_eq!(e.time.0, NOW.0 - 40 * 60_000);
    assert_eq!(e.context.city, Some(1));
    assert_eq!(e.context.page.as_deref(), Some("detail-v2"), "props.screen renamed over ext.page");
    assert!(e.context.ip.is_none());
    assert_eq!(e.target.as_ref().map(|t| t.kind.as_str()), Some("sku"));
    assert_eq!(
        serde_json::Value::Object(e.props.clone()),
        json!({"spu": "spu-10", "category": "phones/android", "cat1": "phones", "cat2": "android", "brand": "acme", "shop": "s1",
               "list_price": 1999.0, "shop_star": 4.8, "shop_category": "electronics", "client": "ios@10.2.1"})
    );
    let topics: Vec<&str> = processed.routes.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["views", "events"]);
    let view = decode_payload(&processed.routes[0].payload).unwrap();
    assert_eq!(serde_json::Value::Object(view.props), json!({"spu": "spu-10", "list_price": 1999.0}));

    // Test traffic is filtered; crashes go only to "crashes"; mini-program platform is set.
    let err = process(&p, json!({"user": "u", "action": "view", "context": {"channel": "test"}})).unwrap_err();
    assert_eq!(err.code, ErrorCode::Filtered);
    let crash = process(&p, json!({"user": "u", "action": "crash"})).unwrap();
    assert_eq!(crash.routes.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>(), ["crashes"]);
    let mini = process_as(&p, "mini", json!({"device": "d", "action": "order", "props": {"price": 150}})).unwrap();
    assert_eq!(mini.event.context.platform.as_deref(), Some("mini-program"));
    assert_eq!(mini.routes.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>(), ["big-orders", "events"]);
}

#[test]
fn revision_follows_config_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir(dir.path().join("dims")).unwrap();
    for f in ["pipeline.toml", "dims/sku.csv", "dims/shop.jsonl"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("pipeline.toml");
    let a = Pipeline::from_file(&path).unwrap().revision();
    assert_eq!(a, example().revision());
    std::fs::write(dir.path().join("dims/sku.csv"), "sku_id,spu,category,brand,shop,price\n1,s,c,b,s1,1\n").unwrap();
    assert_ne!(Pipeline::from_file(&path).unwrap().revision(), a);
}
