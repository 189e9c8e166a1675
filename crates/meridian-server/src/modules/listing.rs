//! The listing capability's adapter (DESIGN.md §4.7, issue 16): the category listing
//! engine of `meridian-listing` wired into the server.
//!
//! * The durable catalog lives in the module's store; one engine per app is rebuilt from
//!   it at start. It is written only by the product-change processor (`listing`), which
//!   applies the `[listing] topic` topic exactly once with its committed position: bulk
//!   loads (`POST …/listing/catalog`, NDJSON) and change batches (`POST …/listing/changes`)
//!   are published to that topic as jobs whose progress `GET …/listing/jobs/{id}` reports.
//! * The same catalog is the server's catalog for history (`ModuleContext::provide_catalog`):
//!   an app with a listing catalog has its names and images from it.
//! * `GET /v1/apps/{app}/listing/categories/{category}`: filters, sorts, pages and
//!   cursors, facets; every bad parameter answers a stable code.
//! * Shopper pages (`/shop/{app}/categories/{category}`) are rendered from the app's
//!   template (minijinja, autoescaped; editable, validated before it is saved, audited)
//!   through the engine's `PageCache`: a first page per category always kept, a sharded
//!   LRU for the others, and on a backend failure the stale page, the category's first
//!   page, then a static page — never a 5xx. Price and stock load asynchronously from
//!   `/shop/{app}/prices`. A backend failure can be injected (`[listing] fail_backend`
//!   or `PUT …/listing/backend-failure`).
//! * The quality job (a module task, and `POST …/listing/quality/run`) scores SKUs from
//!   the catalog and the behaviour the `listing-behaviour` processor counts from the
//!   `events` topic, and publishes the scores that moved as changes.

use crate::auth::{app_id, require};
use crate::error::{parse_json, ApiError};
use crate::extract::{Path, Query};
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext, Task};
use crate::routes::admin::audit_app;
use crate::routes::ingest::read_body;
use crate::state::{blocking, random_id, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use meridian_api::listing::{
    BackendFailure, CatalogSkuBody, ListingCategories, ListingCategory, ListingCategorySettings, ListingJob, ListingPin, ListingLineError, ListingPageBody, ListingPageItem, ListingTemplate, PriceStock, PriceStockList, QualityRun,
};
use meridian_event::{AppId, Timestamp};
use meridian_listing::catalog::{parse_sku_line, ProductChange, ProductMessage};
use meridian_listing::processor::{BehaviourProcessor, ProductsProcessor};
use meridian_listing::service::{Job, ListingCatalog, ListingService};
use meridian_listing::{CategorySettings, Filters, ListingError, Pin, ListingPage, PageCache, PageKey, Paging, Query as ListingQuery, ServedFrom, SortKey, SystemClock};
use meridian_log::{AppendRecord, TopicName};
use meridian_tenancy::Permission;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The listing capability.
#[derive(Debug)]
pub(crate) struct Listing;

/// The built-in shopper page template.
pub(crate) const DEFAULT_TEMPLATE: &str = include_str!("../../assets/listing/category.html");

/// The page served when nothing else can be (fallback level 2).
const STATIC_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Busy</title></head><body><main><h1>We are busy right now</h1><p>This list cannot be shown at the moment. Please try again in a minute.</p></main></body></html>";

/// Records published per append.
const APPEND_CHUNK: usize = 2_000;

/// The handlers' state.
pub(crate) struct ListingState {
    pub(crate) app: Arc<AppState>,
    pub(crate) service: Arc<ListingService>,
    topic: TopicName,
    caches: RwLock<HashMap<String, Arc<PageCache<String>>>>,
    pub(crate) failing: RwLock<HashSet<String>>,
    templates: RwLock<HashMap<String, Arc<String>>>,
}

impl std::fmt::Debug for ListingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingState").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Capability for Listing {
    fn name(&self) -> &'static str {
        "listing"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = ctx.config().listing.clone();
        if !config.enabled {
            return Ok(None);
        }
        let topic = TopicName::new(config.topic.clone())?;
        ctx.state.log.ensure_topic(&topic, ctx.config().log.partitions)?;
        let store = ctx.store()?;
        let started = Instant::now();
        let (service, reports) = ListingService::open(config.clone(), store)?;
        for (app, report) in &reports {
            tracing::info!(app = %app, skus = report.items, categories = report.categories, rejected = report.n_rejected, took_ms = started.elapsed().as_millis() as u64, "listing: index rebuilt from the durable catalog");
        }
        let service = Arc::new(service);
        let for_catalog = service.clone();
        ctx.provide_catalog(move |fallback| Arc::new(ListingCatalog::new(for_catalog, fallback)));
        let state = Arc::new(ListingState {
            app: ctx.state.clone(),
            service: service.clone(),
            topic: topic.clone(),
            caches: RwLock::default(),
            failing: RwLock::default(),
            templates: RwLock::default(),
        });
        let routes = OpenApiRouter::new()
            .routes(routes!(categories))
            .routes(routes!(category_page))
            .routes(routes!(get_category_settings, put_category_settings))
            .routes(routes!(sku))
            .routes(routes!(load_catalog))
            .routes(routes!(publish_changes))
            .routes(routes!(job))
            .routes(routes!(get_template, put_template))
            .routes(routes!(backend_failure))
            .routes(routes!(run_quality))
            .routes(routes!(shop_page))
            .routes(routes!(shop_prices))
            .with_state(state.clone());
        let quality_state = state.clone();
        let pages_state = state.clone();
        let merge_state = state.clone();
        let mut module = ModuleBuilder::new("listing")
            .processor(Box::new(ProductsProcessor::new(topic, service.clone())))
            .processor(Box::new(BehaviourProcessor::new(ctx.state.events_topic.clone(), service.clone())))
            .routes(routes)
            .console(crate::console::listing::section(ctx))
            .task(Task {
                name: "listing_quality",
                every: Duration::from_secs(config.quality_interval_secs),
                run: Arc::new(move || {
                    let mut done = Vec::new();
                    for app in quality_state.service.apps() {
                        let run = futures::executor::block_on(quality_run(&quality_state, &app, None))?;
                        if run.changed > 0 {
                            done.push(format!("{app}: {} of {} scores moved", run.changed, run.scored));
                        }
                    }
                    Ok(done.join("; "))
                }),
            })
            .task(Task {
                name: "listing_first_pages",
                every: config.cache_ttl(),
                run: Arc::new(move || {
                    let stored = refresh_first_pages(&pages_state);
                    Ok(if stored > 0 { format!("rendered {stored} first pages") } else { String::new() })
                }),
            });
        if config.merge_quiet_secs > 0 {
            // Per app, the pending changes each category had at the previous run.
            let seen = parking_lot::Mutex::new(std::collections::HashMap::<String, meridian_listing::PendingSeen>::new());
            module = module.task(Task {
                name: "listing_merge_quiet",
                every: Duration::from_secs(config.merge_quiet_secs),
                run: Arc::new(move || {
                    let mut seen = seen.lock();
                    let mut merged = 0;
                    for app in merge_state.service.apps() {
                        if let Some(listing) = merge_state.service.app(&app) {
                            merged += listing.engine.merge_quiet(seen.entry(app).or_default());
                        }
                    }
                    Ok(if merged > 0 { format!("merged the pending changes of {merged} quiet categories") } else { String::new() })
                }),
            });
        }
        let module = module
            .service(Arc::new(FileLoader { state: state.clone() }))
            .erasure(Erasure::NoUserData { why: "the catalog, templates and behaviour counts per SKU; nothing per user" })
            .build()?;
        Ok(Some(module))
    }
}

