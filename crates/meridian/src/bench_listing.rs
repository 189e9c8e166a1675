//! `meridian bench listing`: the category listing through the real server — a synthetic
//! catalog bulk-loaded over HTTP, then the JSON listing (typical filter + sort pages, with
//! and without full facets, deep pages), shopper pages rendered from the template against
//! the same pages from the page cache, product changes through the change topic and the
//! time until a price change shows, each phase's p50/p99 against `GET /healthz` measured
//! in the same run (the cost of the HTTP round trip alone). The engine's own figures on a
//! 10,000,000-SKU category are `cargo run --release -p meridian-listing --example
//! listing_bench`.

use super::{bench_key, loose_limits, start_server, BENCH_MASTER_KEY};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(super) struct ListingBenchArgs {
    /// SKUs in the catalog (all under root category 1).
    #[arg(long, default_value_t = 1_000_000)]
    skus: u64,
    /// Leaf categories the SKUs are spread over (path [1, 100 + leaf]).
    #[arg(long, default_value_t = 1_000)]
    categories: u64,
    /// SKU lines per bulk-load request (about 450 bytes each; the server's body limit is
    /// 4 MiB by default).
    #[arg(long, default_value_t = 8_000)]
    chunk: usize,
    /// Requests of each measured phase.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Requests in flight in each phase.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Product changes sent in the update phase (batches of 1,000).
    #[arg(long, default_value_t = 200_000)]
    changes: u64,
    /// Directory for the temporary data (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const COLORS: [&str; 8] = ["red", "blue", "black", "white", "green", "grey", "pink", "gold"];
const SIZES: [&str; 5] = ["S", "M", "L", "XL", "XXL"];

/// A deterministic pseudo-random number of `i` (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A skewed pick in `0..n`: small ids much more often (head brands and shops).
fn skewed(r: u64, n: u64) -> u64 {
    let u = (r % 1_000_000) as f64 / 1_000_000.0;
    ((u * u * u) * n as f64) as u64 % n
}

/// SKU `i`: ~2.5 SKUs per SPU, 2,000 brands and 5,000 shops (skewed), colour and size.
fn sku_line(i: u64, categories: u64) -> String {
    let r = mix(i);
    let leaf = 100 + (r % categories) as u32;
    json!({
        "sku": i + 1, "spu": i / 5 * 2 + (r >> 7) % 2 + 1, "name": format!("Item {}", i + 1), "image": format!("/img/{}.jpg", i + 1),
        "category_path": [1, leaf], "brand": skewed(r >> 11, 2_000) as u32 + 1, "shop": skewed(r >> 23, 5_000) as u32 + 1,
        "price": 100 + (r >> 31) % 200_000, "stock": ((r >> 41) % 50) as u32, "on_shelf": !(r >> 47).is_multiple_of(20),
        "attributes": {"color": COLORS[((r >> 50) % 8) as usize], "size": SIZES[((r >> 53) % 5) as usize]},
        "launch_time": 1_700_000_000_000i64 + ((r >> 13) % 10_000_000_000) as i64,
        "metrics": {"sales": (r >> 17) % 100_000, "reviews": (r >> 29) % 5_000, "views": (r >> 37) % 1_000_000},
        "quality": ((r >> 3) % 10_000) as f32 / 100.0,
    })
    .to_string()
}

/// Latencies (µs) of `n` GETs of the URLs `url(i)` yields (with the bearer key it gives),
/// `concurrency` at a time, and the requests per second; every answer must be a success.
async fn phase(http: &reqwest::Client, n: usize, concurrency: usize, url: impl Fn(usize) -> (String, Option<&'static str>)) -> anyhow::Result<(Histogram<u64>, f64)> {
    use futures::stream::{self, StreamExt};
    let started = Instant::now();
    let results: Vec<anyhow::Result<u64>> = stream::iter(0..n)
        .map(|i| {
            let (url, key) = url(i);
            let http = http.clone();
            async move {
                let t = Instant::now();
                let mut request = http.get(&url);
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let reply = request.send().await?;
                let status = reply.status();
                let body = reply.bytes().await?;
                anyhow::ensure!(status.is_success(), "{url}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
                Ok(t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut histogram = Histogram::<u64>::new(3)?;
    for r in results {
        histogram.record(r?.max(1))?;
    }
    Ok((histogram, n as f64 / secs))
}

/// Where the server took a shopper page from (`x-meridian-page`).
async fn served_from(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let reply = http.get(url).send().await?;
    Ok(reply.headers().get("x-meridian-page").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned())
}

/// The query string of a phase's request `i`.
type QueryOf<'a> = Box<dyn Fn(usize) -> String + 'a>;

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub(super) fn run(args: ListingBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let tmp = match &args.dir {
            Some(dir) => tempfile::tempdir_in(dir)?,
            None => tempfile::tempdir()?,
        };
        let (_server, base) = start_server(&tmp.path().join("server"), &loose_limits()).await?;
        let key = bench_key(&base, &["read", "write"]).await?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

        // Bulk load: chunks within the body limit, published without waiting; then until
        // the index holds them all.
        eprintln!("loading {} SKUs over {} categories…", args.skus, args.categories);
        let loaded = Instant::now();
        let mut next = 0u64;
        while next < args.skus {
            let end = (next + args.chunk as u64).min(args.skus);
            let body: String = (next..end).map(|i| sku_line(i, args.categories)).collect::<Vec<_>>().join("\n");
            let reply = http.post(format!("{base}/v1/apps/bench/listing/catalog")).bearer_auth(BENCH_MASTER_KEY).header("content-type", "text/plain").body(body).send().await?;
            let status = reply.status();
            let job: Value = reply.json().await?;
            anyhow::ensure!(status.is_success() && job["rejected"].as_u64() == Some(0) && job["published"].as_u64() == Some(end - next), "load of {next}..{end}: {status} {job}");
            next = end;
            eprint!("\r  {next} / {} SKUs published", args.skus);
        }
        eprintln!();
        let deadline = Instant::now() + Duration::from_secs(3_600);
        loop {
            let categories: Value = http.get(format!("{base}/v1/apps/bench/listing/categories")).bearer_auth(&key).send().await?.json().await?;
            let held = categories["skus"].as_u64().unwrap_or(0);
            eprint!("\r  {held} / {} SKUs in the index ({:.0}/s)", args.skus, held as f64 / loaded.elapsed().as_secs_f64());
            if held == args.skus {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the index holds {held} of {} SKUs after an hour", args.skus);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let load_secs = loaded.elapsed().as_secs_f64();
        eprintln!();
        // Until the root's pending changes are merged (the server's `listing_merge_quiet`
        // task merges a category that stopped changing): the steady state shoppers meet.
        let settled = Instant::now();
        let categories = loop {
            let categories: Value = http.get(format!("{base}/v1/apps/bench/listing/categories")).bearer_auth(&key).send().await?.json().await?;
            let root_delta = categories["categories"].as_array().and_then(|all| all.iter().find(|c| c["id"] == 1)).and_then(|c| c["delta_entries"].as_u64()).unwrap_or(0);
            if root_delta == 0 {
                break categories;
            }
            anyhow::ensure!(settled.elapsed() < Duration::from_secs(600), "the root still holds {root_delta} pending changes after 10 min");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        eprintln!("root delta merged {:.1} s after the load", settled.elapsed().as_secs_f64());
        anyhow::ensure!(categories["skus"].as_u64() == Some(args.skus), "the catalog holds {} SKUs", categories["skus"]);
        let index_bytes = categories["index_bytes"].as_u64().unwrap_or(0);

        let api = |q: String| format!("{base}/v1/apps/bench/listing/categories/{q}");
        let leaf = |i: usize| 100 + mix(i as u64 + 7) % args.categories;
        let brand = |i: usize| 1 + skewed(mix(i as u64 + 11), 2_000);
        let n = args.requests;
        let c = args.concurrency;
        // The bench's key, for every request closure of the run.
        let key: &'static str = Box::leak(key.into_boxed_str());
        let k = Some(key);
        // Warm the connections and the first touches.
        phase(&http, 200, c, |i| (api(format!("1?sort=quality&page={}", 1 + i % 5)), k)).await?;

        println!("catalog: {} SKUs in {} leaf categories under one root; loaded over HTTP in {load_secs:.1} s ({:.0} SKUs/s); index {:.1} MiB ({:.0} B per SKU, root and leaf)", args.skus, args.categories, args.skus as f64 / load_secs, index_bytes as f64 / 1048576.0, index_bytes as f64 / args.skus as f64);
        println!();
        println!("| request ({c} in flight) | req/s | p50 ms | p99 ms | p99 / baseline p99 |");
        println!("|---|---|---|---|---|");
        let (h, rate) = phase(&http, n, c, |_| (format!("{base}/healthz"), None)).await?;
        let base_p99 = ms(&h, 0.99);
        let row = |name: &str, h: &Histogram<u64>, rate: f64| println!("| {name} | {rate:.0} | {:.2} | {:.2} | {:.1} |", ms(h, 0.5), ms(h, 0.99), ms(h, 0.99) / base_p99);
        row("GET /healthz (baseline: the HTTP round trip)", &h, rate);
        let root = format!("root category 1 ({} SKUs)", args.skus);
        let cases: Vec<(String, QueryOf<'_>)> = vec![
            (format!("{root}, page 1 by quality"), Box::new(|_| "1?sort=quality".to_owned())),
            (format!("{root}, one brand, price ascending"), Box::new(move |i| format!("1?brand={}&sort=price_asc", brand(i)))),
            (format!("{root}, colour + in stock, by sales"), Box::new(|i| format!("1?attr.color={}&in_stock=true&sort=sales", COLORS[i % 8]))),
            (format!("{root}, price range + 2 brands, newest"), Box::new(move |i| format!("1?brand={},{}&price_min=1000&price_max=50000&sort=newest", brand(i), brand(i + 1)))),
            (format!("{root}, page 50 (depth 1,000)"), Box::new(|_| "1?sort=quality&page=50".to_owned())),
            ("a leaf category, page 1 by quality".into(), Box::new(move |i| format!("{}?sort=quality", leaf(i)))),
            ("a leaf category, colour + size, price descending".into(), Box::new(move |i| format!("{}?attr.color={}&attr.size={}&sort=price_desc", leaf(i), COLORS[i % 8], SIZES[i % 5]))),
        ];
        for (name, query) in &cases {
            eprintln!("{name}…");
            let (h, rate) = phase(&http, n, c, |i| (api(query(i)), k)).await?;
            row(&format!("JSON: {name}"), &h, rate);
            let (h, rate) = phase(&http, n / 4, c, |i| (api(format!("{}&facets=true", query(i))), k)).await?;
            row(&format!("JSON + full facets: {name}"), &h, rate);
        }

        // Shopper pages: distinct pages (each rendered: a price range no other request has)
        // against the same few pages again (from the cache).
        eprintln!("shopper pages…");
        let shop = |q: String| (format!("{base}/shop/bench/categories/{q}"), None);
        let (h, rate) = phase(&http, n, c, |i| shop(format!("{}?price_min={}&sort=sales", leaf(i), 100 + i))).await?;
        row("shopper page, rendered (a new query each time)", &h, rate);
        let hot: Vec<String> = (0..20).map(|i| format!("{}?sort=sales&page=2", leaf(i))).collect();
        for url in &hot {
            served_from(&http, &format!("{base}/shop/bench/categories/{url}")).await?;
        }
        let from = served_from(&http, &format!("{base}/shop/bench/categories/{}", hot[0])).await?;
        anyhow::ensure!(from == "cached", "a repeated page was served as {from}");
        let (h, rate) = phase(&http, n, c, |i| shop(hot[i % hot.len()].clone())).await?;
        row("shopper page, from the page cache (20 pages again)", &h, rate);
        let (h, rate) = phase(&http, n, c, |i| shop(format!("{}", leaf(i)))).await?;
        row("shopper first page of a category (always cached)", &h, rate);

        // Changes: throughput through the change topic, then change → visible.
        eprintln!("{} product changes…", args.changes);
        let changed = Instant::now();
        let mut sent = 0u64;
        let mut last_job = String::new();
        while sent < args.changes {
            let batch: Vec<Value> = (sent..(sent + 1_000).min(args.changes))
                .map(|j| {
                    let sku = 1 + mix(j ^ 0xABCD) % args.skus;
                    match j % 3 {
                        0 => json!({"op": "price", "sku": sku, "price": 100 + mix(j) % 200_000}),
                        1 => json!({"op": "stock", "sku": sku, "stock": mix(j) % 50}),
                        _ => json!({"op": "quality", "sku": sku, "score": (mix(j) % 10_000) as f32 / 100.0}),
                    }
                })
                .collect();
            let reply = http.post(format!("{base}/v1/apps/bench/listing/changes")).bearer_auth(BENCH_MASTER_KEY).json(&batch).send().await?;
            anyhow::ensure!(reply.status().is_success(), "changes: {} {}", reply.status(), reply.text().await?);
            let job: Value = reply.json().await?;
            last_job = job["id"].as_str().unwrap_or_default().to_owned();
            sent += batch.len() as u64;
        }
        let published_rate = args.changes as f64 / changed.elapsed().as_secs_f64();
        // Applied: the last batch's job is done (the topic is applied in order).
        loop {
            let job: Value = http.get(format!("{base}/v1/apps/bench/listing/jobs/{last_job}")).bearer_auth(key).send().await?.json().await?;
            if job["state"] == "done" {
                break;
            }
            anyhow::ensure!(job["state"] != "failed", "the change job failed: {job}");
            anyhow::ensure!(changed.elapsed() < Duration::from_secs(1_800), "changes not applied after 30 min");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let change_rate = args.changes as f64 / changed.elapsed().as_secs_f64();
        // A price change, then the first page that shows it: each round's price is below
        // every price so far (catalog prices start at 100; round r sets 99 - r), so the
        // SKU is first of its leaf by price once the change is visible.
        let mut visible = Histogram::<u64>::new(3)?;
        let mut not_visible = 0;
        'rounds: for round in 0..50u64 {
            let sku = 1 + mix(round ^ 0x5EED) % args.skus;
            let line: Value = serde_json::from_str(&sku_line(sku - 1, args.categories))?;
            let category = line["category_path"][1].as_u64().unwrap_or(1);
            let t = Instant::now();
            let reply = http.post(format!("{base}/v1/apps/bench/listing/changes")).bearer_auth(BENCH_MASTER_KEY).json(&json!([{"op": "price", "sku": sku, "price": 99 - round}, {"op": "shelf", "sku": sku, "on_shelf": true}])).send().await?;
            anyhow::ensure!(reply.status().is_success(), "change: {}", reply.status());
            let job: Value = reply.json().await?;
            loop {
                let page: Value = http.get(api(format!("{category}?sort=price_asc&size=1"))).bearer_auth(key).send().await?.json().await?;
                if page["items"][0]["sku"].as_u64() == Some(sku) && page["items"][0]["price"].as_u64() == Some(99 - round) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    let job: Value = http.get(format!("{base}/v1/apps/bench/listing/jobs/{}", job["id"].as_str().unwrap_or_default())).bearer_auth(key).send().await?.json().await?;
                    let item: Value = http.get(format!("{base}/v1/apps/bench/listing/skus/{sku}")).bearer_auth(key).send().await?.json().await?;
                    eprintln!("price change of SKU {sku} (category {category}) not visible after 10 s: first item {}; job {job}; the SKU {item}", page["items"][0]);
                    not_visible += 1;
                    continue 'rounds;
                }
            }
            visible.record(t.elapsed().as_micros() as u64)?;
        }

        println!();
        println!("product changes through the change topic: published {published_rate:.0}/s, applied {change_rate:.0} changes/s (batches of 1,000, until the last is applied)");
        println!("price change → visible in the next query: p50 {:.1} ms, p99 {:.1} ms ({} of 50 changes; {not_visible} not visible within 10 s)", ms(&visible, 0.5), ms(&visible, 0.99), visible.len());
        Ok(())
    })
}
