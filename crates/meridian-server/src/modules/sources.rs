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
use meridian_api::sources::{SourceList, SourceSpec, SourceState, SourceView};
use meridian_collector::{Collector, CollectorError, EventStatus, SourcedMessage};
use meridian_event::AppId;
use meridian_sources::{Delivery, RunnerConfig, Sink, SinkError, Source, SourceMessage, SourceRunner, StatusHandle};
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Sources added through the API: key = name, value = the spec as JSON.
const SPECS_TABLE: &str = "sources_specs";

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

/// A source being run.
struct Running {
    spec: SourceSpec,
    from_config: bool,
    cancel: CancellationToken,
    status: StatusHandle,
    task: tokio::task::JoinHandle<meridian_sources::SourceStatus>,
}

/// Runs the sources: those of the config and those added through the API.
pub(crate) struct Manager {
    app: Arc<AppState>,
    store: Arc<dyn KvStore>,
    running: Mutex<BTreeMap<String, Running>>,
    handle: OnceLock<tokio::runtime::Handle>,
}

impl Manager {
    /// Starts a runner for `spec` (the server must be serving).
    fn start_one(&self, spec: SourceSpec, from_config: bool) -> Result<(), ApiError> {
        // The server's runtime once it serves; a request's own runtime otherwise (a server
        // used in process, without its background services).
        let handle = self
            .handle
            .get()
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
            .ok_or_else(|| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting", "the server is starting; retry in a moment"))?;
        let app = AppId::new(spec.app.as_str()).map_err(|e| ApiError::bad_request("invalid_source", e.to_string()))?;
        let sink = Arc::new(CollectorSink { collector: self.app.collector.clone(), app });
        let batch_max = 500.min(self.app.config.collector.max_batch_events);
        let (for_open, store) = (spec.clone(), self.store.clone());
        let open = move || {
            let (spec, store) = (for_open.clone(), store.clone());
            async move { open_source(spec, store).await }
        };
        let runner = SourceRunner::new(spec.name.clone(), kind_of(&spec), open, sink, RunnerConfig { batch_max, ..RunnerConfig::default() });
        let status = runner.status();
        let cancel = CancellationToken::new();
        let task = handle.spawn(runner.run(cancel.clone()));
        self.running.lock().insert(spec.name.clone(), Running { spec, from_config, cancel, status, task });
        Ok(())
    }

    fn views(&self) -> Vec<SourceView> {
        self.running
            .lock()
            .values()
            .map(|r| {
                let s = r.status.get();
                SourceView {
                    spec: r.spec.clone(),
                    from_config: r.from_config,
                    state: SourceState {
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
                    },
                }
            })
            .collect()
    }

    /// Stops a source's runner and waits (a few seconds at most) for it to close.
    async fn stop_one(&self, name: &str) -> Option<Running> {
        let running = self.running.lock().remove(name)?;
        running.cancel.cancel();
        Some(running)
    }
}

impl Service for Manager {
    fn start(&self, handle: &tokio::runtime::Handle) {
        let _ = self.handle.set(handle.clone());
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
        for (spec, from_config) in specs {
            let name = spec.name.clone();
            if let Err(e) = self.start_one(spec, from_config) {
                tracing::warn!(source = %name, error = %e.message, "cannot start a source");
            }
        }
    }

    fn stop(&self) {
        for running in self.running.lock().values() {
            running.cancel.cancel();
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
        let manager = Arc::new(Manager { app: ctx.state.clone(), store: ctx.store()?, running: Mutex::new(BTreeMap::new()), handle: OnceLock::new() });
        let state = Arc::new(SourcesState { app: ctx.state.clone(), manager: manager.clone() });
        let module = ModuleBuilder::new("sources")
            .routes(OpenApiRouter::new().routes(routes!(list_sources, add_source)).routes(routes!(remove_source)).with_state(state))
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
    let store = state.manager.store.clone();
    let value = serde_json::to_vec(&spec).map_err(ApiError::internal)?;
    let key = spec.name.clone().into_bytes();
    blocking(move || {
        let mut batch = WriteBatch::new();
        batch.put(SPECS_TABLE, key, value);
        store.commit(batch)
    })
    .await?
    .map_err(ApiError::internal)?;
    state.manager.start_one(spec.clone(), false)?;
    audit(&state.app, &principal, "source.add", spec.name.clone(), serde_json::to_value(&spec).map_err(ApiError::internal)?).await?;
    let view = state.manager.views().into_iter().find(|v| v.spec.name == spec.name).ok_or_else(|| ApiError::internal("the source stopped at once"))?;
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
    let view = state.manager.views().into_iter().find(|v| v.spec.name == name).ok_or_else(|| ApiError::not_found("unknown_source", format!("no source is named {name:?}; GET /v1/admin/sources lists them")))?;
    if view.from_config {
        return Err(ApiError::conflict("source_in_config", format!("source {name:?} is declared in the config file ([[sources.list]]); remove it there and restart")));
    }
    let store = state.manager.store.clone();
    let key = name.clone().into_bytes();
    blocking(move || {
        let mut batch = WriteBatch::new();
        batch.delete(SPECS_TABLE, key);
        store.commit(batch)
    })
    .await?
    .map_err(ApiError::internal)?;
    if let Some(running) = state.manager.stop_one(&name).await {
        let _ = tokio::time::timeout(Duration::from_secs(10), running.task).await;
    }
    audit(&state.app, &principal, "source.remove", name.clone(), json!({"removed": true})).await?;
    Ok(Json(view))
}
