//! Behaviour generator: determinism, distribution shape, validity against the event model.

use meridian_demo::{BehaviourGenerator, DemoConfig, DemoWorld, Malformation, DAY_MS, P_CART_ORDER, P_ORDER_PAY, P_VIEW_CART};
use meridian_event::{AppId, Event, EventId, Timestamp, ValidationPolicy};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

fn world(config: &DemoConfig) -> Arc<DemoWorld> {
    Arc::new(DemoWorld::generate(config).unwrap())
}

fn validate(event: &Value, app: &AppId, received: i64) -> Result<Event, meridian_event::EventError> {
    Event::from_json(event.clone(), app, Timestamp(received), &ValidationPolicy::default(), || EventId::new("fallback").unwrap())
}

#[test]
fn same_seed_same_world_and_events_other_seed_differs() {
    let config = DemoConfig::small();
    let (a, b) = (world(&config), world(&config));
    assert_eq!(serde_json::to_string(&a.catalog).unwrap(), serde_json::to_string(&b.catalog).unwrap());
    assert_eq!(a.users, b.users);
    let ea: Vec<Value> = a.events(10_000).collect();
    let eb: Vec<Value> = b.events(10_000).collect();
    assert_eq!(ea.len(), 10_000);
    assert_eq!(ea, eb);

    let other = world(&DemoConfig { seed: config.seed + 1, ..config });
    assert_ne!(serde_json::to_string(&a.catalog).unwrap(), serde_json::to_string(&other.catalog).unwrap());
    let eo: Vec<Value> = other.events(10_000).collect();
    let strip = |e: &Value| {
        let mut e = e.clone();
        e.as_object_mut().unwrap().remove("id");
        e
    };
    let differing = ea.iter().zip(&eo).filter(|(x, y)| strip(x) != strip(y)).count();
    assert!(differing > 9_000, "only {differing} events differ between seeds");
}

#[test]
fn every_clean_event_validates_and_every_malformed_one_fails() {
    let config = DemoConfig { malformed_share: 0.05, ..DemoConfig::small() };
    let w = world(&config);
    let app = AppId::new(config.app.clone()).unwrap();
    let end = w.end_ms();
    let mut generator = w.events(20_000);
    let mut kinds: HashMap<Malformation, u64> = HashMap::new();
    let mut ids = HashSet::new();
    let mut malformed = 0;
    while let Some((event, tag)) = generator.next_tagged() {
        let id = event["id"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "duplicate id {id}");
        match tag {
            None => {
                let time = event["time"].as_i64().unwrap();
                for received in [end, time] {
                    if let Err(e) = validate(&event, &app, received) {
                        panic!("clean event rejected ({}): {e}: {event}", e.code);
                    }
                }
            }
            Some(kind) => {
                malformed += 1;
                *kinds.entry(kind).or_default() += 1;
                assert!(validate(&event, &app, end).is_err(), "{kind:?} accepted: {event}");
            }
        }
    }
    assert_eq!(generator.malformed_emitted(), malformed);
    assert!((700..1300).contains(&malformed), "malformed {malformed} of 20000 at 5%");
    for kind in Malformation::ALL {
        assert!(kinds.get(&kind).copied().unwrap_or(0) > 0, "{kind:?} never produced");
    }
    assert!(ids.iter().all(|id| id.starts_with(&format!("ev-{}-", config.seed))));
}

#[test]
fn default_malformed_share_is_about_half_a_percent() {
    let config = DemoConfig { malformed_share: DemoConfig::default().malformed_share, ..DemoConfig::small() };
    let mut generator = world(&config).events(100_000);
    generator.by_ref().for_each(drop);
    let m = generator.malformed_emitted();
    assert!((380..620).contains(&m), "malformed {m} of 100000");
}

