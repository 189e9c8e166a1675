//! The listing's durable state in the module's own state store: the catalog (one record
//! per SKU and app), behaviour counts per SKU (views, carts, orders; the quality job's
//! signals) and the shopper-page template of each app. The in-memory index is rebuilt
//! from the catalog at start, so a restart needs no source.

use crate::catalog::CatalogSku;
use crate::quality::Signals;
use meridian_state::{KvStore, Result, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;

/// SKUs: key = app, 0, SKU (u64 BE); value = the [`CatalogSku`] as JSON.
pub const SKUS_TABLE: &str = "listing_skus";
/// Behaviour counts: key = app, 0, SKU (u64 BE); value = views, carts, orders (u64 BE each).
pub const SIGNALS_TABLE: &str = "listing_signals";
/// Shopper-page templates: key = app; value = the template text.
pub const TEMPLATES_TABLE: &str = "listing_templates";

/// What the module remembers: key = `file:` + app; value = the signature (size, mtime) of
/// the catalog file last loaded into the app.
pub const META_TABLE: &str = "listing_meta";

/// The signature of the catalog file last loaded into `app`.
pub fn loaded_file(store: &dyn KvStore, app: &str) -> Result<Option<String>> {
    Ok(store.get(META_TABLE, format!("file:{app}").as_bytes())?.and_then(|v| String::from_utf8(v).ok()))
}

/// Remembers the signature of the catalog file loaded into `app`.
pub fn set_loaded_file(store: &dyn KvStore, app: &str, signature: &str) -> Result<()> {
    let mut batch = WriteBatch::new();
    batch.put(META_TABLE, format!("file:{app}").into_bytes(), signature.as_bytes().to_vec());
    store.commit(batch)
}

/// Category settings (interleaving, pins): key = app, 0, category (u32 BE); value = the
/// [`crate::CategorySettings`] as JSON.
pub const SETTINGS_TABLE: &str = "listing_settings";

/// Saves a category's settings.
pub fn put_settings(store: &dyn KvStore, app: &str, category: u32, settings: &crate::CategorySettings) -> Result<()> {
    let mut key = app.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&category.to_be_bytes());
    let mut batch = WriteBatch::new();
    batch.put(SETTINGS_TABLE, key, serde_json::to_vec(settings).unwrap_or_default());
    store.commit(batch)
}

/// Every saved category setting of an app: (category, settings).
pub fn read_settings(store: &dyn KvStore, app: &str) -> Result<Vec<(u32, crate::CategorySettings)>> {
    let mut prefix = app.as_bytes().to_vec();
    prefix.push(0);
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(SETTINGS_TABLE, &prefix, 1_000_000)? {
        let Some(category) = key.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else { continue };
        if let Ok(settings) = serde_json::from_slice(&value) {
            out.push((category, settings));
        }
    }
    Ok(out)
}

/// Rows read per store call when scanning.
const SCAN_CHUNK: usize = 10_000;

/// The key of `sku` of `app` (also the signals key).
pub fn sku_key(app: &str, sku: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(app.len() + 9);
    key.extend_from_slice(app.as_bytes());
    key.push(0);
    key.extend_from_slice(&sku.to_be_bytes());
    key
}

fn split_key(key: &[u8]) -> Option<(&str, u64)> {
    let at = key.iter().position(|&b| b == 0)?;
    let app = std::str::from_utf8(&key[..at]).ok()?;
    let sku = u64::from_be_bytes(key.get(at + 1..)?.try_into().ok()?);
    Some((app, sku))
}

/// Calls `visit` with every row of `table` (app, SKU, value), in key order.
fn scan(store: &dyn KvStore, table: &'static str, mut visit: impl FnMut(&str, u64, &[u8])) -> Result<()> {
    let mut from: Vec<u8> = Vec::new();
    let mut inclusive = true;
    loop {
        let start = if inclusive { Bound::Included(&from[..]) } else { Bound::Excluded(&from[..]) };
        let rows = store.range(table, start, Bound::Unbounded, SCAN_CHUNK)?;
        for kv in &rows {
            if let Some((app, sku)) = split_key(&kv.0) {
                visit(app, sku, &kv.1);
            }
        }
        match rows.last() {
            Some(last) if rows.len() == SCAN_CHUNK => {
                from = last.0.clone();
                inclusive = false;
            }
            _ => return Ok(()),
        }
    }
}

