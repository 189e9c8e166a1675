//! SKU records and their JSON-lines files.

use crate::{Error, Result, SkuInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One SKU of the catalog as stored in `skus.jsonl` (fields the loader does not know are
/// ignored, so richer files load too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuRecord {
    /// SKU id, a numeric string.
    pub id: String,
    /// SPU id.
    pub spu: u64,
    /// Display name.
    pub name: String,
    /// Image URL.
    pub image: String,
    /// Price in cents.
    #[serde(default)]
    pub price: u64,
    /// Units in stock.
    #[serde(default)]
    pub stock: u32,
    /// Whether the SKU is on sale.
    #[serde(default)]
    pub on_shelf: bool,
    /// Variant attributes (color, size…).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Launch time, epoch ms.
    #[serde(default)]
    pub launch_time: i64,
}

impl SkuRecord {
    /// What history shows of it.
    pub fn info(&self) -> SkuInfo {
        SkuInfo { spu: self.spu, name: self.name.as_str().into(), image: self.image.as_str().into() }
    }
}

/// Reads a JSON-lines file of [`SkuRecord`]s (blank lines skipped).
pub fn load_jsonl(path: &Path) -> Result<Vec<SkuRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record = serde_json::from_str(line).map_err(|e| Error::InvalidRecord { path: path.display().to_string(), line: n + 1, message: e.to_string() })?;
        records.push(record);
    }
    Ok(records)
}

/// Reads the catalog of a directory written by `meridian demo generate`: `skus.jsonl`
/// directly in `dir` or in `dir/catalog`.
pub fn load_dir(dir: &Path) -> Result<Vec<SkuRecord>> {
    let path = [dir.join("skus.jsonl"), dir.join("catalog/skus.jsonl")]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| Error::NotFound(dir.display().to_string()))?;
    load_jsonl(&path)
}
