//! The embedded hot tier: in-process, compact, with a memory budget.
//!
//! Layout: 64 shards, each a `Mutex<HashMap<key, Slot>>` keyed by the owner's 128-bit
//! hash (identity-hashed: the key already is a hash). A slot holds the entries packed as
//! 12 bytes each (`u64` SKU + `u32` seconds since 2020, little-endian) in a boxed slice
//! sorted newest first, plus the `u32` second of the last write (TTL and eviction).
//! Per owner that is 40 bytes in the table (+1 control byte, at most 87.5% load) and
//! 12 bytes per entry.
//!
//! When the accounted bytes exceed the budget, the shard over its share evicts its least
//! recently written owners (10% of its bytes at a time). Eviction loses nothing: the
//! history processor writes the cold tier through (it is the durable source of truth), so
//! an evicted owner is served from the cold tier and promoted again on its next read. An
//! optional listener sees every evicted owner (for callers that do not write through).

use crate::hot::{HotConfig, HotTier, OwnerUpdate};
use crate::model::{ms_to_secs, secs_to_ms, Entry, OwnerKey};
use crate::Result;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 64;
/// Bytes of one packed entry.
pub const ENTRY_BYTES: usize = 12;
/// Accounted bytes of one owner besides its entries: the table slot (16-byte key +
/// 24-byte slot), its control byte, and the load-factor slack.
pub const OWNER_OVERHEAD_BYTES: usize = 48;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(u64, u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1.rotate_left(17));
    }
}

#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Table = HashMap<Key, Slot, BuildHasherDefault<IdentityHasher>>;

struct Slot {
    entries: Box<[[u8; ENTRY_BYTES]]>,
    last_write: u32,
}

fn pack(sku: u64, secs: u32) -> [u8; ENTRY_BYTES] {
    let mut b = [0u8; ENTRY_BYTES];
    b[..8].copy_from_slice(&sku.to_le_bytes());
    b[8..].copy_from_slice(&secs.to_le_bytes());
    b
}

fn unpack(b: &[u8; ENTRY_BYTES]) -> (u64, u32) {
    let mut sku = [0u8; 8];
    sku.copy_from_slice(&b[..8]);
    let mut secs = [0u8; 4];
    secs.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(sku), u32::from_le_bytes(secs))
}

fn split(owner: OwnerKey) -> Key {
    Key((owner.0 >> 64) as u64, owner.0 as u64)
}

fn join(key: Key) -> OwnerKey {
    OwnerKey((u128::from(key.0) << 64) | u128::from(key.1))
}

fn slot_bytes(slot: &Slot) -> usize {
    slot.entries.len() * ENTRY_BYTES + OWNER_OVERHEAD_BYTES
}

/// Called with each evicted owner and its entries.
pub type EvictionListener = Box<dyn Fn(OwnerKey, Vec<Entry>) + Send + Sync>;

struct Shard {
    table: Table,
    bytes: usize,
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
    /// Heap bytes: table capacity × (slot + control byte) + packed entries.
    pub heap_bytes: usize,
    /// Owners evicted so far.
    pub evicted: u64,
}

