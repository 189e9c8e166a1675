//! Writes a demo world to files: catalog JSON lines, dimension CSVs and the event stream.

use crate::config::DemoConfig;
use crate::error::{DemoError, Result};
use crate::world::DemoWorld;
use crate::BehaviourGenerator;
use flate2::write::GzEncoder;
use flate2::Compression;
use indicatif::ProgressBar;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`write_files_with`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Write `events.ndjson.gz` instead of `events.ndjson`.
    pub gzip: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Categories written.
    pub categories: usize,
    /// Brands written.
    pub brands: usize,
    /// Shops written.
    pub shops: usize,
    /// SPUs written.
    pub spus: usize,
    /// SKUs written.
    pub skus: usize,
    /// Events written, malformed ones included.
    pub events: u64,
    /// Deliberately malformed events among them.
    pub malformed: u64,
    /// The event file.
    pub events_path: PathBuf,
}

/// Writes the world of `config` and `n_events` events under `dir`:
/// `catalog/{categories,brands,shops,spus,skus}.jsonl`, `dims/sku.csv`, `dims/shop.csv`
/// and `events.ndjson`.
pub fn write_files(dir: &Path, config: &DemoConfig, n_events: u64, progress: bool) -> Result<WriteReport> {
    write_files_with(dir, config, n_events, WriteOptions { gzip: false, progress })
}

/// [`write_files`] with options (gzip).
pub fn write_files_with(dir: &Path, config: &DemoConfig, n_events: u64, options: WriteOptions) -> Result<WriteReport> {
    let world = Arc::new(DemoWorld::generate(config)?);
    write_world(dir, &world, n_events, options)
}

/// Writes an already generated world.
pub fn write_world(dir: &Path, world: &Arc<DemoWorld>, n_events: u64, options: WriteOptions) -> Result<WriteReport> {
    let catalog = &world.catalog;
    let catalog_dir = dir.join("catalog");
    let dims_dir = dir.join("dims");
    for d in [&catalog_dir, &dims_dir] {
        fs::create_dir_all(d).map_err(|e| DemoError::io(d, e))?;
    }
    write_jsonl(&catalog_dir.join("categories.jsonl"), &catalog.categories)?;
    write_jsonl(&catalog_dir.join("brands.jsonl"), &catalog.brands)?;
    write_jsonl(&catalog_dir.join("shops.jsonl"), &catalog.shops)?;
    write_jsonl(&catalog_dir.join("spus.jsonl"), &catalog.spus)?;
    write_jsonl(&catalog_dir.join("skus.jsonl"), &catalog.skus)?;

    let sku_path = dims_dir.join("sku.csv");
    let csv_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Csv { path, source }
    };
    let mut w = csv::Writer::from_path(&sku_path).map_err(csv_err(&sku_path))?;
    w.write_record(["sku_id", "spu_id", "category", "brand", "shop", "price"]).map_err(csv_err(&sku_path))?;
    for sku in &catalog.skus {
        let spu = catalog.spu(sku.spu).ok_or_else(|| DemoError::InvalidConfig(format!("sku {} has no spu {}", sku.id, sku.spu)))?;
        w.write_record([
            sku.id.clone(),
            spu.id.to_string(),
            spu.category.to_string(),
            spu.brand.to_string(),
            spu.shop.to_string(),
            sku.price.to_string(),
        ])
        .map_err(csv_err(&sku_path))?;
    }
    w.flush().map_err(|e| DemoError::io(&sku_path, e))?;
    let shop_path = dims_dir.join("shop.csv");
    let mut w = csv::Writer::from_path(&shop_path).map_err(csv_err(&shop_path))?;
    w.write_record(["shop_id", "star", "category"]).map_err(csv_err(&shop_path))?;
    for shop in &catalog.shops {
        w.write_record([shop.id.to_string(), shop.star.to_string(), shop.category.to_string()]).map_err(csv_err(&shop_path))?;
    }
    w.flush().map_err(|e| DemoError::io(&shop_path, e))?;

    let events_path = dir.join(if options.gzip { "events.ndjson.gz" } else { "events.ndjson" });
    let file = File::create(&events_path).map_err(|e| DemoError::io(&events_path, e))?;
    let bar = crate::progress::bar(options.progress, Some(n_events), "writing events");
    let mut generator = world.events(n_events);
    let io = |e| DemoError::io(&events_path, e);
    if options.gzip {
        let gz = write_events(GzEncoder::new(BufWriter::new(file), Compression::fast()), &mut generator, &bar).map_err(io)?;
        gz.finish().and_then(|mut inner| inner.flush()).map_err(io)?;
    } else {
        write_events(file, &mut generator, &bar).map_err(io)?;
    }
    bar.finish_and_clear();

    Ok(WriteReport {
        categories: catalog.categories.len(),
        brands: catalog.brands.len(),
        shops: catalog.shops.len(),
        spus: catalog.spus.len(),
        skus: catalog.skus.len(),
        events: generator.emitted(),
        malformed: generator.malformed_emitted(),
        events_path,
    })
}

/// Writes every event of `generator` as one JSON line; returns the flushed inner writer.
fn write_events<W: Write>(inner: W, generator: &mut BehaviourGenerator, bar: &ProgressBar) -> std::io::Result<W> {
    let mut out = BufWriter::with_capacity(1 << 20, inner);
    let mut since_tick = 0u64;
    while let Some(result) = generator.write_next(&mut out) {
        result?;
        out.write_all(b"\n")?;
        since_tick += 1;
        if since_tick == 8192 {
            bar.inc(since_tick);
            since_tick = 0;
        }
    }
    bar.inc(since_tick);
    out.into_inner().map_err(|e| e.into_error())
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let file = File::create(path).map_err(|e| DemoError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n").map_err(|e| DemoError::io(path, e))?;
    }
    out.flush().map_err(|e| DemoError::io(path, e))
}
