//! The query service: list (paged), count (cached), delete one, clear all.
//!
//! A read merges the hot tier with the cold tier, drops entries hidden by marks, and
//! promotes to the hot tier whatever only the cold tier had, marking the hot list
//! complete ([`crate::cold::ColdGeneration`]). The cold read is skipped when the hot list
//! is marked complete in the current generation or alone holds N visible entries. The
//! list is then walked newest first, looking SKUs up in the catalog `catalog_batch_size`
//! at a time, keeping the newest SKU of each SPU, skipping SKUs the catalog does not
//! know, and stopping at N items.

use meridian_catalog::{CatalogLookup, SkuInfo};
use crate::cold::{ColdGeneration, ColdTier, COLD_TABLE};
use crate::config::HistoryConfig;
use crate::hot::{HotTier, OwnerUpdate};
use crate::marks::Marks;
use crate::model::{merge_entries, parse_sku, Clock, Entry, Owner, OwnerKey};
use crate::processor::{CountInvalidator, HistoryProcessor, ProcessorConfig};
use crate::{Error, Result};
use meridian_log::TopicName;
use meridian_state::KvStore;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;

/// One shown history item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// SKU id.
    pub sku: u64,
    /// Its SPU.
    pub spu: u64,
    /// Name.
    pub name: Arc<str>,
    /// Image.
    pub image: Arc<str>,
    /// Last view, milliseconds since the epoch.
    pub viewed_ms: i64,
}

/// One page of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Items, newest first.
    pub items: Vec<Item>,
    /// Pass to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The query service (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct HistoryService {
    config: HistoryConfig,
    hot: Arc<dyn HotTier>,
    cold: ColdTier,
    generation: ColdGeneration,
    marks: Marks,
    catalog: Arc<dyn CatalogLookup>,
    clock: Arc<dyn Clock>,
    counts: CountInvalidator,
}

fn encode_cursor(e: &Entry) -> String {
    format!("h1.{:x}.{:x}", e.time_ms, e.sku)
}

fn decode_cursor(c: &str) -> Result<(i64, u64)> {
    let bad = || Error::InvalidCursor(c.chars().take(64).collect());
    let rest = c.strip_prefix("h1.").ok_or_else(bad)?;
    let (t, s) = rest.split_once('.').ok_or_else(bad)?;
    let t = i64::from_str_radix(t, 16).map_err(|_| bad())?;
    let s = u64::from_str_radix(s, 16).map_err(|_| bad())?;
    Ok((t, s))
}

impl HistoryService {
    /// A service over these tiers; the cold tier, its generation and the marks live in
    /// `store`.
    pub fn new(config: HistoryConfig, hot: Arc<dyn HotTier>, store: Arc<dyn KvStore>, catalog: Arc<dyn CatalogLookup>, clock: Arc<dyn Clock>) -> Result<HistoryService> {
        let counts = CountInvalidator::new(config.count_cache_capacity, config.count_cache_ttl());
        let generation = ColdGeneration::load(&*store)?;
        let cold = ColdTier::new(store.clone(), config.cold_ttl_ms());
        Ok(HistoryService { config, hot, cold, generation, marks: Marks::new(store), catalog, clock, counts })
    }

    /// The processor feeding this service (sharing its tiers, marks and count cache).
    pub fn processor(&self, topic: TopicName) -> HistoryProcessor {
        let mut config = ProcessorConfig::new(topic);
        config.max_items = self.config.max_items;
        HistoryProcessor::new(config, self.hot.clone(), self.cold.clone(), self.generation.clone(), self.marks.clone(), self.counts.clone(), self.clock.clone())
    }

    /// A rebuild of this service's cold tier from `topic` (same N and cold TTL).
    pub fn rebuild_config(&self, topic: TopicName) -> crate::rebuild::RebuildConfig {
        crate::rebuild::RebuildConfig { max_items: self.config.max_items, cold_ttl_ms: self.config.cold_ttl_ms(), ..crate::rebuild::RebuildConfig::new(topic) }
    }

    /// Rebuilds the cold tier from `log` ([`crate::rebuild`]) in a new cold generation:
    /// hot lists' complete marks are neither trusted nor set while it runs, and marks
    /// from before it no longer count after it. Reads and the processor keep going.
    pub fn rebuild(&self, log: &dyn meridian_log::Log, config: &crate::rebuild::RebuildConfig, now_ms: i64, progress: &mut dyn FnMut(u64, u64)) -> Result<crate::rebuild::RebuildReport> {
        let _suspended = self.generation.begin_rebuild(&**self.cold.store())?;
        crate::rebuild::rebuild_cold(log, self.cold.store(), config, now_ms, progress)
    }

    /// The configuration.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The count-cache invalidation handle.
    pub fn invalidator(&self) -> &CountInvalidator {
        &self.counts
    }

    /// The cold tier.
    pub fn cold(&self) -> &ColdTier {
        &self.cold
    }

