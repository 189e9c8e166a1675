//! Daily buckets of one aggregation for one user, and how buckets combine into a window.
//!
//! A distinct bucket keeps interned value ids (u32, see the processor's interner): a
//! sorted list up to `distinct_list_max` values (4 bytes each), a roaring bitmap above
//! (about 2 bytes per value in array containers, less in dense runs). A window's distinct
//! count is the size of the union of its days' sets: exact.

use crate::config::AggregationKind;
use crate::window::Day;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

/// Distinct value ids of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DistinctSet {
    /// Sorted, no duplicates.
    List(Vec<u32>),
    /// Above the list's limit.
    Bitmap(RoaringBitmap),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::List(Vec::new())
    }
}

impl DistinctSet {
    /// Adds `id`; `list_max` is the largest list before switching to a bitmap.
    pub fn insert(&mut self, id: u32, list_max: usize) {
        match self {
            DistinctSet::List(list) => {
                if let Err(at) = list.binary_search(&id) {
                    list.insert(at, id);
                    if list.len() > list_max {
                        let bitmap: RoaringBitmap = list.iter().copied().collect();
                        *self = DistinctSet::Bitmap(bitmap);
                    }
                }
            }
            DistinctSet::Bitmap(bitmap) => {
                bitmap.insert(id);
            }
        }
    }

    /// Adds every id of `other`.
    pub fn union_with(&mut self, other: &DistinctSet, list_max: usize) {
        match other {
            DistinctSet::List(list) => match self {
                // Two sorted lists: one linear merge (inserting one by one shifts the list
                // for every id: quadratic, and most of a profile read's time).
                DistinctSet::List(mine) => {
                    if list.is_empty() {
                        return;
                    }
                    let mut merged = Vec::with_capacity(mine.len() + list.len());
                    let (mut i, mut j) = (0, 0);
                    while i < mine.len() && j < list.len() {
                        match mine[i].cmp(&list[j]) {
                            std::cmp::Ordering::Less => {
                                merged.push(mine[i]);
                                i += 1;
                            }
                            std::cmp::Ordering::Greater => {
                                merged.push(list[j]);
                                j += 1;
                            }
                            std::cmp::Ordering::Equal => {
                                merged.push(mine[i]);
                                i += 1;
                                j += 1;
                            }
                        }
                    }
                    merged.extend_from_slice(&mine[i..]);
                    merged.extend_from_slice(&list[j..]);
                    if merged.len() > list_max {
                        *self = DistinctSet::Bitmap(merged.into_iter().collect());
                    } else {
                        *mine = merged;
                    }
                }
                DistinctSet::Bitmap(bitmap) => bitmap.extend(list.iter().copied()),
            },
            DistinctSet::Bitmap(b) => match self {
                // In place (not a copy of the union so far for every day).
                DistinctSet::Bitmap(mine) => *mine |= b,
                DistinctSet::List(mine) => {
                    let mut bitmap = b.clone();
                    bitmap.extend(mine.iter().copied());
                    *self = DistinctSet::Bitmap(bitmap);
                }
            },
        }
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        match self {
            DistinctSet::List(list) => list.len() as u64,
            DistinctSet::Bitmap(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes it holds (approximately, for memory figures).
    pub fn heap_bytes(&self) -> usize {
        match self {
            DistinctSet::List(list) => list.capacity() * 4,
            DistinctSet::Bitmap(b) => b.serialized_size(),
        }
    }
}

/// One day's value of an aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Bucket {
    /// `count`.
    Count(u64),
    /// `sum`.
    Sum(f64),
    /// `min`.
    Min(f64),
    /// `max`.
    Max(f64),
    /// `first_time`, ms.
    First(i64),
    /// `last_time`, ms.
    Last(i64),
    /// `last_value`: event time and the value as JSON text.
    LastValue(i64, String),
    /// `distinct`.
    Distinct(DistinctSet),
}

/// What one event contributes to an aggregation.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// One more (count), at this time (first/last).
    Event(i64),
    /// A number (sum/min/max).
    Number(f64),
    /// A value at a time (last_value).
    Value(i64, String),
    /// An interned distinct value.
    Id(u32),
}

impl Bucket {
    fn from_input(kind: AggregationKind, input: &Input, list_max: usize) -> Option<Bucket> {
        let mut bucket = match kind {
            AggregationKind::Count => Bucket::Count(0),
            AggregationKind::Sum => Bucket::Sum(0.0),
            AggregationKind::Min => Bucket::Min(f64::INFINITY),
            AggregationKind::Max => Bucket::Max(f64::NEG_INFINITY),
            AggregationKind::FirstTime => Bucket::First(i64::MAX),
            AggregationKind::LastTime => Bucket::Last(i64::MIN),
            AggregationKind::LastValue => Bucket::LastValue(i64::MIN, String::new()),
            AggregationKind::Distinct => Bucket::Distinct(DistinctSet::default()),
        };
        bucket.add(input, list_max).then_some(bucket)
    }

