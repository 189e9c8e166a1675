//! Queries (filters, sort, paging, facets) and their evaluation on one category snapshot:
//! filter bitmaps, exact SPU totals, disjunctive facet counts, and the page itself.

use crate::base::{Base, NONE};
use crate::bits::{DenseBits, Posting};
use crate::config::{ListingConfig, PlanChoice};
use crate::cursor::{fingerprint, CursorState};
use crate::delta::Snapshot;
use crate::error::{ListingError, Result};
use crate::model::{Dictionary, DocValues, SortKey};
use crate::walk::{Cand, DeltaMatch, Limits, Plan, Sequencer, Src, Stream};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Filters of a query. Within one key values are OR-ed, across keys AND-ed; an empty list is
/// no filter. Only SKUs on the shelf are ever listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Any of these brands.
    pub brands: Vec<u32>,
    /// Any of these shops.
    pub shops: Vec<u32>,
    /// Price at least this, cents (inclusive).
    pub price_min: Option<u64>,
    /// Price at most this, cents (inclusive).
    pub price_max: Option<u64>,
    /// Attribute key → any of these values. An unknown key is an error; an unknown value
    /// matches nothing.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Only SKUs with stock.
    pub in_stock: bool,
}

/// Which slice of the listing to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// Page `page` (1-based) of `size` items; `page × size` is limited to `max_depth`.
    Page {
        /// 1-based page number.
        page: u32,
        /// Items per page.
        size: u32,
    },
    /// The `size` items after the page that returned `cursor` (no depth limit; the cost is
    /// that of one page).
    Cursor {
        /// A `next_cursor` of an earlier page of the same query.
        cursor: String,
        /// Items per page.
        size: u32,
    },
}

impl Default for Paging {
    fn default() -> Self {
        Paging::Page { page: 1, size: 20 }
    }
}

/// A listing query on one category (and its sub-categories).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Query {
    /// Category id.
    pub category: u32,
    /// Filters.
    pub filters: Filters,
    /// Sort.
    pub sort: SortKey,
    /// Page or cursor.
    pub paging: Paging,
    /// Compute facet counts.
    pub facets: bool,
}

/// One item of a page (one SKU; its SPU appears nowhere else in the listing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedItem {
    /// SKU id.
    pub sku: u64,
    /// SPU id.
    pub spu: u64,
    /// Brand id.
    pub brand: u32,
    /// Shop id.
    pub shop: u32,
    /// Price, cents.
    pub price: u64,
    /// Units in stock.
    pub stock: u32,
    /// Quality score.
    pub quality: f32,
    /// Placed by a pin.
    pub pinned: bool,
}

/// A facet value and the number of distinct SPUs that would match if it were the only
/// value selected for its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetCount<T> {
    /// The value.
    pub value: T,
    /// Distinct SPUs.
    pub count: u64,
}

/// Counts of one attribute key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeFacet {
    /// The key.
    pub key: String,
    /// Its values with a non-zero count, most first (ties by value).
    pub values: Vec<FacetCount<String>>,
}

/// Count of one price bucket (see `ListingConfig::price_buckets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRangeCount {
    /// Lowest price of the bucket, cents.
    pub min: u64,
    /// First price above the bucket, cents (`None` for the last bucket).
    pub max: Option<u64>,
    /// Distinct SPUs.
    pub count: u64,
}

/// Facet counts, disjunctive: the counts of a key are computed with every filter of the
/// query except that key's own, so selecting another value of the key is predictable.
/// Counts are distinct SPUs (like the total); only non-zero counts are listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    /// Brands, most first (ties by id).
    pub brands: Vec<FacetCount<u32>>,
    /// Attribute keys, by name.
    pub attributes: Vec<AttributeFacet>,
    /// Price buckets, cheapest first.
    pub price_ranges: Vec<PriceRangeCount>,
}

/// How a query was answered (for metrics and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Docs of the category's base.
    pub base_docs: u64,
    /// Entries of the category's delta.
    pub delta_entries: u32,
    /// Docs matching the filters (SKUs, not SPUs).
    pub matching_docs: u64,
    /// The base was walked in sort order (else its matches were sorted).
    pub walked_order: bool,
    /// Order positions or sorted matches looked at.
    pub walked: u64,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingPage {
    /// The items.
    pub items: Vec<ListedItem>,
    /// Distinct SPUs matching the filters: exactly the length of the whole listing.
    pub total: u64,
    /// Position of the first item in the listing (0-based).
    pub offset: u64,
    /// Page number of this page (1-based; for cursor pages `offset / size + 1`).
    pub page: u32,
    /// Page size.
    pub page_size: u32,
    /// Last page number at this size (1 for an empty listing).
    pub last_page: u32,
    /// Cursor of the next page, `None` after the last item.
    pub next_cursor: Option<String>,
    /// Facet counts, when asked for.
    pub facets: Option<Facets>,
    /// How it was computed.
    pub stats: QueryStats,
}

