//! The engine: category nodes with their snapshots, bulk load, queries, the single writer
//! applying changes, and merges of deltas into new bases.

use crate::base::{Base, MergeMap, NONE};
use crate::bits::DenseBits;
use crate::config::{CategorySettings, ListingConfig, MergeMode};
use crate::delta::{DeltaLog, Snapshot};
use crate::error::{ListingError, Result};
use crate::model::{saturate, Change, Dictionary, DocValues, ListingItem};
use crate::query::{execute, ListingPage, Query, QueryEnv, ResolvedPin};
use crate::walk::Limits;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;


/// The pending-change counts per category one [`ListingEngine::merge_quiet`] call saw
/// (the caller keeps it for the next call).
pub type PendingSeen = rustc_hash::FxHashMap<u32, u32>;
/// Which step of a bulk load a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPhase {
    /// Items read and checked (`total` is the iterator's size hint).
    Reading,
    /// Category indexes built, counted in docs (a SKU counts once per category of its path).
    Building,
}

/// A progress report of [`ListingEngine::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// The step.
    pub phase: LoadPhase,
    /// Done so far.
    pub done: u64,
    /// Total.
    pub total: u64,
}

/// What a bulk load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// SKUs indexed.
    pub items: u64,
    /// Categories.
    pub categories: u64,
    /// Items refused (invalid, or contradicting the category tree), with why (the first
    /// 100 are kept).
    pub rejected: Vec<ListingError>,
    /// Number of refused items.
    pub n_rejected: u64,
    /// Items that replaced an earlier item with the same SKU id.
    pub duplicates: u64,
}

/// What a batch of changes did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    /// Changes applied.
    pub applied: u64,
    /// Changes refused, with why (the first 100 are kept).
    pub errors: Vec<ListingError>,
    /// Number of refused changes.
    pub n_errors: u64,
}

/// Size and state of one category's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategoryStats {
    /// Category id.
    pub id: u32,
    /// Parent category.
    pub parent: Option<u32>,
    /// Docs of its base (SKUs of the category and its sub-categories at the last merge).
    pub base_docs: u64,
    /// SPUs of its base.
    pub base_spus: u64,
    /// Entries of its delta.
    pub delta_entries: u32,
    /// Heap bytes of its base: columns.
    pub column_bytes: u64,
    /// Heap bytes of its base: sorted orders.
    pub order_bytes: u64,
    /// Heap bytes of its base: postings and bitsets.
    pub posting_bytes: u64,
}

/// Totals over the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Categories.
    pub categories: u64,
    /// SKUs.
    pub skus: u64,
    /// Docs over all category bases.
    pub base_docs: u64,
    /// Delta entries over all categories.
    pub delta_entries: u64,
    /// Heap bytes of all bases (columns + orders + postings).
    pub index_bytes: u64,
    /// Estimated heap bytes of the writer's SKU directory.
    pub directory_bytes: u64,
    /// Merges done since start.
    pub merges: u64,
}

#[derive(Debug)]
struct Node {
    snapshot: ArcSwap<Snapshot>,
    merge_requested: AtomicBool,
}

impl Node {
    fn new(snapshot: Snapshot) -> Node {
        Node { snapshot: ArcSwap::from_pointee(snapshot), merge_requested: AtomicBool::new(false) }
    }
}

#[derive(Debug, Default)]
struct NodeSettings {
    settings: CategorySettings,
    pins: Vec<ResolvedPin>,
}

/// Where a SKU lives: its category (the last of its path) and SPU.
#[derive(Debug, Clone, Copy)]
struct Home {
    category: u32,
    spu: u64,
}

#[derive(Debug, Default)]
struct Writer {
    homes: FxHashMap<u64, Home>,
    /// Per category, the latest delta entry of each SKU.
    latest: FxHashMap<u32, FxHashMap<u64, u32>>,
}

#[derive(Debug)]
struct Inner {
    config: ListingConfig,
    nodes: ArcSwap<FxHashMap<u32, Arc<Node>>>,
    parents: ArcSwap<FxHashMap<u32, Option<u32>>>,
    dict: ArcSwap<Dictionary>,
    settings: ArcSwap<FxHashMap<u32, Arc<NodeSettings>>>,
    writer: Mutex<Writer>,
    merge_tx: Mutex<Option<mpsc::Sender<u32>>>,
    merges: AtomicUsize,
}

