//! The conformance suite every [`KvStore`] backend passes.
//!
//! `store_suite!(factory)` expands to one `#[test]` per check, each running against stores
//! made by the factory expression (evaluated anew in every test; see [`StoreFactory`]):
//!
//! ```text
//! // crates/<backend>/tests/it/main.rs
//! mod my_store {
//!     meridian_state::store_suite!(super::MyStoreFactory::default());
//! }
//! ```
//!
//! Every check is also a public function taking `&mut dyn StoreFactory`. [`run_all`] runs
//! the checks that need no reopen with a plain closure making fresh stores.

use crate::{KeyValue, KvStore, StateError, WriteBatch};
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Makes the stores the suite runs against.
pub trait StoreFactory {
    /// A new, empty store that nothing else uses.
    fn fresh(&mut self) -> Box<dyn KvStore>;

    /// Closes `store` (made by this factory) and opens the same store again, as a
    /// restarted server would. `None` for a volatile backend, whose contents are lost
    /// with the handle by design; the durability check then has nothing to check.
    fn reopen(&mut self, store: Box<dyn KvStore>) -> Option<Box<dyn KvStore>>;
}

/// Expands to one `#[test]` per check of this suite, each running against stores made by
/// `$factory` (an expression evaluated anew in every test, whose value implements
/// [`StoreFactory`]).
#[macro_export]
macro_rules! store_suite {
    ($factory:expr) => {
        $crate::store_suite!(@checks $factory;
            get_of_missing_table_and_key_is_none,
            put_get_delete,
            batch_is_atomic_on_error,
            batch_applies_in_order,
            range_and_prefix_scans_are_ordered_and_bounded,
            delete_prefix_removes_only_matching,
            tables_are_independent,
            compaction_keeps_contents,
            range_bounds_of_every_kind_return_exactly_the_keys_between,
            range_limit_is_respected,
            committed_data_survives_reopen,
            readers_never_see_half_a_batch,
        );
    };
    (@checks $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let mut factory = $factory;
                $crate::conformance::$check(&mut factory);
            }
        )+
    };
}

/// A factory of fresh volatile stores from a closure (used by [`run_all`]).
struct ClosureFactory<'a>(&'a mut dyn FnMut() -> Box<dyn KvStore>);

impl StoreFactory for ClosureFactory<'_> {
    fn fresh(&mut self) -> Box<dyn KvStore> {
        (self.0)()
    }

    fn reopen(&mut self, _store: Box<dyn KvStore>) -> Option<Box<dyn KvStore>> {
        None
    }
}

/// Runs every check that needs no reopen against stores made by `make`. Panics with the
/// name of the failing check.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn KvStore>) {
    let factory = &mut ClosureFactory(make);
    get_of_missing_table_and_key_is_none(factory);
    put_get_delete(factory);
    batch_is_atomic_on_error(factory);
    batch_applies_in_order(factory);
    range_and_prefix_scans_are_ordered_and_bounded(factory);
    delete_prefix_removes_only_matching(factory);
    tables_are_independent(factory);
    compaction_keeps_contents(factory);
    range_bounds_of_every_kind_return_exactly_the_keys_between(factory);
    range_limit_is_respected(factory);
    readers_never_see_half_a_batch(factory);
}

fn keys(pairs: Vec<KeyValue>) -> Vec<Vec<u8>> {
    pairs.into_iter().map(|(k, _)| k).collect()
}

/// A table never written reads as empty, not as an error.
pub fn get_of_missing_table_and_key_is_none(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    assert_eq!(store.get("never_written", b"k").unwrap(), None, "missing table reads as empty");
    assert!(store.scan_prefix("never_written", b"", 10).unwrap().is_empty());
    assert!(store.range("never_written", Bound::Excluded(b"a"), Bound::Excluded(b"a"), 10).unwrap().is_empty());
}

