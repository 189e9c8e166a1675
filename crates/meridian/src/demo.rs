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

/// The product catalog of a demo catalog (names, images and SPUs for history lists).
pub(crate) fn catalog_of(catalog: &meridian_demo::Catalog) -> InMemoryCatalog {
    InMemoryCatalog::from_records(&catalog.sku_records())
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
    meridian_demo::send(base, write_key, events, Some(rate), 10, 1, false).await?;
    Ok(())
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
                    let kind = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
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
    Ok(())
}