struct Stats {
    actions: HashMap<String, u64>,
    sku_views: HashMap<String, u64>,
    user_events: HashMap<String, u64>,
    slow_requests: u64,
    server_errors: u64,
    crashes_with_props: u64,
    identifies: u64,
    max_backwards_ms: i64,
    min_time: i64,
    max_time: i64,
    sessions: HashSet<String>,
    categories_per_session: Vec<usize>,
}

fn stats(generator: BehaviourGenerator, w: &DemoWorld) -> Stats {
    let mut s = Stats {
        actions: HashMap::new(),
        sku_views: HashMap::new(),
        user_events: HashMap::new(),
        slow_requests: 0,
        server_errors: 0,
        crashes_with_props: 0,
        identifies: 0,
        max_backwards_ms: 0,
        min_time: i64::MAX,
        max_time: i64::MIN,
        sessions: HashSet::new(),
        categories_per_session: Vec::new(),
    };
    let mut session_categories: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut last_time = i64::MIN;
    for (e, tag) in generator.tagged() {
        if tag.is_some() {
            continue;
        }
        let action = e["action"].as_str().unwrap();
        *s.actions.entry(action.to_owned()).or_default() += 1;
        let time = e["time"].as_i64().unwrap();
        s.max_backwards_ms = s.max_backwards_ms.max(last_time.saturating_sub(time));
        last_time = last_time.max(time);
        s.min_time = s.min_time.min(time);
        s.max_time = s.max_time.max(time);
        let session = e["context"]["session"].as_str().unwrap().to_owned();
        if let Some(user) = e["user"].as_str() {
            *s.user_events.entry(user.to_owned()).or_default() += 1;
        }
        match action {
            "view" if e["target"]["type"] == "sku" => {
                let sku = e["target"]["id"].as_str().unwrap();
                *s.sku_views.entry(sku.to_owned()).or_default() += 1;
                let spu = w.catalog.sku(sku).unwrap().spu;
                session_categories.entry(session.clone()).or_default().insert(w.catalog.spu(spu).unwrap().category);
            }
            "request" => {
                if e["props"]["latency_ms"].as_u64().unwrap() > 1000 {
                    s.slow_requests += 1;
                }
                if e["props"]["status"].as_u64().unwrap() >= 500 {
                    s.server_errors += 1;
                }
            }
            "crash" if e["props"]["stack_hash"].is_string() && e["props"]["os"].is_string() => s.crashes_with_props += 1,
            "identify" if e["user"].is_string() && e["device"].is_string() => s.identifies += 1,
            _ => {}
        }
        s.sessions.insert(session);
    }
    s.categories_per_session = session_categories.values().map(HashSet::len).collect();
    s
}

