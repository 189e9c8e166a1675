//! History routes (DESIGN.md §6): list, count, delete one, clear — rate limited per
//! global, caller and user — and the rebuild of the cold tier as a background job.

use crate::auth::{app_id, require, require_master};
use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meridian_collector::Scope;
use meridian_history::catalog::{CatalogLookup, SkuInfo};
use meridian_history::model::Owner;
use meridian_history::HistoryService;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// A catalog that knows nothing: every SKU is shown as its own SPU without name or image.
/// Used when the server has no catalog configured, so history still lists what was viewed.
#[derive(Debug)]
pub struct PassThroughCatalog {
    empty: Arc<str>,
}

impl Default for PassThroughCatalog {
    fn default() -> Self {
        PassThroughCatalog { empty: Arc::from("") }
    }
}

impl CatalogLookup for PassThroughCatalog {
    fn lookup(&self, skus: &[u64]) -> Vec<Option<SkuInfo>> {
        skus.iter().map(|sku| Some(SkuInfo { spu: *sku, name: self.empty.clone(), image: self.empty.clone() })).collect()
    }
}

/// Progress and outcome of the latest rebuild.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RebuildStatus {
    running: bool,
    done: u64,
    total: u64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    report: Option<Value>,
    error: Option<String>,
}

/// History state of the server.
pub(crate) struct HistoryState {
    pub(crate) service: Arc<HistoryService>,
    /// Whether calls stay on the async thread (embedded hot tier: microseconds) or move
    /// to the blocking pool (Redis: network round trips).
    pub(crate) inline: bool,
    /// Bounds concurrent blocking calls to the pool size of a networked hot tier, so load
    /// queues here (asynchronously) instead of growing threads and connections.
    pub(crate) blocking: Arc<tokio::sync::Semaphore>,
    pub(crate) rebuild: Arc<Mutex<RebuildStatus>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OwnerQuery {
    /// `user` (default) or `device`.
    kind: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn history_error(e: meridian_history::Error) -> ApiError {
    use meridian_history::Error as E;
    match e {
        E::InvalidLimit { .. } => ApiError::bad_request("invalid_limit", e.to_string()),
        E::InvalidCursor(_) => ApiError::bad_request("invalid_cursor", e.to_string()),
        E::InvalidSku(_) => ApiError::bad_request("invalid_sku", e.to_string()),
        E::InvalidOwner(_) => ApiError::bad_request("invalid_user", e.to_string()),
        E::Backend(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "history_backend_unavailable", "the history hot tier is unavailable; retry shortly"),
        other => ApiError::internal(other),
    }
}

/// The history state, or `history_disabled` when the server runs without history.
fn enabled(state: &AppState) -> Result<Arc<HistoryState>, ApiError> {
    state.history.clone().ok_or_else(|| ApiError::not_found("history_disabled", "browsing history is not enabled on this server"))
}

/// Authenticates, checks the scope, applies the rate limits and builds the owner.
fn admit(state: &AppState, headers: &HeaderMap, scope: Scope, app: &str, user: &str, kind: Option<&str>) -> Result<(Arc<HistoryState>, Owner), ApiError> {
    let app = app_id(app)?;
    let key = require(state, headers, scope, &app)?;
    let history = enabled(state)?;
    let owner = match kind.unwrap_or("user") {
        "user" => Owner::user(app.as_str(), user),
        "device" => Owner::device(app.as_str(), user),
        other => return Err(ApiError::bad_request("invalid_kind", format!("kind must be user or device, not {other:?}"))),
    };
    if user.is_empty() || user.len() > 128 {
        return Err(ApiError::bad_request("invalid_user", "user ids are 1 to 128 bytes"));
    }
    let user_key = format!("{}/{}", app.as_str(), user);
    if let Err((limit, wait)) = state.rate_limits.check(&key.key_id, &user_key) {
        metrics::counter!("meridian_rate_limited_total", "limit" => limit.as_str()).increment(1);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("the {} rate limit is exceeded; retry after {secs} s", limit.as_str()))
            .with_details(json!({"limit": limit.as_str()}));
        err.retry_after = Some(secs);
        return Err(err);
    }
    Ok((history, owner))
}

/// Runs a service call inline or on the blocking pool, per the hot tier.
async fn call<T: Send + 'static>(history: &Arc<HistoryState>, f: impl FnOnce(&HistoryService) -> meridian_history::Result<T> + Send + 'static) -> Result<T, ApiError> {
    if history.inline {
        f(&history.service).map_err(history_error)
    } else {
        let permit = history.blocking.clone().acquire_owned().await.map_err(ApiError::internal)?;
        let service = history.service.clone();
        let result = tokio::task::spawn_blocking(move || f(&service)).await.map_err(ApiError::internal)?;
        drop(permit);
        result.map_err(history_error)
    }
}

