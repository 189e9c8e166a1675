//! Generates events and prints their shape and the generation speed:
//! `cargo run --release -p meridian-demo --example demo_stats -- 1000000 [speed]`.

use meridian_demo::{DemoConfig, DemoWorld};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let config = DemoConfig { start_time_ms: Some(1_763_683_200_000), ..DemoConfig::default() };
    let t = Instant::now();
    let world = Arc::new(DemoWorld::generate(&config).expect("valid config"));
    println!(
        "world: {} skus, {} users, {} anonymous devices in {:?}",
        world.catalog.skus.len(),
        world.users.users.len(),
        world.users.anonymous.len(),
        t.elapsed()
    );

    let t = Instant::now();
    let mut objects = 0usize;
    let mut generator = world.events(n);
    for event in generator.by_ref() {
        objects += usize::from(event.is_object());
    }
    let secs = t.elapsed().as_secs_f64();
    println!("generated {n} events as serde_json::Value ({objects} objects) in {secs:.2} s: {:.0} events/s", n as f64 / secs);

    let t = Instant::now();
    let mut out = Vec::with_capacity(1 << 20);
    let mut json_bytes = 0usize;
    let mut generator = world.events(n);
    while let Some(result) = generator.write_next(&mut out) {
        result.expect("serialise");
        json_bytes += out.len() + 1;
        out.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "written as json text (write_next) in {secs:.2} s: {:.0} events/s, {:.0} bytes/event",
        n as f64 / secs,
        json_bytes as f64 / n as f64
    );

    if std::env::args().nth(2).as_deref() == Some("speed") {
        return;
    }
    let mut actions: HashMap<String, u64> = HashMap::new();
    let mut sku_views: HashMap<String, u64> = HashMap::new();
    let mut users: HashMap<String, u64> = HashMap::new();
    let (mut slow, mut errors, mut requests, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    let mut generator = world.events(n);
    while let Some((e, tag)) = generator.next_tagged() {
        if tag.is_some() {
            malformed += 1;
            continue;
        }
        let action = e["action"].as_str().unwrap_or_default().to_owned();
        if action == "view" && e["target"]["type"] == "sku" {
            *sku_views.entry(e["target"]["id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        if action == "request" {
            requests += 1;
            slow += u64::from(e["props"]["latency_ms"].as_u64().unwrap_or(0) > 1000);
            errors += u64::from(e["props"]["status"].as_u64().unwrap_or(0) >= 500);
        }
        if let Some(u) = e["user"].as_str() {
            *users.entry(u.to_owned()).or_default() += 1;
        }
        *actions.entry(action).or_default() += 1;
    }
    let mut sorted: Vec<_> = actions.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1));
    println!("actions: {sorted:?}");
    let c = |a: &str| actions.get(a).copied().unwrap_or(0) as f64;
    let views: u64 = sku_views.values().sum();
    println!(
        "sku views {views}; view→cart {:.4}, cart→order {:.4}, order→pay {:.4}",
        c("cart") / views as f64,
        c("order") / c("cart"),
        c("pay") / c("order")
    );
    let mut v: Vec<u64> = sku_views.values().copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    let top = world.catalog.skus.len() / 100;
    println!("distinct skus viewed {}, top 1% share {:.3}", v.len(), v.iter().take(top).sum::<u64>() as f64 / views as f64);
    let mut u: Vec<u64> = users.values().copied().collect();
    u.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = u.iter().sum();
    println!(
        "active users {}, top 1% of all users' share {:.3}, max {} events, median {}, users with <= 3 events {}",
        u.len(),
        u.iter().take(world.users.users.len() / 100).sum::<u64>() as f64 / total as f64,
        u[0],
        u[u.len() / 2],
        u.iter().filter(|&&x| x <= 3).count()
    );
    println!("requests {requests}: slow {slow}, 5xx {errors}; malformed {malformed}; sessions {}", generator.sessions_started());
}
