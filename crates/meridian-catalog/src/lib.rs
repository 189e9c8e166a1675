//! The product catalog: what a SKU is called, what it looks like and which SPU it belongs to.
//!
//! * [`CatalogLookup`]: SKU → [`SkuInfo`] in batches (history lists ask it; one call per
//!   batch of `catalog_batch_size` SKUs). Names and images are shared strings (`Arc<str>`):
//!   a lookup hands out references, not copies.
//! * [`CatalogSlot`]: the catalog the server shares with its modules, replaceable (the
//!   listing module puts its durable, per-app catalog there).
//! * [`InMemoryCatalog`]: a catalog held in memory; [`PassThroughCatalog`]: every SKU is its
//!   own SPU without name or image, for servers without a catalog.
//! * [`file`]: [`SkuRecord`]s loaded from JSON lines.
//! * [`config`]: the `[catalog]` config section.

pub mod config;
pub mod file;

pub use config::CatalogConfig;
pub use file::{load_dir, load_jsonl, SkuRecord};

use std::collections::HashMap;
use std::sync::Arc;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A catalog file cannot be read.
    #[error("cannot read catalog file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line of a catalog file is not a SKU record.
    #[error("{path} line {line}: not a SKU record: {message}")]
    InvalidRecord {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No catalog file was found where one was expected.
    #[error("no skus.jsonl in {0} or its catalog/ folder; write one with `meridian demo generate --out DIR`")]
    NotFound(String),
}

/// What a history list shows of a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuInfo {
    /// The SPU the SKU belongs to (history de-duplicates by it).
    pub spu: u64,
    /// Display name.
    pub name: Arc<str>,
    /// Image URL or path.
    pub image: Arc<str>,
}

/// Looks SKUs up; one call per batch. Unknown SKUs are `None`.
pub trait CatalogLookup: Send + Sync + std::fmt::Debug {
    /// Infos of `skus`, in the same order.
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>>;

    /// Infos of `skus` of one app's catalog, in the same order. Catalogs that are the same
    /// for every app (a file, the demo's) answer [`CatalogLookup::lookup`]; the listing's
    /// catalog, kept per app, answers the app's own SKUs.
    fn lookup_in(&self, app: &str, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        let _ = app;
        self.lookup(skus)
    }
}

/// A catalog that can be replaced while it is shared: the server hands this to every
/// module, and a module that keeps the product's catalog (the listing) puts its own in,
/// so that history reads the same catalog (one catalog, not two).
#[derive(Debug)]
pub struct CatalogSlot {
    inner: std::sync::RwLock<Arc<dyn CatalogLookup>>,
}

impl CatalogSlot {
    /// A slot holding `catalog`.
    pub fn new(catalog: Arc<dyn CatalogLookup>) -> CatalogSlot {
        CatalogSlot { inner: std::sync::RwLock::new(catalog) }
    }

    /// The catalog it holds now.
    pub fn current(&self) -> Arc<dyn CatalogLookup> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Puts `catalog` in its place.
    pub fn replace(&self, catalog: Arc<dyn CatalogLookup>) {
        *self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) = catalog;
    }
}

impl CatalogLookup for CatalogSlot {
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        self.current().lookup(skus)
    }

    fn lookup_in(&self, app: &str, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        self.current().lookup_in(app, skus)
    }
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

    /// A catalog of these records; records whose id is not a decimal integer are skipped
    /// (history keys SKUs by number).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a SkuRecord>) -> InMemoryCatalog {
        InMemoryCatalog::new(records.into_iter().filter_map(|r| Some((r.id.parse().ok()?, r.info()))))
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

/// A catalog that knows nothing: every SKU is shown as its own SPU without name or image.
/// Used when the server has no catalog configured, so history still lists what was viewed.
#[derive(Debug)]
pub struct PassThroughCatalog {
    empty: Arc<str>,
}

impl Default for PassThroughCatalog {
    fn default() -> Self {
        PassThroughCatalog { empty: Arc::from("") }
    }
}

impl CatalogLookup for PassThroughCatalog {
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        skus.iter().map(|sku| Some(SkuInfo { spu: *sku, name: self.empty.clone(), image: self.empty.clone() })).collect()
    }
}