/// A pin resolved to its SPU when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResolvedPin {
    pub(crate) position: u32,
    pub(crate) sku: u64,
    pub(crate) spu: u64,
}

/// What a query needs besides the snapshot.
#[derive(Debug)]
pub(crate) struct QueryEnv<'a> {
    pub(crate) config: &'a ListingConfig,
    pub(crate) dict: &'a Dictionary,
    pub(crate) limits: Limits,
    pub(crate) pins: &'a [ResolvedPin],
}

/// Categories at least this big count facets on several threads.
const PARALLEL_FACETS_MIN: usize = 262_144;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Brand(Vec<u32>),
    Shop(Vec<u32>),
    Price(u64, u64),
    InStock,
    Attr(u16, Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FacetKey {
    Brand,
    Price,
    Attr(u16),
}

fn sorted_unique<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// The query's filters as terms (one bit each in a delta doc's mask), and its fingerprint.
fn resolve(query: &Query, dict: &Dictionary) -> Result<(Vec<Term>, u64)> {
    let f = &query.filters;
    if let (Some(min), Some(max)) = (f.price_min, f.price_max) {
        if min > max {
            return Err(ListingError::InvalidPriceRange { min: f.price_min, max: f.price_max });
        }
    }
    let mut terms = Vec::new();
    let mut canon = format!("{}|{}|", query.category, query.sort.as_str());
    if !f.brands.is_empty() {
        let b = sorted_unique(&f.brands);
        canon.push_str(&format!("b{b:?}|"));
        terms.push(Term::Brand(b));
    }
    if !f.shops.is_empty() {
        let s = sorted_unique(&f.shops);
        canon.push_str(&format!("s{s:?}|"));
        terms.push(Term::Shop(s));
    }
    if f.price_min.is_some() || f.price_max.is_some() {
        let (min, max) = (f.price_min.unwrap_or(0), f.price_max.unwrap_or(u64::MAX));
        canon.push_str(&format!("p{min}-{max}|"));
        terms.push(Term::Price(min, max));
    }
    if f.in_stock {
        canon.push_str("i|");
        terms.push(Term::InStock);
    }
    for (key, values) in &f.attributes {
        if values.is_empty() {
            continue;
        }
        let key_id = dict.key_id(key).ok_or_else(|| ListingError::UnknownAttribute(key.clone()))?;
        let names = sorted_unique(values);
        canon.push_str(&format!("a{key:?}={names:?}|"));
        let ids = sorted_unique(&names.iter().filter_map(|v| dict.value_id(key_id, v)).collect::<Vec<_>>());
        terms.push(Term::Attr(key_id, ids));
    }
    if terms.len() > 60 {
        return Err(ListingError::InvalidFilter(format!("{} filter keys; use at most 60", terms.len())));
    }
    Ok((terms, fingerprint(canon.as_bytes())))
}

fn term_matches(term: &Term, v: &DocValues) -> bool {
    match term {
        Term::Brand(b) => b.binary_search(&v.brand).is_ok(),
        Term::Shop(s) => s.binary_search(&v.shop).is_ok(),
        Term::Price(min, max) => (*min..=*max).contains(&v.price),
        Term::InStock => v.stock > 0,
        Term::Attr(_, ids) => v.attrs.iter().any(|a| ids.binary_search(a).is_ok()),
    }
}

fn term_bits(term: &Term, base: &Base, config: &ListingConfig) -> DenseBits {
    let n = base.len();
    let mut bits = DenseBits::zeros(n);
    match term {
        Term::Brand(ids) => ids.iter().filter_map(|b| base.brand_post.get(b)).for_each(|p| p.or_into(&mut bits)),
        Term::Shop(ids) => ids.iter().filter_map(|s| base.shop_post.get(s)).for_each(|p| p.or_into(&mut bits)),
        Term::Attr(_, ids) => ids.iter().filter_map(|v| base.value_post.get(v)).for_each(|p| p.or_into(&mut bits)),
        Term::InStock => bits = base.in_stock.clone(),
        Term::Price(min, max) => {
            for (i, posting) in base.bucket_post.iter().enumerate() {
                let (lo, hi) = config.bucket_bounds(i);
                let last = hi.map_or(u64::MAX, |h| h - 1);
                if last < *min || lo > *max {
                    continue;
                }
                if lo >= *min && last <= *max {
                    posting.or_into(&mut bits);
                } else {
                    // Part of a bucket: its docs in range are one run of the price order.
                    let order = &base.orders[SortKey::PriceAsc.index()];
                    let (from, to) = (lo.max(*min), last.min(*max));
                    let start = order.partition_point(|&d| base.prices[d as usize] < from);
                    let end = start + order[start..].partition_point(|&d| base.prices[d as usize] <= to);
                    for &d in &order[start..end] {
                        bits.set(d);
                    }
                }
            }
        }
    }
    bits
}

/// A live delta doc on the shelf with the terms it satisfies and the base group of its SPU
/// (`NONE` when the base has none).
#[derive(Debug, Clone, Copy)]
struct DeltaDoc<'a> {
    values: &'a DocValues,
    mask: u64,
    group: u32,
}

