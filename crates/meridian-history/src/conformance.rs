//! The conformance suite every [`HotTier`] backend passes. Backends call [`run_all`] from
//! their tests with a factory making a fresh, empty tier for a config. Times are taken
//! from the wall clock so backends with server-side expiry (Redis) pass too.

use crate::hot::{HotConfig, HotList, HotTier, OwnerUpdate};
use crate::model::{Clock, Entry, OwnerKey, SystemClock};

/// Runs every check against tiers made by `make`. Panics with the name of the failing
/// check.
pub fn run_all(make: &mut dyn FnMut(HotConfig) -> Box<dyn HotTier>) {
    let config = HotConfig { max_items: 5, ttl_ms: 3_600_000 };
    unknown_owner_is_none(&*make(config));
    record_deduplicates_and_orders_newest_first(&*make(config));
    out_of_order_views_do_not_reorder(&*make(config));
    trims_to_n_keeping_the_newest(&*make(config));
    batches_touch_each_owner_independently(&*make(config));
    re_recording_is_idempotent(&*make(config));
    remove_skus_and_owner(&*make(config));
    expires_after_ttl_since_last_write(&*make(config));
    promotion_merges_with_newer_views(&*make(config));
    full_size_lists_round_trip(&*make(HotConfig { max_items: 200, ttl_ms: 3_600_000 }));
    complete_mark_is_set_kept_and_replaced(&*make(config));
    complete_mark_is_not_an_entry(&*make(config));
    complete_mark_goes_with_the_list(&*make(config));
}

fn now() -> i64 {
    crate::model::normalize_ms(SystemClock.now_ms())
}

fn owner(n: u128) -> OwnerKey {
    OwnerKey(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ 0x5151)
}

fn update(o: OwnerKey, views: &[(u64, i64)]) -> OwnerUpdate {
    OwnerUpdate::views(o, views.iter().map(|(s, t)| Entry::new(*s, *t)).collect())
}

fn marked(o: OwnerKey, views: &[(u64, i64)], generation: u32) -> OwnerUpdate {
    OwnerUpdate { complete_in: Some(generation), ..update(o, views) }
}

fn mark(tier: &dyn HotTier, o: OwnerKey, t: i64) -> Option<u32> {
    tier.read(o, t).unwrap().expect("owner is present").complete_in
}

fn skus(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.sku).collect()
}

fn unknown_owner_is_none(tier: &dyn HotTier) {
    assert_eq!(tier.get(owner(1), now()).unwrap(), None, "unknown owner reads as None");
    tier.remove_skus(owner(1), &[1, 2]).unwrap();
    tier.remove_owner(owner(1)).unwrap();
    tier.record(&[], now()).unwrap();
    tier.record(&[update(owner(1), &[])], now()).unwrap();
    assert_eq!(tier.get(owner(1), now()).unwrap(), None, "an empty update creates nothing");
}

fn record_deduplicates_and_orders_newest_first(tier: &dyn HotTier) {
    let t = now();
    let o = owner(2);
    tier.record(&[update(o, &[(10, t - 50_000), (11, t - 40_000), (10, t - 30_000)])], t).unwrap();
    tier.record(&[update(o, &[(12, t - 20_000)])], t).unwrap();
    let got = tier.get(o, t).unwrap().expect("recorded owner is present");
    assert_eq!(got, vec![Entry::new(12, t - 20_000), Entry::new(10, t - 30_000), Entry::new(11, t - 40_000)], "distinct, newest first");
    tier.record(&[update(o, &[(11, t - 10_000)])], t).unwrap();
    assert_eq!(skus(&tier.get(o, t).unwrap().unwrap()), vec![11, 12, 10], "a later view moves the SKU to the front");
}

fn out_of_order_views_do_not_reorder(tier: &dyn HotTier) {
    let t = now();
    let o = owner(3);
    tier.record(&[update(o, &[(1, t - 10_000), (2, t - 20_000)])], t).unwrap();
    // A late-arriving older view of SKU 1 must not move it or lower its time.
    tier.record(&[update(o, &[(1, t - 90_000), (3, t - 15_000)])], t).unwrap();
    assert_eq!(
        tier.get(o, t).unwrap().unwrap(),
        vec![Entry::new(1, t - 10_000), Entry::new(3, t - 15_000), Entry::new(2, t - 20_000)],
        "event time decides the order"
    );
}

