//! Wiring: opens the log, state, keys, collector and processors; builds the router;
//! serves with graceful shutdown; runs the background tasks (pipeline reload, retention).

use crate::config::{HotBackend, ServerConfig, StateBackend};
use crate::history::{HistoryState, PassThroughCatalog};
use crate::ratelimit::RateLimits;
use crate::{console, history, ingest, manage, observe, stream};
use anyhow::Context as _;
use axum::routing::{get, post};
use axum::Router;
use meridian_collector::{Collector, KeyRegistry};
use meridian_log::embedded::EmbeddedLog;
use meridian_log::{Log, TopicName};
use meridian_pipeline::Pipeline;
use meridian_runtime::builtin::counters::CountersProcessor;
use meridian_runtime::{Runtime, RuntimeConfig};
use meridian_state::{KvStore, StateError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

/// The topic the counters processor consumes (the default route's topic).
pub(crate) const EVENTS_TOPIC: &str = "events";

/// Shared state of the handlers.
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) registry: Arc<KeyRegistry>,
    pub(crate) collector: Arc<Collector>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) pipeline_status: Mutex<Value>,
    pub(crate) history: Option<Arc<HistoryState>>,
    pub(crate) rate_limits: RateLimits,
    pipeline_mtime: Mutex<Option<SystemTime>>,
}

impl AppState {
    /// Reloads the pipeline file; on error the old pipeline stays and the error is kept
    /// in the status.
    pub(crate) fn reload_pipeline(&self) -> Result<Value, String> {
        let Some(path) = &self.config.pipeline_file else {
            return Err("no pipeline file is configured (--pipeline)".into());
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let result = Pipeline::from_file(path).map_err(|e| e.to_string()).and_then(|p| {
            let revision = p.revision();
            let topics = p.topics();
            self.collector.set_pipeline(p).map_err(|e| e.to_string())?;
            Ok((revision, topics))
        });
        *self.pipeline_mtime.lock() = mtime;
        let mut status = self.pipeline_status.lock();
        match result {
            Ok((revision, topics)) => {
                tracing::info!(revision, file = %path.display(), "pipeline loaded");
                metrics::counter!("meridian_pipeline_reloads_total", "result" => "ok").increment(1);
                *status = json!({"file": path, "revision": revision, "topics": topics, "loaded_ms": meridian_event::Timestamp::now().millis(), "last_error": null});
                Ok(status.clone())
            }
            Err(message) => {
                tracing::warn!(error = %message, file = %path.display(), "pipeline reload refused; the previous pipeline stays in force");
                metrics::counter!("meridian_pipeline_reloads_total", "result" => "error").increment(1);
                status["last_error"] = json!(message);
                Err(message)
            }
        }
    }

    fn pipeline_file_changed(&self) -> bool {
        let Some(path) = &self.config.pipeline_file else { return false };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        mtime.is_some() && mtime != *self.pipeline_mtime.lock()
    }
}

/// A server ready to serve.
pub struct Server {
    state: Arc<AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("data_dir", &self.state.config.data_dir).finish()
    }
}

impl Server {
    /// Opens everything in `config.data_dir` and starts the processors.
    pub fn open(config: ServerConfig) -> anyhow::Result<Server> {
        observe::prometheus();
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        if let Some(existing) = StateBackend::detect(&config.data_dir).filter(|b| *b != config.state_backend) {
            anyhow::bail!(
                "data directory {} holds {existing:?} state, not {:?}; start with the backend it was created with",
                config.data_dir.display(),
                config.state_backend
            );
        }
        let store: Arc<dyn KvStore> = match config.state_backend.open(&config.data_dir) {
            Ok(store) => store,
            Err(StateError::Locked { .. }) => anyhow::bail!(
                "data directory {} is in use by another meridian process; stop it or choose another --data-dir",
                config.data_dir.display()
            ),
            Err(e) => return Err(e.into()),
        };
        let log: Arc<dyn Log> = EmbeddedLog::open(config.data_dir.join("log"), config.log.clone()).context("cannot open the event log")?;
        let registry = Arc::new(KeyRegistry::open(store.clone(), config.master_key.as_deref())?);
        let pipeline = match &config.pipeline_file {
            Some(path) => Pipeline::from_file(path).with_context(|| format!("invalid pipeline file {}", path.display()))?,
            None => Pipeline::default(),
        };
        let pipeline_status = json!({"file": config.pipeline_file, "revision": pipeline.revision(), "topics": pipeline.topics(), "last_error": null});
        let events_topic = TopicName::new(EVENTS_TOPIC)?;
        log.ensure_topic(&events_topic, config.collector.partitions)?;
        let collector = Arc::new(Collector::new(log.clone(), store.clone(), pipeline, config.collector.clone())?);
        let runtime = Arc::new(Runtime::new(log.clone(), store.clone(), RuntimeConfig::default()));
        runtime.spawn(Box::new(CountersProcessor::new(events_topic.clone())))?;
        let history = match &config.history {
            None => None,
            Some(settings) => {
                let hot_config = meridian_history::hot::HotConfig { max_items: settings.config.max_items, ttl_ms: settings.config.hot_ttl_ms };
                let (hot, inline): (Arc<dyn meridian_history::hot::HotTier>, bool) = match &settings.hot {
                    HotBackend::Embedded { budget_bytes } => (Arc::new(meridian_history::hot::embedded::EmbeddedHotTier::new(hot_config, *budget_bytes)), true),
                    HotBackend::Redis { url, prefix } => (
                        Arc::new(
                            meridian_history_redis::RedisHotTier::connect(url, prefix, hot_config)
                                .with_context(|| format!("cannot connect to the history hot tier at {url}"))?,
                        ),
                        false,
                    ),
                };
                let catalog = settings.catalog.clone().unwrap_or_else(|| Arc::new(PassThroughCatalog::default()));
                let service = Arc::new(meridian_history::HistoryService::new(
                    settings.config,
                    hot,
                    store.clone(),
                    catalog,
                    Arc::new(meridian_history::model::SystemClock),
                )?);
                runtime.spawn(Box::new(service.processor(events_topic)))?;
                let blocking = Arc::new(tokio::sync::Semaphore::new(meridian_history_redis::POOL_IDLE));
                Some(Arc::new(HistoryState { service, inline, blocking, rebuild: Default::default() }))
            }
        };
        let rate_limits = RateLimits::new(&config.rate_limits);
        let pipeline_mtime = config.pipeline_file.as_ref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let state = Arc::new(AppState {
            config,
            log,
            store,
            registry,
            collector,
            runtime,
            pipeline_status: Mutex::new(pipeline_status),
            history,
            rate_limits,
            pipeline_mtime: Mutex::new(pipeline_mtime),
        });
        Ok(Server { state })
    }

