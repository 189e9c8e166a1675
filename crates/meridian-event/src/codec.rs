//! Compact, versioned binary encoding of an event for the log.
//!
//! Layout: one version byte, then the postcard encoding of [`WireEvent`] (varints,
//! length-prefixed strings). `props` travel as their JSON text so the encoding stays
//! schema-free for them.

use crate::event::{Context, Event, Target};
use crate::ids::{Action, AppId, DeviceId, EventId, TargetType, UserId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Version byte written in front of every encoded event.
pub const CODEC_VERSION: u8 = 1;

/// Why bytes could not be decoded into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Empty input.
    #[error("empty event record")]
    Empty,
    /// Version byte not understood by this build.
    #[error("unknown event encoding version {0}; this build reads version {CODEC_VERSION}")]
    UnknownVersion(u8),
    /// Bytes are not a valid encoding.
    #[error("corrupt event record: {0}")]
    Corrupt(String),
}

#[derive(Serialize, Deserialize)]
struct WireContext<'a> {
    city: Option<u32>,
    #[serde(borrow)]
    platform: Option<&'a str>,
    version: Option<&'a str>,
    channel: Option<&'a str>,
    page: Option<&'a str>,
    source: Option<&'a str>,
    session: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: &'a str,
    app: &'a str,
    user: Option<&'a str>,
    device: Option<&'a str>,
    time: i64,
    received: i64,
    action: &'a str,
    target: Option<(&'a str, &'a str)>,
    context: WireContext<'a>,
    props: &'a str,
}

impl Event {
    /// Appends the encoding of this event to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // A map of JSON values with string keys: writing it cannot fail.
        let props = if self.props.is_empty() { String::new() } else { serde_json::to_string(&self.props).expect("JSON props always serialise") };
        let c = &self.context;
        let wire = WireEvent {
            id: self.id.as_str(),
            app: self.app.as_str(),
            user: self.user.as_ref().map(|u| u.as_str()),
            device: self.device.as_ref().map(|d| d.as_str()),
            time: self.time.0,
            received: self.received.0,
            action: self.action.as_str(),
            target: self.target.as_ref().map(|t| (t.kind.as_str(), t.id.as_str())),
            context: WireContext {
                city: c.city,
                platform: c.platform.as_deref(),
                version: c.version.as_deref(),
                channel: c.channel.as_deref(),
                page: c.page.as_deref(),
                source: c.source.as_deref(),
                session: c.session.as_deref(),
                ip: c.ip.as_deref(),
                user_agent: c.user_agent.as_deref(),
            },
            props: &props,
        };
        out.push(CODEC_VERSION);
        // Borrowed strings and integers into a growable Vec: postcard cannot fail here (it
        // fails only on a full fixed buffer or a sequence of unknown length).
        *out = postcard::to_extend(&wire, std::mem::take(out)).expect("an event always encodes into a Vec");
    }

    /// The encoding of this event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out);
        out
    }

    /// Decodes a log payload that is either the binary encoding or the JSON form of an
    /// event (routes may choose either; JSON starts with `{`, binary with the version byte).
    pub fn decode_any(bytes: &[u8]) -> Result<Event, DecodeError> {
        match bytes.first() {
            Some(b'{') => serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(format!("json event: {e}"))),
            _ => Event::decode(bytes),
        }
    }

    /// Decodes an event written by [`Event::encode`]. Every id is validated again, so a
    /// record that decodes is a valid event.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != CODEC_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (wire, tail): (WireEvent<'_>, &[u8]) = postcard::take_from_bytes(rest).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if !tail.is_empty() {
            return Err(DecodeError::Corrupt(format!("{} trailing bytes", tail.len())));
        }
        let corrupt = |e: crate::ids::IdError| DecodeError::Corrupt(e.to_string());
        let text = |s: Option<&str>| s.map(str::to_owned);
        let c = wire.context;
        let props = if wire.props.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(wire.props).map_err(|e| DecodeError::Corrupt(format!("props: {e}")))?
        };
        Ok(Event {
            id: EventId::new(wire.id).map_err(corrupt)?,
            app: AppId::new(wire.app).map_err(corrupt)?,
            user: wire.user.map(UserId::new).transpose().map_err(corrupt)?,
            device: wire.device.map(DeviceId::new).transpose().map_err(corrupt)?,
            time: Timestamp(wire.time),
            received: Timestamp(wire.received),
            action: Action::new(wire.action).map_err(corrupt)?,
            target: match wire.target {
                Some((kind, id)) => Some(Target { kind: TargetType::new(kind).map_err(corrupt)?, id: id.to_owned() }),
                None => None,
            },
            context: Context {
                city: c.city,
                platform: text(c.platform),
                version: text(c.version),
                channel: text(c.channel),
                page: text(c.page),
                source: text(c.source),
                session: text(c.session),
                ip: text(c.ip),
                user_agent: text(c.user_agent),
            },
            props,
        })
    }
}

