//! Processor runtime: log consumers that commit their position atomically with their state.
//!
//! Every processor runs on a thread of its own. A round reads the records after its
//! committed positions, hands each partition's records to [`Processor::process`], calls
//! [`Processor::end_of_round`] and the due timers, and commits everything they wrote
//! (state, timers, emitted records, erasure receipts) with the new positions in one
//! [`WriteBatch`](meridian_state::WriteBatch). So a crash neither loses nor double-counts.
//!
//! **Outbox.** Records a processor emits ([`ProcessContext::emit`]) are stored in the
//! round's batch and appended to their topic after the commit, in emission order (within
//! a topic; one append per topic and round). Each
//! carries a deterministic id; after a crash (or a failed round) the runtime appends a
//! pending record only if its id is not already in the log after the end offset it
//! recorded at its last successful append. Each emitted record reaches the log exactly once.
//!
//! **Erasure receipts.** [`ProcessContext::erasure_receipt`] records what a processor
//! removed for a user-erasure request, in the round's batch; [`Runtime::erasure_receipts`]
//! reads them back.

mod erasure;
mod outbox;
mod processor;
mod runtime;
#[cfg(feature = "testing")]
pub mod testing;

pub use outbox::Emit;
pub use processor::{schedule_timer, ProcessContext, Processor, Timer};
pub use runtime::{CrashPoint, PartitionStatus, ProcessorStatus, Runtime, RuntimeConfig};

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
    /// A processor emitted a record the outbox cannot guarantee exactly once.
    #[error("processor {processor} emitted record {id:?} that cannot be de-duplicated: {reason}")]
    InvalidEmit {
        /// Processor name.
        processor: String,
        /// The emitted id.
        id: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A value the runtime stored cannot be read back.
    #[error("corrupt runtime data in table {table} (for {owner}): {reason}; restore the state store from a backup")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Processor or erasure the value belongs to.
        owner: String,
        /// What is wrong.
        reason: String,
    },
    /// A processor failed on a batch.
    #[error("processor {processor} failed: {message}")]
    Processor {
        /// Processor name.
        processor: String,
        /// What went wrong.
        message: String,
    },
}
