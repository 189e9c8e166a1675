//! The listing service: one engine per app, loaded from the durable catalog at start and
//! kept live by the processor; queries, categories, catalog reads for history and shopper
//! pages, jobs (bulk loads and change batches) with their progress, and the quality run.
//!
//! Writes reach the catalog only through the product-change topic and its processor (one
//! writer, exactly once with its committed position); the service applies a committed
//! round's changes to the engines ([`ListingService::apply_committed`]).

use crate::catalog::{CatalogSku, ProductChange};
use crate::config::ListingConfig;
use crate::engine::{EngineStats, ListingEngine, LoadReport};
use crate::error::{ListingError, Result};
use crate::model::{Change, ListingItem};
use crate::query::{ListingPage, Query};
use crate::quality;
use crate::store;
use meridian_catalog::{CatalogLookup, SkuInfo};
use meridian_state::KvStore;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One app's live listing: its engine and what pages and history show of each SKU.
#[derive(Debug)]
pub struct AppListing {
    /// The engine.
    pub engine: ListingEngine,
    display: RwLock<FxHashMap<u64, SkuInfo>>,
    /// The batch score of each SKU (what the catalog holds), which live adjustment lifts.
    scores: RwLock<FxHashMap<u64, f32>>,
    recent: Mutex<quality::RecentBehaviour>,
    changes_applied: AtomicU64,
    /// (time, changes applied then) samples, for the update rate.
    rate: Mutex<VecDeque<(Instant, u64)>>,
}

impl AppListing {
    fn new(config: &ListingConfig) -> Result<AppListing> {
        Ok(AppListing {
            engine: ListingEngine::new(config.clone())?,
            display: RwLock::default(),
            scores: RwLock::default(),
            recent: Mutex::new(quality::RecentBehaviour::new(config.live.clone())),
            changes_applied: AtomicU64::new(0),
            rate: Mutex::default(),
        })
    }

    /// What pages and history show of `sku`.
    pub fn info(&self, sku: u64) -> Option<SkuInfo> {
        self.display.read().get(&sku).cloned()
    }

    /// Changes applied since start.
    pub fn changes_applied(&self) -> u64 {
        self.changes_applied.load(Ordering::Relaxed)
    }

