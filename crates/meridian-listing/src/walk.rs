//! The one pass that produces a listing: the sorted stream of matching docs (base order
//! merged with the delta), SPU de-duplication, and the sequencer that places pins and
//! interleaves brands and shops.

use crate::base::{Base, NONE};
use crate::bits::DenseBits;
use crate::cursor::CursorState;
use crate::model::{DocValues, SortKey};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;

/// Where a candidate's values live.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src<'a> {
    Base(u32),
    /// Values and the base group of its SPU (`NONE` when the base has no such SPU).
    Delta(&'a DocValues, u32),
}

/// A delta doc matching the query, with the base group of its SPU (`NONE` if none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeltaMatch<'a> {
    pub(crate) values: &'a DocValues,
    pub(crate) group: u32,
}

/// A doc on its way to the page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand<'a> {
    pub(crate) key: u64,
    pub(crate) spu: u64,
    pub(crate) sku: u64,
    pub(crate) brand: u32,
    pub(crate) shop: u32,
    pub(crate) src: Src<'a>,
}

impl<'a> Cand<'a> {
    pub(crate) fn ord(&self) -> (u64, u64, u64) {
        (self.key, self.spu, self.sku)
    }

    pub(crate) fn of_base(base: &Base, sort: SortKey, d: u32) -> Cand<'a> {
        let u = d as usize;
        Cand { key: base.key(sort, d), spu: base.spus[u], sku: base.skus[u], brand: base.brands[u], shop: base.shops[u], src: Src::Base(d) }
    }

    pub(crate) fn of_delta(m: DeltaMatch<'a>, sort: SortKey) -> Cand<'a> {
        let v = m.values;
        Cand { key: v.key(sort), spu: v.spu, sku: v.sku, brand: v.brand, shop: v.shop, src: Src::Delta(v, m.group) }
    }
}

/// A vector sorted lazily: each time the sorted prefix runs out, the next chunk (twice the
/// last) is selected (`select_nth_unstable`, linear) and sorted. Reading the first `k`
/// items of `n` costs about `O(n + k log k)`.
#[derive(Debug)]
pub(crate) struct LazySorted<T> {
    items: Vec<T>,
    sorted: usize,
    pos: usize,
    chunk: usize,
}

impl<T: Ord + Copy> LazySorted<T> {
    pub(crate) fn new(items: Vec<T>, first_chunk: usize) -> LazySorted<T> {
        LazySorted { items, sorted: 0, pos: 0, chunk: first_chunk.max(16) }
    }

    pub(crate) fn peek(&mut self) -> Option<T> {
        if self.pos == self.sorted {
            if self.sorted == self.items.len() {
                return None;
            }
            let rest = &mut self.items[self.sorted..];
            let take = self.chunk.min(rest.len());
            if take < rest.len() {
                rest.select_nth_unstable(take - 1);
            }
            rest[..take].sort_unstable();
            self.sorted += take;
            self.chunk = self.chunk.saturating_mul(2);
        }
        Some(self.items[self.pos])
    }

    pub(crate) fn advance(&mut self) {
        self.pos += 1;
    }
}

/// How the base part of the stream is read.
#[derive(Debug)]
pub(crate) enum BaseSource<'a> {
    /// Walk the pre-sorted order from `pos`, skipping docs outside the filter.
    Walk { order: &'a [u32], pos: usize, peeked: Option<u32> },
    /// The matching docs, sorted lazily.
    Sorted(LazySorted<(u64, u32)>),
}

/// The sorted, de-duplicated stream of matching candidates (pinned SPUs left out).
#[derive(Debug)]
pub(crate) struct Stream<'a> {
    base: &'a Base,
    sort: SortKey,
    filter: &'a DenseBits,
    base_source: BaseSource<'a>,
    delta_source: LazySorted<(u64, u64, u64, u32)>,
    delta: &'a [DeltaMatch<'a>],
    delta_by_spu: FxHashMap<u64, Vec<(u64, u64)>>,
    pinned_spus: &'a FxHashSet<u64>,
    /// Base order positions or sorted entries looked at.
    pub(crate) walked: u64,
}

/// Whether the stream walks the pre-sorted order or sorts the matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    Walk,
    Sort,
}

