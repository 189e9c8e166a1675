//! Bitsets: dense bitsets for query evaluation, postings (roaring when sparse, dense when
//! not), and the word-parallel count of distinct SPU groups.

use roaring::RoaringBitmap;

/// A fixed-size dense bitset over local doc ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DenseBits {
    words: Vec<u64>,
    len: usize,
}

impl DenseBits {
    /// `len` bits, all clear.
    pub(crate) fn zeros(len: usize) -> DenseBits {
        DenseBits { words: vec![0; len.div_ceil(64)], len }
    }

    /// `len` bits, all set.
    #[cfg(test)]
    pub(crate) fn ones(len: usize) -> DenseBits {
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        DenseBits { words, len }
    }

    /// Number of bits.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        let i = i as usize;
        i < self.len && self.words[i >> 6] & (1u64 << (i & 63)) != 0
    }

    #[inline]
    pub(crate) fn set(&mut self, i: u32) {
        let i = i as usize;
        self.words[i >> 6] |= 1u64 << (i & 63);
    }

    #[inline]
    pub(crate) fn clear(&mut self, i: u32) {
        let i = i as usize;
        if i < self.len {
            self.words[i >> 6] &= !(1u64 << (i & 63));
        }
    }

    /// The highest set bit at or below `i`.
    pub(crate) fn prev_set(&self, i: u32) -> Option<u32> {
        let mut w = (i >> 6) as usize;
        let mut word = *self.words.get(w)? & (u64::MAX >> (63 - (i & 63)));
        loop {
            if word != 0 {
                return Some(((w as u32) << 6) | (63 - word.leading_zeros()));
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            word = self.words[w];
        }
    }

    /// The lowest set bit at or above `i`, or `len` when there is none.
    pub(crate) fn next_set_or_len(&self, i: u32) -> u32 {
        let len = self.len as u32;
        if i >= len {
            return len;
        }
        let mut w = (i >> 6) as usize;
        let mut word = self.words[w] & (u64::MAX << (i & 63));
        loop {
            if word != 0 {
                return (((w as u32) << 6) | word.trailing_zeros()).min(len);
            }
            w += 1;
            if w >= self.words.len() {
                return len;
            }
            word = self.words[w];
        }
    }

    /// Is any bit of `lo..=hi` set?
    #[inline]
    pub(crate) fn any_set_between(&self, lo: u32, hi: u32) -> bool {
        let (wl, wh) = ((lo >> 6) as usize, (hi >> 6) as usize);
        let low_mask = u64::MAX << (lo & 63);
        let high_mask = u64::MAX >> (63 - (hi & 63));
        if wl == wh {
            return self.words[wl] & low_mask & high_mask != 0;
        }
        self.words[wl] & low_mask != 0 || self.words[wl + 1..wh].iter().any(|&w| w != 0) || self.words[wh] & high_mask != 0
    }

    pub(crate) fn and_assign(&mut self, other: &DenseBits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= *b;
        }
    }

    pub(crate) fn count_ones(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Set bits in increasing order.
    pub(crate) fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some((i as u32) << 6 | bit)
            })
        })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Number of groups holding at least one set bit, groups being the runs that start at
    /// each set bit of `group_start` (bit 0 must be a group start when `len > 0`).
    pub(crate) fn distinct_groups(&self, group_start: &DenseBits) -> u64 {
        distinct_groups_words(self.words.iter().copied(), group_start.words.iter().copied())
    }

    /// The first set bit of each group (one representative doc per SPU).
    pub(crate) fn first_in_groups(&self, group_start: &DenseBits) -> DenseBits {
        let mut words = Vec::with_capacity(self.words.len());
        let mut carry_in = 0u64;
        for (&b, &s) in self.words.iter().zip(&group_start.words) {
            let (first, carry) = first_bits_word(b, s, carry_in);
            words.push(first);
            carry_in = carry;
        }
        DenseBits { words, len: self.len }
    }

    /// [`Self::distinct_groups`] of `self ∧ other`, without materialising it.
    pub(crate) fn distinct_groups_and(&self, other: &DenseBits, group_start: &DenseBits) -> u64 {
        distinct_groups_words(self.words.iter().zip(&other.words).map(|(a, b)| a & b), group_start.words.iter().copied())
    }
}

/// Counts groups (runs starting at each bit of `starts`) that hold a bit of `bits`, 64 bits at
/// a time. A group is hit when its start bit is set, or when the first bit of `starts | bits`
/// after a start that is not itself set is a set bit that is not a start. "The next bit of Y
/// after each Z bit" is found with one addition per word: `(Z << 1) + !Y` carries from
/// each Z bit through the clear bits of Y and stops on (sets) the next Y bit.
fn distinct_groups_words(bits: impl Iterator<Item = u64>, starts: impl Iterator<Item = u64>) -> u64 {
    let mut count = 0u64;
    let mut carry_in = 0u64;
    for (b, s) in bits.zip(starts) {
        let (first, carry) = first_bits_word(b, s, carry_in);
        count += u64::from(first.count_ones());
        carry_in = carry;
    }
    count
}

/// One word of "first set bit of each group": set bits that are group starts, and the set
/// bits right after (in `starts | bits`) a group start that is not set. Returns the word and
/// the carry into the next word.
#[inline]
fn first_bits_word(b: u64, s: u64, carry_in: u64) -> (u64, u64) {
    let y = s | b;
    let z = s & !b;
    let w = b & !s;
    let (sum, carry_out) = ((z << 1) | carry_in).overflowing_add(!y);
    ((b & s) | (sum & w), (z >> 63) | u64::from(carry_out))
}

