//! Sources: Meridian consumes events from message queues and files it does not own.
//!
//! A [`Source`] reads messages from one backend (NATS JetStream in `meridian-sources-nats`,
//! RabbitMQ in `meridian-sources-rabbitmq`, a directory of files here: [`file::FileSource`];
//! Kafka later) and acknowledges them when told. A [`Sink`] is what makes them durable in
//! Meridian (the server implements it with the collector: parse → pipeline → log, duplicates
//! dropped by id, bad messages to dead letters). A [`runner::SourceRunner`] drives one source
//! into a sink: `next` → `deliver` → `ack` → repeat, reconnecting with backoff.
//!
//! This crate is a domain crate: no HTTP and no queue client (scripts/check-architecture.sh).
//!
//! # The contract
//!
//! - **At-least-once from the source.** A message that was not acknowledged is delivered
//!   again after a reconnect or a restart (perhaps in a later `next`, perhaps after the
//!   backend's redelivery timeout when the reader crashed); an acknowledged message is never
//!   delivered again.
//! - **A stable id per message** ([`SourceMessage::id`]): the same message has the same id
//!   every time it is delivered: `<stream>:<stream sequence>` for NATS, `<file name>:<byte
//!   offset>` for files, the AMQP `message_id` property for RabbitMQ (a producer should set
//!   it; without it the id is the SHA-256 of the payload, so two equal payloads count as one).
//! - **Ack only after durability.** The runner acks a message only after the sink answered
//!   for it: stored, recognised as a duplicate, or dead-lettered. A poison message is
//!   dead-lettered and acked like any other, so it never blocks the source.
//!
//! Together: every message reaches the sink at least once, and the sink drops the repeats by
//! id, so **each message is counted once** — across crashes of Meridian, reconnects and
//! redeliveries. The `conformance` suite ([`source_suite!`]) checks this for every source,
//! including a runner aborted between `deliver` and `ack` and restarted.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod conformance;
pub mod file;
pub mod memory;
pub mod runner;

pub use file::{FileSource, FileSourceConfig};
pub use memory::MemorySink;
pub use runner::{RunnerConfig, SourceRunner, SourceStatus, StatusHandle};

/// Result type of this crate.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Errors of a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's configuration cannot work; the message says what to change.
    #[error("source {source_name:?}: invalid configuration: {message}")]
    Config {
        /// Configured name of the source.
        source_name: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The backend cannot be reached (connection refused, authentication, timeout).
    #[error("source {source_name:?}: cannot connect: {message}")]
    Connect {
        /// Configured name of the source.
        source_name: String,
        /// What failed and what to do.
        message: String,
    },
    /// The backend or the source's own state failed while running; the runner reconnects.
    #[error("source {source_name:?}: {message}")]
    Backend {
        /// Configured name of the source.
        source_name: String,
        /// What failed.
        message: String,
    },
}

impl SourceError {
    /// A configuration error.
    pub fn config(source_name: &str, message: impl Into<String>) -> SourceError {
        SourceError::Config { source_name: source_name.to_owned(), message: message.into() }
    }

    /// A connection error.
    pub fn connect(source_name: &str, message: impl Into<String>) -> SourceError {
        SourceError::Connect { source_name: source_name.to_owned(), message: message.into() }
    }

    /// A runtime error of the backend.
    pub fn backend(source_name: &str, message: impl Into<String>) -> SourceError {
        SourceError::Backend { source_name: source_name.to_owned(), message: message.into() }
    }
}

/// Where a message came from: what a dead letter records and what an operator searches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Configured name of the source.
    pub source: String,
    /// Kind of source: `"nats"`, `"rabbitmq"` or `"file"` (one of [`KINDS`]).
    #[serde(deserialize_with = "deserialize_kind")]
    pub kind: &'static str,
    /// Subject (NATS), queue (RabbitMQ) or file path (file).
    pub location: String,
    /// JetStream stream sequence, the byte offset of the line in its file, or the RabbitMQ
    /// delivery tag (which numbers deliveries on one channel, not messages).
    pub offset: u64,
}

