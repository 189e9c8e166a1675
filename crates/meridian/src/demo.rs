//! `meridian demo`: write the demo world to files, or send its events to a server; and
//! the feeder behind `serve --demo`.

use clap::{Args, Subcommand};
use meridian_demo::{DemoConfig, DemoWorld};
use meridian_catalog::InMemoryCatalog;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(subcommand)]
    command: DemoCommand,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Write the catalog, dimension tables and events to a directory.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Number of users.
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Send the demo events to a running server.
    Send {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
        /// A write key of the app.
        #[arg(long, env = "MERIDIAN_KEY", hide_env_values = true)]
        key: String,
        /// Number of events.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Events per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Events per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Number of users.
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    match args.command {
        DemoCommand::Generate { out, events, users, seed } => {
            let config = DemoConfig { seed, users, ..DemoConfig::default() };
            let report = meridian_demo::write_files(&out, &config, events, true)?;
            eprintln!("{report:?}");
            Ok(())
        }
        DemoCommand::Send { url, key, events, rate, batch, concurrency, users, seed } => {
            let config = DemoConfig { seed, users, ..DemoConfig::default() };
            let world = Arc::new(DemoWorld::generate(&config)?);
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(meridian_demo::send(&url, &key, world.events(events).tagged().map(|(v, _)| v), (rate > 0).then_some(rate), batch, concurrency, true))?;
            eprintln!("{report:?}");
            Ok(())
        }
    }
}

/// The demo world `serve --demo` feeds.
pub(crate) fn feed_config() -> DemoConfig {
    DemoConfig { users: 20_000, spus: 5_000, ..DemoConfig::default() }
}

/// The `[actions]` of `serve --demo` (when the config file has no aggregations): what the
/// demo world's events support — views of SKUs and shops, the funnel (cart, order, pay,
/// with `props.amount` in cents), check-ins, crashes — with the default lifecycle.
pub(crate) const DEMO_ACTIONS: &str = r#"
mask_key = "demo-only-mask-key"

[[aggregations]]
name = "sku_views"
kind = "count"
filter = { action = "view", "target.type" = "sku" }
description = "Product pages viewed"

[[aggregations]]
name = "skus_viewed"
kind = "distinct"
of = "target.id"
filter = { action = "view", "target.type" = "sku" }
description = "Distinct products viewed"

[[aggregations]]
name = "shops_viewed"
kind = "distinct"
filter = { action = "view", "target.type" = "shop" }
description = "Distinct shops visited"

[[aggregations]]
name = "clicks"
kind = "count"
filter = { action = "click" }

[[aggregations]]
name = "favorites"
kind = "count"
filter = { action = "favorite" }

[[aggregations]]
name = "shares"
kind = "count"
filter = { action = "share" }

[[aggregations]]
name = "carts"
kind = "count"
filter = { action = "cart" }
description = "Items put in the cart"

[[aggregations]]
name = "orders"
kind = "count"
filter = { action = "order" }

[[aggregations]]
name = "order_amount"
kind = "sum"
prop = "props.amount"
filter = { action = "order" }
description = "Order value, cents"

[[aggregations]]
name = "biggest_order"
kind = "max"
prop = "props.amount"
filter = { action = "order" }

[[aggregations]]
name = "payments"
kind = "count"
filter = { action = "pay" }

[[aggregations]]
name = "last_pay_method"
kind = "last_value"
prop = "props.method"
filter = { action = "pay" }

[[aggregations]]
name = "checkins"
kind = "count"
filter = { action = "checkin" }

[[aggregations]]
name = "last_checkin"
kind = "last_time"
filter = { action = "checkin" }

[[aggregations]]
name = "crashes"
kind = "count"
filter = { action = "crash" }

[[segments]]
name = "window_shoppers"
when = "sku_views_7d >= 10 && orders_30d == 0"
description = "Browse a lot, never buy"

[[segments]]
name = "big_spenders"
when = "order_amount_30d >= 50000"
description = "Ordered for 500 or more in 30 days"

[[segments]]
name = "loyal_checkers"
when = "checkins_7d >= 3"
description = "Checked in at least three times this week"

[[segments]]
name = "lapsed_buyers"
when = 'stage == "dormant" && orders_all >= 1'
description = "Bought before, inactive for a week"

[[triggers]]
name = "first_order"
when = "orders_all >= 1"
description = "A user's first order (a trigger.fired webhook)"

