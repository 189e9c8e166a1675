//! Integration tests of the state backends: the conformance suite for each, and durability.

use meridian_state::{conformance, KvStore, MemoryStore, RedbStore, StateError, WriteBatch};

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
