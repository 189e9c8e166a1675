//! `meridian serve` and `meridian config check`: the config from file, environment and
//! flags (one loader, `meridian_server::Config::load`), logging, signals, and the `--demo`
//! feeder with its demo operator.

use anyhow::Context as _;
use clap::Args;
use meridian_config::{parse_override, Sources};
use meridian_event::AppId;
use meridian_server::config::LogFormat;
use meridian_server::{Config, Parts, Server};
use meridian_tenancy::{Actor, Grant, OperatorId, Role, Scope};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the config comes from: the file, `MERIDIAN_*` variables, `--set` and the
/// convenience flags (highest precedence last).
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Config file (TOML, one table per section: [server], [log], [history]…).
    #[arg(long, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Set any setting: `--set history.max_items=50` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// Data directory (server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Master key (server.master_key; better: MERIDIAN_MASTER_KEY).
    #[arg(long, hide_env_values = true)]
    master_key: Option<String>,
    /// Development mode: without a master key, generate one and print it (server.dev).
    #[arg(long)]
    dev: bool,
    /// Pipeline file, reloaded when it changes (collector.pipeline).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Catalog directory for history names and images (catalog.dir).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// State store of a new data directory: fjall or redb (state.backend).
    #[arg(long)]
    state_backend: Option<String>,
    /// Log format: text or json (server.log_format).
    #[arg(long)]
    log_format: Option<String>,
    /// Threads serving HTTP (server.worker_threads).
    #[arg(long)]
    worker_threads: Option<usize>,
}

impl ConfigArgs {
    /// Loads the config with the process's environment; prints warnings (e.g. a
    /// `MERIDIAN_*` variable that sets nothing).
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        self.load_with_env(std::env::vars().collect())
    }

    /// Loads the config with `env` as the environment.
    fn load_with_env(&self, env: Vec<(String, String)>) -> anyhow::Result<Config> {
        let mut overrides = Vec::new();
        let mut flag = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                overrides.push((key.to_owned(), value));
            }
        };
        flag("server.data_dir", self.data_dir.as_ref().map(|p| p.display().to_string()));
        flag("server.listen", self.listen.map(|l| l.to_string()));
        flag("server.master_key", self.master_key.clone());
        flag("server.dev", self.dev.then(|| "true".to_owned()));
        flag("collector.pipeline", self.pipeline.as_ref().map(|p| p.display().to_string()));
        flag("catalog.dir", self.catalog.as_ref().map(|p| p.display().to_string()));
        flag("state.backend", self.state_backend.clone());
        flag("server.log_format", self.log_format.clone());
        flag("server.worker_threads", self.worker_threads.map(|n| n.to_string()));
        for text in &self.set {
            overrides.push(parse_override(text)?);
        }
        let sources = Sources { file: self.config.clone(), env, overrides, ..Sources::default() };
        let (config, warnings) = Config::load(sources)?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Create the app "demo", a demo operator, and feed it the demo world's events.
    #[arg(long)]
    demo: bool,
    /// Events of the demo backfill.
    #[arg(long, default_value_t = 200_000)]
    demo_events: u64,
    /// Live demo events per second after the backfill, sent over the long-lived connection
    /// (`GET /v1/connect`) as a mobile client would (0 = none).
    #[arg(long, default_value_t = 20)]
    demo_rate: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigCheckArgs {
    /// The config file to check.
    file: PathBuf,
    /// Also apply these settings.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
}

/// `meridian config check FILE`: loads the file with the environment, validates every
/// section and prints the effective config with secrets masked.
pub(crate) fn check(args: ConfigCheckArgs) -> anyhow::Result<()> {
    let config_args = ConfigArgs {
        config: Some(args.file),
        set: args.set,
        data_dir: None,
        listen: None,
        master_key: None,
        dev: false,
        pipeline: None,
        catalog: None,
        state_backend: None,
        log_format: None,
        worker_threads: None,
    };
    let config = config_args.load()?;
    print!("{}", config.masked_toml());
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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

/// The master key: configured, or generated in dev mode.
fn master_key(config: &mut Config) -> anyhow::Result<bool> {
    if config.server.master_key.is_some() {
        return Ok(false);
    }
    if !config.server.dev {
        anyhow::bail!("no master key: set MERIDIAN_MASTER_KEY (or server.master_key), or run with --dev to generate one");
    }
    config.server.master_key = Some(meridian_tenancy::generate_master_key());
    Ok(true)
}

/// A random password for the demo operator.
fn demo_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 9];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(format!("demo-{}", hex::encode(bytes)))
}

