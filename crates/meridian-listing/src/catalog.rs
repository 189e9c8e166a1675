//! The durable catalog's values: a SKU as kept (the listing's item plus what shoppers and
//! history see of it), the NDJSON line of a bulk load, and the messages of the
//! product-change topic.

use crate::error::{ListingError, Result};
use crate::model::{Change, ItemMetrics, ListingItem};
use meridian_catalog::SkuInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One SKU of the durable catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogSku {
    /// What the index holds.
    #[serde(flatten)]
    pub item: ListingItem,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Image URL.
    #[serde(default)]
    pub image: String,
}

impl CatalogSku {
    /// What history shows of it.
    pub fn info(&self) -> SkuInfo {
        SkuInfo { spu: self.item.spu, name: self.name.as_str().into(), image: self.image.as_str().into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SkuId {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn yes() -> bool {
    true
}

/// A bulk-load line as accepted: the catalog's `skus.jsonl` fields (`id` as a decimal
/// string, one value per attribute) or the listing's (`sku` as a number, several values per
/// attribute), with the listing's fields beside them. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct SkuLine {
    sku: Option<SkuId>,
    id: Option<SkuId>,
    spu: Option<u64>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    category_path: Vec<u32>,
    #[serde(default)]
    brand: u32,
    #[serde(default)]
    shop: u32,
    #[serde(default)]
    price: u64,
    #[serde(default)]
    stock: u32,
    #[serde(default = "yes")]
    on_shelf: bool,
    #[serde(default)]
    attributes: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    launch_time: i64,
    #[serde(default)]
    metrics: ItemMetrics,
    #[serde(default)]
    quality: f32,
}

fn invalid(sku: &str, reason: impl Into<String>) -> ListingError {
    ListingError::InvalidItem { sku: sku.to_owned(), reason: reason.into() }
}

/// Reads one bulk-load line (a JSON object) into a checked SKU.
pub fn parse_sku_line(line: &[u8]) -> Result<CatalogSku> {
    let parsed: SkuLine = serde_json::from_slice(line).map_err(|e| invalid("?", format!("not a SKU object: {e}")))?;
    parse_sku(parsed)
}

/// Reads a SKU from a JSON value (the `item` of an upsert).
pub fn sku_from_value(value: serde_json::Value) -> Result<CatalogSku> {
    let parsed: SkuLine = serde_json::from_value(value).map_err(|e| invalid("?", format!("not a SKU object: {e}")))?;
    parse_sku(parsed)
}

fn parse_sku(line: SkuLine) -> Result<CatalogSku> {
    let sku = match line.sku.or(line.id) {
        Some(SkuId::Number(n)) => n,
        Some(SkuId::Text(text)) => text.trim().parse::<u64>().map_err(|_| invalid(&text, "the SKU id is not a decimal integer"))?,
        None => return Err(invalid("?", "no \"sku\" (or \"id\")")),
    };
    let attributes = line
        .attributes
        .into_iter()
        .map(|(k, v)| {
            let values = match v {
                OneOrMany::One(v) => vec![v],
                OneOrMany::Many(vs) => vs,
            };
            (k, values)
        })
        .collect();
    if !line.quality.is_finite() {
        return Err(invalid(&sku.to_string(), "quality is not a finite number"));
    }
    let item = ListingItem {
        sku,
        spu: line.spu.unwrap_or(sku),
        category_path: line.category_path,
        brand: line.brand,
        shop: line.shop,
        price: line.price,
        stock: line.stock,
        on_shelf: line.on_shelf,
        attributes,
        launch_time: line.launch_time,
        metrics: line.metrics,
        quality: line.quality,
    };
    item.validate()?;
    Ok(CatalogSku { item, name: line.name, image: line.image })
}

/// A change of the product-change topic, as published (`op` names it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProductChange {
    /// A new SKU or a full replacement (which may move it to other categories).
    Upsert {
        /// The SKU, as a bulk-load line.
        item: serde_json::Value,
    },
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
    /// The SKU is gone.
    Remove {
        /// The SKU.
        sku: u64,
    },
}

impl ProductChange {
    /// The SKU it changes (`None` for an upsert whose item has no readable id).
    pub fn sku(&self) -> Option<u64> {
        match self {
            ProductChange::Upsert { item } => item.get("sku").or_else(|| item.get("id")).and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))),
            ProductChange::Price { sku, .. } | ProductChange::Stock { sku, .. } | ProductChange::Shelf { sku, .. } | ProductChange::Quality { sku, .. } | ProductChange::Remove { sku } => Some(*sku),
        }
    }

    /// Checks what can be checked without the catalog (an upsert's item, a finite score).
    pub fn check(&self) -> Result<()> {
        match self {
            ProductChange::Upsert { item } => sku_from_value(item.clone()).map(|_| ()),
            ProductChange::Quality { sku, score } if !score.is_finite() => Err(invalid(&sku.to_string(), "the score is not a finite number")),
            _ => Ok(()),
        }
    }

    /// Applies it to the SKU's current version: the new version (`None`: removed) and the
    /// engine's change.
    pub fn apply(&self, current: Option<&CatalogSku>) -> Result<(Option<CatalogSku>, Change)> {
        if let ProductChange::Upsert { item } = self {
            let sku = sku_from_value(item.clone())?;
            let change = Change::Upsert(Box::new(sku.item.clone()));
            return Ok((Some(sku), change));
        }
        let sku = self.sku().unwrap_or_default();
        let mut next = current.cloned().ok_or(ListingError::UnknownSku(sku))?;
        let change = match *self {
            ProductChange::Price { price, .. } => {
                next.item.price = price;
                Change::Price { sku, price }
            }
            ProductChange::Stock { stock, .. } => {
                next.item.stock = stock;
                Change::Stock { sku, stock }
            }
            ProductChange::Shelf { on_shelf, .. } => {
                next.item.on_shelf = on_shelf;
                Change::Shelf { sku, on_shelf }
            }
            ProductChange::Quality { score, .. } => {
                next.item.quality = score;
                Change::Quality { sku, score }
            }
            ProductChange::Remove { .. } => return Ok((None, Change::Remove { sku })),
            ProductChange::Upsert { .. } => unreachable!("handled above"),
        };
        Ok((Some(next), change))
    }
}

/// A record of the product-change topic: the app, the change, and the job that published
/// it (bulk loads and change requests report progress by job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductMessage {
    /// The app whose catalog it changes.
    pub app: String,
    /// The job that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The change.
    pub change: ProductChange,
}

impl ProductMessage {
    /// The partition key: the app and the SKU, so one SKU's changes stay in order.
    pub fn key(&self) -> Vec<u8> {
        let mut key = self.app.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&self.change.sku().unwrap_or_default().to_be_bytes());
        key
    }
}
