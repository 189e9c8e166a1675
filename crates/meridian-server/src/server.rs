//! Composition: opens the log, the state store, tenancy, the collector and the runtime;
//! opens every capability module and wires what it returns (processors, routes with their
//! OpenAPI operations, tasks, erasure, console pages and navigation); serves with graceful
//! shutdown.

use crate::config::Config;
use crate::module::{Capability, Module, ModuleContext, ModuleError, Registered, Service, Task};
use crate::openapi::{complete, BaseDoc};
use crate::ratelimit::RateLimits;
use crate::routes;
use crate::state::{modified, pipeline_status, AppState, EVENTS_TOPIC};
use anyhow::Context as _;
use axum::Router;
use meridian_catalog::{CatalogLookup, InMemoryCatalog, PassThroughCatalog};
use meridian_collector::Collector;
use meridian_log::embedded::EmbeddedLog;
use meridian_log::{Log, TopicName};
use meridian_pipeline::Pipeline;
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{KvStore, StateBackend, StateError};
use meridian_tenancy::Tenancy;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

/// What a server is built from besides its config.
pub struct Parts<'a> {
    /// The capability modules to open (the server's own list by default).
    pub capabilities: &'a [&'a dyn Capability],
    /// The catalog (else the one of `[catalog] dir`, else a pass-through one).
    pub catalog: Option<Arc<dyn CatalogLookup>>,
    /// The clock of sessions and audit times (tests move it; else the system's).
    pub clock: Option<Arc<dyn meridian_tenancy::Clock>>,
}

impl Default for Parts<'_> {
    fn default() -> Self {
        Parts { capabilities: crate::modules::CAPABILITIES, catalog: None, clock: None }
    }
}

impl std::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("capabilities", &self.capabilities.iter().map(|c| c.name()).collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// A server ready to serve.
pub struct Server {
    state: Arc<AppState>,
    router: Router,
    tasks: Mutex<Vec<Task>>,
    services: Vec<Arc<dyn Service>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("data_dir", &self.state.config.server.data_dir).finish_non_exhaustive()
    }
}

/// Opens the core store; also says whether it existed before.
fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn KvStore>, bool)> {
    let data_dir = &config.server.data_dir;
    let backend = config.state_backend();
    let detected = StateBackend::detect(data_dir);
    let existed = detected.is_some();
    if let Some(existing) = detected.filter(|b| *b != backend) {
        anyhow::bail!("data directory {} holds {existing} state, not {backend}; start with the backend it was created with", data_dir.display());
    }
    match backend.open(data_dir) {
        Ok(store) => Ok((store, existed)),
        Err(StateError::Locked { .. }) => anyhow::bail!("data directory {} is in use by another meridian process; stop it or choose another data_dir", data_dir.display()),
        Err(e) => Err(e.into()),
    }
}

fn catalog(config: &Config, given: Option<Arc<dyn CatalogLookup>>) -> anyhow::Result<Arc<dyn CatalogLookup>> {
    if let Some(catalog) = given {
        return Ok(catalog);
    }
    Ok(match &config.catalog.dir {
        Some(dir) => Arc::new(InMemoryCatalog::from_records(&meridian_catalog::load_dir(dir)?)),
        None => Arc::new(PassThroughCatalog::default()),
    })
}

impl Server {
    /// Opens everything in the config's data directory with the server's capabilities
    /// and starts the processors.
    pub fn open(config: Config) -> anyhow::Result<Server> {
        Server::open_with(config, Parts::default())
    }

