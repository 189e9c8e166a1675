//! Deletion marks: per owner a clear time (everything viewed at or before it is hidden)
//! and deleted SKUs with their delete time (that SKU viewed at or before it is hidden).
//! A later view makes a SKU visible again. Marks are authoritative at read time, so no
//! tier ever has to be rewritten in step with a delete, and a stale copy (a hot tier
//! that missed the delete, a rebuild, a replay) can never resurrect deleted items.
//!
//! Every deletion is kept, whatever their number: dropping one would let the next
//! rebuild or replay bring its SKU back. A clear drops the deletions it covers. The
//! deleted SKUs are kept sorted, so checking an entry costs a binary search.
//!
//! Stored in the KV store, table [`MARKS_TABLE`], key = owner hash (16 bytes); value =
//! version byte, clear seconds+1 (0 = none) and then (SKU, delete ms) pairs, varints,
//! in SKU order (values written before that order are sorted when read).
//!
//! [`Marks::with_presence_filter`] also keeps, in memory, a bitmap of the owners that may
//! have marks (set before a mark is committed, built from the table at open, never
//! cleared: a false positive only costs a store read). A read of an owner whose bit is
//! clear knows without touching the store that nothing is hidden.

use crate::codec::{get_varint, put_varint};
use crate::model::{Entry, OwnerKey};
use crate::Result;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Table of marks.
pub const MARKS_TABLE: &str = "history_marks";
/// Bits of the presence filter (2 MiB): at a million owners with marks, about 6% of the
/// owners without any read their (absent) marks from the store.
const PRESENCE_BITS: usize = 1 << 24;
/// Lock stripes for read-modify-write of marks: writes of different owners go on in
/// parallel, writes of one owner are serialised.
const WRITE_STRIPES: usize = 64;
/// Keys per scan when the presence filter is built.
const PRESENCE_SCAN_CHUNK: usize = 4096;

/// One owner's marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMarks {
    /// Everything viewed at or before this time is hidden.
    pub clear_ms: Option<i64>,
    /// (SKU, delete time), sorted by SKU, one per SKU: that SKU viewed at or before the
    /// time is hidden.
    deleted: Vec<(u64, i64)>,
}

impl OwnerMarks {
    /// True when there are no marks.
    pub fn is_empty(&self) -> bool {
        self.clear_ms.is_none() && self.deleted.is_empty()
    }

    /// The deleted SKUs with their delete times, in SKU order.
    pub fn deleted(&self) -> &[(u64, i64)] {
        &self.deleted
    }

    /// True when the entry is not hidden by a mark.
    pub fn visible(&self, e: &Entry) -> bool {
        if self.clear_ms.is_some_and(|c| e.time_ms <= c) {
            return false;
        }
        match self.deleted.binary_search_by_key(&e.sku, |(sku, _)| *sku) {
            Ok(i) => e.time_ms > self.deleted[i].1,
            Err(_) => true,
        }
    }

    /// Keeps the visible entries.
    pub fn filter(&self, entries: &mut Vec<Entry>) {
        if !self.is_empty() {
            entries.retain(|e| self.visible(e));
        }
    }

