//! The durable catalog's values: bulk-load lines in both shapes, product changes applied to
//! a SKU's current version, the topic's message shape and key, the store round trip, and the
//! service rebuilding every app's index from the store.

use meridian_listing::catalog::{parse_sku_line, CatalogSku, ProductChange, ProductMessage};
use meridian_listing::service::ListingService;
use meridian_listing::{store, Change, ListingConfig, Paging, Query};
use meridian_state::{KvStore, MemoryStore, WriteBatch};
use std::sync::Arc;

fn line(text: &str) -> CatalogSku {
    parse_sku_line(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn a_line_in_the_listing_or_the_catalog_file_shape_parses() {
    let listing = line(r#"{"sku": 7, "spu": 3, "name": "Red", "category_path": [1, 2], "attributes": {"color": ["red", "dark red"]}, "price": 100}"#);
    assert_eq!((listing.item.sku, listing.item.spu, listing.item.on_shelf), (7, 3, true), "on the shelf unless said");
    assert_eq!(listing.item.attributes["color"], vec!["red".to_owned(), "dark red".to_owned()]);
    let file = line(r#"{"id": "8", "spu": 3, "name": "Blue", "image": "/b.jpg", "category_path": [1, 2], "attributes": {"color": "blue"}, "on_shelf": false, "extra": 1}"#);
    assert_eq!((file.item.sku, file.item.on_shelf, file.image.as_str()), (8, false, "/b.jpg"));
    assert_eq!(file.item.attributes["color"], vec!["blue".to_owned()]);
    assert_eq!(line(r#"{"sku": 9, "category_path": [4]}"#).item.spu, 9, "a SKU without SPU is its own");
    for bad in [r#"{"name": "x", "category_path": [1]}"#, r#"{"id": "x1", "category_path": [1]}"#, r#"{"sku": 1, "category_path": []}"#, r#"{"sku": 1, "category_path": [1, 1]}"#, "not json"] {
        let err = parse_sku_line(bad.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_item", "{bad}");
    }
}

#[test]
fn changes_apply_to_the_current_version() {
    let current = line(r#"{"sku": 7, "category_path": [1], "price": 100, "stock": 2}"#);
    let (next, change) = ProductChange::Price { sku: 7, price: 90 }.apply(Some(&current)).unwrap();
    assert_eq!((next.unwrap().item.price, change), (90, Change::Price { sku: 7, price: 90 }));
    let (next, _) = ProductChange::Shelf { sku: 7, on_shelf: false }.apply(Some(&current)).unwrap();
    assert!(!next.unwrap().item.on_shelf);
    let (next, change) = ProductChange::Remove { sku: 7 }.apply(Some(&current)).unwrap();
    assert_eq!((next, change), (None, Change::Remove { sku: 7 }));
    assert_eq!(ProductChange::Stock { sku: 7, stock: 1 }.apply(None).unwrap_err().code(), "unknown_sku");
    let upsert = ProductChange::Upsert { item: serde_json::json!({"sku": 8, "category_path": [1]}) };
    assert_eq!(upsert.sku(), Some(8));
    assert!(upsert.apply(None).unwrap().0.is_some(), "an upsert needs no current version");
    assert_eq!(ProductChange::Quality { sku: 7, score: f32::NAN }.check().unwrap_err().code(), "invalid_item");
    let refused: Result<ProductChange, _> = serde_json::from_str(r#"{"op": "price", "sku": 1, "price": 2, "typo": 3}"#);
    assert!(refused.is_err(), "unknown fields are refused");
}

#[test]
fn a_message_is_keyed_by_app_and_sku_and_round_trips() {
    let message = ProductMessage { app: "shop".into(), job: Some("j1".into()), change: ProductChange::Stock { sku: 258, stock: 0 } };
    let mut key = b"shop\0".to_vec();
    key.extend_from_slice(&258u64.to_be_bytes());
    assert_eq!(message.key(), key);
    let text = serde_json::to_string(&message).unwrap();
    assert_eq!(serde_json::from_str::<ProductMessage>(&text).unwrap(), message);
}

#[test]
fn the_service_rebuilds_every_apps_index_from_the_store() {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let mut batch = WriteBatch::new();
    for (app, sku, path) in [("a", 1u64, "[1, 10]"), ("a", 2, "[1, 11]"), ("b", 1, "[5]")] {
        let sku_value = line(&format!(r#"{{"sku": {sku}, "name": "{app}{sku}", "category_path": {path}}}"#));
        store::put_sku(&mut batch, app, sku, Some(&sku_value));
    }
    store.commit(batch).unwrap();
    assert_eq!(store::read_catalog(&*store, "a").unwrap().len(), 2);
    let (service, reports) = ListingService::open(ListingConfig::default(), store).unwrap();
    assert_eq!(reports.iter().map(|(app, r)| (app.as_str(), r.items)).collect::<Vec<_>>(), vec![("a", 2), ("b", 1)]);
    let page = service.query("a", &Query { category: 1, paging: Paging::Page { page: 1, size: 10 }, ..Query::default() }).unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(service.query("b", &Query { category: 1, ..Query::default() }).unwrap_err().code(), "unknown_category", "apps do not share categories");
    assert_eq!(service.app("b").unwrap().info(1).unwrap().name.as_ref(), "b1");
    assert_eq!(service.sku("a", 2).unwrap().unwrap().name, "a2");
}
