//! The browsing-history capability's adapter: hot tier choice (embedded or Redis), the
//! processor, list/count/delete/clear rate limited per global, caller and user, and the
//! rebuild of the cold tier as a background job.

use crate::auth::{app_id, require, require_global_admin};
use crate::error::ApiError;
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext};
use crate::state::AppState;
use anyhow::Context as _;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meridian_api::history::{HistoryCount, HistoryItem, HistoryPage, RebuildReport, RebuildStatus};
use meridian_history::hot::embedded::EmbeddedHotTier;
use meridian_history::hot::HotTier;
use meridian_history::model::{Owner, SystemClock};
use meridian_history::{HistoryService, HotTierKind, PROCESSOR_NAME};
use meridian_tenancy::Permission;
use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The history capability.
#[derive(Debug)]
pub(crate) struct History;

/// History's handler state.
struct HistoryState {
    app: Arc<AppState>,
    service: Arc<HistoryService>,
    /// Whether calls stay on the async thread (embedded hot tier: microseconds, no I/O) or
    /// move to the blocking pool (Redis: network round trips).
    inline: bool,
    /// Bounds concurrent blocking calls to the pool size of a networked hot tier, so load
    /// queues here (asynchronously) instead of growing threads and connections.
    blocking: Arc<tokio::sync::Semaphore>,
    rebuild: Arc<Mutex<RebuildStatus>>,
}

impl Capability for History {
    fn name(&self) -> &'static str {
        "history"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = &ctx.config().history;
        if !config.enabled {
            return Ok(None);
        }
        let (hot, inline): (Arc<dyn HotTier>, bool) = match config.hot {
            HotTierKind::Embedded => (Arc::new(EmbeddedHotTier::new(config.hot_config(), config.memory_budget_bytes())), true),
            HotTierKind::Redis => (
                Arc::new(
                    meridian_history_redis::RedisHotTier::connect(&config.redis_url, &config.redis_prefix, config.hot_config())
                        .with_context(|| format!("cannot connect to the history hot tier at {}", config.redis_url))?,
                ),
                false,
            ),
        };
        let service = Arc::new(HistoryService::new(config.clone(), hot, ctx.store()?, ctx.catalog().clone(), Arc::new(SystemClock))?);
        let processor = service.processor(ctx.state.events_topic.clone());
        let state = Arc::new(HistoryState {
            app: ctx.state.clone(),
            service,
            inline,
            blocking: Arc::new(tokio::sync::Semaphore::new(meridian_history_redis::POOL_IDLE)),
            rebuild: Arc::default(),
        });
        let routes = OpenApiRouter::new()
            .routes(routes!(list, clear))
            .routes(routes!(count))
            .routes(routes!(delete_one))
            .routes(routes!(start_rebuild, rebuild_status))
            .with_state(state);
        let module = ModuleBuilder::new("history")
            .processor(Box::new(processor))
            .routes(routes)
            .console(crate::console::history::section(ctx))
            .erasure(Erasure::ByProcessors(vec![PROCESSOR_NAME.to_owned()]))
            .build()?;
        Ok(Some(module))
    }
}

/// Whose history: a logged-in user (default) or an anonymous device.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OwnerQuery {
    /// `user` (default) or `device`.
    #[param(pattern = "^(user|device)$")]
    kind: Option<String>,
}

/// Paging of a history list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `user` (default) or `device`.
    #[param(pattern = "^(user|device)$")]
    kind: Option<String>,
    /// Items per page, 1..=N (default 20).
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
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

/// Authenticates, checks the permission, applies the rate limits and builds the owner.
fn admit(state: &HistoryState, headers: &HeaderMap, permission: Permission, app: &str, user: &str, kind: Option<&str>) -> Result<Owner, ApiError> {
    let app = app_id(app)?;
    let principal = require(&state.app, headers, permission, &app)?;
    let owner = match kind.unwrap_or("user") {
        "user" => Owner::user(app.as_str(), user),
        "device" => Owner::device(app.as_str(), user),
        other => return Err(ApiError::bad_request("invalid_kind", format!("kind must be user or device, not {other:?}"))),
    };
    if user.is_empty() || user.len() > 128 {
        return Err(ApiError::bad_request("invalid_user", "user ids are 1 to 128 bytes"));
    }
    let user_key = format!("{}/{}", app.as_str(), user);
    let caller = principal.actor().to_string();
    if let Err((limit, wait)) = state.app.rate_limits.check(&caller, &user_key) {
        metrics::counter!("meridian_rate_limited_total", "limit" => limit.as_str()).increment(1);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("the {} rate limit is exceeded; retry after {secs} s", limit.as_str()))
            .with_details(serde_json::json!({"limit": limit.as_str()}))
            .retry_after(secs));
    }
    Ok(owner)
}

/// Runs a service call inline or on the blocking pool, per the hot tier.
async fn call<T: Send + 'static>(state: &HistoryState, f: impl FnOnce(&HistoryService) -> meridian_history::Result<T> + Send + 'static) -> Result<T, ApiError> {
    if state.inline {
        f(&state.service).map_err(history_error)
    } else {
        let permit = state.blocking.clone().acquire_owned().await.map_err(ApiError::internal)?;
        let service = state.service.clone();
        let result = tokio::task::spawn_blocking(move || f(&service)).await.map_err(ApiError::internal)?;
        drop(permit);
        result.map_err(history_error)
    }
}

