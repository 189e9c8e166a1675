//! A brute-force reference of the listing (filter every item, sort, de-duplicate, pin and
//! interleave a materialised list) and a random catalog generator for property tests.

use meridian_listing::{
    AttributeFacet, CategorySettings, Change, FacetCount, Facets, Filters, ItemMetrics, ListingConfig, ListingItem, Paging, PriceRangeCount, Query, SortKey,
};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_pcg::Pcg64Mcg;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Category paths items are drawn from (a two-root, three-level tree; some items sit on
/// inner nodes).
pub(crate) const PATHS: [&[u32]; 6] = [&[1, 10, 100], &[1, 10, 101], &[1, 11, 110], &[1, 11], &[2, 20, 200], &[2, 20]];
pub(crate) const CATEGORIES: [u32; 9] = [1, 2, 10, 11, 20, 100, 101, 110, 200];
pub(crate) const PRICES: [u64; 8] = [500, 999, 1000, 1500, 2000, 4999, 5000, 12000];
pub(crate) const COLORS: [&str; 3] = ["red", "blue", "green"];
pub(crate) const SIZES: [&str; 2] = ["S", "M"];

/// The engine config of property tests: small buckets, pages and depth.
pub(crate) fn test_config(rng: &mut Pcg64Mcg) -> ListingConfig {
    ListingConfig {
        price_buckets: vec![1000, 2000, 5000],
        max_depth: 40,
        max_page_size: 10,
        merge_min_changes: rng.gen_range(1..8),
        merge_max_changes: 64,
        merge_mode: meridian_listing::MergeMode::Inline,
        plan: *[meridian_listing::PlanChoice::Auto, meridian_listing::PlanChoice::Walk, meridian_listing::PlanChoice::Sort].choose(rng).unwrap(),
        build_threads: 2,
        ..ListingConfig::default()
    }
}

pub(crate) fn random_item(rng: &mut Pcg64Mcg, sku: u64, n_spus: u64) -> ListingItem {
    let mut attributes = BTreeMap::new();
    let n_colors = rng.gen_range(1..=2);
    let mut colors: Vec<String> = COLORS.choose_multiple(rng, n_colors).map(|c| c.to_string()).collect();
    colors.sort();
    attributes.insert("color".to_owned(), colors);
    if rng.gen_bool(0.7) {
        attributes.insert("size".to_owned(), vec![SIZES.choose(rng).unwrap().to_string()]);
    }
    ListingItem {
        sku,
        spu: rng.gen_range(0..n_spus.max(1)),
        category_path: PATHS.choose(rng).unwrap().to_vec(),
        brand: rng.gen_range(1..=4),
        shop: rng.gen_range(1..=3),
        price: *PRICES.choose(rng).unwrap(),
        stock: *[0, 1, 7].choose(rng).unwrap(),
        on_shelf: rng.gen_bool(0.85),
        attributes,
        launch_time: rng.gen_range(0..5) * 1000,
        metrics: ItemMetrics { sales: rng.gen_range(0..4), reviews: rng.gen_range(0..3), views: 0, conversion: 0.0, returns: 0 },
        quality: *[0.0f32, 0.5, 1.0, 2.5].choose(rng).unwrap(),
    }
}

pub(crate) fn random_catalog(rng: &mut Pcg64Mcg) -> Vec<ListingItem> {
    let n = rng.gen_range(0..40u64);
    let n_spus = (n / 2).max(1);
    (0..n).map(|i| random_item(rng, 1000 + i, n_spus)).collect()
}

fn pick<T: Clone>(rng: &mut Pcg64Mcg, from: &[T], max: usize) -> Vec<T> {
    let n = rng.gen_range(0..=max.min(from.len()));
    from.choose_multiple(rng, n).cloned().collect()
}

pub(crate) fn random_query(rng: &mut Pcg64Mcg) -> Query {
    let category = if rng.gen_bool(0.03) { 999 } else { *CATEGORIES.choose(rng).unwrap() };
    let mut attributes = BTreeMap::new();
    if rng.gen_bool(0.4) {
        let mut values: Vec<String> = pick(rng, &COLORS, 2).iter().map(|c| c.to_string()).collect();
        if rng.gen_bool(0.1) {
            values.push("purple".into());
        }
        attributes.insert("color".to_owned(), values);
    }
    if rng.gen_bool(0.3) {
        attributes.insert("size".to_owned(), pick(rng, &SIZES, 1).iter().map(|c| c.to_string()).collect());
    }
    if rng.gen_bool(0.02) {
        attributes.insert("weight".to_owned(), vec!["1kg".into()]);
    }
    let price = |rng: &mut Pcg64Mcg| if rng.gen_bool(0.25) { Some(*PRICES.choose(rng).unwrap() + rng.gen_range(0..2)) } else { None };
    let filters = Filters {
        brands: if rng.gen_bool(0.35) { pick(rng, &[1, 2, 3, 4, 9], 3) } else { Vec::new() },
        shops: if rng.gen_bool(0.25) { pick(rng, &[1, 2, 3], 2) } else { Vec::new() },
        price_min: price(rng),
        price_max: price(rng),
        attributes,
        in_stock: rng.gen_bool(0.3),
    };
    Query {
        category,
        filters,
        sort: *SortKey::ALL.choose(rng).unwrap(),
        paging: Paging::Page { page: rng.gen_range(0..6), size: if rng.gen_bool(0.02) { 0 } else { rng.gen_range(1..7) } },
        facets: rng.gen_bool(0.5),
    }
}

pub(crate) fn random_settings(rng: &mut Pcg64Mcg, skus: &[u64]) -> CategorySettings {
    let mut positions: Vec<u32> = (0..12).collect();
    positions.shuffle(rng);
    let n_pins = if skus.is_empty() { 0 } else { rng.gen_range(0..=3) };
    CategorySettings {
        max_brand_run: if rng.gen_bool(0.6) { Some(rng.gen_range(1..=3)) } else { None },
        max_shop_run: if rng.gen_bool(0.4) { Some(rng.gen_range(1..=2)) } else { None },
        window: rng.gen_range(1..=6),
        pins: (0..n_pins).map(|i| meridian_listing::Pin { position: positions[i], sku: *skus.choose(rng).unwrap() }).collect(),
    }
}

pub(crate) fn random_change(rng: &mut Pcg64Mcg, skus: &[u64], next_sku: &mut u64) -> Change {
    let sku = if skus.is_empty() || rng.gen_bool(0.03) { 1 } else { *skus.choose(rng).unwrap() };
    match rng.gen_range(0..9) {
        0 => Change::Price { sku, price: *PRICES.choose(rng).unwrap() },
        1 => Change::Stock { sku, stock: *[0, 3].choose(rng).unwrap() },
        2 => Change::Shelf { sku, on_shelf: rng.gen_bool(0.6) },
        3 => Change::Quality { sku, score: *[0.0f32, 0.5, 1.0, 2.5, 3.0].choose(rng).unwrap() },
        4 => Change::Counters { sku, sales: rng.gen_range(0..5), reviews: rng.gen_range(0..4) },
        5 | 6 => {
            let id = if rng.gen_bool(0.5) && !skus.is_empty() {
                sku
            } else {
                *next_sku += 1;
                *next_sku
            };
            Change::Upsert(Box::new(random_item(rng, id, 20)))
        }
        _ => Change::Remove { sku },
    }
}

/// A page as the reference computes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefPage {
    /// (sku, pinned, price, stock)
    pub(crate) items: Vec<(u64, bool, u64, u32)>,
    pub(crate) total: u64,
    pub(crate) last_page: u32,
    pub(crate) facets: Option<Facets>,
    /// The whole listing (sku, pinned).
    pub(crate) sequence: Vec<(u64, bool)>,
}

