//! Collecting events: what a request sends and the per-event report it gets back.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What happened to one event of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored durably.
    Accepted,
    /// Invalid; see the error (also written to the dead-letter topic).
    Rejected,
    /// Already accepted within the de-duplication window; not stored again.
    Duplicate,
    /// Dropped on purpose by a pipeline filter.
    Filtered,
}

/// A rejected event's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeError {
    /// Stable code (`invalid_timestamp`, `missing_field`…).
    pub code: String,
    /// Field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to do.
    pub message: String,
}

/// The outcome of one event, by its index in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventOutcome {
    /// Position in the request, from 0.
    pub index: usize,
    /// What happened.
    pub status: EventStatus,
    /// The event id (generated when the client sent none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

/// The per-event report of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestReport {
    /// Events stored.
    pub accepted: usize,
    /// Events rejected.
    pub rejected: usize,
    /// Events already stored earlier.
    pub duplicates: usize,
    /// Events dropped by a filter.
    pub filtered: usize,
    /// One entry per event, in request order.
    pub results: Vec<EventOutcome>,
}

/// The object an event acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetInput {
    /// Kind: `sku`, `spu`, `shop`, `page`…
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// One behaviour event as sent (DESIGN.md §3). Only `action` and one of `user`/`device`
/// are required; a pipeline may accept other shapes (aliases, legacy fields), so unknown
/// fields are allowed and each event is judged on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventInput {
    /// Client event id, used to drop retries (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Logged-in user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Anonymous device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Event time: epoch seconds or milliseconds, RFC 3339, or `YYYY-MM-DD HH:MM:SS ±zz:zz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub time: Option<serde_json::Value>,
    /// What happened: `view`, `click`, `order`, `crash`…
    pub action: String,
    /// The object acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInput>,
    /// Where: city, platform, version, channel, page, source, session, ip, user_agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<BTreeMap<String, serde_json::Value>>,
    /// Free attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<BTreeMap<String, serde_json::Value>>,
}

/// A request of `POST /v1/events`: one event or an array of them (or NDJSON lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventsBody {
    /// Several events.
    Many(Vec<EventInput>),
    /// One event.
    One(Box<EventInput>),
}

/// One Segment message (`track`, `page`, `screen`, `identify`, `group`, `alias`), as sent
/// by Segment's client libraries (https://segment.com/docs/connections/spec/).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentMessage {
    /// Message type (required inside a batch).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Logged-in user.
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Anonymous id.
    #[serde(rename = "anonymousId", default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Event name of a `track`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Page or screen name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Message id (used to drop retries).
    #[serde(rename = "messageId", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Time of the message (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
    /// Traits of an `identify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<BTreeMap<String, serde_json::Value>>,
    /// Context (app, device, os, page…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<BTreeMap<String, serde_json::Value>>,
}

/// Segment's `/v1/batch` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentBatch {
    /// The messages.
    pub batch: Vec<SegmentMessage>,
    /// The write key, for libraries that send it in the body.
    #[serde(rename = "writeKey", default, skip_serializing_if = "Option::is_none")]
    pub write_key: Option<String>,
}

/// One server-sent event of `GET /v1/streams/{topic}` (as a client library parses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    /// Positions after this event (`p0:o0,p1:o1,…`): send it back as `Last-Event-ID`.
    pub id: String,
    /// The event's action, or `erasure` for a user erasure.
    pub event: String,
    /// The event (or erasure) as JSON.
    pub data: String,
}
