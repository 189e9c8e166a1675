//! The immutable base index of one category: columns, pre-sorted orders and postings over
//! dense local doc ids, built in bulk or merged from an older base and its delta.

use crate::bits::{DenseBits, Posting};
use crate::config::ListingConfig;
use crate::model::{DocValues, SortKey};
use rustc_hash::FxHashMap;
use std::ops::Range;

/// Bases larger than this sort their orders on several threads.
const PARALLEL_SORT_MIN: usize = 200_000;

/// One category's immutable index. Local doc ids are dense (`0..len`) and ordered by
/// `(spu, sku)`, so the SKUs of one SPU are contiguous (a *group*) and the SPU column is
/// sorted.
#[derive(Debug, Default)]
pub(crate) struct Base {
    pub(crate) skus: Vec<u64>,
    pub(crate) spus: Vec<u64>,
    pub(crate) brands: Vec<u32>,
    pub(crate) shops: Vec<u32>,
    pub(crate) prices: Vec<u64>,
    pub(crate) stocks: Vec<u32>,
    pub(crate) sales: Vec<u32>,
    pub(crate) reviews: Vec<u32>,
    pub(crate) launch: Vec<i64>,
    pub(crate) quality: Vec<f32>,
    attr_off: Vec<u32>,
    attr_vals: Vec<u32>,
    /// Per sort (`SortKey::index`), the docs in `(key, doc)` order.
    pub(crate) orders: [Vec<u32>; 6],
    pub(crate) group_start: DenseBits,
    pub(crate) on_shelf: DenseBits,
    pub(crate) in_stock: DenseBits,
    pub(crate) brand_post: FxHashMap<u32, Posting>,
    pub(crate) shop_post: FxHashMap<u32, Posting>,
    pub(crate) value_post: FxHashMap<u32, Posting>,
    pub(crate) bucket_post: Vec<Posting>,
    pub(crate) n_spus: u64,
    /// Every SPU has one brand here (brand facets then count one doc per SPU).
    pub(crate) brand_uniform: bool,
    /// Largest brand id.
    pub(crate) max_brand: u32,
}

/// First index of `v` (sorted) holding a value ≥ `x`: a few interpolation steps (SPU ids
/// are usually spread evenly), then binary search.
fn lower_bound(v: &[u64], x: u64) -> usize {
    let (mut lo, mut hi) = (0usize, v.len());
    for _ in 0..4 {
        if hi - lo < 64 {
            break;
        }
        let (a, b) = (v[lo], v[hi - 1]);
        if x <= a {
            return lo;
        }
        if x > b {
            return hi;
        }
        let pos = lo + ((u128::from(x - a) * (hi - 1 - lo) as u128) / u128::from(b - a)) as usize;
        if v[pos] < x {
            lo = pos + 1;
            let probe = (pos + 16).min(hi - 1);
            if v[probe] >= x {
                hi = probe;
            }
        } else {
            hi = pos;
            let probe = pos.saturating_sub(16).max(lo);
            if v[probe] < x {
                lo = probe + 1;
            }
        }
    }
    lo + v[lo..hi].partition_point(|&s| s < x)
}

/// Where the docs of an old base and the live delta entries went in a merged base.
#[derive(Debug)]
pub(crate) struct MergeMap {
    /// Old doc → new doc (`NONE` for docs the delta replaced or removed).
    pub(crate) old_to_new: Vec<u32>,
    /// Delta entry index → new doc.
    pub(crate) entry_to_new: FxHashMap<u32, u32>,
}

pub(crate) const NONE: u32 = u32::MAX;

impl Base {
    pub(crate) fn len(&self) -> usize {
        self.skus.len()
    }

    /// A base of these docs (SKU ids unique).
    pub(crate) fn build(mut docs: Vec<&DocValues>, config: &ListingConfig) -> Base {
        docs.sort_unstable_by_key(|d| (d.spu, d.sku));
        let mut base = Base::with_capacity(docs.len(), docs.iter().map(|d| d.attrs.len()).sum());
        for d in &docs {
            base.push(d);
        }
        drop(docs);
        base.orders = base.sorted_orders();
        base.finish(config);
        base
    }