    /// Changes applied per second over about the last minute.
    pub fn changes_per_sec(&self) -> f64 {
        let now = Instant::now();
        let total = self.changes_applied();
        let mut rate = self.rate.lock();
        rate.push_back((now, total));
        while rate.len() > 2 && rate.front().is_some_and(|(t, _)| now.duration_since(*t).as_secs() > 60) {
            rate.pop_front();
        }
        match rate.front() {
            Some(&(t, n)) if now.duration_since(t).as_secs_f64() > 0.5 => (total - n) as f64 / now.duration_since(t).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Number of SKUs.
    pub fn len(&self) -> usize {
        self.display.read().len()
    }

    /// True without SKUs.
    pub fn is_empty(&self) -> bool {
        self.display.read().is_empty()
    }
}

/// A line or change refused, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line; 0 when refused while applying.
    pub line: u64,
    /// Stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// A bulk load or change batch: lines read, published, applied.
#[derive(Debug)]
pub struct Job {
    /// Id.
    pub id: String,
    /// App.
    pub app: String,
    /// `catalog` or `changes`.
    pub kind: &'static str,
    /// Lines read.
    pub lines: AtomicU64,
    /// Lines refused before publishing.
    pub rejected: AtomicU64,
    /// Changes published.
    pub published: AtomicU64,
    /// Changes applied.
    pub applied: AtomicU64,
    /// Changes refused when applied.
    pub refused: AtomicU64,
    /// Publishing is over.
    pub published_all: AtomicBool,
    /// First errors.
    pub errors: Mutex<Vec<LineError>>,
    /// Why it failed.
    pub failure: Mutex<Option<String>>,
}

/// Most errors kept per job.
const MAX_JOB_ERRORS: usize = 100;
/// Most jobs remembered.
const MAX_JOBS: usize = 256;

impl Job {
    /// Records an error (the first [`MAX_JOB_ERRORS`] are kept).
    pub fn error(&self, line: u64, code: &str, message: String) {
        let mut errors = self.errors.lock();
        if errors.len() < MAX_JOB_ERRORS {
            errors.push(LineError { line, code: code.to_owned(), message });
        }
    }

    /// `publishing`, `applying`, `done` or `failed`.
    pub fn state(&self) -> &'static str {
        if self.failure.lock().is_some() {
            return "failed";
        }
        if !self.published_all.load(Ordering::Acquire) {
            return "publishing";
        }
        if self.applied.load(Ordering::Acquire) + self.refused.load(Ordering::Acquire) < self.published.load(Ordering::Acquire) {
            "applying"
        } else {
            "done"
        }
    }

    /// (applied + refused) / published.
    pub fn progress(&self) -> f64 {
        let published = self.published.load(Ordering::Acquire);
        if published == 0 {
            return if self.published_all.load(Ordering::Acquire) { 1.0 } else { 0.0 };
        }
        ((self.applied.load(Ordering::Acquire) + self.refused.load(Ordering::Acquire)) as f64 / published as f64).min(1.0)
    }
}

/// What one committed round changed in one app.
#[derive(Debug, Default)]
pub struct AppRound {
    /// The engine's changes, in order.
    pub changes: Vec<Change>,
    /// New display values (`None`: removed).
    pub display: Vec<(u64, Option<SkuInfo>)>,
}

/// The listing service.
#[derive(Debug)]
pub struct ListingService {
    config: ListingConfig,
    store: Arc<dyn KvStore>,
    apps: RwLock<BTreeMap<String, Arc<AppListing>>>,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    fail_backend: AtomicBool,
}

impl ListingService {
    /// Opens the service on the module's store: every app's catalog is read and indexed.
    /// Returns it with the load report of each app.
    pub fn open(config: ListingConfig, store: Arc<dyn KvStore>) -> Result<(ListingService, Vec<(String, LoadReport)>)> {
        config.check()?;
        let (catalogs, undecodable) = store::read_catalogs(&*store).map_err(|e| ListingError::Store(e.to_string()))?;
        if undecodable > 0 {
            tracing::warn!(undecodable, "listing: catalog rows that do not decode were skipped");
        }
        let mut apps = BTreeMap::new();
        let mut reports = Vec::new();
        for (app, skus) in catalogs {
            let listing = AppListing::new(&config)?;
            {
                let mut display = listing.display.write();
                display.reserve(skus.len());
                let mut scores = listing.scores.write();
                for sku in &skus {
                    display.insert(sku.item.sku, sku.info());
                    scores.insert(sku.item.sku, sku.item.quality);
                }
            }
            let report = listing.engine.load(skus.into_iter().map(|s| s.item), &mut |_| {})?;
            for (category, settings) in store::read_settings(&*store, &app).map_err(|e| ListingError::Store(e.to_string()))? {
                if let Err(e) = listing.engine.set_settings(category, settings) {
                    tracing::warn!(app = %app, category, error = %e, "listing: saved category settings no longer apply");
                }
            }
            reports.push((app.clone(), report));
            apps.insert(app, Arc::new(listing));
        }
        let fail_backend = AtomicBool::new(config.fail_backend);
        Ok((ListingService { config, store, apps: RwLock::new(apps), jobs: Mutex::default(), fail_backend }, reports))
    }

    /// The settings.
    pub fn config(&self) -> &ListingConfig {
        &self.config
    }

    /// The module's store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The live listing of an app, if it has a catalog.
    pub fn app(&self, app: &str) -> Option<Arc<AppListing>> {
        self.apps.read().get(app).cloned()
    }

    /// Apps with a catalog.
    pub fn apps(&self) -> Vec<String> {
        self.apps.read().keys().cloned().collect()
    }

    fn app_or_create(&self, app: &str) -> Result<Arc<AppListing>> {
        if let Some(listing) = self.app(app) {
            return Ok(listing);
        }
        let mut apps = self.apps.write();
        if let Some(listing) = apps.get(app) {
            return Ok(listing.clone());
        }
        let listing = Arc::new(AppListing::new(&self.config)?);
        apps.insert(app.to_owned(), listing.clone());
        Ok(listing)
    }

    /// Answers a query on an app's catalog (an app without a catalog knows no category).
    pub fn query(&self, app: &str, query: &Query) -> Result<ListingPage> {
        match self.app(app) {
            Some(listing) => listing.engine.query(query),
            None => Err(ListingError::UnknownCategory(query.category)),
        }
    }

    /// A category's settings (defaults when none were saved).
    pub fn category_settings(&self, app: &str, category: u32) -> Result<crate::CategorySettings> {
        let listing = self.app(app).ok_or(ListingError::UnknownCategory(category))?;
        listing.engine.category_path(category)?;
        Ok(listing.engine.settings(category))
    }

