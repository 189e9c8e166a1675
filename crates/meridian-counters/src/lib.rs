//! Per-app event counters by action and day: the capability that proves the runtime end to
//! end (its counts must equal the events in the log, across crashes and replays).
//!
//! * [`config`]: the `[counters]` section.
//! * [`processor`]: [`CountersProcessor`], one count per (app, action, UTC day) in the
//!   state store, written in the runtime's batch with its positions.
//! * [`service`]: [`CountersService::app_counters`], the committed counts of an app.
//!
//! Invariant: counts are exactly the events of the log up to the processor's committed
//! positions. Counters hold no per-user data: a user erasure leaves them as they are.

pub mod config;
pub mod processor;
pub mod service;

pub use config::CountersConfig;
pub use processor::{CountersProcessor, COUNTERS_TABLE, PROCESSOR_NAME};
pub use service::{AppCounters, CountersService};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the counters service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
}
