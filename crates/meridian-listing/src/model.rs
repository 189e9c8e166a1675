//! The listing's values: items (built from catalog records), sorts, changes, and the
//! compact per-doc values the index holds.

use crate::error::{ListingError, Result};
use meridian_catalog::SkuRecord;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Behaviour and sales figures of a SKU (inputs of the quality score; `sales` and `reviews`
/// are also sorts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemMetrics {
    /// Units sold.
    pub sales: u64,
    /// Number of reviews.
    pub reviews: u64,
    /// Product-page views.
    pub views: u64,
    /// Orders per view, 0..=1 (used when `views` is 0).
    pub conversion: f32,
    /// Units returned.
    pub returns: u64,
}

/// One SKU as the listing sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingItem {
    /// SKU id.
    pub sku: u64,
    /// SPU id (the listing shows one SKU per SPU).
    pub spu: u64,
    /// Category ids from the top level down to the SKU's own category (non-empty); the SKU
    /// is listed in every category of the path.
    pub category_path: Vec<u32>,
    /// Brand id.
    pub brand: u32,
    /// Shop id.
    pub shop: u32,
    /// Price, cents.
    pub price: u64,
    /// Units in stock.
    pub stock: u32,
    /// On sale; SKUs off the shelf are never listed.
    pub on_shelf: bool,
    /// Attributes: key → values (a SKU may hold several values of one key).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Launch time, epoch ms (the `newest` sort, freshness).
    pub launch_time: i64,
    /// Sales and behaviour figures.
    pub metrics: ItemMetrics,
    /// Quality score (the `quality` sort); see [`crate::quality`]. NaN is read as 0.
    pub quality: f32,
}

/// What the listing needs beyond a catalog [`SkuRecord`]: where the SKU is listed, its brand
/// and shop, metrics and quality. Serialised next to the record's fields in richer
/// `skus.jsonl` files (see [`ListingRecord`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListingExtras {
    /// Category ids, top level first.
    pub category_path: Vec<u32>,
    /// Brand id.
    pub brand: u32,
    /// Shop id.
    pub shop: u32,
    /// Metrics.
    pub metrics: ItemMetrics,
    /// Quality score.
    pub quality: f32,
}

/// A catalog line carrying the listing's fields too: the [`SkuRecord`] fields and the
/// [`ListingExtras`] fields side by side in one JSON object (the catalog loader ignores the
/// extra fields, so the same file serves both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingRecord {
    /// The catalog's fields.
    #[serde(flatten)]
    pub record: SkuRecord,
    /// The listing's fields.
    #[serde(flatten)]
    pub extras: ListingExtras,
}

impl ListingRecord {
    /// The listing item of this line.
    pub fn into_item(self) -> Result<ListingItem> {
        ListingItem::from_sku_record(&self.record, self.extras)
    }
}

impl ListingItem {
    /// The item of a catalog record: the SKU id must be a decimal integer; each attribute of
    /// the record becomes a one-value attribute.
    pub fn from_sku_record(record: &SkuRecord, extras: ListingExtras) -> Result<ListingItem> {
        let sku = record.id.parse::<u64>().map_err(|_| ListingError::InvalidItem { sku: record.id.clone(), reason: "the SKU id is not a decimal integer".into() })?;
        let item = ListingItem {
            sku,
            spu: record.spu,
            category_path: extras.category_path,
            brand: extras.brand,
            shop: extras.shop,
            price: record.price,
            stock: record.stock,
            on_shelf: record.on_shelf,
            attributes: record.attributes.iter().map(|(k, v)| (k.clone(), vec![v.clone()])).collect(),
            launch_time: record.launch_time,
            metrics: extras.metrics,
            quality: extras.quality,
        };
        item.validate()?;
        Ok(item)
    }

    /// Checks what the index relies on: a non-empty category path without repeats.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(ListingError::InvalidItem { sku: self.sku.to_string(), reason: reason.to_owned() });
        if self.category_path.is_empty() {
            return invalid("the category path is empty");
        }
        for (i, c) in self.category_path.iter().enumerate() {
            if self.category_path[..i].contains(c) {
                return invalid("the category path repeats a category");
            }
        }
        if self.attributes.keys().any(|k| k.is_empty()) {
            return invalid("an attribute key is empty");
        }
        Ok(())
    }

    /// The category the SKU belongs to (the last of its path).
    pub fn category(&self) -> u32 {
        *self.category_path.last().unwrap_or(&0)
    }
}

/// A sort order. Every order ends with `(spu, sku)` ascending as tie-breaker, so it is total
/// and deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Quality score, best first (the default).
    #[default]
    Quality,
    /// Units sold, most first.
    Sales,
    /// Price, cheapest first.
    PriceAsc,
    /// Price, dearest first.
    PriceDesc,
    /// Launch time, newest first.
    Newest,
    /// Number of reviews, most first.
    Reviews,
}

impl SortKey {
    /// Every sort, in index order.
    pub const ALL: [SortKey; 6] = [SortKey::Quality, SortKey::Sales, SortKey::PriceAsc, SortKey::PriceDesc, SortKey::Newest, SortKey::Reviews];

    /// Its name in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Quality => "quality",
            SortKey::Sales => "sales",
            SortKey::PriceAsc => "price_asc",
            SortKey::PriceDesc => "price_desc",
            SortKey::Newest => "newest",
            SortKey::Reviews => "reviews",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The primary sort value: smaller sorts first.
    #[inline(always)]
    pub(crate) fn key(self, quality: f32, sales: u32, price: u64, launch: i64, reviews: u32) -> u64 {
        match self {
            SortKey::Quality => !u64::from(ordered_f32(quality)),
            SortKey::Sales => !u64::from(sales),
            SortKey::PriceAsc => price,
            SortKey::PriceDesc => !price,
            SortKey::Newest => !((launch as u64) ^ (1 << 63)),
            SortKey::Reviews => !u64::from(reviews),
        }
    }
}