fn trims_to_n_keeping_the_newest(tier: &dyn HotTier) {
    let t = now();
    let o = owner(4);
    let views: Vec<(u64, i64)> = (0..8u64).map(|i| (100 + i, t - 100_000 + i as i64 * 1000)).collect();
    tier.record(&[update(o, &views[..4])], t).unwrap();
    tier.record(&[update(o, &views[4..])], t).unwrap();
    assert_eq!(skus(&tier.get(o, t).unwrap().unwrap()), vec![107, 106, 105, 104, 103], "N = 5 newest kept");
    // A view older than everything kept does not enter a full list.
    tier.record(&[update(o, &[(999, t - 500_000)])], t).unwrap();
    assert_eq!(skus(&tier.get(o, t).unwrap().unwrap()), vec![107, 106, 105, 104, 103]);
}

fn batches_touch_each_owner_independently(tier: &dyn HotTier) {
    let t = now();
    let updates: Vec<OwnerUpdate> = (10..40u128).map(|i| update(owner(i), &[(i as u64, t - 1000), (i as u64 + 1, t - 2000)])).collect();
    tier.record(&updates, t).unwrap();
    for i in 10..40u128 {
        assert_eq!(skus(&tier.get(owner(i), t).unwrap().unwrap()), vec![i as u64, i as u64 + 1], "owner {i}");
    }
}

fn re_recording_is_idempotent(tier: &dyn HotTier) {
    let t = now();
    let o = owner(50);
    let u = update(o, &[(1, t - 3000), (2, t - 2000), (3, t - 1000)]);
    tier.record(std::slice::from_ref(&u), t).unwrap();
    let once = tier.get(o, t).unwrap();
    tier.record(std::slice::from_ref(&u), t).unwrap();
    tier.record(&[u.clone(), u], t).unwrap();
    assert_eq!(tier.get(o, t).unwrap(), once, "re-applying updates changes nothing");
}

fn remove_skus_and_owner(tier: &dyn HotTier) {
    let t = now();
    let (a, b) = (owner(60), owner(61));
    tier.record(&[update(a, &[(1, t - 3000), (2, t - 2000), (3, t - 1000)]), update(b, &[(1, t - 1000)])], t).unwrap();
    tier.remove_skus(a, &[2, 77]).unwrap();
    assert_eq!(skus(&tier.get(a, t).unwrap().unwrap()), vec![3, 1], "removed SKU gone, others kept");
    tier.remove_owner(a).unwrap();
    assert_eq!(tier.get(a, t).unwrap(), None, "removed owner is gone");
    assert_eq!(skus(&tier.get(b, t).unwrap().unwrap()), vec![1], "other owners untouched");
}

fn expires_after_ttl_since_last_write(tier: &dyn HotTier) {
    let ttl = tier.config().ttl_ms;
    let t = now();
    let (old, refreshed) = (owner(70), owner(71));
    let long_ago = t - ttl - 10_000;
    tier.record(&[update(old, &[(1, long_ago - 1000)]), update(refreshed, &[(1, long_ago - 1000)])], long_ago).unwrap();
    assert_eq!(tier.get(old, t).unwrap(), None, "expired ttl after the last write");
    tier.record(&[update(refreshed, &[(2, t - 1000)])], t).unwrap();
    assert_eq!(skus(&tier.get(refreshed, t).unwrap().unwrap()), vec![2], "an expired owner restarts empty");
    let recent = owner(72);
    tier.record(&[update(recent, &[(5, t - 5000)])], t - ttl + 60_000).unwrap();
    assert!(tier.get(recent, t).unwrap().is_some(), "alive until ttl has passed");
}

fn promotion_merges_with_newer_views(tier: &dyn HotTier) {
    let t = now();
    let o = owner(80);
    tier.record(&[update(o, &[(9, t - 1000)])], t).unwrap();
    let cold = [Entry::new(9, t - 90_000), Entry::new(8, t - 80_000), Entry::new(7, t - 70_000)];
    let promote = |o| OwnerUpdate { owner: o, entries: cold.to_vec(), complete_in: Some(0) };
    tier.record(&[promote(o)], t).unwrap();
    assert_eq!(
        tier.get(o, t).unwrap().unwrap(),
        vec![Entry::new(9, t - 1000), Entry::new(7, t - 70_000), Entry::new(8, t - 80_000)],
        "promotion never overwrites a newer view"
    );
    let fresh = owner(81);
    tier.record(&[promote(fresh)], t).unwrap();
    assert_eq!(tier.read(fresh, t).unwrap(), Some(HotList { entries: vec![cold[2], cold[1], cold[0]], complete_in: Some(0) }));
}

