//! The category listing engine (DESIGN.md §4.7, issue 16): every category's SKUs held in
//! memory, filtered, counted, sorted, de-duplicated by SPU, interleaved and paged in a few
//! milliseconds, with changes (price, stock, shelf, new and removed SKUs, quality) visible to
//! the next query. HTTP-free and backend-free: the server owns durability and routes.
//!
//! # Public API
//! * [`ListingEngine`]: [`load`](ListingEngine::load) (bulk, with progress, categories built
//!   in parallel), [`query`](ListingEngine::query) ([`Query`] → [`ListingPage`]),
//!   [`apply`](ListingEngine::apply) / [`apply_batch`](ListingEngine::apply_batch)
//!   ([`Change`]), [`set_settings`](ListingEngine::set_settings) ([`CategorySettings`]:
//!   interleaving, pins), [`merge_now`](ListingEngine::merge_now), [`stats`](ListingEngine::stats).
//! * [`ListingItem`] (from a catalog [`meridian_catalog::SkuRecord`] plus [`ListingExtras`],
//!   or a [`ListingRecord`] line), [`SortKey`], [`Filters`], [`Paging`], [`Facets`].
//! * [`quality`]: the score formula, the batch rescoring and the live adjustment.
//! * [`PageCache`]: first-page cache + sharded LRU + two fallback levels, generic over the
//!   rendered value.
//! * [`ListingError`]: typed errors with stable [`codes`](ListingError::code).
//! * [`ListingConfig`]: the `[listing]` config section.
//! * The capability around the engine (DESIGN.md §4.7): [`catalog`] (the durable
//!   catalog's SKU, bulk-load lines, product-change messages), [`store`] (the catalog,
//!   behaviour counts and templates in the module's state store), [`processor`] (the
//!   product-change processor, exactly once with its positions, and the behaviour counter)
//!   and [`service`] (one engine per app rebuilt from the catalog at start, jobs with
//!   progress, the quality run, [`service::ListingCatalog`] — the catalog history reads).
//!
//! # Index design
//! Every category node has its **own index** covering its whole subtree (a SKU with path
//! `[top, mid, leaf]` is indexed three times), so a query on any node touches one index and
//! SPU de-duplication, interleaving and totals need no merging across children. The cost is
//! memory proportional to the tree depth (below).
//!
//! A node's index is a [`delta`]-carrying snapshot: an immutable **base** plus a prefix of
//! an append-only **delta log**. The base gives every doc a dense local id `0..n`, ordered by
//! `(spu, sku)` so the SKUs of one SPU are contiguous ("groups"), and holds:
//! * columns: sku, spu, brand, shop, price, stock, sales, reviews, launch, quality,
//!   attribute value ids (CSR);
//! * one pre-sorted order (`Vec<u32>` of ids) per [`SortKey`] — six in all, each by
//!   `(key, spu, sku)`, a total order, so listings are deterministic;
//! * postings per brand, shop, attribute value and price bucket (roaring when sparse, a
//!   dense bitset above 1/16 density, where roaring would use bitmap containers anyway),
//!   and dense bitsets for on-shelf, in-stock and group starts.
//!
//! # Query
//! 1. Filters become dense bitsets over the base (OR within a key, AND across keys, AND
//!    on-shelf, minus docs the delta replaced). The delta's live docs are tested one by one
//!    (a bit mask of the terms each satisfies).
//! 2. **Exact total** = distinct SPUs among matches: on the base, the number of groups
//!    holding a set bit, counted 64 docs per step with one addition per word (see
//!    `bits.rs`); plus delta SPUs not already counted.
//! 3. **Facets** (brands, attribute values, price buckets) are *disjunctive*: a key's counts
//!    use every filter but that key's own. Counts are distinct SPUs, like the total. Value
//!    counts are word-parallel over dense postings and per-member over sparse ones; brands,
//!    when every SPU of the category has one brand (checked at build), are counted in one
//!    pass over one representative doc per matching SPU. Big categories spread the postings
//!    over the machine's cores.
//! 4. **The page**: the base's order for the sort is walked from the start (or from the
//!    cursor's position, found by binary search), testing each doc in the filter bitset, and
//!    merged with the sorted delta matches. Work is proportional to the depth reached, not to
//!    the category size. When matches are so few that the walk would be long, the matches
//!    are collected and sorted lazily instead (same sequence, `ListingConfig::plan`).
//! 5. **SPU de-duplication**: a doc is kept only if no matching sibling of its SPU sorts
//!    before it (siblings are contiguous), so each SPU appears once, as its best SKU.
//! 6. **Pins and interleaving in one pass** ([`CategorySettings`] says the exact rule): the
//!    sequencer emits a pin when the output reaches its position, else the first of the next
//!    `window` candidates that breaks no brand/shop run limit, else the first candidate.
//!    Page N is the slice `[(N-1)·size, N·size)` of that deterministic sequence; a cursor
//!    carries the sequencer's complete state (position, runs, last stream key, buffered
//!    candidates, pins done), so cursor paging yields exactly page-number paging's items.
//!    Page numbers reach `max_depth` items at most; cursors have no depth limit.
//!
//! # Updates
//! One writer at a time (a mutex among writers); readers never take it. A change appends
//! the SKU's new version to the delta log of each category of its path and publishes a new
//! snapshot (`ArcSwap` store of `{base, log, len}`): O(1), no rebuild. A reader loads one
//! snapshot and sees exactly its prefix: an entry is live for a reader of length `len` iff
//! the entry that superseded it (if any) is at or beyond `len`, so a snapshot never changes
//! under a reader. A batch publishes each touched category once, so it is seen whole or not
//! at all. Once a category's log holds `max(merge_min_changes, n/128)` entries (capped at
//! `merge_max_changes`) it is merged into a new base on the merge thread: columns and
//! postings rebuilt linearly, orders merged (not re-sorted); entries appended meanwhile are
//! replayed onto a fresh log under the writer lock, and the new snapshot is swapped in.
//! Below the threshold a delta is bounded in time instead: [`ListingEngine::merge_quiet`]
//! (the server's `listing_merge_quiet` task, every `merge_quiet_secs`) merges every
//! category whose pending changes did not grow since its previous call — the end of a bulk
//! load leaves up to `merge_max_changes` entries that every query would fold otherwise.
//!
//! # Memory per SKU (per category node indexing it)
//! Columns 72 B (sku 8, spu 8, brand 4, shop 4, price 8, stock 4, sales 4, reviews 4,
//! launch 8, quality 4, attribute offsets 4 + 4 per attribute value: 12 with 3 values),
//! orders 6 × 4 = 24 B, postings ≈ 2 B per posting entry in sparse roaring bitmaps or one bit
//! per doc per dense posting, plus 3 bitset bits: about **106 B per doc in a 10M-SKU
//! category, 110–155 B in small ones** (sparse postings cost relatively more there). The
//! writer's SKU directory adds ~29 B per SKU, and delta entries (~100 B each) live until
//! merged. A SKU in a three-level tree is indexed by three nodes: ≈ 350–460 B in all.
//! [`ListingEngine::stats`] and [`ListingEngine::categories`] report the measured figures.
//!
//! # Costs under updates
//! A reader pays O(delta entries) per query (folding the log, testing each live entry
//! against the filters). Under a sustained change rate the delta settles near
//! `rate × merge time` (a 10M-doc merge takes seconds), so very high sustained rates on one
//! huge category raise query latency until the next merge; batches of changes are ~10×
//! cheaper for the writer than single changes.
//!
//! # Invariants
//! * A listing holds each matching SPU exactly once; its length is `total`.
//! * The same snapshot, query and settings always give the same sequence.
//! * Only on-shelf SKUs are listed; pins that do not match the query are ignored.

pub mod cache;
pub mod catalog;
pub mod config;
pub mod processor;
pub mod quality;
pub mod service;
pub mod store;

mod base;
mod bits;
mod cursor;
mod delta;
mod engine;
mod error;
mod model;
mod query;
mod walk;

pub use cache::{CacheStats, Clock, ManualClock, PageCache, PageKey, Served, ServedFrom, SystemClock};
pub use config::{CategorySettings, ListingConfig, MergeMode, Pin, PlanChoice, MAX_PINS};
pub use engine::{ApplyReport, CategoryStats, EngineStats, ListingEngine, LoadPhase, LoadProgress, LoadReport, PendingSeen};
pub use error::{ListingError, Result};
pub use model::{Change, ItemMetrics, ListingExtras, ListingItem, ListingRecord, SortKey};
pub use query::{AttributeFacet, FacetCount, Facets, Filters, ListedItem, ListingPage, Paging, PriceRangeCount, Query, QueryStats};