/// The in-memory category listing engine. Cheap to share (`Arc` it); every method takes
/// `&self`. Queries never wait for writers; writers are serialised among themselves.
#[derive(Debug)]
pub struct ListingEngine {
    inner: Arc<Inner>,
    merger: Option<JoinHandle<()>>,
}

impl Drop for ListingEngine {
    fn drop(&mut self) {
        self.inner.merge_tx.lock().take();
        if let Some(handle) = self.merger.take() {
            let _ = handle.join();
        }
    }
}

/// The path (top level first) of `category`.
fn path_of(parents: &FxHashMap<u32, Option<u32>>, category: u32) -> Vec<u32> {
    let mut path = vec![category];
    let mut at = category;
    while let Some(Some(parent)) = parents.get(&at) {
        if path.len() > 64 {
            break;
        }
        path.push(*parent);
        at = *parent;
    }
    path.reverse();
    path
}

/// Adds `path` to `parents`, refusing a category that already has another parent.
fn add_path(parents: &mut FxHashMap<u32, Option<u32>>, item: &ListingItem) -> Result<bool> {
    let mut added = false;
    for (i, &c) in item.category_path.iter().enumerate() {
        let parent = if i == 0 { None } else { Some(item.category_path[i - 1]) };
        match parents.get(&c) {
            Some(&p) if p != parent => {
                return Err(ListingError::InvalidItem {
                    sku: item.sku.to_string(),
                    reason: format!("category {c} is under {p:?}, not {parent:?}"),
                })
            }
            Some(_) => {}
            None => {
                parents.insert(c, parent);
                added = true;
            }
        }
    }
    Ok(added)
}

