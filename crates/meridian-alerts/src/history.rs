//! A rule's past window values, for the day/week comparison and the seasonal forecast —
//! bounded, compact, part of the snapshot.
//!
//! * `ExactRing`: the value of every window of the last day or week, by window start, at
//!   the rule's slide (`f32`, NaN for a window without a value): what "the same window a
//!   day/week earlier" reads. At most [`crate::rule::MAX_COMPARISON_STEPS`] + 1 values.
//! * `Seasonal`: per hour of the week (in the app's time zone, 168 slots) the mean of the window values that
//!   started in that hour, for each of the last [`HISTORY_WEEKS`] weeks (and the current
//!   one): about 1 KB a week. The forecast takes the slot's values of past weeks.
//!
//! Each part exists only once a condition needed it; both survive changes that keep the
//! metric, the filter and the window size (see the crate docs).

use crate::rule::HISTORY_WEEKS;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One week, ms.
pub const WEEK_MS: i64 = 7 * 24 * HOUR_MS;
const SLOTS: usize = 168;

/// The history of one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct History {
    pub(crate) exact: Option<ExactRing>,
    pub(crate) seasonal: Option<Seasonal>,
}

impl History {
    /// Records the value of the window starting at `start` (`local_start` in the app's
    /// time zone: the seasonal part is by local hour of the week).
    pub(crate) fn record(&mut self, start: i64, local_start: i64, value: f64) {
        if let Some(ring) = &mut self.exact {
            ring.record(start, value);
        }
        if let Some(seasonal) = &mut self.seasonal {
            seasonal.record(local_start, value);
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.exact.as_ref().map_or(0, ExactRing::memory_bytes) + self.seasonal.as_ref().map_or(0, Seasonal::memory_bytes)
    }
}

/// Window values at a fixed step over a bounded span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExactRing {
    /// Distance between window starts, ms.
    step: i64,
    /// How many values are kept.
    capacity: usize,
    /// Start of `values[0]`.
    first: i64,
    values: VecDeque<f32>,
}

impl ExactRing {
    /// Keeps `span` ms of windows every `step` ms.
    pub(crate) fn new(step: i64, span: i64) -> ExactRing {
        ExactRing { step, capacity: (span / step) as usize + 1, first: 0, values: VecDeque::new() }
    }

    pub(crate) fn step(&self) -> i64 {
        self.step
    }

    /// Keeps `span` ms from now on (values already kept stay while they fit).
    pub(crate) fn set_span(&mut self, span: i64) {
        self.capacity = (span / self.step) as usize + 1;
        self.trim();
    }

    /// The same values on another step: those whose start is on the new grid.
    pub(crate) fn regrid(&self, step: i64, span: i64) -> ExactRing {
        let mut ring = ExactRing::new(step, span);
        for (i, v) in self.values.iter().enumerate() {
            let start = self.first + i as i64 * self.step;
            if !v.is_nan() && start.rem_euclid(step) == 0 {
                ring.record(start, f64::from(*v));
            }
        }
        ring
    }

    pub(crate) fn record(&mut self, start: i64, value: f64) {
        if self.values.is_empty() {
            self.first = start;
        }
        if start < self.first {
            return;
        }
        let index = ((start - self.first) / self.step) as usize;
        if index >= self.values.len() + self.capacity {
            // A gap longer than the span: nothing kept is reachable any more.
            self.values.clear();
            self.first = start;
            self.values.push_back(value as f32);
            return;
        }
        while self.values.len() <= index {
            self.values.push_back(f32::NAN);
        }
        self.values[index] = value as f32;
        self.trim();
    }

    fn trim(&mut self) {
        while self.values.len() > self.capacity {
            self.values.pop_front();
            self.first += self.step;
        }
    }

    /// The value of the window that started at `start`.
    pub(crate) fn get(&self, start: i64) -> Option<f64> {
        if start < self.first || (start - self.first) % self.step != 0 {
            return None;
        }
        let value = *self.values.get(((start - self.first) / self.step) as usize)?;
        (!value.is_nan()).then_some(f64::from(value))
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<ExactRing>() + 4 * self.values.capacity()
    }
}

/// Mean window value per hour of the week, for the last weeks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Seasonal {
    /// Oldest first; at most `HISTORY_WEEKS + 1` (the past weeks and the current one).
    weeks: VecDeque<WeekRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WeekRow {
    /// Weeks since the epoch.
    week: i64,
    sums: Vec<f32>,
    counts: Vec<u16>,
}

