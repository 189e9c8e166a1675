//! Embedded on-disk backend on fjall (an LSM tree): one fjall database folder, one fjall
//! keyspace per table name, every batch one cross-keyspace fjall write batch whose journal
//! write is fsync'd (`PersistMode::SyncAll`) before the batch becomes visible. After a
//! crash fjall replays the journal into memtables; a batch whose end marker or checksum is
//! missing (a torn tail) is cut off whole, so a batch is all or nothing.
//!
//! A fjall batch gives all its writes one sequence number, so writing the same key twice
//! in one batch is ambiguous; [`FjallStore::commit`] therefore first folds the batch's
//! operations, in order, into one final put or delete per key (a delete-prefix reads the
//! committed keys with the prefix and also clears the batch's own earlier writes), and
//! commits that. Commits are serialised by a mutex so a delete-prefix's read and its
//! deletes see no other writer in between.
//!
//! Reads go through a fjall snapshot (`Database::snapshot`): a batch's writes enter the
//! memtables one by one and become visible together only when its sequence number is
//! published, but a plain keyspace read (`Keyspace::range`, `get`) reads at the newest
//! sequence number and so can see half a batch being applied. A snapshot reads at the
//! last published one.
//!
//! fjall locks its folder with an OS file lock (`flock` on `<folder>/lock`): a second open
//! while the first is alive fails with [`StateError::Locked`] (after fjall's own three
//! tries, ~200 ms), and the kernel releases the lock when the process dies, so a crash
//! leaves no stale lock.

use crate::{check_table, KeyValue, KvStore, Result, StateError, WriteBatch, WriteOp};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// Upper bound of all journals together (fjall's minimum; its default is 512 MiB). A
/// journal is deleted only once every table's memtable holding its writes is flushed, so
/// small, rarely written tables (positions, marks) pin journals until this bound forces
/// their flush: with the default, a live history processor left 606 MB of journals
/// beside ~60 MB of tables.
const MAX_JOURNALING_BYTES: u64 = 64 << 20;

/// Memtable size per table (fjall's default is 64 MiB): bounds memory per table and the
/// journal a single busy table holds before its flush.
const MEMTABLE_BYTES: u64 = 16 << 20;

/// Options of every table: smaller memtables; otherwise fjall's defaults (LZ4 from the
/// third level down — compressing the first two as well measured no smaller on this
/// store's varint values and hashed keys, and costs CPU on every read).
fn table_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
}

/// Internal keyspace written by [`FjallStore::compact`] (not a valid table name).
const GC_KEYSPACE: &str = "meridian-gc";

fn backend(e: impl fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

/// State in a fjall database folder.
pub struct FjallStore {
    db: Database,
    tables: RwLock<HashMap<&'static str, Keyspace>>,
    writer: Mutex<()>,
    path: PathBuf,
}

impl fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore").field("path", &self.path).field("tables", &self.tables.read().keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl FjallStore {
    /// Opens (or creates) the database in the folder `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<FjallStore> {
        let path = path.as_ref().to_path_buf();
        let db = Database::builder(&path).max_journaling_size(MAX_JOURNALING_BYTES).open().map_err(|e| match e {
            fjall::Error::Locked => StateError::Locked { path: path.display().to_string() },
            other => backend(other),
        })?;
        Ok(FjallStore { db, tables: RwLock::new(HashMap::new()), writer: Mutex::new(()), path })
    }

    /// Path of the database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk: the sum of the lengths of every file in the database folder
    /// (journals, tables, manifests, lock file).
    pub fn file_size(&self) -> Result<u64> {
        sum_files(&self.path, &|meta| meta.len()).map_err(backend)
    }

    /// Writes every table's memtables (the active one and those already sealed, waiting
    /// for fjall's background flush) out as table files and waits until that is done, so
    /// the data is in the LSM trees' files and fjall may drop journals. Uses fjall's
    /// `rotate_memtable_and_wait` and `sealed_memtable_count`, which fjall marks
    /// `#[doc(hidden)]`.
    pub fn flush(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(backend)?;
        for keyspace in self.all_keyspaces()? {
            keyspace.rotate_memtable_and_wait().map_err(backend)?;
            // A memtable sealed earlier (by size) may still be waiting for its flush.
            while keyspace.sealed_memtable_count() > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Bytes the file system allocated for the folder's files (fjall pre-sizes its
    /// journal to 64 MiB with `set_len`, so lengths run ahead of allocated blocks).
    pub fn allocated_size(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        sum_files(&self.path, &|meta| meta.blocks() * 512).map_err(backend)
    }

    /// Commits one write to the internal keyspace and flushes it: the memtable rotation
    /// raises fjall's garbage-collection watermark to the latest commit and drops old
    /// versions of every tree's manifest (so replaced table files are deleted).
    fn advance_gc_watermark(&self) -> Result<()> {
        let keyspace = self.db.keyspace(GC_KEYSPACE, KeyspaceCreateOptions::default).map_err(backend)?;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&keyspace, b"gc".as_slice(), b"".as_slice());
        batch.commit().map_err(backend)?;
        keyspace.rotate_memtable_and_wait().map_err(backend)?;
        while keyspace.sealed_memtable_count() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Every keyspace of the database, opened.
    fn all_keyspaces(&self) -> Result<Vec<Keyspace>> {
        self.db.list_keyspace_names().iter().map(|name| self.db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend)).collect()
    }

    /// The keyspace of `table` if it was ever created.
    fn existing(&self, table: &'static str) -> Result<Option<Keyspace>> {
        if let Some(k) = self.tables.read().get(table) {
            return Ok(Some(k.clone()));
        }
        if check_table(table).is_err() || !self.db.keyspace_exists(table) {
            return Ok(None);
        }
        self.table(table).map(Some)
    }

    /// The keyspace of `table`, created if needed (the name is already checked).
    fn table(&self, table: &'static str) -> Result<Keyspace> {
        if let Some(k) = self.tables.read().get(table) {
            return Ok(k.clone());
        }
        let keyspace = self.db.keyspace(table, table_options).map_err(backend)?;
        self.tables.write().insert(table, keyspace.clone());
        Ok(keyspace)
    }
}