impl ListingEngine {
    /// An empty engine (load it with [`ListingEngine::load`] or upserts).
    pub fn new(config: ListingConfig) -> Result<ListingEngine> {
        config.check()?;
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            merge_tx: Mutex::new((config.merge_mode == MergeMode::Background).then_some(tx)),
            config,
            nodes: ArcSwap::from_pointee(FxHashMap::default()),
            parents: ArcSwap::from_pointee(FxHashMap::default()),
            dict: ArcSwap::from_pointee(Dictionary::default()),
            settings: ArcSwap::from_pointee(FxHashMap::default()),
            writer: Mutex::new(Writer::default()),
            merges: AtomicUsize::new(0),
        });
        let merger = if inner.config.merge_mode == MergeMode::Background {
            let weak = Arc::downgrade(&inner);
            Some(std::thread::Builder::new().name("listing-merge".into()).spawn(move || merge_loop(&weak, &rx)).map_err(|e| ListingError::settings("merge_mode", e.to_string()))?)
        } else {
            None
        };
        Ok(ListingEngine { inner, merger })
    }

    /// The engine's settings.
    pub fn config(&self) -> &ListingConfig {
        &self.inner.config
    }

    /// Replaces the whole catalog: reads `items` (checking each; refused items are
    /// reported, a repeated SKU id replaces the earlier one), then builds every category's
    /// index (on `build_threads` threads, biggest categories first) and publishes them all
    /// at once. Queries see the old catalog until then. `progress` is called on this thread.
    pub fn load<I>(&self, items: I, progress: &mut dyn FnMut(LoadProgress)) -> Result<LoadReport>
    where
        I: IntoIterator<Item = ListingItem>,
    {
        let inner = &*self.inner;
        let items = items.into_iter();
        let hint = items.size_hint();
        let total = hint.1.unwrap_or(hint.0) as u64;
        let mut report = LoadReport::default();
        let mut dict = Dictionary::default();
        let mut parents: FxHashMap<u32, Option<u32>> = FxHashMap::default();
        let mut docs: Vec<DocValues> = Vec::with_capacity(hint.0);
        let mut categories: Vec<u32> = Vec::with_capacity(hint.0);
        let mut index: FxHashMap<u64, u32> = FxHashMap::default();
        index.reserve(hint.0);
        let mut read = 0u64;
        for item in items {
            read += 1;
            if read.is_multiple_of(65_536) {
                progress(LoadProgress { phase: LoadPhase::Reading, done: read, total: total.max(read) });
            }
            if let Err(e) = item.validate().and_then(|()| add_path(&mut parents, &item)) {
                report.n_rejected += 1;
                if report.rejected.len() < 100 {
                    report.rejected.push(e);
                }
                continue;
            }
            let values = DocValues::from_item(&item, &mut dict);
            match index.get(&item.sku) {
                Some(&at) => {
                    report.duplicates += 1;
                    docs[at as usize] = values;
                    categories[at as usize] = item.category();
                }
                None => {
                    index.insert(item.sku, docs.len() as u32);
                    docs.push(values);
                    categories.push(item.category());
                }
            }
        }
        progress(LoadProgress { phase: LoadPhase::Reading, done: read, total: read });
        drop(index);

        // Docs of every category node (a doc is in each category of its path).
        let mut members: FxHashMap<u32, Vec<u32>> = parents.keys().map(|&c| (c, Vec::new())).collect();
        let mut paths: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for (i, &category) in categories.iter().enumerate() {
            let path = paths.entry(category).or_insert_with(|| path_of(&parents, category));
            for c in path.iter() {
                members.entry(*c).or_default().push(i as u32);
            }
        }
        let mut jobs: Vec<(u32, Vec<u32>)> = members.into_iter().collect();
        jobs.sort_unstable_by_key(|(c, m)| (std::cmp::Reverse(m.len()), *c));
        let build_total: u64 = jobs.iter().map(|(_, m)| m.len() as u64).sum();
        let threads = match inner.config.build_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(jobs.len().max(1));
        let next = AtomicUsize::new(0);
        let built: Mutex<Vec<(u32, Base)>> = Mutex::new(Vec::with_capacity(jobs.len()));
        let (tx, rx) = mpsc::channel::<u64>();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (jobs, docs, next, built, config) = (&jobs, &docs, &next, &built, &inner.config);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((category, member)) = jobs.get(i) else { break };
                    let base = Base::build(member.iter().map(|&d| &docs[d as usize]).collect(), config);
                    built.lock().push((*category, base));
                    let _ = tx.send(member.len() as u64);
                });
            }
            drop(tx);
            let mut done = 0;
            for n in rx {
                done += n;
                progress(LoadProgress { phase: LoadPhase::Building, done, total: build_total });
            }
        });
        let nodes: FxHashMap<u32, Arc<Node>> =
            built.into_inner().into_iter().map(|(c, base)| (c, Arc::new(Node::new(Snapshot { base: Arc::new(base), log: Arc::default(), len: 0 })))).collect();
        let homes: FxHashMap<u64, Home> = docs.iter().zip(&categories).map(|(d, &c)| (d.sku, Home { category: c, spu: d.spu })).collect();
        report.items = docs.len() as u64;
        report.categories = nodes.len() as u64;
        drop(docs);

        let mut writer = inner.writer.lock();
        writer.homes = homes;
        writer.latest.clear();
        inner.dict.store(Arc::new(dict));
        inner.parents.store(Arc::new(parents));
        inner.nodes.store(Arc::new(nodes));
        // Pins follow their SKUs' SPUs in the new catalog.
        let settings = inner.settings.load_full();
        let refreshed = settings
            .iter()
            .map(|(&c, s)| {
                let pins = s.pins.iter().map(|p| ResolvedPin { spu: writer.homes.get(&p.sku).map_or(p.spu, |h| h.spu), ..*p }).collect();
                (c, Arc::new(NodeSettings { settings: s.settings.clone(), pins }))
            })
            .collect();
        inner.settings.store(Arc::new(refreshed));
        Ok(report)
    }

    /// Answers a listing query from the category's current snapshot.
    pub fn query(&self, query: &Query) -> Result<ListingPage> {
        let inner = &*self.inner;
        let nodes = inner.nodes.load();
        let node = nodes.get(&query.category).ok_or(ListingError::UnknownCategory(query.category))?;
        let snapshot = node.snapshot.load_full();
        // Loaded after the snapshot: the dictionary only grows, so it knows every value.
        let dict = inner.dict.load();
        let settings = inner.settings.load();
        let own = settings.get(&query.category);
        let s = own.map(|s| &s.settings);
        let limits = Limits {
            max_brand_run: s.and_then(|s| s.max_brand_run),
            max_shop_run: s.and_then(|s| s.max_shop_run),
            window: s.map_or(1, |s| s.window as usize),
        };
        let env = QueryEnv { config: &inner.config, dict: &dict, limits, pins: own.map_or(&[][..], |s| &s.pins) };
        execute(&snapshot, &env, query)
    }

    /// Sets a category's interleaving and pins (pinned SKUs must exist).
    pub fn set_settings(&self, category: u32, settings: CategorySettings) -> Result<()> {
        let inner = &*self.inner;
        settings.validate(inner.config.max_depth)?;
        if !inner.nodes.load().contains_key(&category) {
            return Err(ListingError::UnknownCategory(category));
        }
        let writer = inner.writer.lock();
        let pins = settings
            .pins
            .iter()
            .map(|p| writer.homes.get(&p.sku).map(|h| ResolvedPin { position: p.position, sku: p.sku, spu: h.spu }).ok_or(ListingError::UnknownSku(p.sku)))
            .collect::<Result<Vec<_>>>()?;
        let mut all = (**inner.settings.load()).clone();
        all.insert(category, Arc::new(NodeSettings { settings, pins }));
        inner.settings.store(Arc::new(all));
        Ok(())
    }

    /// A category's settings (defaults when none were set).
    pub fn settings(&self, category: u32) -> CategorySettings {
        self.inner.settings.load().get(&category).map(|s| s.settings.clone()).unwrap_or_default()
    }

    /// Applies one change; visible to the next query.
    pub fn apply(&self, change: Change) -> Result<()> {
        let mut report = self.apply_batch(std::slice::from_ref(&change));
        match report.errors.pop() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies changes in order; each category touched gets one new snapshot at the end,
    /// so a query sees all of the batch or none of it. Refused changes (unknown SKU,
    /// invalid item) are reported and skipped.
    pub fn apply_batch(&self, changes: &[Change]) -> ApplyReport {
        let inner = &*self.inner;
        let mut writer = inner.writer.lock();
        let mut batch = Batch::default();
        let mut report = ApplyReport::default();
        for change in changes {
            match apply_one(inner, &mut writer, &mut batch, change) {
                Ok(()) => report.applied += 1,
                Err(e) => {
                    report.n_errors += 1;
                    if report.errors.len() < 100 {
                        report.errors.push(e);
                    }
                }
            }
        }
        let mut to_merge = Vec::new();
        for (category, (node, snapshot, len)) in batch.touched {
            if len != snapshot.len {
                node.snapshot.store(Arc::new(Snapshot { base: snapshot.base.clone(), log: snapshot.log.clone(), len }));
            }
            if len >= inner.config.merge_threshold(snapshot.base.len()) && !node.merge_requested.swap(true, Ordering::AcqRel) {
                to_merge.push(category);
            }
        }
        match inner.config.merge_mode {
            MergeMode::Inline => {
                for category in to_merge {
                    inner.merge(category, Some(&mut writer));
                }
            }
            MergeMode::Background => {
                let tx = inner.merge_tx.lock();
                for category in to_merge {
                    if let Some(tx) = tx.as_ref() {
                        let _ = tx.send(category);
                    }
                }
            }
            MergeMode::Manual => {}
        }
        report
    }

    /// Merges the deltas of `category` (or of every category) into new bases now. A merge
    /// that lost a race with the merge thread is retried (up to 4 times) while the delta is
    /// still above the merge threshold.
    pub fn merge_now(&self, category: Option<u32>) {
        let ids: Vec<u32> = match category {
            Some(c) => vec![c],
            None => self.inner.nodes.load().keys().copied().collect(),
        };
        for id in ids {
            for attempt in 0..4 {
                self.inner.merge(id, None);
                let Some(node) = self.inner.nodes.load().get(&id).cloned() else { break };
                let s = node.snapshot.load();
                if attempt == 3 || s.len < self.inner.config.merge_threshold(s.base.len()) {
                    break;
                }
            }
        }
    }

    /// Merges the delta of every category that holds pending changes and took none since
    /// the previous call with the same `seen` (the caller keeps it between calls): deltas
    /// below the merge threshold are then bounded in time too, so a category that stops
    /// changing — the end of a bulk load, a quiet night — is queried from its columns and
    /// orders alone, not folded with up to `merge_max_changes` pending entries per query.
    /// Returns the categories merged. Blocking (a merge of a large category takes seconds).
    pub fn merge_quiet(&self, seen: &mut PendingSeen) -> usize {
        let mut pending = rustc_hash::FxHashMap::default();
        for (&id, node) in self.inner.nodes.load().iter() {
            let len = node.snapshot.load().len;
            if len > 0 {
                pending.insert(id, len);
            }
        }
        let quiet: Vec<u32> = pending.iter().filter(|(id, len)| seen.get(id) == Some(len)).map(|(&id, _)| id).collect();
        for &id in &quiet {
            self.inner.merge(id, None);
            pending.remove(&id);
        }
        *seen = pending;
        quiet.len()
    }

    /// Known categories with their sizes, by id.
    pub fn categories(&self) -> Vec<CategoryStats> {
        let nodes = self.inner.nodes.load();
        let parents = self.inner.parents.load();
        let mut out: Vec<CategoryStats> = nodes
            .iter()
            .map(|(&id, node)| {
                let s = node.snapshot.load();
                let (columns, orders, postings) = s.base.heap_bytes();
                CategoryStats {
                    id,
                    parent: parents.get(&id).copied().flatten(),
                    base_docs: s.base.len() as u64,
                    base_spus: s.base.n_spus,
                    delta_entries: s.len,
                    column_bytes: columns as u64,
                    order_bytes: orders as u64,
                    posting_bytes: postings as u64,
                }
            })
            .collect();
        out.sort_unstable_by_key(|c| c.id);
        out
    }

    /// Docs of a category's base and entries of its delta (cheap: no heap accounting).
    pub fn category_size(&self, category: u32) -> Option<(u64, u32)> {
        let nodes = self.inner.nodes.load();
        let s = nodes.get(&category)?.snapshot.load();
        Some((s.base.len() as u64, s.len))
    }

    /// Totals over the engine.
    pub fn stats(&self) -> EngineStats {
        let categories = self.categories();
        let skus = self.inner.writer.lock().homes.len() as u64;
        EngineStats {
            categories: categories.len() as u64,
            skus,
            base_docs: categories.iter().map(|c| c.base_docs).sum(),
            delta_entries: categories.iter().map(|c| u64::from(c.delta_entries)).sum(),
            index_bytes: categories.iter().map(|c| c.column_bytes + c.order_bytes + c.posting_bytes).sum(),
            // hashbrown: key + value + 1 control byte per slot, at most 7/8 full.
            directory_bytes: skus * (8 + std::mem::size_of::<Home>() as u64 + 1) * 8 / 7,
            merges: self.inner.merges.load(Ordering::Relaxed) as u64,
        }
    }

    /// The path (top level first) of a category.
    pub fn category_path(&self, category: u32) -> Result<Vec<u32>> {
        let parents = self.inner.parents.load();
        if !parents.contains_key(&category) {
            return Err(ListingError::UnknownCategory(category));
        }
        Ok(path_of(&parents, category))
    }
}