/// Calls `f` for each member of `r` in order, decoding 256 at a time (much cheaper per
/// element than the plain iterator).
#[inline]
fn for_each_member(r: &RoaringBitmap, mut f: impl FnMut(u32)) {
    let mut iter = r.iter();
    let mut buf = [0u32; 256];
    loop {
        let got = iter.next_many(&mut buf);
        if got.is_empty() {
            break;
        }
        for &doc in got.iter() {
            f(doc);
        }
    }
}

/// Docs holding one value (a brand, a shop, an attribute value, a price bucket): a roaring
/// bitmap when sparse, a dense bitset when more than 1/16 of the docs hold it (where
/// roaring would use bitmap containers anyway, so the memory is the same).
#[derive(Debug, Clone)]
pub(crate) enum Posting {
    Sparse(RoaringBitmap),
    Dense(DenseBits),
}

impl Posting {
    /// A posting of these increasing doc ids among `n` docs.
    pub(crate) fn from_sorted(ids: &[u32], n: usize) -> Posting {
        if ids.len() * 16 > n {
            let mut bits = DenseBits::zeros(n);
            for &id in ids {
                bits.set(id);
            }
            Posting::Dense(bits)
        } else {
            // The ids are increasing, so this cannot fail.
            Posting::Sparse(RoaringBitmap::from_sorted_iter(ids.iter().copied()).unwrap_or_default())
        }
    }

    /// Sets this posting's docs in `into`.
    pub(crate) fn or_into(&self, into: &mut DenseBits) {
        match self {
            Posting::Sparse(r) => for_each_member(r, |doc| into.set(doc)),
            Posting::Dense(d) => {
                for (a, b) in into.words.iter_mut().zip(&d.words) {
                    *a |= *b;
                }
            }
        }
    }

    /// Distinct groups (SPUs) among `self ∧ filter`. Sparse postings find each doc's group
    /// in the group-start bitset (small and cache-resident), not in the SPU column.
    pub(crate) fn distinct_groups_and(&self, filter: &DenseBits, group_start: &DenseBits) -> u64 {
        match self {
            Posting::Dense(d) => d.distinct_groups_and(filter, group_start),
            Posting::Sparse(r) => {
                // A matching doc opens a new group when a group starts after the previous
                // matching doc, up to and including it.
                let mut count = 0;
                let mut last: Option<u32> = None;
                for_each_member(r, |doc| {
                    if filter.get(doc) {
                        if last.is_none_or(|p| group_start.any_set_between(p + 1, doc)) {
                            count += 1;
                        }
                        last = Some(doc);
                    }
                });
                count
            }
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Posting::Sparse(r) => r.serialized_size(),
            Posting::Dense(d) => d.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn distinct_groups_matches_brute_force(groups in prop::collection::vec(1usize..5, 1..80), seed in any::<u64>()) {
            let n: usize = groups.iter().sum();
            let mut starts = DenseBits::zeros(n);
            let mut group_of = Vec::with_capacity(n);
            let mut at = 0;
            for (g, &len) in groups.iter().enumerate() {
                starts.set(at as u32);
                for _ in 0..len { group_of.push(g); }
                at += len;
            }
            let mut bits = DenseBits::zeros(n);
            let mut other = DenseBits::zeros(n);
            let mut x = seed | 1;
            for i in 0..n {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                if x % 3 == 0 { bits.set(i as u32); }
                if x % 5 < 3 { other.set(i as u32); }
            }
            let brute = |f: &dyn Fn(usize) -> bool| {
                let mut hit: Vec<usize> = (0..n).filter(|&i| f(i)).map(|i| group_of[i]).collect();
                hit.dedup();
                hit.len() as u64
            };
            prop_assert_eq!(bits.distinct_groups(&starts), brute(&|i| bits.get(i as u32)));
            let firsts: Vec<u32> = bits.first_in_groups(&starts).iter_ones().collect();
            let mut want = Vec::new();
            let mut last_group = None;
            for i in (0..n).filter(|&i| bits.get(i as u32)) {
                if last_group != Some(group_of[i]) {
                    want.push(i as u32);
                    last_group = Some(group_of[i]);
                }
            }
            prop_assert_eq!(firsts, want);
            prop_assert_eq!(bits.distinct_groups_and(&other, &starts), brute(&|i| bits.get(i as u32) && other.get(i as u32)));
            let ids: Vec<u32> = other.iter_ones().collect();
            for posting in [Posting::from_sorted(&ids, n), Posting::Sparse(RoaringBitmap::from_sorted_iter(ids.iter().copied()).unwrap())] {
                prop_assert_eq!(posting.distinct_groups_and(&bits, &starts), brute(&|i| bits.get(i as u32) && other.get(i as u32)));
            }
            for i in 0..n as u32 {
                for j in i..n as u32 {
                    prop_assert_eq!(starts.any_set_between(i, j), (i..=j).any(|k| starts.get(k)));
                }
                let start = (0..=i).rev().find(|&j| starts.get(j));
                prop_assert_eq!(starts.prev_set(i), start);
                let next = (i..n as u32).find(|&j| starts.get(j)).unwrap_or(n as u32);
                prop_assert_eq!(starts.next_set_or_len(i), next);
            }
        }
    }

    #[test]
    fn ones_masks_the_tail_and_iterates_in_order() {
        let bits = DenseBits::ones(70);
        assert_eq!(bits.count_ones(), 70);
        assert_eq!(bits.iter_ones().last(), Some(69));
        assert!(!bits.get(70));
    }
}
