//! The sources adapter: message queues and directories consumed as event sources (NATS
//! JetStream, RabbitMQ, NDJSON/CSV files), each a `meridian_sources::SourceRunner` feeding
//! the collector; declared in `[sources]` or added and removed at run time through
//! `/v1/admin/sources` (kept in the module's store), with their state in the API and
//! `/metrics`.
//!
//! A message becomes an event of the source's app through the collector, like a request
//! body (the app's pipeline parsers apply, and those scoped to the source with
//! `sources = ["name"]`); an event without an id takes the message's
//! stable id, so a redelivery after a crash is a duplicate, not a second event. The queue
//! is acknowledged only after the collector has made the batch durable; a message the
//! pipeline rejects is a dead letter naming its origin (source, subject or queue, offset)
//! and is acknowledged too, so it never blocks its source.

use crate::auth::require_global_admin;
use crate::routes::admin::audit;
use crate::error::{parse_json, ApiError};
use crate::extract::Path;
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext, Service};
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use meridian_api::sources::{SourceList, SourceSample, SourceSpec, SourceState, SourceView};
use meridian_collector::{Collector, CollectorError, EventStatus, SourcedMessage};
use meridian_event::AppId;
use meridian_sources::{Delivery, RunnerConfig, Sink, SinkError, Source, SourceMessage, SourceRunner, StatusHandle};
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Sources added through the API: key = name, value = the spec as JSON.
const SPECS_TABLE: &str = "sources_specs";
/// Sources an operator paused: key = name, value empty.
const PAUSED_TABLE: &str = "sources_paused";

/// The sources module.
#[derive(Debug)]
pub(crate) struct Sources;

/// Checks a spec on its own (not against the others): `(field, what is wrong)`.
pub(crate) fn check_spec(spec: &SourceSpec) -> Result<(), (&'static str, String)> {
    let name_ok = !spec.name.is_empty() && spec.name.len() <= 64 && spec.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(("name", format!("{:?} is not a source name: use 1-64 of [a-z0-9_-]", spec.name)));
    }
    AppId::new(spec.app.as_str()).map_err(|e| ("app", e.to_string()))?;
    let absent = |field: &'static str, set: bool| if set { Err((field, format!("a {} source has no {field}; leave it out", spec.kind))) } else { Ok(()) };
    let needed = |field: &'static str, value: &Option<String>| match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err((field, format!("a {} source needs {field}", spec.kind))),
    };
    match spec.kind.as_str() {
        "nats" => {
            needed("stream", &spec.stream)?;
            absent("queue", spec.queue.is_some())?;
            absent("dir", spec.dir.is_some())?;
            if spec.ack_wait_secs.is_some_and(|s| s == 0 || s > 3600) {
                return Err(("ack_wait_secs", "must be 1-3600 seconds".into()));
            }
        }
        "rabbitmq" => {
            needed("queue", &spec.queue)?;
            absent("stream", spec.stream.is_some())?;
            absent("subjects", !spec.subjects.is_empty())?;
            absent("ack_wait_secs", spec.ack_wait_secs.is_some())?;
            absent("dir", spec.dir.is_some())?;
        }
        "file" => {
            needed("dir", &spec.dir)?;
            for (field, set) in [("url", spec.url.is_some()), ("stream", spec.stream.is_some()), ("subjects", !spec.subjects.is_empty()), ("queue", spec.queue.is_some()), ("ack_wait_secs", spec.ack_wait_secs.is_some())] {
                absent(field, set)?;
            }
        }
        other => return Err(("kind", format!("unknown source kind {other:?}; use nats, rabbitmq or file"))),
    }
    Ok(())
}

/// Opens the source a spec describes (each time its runner (re)connects).
async fn open_source(spec: SourceSpec, store: Arc<dyn KvStore>) -> meridian_sources::Result<Box<dyn Source>> {
    match spec.kind.as_str() {
        "nats" => {
            let mut config = meridian_sources_nats::NatsSourceConfig::new(spec.name, spec.stream.unwrap_or_default(), spec.subjects);
            if let Some(url) = spec.url {
                config.url = url;
            }
            if let Some(secs) = spec.ack_wait_secs {
                config.ack_wait = Duration::from_secs(secs);
            }
            Ok(Box::new(meridian_sources_nats::NatsSource::open(config).await?))
        }
        "rabbitmq" => {
            let mut config = meridian_sources_rabbitmq::RabbitMqSourceConfig::new(spec.name, spec.queue.unwrap_or_default());
            if let Some(url) = spec.url {
                config.url = url;
            }
            Ok(Box::new(meridian_sources_rabbitmq::RabbitMqSource::open(config).await?))
        }
        _ => {
            let config = meridian_sources::FileSourceConfig::new(spec.name, spec.dir.unwrap_or_default());
            Ok(Box::new(meridian_sources::FileSource::open(config, store).await?))
        }
    }
}

