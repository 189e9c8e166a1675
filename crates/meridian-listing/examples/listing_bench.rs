//! Benchmark of the listing engine: a synthetic 10,000,000-SKU category and a 1,000-category
//! catalog (Zipf brands and shops), typical filter+sort pages (first and deep, with and
//! without facets), updates, queries while updating, build time, memory per SKU, and the
//! same queries on SQLite (in-memory, indexed) as a ratio.
//!
//! `cargo run --release -p meridian-listing --example listing_bench -- [--big N]
//! [--catalog N] [--categories N] [--queries N] [--updates N] [--sqlite-rows N]
//! [--sqlite-queries N] [--update-rate N] [--seed N]`

use meridian_listing::{Change, Filters, ItemMetrics, ListingConfig, ListingEngine, ListingItem, ListingPage, Paging, Query, SortKey};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;
use rusqlite::{params_from_iter, Connection};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COLORS: [&str; 8] = ["black", "white", "silver", "blue", "red", "green", "gold", "pink"];
const SIZES: [&str; 6] = ["XS", "S", "M", "L", "XL", "XXL"];
const MATERIALS: [&str; 5] = ["cotton", "wool", "steel", "plastic", "leather"];

#[derive(Debug, Clone)]
struct Args {
    big: u64,
    catalog: u64,
    categories: u32,
    queries: usize,
    updates: u64,
    sqlite_rows: u64,
    sqlite_queries: usize,
    update_rate: u64,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args { big: 10_000_000, catalog: 2_000_000, categories: 1000, queries: 60, updates: 500_000, sqlite_rows: 300_000, sqlite_queries: 3, update_rate: 20_000, seed: 7 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.replace('_', "").parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!("usage: listing_bench [--big N] [--catalog N] [--categories N] [--queries N] [--updates N] [--sqlite-rows N] [--sqlite-queries N] [--update-rate N] [--seed N]");
            std::process::exit(2);
        };
        match argv[i].as_str() {
            "--big" => a.big = v,
            "--catalog" => a.catalog = v,
            "--categories" => a.categories = v as u32,
            "--queries" => a.queries = v as usize,
            "--updates" => a.updates = v,
            "--sqlite-rows" => a.sqlite_rows = v,
            "--sqlite-queries" => a.sqlite_queries = v as usize,
            "--seed" => a.seed = v,
            "--update-rate" => a.update_rate = v,
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// Generates SKUs: SPUs of 1–4 SKUs, Zipf brands and shops, log-normal prices.
struct Generator {
    rng: Pcg64Mcg,
    brands: Zipf<f64>,
    shops: Zipf<f64>,
    colors: Zipf<f64>,
    price: LogNormal<f64>,
    sales: Zipf<f64>,
    next_sku: u64,
    next_spu: u64,
    left_in_spu: u32,
    spu_brand: u32,
    spu_shop: u32,
    spu_price: f64,
    spu_launch: i64,
    spu_material: usize,
}

impl Generator {
    fn new(seed: u64, n_brands: u64, n_shops: u64) -> Generator {
        Generator {
            rng: Pcg64Mcg::seed_from_u64(seed),
            brands: Zipf::new(n_brands, 1.0).unwrap(),
            shops: Zipf::new(n_shops, 1.0).unwrap(),
            colors: Zipf::new(COLORS.len() as u64, 0.8).unwrap(),
            price: LogNormal::new(8.5, 1.0).unwrap(),
            sales: Zipf::new(100_000, 1.1).unwrap(),
            next_sku: 100_000_000,
            next_spu: 1,
            left_in_spu: 0,
            spu_brand: 1,
            spu_shop: 1,
            spu_price: 1000.0,
            spu_launch: 0,
            spu_material: 0,
        }
    }

    fn item(&mut self, path: Vec<u32>) -> ListingItem {
        if self.left_in_spu == 0 {
            self.left_in_spu = self.rng.gen_range(1..=4);
            self.next_spu += 1;
            self.spu_brand = self.brands.sample(&mut self.rng) as u32;
            self.spu_shop = self.shops.sample(&mut self.rng) as u32;
            self.spu_price = self.price.sample(&mut self.rng);
            self.spu_launch = 1_700_000_000_000 - self.rng.gen_range(0..730) * 86_400_000;
            self.spu_material = self.rng.gen_range(0..MATERIALS.len());
        }
        self.left_in_spu -= 1;
        self.next_sku += 1;
        let r = &mut self.rng;
        let color = COLORS[self.colors.sample(r) as usize - 1];
        let size = SIZES[r.gen_range(0..SIZES.len())];
        let mut attributes = BTreeMap::new();
        attributes.insert("color".to_owned(), vec![color.to_owned()]);
        attributes.insert("size".to_owned(), vec![size.to_owned()]);
        attributes.insert("material".to_owned(), vec![MATERIALS[self.spu_material].to_owned()]);
        let sales = self.sales.sample(r) as u64 - 1;
        ListingItem {
            sku: self.next_sku,
            spu: self.next_spu,
            category_path: path,
            brand: self.spu_brand,
            shop: self.spu_shop,
            price: (self.spu_price * r.gen_range(0.9..1.3)) as u64 + 1,
            stock: if r.gen_bool(0.05) { 0 } else { r.gen_range(1..500) },
            on_shelf: r.gen_bool(0.97),
            attributes,
            launch_time: self.spu_launch,
            metrics: ItemMetrics { sales, reviews: sales / 3 + r.gen_range(0..5), views: sales * 40, conversion: 0.0, returns: sales / 50 },
            quality: (sales as f32).ln_1p() * 10.0 + r.gen_range(0.0..10.0),
        }
    }
}

/// A query shape of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Brand,
    ColorInStock,
    PriceBrands,
    TailBrand,
    DeepPlain,
    DeepColor,
    Cursor,
}

const SHAPES: [Shape; 8] = [Shape::Plain, Shape::Brand, Shape::ColorInStock, Shape::PriceBrands, Shape::TailBrand, Shape::DeepPlain, Shape::DeepColor, Shape::Cursor];

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Plain => "p1  no filter, quality",
            Shape::Brand => "p1  brand, price_asc",
            Shape::ColorInStock => "p1  color+in_stock, sales",
            Shape::PriceBrands => "p1  price range+2 brands, newest",
            Shape::TailBrand => "p1  tail brand, quality",
            Shape::DeepPlain => "p200 no filter, quality",
            Shape::DeepColor => "p400 color+in_stock, sales",
            Shape::Cursor => "cursor at depth 8000, color",
        }
    }

    fn query(self, rng: &mut Pcg64Mcg, category: u32, facets: bool) -> Query {
        let mut f = Filters::default();
        let (sort, page) = match self {
            Shape::Plain => (SortKey::Quality, 1),
            Shape::Brand => {
                f.brands = vec![rng.gen_range(1..=10)];
                (SortKey::PriceAsc, 1)
            }
            Shape::ColorInStock | Shape::DeepColor | Shape::Cursor => {
                f.attributes.insert("color".into(), vec![COLORS[rng.gen_range(0..4)].into()]);
                f.in_stock = true;
                (SortKey::Sales, if matches!(self, Shape::DeepColor | Shape::Cursor) { 400 } else { 1 })
            }
            Shape::PriceBrands => {
                let lo = rng.gen_range(2_000..8_000);
                f.price_min = Some(lo);
                f.price_max = Some(lo * 3);
                f.brands = vec![rng.gen_range(1..=20), rng.gen_range(1..=20)];
                (SortKey::Newest, 1)
            }
            Shape::TailBrand => {
                f.brands = vec![rng.gen_range(200..2000)];
                (SortKey::Quality, 1)
            }
            Shape::DeepPlain => (SortKey::Quality, 200),
        };
        Query { category, filters: f, sort, paging: Paging::Page { page, size: 20 }, facets }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs one query; for `Cursor`, asks page 399 first and times the cursor page after it.
fn run(engine: &ListingEngine, shape: Shape, q: &Query) -> (Duration, ListingPage) {
    if shape == Shape::Cursor {
        let before = engine.query(&Query { paging: Paging::Page { page: 399, size: 20 }, ..q.clone() });
        let Some(cursor) = before.ok().and_then(|p| p.next_cursor) else {
            // A category too small for depth 8000: time its first page instead.
            let first = Query { paging: Paging::Page { page: 1, size: 20 }, ..q.clone() };
            let t = Instant::now();
            let page = engine.query(&first).unwrap();
            return (t.elapsed(), page);
        };
        let cq = Query { paging: Paging::Cursor { cursor, size: 20 }, ..q.clone() };
        let t = Instant::now();
        let page = engine.query(&cq).unwrap();
        return (t.elapsed(), page);
    }
    let t = Instant::now();
    let page = engine.query(q).unwrap_or_else(|_| engine.query(&Query { paging: Paging::Page { page: 1, size: 20 }, ..q.clone() }).unwrap());
    (t.elapsed(), page)
}

fn bench_queries(title: &str, engine: &ListingEngine, categories: &dyn Fn(&mut Pcg64Mcg) -> u32, n: usize, seed: u64) {
    println!("\n{title}: {n} queries per line, one thread (ms)");
    println!("  {:<34} {:>8} {:>8} {:>8} {:>9} | {:>8} {:>8} {:>9} | {:>9}", "query", "p50", "p99", "max", "q/s", "p50 fac", "p99 fac", "q/s fac", "walked");
    for shape in SHAPES {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut plain = Vec::with_capacity(n);
        let mut with_facets = Vec::with_capacity(n);
        let mut walked = 0u64;
        for _ in 0..n {
            let c = categories(&mut rng);
            let q = shape.query(&mut rng, c, false);
            let (d, page) = run(engine, shape, &q);
            walked += page.stats.walked;
            plain.push(d);
            let (d, _) = run(engine, shape, &Query { facets: true, ..q });
            with_facets.push(d);
        }
        plain.sort();
        with_facets.sort();
        let qps = |v: &[Duration]| v.len() as f64 / v.iter().sum::<Duration>().as_secs_f64().max(1e-9);
        println!(
            "  {:<34} {:>8.3} {:>8.3} {:>8.3} {:>9.0} | {:>8.3} {:>8.3} {:>9.0} | {:>9}",
            shape.name(),
            ms(percentile(&plain, 0.5)),
            ms(percentile(&plain, 0.99)),
            ms(*plain.last().unwrap()),
            qps(&plain),
            ms(percentile(&with_facets, 0.5)),
            ms(percentile(&with_facets, 0.99)),
            qps(&with_facets),
            walked / n as u64
        );
    }
}

fn build(title: &str, items: impl Iterator<Item = ListingItem>, n: u64) -> (ListingEngine, Duration) {
    let engine = ListingEngine::new(ListingConfig::default()).unwrap();
    let rss0 = rss_bytes();
    let t = Instant::now();
    let mut last_print = Instant::now();
    let report = engine
        .load(items, &mut |p| {
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!("  {title}: {:?} {}/{}", p.phase, p.done, p.total);
                last_print = Instant::now();
            }
        })
        .unwrap();
    let took = t.elapsed();
    let rss1 = rss_bytes();
    let stats = engine.stats();
    println!("\n{title}: {} SKUs, {} categories, {} category docs", report.items, stats.categories, stats.base_docs);
    println!("  build: {:.1} s ({:.0} SKUs/s)", took.as_secs_f64(), n as f64 / took.as_secs_f64());
    println!(
        "  memory: RSS +{:.0} MiB = {:.0} B/SKU measured; computed: index {:.0} B/SKU ({:.0} B per category doc) + directory {:.0} B/SKU",
        (rss1.saturating_sub(rss0)) as f64 / 1048576.0,
        rss1.saturating_sub(rss0) as f64 / n as f64,
        stats.index_bytes as f64 / n as f64,
        stats.index_bytes as f64 / stats.base_docs.max(1) as f64,
        stats.directory_bytes as f64 / n as f64
    );
    if let Some(c) = engine.categories().iter().max_by_key(|c| c.base_docs) {
        let d = c.base_docs.max(1) as f64;
        println!(
            "  largest category {}: {} docs, {} SPUs; per doc: columns {:.1} B, orders {:.1} B, postings+bitsets {:.1} B",
            c.id,
            c.base_docs,
            c.base_spus,
            c.column_bytes as f64 / d,
            c.order_bytes as f64 / d,
            c.posting_bytes as f64 / d
        );
    }
    (engine, took)
}