/// Gives `config` the demo's aggregations, segments and triggers (and mask key) when its
/// `[actions]` is on and has no aggregations of its own; whether it did.
pub(crate) fn demo_actions(config: &mut Config) -> anyhow::Result<bool> {
    if !config.actions.enabled || !config.actions.aggregations.is_empty() {
        return Ok(false);
    }
    fn parse_like<T: serde::de::DeserializeOwned>(_section: &T, text: &str) -> Result<T, toml::de::Error> {
        toml::from_str(text)
    }
    let demo = parse_like(&config.actions, crate::demo::DEMO_ACTIONS).context("the demo's [actions]")?;
    config.actions.aggregations = demo.aggregations;
    config.actions.segments = demo.segments;
    config.actions.triggers = demo.triggers;
    if config.actions.mask_key.is_empty() {
        config.actions.mask_key = demo.mask_key;
    }
    config.validate().context("the demo's [actions]")?;
    Ok(true)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    let generated_key = master_key(&mut config)?;
    init_logging(config.server.log_format);
    if args.demo && !config.notify.network.allow_loopback {
        // The demo's webhook receiver runs in this process, on loopback.
        config.notify.network.allow_loopback = true;
        eprintln!("--demo: webhooks may target loopback addresses (notify.network.allow_loopback) for the demo receiver");
    }
    if args.demo && demo_actions(&mut config)? {
        eprintln!("--demo: [actions] has no aggregations; using the demo's ({} aggregations, segments and triggers)", config.actions.aggregations.len());
    }
    // The demo's catalog names the SKUs its events view, so history lists show them.
    let demo_world = if args.demo { Some(Arc::new(meridian_demo::DemoWorld::generate(&crate::demo::feed_config())?)) } else { None };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.server.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().thread_name("meridian").build()?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let master_key = config.server.master_key.clone().unwrap_or_default();
        let demo_inbox = config.server.data_dir.join("demo-inbox");
        let catalog = match (&demo_world, &config.catalog.dir) {
            (Some(world), None) => Some(Arc::new(crate::demo::catalog_of(&world.catalog)) as Arc<dyn meridian_catalog::CatalogLookup>),
            _ => None,
        };
        let server = tokio::task::spawn_blocking(move || Server::open_with(config, Parts { catalog, ..Parts::default() })).await??;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}; is another server running there?"))?;
        let local = listener.local_addr()?;
        if generated_key {
            eprintln!("--dev: generated master key (valid until this process exits):\n  MERIDIAN_MASTER_KEY={master_key}");
        }
        tracing::info!(address = %local, "listening");
        eprintln!("meridian is listening on http://{local}  (console: http://{local}/console, API docs: http://{local}/docs)");
        if let Some(world) = demo_world {
            let tenancy = server.tenancy().clone();
            let (write_key, password) = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, String)> {
                let app = AppId::new("demo")?;
                if !tenancy.app_exists(&app) {
                    tenancy.create_app(&Actor::System, &app, Some("Asia/Shanghai"))?;
                }
                let (write_key, _) = tenancy.create_key(&Actor::System, &app, &[Scope::Write])?;
                let login = OperatorId::new("demo")?;
                let password = demo_password()?;
                if tenancy.operator(&login).is_some() {
                    tenancy.set_password(&Actor::System, &login, &password)?;
                } else {
                    tenancy.ensure_operator(&login, &password, &[Grant { app: Some(app), role: Role::Admin }])?;
                }
                Ok((write_key, password))
            })
            .await??;
            eprintln!("--demo: sign in to the console at http://{local}/console as demo / {password}");
            let base = format!("http://{local}");
            let (hook_base, hook_key) = (base.clone(), master_key.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::demo::webhook(&hook_base, &hook_key).await {
                    tracing::warn!(error = %e, "demo webhook receiver not set up");
                }
            });
            let (inbox_base, inbox_key, inbox) = (base.clone(), master_key.clone(), demo_inbox);
            tokio::spawn(async move {
                if let Err(e) = crate::demo::file_source(&inbox_base, &inbox_key, &inbox).await {
                    tracing::warn!(error = %e, "demo file source not set up");
                }
            });
            let (listing_base, listing_key, listing_world) = (base.clone(), master_key.clone(), world.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::demo::listing(&listing_base, &listing_key, listing_world).await {
                    tracing::warn!(error = %e, "demo catalog not loaded into the listing");
                }
            });
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
    fn the_demo_brings_its_actions_unless_the_config_has_aggregations() {
        let mut config = Config::default();
        assert!(demo_actions(&mut config).unwrap());
        assert!((8..=20).contains(&config.actions.aggregations.len()), "{}", config.actions.aggregations.len());
        assert!((3..=4).contains(&config.actions.segments.len()) && (2..=3).contains(&config.actions.triggers.len()));
        assert!(!config.actions.mask_key.is_empty());
        let before = config.actions.clone();
        assert!(!demo_actions(&mut config).unwrap(), "it has aggregations now");
        assert_eq!(config.actions, before);
        let mut off = Config::default();
        off.actions.enabled = false;
        assert!(!demo_actions(&mut off).unwrap());
    }

    #[test]
    fn flags_beat_the_file_and_a_master_key_is_required_outside_dev() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("meridian.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9999\"\nmaster_key = \"from-file\"\n[log]\npartitions = 8\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap(), "--set", "log.partitions=2", "--listen", "127.0.0.1:9998"]).serve;
        let config = args.config.load_with_env(Vec::new()).unwrap();
        assert_eq!(config.server.listen.port(), 9998, "a flag beats the file");
        assert_eq!(config.log.partitions, 2, "--set beats the file");
        assert_eq!(config.server.master_key.as_deref(), Some("from-file"));

        let env = vec![("MERIDIAN_MASTER_KEY".to_owned(), "from-env".to_owned()), ("MERIDIAN_LOG_PARTITIONS".to_owned(), "6".to_owned())];
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        let config = args.config.load_with_env(env).unwrap();
        assert_eq!(config.server.master_key.as_deref(), Some("from-env"), "the environment beats the file");
        assert_eq!(config.log.partitions, 6);

        let mut without_key = Config::default();
        let err = master_key(&mut without_key).unwrap_err().to_string();
        assert!(err.contains("--dev"), "{err}");
        without_key.server.dev = true;
        assert!(master_key(&mut without_key).unwrap(), "dev mode generates one");
        assert!(without_key.server.master_key.as_deref().is_some_and(|k| k.len() > 20));
        let mut with_key = Config::default();
        with_key.server.master_key = Some("given".into());
        assert!(!master_key(&mut with_key).unwrap(), "a configured key is kept");

        std::fs::write(&file, "[history]\ncatalog_batch_size = 7\nmax_items = 50\nhot = \"embedded\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        let history = args.config.load_with_env(Vec::new()).unwrap().history;
        assert_eq!((history.catalog_batch_size, history.max_items), (7, 50));
        std::fs::write(&file, "[history]\nhot = \"memcached\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        let err = format!("{:#}", args.config.load_with_env(Vec::new()).unwrap_err());
        assert!(err.contains("memcached") && err.contains("line 2"), "{err}");

        std::fs::write(&file, "[server]\nlisen = \"127.0.0.1:9999\"\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        let err = format!("{:#}", args.config.load_with_env(Vec::new()).unwrap_err());
        assert!(err.contains("lisen") && err.contains("line 2") && err.contains("meridian.toml"), "{err}");

        std::fs::write(&file, "[history]\nmax_items = 0\n").unwrap();
        let args = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()]).serve;
        let err = format!("{:#}", args.config.load_with_env(Vec::new()).unwrap_err());
        assert!(err.contains("history.max_items"), "{err}");
    }
}
