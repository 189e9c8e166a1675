//! Browsing history ("recently viewed"): per owner (user, or device for anonymous
//! visitors) the latest N distinct SKUs with the time of their last view.
//!
//! * [`hot`]: the hot tier trait ([`HotTier`]) for recently active owners, with TTL, and
//!   its embedded backend; the Redis backend lives in `meridian-history-redis`. Every
//!   backend passes [`conformance::run_all`].
//! * [`cold`]: the cold tier on the embedded KV store, the durable source of truth.
//! * [`marks`]: deletions (one SKU) and clear marks (everything viewed before a time).
//! * [`processor`]: the runtime processor turning `view`/`identify` events into updates.
//! * [`service`]: list / count / delete / clear.
//! * [`rebuild`]: the offline rebuild of the cold tier from the log (run through
//!   [`HistoryService::rebuild`], which moves the cold tier to a new generation).

pub mod codec;
pub mod config;
pub mod cold;
pub mod conformance;
pub mod hot;
pub mod marks;
pub mod model;
pub mod processor;
pub mod rebuild;
pub mod service;

pub use meridian_catalog::{CatalogLookup, InMemoryCatalog, SkuInfo};
pub use cold::{ColdGeneration, ColdTier, ColdWriteFence};
pub use hot::embedded::EmbeddedHotTier;
pub use hot::{HotConfig, HotList, HotTier, OwnerUpdate};
pub use marks::{Marks, OwnerMarks};
pub use model::{Clock, Entry, ManualClock, Owner, OwnerKey, OwnerKind, SystemClock};
pub use processor::{CountInvalidator, HistoryProcessor, ProcessorConfig, PROCESSOR_NAME};
pub use rebuild::{RebuildConfig, RebuildReport};
pub use config::{HistoryConfig, HotTierKind};
pub use service::{HistoryService, Item, Page, PurgeReport};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the history subsystem. Variant names are stable: the HTTP layer maps them
/// to status codes (`Invalid*` → 400, `Backend`/`State`/`Log` → 503/500).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `limit` is outside `1..=N`.
    #[error("invalid limit {limit}: use 1..={max}")]
    InvalidLimit {
        /// Requested limit.
        limit: usize,
        /// Largest accepted limit (N).
        max: usize,
    },
    /// The paging cursor is not one this service handed out.
    #[error("invalid cursor {0:?}: pass the next_cursor of a previous page unchanged")]
    InvalidCursor(String),
    /// A SKU id is not a non-negative decimal integer.
    #[error("invalid sku {0:?}: SKU ids are decimal integers")]
    InvalidSku(String),
    /// The owner id is empty or too long.
    #[error("invalid owner id: {0}")]
    InvalidOwner(String),
    /// A hot-tier backend (e.g. Redis) failed.
    #[error("hot tier error: {0}")]
    Backend(String),
    /// The KV store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] meridian_log::LogError),
}

impl From<Error> for meridian_runtime::RuntimeError {
    fn from(e: Error) -> Self {
        match e {
            Error::State(s) => meridian_runtime::RuntimeError::State(s),
            Error::Log(l) => meridian_runtime::RuntimeError::Log(l),
            other => meridian_runtime::RuntimeError::Processor { processor: processor::PROCESSOR_NAME.to_owned(), message: other.to_string() },
        }
    }
}
