//! History benchmark: hot-tier update throughput (embedded vs Redis Lua vs Redis naive),
//! hot-tier get latency, full processor throughput, bytes per stored entry in each tier
//! (cold tier on redb and on fjall), and small-batch commit throughput (redb vs fjall), over a Zipf-skewed stream (owners Zipf 0.75 like the demo world's users, SKUs
//! Zipf 1.0 over 50k SKUs).
//!
//! `cargo run --release -p meridian-history-redis --example history_bench [-- --small]`
//! (`--owners N --events M` override; `--processor-events N` runs the live processor over
//! the first N views, `--processor-backends redb,fjall` picks the stores it runs on;
//! Redis at 127.0.0.1:6379 or MERIDIAN_REDIS_URL).

use bytes::Bytes;
use meridian_event::{Action, AppId, Event, EventId, Target, TargetType, Timestamp, UserId};
use meridian_history::hot::embedded::EmbeddedHotTier;
use meridian_history::hot::{HotConfig, HotTier, OwnerUpdate};
use meridian_history::model::{normalize_ms, Clock, Entry, Owner, OwnerKey, SystemClock};
use meridian_history::cold::COLD_TABLE;
use meridian_history::{ColdTier, HistoryConfig, HistoryService, InMemoryCatalog};
use meridian_history_redis::RedisHotTier;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, TopicName};
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{FjallStore, KvStore, RedbStore, WriteBatch};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: &str = "demo";
const SKUS: u64 = 50_000;
const FIRST_SKU: u64 = 100_000_001;
const BATCH: usize = 1000;

fn arg_text(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn arg(name: &str) -> Option<u64> {
    arg_text(name).and_then(|v| v.parse().ok())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok())).map_or(0, |pages| pages * 4096)
}

/// A file's length and the bytes the file system allocated for it (redb grows its file
/// by doubling with `set_len`, so the length runs ahead of what was written).
fn file_bytes(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.blocks() * 512)
}

/// A folder's bytes: (sum of file lengths, bytes allocated for them, bytes allocated for
/// journal files `*.jnl`).
fn dir_bytes(path: &std::path::Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut allocated, mut journal) = (0, 0, 0);
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let m = entry.metadata().unwrap();
        if m.is_dir() {
            let (l, a, j) = dir_bytes(&entry.path());
            (len, allocated, journal) = (len + l, allocated + a, journal + j);
        } else {
            len += m.len();
            allocated += m.blocks() * 512;
            if entry.path().extension().is_some_and(|e| e == "jnl") {
                journal += m.blocks() * 512;
            }
        }
    }
    (len, allocated, journal)
}

/// Commits `batches` batches of `puts` puts of 70-byte values (keys: random owners'
/// cold keys), each batch one durable commit; returns batches per second.
fn commit_rate(store: &dyn KvStore, keys: &[OwnerKey], batches: usize, puts: usize, seed: u64) -> f64 {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let t = Instant::now();
    for _ in 0..batches {
        let mut batch = WriteBatch::new();
        for _ in 0..puts {
            let owner = keys[rng.gen_range(0..keys.len())];
            let value: Vec<u8> = (0..70).map(|_| rng.gen()).collect();
            batch.put(COLD_TABLE, ColdTier::key(owner).to_vec(), value);
        }
        store.commit(batch).unwrap();
    }
    batches as f64 / t.elapsed().as_secs_f64()
}

fn owner_key(n: u32) -> OwnerKey {
    Owner::user(APP, format!("u{n}")).key()
}

/// Coalesces a slice of events into one update per owner (as the processor does).
fn updates(events: &[(u32, u64, i64)], keys: &[OwnerKey]) -> Vec<OwnerUpdate> {
    let mut by: HashMap<u32, Vec<Entry>> = HashMap::new();
    for (o, sku, t) in events {
        by.entry(*o).or_default().push(Entry::new(*sku, *t));
    }
    by.into_iter().map(|(o, entries)| OwnerUpdate::views(keys[o as usize], entries)).collect()
}

