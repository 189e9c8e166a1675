//! The page cache, generic over the rendered value: a first-page cache for every category
//! (never evicted; the fallback), a sharded LRU for other pages, refresh on expiry while
//! serving stale, and two levels of fallback when the backend fails.

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where time comes from (tests move it by hand).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock { start: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock()
    }
}

/// What a cached page is: a category, the canonical query string without the page (empty
/// for the default listing), and the page number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageKey {
    /// Category id.
    pub category: u32,
    /// Canonical query (filters, sort, page size), empty for the default listing.
    pub query: String,
    /// Page number, 1-based.
    pub page: u32,
}

impl PageKey {
    /// The first page of a category's default listing.
    pub fn first(category: u32) -> PageKey {
        PageKey { category, query: String::new(), page: 1 }
    }

    /// Is this the first page of the default listing (kept in the first-page cache)?
    pub fn is_first_page(&self) -> bool {
        self.page == 1 && self.query.is_empty()
    }
}

/// Where a served page came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServedFrom {
    /// Rendered by the backend just now.
    Rendered,
    /// A fresh cached copy.
    Cached,
    /// An expired copy of this page (the backend failed, or another caller is refreshing).
    Stale,
    /// Fallback level 1: the backend failed and this page was not cached, so the category's
    /// cached first page is served.
    FirstPageFallback,
    /// Fallback level 2: nothing cached for the category; the static page.
    StaticFallback,
}

impl ServedFrom {
    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedFrom::Rendered => "rendered",
            ServedFrom::Cached => "cached",
            ServedFrom::Stale => "stale",
            ServedFrom::FirstPageFallback => "first_page_fallback",
            ServedFrom::StaticFallback => "static_fallback",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A page as served.
#[derive(Debug, Clone)]
pub struct Served<V> {
    /// The page.
    pub value: Arc<V>,
    /// Where it came from.
    pub from: ServedFrom,
    /// The backend's error, when it failed.
    pub error: Option<String>,
}

/// Counters of a cache, by where pages were served from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// [`ServedFrom::Rendered`].
    pub rendered: u64,
    /// [`ServedFrom::Cached`].
    pub cached: u64,
    /// [`ServedFrom::Stale`].
    pub stale: u64,
    /// [`ServedFrom::FirstPageFallback`].
    pub first_page_fallback: u64,
    /// [`ServedFrom::StaticFallback`].
    pub static_fallback: u64,
    /// Backend failures.
    pub backend_errors: u64,
    /// First pages held.
    pub first_pages: u64,
    /// Other pages held.
    pub pages: u64,
}

struct Entry<V> {
    value: Arc<V>,
    fresh_until: Instant,
    refreshing: AtomicBool,
}

impl<V> Entry<V> {
    fn new(value: Arc<V>, fresh_until: Instant) -> Arc<Entry<V>> {
        Arc::new(Entry { value, fresh_until, refreshing: AtomicBool::new(false) })
    }
}

/// One LRU shard: entries with their last-use tick, and ticks in order.
struct Lru<V> {
    map: FxHashMap<PageKey, (Arc<Entry<V>>, u64)>,
    order: BTreeMap<u64, PageKey>,
    tick: u64,
    capacity: usize,
}

impl<V> Lru<V> {
    fn get(&mut self, key: &PageKey) -> Option<Arc<Entry<V>>> {
        self.tick += 1;
        let tick = self.tick;
        let (entry, last) = self.map.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.clone());
        Some(entry.clone())
    }

    fn insert(&mut self, key: PageKey, entry: Arc<Entry<V>>) {
        self.tick += 1;
        if let Some((_, last)) = self.map.insert(key.clone(), (entry, self.tick)) {
            self.order.remove(&last);
        }
        self.order.insert(self.tick, key);
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.map.remove(&oldest);
        }
    }
}

/// The page cache. `V` is whatever the server renders (HTML, JSON bytes…).
pub struct PageCache<V> {
    ttl: Duration,
    first_pages: RwLock<FxHashMap<u32, Arc<Entry<V>>>>,
    shards: Box<[Mutex<Lru<V>>]>,
    static_fallback: Arc<V>,
    clock: Arc<dyn Clock>,
    counters: [AtomicU64; 6],
}

impl<V> fmt::Debug for PageCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageCache").field("ttl", &self.ttl).field("shards", &self.shards.len()).field("stats", &self.stats()).finish()
    }
}