/// A set of base groups: a hash set while small, a bitset when many.
#[derive(Debug)]
enum GroupSet {
    Small(FxHashSet<u32>),
    Bits(DenseBits),
}

impl GroupSet {
    fn new(n: usize, expected: usize) -> GroupSet {
        if expected * 64 > n {
            GroupSet::Bits(DenseBits::zeros(n))
        } else {
            GroupSet::Small(FxHashSet::default())
        }
    }

    /// Adds `g`; false when it was there.
    fn insert(&mut self, g: u32) -> bool {
        match self {
            GroupSet::Small(s) => s.insert(g),
            GroupSet::Bits(b) => {
                let new = !b.get(g);
                b.set(g);
                new
            }
        }
    }
}

/// Runs `query` on `snapshot`.
pub(crate) fn execute(snapshot: &Snapshot, env: &QueryEnv<'_>, query: &Query) -> Result<ListingPage> {
    let (terms, fp) = resolve(query, env.dict)?;
    let (size, cursor) = match &query.paging {
        Paging::Page { size, .. } => (*size, None),
        Paging::Cursor { cursor, size } => (*size, Some(CursorState::decode(cursor)?)),
    };
    if size == 0 || size > env.config.max_page_size {
        return Err(ListingError::InvalidPageSize { size, max: env.config.max_page_size });
    }
    if let Some(c) = &cursor {
        if c.fingerprint != fp {
            return Err(ListingError::BadCursor("it was issued for another query".into()));
        }
    }
    let base = &*snapshot.base;
    let n = base.len();
    let folded = snapshot.fold();
    let full: u64 = if terms.is_empty() { 0 } else { u64::MAX >> (64 - terms.len()) };

    // Base: shelf minus the docs the delta replaced, and each term's bitmap.
    let mut shelf = base.on_shelf.clone();
    for &d in &folded.dirty {
        shelf.clear(d);
    }
    let bits: Vec<DenseBits> = terms.iter().map(|t| term_bits(t, base, env.config)).collect();
    let and_except = |skip: Option<usize>| {
        let mut out = shelf.clone();
        for (i, b) in bits.iter().enumerate() {
            if Some(i) != skip {
                out.and_assign(b);
            }
        }
        out
    };
    let filter = and_except(None);

    // Delta: live docs on the shelf, with the terms each satisfies.
    let delta: Vec<DeltaDoc<'_>> = folded
        .live
        .iter()
        .filter(|(_, v, _)| v.on_shelf)
        .map(|&(_, v, same)| {
            let group = if same != NONE {
                base.group_start_of(same)
            } else {
                let range = base.spu_range(v.spu);
                if range.is_empty() {
                    NONE
                } else {
                    range.start as u32
                }
            };
            DeltaDoc { values: v, mask: terms.iter().enumerate().filter(|(_, t)| term_matches(t, v)).fold(0u64, |m, (i, _)| m | 1 << i), group }
        })
        .collect();
    let matches: Vec<DeltaMatch<'_>> = delta.iter().filter(|d| d.mask == full).map(|d| DeltaMatch { values: d.values, group: d.group }).collect();

    // Exact total: distinct SPUs of base matches, plus delta SPUs the base does not cover.
    // Delta matches that may share an SPU with another match are noted for de-duplication.
    let mut total = filter.distinct_groups(&base.group_start);
    let mut groups = GroupSet::new(n, matches.len());
    let mut new_spus: FxHashSet<u64> = FxHashSet::default();
    let mut multi: FxHashSet<u32> = FxHashSet::default();
    let mut covered = vec![false; matches.len()];
    for (i, m) in matches.iter().enumerate() {
        if m.group == NONE {
            if new_spus.insert(m.values.spu) {
                total += 1;
            }
            continue;
        }
        covered[i] = base.group_at(m.group).any(|s| filter.get(s));
        if !groups.insert(m.group) {
            multi.insert(m.group);
        } else if !covered[i] {
            total += 1;
        }
    }
    let siblings: Vec<usize> = (0..matches.len()).filter(|&i| matches[i].group == NONE || covered[i] || multi.contains(&matches[i].group)).collect();
    let matching_docs = filter.count_ones() + matches.len() as u64;

    // Paging limits.
    let last_page = total.div_ceil(u64::from(size)).max(1);
    let last_page_u32 = u32::try_from(last_page).unwrap_or(u32::MAX);
    let (skip, state) = match (&query.paging, cursor) {
        (Paging::Page { page, .. }, _) => {
            let out_of_range = |reason: String| Err(ListingError::PageOutOfRange { page: *page, reason });
            if *page == 0 {
                return out_of_range("pages start at 1".into());
            }
            let offset = u64::from(*page - 1) * u64::from(size);
            if offset + u64::from(size) > u64::from(env.config.max_depth) {
                return out_of_range(format!("pages reach item {} at most; use a cursor to go deeper", env.config.max_depth));
            }
            if *page > 1 && offset >= total {
                return out_of_range(format!("the last page is {last_page}"));
            }
            (offset, CursorState { fingerprint: fp, ..CursorState::default() })
        }
        (Paging::Cursor { .. }, Some(state)) => (0, state),
        (Paging::Cursor { .. }, None) => return Err(ListingError::BadCursor("missing".into())),
    };

    let facets = if query.facets { Some(facets(base, env, &terms, &and_except, &filter, &delta, full)) } else { None };

    // Pins that match, one per SPU, and the candidates buffered by the cursor.
    let delta_by_sku: FxHashMap<u64, DeltaMatch<'_>> =
        if env.pins.is_empty() && state.buffer.is_empty() { FxHashMap::default() } else { matches.iter().map(|m| (m.values.sku, *m)).collect() };
    let sort = query.sort;
    let find = |spu: u64, sku: u64| -> Option<Cand<'_>> {
        if let Some(m) = delta_by_sku.get(&sku) {
            return Some(Cand::of_delta(*m, sort));
        }
        base.find(spu, sku).filter(|&d| filter.get(d)).map(|d| Cand::of_base(base, sort, d))
    };
    let mut pinned_spus = FxHashSet::default();
    let mut pins = VecDeque::new();
    let mut ordered_pins = env.pins.to_vec();
    ordered_pins.sort_unstable_by_key(|p| (p.position, p.sku));
    for pin in ordered_pins {
        if let Some(c) = find(pin.spu, pin.sku) {
            if pinned_spus.insert(c.spu) && !state.pins_done.contains(&c.sku) {
                pins.push_back((pin.position, c));
            }
        }
    }
    let mut buffer: Vec<Cand<'_>> = state.buffer.iter().filter_map(|&(spu, sku)| find(spu, sku)).filter(|c| !pinned_spus.contains(&c.spu)).collect();
    buffer.sort_unstable_by_key(|c| c.ord());

    // Walk the order, or sort the matches: walking costs about need·n/matches steps.
    let window = if env.limits.max_brand_run.is_some() || env.limits.max_shop_run.is_some() { env.limits.window } else { 1 };
    let limits = Limits { window, ..env.limits };
    let need = (skip + u64::from(size) + window as u64 + pins.len() as u64) as usize;
    let plan = match env.config.plan {
        PlanChoice::Walk => Plan::Walk,
        PlanChoice::Sort => Plan::Sort,
        PlanChoice::Auto => {
            let docs_per_spu = (matching_docs as f64 / total.max(1) as f64).max(1.0);
            let walk_steps = need as f64 * docs_per_spu * n as f64 / (filter.count_ones().max(1) as f64);
            if walk_steps <= 4.0 * filter.count_ones() as f64 + 1024.0 {
                Plan::Walk
            } else {
                Plan::Sort
            }
        }
    };
    let stream = Stream::new(base, sort, &filter, &matches, &siblings, &pinned_spus, state.last, plan, need);
    let mut seq = Sequencer::new(stream, pins, buffer, limits, &state);
    let offset = seq.position() + skip;
    for _ in 0..skip {
        if seq.next_item().is_none() {
            break;
        }
    }
    let mut items = Vec::with_capacity(size as usize);
    while items.len() < size as usize {
        let Some((c, pinned)) = seq.next_item() else { break };
        items.push(listed(base, &c, pinned));
    }
    let next_cursor = if seq.position() < total { Some(seq.state(fp).encode()) } else { None };
    let stats = QueryStats {
        base_docs: n as u64,
        delta_entries: snapshot.len,
        matching_docs,
        walked_order: plan == Plan::Walk,
        walked: seq.stream.walked,
    };
    Ok(ListingPage {
        items,
        total,
        offset,
        page: u32::try_from(offset / u64::from(size) + 1).unwrap_or(u32::MAX),
        page_size: size,
        last_page: last_page_u32,
        next_cursor,
        facets,
        stats,
    })
}