impl KvStore for FjallStore {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(keyspace) = self.existing(table)? else { return Ok(None) };
        // Through a snapshot, like `range`: a plain keyspace read sees a batch being
        // applied before it is published (see the module docs).
        Ok(self.db.snapshot().get(&keyspace, key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValue>> {
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end) {
            let both_included = matches!((start, end), (Bound::Included(_), Bound::Included(_)));
            if s > e || (s == e && !both_included) {
                return Ok(Vec::new());
            }
        }
        let Some(keyspace) = self.existing(table)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for guard in self.db.snapshot().range::<&[u8], _>(&keyspace, (start, end)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = guard.into_inner().map_err(backend)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        for op in batch.ops() {
            let (WriteOp::Put { table, .. } | WriteOp::Delete { table, .. } | WriteOp::DeletePrefix { table, .. }) = op;
            check_table(table)?;
        }
        let _writer = self.writer.lock();
        // The batch folded into one final state per key: Some(value) = put, None = delete.
        let mut last: BTreeMap<(&'static str, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for op in batch.ops {
            match op {
                WriteOp::Put { table, key, value } => {
                    last.insert((table, key), Some(value));
                }
                WriteOp::Delete { table, key } => {
                    last.insert((table, key), None);
                }
                WriteOp::DeletePrefix { table, prefix } => {
                    for (_, v) in last.range_mut((table, prefix.clone())..).take_while(|((t, k), _)| *t == table && k.starts_with(&prefix)) {
                        *v = None;
                    }
                    if let Some(keyspace) = self.existing(table)? {
                        for guard in keyspace.prefix(&prefix) {
                            let key = guard.key().map_err(backend)?;
                            last.insert((table, key.to_vec()), None);
                        }
                    }
                }
            }
        }
        let mut out = self.db.batch().durability(Some(PersistMode::SyncAll));
        for ((table, key), value) in last {
            match value {
                Some(value) => out.insert(&self.table(table)?, key, value),
                // A table that was never created has nothing to delete.
                None => {
                    if let Some(keyspace) = self.existing(table)? {
                        out.remove(&keyspace, key);
                    }
                }
            }
        }
        out.commit().map_err(backend)
    }

    /// Writes the memtables out and runs fjall's major compaction of every table (one
    /// sorted run on the last level; overwritten versions and tombstones older than every
    /// open read are dropped). Reads and commits go on meanwhile. fjall marks
    /// `major_compact` `#[doc(hidden)]`.
    ///
    /// fjall only moves its garbage-collection watermark, and only deletes the files a
    /// compaction replaced, when some memtable is rotated; so before and after the
    /// compaction this writes one key into an internal keyspace (named with a `-`, which
    /// table names cannot contain) and flushes it.
    fn compact(&self) -> Result<bool> {
        self.flush()?;
        self.advance_gc_watermark()?;
        for keyspace in self.all_keyspaces()? {
            if keyspace.name().as_ref() != GC_KEYSPACE {
                keyspace.major_compact().map_err(backend)?;
            }
        }
        self.advance_gc_watermark()?;
        Ok(true)
    }
}

/// Sums `measure` over every file below `dir`.
fn sum_files(dir: &Path, measure: &dyn Fn(&std::fs::Metadata) -> u64) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { sum_files(&entry.path(), measure)? } else { measure(&meta) };
    }
    Ok(total)
}