/// `GET /v1/apps/{app}/users/{user}/history?limit=&cursor=&kind=` (read).
pub(crate) async fn list(State(state): State<Arc<AppState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<OwnerQuery>, headers: HeaderMap) -> Result<Json<ListResponse>, ApiError> {
    let (history, owner) = admit(&state, &headers, Scope::Read, &app, &user, q.kind.as_deref())?;
    let limit = q.limit.unwrap_or(20);
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let page = call(&history, move |s| s.list(&owner, limit, cursor.as_deref())).await?;
    Ok(Json(ListResponse { items: page.items, next_cursor: page.next_cursor }))
}

/// The list route's body, serialised straight from the service's items.
#[derive(Debug, Serialize)]
pub(crate) struct ListResponse {
    items: Vec<meridian_history::Item>,
    next_cursor: Option<String>,
}

/// The count route's body.
#[derive(Debug, Serialize)]
pub(crate) struct CountResponse {
    count: usize,
}

/// `GET /v1/apps/{app}/users/{user}/history/count` (read).
pub(crate) async fn count(State(state): State<Arc<AppState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<OwnerQuery>, headers: HeaderMap) -> Result<Json<CountResponse>, ApiError> {
    let (history, owner) = admit(&state, &headers, Scope::Read, &app, &user, q.kind.as_deref())?;
    let count = call(&history, move |s| s.count(&owner)).await?;
    Ok(Json(CountResponse { count }))
}

/// `DELETE /v1/apps/{app}/users/{user}/history/{sku}` (write).
pub(crate) async fn delete_one(
    State(state): State<Arc<AppState>>,
    Path((app, user, sku)): Path<(String, String, String)>,
    Query(q): Query<OwnerQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (history, owner) = admit(&state, &headers, Scope::Write, &app, &user, q.kind.as_deref())?;
    call(&history, move |s| s.delete(&owner, &sku)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/apps/{app}/users/{user}/history` (write).
pub(crate) async fn clear(State(state): State<Arc<AppState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<OwnerQuery>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let (history, owner) = admit(&state, &headers, Scope::Write, &app, &user, q.kind.as_deref())?;
    call(&history, move |s| s.clear(&owner)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/history/rebuild` (master): rebuilds the cold tier from the log in the
/// background; reads and the processor continue. 409 if one is running.
pub(crate) async fn start_rebuild(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_master(&state, &headers)?;
    let history = enabled(&state)?;
    {
        let mut status = history.rebuild.lock();
        if status.running {
            return Err(ApiError::new(StatusCode::CONFLICT, "rebuild_running", "a rebuild is already running; follow it with GET /v1/admin/history/rebuild"));
        }
        *status = RebuildStatus { running: true, started_ms: Some(meridian_event::Timestamp::now().millis()), ..RebuildStatus::default() };
    }
    let log = state.log.clone();
    let service = history.service.clone();
    let progress_status = history.rebuild.clone();
    let config = history.service.rebuild_config(meridian_log::TopicName::new(crate::server::EVENTS_TOPIC).map_err(ApiError::internal)?);
    tokio::task::spawn_blocking(move || {
        let now = meridian_event::Timestamp::now().millis();
        let mut progress = |done: u64, total: u64| {
            let mut s = progress_status.lock();
            s.done = done;
            s.total = total;
        };
        let result = service.rebuild(&*log, &config, now, &mut progress);
        let mut s = progress_status.lock();
        s.running = false;
        s.finished_ms = Some(meridian_event::Timestamp::now().millis());
        match result {
            Ok(report) => s.report = Some(json!(report)),
            Err(e) => s.error = Some(e.to_string()),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "started"}))))
}

/// `GET /v1/admin/history/rebuild` (master): progress of the latest rebuild.
pub(crate) async fn rebuild_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_master(&state, &headers)?;
    let history = enabled(&state)?;
    let status = history.rebuild.lock().clone();
    Ok(Json(json!(status)))
}
