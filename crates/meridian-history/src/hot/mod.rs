//! The hot tier: recently active owners' histories with a TTL, behind one trait.
//!
//! Every operation is idempotent under the merge rule of [`crate::model::merge_entries`]
//! (latest time per SKU, newest first, at most N), so re-applying updates after a crash
//! is harmless. The API is batch-friendly: [`HotTier::record`] takes every owner touched
//! by a processor round at once so a networked backend can pipeline it.

use crate::model::{Entry, OwnerKey};
use crate::Result;
use std::fmt;

pub mod embedded;

/// Sizing and expiry of a hot tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotConfig {
    /// N: entries kept per owner.
    pub max_items: usize,
    /// An owner expires this long after its last write (record or promotion).
    pub ttl_ms: i64,
}

impl Default for HotConfig {
    fn default() -> Self {
        HotConfig { max_items: 200, ttl_ms: 4 * 86_400_000 }
    }
}

/// New views of one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerUpdate {
    /// Owner.
    pub owner: OwnerKey,
    /// Views (any order; times normalised to whole seconds).
    pub entries: Vec<Entry>,
}

/// A hot-tier backend. See the module docs; [`crate::conformance::run_all`] is the
/// contract.
pub trait HotTier: Send + Sync + fmt::Debug {
    /// Sizing and expiry.
    fn config(&self) -> HotConfig;

    /// Merges views into each owner's list (latest time per SKU wins), trims it to N and
    /// sets the owner's expiry to `now_ms + ttl`. Owners absent or expired start empty.
    fn record(&self, updates: &[OwnerUpdate], now_ms: i64) -> Result<()>;

    /// The owner's entries, newest first; `None` when the owner is not in the tier (never
    /// written, expired, evicted or removed).
    fn get(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<Vec<Entry>>>;

    /// Copies entries read from the cold tier in (same merge as [`HotTier::record`]).
    fn put_promoted(&self, owner: OwnerKey, entries: &[Entry], now_ms: i64) -> Result<()> {
        self.record(&[OwnerUpdate { owner, entries: entries.to_vec() }], now_ms)
    }

    /// Removes SKUs from an owner's list (absent ones are fine).
    fn remove_skus(&self, owner: OwnerKey, skus: &[u64]) -> Result<()>;

    /// Removes an owner entirely.
    fn remove_owner(&self, owner: OwnerKey) -> Result<()>;
}
