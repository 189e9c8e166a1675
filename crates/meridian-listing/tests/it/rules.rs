//! Hand-written examples: interleaving and pinning rules (and their run-length property),
//! SPU de-duplication, immediate visibility of changes, and every error code.

use crate::{engine_with, item};
use meridian_listing::{CategorySettings, Change, Filters, ListingConfig, ListingEngine, ListingError, Paging, Pin, Query, SortKey};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn skus(engine: &ListingEngine, query: &Query) -> Vec<u64> {
    engine.query(query).unwrap().items.iter().map(|i| i.sku).collect()
}

fn first_page(category: u32, size: u32) -> Query {
    Query { category, paging: Paging::Page { page: 1, size }, ..Query::default() }
}

/// Brand A (skus 1..=5) sorts before brand B (6, 7); all in one shop.
fn two_brands() -> ListingEngine {
    let mut items: Vec<_> = (1..=5).map(|i| item(i, i, &[1], 1, 1, 10.0 - i as f32)).collect();
    items.extend((6..=7).map(|i| item(i, i, &[1], 2, 1, 10.0 - i as f32)));
    engine_with(items)
}

#[test]
fn interleaving_breaks_brand_runs_within_the_window() {
    let engine = two_brands();
    assert_eq!(skus(&engine, &first_page(1, 10)), vec![1, 2, 3, 4, 5, 6, 7], "no limit: plain order");
    engine.set_settings(1, CategorySettings { max_brand_run: Some(2), window: 8, ..CategorySettings::default() }).unwrap();
    assert_eq!(skus(&engine, &first_page(1, 10)), vec![1, 2, 6, 3, 4, 7, 5]);
    // With a window of 2 the engine cannot see brand B at position 2: the run goes on.
    engine.set_settings(1, CategorySettings { max_brand_run: Some(2), window: 2, ..CategorySettings::default() }).unwrap();
    assert_eq!(skus(&engine, &first_page(1, 10)), vec![1, 2, 3, 4, 6, 5, 7]);
}

#[test]
fn interleaving_limits_shop_runs_too() {
    let items: Vec<_> = (1..=6).map(|i| item(i, i, &[1], i as u32, if i <= 4 { 1 } else { 2 }, 10.0 - i as f32)).collect();
    let engine = engine_with(items);
    engine.set_settings(1, CategorySettings { max_shop_run: Some(1), window: 10, ..CategorySettings::default() }).unwrap();
    // Shop 1 holds 1-4, shop 2 holds 5-6; alternating until shop 2 runs out.
    assert_eq!(skus(&engine, &first_page(1, 10)), vec![1, 5, 2, 6, 3, 4]);
}

#[test]
fn pins_take_their_positions_once_and_only_when_they_match() {
    let engine = two_brands();
    // Sku 8 shares SPU 7 with sku 7; pinning 7 hides 8.
    engine.apply(Change::Upsert(Box::new(item(8, 7, &[1], 2, 1, 100.0)))).unwrap();
    engine.set_settings(1, CategorySettings { pins: vec![Pin { position: 0, sku: 7 }, Pin { position: 3, sku: 2 }, Pin { position: 30, sku: 4 }], ..CategorySettings::default() }).unwrap();
    let page = engine.query(&first_page(1, 10)).unwrap();
    let got: Vec<(u64, bool)> = page.items.iter().map(|i| (i.sku, i.pinned)).collect();
    assert_eq!(got, vec![(7, true), (1, false), (3, false), (2, true), (5, false), (6, false), (4, true)]);
    assert_eq!(page.total, 7, "7 SPUs: 1-6 and 7 (skus 7 and 8)");
    // A filter excluding the pinned SKU drops the pin and lets its SPU sibling back.
    let q = Query { filters: Filters { price_min: Some(1008), ..Filters::default() }, ..first_page(1, 10) };
    assert_eq!(skus(&engine, &q), vec![8]);
    // Page 2 continues the same sequence.
    let q2 = Query { paging: Paging::Page { page: 2, size: 3 }, ..first_page(1, 3) };
    assert_eq!(skus(&engine, &q2), vec![2, 5, 6]);
}