fn pct(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    let small = std::env::args().any(|a| a == "--small");
    let owners = arg("--owners").unwrap_or(if small { 100_000 } else { 1_000_000 }) as u32;
    let events = arg("--events").unwrap_or(if small { 2_000_000 } else { 20_000_000 }) as usize;
    let redis_events = if small { 50_000 } else { 200_000 };
    let naive_events = if small { 10_000 } else { 30_000 };
    let processor_events = arg("--processor-events").unwrap_or(if small { 50_000 } else { 200_000 }) as usize;
    let url = std::env::var("MERIDIAN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let now = normalize_ms(SystemClock.now_ms());
    println!("history bench: {owners} owners (Zipf 0.75), {events} views of {SKUS} SKUs (Zipf 1.0), N = 200");

    // The stream, times increasing over the last 3 days.
    let started = Instant::now();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(42);
    let owner_zipf = Zipf::new(u64::from(owners), 0.75).unwrap();
    let sku_zipf = Zipf::new(SKUS, 1.0).unwrap();
    // Ranks are shuffled onto ids so popular users are not u1, u2…
    let perm: Vec<u32> = {
        let mut p: Vec<u32> = (0..owners).collect();
        for i in (1..p.len()).rev() {
            p.swap(i, rng.gen_range(0..=i));
        }
        p
    };
    let span = 3 * 86_400_000i64;
    let stream: Vec<(u32, u64, i64)> = (0..events)
        .map(|i| {
            let o = perm[owner_zipf.sample(&mut rng) as usize - 1];
            let sku = FIRST_SKU + sku_zipf.sample(&mut rng) as u64 - 1;
            (o, sku, now - span + (i as i64 * span) / events as i64)
        })
        .collect();
    let keys: Vec<OwnerKey> = (0..owners).map(owner_key).collect();
    println!("generated in {:.1}s", started.elapsed().as_secs_f64());

    // 1. Embedded hot tier.
    let config = HotConfig::default();
    let batches: Vec<Vec<OwnerUpdate>> = stream.chunks(BATCH).map(|c| updates(c, &keys)).collect();
    let rss_before = rss_bytes();
    let embedded = EmbeddedHotTier::new(config, 4 << 30);
    let t = Instant::now();
    for b in &batches {
        embedded.record(b, now).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let embedded_rate = events as f64 / secs;
    let stats = embedded.stats();
    let rss_delta = rss_bytes().saturating_sub(rss_before);
    drop(batches);
    println!("embedded hot tier: {events} updates in {secs:.2}s = {embedded_rate:.0} updates/s");
    println!(
        "embedded hot tier: {} owners ({} with wide SKUs), {} entries ({:.1}/owner); heap {:.1} MB = {:.2} bytes/entry (accounted {:.2}); RSS delta {:.1} MB = {:.2} bytes/entry (incl. allocator slack)",
        stats.owners,
        stats.wide_owners,
        stats.entries,
        stats.entries as f64 / stats.owners as f64,
        stats.heap_bytes as f64 / 1e6,
        stats.heap_bytes as f64 / stats.entries as f64,
        embedded.accounted_bytes() as f64 / stats.entries as f64,
        rss_delta as f64 / 1e6,
        rss_delta as f64 / stats.entries as f64,
    );
    let mut lat = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let o = perm[owner_zipf.sample(&mut rng) as usize - 1];
        let t = Instant::now();
        let got = embedded.get(keys[o as usize], now).unwrap();
        lat.push(t.elapsed());
        std::hint::black_box(got);
    }
    let (p50, p99) = pct(lat);
    println!("embedded hot tier get: p50 {:.2} µs, p99 {:.2} µs", p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);

    // 2. Cold tier bytes/entry: bulk load of the embedded contents into redb.
    let dir = tempfile::tempdir().unwrap();
    let cold_path = dir.path().join("cold.redb");
    let mut entries = 0u64;
    let mut value_bytes = 0u64;
    let t = Instant::now();
    let mut rows: Vec<(OwnerKey, Vec<u8>)> = Vec::new();
    embedded.for_each(now, |o, list| {
        entries += list.len() as u64;
        let v = ColdTier::encode(&list);
        value_bytes += v.len() as u64;
        rows.push((o, v));
    });
    let load_secs = t.elapsed().as_secs_f64();
    {
        let store = RedbStore::open(&cold_path).unwrap();
        // One key per owner (the 2-byte spreading prefix leads the 16-byte owner key),
        // written in one commit in hash order, as the processor's rounds spread them.
        let t = Instant::now();
        let mut batch = WriteBatch::new();
        for (o, v) in &rows {
            batch.put(COLD_TABLE, ColdTier::key(*o).to_vec(), v.clone());
        }
        store.commit(batch).unwrap();
        let (file, allocated) = file_bytes(&cold_path);
        println!(
            "cold tier (redb, one key per owner): {entries} entries loaded in {:.1}s; file {:.1} MB = {:.2} bytes/entry, allocated on disk {:.1} MB = {:.2} bytes/entry (encoded lists alone {:.2} bytes/entry)",
            load_secs + t.elapsed().as_secs_f64(),
            file as f64 / 1e6,
            file as f64 / entries as f64,
            allocated as f64 / 1e6,
            allocated as f64 / entries as f64,
            value_bytes as f64 / entries as f64
        );
        let t = Instant::now();
        store.compact().unwrap();
        let (file, allocated) = file_bytes(&cold_path);
        println!(
            "cold tier (redb) after compact() in {:.1}s: file {:.1} MB = {:.2} bytes/entry, allocated {:.1} MB = {:.2} bytes/entry",
            t.elapsed().as_secs_f64(),
            file as f64 / 1e6,
            file as f64 / entries as f64,
            allocated as f64 / 1e6,
            allocated as f64 / entries as f64
        );
    }
    {
        // The same rows in one fjall commit (fsync'd journal; the memtable is written out
        // as table files by fjall's background flush, or by flush()).
        let fjall_path = dir.path().join("cold.fjall");
        let store = FjallStore::open(&fjall_path).unwrap();
        let report = |label: &str, secs: f64| {
            let (len, allocated, journal) = dir_bytes(&fjall_path);
            println!(
                "cold tier (fjall, one key per owner) {label} in {secs:.1}s: files {:.1} MB = {:.2} bytes/entry, allocated {:.1} MB = {:.2} bytes/entry (journal {:.1} MB allocated, rest {:.2} bytes/entry)",
                len as f64 / 1e6,
                len as f64 / entries as f64,
                allocated as f64 / 1e6,
                allocated as f64 / entries as f64,
                journal as f64 / 1e6,
                (allocated - journal) as f64 / entries as f64,
            );
        };
        let t = Instant::now();
        let mut batch = WriteBatch::new();
        for (o, v) in &rows {
            batch.put(COLD_TABLE, ColdTier::key(*o).to_vec(), v.clone());
        }
        store.commit(batch).unwrap();
        report("right after the commit", t.elapsed().as_secs_f64());
        let t = Instant::now();
        store.flush().unwrap();
        report("after flush() (memtables written out)", t.elapsed().as_secs_f64());
        let t = Instant::now();
        store.compact().unwrap();
        report("after compact() (major compaction)", t.elapsed().as_secs_f64());
        drop(store);
        let t = Instant::now();
        let store = FjallStore::open(&fjall_path).unwrap();
        report("after reopen", t.elapsed().as_secs_f64());
        let (o, v) = &rows[rows.len() / 2];
        assert_eq!(store.get(COLD_TABLE, &ColdTier::key(*o)).unwrap().as_ref(), Some(v), "fjall reads back");
    }
    drop(rows);

    // Small durable commits, as the processor makes one per round.
    {
        let (batches, puts) = (if small { 1_000 } else { 10_000 }, 50);
        // Two alternating rounds each (the disk is shared and its fsync latency varies).
        let redb = RedbStore::open(dir.path().join("commits.redb")).unwrap();
        let fjall = FjallStore::open(dir.path().join("commits.fjall")).unwrap();
        let mut redb_rates = Vec::new();
        let mut fjall_rates = Vec::new();
        for round in 0..2 {
            redb_rates.push(commit_rate(&redb, &keys, batches, puts, 7 + round));
            fjall_rates.push(commit_rate(&fjall, &keys, batches, puts, 7 + round));
        }
        drop((redb, fjall));
        let (redb_rate, fjall_rate) = (redb_rates.iter().sum::<f64>() / 2.0, fjall_rates.iter().sum::<f64>() / 2.0);
        println!("durable commits per round: redb {redb_rates:.0?}, fjall {fjall_rates:.0?} batches/s");
        println!("durable commits of {puts} puts × 70-byte values, {batches} batches: redb {redb_rate:.0} batches/s, fjall {fjall_rate:.0} batches/s (fjall / redb = {:.2}x)", fjall_rate / redb_rate);
    }

    let (p50_list, p99_list) = {
        // Service list latency over the embedded tier (catalog lookups included).
        let catalog = Arc::new(InMemoryCatalog::new((0..SKUS).map(|i| (FIRST_SKU + i, meridian_history::SkuInfo { spu: (FIRST_SKU + i) / 3, name: format!("sku {i}").into(), image: format!("/i/{i}.jpg").into() }))));
        let store: Arc<dyn KvStore> = Arc::new(meridian_state::MemoryStore::new());
        let hot = Arc::new(embedded);
        let service = HistoryService::new(HistoryConfig::default(), hot, store, catalog, Arc::new(SystemClock)).unwrap();
        let mut lat = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let o = perm[owner_zipf.sample(&mut rng) as usize - 1];
            let owner = Owner::user(APP, format!("u{o}"));
            let t = Instant::now();
            let page = service.list(&owner, 20, None).unwrap();
            lat.push(t.elapsed());
            std::hint::black_box(page);
        }
        pct(lat)
    };
    println!("service list (page of 20, embedded hot): p50 {:.1} µs, p99 {:.1} µs", p50_list.as_secs_f64() * 1e6, p99_list.as_secs_f64() * 1e6);

    // 3. Redis.
    match RedisHotTier::connect(&url, "mhbench:lua:", config) {
        Err(e) => println!("SKIPPED: redis absent ({url}: {e})"),
        Ok(lua) => {
            let naive = RedisHotTier::connect(&url, "mhbench:naive:", config).unwrap();
            lua.delete_all().unwrap();
            naive.delete_all().unwrap();
            let t = Instant::now();
            for c in stream[..redis_events].chunks(BATCH) {
                lua.record(&updates(c, &keys), now).unwrap();
            }
            let lua_rate = redis_events as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            for c in stream[..naive_events].chunks(BATCH) {
                naive.record_naive(&updates(c, &keys), now).unwrap();
            }
            let naive_rate = naive_events as f64 / t.elapsed().as_secs_f64();
            println!("redis lua (pipelined, {BATCH} views per round): {redis_events} updates = {lua_rate:.0} updates/s");
            println!("redis naive (4 round trips per owner): {naive_events} updates = {naive_rate:.0} updates/s");
            println!("ratio embedded / redis-lua = {:.1}x; redis-lua / redis-naive = {:.1}x", embedded_rate / lua_rate, lua_rate / naive_rate);
            let mut lat = Vec::with_capacity(5000);
            for _ in 0..5000 {
                let o = stream[rng.gen_range(0..redis_events)].0;
                let t = Instant::now();
                std::hint::black_box(lua.get(keys[o as usize], now).unwrap());
                lat.push(t.elapsed());
            }
            let (p50, p99) = pct(lat);
            println!("redis hot tier get: p50 {:.1} µs, p99 {:.1} µs", p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);
            lua.delete_all().unwrap();
            naive.delete_all().unwrap();
            // Memory: users with 200 entries each.
            let mem = RedisHotTier::connect(&url, "mhbench:mem:", config).unwrap();
            let sample = if small { 500u32 } else { 2000 };
            let before = mem.used_memory().unwrap();
            for chunk in (0..sample).collect::<Vec<_>>().chunks(100) {
                let ups: Vec<OwnerUpdate> = chunk
                    .iter()
                    .map(|o| OwnerUpdate::views(keys[*o as usize], (0..200u64).map(|i| Entry::new(FIRST_SKU + (u64::from(*o) * 7919 + i * 104_729) % SKUS, now - 1_000_000 + i as i64 * 1000)).collect()))
                    .collect();
                mem.record(&ups, now).unwrap();
            }
            let after = mem.used_memory().unwrap();
            println!(
                "redis memory: {sample} users × 200 entries: used_memory +{:.1} MB = {:.1} bytes/entry (sorted sets above 128 members are skiplist+dict)",
                (after.saturating_sub(before)) as f64 / 1e6,
                after.saturating_sub(before) as f64 / (f64::from(sample) * 200.0)
            );
            mem.delete_all().unwrap();
        }
    }

    // 4. Full processor: log → runtime → process() → cold batch committed to redb.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let log = rt.block_on(async { EmbeddedLog::open(dir.path().join("log"), EmbeddedLogConfig::default()) }).unwrap();
    let topic = TopicName::new("events").unwrap();
    log.ensure_topic(&topic, 4).unwrap();
    for (n, c) in stream[..processor_events].chunks(10_000).enumerate() {
        let records = c
            .iter()
            .enumerate()
            .map(|(i, (o, sku, t))| {
                let e = Event {
                    id: EventId::new(format!("e{n}-{i}")).unwrap(),
                    app: AppId::new(APP).unwrap(),
                    user: Some(UserId::new(format!("u{o}")).unwrap()),
                    device: None,
                    time: Timestamp(*t),
                    received: Timestamp(*t),
                    action: Action::new("view").unwrap(),
                    target: Some(Target { kind: TargetType::new("sku").unwrap(), id: sku.to_string() }),
                    context: Default::default(),
                    props: Default::default(),
                };
                AppendRecord { key: Bytes::from(format!("u{o}")), value: Bytes::from(e.encode()), timestamp: *t }
            })
            .collect();
        rt.block_on(log.append(&topic, records)).unwrap();
    }
    let backends = arg_text("--processor-backends").unwrap_or_else(|| "redb,fjall".into());
    for backend in backends.split(',') {
        processor_run(backend, &log, &topic, processor_events, dir.path(), config, now);
    }
    println!("total {:.1}s", started.elapsed().as_secs_f64());
}