fn week_and_slot(start: i64) -> (i64, usize) {
    (start.div_euclid(WEEK_MS), (start.rem_euclid(WEEK_MS) / HOUR_MS) as usize)
}

impl Seasonal {
    pub(crate) fn record(&mut self, start: i64, value: f64) {
        let (week, slot) = week_and_slot(start);
        let index = match self.weeks.iter().rposition(|row| row.week <= week) {
            Some(i) if self.weeks[i].week == week => i,
            Some(i) => {
                self.weeks.insert(i + 1, WeekRow { week, sums: vec![0.0; SLOTS], counts: vec![0; SLOTS] });
                i + 1
            }
            None if self.weeks.len() > HISTORY_WEEKS as usize => return,
            None => {
                self.weeks.push_front(WeekRow { week, sums: vec![0.0; SLOTS], counts: vec![0; SLOTS] });
                0
            }
        };
        let row = &mut self.weeks[index];
        if row.counts[slot] < u16::MAX {
            row.sums[slot] += value as f32;
            row.counts[slot] += 1;
        }
        let newest = self.weeks.back().map_or(week, |row| row.week);
        while self.weeks.front().is_some_and(|row| row.week < newest - i64::from(HISTORY_WEEKS)) {
            self.weeks.pop_front();
        }
    }

    /// The values of the hour-of-week slot of `start` in the [`HISTORY_WEEKS`] weeks
    /// before `start`'s week, oldest first.
    pub(crate) fn samples(&self, start: i64) -> Vec<f64> {
        let (week, slot) = week_and_slot(start);
        self.weeks
            .iter()
            .filter(|row| row.week < week && row.week >= week - i64::from(HISTORY_WEEKS) && row.counts[slot] > 0)
            .map(|row| f64::from(row.sums[slot]) / f64::from(row.counts[slot]))
            .collect()
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Seasonal>() + self.weeks.len() * (std::mem::size_of::<WeekRow>() + SLOTS * 6)
    }
}

/// The median of `values` (sorted in place); `values` must not be empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A robust baseline of `samples`: (median, scaled MAD = 1.4826 × median |x − median|,
/// the standard deviation for normal data).
pub(crate) fn robust_baseline(samples: &[f64]) -> (f64, f64) {
    let mut values = samples.to_vec();
    let center = median(&mut values);
    let mut deviations: Vec<f64> = samples.iter().map(|v| (v - center).abs()).collect();
    (center, 1.4826 * median(&mut deviations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_its_span_and_answers_by_start() {
        let mut ring = ExactRing::new(60_000, 600_000);
        for i in 0..20 {
            ring.record(i * 60_000, i as f64);
        }
        assert_eq!(ring.get(19 * 60_000), Some(19.0));
        assert_eq!(ring.get(9 * 60_000), Some(9.0));
        assert_eq!(ring.get(8 * 60_000), None, "older than the span");
        ring.record(30 * 60_000, 30.0);
        assert_eq!(ring.get(25 * 60_000), None, "a gap has no value");
        assert_eq!(ring.get(30 * 60_000), Some(30.0));
        ring.record(10_000 * 60_000, 1.0);
        assert_eq!(ring.get(30 * 60_000), None);
        let regridded = ring.regrid(120_000, 600_000);
        assert_eq!(regridded.get(10_000 * 60_000), Some(1.0));
    }

    #[test]
    fn seasonal_samples_come_from_past_weeks_of_the_same_hour() {
        let mut seasonal = Seasonal::default();
        for week in 0..12 {
            seasonal.record(week * WEEK_MS + 5 * HOUR_MS, week as f64);
            seasonal.record(week * WEEK_MS + 5 * HOUR_MS + 1_800_000, week as f64 + 1.0);
            seasonal.record(week * WEEK_MS + 6 * HOUR_MS, 100.0);
        }
        let samples = seasonal.samples(12 * WEEK_MS + 5 * HOUR_MS);
        assert_eq!(samples, (4..12).map(|w| w as f64 + 0.5).collect::<Vec<_>>());
        assert!(seasonal.weeks.len() <= HISTORY_WEEKS as usize + 1);
        let (center, spread) = robust_baseline(&[1.0, 2.0, 3.0, 4.0, 1000.0]);
        assert_eq!(center, 3.0);
        assert!((spread - 1.4826).abs() < 1e-9);
    }
}