[[triggers]]
name = "cart_abandoner"
when = "carts_7d >= 3 && orders_7d == 0"
webhook = false
description = "Three items in the cart this week and no order"

[[triggers]]
name = "crash_loop"
when = "crashes_today >= 3"
webhook = false
"#;

/// The product catalog of a demo catalog (names, images and SPUs for history lists).
pub(crate) fn catalog_of(catalog: &meridian_demo::Catalog) -> InMemoryCatalog {
    InMemoryCatalog::from_records(&catalog.sku_records())
}

/// The demo catalog as listing lines (NDJSON, one SKU per line): each SKU with its category
/// path (top, middle, leaf), its SPU's brand and shop, and sales and reviews falling with
/// its popularity rank (Zipf, like the demo's behaviour).
pub(crate) fn listing_lines(catalog: &meridian_demo::Catalog) -> Vec<String> {
    use std::collections::HashMap;
    let parents: HashMap<u32, Option<u32>> = catalog.categories.iter().map(|c| (c.id, c.parent)).collect();
    let path_of = |leaf: u32| {
        let mut path = vec![leaf];
        let mut at = leaf;
        while let Some(Some(parent)) = parents.get(&at) {
            path.push(*parent);
            at = *parent;
        }
        path.reverse();
        path
    };
    let spus: HashMap<u32, (u32, u32, u32)> = catalog.spus.iter().map(|s| (s.id, (s.category, s.brand, s.shop))).collect();
    let mut rank = vec![catalog.skus.len(); catalog.skus.len()];
    for (r, &i) in catalog.sku_popularity.iter().enumerate() {
        if let Some(slot) = rank.get_mut(i as usize) {
            *slot = r;
        }
    }
    catalog
        .skus
        .iter()
        .enumerate()
        .filter_map(|(i, sku)| {
            let &(category, brand, shop) = spus.get(&sku.spu)?;
            let sales = 200_000 / (rank[i] as u64 + 1);
            let line = serde_json::json!({
                "id": sku.id, "spu": sku.spu, "name": sku.name, "image": sku.image, "price": sku.price, "stock": sku.stock,
                "on_shelf": sku.on_shelf, "attributes": sku.attributes, "launch_time": sku.launch_time,
                "category_path": path_of(category), "brand": brand, "shop": shop,
                "metrics": {"sales": sales, "reviews": sales / 8},
            });
            Some(line.to_string())
        })
        .collect()
}

/// The listing part of the demo: the demo world's catalog bulk-loaded into the app's
/// listing (unless an earlier run did; the catalog is durable), then scored once, so
/// category pages and the console's listing page have data.
pub(crate) async fn listing(base: &str, master_key: &str, world: Arc<DemoWorld>) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let existing: serde_json::Value = client.get(format!("{base}/v1/apps/demo/listing/categories")).bearer_auth(master_key).send().await?.error_for_status()?.json().await?;
    if existing["skus"].as_u64().unwrap_or(0) > 0 {
        return Ok(());
    }
    let lines = tokio::task::spawn_blocking(move || listing_lines(&world.catalog)).await?;
    for chunk in lines.chunks(2_000) {
        client
            .post(format!("{base}/v1/apps/demo/listing/catalog?wait=true"))
            .bearer_auth(master_key)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await?
            .error_for_status()?;
    }
    client.post(format!("{base}/v1/apps/demo/listing/quality/run")).bearer_auth(master_key).send().await?.error_for_status()?;
    tracing::info!(skus = lines.len(), "demo catalog loaded into the listing: category pages at {base}/shop/demo/categories/1");
    Ok(())
}

/// Feeds a running server: a backfill of `n_events` over the last days with a progress
/// bar, then `rate` live events per second (times set to now) until the process ends.
pub(crate) async fn feed(base: &str, write_key: &str, world: Arc<DemoWorld>, n_events: u64, rate: u64) -> anyhow::Result<()> {
    let report = meridian_demo::send(base, write_key, world.events(n_events).tagged().map(|(v, _)| v), None, 200, 4, true).await?;
    tracing::info!(accepted = report.accepted, rejected = report.rejected, "demo backfill sent");
    if rate == 0 {
        return Ok(());
    }
    let live_config = DemoConfig { seed: 4242, malformed_share: 0.0, ..feed_config() };
    let live = Arc::new(tokio::task::spawn_blocking(move || DemoWorld::generate(&live_config)).await??);
    let events = live.events(u64::MAX).tagged().map(|(mut v, _)| {
        v["time"] = serde_json::json!(meridian_event::Timestamp::now().millis());
        v
    });
    live_over_connection(base, write_key, events, rate).await
}