impl<'a> Stream<'a> {
    /// The stream of `filter`'s base docs and the `delta` matches, after `resume`
    /// (exclusive) when given. `siblings` lists the delta matches that may share an SPU
    /// with another match (the only ones de-duplication must look up).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base: &'a Base,
        sort: SortKey,
        filter: &'a DenseBits,
        delta: &'a [DeltaMatch<'a>],
        siblings: &[usize],
        pinned_spus: &'a FxHashSet<u64>,
        resume: Option<(u64, u64, u64)>,
        plan: Plan,
        need: usize,
    ) -> Stream<'a> {
        let after = |o: (u64, u64, u64)| resume.is_none_or(|r| o > r);
        let base_source = match plan {
            Plan::Walk => {
                let order = &base.orders[sort.index()][..];
                let pos = match resume {
                    None => 0,
                    Some(r) => order.partition_point(|&d| (base.key(sort, d), base.spus[d as usize], base.skus[d as usize]) <= r),
                };
                BaseSource::Walk { order, pos, peeked: None }
            }
            Plan::Sort => {
                let items: Vec<(u64, u32)> =
                    filter.iter_ones().map(|d| (base.key(sort, d), d)).filter(|&(k, d)| after((k, base.spus[d as usize], base.skus[d as usize]))).collect();
                BaseSource::Sorted(LazySorted::new(items, need.saturating_mul(2)))
            }
        };
        let mut delta_by_spu: FxHashMap<u64, Vec<(u64, u64)>> = FxHashMap::default();
        for &i in siblings {
            let v = delta[i].values;
            delta_by_spu.entry(v.spu).or_default().push((v.key(sort), v.sku));
        }
        let mut items = Vec::with_capacity(delta.len());
        for (i, m) in delta.iter().enumerate() {
            let v = m.values;
            let key = v.key(sort);
            if after((key, v.spu, v.sku)) {
                items.push((key, v.spu, v.sku, i as u32));
            }
        }
        Stream { base, sort, filter, base_source, delta_source: LazySorted::new(items, need.saturating_mul(2)), delta, delta_by_spu, pinned_spus, walked: 0 }
    }

    fn peek_base(&mut self) -> Option<u32> {
        match &mut self.base_source {
            BaseSource::Walk { order, pos, peeked } => {
                if peeked.is_none() {
                    while *pos < order.len() {
                        let d = order[*pos];
                        *pos += 1;
                        self.walked += 1;
                        if self.filter.get(d) {
                            *peeked = Some(d);
                            break;
                        }
                    }
                }
                *peeked
            }
            BaseSource::Sorted(sorted) => sorted.peek().map(|(_, d)| d),
        }
    }

    fn advance_base(&mut self) {
        match &mut self.base_source {
            BaseSource::Walk { peeked, .. } => *peeked = None,
            BaseSource::Sorted(sorted) => {
                sorted.advance();
                self.walked += 1;
            }
        }
    }

    /// The next candidate in `(key, spu, sku)` order, before de-duplication.
    fn next_raw(&mut self) -> Option<Cand<'a>> {
        let base_next = self.peek_base().map(|d| Cand::of_base(self.base, self.sort, d));
        let delta_next = self.delta_source.peek();
        match (base_next, delta_next) {
            (None, None) => None,
            (Some(c), None) => {
                self.advance_base();
                Some(c)
            }
            (b, Some((k, spu, sku, i))) => {
                if let Some(c) = b.filter(|c| c.ord() < (k, spu, sku)) {
                    self.advance_base();
                    return Some(c);
                }
                self.delta_source.advance();
                Some(Cand::of_delta(self.delta[i as usize], self.sort))
            }
        }
    }

    /// Is `c` the first matching SKU of its SPU in this order?
    fn is_best(&self, c: &Cand<'a>) -> bool {
        let range = match c.src {
            Src::Base(d) => self.base.group_of(d),
            Src::Delta(_, group) if group != NONE => self.base.group_at(group),
            Src::Delta(..) => 0..0,
        };
        for s in range {
            if matches!(c.src, Src::Base(d) if d == s) || !self.filter.get(s) {
                continue;
            }
            if (self.base.key(self.sort, s), self.base.spus[s as usize], self.base.skus[s as usize]) < c.ord() {
                return false;
            }
        }
        if let Some(siblings) = self.delta_by_spu.get(&c.spu) {
            if siblings.iter().any(|&(k, sku)| sku != c.sku && (k, sku) < (c.key, c.sku)) {
                return false;
            }
        }
        true
    }

    /// The next representative (best SKU of its SPU) of an SPU that is not pinned.
    pub(crate) fn next(&mut self) -> Option<Cand<'a>> {
        loop {
            let c = self.next_raw()?;
            if !self.pinned_spus.contains(&c.spu) && self.is_best(&c) {
                return Some(c);
            }
        }
    }
}