fn merge_loop(inner: &Weak<Inner>, rx: &mpsc::Receiver<u32>) {
    while let Ok(category) = rx.recv() {
        let Some(inner) = inner.upgrade() else { break };
        inner.merge(category, None);
    }
}

/// Categories touched by a batch: node, snapshot at the start, length so far.
#[derive(Default)]
struct Batch {
    touched: FxHashMap<u32, (Arc<Node>, Arc<Snapshot>, u32)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("touched", &self.touched.len()).finish()
    }
}

impl Batch {
    fn entry(&mut self, inner: &Inner, category: u32) -> Option<&mut (Arc<Node>, Arc<Snapshot>, u32)> {
        match self.touched.entry(category) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let node = inner.nodes.load().get(&category)?.clone();
                let snapshot = node.snapshot.load_full();
                let len = snapshot.len;
                Some(e.insert((node, snapshot, len)))
            }
        }
    }
}

/// The current values of `sku` in `category` (as the batch left them).
fn current(inner: &Inner, writer: &Writer, batch: &mut Batch, category: u32, home: Home, sku: u64) -> Option<DocValues> {
    let (_, snapshot, _) = batch.entry(inner, category)?;
    if let Some(&i) = writer.latest.get(&category).and_then(|l| l.get(&sku)) {
        return snapshot.log.get(i).and_then(|e| e.values.clone());
    }
    snapshot.base.find(home.spu, sku).map(|d| snapshot.base.values(d))
}

