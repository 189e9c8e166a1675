//! Ingestion without HTTP: batch splitting, de-duplication, Segment mapping, dead letters.

pub mod body;
mod collector;
pub mod dedup;
pub mod segment;
pub mod split;

pub use collector::{
    BodyFormat, Collector, CollectorConfig, DeadLetter, EventOutcome, EventStatus, IngestReport, OutcomeError, ReplayReport, SourcedMessage, DEAD_LETTER_TOPIC,
};

/// Result type of this crate.
pub type Result<T, E = CollectorError> = std::result::Result<T, E>;

/// Errors that concern a whole request (per-event problems are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The batch has no events.
    #[error("the batch is empty; send at least one event")]
    EmptyBatch,
    /// The batch has more events than allowed.
    #[error("the batch has {count} events, the limit is {max}; split it into smaller batches")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// The body is not a JSON array, an object or NDJSON.
    #[error("{0}")]
    MalformedBody(String),
    /// The log cannot keep up; retry later.
    #[error("the event log cannot keep up; retry after {retry_after_secs} s")]
    Overloaded {
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// A request argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] meridian_log::LogError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
}