/// Loads `[listing] load_file` into `[listing] load_app` when the server starts serving,
/// unless that very file (same size and modification time) was loaded before.
struct FileLoader {
    state: Arc<ListingState>,
}

impl crate::module::Service for FileLoader {
    fn start(&self, handle: &tokio::runtime::Handle) {
        let state = self.state.clone();
        let config = state.service.config();
        let (Some(file), Some(app)) = (config.load_file.clone(), config.load_app.clone()) else { return };
        handle.spawn(async move {
            match load_file(&state, &file, &app).await {
                Ok(Some(job)) => tracing::info!(app = %app, file = %file.display(), job = %job, "listing: catalog file published"),
                Ok(None) => tracing::info!(app = %app, file = %file.display(), "listing: catalog file already loaded"),
                Err(e) => tracing::warn!(app = %app, file = %file.display(), error = %e, "listing: catalog file not loaded"),
            }
        });
    }

    fn stop(&self) {}
}

/// Publishes a catalog file as a bulk-load job; the job's id, or `None` when unchanged.
async fn load_file(state: &ListingState, file: &std::path::Path, app: &str) -> anyhow::Result<Option<String>> {
    let app_id = AppId::new(app)?;
    anyhow::ensure!(state.app.tenancy.app_exists(&app_id), "app {app} does not exist; create it, then restart");
    let meta = std::fs::metadata(file)?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let signature = format!("{}:{}:{modified}", file.display(), meta.len());
    let store = state.service.store().clone();
    let app_text = app.to_owned();
    let known = blocking(move || meridian_listing::store::loaded_file(&*store, &app_text)).await.map_err(|e| anyhow::anyhow!("{e}"))??;
    if known.as_deref() == Some(signature.as_str()) {
        return Ok(None);
    }
    let path = file.to_owned();
    let job = state.service.new_job(random_id("file-", 8).map_err(|e| anyhow::anyhow!("{e}"))?, app, "catalog");
    let parse_job = job.clone();
    let changes = blocking(move || -> anyhow::Result<Vec<ProductChange>> {
        let text = std::fs::read(&path)?;
        let mut changes = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            parse_job.lines.fetch_add(1, Ordering::Relaxed);
            match parse_sku_line(line) {
                Ok(sku) => changes.push(ProductChange::Upsert { item: serde_json::to_value(&sku).unwrap_or_default() }),
                Err(e) => {
                    parse_job.rejected.fetch_add(1, Ordering::Relaxed);
                    parse_job.error(n as u64 + 1, e.code(), e.to_string());
                }
            }
        }
        Ok(changes)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    publish(state, app, &job, changes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = state.service.store().clone();
    let app_text = app.to_owned();
    blocking(move || meridian_listing::store::set_loaded_file(&*store, &app_text, &signature)).await.map_err(|e| anyhow::anyhow!("{e}"))??;
    Ok(Some(job.id.clone()))
}

/// The HTTP answer of an engine error: unknown categories and SKUs are 404, store
/// failures internal, everything else a 400 with the engine's stable code.
fn listing_error(e: ListingError) -> ApiError {
    match e {
        ListingError::UnknownCategory(_) => ApiError::not_found("unknown_category", e.to_string()),
        ListingError::UnknownSku(_) => ApiError::not_found("unknown_sku", e.to_string()),
        ListingError::Store(_) => ApiError::internal(e),
        ListingError::InvalidFilter(_) => ApiError::bad_request("invalid_filter", e.to_string()),
        ListingError::UnknownAttribute(ref key) => {
            let key = key.clone();
            ApiError::bad_request("unknown_attribute", e.to_string()).with_details(json!({"field": format!("attr.{key}")}))
        }
        ListingError::UnknownSort(_) => ApiError::bad_request("unknown_sort", e.to_string()).with_details(json!({"field": "sort"})),
        ListingError::PageOutOfRange { .. } => ApiError::bad_request("page_out_of_range", e.to_string()).with_details(json!({"field": "page"})),
        ListingError::InvalidPageSize { .. } => ApiError::bad_request("invalid_page_size", e.to_string()).with_details(json!({"field": "size"})),
        ListingError::InvalidPriceRange { .. } => ApiError::bad_request("invalid_price_range", e.to_string()).with_details(json!({"field": "price_min"})),
        ListingError::BadCursor(_) => ApiError::bad_request("bad_cursor", e.to_string()).with_details(json!({"field": "cursor"})),
        other => ApiError::bad_request(other.code(), other.to_string()),
    }
}

fn invalid_parameter(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message).with_details(json!({"field": field}))
}

/// The query parameters of a listing (documentation; the handler reads the raw pairs so
/// that attribute filters `attr.<key>` and repeated parameters work).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListingParams {
    /// Brand ids, comma-separated or repeated (any of them).
    brand: Option<String>,
    /// Shop ids, comma-separated or repeated (any of them).
    shop: Option<String>,
    /// Lowest price, cents (inclusive).
    price_min: Option<u64>,
    /// Highest price, cents (inclusive).
    price_max: Option<u64>,
    /// Only SKUs with stock.
    in_stock: Option<bool>,
    /// `quality` (default), `sales`, `price_asc`, `price_desc`, `newest` or `reviews`.
    sort: Option<String>,
    /// Page number, 1-based (default 1); `page × size` is at most `listing.max_depth`.
    page: Option<u32>,
    /// Items per page, 1 to `listing.max_page_size` (default 20).
    size: Option<u32>,
    /// A `next_cursor` of the previous page of the same query (instead of `page`).
    cursor: Option<String>,
    /// Facet counts of brands, attribute values and price ranges.
    facets: Option<bool>,
    /// `attr.<key>=v1,v2`: SKUs with any of these values of attribute `<key>` (one
    /// parameter per key; keys are AND-ed).
    #[serde(rename = "attr.{key}")]
    #[param(rename = "attr.{key}")]
    attr: Option<String>,
}

/// A parsed listing request (the query, and the canonical query string without the page).
struct ParsedListing {
    query: ListingQuery,
    canonical: String,
}

