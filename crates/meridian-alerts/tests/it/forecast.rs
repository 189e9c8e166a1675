//! The forecast condition on a synthetic seasonal series: daily and weekly seasonality
//! over several weeks, with one injected anomaly — it fires on the anomaly, not on the
//! normal peaks (which a static threshold cannot tell apart).

use crate::support::*;
use meridian_alerts::{AlertState, Outcome, Output, RuleId};
use serde_json::json;

const WEEKS: i64 = 5;
/// Week 4, Wednesday-ish (day 2 of the week), 03:00: a night hour.
const ANOMALY_HOUR: i64 = 4 * 168 + 2 * 24 + 3;

/// Orders expected in `hour` (since T0): a night floor, a day curve peaking at lunch and
/// in the evening, weekends at 60 % with a Saturday-evening peak.
fn expected_orders(hour: i64) -> f64 {
    let day = (hour / 24) % 7;
    let h = (hour % 24) as f64;
    let daytime = if (6.0..22.0).contains(&h) { (std::f64::consts::PI * (h - 6.0) / 16.0).sin() } else { 0.0 };
    let evening = if (18.0..22.0).contains(&h) { 0.5 } else { 0.0 };
    let weekly = if day >= 5 { 0.6 } else { 1.0 };
    let saturday_evening = if day == 5 && (19.0..23.0).contains(&h) { 1.8 } else { 1.0 };
    20.0 + 180.0 * (daytime + evening) * weekly * saturday_evening
}

/// A deterministic ±5 % wobble.
fn noise(hour: i64) -> f64 {
    let mut x = (hour as u64).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    ((x % 10_001) as f64 / 10_000.0 - 0.5) * 0.1
}

fn series() -> Vec<meridian_event::Event> {
    let mut events = Vec::new();
    for hour in 0..WEEKS * 168 {
        let mut n = (expected_orders(hour) * (1.0 + noise(hour))).round() as i64;
        if hour == ANOMALY_HOUR {
            n *= 4; // ~80 orders at 3 am: far fewer than any daytime peak
        }
        for i in 0..n {
            events.push(event("shop", &format!("u{}", i % 50), "order", hour * HOUR + i * (HOUR / n)));
        }
    }
    events
}

#[test]
fn the_forecast_fires_on_the_anomaly_and_not_on_the_seasonal_peaks() {
    let forecast = rule(json!({
        "id": "forecast", "app": "shop", "name": "orders off their usual level", "metric": {"kind": "count"},
        "filter": {"action": "order"}, "window": {"kind": "tumbling", "size_secs": 3600},
        "condition": {"kind": "forecast", "k": 4, "min_history": 3, "direction": "above"},
    }));
    // The static alternative: a threshold above the anomaly fires at every busy hour.
    let static_threshold = rule(json!({
        "id": "static", "app": "shop", "name": "orders above 70", "metric": {"kind": "count"},
        "filter": {"action": "order"}, "window": {"kind": "tumbling", "size_secs": 3600},
        "condition": {"kind": "threshold", "op": ">", "value": 70},
    }));
    let mut engine = engine_with(&[forecast, static_threshold]);
    let events = series();
    let mut out = Output::default();
    engine.process_all(&events, &mut out);
    advance(&mut engine, WEEKS * WEEK, &mut out);

    let evaluations = of_rule(&out.evaluations, "forecast");
    assert_eq!(evaluations.len() as i64, WEEKS * 168);
    let first_judged = evaluations.iter().position(|e| e.outcome != Outcome::NoBaseline).unwrap() as i64;
    assert_eq!(first_judged, 3 * 168, "three past weeks are needed first");
    let transitions: Vec<_> = out.transitions.iter().filter(|t| t.rule.as_str() == "forecast").map(|t| (t.state, (t.window_start.0 - T0) / HOUR)).collect();
    assert_eq!(transitions, vec![(AlertState::Fired, ANOMALY_HOUR), (AlertState::Resolved, ANOMALY_HOUR + 1)]);
    let anomaly = &evaluations[ANOMALY_HOUR as usize];
    let usual = expected_orders(ANOMALY_HOUR);
    assert!((anomaly.expected.unwrap() - usual).abs() < 0.1 * usual, "the baseline is the usual night level: {:?}", anomaly.expected);
    assert!(anomaly.value.unwrap() < 100.0);
    // The peaks were judged too, and were normal.
    let busiest = evaluations[3 * 168..].iter().max_by(|a, b| a.value.partial_cmp(&b.value).unwrap()).unwrap();
    assert!(busiest.value.unwrap() > 200.0 && busiest.outcome == Outcome::Ok, "{busiest:?}");
    let static_fired = out.transitions.iter().filter(|t| t.rule.as_str() == "static" && t.state == AlertState::Fired).count();
    assert!(static_fired >= 30, "the static threshold fires every busy day ({static_fired})");
    let metrics = engine.rule_metrics(&RuleId::new("forecast").unwrap()).unwrap();
    assert!(metrics.memory_bytes > 4 * 1024 && metrics.memory_bytes < 64 * 1024, "{}", metrics.memory_bytes);
}

