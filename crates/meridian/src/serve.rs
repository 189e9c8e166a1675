//! `meridian serve`: config from file, environment and flags (flags win, then the
//! environment, then the file, then defaults), logging, signals, and the `--demo` feeder.

use anyhow::Context as _;
use clap::Args;
use meridian_collector::Scope;
use meridian_event::AppId;
use meridian_server::{HotBackend, Server, ServerConfig, StateBackend};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Config file (TOML); its keys are the long flag names with '_' for '-'.
    #[arg(long, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (log and state). Default ./meridian-data.
    #[arg(long, env = "MERIDIAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:7070.
    #[arg(long, env = "MERIDIAN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Master key authorising the admin API.
    #[arg(long, env = "MERIDIAN_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Development mode: without a master key, generate one and print it.
    #[arg(long)]
    dev: bool,
    /// Pipeline config (TOML), reloaded when it changes.
    #[arg(long, env = "MERIDIAN_PIPELINE")]
    pipeline: Option<PathBuf>,
    /// Create the app "demo" and feed it the demo world's events (quick start).
    #[arg(long)]
    demo: bool,
    /// Events of the demo backfill.
    #[arg(long, default_value_t = 200_000)]
    demo_events: u64,
    /// Live demo events per second after the backfill (0 = none).
    #[arg(long, default_value_t = 20)]
    demo_rate: u64,
    /// Log format: text or json.
    #[arg(long, env = "MERIDIAN_LOG_FORMAT")]
    log_format: Option<String>,
    /// Partitions of new topics. Default 4.
    #[arg(long)]
    partitions: Option<u32>,
    /// De-duplication window in seconds. Default 600.
    #[arg(long)]
    dedup_window_secs: Option<u64>,
    /// Most events per request. Default 2000.
    #[arg(long)]
    max_batch_events: Option<usize>,
    /// Largest request body in bytes. Default 4 MiB.
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Log retention by age, hours. Default: keep everything.
    #[arg(long)]
    retention_hours: Option<u64>,
    /// Log retention by size per partition, bytes. Default: keep everything.
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Threads serving HTTP (default: one per core).
    #[arg(long, env = "MERIDIAN_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// State store: fjall (the default for a new data directory) or redb; an existing data
    /// directory keeps the one it was created with.
    #[arg(long, env = "MERIDIAN_STATE_BACKEND")]
    state_backend: Option<String>,
    /// Turn browsing history off.
    #[arg(long)]
    no_history: bool,
    /// History hot tier: embedded (default) or redis.
    #[arg(long, env = "MERIDIAN_HISTORY_HOT")]
    history_hot: Option<String>,
    /// Redis URL for the redis hot tier. Default redis://127.0.0.1:6379.
    #[arg(long, env = "MERIDIAN_REDIS_URL")]
    redis_url: Option<String>,
    /// Key prefix of the redis hot tier. Default meridian:history:
    #[arg(long, env = "MERIDIAN_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// N: items of history kept per user. Default 200.
    #[arg(long)]
    history_items: Option<usize>,
    /// SKUs per catalog lookup when filling history lists. Default 50.
    #[arg(long)]
    history_catalog_batch: Option<usize>,
    /// Memory budget of the embedded hot tier, MiB. Default 1024.
    #[arg(long)]
    history_memory_mb: Option<usize>,
    /// Catalog directory (skus.jsonl as written by `meridian demo generate`, or its
    /// catalog/ folder) for names, images and SPUs in history lists.
    #[arg(long, env = "MERIDIAN_CATALOG")]
    catalog: Option<PathBuf>,
    /// Query rate limit for all callers together, requests/s. Default 100000.
    #[arg(long)]
    rate_limit_global: Option<u32>,
    /// Query rate limit per API key, requests/s. Default 50000.
    #[arg(long)]
    rate_limit_caller: Option<u32>,
    /// Query rate limit per user, requests/s. Default 100.
    #[arg(long)]
    rate_limit_user: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    master_key: Option<String>,
    pipeline: Option<PathBuf>,
    log_format: Option<String>,
    partitions: Option<u32>,
    dedup_window_secs: Option<u64>,
    max_batch_events: Option<usize>,
    max_body_bytes: Option<usize>,
    retention_hours: Option<u64>,
    retention_bytes: Option<u64>,
    max_future_secs: Option<i64>,
    max_past_days: Option<i64>,
    state_backend: Option<String>,
    no_history: Option<bool>,
    history_hot: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    history_items: Option<usize>,
    history_catalog_batch: Option<usize>,
    history_memory_mb: Option<usize>,
    catalog: Option<PathBuf>,
    rate_limit_global: Option<u32>,
    rate_limit_caller: Option<u32>,
    rate_limit_user: Option<u32>,
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("unknown log format {other:?}; use text or json"),
    }
    Ok(())
}