    /// Sets a category's interleaving and pins (checked, pinned SKUs must exist) and saves
    /// them; they are applied again when the index is rebuilt at start.
    pub fn set_category_settings(&self, app: &str, category: u32, settings: crate::CategorySettings) -> Result<crate::CategorySettings> {
        let listing = self.app(app).ok_or(ListingError::UnknownCategory(category))?;
        let before = listing.engine.settings(category);
        listing.engine.set_settings(category, settings.clone())?;
        store::put_settings(&*self.store, app, category, &settings).map_err(|e| ListingError::Store(e.to_string()))?;
        Ok(before)
    }

    /// Engine totals of an app (zeros without a catalog).
    pub fn stats(&self, app: &str) -> EngineStats {
        self.app(app).map(|l| l.engine.stats()).unwrap_or_default()
    }

    /// One SKU of an app's durable catalog.
    pub fn sku(&self, app: &str, sku: u64) -> Result<Option<CatalogSku>> {
        store::get_sku(&*self.store, app, sku).map_err(|e| ListingError::Store(e.to_string()))
    }

    /// Applies a committed round: each app's changes to its engine and display names.
    pub fn apply_committed(&self, rounds: BTreeMap<String, AppRound>) {
        for (app, round) in rounds {
            let listing = match self.app_or_create(&app) {
                Ok(listing) => listing,
                Err(e) => {
                    tracing::warn!(app = %app, error = %e, "listing: cannot create the app's engine");
                    continue;
                }
            };
            {
                let mut display = listing.display.write();
                for (sku, info) in round.display {
                    match info {
                        Some(info) => display.insert(sku, info),
                        None => display.remove(&sku),
                    };
                }
            }
            let mut upserted: Vec<u32> = round.changes.iter().filter_map(|c| if let Change::Upsert(item) = c { Some(item.category_path.clone()) } else { None }).flatten().collect();
            upserted.sort_unstable();
            upserted.dedup();
            let mut rescored = Vec::new();
            {
                let mut scores = listing.scores.write();
                for change in &round.changes {
                    match change {
                        Change::Upsert(item) => {
                            scores.insert(item.sku, item.quality);
                            rescored.push(item.sku);
                        }
                        Change::Quality { sku, score } => {
                            scores.insert(*sku, *score);
                            rescored.push(*sku);
                        }
                        Change::Remove { sku } => {
                            scores.remove(sku);
                        }
                        _ => {}
                    }
                }
            }
            let report = listing.engine.apply_batch(&round.changes);
            // New batch scores keep the live lift of recent behaviour.
            if self.config.live_adjustment && !rescored.is_empty() {
                let lifted = listing.lifted(&rescored, now_ms());
                if !lifted.is_empty() {
                    listing.engine.apply_batch(&lifted);
                }
            }
            // A category made mostly of pending changes (a bulk load into a new or small
            // category) is merged now: its index is then columns and orders, not a log.
            for category in upserted {
                if listing.engine.category_size(category).is_some_and(|(base, delta)| u64::from(delta) > base) {
                    listing.engine.merge_now(Some(category));
                }
            }
            if report.n_errors > 0 {
                tracing::warn!(app = %app, refused = report.n_errors, first = ?report.errors.first(), "listing: the index refused changes the catalog took");
            }
            listing.changes_applied.fetch_add(report.applied, Ordering::Relaxed);
        }
    }

    /// Starts a job.
    pub fn new_job(&self, id: String, app: &str, kind: &'static str) -> Arc<Job> {
        let job = Arc::new(Job {
            id,
            app: app.to_owned(),
            kind,
            lines: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            published: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            published_all: AtomicBool::new(false),
            errors: Mutex::default(),
            failure: Mutex::default(),
        });
        let mut jobs = self.jobs.lock();
        if jobs.len() >= MAX_JOBS {
            jobs.pop_front();
        }
        jobs.push_back(job.clone());
        job
    }

    /// A job of an app.
    pub fn job(&self, app: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().iter().find(|j| j.id == id && j.app == app).cloned()
    }

    /// Counts what a committed round did for its jobs: (job, applied, refused, errors).
    pub fn tally_jobs(&self, tallies: Vec<(String, u64, u64, Vec<LineError>)>) {
        let jobs = self.jobs.lock();
        for (id, applied, refused, errors) in tallies {
            if let Some(job) = jobs.iter().find(|j| j.id == id) {
                for e in errors {
                    job.error(e.line, &e.code, e.message);
                }
                job.applied.fetch_add(applied, Ordering::AcqRel);
                job.refused.fetch_add(refused, Ordering::AcqRel);
            }
        }
    }