impl EmbeddedHotTier {
    /// A tier holding at most about `budget_bytes` (accounted as in the module docs).
    pub fn new(config: HotConfig, budget_bytes: usize) -> EmbeddedHotTier {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { table: Table::default(), bytes: 0 })).collect();
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

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        &self.shards[(key.0 >> 58) as usize % SHARDS]
    }

    fn expired(&self, slot: &Slot, now_ms: i64) -> bool {
        now_ms - secs_to_ms(slot.last_write) > self.config.ttl_ms
    }

    /// Counts and heap bytes.
    pub fn stats(&self) -> EmbeddedStats {
        let mut owners = 0;
        let mut heap_bytes = 0;
        for shard in &self.shards {
            let s = shard.lock();
            owners += s.table.len();
            heap_bytes += s.table.capacity() * (std::mem::size_of::<(Key, Slot)>() + 1);
        }
        let entries = self.entries.load(Ordering::Relaxed);
        heap_bytes += entries * ENTRY_BYTES;
        EmbeddedStats { owners, entries, heap_bytes, evicted: self.evicted.load(Ordering::Relaxed) }
    }

    /// Calls `f` with every live owner and its entries (newest first), shard by shard
    /// (each shard locked while it is visited); used to export or bulk-load the tier.
    pub fn for_each(&self, now_ms: i64, mut f: impl FnMut(OwnerKey, Vec<Entry>)) {
        for shard in &self.shards {
            let s = shard.lock();
            for (key, slot) in &s.table {
                if self.expired(slot, now_ms) {
                    continue;
                }
                let entries = slot
                    .entries
                    .iter()
                    .map(|b| {
                        let (sku, secs) = unpack(b);
                        Entry { sku, time_ms: secs_to_ms(secs) }
                    })
                    .collect();
                f(join(*key), entries);
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
            s.table.retain(|_, slot| {
                let keep = now_ms - secs_to_ms(slot.last_write) <= ttl;
                if !keep {
                    freed += slot_bytes(slot);
                    freed_entries += slot.entries.len();
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

    fn remove_slot(&self, shard: &mut Shard, key: Key) -> Option<Slot> {
        let slot = shard.table.remove(&key)?;
        let b = slot_bytes(&slot);
        shard.bytes -= b;
        self.bytes.fetch_sub(b, Ordering::Relaxed);
        self.entries.fetch_sub(slot.entries.len(), Ordering::Relaxed);
        Some(slot)
    }

    fn set_slot(&self, shard: &mut Shard, key: Key, slot: Slot) {
        let b = slot_bytes(&slot);
        let n = slot.entries.len();
        if let Some(old) = shard.table.insert(key, slot) {
            let ob = slot_bytes(&old);
            shard.bytes -= ob;
            self.bytes.fetch_sub(ob, Ordering::Relaxed);
            self.entries.fetch_sub(old.entries.len(), Ordering::Relaxed);
        }
        shard.bytes += b;
        self.bytes.fetch_add(b, Ordering::Relaxed);
        self.entries.fetch_add(n, Ordering::Relaxed);
    }

    fn merge_into(&self, shard: &mut Shard, key: Key, entries: &[Entry], now_ms: i64) {
        let now_secs = ms_to_secs(now_ms);
        let n = self.config.max_items;
        if entries.is_empty() {
            return;
        }
        let existing = match shard.table.get(&key) {
            Some(slot) if !self.expired(slot, now_ms) => Some(slot),
            _ => None,
        };
        let mut list: Vec<(u32, u64)> = Vec::with_capacity(existing.map_or(0, |s| s.entries.len()) + entries.len());
        if let Some(slot) = existing {
            list.extend(slot.entries.iter().map(|b| {
                let (sku, secs) = unpack(b);
                (secs, sku)
            }));
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
            if let Some(slot) = shard.table.get_mut(&key) {
                slot.last_write = slot.last_write.max(now_secs);
            }
            return;
        }
        list.sort_unstable_by(|a, b| b.cmp(a));
        list.truncate(n);
        let packed: Box<[[u8; ENTRY_BYTES]]> = list.iter().map(|(secs, sku)| pack(*sku, *secs)).collect();
        self.set_slot(shard, key, Slot { entries: packed, last_write: now_secs });
    }

    fn enforce_budget(&self, shard_index: usize, shard: &mut Shard) {
        let share = self.budget_bytes / SHARDS;
        if shard.bytes <= share || shard.table.is_empty() {
            return;
        }
        // Evict the least recently written owners until 10% under the share.
        let target = share - share / 10;
        let mut ages: Vec<(u32, Key)> = shard.table.iter().map(|(k, s)| (s.last_write, *k)).collect();
        ages.sort_unstable_by_key(|(t, _)| *t);
        let mut evicted = 0u64;
        for (_, key) in ages {
            if shard.bytes <= target {
                break;
            }
            if let Some(slot) = self.remove_slot(shard, key) {
                evicted += 1;
                if let Some(listener) = &self.listener {
                    let entries = slot
                        .entries
                        .iter()
                        .map(|b| {
                            let (sku, secs) = unpack(b);
                            Entry { sku, time_ms: secs_to_ms(secs) }
                        })
                        .collect();
                    listener(join(key), entries);
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
            let key = split(u.owner);
            let index = (key.0 >> 58) as usize % SHARDS;
            let mut shard = self.shards[index].lock();
            self.merge_into(&mut shard, key, &u.entries, now_ms);
            self.enforce_budget(index, &mut shard);
        }
        Ok(())
    }

    fn get(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<Vec<Entry>>> {
        let key = split(owner);
        let mut shard = self.shard(key).lock();
        let expired = match shard.table.get(&key) {
            None => return Ok(None),
            Some(slot) => self.expired(slot, now_ms),
        };
        if expired {
            self.remove_slot(&mut shard, key);
            return Ok(None);
        }
        let slot = &shard.table[&key];
        Ok(Some(
            slot.entries
                .iter()
                .map(|b| {
                    let (sku, secs) = unpack(b);
                    Entry { sku, time_ms: secs_to_ms(secs) }
                })
                .collect(),
        ))
    }

    fn remove_skus(&self, owner: OwnerKey, skus: &[u64]) -> Result<()> {
        let key = split(owner);
        let mut shard = self.shard(key).lock();
        let Some(slot) = shard.table.get(&key) else { return Ok(()) };
        let kept: Box<[[u8; ENTRY_BYTES]]> = slot.entries.iter().filter(|b| !skus.contains(&unpack(b).0)).copied().collect();
        if kept.len() != slot.entries.len() {
            let last_write = slot.last_write;
            self.set_slot(&mut shard, key, Slot { entries: kept, last_write });
        }
        Ok(())
    }

    fn remove_owner(&self, owner: OwnerKey) -> Result<()> {
        let key = split(owner);
        let mut shard = self.shard(key).lock();
        self.remove_slot(&mut shard, key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BASE_MS;
    use std::sync::Arc;

    fn views(owner: u128, skus: std::ops::Range<u64>, t: i64) -> OwnerUpdate {
        OwnerUpdate { owner: OwnerKey(owner), entries: skus.map(|s| Entry::new(s, t + s as i64 * 1000)).collect() }
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
        assert_eq!(tier.accounted_bytes(), 8 * ENTRY_BYTES + 2 * OWNER_OVERHEAD_BYTES);
        tier.remove_skus(OwnerKey(2), &[9]).unwrap();
        assert_eq!(tier.stats().entries, 7);
        tier.remove_owner(OwnerKey(1)).unwrap();
        assert_eq!(tier.accounted_bytes(), 4 * ENTRY_BYTES + OWNER_OVERHEAD_BYTES);
        assert_eq!(tier.purge_expired(BASE_MS + 2 * 86_400_000), 1);
        assert_eq!(tier.accounted_bytes(), 0);
    }

    #[test]
    fn over_budget_evicts_least_recently_written_owners_to_the_listener() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = seen.clone();
        // Budget for about 64 owners of 10 entries (168 bytes each).
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
}
