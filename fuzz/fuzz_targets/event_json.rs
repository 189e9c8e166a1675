//! Fuzz target: `Event::from_json` on arbitrary JSON text, plus the time and zone parsers
//! it uses. Never panics; an accepted event is valid and round-trips through `to_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_event::{AppId, Event, EventId, Timestamp, ValidationPolicy, ZoneOffset, MAX_STRING_LEN};

/// The server time of every event (2025-11-21T04:40:00Z).
const RECEIVED: Timestamp = Timestamp(1_763_700_000_000);

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Timestamp::parse_str(text, ZoneOffset(8 * 3600));
        if let Some(zone) = ZoneOffset::parse(text) {
            assert!(zone.0.abs() <= 18 * 3600 + 59 * 60, "zone {zone:?} from {text:?}");
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Some(time) = value.get("time") {
        let _ = Timestamp::parse_json(time, ZoneOffset(-5 * 3600));
    }
    let app = AppId::new("fuzz").unwrap();
    let policy = ValidationPolicy::default();
    let fallback = || EventId::new("generated").unwrap();
    let Ok(event) = Event::from_json(value, &app, RECEIVED, &policy, fallback) else { return };
    assert_eq!(event.app, app);
    assert_eq!(event.received, RECEIVED);
    assert!(event.user.is_some() || event.device.is_some(), "an accepted event has an identity");
    assert!(event.time.0 <= RECEIVED.0 + policy.max_future_ms && event.time.0 >= RECEIVED.0 - policy.max_past_ms, "time {:?} out of bounds", event.time);
    if let Some(target) = &event.target {
        assert!(!target.id.is_empty() && target.id.len() <= MAX_STRING_LEN);
    }
    let json = event.to_json();
    let again = Event::from_json(json.clone(), &app, RECEIVED, &policy, || EventId::new("other").unwrap())
        .unwrap_or_else(|e| panic!("an accepted event's own JSON is refused: {e:?}\n{json}"));
    assert_eq!(again, event, "to_json does not round-trip");
});
