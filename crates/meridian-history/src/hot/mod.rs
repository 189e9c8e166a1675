//! The hot tier: recently active owners' histories with a TTL, behind one trait.
//!
//! Every operation is idempotent under the merge rule of [`crate::model::merge_entries`]
//! (latest time per SKU, newest first, at most N), so re-applying updates after a crash
//! is harmless. The API is batch-friendly: [`HotTier::record`] takes every owner touched
//! by a processor round at once so a networked backend can pipeline it.
//!
//! A hot list can carry a *complete* mark: the [`crate::cold::ColdGeneration`] in which
//! it was known to hold everything the cold tier holds for its owner (set by a promotion,
//! or by the processor when the owner had no cold history). Later records keep the mark,
//! because the processor writes every view to both tiers; it goes with the list (expiry,
//! eviction, removal). A read of a complete list skips the cold tier.

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
    /// `Some(g)`: after this update the list holds everything the cold tier holds for the
    /// owner, in cold generation `g` (replaces any earlier mark). `None`: an existing
    /// list keeps its mark, a new list has none.
    pub complete_in: Option<u32>,
}

impl OwnerUpdate {
    /// Views of `owner`, without a complete mark.
    pub fn views(owner: OwnerKey, entries: Vec<Entry>) -> OwnerUpdate {
        OwnerUpdate { owner, entries, complete_in: None }
    }
}

/// One owner's hot list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HotList {
    /// Entries, newest first.
    pub entries: Vec<Entry>,
    /// The cold generation in which the list was last marked complete, if any.
    pub complete_in: Option<u32>,
}

/// A hot-tier backend. See the module docs; [`crate::conformance::run_all`] is the
/// contract.
pub trait HotTier: Send + Sync + fmt::Debug {
    /// Sizing and expiry.
    fn config(&self) -> HotConfig;

    /// Merges views into each owner's list (latest time per SKU wins), trims it to N and
    /// sets the owner's expiry to `now_ms + ttl`. Owners absent or expired start empty.
    fn record(&self, updates: &[OwnerUpdate], now_ms: i64) -> Result<()>;

    /// The owner's list and its complete mark; `None` when the owner is not in the tier
    /// (never written, expired, evicted or removed).
    fn read(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<HotList>>;

    /// The owner's entries, newest first (see [`HotTier::read`]).
    fn get(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<Vec<Entry>>> {
        Ok(self.read(owner, now_ms)?.map(|l| l.entries))
    }

    /// Removes SKUs from an owner's list (absent ones are fine).
    fn remove_skus(&self, owner: OwnerKey, skus: &[u64]) -> Result<()>;

    /// Removes an owner entirely.
    fn remove_owner(&self, owner: OwnerKey) -> Result<()>;

    /// Frees what expired owners hold, now (reads already treat them as absent); returns
    /// how many owners were removed. Backends that expire entries themselves (Redis) do
    /// nothing and return 0.
    fn remove_expired(&self, _now_ms: i64) -> Result<u64> {
        Ok(0)
    }
}