fn full_size_lists_round_trip(tier: &dyn HotTier) {
    let t = now();
    let o = owner(90);
    let views: Vec<(u64, i64)> = (0..300u64).map(|i| (100_000_001 + i * 13, t - 1_000_000 + i as i64 * 1000)).collect();
    tier.record(&[update(o, &views)], t).unwrap();
    let got = tier.get(o, t).unwrap().unwrap();
    assert_eq!(got.len(), 200);
    assert_eq!(got[0], Entry::new(100_000_001 + 299 * 13, t - 1_000_000 + 299_000));
    assert_eq!(got[199], Entry::new(100_000_001 + 100 * 13, t - 1_000_000 + 100_000));
    assert!(got.windows(2).all(|w| w[0].time_ms > w[1].time_ms));
}

fn complete_mark_is_set_kept_and_replaced(tier: &dyn HotTier) {
    let t = now();
    let o = owner(100);
    tier.record(&[update(o, &[(1, t - 5000)])], t).unwrap();
    assert_eq!(mark(tier, o, t), None, "a new list has no mark");
    tier.record(&[marked(o, &[(2, t - 4000)], 3)], t).unwrap();
    assert_eq!(mark(tier, o, t), Some(3), "an update can mark the list");
    tier.record(&[update(o, &[(3, t - 3000)])], t).unwrap();
    assert_eq!(mark(tier, o, t), Some(3), "later views keep the mark");
    tier.record(&[update(o, &[(3, t - 3000)])], t).unwrap();
    assert_eq!(mark(tier, o, t), Some(3), "an update that changes no entry keeps the mark");
    tier.record(&[marked(o, &[(2, t - 4000)], 4)], t).unwrap();
    assert_eq!(mark(tier, o, t), Some(4), "a newer generation replaces the mark, even without new entries");
    tier.remove_skus(o, &[1]).unwrap();
    assert_eq!(tier.read(o, t).unwrap(), Some(HotList { entries: vec![Entry::new(3, t - 3000), Entry::new(2, t - 4000)], complete_in: Some(4) }), "removing SKUs keeps it");
    tier.record(&[marked(owner(101), &[(7, t - 1000)], 0), update(owner(102), &[(7, t - 1000)])], t).unwrap();
    assert_eq!((mark(tier, owner(101), t), mark(tier, owner(102), t)), (Some(0), None), "generation 0 is a mark; marks are per owner");
    tier.remove_owner(o).unwrap();
    tier.record(&[update(o, &[(9, t - 1000)])], t).unwrap();
    assert_eq!(mark(tier, o, t), None, "a removed owner's mark is gone with it");
}

fn complete_mark_is_not_an_entry(tier: &dyn HotTier) {
    let t = now();
    let o = owner(110);
    let n = tier.config().max_items as u64;
    let full: Vec<(u64, i64)> = (0..n).map(|i| (200 + i, t - 100_000 + i as i64 * 1000)).collect();
    tier.record(&[marked(o, &full, 1)], t).unwrap();
    let got = tier.read(o, t).unwrap().unwrap();
    assert_eq!((got.entries.len(), got.complete_in), (n as usize, Some(1)), "a full marked list holds N entries");
    tier.record(&[update(o, &[(999, t - 500)])], t).unwrap();
    let got = tier.read(o, t).unwrap().unwrap();
    assert_eq!(got.entries.len(), n as usize, "still N after a newer view");
    assert_eq!((got.entries[0], got.complete_in), (Entry::new(999, t - 500), Some(1)), "the newest view is in, the oldest out, the mark kept");
    assert!(!skus(&got.entries).contains(&200));
}

fn complete_mark_goes_with_the_list(tier: &dyn HotTier) {
    let ttl = tier.config().ttl_ms;
    let t = now();
    let o = owner(120);
    let long_ago = t - ttl - 10_000;
    tier.record(&[marked(o, &[(1, long_ago - 1000)], 2)], long_ago).unwrap();
    assert_eq!(tier.read(o, t).unwrap(), None, "expired with its list");
    tier.record(&[update(o, &[(2, t - 1000)])], t).unwrap();
    assert_eq!(tier.read(o, t).unwrap(), Some(HotList { entries: vec![Entry::new(2, t - 1000)], complete_in: None }), "an expired owner restarts unmarked");
}
