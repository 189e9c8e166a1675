//! Volatile in-memory backend: a `BTreeMap` per table behind one lock.

use crate::{check_table, KeyValue, KvStore, Result, WriteBatch, WriteOp};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// A store that keeps everything in memory; state is lost with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<&'static str, Table>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl KvStore for MemoryStore {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tables.read().get(table).and_then(|t| t.get(key).cloned()))
    }

    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValue>> {
        let tables = self.tables.read();
        let Some(t) = tables.get(table) else { return Ok(Vec::new()) };
        // `BTreeMap::range` panics when start > end, and when start == end unless both
        // are included; those ranges are empty.
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end) {
            let both_included = matches!((start, end), (Bound::Included(_), Bound::Included(_)));
            if s > e || (s == e && !both_included) {
                return Ok(Vec::new());
            }
        }
        Ok(t.range::<[u8], _>((start, end)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn commit(&self, batch: WriteBatch) -> Result<()> {
        for op in batch.ops() {
            let table = match op {
                WriteOp::Put { table, .. } | WriteOp::Delete { table, .. } | WriteOp::DeletePrefix { table, .. } => table,
            };
            check_table(table)?;
        }
        let mut tables = self.tables.write();
        for op in batch.ops {
            match op {
                WriteOp::Put { table, key, value } => {
                    tables.entry(table).or_default().insert(key, value);
                }
                WriteOp::Delete { table, key } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.remove(&key);
                    }
                }
                WriteOp::DeletePrefix { table, prefix } => {
                    if let Some(t) = tables.get_mut(table) {
                        t.retain(|k, _| !k.starts_with(&prefix));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_excluded_bounds_are_an_empty_range_not_a_panic() {
        let store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        batch.put("t", b"a".to_vec(), b"1".to_vec());
        store.commit(batch).unwrap();
        for (start, end) in [
            (Bound::Excluded(&b"a"[..]), Bound::Excluded(&b"a"[..])),
            (Bound::Included(&b"a"[..]), Bound::Excluded(&b"a"[..])),
            (Bound::Excluded(&b"a"[..]), Bound::Included(&b"a"[..])),
            (Bound::Excluded(&b"b"[..]), Bound::Excluded(&b"a"[..])),
        ] {
            assert!(store.range("t", start, end, 10).unwrap().is_empty(), "{start:?}..{end:?}");
        }
        let both = store.range("t", Bound::Included(b"a"), Bound::Included(b"a"), 10).unwrap();
        assert_eq!(both, vec![(b"a".to_vec(), b"1".to_vec())]);
    }
}
