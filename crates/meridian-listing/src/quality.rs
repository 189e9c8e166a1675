//! Quality scores: a weighted sum of normalised signals (sales, reviews, views, carts,
//! conversion, freshness, stock, returns), the batch that rescores a catalog from
//! behaviour counts, and live adjustment from recent behaviour.
//!
//! Each signal is normalised to `0..=1`:
//! * counts (sales, reviews, views, carts): `min(1, ln(1 + x) / ln(1 + reference))`, so the
//!   first units matter most and `reference` units saturate;
//! * conversion: orders per view smoothed towards `conversion_prior` by
//!   `conversion_prior_views` pseudo-views, divided by `conversion_reference` (capped at 1);
//!   the item's own `metrics.conversion` is used when nobody viewed it;
//! * freshness: `0.5 ^ (age in days / freshness_half_life_days)`;
//! * stock: 1 with stock, else 0;
//! * returns: returned units per sold unit (smoothed by `returns_prior_orders`), divided
//!   by `returns_reference` (capped at 1).
//!
//! `score = Σ weight × signal` with the returns weight subtracted (a penalty).

use crate::error::ListingError;
use crate::model::{Change, ListingItem};
use meridian_config::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Weights and normalisations of the quality score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityFormula {
    /// Weight of units sold.
    pub sales: f64,
    /// Weight of reviews.
    pub reviews: f64,
    /// Weight of views.
    pub views: f64,
    /// Weight of add-to-carts.
    pub carts: f64,
    /// Weight of the conversion rate.
    pub conversion: f64,
    /// Weight of freshness.
    pub freshness: f64,
    /// Weight of having stock.
    pub stock: f64,
    /// Penalty weight of the returns rate.
    pub returns: f64,
    /// Units sold that saturate the sales signal.
    pub sales_reference: f64,
    /// Reviews that saturate the reviews signal.
    pub reviews_reference: f64,
    /// Views that saturate the views signal.
    pub views_reference: f64,
    /// Carts that saturate the carts signal.
    pub carts_reference: f64,
    /// Conversion rate that saturates the conversion signal.
    pub conversion_reference: f64,
    /// Rate assumed before any view.
    pub conversion_prior: f64,
    /// Pseudo-views of that prior.
    pub conversion_prior_views: f64,
    /// Age at which freshness halves, days.
    pub freshness_half_life_days: f64,
    /// Returns rate that saturates the returns penalty.
    pub returns_reference: f64,
    /// Pseudo-orders smoothing the returns rate.
    pub returns_prior_orders: f64,
}

impl Default for QualityFormula {
    fn default() -> Self {
        QualityFormula {
            sales: 30.0,
            reviews: 10.0,
            views: 5.0,
            carts: 5.0,
            conversion: 20.0,
            freshness: 15.0,
            stock: 10.0,
            returns: 15.0,
            sales_reference: 10_000.0,
            reviews_reference: 5_000.0,
            views_reference: 1_000_000.0,
            carts_reference: 50_000.0,
            conversion_reference: 0.1,
            conversion_prior: 0.02,
            conversion_prior_views: 100.0,
            freshness_half_life_days: 90.0,
            returns_reference: 0.3,
            returns_prior_orders: 20.0,
        }
    }
}

impl QualityFormula {
    /// Weights finite and non-negative, references and half-life positive.
    pub fn validate(&self) -> Result<(), FieldError> {
        let weights = [
            ("quality.sales", self.sales),
            ("quality.reviews", self.reviews),
            ("quality.views", self.views),
            ("quality.carts", self.carts),
            ("quality.conversion", self.conversion),
            ("quality.freshness", self.freshness),
            ("quality.stock", self.stock),
            ("quality.returns", self.returns),
            ("quality.conversion_prior", self.conversion_prior),
            ("quality.conversion_prior_views", self.conversion_prior_views),
            ("quality.returns_prior_orders", self.returns_prior_orders),
        ];
        for (field, w) in weights {
            if !w.is_finite() || w < 0.0 {
                return Err(FieldError::new(field, format!("{w} is not a finite number ≥ 0")));
            }
        }
        let positive = [
            ("quality.sales_reference", self.sales_reference),
            ("quality.reviews_reference", self.reviews_reference),
            ("quality.views_reference", self.views_reference),
            ("quality.carts_reference", self.carts_reference),
            ("quality.conversion_reference", self.conversion_reference),
            ("quality.freshness_half_life_days", self.freshness_half_life_days),
            ("quality.returns_reference", self.returns_reference),
        ];
        for (field, x) in positive {
            if !x.is_finite() || x <= 0.0 {
                return Err(FieldError::new(field, format!("{x} is not a finite number > 0")));
            }
        }
        Ok(())
    }

