//! The cold tier: every owner's history on the embedded KV store, the durable source of
//! truth (written in the processor's batch, committed with its log positions).
//!
//! Key: the owner's 16-byte hash, big-endian ([`OwnerKey::to_bytes`]); its first two
//! bytes are the spreading prefix (like the MD5-derived prefix of the source design), so
//! owners with similar ids do not crowd one key range. Value: [`crate::codec`]'s
//! delta-coded entry list, newest first (4–6 bytes per entry).
//!
//! TTL: an owner's cold history expires `ttl` after its newest view (checked at read;
//! [`ColdTier::purge_expired`], run periodically through
//! [`crate::HistoryService::purge_expired`], deletes expired keys). Using the newest view
//! time rather than a wall-clock write time makes the value a pure function of the events,
//! so replays and rebuilds produce the same bytes.
//!
//! The purge runs beside the processor, which may be writing a fresh value for an owner
//! the purge just read as expired (a view after two idle months). A [`ColdWriteFence`]
//! keeps it from deleting that value: the processor registers the owners of a round
//! before the round commits, and the purge drops registered owners from its deletions
//! and commits them while holding the fence, so a registration either comes first (the
//! owner is spared) or after the purge's commit (the processor's write lands after the
//! delete).

use crate::codec::{decode_entries, encode_entries};
use crate::model::{Entry, OwnerKey};
use crate::Result;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Table of cold histories.
pub const COLD_TABLE: &str = "history_cold";
/// Table of the history's small bookkeeping values.
pub const META_TABLE: &str = "history_meta";
/// Key of the cold generation in [`META_TABLE`] (`u32`, little-endian).
const GENERATION_KEY: &[u8] = b"cold_generation";

/// The cold tier's generation: what a hot list's "complete" mark refers to.
///
/// A hot list marked complete in generation `g` holds everything the cold tier holds for
/// its owner, so a read can skip the cold read. The processor keeps that true by writing
/// every view to both tiers; only a rebuild adds cold entries the hot tier never saw.
/// A rebuild therefore moves to a new generation (persisted before its first write, so
/// a crash mid-rebuild cannot revive old marks), and while it runs [`Self::current`] is
/// `None`: no mark is trusted or set.
#[derive(Debug, Clone)]
pub struct ColdGeneration {
    value: Arc<AtomicU32>,
    rebuilding: Arc<AtomicBool>,
}

impl ColdGeneration {
    /// The generation persisted in `store` (0 if none yet).
    pub fn load(store: &dyn KvStore) -> Result<ColdGeneration> {
        let value = store.get(META_TABLE, GENERATION_KEY)?.and_then(|b| <[u8; 4]>::try_from(&b[..]).ok()).map_or(0, u32::from_le_bytes);
        Ok(ColdGeneration { value: Arc::new(AtomicU32::new(value)), rebuilding: Arc::new(AtomicBool::new(false)) })
    }

    /// The generation in which complete marks count; `None` while a rebuild runs.
    pub fn current(&self) -> Option<u32> {
        if self.rebuilding.load(Ordering::Acquire) {
            return None;
        }
        Some(self.value.load(Ordering::Acquire))
    }

    /// Starts a rebuild: persists the next generation, then suspends marks until the
    /// guard drops.
    pub(crate) fn begin_rebuild(&self, store: &dyn KvStore) -> Result<RebuildGuard> {
        self.rebuilding.store(true, Ordering::Release);
        let guard = RebuildGuard { rebuilding: self.rebuilding.clone() };
        let next = self.value.load(Ordering::Acquire).wrapping_add(1);
        let mut batch = WriteBatch::new();
        batch.put(META_TABLE, GENERATION_KEY.to_vec(), next.to_le_bytes().to_vec());
        store.commit(batch)?;
        self.value.store(next, Ordering::Release);
        Ok(guard)
    }
}

/// Ends a rebuild's suspension of complete marks when dropped.
#[derive(Debug)]
pub(crate) struct RebuildGuard {
    rebuilding: Arc<AtomicBool>,
}

impl Drop for RebuildGuard {
    fn drop(&mut self) {
        self.rebuilding.store(false, Ordering::Release);
    }
}

/// Owners whose cold value the processor writes in a round that may not have committed
/// yet (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ColdWriteFence {
    rounds: Arc<Mutex<FenceRounds>>,
}