    /// Whether shopper-page renders are made to fail.
    pub fn fail_backend(&self) -> bool {
        self.fail_backend.load(Ordering::Relaxed)
    }

    /// Makes shopper-page renders fail (or not).
    pub fn set_fail_backend(&self, fail: bool) {
        self.fail_backend.store(fail, Ordering::Relaxed);
    }

    /// The quality job for one app: scores every SKU of its durable catalog from its own
    /// metrics and the behaviour counted from the log, and returns the changes for the
    /// scores that moved (to publish to the product-change topic): (changes, scored,
    /// SKUs with behaviour).
    pub fn quality_changes(&self, app: &str, now_ms: i64) -> Result<(Vec<ProductChange>, u64, u64)> {
        let map_err = |e: meridian_state::StateError| ListingError::Store(e.to_string());
        let signals = store::read_signals(&*self.store, app).map_err(map_err)?;
        let mut items: Vec<ListingItem> = store::read_catalog(&*self.store, app).map_err(map_err)?.into_iter().map(|s| s.item).collect();
        let scored = items.len() as u64;
        let with_behaviour = items.iter().filter(|i| signals.contains_key(&i.sku)).count() as u64;
        let signals: std::collections::HashMap<u64, quality::Signals> = signals.into_iter().collect();
        let changes = quality::rescore(&mut items, &signals, &self.config.quality, now_ms, self.config.quality_min_change)
            .into_iter()
            .filter_map(|c| match c {
                Change::Quality { sku, score } => Some(ProductChange::Quality { sku, score }),
                _ => None,
            })
            .collect();
        Ok((changes, scored, with_behaviour))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl AppListing {
    /// Live scores of `skus` that have recent behaviour: the batch score lifted.
    fn lifted(&self, skus: &[u64], now_ms: i64) -> Vec<Change> {
        let recent = self.recent.lock();
        let scores = self.scores.read();
        skus.iter()
            .filter_map(|&sku| {
                let r = recent.recent(sku, now_ms);
                if r.views + r.carts + r.orders < 1e-3 {
                    return None;
                }
                Some(Change::Quality { sku, score: quality::live_adjust(*scores.get(&sku)?, &r, recent.params()) })
            })
            .collect()
    }
}

impl ListingService {
    /// Live adjustment: counts recent behaviour `(app, sku, behaviour, time)` and lifts the
    /// scores of those SKUs in the index (in memory only; the quality job's scores stay the
    /// catalog's). Off when `live_adjustment` is false.
    pub fn record_recent(&self, events: Vec<(String, u64, quality::Behaviour, i64)>) {
        if !self.config.live_adjustment || events.is_empty() {
            return;
        }
        let mut by_app: BTreeMap<String, Vec<(u64, quality::Behaviour, i64)>> = BTreeMap::new();
        for (app, sku, behaviour, at) in events {
            by_app.entry(app).or_default().push((sku, behaviour, at));
        }
        let now = now_ms();
        for (app, events) in by_app {
            let Some(listing) = self.app(&app) else { continue };
            let mut skus: Vec<u64> = events.iter().map(|e| e.0).collect();
            {
                let mut recent = listing.recent.lock();
                for (sku, behaviour, at) in events {
                    recent.record(sku, behaviour, at.min(now));
                }
                if recent.len() > 100_000 {
                    recent.prune(now, 1e-3);
                }
            }
            skus.sort_unstable();
            skus.dedup();
            let lifted = listing.lifted(&skus, now);
            if !lifted.is_empty() {
                listing.engine.apply_batch(&lifted);
            }
        }
    }
}

/// The catalog history reads: an app's listing catalog when it has one, else `fallback`.
#[derive(Debug)]
pub struct ListingCatalog {
    service: Arc<ListingService>,
    fallback: Arc<dyn CatalogLookup>,
}

impl ListingCatalog {
    /// The listing's catalog in front of `fallback`.
    pub fn new(service: Arc<ListingService>, fallback: Arc<dyn CatalogLookup>) -> ListingCatalog {
        ListingCatalog { service, fallback }
    }
}

impl CatalogLookup for ListingCatalog {
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        self.fallback.lookup(skus)
    }

    fn lookup_in(&self, app: &str, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        match self.service.app(app) {
            Some(listing) if !listing.is_empty() => {
                let display = listing.display.read();
                skus.iter().map(|s| display.get(s).cloned()).collect()
            }
            _ => self.fallback.lookup_in(app, skus),
        }
    }
}
