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