#[derive(Debug, Default)]
struct FenceRounds {
    /// Owners written in the round in progress.
    current: HashSet<OwnerKey>,
    /// Owners written in the round before: its commit comes after its end of round, so it
    /// is certainly done only once the next round ends.
    previous: HashSet<OwnerKey>,
}

impl ColdWriteFence {
    /// Registers owners whose cold value the round in progress writes (before the commit).
    pub fn writing(&self, owners: impl IntoIterator<Item = OwnerKey>) {
        self.rounds.lock().current.extend(owners);
    }

    /// Called at the end of every round: the round before it has committed by now.
    pub fn round_ended(&self) {
        let mut rounds = self.rounds.lock();
        rounds.previous = std::mem::take(&mut rounds.current);
    }
}

/// The cold tier (see the module docs).
#[derive(Debug, Clone)]
pub struct ColdTier {
    store: Arc<dyn KvStore>,
    ttl_ms: i64,
    /// Shared by clones: the processor's and the service's copies.
    fence: ColdWriteFence,
}

impl ColdTier {
    /// A cold tier in `store` whose histories expire `ttl_ms` after their newest view.
    pub fn new(store: Arc<dyn KvStore>, ttl_ms: i64) -> ColdTier {
        ColdTier { store, ttl_ms, fence: ColdWriteFence::default() }
    }

    /// The fence the processor registers its writes with (see the module docs).
    pub fn fence(&self) -> &ColdWriteFence {
        &self.fence
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The TTL in milliseconds.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The key of an owner.
    pub fn key(owner: OwnerKey) -> [u8; 16] {
        owner.to_bytes()
    }

    /// The encoded value of a list (newest first).
    pub fn encode(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + entries.len() * 5);
        encode_entries(entries, &mut out);
        out
    }

    /// Decodes a stored value and applies the TTL; corrupt values read as absent (and
    /// are counted).
    pub fn decode(&self, bytes: &[u8], now_ms: i64) -> Option<Vec<Entry>> {
        let Some(entries) = decode_entries(bytes) else {
            metrics::counter!("meridian_history_cold_corrupt_total").increment(1);
            tracing::warn!("undecodable cold history value; treating as absent");
            return None;
        };
        if self.expired(&entries, now_ms) {
            return None;
        }
        Some(entries)
    }

    /// True if a list's newest view is older than the TTL.
    pub fn expired(&self, entries: &[Entry], now_ms: i64) -> bool {
        entries.first().is_none_or(|e| now_ms - e.time_ms > self.ttl_ms)
    }

    /// The owner's committed cold history, `None` if absent or expired.
    pub fn get(&self, owner: OwnerKey, now_ms: i64) -> Result<Option<Vec<Entry>>> {
        Ok(self.store.get(COLD_TABLE, &Self::key(owner))?.and_then(|b| self.decode(&b, now_ms)))
    }

    /// Adds the write of an owner's list to `batch` (an empty list deletes the key).
    pub fn put(batch: &mut WriteBatch, owner: OwnerKey, entries: &[Entry]) {
        if entries.is_empty() {
            batch.delete(COLD_TABLE, Self::key(owner).to_vec());
        } else {
            batch.put(COLD_TABLE, Self::key(owner).to_vec(), Self::encode(entries));
        }
    }

