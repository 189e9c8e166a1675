//! Parsers: aliases across client versions, JSON strings, time formats, coercion, defaults.

use crate::{pipeline, process, process_as, NOW};
use meridian_event::ErrorCode;
use serde_json::json;

const LEGACY: &str = r#"
[[parsers]]
apps = ["shop"]
json_strings = ["props", "ext"]
remove = ["ext"]
time_zone = "+08:00"
[parsers.aliases]
uid = "user"
ts = "time"
evt = "action"
cityId = "context.city"
"ext.city" = "context.city"
sku_id = "target.id"
[parsers.coerce]
"context.city" = "int"
[parsers.set_defaults]
"target.type" = "sku"
"#;

#[test]
fn two_client_versions_give_the_same_event() {
    let p = pipeline(LEGACY);
    let v1 = json!({"uid": "u1", "evt": "view", "ts": "2025-11-21 12:39:00", "cityId": "12", "sku_id": 1001, "props": "{\"price\": 10}"});
    let v2 = json!({"user": "u1", "action": "view", "time": NOW.0 - 60_000, "context": {"city": 12}, "target": {"type": "sku", "id": "1001"}, "props": {"price": 10}});
    let a = process(&p, v1).unwrap().event;
    let b = process(&p, v2).unwrap().event;
    assert_eq!(a, b);
    assert_eq!(a.context.city, Some(12));
    assert_eq!(a.target.as_ref().unwrap().id, "1001");
}

#[test]
fn parsers_scoped_to_sources_apply_only_to_their_sources_messages() {
    let p = pipeline("[[parsers]]\nsources = [\"orders-nats\"]\n[parsers.aliases]\nbuyer = \"user\"\nkind = \"action\"\n");
    let policy = meridian_event::ValidationPolicy { default_zone: meridian_event::ZoneOffset(0), ..meridian_event::ValidationPolicy::default() };
    let app = meridian_event::AppId::new("shop").unwrap();
    let message = json!({"buyer": "u7", "kind": "order"});
    let id = || meridian_event::EventId::new("generated").unwrap();
    let event = p.process_from(message.clone(), &app, Some("orders-nats"), NOW, &policy, id).unwrap().event;
    assert_eq!((event.user.as_ref().map(|u| u.as_str()), event.action.as_str()), (Some("u7"), "order"));
    // The same message from another source, or sent to the API, is not parsed by it.
    assert!(p.process_from(message.clone(), &app, Some("other"), NOW, &policy, id).is_err());
    assert!(process(&p, message).is_err());
    // An empty or invalid list is refused at load, naming the field.
    for bad in ["sources = []", "sources = [\"Not A Name\"]"] {
        let e = meridian_pipeline::Pipeline::from_toml_str(&format!("[[parsers]]\n{bad}\n"), std::path::Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("sources"), "{e}");
    }
}

#[test]
fn parsers_are_scoped_to_apps() {
    let p = pipeline(LEGACY);
    let err = process_as(&p, "other", json!({"uid": "u1", "evt": "view"})).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidField, "aliases do not apply to app other: {err}");
    assert!(err.message.contains("declare an alias"), "{err}");
}

#[test]
fn nested_json_strings_are_decoded() {
    let p = pipeline(LEGACY);
    let e = process(&p, json!({"uid": "u1", "evt": "click", "props": "{\"a\":{\"b\":[1,2]}}", "ext": "{\"city\": 7, \"junk\": true}"})).unwrap().event;
    assert_eq!(e.props["a"], json!({"b": [1, 2]}));
    assert_eq!(e.context.city, Some(7));
    let err = process(&p, json!({"uid": "u1", "evt": "click", "props": "{not json"})).unwrap_err();
    assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidJson, Some("props")));
}

#[test]
fn every_time_format() {
    let p = pipeline(LEGACY);
    let t = NOW.0 - 3_600_000; // 2025-11-21T03:40:00Z = 11:40 in +08:00
    for time in [json!(t / 1000), json!(t), json!((t / 1000).to_string()), json!("2025-11-21T03:40:00Z"), json!("2025-11-21T11:40:00+08:00"), json!("2025-11-21 11:40:00")] {
        let e = process(&p, json!({"uid": "u", "evt": "view", "ts": time.clone()})).unwrap().event;
        assert_eq!(e.time.0, t, "{time}");
    }
    let err = process(&p, json!({"uid": "u", "evt": "view", "ts": "last tuesday"})).unwrap_err();
    assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidTimestamp, Some("time")));
    assert!(err.message.contains("\"last tuesday\""), "{err}");
}

#[test]
fn time_field_elsewhere_and_utc_default_zone() {
    let p = pipeline("[[parsers]]\ntime_field = \"client.at\"\n[parsers.aliases]\n\"client.dev\" = \"device\"\n");
    let e = process(&p, json!({"client": {"at": "2025-11-21 04:39:00", "dev": "d1"}, "action": "view"}));
    // "client" is left over: the parser moved both its fields, leaving an empty object.
    assert_eq!(e.unwrap_err().field.as_deref(), Some("client"));
    let p = pipeline("[[parsers]]\ntime_field = \"client.at\"\nremove = [\"client\"]\n[parsers.aliases]\n\"client.dev\" = \"device\"\n");
    let e = process(&p, json!({"client": {"at": "2025-11-21 04:39:00", "dev": "d1"}, "action": "view"})).unwrap().event;
    assert_eq!(e.time.0, NOW.0 - 60_000);
    assert_eq!(e.device.unwrap().as_str(), "d1");
}

#[test]
fn coercion_failures_name_the_field() {
    let p = pipeline(LEGACY);
    let err = process(&p, json!({"uid": "u", "evt": "view", "cityId": "beijing"})).unwrap_err();
    assert_eq!((err.code, err.field.as_deref()), (ErrorCode::InvalidType, Some("context.city")));
    assert!(err.message.contains("is not an integer"), "{err}");
}