#[test]
fn spu_de_duplication_keeps_the_best_sku_and_counts_spus() {
    let items = vec![item(1, 9, &[1], 1, 1, 1.0), item(2, 9, &[1], 1, 1, 5.0), item(3, 8, &[1], 1, 1, 3.0)];
    let engine = engine_with(items);
    let page = engine.query(&first_page(1, 10)).unwrap();
    assert_eq!(page.items.iter().map(|i| i.sku).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(page.total, 2);
    let by_price = Query { sort: SortKey::PriceAsc, ..first_page(1, 10) };
    assert_eq!(skus(&engine, &by_price), vec![1, 3], "the cheapest SKU of SPU 9 under price_asc");
}

#[test]
fn changes_are_visible_to_the_next_query() {
    let engine = two_brands();
    let by_price = Query { sort: SortKey::PriceAsc, ..first_page(1, 10) };
    assert_eq!(skus(&engine, &by_price)[0], 1);
    engine.apply(Change::Price { sku: 7, price: 1 }).unwrap();
    assert_eq!(skus(&engine, &by_price)[0], 7);
    engine.apply(Change::Shelf { sku: 7, on_shelf: false }).unwrap();
    assert!(!skus(&engine, &by_price).contains(&7));
    engine.apply(Change::Remove { sku: 1 }).unwrap();
    assert_eq!(skus(&engine, &by_price), vec![2, 3, 4, 5, 6]);
    engine.apply(Change::Upsert(Box::new(item(50, 50, &[1], 3, 1, 0.0)))).unwrap();
    assert!(skus(&engine, &by_price).contains(&50));
    engine.apply(Change::Quality { sku: 50, score: 99.0 }).unwrap();
    assert_eq!(skus(&engine, &first_page(1, 1)), vec![50]);
    engine.apply(Change::Stock { sku: 50, stock: 0 }).unwrap();
    let in_stock = Query { filters: Filters { in_stock: true, ..Filters::default() }, ..first_page(1, 1) };
    assert_ne!(skus(&engine, &in_stock), vec![50]);
    engine.merge_now(None);
    assert_eq!(skus(&engine, &first_page(1, 1)), vec![50], "a merge changes nothing visible");
    assert!(engine.stats().merges >= 1);
}

#[test]
fn every_error_has_its_code() {
    let engine = two_brands();
    let code = |q: Query| engine.query(&q).unwrap_err().code();
    assert_eq!(code(first_page(77, 10)), "unknown_category");
    let attrs = |k: &str| Filters { attributes: BTreeMap::from([(k.to_owned(), vec!["x".to_owned()])]), ..Filters::default() };
    assert_eq!(code(Query { filters: attrs("weight"), ..first_page(1, 10) }), "unknown_attribute");
    assert_eq!("cheapest".parse::<SortKey>().unwrap_err().code(), "unknown_sort");
    assert_eq!(code(Query { paging: Paging::Page { page: 0, size: 10 }, ..first_page(1, 10) }), "page_out_of_range");
    assert_eq!(code(Query { paging: Paging::Page { page: 2, size: 10 }, ..first_page(1, 10) }), "page_out_of_range");
    assert_eq!(code(Query { paging: Paging::Page { page: 1001, size: 10 }, ..first_page(1, 10) }), "page_out_of_range");
    assert_eq!(code(Query { paging: Paging::Page { page: 1, size: 0 }, ..first_page(1, 10) }), "invalid_page_size");
    assert_eq!(code(Query { paging: Paging::Page { page: 1, size: 201 }, ..first_page(1, 10) }), "invalid_page_size");
    assert_eq!(code(Query { filters: Filters { price_min: Some(5), price_max: Some(4), ..Filters::default() }, ..first_page(1, 10) }), "invalid_price_range");
    assert_eq!(code(Query { paging: Paging::Cursor { cursor: "garbage".into(), size: 2 }, ..first_page(1, 10) }), "bad_cursor");
    let cursor = engine.query(&first_page(1, 2)).unwrap().next_cursor.unwrap();
    let other = Query { sort: SortKey::Sales, paging: Paging::Cursor { cursor, size: 2 }, ..first_page(1, 2) };
    assert_eq!(code(other), "bad_cursor", "a cursor of another query");
    assert_eq!(engine.apply(Change::Price { sku: 404, price: 1 }).unwrap_err().code(), "unknown_sku");
    assert_eq!(engine.apply(Change::Upsert(Box::new(item(9, 9, &[], 1, 1, 0.0)))).unwrap_err().code(), "invalid_item");
    assert_eq!(engine.apply(Change::Upsert(Box::new(item(9, 9, &[2, 1], 1, 1, 0.0)))).unwrap_err().code(), "invalid_item", "1 is a top category");
    assert_eq!(engine.set_settings(1, CategorySettings { window: 0, ..CategorySettings::default() }).unwrap_err().code(), "invalid_settings");
    assert_eq!(engine.set_settings(1, CategorySettings { pins: vec![Pin { position: 1, sku: 404 }], ..CategorySettings::default() }).unwrap_err().code(), "unknown_sku");
    assert!(ListingEngine::new(ListingConfig { max_depth: 0, ..ListingConfig::default() }).is_err());

    // More than 60 filter keys.
    let mut wide = item(100, 100, &[5], 1, 1, 0.0);
    for k in 0..61 {
        wide.attributes.insert(format!("k{k}"), vec!["v".into()]);
    }
    let engine = crate::engine_with(vec![wide]);
    let filters = Filters { attributes: (0..61).map(|k| (format!("k{k}"), vec!["v".to_owned()])).collect(), ..Filters::default() };
    let err: ListingError = engine.query(&Query { filters, ..first_page(5, 10) }).unwrap_err();
    assert_eq!(err.code(), "invalid_filter");
}

fn max_runs(seq: &[(u32, u32, bool)]) -> Vec<(usize, usize)> {
    // For each position, the length of the brand run and shop run ending there.
    let mut out = Vec::new();
    for i in 0..seq.len() {
        let b = seq[..=i].iter().rev().take_while(|x| x.0 == seq[i].0).count();
        let s = seq[..=i].iter().rev().take_while(|x| x.1 == seq[i].1).count();
        out.push((b, s));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// With a window covering the whole category, a brand run longer than k only happens
    /// once every remaining item has that brand (and likewise for shops, without a brand
    /// limit).
    #[test]
    fn runs_exceed_k_only_when_nothing_else_remains(brands in prop::collection::vec(1u32..4, 1..40), k in 1u32..3, by_shop in any::<bool>()) {
        let items: Vec<_> = brands.iter().enumerate().map(|(i, &b)| {
            let i = i as u64 + 1;
            if by_shop { item(i, i, &[1], 1, b, 100.0 - i as f32) } else { item(i, i, &[1], b, 1, 100.0 - i as f32) }
        }).collect();
        let engine = engine_with(items);
        let settings = if by_shop {
            CategorySettings { max_shop_run: Some(k), window: 256, ..CategorySettings::default() }
        } else {
            CategorySettings { max_brand_run: Some(k), window: 256, ..CategorySettings::default() }
        };
        engine.set_settings(1, settings).unwrap();
        let page = engine.query(&first_page(1, 200)).unwrap();
        prop_assert_eq!(page.items.len(), brands.len());
        let seq: Vec<(u32, u32, bool)> = page.items.iter().map(|i| (i.brand, i.shop, i.pinned)).collect();
        let runs = max_runs(&seq);
        for (i, &(b, s)) in runs.iter().enumerate() {
            let run = if by_shop { s } else { b };
            if run > k as usize {
                let value = if by_shop { seq[i].1 } else { seq[i].0 };
                let rest_same = seq[i..].iter().all(|x| (if by_shop { x.1 } else { x.0 }) == value);
                prop_assert!(rest_same, "run of {} at {} while other values remain: {:?}", run, i, seq);
            }
        }
    }
}