/// Appends a version of `sku` (`None`: removed) to `category`'s log.
fn append(inner: &Inner, writer: &mut Writer, batch: &mut Batch, category: u32, sku: u64, base_spu: u64, values: Option<DocValues>) {
    let Some((_, snapshot, len)) = batch.entry(inner, category) else { return };
    let latest = writer.latest.entry(category).or_default();
    let prev = latest.get(&sku).copied().unwrap_or(NONE);
    let base = match snapshot.log.get(prev) {
        Some(e) if prev != NONE => (e.base_doc, e.base_spu),
        _ => (snapshot.base.find(base_spu, sku).unwrap_or(NONE), base_spu),
    };
    snapshot.log.put(*len, sku, base, prev, values);
    latest.insert(sku, *len);
    *len += 1;
}

fn apply_one(inner: &Inner, writer: &mut Writer, batch: &mut Batch, change: &Change) -> Result<()> {
    match change {
        Change::Upsert(item) => {
            item.validate()?;
            let mut parents = (**inner.parents.load()).clone();
            if add_path(&mut parents, item)? {
                let mut nodes = (**inner.nodes.load()).clone();
                for &c in &item.category_path {
                    nodes.entry(c).or_insert_with(|| Arc::new(Node::new(Snapshot::default())));
                }
                inner.nodes.store(Arc::new(nodes));
                inner.parents.store(Arc::new(parents));
            }
            let dict_now = inner.dict.load();
            let values = match DocValues::from_known(item, &dict_now) {
                Some(values) => values,
                None => {
                    let mut dict = Dictionary::clone(&dict_now);
                    let values = DocValues::from_item(item, &mut dict);
                    inner.dict.store(Arc::new(dict));
                    values
                }
            };
            let new_path = item.category_path.clone();
            let old = writer.homes.get(&item.sku).copied();
            if let Some(old) = old {
                let parents = inner.parents.load();
                for c in path_of(&parents, old.category).into_iter().filter(|c| !new_path.contains(c)) {
                    append(inner, writer, batch, c, item.sku, old.spu, None);
                }
            }
            let base_spu = old.map_or(item.spu, |h| h.spu);
            for &c in &new_path {
                append(inner, writer, batch, c, item.sku, base_spu, Some(values.clone()));
            }
            writer.homes.insert(item.sku, Home { category: item.category(), spu: item.spu });
            refresh_pins(inner, item.sku, item.spu);
            Ok(())
        }
        Change::Remove { sku } => {
            let home = writer.homes.remove(sku).ok_or(ListingError::UnknownSku(*sku))?;
            let parents = inner.parents.load();
            for c in path_of(&parents, home.category) {
                append(inner, writer, batch, c, *sku, home.spu, None);
            }
            Ok(())
        }
        _ => {
            let sku = change.sku();
            let home = *writer.homes.get(&sku).ok_or(ListingError::UnknownSku(sku))?;
            let mut values = current(inner, writer, batch, home.category, home, sku).ok_or(ListingError::UnknownSku(sku))?;
            match change {
                Change::Price { price, .. } => values.price = *price,
                Change::Stock { stock, .. } => values.stock = *stock,
                Change::Shelf { on_shelf, .. } => values.on_shelf = *on_shelf,
                Change::Quality { score, .. } => values.quality = if score.is_nan() { 0.0 } else { *score },
                Change::Counters { sales, reviews, .. } => {
                    values.sales = saturate(*sales);
                    values.reviews = saturate(*reviews);
                }
                Change::Upsert(_) | Change::Remove { .. } => {}
            }
            let parents = inner.parents.load();
            for c in path_of(&parents, home.category) {
                append(inner, writer, batch, c, sku, home.spu, Some(values.clone()));
            }
            Ok(())
        }
    }
}