    /// Adds an input; false when it does not fit this kind (nothing changes).
    fn add(&mut self, input: &Input, list_max: usize) -> bool {
        match (self, input) {
            (Bucket::Count(n), Input::Event(_)) => *n += 1,
            (Bucket::Sum(s), Input::Number(x)) => *s += x,
            (Bucket::Min(m), Input::Number(x)) => *m = m.min(*x),
            (Bucket::Max(m), Input::Number(x)) => *m = m.max(*x),
            (Bucket::First(t), Input::Event(x)) => *t = (*t).min(*x),
            (Bucket::Last(t), Input::Event(x)) => *t = (*t).max(*x),
            (Bucket::LastValue(t, v), Input::Value(x, value)) => {
                // Ties keep the greater text, so the result does not depend on arrival order.
                if *x > *t || (*x == *t && value > v) {
                    *t = *x;
                    v.clone_from(value);
                }
            }
            (Bucket::Distinct(set), Input::Id(id)) => set.insert(*id, list_max),
            _ => return false,
        }
        true
    }

    /// Combines another bucket of the same kind into this one.
    pub fn merge(&mut self, other: &Bucket, list_max: usize) {
        match (self, other) {
            (Bucket::Count(a), Bucket::Count(b)) => *a += b,
            (Bucket::Sum(a), Bucket::Sum(b)) => *a += b,
            (Bucket::Min(a), Bucket::Min(b)) => *a = a.min(*b),
            (Bucket::Max(a), Bucket::Max(b)) => *a = a.max(*b),
            (Bucket::First(a), Bucket::First(b)) => *a = (*a).min(*b),
            (Bucket::Last(a), Bucket::Last(b)) => *a = (*a).max(*b),
            (a @ Bucket::LastValue(..), Bucket::LastValue(t, v)) => {
                a.add(&Input::Value(*t, v.clone()), list_max);
            }
            (Bucket::Distinct(a), Bucket::Distinct(b)) => a.union_with(b, list_max),
            _ => {}
        }
    }

    /// Its value as a summary.
    pub fn summary(&self) -> Summary {
        match self {
            Bucket::Count(n) => Summary::Int(*n),
            Bucket::Sum(s) => Summary::Float(*s),
            Bucket::Min(m) | Bucket::Max(m) => Summary::Float(*m),
            Bucket::First(t) | Bucket::Last(t) => Summary::Time(*t),
            Bucket::LastValue(t, v) => Summary::Value(*t, v.clone()),
            Bucket::Distinct(set) => Summary::Int(set.len()),
        }
    }
}

/// The value of an aggregation over a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    /// No matching event in the window (count-like kinds report 0 instead).
    Empty,
    /// A count or distinct count.
    Int(u64),
    /// A sum, min or max.
    Float(f64),
    /// A time, ms since the epoch.
    Time(i64),
    /// The last value (JSON text) and its event time.
    Value(i64, String),
}

impl Summary {
    /// The summary as JSON (`null` when empty).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Summary::Empty => serde_json::Value::Null,
            Summary::Int(n) => (*n).into(),
            Summary::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
            Summary::Time(t) => (*t).into(),
            Summary::Value(_, text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The daily buckets of one aggregation for one user, oldest day first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(Day, Bucket)>);

impl Buckets {
    /// Adds an input to `day`'s bucket; false when the input does not fit `kind`.
    pub fn add(&mut self, kind: AggregationKind, day: Day, input: &Input, list_max: usize) -> bool {
        // Most events are of the newest day: look there first.
        if let Some((d, bucket)) = self.0.last_mut() {
            if *d == day {
                return bucket.add(input, list_max);
            }
        }
        match self.0.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(at) => self.0[at].1.add(input, list_max),
            Err(at) => match Bucket::from_input(kind, input, list_max) {
                Some(bucket) => {
                    self.0.insert(at, (day, bucket));
                    true
                }
                None => false,
            },
        }
    }

