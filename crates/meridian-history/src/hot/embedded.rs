//! The embedded hot tier: in-process, compact, with a memory budget.
//!
//! Layout: 64 shards, each a `Mutex` over a `hashbrown::HashTable` of owner slots. A slot
//! is one boxed `u32` slice (a 16-byte fat pointer in the table, nothing else): a 6-word
//! header (the owner's 128-bit key, the `u32` second of the last write for TTL and
//! eviction, the layout bit with the complete mark above it) followed by the entries,
//! newest first, seconds since 2020:
//!
//! * narrow layout, when every SKU of the owner fits in a `u32` (the demo catalog's ids
//!   do): `(sku as u32, secs)`, 8 bytes per entry;
//! * wide layout otherwise (chosen per owner, on every write): `(sku low, sku high,
//!   secs)`, 12 bytes per entry.
//!
//! Per owner that is 24 bytes of header plus 17 bytes in the table (slot + control
//! byte, at most 87.5% load) and 8 (or 12) bytes per entry. The table holds nothing but
//! the pointer, so its empty buckets (power-of-two growth) cost 17 bytes each, not 41.
//!
//! When the accounted bytes exceed the budget, the shard over its share evicts its least
//! recently written owners (10% of its bytes at a time). Eviction loses nothing: the
//! history processor writes the cold tier through (it is the durable source of truth), so
//! an evicted owner is served from the cold tier and promoted again on its next read. An
//! optional listener sees every evicted owner (for callers that do not write through).

use crate::hot::{HotConfig, HotList, HotTier, OwnerUpdate};
use crate::model::{ms_to_secs, secs_to_ms, Entry, OwnerKey};
use crate::Result;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 64;
/// Bytes of one entry in the narrow layout (every SKU of the owner fits in a `u32`).
pub const NARROW_ENTRY_BYTES: usize = 8;
/// Bytes of one entry in the wide layout (some SKU of the owner exceeds `u32::MAX`).
pub const WIDE_ENTRY_BYTES: usize = 12;
/// Words of a slot's header: key (4), last write (1), layout and complete mark (1).
const HEADER_WORDS: usize = 6;
/// Accounted bytes of one owner's table slot: the 16-byte pointer and its control byte,
/// rounded up for the load-factor slack.
const TABLE_SLOT_BYTES: usize = 24;
/// Accounted bytes of one owner besides its entries: the slot header and the table slot.
pub const OWNER_OVERHEAD_BYTES: usize = HEADER_WORDS * 4 + TABLE_SLOT_BYTES;

const NARROW: u32 = 0;
const WIDE: u32 = 1;
/// Generations from here on are not marked (a rebuild a day would take a million years).
const MAX_MARKED_GENERATION: u32 = (1 << 30) - 1;

/// The header word of a layout and complete mark: bit 0 the layout, above it 0 for no
/// mark or the generation + 1.
fn layout_word(wide: bool, complete_in: Option<u32>) -> u32 {
    let mark = complete_in.filter(|g| *g <= MAX_MARKED_GENERATION).map_or(0, |g| (g + 1) << 1);
    mark | if wide { WIDE } else { NARROW }
}

fn hash_key(key: u128) -> u64 {
    ((key >> 64) as u64) ^ (key as u64).rotate_left(17)
}

/// One owner: header and packed entries in one allocation (see the module docs).
struct Slot(Box<[u32]>);

impl Slot {
    /// A slot of `list` (`(secs, sku)`, newest first), narrow when every SKU fits.
    fn build(key: u128, last_write: u32, list: &[(u32, u64)], complete_in: Option<u32>) -> Slot {
        let wide = list.iter().any(|(_, sku)| *sku > u64::from(u32::MAX));
        let width = if wide { 3 } else { 2 };
        let mut words = Vec::with_capacity(HEADER_WORDS + width * list.len());
        words.extend_from_slice(&[(key >> 96) as u32, (key >> 64) as u32, (key >> 32) as u32, key as u32, last_write, layout_word(wide, complete_in)]);
        for (secs, sku) in list {
            if wide {
                words.extend_from_slice(&[*sku as u32, (*sku >> 32) as u32, *secs]);
            } else {
                words.extend_from_slice(&[*sku as u32, *secs]);
            }
        }
        Slot(words.into_boxed_slice())
    }