/// Points pins of `sku` at its (new) SPU.
fn refresh_pins(inner: &Inner, sku: u64, spu: u64) {
    let settings = inner.settings.load();
    if !settings.values().any(|s| s.pins.iter().any(|p| p.sku == sku && p.spu != spu)) {
        return;
    }
    let updated = settings
        .iter()
        .map(|(&c, s)| {
            let pins = s.pins.iter().map(|p| if p.sku == sku { ResolvedPin { spu, ..*p } } else { *p }).collect();
            (c, Arc::new(NodeSettings { settings: s.settings.clone(), pins }))
        })
        .collect();
    inner.settings.store(Arc::new(updated));
}

/// A merged base waiting to be installed.
struct Prepared {
    node: Arc<Node>,
    from: Arc<Snapshot>,
    base: Base,
    map: MergeMap,
}

impl Inner {
    /// Merges `category`'s delta into a new base. The base is built without the writer
    /// lock (unless `held` is given); installing it replays, under the lock, the entries
    /// appended meanwhile onto a fresh log.
    fn merge(&self, category: u32, held: Option<&mut Writer>) {
        let Some(node) = self.nodes.load().get(&category).cloned() else { return };
        let Some(prepared) = self.prepare(node.clone()) else {
            node.merge_requested.store(false, Ordering::Release);
            return;
        };
        match held {
            Some(writer) => self.install(category, prepared, writer),
            None => {
                let mut writer = self.writer.lock();
                self.install(category, prepared, &mut writer);
            }
        }
    }