/// The reference model: the items, every category and attribute key ever seen, settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reference {
    pub(crate) items: BTreeMap<u64, ListingItem>,
    pub(crate) categories: BTreeSet<u32>,
    pub(crate) keys: BTreeSet<String>,
    pub(crate) settings: HashMap<u32, CategorySettings>,
    pub(crate) config: ListingConfig,
}

fn key(item: &ListingItem, sort: SortKey) -> (i128, u64, u64) {
    let q = if item.quality.is_nan() { 0.0 } else { item.quality + 0.0 };
    let sat = |x: u64| x.min(u64::from(u32::MAX)) as i128;
    let primary: i128 = match sort {
        // Quality descending: order by the float, highest first.
        SortKey::Quality => -(((q as f64) * 1e6).round() as i128),
        SortKey::Sales => -sat(item.metrics.sales),
        SortKey::PriceAsc => item.price as i128,
        SortKey::PriceDesc => -(item.price as i128),
        SortKey::Newest => -(item.launch_time as i128),
        SortKey::Reviews => -sat(item.metrics.reviews),
    };
    (primary, item.spu, item.sku)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Facet<'a> {
    Brand,
    Price,
    Attr(&'a str),
}

impl Reference {
    pub(crate) fn new(config: ListingConfig, items: &[ListingItem]) -> Reference {
        let mut r = Reference { config, ..Reference::default() };
        for item in items {
            r.upsert(item.clone());
        }
        r
    }

    fn upsert(&mut self, item: ListingItem) {
        self.categories.extend(item.category_path.iter().copied());
        self.keys.extend(item.attributes.keys().cloned());
        self.items.insert(item.sku, item);
    }

    /// Applies a change; `Err(code)` when the engine must refuse it.
    pub(crate) fn apply(&mut self, change: &Change) -> Result<(), &'static str> {
        if let Change::Upsert(item) = change {
            self.upsert((**item).clone());
            return Ok(());
        }
        let sku = change.sku();
        if let Change::Remove { .. } = change {
            return self.items.remove(&sku).map(|_| ()).ok_or("unknown_sku");
        }
        let item = self.items.get_mut(&sku).ok_or("unknown_sku")?;
        match change {
            Change::Price { price, .. } => item.price = *price,
            Change::Stock { stock, .. } => item.stock = *stock,
            Change::Shelf { on_shelf, .. } => item.on_shelf = *on_shelf,
            Change::Quality { score, .. } => item.quality = *score,
            Change::Counters { sales, reviews, .. } => {
                item.metrics.sales = *sales;
                item.metrics.reviews = *reviews;
            }
            Change::Upsert(_) | Change::Remove { .. } => {}
        }
        Ok(())
    }

    pub(crate) fn set_settings(&mut self, category: u32, settings: CategorySettings) -> Result<(), &'static str> {
        if settings.validate(self.config.max_depth).is_err() {
            return Err("invalid_settings");
        }
        if !self.categories.contains(&category) {
            return Err("unknown_category");
        }
        if settings.pins.iter().any(|p| !self.items.contains_key(&p.sku)) {
            return Err("unknown_sku");
        }
        self.settings.insert(category, settings);
        Ok(())
    }

    fn bucket(&self, price: u64) -> usize {
        self.config.price_buckets.iter().filter(|&&b| b <= price).count()
    }

    /// Does `item` pass the filters (all but `skip`'s own)?
    fn passes(&self, item: &ListingItem, f: &Filters, skip: Option<Facet<'_>>) -> bool {
        let brand = skip == Some(Facet::Brand) || f.brands.is_empty() || f.brands.contains(&item.brand);
        let shop = f.shops.is_empty() || f.shops.contains(&item.shop);
        let price = skip == Some(Facet::Price) || (f.price_min.is_none_or(|m| item.price >= m) && f.price_max.is_none_or(|m| item.price <= m));
        let stock = !f.in_stock || item.stock > 0;
        let attrs = f.attributes.iter().all(|(k, vs)| {
            vs.is_empty() || skip == Some(Facet::Attr(k)) || item.attributes.get(k).is_some_and(|have| have.iter().any(|v| vs.contains(v)))
        });
        brand && shop && price && stock && attrs
    }

    pub(crate) fn query(&self, q: &Query) -> Result<RefPage, &'static str> {
        let f = &q.filters;
        if !self.categories.contains(&q.category) {
            return Err("unknown_category");
        }
        if let (Some(a), Some(b)) = (f.price_min, f.price_max) {
            if a > b {
                return Err("invalid_price_range");
            }
        }
        if f.attributes.iter().any(|(k, vs)| !vs.is_empty() && !self.keys.contains(k)) {
            return Err("unknown_attribute");
        }
        let (page, size) = match q.paging {
            Paging::Page { page, size } => (page, size),
            Paging::Cursor { .. } => unreachable!("the reference pages by number"),
        };
        if size == 0 || size > self.config.max_page_size {
            return Err("invalid_page_size");
        }
        let in_category: Vec<&ListingItem> = self.items.values().filter(|i| i.on_shelf && i.category_path.contains(&q.category)).collect();
        let mut matches: Vec<&ListingItem> = in_category.iter().copied().filter(|i| self.passes(i, f, None)).collect();
        matches.sort_by_key(|i| key(i, q.sort));
        let total = matches.iter().map(|i| i.spu).collect::<HashSet<_>>().len() as u64;
        let last_page = (total.div_ceil(u64::from(size))).max(1) as u32;
        if page == 0 {
            return Err("page_out_of_range");
        }
        let offset = u64::from(page - 1) * u64::from(size);
        if offset + u64::from(size) > u64::from(self.config.max_depth) || (page > 1 && offset >= total) {
            return Err("page_out_of_range");
        }

        // Pins that match, one per SPU, by position.
        let settings = self.settings.get(&q.category).cloned().unwrap_or_default();
        let mut pins: Vec<_> = settings.pins.clone();
        pins.sort_by_key(|p| (p.position, p.sku));
        let mut pinned: Vec<(u32, &ListingItem)> = Vec::new();
        let mut pinned_spus = HashSet::new();
        for p in pins {
            if let Some(item) = matches.iter().find(|i| i.sku == p.sku) {
                if pinned_spus.insert(item.spu) {
                    pinned.push((p.position, item));
                }
            }
        }
        let mut seen = HashSet::new();
        let stream: Vec<&ListingItem> = matches.iter().copied().filter(|i| seen.insert(i.spu)).filter(|i| !pinned_spus.contains(&i.spu)).collect();
        let sequence = sequence(&stream, &pinned, &settings);
        assert_eq!(sequence.len() as u64, total, "the reference listing holds every SPU once");
        let items = sequence
            .iter()
            .skip(offset as usize)
            .take(size as usize)
            .map(|&(sku, pinned)| {
                let i = &self.items[&sku];
                (sku, pinned, i.price, i.stock)
            })
            .collect();
        let facets = q.facets.then(|| self.facets(&in_category, f));
        Ok(RefPage { items, total, last_page, facets, sequence: sequence.clone() })
    }

    fn facets(&self, in_category: &[&ListingItem], f: &Filters) -> Facets {
        let count = |skip: Facet<'_>, value_of: &dyn Fn(&ListingItem) -> Vec<String>| {
            let mut spus: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
            for i in in_category.iter().filter(|i| self.passes(i, f, Some(skip))) {
                for v in value_of(i) {
                    spus.entry(v).or_default().insert(i.spu);
                }
            }
            spus.into_iter().map(|(v, s)| (v, s.len() as u64)).collect::<Vec<_>>()
        };
        let mut brands: Vec<FacetCount<u32>> = count(Facet::Brand, &|i| vec![i.brand.to_string()]).into_iter().map(|(v, count)| FacetCount { value: v.parse().unwrap(), count }).collect();
        brands.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
        let mut price: Vec<(usize, u64)> = count(Facet::Price, &|i| vec![format!("{:04}", self.bucket(i.price))]).into_iter().map(|(v, c)| (v.parse().unwrap(), c)).collect();
        price.sort();
        let price_ranges = price
            .into_iter()
            .map(|(b, count)| PriceRangeCount { min: if b == 0 { 0 } else { self.config.price_buckets[b - 1] }, max: self.config.price_buckets.get(b).copied(), count })
            .collect();
        let mut attributes = Vec::new();
        for k in &self.keys {
            let mut values: Vec<FacetCount<String>> =
                count(Facet::Attr(k), &|i| i.attributes.get(k).cloned().unwrap_or_default()).into_iter().map(|(value, count)| FacetCount { value, count }).collect();
            values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            if !values.is_empty() {
                attributes.push(AttributeFacet { key: k.clone(), values });
            }
        }
        Facets { brands, attributes, price_ranges }
    }
}