    fn key(&self) -> u128 {
        let w = &self.0;
        (u128::from(w[0]) << 96) | (u128::from(w[1]) << 64) | (u128::from(w[2]) << 32) | u128::from(w[3])
    }

    fn last_write(&self) -> u32 {
        self.0[4]
    }

    fn set_last_write(&mut self, secs: u32) {
        self.0[4] = secs;
    }

    fn wide(&self) -> bool {
        self.0[5] & 1 == WIDE
    }

    fn complete_in(&self) -> Option<u32> {
        (self.0[5] >> 1).checked_sub(1)
    }

    fn set_complete_in(&mut self, complete_in: Option<u32>) {
        self.0[5] = layout_word(self.wide(), complete_in);
    }

    fn width(&self) -> usize {
        if self.wide() {
            3
        } else {
            2
        }
    }

    fn len(&self) -> usize {
        (self.0.len() - HEADER_WORDS) / self.width()
    }

    /// `(secs, sku)` pairs, newest first.
    fn pairs(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let wide = self.wide();
        self.0[HEADER_WORDS..].chunks_exact(self.width()).map(move |c| if wide { (c[2], u64::from(c[0]) | (u64::from(c[1]) << 32)) } else { (c[1], u64::from(c[0])) })
    }

    fn entries(&self) -> Vec<Entry> {
        self.pairs().map(|(secs, sku)| Entry { sku, time_ms: secs_to_ms(secs) }).collect()
    }

    /// Overwrites the entries in place if `list` has the same length and layout.
    fn overwrite(&mut self, last_write: u32, list: &[(u32, u64)]) -> bool {
        let wide = list.iter().any(|(_, sku)| *sku > u64::from(u32::MAX));
        if wide != self.wide() || list.len() != self.len() {
            return false;
        }
        self.0[4] = last_write;
        let width = self.width();
        for (c, (secs, sku)) in self.0[HEADER_WORDS..].chunks_exact_mut(width).zip(list) {
            if wide {
                c.copy_from_slice(&[*sku as u32, (*sku >> 32) as u32, *secs]);
            } else {
                c.copy_from_slice(&[*sku as u32, *secs]);
            }
        }
        true
    }

    /// Heap bytes of the allocation.
    fn heap_bytes(&self) -> usize {
        self.0.len() * 4
    }

    /// Accounted bytes (allocation + table slot).
    fn accounted(&self) -> usize {
        self.heap_bytes() + TABLE_SLOT_BYTES
    }
}

/// Called with each evicted owner and its entries.
pub type EvictionListener = Box<dyn Fn(OwnerKey, Vec<Entry>) + Send + Sync>;

struct Shard {
    table: HashTable<Slot>,
    bytes: usize,
}

impl Shard {
    fn get(&self, key: u128) -> Option<&Slot> {
        self.table.find(hash_key(key), |s| s.key() == key)
    }

    fn get_mut(&mut self, key: u128) -> Option<&mut Slot> {
        self.table.find_mut(hash_key(key), |s| s.key() == key)
    }
}

/// Buckets of a `HashTable` of this capacity (hashbrown: power of two, 7/8 load).
fn buckets_of(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        c if c < 8 => (c + 1).next_power_of_two(),
        c => (c * 8 / 7).next_power_of_two(),
    }
}

/// The embedded hot tier (see the module docs).
pub struct EmbeddedHotTier {
    config: HotConfig,
    shards: Vec<Mutex<Shard>>,
    budget_bytes: usize,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    evicted: AtomicU64,
    listener: Option<EvictionListener>,
}

impl fmt::Debug for EmbeddedHotTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedHotTier")
            .field("config", &self.config)
            .field("budget_bytes", &self.budget_bytes)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .field("evicted", &self.evicted.load(Ordering::Relaxed))
            .finish()
    }
}

/// Counts of an embedded hot tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Owners held.
    pub owners: usize,
    /// Entries held.
    pub entries: usize,
    /// Owners in the wide layout (some SKU above `u32::MAX`).
    pub wide_owners: usize,
    /// Heap bytes: table buckets × (16-byte slot + control byte) + every slot's
    /// allocation (header and packed entries), allocator overhead not included.
    pub heap_bytes: usize,
    /// Owners evicted so far.
    pub evicted: u64,
}