/// An `f32` mapped to a `u32` of the same order (NaN is read as 0).
#[inline]
fn ordered_f32(x: f32) -> u32 {
    let x = if x.is_nan() { 0.0 } else { x + 0.0 };
    let bits = x.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SortKey {
    type Err = ListingError;

    fn from_str(s: &str) -> Result<SortKey> {
        SortKey::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| ListingError::UnknownSort(s.to_owned()))
    }
}

/// A change of the live catalog (what the product-change topic carries).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// New price, cents.
    Price {
        /// The SKU.
        sku: u64,
        /// Price, cents.
        price: u64,
    },
    /// New stock level.
    Stock {
        /// The SKU.
        sku: u64,
        /// Units in stock.
        stock: u32,
    },
    /// On or off the shelf.
    Shelf {
        /// The SKU.
        sku: u64,
        /// On sale.
        on_shelf: bool,
    },
    /// New quality score.
    Quality {
        /// The SKU.
        sku: u64,
        /// The score.
        score: f32,
    },
    /// New sales and review counts (the `sales` and `reviews` sorts).
    Counters {
        /// The SKU.
        sku: u64,
        /// Units sold.
        sales: u64,
        /// Number of reviews.
        reviews: u64,
    },
    /// A new SKU, or a full replacement of one (which may move it to other categories).
    Upsert(Box<ListingItem>),
    /// The SKU is gone.
    Remove {
        /// The SKU.
        sku: u64,
    },
}

impl Change {
    /// The SKU it changes.
    pub fn sku(&self) -> u64 {
        match self {
            Change::Price { sku, .. } | Change::Stock { sku, .. } | Change::Shelf { sku, .. } | Change::Quality { sku, .. } | Change::Counters { sku, .. } | Change::Remove { sku } => *sku,
            Change::Upsert(item) => item.sku,
        }
    }
}

/// The values of one doc the index holds (attributes as interned value ids, sorted).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DocValues {
    pub(crate) sku: u64,
    pub(crate) spu: u64,
    pub(crate) brand: u32,
    pub(crate) shop: u32,
    pub(crate) price: u64,
    pub(crate) stock: u32,
    pub(crate) on_shelf: bool,
    pub(crate) sales: u32,
    pub(crate) reviews: u32,
    pub(crate) launch: i64,
    pub(crate) quality: f32,
    pub(crate) attrs: Box<[u32]>,
}

impl DocValues {
    pub(crate) fn key(&self, sort: SortKey) -> u64 {
        sort.key(self.quality, self.sales, self.price, self.launch, self.reviews)
    }

    pub(crate) fn from_item(item: &ListingItem, dict: &mut Dictionary) -> DocValues {
        let attrs: Vec<u32> = item.attributes.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))).map(|(k, v)| dict.intern(k, v)).collect();
        DocValues::with_attrs(item, attrs)
    }

    /// The values of `item` when `dict` already knows all its attributes.
    pub(crate) fn from_known(item: &ListingItem, dict: &Dictionary) -> Option<DocValues> {
        let mut attrs = Vec::new();
        for (k, vs) in &item.attributes {
            let key = dict.key_id(k)?;
            for v in vs {
                attrs.push(dict.value_id(key, v)?);
            }
        }
        Some(DocValues::with_attrs(item, attrs))
    }

    fn with_attrs(item: &ListingItem, mut attrs: Vec<u32>) -> DocValues {
        attrs.sort_unstable();
        attrs.dedup();
        DocValues {
            sku: item.sku,
            spu: item.spu,
            brand: item.brand,
            shop: item.shop,
            price: item.price,
            stock: item.stock,
            on_shelf: item.on_shelf,
            sales: saturate(item.metrics.sales),
            reviews: saturate(item.metrics.reviews),
            launch: item.launch_time,
            quality: if item.quality.is_nan() { 0.0 } else { item.quality },
            attrs: attrs.into_boxed_slice(),
        }
    }
}

/// Counts are held as `u32` in the index (saturating; sorts beyond 4·10⁹ tie).
pub(crate) fn saturate(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Attribute keys and values interned as small ids (value ids are global, each belongs to
/// one key). It only grows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dictionary {
    keys: Vec<String>,
    key_ids: FxHashMap<String, u16>,
    values: Vec<(u16, String)>,
    value_ids: FxHashMap<(u16, String), u32>,
}

impl Dictionary {
    pub(crate) fn intern(&mut self, key: &str, value: &str) -> u32 {
        let key_id = match self.key_ids.get(key) {
            Some(&id) => id,
            None => {
                let id = self.keys.len() as u16;
                self.keys.push(key.to_owned());
                self.key_ids.insert(key.to_owned(), id);
                id
            }
        };
        if let Some(&id) = self.value_ids.get(&(key_id, value.to_owned())) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push((key_id, value.to_owned()));
        self.value_ids.insert((key_id, value.to_owned()), id);
        id
    }

    pub(crate) fn key_id(&self, key: &str) -> Option<u16> {
        self.key_ids.get(key).copied()
    }

    pub(crate) fn value_id(&self, key: u16, value: &str) -> Option<u32> {
        self.value_ids.get(&(key, value.to_owned())).copied()
    }

    pub(crate) fn key_of(&self, value: u32) -> u16 {
        self.values[value as usize].0
    }

    pub(crate) fn value_name(&self, value: u32) -> &str {
        &self.values[value as usize].1
    }

    pub(crate) fn key_name(&self, key: u16) -> &str {
        &self.keys[key as usize]
    }
}
