//! Quality scores: each signal moves the score the documented way, the batch reports only
//! real changes, and live adjustment is bounded and decays.

use crate::item;
use meridian_listing::quality::{live_adjust, normalised_signals, rescore, score, Behaviour, LiveAdjustment, QualityFormula, RecentBehaviour, RecentSignals, Signals};
use meridian_listing::{Change, ItemMetrics, ListingItem};
use std::collections::HashMap;

const DAY: i64 = 86_400_000;

fn base() -> ListingItem {
    let mut i = item(1, 1, &[1], 1, 1, 0.0);
    i.metrics = ItemMetrics { sales: 100, reviews: 10, views: 5_000, conversion: 0.0, returns: 2 };
    i.launch_time = 0;
    i
}

#[test]
fn each_signal_moves_the_score_its_way() {
    let f = QualityFormula::default();
    let none = Signals::default();
    let now = 10 * DAY;
    let s0 = score(&base(), &none, &f, now);
    let more_sales = score(&base(), &Signals { orders: 500, ..none }, &f, now);
    assert!(more_sales > s0);
    let mut no_stock = base();
    no_stock.stock = 0;
    assert!((s0 - score(&no_stock, &none, &f, now) - f.stock as f32).abs() < 1e-3, "stock is worth exactly its weight");
    let mut returns = base();
    returns.metrics.returns = 60;
    assert!(score(&returns, &none, &f, now) < s0);
    assert!(score(&base(), &none, &f, now + 365 * DAY) < s0, "older is less fresh");
    let fresh = normalised_signals(&base(), &none, &f, 0)[5];
    let half = normalised_signals(&base(), &none, &f, (f.freshness_half_life_days * DAY as f64) as i64)[5];
    assert!((fresh - 1.0).abs() < 1e-9 && (half - 0.5).abs() < 1e-9);
    for s in normalised_signals(&base(), &Signals { views: 1 << 40, carts: 1 << 40, orders: 1 << 40 }, &f, now) {
        assert!((0.0..=1.0).contains(&s), "signals are normalised: {s}");
    }
    assert!(QualityFormula { sales: -1.0, ..f.clone() }.validate().is_err());
    assert!(QualityFormula { freshness_half_life_days: 0.0, ..f }.validate().is_err());
}

#[test]
fn the_batch_rescores_and_reports_only_moved_scores() {
    let f = QualityFormula::default();
    let mut items = vec![base(), { let mut i = base(); i.sku = 2; i }];
    let now = 3 * DAY;
    let first = rescore(&mut items, &HashMap::new(), &f, now, 0.01);
    assert_eq!(first.len(), 2);
    assert_eq!(rescore(&mut items, &HashMap::new(), &f, now, 0.01), vec![], "nothing moved");
    let signals = HashMap::from([(2, Signals { views: 100, carts: 30, orders: 40 })]);
    let changes = rescore(&mut items, &signals, &f, now, 0.01);
    assert_eq!(changes.len(), 1);
    assert!(matches!(changes[0], Change::Quality { sku: 2, score } if score > items[0].quality));
    assert_eq!(items[1].quality, score(&items[1], &signals[&2], &f, now));
}

#[test]
fn live_adjustment_is_bounded_and_decays() {
    let p = LiveAdjustment::default();
    assert_eq!(live_adjust(5.0, &RecentSignals::default(), &p), 5.0);
    let busy = RecentSignals { views: 1e9, carts: 1e9, orders: 1e9 };
    assert_eq!(live_adjust(5.0, &busy, &p), 5.0 + p.max_boost as f32);
    let mut recent = RecentBehaviour::new(p.clone());
    recent.record(7, Behaviour::Order, 0);
    recent.record(7, Behaviour::Cart, 0);
    let now = recent.recent(7, 0);
    let later = recent.recent(7, (p.half_life_secs * 1000.0) as i64);
    assert!((later.orders - now.orders / 2.0).abs() < 1e-9);
    let changes = recent.changes(0, |sku| (sku == 7).then_some(1.0));
    assert!(matches!(changes.as_slice(), [Change::Quality { sku: 7, score }] if *score > 1.0));
    recent.prune(1_000_000_000_000, 1e-3);
    assert_eq!(recent.recent(7, 0), RecentSignals::default());
}