    /// [`Self::validate`] as a [`ListingError`].
    pub fn check(&self) -> Result<(), ListingError> {
        self.validate().map_err(|e| ListingError::InvalidSettings { field: e.field, message: e.message })
    }
}

/// Behaviour counts of one SKU from the event log (added to the item's own metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// Product-page views.
    pub views: u64,
    /// Add-to-carts.
    pub carts: u64,
    /// Orders (units).
    pub orders: u64,
}

fn log_norm(x: f64, reference: f64) -> f64 {
    ((1.0 + x.max(0.0)).ln() / (1.0 + reference).ln()).min(1.0)
}

/// The normalised signals of an item, in formula order: sales, reviews, views, carts,
/// conversion, freshness, stock, returns.
pub fn normalised_signals(item: &ListingItem, signals: &Signals, formula: &QualityFormula, now_ms: i64) -> [f64; 8] {
    let f = formula;
    let sales = (item.metrics.sales + signals.orders) as f64;
    let views = (item.metrics.views + signals.views) as f64;
    let rate = if views > 0.0 {
        (sales + f.conversion_prior * f.conversion_prior_views) / (views + f.conversion_prior_views)
    } else if item.metrics.conversion > 0.0 {
        f64::from(item.metrics.conversion)
    } else {
        f.conversion_prior
    };
    let age_days = ((now_ms - item.launch_time).max(0) as f64) / 86_400_000.0;
    let returns_rate = item.metrics.returns as f64 / (sales + f.returns_prior_orders);
    [
        log_norm(sales, f.sales_reference),
        log_norm(item.metrics.reviews as f64, f.reviews_reference),
        log_norm(views, f.views_reference),
        log_norm(signals.carts as f64, f.carts_reference),
        (rate / f.conversion_reference).clamp(0.0, 1.0),
        0.5f64.powf(age_days / f.freshness_half_life_days),
        if item.stock > 0 { 1.0 } else { 0.0 },
        (returns_rate / f.returns_reference).clamp(0.0, 1.0),
    ]
}

/// The quality score of `item` with extra behaviour `signals` at `now_ms` (pure).
pub fn score(item: &ListingItem, signals: &Signals, formula: &QualityFormula, now_ms: i64) -> f32 {
    let s = normalised_signals(item, signals, formula, now_ms);
    let f = formula;
    let value = f.sales * s[0] + f.reviews * s[1] + f.views * s[2] + f.carts * s[3] + f.conversion * s[4] + f.freshness * s[5] + f.stock * s[6] - f.returns * s[7];
    value as f32
}

/// The batch job: rescores every item with its behaviour counts (SKUs without counts get
/// none), stores the new score in the item, and returns a [`Change::Quality`] for each
/// score that moved by more than `min_change` (to apply to the engine in one batch).
pub fn rescore(items: &mut [ListingItem], signals: &HashMap<u64, Signals>, formula: &QualityFormula, now_ms: i64, min_change: f32) -> Vec<Change> {
    let none = Signals::default();
    let mut changes = Vec::new();
    for item in items.iter_mut() {
        let new = score(item, signals.get(&item.sku).unwrap_or(&none), formula, now_ms);
        if (new - item.quality).abs() > min_change || item.quality.is_nan() {
            item.quality = new;
            changes.push(Change::Quality { sku: item.sku, score: new });
        }
    }
    changes
}

/// How recent behaviour lifts a score between batch runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveAdjustment {
    /// Weight of a recent view.
    pub view: f64,
    /// Weight of a recent add-to-cart.
    pub cart: f64,
    /// Weight of a recent order.
    pub order: f64,
    /// Scale of the boost: `scale × ln(1 + weighted recent count)`.
    pub scale: f64,
    /// Largest boost.
    pub max_boost: f64,
    /// Half-life of recent behaviour, seconds.
    pub half_life_secs: f64,
}

