//! Integration tests of the state backends: the conformance suite for each (one test per
//! check through `store_suite!`, and `run_all` as older callers use it), and durability.

use meridian_state::conformance::StoreFactory;
use meridian_state::{conformance, FjallStore, KvStore, MemoryStore, RedbStore, StateError, WriteBatch};
use std::path::PathBuf;

/// Fresh in-memory stores; they cannot be reopened (volatile by design).
#[derive(Debug, Default)]
struct MemoryFactory;

impl StoreFactory for MemoryFactory {
    fn fresh(&mut self) -> Box<dyn KvStore> {
        Box::new(MemoryStore::new())
    }

    fn reopen(&mut self, _store: Box<dyn KvStore>) -> Option<Box<dyn KvStore>> {
        None
    }
}

/// Stores on disk in a temporary directory; `open` opens the store at a path.
#[derive(Debug)]
struct DiskFactory {
    dir: tempfile::TempDir,
    made: usize,
    /// Path of the last store made (the suite reopens the store it was given last).
    last: Option<PathBuf>,
    open: fn(&std::path::Path) -> Box<dyn KvStore>,
}

impl DiskFactory {
    fn new(open: fn(&std::path::Path) -> Box<dyn KvStore>) -> DiskFactory {
        DiskFactory { dir: tempfile::tempdir().unwrap(), made: 0, last: None, open }
    }

    fn redb() -> DiskFactory {
        DiskFactory::new(|path| Box::new(RedbStore::open(path).unwrap()))
    }

    fn fjall() -> DiskFactory {
        DiskFactory::new(|path| Box::new(FjallStore::open(path).unwrap()))
    }
}

impl StoreFactory for DiskFactory {
    fn fresh(&mut self) -> Box<dyn KvStore> {
        self.made += 1;
        let path = self.dir.path().join(format!("store-{}", self.made));
        self.last = Some(path.clone());
        (self.open)(&path)
    }

    fn reopen(&mut self, store: Box<dyn KvStore>) -> Option<Box<dyn KvStore>> {
        drop(store);
        Some((self.open)(self.last.as_ref().expect("a store was made")))
    }
}

mod memory {
    meridian_state::store_suite!(super::MemoryFactory);
}

mod redb {
    meridian_state::store_suite!(super::DiskFactory::redb());
}

mod fjall {
    meridian_state::store_suite!(super::DiskFactory::fjall());
}

#[test]
fn memory_store_conforms() {
    conformance::run_all(&mut || Box::new(MemoryStore::new()));
}

#[test]
fn redb_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(&mut || {
        n += 1;
        Box::new(RedbStore::open(dir.path().join(format!("s{n}.redb"))).unwrap())
    });
}

#[test]
fn redb_store_keeps_committed_state_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("positions", b"p".to_vec(), 42u64.to_be_bytes().to_vec());
        store.commit(batch).unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get("positions", b"p").unwrap(), Some(42u64.to_be_bytes().to_vec()));
}

#[test]
fn redb_store_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err}");
}

#[test]
fn redb_store_compaction_shrinks_the_file_after_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("state.redb")).unwrap();
    for round in 0..4u32 {
        let mut batch = WriteBatch::new();
        for i in 0..2000u32 {
            batch.put("t", (round * 2000 + i).to_be_bytes().to_vec(), vec![7u8; 500]);
        }
        store.commit(batch).unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.delete_prefix("t", Vec::new());
    batch.put("t", b"kept".to_vec(), b"v".to_vec());
    store.commit(batch).unwrap();
    let before = store.file_size().unwrap();
    assert!(store.compact().unwrap(), "something to compact");
    let after = store.file_size().unwrap();
    assert!(after < before / 2, "{before} -> {after} bytes");
    assert_eq!(store.get("t", b"kept").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn fjall_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(&mut || {
        n += 1;
        Box::new(FjallStore::open(dir.path().join(format!("s{n}"))).unwrap())
    });
}

#[test]
fn fjall_store_keeps_committed_state_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let store = FjallStore::open(&path).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("positions", b"p".to_vec(), 42u64.to_be_bytes().to_vec());
        batch.put("history_cold", b"owner".to_vec(), b"list".to_vec());
        store.commit(batch).unwrap();
        let mut batch = WriteBatch::new();
        batch.put("positions", b"p".to_vec(), 43u64.to_be_bytes().to_vec());
        batch.delete("history_cold", b"owner".to_vec());
        store.commit(batch).unwrap();
    }
    let store = FjallStore::open(&path).unwrap();
    assert_eq!(store.get("positions", b"p").unwrap(), Some(43u64.to_be_bytes().to_vec()));
    assert_eq!(store.get("history_cold", b"owner").unwrap(), None);
    // Also after the memtables were written out as table files.
    store.flush().unwrap();
    drop(store);
    let store = FjallStore::open(&path).unwrap();
    assert_eq!(store.get("positions", b"p").unwrap(), Some(43u64.to_be_bytes().to_vec()));
    assert_eq!(store.get("history_cold", b"owner").unwrap(), None);
}

#[test]
fn fjall_store_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let first = FjallStore::open(&path).unwrap();
    let err = FjallStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err}");
    drop(first);
    FjallStore::open(&path).unwrap();
}

#[test]
fn fjall_store_delete_prefix_covers_the_batch_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path().join("state")).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("t", b"a/1".to_vec(), b"v".to_vec());
    store.commit(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("t", b"a/2".to_vec(), b"v".to_vec());
    batch.put("t", b"b/1".to_vec(), b"v".to_vec());
    batch.delete_prefix("t", b"a/".to_vec());
    batch.put("t", b"a/3".to_vec(), b"v".to_vec());
    store.commit(batch).unwrap();
    let keys: Vec<Vec<u8>> = store.scan_prefix("t", b"", 10).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![b"a/3".to_vec(), b"b/1".to_vec()]);
}

#[test]
fn fjall_store_compaction_shrinks_the_folder_after_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path().join("state")).unwrap();
    for round in 0..4u32 {
        let mut batch = WriteBatch::new();
        for i in 0..2000u32 {
            batch.put("t", (round * 2000 + i).to_be_bytes().to_vec(), (0..500u32).map(|j| (i * 31 + j * 7) as u8).collect::<Vec<u8>>());
        }
        store.commit(batch).unwrap();
    }
    store.flush().unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_prefix("t", Vec::new());
    batch.put("t", b"kept".to_vec(), b"v".to_vec());
    store.commit(batch).unwrap();
    store.flush().unwrap();
    let before = store.file_size().unwrap();
    assert!(store.compact().unwrap());
    let after = store.file_size().unwrap();
    // The ~4 MB of table files are gone; the journal (pre-sized to 64 MiB, rotated only
    // past that) stays.
    assert!(before - after > 3_500_000, "{before} -> {after} bytes");
    assert_eq!(store.scan_prefix("t", b"", 10).unwrap(), vec![(b"kept".to_vec(), b"v".to_vec())]);
}