/// Sends the live events over the long-lived connection (`GET /v1/connect`), as a mobile
/// client would: batches of 10 at `rate` events per second, each waited for; after a
/// lost connection the unacknowledged batch is resent (by id) on a new one.
async fn live_over_connection(base: &str, write_key: &str, mut events: impl Iterator<Item = serde_json::Value>, rate: u64) -> anyhow::Result<()> {
    const BATCH: usize = 10;
    let every = std::time::Duration::from_secs_f64(BATCH as f64 / rate as f64);
    let mut client: Option<meridian_connect::Client> = None;
    let mut next = tokio::time::Instant::now();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    loop {
        if batch.is_empty() {
            batch = events.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                return Ok(());
            }
        }
        let connected = match client.take() {
            Some(c) => c,
            None => match meridian_connect::connect(base, write_key).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "demo: cannot open the live connection; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match connected.send(std::mem::take(&mut batch)).await {
            Ok(_) => client = Some(connected),
            // Resent with the same ids on a new connection.
            Err(meridian_connect::SendError::Disconnected { events, reason }) => {
                tracing::debug!(%reason, "demo: live connection lost; resending on a new one");
                batch = events;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "demo: a live batch was refused");
                client = Some(connected);
            }
        }
        next += every;
        tokio::time::sleep_until(next).await;
    }
}

/// The sources part of the demo: a back office's payment export (NDJSON business messages
/// without event ids, as a system other than an app writes them) in `inbox`, consumed by a
/// file source added through the API — so the console's Sources table has one at work.
/// An earlier run's source and file are kept (the file source resumes where it was).
pub(crate) async fn file_source(base: &str, master_key: &str, inbox: &std::path::Path) -> anyhow::Result<()> {
    let file = inbox.join("payments-export.ndjson");
    if !file.exists() {
        let lines: String = (0..200)
            .map(|i| serde_json::json!({"user": format!("u{}", i * 7 % 500), "action": "pay", "target": {"type": "order", "id": format!("bo-{i}")}, "context": {"channel": "back-office"}, "props": {"amount": 20 + i % 180, "method": (["card", "wallet", "transfer"][i % 3]), "export_line": i}}).to_string() + "\n")
            .collect();
        let (inbox, file) = (inbox.to_owned(), file.clone());
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&inbox).and_then(|()| std::fs::write(&file, lines))).await??;
    }
    let spec = serde_json::json!({"name": "demo-inbox", "kind": "file", "app": "demo", "dir": inbox.to_string_lossy()});
    let response = reqwest::Client::new().post(format!("{base}/v1/admin/sources")).bearer_auth(master_key).json(&spec).send().await?;
    match response.status().as_u16() {
        201 | 409 => Ok(()),
        status => anyhow::bail!("adding the demo file source: {status} {}", response.text().await.unwrap_or_default()),
    }
}

/// What the demo's own webhook endpoint is called (an earlier run's is replaced).
const DEMO_RECEIVER: &str = "demo receiver (in the meridian process, logs what it gets)";