    /// Combines `other`'s buckets into these, day by day.
    pub fn merge(&mut self, other: &Buckets, list_max: usize) {
        for (day, bucket) in &other.0 {
            match self.0.binary_search_by_key(day, |(d, _)| *d) {
                Ok(at) => self.0[at].1.merge(bucket, list_max),
                Err(at) => self.0.insert(at, (*day, bucket.clone())),
            }
        }
    }

    /// Drops days before `oldest`; true when something was dropped.
    pub fn prune(&mut self, oldest: Day) -> bool {
        if self.0.first().is_none_or(|(d, _)| *d >= oldest) {
            return false;
        }
        let keep_from = self.0.partition_point(|(d, _)| *d < oldest);
        if keep_from > 0 {
            self.0.drain(..keep_from);
            true
        } else {
            false
        }
    }

    /// The combined value over the inclusive days `[from, to]`.
    pub fn window(&self, kind: AggregationKind, from: Day, to: Day, list_max: usize) -> Summary {
        let start = self.0.partition_point(|(d, _)| *d < from);
        let end = self.0.partition_point(|(d, _)| *d <= to);
        let days = &self.0[start..end];
        match kind {
            AggregationKind::Count => Summary::Int(days.iter().map(|(_, b)| if let Bucket::Count(n) = b { *n } else { 0 }).sum()),
            AggregationKind::Distinct => match days {
                [] => Summary::Int(0),
                [(_, only)] => only.summary(),
                _ => {
                    let mut union = DistinctSet::default();
                    for (_, b) in days {
                        if let Bucket::Distinct(set) = b {
                            union.union_with(set, list_max.max(4096));
                        }
                    }
                    Summary::Int(union.len())
                }
            },
            AggregationKind::Sum => Summary::Float(days.iter().map(|(_, b)| if let Bucket::Sum(s) = b { *s } else { 0.0 }).sum()),
            _ => {
                let mut acc: Option<Bucket> = None;
                for (_, b) in days {
                    match &mut acc {
                        Some(a) => a.merge(b, list_max),
                        None => acc = Some(b.clone()),
                    }
                }
                acc.map_or(Summary::Empty, |b| b.summary())
            }
        }
    }

    /// [`Buckets::window`] of several windows that end on the same day (a profile's today,
    /// 7 d, 30 d, all): a distinct count makes one union from the newest day back, read as
    /// it passes each window's first day, instead of one union per window.
    pub fn windows_ending_together<const N: usize>(&self, kind: AggregationKind, ranges: [(Day, Day); N], list_max: usize) -> [Summary; N] {
        if kind != AggregationKind::Distinct || ranges.iter().any(|(_, to)| *to != ranges[0].1) {
            return ranges.map(|(from, to)| self.window(kind, from, to, list_max));
        }
        let to = ranges.first().map_or(0, |(_, to)| *to);
        let days = &self.0[..self.0.partition_point(|(d, _)| *d <= to)];
        let mut newest_first: [usize; N] = std::array::from_fn(|i| i);
        newest_first.sort_by_key(|i| std::cmp::Reverse(ranges[*i].0));
        let mut out: [Summary; N] = std::array::from_fn(|_| Summary::Int(0));
        let mut union = DistinctSet::default();
        let mut next = days.len();
        for i in newest_first {
            while next > 0 && days[next - 1].0 >= ranges[i].0 {
                if let Bucket::Distinct(set) = &days[next - 1].1 {
                    union.union_with(set, list_max.max(4096));
                }
                next -= 1;
            }
            out[i] = Summary::Int(union.len());
        }
        out
    }

    /// The newest day with a value, if any.
    pub fn newest_day(&self) -> Option<Day> {
        self.0.last().map(|(d, _)| *d)
    }