fn parse_u32_list(field: &str, value: &str, into: &mut Vec<u32>) -> Result<(), ApiError> {
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        into.push(part.parse().map_err(|_| invalid_parameter(field, format!("{field} must be ids (whole numbers), comma-separated; got {part:?}")))?);
    }
    Ok(())
}

fn parse_bool(field: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(invalid_parameter(field, format!("{field} is true or false; got {other:?}"))),
    }
}

/// Reads a listing request from the category path segment and the raw query pairs.
fn parse_listing(category: &str, pairs: &[(String, String)], default_size: u32) -> Result<ParsedListing, ApiError> {
    let category: u32 = category.parse().map_err(|_| ApiError::not_found("unknown_category", format!("unknown category {category:?}: category ids are whole numbers")))?;
    let mut filters = Filters::default();
    let mut sort = SortKey::Quality;
    let mut page = None;
    let mut size = None;
    let mut cursor = None;
    let mut facets = false;
    for (key, value) in pairs {
        match key.as_str() {
            "brand" => parse_u32_list("brand", value, &mut filters.brands)?,
            "shop" => parse_u32_list("shop", value, &mut filters.shops)?,
            "price_min" => filters.price_min = Some(value.parse().map_err(|_| invalid_parameter("price_min", format!("price_min is a price in cents (a whole number); got {value:?}")))?),
            "price_max" => filters.price_max = Some(value.parse().map_err(|_| invalid_parameter("price_max", format!("price_max is a price in cents (a whole number); got {value:?}")))?),
            "in_stock" => filters.in_stock = parse_bool("in_stock", value)?,
            "facets" => facets = parse_bool("facets", value)?,
            "sort" => sort = value.parse::<SortKey>().map_err(listing_error)?,
            "page" => {
                let n: u32 = value.parse().map_err(|_| invalid_parameter("page", format!("page is a page number from 1; got {value:?}")))?;
                if n == 0 {
                    return Err(ApiError::bad_request("page_out_of_range", "page 0 is out of range: pages start at 1").with_details(json!({"field": "page"})));
                }
                page = Some(n);
            }
            "size" => size = Some(value.parse::<u32>().map_err(|_| invalid_parameter("size", format!("size is a number of items; got {value:?}")))?),
            "cursor" => cursor = Some(value.clone()),
            other => match other.strip_prefix("attr.") {
                Some(attr) if !attr.is_empty() => {
                    let values = filters.attributes.entry(attr.to_owned()).or_default();
                    values.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned));
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "unknown_parameter",
                        format!("unknown parameter {other:?}; use brand, shop, price_min, price_max, in_stock, attr.<key>, sort, page, size, cursor, facets"),
                    )
                    .with_details(json!({"field": other})))
                }
            },
        }
    }
    let size = size.unwrap_or(default_size);
    let paging = match (page, cursor) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("invalid_paging", "give page or cursor, not both").with_details(json!({"field": "cursor"}))),
        (_, Some(cursor)) => Paging::Cursor { cursor, size },
        (page, None) => Paging::Page { page: page.unwrap_or(1), size },
    };
    filters.brands.sort_unstable();
    filters.brands.dedup();
    filters.shops.sort_unstable();
    filters.shops.dedup();
    for values in filters.attributes.values_mut() {
        values.sort();
        values.dedup();
    }
    // The canonical form of everything but the page (the page cache's key).
    let mut canonical = Vec::new();
    let join = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    if !filters.brands.is_empty() {
        canonical.push(format!("brand={}", join(&filters.brands)));
    }
    if !filters.shops.is_empty() {
        canonical.push(format!("shop={}", join(&filters.shops)));
    }
    if let Some(p) = filters.price_min {
        canonical.push(format!("price_min={p}"));
    }
    if let Some(p) = filters.price_max {
        canonical.push(format!("price_max={p}"));
    }
    if filters.in_stock {
        canonical.push("in_stock=true".into());
    }
    for (k, vs) in &filters.attributes {
        canonical.push(format!("attr.{}={}", encode(k), vs.iter().map(|v| encode(v)).collect::<Vec<_>>().join(",")));
    }
    if sort != SortKey::Quality {
        canonical.push(format!("sort={sort}"));
    }
    if size != default_size {
        canonical.push(format!("size={size}"));
    }
    Ok(ParsedListing { query: ListingQuery { category, filters, sort, paging, facets }, canonical: canonical.join("&") })
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Raw query pairs (`a=1&a=2&attr.color=red`), percent-decoded.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else { return Vec::new() };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

fn page_item(state: &ListingState, app: &str, page: &ListingPage) -> Vec<ListingPageItem> {
    let listing = state.service.app(app);
    page.items
        .iter()
        .map(|i| {
            let info = listing.as_ref().and_then(|l| l.info(i.sku));
            ListingPageItem {
                sku: i.sku,
                spu: i.spu,
                name: info.as_ref().map(|x| x.name.to_string()).unwrap_or_default(),
                image: info.as_ref().map(|x| x.image.to_string()).unwrap_or_default(),
                brand: i.brand,
                shop: i.shop,
                price: i.price,
                stock: i.stock,
                quality: i.quality,
                pinned: i.pinned,
            }
        })
        .collect()
}

fn page_body(state: &ListingState, app: &str, query: &ListingQuery, page: ListingPage, took_us: u64) -> ListingPageBody {
    let path = state.service.app(app).and_then(|l| l.engine.category_path(query.category).ok()).unwrap_or_else(|| vec![query.category]);
    ListingPageBody {
        category: query.category,
        path,
        sort: query.sort.as_str().to_owned(),
        total: page.total,
        page: page.page,
        page_size: page.page_size,
        last_page: page.last_page,
        offset: page.offset,
        next_cursor: page.next_cursor.clone(),
        items: page_item(state, app, &page),
        facets: page.facets.as_ref().and_then(|f| serde_json::to_value(f).ok()),
        took_us,
    }
}

/// Runs a query on the blocking pool when the category is big (a small one is answered
/// inline: a thread hop would cost more than the query).
async fn run_query(state: &Arc<ListingState>, app: &str, query: ListingQuery) -> Result<(ListingPage, u64), ApiError> {
    let small = state.service.app(app).and_then(|l| l.engine.category_size(query.category)).is_none_or(|(base, delta)| base + u64::from(delta) < 50_000);
    let service = state.service.clone();
    let app = app.to_owned();
    let run = move || {
        let started = Instant::now();
        service.query(&app, &query).map(|page| (page, started.elapsed().as_micros() as u64))
    };
    let result = if small { run() } else { blocking(run).await? };
    result.map_err(listing_error)
}

/// The app's categories with their sizes, memory and the update rate.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/categories",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The categories", body = ListingCategories), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn categories(State(state): State<Arc<ListingState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<ListingCategories>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    Ok(Json(categories_of(&state, app.as_str())))
}

