//! Items from catalog records and listing records, and the bulk load's progress and report.

use meridian_catalog::SkuRecord;
use meridian_listing::{ListingConfig, ListingEngine, ListingExtras, ListingItem, ListingRecord, LoadPhase, Paging, Query};
use std::collections::BTreeMap;

fn record(id: &str) -> SkuRecord {
    SkuRecord {
        id: id.into(),
        spu: 7,
        name: "Red shoe".into(),
        image: "/i.jpg".into(),
        price: 1999,
        stock: 3,
        on_shelf: true,
        attributes: BTreeMap::from([("color".to_owned(), "red".to_owned())]),
        launch_time: 42,
    }
}

#[test]
fn a_catalog_record_becomes_an_item() {
    let extras = ListingExtras { category_path: vec![1, 12], brand: 3, shop: 4, ..ListingExtras::default() };
    let item = ListingItem::from_sku_record(&record("100"), extras.clone()).unwrap();
    assert_eq!((item.sku, item.spu, item.category(), item.brand, item.price, item.launch_time), (100, 7, 12, 3, 1999, 42));
    assert_eq!(item.attributes["color"], vec!["red".to_owned()]);
    assert_eq!(ListingItem::from_sku_record(&record("sku-x"), extras).unwrap_err().code(), "invalid_item");
    assert_eq!(ListingItem::from_sku_record(&record("5"), ListingExtras::default()).unwrap_err().code(), "invalid_item", "no category path");
}

#[test]
fn a_listing_line_carries_both_and_the_catalog_loader_still_reads_it() {
    let line = r#"{"id":"100","spu":7,"name":"Red shoe","image":"/i.jpg","price":1999,"stock":2,"on_shelf":true,"category_path":[1,12],"brand":3,"shop":4,"metrics":{"sales":9},"quality":1.5}"#;
    let parsed: ListingRecord = serde_json::from_str(line).unwrap();
    let item = parsed.into_item().unwrap();
    assert_eq!((item.category_path.clone(), item.metrics.sales, item.quality, item.stock), (vec![1, 12], 9, 1.5, 2));
    let as_catalog: SkuRecord = serde_json::from_str(line).unwrap();
    assert_eq!(as_catalog.price, 1999);
}

#[test]
fn a_bulk_load_reports_progress_rejects_and_duplicates() {
    let engine = ListingEngine::new(ListingConfig { build_threads: 2, ..ListingConfig::default() }).unwrap();
    let mut items: Vec<ListingItem> = (0..100_000u64).map(|i| crate::item(i, i / 2, &[1 + (i % 3) as u32, 10 + (i % 9) as u32], (i % 7) as u32, 1, 0.0)).collect();
    items.push(crate::item(5, 99, &[1, 10], 1, 1, 0.0)); // replaces sku 5
    items.push(crate::item(200_000, 1, &[], 1, 1, 0.0)); // no path
    items.push(crate::item(200_001, 1, &[10], 1, 1, 0.0)); // 10 is not a top category
    let mut reports = Vec::new();
    let report = engine.load(items, &mut |p| reports.push(p)).unwrap();
    assert_eq!((report.items, report.duplicates, report.n_rejected), (100_000, 1, 2));
    assert_eq!(report.rejected.iter().map(|e| e.code()).collect::<Vec<_>>(), vec!["invalid_item", "invalid_item"]);
    let building: Vec<_> = reports.iter().filter(|p| p.phase == LoadPhase::Building).collect();
    assert!(building.windows(2).all(|w| w[0].done <= w[1].done));
    let last = building.last().unwrap();
    assert_eq!((last.done, last.total), (200_000, 200_000), "each SKU is in two categories");
    assert!(reports.iter().any(|p| p.phase == LoadPhase::Reading));
    let page = engine.query(&Query { category: 1, paging: Paging::Page { page: 1, size: 5 }, ..Query::default() }).unwrap();
    assert_eq!(page.total, engine.categories().iter().find(|c| c.id == 1).unwrap().base_spus);
    assert_eq!(engine.category_path(10).unwrap(), vec![1, 10]);
    let stats = engine.stats();
    assert_eq!((stats.skus, stats.base_docs, stats.categories), (100_000, 200_000, 12));
    assert!(stats.index_bytes > 0);
}