fn kind_of(spec: &SourceSpec) -> &'static str {
    match spec.kind.as_str() {
        "nats" => "nats",
        "rabbitmq" => "rabbitmq",
        _ => "file",
    }
}

/// Hands a source's messages to the collector, for its app.
struct CollectorSink {
    collector: Arc<Collector>,
    app: AppId,
}

#[async_trait::async_trait]
impl Sink for CollectorSink {
    async fn deliver(&self, source: &str, messages: &[SourceMessage]) -> Result<Vec<Delivery>, SinkError> {
        let origins: Vec<String> = messages.iter().map(|m| m.origin.to_string()).collect();
        let sourced: Vec<SourcedMessage<'_>> = messages.iter().zip(&origins).map(|(m, origin)| SourcedMessage { source, payload: &m.payload, default_id: &m.id, origin }).collect();
        match self.collector.ingest_messages(&self.app, &sourced).await {
            Ok(report) => Ok(report
                .results
                .into_iter()
                .map(|r| match r.status {
                    EventStatus::Accepted | EventStatus::Filtered => Delivery::Stored,
                    EventStatus::Duplicate => Delivery::Duplicate,
                    EventStatus::Rejected => Delivery::DeadLettered { code: r.error.map(|e| e.code).unwrap_or_default() },
                })
                .collect()),
            Err(CollectorError::Overloaded { .. }) => Err(SinkError::Overloaded { retry_after: Duration::from_millis(50) }),
            Err(e) => Err(SinkError::Failed(e.to_string())),
        }
    }
}

/// A source the manager knows: running, or paused by an operator.
struct Running {
    spec: SourceSpec,
    from_config: bool,
    /// Its runner's status (the last run's while paused; none before a first run).
    status: Option<StatusHandle>,
    /// The runner, unless paused.
    run: Option<(CancellationToken, tokio::task::JoinHandle<meridian_sources::SourceStatus>)>,
    /// Lag and rate samples, oldest first (`HISTORY_SAMPLES` at most).
    history: VecDeque<SourceSample>,
}

/// How often the sources' lag and rate are sampled for the charts.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept per source: 10 minutes.
const HISTORY_SAMPLES: usize = 120;

/// Runs the sources: those of the config and those added through the API, except those
/// an operator paused.
pub(crate) struct Manager {
    app: Arc<AppState>,
    store: Arc<dyn KvStore>,
    running: Mutex<BTreeMap<String, Running>>,
    handle: OnceLock<tokio::runtime::Handle>,
    /// Itself, for the start-up task.
    this: Weak<Manager>,
    /// Cancelled when the server stops (ends the sampling).
    stopped: CancellationToken,
}

/// Writes (`Some`) or deletes (`None`) one row of the module's store, off the async
/// workers.
async fn write_row(store: &Arc<dyn KvStore>, table: &'static str, key: &str, value: Option<Vec<u8>>) -> Result<(), ApiError> {
    let (store, key) = (store.clone(), key.as_bytes().to_vec());
    blocking(move || {
        let mut batch = WriteBatch::new();
        match value {
            Some(value) => batch.put(table, key, value),
            None => batch.delete(table, key),
        }
        store.commit(batch)
    })
    .await?
    .map_err(ApiError::internal)
}

impl Manager {
    /// Registers `spec` and, unless `paused`, starts its runner.
    fn start_one(&self, spec: SourceSpec, from_config: bool, paused: bool) -> Result<(), ApiError> {
        let mut entry = Running { spec, from_config, status: None, run: None, history: VecDeque::new() };
        if !paused {
            self.spawn(&mut entry)?;
        }
        self.running.lock().insert(entry.spec.name.clone(), entry);
        Ok(())
    }