pub(crate) fn categories_of(state: &ListingState, app: &str) -> ListingCategories {
    let Some(listing) = state.service.app(app) else {
        return ListingCategories { skus: 0, index_bytes: 0, directory_bytes: 0, changes_applied: 0, changes_per_sec: 0.0, categories: Vec::new() };
    };
    let stats = listing.engine.stats();
    ListingCategories {
        skus: stats.skus,
        index_bytes: stats.index_bytes,
        directory_bytes: stats.directory_bytes,
        changes_applied: listing.changes_applied(),
        changes_per_sec: listing.changes_per_sec(),
        categories: listing
            .engine
            .categories()
            .into_iter()
            .map(|c| ListingCategory { id: c.id, parent: c.parent, skus: c.base_docs, spus: c.base_spus, delta_entries: c.delta_entries, index_bytes: c.column_bytes + c.order_bytes + c.posting_bytes })
            .collect(),
    }
}

/// A page of a category's listing (the category and its sub-categories): filters, sort,
/// page or cursor, facets. Each SPU appears once, as its best SKU; `total` is exact.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/categories/{category}",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("category" = String, Path, description = "Category id"), ListingParams),
    responses(
        (status = 200, description = "The page", body = ListingPageBody),
        (status = 400, description = "A bad parameter: `unknown_parameter`, `invalid_parameter`, `unknown_sort`, `unknown_attribute`, `invalid_page_size`, `page_out_of_range`, `invalid_paging`, `invalid_price_range`, `bad_cursor` (`details.field` names it)", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown category (`unknown_category`)", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("read"))),
)]
async fn category_page(
    State(state): State<Arc<ListingState>>,
    Path((app, category)): Path<(String, String)>,
    raw: axum::extract::RawQuery,
    headers: HeaderMap,
) -> Result<Json<ListingPageBody>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let parsed = parse_listing(&category, &query_pairs(raw.0.as_deref()), 20)?;
    let (page, took_us) = run_query(&state, app.as_str(), parsed.query.clone()).await?;
    metrics::histogram!("meridian_listing_query_seconds").record(took_us as f64 / 1e6);
    Ok(Json(page_body(&state, app.as_str(), &parsed.query, page, took_us)))
}

fn settings_view(s: &CategorySettings) -> ListingCategorySettings {
    ListingCategorySettings { max_brand_run: s.max_brand_run, max_shop_run: s.max_shop_run, window: s.window, pins: s.pins.iter().map(|p| ListingPin { position: p.position, sku: p.sku }).collect() }
}

fn category_id(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| ApiError::not_found("unknown_category", format!("unknown category {text:?}: category ids are whole numbers")))
}

