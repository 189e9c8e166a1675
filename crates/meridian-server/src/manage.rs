//! Management and query routes: apps and keys, dead letters, counters, processors,
//! pipeline reload, topics.

use crate::auth::{app_id, authenticate, check_scope, require, require_master};
use crate::error::{parse_json, ApiError};
use crate::server::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meridian_collector::Scope;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    id: String,
}

/// `POST /v1/apps` (master key): `{"id": "shop"}`.
pub(crate) async fn create_app(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_master(&state, &headers)?;
    let request: CreateApp = parse_json(&body)?;
    let app = app_id(&request.id)?;
    let record = state.registry.create_app(&app)?;
    Ok((StatusCode::CREATED, Json(json!({"id": record.id, "created_ms": record.created_ms}))))
}

/// `GET /v1/apps` (master key).
pub(crate) async fn list_apps(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    Ok(Json(json!({"apps": state.registry.apps()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    scopes: Vec<String>,
}

/// `POST /v1/apps/{app}/keys` (master, or the app's admin key): `{"scopes": ["write"]}`.
pub(crate) async fn create_key(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Scope::Admin, &app)?;
    let request: CreateKey = parse_json(&body)?;
    let scopes = request
        .scopes
        .iter()
        .map(|s| Scope::parse(s).ok_or_else(|| ApiError::bad_request("invalid_scope", format!("unknown scope {s:?}; use write, read or admin"))))
        .collect::<Result<Vec<_>, _>>()?;
    let (secret, record) = state.registry.create_key(&app, &scopes)?;
    Ok((StatusCode::CREATED, Json(json!({"key": secret, "key_id": record.key_id, "app": app, "scopes": record.scopes}))))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
}

fn page_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(50.min(max)),
        Some(0) => Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {max}"))),
        Some(n) if n > max => Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {max}"))),
        Some(n) => Ok(n),
    }
}

/// `GET /v1/apps/{app}/dead-letters?cursor=&limit=` (read).
pub(crate) async fn dead_letters(State(state): State<Arc<AppState>>, Path(app): Path<String>, Query(page): Query<Page>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Scope::Read, &app)?;
    let limit = page_limit(page.limit, 1000)?;
    let from = match page.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<u64>().map_err(|_| ApiError::bad_request("invalid_cursor", "cursor must be the next_cursor of a previous page"))?,
    };
    let collector = state.collector.clone();
    let (letters, next) = tokio::task::spawn_blocking(move || collector.dead_letters(&app, from, limit)).await.map_err(ApiError::internal)??;
    Ok(Json(json!({"dead_letters": letters, "next_cursor": next.to_string()})))
}

/// `POST /v1/apps/{app}/dead-letters/replay` (admin).
pub(crate) async fn replay_dead_letters(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Scope::Admin, &app)?;
    let report = state.collector.replay_dead_letters(&app).await?;
    Ok(Json(json!(report)))
}

/// `GET /v1/apps/{app}/counters` (read): committed counts of the counters processor.
pub(crate) async fn counters(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Scope::Read, &app)?;
    let store = state.store.clone();
    let counts = tokio::task::spawn_blocking(move || meridian_runtime::builtin::counters::app_counters(&*store, &app))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!(counts)))
}

/// `GET /v1/admin/processors` (master).
pub(crate) async fn processors(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    Ok(Json(json!({"processors": state.runtime.status()})))
}

/// `POST /v1/admin/processors/{name}/rebuild` (master): clear state, replay from the start.
pub(crate) async fn rebuild_processor(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    let runtime = state.runtime.clone();
    let name_for_task = name.clone();
    tokio::task::spawn_blocking(move || runtime.rebuild(&name_for_task)).await.map_err(ApiError::internal)?.map_err(|e| match e {
        meridian_runtime::RuntimeError::UnknownProcessor(_) => ApiError::not_found("unknown_processor", e.to_string()),
        other => ApiError::internal(other),
    })?;
    Ok(Json(json!({"processor": name, "status": "rebuilding"})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekRequest {
    topic: String,
    /// Partition (as a string key, JSON objects have string keys) → next offset to process.
    offsets: std::collections::BTreeMap<String, u64>,
}

/// `POST /v1/admin/processors/{name}/seek` (master): `{"topic": "events", "offsets": {"0": 120}}`
/// moves the processor's positions without clearing its state (replay from a position).
pub(crate) async fn seek_processor(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    let request: SeekRequest = parse_json(&body)?;
    let topic = meridian_log::TopicName::new(request.topic).map_err(|e| ApiError::bad_request("invalid_topic", e.to_string()))?;
    let positions = request
        .offsets
        .iter()
        .map(|(p, o)| p.parse::<u32>().map(|p| (p, *o)).map_err(|_| ApiError::bad_request("invalid_partition", format!("partition {p:?} is not a number"))))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = state.runtime.clone();
    let (name_for_task, topic_for_task) = (name.clone(), topic.clone());
    tokio::task::spawn_blocking(move || runtime.seek(&name_for_task, &topic_for_task, positions)).await.map_err(ApiError::internal)?.map_err(|e| match e {
        meridian_runtime::RuntimeError::UnknownProcessor(_) => ApiError::not_found("unknown_processor", e.to_string()),
        meridian_runtime::RuntimeError::Log(meridian_log::LogError::UnknownTopic(_)) => ApiError::not_found("unknown_topic", e.to_string()),
        meridian_runtime::RuntimeError::Processor { .. } => ApiError::bad_request("invalid_seek", e.to_string()),
        other => ApiError::internal(other),
    })?;
    Ok(Json(json!({"processor": name, "topic": topic, "status": "moved"})))
}

/// `GET /v1/admin/pipeline` (master).
pub(crate) async fn pipeline_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    let status = state.pipeline_status.lock().clone();
    Ok(Json(status))
}

/// `POST /v1/admin/pipeline/reload` (master): reload the pipeline file now.
pub(crate) async fn reload_pipeline(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    match state.reload_pipeline() {
        Ok(status) => Ok(Json(status)),
        Err(message) => Err(ApiError::bad_request("invalid_pipeline", format!("pipeline not reloaded, the previous one stays in force: {message}"))),
    }
}

/// `GET /v1/admin/topics` (master): topics, partitions and offsets.
pub(crate) async fn topics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    let mut out = Vec::new();
    for info in state.log.topics() {
        let mut partitions = Vec::new();
        for p in 0..info.partitions {
            let offsets = state.log.offsets(&info.name, p).map_err(ApiError::internal)?;
            partitions.push(json!({"partition": p, "start": offsets.start, "end": offsets.end}));
        }
        out.push(json!({"name": info.name, "partitions": partitions}));
    }
    Ok(Json(json!({"topics": out})))
}

/// `GET /v1/whoami`: what the presented key may do (used by the console).
pub(crate) async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let key = authenticate(&state, &headers)?;
    if let Some(app) = &key.app {
        check_scope(&key, Scope::Read, app).or_else(|_| check_scope(&key, Scope::Write, app)).or_else(|_| check_scope(&key, Scope::Admin, app))?;
    }
    let apps: Vec<Value> = match &key.app {
        None => state.registry.apps().into_iter().map(|a| json!(a.id)).collect(),
        Some(app) => vec![json!(app)],
    };
    Ok(Json(json!({"key_id": key.key_id, "master": key.is_master(), "scopes": key.scopes, "apps": apps})))
}
