//! Catalog lookup: SPU, name and image of SKUs, asked in batches.
//!
//! Names and images are shared strings (`Arc<str>`): a lookup hands out references, not
//! copies, and a shown item serialises them straight from the catalog.

use std::collections::HashMap;
use std::sync::Arc;

/// What the history list shows of a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuInfo {
    /// The SPU the SKU belongs to (history de-duplicates by it).
    pub spu: u64,
    /// Display name.
    pub name: Arc<str>,
    /// Image URL or path.
    pub image: Arc<str>,
}

/// Looks SKUs up; one call per batch (the service sizes batches by
/// `catalog_batch_size`). Unknown SKUs are `None`.
pub trait CatalogLookup: Send + Sync + std::fmt::Debug {
    /// Infos of `skus`, in the same order.
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>>;
}

/// A catalog held in memory.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCatalog {
    items: HashMap<u64, SkuInfo>,
}

impl InMemoryCatalog {
    /// A catalog of these SKUs.
    pub fn new(items: impl IntoIterator<Item = (u64, SkuInfo)>) -> InMemoryCatalog {
        InMemoryCatalog { items: items.into_iter().collect() }
    }

    /// Number of SKUs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl CatalogLookup for InMemoryCatalog {
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        skus.iter().map(|s| self.items.get(s).cloned()).collect()
    }
}
