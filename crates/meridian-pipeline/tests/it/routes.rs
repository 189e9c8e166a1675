//! Routing by app, action and expression, projection, both payload formats.

use crate::{pipeline, process, process_as};
use meridian_event::Event;
use meridian_pipeline::{decode_payload, Pipeline, PayloadError};
use serde_json::json;

const ROUTES: &str = r#"
[[routes]]
topic = "views"
apps = ["shop"]
actions = ["view", "click"]
fields = ["user", "target", "context.city", "props.price", "props.a.b"]
format = "json"

[[routes]]
topic = "big-orders"
actions = ["order"]
when = 'props.price >= 100 && context.city == 1'

[[routes]]
topic = "crashes"
when = { action = "crash" }
final = true

[[routes]]
topic = "events"
"#;

fn topics(p: &Pipeline, app: &str, raw: serde_json::Value) -> Vec<String> {
    process_as(p, app, raw).unwrap().routes.into_iter().map(|r| r.topic.to_string()).collect()
}

#[test]
fn routing_by_app_action_and_expression() {
    let p = pipeline(ROUTES);
    assert_eq!(p.topics().iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["views", "big-orders", "crashes", "events"]);
    assert_eq!(topics(&p, "shop", json!({"user": "u", "action": "view"})), ["views", "events"]);
    assert_eq!(topics(&p, "mini", json!({"user": "u", "action": "view"})), ["events"]);
    assert_eq!(topics(&p, "shop", json!({"user": "u", "action": "order", "context": {"city": 1}, "props": {"price": 120}})), ["big-orders", "events"]);
    assert_eq!(topics(&p, "shop", json!({"user": "u", "action": "order", "context": {"city": 2}, "props": {"price": 120}})), ["events"]);
    assert_eq!(topics(&p, "shop", json!({"user": "u", "action": "order"})), ["events"], "a missing price does not match");
    assert_eq!(topics(&p, "shop", json!({"user": "u", "action": "crash"})), ["crashes"], "final stops routing");
}

#[test]
fn projection_and_both_formats_round_trip() {
    let p = pipeline(ROUTES);
    let processed = process(
        &p,
        json!({"id": "e1", "user": "u", "device": "d", "action": "view", "target": {"type": "sku", "id": "7"},
               "context": {"city": 3, "platform": "ios"}, "props": {"price": 5, "a": {"b": 1, "c": 2}, "other": true}}),
    )
    .unwrap();
    let [views, events] = &processed.routes[..] else { panic!("two routes expected: {:?}", processed.routes) };
    assert_eq!(views.payload[0], b'{');
    assert_eq!(events.payload[0], meridian_event::CODEC_VERSION);
    assert_eq!(views.partition_key, "u");
    let projected = decode_payload(&views.payload).unwrap();
    assert_eq!(projected.user.as_ref().unwrap().as_str(), "u");
    assert!(projected.device.is_none());
    assert_eq!(projected.context.city, Some(3));
    assert!(projected.context.platform.is_none());
    assert_eq!(serde_json::Value::Object(projected.props.clone()), json!({"price": 5, "a": {"b": 1}}));
    assert_eq!((projected.id.as_str(), projected.action.as_str(), projected.time, projected.received), ("e1", "view", processed.event.time, processed.event.received));
    assert_eq!(decode_payload(&events.payload).unwrap(), processed.event);
    // JSON payloads are the canonical event JSON.
    let json_event: serde_json::Value = serde_json::from_slice(&views.payload).unwrap();
    assert_eq!(json_event, projected.to_json());
}

#[test]
fn projection_keeps_an_identity() {
    let p = pipeline("[[routes]]\ntopic = \"t\"\nfields = [\"user\"]\nformat = \"json\"\n");
    let processed = process(&p, json!({"device": "d", "action": "view"})).unwrap();
    let e: Event = decode_payload(&processed.routes[0].payload).unwrap();
    assert_eq!(e.device.unwrap().as_str(), "d");
    assert_eq!(processed.routes[0].partition_key, "d");
}

#[test]
fn default_pipeline_routes_everything_to_events() {
    let p = Pipeline::default();
    assert_eq!(p.topics().iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["events"]);
    let processed = process(&p, json!({"user": "u", "action": "view"})).unwrap();
    assert_eq!(processed.routes.len(), 1);
    assert_eq!(Event::decode(&processed.routes[0].payload).unwrap(), processed.event);
    assert_eq!(p.revision(), pipeline("").revision());
    assert_ne!(p.revision(), pipeline("[[routes]]\ntopic = \"events\"\n").revision());
}

#[test]
fn decode_payload_rejects_garbage() {
    assert!(matches!(decode_payload(b""), Err(PayloadError::Empty)));
    assert!(matches!(decode_payload(b"{\"id\": 1}"), Err(PayloadError::Json(_))));
    assert!(matches!(decode_payload(&[9, 1, 2]), Err(PayloadError::Binary(_))));
}