/// The notifications part of the demo: a webhook receiver in this process on loopback
/// that checks every delivery's Standard Webhooks signature and logs it, registered as an
/// endpoint of the demo app (replacing an earlier run's), and a test notification sent to
/// it — so the console's Webhooks and Deliveries pages have something real to show.
pub(crate) async fn webhook(base: &str, master_key: &str) -> anyhow::Result<()> {
    use hyper::body::Incoming;
    use hyper::{Request, Response, StatusCode};
    use meridian_api::webhooks::{CreateWebhook, Webhook, WebhookList};
    use std::sync::OnceLock;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    let secret: Arc<OnceLock<String>> = Arc::default();
    let receiving = secret.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let secret = receiving.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let secret = secret.clone();
                async move {
                    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                    let body = http_body_util::BodyExt::collect(request.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
                    let verified = secret.get().is_some_and(|secret| {
                        timestamp.parse().is_ok_and(|ts| meridian_notify::signing::verify(secret, &id, ts, &body, &signature))
                    });
                    // A Standard Webhooks body names its type; an alert (Alertmanager format) its status.
                    let kind = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("type").or_else(|| v.get("status")).and_then(|t| t.as_str()).map(str::to_owned));
                    tracing::info!(webhook_id = %id, r#type = kind.as_deref().unwrap_or("?"), signature_verified = verified, "demo webhook receiver: delivery received");
                    let status = if verified { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED };
                    Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(http_body_util::Empty::<bytes::Bytes>::new()).expect("a static response"))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        }
    });

    let client = reqwest::Client::new();
    let hooks = format!("{base}/v1/apps/demo/webhooks");
    let list: WebhookList = client.get(&hooks).bearer_auth(master_key).send().await?.error_for_status()?.json().await?;
    for old in list.webhooks.iter().filter(|w| w.description == DEMO_RECEIVER) {
        client.delete(format!("{hooks}/{}", old.id)).bearer_auth(master_key).send().await?.error_for_status()?;
    }
    let create = CreateWebhook { url, description: DEMO_RECEIVER.into(), event_types: Vec::new(), disabled: false };
    let created: Webhook = client.post(&hooks).bearer_auth(master_key).json(&create).send().await?.error_for_status()?.json().await?;
    let first = created.secrets.as_ref().and_then(|s| s.first()).ok_or_else(|| anyhow::anyhow!("the created endpoint came without its secret"))?;
    let _ = secret.set(first.secret.clone());
    client.post(format!("{hooks}/{}/test", created.id)).bearer_auth(master_key).send().await?.error_for_status()?;
    tracing::info!(endpoint = %created.id, "demo webhook endpoint registered and a test notification sent");
    alert_rule(&client, base, master_key, &created.id).await?;
    Ok(())
}

/// The demo's alert rule (an earlier run's is replaced: its channel was that run's
/// endpoint): crashes per 5 minutes, every minute, notifying the demo receiver.
async fn alert_rule(client: &reqwest::Client, base: &str, master_key: &str, endpoint: &str) -> anyhow::Result<()> {
    let rule_url = format!("{base}/v1/apps/demo/alerts/rules/demo-crashes");
    let existing = client.get(&rule_url).bearer_auth(master_key).send().await?;
    if existing.status().is_success() {
        let version = existing.json::<serde_json::Value>().await?["version"].as_u64().unwrap_or_default();
        client.delete(&rule_url).bearer_auth(master_key).header("if-match", version.to_string()).send().await?.error_for_status()?;
    }
    let rule = serde_json::json!({
        "id": "demo-crashes", "name": "Crashes in the last 5 minutes", "severity": "critical",
        "metric": {"kind": "count"}, "filter": {"action": "crash"},
        "window": {"kind": "sliding", "size_secs": 300, "slide_secs": 60}, "allowed_lateness_secs": 10,
        "condition": {"kind": "threshold", "op": ">", "value": 3}, "cooldown_secs": 600,
        "channels": [endpoint],
    });
    client.post(format!("{base}/v1/apps/demo/alerts/rules")).bearer_auth(master_key).json(&rule).send().await?.error_for_status()?;
    tracing::info!(rule = "demo-crashes", "demo alert rule created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_becomes_listing_lines_with_their_category_paths() {
        let config = DemoConfig { users: 100, spus: 300, ..DemoConfig::default() };
        let world = DemoWorld::generate(&config).unwrap();
        let lines = listing_lines(&world.catalog);
        assert_eq!(lines.len(), world.catalog.skus.len(), "every SKU has its SPU");
        let tops: std::collections::HashSet<u32> = world.catalog.categories.iter().filter(|c| c.parent.is_none()).map(|c| c.id).collect();
        let mut most_sales = 0;
        for line in &lines {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let path: Vec<u32> = serde_json::from_value(value["category_path"].clone()).unwrap();
            assert_eq!(path.len(), 3, "top, middle, leaf: {line}");
            assert!(tops.contains(&path[0]), "{line}");
            assert!(value["id"].as_str().unwrap().parse::<u64>().is_ok() && value["name"].as_str().is_some_and(|n| !n.is_empty()));
            most_sales = most_sales.max(value["metrics"]["sales"].as_u64().unwrap());
        }
        assert_eq!(most_sales, 200_000, "the most popular SKU sells most");
    }
}