    /// Deletes expired histories, `chunk` keys per scan and commit (so live reads and the
    /// processor are not held up), sparing owners the processor is writing (registered
    /// with [`Self::fence`]). Returns how many were deleted.
    pub fn purge_expired(&self, now_ms: i64, chunk: usize) -> Result<u64> {
        let chunk = chunk.max(1);
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                Some(k) => Bound::Excluded(&k[..]),
                None => Bound::Unbounded,
            };
            let rows = self.store.range(COLD_TABLE, start, Bound::Unbounded, chunk)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            let expired: Vec<&Vec<u8>> = rows.iter().filter(|(_, v)| self.decode(v, now_ms).is_none()).map(|(k, _)| k).collect();
            if !expired.is_empty() {
                let rounds = self.fence.rounds.lock();
                let mut batch = WriteBatch::new();
                for key in expired {
                    if OwnerKey::from_bytes(key).is_some_and(|o| rounds.current.contains(&o) || rounds.previous.contains(&o)) {
                        continue;
                    }
                    batch.delete(COLD_TABLE, key.clone());
                    removed += 1;
                }
                // Under the fence: see the module docs.
                self.store.commit(batch)?;
                drop(rounds);
            }
            if rows.len() < chunk {
                break;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BASE_MS;
    use meridian_state::MemoryStore;

    #[test]
    fn put_get_ttl_and_purge() {
        let cold = ColdTier::new(Arc::new(MemoryStore::new()), 62 * 86_400_000);
        let t = BASE_MS + 100_000_000_000;
        let (a, b) = (OwnerKey(1), OwnerKey(2));
        let mut batch = WriteBatch::new();
        ColdTier::put(&mut batch, a, &[Entry::new(5, t), Entry::new(4, t - 5000)]);
        ColdTier::put(&mut batch, b, &[Entry::new(5, t - 30 * 86_400_000)]);
        cold.store().commit(batch).unwrap();
        assert_eq!(cold.get(a, t).unwrap(), Some(vec![Entry::new(5, t), Entry::new(4, t - 5000)]));
        let later = t + 40 * 86_400_000;
        assert!(cold.get(a, later).unwrap().is_some());
        assert_eq!(cold.get(b, later).unwrap(), None, "62 days after the newest view it is gone");
        assert_eq!(cold.purge_expired(later, 1).unwrap(), 1);
        assert_eq!(cold.store().get(COLD_TABLE, &ColdTier::key(b)).unwrap(), None, "purged from disk");
        assert!(cold.store().get(COLD_TABLE, &ColdTier::key(a)).unwrap().is_some());
        let mut batch = WriteBatch::new();
        ColdTier::put(&mut batch, a, &[]);
        cold.store().commit(batch).unwrap();
        assert_eq!(cold.get(a, t).unwrap(), None, "empty list deletes");
    }

    #[test]
    fn the_purge_spares_owners_the_processor_writes_until_their_round_committed() {
        let cold = ColdTier::new(Arc::new(MemoryStore::new()), 86_400_000);
        let t = BASE_MS + 100_000_000_000;
        let owners: Vec<OwnerKey> = (1..=4u128).map(OwnerKey).collect();
        let mut batch = WriteBatch::new();
        for o in &owners {
            ColdTier::put(&mut batch, *o, &[Entry::new(5, t)]);
        }
        cold.store().commit(batch).unwrap();
        let later = t + 2 * 86_400_000;
        // The processor's copy registers owner 1 in a round, owner 2 in the next one.
        let processor_copy = cold.clone();
        processor_copy.fence().writing([owners[0]]);
        processor_copy.fence().round_ended();
        processor_copy.fence().writing([owners[1]]);
        assert_eq!(cold.purge_expired(later, 2).unwrap(), 2, "owners 3 and 4 only");
        let present = |o: OwnerKey| cold.store().get(COLD_TABLE, &ColdTier::key(o)).unwrap().is_some();
        assert!(present(owners[0]) && present(owners[1]) && !present(owners[2]) && !present(owners[3]));
        processor_copy.fence().round_ended();
        assert_eq!(cold.purge_expired(later, 2).unwrap(), 1, "owner 1's round is committed: the next round ended");
        processor_copy.fence().round_ended();
        assert_eq!(cold.purge_expired(later, 2).unwrap(), 1);
        assert!(!present(owners[1]));
    }

    #[test]
    fn corrupt_values_read_as_absent() {
        let cold = ColdTier::new(Arc::new(MemoryStore::new()), 1000);
        let mut batch = WriteBatch::new();
        batch.put(COLD_TABLE, ColdTier::key(OwnerKey(9)).to_vec(), vec![1, 5, 0]);
        cold.store().commit(batch).unwrap();
        assert_eq!(cold.get(OwnerKey(9), BASE_MS).unwrap(), None);
    }

    #[test]
    fn generation_is_persisted_before_a_rebuild_and_suspended_while_it_runs() {
        let store = MemoryStore::new();
        let generation = ColdGeneration::load(&store).unwrap();
        let shared = generation.clone();
        assert_eq!(generation.current(), Some(0), "a new store starts at 0");
        let running = generation.begin_rebuild(&store).unwrap();
        assert_eq!(shared.current(), None, "no mark counts while a rebuild runs, in every clone");
        assert_eq!(ColdGeneration::load(&store).unwrap().current(), Some(1), "persisted before the rebuild writes");
        drop(running);
        assert_eq!(shared.current(), Some(1));
        drop(generation.begin_rebuild(&store).unwrap());
        assert_eq!(ColdGeneration::load(&store).unwrap().current(), Some(2));
    }
}