#[test]
fn a_below_forecast_catches_a_drop_and_a_peak_hour_outage() {
    let drop = rule(json!({
        "id": "drop", "app": "shop", "name": "orders dropped", "metric": {"kind": "count"},
        "filter": {"action": "order"}, "window": {"kind": "tumbling", "size_secs": 3600},
        "condition": {"kind": "forecast", "k": 4, "min_history": 2, "direction": "below"},
    }));
    let mut engine = engine_with(&[drop]);
    // Week 3, Monday 12:00 (a peak): orders stop for the hour.
    let outage = 3 * 168 + 12;
    let events: Vec<_> = series().into_iter().filter(|e| (e.time.0 - T0) / HOUR != outage).collect();
    let mut out = Output::default();
    engine.process_all(&events, &mut out);
    advance(&mut engine, WEEKS * WEEK, &mut out);
    let fired: Vec<_> = out.transitions.iter().filter(|t| t.state == AlertState::Fired).map(|t| (t.window_start.0 - T0) / HOUR).collect();
    assert_eq!(fired, vec![outage]);
    // The injected +300 % hour is not a drop.
    assert!(!fired.contains(&ANOMALY_HOUR));
}

/// Orders of a shop in New York over six weeks, by *local* hour: the same daily curve
/// before and after daylight saving time starts (Sunday 9 March 2025, 02:00 → 03:00), so
/// in UTC every peak moves an hour earlier from that day on.
fn new_york_series() -> (Vec<meridian_event::Event>, i64) {
    use chrono::TimeZone;
    let zone = chrono_tz::America::New_York;
    let base = chrono::NaiveDate::from_ymd_opt(2025, 2, 10).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let mut events = Vec::new();
    let mut last = 0;
    for hour in 0..6 * 168 {
        let local = base + chrono::Duration::hours(hour);
        // The hour that does not exist on the day the clocks go forward has no orders.
        let Some(start) = zone.from_local_datetime(&local).earliest() else { continue };
        let start = start.timestamp_millis();
        let n = (expected_orders(hour) * (1.0 + noise(hour))).round() as i64;
        for i in 0..n {
            events.push(event("shop", &format!("u{}", i % 50), "order", start - T0 + i * (HOUR / n)));
        }
        last = start + HOUR;
    }
    (events, last - T0)
}

#[test]
fn the_forecast_follows_the_apps_local_hours_across_a_daylight_saving_change() {
    let forecast = rule(json!({
        "id": "forecast", "app": "shop", "name": "orders off their usual level", "metric": {"kind": "count"},
        "filter": {"action": "order"}, "window": {"kind": "tumbling", "size_secs": 3600},
        "condition": {"kind": "forecast", "k": 4, "min_history": 3},
    }));
    let (events, end) = new_york_series();
    let fired = |zone: Option<chrono_tz::Tz>| {
        let mut engine = engine_with(std::slice::from_ref(&forecast));
        if let Some(zone) = zone {
            engine.set_time_zone("shop", zone);
        }
        let mut out = Output::default();
        engine.process_all(&events, &mut out);
        advance(&mut engine, end, &mut out);
        let judged = out.evaluations.iter().filter(|e| e.outcome != Outcome::NoBaseline).count();
        assert!(judged > 2 * 168, "weeks 4 to 6 are judged ({judged})");
        out.transitions.iter().filter(|t| t.state == AlertState::Fired).count()
    };
    // In the app's zone the weeks after the change look like the weeks before: nothing fires.
    assert_eq!(fired(Some(chrono_tz::America::New_York)), 0);
    // By UTC hours the same normal days look shifted by an hour at every edge of the curve.
    let utc = fired(None);
    assert!(utc >= 3, "by UTC hours the shifted curve fires ({utc})");
    // Setting UTC explicitly is the same as not setting a zone.
    assert_eq!(fired(Some(chrono_tz::Tz::UTC)), utc);
}
