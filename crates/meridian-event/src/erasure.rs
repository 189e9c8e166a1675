//! User erasure as a record of the log, and the entries a processor reads from it.
//!
//! `DELETE /v1/apps/{app}/users/{user}` appends an [`Erasure`] to the `events` topic with
//! the subject's id as partition key, so it lands after every earlier event of that
//! subject in the same partition. Processors meet it in order: state built from earlier
//! events is removed, later events build new state, and a replay of the log (a rebuild)
//! removes the data again. Encoding: [`ERASURE_TAG`], then the record as JSON.

use crate::codec::DecodeError;
use crate::event::Event;
use crate::ids::AppId;
use serde::{Deserialize, Serialize};

/// First byte of an encoded erasure (neither `{` nor an event codec version).
pub const ERASURE_TAG: u8 = 0xE5;

/// Whose data is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A logged-in user (`user` of events).
    User,
    /// An anonymous device (`device` of events).
    Device,
}

impl SubjectKind {
    /// `user` or `device`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Device => "device",
        }
    }
}

/// A request to remove everything kept about one user (or device) of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// Unique id (receipts are filed under it).
    pub id: String,
    /// The app.
    pub app: AppId,
    /// User or device.
    pub kind: SubjectKind,
    /// The user's (or device's) id.
    pub subject: String,
    /// When it was requested, ms since the epoch.
    pub requested_ms: i64,
    /// Who requested it (an audit actor).
    pub requested_by: String,
}

impl Erasure {
    /// The log payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ERASURE_TAG];
        serde_json::to_writer(&mut out, self).expect("an erasure (strings and integers) always encodes as JSON");
        out
    }

    /// The partition key: the subject's id, as events of that subject use.
    pub fn partition_key(&self) -> &str {
        &self.subject
    }
}

/// What a processor reads from the `events` topic. Events are by far the most common
/// entry, so they are not boxed.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum LogEntry {
    /// A behaviour event.
    Event(Event),
    /// A user erasure.
    Erasure(Erasure),
}

impl LogEntry {
    /// Decodes a payload: an erasure, or an event in its binary or JSON form.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, DecodeError> {
        match bytes.first() {
            Some(&ERASURE_TAG) => serde_json::from_slice(&bytes[1..]).map(LogEntry::Erasure).map_err(|e| DecodeError::Corrupt(format!("erasure record: {e}"))),
            _ => Event::decode_any(bytes).map(LogEntry::Event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasures_and_events_decode_apart() {
        let erasure = Erasure {
            id: "er-1".into(),
            app: AppId::new("shop").unwrap(),
            kind: SubjectKind::User,
            subject: "u-1".into(),
            requested_ms: 1_700_000_000_000,
            requested_by: "master".into(),
        };
        let bytes = erasure.encode();
        assert_eq!(bytes[0], ERASURE_TAG);
        assert_eq!(LogEntry::decode(&bytes).unwrap(), LogEntry::Erasure(erasure.clone()));
        assert_eq!(crate::payload_id(&bytes).as_deref(), Some("er-1"), "the outbox and others can read its id");
        assert!(matches!(Event::decode_any(&bytes), Err(DecodeError::UnknownVersion(ERASURE_TAG))), "old readers refuse it rather than misread it");
        let mut broken = bytes.clone();
        broken.truncate(5);
        assert!(matches!(LogEntry::decode(&broken), Err(DecodeError::Corrupt(_))));
    }
}