    fn prepare(&self, node: Arc<Node>) -> Option<Prepared> {
        let from = node.snapshot.load_full();
        if from.len == 0 {
            return None;
        }
        let folded = from.fold();
        let mut dirty = DenseBits::zeros(from.base.len());
        for &d in &folded.dirty {
            dirty.set(d);
        }
        let live = folded.live.into_iter().map(|(i, v, _)| (i, v)).collect();
        let (base, map) = from.base.merge(&dirty, live, &self.config);
        Some(Prepared { node, from, base, map })
    }

    fn install(&self, category: u32, prepared: Prepared, writer: &mut Writer) {
        let Prepared { node, from, base, map } = prepared;
        let now = node.snapshot.load_full();
        let still_current = self.nodes.load().get(&category).is_some_and(|n| Arc::ptr_eq(n, &node));
        if !still_current || !Arc::ptr_eq(&now.log, &from.log) || !Arc::ptr_eq(&now.base, &from.base) {
            node.merge_requested.store(false, Ordering::Release);
            return;
        }
        let log = Arc::new(DeltaLog::default());
        let mut latest = FxHashMap::default();
        let mut len = 0u32;
        for i in from.len..now.len {
            let Some(e) = now.log.get(i) else { continue };
            if !e.live_at(now.len) {
                continue;
            }
            // The SKU's state when the merge started: its latest earlier entry, else the old base.
            let mut p = e.prev;
            while p != NONE && p >= from.len {
                p = now.log.get(p).map_or(NONE, |x| x.prev);
            }
            let new_doc = if p != NONE {
                map.entry_to_new.get(&p).copied().unwrap_or(NONE)
            } else if e.base_doc != NONE {
                map.old_to_new.get(e.base_doc as usize).copied().unwrap_or(NONE)
            } else {
                NONE
            };
            if e.values.is_none() && new_doc == NONE {
                continue;
            }
            let new_spu = if new_doc == NONE { 0 } else { base.spus[new_doc as usize] };
            log.put(len, e.sku, (new_doc, new_spu), NONE, e.values.clone());
            latest.insert(e.sku, len);
            len += 1;
        }
        writer.latest.insert(category, latest);
        node.snapshot.store(Arc::new(Snapshot { base: Arc::new(base), log, len }));
        node.merge_requested.store(false, Ordering::Release);
        self.merges.fetch_add(1, Ordering::Relaxed);
    }
}
