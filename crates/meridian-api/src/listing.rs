//! Category listing: listing pages, categories, the durable catalog, bulk loads and
//! product changes (jobs with progress), shopper-page templates.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One item of a listing page (one SKU; its SPU appears nowhere else in the listing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingPageItem {
    /// SKU id.
    pub sku: u64,
    /// SPU id.
    pub spu: u64,
    /// Display name (from the catalog).
    pub name: String,
    /// Image URL (from the catalog).
    pub image: String,
    /// Brand id.
    pub brand: u32,
    /// Shop id.
    pub shop: u32,
    /// Price, cents.
    pub price: u64,
    /// Units in stock.
    pub stock: u32,
    /// Quality score.
    pub quality: f32,
    /// Placed by a pin.
    pub pinned: bool,
}

/// A page of a category's listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingPageBody {
    /// The category.
    pub category: u32,
    /// Its path, top level first.
    pub path: Vec<u32>,
    /// The sort used.
    pub sort: String,
    /// Distinct SPUs matching the filters: exactly the length of the whole listing.
    pub total: u64,
    /// Page number (1-based).
    pub page: u32,
    /// Page size.
    pub page_size: u32,
    /// Last page number at this size.
    pub last_page: u32,
    /// Position of the first item in the whole listing (0-based).
    pub offset: u64,
    /// Cursor of the next page (`cursor=`), absent after the last item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The items.
    pub items: Vec<ListingPageItem>,
    /// Facet counts (`facets=true`): `brands` [{value, count}], `attributes` [{key, values:
    /// [{value, count}]}], `price_ranges` [{min, max, count}]; counts are distinct SPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub facets: Option<Value>,
    /// Microseconds the engine spent.
    pub took_us: u64,
}

/// One category of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingCategory {
    /// Category id.
    pub id: u32,
    /// Parent category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// SKUs of the category and its sub-categories in its index (at the last merge).
    pub skus: u64,
    /// SPUs among them.
    pub spus: u64,
    /// Changes since the last merge.
    pub delta_entries: u32,
    /// Heap bytes of its index.
    pub index_bytes: u64,
}

/// The categories of an app's catalog, with sizes and update figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingCategories {
    /// SKUs in the catalog.
    pub skus: u64,
    /// Heap bytes of every category index.
    pub index_bytes: u64,
    /// Estimated heap bytes of the SKU directory.
    pub directory_bytes: u64,
    /// Changes applied to the live index since start.
    pub changes_applied: u64,
    /// Changes applied per second over the last minute.
    pub changes_per_sec: f64,
    /// Categories, by id.
    pub categories: Vec<ListingCategory>,
}

/// A SKU of the durable catalog (also the NDJSON line of a bulk load): `sku` (or `id`,
/// a decimal string), `spu`, `name`, `image`, `category_path` (top level first),
/// `brand`, `shop`, `price` (cents), `stock`, `on_shelf`, `attributes` (key → value or
/// values), `launch_time` (epoch ms), `metrics` {sales, reviews, views, conversion,
/// returns}, `quality`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct CatalogSkuBody(pub Value);

/// A line of a bulk load or change request that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingLineError {
    /// 1-based line (or array element) number; 0 when the change was refused when applied.
    pub line: u64,
    /// Stable code (`invalid_sku`, `invalid_change`, `unknown_sku`, `invalid_item`…).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// A bulk load or a batch of product changes: read, published to the product-change
/// topic, then applied by the listing's processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingJob {
    /// Job id (`GET /v1/apps/{app}/listing/jobs/{id}`).
    pub id: String,
    /// `catalog` (a bulk load) or `changes`.
    pub kind: String,
    /// `publishing`, `applying`, `done` or `failed`.
    pub state: String,
    /// Lines read.
    pub lines: u64,
    /// Lines refused before publishing (see `errors`).
    pub rejected: u64,
    /// Changes published to the topic.
    pub published: u64,
    /// Changes applied to the catalog and the live index.
    pub applied: u64,
    /// Changes refused when applied (e.g. an unknown SKU).
    pub refused: u64,
    /// (applied + refused) / published, 0..=1.
    pub progress: f64,
    /// The first refused lines and changes.
    pub errors: Vec<ListingLineError>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The template of an app's shopper category pages (minijinja, autoescaped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingTemplate {
    /// The template text; `GET` answers the built-in one when none was saved.
    pub template: String,
    /// Whether it is the built-in one.
    #[serde(default)]
    pub builtin: bool,
}

/// Whether the shopper pages' backend is made to fail (to test the fallbacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackendFailure {
    /// Every render of a shopper page fails while true.
    pub fail: bool,
}

/// What a quality run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QualityRun {
    /// SKUs scored.
    pub scored: u64,
    /// Scores that moved and were published as changes.
    pub changed: u64,
    /// SKUs with behaviour (views, carts, orders) from the log.
    pub with_behaviour: u64,
    /// The job that published the changes.
    pub job: String,
}

/// Price and stock of SKUs (the shopper page loads them asynchronously).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceStock {
    /// SKU id.
    pub sku: u64,
    /// Price, cents.
    pub price: u64,
    /// Units in stock.
    pub stock: u32,
    /// On sale.
    pub on_shelf: bool,
}

/// Price and stock of the SKUs asked for (unknown ones are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceStockList {
    /// The SKUs.
    pub items: Vec<PriceStock>,
}

/// A pinned SKU of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingPin {
    /// 0-based position in the whole listing.
    pub position: u32,
    /// The SKU.
    pub sku: u64,
}

/// A category's merchandising: brand/shop interleaving and pinned SKUs (not inherited by
/// its sub-categories). When the next item would make more than `max_brand_run` consecutive
/// items of one brand (or `max_shop_run` of one shop), the first of the next `window`
/// candidates that breaks no limit is taken instead. A pin is shown at its position when
/// its SKU matches the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingCategorySettings {
    /// At most this many consecutive items of one brand (absent: no limit).
    #[serde(default)]
    pub max_brand_run: Option<u32>,
    /// At most this many consecutive items of one shop (absent: no limit).
    #[serde(default)]
    pub max_shop_run: Option<u32>,
    /// Candidates looked at to break a run, 1 to 256 (default 32).
    #[serde(default = "default_window")]
    pub window: u32,
    /// Pinned SKUs, at distinct positions (at most 100).
    #[serde(default)]
    pub pins: Vec<ListingPin>,
}

fn default_window() -> u32 {
    32
}