fn listed(base: &Base, c: &Cand<'_>, pinned: bool) -> ListedItem {
    match c.src {
        Src::Base(d) => {
            let u = d as usize;
            ListedItem { sku: c.sku, spu: c.spu, brand: c.brand, shop: c.shop, price: base.prices[u], stock: base.stocks[u], quality: base.quality[u], pinned }
        }
        Src::Delta(v, _) => ListedItem { sku: c.sku, spu: c.spu, brand: c.brand, shop: c.shop, price: v.price, stock: v.stock, quality: v.quality, pinned },
    }
}

/// Disjunctive facet counts: for each key, every filter but its own.
#[allow(clippy::too_many_arguments)]
fn facets(
    base: &Base,
    env: &QueryEnv<'_>,
    terms: &[Term],
    and_except: &dyn Fn(Option<usize>) -> DenseBits,
    filter: &DenseBits,
    delta: &[DeltaDoc<'_>],
    full: u64,
) -> Facets {
    let config = env.config;
    let dict = env.dict;
    let term_of = |key: FacetKey| {
        terms.iter().position(|t| match (t, key) {
            (Term::Brand(_), FacetKey::Brand) | (Term::Price(..), FacetKey::Price) => true,
            (Term::Attr(k, _), FacetKey::Attr(f)) => *k == f,
            _ => false,
        })
    };
    // Attribute values of the base, grouped by key.
    let mut values_by_key: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    for &v in base.value_post.keys() {
        values_by_key.entry(dict.key_of(v)).or_default().push(v);
    }
    for d in delta {
        for &v in d.values.attrs.iter() {
            values_by_key.entry(dict.key_of(v)).or_default();
        }
    }
    let mut keys = vec![FacetKey::Brand, FacetKey::Price];
    keys.extend(values_by_key.keys().map(|&k| FacetKey::Attr(k)));

    // The filter of each key: every term but the key's own.
    let key_bits: Vec<Option<DenseBits>> = keys.iter().map(|&k| term_of(k).map(|t| and_except(Some(t)))).collect();
    let bits_of = |i: usize| key_bits[i].as_ref().unwrap_or(filter);
    // Base counts of every (key, value): the heavy part, on several threads for big categories.
    let mut tasks: Vec<(usize, u32, &Posting)> = Vec::new();
    let mut per_key: Vec<FxHashMap<u32, u64>> = vec![FxHashMap::default(); keys.len()];
    for (i, &key) in keys.iter().enumerate() {
        match key {
            // One brand per SPU: count the brand of one representative doc per SPU, a pass
            // over the matching SPUs instead of over every brand's posting.
            FacetKey::Brand if base.brand_uniform && base.max_brand < 1 << 22 => {
                let mut histogram = vec![0u64; base.max_brand as usize + 1];
                for d in bits_of(i).first_in_groups(&base.group_start).iter_ones() {
                    histogram[base.brands[d as usize] as usize] += 1;
                }
                per_key[i] = histogram.into_iter().enumerate().filter(|&(_, c)| c > 0).map(|(b, c)| (b as u32, c)).collect();
            }
            FacetKey::Brand => tasks.extend(base.brand_post.iter().map(|(&b, p)| (i, b, p))),
            FacetKey::Price => tasks.extend(base.bucket_post.iter().enumerate().map(|(b, p)| (i, b as u32, p))),
            FacetKey::Attr(k) => tasks.extend(values_by_key.get(&k).into_iter().flatten().filter_map(|v| base.value_post.get(v).map(|p| (i, *v, p)))),
        }
    }
    let count_all = |part: &[(usize, u32, &Posting)]| -> Vec<(usize, u32, u64)> {
        part.iter().map(|&(i, v, p)| (i, v, p.distinct_groups_and(bits_of(i), &base.group_start))).filter(|t| t.2 > 0).collect()
    };
    let threads = if base.len() >= PARALLEL_FACETS_MIN { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) } else { 1 };
    let counted: Vec<(usize, u32, u64)> = if threads > 1 && tasks.len() > 1 {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let part: Vec<(usize, u32, &Posting)> = tasks.iter().copied().skip(t).step_by(threads).collect();
                    let count_all = &count_all;
                    scope.spawn(move || count_all(&part))
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    } else {
        count_all(&tasks)
    };
    for (i, v, c) in counted {
        per_key[i].insert(v, c);
    }

    // Base groups holding more than one live delta doc.
    let mut multi_groups: FxHashSet<u32> = FxHashSet::default();
    let mut groups = GroupSet::new(base.len(), delta.len());
    for d in delta.iter().filter(|d| d.group != NONE) {
        if !groups.insert(d.group) {
            multi_groups.insert(d.group);
        }
    }

    let mut out = Facets::default();
    for (ki, key) in keys.into_iter().enumerate() {
        let term = term_of(key);
        let bits_k = bits_of(ki);
        let need = term.map_or(full, |t| full & !(1u64 << t));
        let has_value = |d: u32, v: u32| match key {
            FacetKey::Brand => base.brands[d as usize] == v,
            FacetKey::Price => config.bucket_of(base.prices[d as usize]) as u32 == v,
            FacetKey::Attr(_) => base.attrs(d).contains(&v),
        };
        let mut counts = std::mem::take(&mut per_key[ki]);
        // Delta docs: an SPU counts once per value, unless the base already counted it.
        // Only SPUs with several delta docs need the `seen` set.
        let mut seen: FxHashSet<(u32, u32, u64)> = FxHashSet::default();
        let mut values: Vec<u32> = Vec::new();
        for d in delta.iter().filter(|d| d.mask & need == need) {
            let v = d.values;
            values.clear();
            match key {
                FacetKey::Brand => values.push(v.brand),
                FacetKey::Price => values.push(config.bucket_of(v.price) as u32),
                FacetKey::Attr(k) => values.extend(v.attrs.iter().copied().filter(|&a| dict.key_of(a) == k)),
            }
            let shared = d.group == NONE || multi_groups.contains(&d.group);
            for &value in &values {
                let first = !shared || seen.insert((value, d.group, if d.group == NONE { v.spu } else { 0 }));
                if first && (d.group == NONE || !base.group_at(d.group).any(|s| bits_k.get(s) && has_value(s, value))) {
                    *counts.entry(value).or_default() += 1;
                }
            }
        }
        match key {
            FacetKey::Brand => {
                let mut brands: Vec<FacetCount<u32>> = counts.into_iter().map(|(value, count)| FacetCount { value, count }).collect();
                brands.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
                out.brands = brands;
            }
            FacetKey::Price => {
                let mut ranges: Vec<(u32, u64)> = counts.into_iter().collect();
                ranges.sort_unstable();
                out.price_ranges = ranges
                    .into_iter()
                    .map(|(i, count)| {
                        let (min, max) = config.bucket_bounds(i as usize);
                        PriceRangeCount { min, max, count }
                    })
                    .collect();
            }
            FacetKey::Attr(k) => {
                let mut values: Vec<FacetCount<String>> = counts.into_iter().map(|(v, count)| FacetCount { value: dict.value_name(v).to_owned(), count }).collect();
                values.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
                if !values.is_empty() {
                    out.attributes.push(AttributeFacet { key: dict.key_name(k).to_owned(), values });
                }
            }
        }
    }
    out.attributes.sort_by(|a, b| a.key.cmp(&b.key));
    out
}