impl Default for LiveAdjustment {
    fn default() -> Self {
        LiveAdjustment { view: 0.1, cart: 1.0, order: 3.0, scale: 2.0, max_boost: 10.0, half_life_secs: 3_600.0 }
    }
}

/// Decayed counts of recent behaviour of one SKU.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecentSignals {
    /// Decayed views.
    pub views: f64,
    /// Decayed carts.
    pub carts: f64,
    /// Decayed orders.
    pub orders: f64,
}

/// The live hook: `base_score` lifted by recent behaviour, at most `max_boost` (pure).
pub fn live_adjust(base_score: f32, recent: &RecentSignals, params: &LiveAdjustment) -> f32 {
    let weighted = params.view * recent.views + params.cart * recent.carts + params.order * recent.orders;
    let boost = (params.scale * (1.0 + weighted.max(0.0)).ln()).min(params.max_boost);
    (f64::from(base_score) + boost) as f32
}

/// A kind of behaviour counted by [`RecentBehaviour`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A product-page view.
    View,
    /// An add-to-cart.
    Cart,
    /// An order.
    Order,
}

/// Recent behaviour per SKU with exponential decay (feed it from the event stream; ask it
/// for the boosted scores to apply as [`Change::Quality`]).
#[derive(Debug, Clone, Default)]
pub struct RecentBehaviour {
    params: LiveAdjustment,
    per_sku: HashMap<u64, (RecentSignals, i64)>,
}

impl RecentBehaviour {
    /// An empty tracker.
    pub fn new(params: LiveAdjustment) -> RecentBehaviour {
        RecentBehaviour { params, per_sku: HashMap::new() }
    }

    fn decay(&self, s: RecentSignals, from_ms: i64, to_ms: i64) -> RecentSignals {
        let f = 0.5f64.powf(((to_ms - from_ms).max(0) as f64 / 1000.0) / self.params.half_life_secs);
        RecentSignals { views: s.views * f, carts: s.carts * f, orders: s.orders * f }
    }

    /// Its parameters.
    pub fn params(&self) -> &LiveAdjustment {
        &self.params
    }

    /// SKUs tracked.
    pub fn len(&self) -> usize {
        self.per_sku.len()
    }

    /// True when no SKU is tracked.
    pub fn is_empty(&self) -> bool {
        self.per_sku.is_empty()
    }

    /// Counts one event.
    pub fn record(&mut self, sku: u64, behaviour: Behaviour, at_ms: i64) {
        let (s, last) = self.per_sku.get(&sku).copied().unwrap_or_default();
        let mut s = self.decay(s, last, at_ms);
        match behaviour {
            Behaviour::View => s.views += 1.0,
            Behaviour::Cart => s.carts += 1.0,
            Behaviour::Order => s.orders += 1.0,
        }
        self.per_sku.insert(sku, (s, at_ms.max(last)));
    }

    /// Decayed counts of `sku` at `now_ms`.
    pub fn recent(&self, sku: u64, now_ms: i64) -> RecentSignals {
        self.per_sku.get(&sku).map(|&(s, last)| self.decay(s, last, now_ms)).unwrap_or_default()
    }

    /// Quality changes for every tracked SKU: its batch score (`base_score`, skipped when
    /// `None`) adjusted by its recent behaviour.
    pub fn changes(&self, now_ms: i64, base_score: impl Fn(u64) -> Option<f32>) -> Vec<Change> {
        let mut skus: Vec<u64> = self.per_sku.keys().copied().collect();
        skus.sort_unstable();
        skus.into_iter().filter_map(|sku| Some(Change::Quality { sku, score: live_adjust(base_score(sku)?, &self.recent(sku, now_ms), &self.params) })).collect()
    }

    /// Forgets SKUs whose decayed activity fell below `epsilon`.
    pub fn prune(&mut self, now_ms: i64, epsilon: f64) {
        let params = self.params.clone();
        let tracker = RecentBehaviour { params, per_sku: HashMap::new() };
        self.per_sku.retain(|_, (s, last)| {
            let d = tracker.decay(*s, *last, now_ms);
            d.views + d.carts + d.orders >= epsilon
        });
    }
}
