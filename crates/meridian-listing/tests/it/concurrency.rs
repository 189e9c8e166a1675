//! Readers querying while one writer applies changes (with background merges): every read
//! sees one consistent snapshot, batches are atomic, and nothing goes backwards.

use crate::item;
use meridian_listing::{Change, Filters, ListingConfig, ListingEngine, MergeMode, Paging, Query, SortKey};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn readers_see_whole_batches_and_never_go_backwards() {
    let engine = Arc::new(ListingEngine::new(ListingConfig { merge_mode: MergeMode::Background, merge_min_changes: 16, merge_max_changes: 64, ..ListingConfig::default() }).unwrap());
    // Two watched SKUs in category [1, 2] and 200 others.
    let mut items = vec![item(1, 1, &[1, 2], 1, 1, 0.0), item(2, 2, &[1, 2], 2, 1, 0.0)];
    items[0].price = 1000;
    items[1].price = 1000;
    items.extend((10..210).map(|i| item(i, i, &[1, 2], 3 + (i % 5) as u32, 2, 1.0)));
    engine.load(items, &mut |_| {}).unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let category = if r % 2 == 0 { 1 } else { 2 };
                let watched = Query { category, filters: Filters { brands: vec![1, 2], ..Filters::default() }, sort: SortKey::PriceAsc, paging: Paging::Page { page: 1, size: 10 }, facets: true };
                let mut last = 0u64;
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let page = engine.query(&watched).unwrap();
                    assert_eq!(page.items.len(), 2, "both watched SKUs, always");
                    assert_eq!(page.total, 2);
                    let (a, b) = (page.items[0].price, page.items[1].price);
                    assert_eq!(a, b, "a batch sets both prices: a reader sees both or neither");
                    assert!(a >= last, "generations never go backwards ({a} after {last})");
                    last = a;
                    let facets = page.facets.unwrap();
                    assert_eq!(facets.brands.iter().filter(|c| c.value <= 2).map(|c| c.count).sum::<u64>(), 2);
                    let all = engine.query(&Query { category, paging: Paging::Page { page: 1, size: 50 }, ..Query::default() }).unwrap();
                    assert_eq!(all.total, 202, "stock and price changes never change the SKU count");
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let start = Instant::now();
    let mut generation = 1000u64;
    let mut noise = 0u32;
    while start.elapsed() < Duration::from_millis(800) {
        generation += 1;
        let mut batch = vec![Change::Price { sku: 1, price: generation }, Change::Price { sku: 2, price: generation }];
        for _ in 0..20 {
            noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            batch.push(Change::Stock { sku: 10 + u64::from(noise % 200), stock: noise % 3 });
            batch.push(Change::Price { sku: 10 + u64::from((noise >> 8) % 200), price: u64::from(noise % 10_000) });
        }
        let report = engine.apply_batch(&batch);
        assert_eq!(report.n_errors, 0);
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 10, "readers made progress ({reads})");
    assert!(engine.stats().merges > 0, "background merges ran");
    let page = engine.query(&Query { category: 2, filters: Filters { brands: vec![1], ..Filters::default() }, ..Query::default() }).unwrap();
    assert_eq!(page.items[0].price, generation, "the last batch is visible");
}

#[test]
fn a_delta_below_the_threshold_is_merged_once_its_category_stops_changing() {
    let engine = ListingEngine::new(ListingConfig { merge_mode: MergeMode::Background, merge_min_changes: 1_000, ..ListingConfig::default() }).unwrap();
    engine.load((1..=50).map(|i| item(i, i, &[1, 2], 1, 1, 0.0)).collect::<Vec<_>>(), &mut |_| {}).unwrap();
    let mut seen = Default::default();
    assert_eq!(engine.merge_quiet(&mut seen), 0, "nothing pending after the load");
    engine.apply(Change::Price { sku: 7, price: 1 }).unwrap();
    let pending = |engine: &ListingEngine| engine.category_size(2).map(|(_, delta)| delta);
    assert_eq!(pending(&engine), Some(1), "one change, far below the merge threshold");
    assert_eq!(engine.merge_quiet(&mut seen), 0, "first sight of the pending change: not quiet yet");
    engine.apply(Change::Price { sku: 8, price: 2 }).unwrap();
    assert_eq!(engine.merge_quiet(&mut seen), 0, "it changed since: still not quiet");
    assert_eq!(pending(&engine), Some(2));
    assert_eq!(engine.merge_quiet(&mut seen), 2, "categories 1 and 2 took nothing since: merged");
    assert_eq!((pending(&engine), engine.category_size(1).map(|(_, d)| d)), (Some(0), Some(0)));
    let page = engine.query(&Query { category: 2, sort: SortKey::PriceAsc, paging: Paging::Page { page: 1, size: 2 }, ..Query::default() }).unwrap();
    assert_eq!(page.items.iter().map(|i| (i.sku, i.price)).collect::<Vec<_>>(), vec![(7, 1), (8, 2)], "the merged base holds the changes");
}
