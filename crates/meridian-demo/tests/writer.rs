//! File writer: the catalog, dimension tables and events it writes parse and match.

use flate2::read::GzDecoder;
use meridian_demo::{write_files, write_files_with, DemoConfig, WriteOptions};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

fn lines(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect()
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

#[test]
fn written_files_parse_and_counts_match() {
    let dir = tempfile::tempdir().unwrap();
    let config = DemoConfig::small();
    let report = write_files(dir.path(), &config, 5_000, false).unwrap();
    assert_eq!(report.events, 5_000);
    assert_eq!(report.spus, config.spus);
    let catalog = dir.path().join("catalog");
    assert_eq!(lines(&catalog.join("categories.jsonl")).len(), report.categories);
    assert_eq!(lines(&catalog.join("brands.jsonl")).len(), report.brands);
    assert_eq!(lines(&catalog.join("shops.jsonl")).len(), report.shops);
    assert_eq!(lines(&catalog.join("spus.jsonl")).len(), report.spus);
    let skus = lines(&catalog.join("skus.jsonl"));
    assert_eq!(skus.len(), report.skus);
    assert!(skus[0]["image"].as_str().unwrap().starts_with("https://img.example/sku/"));

    let (header, rows) = csv_rows(&dir.path().join("dims/sku.csv"));
    assert_eq!(header, ["sku_id", "spu_id", "category", "brand", "shop", "price"]);
    assert_eq!(rows.len(), report.skus);
    assert_eq!(rows[0][0], skus[0]["id"].as_str().unwrap());
    let (header, rows) = csv_rows(&dir.path().join("dims/shop.csv"));
    assert_eq!(header, ["shop_id", "star", "category"]);
    assert_eq!(rows.len(), report.shops);

    let events = lines(&report.events_path);
    assert_eq!(events.len() as u64, report.events);
    assert!(events.iter().all(Value::is_object));
    assert!(report.malformed < 100);
}

#[test]
fn gzip_events_decode_to_the_same_stream() {
    let config = DemoConfig::small();
    let plain_dir = tempfile::tempdir().unwrap();
    let gz_dir = tempfile::tempdir().unwrap();
    let plain = write_files(plain_dir.path(), &config, 2_000, false).unwrap();
    let gz = write_files_with(gz_dir.path(), &config, 2_000, WriteOptions { gzip: true, progress: false }).unwrap();
    assert!(gz.events_path.to_string_lossy().ends_with("events.ndjson.gz"));
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(&gz.events_path).unwrap()).read_to_string(&mut text).unwrap();
    assert_eq!(text, std::fs::read_to_string(&plain.events_path).unwrap());
    assert_eq!(gz.malformed, plain.malformed);
}