/// Recently viewed items, newest first, one per SPU, with names and images from the catalog.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/users/{user}/history",
    tag = "history",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User (or device) id, 1-128 bytes", min_length = 1, max_length = 128), ListQuery),
    responses((status = 200, description = "A page of history", body = HistoryPage)),
    extensions(("x-permission" = json!("read"))),
)]
async fn list(State(state): State<Arc<HistoryState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<ListQuery>, headers: HeaderMap) -> Result<Json<HistoryPage>, ApiError> {
    let owner = admit(&state, &headers, Permission::Read, &app, &user, q.kind.as_deref())?;
    let limit = q.limit.unwrap_or(20);
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let page = call(&state, move |s| s.list(&owner, limit, cursor.as_deref())).await?;
    let items = page.items.into_iter().map(|i| HistoryItem { sku: i.sku, spu: i.spu, name: i.name, image: i.image, viewed_ms: i.viewed_ms }).collect();
    Ok(Json(HistoryPage { items, next_cursor: page.next_cursor }))
}

/// The number of items a full list would show: min(distinct SPUs after deletions, N), cached.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/users/{user}/history/count",
    tag = "history",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User (or device) id", min_length = 1, max_length = 128), OwnerQuery),
    responses((status = 200, description = "The count", body = HistoryCount)),
    extensions(("x-permission" = json!("read"))),
)]
async fn count(State(state): State<Arc<HistoryState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<OwnerQuery>, headers: HeaderMap) -> Result<Json<HistoryCount>, ApiError> {
    let owner = admit(&state, &headers, Permission::Read, &app, &user, q.kind.as_deref())?;
    let count = call(&state, move |s| s.count(&owner)).await?;
    Ok(Json(HistoryCount { count }))
}

/// Deletes one SKU from the history; it stays hidden in every tier, also after a rebuild.
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/users/{user}/history/{sku}",
    tag = "history",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User (or device) id", min_length = 1, max_length = 128), ("sku" = String, Path, description = "SKU id (a decimal integer)", pattern = "^[0-9]{1,20}$"), OwnerQuery),
    responses((status = 204, description = "Deleted (also when it was not there)")),
    extensions(("x-permission" = json!("write"))),
)]
async fn delete_one(
    State(state): State<Arc<HistoryState>>,
    Path((app, user, sku)): Path<(String, String, String)>,
    Query(q): Query<OwnerQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let owner = admit(&state, &headers, Permission::Write, &app, &user, q.kind.as_deref())?;
    call(&state, move |s| s.delete(&owner, &sku)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clears the whole history (everything viewed until now stays hidden, also after a rebuild).
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/users/{user}/history",
    tag = "history",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User (or device) id", min_length = 1, max_length = 128), OwnerQuery),
    responses((status = 204, description = "Cleared")),
    extensions(("x-permission" = json!("write"))),
)]
async fn clear(State(state): State<Arc<HistoryState>>, Path((app, user)): Path<(String, String)>, Query(q): Query<OwnerQuery>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let owner = admit(&state, &headers, Permission::Write, &app, &user, q.kind.as_deref())?;
    call(&state, move |s| s.clear(&owner)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rebuilds the cold tier from the log in the background (reads and the processor go on);
/// follow it with `GET` on the same path.
#[utoipa::path(
    post,
    path = "/v1/admin/history/rebuild",
    tag = "history",
    responses((status = 202, description = "Started", body = RebuildStatus), (status = 409, description = "One is running", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn start_rebuild(State(state): State<Arc<HistoryState>>, headers: HeaderMap) -> Result<(StatusCode, Json<RebuildStatus>), ApiError> {
    require_global_admin(&state.app, &headers)?;
    let started = {
        let mut status = state.rebuild.lock();
        if status.running {
            return Err(ApiError::conflict("rebuild_running", "a rebuild is already running; follow it with GET /v1/admin/history/rebuild"));
        }
        *status = RebuildStatus { running: true, started_ms: Some(meridian_event::Timestamp::now().millis()), ..RebuildStatus::default() };
        status.clone()
    };
    let log = state.app.log.clone();
    let service = state.service.clone();
    let progress_status = state.rebuild.clone();
    let config = state.service.rebuild_config(state.app.events_topic.clone());
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
            Ok(r) => s.report = Some(RebuildReport { records: r.records, views: r.views, owners: r.owners, entries: r.entries, hidden: r.hidden }),
            Err(e) => s.error = Some(e.to_string()),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Progress and outcome of the latest rebuild of the cold tier.
#[utoipa::path(
    get,
    path = "/v1/admin/history/rebuild",
    tag = "history",
    responses((status = 200, description = "Progress", body = RebuildStatus)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn rebuild_status(State(state): State<Arc<HistoryState>>, headers: HeaderMap) -> Result<Json<RebuildStatus>, ApiError> {
    require_global_admin(&state.app, &headers)?;
    Ok(Json(state.rebuild.lock().clone()))
}