/// Every kind of source there is ([`Origin::kind`], [`Source::kind`]).
pub const KINDS: &[&str] = &["nats", "rabbitmq", "file", "kafka"];

fn deserialize_kind<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<&'static str, D::Error> {
    let kind = String::deserialize(deserializer)?;
    KINDS.iter().copied().find(|k| *k == kind).ok_or_else(|| serde::de::Error::custom(format!("unknown source kind {kind:?}; one of {KINDS:?}")))
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} source {:?} {} @ {}", self.kind, self.source, self.location, self.offset)
    }
}

/// An opaque value a source hands out with each message and takes back in [`Source::ack`].
/// Cheap to clone; only the source that made it knows what is inside.
#[derive(Clone)]
pub struct AckToken(Arc<dyn Any + Send + Sync>);

impl AckToken {
    /// Wraps a source's own acknowledgement data.
    pub fn new<T: Any + Send + Sync>(value: T) -> AckToken {
        AckToken(Arc::new(value))
    }

    /// The source's data, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckToken(..)")
    }
}

/// One message read from a source.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    /// The message body as the backend holds it (for files: the line without its newline,
    /// or for CSV the row as a JSON object of strings when it has the header's width).
    pub payload: Bytes,
    /// Where it came from.
    pub origin: Origin,
    /// A stable id for de-duplication: equal every time this message is delivered (see the
    /// crate docs for each backend).
    pub id: String,
    /// What [`Source::ack`] takes to acknowledge it.
    pub token: AckToken,
}

/// The id of a payload that has no id of its own: the hex SHA-256 of its bytes.
pub fn payload_id(payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(payload))
}

/// A reader of one backend (see the crate docs for the contract).
#[async_trait::async_trait]
pub trait Source: Send {
    /// Configured name of the source.
    fn name(&self) -> &str;

    /// Kind of source (`"nats"`, `"rabbitmq"`, `"file"`), as in [`Origin::kind`].
    fn kind(&self) -> &'static str;

    /// Up to `max` messages, waiting at most `wait` for the first; empty on timeout.
    /// Cancel-safe: a call dropped before it returns hands nothing out (the runner races
    /// it against its deliveries).
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<SourceMessage>>;

    /// Acknowledges messages handed out by this source, in the order they were handed
    /// out. Called only once the messages are durable in Meridian (stored, recognised as
    /// duplicates or dead-lettered); an acknowledged message is never delivered again.
    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<()>;

    /// Messages waiting in the backend, when it knows.
    async fn lag(&mut self) -> Option<u64>;

    /// Disconnects; messages handed out and not acknowledged go back to the backend to be
    /// delivered again.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// What became of one message handed to a [`Sink`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Durable in Meridian.
    Stored,
    /// Meridian already had a message with this id.
    Duplicate,
    /// Not an event (bad JSON, no parser match, invalid event): durable in the dead
    /// letters with its origin and this error code.
    DeadLettered {
        /// The dead letter's error code.
        code: String,
    },
}

/// Why a [`Sink`] stored nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Meridian is busy: nothing was stored; deliver the same messages again later.
    #[error("overloaded; retry after {retry_after:?}")]
    Overloaded {
        /// How long to wait first.
        retry_after: Duration,
    },
    /// Meridian failed (its log, its store); nothing can be assumed stored.
    #[error("sink failed: {0}")]
    Failed(String),
}

/// Where a runner hands messages: in the server, the collector.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Makes `messages` durable: one [`Delivery`] per message, in the same order, each
    /// true once this returns. On an error nothing is to be acknowledged.
    async fn deliver(&self, source: &str, messages: &[SourceMessage]) -> Result<Vec<Delivery>, SinkError>;
}
