//! The `[listing]` config section (engine limits, price buckets, merging, page cache,
//! quality formula) and the per-category settings (interleaving, pins).

use crate::error::{ListingError, Result};
use crate::quality::{LiveAdjustment, QualityFormula};
use meridian_config::{check, check_range, FieldError, Section};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When the delta of a category is merged into a new base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// On the engine's merge thread (readers and writers go on meanwhile).
    #[default]
    Background,
    /// On the writer's thread, within the change that crossed the threshold.
    Inline,
    /// Only when [`crate::ListingEngine::merge_now`] is called.
    Manual,
}

/// How a page is produced from the filter bitmap; every plan yields the same sequence, only
/// the cost differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanChoice {
    /// Walk the pre-sorted order when the expected walk is short, else sort the matches.
    #[default]
    Auto,
    /// Always walk the pre-sorted order, testing membership in the filter bitmap.
    Walk,
    /// Always collect the matches and sort them (lazily, a chunk at a time).
    Sort,
}

/// Settings of the listing (DESIGN.md §4.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListingConfig {
    /// Serve category listings at all.
    pub enabled: bool,
    /// Deepest item reachable by page number (`page × size`); cursors go deeper.
    pub max_depth: u32,
    /// Largest page size.
    pub max_page_size: u32,
    /// Price bucket boundaries, cents, increasing: buckets are `[0, b0)`, `[b0, b1)`, …,
    /// `[b_last, ∞)`. They are the index's price bitmaps and the price-range facet.
    pub price_buckets: Vec<u64>,
    /// A category's delta is merged once it holds this many changes…
    pub merge_min_changes: u32,
    /// …or `base size / 128` changes if more, capped at this.
    pub merge_max_changes: u32,
    /// Where merges run.
    pub merge_mode: MergeMode,
    /// Seconds between runs of the server's `listing_merge_quiet` task, which merges the
    /// delta of every category that took no change since its previous run (so a delta
    /// below the thresholds above does not stay for ever); 0 turns it off.
    pub merge_quiet_secs: u64,
    /// Query plan (tests and benchmarks force one; `auto` in production).
    pub plan: PlanChoice,
    /// Threads building category indexes on load (0: the machine's parallelism).
    pub build_threads: usize,
    /// Seconds a cached page is fresh; after that it is refreshed (served stale meanwhile).
    pub cache_ttl_secs: u64,
    /// Pages other than first pages kept in the LRU.
    pub cache_capacity: usize,
    /// Shards of the LRU.
    pub cache_shards: usize,
    /// The quality formula of the batch job.
    pub quality: QualityFormula,
    /// The product-change topic the server's listing processor applies (price, stock,
    /// shelf, new and removed SKUs, quality); bulk loads are published to it too.
    pub topic: String,
    /// Items per shopper page (at most `max_page_size` are shown).
    pub page_size: u32,
    /// Seconds between runs of the quality job (scores from the catalog and the behaviour
    /// counted from the events topic).
    pub quality_interval_secs: u64,
    /// A score that moved less than this is not republished by the quality job.
    pub quality_min_change: f32,
    /// Make every render of a shopper page fail (tests and drills of the fallbacks; also
    /// switchable at run time by an admin).
    pub fail_backend: bool,
    /// A catalog file (NDJSON, one SKU per line, like a bulk load) loaded into `load_app`'s
    /// catalog when the server starts serving — again only when the file changed since it
    /// was last loaded (its size and modification time are remembered).
    pub load_file: Option<std::path::PathBuf>,
    /// The app `load_file` is loaded into.
    pub load_app: Option<String>,
    /// Lift scores live from recent behaviour (views, carts, orders of the events topic,
    /// decayed) between runs of the quality job; the lift is kept in memory only.
    pub live_adjustment: bool,
    /// How recent behaviour lifts a score.
    pub live: LiveAdjustment,
}

impl Default for ListingConfig {
    fn default() -> Self {
        ListingConfig {
            enabled: true,
            max_depth: 10_000,
            max_page_size: 200,
            price_buckets: vec![1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000],
            merge_min_changes: 4_096,
            merge_max_changes: 65_536,
            merge_mode: MergeMode::Background,
            merge_quiet_secs: 5,
            plan: PlanChoice::Auto,
            build_threads: 0,
            cache_ttl_secs: 60,
            cache_capacity: 100_000,
            cache_shards: 16,
            quality: QualityFormula::default(),
            topic: "products".into(),
            page_size: 24,
            quality_interval_secs: 600,
            quality_min_change: 0.01,
            fail_backend: false,
            load_file: None,
            load_app: None,
            live_adjustment: true,
            live: LiveAdjustment::default(),
        }
    }
}

impl ListingConfig {
    /// Time a cached page stays fresh.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// Index of the price bucket holding `price`.
    pub(crate) fn bucket_of(&self, price: u64) -> usize {
        self.price_buckets.partition_point(|&b| b <= price)
    }

    /// `(min, max)` of bucket `i`, `max` exclusive and `None` for the last.
    pub(crate) fn bucket_bounds(&self, i: usize) -> (u64, Option<u64>) {
        let min = if i == 0 { 0 } else { self.price_buckets[i - 1] };
        (min, self.price_buckets.get(i).copied())
    }

    pub(crate) fn n_buckets(&self) -> usize {
        self.price_buckets.len() + 1
    }

    /// Changes after which a category of `base_len` docs is merged.
    pub(crate) fn merge_threshold(&self, base_len: usize) -> u32 {
        let by_size = u32::try_from(base_len / 128).unwrap_or(u32::MAX);
        self.merge_min_changes.max(by_size.min(self.merge_max_changes))
    }

