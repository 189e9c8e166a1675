//! Property: `process` never panics, whatever JSON a client sends.

use crate::process_as;
use meridian_event::{Event, ValidationPolicy};
use meridian_pipeline::Pipeline;
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::OnceLock;

const KEYS: &[&str] = &[
    "id", "app", "user", "device", "time", "received", "action", "target", "type", "context", "city", "platform", "version", "props", "uid", "ts", "evt", "cityId", "sku_id",
    "ext", "page", "price", "shop", "screen", "channel", "x",
];

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipeline.toml");
        Pipeline::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (1_763_000_000i64..1_764_000_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9 /@.{}\":-]{0,24}".prop_map(Value::String),
        prop_oneof![Just("view"), Just("crash"), Just("order"), Just("1001"), Just("s1"), Just("2025-11-21 12:00:00"), Just("{\"city\": \"3\"}"), Just("{\"screen\": 1}")]
            .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<String, Value>>())),
        ]
    })
}

/// A value for a known field: mostly plausible, sometimes anything.
fn field(plausible: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.85, prop_oneof![12 => plausible.boxed(), 1 => json_value().boxed()])
}

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(values).prop_map(|s| Value::String(s.to_owned()))
}

/// Objects shaped like the events clients send (old and new field names), so that many
/// pass validation and reach the transformers and routes.
fn event_like() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        (1_763_600_000i64..1_763_700_000).prop_map(Value::from),
        (1_763_600_000_000i64..1_763_700_000_000).prop_map(Value::from),
        pick(&["2025-11-21 12:00:00", "2025-11-21T03:00:00Z", "1763690000", "soon"]),
    ];
    let target = prop_oneof![
        (pick(&["sku", "page", "shop", "Bad"]), prop_oneof![pick(&["1001", "1002", "2001", "9", ""]), (0i64..3000).prop_map(Value::from)])
            .prop_map(|(t, id)| serde_json::json!({"type": t, "id": id})),
        json_value(),
    ];
    let context = (
        prop::option::of(prop_oneof![(0i64..5).prop_map(Value::from), pick(&["1", "12", "x"])]),
        prop::option::of(pick(&["ios", "android"])),
        prop::option::of(pick(&["10.2.1", "latest"])),
        prop::option::of(pick(&["test", "store"])),
    )
        .prop_map(|(city, platform, version, channel)| {
            let mut c = Map::new();
            for (k, v) in [("city", city), ("platform", platform), ("version", version), ("channel", channel)] {
                if let Some(v) = v {
                    c.insert(k.to_owned(), v);
                }
            }
            Value::Object(c)
        });
    let props = prop_oneof![
        json_value(),
        pick(&["{\"screen\": \"home\", \"price\": 150}", "{\"debug\": true}", "{bad", "{\"shop\": \"s2\"}"]),
        (0i64..300).prop_map(|p| serde_json::json!({"price": p, "shop": "s1", "category": "a/b/c"})),
    ];
    (
        prop::sample::select(vec!["user", "uid", "device", "did"]),
        pick(&["u1", "d-9", "用户"]),
        prop::sample::select(vec!["action", "evt"]),
        field(pick(&["view", "order", "crash", "click", "pay", "Bad Action"])),
        prop::sample::select(vec!["time", "ts"]),
        field(time),
        field(target),
        field(context),
        field(props),
        field(pick(&["{\"page\": \"p\", \"city\": \"3\"}", "{\"junk\": 1}", "[1]"])),
        prop::option::weighted(0.1, (prop::sample::select(KEYS), json_value())),
    )
        .prop_map(|(who_key, who, action_key, action, time_key, time, target, context, props, ext, extra)| {
            let mut object = Map::new();
            object.insert(who_key.to_owned(), who);
            let optional = [(action_key, action), (time_key, time), ("target", target), ("context", context), ("props", props), ("ext", ext)];
            for (key, value) in optional {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            if let Some((key, value)) = extra {
                object.insert(key.to_owned(), value);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn process_never_panics(raw in prop_oneof![1 => json_value(), 3 => event_like()], app in prop::sample::select(vec!["shop", "shop", "shop", "mini", "other"])) {
        let p = pipeline();
        if let Ok(processed) = process_as(p, app, raw) {
            // An accepted event is a valid event: it validates again unchanged.
            let again = Event::from_json(processed.event.to_json(), &processed.event.app, processed.event.received, &ValidationPolicy::default(), || unreachable!("the event has an id"));
            prop_assert_eq!(again.as_ref(), Ok(&processed.event));
            // Whatever is accepted decodes back from every route.
            for routed in &processed.routes {
                prop_assert!(meridian_pipeline::decode_payload(&routed.payload).is_ok());
            }
        }
    }
}