/// Runs the history processor over the whole log into a fresh state store of `backend`
/// and reports its throughput and the store's size per cold entry as the live rounds left
/// it (copy-on-write pages or journals and old versions), after a flush and after compaction.
fn processor_run(backend: &str, log: &Arc<EmbeddedLog>, topic: &TopicName, events: usize, dir: &std::path::Path, config: HotConfig, now: i64) {
    let path = dir.join(format!("state-{backend}"));
    let is_redb = backend == "redb";
    let fjall = (!is_redb).then(|| Arc::new(FjallStore::open(&path).unwrap()));
    let store: Arc<dyn KvStore> = match &fjall {
        Some(f) => f.clone(),
        None => Arc::new(RedbStore::open(&path).unwrap()),
    };
    let hot = Arc::new(EmbeddedHotTier::new(config, 1 << 30));
    let service = HistoryService::new(HistoryConfig::default(), hot, store.clone(), Arc::new(InMemoryCatalog::default()), Arc::new(SystemClock)).unwrap();
    let log_dyn: Arc<dyn meridian_log::Log> = log.clone();
    let round = arg("--round-records").map_or(RuntimeConfig::default().max_batch_records, |n| n as usize);
    let runtime = Runtime::new(log_dyn, store.clone(), RuntimeConfig { max_batch_records: round, ..RuntimeConfig::default() });
    let t = Instant::now();
    runtime.spawn(Box::new(service.processor(topic.clone()))).unwrap();
    assert!(runtime.wait_caught_up(Duration::from_secs(1800)), "processor caught up");
    let secs = t.elapsed().as_secs_f64();
    runtime.shutdown();
    println!("history processor on {backend} (embedded log → process → commit, 4 partitions, rounds of {round} records per partition): {events} events in {secs:.2}s = {:.0} events/s", events as f64 / secs);
    let cold = ColdTier::new(store.clone(), HistoryConfig::default().cold_ttl_ms());
    let (mut owners_n, mut entries_n) = (0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let start = after.as_deref().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let rows = store.range(COLD_TABLE, start, std::ops::Bound::Unbounded, 4096).unwrap();
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (_, v) in &rows {
            owners_n += 1;
            entries_n += cold.decode(v, now).map_or(0, |e| e.len() as u64);
        }
    }
    let size = |stage: &str| {
        let (len, allocated, journal) = if is_redb {
            let (l, a) = file_bytes(&path);
            (l, a, 0)
        } else {
            dir_bytes(&path)
        };
        let per = |b: u64| b as f64 / entries_n as f64;
        println!(
            "  {backend} state {stage}: {owners_n} owners, {entries_n} entries: files {:.1} MB = {:.2} bytes/entry, allocated {:.1} MB = {:.2} bytes/entry (journals {:.1} MB allocated; tables {:.2} bytes/entry)",
            len as f64 / 1e6,
            per(len),
            allocated as f64 / 1e6,
            per(allocated),
            journal as f64 / 1e6,
            per(allocated - journal)
        );
    };
    size("after live rounds");
    if let Some(f) = &fjall {
        f.flush().unwrap();
        size("after flush");
    }
    store.compact().unwrap();
    size("after compact()");
}
