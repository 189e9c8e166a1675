//! The `[history]` config section: N, tiers, TTLs and purge interval, catalog batching,
//! count cache.

use crate::hot::HotConfig;
use meridian_config::{check, check_range, FieldError, Section};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the hot tier lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotTierKind {
    /// In this process, within `memory_mb`.
    #[default]
    Embedded,
    /// Redis sorted sets at `redis_url` under `redis_prefix`.
    Redis,
}

/// Settings of browsing history (DESIGN.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep browsing history at all.
    pub enabled: bool,
    /// N: distinct SKUs kept and shown per owner.
    pub max_items: usize,
    /// The hot tier's backend.
    pub hot: HotTierKind,
    /// Memory budget of the embedded hot tier, MiB (least recently written owners are
    /// evicted beyond it; the cold tier keeps everything).
    pub memory_mb: usize,
    /// Redis of the `redis` hot tier.
    pub redis_url: String,
    /// Key prefix of the `redis` hot tier.
    pub redis_prefix: String,
    /// Hot-tier TTL after an owner's last write, hours.
    pub hot_ttl_hours: u64,
    /// Cold-tier TTL after an owner's newest view, days (reads hide expired histories at
    /// once; the purge frees their space).
    pub cold_ttl_days: u64,
    /// Seconds between purges of expired histories (cold tier and the embedded hot tier).
    pub purge_interval_secs: u64,
    /// SKUs per catalog lookup when filling a list.
    pub catalog_batch_size: usize,
    /// Owners whose count is cached.
    pub count_cache_capacity: u64,
    /// Longest a cached count is kept, seconds (also bounds staleness after tier expiry).
    pub count_cache_ttl_secs: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            max_items: 200,
            hot: HotTierKind::Embedded,
            memory_mb: 1024,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "meridian:history:".into(),
            hot_ttl_hours: 96,
            cold_ttl_days: 62,
            purge_interval_secs: 3600,
            catalog_batch_size: 50,
            count_cache_capacity: 100_000,
            count_cache_ttl_secs: 600,
        }
    }
}

impl HistoryConfig {
    /// Hot-tier TTL in milliseconds.
    pub fn hot_ttl_ms(&self) -> i64 {
        self.hot_ttl_hours as i64 * 3_600_000
    }

    /// Cold-tier TTL in milliseconds.
    pub fn cold_ttl_ms(&self) -> i64 {
        self.cold_ttl_days as i64 * 86_400_000
    }

    /// Time between purges of expired histories.
    pub fn purge_interval(&self) -> Duration {
        Duration::from_secs(self.purge_interval_secs)
    }

    /// Longest a cached count is kept.
    pub fn count_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.count_cache_ttl_secs)
    }

    /// Sizing and expiry of the hot tier.
    pub fn hot_config(&self) -> HotConfig {
        HotConfig { max_items: self.max_items, ttl_ms: self.hot_ttl_ms() }
    }

    /// Memory budget of the embedded hot tier in bytes.
    pub fn memory_budget_bytes(&self) -> usize {
        self.memory_mb << 20
    }
}

impl Section for HistoryConfig {
    const NAME: &'static str = "history";
    const SECRETS: &'static [&'static str] = &["redis_url"];

    fn validate(&self) -> Result<(), FieldError> {
        check_range("max_items", self.max_items, 1, 10_000)?;
        check_range("memory_mb", self.memory_mb, 1, 1 << 20)?;
        check_range("hot_ttl_hours", self.hot_ttl_hours, 1, 24 * 365)?;
        check_range("cold_ttl_days", self.cold_ttl_days, 1, 3650)?;
        check_range("purge_interval_secs", self.purge_interval_secs, 1, 7 * 86_400)?;
        check_range("catalog_batch_size", self.catalog_batch_size, 1, 10_000)?;
        check_range("count_cache_ttl_secs", self.count_cache_ttl_secs, 1, 86_400)?;
        check(self.hot != HotTierKind::Redis || self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"), "redis_url", || {
            format!("{:?} is not a Redis URL; use redis://host:port/db", self.redis_url)
        })?;
        check(self.hot_ttl_ms() <= self.cold_ttl_ms(), "hot_ttl_hours", || "the hot tier cannot outlive the cold tier; make it shorter than cold_ttl_days".into())
    }
}