    /// Hides `sku` viewed at or before `at_ms` (a later delete time of the same SKU wins).
    fn delete(&mut self, sku: u64, at_ms: i64) {
        if self.clear_ms.is_some_and(|c| at_ms <= c) {
            return;
        }
        match self.deleted.binary_search_by_key(&sku, |(s, _)| *s) {
            Ok(i) => self.deleted[i].1 = self.deleted[i].1.max(at_ms),
            Err(i) => self.deleted.insert(i, (sku, at_ms)),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.deleted.len() * 10);
        out.push(1u8);
        put_varint(&mut out, self.clear_ms.map_or(0, |c| c as u64 + 1));
        put_varint(&mut out, self.deleted.len() as u64);
        for (sku, at) in &self.deleted {
            put_varint(&mut out, *sku);
            put_varint(&mut out, *at as u64);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<OwnerMarks> {
        let (&v, mut rest) = bytes.split_first()?;
        if v != 1 {
            return None;
        }
        let clear = get_varint(&mut rest)?;
        let n = get_varint(&mut rest)? as usize;
        // Two bytes at least per pair: a corrupt count cannot allocate much.
        let mut deleted: Vec<(u64, i64)> = Vec::with_capacity(n.min(rest.len() / 2));
        for _ in 0..n {
            deleted.push((get_varint(&mut rest)?, get_varint(&mut rest)? as i64));
        }
        if !deleted.is_sorted_by(|a, b| a.0 < b.0) {
            // Written before deletions were kept in SKU order.
            deleted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            deleted.dedup_by_key(|(sku, _)| *sku);
        }
        Some(OwnerMarks { clear_ms: (clear > 0).then(|| clear as i64 - 1), deleted })
    }
}

/// Owners that may have marks (see the module docs).
#[derive(Debug)]
struct PresenceFilter {
    bits: Box<[AtomicU64]>,
}

impl PresenceFilter {
    fn new() -> PresenceFilter {
        PresenceFilter { bits: (0..PRESENCE_BITS / 64).map(|_| AtomicU64::new(0)).collect() }
    }

    fn slot(owner: OwnerKey) -> (usize, u64) {
        let bit = (owner.0 as u64 ^ (owner.0 >> 64) as u64) as usize % PRESENCE_BITS;
        (bit / 64, 1 << (bit % 64))
    }

    fn insert(&self, owner: OwnerKey) {
        let (word, mask) = Self::slot(owner);
        self.bits[word].fetch_or(mask, Ordering::AcqRel);
    }

    fn may_contain(&self, owner: OwnerKey) -> bool {
        let (word, mask) = Self::slot(owner);
        self.bits[word].load(Ordering::Acquire) & mask != 0
    }
}

/// Reads and writes marks (writes of one owner are serialised in-process).
#[derive(Debug, Clone)]
pub struct Marks {
    store: Arc<dyn KvStore>,
    write: Arc<[Mutex<()>]>,
    presence: Option<Arc<PresenceFilter>>,
}

impl Marks {
    /// Marks in `store`, without a presence filter ([`Marks::may_have_marks`] is always
    /// true).
    pub fn new(store: Arc<dyn KvStore>) -> Marks {
        Marks { store, write: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(), presence: None }
    }

    /// Marks in `store` with a presence filter built from the marks table (one scan of
    /// its keys).
    pub fn with_presence_filter(store: Arc<dyn KvStore>) -> Result<Marks> {
        let filter = PresenceFilter::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let rows = store.range(MARKS_TABLE, start, Bound::Unbounded, PRESENCE_SCAN_CHUNK)?;
            for owner in rows.iter().filter_map(|(key, _)| OwnerKey::from_bytes(key)) {
                filter.insert(owner);
            }
            match rows.last() {
                Some((last, _)) if rows.len() == PRESENCE_SCAN_CHUNK => after = Some(last.clone()),
                _ => break,
            }
        }
        Ok(Marks { presence: Some(Arc::new(filter)), ..Marks::new(store) })
    }

    /// False when the owner certainly has no marks (known from memory, without a store
    /// read); true when it may have some.
    pub fn may_have_marks(&self, owner: OwnerKey) -> bool {
        self.presence.as_ref().is_none_or(|p| p.may_contain(owner))
    }

    /// An owner's marks (empty if none).
    pub fn get(&self, owner: OwnerKey) -> Result<OwnerMarks> {
        if !self.may_have_marks(owner) {
            return Ok(OwnerMarks::default());
        }
        Ok(self.store.get(MARKS_TABLE, &owner.to_bytes())?.and_then(|b| OwnerMarks::decode(&b)).unwrap_or_default())
    }

    fn update(&self, owner: OwnerKey, change: impl FnOnce(&mut OwnerMarks), extra: impl FnOnce(&mut WriteBatch)) -> Result<()> {
        let _guard = self.write[(owner.0 % WRITE_STRIPES as u128) as usize].lock();
        // Before the commit: a reader that finds the bit clear read before the mark existed.
        if let Some(presence) = &self.presence {
            presence.insert(owner);
        }
        let mut marks = self.get(owner)?;
        change(&mut marks);
        let mut batch = WriteBatch::new();
        batch.put(MARKS_TABLE, owner.to_bytes().to_vec(), marks.encode());
        extra(&mut batch);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Hides `sku` viewed at or before `at_ms`.
    pub fn delete(&self, owner: OwnerKey, sku: u64, at_ms: i64) -> Result<()> {
        self.update(owner, |m| m.delete(sku, at_ms), |_| {})
    }

    /// Hides everything viewed at or before `at_ms`; `extra` adds writes to the same
    /// batch (e.g. deleting the cold value).
    pub fn clear(&self, owner: OwnerKey, at_ms: i64, extra: impl FnOnce(&mut WriteBatch)) -> Result<()> {
        self.update(
            owner,
            |m| {
                let c = m.clear_ms.map_or(at_ms, |c| c.max(at_ms));
                m.clear_ms = Some(c);
                m.deleted.retain(|(_, at)| *at > c);
            },
            extra,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BASE_MS;
    use meridian_state::MemoryStore;

    #[test]
    fn marks_hide_older_views_only_and_round_trip() {
        let marks = Marks::new(Arc::new(MemoryStore::new()));
        let o = OwnerKey(7);
        assert!(marks.get(o).unwrap().is_empty());
        let t = BASE_MS + 100_000;
        marks.delete(o, 5, t).unwrap();
        let m = marks.get(o).unwrap();
        assert!(!m.visible(&Entry::new(5, t)));
        assert!(m.visible(&Entry::new(5, t + 1000)), "a later view shows again");
        assert!(m.visible(&Entry::new(6, t)));
        marks.clear(o, t + 5000, |_| {}).unwrap();
        let m = marks.get(o).unwrap();
        assert_eq!(m.clear_ms, Some(t + 5000));
        assert!(m.deleted().is_empty(), "clear supersedes older deletes");
        assert!(!m.visible(&Entry::new(6, t + 5000)));
        assert!(m.visible(&Entry::new(6, t + 6000)));
        marks.clear(o, t, |_| {}).unwrap();
        assert_eq!(marks.get(o).unwrap().clear_ms, Some(t + 5000), "clear time never moves back");
    }

    #[test]
    fn every_deletion_is_kept_whatever_their_number() {
        let marks = Marks::new(Arc::new(MemoryStore::new()));
        let o = OwnerKey(3);
        let t = BASE_MS + 100_000_000;
        // Newest-viewed SKUs deleted first: a cap keeping the latest deletions would drop
        // exactly the ones still in the owner's list.
        for i in 0..5000u64 {
            marks.delete(o, 5000 - i, t + i as i64).unwrap();
        }
        marks.delete(o, 4999, t - 1).unwrap();
        let m = marks.get(o).unwrap();
        assert_eq!(m.deleted().len(), 5000);
        for sku in 1..=5000u64 {
            assert!(!m.visible(&Entry::new(sku, t - 1000)), "sku {sku} came back");
        }
        assert!(!m.visible(&Entry::new(4999, t)), "an earlier delete time does not lower a later one");
        assert!(m.visible(&Entry::new(1, t + 6000)));
    }

    #[test]
    fn values_written_in_delete_order_are_read_in_sku_order() {
        let t = BASE_MS + 1_000_000;
        let mut old = vec![1u8];
        put_varint(&mut old, 0);
        put_varint(&mut old, 3);
        for (sku, at) in [(30u64, t), (10, t + 5), (20, t + 9)] {
            put_varint(&mut old, sku);
            put_varint(&mut old, at as u64);
        }
        let m = OwnerMarks::decode(&old).unwrap();
        assert_eq!(m.deleted(), &[(10, t + 5), (20, t + 9), (30, t)]);
        assert!(!m.visible(&Entry::new(30, t)));
        assert_eq!(OwnerMarks::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn the_presence_filter_knows_owners_with_marks_from_memory_and_from_the_table() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let marks = Marks::with_presence_filter(store.clone()).unwrap();
        let (a, b) = (OwnerKey(0x1234_5678_9abc_def0_0fed_cba9_8765_4321), OwnerKey(99));
        assert!(!marks.may_have_marks(a) && !marks.may_have_marks(b));
        marks.delete(a, 5, BASE_MS).unwrap();
        assert!(marks.may_have_marks(a));
        assert!(!marks.may_have_marks(b));
        assert!(!marks.clone().get(a).unwrap().is_empty(), "clones share the filter");
        // Many owners with marks, over several scan chunks; a new filter finds them all.
        for i in 0..(PRESENCE_SCAN_CHUNK as u128 * 2 + 5) {
            Marks::new(store.clone()).clear(OwnerKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)), BASE_MS, |_| {}).unwrap();
        }
        let reopened = Marks::with_presence_filter(store).unwrap();
        assert!(reopened.may_have_marks(a));
        for i in 0..(PRESENCE_SCAN_CHUNK as u128 * 2 + 5) {
            assert!(reopened.may_have_marks(OwnerKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))));
        }
    }
}
