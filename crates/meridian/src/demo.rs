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
