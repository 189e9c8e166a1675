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
use parking_lot::Mutex;
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

/// What a purge of expired histories removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Owners whose cold history was deleted.
    pub cold_owners: u64,
    /// Owners removed from the hot tier (0 for tiers that expire entries themselves).
    pub hot_owners: u64,
    /// False when it did not run because a rebuild of the cold tier was running.
    pub ran: bool,
}

/// Cold keys per scan and commit of a purge.
const PURGE_CHUNK: usize = 1000;

/// The query service (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct HistoryService {
    /// Held by a cold-tier rebuild and by a purge: they do not run at once (a purge could
    /// delete a value the rebuild just wrote for an owner it read as expired).
    maintenance: Mutex<()>,
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
        let marks = Marks::with_presence_filter(store)?;
        Ok(HistoryService { maintenance: Mutex::new(()), config, hot, cold, generation, marks, catalog, clock, counts })
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
        let _maintenance = self.maintenance.lock();
        let _suspended = self.generation.begin_rebuild(&**self.cold.store())?;
        crate::rebuild::rebuild_cold(log, self.cold.store(), config, now_ms, progress)
    }

    /// Frees what expired owners hold: cold histories whose newest view is older than the
    /// cold TTL (deleted in chunks, sparing owners the processor is writing) and expired
    /// hot-tier owners. Reads already hide both; this gives the space back. Skipped (and
    /// reported as not run) while a rebuild of the cold tier runs.
    pub fn purge_expired(&self) -> Result<PurgeReport> {
        let Some(_maintenance) = self.maintenance.try_lock() else { return Ok(PurgeReport::default()) };
        let now = self.clock.now_ms();
        let hot_owners = self.hot.remove_expired(now)?;
        let cold_owners = self.cold.purge_expired(now, PURGE_CHUNK)?;
        metrics::counter!("meridian_history_purged_owners_total", "tier" => "hot").increment(hot_owners);
        metrics::counter!("meridian_history_purged_owners_total", "tier" => "cold").increment(cold_owners);
        Ok(PurgeReport { cold_owners, hot_owners, ran: true })
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

    /// The owner's visible entries from the hot tier alone, when that is the whole answer
    /// and no store read is needed: the owner has no marks (known from memory) and its hot
    /// list is marked complete in the current cold generation or holds N entries. `None`
    /// when the store must be read ([`Self::entries`]). Touches the hot tier only.
    pub fn entries_in_memory(&self, owner: &Owner) -> Result<Option<Vec<Entry>>> {
        let key = Self::check_owner(owner)?;
        if self.marks.may_have_marks(key) {
            return Ok(None);
        }
        let generation = self.generation.current();
        let Some(h) = self.hot.read(key, self.clock.now_ms())? else { return Ok(None) };
        if (generation.is_some() && h.complete_in == generation) || h.entries.len() >= self.config.max_items {
            metrics::counter!("meridian_history_cold_reads_skipped_total").increment(1);
            return Ok(Some(h.entries));
        }
        Ok(None)
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
    fn walk(&self, app: &str, entries: &[Entry], mut visit: impl FnMut(&Entry, SkuInfo) -> bool) {
        let mut seen_spus = HashSet::new();
        let mut shown = 0;
        let batch = self.config.catalog_batch_size.max(1);
        for chunk in entries.chunks(batch) {
            let skus: Vec<u64> = chunk.iter().map(|e| e.sku).collect();
            let infos = self.catalog.lookup_in(app, &skus);
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
        let after = self.check_page(limit, cursor)?;
        let entries = self.entries(owner)?;
        Ok(self.page(&owner.app, &entries, limit, after))
    }

    /// [`Self::list`] when it needs no store read ([`Self::entries_in_memory`]); `None`
    /// when it does.
    pub fn list_in_memory(&self, owner: &Owner, limit: usize, cursor: Option<&str>) -> Result<Option<Page>> {
        let after = self.check_page(limit, cursor)?;
        Ok(self.entries_in_memory(owner)?.map(|entries| self.page(&owner.app, &entries, limit, after)))
    }

    fn check_page(&self, limit: usize, cursor: Option<&str>) -> Result<Option<(i64, u64)>> {
        if limit == 0 || limit > self.config.max_items {
            return Err(Error::InvalidLimit { limit, max: self.config.max_items });
        }
        cursor.map(decode_cursor).transpose()
    }

    fn page(&self, app: &str, entries: &[Entry], limit: usize, after: Option<(i64, u64)>) -> Page {
        let mut items: Vec<(Entry, Item)> = Vec::with_capacity(limit + 1);
        self.walk(app, entries, |e, info| {
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
        Page { items: items.into_iter().map(|(_, i)| i).collect(), next_cursor }
    }

    /// min(distinct items after SPU de-dup and deletions, N), cached until the owner is
    /// written or deleted from.
    pub fn count(&self, owner: &Owner) -> Result<usize> {
        if let Some(c) = self.cached_count(owner)? {
            return Ok(c);
        }
        let entries = self.entries(owner)?;
        Ok(self.count_of(&owner.app, owner.key(), &entries))
    }

    /// [`Self::count`] when it needs no store read (a cached count, or
    /// [`Self::entries_in_memory`]); `None` when it does.
    pub fn count_in_memory(&self, owner: &Owner) -> Result<Option<usize>> {
        if let Some(c) = self.cached_count(owner)? {
            return Ok(Some(c));
        }
        Ok(self.entries_in_memory(owner)?.map(|entries| self.count_of(&owner.app, owner.key(), &entries)))
    }

    fn cached_count(&self, owner: &Owner) -> Result<Option<usize>> {
        let key = Self::check_owner(owner)?;
        Ok(self.counts.cache.get(&key.0))
    }

    fn count_of(&self, app: &str, key: OwnerKey, entries: &[Entry]) -> usize {
        let mut count = 0;
        self.walk(app, entries, |_, _| {
            count += 1;
            true
        });
        self.counts.cache.insert(key.0, count);
        count
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