    /// Opens the server from `config` and `parts`.
    pub fn open_with(config: Config, parts: Parts<'_>) -> anyhow::Result<Server> {
        routes::observe::prometheus();
        config.validate()?;
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        // The log first: its lock names the process holding the data directory.
        let log: Arc<dyn Log> = EmbeddedLog::open(data_dir.join("log"), config.log.embedded()).context("cannot open the event log")?;
        let (store, existed) = open_store(&config)?;
        let stores = crate::layout::Stores::open(&data_dir, config.state_backend(), store.clone(), existed)?;
        let clock = parts.clock.unwrap_or_else(|| Arc::new(meridian_tenancy::SystemClock));
        let tenancy = Arc::new(
            Tenancy::open_with_clock(store.clone(), config.server.master_key.as_deref(), config.tenancy.clone(), clock).context("cannot open apps, keys and operators")?,
        );
        let pipeline_file = config.collector.pipeline_file().map(ToOwned::to_owned);
        let pipeline = match &pipeline_file {
            Some(path) => Pipeline::from_file(path).with_context(|| format!("invalid pipeline file {}", path.display()))?,
            None => Pipeline::default(),
        };
        let status = pipeline_status(&pipeline, pipeline_file.as_deref());
        let events_topic = TopicName::new(EVENTS_TOPIC)?;
        log.ensure_topic(&events_topic, config.log.partitions)?;
        let collector = Arc::new(Collector::new(log.clone(), store.clone(), pipeline, config.collector.collector(config.log.partitions))?);
        let runtime = Arc::new(Runtime::new(log.clone(), store.clone(), RuntimeConfig::default()));
        let catalog_slot = Arc::new(meridian_catalog::CatalogSlot::new(catalog(&config, parts.catalog)?));
        let catalog: Arc<dyn CatalogLookup> = catalog_slot.clone();
        let state = Arc::new(AppState {
            rate_limits: RateLimits::new(&config.rate_limits),
            pipeline_mtime: Mutex::new(pipeline_file.as_deref().and_then(modified)),
            pipeline_status: Mutex::new(status),
            config: config.clone(),
            log,
            tenancy,
            collector,
            runtime: runtime.clone(),
            events_topic,
            modules: OnceLock::new(),
            openapi: OnceLock::new(),
            console: crate::console::ConsoleState::default(),
            connections: Default::default(),
        });

        let mut api: OpenApiRouter = OpenApiRouter::with_openapi(BaseDoc::openapi())
            .merge(routes::ingest::routes())
            .merge(routes::connect::routes())
            .merge(routes::apps::routes())
            .merge(routes::dead_letters::routes())
            .merge(routes::stream::routes())
            .merge(routes::users::routes())
            .merge(routes::session::routes())
            .merge(routes::admin::routes())
            .merge(routes::observe::routes())
            .merge(routes::docs::routes())
            .merge(crate::console::routes())
            .with_state(state.clone());
        let mut nav = crate::console::server_nav();
        let mut registered = Vec::new();
        let mut tasks = Vec::new();
        let mut services = Vec::new();
        for capability in parts.capabilities {
            let ctx = ModuleContext { config: &config, state: &state, catalog: catalog.clone(), catalog_slot: &catalog_slot, name: capability.name(), stores: &stores };
            let Some(module) = capability.open(&ctx).with_context(|| format!("cannot open the {} capability", capability.name()))? else {
                tracing::info!(capability = capability.name(), "capability turned off by its config section");
                continue;
            };
            let Module { name, processors, routes, erasure, tasks: module_tasks, services: module_services, console } = module;
            if registered.iter().any(|r: &Registered| r.name == name) {
                return Err(ModuleError::Duplicate(name).into());
            }
            // Its processors run in its store if it asked for one, else in the core store.
            let store = stores.opened(ctx.name).unwrap_or_else(|| stores.core().clone());
            let topics = processors.iter().map(|p| (p.name().to_owned(), p.topics())).collect();
            for processor in processors {
                runtime.spawn_in(processor, store.clone())?;
            }
            api = api.merge(routes).merge(console.routes);
            nav.extend(console.nav);
            tasks.extend(module_tasks);
            services.extend(module_services);
            registered.push(Registered { name, erasure, topics });
        }
        let _ = state.modules.set(registered);
        state.console.set_nav(nav);
        let (router, doc) = api.split_for_parts();
        let _ = state.openapi.set(complete(doc));
        let router = router.fallback(routes::docs::not_found).method_not_allowed_fallback(routes::docs::method_not_allowed);
        // Console pages read capabilities' data through their own JSON routes, in process.
        state.console.set_router(router.clone());
        let router = router
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::session::csrf_guard))
            .layer(axum::middleware::from_fn(routes::observe::track_requests));
        Ok(Server { state, router, tasks: Mutex::new(tasks), services })
    }

    /// Apps, keys, operators and the audit log (the CLI bootstraps demo apps with it).
    pub fn tenancy(&self) -> &Arc<Tenancy> {
        &self.state.tenancy
    }

    /// The processor runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.state.runtime
    }

    /// The log.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.state.log
    }

    /// The config it runs with.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The generated OpenAPI document.
    pub fn openapi(&self) -> &serde_json::Value {
        self.state.openapi.get().expect("the document is built with the router")
    }

    /// The names of the registered capability modules.
    pub fn modules(&self) -> Vec<&'static str> {
        self.state.modules().iter().map(|m| m.name).collect()
    }

    /// The router of every route.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Starts the background tasks (pipeline file watch, retention, session purge, the
    /// modules' tasks) on the current tokio runtime.
    pub fn spawn_background_tasks(&self) {
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(state.config.collector.pipeline_poll_ms));
            loop {
                tick.tick().await;
                if state.pipeline_file_changed() {
                    let s = state.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload_pipeline()).await;
                }
            }
        });
        let log = self.state.log.clone();
        spawn_task(Task {
            name: "log_retention",
            every: Duration::from_secs(self.state.config.server.retention_interval_secs),
            run: Arc::new(move || {
                let report = log.enforce_retention()?;
                Ok(if report.segments_deleted > 0 { format!("removed {} old segments ({} bytes)", report.segments_deleted, report.bytes_freed) } else { String::new() })
            }),
        });
        let tenancy = self.state.tenancy.clone();
        spawn_task(Task {
            name: "session_purge",
            every: Duration::from_secs(3600),
            run: Arc::new(move || {
                let n = tenancy.purge_expired_sessions(meridian_event::Timestamp::now().millis())?;
                Ok(if n > 0 { format!("purged {n} expired sessions") } else { String::new() })
            }),
        });
        for task in self.tasks.lock().drain(..) {
            spawn_task(task);
        }
        let handle = tokio::runtime::Handle::current();
        for service in &self.services {
            service.start(&handle);
        }
    }

    /// Stops processors (after their current batch commits) and closes the log (queued
    /// appends become durable first).
    pub fn shutdown(&self) {
        self.state.console.clear_router();
        for service in &self.services {
            service.stop();
        }
        self.state.runtime.shutdown();
        if let Err(e) = self.state.log.close() {
            tracing::warn!(error = %e, "closing the log failed");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The console keeps a clone of the router, which holds the state: break the cycle
        // so the stores close when the server goes.
        self.state.console.clear_router();
    }
}

