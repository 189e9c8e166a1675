//! Embedded on-disk backend on redb: one database file, one redb table per table name,
//! every batch one write transaction committed with fsync. The database sits behind a
//! read-write lock only so [`KvStore::compact`] can get the exclusive access redb's
//! compaction needs; every other operation shares it.

use crate::{check_table, KeyValue, KvStore, Result, StateError, WriteBatch, WriteOp};
use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};

fn table_def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

/// State in a redb database file.
#[derive(Debug)]
pub struct RedbStore {
    db: RwLock<Database>,
    path: PathBuf,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(backend)?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::Locked { path: path.display().to_string() },
            other => backend(other),
        })?;
        Ok(RedbStore { db: RwLock::new(db), path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path).map_err(backend)?.len())
    }
}

impl KvStore for RedbStore {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db.read();
        let txn = db.begin_read().map_err(backend)?;
        let t = match txn.open_table(table_def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValue>> {
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end) {
            if s > e {
                return Ok(Vec::new());
            }
        }
        let db = self.db.read();
        let txn = db.begin_read().map_err(backend)?;
        let t = match txn.open_table(table_def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>((start, end)).map_err(backend)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let db = self.db.read();
        let txn = db.begin_write().map_err(backend)?;
        {
            for op in batch.ops() {
                match op {
                    WriteOp::Put { table, key, value } => {
                        check_table(table)?;
                        let mut t = txn.open_table(table_def(table)).map_err(backend)?;
                        t.insert(key.as_slice(), value.as_slice()).map_err(backend)?;
                    }
                    WriteOp::Delete { table, key } => {
                        check_table(table)?;
                        let mut t = txn.open_table(table_def(table)).map_err(backend)?;
                        t.remove(key.as_slice()).map_err(backend)?;
                    }
                    WriteOp::DeletePrefix { table, prefix } => {
                        check_table(table)?;
                        let mut t = txn.open_table(table_def(table)).map_err(backend)?;
                        let keys: Vec<Vec<u8>> = {
                            let range = match crate::prefix_end(prefix) {
                                Some(end) => t.range::<&[u8]>((Bound::Included(prefix.as_slice()), Bound::Excluded(end.as_slice()))),
                                None => t.range::<&[u8]>((Bound::Included(prefix.as_slice()), Bound::Unbounded)),
                            }
                            .map_err(backend)?;
                            let mut keys = Vec::new();
                            for entry in range {
                                keys.push(entry.map_err(backend)?.0.value().to_vec());
                            }
                            keys
                        };
                        for key in keys {
                            t.remove(key.as_slice()).map_err(backend)?;
                        }
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }

    /// Runs redb's compaction (moves pages down and truncates the file), waiting for the
    /// operations in flight and blocking new ones meanwhile.
    fn compact(&self) -> Result<bool> {
        let mut db = self.db.write();
        db.compact().map_err(backend)
    }
}
