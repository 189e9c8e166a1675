//! Fuzz target: the log payload decoders (`Event::decode`, `Event::decode_any`, the
//! pipeline's `decode_payload`) on arbitrary bytes. Never panics; every event that decodes
//! round-trips: decode(encode(e)) == e.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_event::Event;

fn round_trips(event: &Event, how: &str) {
    let bytes = event.encode();
    let again = Event::decode(&bytes).unwrap_or_else(|e| panic!("{how}: the encoding of a decoded event does not decode: {e}"));
    assert_eq!(&again, event, "{how}: decode(encode(e)) != e");
    assert_eq!(again.encode(), bytes, "{how}: encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::decode(data) {
        round_trips(&event, "decode");
    }
    if let Ok(event) = Event::decode_any(data) {
        round_trips(&event, "decode_any");
    }
    if let Ok(event) = meridian_pipeline::decode_payload(data) {
        round_trips(&event, "decode_payload");
    }
});