/// Puts replace, deletes remove, deleting an absent key is fine.
pub fn put_get_delete(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
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

/// A batch with an invalid table writes nothing at all.
pub fn batch_is_atomic_on_error(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    batch.put("t", b"x".to_vec(), b"1".to_vec());
    batch.put("Bad Table", b"y".to_vec(), b"1".to_vec());
    let err = store.commit(batch).unwrap_err();
    assert!(matches!(err, StateError::InvalidTable(_)), "{err}");
    assert_eq!(store.get("t", b"x").unwrap(), None, "a failed batch writes nothing");
}

/// A batch's operations apply in order, including a delete-prefix over the batch's own
/// earlier writes.
pub fn batch_applies_in_order(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
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

/// Scans come back in key order, honour their bounds and limit; an inverted range is empty.
pub fn range_and_prefix_scans_are_ordered_and_bounded(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    for key in ["p/3", "p/1", "p/2", "q/1", "p\u{7f}"] {
        batch.put("t", key.as_bytes().to_vec(), key.as_bytes().to_vec());
    }
    batch.put("t", vec![b'p', b'/', 0xff], b"max".to_vec());
    store.commit(batch).unwrap();
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

/// A delete-prefix removes exactly the keys with that prefix.
pub fn delete_prefix_removes_only_matching(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    for key in ["u1/a", "u1/b", "u10/a", "u2/a"] {
        batch.put("t", key.as_bytes().to_vec(), b"v".to_vec());
    }
    store.commit(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_prefix("t", b"u1/".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(keys(store.scan_prefix("t", b"", 100).unwrap()), vec![b"u10/a".to_vec(), b"u2/a".to_vec()]);
}

/// The same key in two tables holds two values.
pub fn tables_are_independent(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    batch.put("one", b"k".to_vec(), b"1".to_vec());
    batch.put("two", b"k".to_vec(), b"2".to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("one", b"k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.get("two", b"k").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Compaction (of an empty and of a used store) keeps the contents and the store writable.
pub fn compaction_keeps_contents(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
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

fn bound_text(bound: Bound<&[u8]>) -> String {
    match bound {
        Bound::Included(k) => format!("Included({:?})", String::from_utf8_lossy(k)),
        Bound::Excluded(k) => format!("Excluded({:?})", String::from_utf8_lossy(k)),
        Bound::Unbounded => "Unbounded".to_owned(),
    }
}

fn within(key: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let after_start = match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

/// Every combination of Included / Excluded / Unbounded bounds, with equal, crossed and
/// ordered keys (present and absent ones), returns exactly the stored keys between the
/// bounds, possibly none, and never panics.
pub fn range_bounds_of_every_kind_return_exactly_the_keys_between(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let stored: [&[u8]; 5] = [b"b", b"c", b"cc", b"d", b"f"];
    let mut batch = WriteBatch::new();
    for key in stored {
        batch.put("t", key.to_vec(), [b"v-", key].concat());
    }
    store.commit(batch).unwrap();
    // Below, equal to, between and above the stored keys; the empty key is the least.
    let probes: [&[u8]; 8] = [b"", b"a", b"b", b"c", b"ca", b"cc", b"e", b"z"];
    let kinds = |key: &'static [u8]| [Bound::Included(key), Bound::Excluded(key), Bound::Unbounded];
    let mut checked = 0;
    for start_key in probes {
        for end_key in probes {
            for start in kinds(start_key) {
                for end in kinds(end_key) {
                    let expected: Vec<Vec<u8>> = stored.iter().filter(|k| within(k, start, end)).map(|k| k.to_vec()).collect();
                    let what = format!("range({}, {})", bound_text(start), bound_text(end));
                    let got = std::panic::catch_unwind(AssertUnwindSafe(|| store.range("t", start, end, 100)))
                        .unwrap_or_else(|_| panic!("{what} panicked"))
                        .unwrap_or_else(|e| panic!("{what} failed: {e}"));
                    for (k, v) in &got {
                        assert_eq!(v, &[b"v-", &k[..]].concat(), "{what}: value of {k:?}");
                    }
                    assert_eq!(keys(got), expected, "{what}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 8 * 8 * 9);
}

/// `limit` caps every scan: 0 returns nothing, 1 the first key, the exact count and more
/// than available everything, always from the start of the range in key order.
pub fn range_limit_is_respected(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    for i in 0..10u8 {
        batch.put("t", vec![b'k', b'0' + i], vec![i]);
    }
    batch.put("t", b"other".to_vec(), b"x".to_vec());
    store.commit(batch).unwrap();
    let all: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'k', b'0' + i]).collect();
    type Scan<'a> = Box<dyn Fn(usize) -> Vec<Vec<u8>> + 'a>;
    let scans: [(&str, Scan<'_>, Vec<Vec<u8>>); 3] = [
        ("scan_prefix", Box::new(|limit| keys(store.scan_prefix("t", b"k", limit).unwrap())), all.clone()),
        ("bounded range", Box::new(|limit| keys(store.range("t", Bound::Included(b"k"), Bound::Excluded(b"l"), limit).unwrap())), all.clone()),
        ("open range", Box::new(|limit| keys(store.range("t", Bound::Excluded(b"k3"), Bound::Unbounded, limit).unwrap())), {
            let mut tail = all[4..].to_vec();
            tail.push(b"other".to_vec());
            tail
        }),
    ];
    for (what, scan, expected) in &scans {
        let n = expected.len();
        assert!(scan(0).is_empty(), "{what}: limit 0");
        assert_eq!(scan(1), expected[..1].to_vec(), "{what}: limit 1");
        assert_eq!(scan(3), expected[..3].to_vec(), "{what}: limit 3");
        assert_eq!(scan(n), *expected, "{what}: limit = count");
        assert_eq!(scan(n + 1), *expected, "{what}: limit > count");
        assert_eq!(scan(usize::MAX), *expected, "{what}: limit usize::MAX");
    }
}

/// What was committed (puts, replacements, deletes, delete-prefixes, several tables) is
/// there after closing and reopening the store, and the store takes commits again.
pub fn committed_data_survives_reopen(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let mut batch = WriteBatch::new();
    batch.put("positions", b"p".to_vec(), 42u64.to_be_bytes().to_vec());
    for i in 0..50u32 {
        batch.put("cold", format!("owner/{i:03}").into_bytes(), vec![i as u8; 64]);
    }
    batch.put("cold", b"gone/1".to_vec(), b"x".to_vec());
    store.commit(batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("positions", b"p".to_vec(), 43u64.to_be_bytes().to_vec());
    batch.delete("cold", b"owner/007".to_vec());
    batch.delete_prefix("cold", b"gone/".to_vec());
    store.commit(batch).unwrap();
    let Some(store) = factory.reopen(store) else {
        eprintln!("note: this store is volatile by design (its factory cannot reopen it); nothing to check");
        return;
    };
    assert_eq!(store.get("positions", b"p").unwrap(), Some(43u64.to_be_bytes().to_vec()), "the last commit wins after a reopen");
    let cold = store.scan_prefix("cold", b"", 100).unwrap();
    let expected: Vec<KeyValue> = (0..50u32).filter(|i| *i != 7).map(|i| (format!("owner/{i:03}").into_bytes(), vec![i as u8; 64])).collect();
    assert_eq!(cold, expected, "puts, deletes and delete-prefixes survive a reopen");
    let mut batch = WriteBatch::new();
    batch.put("positions", b"p".to_vec(), 44u64.to_be_bytes().to_vec());
    store.commit(batch).unwrap();
    assert_eq!(store.get("positions", b"p").unwrap(), Some(44u64.to_be_bytes().to_vec()), "writable after a reopen");
    let store = factory.reopen(store).expect("a store that reopened once reopens again");
    assert_eq!(store.get("positions", b"p").unwrap(), Some(44u64.to_be_bytes().to_vec()));
}

const TOTAL: u64 = 1_000;
const SET_SIZE: u64 = 8;

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("an 8-byte value"))
}

/// Readers on other threads scanning while batches commit see each batch whole or not at
/// all: a transfer between two accounts (their sum never changes), a token moved from one
/// key to another (exactly one holds it), and a set of keys replaced by delete-prefix and
/// puts (all keys present, all of one generation).
pub fn readers_never_see_half_a_batch(factory: &mut dyn StoreFactory) {
    let store = factory.fresh();
    let store: &dyn KvStore = &*store;
    let mut batch = WriteBatch::new();
    batch.put("t", b"acct/a".to_vec(), TOTAL.to_be_bytes().to_vec());
    batch.put("t", b"acct/b".to_vec(), 0u64.to_be_bytes().to_vec());
    batch.put("t", b"token/0".to_vec(), b"t".to_vec());
    for i in 0..SET_SIZE {
        batch.put("t", format!("set/{i}").into_bytes(), 0u64.to_be_bytes().to_vec());
    }
    store.commit(batch).unwrap();
    const COMMITS: u64 = 150;
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        let check = || {
            while !done.load(Ordering::Acquire) {
                let accounts = store.scan_prefix("t", b"acct/", 10).unwrap();
                assert_eq!(accounts.len(), 2, "both accounts exist: {accounts:?}");
                let sum: u64 = accounts.iter().map(|(_, v)| u64_of(v)).sum();
                assert_eq!(sum, TOTAL, "half a transfer was visible: {accounts:?}");
                let tokens = store.scan_prefix("t", b"token/", 10).unwrap();
                assert_eq!(tokens.len(), 1, "a moved token must be in exactly one place: {tokens:?}");
                let set = store.scan_prefix("t", b"set/", 100).unwrap();
                assert_eq!(set.len() as u64, SET_SIZE, "a replaced set was seen partly deleted: {} keys", set.len());
                let generation = u64_of(&set[0].1);
                assert!(set.iter().all(|(_, v)| u64_of(v) == generation), "a replaced set mixed generations");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        };
        let readers: Vec<_> = (0..3).map(|_| s.spawn(check)).collect();
        let writer = s.spawn(|| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                for n in 1..=COMMITS {
                    let mut batch = WriteBatch::new();
                    let moved = (n * 37) % TOTAL;
                    batch.put("t", b"acct/a".to_vec(), (TOTAL - moved).to_be_bytes().to_vec());
                    batch.put("t", b"acct/b".to_vec(), moved.to_be_bytes().to_vec());
                    batch.delete("t", format!("token/{}", n - 1).into_bytes());
                    batch.put("t", format!("token/{n}").into_bytes(), b"t".to_vec());
                    batch.delete_prefix("t", b"set/".to_vec());
                    for i in 0..SET_SIZE {
                        batch.put("t", format!("set/{i}").into_bytes(), n.to_be_bytes().to_vec());
                    }
                    store.commit(batch).unwrap();
                }
            }));
            done.store(true, Ordering::Release);
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        });
        let reader_results: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        writer.join().expect("the writer failed");
        for result in reader_results {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0, "the readers read nothing while the batches committed");
    assert_eq!(store.get("t", format!("token/{COMMITS}").as_bytes()).unwrap().as_deref(), Some(&b"t"[..]));
}