    /// Starts a runner for `entry`.
    fn spawn(&self, entry: &mut Running) -> Result<(), ApiError> {
        // The server's runtime once it serves; a request's own runtime otherwise (a server
        // used in process, without its background services).
        let handle = self
            .handle
            .get()
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
            .ok_or_else(|| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting", "the server is starting; retry in a moment"))?;
        let spec = &entry.spec;
        let app = AppId::new(spec.app.as_str()).map_err(|e| ApiError::bad_request("invalid_source", e.to_string()))?;
        let sink = Arc::new(CollectorSink { collector: self.app.collector.clone(), app });
        let batch_max = 500.min(self.app.config.collector.max_batch_events);
        let (for_open, store) = (spec.clone(), self.store.clone());
        let open = move || {
            let (spec, store) = (for_open.clone(), store.clone());
            async move { open_source(spec, store).await }
        };
        let runner = SourceRunner::new(spec.name.clone(), kind_of(spec), open, sink, RunnerConfig { batch_max, ..RunnerConfig::default() });
        entry.status = Some(runner.status());
        let cancel = CancellationToken::new();
        let task = handle.spawn(runner.run(cancel.clone()));
        entry.run = Some((cancel, task));
        Ok(())
    }

    fn view(r: &Running) -> SourceView {
        let state = r.status.as_ref().map(|status| {
            let s = status.get();
            SourceState {
                running: s.running,
                connected: s.connected,
                messages_total: s.messages_total,
                stored: s.stored,
                duplicates: s.duplicates,
                dead_lettered: s.dead_lettered,
                overloaded: s.overloaded,
                lag: s.lag,
                last_error: s.last_error,
                events_per_second: s.events_per_second,
            }
        });
        let mut state = state.unwrap_or_default();
        if r.run.is_none() {
            state.events_per_second = 0.0;
        }
        SourceView { spec: r.spec.clone(), from_config: r.from_config, paused: r.run.is_none(), state, history: r.history.iter().copied().collect() }
    }

    /// Adds a sample of every source's lag and rate to its history.
    fn sample(&self, at_ms: i64) {
        for r in self.running.lock().values_mut() {
            let (lag, events_per_second) = match (&r.status, &r.run) {
                (Some(status), Some(_)) => {
                    let s = status.get();
                    (s.lag, s.events_per_second)
                }
                (Some(status), None) => (status.get().lag, 0.0),
                (None, _) => (None, 0.0),
            };
            if r.history.len() == HISTORY_SAMPLES {
                r.history.pop_front();
            }
            r.history.push_back(SourceSample { at_ms, lag, events_per_second });
        }
    }

    fn views(&self) -> Vec<SourceView> {
        self.running.lock().values().map(Manager::view).collect()
    }

    fn view_of(&self, name: &str) -> Option<SourceView> {
        self.running.lock().get(name).map(Manager::view)
    }

    /// Stops a source's runner and forgets the source.
    fn remove_one(&self, name: &str) -> Option<tokio::task::JoinHandle<meridian_sources::SourceStatus>> {
        let running = self.running.lock().remove(name)?;
        let (cancel, task) = running.run?;
        cancel.cancel();
        Some(task)
    }

    /// Stops a source's runner and keeps the source, paused; None when unknown, the task
    /// to wait for when it was running.
    fn pause_one(&self, name: &str) -> Option<Option<tokio::task::JoinHandle<meridian_sources::SourceStatus>>> {
        let mut running = self.running.lock();
        let entry = running.get_mut(name)?;
        Some(entry.run.take().map(|(cancel, task)| {
            cancel.cancel();
            task
        }))
    }

    /// Starts a paused source again; false when it was not paused.
    fn resume_one(&self, name: &str) -> Result<bool, ApiError> {
        let mut running = self.running.lock();
        let entry = running.get_mut(name).ok_or_else(|| unknown_source(name))?;
        if entry.run.is_some() {
            return Ok(false);
        }
        self.spawn(entry)?;
        Ok(true)
    }

    /// The sources to run: the config's, then those added through the API, each with
    /// whether an operator paused it. Reads the store (call it off the async workers).
    fn declared(&self) -> Vec<(SourceSpec, bool, bool)> {
        let paused: std::collections::BTreeSet<Vec<u8>> = match self.store.scan_prefix(PAUSED_TABLE, &[], usize::MAX) {
            Ok(rows) => rows.into_iter().map(|(k, _)| k).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read which sources are paused; all run");
                Default::default()
            }
        };
        let mut specs: Vec<(SourceSpec, bool)> = self.app.config.sources.list.iter().cloned().map(|s| (s, true)).collect();
        match self.store.scan_prefix(SPECS_TABLE, &[], usize::MAX) {
            Ok(rows) => {
                for (_, value) in rows {
                    match serde_json::from_slice::<SourceSpec>(&value) {
                        Ok(spec) if !specs.iter().any(|(s, _)| s.name == spec.name) => specs.push((spec, false)),
                        Ok(spec) => tracing::warn!(source = %spec.name, "a source added through the API has the name of one in the config file; the config's runs"),
                        Err(e) => tracing::warn!(error = %e, "an unreadable source spec in the store is skipped"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the sources added through the API"),
        }
        specs.into_iter().map(|(spec, from_config)| {
            let is_paused = paused.contains(spec.name.as_bytes());
            (spec, from_config, is_paused)
        }).collect()
    }
}

fn unknown_source(name: &str) -> ApiError {
    ApiError::not_found("unknown_source", format!("no source is named {name:?}; GET /v1/admin/sources lists them"))
}

impl Service for Manager {
    fn start(&self, handle: &tokio::runtime::Handle) {
        let _ = self.handle.set(handle.clone());
        let Some(this) = self.this.upgrade() else { return };
        // The declarations are read from the store on the blocking pool, then started.
        handle.spawn(async move {
            let reader = this.clone();
            let declared = match tokio::task::spawn_blocking(move || reader.declared()).await {
                Ok(declared) => declared,
                Err(e) => {
                    tracing::error!(error = %e, "reading the sources' declarations failed; no source runs");
                    return;
                }
            };
            for (spec, from_config, paused) in declared {
                let name = spec.name.clone();
                if let Err(e) = this.start_one(spec, from_config, paused) {
                    tracing::warn!(source = %name, error = %e.message, "cannot start a source");
                }
            }
            // The charts' samples, until the server stops.
            let weak = Arc::downgrade(&this);
            drop(this);
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(manager) = weak.upgrade() else { break };
                if manager.stopped.is_cancelled() {
                    break;
                }
                manager.sample(meridian_event::Timestamp::now().millis());
            }
        });
    }

    fn stop(&self) {
        self.stopped.cancel();
        for running in self.running.lock().values() {
            if let Some((cancel, _)) = &running.run {
                cancel.cancel();
            }
        }
    }
}

struct SourcesState {
    app: Arc<AppState>,
    manager: Arc<Manager>,
}

impl Capability for Sources {
    fn name(&self) -> &'static str {
        "sources"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        if !ctx.config().sources.enabled {
            return Ok(None);
        }
        let store = ctx.store()?;
        let manager = Arc::new_cyclic(|this| Manager { app: ctx.state.clone(), store, running: Mutex::new(BTreeMap::new()), handle: OnceLock::new(), this: this.clone(), stopped: CancellationToken::new() });
        let state = Arc::new(SourcesState { app: ctx.state.clone(), manager: manager.clone() });
        let module = ModuleBuilder::new("sources")
            .routes(OpenApiRouter::new().routes(routes!(list_sources, add_source)).routes(routes!(remove_source)).routes(routes!(pause_source)).routes(routes!(resume_source)).with_state(state))
            .service(manager)
            .erasure(Erasure::NoUserData { why: "consumes queues into the events topic; keeps only positions and source declarations" })
            .build()?;
        Ok(Some(module))
    }
}

/// Every source with its state: messages stored, duplicates, dead letters, lag, errors.
#[utoipa::path(
    get,
    path = "/v1/admin/sources",
    tag = "admin",
    responses((status = 200, description = "Every source", body = SourceList)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn list_sources(State(state): State<Arc<SourcesState>>, headers: HeaderMap) -> Result<Json<SourceList>, ApiError> {
    require_global_admin(&state.app, &headers)?;
    Ok(Json(SourceList { sources: state.manager.views() }))
}

/// Adds a source and starts it, without a restart; it runs again after restarts until
/// it is removed.
#[utoipa::path(
    post,
    path = "/v1/admin/sources",
    tag = "admin",
    request_body(content = SourceSpec, description = "The source", content_type = "application/json"),
    responses(
        (status = 201, description = "Added and started", body = SourceView),
        (status = 400, description = "Invalid source", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown app", body = meridian_api::ErrorBody),
        (status = 409, description = "A source of that name exists", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn add_source(State(state): State<Arc<SourcesState>>, headers: HeaderMap, body: Bytes) -> Result<(axum::http::StatusCode, Json<SourceView>), ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    let spec: SourceSpec = parse_json(&body)?;
    check_spec(&spec).map_err(|(field, message)| ApiError::bad_request("invalid_source", format!("{field}: {message}")).with_details(json!({"field": field})))?;
    let app = AppId::new(spec.app.as_str()).map_err(|e| ApiError::bad_request("invalid_source", e.to_string()))?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}; create it with POST /v1/apps", app.as_str())));
    }
    if state.manager.running.lock().contains_key(&spec.name) {
        return Err(ApiError::conflict("source_exists", format!("a source named {:?} exists; remove it first or choose another name", spec.name)));
    }
    let value = serde_json::to_vec(&spec).map_err(ApiError::internal)?;
    write_row(&state.manager.store, SPECS_TABLE, &spec.name, Some(value)).await?;
    write_row(&state.manager.store, PAUSED_TABLE, &spec.name, None).await?;
    state.manager.start_one(spec.clone(), false, false)?;
    audit(&state.app, &principal, "source.add", spec.name.clone(), serde_json::to_value(&spec).map_err(ApiError::internal)?).await?;
    let view = state.manager.view_of(&spec.name).ok_or_else(|| ApiError::internal("the source stopped at once"))?;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

/// Stops a source added through the API and forgets it (what it stored stays; its queue
/// keeps what it had not acknowledged). Sources of the config file are removed there.
#[utoipa::path(
    delete,
    path = "/v1/admin/sources/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Source name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Stopped and removed; its last state", body = SourceView),
        (status = 400, description = "Invalid name", body = meridian_api::ErrorBody),
        (status = 404, description = "No such source", body = meridian_api::ErrorBody),
        (status = 409, description = "Declared in the config file", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn remove_source(State(state): State<Arc<SourcesState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<SourceView>, ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    let view = state.manager.view_of(&name).ok_or_else(|| unknown_source(&name))?;
    if view.from_config {
        return Err(ApiError::conflict("source_in_config", format!("source {name:?} is declared in the config file ([[sources.list]]); remove it there and restart, or pause it with POST /v1/admin/sources/{name}/pause")));
    }
    write_row(&state.manager.store, SPECS_TABLE, &name, None).await?;
    write_row(&state.manager.store, PAUSED_TABLE, &name, None).await?;
    if let Some(task) = state.manager.remove_one(&name) {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    audit(&state.app, &principal, "source.remove", name.clone(), json!({"removed": true})).await?;
    Ok(Json(view))
}

/// Pauses a source (of the config file or added through the API): its runner stops after
/// the batch in hand is durable and acknowledged, what its queue holds waits there, and it
/// stays paused across restarts until resumed.
#[utoipa::path(
    post,
    path = "/v1/admin/sources/{name}/pause",
    tag = "admin",
    params(("name" = String, Path, description = "Source name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Paused (or already paused); its state", body = SourceView),
        (status = 400, description = "Invalid name", body = meridian_api::ErrorBody),
        (status = 404, description = "No such source", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn pause_source(State(state): State<Arc<SourcesState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<SourceView>, ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    if state.manager.view_of(&name).is_none() {
        return Err(unknown_source(&name));
    }
    write_row(&state.manager.store, PAUSED_TABLE, &name, Some(Vec::new())).await?;
    let was_running = match state.manager.pause_one(&name) {
        Some(Some(task)) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            true
        }
        Some(None) => false,
        None => return Err(unknown_source(&name)),
    };
    audit(&state.app, &principal, "source.pause", name.clone(), json!({"was_running": was_running})).await?;
    state.manager.view_of(&name).map(Json).ok_or_else(|| unknown_source(&name))
}

/// Resumes a paused source: a new runner starts from the queue's (or file's) stored
/// position.
#[utoipa::path(
    post,
    path = "/v1/admin/sources/{name}/resume",
    tag = "admin",
    params(("name" = String, Path, description = "Source name", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Running (or already running); its state", body = SourceView),
        (status = 400, description = "Invalid name", body = meridian_api::ErrorBody),
        (status = 404, description = "No such source", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn resume_source(State(state): State<Arc<SourcesState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<SourceView>, ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    if state.manager.view_of(&name).is_none() {
        return Err(unknown_source(&name));
    }
    write_row(&state.manager.store, PAUSED_TABLE, &name, None).await?;
    let started = state.manager.resume_one(&name)?;
    audit(&state.app, &principal, "source.resume", name.clone(), json!({"was_paused": started})).await?;
    state.manager.view_of(&name).map(Json).ok_or_else(|| unknown_source(&name))
}