/// Interleaving limits of a category.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_brand_run: Option<u32>,
    pub(crate) max_shop_run: Option<u32>,
    pub(crate) window: usize,
}

/// Places pins and interleaves brands and shops in one pass over the stream.
#[derive(Debug)]
pub(crate) struct Sequencer<'a> {
    pub(crate) stream: Stream<'a>,
    /// Matching pins not emitted yet, by position.
    pins: VecDeque<(u32, Cand<'a>)>,
    buffer: Vec<Cand<'a>>,
    limits: Limits,
    out: u64,
    brand_run: (u32, u32),
    shop_run: (u32, u32),
    last: Option<(u64, u64, u64)>,
    pins_done: Vec<u64>,
}

impl<'a> Sequencer<'a> {
    /// A sequencer at `state` (the start when default) with `buffer` resolved from it.
    pub(crate) fn new(stream: Stream<'a>, pins: VecDeque<(u32, Cand<'a>)>, buffer: Vec<Cand<'a>>, limits: Limits, state: &CursorState) -> Sequencer<'a> {
        Sequencer {
            stream,
            pins,
            buffer,
            limits,
            out: state.out,
            brand_run: state.brand_run,
            shop_run: state.shop_run,
            last: state.last,
            pins_done: state.pins_done.clone(),
        }
    }

    fn allowed(&self, c: &Cand<'a>) -> bool {
        let over = |run: (u32, u32), value: u32, max: Option<u32>| max.is_some_and(|k| run.0 == value && run.1 >= k);
        !over(self.brand_run, c.brand, self.limits.max_brand_run) && !over(self.shop_run, c.shop, self.limits.max_shop_run)
    }

    fn emit(&mut self, c: Cand<'a>, pinned: bool) -> (Cand<'a>, bool) {
        self.brand_run = if self.out > 0 && self.brand_run.0 == c.brand { (c.brand, self.brand_run.1 + 1) } else { (c.brand, 1) };
        self.shop_run = if self.out > 0 && self.shop_run.0 == c.shop { (c.shop, self.shop_run.1 + 1) } else { (c.shop, 1) };
        self.out += 1;
        if pinned {
            self.pins_done.push(c.sku);
        }
        (c, pinned)
    }

    /// The next item of the listing and whether it is pinned.
    pub(crate) fn next_item(&mut self) -> Option<(Cand<'a>, bool)> {
        if self.pins.front().is_some_and(|(pos, _)| u64::from(*pos) <= self.out) {
            let (_, pin) = self.pins.pop_front()?;
            return Some(self.emit(pin, true));
        }
        while self.buffer.len() < self.limits.window {
            match self.stream.next() {
                Some(c) => {
                    self.last = Some(c.ord());
                    self.buffer.push(c);
                }
                None => break,
            }
        }
        if self.buffer.is_empty() {
            let (_, pin) = self.pins.pop_front()?;
            return Some(self.emit(pin, true));
        }
        let pick = self.buffer.iter().position(|c| self.allowed(c)).unwrap_or(0);
        let c = self.buffer.remove(pick);
        Some(self.emit(c, false))
    }

    /// Items emitted so far.
    pub(crate) fn position(&self) -> u64 {
        self.out
    }

    /// The state to resume from.
    pub(crate) fn state(&self, fingerprint: u64) -> CursorState {
        CursorState {
            fingerprint,
            out: self.out,
            brand_run: self.brand_run,
            shop_run: self.shop_run,
            last: self.last,
            buffer: self.buffer.iter().map(|c| (c.spu, c.sku)).collect(),
            pins_done: self.pins_done.clone(),
        }
    }
}
