//! Integration tests of the listing engine (one binary): reference-checked properties,
//! interleaving and pinning rules, error codes, concurrency, the page cache, quality scores
//! and catalog conversion.

mod cache;
mod catalog;
mod concurrency;
mod durable;
mod props;
mod quality;
mod reference;
mod rules;

use meridian_listing::{ItemMetrics, ListingConfig, ListingEngine, ListingItem, MergeMode};
use std::collections::BTreeMap;

/// A plain item for hand-written examples.
pub(crate) fn item(sku: u64, spu: u64, path: &[u32], brand: u32, shop: u32, quality: f32) -> ListingItem {
    ListingItem {
        sku,
        spu,
        category_path: path.to_vec(),
        brand,
        shop,
        price: 1000 + sku,
        stock: 5,
        on_shelf: true,
        attributes: BTreeMap::from([("color".to_owned(), vec!["red".to_owned()])]),
        launch_time: 0,
        metrics: ItemMetrics::default(),
        quality,
    }
}

/// An engine holding `items`, merging inline.
pub(crate) fn engine_with(items: Vec<ListingItem>) -> ListingEngine {
    let engine = ListingEngine::new(ListingConfig { merge_mode: MergeMode::Inline, merge_min_changes: 4, ..ListingConfig::default() }).unwrap();
    engine.load(items, &mut |_| {}).unwrap();
    engine
}