fn bench_updates(engine: &Arc<ListingEngine>, skus: (u64, u64), n: u64, category: u32, seed: u64, rate: u64) {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let change = |rng: &mut Pcg64Mcg| {
        let sku = rng.gen_range(skus.0..skus.1);
        if rng.gen_bool(0.5) {
            Change::Price { sku, price: rng.gen_range(100..100_000) }
        } else {
            Change::Stock { sku, stock: rng.gen_range(0..50) }
        }
    };
    let t = Instant::now();
    for _ in 0..n {
        engine.apply(change(&mut rng)).unwrap();
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let batch: Vec<Change> = (0..1000).map(|_| change(&mut rng)).collect();
    let t = Instant::now();
    let rounds = (n / 1000).max(1);
    for _ in 0..rounds {
        engine.apply_batch(&batch);
    }
    let batched = (rounds * 1000) as f64 / t.elapsed().as_secs_f64();
    println!("\nupdates (price/stock, one thread, background merges): {single:.0} changes/s one at a time, {batched:.0} changes/s in batches of 1000");
    println!("  merges so far: {}, delta entries now: {}", engine.stats().merges, engine.stats().delta_entries);
    let t = Instant::now();
    engine.merge_now(Some(category));
    println!("  one merge of the delta into a new base: {:.2} s", t.elapsed().as_secs_f64());
    for rate in [rate, 0] {
        queries_while_updating(engine, skus, category, seed, rate);
    }
}

/// Queries while a writer applies `rate` price changes per second (0: as fast as it can).
fn queries_while_updating(engine: &Arc<ListingEngine>, skus: (u64, u64), category: u32, seed: u64, rate: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicU64::new(0));
    let writer = {
        let (engine, stop, applied) = (engine.clone(), stop.clone(), applied.clone());
        std::thread::spawn(move || {
            let mut rng = Pcg64Mcg::seed_from_u64(seed + 1);
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if rate > 0 && applied.load(Ordering::Relaxed) as f64 > start.elapsed().as_secs_f64() * rate as f64 {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let batch: Vec<Change> = (0..100)
                    .map(|_| {
                        let sku = rng.gen_range(skus.0..skus.1);
                        Change::Price { sku, price: rng.gen_range(100..100_000) }
                    })
                    .collect();
                engine.apply_batch(&batch);
                applied.fetch_add(100, Ordering::Relaxed);
            }
        })
    };
    let mut rng = Pcg64Mcg::seed_from_u64(seed + 2);
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut lat_f = Vec::new();
    while t.elapsed() < Duration::from_secs(6) {
        let shape = [Shape::Brand, Shape::ColorInStock, Shape::PriceBrands][lat.len() % 3];
        let q = shape.query(&mut rng, category, false);
        lat.push(run(engine, shape, &q).0);
        lat_f.push(run(engine, shape, &Query { facets: true, ..q }).0);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    lat_f.sort();
    let stats = engine.stats();
    println!(
        "  while updating ({} {:.0} changes/s applied meanwhile; delta {} entries at the end, {} merges): p50 {:.3} ms, p99 {:.3} ms; with facets p50 {:.3} ms, p99 {:.3} ms ({} queries)",
        if rate > 0 { "target rate:" } else { "full speed:" },
        applied.load(Ordering::Relaxed) as f64 / secs,
        stats.delta_entries,
        stats.merges,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat_f, 0.5)),
        ms(percentile(&lat_f, 0.99)),
        lat.len() * 2
    );
}