/// Pins at their positions, then the stream interleaved: the first of the next `window`
/// candidates whose brand and shop runs (counted on the output so far) stay within the
/// limits, else the first candidate. Pins beyond the end go last.
fn sequence(stream: &[&ListingItem], pins: &[(u32, &ListingItem)], s: &CategorySettings) -> Vec<(u64, bool)> {
    let window = if s.max_brand_run.is_some() || s.max_shop_run.is_some() { s.window as usize } else { 1 };
    let mut out: Vec<&ListingItem> = Vec::new();
    let mut flags = Vec::new();
    let mut pins: std::collections::VecDeque<_> = pins.iter().copied().collect();
    let mut rest: std::collections::VecDeque<&ListingItem> = stream.iter().copied().collect();
    let run = |out: &[&ListingItem], same: &dyn Fn(&ListingItem) -> bool| out.iter().rev().take_while(|i| same(i)).count() as u32;
    loop {
        if pins.front().is_some_and(|(p, _)| *p as usize <= out.len()) {
            let (_, item) = pins.pop_front().unwrap();
            out.push(item);
            flags.push(true);
            continue;
        }
        if rest.is_empty() {
            match pins.pop_front() {
                Some((_, item)) => {
                    out.push(item);
                    flags.push(true);
                    continue;
                }
                None => break,
            }
        }
        let ok = |c: &ListingItem| {
            let brand_ok = s.max_brand_run.is_none_or(|k| run(&out, &|i| i.brand == c.brand) < k);
            let shop_ok = s.max_shop_run.is_none_or(|k| run(&out, &|i| i.shop == c.shop) < k);
            brand_ok && shop_ok
        };
        let pick = rest.iter().take(window).position(|c| ok(c)).unwrap_or(0);
        let item = rest.remove(pick).unwrap();
        out.push(item);
        flags.push(false);
    }
    out.iter().zip(flags).map(|(i, p)| (i.sku, p)).collect()
}
