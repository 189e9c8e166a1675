//! A mergeable quantile sketch with bounded relative error: a log-bucketed histogram
//! (the DDSketch idea). Every value `x` with `|x| ≥ 1e-9` goes to bucket
//! `ceil(ln|x| / ln γ)` with `γ = (1 + α) / (1 − α)`, α = 1 %; a bucket answers with
//! `2γ^i / (γ + 1)`, within α of every value it holds. So a quantile answered by the sketch
//! is within 1 % (relative) of the exact order statistic at the same rank, whatever the
//! distribution; merging two sketches (the panes of a sliding window) adds bucket counts
//! and keeps the guarantee. Smaller magnitudes count as 0; negative values have a store of
//! their own.
//!
//! Memory: a dense run of `u32` counts between the lowest and the highest bucket used —
//! values spanning 1 ms to 1 min take about 550 buckets (2.2 KB). A store is capped at
//! [`MAX_BUCKETS`]; beyond it the lowest buckets are merged (accuracy is then lost only for
//! the smallest magnitudes, never for the high percentiles alerts look at).

use serde::{Deserialize, Serialize};

/// Relative accuracy of every answer.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Most buckets in one store (positive or negative values).
pub const MAX_BUCKETS: usize = 4096;
/// Magnitudes below this count as 0.
const MIN_MAGNITUDE: f64 = 1e-9;
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

fn ln_gamma() -> f64 {
    GAMMA.ln()
}

fn bucket_of(magnitude: f64) -> i32 {
    (magnitude.ln() / ln_gamma()).ceil() as i32
}

fn value_of(bucket: i32) -> f64 {
    2.0 * (f64::from(bucket) * ln_gamma()).exp() / (GAMMA + 1.0)
}

/// A quantile sketch (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    count: u64,
    zeros: u64,
    positive: Buckets,
    negative: Buckets,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Buckets {
    /// Bucket index of `counts[0]`.
    offset: i32,
    counts: Vec<u32>,
}

impl Buckets {
    fn add(&mut self, bucket: i32, n: u32) {
        if self.counts.is_empty() {
            self.offset = bucket;
            self.counts.push(n);
            return;
        }
        if bucket < self.offset {
            let grow = (self.offset - bucket) as usize;
            if grow + self.counts.len() > MAX_BUCKETS {
                // Below everything kept and beyond the cap: goes to the lowest bucket.
                let excess = grow + self.counts.len() - MAX_BUCKETS;
                if excess >= grow {
                    self.counts[0] = self.counts[0].saturating_add(n);
                    return;
                }
                self.counts.splice(0..0, std::iter::repeat_n(0, grow - excess));
                self.offset -= (grow - excess) as i32;
                self.counts[0] = self.counts[0].saturating_add(n);
                return;
            }
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = bucket;
        }
        let index = (bucket - self.offset) as usize;
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] = self.counts[index].saturating_add(n);
        if self.counts.len() > MAX_BUCKETS {
            let excess = self.counts.len() - MAX_BUCKETS;
            let low: u32 = self.counts[..=excess].iter().fold(0u32, |a, b| a.saturating_add(*b));
            self.counts.drain(..excess);
            self.counts[0] = low;
            self.offset += excess as i32;
        }
    }

    fn merge(&mut self, other: &Buckets) {
        for (i, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add(other.offset + i as i32, n);
            }
        }
    }
}

impl QuantileSketch {
    /// An empty sketch.
    pub fn new() -> QuantileSketch {
        QuantileSketch::default()
    }

    /// Adds one value (NaN and infinities are ignored).
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.count += 1;
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zeros += 1;
        } else if value > 0.0 {
            self.positive.add(bucket_of(magnitude), 1);
        } else {
            self.negative.add(bucket_of(magnitude), 1);
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.count += other.count;
        self.zeros += other.zeros;
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `p`-th percentile (0–100): the value at rank `floor(p / 100 × (n − 1))` of the
    /// values in ascending order, within [`RELATIVE_ACCURACY`]; `None` when empty.
    pub fn quantile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = rank_of(p, self.count);
        let mut seen = 0u64;
        // Most negative first: the negative store from its highest magnitude down.
        for (i, &n) in self.negative.counts.iter().enumerate().rev() {
            seen += u64::from(n);
            if seen > rank {
                return Some(-value_of(self.negative.offset + i as i32));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (i, &n) in self.positive.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen > rank {
                return Some(value_of(self.positive.offset + i as i32));
            }
        }
        // Only reachable when bucket counts saturated; answer the highest value seen.
        self.positive.counts.len().checked_sub(1).map(|last| value_of(self.positive.offset + last as i32)).or(Some(0.0))
    }

    /// Bytes held (heap included).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<QuantileSketch>() + 4 * (self.positive.counts.capacity() + self.negative.counts.capacity())
    }
}

/// The 0-based rank the `p`-th percentile of `n` values answers with.
pub fn rank_of(p: f64, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64).floor() as u64;
    rank.min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_within_the_relative_accuracy() {
        let mut sketch = QuantileSketch::new();
        let mut values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 0.37).collect();
        values.extend([-5.0, -0.5, 0.0, 1e-12]);
        for v in &values {
            sketch.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for p in [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let exact = values[rank_of(p, values.len() as u64) as usize];
            let estimate = sketch.quantile(p).unwrap();
            assert!((estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs() + 1e-9, "p{p}: {estimate} vs {exact}");
        }
    }

    #[test]
    fn the_cap_merges_the_lowest_buckets_only() {
        let mut sketch = QuantileSketch::new();
        // 1e-8 .. 1e300 spans far more than MAX_BUCKETS buckets.
        for e in -8..300 {
            sketch.add(10f64.powi(e));
        }
        assert!(sketch.positive.counts.len() <= MAX_BUCKETS);
        let top = sketch.quantile(100.0).unwrap();
        assert!((top - 1e299).abs() <= RELATIVE_ACCURACY * 1e299, "{top}");
        assert_eq!(sketch.count(), 308);
    }
}
