//! The conformance suite every [`KvStore`] backend passes. Backends call [`run_all`]
//! from their tests with a factory making a fresh, empty store.

use crate::{KvStore, StateError, WriteBatch};
use std::ops::Bound;

/// Runs every check against stores made by `make`. Panics with the name of the failing
/// check.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn KvStore>) {
    get_of_missing_table_and_key_is_none(&*make());
    put_get_delete(&*make());
    batch_is_atomic_on_error(&*make());
    batch_applies_in_order(&*make());
    range_and_prefix_scans_are_ordered_and_bounded(&*make());
    delete_prefix_removes_only_matching(&*make());
    tables_are_independent(&*make());
    compaction_keeps_contents(&*make());
}

fn get_of_missing_table_and_key_is_none(store: &dyn KvStore) {
    assert_eq!(store.get("never_written", b"k").unwrap(), None, "missing table reads as empty");
    assert!(store.scan_prefix("never_written", b"", 10).unwrap().is_empty());
}

fn put_get_delete(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    batch.put("t", b"a".to_vec(), b"1".to_vec());
    batch.put("t", b"b".to_vec(), b"2".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("t", b"a").unwrap().as_deref(), Some(&b"1"[..]));
    let mut batch = WriteBatch::new();
    batch.put("t", b"a".to_vec(), b"3".to_vec());
    batch.delete("t", b"b".to_vec());
    batch.delete("t", b"absent".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("t", b"a").unwrap().as_deref(), Some(&b"3"[..]), "put replaces");
    assert_eq!(store.get("t", b"b").unwrap(), None, "delete removes");
}

fn batch_is_atomic_on_error(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    batch.put("t", b"x".to_vec(), b"1".to_vec());
    batch.put("Bad Table", b"y".to_vec(), b"1".to_vec());
    let err = store.commit(batch).unwrap_err();
    assert!(matches!(err, StateError::InvalidTable(_)), "{err}");
    assert_eq!(store.get("t", b"x").unwrap(), None, "a failed batch writes nothing");
}

fn batch_applies_in_order(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    batch.put("t", b"k".to_vec(), b"1".to_vec());
    batch.delete("t", b"k".to_vec());
    batch.put("t", b"k2".to_vec(), b"1".to_vec());
    batch.delete_prefix("t", b"k2".to_vec());
    batch.put("t", b"k2".to_vec(), b"2".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("t", b"k").unwrap(), None);
    assert_eq!(store.get("t", b"k2").unwrap().as_deref(), Some(&b"2"[..]));
}

fn range_and_prefix_scans_are_ordered_and_bounded(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    for key in ["p/3", "p/1", "p/2", "q/1", "p\u{7f}"] {
        batch.put("t", key.as_bytes().to_vec(), key.as_bytes().to_vec());
    }
    batch.put("t", vec![b'p', b'/', 0xff], b"max".to_vec());
    store.commit(batch).unwrap();
    let keys = |pairs: Vec<(Vec<u8>, Vec<u8>)>| pairs.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan_prefix("t", b"p/", 100).unwrap()),
        vec![b"p/1".to_vec(), b"p/2".to_vec(), b"p/3".to_vec(), vec![b'p', b'/', 0xff]],
        "prefix scan in key order"
    );
    assert_eq!(store.scan_prefix("t", b"p/", 2).unwrap().len(), 2, "limit respected");
    let mid = store.range("t", Bound::Excluded(b"p/1"), Bound::Included(b"p/3"), 100).unwrap();
    assert_eq!(keys(mid), vec![b"p/2".to_vec(), b"p/3".to_vec()]);
    assert!(store.range("t", Bound::Included(b"z"), Bound::Included(b"a"), 100).unwrap().is_empty(), "inverted range is empty");
}

fn delete_prefix_removes_only_matching(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    for key in ["u1/a", "u1/b", "u10/a", "u2/a"] {
        batch.put("t", key.as_bytes().to_vec(), b"v".to_vec());
    }
    store.commit(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_prefix("t", b"u1/".to_vec());
    store.commit(batch).unwrap();
    let left: Vec<Vec<u8>> = store.scan_prefix("t", b"", 100).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, vec![b"u10/a".to_vec(), b"u2/a".to_vec()]);
}

fn tables_are_independent(store: &dyn KvStore) {
    let mut batch = WriteBatch::new();
    batch.put("one", b"k".to_vec(), b"1".to_vec());
    batch.put("two", b"k".to_vec(), b"2".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("one", b"k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get("two", b"k").unwrap().as_deref(), Some(&b"2"[..]));
}

fn compaction_keeps_contents(store: &dyn KvStore) {
    store.compact().unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..200u32 {
        batch.put("t", i.to_be_bytes().to_vec(), vec![i as u8; 100]);
    }
    store.commit(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_prefix("t", vec![0, 0, 0]);
    batch.put("t", b"kept".to_vec(), b"v".to_vec());
    store.commit(batch).unwrap();
    store.compact().unwrap();
    assert_eq!(store.get("t", b"kept").unwrap().as_deref(), Some(&b"v"[..]), "compaction keeps data");
    assert_eq!(store.scan_prefix("t", b"", 1000).unwrap().len(), 1);
    let mut batch = WriteBatch::new();
    batch.put("t", b"after".to_vec(), b"w".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("t", b"after").unwrap().as_deref(), Some(&b"w"[..]), "writable after compaction");
}
