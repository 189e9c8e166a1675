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
        let bounds = (start.map(<[u8]>::to_vec), end.map(<[u8]>::to_vec));
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (&bounds.0, &bounds.1) {
            if s > e {
                return Ok(Vec::new());
            }
        }
        Ok(t.range(bounds).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
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