/// Every app's catalog. Rows that do not decode are skipped and counted.
pub fn read_catalogs(store: &dyn KvStore) -> Result<(BTreeMap<String, Vec<CatalogSku>>, u64)> {
    let mut out: BTreeMap<String, Vec<CatalogSku>> = BTreeMap::new();
    let mut undecodable = 0;
    scan(store, SKUS_TABLE, |app, _, value| match serde_json::from_slice::<CatalogSku>(value) {
        Ok(sku) => match out.get_mut(app) {
            Some(list) => list.push(sku),
            None => {
                out.insert(app.to_owned(), vec![sku]);
            }
        },
        Err(_) => undecodable += 1,
    })?;
    Ok((out, undecodable))
}

/// One SKU of an app's catalog.
pub fn get_sku(store: &dyn KvStore, app: &str, sku: u64) -> Result<Option<CatalogSku>> {
    Ok(store.get(SKUS_TABLE, &sku_key(app, sku))?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Adds the new version of a SKU (`None`: removed) to `batch`.
pub fn put_sku(batch: &mut WriteBatch, app: &str, sku: u64, value: Option<&CatalogSku>) {
    match value {
        Some(value) => batch.put(SKUS_TABLE, sku_key(app, sku), serde_json::to_vec(value).unwrap_or_default()),
        None => batch.delete(SKUS_TABLE, sku_key(app, sku)),
    }
}

/// Decodes stored behaviour counts.
pub fn decode_signals(value: &[u8]) -> Signals {
    let n = |i: usize| value.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
    Signals { views: n(0), carts: n(1), orders: n(2) }
}

/// Encodes behaviour counts.
pub fn encode_signals(signals: &Signals) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    for n in [signals.views, signals.carts, signals.orders] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// Calls `visit` with every row of `table` under `app` (SKU, value), in SKU order.
fn scan_app(store: &dyn KvStore, table: &'static str, app: &str, mut visit: impl FnMut(u64, &[u8])) -> Result<()> {
    let mut prefix = app.as_bytes().to_vec();
    prefix.push(0);
    let mut from = prefix.clone();
    let mut inclusive = true;
    let end = meridian_state::prefix_end(&prefix);
    loop {
        let start = if inclusive { Bound::Included(&from[..]) } else { Bound::Excluded(&from[..]) };
        let end_bound = match &end {
            Some(e) => Bound::Excluded(&e[..]),
            None => Bound::Unbounded,
        };
        let rows = store.range(table, start, end_bound, SCAN_CHUNK)?;
        for kv in &rows {
            if let Some((_, sku)) = split_key(&kv.0) {
                visit(sku, &kv.1);
            }
        }
        match rows.last() {
            Some(last) if rows.len() == SCAN_CHUNK => {
                from = last.0.clone();
                inclusive = false;
            }
            _ => return Ok(()),
        }
    }
}

/// Behaviour counts of an app's SKUs.
pub fn read_signals(store: &dyn KvStore, app: &str) -> Result<std::collections::HashMap<u64, Signals>> {
    let mut out = std::collections::HashMap::new();
    scan_app(store, SIGNALS_TABLE, app, |sku, value| {
        out.insert(sku, decode_signals(value));
    })?;
    Ok(out)
}

/// One app's catalog (rows that do not decode are skipped).
pub fn read_catalog(store: &dyn KvStore, app: &str) -> Result<Vec<CatalogSku>> {
    let mut out = Vec::new();
    scan_app(store, SKUS_TABLE, app, |_, value| {
        if let Ok(sku) = serde_json::from_slice::<CatalogSku>(value) {
            out.push(sku);
        }
    })?;
    Ok(out)
}

/// The saved template of an app.
pub fn get_template(store: &dyn KvStore, app: &str) -> Result<Option<String>> {
    Ok(store.get(TEMPLATES_TABLE, app.as_bytes())?.and_then(|v| String::from_utf8(v).ok()))
}

/// Saves (or, with `None`, removes) the template of an app.
pub fn put_template(store: &dyn KvStore, app: &str, template: Option<&str>) -> Result<()> {
    let mut batch = WriteBatch::new();
    match template {
        Some(t) => batch.put(TEMPLATES_TABLE, app.as_bytes().to_vec(), t.as_bytes().to_vec()),
        None => batch.delete(TEMPLATES_TABLE, app.as_bytes().to_vec()),
    }
    store.commit(batch)
}
