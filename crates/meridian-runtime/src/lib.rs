//! Processor runtime: log consumers that commit their position atomically with their state.

pub mod builtin;
mod processor;
mod runtime;

pub use processor::{ProcessContext, Processor, Timer};
pub use runtime::{PartitionStatus, ProcessorStatus, Runtime, RuntimeConfig};

/// Result type of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Errors of the runtime and of processors.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] meridian_log::LogError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
    /// No processor has this name.
    #[error("unknown processor {0:?}")]
    UnknownProcessor(String),
    /// A processor registered twice.
    #[error("a processor named {0:?} is already registered")]
    DuplicateProcessor(String),
    /// A processor failed on a batch.
    #[error("processor {processor} failed: {message}")]
    Processor {
        /// Processor name.
        processor: String,
        /// What went wrong.
        message: String,
    },
}