    /// Heap bytes held (approximately).
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Day, Bucket)>()
            + self
                .0
                .iter()
                .map(|(_, b)| match b {
                    Bucket::LastValue(_, v) => v.capacity(),
                    Bucket::Distinct(s) => s.heap_bytes(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_combines_over_a_window() {
        let mut b = Buckets::default();
        for (day, t) in [(10, 1000), (11, 500), (11, 2000), (13, 1500)] {
            b.add(AggregationKind::Count, day, &Input::Event(t), 64);
        }
        assert_eq!(b.window(AggregationKind::Count, 10, 13, 64), Summary::Int(4));
        assert_eq!(b.window(AggregationKind::Count, 11, 12, 64), Summary::Int(2));
        assert_eq!(b.window(AggregationKind::Count, 14, 20, 64), Summary::Int(0));

        let mut first = Buckets::default();
        let mut last = Buckets::default();
        for (day, t) in [(10, 1000), (11, 500), (11, 2000), (13, 1500)] {
            first.add(AggregationKind::FirstTime, day, &Input::Event(t), 64);
            last.add(AggregationKind::LastTime, day, &Input::Event(t), 64);
        }
        assert_eq!(first.window(AggregationKind::FirstTime, 10, 13, 64), Summary::Time(500));
        assert_eq!(last.window(AggregationKind::LastTime, 10, 12, 64), Summary::Time(2000));
        assert_eq!(last.window(AggregationKind::LastTime, 14, 15, 64), Summary::Empty);

        let mut sum = Buckets::default();
        let mut min = Buckets::default();
        let mut max = Buckets::default();
        for (day, x) in [(1, 2.5), (2, -1.0), (2, 4.0)] {
            sum.add(AggregationKind::Sum, day, &Input::Number(x), 64);
            min.add(AggregationKind::Min, day, &Input::Number(x), 64);
            max.add(AggregationKind::Max, day, &Input::Number(x), 64);
        }
        assert_eq!(sum.window(AggregationKind::Sum, 1, 2, 64), Summary::Float(5.5));
        assert_eq!(min.window(AggregationKind::Min, 1, 2, 64), Summary::Float(-1.0));
        assert_eq!(max.window(AggregationKind::Max, 1, 1, 64), Summary::Float(2.5));
        // A count input does not fit a sum: refused, nothing stored.
        assert!(!sum.add(AggregationKind::Sum, 9, &Input::Event(1), 64));
        assert_eq!(sum.0.len(), 2);

        let mut lv = Buckets::default();
        lv.add(AggregationKind::LastValue, 3, &Input::Value(300, "\"gold\"".into()), 64);
        lv.add(AggregationKind::LastValue, 3, &Input::Value(100, "\"silver\"".into()), 64); // late, older
        lv.add(AggregationKind::LastValue, 2, &Input::Value(50, "\"bronze\"".into()), 64);
        assert_eq!(lv.window(AggregationKind::LastValue, 0, 5, 64).to_json(), serde_json::json!("gold"));
        assert_eq!(lv.window(AggregationKind::LastValue, 0, 2, 64).to_json(), serde_json::json!("bronze"));
    }

    #[test]
    fn distinct_sets_switch_to_bitmaps_and_stay_exact() {
        let mut b = Buckets::default();
        for id in 0..100u32 {
            b.add(AggregationKind::Distinct, 1, &Input::Id(id % 70), 16);
            b.add(AggregationKind::Distinct, 2, &Input::Id(50 + id % 10), 16);
        }
        assert!(matches!(&b.0[0].1, Bucket::Distinct(DistinctSet::Bitmap(_))));
        assert!(matches!(&b.0[1].1, Bucket::Distinct(DistinctSet::List(_))));
        assert_eq!(b.window(AggregationKind::Distinct, 1, 1, 16), Summary::Int(70));
        assert_eq!(b.window(AggregationKind::Distinct, 2, 2, 16), Summary::Int(10));
        assert_eq!(b.window(AggregationKind::Distinct, 1, 2, 16), Summary::Int(70));
        let bytes = postcard::to_allocvec(&b).unwrap();
        assert_eq!(postcard::from_bytes::<Buckets>(&bytes).unwrap(), b);
    }

    #[test]
    fn merge_prune_and_out_of_order_days() {
        let mut a = Buckets::default();
        a.add(AggregationKind::Count, 5, &Input::Event(0), 64);
        a.add(AggregationKind::Count, 3, &Input::Event(0), 64); // an older day arrives late
        let mut b = Buckets::default();
        b.add(AggregationKind::Count, 4, &Input::Event(0), 64);
        b.add(AggregationKind::Count, 5, &Input::Event(0), 64);
        a.merge(&b, 64);
        assert_eq!(a.0.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(a.window(AggregationKind::Count, 0, 9, 64), Summary::Int(4));
        assert!(a.prune(4));
        assert_eq!(a.window(AggregationKind::Count, 0, 9, 64), Summary::Int(3));
        assert!(!a.prune(4));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    proptest! {
        /// Distinct counts over any window equal a brute-force set of the raw values, for
        /// random streams (any order, repeats, lists that switch to bitmaps and back through
        /// merges), and merging two halves equals applying the whole stream.
        #[test]
        fn distinct_counts_are_exact(stream in prop::collection::vec((0i32..30, 0u32..200), 0..400), list_max in 1usize..40, from in 0i32..30, len in 1i32..30) {
            let mut all = Buckets::default();
            let mut first = Buckets::default();
            let mut second = Buckets::default();
            let mut reference: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
            for (i, (day, id)) in stream.iter().enumerate() {
                all.add(AggregationKind::Distinct, *day, &Input::Id(*id), list_max);
                let half = if i % 2 == 0 { &mut first } else { &mut second };
                half.add(AggregationKind::Distinct, *day, &Input::Id(*id), list_max);
                reference.entry(*day).or_default().insert(*id);
            }
            first.merge(&second, list_max);
            for (day, bucket) in &first.0 {
                if let Bucket::Distinct(DistinctSet::List(list)) = bucket {
                    prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "day {}: a merged list stays sorted, without repeats", day);
                    prop_assert!(list.len() <= list_max, "day {}: a list longer than its limit becomes a bitmap", day);
                }
            }
            let to = from + len - 1;
            let expected: BTreeSet<u32> = reference.range(from..=to).flat_map(|(_, s)| s.iter().copied()).collect();
            prop_assert_eq!(all.window(AggregationKind::Distinct, from, to, list_max), Summary::Int(expected.len() as u64));
            prop_assert_eq!(first.window(AggregationKind::Distinct, from, to, list_max), Summary::Int(expected.len() as u64));
            let decoded: Buckets = postcard::from_bytes(&postcard::to_allocvec(&all).unwrap()).unwrap();
            prop_assert_eq!(decoded.window(AggregationKind::Distinct, from, to, list_max), Summary::Int(expected.len() as u64));
        }

        /// Windows ending on the same day, read together, equal each window read alone.
        #[test]
        fn windows_read_together_equal_each_alone(stream in prop::collection::vec((0i32..40, 0u32..300), 0..400), list_max in 1usize..40, to in 0i32..45, lens in prop::collection::vec(1i32..45, 4)) {
            let mut b = Buckets::default();
            for (day, id) in &stream {
                b.add(AggregationKind::Distinct, *day, &Input::Id(*id), list_max);
            }
            let ranges: [(Day, Day); 4] = std::array::from_fn(|i| (to - lens[i] + 1, to));
            let alone = ranges.map(|(from, to)| b.window(AggregationKind::Distinct, from, to, list_max));
            prop_assert_eq!(b.windows_ending_together(AggregationKind::Distinct, ranges, list_max), alone);
        }

        /// Counts and sums over any window equal the brute-force total of the stream.
        #[test]
        fn counts_and_sums_are_exact(stream in prop::collection::vec((0i32..60, -1000i32..1000), 0..300), from in 0i32..60, len in 1i32..60) {
            let mut count = Buckets::default();
            let mut sum = Buckets::default();
            for (day, x) in &stream {
                count.add(AggregationKind::Count, *day, &Input::Event(0), 8);
                sum.add(AggregationKind::Sum, *day, &Input::Number(f64::from(*x)), 8);
            }
            let to = from + len - 1;
            let inside: Vec<i32> = stream.iter().filter(|(d, _)| *d >= from && *d <= to).map(|(_, x)| *x).collect();
            prop_assert_eq!(count.window(AggregationKind::Count, from, to, 8), Summary::Int(inside.len() as u64));
            prop_assert_eq!(sum.window(AggregationKind::Sum, from, to, 8), Summary::Float(inside.iter().map(|x| f64::from(*x)).sum()));
        }
    }
}
