//! The frames of the long-lived client connection (`GET /v1/connect`, a WebSocket): what a
//! client sends and what the server answers. docs/connect.md is the protocol.

use crate::events::IngestReport;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Version of the protocol the server speaks (in [`Hello`]).
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close codes the server uses besides the standard 1000 (normal), 1001 (the
/// server is shutting down: reconnect and resend what was not acknowledged) and 1009 (a
/// frame over `max_frame_bytes`).
pub mod close {
    /// The request has no valid key (`invalid_key`, `unauthorized`).
    pub const UNAUTHORIZED: u16 = 4401;
    /// The key may not write to the app.
    pub const FORBIDDEN: u16 = 4403;
    /// The app does not exist.
    pub const UNKNOWN_APP: u16 = 4404;
    /// The request was refused for another reason (e.g. a master key without `?app=`).
    pub const BAD_REQUEST: u16 = 4400;
    /// Nothing (no frame, no pong) arrived within `idle_timeout_secs`.
    pub const IDLE_TIMEOUT: u16 = 4408;
}

/// A frame a client sends (a JSON text frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A batch of events, as the body of `POST /v1/events` would carry them.
    Events {
        /// The client's number for this batch (echoed in its `ack` or `error`). Unique
        /// among the batches the client has in flight; increasing by convention.
        batch: u64,
        /// The events (canonical JSON objects). Give each an `id`: a resend after a
        /// reconnect is then recognised as a duplicate instead of stored twice.
        #[schema(value_type = Vec<Object>)]
        events: Vec<serde_json::Value>,
    },
    /// An application-level ping (the server also answers WebSocket pings).
    Ping {
        /// Echoed in the `pong`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

/// Why the server asks a client to slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlowDownReason {
    /// The client has `max_in_flight_events` unacknowledged events: the server reads no
    /// further frame until acknowledgements free room.
    InFlightLimit,
    /// The event log is refusing appends for now; the server retries the batch itself.
    LogOverloaded,
}

/// A frame the server sends (a JSON text frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of a connection: the limits the client must respect.
    Hello(Hello),
    /// A batch is durable: one outcome per event, exactly as `POST /v1/events` reports.
    Ack {
        /// The client's batch number.
        batch: u64,
        /// The per-event report.
        #[serde(flatten)]
        report: IngestReport,
    },
    /// A frame was refused as a whole; none of its events was stored.
    Error {
        /// The batch, when the frame could be read far enough to know it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<u64>,
        /// Stable code: `malformed_frame`, `unsupported_frame`, `empty_batch`,
        /// `too_many_events`, `batch_over_in_flight_limit`, `internal`, or a close reason.
        code: String,
        /// What to do.
        message: String,
    },
    /// Send more slowly: nothing is dropped, but the server waits before reading more.
    SlowDown {
        /// Why.
        reason: SlowDownReason,
        /// Events of this connection not yet acknowledged.
        in_flight_events: usize,
        /// The connection's limit.
        max_in_flight_events: usize,
        /// How long the server waits before retrying, for `log_overloaded`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The answer to a `ping`.
    Pong {
        /// The ping's nonce.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

/// The limits of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The app the connection writes to.
    pub app: String,
    /// Largest frame the server reads; a larger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// Most events per `events` frame.
    pub max_batch_events: usize,
    /// Most unacknowledged events; beyond it the server stops reading (`slow_down`).
    pub max_in_flight_events: usize,
    /// The server pings this often.
    pub heartbeat_secs: u64,
    /// The connection is closed (4408) when nothing arrives for this long.
    pub idle_timeout_secs: u64,
}