    /// The base that `self` plus its delta stand for: `dirty` old docs are dropped, `live`
    /// (delta entry index, values) docs added. Orders are merged, not sorted again.
    pub(crate) fn merge(&self, dirty: &DenseBits, mut live: Vec<(u32, &DocValues)>, config: &ListingConfig) -> (Base, MergeMap) {
        live.sort_unstable_by_key(|(_, d)| (d.spu, d.sku));
        let n_old = self.len();
        let kept = n_old - (0..n_old as u32).filter(|&d| dirty.get(d)).count();
        let mut base = Base::with_capacity(kept + live.len(), self.attr_vals.len() + live.iter().map(|(_, d)| d.attrs.len()).sum::<usize>());
        let mut old_to_new = vec![NONE; n_old];
        let mut entry_to_new = FxHashMap::default();
        let mut live_new = Vec::with_capacity(live.len());
        let mut old = (0..n_old as u32).filter(|&d| !dirty.get(d)).peekable();
        let mut fresh = live.iter().peekable();
        loop {
            let take_old = match (old.peek(), fresh.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(&o), Some((_, d))) => (self.spus[o as usize], self.skus[o as usize]) < (d.spu, d.sku),
            };
            let new_id = base.len() as u32;
            if take_old {
                let o = old.next().unwrap_or(0);
                old_to_new[o as usize] = new_id;
                base.push_from(self, o);
            } else if let Some(&(entry, d)) = fresh.next() {
                entry_to_new.insert(entry, new_id);
                live_new.push(new_id);
                base.push(d);
            }
        }
        let merge_order = |sort: SortKey| -> Vec<u32> {
            let base = &base;
            let mut added: Vec<(u64, u32)> = live_new.iter().map(|&d| (base.key(sort, d), d)).collect();
            added.sort_unstable();
            let mut out = Vec::with_capacity(base.len());
            let mut olds = self.orders[sort.index()].iter().map(|&o| old_to_new[o as usize]).filter(|&d| d != NONE).peekable();
            let mut news = added.into_iter().peekable();
            loop {
                let next = match (olds.peek(), news.peek()) {
                    (None, None) => break,
                    (Some(&o), None) => {
                        olds.next();
                        o
                    }
                    (None, Some(&(_, d))) => {
                        news.next();
                        d
                    }
                    (Some(&o), Some(&(k, d))) => {
                        if (base.key(sort, o), o) < (k, d) {
                            olds.next();
                            o
                        } else {
                            news.next();
                            d
                        }
                    }
                };
                out.push(next);
            }
            out
        };
        // Each order is read at random doc ids: big bases merge them on several threads.
        let orders: [Vec<u32>; 6] = if base.len() < PARALLEL_SORT_MIN {
            SortKey::ALL.map(merge_order)
        } else {
            std::thread::scope(|scope| {
                let merge_order = &merge_order;
                let handles = SortKey::ALL.map(|sort| scope.spawn(move || merge_order(sort)));
                handles.map(|h| h.join().unwrap_or_default())
            })
        };
        base.orders = orders;
        base.finish(config);
        (base, MergeMap { old_to_new, entry_to_new })
    }

    fn with_capacity(n: usize, n_attrs: usize) -> Base {
        let mut attr_off = Vec::with_capacity(n + 1);
        attr_off.push(0);
        Base {
            skus: Vec::with_capacity(n),
            spus: Vec::with_capacity(n),
            brands: Vec::with_capacity(n),
            shops: Vec::with_capacity(n),
            prices: Vec::with_capacity(n),
            stocks: Vec::with_capacity(n),
            sales: Vec::with_capacity(n),
            reviews: Vec::with_capacity(n),
            launch: Vec::with_capacity(n),
            quality: Vec::with_capacity(n),
            attr_off,
            attr_vals: Vec::with_capacity(n_attrs),
            on_shelf: DenseBits::zeros(n),
            ..Base::default()
        }
    }

    fn push(&mut self, d: &DocValues) {
        let i = self.skus.len() as u32;
        self.skus.push(d.sku);
        self.spus.push(d.spu);
        self.brands.push(d.brand);
        self.shops.push(d.shop);
        self.prices.push(d.price);
        self.stocks.push(d.stock);
        self.sales.push(d.sales);
        self.reviews.push(d.reviews);
        self.launch.push(d.launch);
        self.quality.push(d.quality);
        self.attr_vals.extend_from_slice(&d.attrs);
        self.attr_off.push(self.attr_vals.len() as u32);
        if d.on_shelf {
            self.on_shelf.set(i);
        }
    }

    fn push_from(&mut self, old: &Base, o: u32) {
        let i = self.skus.len() as u32;
        let u = o as usize;
        self.skus.push(old.skus[u]);
        self.spus.push(old.spus[u]);
        self.brands.push(old.brands[u]);
        self.shops.push(old.shops[u]);
        self.prices.push(old.prices[u]);
        self.stocks.push(old.stocks[u]);
        self.sales.push(old.sales[u]);
        self.reviews.push(old.reviews[u]);
        self.launch.push(old.launch[u]);
        self.quality.push(old.quality[u]);
        self.attr_vals.extend_from_slice(old.attrs(o));
        self.attr_off.push(self.attr_vals.len() as u32);
        if old.on_shelf.get(o) {
            self.on_shelf.set(i);
        }
    }

    fn sorted_orders(&self) -> [Vec<u32>; 6] {
        let sort_one = |sort: SortKey| {
            let mut keyed: Vec<(u64, u32)> = (0..self.len() as u32).map(|d| (self.key(sort, d), d)).collect();
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, d)| d).collect::<Vec<u32>>()
        };
        if self.len() < PARALLEL_SORT_MIN {
            return SortKey::ALL.map(sort_one);
        }
        std::thread::scope(|scope| {
            let handles = SortKey::ALL.map(|sort| std::thread::Builder::new().name("listing-sort".into()).spawn_scoped(scope, move || sort_one(sort)));
            handles.map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| sort_one(SortKey::Quality)),
                Err(_) => Vec::new(),
            })
        })
    }

    /// Everything derived from the columns: group starts, stock bits, postings.
    fn finish(&mut self, config: &ListingConfig) {
        let n = self.len();
        if self.orders.iter().any(|o| o.len() != n) {
            // A sort thread could not be spawned: sort here.
            for sort in SortKey::ALL {
                let mut keyed: Vec<(u64, u32)> = (0..n as u32).map(|d| (self.key(sort, d), d)).collect();
                keyed.sort_unstable();
                self.orders[sort.index()] = keyed.into_iter().map(|(_, d)| d).collect();
            }
        }
        self.on_shelf = {
            let mut bits = std::mem::take(&mut self.on_shelf);
            if bits.len() != n {
                let mut resized = DenseBits::zeros(n);
                for d in bits.iter_ones().filter(|&d| (d as usize) < n) {
                    resized.set(d);
                }
                bits = resized;
            }
            bits
        };
        let mut group_start = DenseBits::zeros(n);
        let mut in_stock = DenseBits::zeros(n);
        let mut n_spus = 0;
        let mut brands: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        let mut shops: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        let mut values: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); config.n_buckets()];
        for d in 0..n {
            let doc = d as u32;
            if d == 0 || self.spus[d] != self.spus[d - 1] {
                group_start.set(doc);
                n_spus += 1;
            }
            if self.stocks[d] > 0 {
                in_stock.set(doc);
            }
            brands.entry(self.brands[d]).or_default().push(doc);
            shops.entry(self.shops[d]).or_default().push(doc);
            for &v in self.attrs(doc) {
                values.entry(v).or_default().push(doc);
            }
            buckets[config.bucket_of(self.prices[d])].push(doc);
        }
        let post = |m: FxHashMap<u32, Vec<u32>>| m.into_iter().map(|(k, ids)| (k, Posting::from_sorted(&ids, n))).collect();
        self.brand_post = post(brands);
        self.shop_post = post(shops);
        self.value_post = post(values);
        self.bucket_post = buckets.iter().map(|ids| Posting::from_sorted(ids, n)).collect();
        self.brand_uniform = (1..n).all(|d| group_start.get(d as u32) || self.brands[d] == self.brands[d - 1]);
        self.max_brand = self.brands.iter().copied().max().unwrap_or(0);
        self.group_start = group_start;
        self.in_stock = in_stock;
        self.n_spus = n_spus;
    }

    /// The sort value of `d`, reading only the column the sort needs (merges and walks
    /// read it in sort order, i.e. at random doc ids).
    #[inline]
    pub(crate) fn key(&self, sort: SortKey, d: u32) -> u64 {
        let u = d as usize;
        match sort {
            SortKey::Quality => SortKey::Quality.key(self.quality[u], 0, 0, 0, 0),
            SortKey::Sales => SortKey::Sales.key(0.0, self.sales[u], 0, 0, 0),
            SortKey::PriceAsc => SortKey::PriceAsc.key(0.0, 0, self.prices[u], 0, 0),
            SortKey::PriceDesc => SortKey::PriceDesc.key(0.0, 0, self.prices[u], 0, 0),
            SortKey::Newest => SortKey::Newest.key(0.0, 0, 0, self.launch[u], 0),
            SortKey::Reviews => SortKey::Reviews.key(0.0, 0, 0, 0, self.reviews[u]),
        }
    }

    #[inline]
    pub(crate) fn attrs(&self, d: u32) -> &[u32] {
        let u = d as usize;
        &self.attr_vals[self.attr_off[u] as usize..self.attr_off[u + 1] as usize]
    }

    pub(crate) fn values(&self, d: u32) -> DocValues {
        let u = d as usize;
        DocValues {
            sku: self.skus[u],
            spu: self.spus[u],
            brand: self.brands[u],
            shop: self.shops[u],
            price: self.prices[u],
            stock: self.stocks[u],
            on_shelf: self.on_shelf.get(d),
            sales: self.sales[u],
            reviews: self.reviews[u],
            launch: self.launch[u],
            quality: self.quality[u],
            attrs: self.attrs(d).into(),
        }
    }

    /// The docs of `spu` (empty when it has none here).
    pub(crate) fn spu_range(&self, spu: u64) -> Range<usize> {
        let lo = lower_bound(&self.spus, spu);
        let hi = lo + self.spus[lo..].iter().take_while(|&&s| s == spu).count();
        lo..hi
    }

    /// The first doc of the group (docs of one SPU) holding `d`.
    #[inline]
    pub(crate) fn group_start_of(&self, d: u32) -> u32 {
        if self.group_start.get(d) {
            d
        } else {
            self.group_start.prev_set(d).unwrap_or(0)
        }
    }

    /// The group starting at `start`.
    #[inline]
    pub(crate) fn group_at(&self, start: u32) -> Range<u32> {
        start..self.group_start.next_set_or_len(start + 1)
    }

    /// The group (docs of one SPU) holding `d`.
    pub(crate) fn group_of(&self, d: u32) -> Range<u32> {
        self.group_at(self.group_start_of(d))
    }

    /// The doc of `(spu, sku)`.
    pub(crate) fn find(&self, spu: u64, sku: u64) -> Option<u32> {
        self.spu_range(spu).find(|&d| self.skus[d] == sku).map(|d| d as u32)
    }

    /// Heap bytes held, by part: (columns, orders, postings and bitsets).
    pub(crate) fn heap_bytes(&self) -> (usize, usize, usize) {
        let columns = self.skus.capacity() * 8
            + self.spus.capacity() * 8
            + self.brands.capacity() * 4
            + self.shops.capacity() * 4
            + self.prices.capacity() * 8
            + self.stocks.capacity() * 4
            + self.sales.capacity() * 4
            + self.reviews.capacity() * 4
            + self.launch.capacity() * 8
            + self.quality.capacity() * 4
            + self.attr_off.capacity() * 4
            + self.attr_vals.capacity() * 4;
        let orders = self.orders.iter().map(|o| o.capacity() * 4).sum();
        let map_overhead = |m: &FxHashMap<u32, Posting>| m.capacity() * (4 + std::mem::size_of::<Posting>());
        let postings = [&self.brand_post, &self.shop_post, &self.value_post].iter().map(|m| map_overhead(m) + m.values().map(Posting::heap_bytes).sum::<usize>()).sum::<usize>()
            + self.bucket_post.iter().map(Posting::heap_bytes).sum::<usize>()
            + self.group_start.heap_bytes()
            + self.on_shelf.heap_bytes()
            + self.in_stock.heap_bytes();
        (columns, orders, postings)
    }
}

#[cfg(test)]
mod tests {
    use super::lower_bound;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lower_bound_matches_partition_point(mut v in prop::collection::vec(0u64..5_000, 0..400), x in 0u64..5_100, skew in any::<bool>()) {
            if skew {
                v.iter_mut().for_each(|s| *s = *s * *s);
            }
            v.sort_unstable();
            prop_assert_eq!(lower_bound(&v, x), v.partition_point(|&s| s < x));
        }
    }
}