/// A category's merchandising: brand/shop interleaving and pinned SKUs.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/categories/{category}/settings",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("category" = String, Path, description = "Category id")),
    responses((status = 200, description = "The settings (defaults when none were set)", body = ListingCategorySettings), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody), (status = 404, description = "Unknown category", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn get_category_settings(State(state): State<Arc<ListingState>>, Path((app, category)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<ListingCategorySettings>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let category = category_id(&category)?;
    let settings = state.service.category_settings(app.as_str(), category).map_err(listing_error)?;
    Ok(Json(settings_view(&settings)))
}

/// Sets a category's brand/shop interleaving and pinned SKUs (in force for the next query;
/// kept durably and applied again at start). Audited.
#[utoipa::path(
    put,
    path = "/v1/apps/{app}/listing/categories/{category}/settings",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("category" = String, Path, description = "Category id")),
    request_body(content = ListingCategorySettings, content_type = "application/json"),
    responses(
        (status = 200, description = "Set", body = ListingCategorySettings),
        (status = 400, description = "Invalid settings (`invalid_settings`, `details.field`) or body (`invalid_json`)", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown category, or a pin names an unknown SKU (`unknown_sku`)", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn put_category_settings(State(state): State<Arc<ListingState>>, Path((app, category)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Json<ListingCategorySettings>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let category = category_id(&category)?;
    let request: ListingCategorySettings = parse_json(&body)?;
    let settings = CategorySettings {
        max_brand_run: request.max_brand_run,
        max_shop_run: request.max_shop_run,
        window: request.window,
        pins: request.pins.iter().map(|p| Pin { position: p.position, sku: p.sku }).collect(),
    };
    let service = state.service.clone();
    let (app_text, new) = (app.to_string(), settings.clone());
    let before = blocking(move || service.set_category_settings(&app_text, category, new)).await?.map_err(|e| match e {
        ListingError::InvalidSettings { ref field, .. } => {
            let field = field.clone();
            ApiError::bad_request("invalid_settings", e.to_string()).with_details(json!({"field": field}))
        }
        other => listing_error(other),
    })?;
    if let Some(cache) = state.caches.read().get(app.as_str()) {
        cache.expire_category(category);
    }
    let view = settings_view(&settings);
    audit_app(&state.app, &principal, &app, "listing.category_settings", category.to_string(), serde_json::to_value(settings_view(&before)).ok(), serde_json::to_value(&view).ok()).await?;
    Ok(Json(view))
}

/// One SKU of the app's durable catalog.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/skus/{sku}",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("sku" = String, Path, description = "SKU id")),
    responses((status = 200, description = "The SKU", body = CatalogSkuBody), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody), (status = 404, description = "Unknown SKU (`unknown_sku`)", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn sku(State(state): State<Arc<ListingState>>, Path((app, sku)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<CatalogSkuBody>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let unknown = || ApiError::not_found("unknown_sku", format!("unknown SKU {sku:?} in the catalog of app {app}"));
    let id: u64 = sku.parse().map_err(|_| unknown())?;
    let service = state.service.clone();
    let app_text = app.to_string();
    let found = blocking(move || service.sku(&app_text, id)).await?.map_err(listing_error)?;
    let found = found.ok_or_else(unknown)?;
    Ok(Json(CatalogSkuBody(serde_json::to_value(&found).map_err(ApiError::internal)?)))
}

fn job_view(job: &Job) -> ListingJob {
    ListingJob {
        id: job.id.clone(),
        kind: job.kind.to_owned(),
        state: job.state().to_owned(),
        lines: job.lines.load(Ordering::Acquire),
        rejected: job.rejected.load(Ordering::Acquire),
        published: job.published.load(Ordering::Acquire),
        applied: job.applied.load(Ordering::Acquire),
        refused: job.refused.load(Ordering::Acquire),
        progress: job.progress(),
        errors: job.errors.lock().iter().map(|e| ListingLineError { line: e.line, code: e.code.clone(), message: e.message.clone() }).collect(),
        failure: job.failure.lock().clone(),
    }
}

/// Publishes `changes` of `app` to the product-change topic, in chunks, counting them on
/// `job`.
/// Publishes a job's changes, waits for them to be applied when asked (`wait=true`), audits
/// the job as `action` and answers its progress.
async fn finish_job(state: &ListingState, principal: &meridian_tenancy::Principal, app: &AppId, job: &Job, changes: Vec<ProductChange>, wait: bool, action: &'static str) -> Result<Response, ApiError> {
    publish(state, app.as_str(), job, changes).await?;
    if wait {
        wait_for(job, Duration::from_secs(30)).await;
    }
    let view = job_view(job);
    audit_app(&state.app, principal, app, action, job.id.clone(), None, audit_job(&view)).await?;
    Ok(job_answer(job))
}

async fn publish(state: &ListingState, app: &str, job: &Job, changes: Vec<ProductChange>) -> Result<(), ApiError> {
    let log = state.app.log.clone();
    let now = Timestamp::now().millis();
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        let chunk: Vec<AppendRecord> = changes
            .by_ref()
            .take(APPEND_CHUNK)
            .map(|change| {
                let message = ProductMessage { app: app.to_owned(), job: Some(job.id.clone()), change };
                AppendRecord { key: Bytes::from(message.key()), value: Bytes::from(serde_json::to_vec(&message).unwrap_or_default()), timestamp: now }
            })
            .collect();
        let n = chunk.len() as u64;
        if let Err(e) = log.append(&state.topic, chunk).await {
            *job.failure.lock() = Some(e.to_string());
            job.published_all.store(true, Ordering::Release);
            return Err(match e {
                meridian_log::LogError::Overloaded { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "the log is overloaded; retry the rest later").retry_after(1),
                other => ApiError::internal(other),
            });
        }
        job.published.fetch_add(n, Ordering::AcqRel);
    }
    job.published_all.store(true, Ordering::Release);
    Ok(())
}

/// Waits (at most `timeout`) until `job` is applied.
async fn wait_for(job: &Job, timeout: Duration) {
    let until = Instant::now() + timeout;
    while job.state() == "applying" || job.state() == "publishing" {
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether to wait until a job is applied.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitParams {
    /// Answer once every change is applied (at most 30 s), instead of once published.
    wait: Option<bool>,
}

fn job_answer(job: &Job) -> Response {
    let view = job_view(job);
    let status = if view.state == "done" { StatusCode::OK } else { StatusCode::ACCEPTED };
    (status, Json(view)).into_response()
}

fn audit_job(job: &ListingJob) -> Option<Value> {
    Some(json!({"job": job.id, "lines": job.lines, "rejected": job.rejected, "published": job.published}))
}

/// Bulk-loads SKUs into the app's catalog: an NDJSON body (gzip accepted), one SKU per
/// line (see `CatalogSkuBody`; `skus.jsonl` lines with the listing's fields load too). A
/// SKU already there is replaced. Valid lines are published to the product-change topic
/// as a job (its progress at `GET …/listing/jobs/{id}`); refused lines are listed with
/// their line numbers. The catalog is durable: a restart rebuilds the index from it.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/listing/catalog",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), WaitParams),
    // Documented as text/plain, which OpenAPI tools can generate; the body is read as lines
    // whatever its content type (application/x-ndjson too).
    request_body(content = String, content_type = "text/plain", description = "NDJSON: one SKU object per line (send it as application/x-ndjson or text/plain; gzip accepted)"),
    responses(
        (status = 200, description = "Applied (with `wait=true`)", body = ListingJob),
        (status = 202, description = "Published; being applied", body = ListingJob),
        (status = 400, description = "No valid line (`empty_body`, or the first line's `invalid_item`), or an invalid parameter", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown app", body = meridian_api::ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`): split the file", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn load_catalog(State(state): State<Arc<ListingState>>, Path(app): Path<String>, Query(params): Query<WaitParams>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let body = read_body(&state.app, &headers, body).await?;
    let job = state.service.new_job(random_id("load-", 8)?, app.as_str(), "catalog");
    let parse_job = job.clone();
    let changes = blocking(move || {
        let mut changes = Vec::new();
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            parse_job.lines.fetch_add(1, Ordering::Relaxed);
            match parse_sku_line(line) {
                Ok(sku) => changes.push(ProductChange::Upsert { item: serde_json::to_value(&sku).unwrap_or_default() }),
                Err(e) => {
                    parse_job.rejected.fetch_add(1, Ordering::Relaxed);
                    parse_job.error(n as u64 + 1, e.code(), e.to_string());
                }
            }
        }
        changes
    })
    .await?;
    if changes.is_empty() {
        job.published_all.store(true, Ordering::Release);
        let first = job.errors.lock().first().cloned();
        return Err(match first {
            Some(e) => ApiError::bad_request("invalid_item", format!("no valid SKU line; line {}: {}", e.line, e.message)).with_details(json!({"line": e.line, "errors": job_view(&job).errors})),
            None => ApiError::bad_request("empty_body", "the body holds no SKU line; send NDJSON, one SKU object per line"),
        });
    }
    finish_job(&state, &principal, &app, &job, changes, params.wait == Some(true), "listing.catalog_load").await
}

/// Publishes product changes to the app's product-change topic: a JSON array (or NDJSON)
/// of `{"op": "price", "sku", "price"}`, `{"op": "stock", "sku", "stock"}`, `{"op":
/// "shelf", "sku", "on_shelf"}`, `{"op": "quality", "sku", "score"}`, `{"op": "remove",
/// "sku"}`, `{"op": "upsert", "item": {…}}`. Applied in order to the durable catalog and
/// the live index, each exactly once; visible to the next query once applied
/// (`wait=true` answers then).
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/listing/changes",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), WaitParams),
    request_body(content = Vec<Object>, content_type = "application/json", description = "The changes"),
    responses(
        (status = 200, description = "Applied (with `wait=true`)", body = ListingJob),
        (status = 202, description = "Published; being applied", body = ListingJob),
        (status = 400, description = "No valid change: `invalid_json`, `empty_body`, `invalid_change`, `invalid_item`; refused elements are listed in `details.errors` with their index (1-based)", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown app, or every change names an unknown SKU (`unknown_sku`)", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn publish_changes(State(state): State<Arc<ListingState>>, Path(app): Path<String>, Query(params): Query<WaitParams>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let body = read_body(&state.app, &headers, body).await?;
    let trimmed = body.trim_ascii_start();
    let values: Vec<Value> = if trimmed.first() == Some(&b'[') {
        parse_json(trimmed)?
    } else {
        let mut values = Vec::new();
        for line in trimmed.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            values.push(parse_json(line)?);
        }
        values
    };
    if values.is_empty() {
        return Err(ApiError::bad_request("empty_body", "no change in the body; send a JSON array of changes"));
    }
    let job = state.service.new_job(random_id("changes-", 8)?, app.as_str(), "changes");
    let listing = state.service.app(app.as_str());
    let mut upserted: HashSet<u64> = HashSet::new();
    let mut removed: HashSet<u64> = HashSet::new();
    let mut changes = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        job.lines.fetch_add(1, Ordering::Relaxed);
        let line = i as u64 + 1;
        let change: ProductChange = match serde_json::from_value(value) {
            Ok(c) => c,
            Err(e) => {
                job.rejected.fetch_add(1, Ordering::Relaxed);
                job.error(line, "invalid_change", format!("not a change ({e}); use {{\"op\": \"price\" | \"stock\" | \"shelf\" | \"quality\" | \"remove\" | \"upsert\", …}}"));
                continue;
            }
        };
        if let Err(e) = change.check() {
            job.rejected.fetch_add(1, Ordering::Relaxed);
            job.error(line, e.code(), e.to_string());
            continue;
        }
        let sku = change.sku().unwrap_or_default();
        let known = (upserted.contains(&sku) || listing.as_ref().is_some_and(|l| l.info(sku).is_some())) && !removed.contains(&sku);
        match &change {
            ProductChange::Upsert { .. } => {
                upserted.insert(sku);
                removed.remove(&sku);
            }
            _ if !known => {
                job.rejected.fetch_add(1, Ordering::Relaxed);
                job.error(line, "unknown_sku", format!("unknown SKU {sku} in the catalog of app {app}"));
                continue;
            }
            ProductChange::Remove { .. } => {
                removed.insert(sku);
                upserted.remove(&sku);
            }
            _ => {}
        }
        changes.push(change);
    }
    if changes.is_empty() {
        job.published_all.store(true, Ordering::Release);
        let view = job_view(&job);
        let first = view.errors.first().cloned();
        let (code, message) = first.map(|e| (e.code, format!("no valid change; element {}: {}", e.line, e.message))).unwrap_or_else(|| ("invalid_change".into(), "no valid change".into()));
        let code: &'static str = match code.as_str() {
            "unknown_sku" => "unknown_sku",
            "invalid_item" => "invalid_item",
            _ => "invalid_change",
        };
        let status = if code == "unknown_sku" { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
        return Err(ApiError::new(status, code, message).with_details(json!({"errors": view.errors})));
    }
    finish_job(&state, &principal, &app, &job, changes, params.wait == Some(true), "listing.changes").await
}

/// A bulk load's or change batch's progress (jobs of the last few hundred are kept in
/// memory).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/jobs/{id}",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = ListingJob), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody), (status = 404, description = "Unknown job (`unknown_job`)", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn job(State(state): State<Arc<ListingState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<ListingJob>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let job = state.service.job(app.as_str(), &id).ok_or_else(|| ApiError::not_found("unknown_job", format!("no listing job {id:?} in app {app} (jobs are kept in memory until the server restarts)")))?;
    Ok(Json(job_view(&job)))
}

/// The app's shopper-page template (the built-in one until one is saved).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/listing/template",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The template", body = ListingTemplate), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn get_template(State(state): State<Arc<ListingState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<ListingTemplate>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let saved = template_of(&state, app.as_str()).await?;
    Ok(Json(match saved {
        Some(t) => ListingTemplate { template: t.to_string(), builtin: false },
        None => ListingTemplate { template: DEFAULT_TEMPLATE.to_owned(), builtin: true },
    }))
}

/// The saved template of an app (cached).
async fn template_of(state: &ListingState, app: &str) -> Result<Option<Arc<String>>, ApiError> {
    if let Some(t) = state.templates.read().get(app) {
        return Ok(if t.is_empty() { None } else { Some(t.clone()) });
    }
    let store = state.service.store().clone();
    let key = app.to_owned();
    let saved = blocking(move || meridian_listing::store::get_template(&*store, &key)).await?.map_err(ApiError::internal)?;
    let entry = Arc::new(saved.unwrap_or_default());
    state.templates.write().insert(app.to_owned(), entry.clone());
    Ok(if entry.is_empty() { None } else { Some(entry) })
}

/// Checks a template: it must compile and render the sample page.
pub(crate) fn validate_template(source: &str) -> Result<(), ApiError> {
    let env = shop_env();
    let invalid = |e: minijinja::Error| {
        let line = e.line();
        ApiError::bad_request("invalid_template", format!("the template does not {}: {e}", if line.is_some() { "compile or render" } else { "render" })).with_details(json!({"field": "template", "line": line}))
    };
    let template = env.template_from_str(source).map_err(invalid)?;
    template.render(crate::console::ser(sample_context())).map_err(invalid)?;
    Ok(())
}

/// Replaces the app's shopper-page template (minijinja, autoescaped). It is compiled and
/// rendered with a sample page first; a template that fails is refused (`invalid_template`,
/// `details.line`). An empty template restores the built-in one. Audited.
#[utoipa::path(
    put,
    path = "/v1/apps/{app}/listing/template",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = ListingTemplate, content_type = "application/json"),
    responses((status = 200, description = "Saved", body = ListingTemplate), (status = 400, description = "Invalid template (`invalid_template`) or body", body = meridian_api::ErrorBody), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn put_template(State(state): State<Arc<ListingState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<ListingTemplate>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let request: ListingTemplate = parse_json(&body)?;
    let template = request.template;
    if template.len() > 256 << 10 {
        return Err(ApiError::bad_request("invalid_template", "the template is larger than 256 KiB").with_details(json!({"field": "template"})));
    }
    if !template.trim().is_empty() {
        validate_template(&template)?;
    }
    let before = template_of(&state, app.as_str()).await?;
    let store = state.service.store().clone();
    let (key, text) = (app.to_string(), template.clone());
    blocking(move || meridian_listing::store::put_template(&*store, &key, if text.trim().is_empty() { None } else { Some(&text) })).await?.map_err(ApiError::internal)?;
    let builtin = template.trim().is_empty();
    state.templates.write().insert(app.to_string(), Arc::new(if builtin { String::new() } else { template.clone() }));
    // Pages rendered with the old template are replaced as they are asked for again.
    if let Some(cache) = state.caches.write().remove(app.as_str()) {
        drop(cache);
    }
    audit_app(&state.app, &principal, &app, "listing.template_update", "template".into(), before.map(|t| json!({"template": *t})), Some(json!({"template": template, "builtin": builtin}))).await?;
    Ok(Json(ListingTemplate { template: if builtin { DEFAULT_TEMPLATE.to_owned() } else { template }, builtin }))
}

/// Makes the app's shopper pages' backend fail (or work again), to see and test the
/// fallbacks: the stale page, the category's cached first page, the static page. Audited.
#[utoipa::path(
    put,
    path = "/v1/apps/{app}/listing/backend-failure",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = BackendFailure, content_type = "application/json"),
    responses((status = 200, description = "Set", body = BackendFailure), (status = 400, description = "Invalid body", body = meridian_api::ErrorBody), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn backend_failure(State(state): State<Arc<ListingState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<BackendFailure>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let request: BackendFailure = parse_json(&body)?;
    let before = state.failing.read().contains(app.as_str());
    if request.fail {
        state.failing.write().insert(app.to_string());
    } else {
        state.failing.write().remove(app.as_str());
    }
    audit_app(&state.app, &principal, &app, "listing.backend_failure", "backend".into(), Some(json!({"fail": before})), Some(json!({"fail": request.fail}))).await?;
    Ok(Json(request))
}

/// Runs the quality job for `app`: scores from the catalog and the behaviour counts,
/// published as changes; waits up to `wait` for them to be applied.
async fn quality_run(state: &ListingState, app: &str, wait: Option<Duration>) -> anyhow::Result<QualityRun> {
    let service = state.service.clone();
    let app_text = app.to_owned();
    let now = Timestamp::now().millis();
    let (changes, scored, with_behaviour) = blocking(move || service.quality_changes(&app_text, now)).await.map_err(|e| anyhow::anyhow!("{e}"))??;
    let changed = changes.len() as u64;
    let job = state.service.new_job(format!("quality-{now}-{app}"), app, "changes");
    job.lines.store(changed, Ordering::Relaxed);
    publish(state, app, &job, changes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(wait) = wait {
        wait_for(&job, wait).await;
    }
    Ok(QualityRun { scored, changed, with_behaviour, job: job.id.clone() })
}

/// Scores every SKU of the app now (the quality job also runs every
/// `listing.quality_interval_secs`): the configured formula over the SKU's metrics and the
/// views, carts and orders counted from the events topic; scores that moved are published
/// as changes and applied before the answer. Audited.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/listing/quality/run",
    tag = "listing",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "What it did", body = QualityRun), (status = 400, description = "Invalid app id", body = meridian_api::ErrorBody), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn run_quality(State(state): State<Arc<ListingState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<QualityRun>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let run = quality_run(&state, app.as_str(), Some(Duration::from_secs(30))).await.map_err(ApiError::internal)?;
    audit_app(&state.app, &principal, &app, "listing.quality_run", run.job.clone(), None, serde_json::to_value(&run).ok()).await?;
    Ok(Json(run))
}

// ---- Shopper pages -------------------------------------------------------------------

/// The environment shopper templates render in: autoescaped HTML, a `price` filter
/// (cents → `12.34`).
fn shop_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_formatter(crate::console::format_value);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.add_filter("price", |cents: u64| format!("{}.{:02}", cents / 100, cents % 100));
    env
}

fn sample_context() -> Value {
    json!({
        "app": "sample", "category": 1, "path": [1], "sort": "quality", "total": 1, "page": 1, "last_page": 1, "page_size": 24,
        "items": [{"sku": 1, "spu": 1, "name": "Sample <item>", "image": "/i.jpg", "brand": 1, "shop": 1, "price": 1999, "stock": 3, "in_stock": true, "pinned": false}],
        "sorts": [{"key": "quality", "url": "?", "current": true}], "prev_url": null, "next_url": null, "prices_url": "/shop/sample/prices",
    })
}

fn page_url(app: &str, category: u32, canonical: &str, extra: &str) -> String {
    let mut query: Vec<&str> = Vec::new();
    if !canonical.is_empty() {
        query.push(canonical);
    }
    if !extra.is_empty() {
        query.push(extra);
    }
    let q = query.join("&");
    format!("/shop/{}/categories/{category}{}{q}", encode(app), if q.is_empty() { "" } else { "?" })
}

/// Renders one shopper page (on the blocking pool): the query, then the template.
/// Why a shopper page was not rendered: the request's fault (answered as such, not with a
/// fallback), or the backend's (the cache falls back).
#[derive(Debug)]
enum RenderError {
    Client(ListingError),
    Backend(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Client(e) => write!(f, "{e}"),
            RenderError::Backend(e) => f.write_str(e),
        }
    }
}

fn render_shop_page(state: &ListingState, app: &str, parsed: &ParsedListing, template: Option<&str>) -> Result<String, RenderError> {
    if state.failing.read().contains(app) || state.service.fail_backend() {
        return Err(RenderError::Backend("the listing backend is failing (injected)".into()));
    }
    let page = state.service.query(app, &parsed.query).map_err(|e| match e {
        ListingError::Store(_) => RenderError::Backend(e.to_string()),
        other => RenderError::Client(other),
    })?;
    let category = parsed.query.category;
    let items: Vec<Value> = page_item(state, app, &page)
        .into_iter()
        .map(|i| json!({"sku": i.sku, "spu": i.spu, "name": i.name, "image": i.image, "brand": i.brand, "shop": i.shop, "price": i.price, "stock": i.stock, "in_stock": i.stock > 0, "pinned": i.pinned}))
        .collect();
    // The canonical query without the sort, for the sort links.
    let without_sort: String = parsed.canonical.split('&').filter(|p| !p.starts_with("sort=") && !p.is_empty()).collect::<Vec<_>>().join("&");
    let sorts: Vec<Value> = SortKey::ALL
        .iter()
        .map(|s| {
            let extra = if *s == SortKey::Quality { String::new() } else { format!("sort={s}") };
            let joined = [without_sort.as_str(), extra.as_str()].iter().filter(|x| !x.is_empty()).copied().collect::<Vec<_>>().join("&");
            json!({"key": s.as_str(), "url": page_url(app, category, &joined, ""), "current": *s == parsed.query.sort})
        })
        .collect();
    let prev_url = (page.page > 1).then(|| page_url(app, category, &parsed.canonical, &format!("page={}", page.page - 1)));
    let next_url = (page.page < page.last_page && u64::from(page.page) * u64::from(page.page_size) < u64::from(state.service.config().max_depth)).then(|| page_url(app, category, &parsed.canonical, &format!("page={}", page.page + 1)));
    let path = state.service.app(app).and_then(|l| l.engine.category_path(category).ok()).unwrap_or_else(|| vec![category]);
    let context = json!({
        "app": app, "category": category, "path": path, "sort": parsed.query.sort.as_str(), "total": page.total, "page": page.page,
        "last_page": page.last_page, "page_size": page.page_size, "items": items, "sorts": sorts, "prev_url": prev_url, "next_url": next_url,
        "prices_url": format!("/shop/{}/prices", encode(app)),
    });
    let env = shop_env();
    let source = template.unwrap_or(DEFAULT_TEMPLATE);
    let template = env.template_from_str(source).map_err(|e| RenderError::Backend(format!("template: {e}")))?;
    template.render(crate::console::ser(&context)).map_err(|e| RenderError::Backend(format!("template: {e}")))
}

/// Renders the first page of every category whose cached one is missing or expired (the
/// first-page cache is the fallback of every other page, so it is kept full). Blocking.
fn refresh_first_pages(state: &ListingState) -> usize {
    let mut stored = 0;
    for app in state.service.apps() {
        let Some(listing) = state.service.app(&app) else { continue };
        let categories: Vec<u32> = listing.engine.categories().iter().map(|c| c.id).collect();
        let template = match state.templates.read().get(&app) {
            Some(t) => Some(t.clone()),
            None => meridian_listing::store::get_template(&**state.service.store(), &app).ok().flatten().map(Arc::new),
        };
        let template = template.filter(|t| !t.is_empty());
        let size = state.service.config().page_size.min(state.service.config().max_page_size);
        stored += cache_of(state, &app).refresh_first_pages(&categories, |category| {
            let parsed = parse_listing(&category.to_string(), &[], size).map_err(|e| e.message)?;
            render_shop_page(state, &app, &parsed, template.as_deref().map(String::as_str)).map_err(|e| e.to_string())
        });
    }
    stored
}

fn cache_of(state: &ListingState, app: &str) -> Arc<PageCache<String>> {
    if let Some(cache) = state.caches.read().get(app) {
        return cache.clone();
    }
    let config = state.service.config();
    state
        .caches
        .write()
        .entry(app.to_owned())
        .or_insert_with(|| Arc::new(PageCache::new(config.cache_ttl(), config.cache_capacity, config.cache_shards, STATIC_PAGE.to_owned(), Arc::new(SystemClock))))
        .clone()
}

fn html(status: StatusCode, body: String, from: Option<ServedFrom>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if let Some(from) = from {
        if let Ok(v) = HeaderValue::from_str(from.as_str()) {
            response.headers_mut().insert("x-meridian-page", v);
        }
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn shop_message(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    html(status, format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><main><h1>{}</h1><p>{}</p></main></body></html>", escape(title), escape(title), escape(message)), None)
}

/// A shopper's category page: server-rendered from the app's template, through the page
/// cache (the first page of every category is always kept; other pages in a sharded LRU).
/// On a backend failure it serves the stale page, else the category's first page, else a
/// static page: never a 5xx. `x-meridian-page` says which (`rendered`, `cached`, `stale`,
/// `first_page_fallback`, `static_fallback`). Parameters as in the JSON listing.
#[utoipa::path(
    get,
    path = "/shop/{app}/categories/{category}",
    tag = "listing",
    params(("app" = String, Path, description = "App id"), ("category" = String, Path, description = "Category id"), ListingParams),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 400, description = "A bad parameter (an HTML page saying which)", content_type = "text/html"),
        (status = 404, description = "Unknown app or category (an HTML page)", content_type = "text/html"),
    ),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn shop_page(State(state): State<Arc<ListingState>>, Path((app, category)): Path<(String, String)>, raw: axum::extract::RawQuery) -> Response {
    let Ok(app) = AppId::new(&app) else {
        return shop_message(StatusCode::NOT_FOUND, "Not found", "There is no such shop.");
    };
    let pairs = query_pairs(raw.0.as_deref());
    let default_size = state.service.config().page_size.min(state.service.config().max_page_size);
    let parsed = match parse_listing(&category, &pairs, default_size) {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::NOT_FOUND => return shop_message(StatusCode::NOT_FOUND, "Not found", &e.message),
        Err(e) => return shop_message(StatusCode::BAD_REQUEST, "This list cannot be shown", &e.message),
    };
    if matches!(parsed.query.paging, Paging::Cursor { .. }) {
        return shop_message(StatusCode::BAD_REQUEST, "This list cannot be shown", "shopper pages are paged by number; use page=");
    }
    // Client errors are answered before the cache: they are not backend failures.
    let known = state.service.app(app.as_str()).is_some_and(|l| l.engine.category_path(parsed.query.category).is_ok());
    let failing = state.failing.read().contains(app.as_str()) || state.service.fail_backend();
    if !known && !failing {
        return shop_message(StatusCode::NOT_FOUND, "Not found", &format!("There is no category {}.", parsed.query.category));
    }
    let page = match parsed.query.paging {
        Paging::Page { page, .. } => page,
        Paging::Cursor { .. } => 1,
    };
    let template = template_of(&state, app.as_str()).await.unwrap_or_default();
    let key = PageKey { category: parsed.query.category, query: parsed.canonical.clone(), page };
    let cache = cache_of(&state, app.as_str());
    let render_state = state.clone();
    let app_text = app.to_string();
    let served = blocking(move || {
        // A request's own fault (a page beyond the end, an unknown attribute) is answered as
        // such, not with a fallback page.
        let mut client_error = None;
        let served = cache.get(&key, || {
            render_shop_page(&render_state, &app_text, &parsed, template.as_deref().map(String::as_str)).inspect_err(|e| {
                if let RenderError::Client(e) = e {
                    client_error = Some(e.clone());
                }
            })
        });
        (served, client_error)
    })
    .await;
    match served {
        Ok((_, Some(e))) => {
            let status = if matches!(e, ListingError::UnknownCategory(_)) { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
            shop_message(status, "This list cannot be shown", &e.to_string())
        }
        Ok((served, None)) => {
            metrics::counter!("meridian_listing_pages_total", "from" => served.from.as_str()).increment(1);
            if let Some(error) = &served.error {
                tracing::warn!(app = %app, error = %error, from = served.from.as_str(), "listing: shopper page served from a fallback");
            }
            html(StatusCode::OK, served.value.to_string(), Some(served.from))
        }
        Err(_) => html(StatusCode::OK, STATIC_PAGE.to_owned(), Some(ServedFrom::StaticFallback)),
    }
}

/// Which SKUs' price and stock to answer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PricesParams {
    /// SKU ids, comma-separated (at most 200).
    skus: String,
}

/// Live price and stock of SKUs: the small JSON fragment a shopper page loads after it is
/// shown, so a cached page never shows a stale price.
#[utoipa::path(
    get,
    path = "/shop/{app}/prices",
    tag = "listing",
    params(("app" = String, Path, description = "App id"), PricesParams),
    responses((status = 200, description = "Price and stock", body = PriceStockList), (status = 400, description = "Bad SKU list (`invalid_parameter`)", body = meridian_api::ErrorBody)),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn shop_prices(State(state): State<Arc<ListingState>>, Path(app): Path<String>, Query(params): Query<PricesParams>) -> Result<Json<PriceStockList>, ApiError> {
    let app = app_id(&app)?;
    let mut skus = Vec::new();
    parse_u64_list(&params.skus, &mut skus)?;
    if skus.len() > 200 {
        return Err(invalid_parameter("skus", format!("{} SKUs; ask for at most 200", skus.len())));
    }
    let service = state.service.clone();
    let items = blocking(move || -> Result<Vec<PriceStock>, ListingError> {
        let mut items = Vec::new();
        for sku in skus {
            if let Some(found) = service.sku(app.as_str(), sku)? {
                items.push(PriceStock { sku, price: found.item.price, stock: found.item.stock, on_shelf: found.item.on_shelf });
            }
        }
        Ok(items)
    })
    .await?
    .map_err(listing_error)?;
    Ok(Json(PriceStockList { items }))
}

fn parse_u64_list(value: &str, into: &mut Vec<u64>) -> Result<(), ApiError> {
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        into.push(part.parse().map_err(|_| invalid_parameter("skus", format!("skus are SKU ids (whole numbers), comma-separated; got {part:?}")))?);
    }
    Ok(())
}