    /// [`Section::validate`] as a [`ListingError`].
    pub fn check(&self) -> Result<()> {
        self.validate().map_err(|e| ListingError::InvalidSettings { field: e.field, message: e.message })
    }
}

impl Section for ListingConfig {
    const NAME: &'static str = "listing";

    fn validate(&self) -> Result<(), FieldError> {
        check_range("max_depth", self.max_depth, 1, 1_000_000)?;
        check_range("max_page_size", self.max_page_size, 1, 10_000)?;
        check(self.price_buckets.len() <= 64, "price_buckets", || format!("{} boundaries; use at most 64", self.price_buckets.len()))?;
        check(self.price_buckets.windows(2).all(|w| w[0] < w[1]) && self.price_buckets.first() != Some(&0), "price_buckets", || {
            "boundaries must be positive and strictly increasing".into()
        })?;
        check_range("merge_min_changes", self.merge_min_changes, 1, 1 << 24)?;
        check_range("merge_max_changes", self.merge_max_changes, self.merge_min_changes, 1 << 24)?;
        check_range("build_threads", self.build_threads, 0, 256)?;
        check_range("cache_ttl_secs", self.cache_ttl_secs, 1, 86_400)?;
        check_range("cache_capacity", self.cache_capacity, 1, 100_000_000)?;
        check_range("cache_shards", self.cache_shards, 1, 1024)?;
        check(!self.topic.is_empty() && self.topic.len() <= 64 && self.topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "topic", || {
            format!("{:?} is not a topic name; use 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'", self.topic)
        })?;
        check_range("page_size", self.page_size, 1, 10_000)?;
        check_range("quality_interval_secs", self.quality_interval_secs, 1, 7 * 86_400)?;
        check(self.load_file.is_none() || self.load_app.is_some(), "load_app", || "name the app load_file is loaded into".into())?;
        if let Some(file) = &self.load_file {
            check(file.is_file(), "load_file", || format!("{} is not a file", file.display()))?;
        }
        for (field, x) in [("live.view", self.live.view), ("live.cart", self.live.cart), ("live.order", self.live.order), ("live.scale", self.live.scale), ("live.max_boost", self.live.max_boost)] {
            check(x.is_finite() && x >= 0.0, field, || format!("{x} is not a finite number ≥ 0"))?;
        }
        check(self.live.half_life_secs.is_finite() && self.live.half_life_secs > 0.0, "live.half_life_secs", || "must be a finite number > 0".into())?;
        check(self.quality_min_change.is_finite() && self.quality_min_change >= 0.0, "quality_min_change", || "must be a finite number ≥ 0".into())?;
        self.quality.validate()
    }
}

/// A SKU shown at a fixed position of a category's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// 0-based position in the whole listing (page 1's first item is 0).
    pub position: u32,
    /// The SKU.
    pub sku: u64,
}

/// Merchandising settings of one category (not inherited by its sub-categories).
///
/// Interleaving: when the next item would make more than `max_brand_run` consecutive items
/// of one brand (or `max_shop_run` of one shop), the engine takes instead the first of the
/// next `window` candidates (in sort order) that breaks no limit; if none of them does, it
/// takes the first candidate anyway. So a run exceeds k only when the window holds nothing
/// else — in particular when only one brand (shop) is left — or through a pinned item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CategorySettings {
    /// At most this many consecutive items of one brand (`None`: no limit).
    pub max_brand_run: Option<u32>,
    /// At most this many consecutive items of one shop (`None`: no limit).
    pub max_shop_run: Option<u32>,
    /// Candidates looked at to break a run.
    pub window: u32,
    /// Pinned SKUs. A pin is shown at its position when its SKU matches the query (else it
    /// is ignored); its SPU then appears nowhere else. Pins are not held back by
    /// interleaving but count in runs. A pin beyond the end of the listing is shown at the
    /// end. Positions are distinct.
    pub pins: Vec<Pin>,
}

impl Default for CategorySettings {
    fn default() -> Self {
        CategorySettings { max_brand_run: None, max_shop_run: None, window: 32, pins: Vec::new() }
    }
}

/// Most pins of one category.
pub const MAX_PINS: usize = 100;

impl CategorySettings {
    /// Checks ranges: runs ≥ 1, window 1..=256, at most [`MAX_PINS`] pins at distinct
    /// positions below `max_depth`.
    pub fn validate(&self, max_depth: u32) -> Result<()> {
        if self.max_brand_run == Some(0) {
            return Err(ListingError::settings("max_brand_run", "use at least 1"));
        }
        if self.max_shop_run == Some(0) {
            return Err(ListingError::settings("max_shop_run", "use at least 1"));
        }
        if !(1..=256).contains(&self.window) {
            return Err(ListingError::settings("window", format!("{} is out of range; use 1 to 256", self.window)));
        }
        if self.pins.len() > MAX_PINS {
            return Err(ListingError::settings("pins", format!("{} pins; use at most {MAX_PINS}", self.pins.len())));
        }
        let mut positions: Vec<u32> = self.pins.iter().map(|p| p.position).collect();
        positions.sort_unstable();
        if positions.windows(2).any(|w| w[0] == w[1]) {
            return Err(ListingError::settings("pins", "two pins share a position"));
        }
        if positions.last().is_some_and(|&p| p >= max_depth) {
            return Err(ListingError::settings("pins", format!("positions must be below max_depth {max_depth}")));
        }
        Ok(())
    }
}