    /// The key registry (the CLI uses it to bootstrap demo apps).
    pub fn registry(&self) -> &Arc<KeyRegistry> {
        &self.state.registry
    }

    /// The processor runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.state.runtime
    }

    /// The log.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.state.log
    }

    /// The router of every route (DESIGN.md §6).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/events", post(ingest::post_events))
            .route("/v1/batch", post(ingest::segment_batch))
            .route("/v1/track", post(ingest::segment_track))
            .route("/v1/page", post(ingest::segment_page))
            .route("/v1/screen", post(ingest::segment_screen))
            .route("/v1/identify", post(ingest::segment_identify))
            .route("/v1/group", post(ingest::segment_group))
            .route("/v1/alias", post(ingest::segment_alias))
            .route("/v1/apps", post(manage::create_app).get(manage::list_apps))
            .route("/v1/apps/{app}/keys", post(manage::create_key))
            .route("/v1/apps/{app}/dead-letters", get(manage::dead_letters))
            .route("/v1/apps/{app}/dead-letters/replay", post(manage::replay_dead_letters))
            .route("/v1/apps/{app}/counters", get(manage::counters))
            .route("/v1/streams/{topic}", get(stream::stream_topic))
            .route("/v1/apps/{app}/users/{user}/history", get(history::list).delete(history::clear))
            .route("/v1/apps/{app}/users/{user}/history/count", get(history::count))
            .route("/v1/apps/{app}/users/{user}/history/{sku}", axum::routing::delete(history::delete_one))
            .route("/v1/admin/history/rebuild", post(history::start_rebuild).get(history::rebuild_status))
            .route("/v1/whoami", get(manage::whoami))
            .route("/v1/admin/processors", get(manage::processors))
            .route("/v1/admin/processors/{name}/rebuild", post(manage::rebuild_processor))
            .route("/v1/admin/processors/{name}/seek", post(manage::seek_processor))
            .route("/v1/admin/pipeline", get(manage::pipeline_status))
            .route("/v1/admin/pipeline/reload", post(manage::reload_pipeline))
            .route("/v1/admin/topics", get(manage::topics))
            .route("/metrics", get(observe::metrics_text))
            .route("/healthz", get(observe::healthz))
            .route("/readyz", get(observe::readyz))
            .route("/openapi.json", get(console::openapi))
            .route("/console", get(console::page))
            .route("/console/", get(console::page))
            .route("/", get(console::redirect_to_console))
            .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
            .fallback(console::not_found)
            .layer(axum::middleware::from_fn(observe::track_requests))
            .with_state(self.state.clone())
    }

    /// Starts the background tasks (pipeline file watch, retention) on the current runtime.
    pub fn spawn_background_tasks(&self) {
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.config.pipeline_poll);
            loop {
                tick.tick().await;
                if state.pipeline_file_changed() {
                    let s = state.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload_pipeline()).await;
                }
            }
        });
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.config.retention_interval);
            loop {
                tick.tick().await;
                let log = state.log.clone();
                match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
                    Ok(Ok(report)) if report.segments_deleted > 0 => {
                        tracing::info!(segments = report.segments_deleted, bytes = report.bytes_freed, "retention removed old segments")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
                    _ => {}
                }
            }
        });
    }

    /// Stops processors (after their current batch commits) and closes the log (queued
    /// appends become durable first).
    pub fn shutdown(&self) {
        self.state.runtime.shutdown();
        if let Err(e) = self.state.log.close() {
            tracing::warn!(error = %e, "closing the log failed");
        }
    }
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
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    tracing::info!("shutting down: flushing the log and committing processors");
    tokio::task::spawn_blocking(move || server.shutdown()).await?;
    Ok(())
}
