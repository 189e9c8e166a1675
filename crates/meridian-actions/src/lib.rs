//! The user action system (DESIGN.md §4.4): per-user aggregations declared in config,
//! kept in daily buckets in each app's time zone, and what is derived from them in real
//! time — a profile with a lifecycle stage, segments with enter/exit records, and
//! triggers that fire exactly once per crossing.
//!
//! * [`config`]: the `[actions]` section; [`defs`]: what it compiles to (filters in the
//!   pipeline's condition language, conditions in [`expr`]'s).
//! * [`window`]: local days and windows; [`value`]: buckets, distinct sets, summaries.
//! * [`state`]: a user's stored fields; [`store`]: [`ProfileStore`] (embedded; Redis in
//!   `meridian-actions-redis`) and [`conformance`], the suite every backend passes.
//! * [`processor`]: [`ActionsProcessor`], one per isolation group; back-fills run inside
//!   it, driven by timers, so they commit with its positions.
//! * [`service`]: queries (one aggregation over a window, profiles, segments, exports),
//!   and back-fill requests.
//!
//! Invariants: every event of a user's partition up to the processor's committed
//! position is counted once in the user's buckets (a back-filled aggregation: once,
//! either by the back-fill, which reads below the position where the aggregation went
//! live, or by the live processor); an emitted segment change or trigger is in its topic
//! exactly once (the runtime's outbox, with ids derived from the cause); a store other
//! than the processor's own is written only after the round that computed the write has
//! committed (see [`store`]).

pub mod config;
pub mod conformance;
pub mod defs;
pub mod expr;
pub mod hot;
pub mod processor;
pub mod recompute;
pub mod service;
pub mod state;
pub mod store;
pub mod value;
pub mod window;

pub use config::{ActionsConfig, AggregationKind, StoreKind};
pub use defs::Definitions;
pub use processor::{ActionsProcessor, ProcessorSettings};
pub use service::ActionsService;
pub use state::UserKey;
pub use store::{EmbeddedProfileStore, Fields, ProfileStore, UserWrite};

use chrono_tz::Tz;
use meridian_event::AppId;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the user action system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] meridian_log::LogError),
    /// The profile store's backend failed (e.g. Redis is unreachable).
    #[error("the profile store is unavailable: {0}")]
    Backend(String),
    /// Stored data cannot be read back.
    #[error("corrupt profile data: {0}")]
    Corrupt(String),
    /// No aggregation of that name.
    #[error("unknown aggregation {0:?}")]
    UnknownAggregation(String),
    /// No segment of that name.
    #[error("unknown segment {0:?}")]
    UnknownSegment(String),
    /// A window that cannot be answered.
    #[error(transparent)]
    Window(#[from] window::WindowError),
    /// Not a valid user id.
    #[error("invalid user id {0:?}: user ids are 1-128 bytes without control characters")]
    InvalidUser(String),
    /// Too many users in one call.
    #[error("{got} users in one call; at most {limit}")]
    TooManyUsers {
        /// Asked.
        got: usize,
        /// Limit.
        limit: usize,
    },
    /// A back-fill or recompute cannot start now (one runs, or the aggregation is not live
    /// yet).
    #[error("{0}")]
    Backfill(String),
    /// The `[actions]` configuration is refused (names the field).
    #[error("invalid actions configuration: {0}")]
    Config(String),
    /// A masked export, but no `actions.mask_key` to mask with.
    #[error("masked exports need actions.mask_key; set it, or export with a key that may unmask (admin)")]
    MaskKeyMissing,
}

/// The time zone of each app (its days are the buckets' days).
pub trait AppZones: Send + Sync {
    /// `app`'s zone (UTC for an unknown app).
    fn zone(&self, app: &AppId) -> Tz;
}

/// Every app in one zone (tests, tools).
#[derive(Debug, Clone, Copy)]
pub struct FixedZone(pub Tz);

impl AppZones for FixedZone {
    fn zone(&self, _app: &AppId) -> Tz {
        self.0
    }
}

/// Processing time.
pub trait Clock: Send + Sync {
    /// Now, ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        meridian_event::Timestamp::now().millis()
    }
}

/// A clock tests set.
#[derive(Debug, Default)]
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Moves it to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Checks a user id given to a query.
pub fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
        return Err(Error::InvalidUser(user.chars().take(140).collect()));
    }
    Ok(())
}