/// The id of a payload Meridian writes to its log, read cheaply without decoding the rest:
/// the binary event encoding ([`CODEC_VERSION`] byte, then postcard, whose first field is
/// the id), or a JSON object with a top-level string field `"id"` (JSON events and other
/// JSON records such as notification requests). `None` for anything else, including a
/// JSON object whose `"id"` is missing or not a string.
///
/// The outbox of the processor runtime uses it to recognise records it already appended.
pub fn payload_id(bytes: &[u8]) -> Option<Cow<'_, str>> {
    match *bytes.first()? {
        CODEC_VERSION => postcard::take_from_bytes::<&str>(&bytes[1..]).ok().map(|(id, _)| Cow::Borrowed(id)),
        crate::erasure::ERASURE_TAG => serde_json::from_slice::<JsonId<'_>>(&bytes[1..]).ok().and_then(|record| record.id),
        _ if bytes.trim_ascii_start().first() == Some(&b'{') => {
            serde_json::from_slice::<JsonId<'_>>(bytes).ok().and_then(|record| record.id)
        }
        _ => None,
    }
}

/// The top-level `"id"` of a JSON record; other fields are skipped.
#[derive(Deserialize)]
struct JsonId<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Event {
        Event {
            id: EventId::new("e-1").unwrap(),
            app: AppId::new("shop").unwrap(),
            user: Some(UserId::new("u-42").unwrap()),
            device: None,
            time: Timestamp(1_763_700_000_123),
            received: Timestamp(1_763_700_000_456),
            action: Action::new("view").unwrap(),
            target: Some(Target { kind: TargetType::new("sku").unwrap(), id: "100234".into() }),
            context: Context { city: Some(1), platform: Some("ios".into()), version: Some("10.2.1".into()), ..Context::default() },
            props: serde_json::json!({"price": 12.5, "tags": ["a", "b"]}).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn round_trip_and_compact() {
        let event = sample();
        let bytes = event.encode();
        assert_eq!(Event::decode(&bytes).unwrap(), event);
        let json_len = serde_json::to_vec(&event).unwrap().len();
        assert!(bytes.len() * 2 < json_len, "binary {} vs json {json_len}", bytes.len());
    }

    #[test]
    fn encode_into_appends_to_the_callers_buffer_and_deep_props_round_trip() {
        let mut event = sample();
        // As deep as an event parsed from JSON can be (serde_json stops at 128 levels).
        let mut deep = serde_json::json!("leaf \u{1F600} \"quoted\"");
        for _ in 0..120 {
            deep = serde_json::json!({"k": deep, "n": [1.5e300, -0.0, u64::MAX]});
        }
        event.props = serde_json::json!({"deep": deep}).as_object().unwrap().clone();
        let mut out = b"earlier".to_vec();
        event.encode_into(&mut out);
        assert_eq!(&out[..7], b"earlier", "the buffer's earlier bytes are kept");
        assert!(out.len() > 7 + 120 * 8);
        assert_eq!(Event::decode(&out[7..]).unwrap(), event);
    }

    #[test]
    fn decode_any_reads_both_forms() {
        let event = sample();
        assert_eq!(Event::decode_any(&event.encode()).unwrap(), event);
        assert_eq!(Event::decode_any(&serde_json::to_vec(&event).unwrap()).unwrap(), event);
        assert!(Event::decode_any(b"{not json").is_err());
    }

    #[test]
    fn float_props_round_trip_exactly() {
        // Found by the event_binary fuzz target: without serde_json's float_roundtrip,
        // the shortest text of this f64 parsed back one ULP off, so the props of a
        // decoded event differed from what was encoded.
        let mut event = sample();
        for f in [1.844674407375501e142, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, -2.2250738585072014e-308] {
            event.props.insert("f".into(), serde_json::json!(f));
            let decoded = Event::decode(&event.encode()).unwrap();
            assert_eq!(decoded.props["f"].as_f64(), Some(f), "{f:e}");
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn rejects_bad_version_and_trailing_bytes() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(Event::decode(&bytes), Err(DecodeError::Corrupt(_))));
        bytes[0] = 9;
        assert!(matches!(Event::decode(&bytes), Err(DecodeError::UnknownVersion(9))));
        assert!(matches!(Event::decode(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn payload_id_reads_the_id_of_a_binary_event_without_decoding_the_rest() {
        let event = sample();
        let bytes = event.encode();
        let id = payload_id(&bytes).unwrap();
        assert_eq!(id, "e-1");
        assert!(matches!(id, Cow::Borrowed(_)), "no copy of the id");
        // Only the id is read: a record whose tail is damaged still yields it.
        let mut damaged = bytes.clone();
        damaged.truncate(1 + 1 + "e-1".len() + 2);
        assert_eq!(payload_id(&damaged).as_deref(), Some("e-1"));
        // An id cut short, and another version byte, are not read.
        assert_eq!(payload_id(&bytes[..3]), None);
        let mut other_version = bytes;
        other_version[0] = CODEC_VERSION + 1;
        assert_eq!(payload_id(&other_version), None);
    }

    #[test]
    fn payload_id_reads_the_id_of_a_json_event_and_of_other_json_records() {
        let event = sample();
        assert_eq!(payload_id(&serde_json::to_vec(&event).unwrap()).as_deref(), Some("e-1"));
        let request = br#" {"kind": "webhook", "attempt": {"id": 7}, "id": "notify:trigger:3:17", "body": {"id": "inner"}}"#;
        assert_eq!(payload_id(request).as_deref(), Some("notify:trigger:3:17"), "the top-level id, not a nested one");
        let escaped = br#"{"id": "a\"b\u00e9"}"#;
        assert_eq!(payload_id(escaped).as_deref(), Some("a\"b\u{e9}"), "escapes are decoded");
    }

    #[test]
    fn payload_id_is_none_for_garbage_empty_and_records_without_a_string_id() {
        assert_eq!(payload_id(b""), None);
        assert_eq!(payload_id(b"   "), None);
        assert_eq!(payload_id(b"hello"), None);
        assert_eq!(payload_id(&[0xff, 0x00, 0x13]), None);
        assert_eq!(payload_id(b"{not json"), None);
        assert_eq!(payload_id(br#"{"name": "no id"}"#), None);
        assert_eq!(payload_id(br#"{"id": 42}"#), None, "a numeric id is not an id");
        assert_eq!(payload_id(br#"{"id": null}"#), None);
        assert_eq!(payload_id(br#"["id", "x"]"#), None);
        assert_eq!(payload_id(br#"{"id": "x"} trailing"#), None);
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Event::decode(&bytes);
            let _ = payload_id(&bytes);
        }

        #[test]
        fn payload_id_agrees_with_the_decoder(id in "[a-zA-Z0-9:_-]{1,64}") {
            let mut event = sample();
            event.id = EventId::new(id.clone()).unwrap();
            let binary = event.encode();
            let json = serde_json::to_vec(&event).unwrap();
            prop_assert_eq!(payload_id(&binary).map(Cow::into_owned), Some(id.clone()));
            prop_assert_eq!(payload_id(&json).map(Cow::into_owned), Some(id));
        }

        #[test]
        fn decoder_never_panics_on_mutated_records(idx in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut bytes = sample().encode();
            let i = idx % bytes.len();
            bytes[i] = byte;
            let _ = Event::decode(&bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = Event::decode(&bytes);
        }

        #[test]
        fn round_trip_arbitrary_events(user in "[a-zA-Z0-9_-]{1,40}", action in "[a-z]{1,12}", time in 0i64..4_000_000_000_000, city in proptest::option::of(any::<u32>()), page in proptest::option::of(".{0,40}")) {
            let mut event = sample();
            event.user = Some(UserId::new(user).unwrap());
            event.action = Action::new(action).unwrap();
            event.time = Timestamp(time);
            event.context.city = city;
            event.context.page = page;
            prop_assert_eq!(Event::decode(&event.encode()).unwrap(), event);
        }
    }
}