#[test]
fn behaviour_has_the_configured_shape() {
    let config = DemoConfig { start_time_ms: Some(1_763_683_200_000), ..DemoConfig::default() };
    let w = world(&config);
    let s = stats(w.events(200_000), &w);
    let count = |a: &str| s.actions.get(a).copied().unwrap_or(0) as f64;

    // Popularity: the top 1% of SKUs get a large share of the views.
    let mut views: Vec<u64> = s.sku_views.values().copied().collect();
    views.sort_unstable_by(|a, b| b.cmp(a));
    let total_views: u64 = views.iter().sum();
    let top = w.catalog.skus.len() / 100;
    let top_share = views.iter().take(top).sum::<u64>() as f64 / total_views as f64;
    assert!(top_share > 0.2, "top 1% of skus got {top_share:.3} of views");

    // Funnel.
    let sku_views = total_views as f64;
    let view_cart = count("cart") / sku_views;
    let cart_order = count("order") / count("cart");
    let order_pay = count("pay") / count("order");
    assert!((view_cart - P_VIEW_CART).abs() < 0.01, "view→cart {view_cart:.4}");
    assert!((cart_order - P_CART_ORDER).abs() < 0.04, "cart→order {cart_order:.4}");
    assert!((order_pay - P_ORDER_PAY).abs() < 0.04, "order→pay {order_pay:.4}");
    for action in ["click", "favorite", "share", "checkin", "crash", "request", "identify"] {
        assert!(count(action) > 0.0, "no {action} events");
    }
    assert!(s.slow_requests > 0 && s.server_errors > 0, "slow {} 5xx {}", s.slow_requests, s.server_errors);
    assert!(s.crashes_with_props as f64 == count("crash"));
    assert!(s.identifies as f64 == count("identify"));

    // Heavy users and a long tail.
    let mut per_user: Vec<u64> = s.user_events.values().copied().collect();
    per_user.sort_unstable_by(|a, b| b.cmp(a));
    let user_total: u64 = per_user.iter().sum();
    let heavy = per_user.iter().take(config.users / 100).sum::<u64>() as f64 / user_total as f64;
    assert!(heavy > 0.1, "top 1% of users made {heavy:.3} of events");
    assert!((per_user[0] as f64) < 0.02 * user_total as f64, "one user made {} of {user_total} events", per_user[0]);
    let median = per_user[per_user.len() / 2] as f64;
    let mean = user_total as f64 / per_user.len() as f64;
    assert!(mean > 1.25 * median, "no long tail: mean {mean:.1}, median {median}");

    // Sessions mostly stay within one or two categories.
    let focused = s.categories_per_session.iter().filter(|&&n| n <= 2).count() as f64 / s.categories_per_session.len() as f64;
    assert!(focused > 0.5, "focused sessions {focused:.3}");
    assert!(s.sessions.len() > 5_000, "sessions {}", s.sessions.len());

    // Times cover the window, increase, with only small jitter.
    assert!(s.min_time >= w.start_ms() && s.max_time <= w.end_ms());
    assert!(s.max_time - s.min_time > w.end_ms() - w.start_ms() - DAY_MS / 4);
    assert!(s.max_backwards_ms < 10_000, "an event is {} ms behind the clock", s.max_backwards_ms);
}

#[test]
fn times_relative_to_now_are_accepted_now() {
    let now = chrono::Utc::now().timestamp_millis();
    let config = DemoConfig { malformed_share: 0.0, start_time_ms: None, ..DemoConfig::small() };
    let w = world(&config);
    assert!((w.end_ms() - now).abs() < 60_000);
    let app = AppId::new("demo").unwrap();
    for event in w.events(5_000) {
        let time = event["time"].as_i64().unwrap();
        assert!(time <= now + 60_000 && time >= now - i64::from(config.days) * DAY_MS - 60_000);
        validate(&event, &app, now + 60_000).unwrap();
    }
    let fixed = DemoConfig::small().times_relative_to(now);
    assert_eq!(world(&fixed).end_ms(), now);
}

#[test]
fn the_generator_is_exact_sized_and_send() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let w = world(&DemoConfig::small());
    let mut generator = w.events(10);
    assert_send(&generator);
    assert_eq!(generator.len(), 10);
    generator.next();
    assert_eq!(generator.len(), 9);
    assert_eq!(generator.count(), 9);
    assert_eq!(w.events(0).count(), 0);
}

#[test]
fn json_text_path_matches_value_path() {
    let config = DemoConfig { malformed_share: 0.05, ..DemoConfig::small() };
    let w = world(&config);
    let mut values = w.events(30_000);
    let mut text = w.events(30_000);
    let mut line = Vec::new();
    let mut actions = HashSet::new();
    while let Some((value, tag)) = values.next_tagged() {
        line.clear();
        let text_tag = text.write_next(&mut line).unwrap().unwrap();
        assert_eq!(tag, text_tag);
        let parsed: Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line)));
        assert_eq!(parsed, value);
        actions.insert(value["action"].as_str().unwrap_or_default().to_owned());
    }
    assert!(text.write_next(&mut line).is_none());
    for action in ["view", "click", "favorite", "share", "cart", "order", "pay", "checkin", "identify", "crash", "request"] {
        assert!(actions.contains(action), "no {action} compared");
    }
}
