//! Transformers: lookup from CSV and JSONL tables, rename, merge, split, set, drop, filter.

use crate::{pipeline, pipeline_in, process, process_as};
use meridian_event::ErrorCode;
use serde_json::json;

fn dims() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dims")).unwrap();
    std::fs::write(dir.path().join("dims/sku.csv"), "sku_id,spu,category,brand,shop\n1001,spu-1,phones,acme,s1\n1002,spu-1,phones,,s1\n").unwrap();
    std::fs::write(dir.path().join("dims/shop.jsonl"), "{\"shop_id\": \"s1\", \"star\": 4.5, \"tags\": [\"big\"]}\n").unwrap();
    dir
}

const LOOKUPS: &str = r#"
[[tables]]
name = "sku"
path = "dims/sku.csv"
key = "sku_id"
[[tables]]
name = "shop"
path = "dims/shop.jsonl"
key = "shop_id"

[[transformers]]
type = "lookup"
table = "sku"
key = "target.id"
fields = { spu = "props.spu", category = "props.category", brand = "props.brand", shop = "props.shop" }
on_missing = "keep"

[[transformers]]
type = "lookup"
name = "shop-star"
table = "shop"
key = "props.shop"
fields = { star = "props.shop_star", tags = "props.shop_tags" }
on_missing = "reject"
when = { "target.type" = "sku" }
"#;

#[test]
fn lookup_csv_and_jsonl_found() {
    let dir = dims();
    let p = pipeline_in(LOOKUPS, dir.path());
    let e = process(&p, json!({"user": "u", "action": "view", "target": {"type": "sku", "id": 1001}})).unwrap().event;
    assert_eq!(serde_json::Value::Object(e.props), json!({"spu": "spu-1", "category": "phones", "brand": "acme", "shop": "s1", "shop_star": 4.5, "shop_tags": ["big"]}));
    // An empty CSV cell writes nothing.
    let e = process(&p, json!({"user": "u", "action": "view", "target": {"type": "sku", "id": "1002"}, "props": {"brand": "kept"}})).unwrap().event;
    assert_eq!(e.props["brand"], json!("kept"));
}

#[test]
fn lookup_missing_keep_and_reject() {
    let dir = dims();
    let p = pipeline_in(LOOKUPS, dir.path());
    // Missing in sku (keep), and then the shop lookup has no key: rejected.
    let err = process(&p, json!({"user": "u", "action": "view", "target": {"type": "sku", "id": "9999"}})).unwrap_err();
    assert_eq!((err.code, err.field.as_deref()), (ErrorCode::Filtered, Some("props.shop")));
    assert!(err.message.starts_with("transformer \"shop-star\": the event has no \"props.shop\" to look up in table \"shop\""), "{err}");
    // A page view skips the shop lookup (its `when`) and the sku miss keeps the event.
    let e = process(&p, json!({"user": "u", "action": "view", "target": {"type": "page", "id": "home"}})).unwrap().event;
    assert!(e.props.is_empty());
    // A shop the table does not know is rejected with the key in the message.
    let err = process(&p, json!({"user": "u", "action": "view", "target": {"type": "sku", "id": "9"}, "props": {"shop": "s404"}})).unwrap_err();
    assert!(err.message.contains("\"props.shop\" \"s404\" is not in table \"shop\"") && err.message.contains("shop.jsonl"), "{err}");
}

#[test]
fn rename_merge_split_set_drop_in_order() {
    let p = pipeline(
        r#"
        [[transformers]]
        type = "rename"
        from = "props.screen"
        to = "context.page"
        [[transformers]]
        type = "merge"
        from = ["context.platform", "context.version"]
        to = "props.client"
        remove_from = true
        [[transformers]]
        type = "split"
        from = "props.path"
        to = ["props.c1", "props.c2", "props.c3"]
        separator = "/"
        [[transformers]]
        type = "set"
        values = { "props.source" = "legacy", "context.channel" = "store" }
        [[transformers]]
        type = "drop"
        paths = ["props.path", "device"]
    "#,
    );
    let e = process(
        &p,
        json!({"user": "u", "device": "d", "action": "view", "context": {"platform": "ios", "version": "10.2"}, "props": {"screen": "home", "path": "a/b"}}),
    )
    .unwrap()
    .event;
    assert_eq!(e.context.page.as_deref(), Some("home"));
    assert_eq!((e.context.platform.as_deref(), e.context.version.as_deref(), e.context.channel.as_deref()), (None, None, Some("store")));
    assert!(e.device.is_none());
    assert_eq!(serde_json::Value::Object(e.props), json!({"client": "ios-10.2", "c1": "a", "c2": "b", "source": "legacy"}));
}

#[test]
fn filter_rejects_with_filtered() {
    let p = pipeline("[[transformers]]\ntype = \"filter\"\napps = [\"shop\"]\nwhen = 'action != \"debug\" && context.city != 0'\n");
    assert!(process(&p, json!({"user": "u", "action": "view"})).is_ok());
    let err = process(&p, json!({"user": "u", "action": "debug"})).unwrap_err();
    assert_eq!(err.code, ErrorCode::Filtered);
    assert!(err.message.contains("transformers[0] dropped the event"), "{err}");
    assert!(process_as(&p, "other", json!({"user": "u", "action": "debug"})).is_ok(), "the filter is scoped to shop");
}

#[test]
fn writing_invalid_values_fails_the_event() {
    let p = pipeline("[[transformers]]\ntype = \"merge\"\nfrom = [\"props.a\", \"props.b\"]\nto = \"action\"\nseparator = \" \"\n");
    assert_eq!(process(&p, json!({"user": "u", "action": "x", "props": {"a": "add", "b": "cart"}})).unwrap_err().code, ErrorCode::TransformFailed);
    let err = process(&p, json!({"user": "u", "action": "x", "props": {"a": "Add", "b": "Cart"}})).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("action"));
    assert!(err.message.contains("cannot write to \"action\": action \"Add Cart\" may only contain lowercase"), "{err}");
    let p = pipeline("[[transformers]]\ntype = \"rename\"\nfrom = \"props.c\"\nto = \"context.city\"\n");
    let err = process(&p, json!({"user": "u", "action": "x", "props": {"c": "north"}})).unwrap_err();
    assert_eq!((err.code, err.field.as_deref()), (ErrorCode::TransformFailed, Some("context.city")));
    let ok = process(&p, json!({"user": "u", "action": "x", "props": {"c": "21"}})).unwrap().event;
    assert_eq!(ok.context.city, Some(21));
}
