//! Sources: message queues and directories Meridian consumes events from (NATS JetStream,
//! RabbitMQ, NDJSON/CSV files), declared in `[sources]` or added at run time.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A source: where to consume from and which app its events belong to. Fields that do not
/// concern its `kind` must be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Unique name (`[a-z0-9_-]`, 1–64): the consumer's durable name, and the `source` of
    /// its messages' origins.
    pub name: String,
    /// `nats`, `rabbitmq` or `file`.
    pub kind: String,
    /// The app its events are ingested for (the app's pipeline parsers apply).
    pub app: String,
    /// Server URL (`nats://…`, `amqp://…`); the local default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// NATS: the JetStream stream (created with `subjects` if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// NATS: the stream's subjects, when Meridian creates it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// NATS: seconds before an unacknowledged message is delivered again (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait_secs: Option<u64>,
    /// RabbitMQ: the queue (declared durable if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Files: the directory of `*.ndjson`, `*.jsonl` and `*.csv` files (tailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// What a source is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceState {
    /// Its runner is running.
    pub running: bool,
    /// Connected to its queue (or directory) now.
    pub connected: bool,
    /// Messages handed to the collector.
    pub messages_total: u64,
    /// Stored as new events.
    pub stored: u64,
    /// Recognised as already stored (a redelivery).
    pub duplicates: u64,
    /// Rejected and kept as dead letters (with their origin).
    pub dead_lettered: u64,
    /// Times the log refused a batch for now (retried, never dropped).
    pub overloaded: u64,
    /// Messages waiting in the queue, when the queue says.
    pub lag: Option<u64>,
    /// The last error, while it lasts.
    pub last_error: Option<String>,
    /// Over the last batches.
    pub events_per_second: f64,
}

/// A source with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceView {
    /// Its declaration.
    pub spec: SourceSpec,
    /// Declared in the config file (changed there, not through the API).
    pub from_config: bool,
    /// Paused by an operator (`POST /v1/admin/sources/{name}/pause`): not consuming, and
    /// still paused after a restart until resumed.
    #[serde(default)]
    pub paused: bool,
    /// What it is doing.
    pub state: SourceState,
    /// Lag and rate every 5 seconds over the last 10 minutes, oldest first (for charts).
    #[serde(default)]
    pub history: Vec<SourceSample>,
}

/// One sample of a source's lag and rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceSample {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Messages waiting in the queue, when the queue says.
    pub lag: Option<u64>,
    /// Events per second then.
    pub events_per_second: f64,
}

/// Every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceList {
    /// Sorted by name.
    pub sources: Vec<SourceView>,
}