impl EmbeddedHotTier {
    /// A tier holding at most about `budget_bytes` (accounted as in the module docs).
    pub fn new(config: HotConfig, budget_bytes: usize) -> EmbeddedHotTier {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { table: HashTable::new(), bytes: 0 })).collect();
        EmbeddedHotTier {
            config,
            shards,
            budget_bytes,
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            listener: None,
        }
    }

    /// Calls `listener` with every evicted owner.
    pub fn with_eviction_listener(mut self, listener: EvictionListener) -> EmbeddedHotTier {
        self.listener = Some(listener);
        self
    }

    fn shard_index(key: u128) -> usize {
        (key >> 122) as usize % SHARDS
    }

    fn expired(&self, slot: &Slot, now_ms: i64) -> bool {
        now_ms - secs_to_ms(slot.last_write()) > self.config.ttl_ms
    }

    /// Counts and heap bytes.
    pub fn stats(&self) -> EmbeddedStats {
        let mut owners = 0;
        let mut wide_owners = 0;
        let mut heap_bytes = 0;
        for shard in &self.shards {
            let s = shard.lock();
            owners += s.table.len();
            let buckets = buckets_of(s.table.capacity());
            heap_bytes += buckets * (std::mem::size_of::<Slot>() + 1);
            for slot in s.table.iter() {
                heap_bytes += slot.heap_bytes();
                wide_owners += usize::from(slot.wide());
            }
        }
        let entries = self.entries.load(Ordering::Relaxed);
        EmbeddedStats { owners, entries, wide_owners, heap_bytes, evicted: self.evicted.load(Ordering::Relaxed) }
    }

    /// Calls `f` with every live owner and its entries (newest first), shard by shard
    /// (each shard locked while it is visited); used to export or bulk-load the tier.
    pub fn for_each(&self, now_ms: i64, mut f: impl FnMut(OwnerKey, Vec<Entry>)) {
        for shard in &self.shards {
            let s = shard.lock();
            for slot in s.table.iter() {
                if self.expired(slot, now_ms) {
                    continue;
                }
                f(OwnerKey(slot.key()), slot.entries());
            }
        }
    }

    /// Accounted bytes (what the budget is checked against).
    pub fn accounted_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Removes expired owners; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut s = shard.lock();
            let before = s.table.len();
            let mut freed = 0;
            let mut freed_entries = 0;
            let ttl = self.config.ttl_ms;
            s.table.retain(|slot| {
                let keep = now_ms - secs_to_ms(slot.last_write()) <= ttl;
                if !keep {
                    freed += slot.accounted();
                    freed_entries += slot.len();
                }
                keep
            });
            removed += before - s.table.len();
            s.bytes -= freed;
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            self.entries.fetch_sub(freed_entries, Ordering::Relaxed);
        }
        removed
    }

    fn remove_slot(&self, shard: &mut Shard, key: u128) -> Option<Slot> {
        let Ok(entry) = shard.table.find_entry(hash_key(key), |s| s.key() == key) else { return None };
        let (slot, _) = entry.remove();
        let b = slot.accounted();
        shard.bytes -= b;
        self.bytes.fetch_sub(b, Ordering::Relaxed);
        self.entries.fetch_sub(slot.len(), Ordering::Relaxed);
        Some(slot)
    }

    fn set_slot(&self, shard: &mut Shard, slot: Slot) {
        let b = slot.accounted();
        let n = slot.len();
        let key = slot.key();
        match shard.table.find_entry(hash_key(key), |s| s.key() == key) {
            Ok(mut entry) => {
                let old = std::mem::replace(entry.get_mut(), slot);
                let ob = old.accounted();
                shard.bytes -= ob;
                self.bytes.fetch_sub(ob, Ordering::Relaxed);
                self.entries.fetch_sub(old.len(), Ordering::Relaxed);
            }
            Err(_) => {
                shard.table.insert_unique(hash_key(key), slot, |s| hash_key(s.key()));
            }
        }
        shard.bytes += b;
        self.bytes.fetch_add(b, Ordering::Relaxed);
        self.entries.fetch_add(n, Ordering::Relaxed);
    }

    fn merge_into(&self, shard: &mut Shard, update: &OwnerUpdate, now_ms: i64) {
        let (key, entries) = (update.owner.0, &update.entries);
        let now_secs = ms_to_secs(now_ms);
        let n = self.config.max_items;
        if entries.is_empty() {
            return;
        }
        let existing = match shard.get(key) {
            Some(slot) if !self.expired(slot, now_ms) => Some(slot),
            _ => None,
        };
        let complete_in = update.complete_in.or_else(|| existing.and_then(Slot::complete_in));
        let mut list: Vec<(u32, u64)> = Vec::with_capacity(existing.map_or(0, Slot::len) + entries.len());
        if let Some(slot) = existing {
            list.extend(slot.pairs());
        }
        let mut changed = existing.is_none();
        for e in entries {
            let secs = e.secs();
            match list.iter_mut().find(|(_, sku)| *sku == e.sku) {
                Some(item) => {
                    if secs > item.0 {
                        item.0 = secs;
                        changed = true;
                    }
                }
                None => {
                    list.push((secs, e.sku));
                    changed = true;
                }
            }
        }
        if !changed {
            if let Some(slot) = shard.get_mut(key) {
                let last = slot.last_write().max(now_secs);
                slot.set_last_write(last);
                slot.set_complete_in(complete_in);
            }
            return;
        }
        list.sort_unstable_by(|a, b| b.cmp(a));
        list.truncate(n);
        if existing.is_some() {
            // Same length and layout (a re-view, or a full list): no new allocation.
            if let Some(slot) = shard.get_mut(key) {
                if slot.overwrite(now_secs, &list) {
                    slot.set_complete_in(complete_in);
                    return;
                }
            }
        }
        self.set_slot(shard, Slot::build(key, now_secs, &list, complete_in));
    }

    fn enforce_budget(&self, shard_index: usize, shard: &mut Shard) {
        let share = self.budget_bytes / SHARDS;
        if shard.bytes <= share || shard.table.is_empty() {
            return;
        }
        // Evict the least recently written owners until 10% under the share.
        let target = share - share / 10;
        let mut ages: Vec<(u32, u128)> = shard.table.iter().map(|s| (s.last_write(), s.key())).collect();
        ages.sort_unstable_by_key(|(t, _)| *t);
        let mut evicted = 0u64;
        for (_, key) in ages {
            if shard.bytes <= target {
                break;
            }
            if let Some(slot) = self.remove_slot(shard, key) {
                evicted += 1;
                if let Some(listener) = &self.listener {
                    listener(OwnerKey(key), slot.entries());
                }
            }
        }
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
        metrics::counter!("meridian_history_hot_evicted_total").increment(evicted);
        tracing::debug!(shard = shard_index, evicted, "hot tier over budget: evicted least recently written owners");
    }
}

