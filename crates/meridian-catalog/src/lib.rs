//! The product catalog: what a SKU is called, what it looks like and which SPU it belongs to.
//!
//! * [`CatalogLookup`]: SKU → [`SkuInfo`] in batches (history lists ask it; one call per
//!   batch of `catalog_batch_size` SKUs). Names and images are shared strings (`Arc<str>`):
//!   a lookup hands out references, not copies.
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