fn build_config(args: &ServeArgs) -> anyhow::Result<(ServerConfig, String, bool)> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./meridian-data"));
    let mut config = ServerConfig::new(data_dir);
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    let mut generated = false;
    config.master_key = args.master_key.clone().or(file.master_key).filter(|k| !k.is_empty());
    if config.master_key.is_none() {
        if !args.dev {
            anyhow::bail!("no master key: set MERIDIAN_MASTER_KEY (or --master-key), or run with --dev to generate one");
        }
        config.master_key = Some(meridian_collector::keys::generate_master_key());
        generated = true;
    }
    config.pipeline_file = args.pipeline.clone().or(file.pipeline);
    if let Some(n) = args.partitions.or(file.partitions) {
        anyhow::ensure!((1..=256).contains(&n), "partitions must be between 1 and 256");
        config.collector.partitions = n;
    }
    if let Some(secs) = args.dedup_window_secs.or(file.dedup_window_secs) {
        config.collector.dedup_window = Duration::from_secs(secs);
    }
    if let Some(n) = args.max_batch_events.or(file.max_batch_events) {
        config.collector.max_events_per_batch = n;
    }
    if let Some(n) = args.max_body_bytes.or(file.max_body_bytes) {
        config.max_body_bytes = n;
        config.max_decompressed_bytes = config.max_decompressed_bytes.max(n);
    }
    if let Some(h) = args.retention_hours.or(file.retention_hours) {
        config.log.retention_ms = Some(h as i64 * 3_600_000);
    }
    if let Some(b) = args.retention_bytes.or(file.retention_bytes) {
        config.log.retention_bytes = Some(b);
    }
    if let Some(s) = file.max_future_secs {
        config.collector.policy.max_future_ms = s * 1000;
    }
    if let Some(d) = file.max_past_days {
        config.collector.policy.max_past_ms = d * 86_400_000;
    }
    if let Some(name) = args.state_backend.clone().or(file.state_backend) {
        config.state_backend = StateBackend::parse(&name).ok_or_else(|| anyhow::anyhow!("unknown state backend {name:?}; use redb or fjall"))?;
    } else {
        // Not chosen: keep the store this data directory was created with.
        config.state_backend = StateBackend::for_data_dir(&config.data_dir);
    }
    if args.no_history || file.no_history == Some(true) {
        config.history = None;
    } else if let Some(history) = config.history.as_mut() {
        let url = args.redis_url.clone().or(file.redis_url).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        let budget_mb = args.history_memory_mb.or(file.history_memory_mb).unwrap_or(1024);
        history.hot = match args.history_hot.clone().or(file.history_hot).as_deref() {
            None | Some("embedded") => HotBackend::Embedded { budget_bytes: budget_mb << 20 },
            Some("redis") => HotBackend::Redis { url, prefix: args.redis_prefix.clone().or(file.redis_prefix).unwrap_or_else(|| "meridian:history:".into()) },
            Some(other) => anyhow::bail!("unknown history hot tier {other:?}; use embedded or redis"),
        };
        if let Some(n) = args.history_items.or(file.history_items) {
            anyhow::ensure!((1..=10_000).contains(&n), "history items must be between 1 and 10000");
            history.config.max_items = n;
        }
        if let Some(n) = args.history_catalog_batch.or(file.history_catalog_batch) {
            anyhow::ensure!((1..=10_000).contains(&n), "history catalog batch must be between 1 and 10000");
            history.config.catalog_batch_size = n;
        }
        if let Some(dir) = args.catalog.clone().or(file.catalog) {
            history.catalog = Some(Arc::new(crate::demo::load_catalog(&dir)?));
        }
    }
    if let Some(n) = args.rate_limit_global.or(file.rate_limit_global) {
        config.rate_limits.global_per_sec = n;
    }
    if let Some(n) = args.rate_limit_caller.or(file.rate_limit_caller) {
        config.rate_limits.caller_per_sec = n;
    }
    if let Some(n) = args.rate_limit_user.or(file.rate_limit_user) {
        config.rate_limits.user_per_sec = n;
    }
    let log_format = args.log_format.clone().or(file.log_format).unwrap_or_else(|| "text".into());
    Ok((config, log_format, generated))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (mut config, log_format, generated_key) = build_config(&args)?;
    init_logging(&log_format)?;
    // The demo's catalog names the SKUs its events view, so history lists show them.
    let demo_world = if args.demo {
        let world = Arc::new(meridian_demo::DemoWorld::generate(&crate::demo::feed_config())?);
        if let Some(history) = config.history.as_mut().filter(|h| h.catalog.is_none()) {
            history.catalog = Some(Arc::new(crate::demo::catalog_of(&world.catalog)));
        }
        Some(world)
    } else {
        None
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        anyhow::ensure!(n >= 1, "worker threads must be at least 1");
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().thread_name("meridian").build()?;
    runtime.block_on(async move {
        let listen = config.listen;
        let master_key = config.master_key.clone().unwrap_or_default();
        let server = tokio::task::spawn_blocking(move || Server::open(config)).await??;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}; is another server running there?"))?;
        let local = listener.local_addr()?;
        if generated_key {
            eprintln!("--dev: generated master key (valid until this process exits):\n  MERIDIAN_MASTER_KEY={master_key}");
        }
        tracing::info!(address = %local, "listening");
        eprintln!("meridian is listening on http://{local}  (console: http://{local}/console#key={master_key})");
        if let Some(world) = demo_world {
            let registry = server.registry().clone();
            let app = AppId::new("demo")?;
            if !registry.app_exists(&app) {
                registry.create_app(&app)?;
            }
            let (write_key, _) = registry.create_key(&app, &[Scope::Write])?;
            let base = format!("http://{local}");
            let (n, rate) = (args.demo_events, args.demo_rate);
            tokio::spawn(async move {
                if let Err(e) = crate::demo::feed(&base, &write_key, world, n, rate).await {
                    tracing::warn!(error = %e, "demo feeder stopped");
                }
            });
        }
        meridian_server::serve(server, listener, shutdown_signal()).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_beat_file_and_master_key_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("meridian.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\npartitions = 8\nmaster_key = \"from-file\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--partitions", "2"]).serve;
        let (config, _, generated) = build_config(&args).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.collector.partitions, 2);
        assert_eq!(config.master_key.as_deref(), Some("from-file"));
        assert!(!generated);

        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        if std::env::var("MERIDIAN_MASTER_KEY").is_err() {
            let err = build_config(&args).unwrap_err().to_string();
            assert!(err.contains("--dev"), "{err}");
            let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--dev"]).serve;
            assert!(build_config(&args).unwrap().2);
        }

        std::fs::write(&file, "history_catalog_batch = 7\nhistory_items = 50\nhistory_hot = \"embedded\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--dev"]).serve;
        let history = build_config(&args).unwrap().0.history.unwrap();
        assert_eq!((history.config.catalog_batch_size, history.config.max_items), (7, 50));
        std::fs::write(&file, "history_hot = \"memcached\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--dev"]).serve;
        assert!(build_config(&args).unwrap_err().to_string().contains("embedded or redis"));

        std::fs::write(&file, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--dev"]).serve;
        let err = format!("{:#}", build_config(&args).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }
}