impl<V> PageCache<V> {
    /// A cache keeping pages fresh for `ttl`, at most `capacity` non-first pages over
    /// `shards` LRU shards, serving `static_fallback` when nothing else is there.
    pub fn new(ttl: Duration, capacity: usize, shards: usize, static_fallback: V, clock: Arc<dyn Clock>) -> PageCache<V> {
        let shards = shards.max(1);
        let per_shard = capacity.div_ceil(shards).max(1);
        PageCache {
            ttl,
            first_pages: RwLock::new(FxHashMap::default()),
            shards: (0..shards).map(|_| Mutex::new(Lru { map: FxHashMap::default(), order: BTreeMap::new(), tick: 0, capacity: per_shard })).collect(),
            static_fallback: Arc::new(static_fallback),
            clock,
            counters: Default::default(),
        }
    }

    fn shard(&self, key: &PageKey) -> &Mutex<Lru<V>> {
        let mut h = rustc_hash::FxHasher::default();
        key.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    fn lookup(&self, key: &PageKey) -> Option<Arc<Entry<V>>> {
        if key.is_first_page() {
            self.first_pages.read().get(&key.category).cloned()
        } else {
            self.shard(key).lock().get(key)
        }
    }

    fn store(&self, key: &PageKey, entry: Arc<Entry<V>>) {
        if key.is_first_page() {
            self.first_pages.write().insert(key.category, entry);
        } else {
            self.shard(key).lock().insert(key.clone(), entry);
        }
    }

    fn served(&self, value: Arc<V>, from: ServedFrom, error: Option<String>) -> Served<V> {
        self.counters[from.index()].fetch_add(1, Ordering::Relaxed);
        Served { value, from, error }
    }

    /// The page of `key`: fresh from the cache, else rendered by `render`. An expired page
    /// is refreshed by one caller while the others get the stale copy, and stays until its
    /// replacement is stored. When `render` fails: the stale copy if any, else the
    /// category's first page, else the static fallback.
    pub fn get<E: fmt::Display>(&self, key: &PageKey, render: impl FnOnce() -> Result<V, E>) -> Served<V> {
        let existing = self.lookup(key);
        let now = self.clock.now();
        if let Some(e) = &existing {
            if now < e.fresh_until {
                return self.served(e.value.clone(), ServedFrom::Cached, None);
            }
            if e.refreshing.swap(true, Ordering::AcqRel) {
                return self.served(e.value.clone(), ServedFrom::Stale, None);
            }
        }
        match render() {
            Ok(value) => {
                let value = Arc::new(value);
                self.store(key, Entry::new(value.clone(), self.clock.now() + self.ttl));
                self.served(value, ServedFrom::Rendered, None)
            }
            Err(error) => {
                self.counters[5].fetch_add(1, Ordering::Relaxed);
                let error = Some(error.to_string());
                if let Some(e) = existing {
                    e.refreshing.store(false, Ordering::Release);
                    return self.served(e.value.clone(), ServedFrom::Stale, error);
                }
                if !key.is_first_page() {
                    if let Some(first) = self.first_pages.read().get(&key.category).cloned() {
                        return self.served(first.value.clone(), ServedFrom::FirstPageFallback, error);
                    }
                }
                self.served(self.static_fallback.clone(), ServedFrom::StaticFallback, error)
            }
        }
    }

    /// Renders the first page of each category that has none or an expired one (warm-up at
    /// start and a periodic task); a failure keeps the old page. Returns the pages stored.
    pub fn refresh_first_pages<E>(&self, categories: &[u32], mut render: impl FnMut(u32) -> Result<V, E>) -> usize {
        let mut stored = 0;
        for &category in categories {
            let current = self.first_pages.read().get(&category).cloned();
            if current.as_ref().is_some_and(|e| self.clock.now() < e.fresh_until) {
                continue;
            }
            match render(category) {
                Ok(value) => {
                    self.first_pages.write().insert(category, Entry::new(Arc::new(value), self.clock.now() + self.ttl));
                    stored += 1;
                }
                Err(_) => {
                    self.counters[5].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        stored
    }

    /// Marks every cached page of `category` expired (they are still served as stale and
    /// as fallbacks until replaced).
    pub fn expire_category(&self, category: u32) {
        let now = self.clock.now();
        let expire = |e: &Arc<Entry<V>>| Entry::new(e.value.clone(), now);
        let first = self.first_pages.read().get(&category).cloned();
        if let Some(e) = first {
            self.first_pages.write().insert(category, expire(&e));
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            for (key, (e, _)) in shard.map.iter_mut() {
                if key.category == category {
                    *e = expire(e);
                }
            }
        }
    }

    /// Counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        CacheStats {
            rendered: c(0),
            cached: c(1),
            stale: c(2),
            first_page_fallback: c(3),
            static_fallback: c(4),
            backend_errors: c(5),
            first_pages: self.first_pages.read().len() as u64,
            pages: self.shards.iter().map(|s| s.lock().map.len() as u64).sum(),
        }
    }
}