    /// The marks.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    fn check_owner(owner: &Owner) -> Result<OwnerKey> {
        if owner.id.is_empty() || owner.id.len() > 128 {
            return Err(Error::InvalidOwner(format!("ids are 1-128 bytes, got {}", owner.id.len())));
        }
        Ok(owner.key())
    }

    /// The owner's visible entries (before SPU de-dup), newest first; promotes cold data.
    pub fn entries(&self, owner: &Owner) -> Result<Vec<Entry>> {
        let key = Self::check_owner(owner)?;
        let now = self.clock.now_ms();
        let n = self.config.max_items;
        // Read before the tiers: a rebuild that starts after this cannot make a mark
        // set with it count.
        let generation = self.generation.current();
        let marks = self.marks.get(key)?;
        let hot = match self.hot.read(key, now)? {
            Some(h) if generation.is_some() && h.complete_in == generation => {
                metrics::counter!("meridian_history_cold_reads_skipped_total").increment(1);
                let mut visible = h.entries;
                marks.filter(&mut visible);
                return Ok(visible);
            }
            // Marks only shrink a list: a shorter one cannot hold N visible entries.
            Some(h) if h.entries.len() >= n => {
                let mut visible = h.entries.clone();
                marks.filter(&mut visible);
                if visible.len() >= n {
                    metrics::counter!("meridian_history_cold_reads_skipped_total").increment(1);
                    return Ok(visible);
                }
                Some(h.entries)
            }
            other => other.map(|h| h.entries),
        };
        let cold = self.cold.get(key, now)?;
        let merged = match (&hot, &cold) {
            (None, None) => return Ok(Vec::new()),
            (Some(h), None) => h.clone(),
            (None, Some(c)) => c.clone(),
            (Some(h), Some(c)) => merge_entries([&h[..], &c[..]], n),
        };
        // Copy up what only the cold tier had, and mark the hot list complete so the next
        // read skips the cold tier (unless a rebuild runs: then the generation is None).
        let promote = cold.is_some() && hot.as_ref() != Some(&merged);
        if promote || (generation.is_some() && !merged.is_empty()) {
            self.hot.record(&[OwnerUpdate { owner: key, entries: merged.clone(), complete_in: generation }], now)?;
            if promote {
                metrics::counter!("meridian_history_promotions_total").increment(1);
            }
        }
        let mut visible = merged;
        marks.filter(&mut visible);
        Ok(visible)
    }

    /// Walks the visible entries newest first with catalog info, SPU de-duplicated,
    /// calling `visit` until it returns false or N items were visited.
    fn walk(&self, entries: &[Entry], mut visit: impl FnMut(&Entry, SkuInfo) -> bool) {
        let mut seen_spus = HashSet::new();
        let mut shown = 0;
        let batch = self.config.catalog_batch_size.max(1);
        for chunk in entries.chunks(batch) {
            let skus: Vec<u64> = chunk.iter().map(|e| e.sku).collect();
            let infos = self.catalog.lookup(&skus);
            for (e, info) in chunk.iter().zip(infos) {
                let Some(info) = info else {
                    metrics::counter!("meridian_history_unknown_sku_total").increment(1);
                    continue;
                };
                if !seen_spus.insert(info.spu) {
                    continue;
                }
                shown += 1;
                if !visit(e, info) || shown >= self.config.max_items {
                    return;
                }
            }
        }
    }

    /// A page of the owner's history, newest first. `limit` is 1..=N; `cursor` is a
    /// previous page's `next_cursor`. An unknown owner has an empty list.
    pub fn list(&self, owner: &Owner, limit: usize, cursor: Option<&str>) -> Result<Page> {
        if limit == 0 || limit > self.config.max_items {
            return Err(Error::InvalidLimit { limit, max: self.config.max_items });
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let entries = self.entries(owner)?;
        let mut items: Vec<(Entry, Item)> = Vec::with_capacity(limit + 1);
        self.walk(&entries, |e, info| {
            if let Some((t, s)) = after {
                if (e.time_ms, e.sku) >= (t, s) {
                    return true;
                }
            }
            items.push((*e, Item { sku: e.sku, spu: info.spu, name: info.name, image: info.image, viewed_ms: e.time_ms }));
            items.len() <= limit
        });
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(e, _)| encode_cursor(e))
        } else {
            None
        };
        Ok(Page { items: items.into_iter().map(|(_, i)| i).collect(), next_cursor })
    }

    /// min(distinct items after SPU de-dup and deletions, N), cached until the owner is
    /// written or deleted from.
    pub fn count(&self, owner: &Owner) -> Result<usize> {
        let key = Self::check_owner(owner)?;
        if let Some(c) = self.counts.cache.get(&key.0) {
            return Ok(c);
        }
        let entries = self.entries(owner)?;
        let mut count = 0;
        self.walk(&entries, |_, _| {
            count += 1;
            true
        });
        self.counts.cache.insert(key.0, count);
        Ok(count)
    }

    /// Deletes one SKU (given as its decimal id) from the owner's history.
    pub fn delete(&self, owner: &Owner, sku: &str) -> Result<()> {
        let key = Self::check_owner(owner)?;
        let sku = parse_sku(sku).ok_or_else(|| Error::InvalidSku(sku.chars().take(64).collect()))?;
        self.marks.delete(key, sku, self.clock.now_ms())?;
        self.hot.remove_skus(key, &[sku])?;
        self.counts.invalidate(key);
        Ok(())
    }

    /// Clears the owner's whole history (a clear mark hides everything viewed until now,
    /// in every tier, including cold data a rebuild writes later).
    pub fn clear(&self, owner: &Owner) -> Result<()> {
        let key = Self::check_owner(owner)?;
        self.marks.clear(key, self.clock.now_ms(), |batch| batch.delete(COLD_TABLE, ColdTier::key(key).to_vec()))?;
        self.hot.remove_owner(key)?;
        self.counts.invalidate(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let e = Entry { sku: 100_000_001, time_ms: 1_700_000_000_000 };
        assert_eq!(decode_cursor(&encode_cursor(&e)).unwrap(), (e.time_ms, e.sku));
        for bad in ["", "h1.", "h1.zz.1", "x.1.2", "h1.1", "h1.1.2.3"] {
            assert!(matches!(decode_cursor(bad), Err(Error::InvalidCursor(_))), "{bad:?}");
        }
    }
}
