//! Fuzz target: the Segment message mapping (`meridian_collector::segment`) on arbitrary
//! JSON, followed by validation as the collector does it. Never panics; the mapped value
//! is an object for an object message, and an action derived from an event name is
//! `[a-z0-9_]`, at most 64 bytes, without leading, trailing or doubled underscores.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_collector::segment::{action_from_event_name, to_canonical, MESSAGE_TYPES};
use meridian_event::{AppId, Event, EventId, Timestamp, ValidationPolicy};

fn check_action(action: &str, name: &str) {
    assert!(action.len() <= 64, "{action:?} from {name:?}");
    assert!(action.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{action:?} from {name:?}");
    assert!(!action.starts_with('_') && !action.contains("__"), "{action:?} from {name:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        check_action(&action_from_event_name(name), name);
    }
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let app = AppId::new("fuzz").unwrap();
    let received = Timestamp(1_763_700_000_000);
    let kinds = [None].into_iter().chain(MESSAGE_TYPES.iter().map(|k| Some(*k)));
    for kind in kinds {
        let mapped = to_canonical(message.clone(), kind);
        if message.is_object() {
            assert!(mapped.is_object(), "{kind:?}: an object message maps to an object");
            if let Some(action) = mapped.get("action").and_then(|a| a.as_str()) {
                if kind == Some("track") || (kind.is_none() && message.get("type").and_then(|t| t.as_str()) == Some("track")) {
                    check_action(action, "track event");
                }
            }
        }
        let _ = Event::from_json(mapped, &app, received, &ValidationPolicy::default(), || EventId::new("generated").unwrap());
    }
});
