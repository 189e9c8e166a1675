//! Deletion marks: per owner a clear time (everything viewed at or before it is hidden)
//! and deleted SKUs with their delete time (that SKU viewed at or before it is hidden).
//! A later view makes a SKU visible again. Marks are authoritative at read time, so no
//! tier ever has to be rewritten in step with a delete, and a stale copy (a hot tier
//! that missed the delete, a rebuild, a replay) can never resurrect deleted items.
//!
//! Stored in the KV store, table [`MARKS_TABLE`], key = owner hash (16 bytes); value =
//! version byte, clear seconds+1 (0 = none) and then (SKU, delete ms) pairs, varints.

use crate::codec::{get_varint, put_varint};
use crate::model::{Entry, OwnerKey};
use crate::Result;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use std::sync::Arc;

/// Table of marks.
pub const MARKS_TABLE: &str = "history_marks";
/// Deleted SKUs kept per owner (the oldest deletions are dropped past this).
pub const MAX_DELETED: usize = 1000;

/// One owner's marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMarks {
    /// Everything viewed at or before this time is hidden.
    pub clear_ms: Option<i64>,
    /// (SKU, delete time): that SKU viewed at or before the time is hidden.
    pub deleted: Vec<(u64, i64)>,
}

impl OwnerMarks {
    /// True when there are no marks.
    pub fn is_empty(&self) -> bool {
        self.clear_ms.is_none() && self.deleted.is_empty()
    }

    /// True when the entry is not hidden by a mark.
    pub fn visible(&self, e: &Entry) -> bool {
        if self.clear_ms.is_some_and(|c| e.time_ms <= c) {
            return false;
        }
        !self.deleted.iter().any(|(sku, at)| *sku == e.sku && e.time_ms <= *at)
    }

    /// Keeps the visible entries.
    pub fn filter(&self, entries: &mut Vec<Entry>) {
        if !self.is_empty() {
            entries.retain(|e| self.visible(e));
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
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
        let mut deleted = Vec::with_capacity(n.min(MAX_DELETED));
        for _ in 0..n {
            deleted.push((get_varint(&mut rest)?, get_varint(&mut rest)? as i64));
        }
        Some(OwnerMarks { clear_ms: (clear > 0).then(|| clear as i64 - 1), deleted })
    }
}

/// Reads and writes marks (writes are serialised in-process).
#[derive(Debug, Clone)]
pub struct Marks {
    store: Arc<dyn KvStore>,
    write: Arc<Mutex<()>>,
}

impl Marks {
    /// Marks in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> Marks {
        Marks { store, write: Arc::new(Mutex::new(())) }
    }

    /// An owner's marks (empty if none).
    pub fn get(&self, owner: OwnerKey) -> Result<OwnerMarks> {
        Ok(self.store.get(MARKS_TABLE, &owner.to_bytes())?.and_then(|b| OwnerMarks::decode(&b)).unwrap_or_default())
    }

    fn update(&self, owner: OwnerKey, change: impl FnOnce(&mut OwnerMarks), extra: impl FnOnce(&mut WriteBatch)) -> Result<()> {
        let _guard = self.write.lock();
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
        self.update(
            owner,
            |m| {
                match m.deleted.iter_mut().find(|(s, _)| *s == sku) {
                    Some(d) => d.1 = d.1.max(at_ms),
                    None => m.deleted.push((sku, at_ms)),
                }
                if m.deleted.len() > MAX_DELETED {
                    m.deleted.sort_unstable_by_key(|(_, at)| std::cmp::Reverse(*at));
                    m.deleted.truncate(MAX_DELETED);
                }
            },
            |_| {},
        )
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
        assert!(m.deleted.is_empty(), "clear supersedes older deletes");
        assert!(!m.visible(&Entry::new(6, t + 5000)));
        assert!(m.visible(&Entry::new(6, t + 6000)));
        marks.clear(o, t, |_| {}).unwrap();
        assert_eq!(marks.get(o).unwrap().clear_ms, Some(t + 5000), "clear time never moves back");
    }
}