/// The same data in SQLite: one table, indexes on the filter columns.
fn sqlite_load(items: &[ListingItem]) -> (Connection, Duration) {
    let t = Instant::now();
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
         CREATE TABLE skus (sku INTEGER PRIMARY KEY, spu INTEGER, brand INTEGER, shop INTEGER, price INTEGER, stock INTEGER, on_shelf INTEGER,
                            color TEXT, size TEXT, material TEXT, launch INTEGER, sales INTEGER, reviews INTEGER, quality REAL);",
    )
    .unwrap();
    {
        let tx = db.unchecked_transaction().unwrap();
        {
            let mut stmt = tx.prepare("INSERT INTO skus VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)").unwrap();
            for i in items {
                let a = |k: &str| i.attributes.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
                stmt.execute(rusqlite::params![
                    i.sku as i64,
                    i.spu as i64,
                    i.brand,
                    i.shop,
                    i.price as i64,
                    i.stock,
                    i.on_shelf,
                    a("color"),
                    a("size"),
                    a("material"),
                    i.launch_time,
                    i.metrics.sales as i64,
                    i.metrics.reviews as i64,
                    f64::from(i.quality)
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    db.execute_batch(
        "CREATE INDEX i_brand ON skus(brand); CREATE INDEX i_shop ON skus(shop); CREATE INDEX i_price ON skus(price);
         CREATE INDEX i_color ON skus(color); CREATE INDEX i_stock ON skus(stock); CREATE INDEX i_spu ON skus(spu); ANALYZE;",
    )
    .unwrap();
    (db, t.elapsed())
}

/// `WHERE` clause and parameters of a query (facet key `skip` left out).
fn sql_where(q: &Query, skip: Option<&str>) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let f = &q.filters;
    let mut w = vec!["on_shelf = 1".to_owned()];
    let mut p: Vec<Value> = Vec::new();
    if !f.brands.is_empty() && skip != Some("brand") {
        w.push(format!("brand IN ({})", vec!["?"; f.brands.len()].join(",")));
        p.extend(f.brands.iter().map(|&b| Value::Integer(i64::from(b))));
    }
    if skip != Some("price") {
        if let Some(min) = f.price_min {
            w.push("price >= ?".into());
            p.push(Value::Integer(min as i64));
        }
        if let Some(max) = f.price_max {
            w.push("price <= ?".into());
            p.push(Value::Integer(max as i64));
        }
    }
    if f.in_stock {
        w.push("stock > 0".into());
    }
    for (k, vs) in &f.attributes {
        if skip != Some(k.as_str()) {
            w.push(format!("{k} IN ({})", vec!["?"; vs.len()].join(",")));
            p.extend(vs.iter().map(|v| Value::Text(v.clone())));
        }
    }
    (w.join(" AND "), p)
}

fn sql_order(sort: SortKey) -> &'static str {
    match sort {
        SortKey::Quality => "quality DESC",
        SortKey::Sales => "sales DESC",
        SortKey::PriceAsc => "price ASC",
        SortKey::PriceDesc => "price DESC",
        SortKey::Newest => "launch DESC",
        SortKey::Reviews => "reviews DESC",
    }
}

/// The page (best SKU per SPU, in sort order), the exact SPU total, and facet counts.
fn sqlite_query(db: &Connection, q: &Query, offset: u64) -> (Vec<u64>, u64) {
    let (w, p) = sql_where(q, None);
    let order = sql_order(q.sort);
    let sql = format!(
        "SELECT sku FROM (SELECT sku, spu, {cols}, ROW_NUMBER() OVER (PARTITION BY spu ORDER BY {order}, sku) AS rn FROM skus WHERE {w})
         WHERE rn = 1 ORDER BY {order}, spu, sku LIMIT 20 OFFSET {offset}",
        cols = "quality, sales, price, launch, reviews"
    );
    let mut stmt = db.prepare_cached(&sql).unwrap();
    let skus: Vec<u64> = stmt.query_map(params_from_iter(p.iter()), |r| r.get::<_, i64>(0)).unwrap().map(|r| r.unwrap() as u64).collect();
    let total: i64 = db.query_row(&format!("SELECT COUNT(DISTINCT spu) FROM skus WHERE {w}"), params_from_iter(p.iter()), |r| r.get(0)).unwrap();
    if q.facets {
        for (key, expr) in [("brand", "brand"), ("color", "color"), ("size", "size"), ("material", "material"), ("price", "CAST(price / 10000 AS INTEGER)")] {
            let (w, p) = sql_where(q, Some(key));
            let mut stmt = db.prepare_cached(&format!("SELECT {expr}, COUNT(DISTINCT spu) FROM skus WHERE {w} GROUP BY 1")).unwrap();
            let n = stmt.query_map(params_from_iter(p.iter()), |_| Ok(())).unwrap().count();
            std::hint::black_box(n);
        }
    }
    (skus, total as u64)
}

fn bench_sqlite(args: &Args) {
    let n = args.sqlite_rows;
    println!("\nSQLite comparison on {n} SKUs in one category (same rows in both engines; smaller than 10M because SQLite loads ~10x slower and each of its queries scans the matches)");
    let mut gen = Generator::new(args.seed + 100, 2000, 20_000);
    let items: Vec<ListingItem> = (0..n).map(|_| gen.item(vec![1])).collect();
    let (engine, took) = build("listing engine, comparison set", items.clone().into_iter(), n);
    let (db, sql_took) = sqlite_load(&items);
    println!("  SQLite load + indexes: {:.1} s (listing build {:.1} s)", sql_took.as_secs_f64(), took.as_secs_f64());
    drop(items);
    println!("  {:<34} {:>11} {:>11} {:>8} | {:>11} {:>11} {:>8} | same page", "query", "listing ms", "sqlite ms", "ratio", "list. fac", "sql fac", "ratio");
    for shape in SHAPES {
        let mut rng = Pcg64Mcg::seed_from_u64(args.seed + 5);
        let (mut lt, mut st, mut ltf, mut stf) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut same = true;
        for _ in 0..args.sqlite_queries {
            let mut q = shape.query(&mut rng, 1, false);
            if shape == Shape::Cursor {
                q.paging = Paging::Page { page: 400, size: 20 };
            }
            let offset = match q.paging {
                Paging::Page { page, size } => u64::from(page - 1) * u64::from(size),
                Paging::Cursor { .. } => 0,
            };
            let (d, page) = run(&engine, shape, &q);
            lt += d;
            let t = Instant::now();
            let (skus, total) = sqlite_query(&db, &q, offset);
            st += t.elapsed();
            if shape != Shape::Cursor {
                same &= page.items.iter().map(|i| i.sku).collect::<Vec<_>>() == skus && page.total == total;
            }
            let qf = Query { facets: true, ..q };
            ltf += run(&engine, shape, &qf).0;
            let t = Instant::now();
            sqlite_query(&db, &qf, offset);
            stf += t.elapsed();
        }
        let k = args.sqlite_queries.max(1) as f64;
        println!(
            "  {:<34} {:>11.3} {:>11.3} {:>7.0}x | {:>11.3} {:>11.3} {:>7.0}x | {}",
            shape.name(),
            ms(lt) / k,
            ms(st) / k,
            st.as_secs_f64() / lt.as_secs_f64().max(1e-9),
            ms(ltf) / k,
            ms(stf) / k,
            stf.as_secs_f64() / ltf.as_secs_f64().max(1e-9),
            if shape == Shape::Cursor { "n/a (cursor)" } else if same { "yes" } else { "NO" }
        );
    }
}

fn main() {
    let args = parse_args();
    println!("listing_bench {args:?}");
    println!("machine: {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));

    // 1. One category of `big` SKUs.
    {
        let mut gen = Generator::new(args.seed, 2000, 20_000);
        let n = args.big;
        let (engine, _) = build("big category", (0..n).map(move |_| gen.item(vec![1])), n);
        bench_queries("big category", &engine, &|_| 1, args.queries, args.seed);
        let engine = Arc::new(engine);
        bench_updates(&engine, (100_000_001, 100_000_001 + n), args.updates, 1, args.seed, args.update_rate);
    }

    // 2. A catalog of `categories` categories: 10 top, 90 mid, 900 leaves (for 1000), Zipf leaf sizes.
    {
        let n_top = 10u32.min(args.categories.max(1));
        let n_mid = ((args.categories as f64 * 0.09) as u32).max(n_top);
        let n_leaf = args.categories.saturating_sub(n_top + n_mid).max(1);
        let leaf_zipf = Zipf::new(u64::from(n_leaf), 0.8).unwrap();
        let path_of = move |leaf: u32| -> Vec<u32> {
            let mid = leaf % n_mid;
            let top = mid % n_top;
            vec![1 + top, 1 + n_top + mid, 1 + n_top + n_mid + leaf]
        };
        let mut gen = Generator::new(args.seed + 1, 2000, 20_000);
        let mut rng = Pcg64Mcg::seed_from_u64(args.seed + 2);
        let n = args.catalog;
        let items = (0..n).map(move |_| {
            let leaf = leaf_zipf.sample(&mut rng) as u32 - 1;
            gen.item(path_of(leaf))
        });
        let (engine, _) = build("1000-category catalog", items, n);
        let total = n_top + n_mid + n_leaf;
        let pick = move |rng: &mut Pcg64Mcg| -> u32 {
            // Shoppers browse leaves mostly, mid levels sometimes, tops rarely.
            match rng.gen_range(0..10) {
                0 => 1 + rng.gen_range(0..n_top),
                1..=2 => 1 + n_top + rng.gen_range(0..n_mid),
                _ => 1 + n_top + n_mid + (leaf_zipf.sample(rng) as u32 - 1).min(n_leaf - 1),
            }
        };
        println!("  tree: {n_top} top, {n_mid} mid, {n_leaf} leaf categories ({total} in all)");
        bench_queries("1000-category catalog (random categories: 70% leaves, 20% mid, 10% top)", &engine, &pick, args.queries, args.seed);
    }

    // 3. The same queries on SQLite.
    bench_sqlite(&args);
}