/// Runs `task` every `task.every` on the blocking pool, logging its outcome.
fn spawn_task(task: Task) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(task.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let run = task.run.clone();
            match tokio::task::spawn_blocking(move || run()).await {
                Ok(Ok(done)) if !done.is_empty() => tracing::info!(task = task.name, "{done}"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    metrics::counter!("meridian_task_failures_total", "task" => task.name).increment(1);
                    tracing::warn!(task = task.name, error = %e, "background task failed");
                }
                Err(e) => tracing::warn!(task = task.name, error = %e, "background task panicked"),
            }
        }
    });
}

/// Serves `server` on `listener` until `shutdown` resolves, then shuts down gracefully:
/// in-flight requests finish, queued appends become durable, processors commit.
pub async fn serve(server: Server, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    server.spawn_background_tasks();
    let router = server.router();
    // No Nagle delay: every response is written whole, and a small one (a count, an
    // error) must not wait for the client's delayed ACK of the previous one.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    // Upgraded connections (`/v1/connect`) are not the HTTP server's to wait for: they
    // are told to close when the shutdown starts, and waited for (their acknowledgements
    // sent) before the log and processors stop.
    let state = server.state.clone();
    let shutdown = async move {
        shutdown.await;
        state.connections.close_all();
    };
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown).await?;
    let grace = Duration::from_secs(server.state.config.connect.shutdown_grace_secs + 1);
    let still_open = server.state.connections.wait_closed(grace).await;
    if still_open > 0 {
        tracing::warn!(connections = still_open, "client connections still open after the grace period; closing them with the process");
    }
    tracing::info!("shutting down: flushing the log and committing processors");
    tokio::task::spawn_blocking(move || server.shutdown()).await?;
    Ok(())
}