impl HotTier for EmbeddedHotTier {
    fn config(&self) -> HotConfig {
        self.config
    }

    fn record(&self, updates: &[OwnerUpdate], now_ms: i64) -> Result<()> {
        for u in updates {
            let index = Self::shard_index(u.owner.0);
            let mut shard = self.shards[index].lock();
            self.merge_into(&mut shard, u, now_ms);
            self.enforce_budget(index, &mut shard);
        }
        Ok(())
    }

    fn read(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<HotList>> {
        let key = owner.0;
        let mut shard = self.shards[Self::shard_index(key)].lock();
        let expired = match shard.get(key) {
            None => return Ok(None),
            Some(slot) if !self.expired(slot, now_ms) => return Ok(Some(HotList { entries: slot.entries(), complete_in: slot.complete_in() })),
            Some(_) => true,
        };
        if expired {
            self.remove_slot(&mut shard, key);
        }
        Ok(None)
    }

    fn remove_skus(&self, owner: OwnerKey, skus: &[u64]) -> Result<()> {
        let key = owner.0;
        let mut shard = self.shards[Self::shard_index(key)].lock();
        let Some(slot) = shard.get(key) else { return Ok(()) };
        let kept: Vec<(u32, u64)> = slot.pairs().filter(|(_, sku)| !skus.contains(sku)).collect();
        if kept.len() != slot.len() {
            let rebuilt = Slot::build(key, slot.last_write(), &kept, slot.complete_in());
            self.set_slot(&mut shard, rebuilt);
        }
        Ok(())
    }

    fn remove_owner(&self, owner: OwnerKey) -> Result<()> {
        let key = owner.0;
        let mut shard = self.shards[Self::shard_index(key)].lock();
        self.remove_slot(&mut shard, key);
        Ok(())
    }

    fn remove_expired(&self, now_ms: i64) -> Result<u64> {
        Ok(self.purge_expired(now_ms) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BASE_MS;
    use std::sync::Arc;

    fn views(owner: u128, skus: std::ops::Range<u64>, t: i64) -> OwnerUpdate {
        OwnerUpdate::views(OwnerKey(owner), skus.map(|s| Entry::new(s, t + s as i64 * 1000)).collect())
    }

    #[test]
    fn passes_the_conformance_suite() {
        crate::conformance::run_all(&mut |config| Box::new(EmbeddedHotTier::new(config, 64 << 20)));
    }

    #[test]
    fn accounting_matches_contents() {
        let tier = EmbeddedHotTier::new(HotConfig { max_items: 5, ttl_ms: 86_400_000 }, 1 << 30);
        tier.record(&[views(1, 0..3, BASE_MS), views(2, 0..10, BASE_MS)], BASE_MS).unwrap();
        assert_eq!(tier.stats().entries, 3 + 5);
        let mut seen = Vec::new();
        tier.for_each(BASE_MS, |o, e| seen.push((o, e.len())));
        seen.sort_unstable();
        assert_eq!(seen, vec![(OwnerKey(1), 3), (OwnerKey(2), 5)]);
        assert_eq!(tier.accounted_bytes(), 8 * NARROW_ENTRY_BYTES + 2 * OWNER_OVERHEAD_BYTES);
        tier.remove_skus(OwnerKey(2), &[9]).unwrap();
        assert_eq!(tier.stats().entries, 7);
        tier.remove_owner(OwnerKey(1)).unwrap();
        assert_eq!(tier.accounted_bytes(), 4 * NARROW_ENTRY_BYTES + OWNER_OVERHEAD_BYTES);
        assert_eq!(tier.purge_expired(BASE_MS + 2 * 86_400_000), 1);
        assert_eq!(tier.accounted_bytes(), 0);
    }

    #[test]
    fn over_budget_evicts_least_recently_written_owners_to_the_listener() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = seen.clone();
        // Budget for about 168 owners of 10 entries (128 bytes each).
        let tier = EmbeddedHotTier::new(HotConfig { max_items: 10, ttl_ms: 86_400_000 }, 64 * 168 * 2)
            .with_eviction_listener(Box::new(move |owner, entries| sink.lock().push((owner, entries.len()))));
        for i in 0..2000u128 {
            let owner = i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            tier.record(&[views(owner, 0..10, BASE_MS)], BASE_MS + i as i64 * 1000).unwrap();
        }
        let stats = tier.stats();
        assert!(tier.accounted_bytes() <= 64 * 168 * 2, "{} bytes", tier.accounted_bytes());
        assert!(stats.evicted > 1000, "{stats:?}");
        assert_eq!(seen.lock().len() as u64, stats.evicted, "every eviction reported");
        assert!(seen.lock().iter().all(|(_, n)| *n == 10));
        // The most recently written owner survived.
        let last = 1999u128.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        assert!(tier.get(OwnerKey(last), BASE_MS + 2000 * 1000).unwrap().is_some());
    }

    #[test]
    fn owners_switch_between_narrow_and_wide_layouts_per_owner() {
        let tier = EmbeddedHotTier::new(HotConfig { max_items: 4, ttl_ms: 86_400_000 }, 1 << 30);
        let big = u64::from(u32::MAX) + 7;
        let t = BASE_MS + 10_000_000;
        let (narrow, mixed) = (OwnerKey(u128::MAX - 3), OwnerKey(5));
        tier.record(&[OwnerUpdate::views(narrow, vec![Entry::new(u64::from(u32::MAX), t), Entry::new(100_000_001, t - 1000)])], t).unwrap();
        tier.record(&[OwnerUpdate::views(mixed, vec![Entry::new(100_000_001, t - 3000), Entry::new(2, t - 2000)])], t).unwrap();
        assert_eq!(tier.stats().wide_owners, 0, "u32::MAX itself still fits");
        assert_eq!(tier.accounted_bytes(), 4 * NARROW_ENTRY_BYTES + 2 * OWNER_OVERHEAD_BYTES);
        // One SKU above u32::MAX turns only that owner wide; its older entries keep their ids.
        tier.record(&[OwnerUpdate::views(mixed, vec![Entry::new(big, t), Entry::new(u64::MAX, t - 500)])], t).unwrap();
        let stats = tier.stats();
        assert_eq!((stats.owners, stats.entries, stats.wide_owners), (2, 6, 1));
        assert_eq!(tier.accounted_bytes(), 2 * NARROW_ENTRY_BYTES + 4 * WIDE_ENTRY_BYTES + 2 * OWNER_OVERHEAD_BYTES);
        assert_eq!(
            tier.get(mixed, t).unwrap().unwrap(),
            vec![Entry::new(big, t), Entry::new(u64::MAX, t - 500), Entry::new(2, t - 2000), Entry::new(100_000_001, t - 3000)]
        );
        assert_eq!(tier.get(narrow, t).unwrap().unwrap(), vec![Entry::new(u64::from(u32::MAX), t), Entry::new(100_000_001, t - 1000)]);
        // In-place updates keep the layout; a re-view of a wide SKU moves it.
        tier.record(&[OwnerUpdate::views(mixed, vec![Entry::new(2, t + 1000)])], t + 1000).unwrap();
        assert_eq!(tier.get(mixed, t + 1000).unwrap().unwrap()[0], Entry::new(2, t + 1000));
        // Trimming pushes the big SKUs out: the owner goes back to the narrow layout.
        let newer: Vec<Entry> = (0..4u64).map(|i| Entry::new(10 + i, t + 5000 + i as i64 * 1000)).collect();
        tier.record(&[OwnerUpdate::views(mixed, newer)], t + 9000).unwrap();
        assert_eq!(tier.stats().wide_owners, 0);
        assert_eq!(tier.get(mixed, t + 9000).unwrap().unwrap().iter().map(|e| e.sku).collect::<Vec<_>>(), vec![13, 12, 11, 10]);
        // Removing the only big SKU also narrows.
        tier.record(&[OwnerUpdate::views(narrow, vec![Entry::new(big, t + 1000)])], t + 9000).unwrap();
        assert_eq!(tier.stats().wide_owners, 1);
        tier.remove_skus(narrow, &[big]).unwrap();
        assert_eq!(tier.stats().wide_owners, 0);
        assert_eq!(tier.get(narrow, t + 9000).unwrap().unwrap().len(), 2);
        let mut all = Vec::new();
        tier.for_each(t + 9000, |o, e| all.push((o, e.len())));
        all.sort_unstable();
        assert_eq!(all, vec![(mixed, 4), (narrow, 2)]);
        assert_eq!(tier.accounted_bytes(), 6 * NARROW_ENTRY_BYTES + 2 * OWNER_OVERHEAD_BYTES);
    }

    #[test]
    fn many_owners_in_one_shard_survive_table_growth() {
        let tier = EmbeddedHotTier::new(HotConfig { max_items: 3, ttl_ms: 86_400_000 }, 1 << 30);
        // Same top bits: all in one shard, forcing many rehashes of that table.
        let owners: Vec<OwnerKey> = (0..5000u128).map(|i| OwnerKey((7u128 << 122) | i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
        for (i, o) in owners.iter().enumerate() {
            let sku = if i % 7 == 0 { u64::MAX - i as u64 } else { i as u64 };
            tier.record(&[OwnerUpdate::views(*o, vec![Entry::new(sku, BASE_MS + 1000)])], BASE_MS).unwrap();
        }
        for (i, o) in owners.iter().enumerate() {
            let sku = if i % 7 == 0 { u64::MAX - i as u64 } else { i as u64 };
            assert_eq!(tier.get(*o, BASE_MS).unwrap(), Some(vec![Entry::new(sku, BASE_MS + 1000)]));
        }
        let stats = tier.stats();
        assert_eq!((stats.owners, stats.entries), (5000, 5000));
        assert_eq!(stats.wide_owners, 5000usize.div_ceil(7));
    }
}
