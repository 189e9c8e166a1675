//! The browsing-history capability's adapter: hot tier choice (embedded or Redis), the
//! processor, list/count/delete/clear rate limited per global, caller and user, the
//! rebuild of the cold tier as a background job, and the periodic purge of expired
//! histories (a module task, `history.purge_interval_secs`).
//!
//! Where calls run: nothing that touches the state store or Redis runs on an async
//! thread. With the embedded hot tier a list or count that needs no store read (no marks,
//! a complete or full hot list, or a cached count: `HistoryService::list_in_memory`) is
//! answered inline in microseconds; every other call — reads that need the cold tier or
//! the owner's marks, deletes and clears (a commit with fsync) — goes to the blocking
//! pool, bounded so load queues asynchronously: reads and writes by semaphores of their
//! own, so a read never waits behind fsyncs. With Redis every call goes to the blocking
//! pool (network round trips), all bounded together by the connection pool's size.

use crate::auth::{app_id, require, require_global_admin};
use crate::error::ApiError;
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext, Task};
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
use meridian_history::{HistoryService, HotTierKind, Page, PROCESSOR_NAME};
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

/// Blocking calls of each kind (store reads; commits) in flight at once with the embedded
/// hot tier.
const EMBEDDED_BLOCKING_CALLS: usize = 16;

/// History's handler state.
struct HistoryState {
    app: Arc<AppState>,
    calls: HistoryCalls,
    rebuild: Arc<Mutex<RebuildStatus>>,
}

/// The service's calls, each run where it belongs (see the module docs).
#[derive(Debug, Clone)]
struct HistoryCalls {
    service: Arc<HistoryService>,
    /// The hot tier is in this process: reads that need no store are answered inline.
    in_memory_reads: bool,
    /// Bounds concurrent blocking reads, so load queues here (asynchronously) instead of
    /// growing threads and connections.
    reads: Arc<tokio::sync::Semaphore>,
    /// Bounds concurrent blocking writes (the same semaphore as `reads` with Redis).
    writes: Arc<tokio::sync::Semaphore>,
}

impl HistoryCalls {
    fn new(service: Arc<HistoryService>, in_memory_reads: bool) -> HistoryCalls {
        let (reads, writes) = if in_memory_reads {
            (Arc::new(tokio::sync::Semaphore::new(EMBEDDED_BLOCKING_CALLS)), Arc::new(tokio::sync::Semaphore::new(EMBEDDED_BLOCKING_CALLS)))
        } else {
            let shared = Arc::new(tokio::sync::Semaphore::new(meridian_history_redis::POOL_IDLE));
            (shared.clone(), shared)
        };
        HistoryCalls { service, in_memory_reads, reads, writes }
    }

    /// Runs `f` on the blocking pool once `permits` has room.
    async fn off_thread<T: Send + 'static>(
        &self,
        permits: &Arc<tokio::sync::Semaphore>,
        f: impl FnOnce(&HistoryService) -> meridian_history::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = permits.clone().acquire_owned().await.map_err(ApiError::internal)?;
        let service = self.service.clone();
        let result = tokio::task::spawn_blocking(move || f(&service)).await.map_err(ApiError::internal)?;
        drop(permit);
        result.map_err(history_error)
    }

    async fn list(&self, owner: Owner, limit: usize, cursor: Option<String>) -> Result<Page, ApiError> {
        if self.in_memory_reads {
            if let Some(page) = self.service.list_in_memory(&owner, limit, cursor.as_deref()).map_err(history_error)? {
                return Ok(page);
            }
        }
        self.off_thread(&self.reads, move |s| s.list(&owner, limit, cursor.as_deref())).await
    }

    async fn count(&self, owner: Owner) -> Result<usize, ApiError> {
        if self.in_memory_reads {
            if let Some(count) = self.service.count_in_memory(&owner).map_err(history_error)? {
                return Ok(count);
            }
        }
        self.off_thread(&self.reads, move |s| s.count(&owner)).await
    }

    async fn delete(&self, owner: Owner, sku: String) -> Result<(), ApiError> {
        self.off_thread(&self.writes, move |s| s.delete(&owner, &sku)).await
    }

    async fn clear(&self, owner: Owner) -> Result<(), ApiError> {
        self.off_thread(&self.writes, move |s| s.clear(&owner)).await
    }
}

/// The purge of expired histories, as a module task.
fn purge_task(service: Arc<HistoryService>, every: std::time::Duration) -> Task {
    Task {
        name: "history_purge",
        every,
        run: Arc::new(move || {
            let report = service.purge_expired()?;
            Ok(match report {
                r if !r.ran => "skipped: a rebuild of the cold tier is running".to_owned(),
                r if r.cold_owners + r.hot_owners > 0 => format!("purged expired histories: {} from the cold tier, {} from the hot tier", r.cold_owners, r.hot_owners),
                _ => String::new(),
            })
        }),
    }
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
        let (hot, in_memory_reads): (Arc<dyn HotTier>, bool) = match config.hot {
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
        let purge = purge_task(service.clone(), config.purge_interval());
        let state = Arc::new(HistoryState { app: ctx.state.clone(), calls: HistoryCalls::new(service, in_memory_reads), rebuild: Arc::default() });
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
            .task(purge)
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
    let page = state.calls.list(owner, limit, cursor).await?;
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
    let count = state.calls.count(owner).await?;
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
    state.calls.delete(owner, sku).await?;
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
    state.calls.clear(owner).await?;
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
    let service = state.calls.service.clone();
    let progress_status = state.rebuild.clone();
    let config = service.rebuild_config(state.app.events_topic.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_history::hot::{HotConfig, OwnerUpdate};
    use meridian_history::model::{Entry, ManualClock};
    use meridian_history::{HistoryConfig, InMemoryCatalog, SkuInfo};
    use meridian_state::{KeyValue, KvStore, MemoryStore, WriteBatch};
    use std::ops::Bound;
    use std::thread::ThreadId;

    /// A memory store that records which thread each call ran on.
    #[derive(Debug, Default)]
    struct WatchedStore {
        inner: MemoryStore,
        calls: Mutex<Vec<(&'static str, ThreadId)>>,
    }

    impl WatchedStore {
        fn note(&self, call: &'static str) {
            self.calls.lock().push((call, std::thread::current().id()));
        }

        fn calls_since(&self, from: usize) -> Vec<(&'static str, ThreadId)> {
            self.calls.lock()[from..].to_vec()
        }
    }

    impl KvStore for WatchedStore {
        fn get(&self, table: &'static str, key: &[u8]) -> meridian_state::Result<Option<Vec<u8>>> {
            self.note("get");
            self.inner.get(table, key)
        }

        fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> meridian_state::Result<Vec<KeyValue>> {
            self.note("range");
            self.inner.range(table, start, end, limit)
        }

        fn commit(&self, batch: WriteBatch) -> meridian_state::Result<()> {
            self.note("commit");
            self.inner.commit(batch)
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn store_work_runs_on_the_blocking_pool_and_reads_that_need_none_stay_inline() {
        let store = Arc::new(WatchedStore::default());
        let t = meridian_history::model::normalize_ms(meridian_event::Timestamp::now().millis());
        let hot = Arc::new(EmbeddedHotTier::new(HotConfig::default(), 1 << 20));
        let catalog = Arc::new(InMemoryCatalog::new((1..=9u64).map(|s| (s, SkuInfo { spu: s, name: format!("n{s}").into(), image: "i".into() }))));
        let service = Arc::new(HistoryService::new(HistoryConfig::default(), hot.clone(), store.clone(), catalog, Arc::new(ManualClock::new(t))).unwrap());
        // What the processor leaves for an owner's first views: a complete hot list.
        let owner = Owner::user("shop", "u1");
        hot.record(&[OwnerUpdate { owner: owner.key(), entries: vec![Entry::new(1, t - 2000), Entry::new(2, t - 1000)], complete_in: Some(0) }], t).unwrap();
        let calls = HistoryCalls::new(service, true);
        let async_thread = std::thread::current().id();

        let from = store.calls.lock().len();
        assert_eq!(calls.list(owner.clone(), 10, None).await.unwrap().items.len(), 2);
        assert_eq!(calls.count(owner.clone()).await.unwrap(), 2);
        assert_eq!(store.calls_since(from), vec![], "a complete hot list without marks needs no store at all");

        let from = store.calls.lock().len();
        calls.delete(owner.clone(), "2".into()).await.unwrap();
        assert_eq!(calls.list(owner.clone(), 10, None).await.unwrap().items.len(), 1, "the owner's marks are read now");
        assert_eq!(calls.count(owner.clone()).await.unwrap(), 1);
        calls.clear(owner.clone()).await.unwrap();
        let store_calls = store.calls_since(from);
        assert!(store_calls.iter().filter(|(c, _)| *c == "commit").count() == 2 && store_calls.iter().any(|(c, _)| *c == "get"), "{store_calls:?}");
        let on_async: Vec<_> = store_calls.iter().filter(|(_, thread)| *thread == async_thread).map(|(c, _)| *c).collect();
        assert!(on_async.is_empty(), "store calls on the async thread: {on_async:?}");
    }

    #[test]
    fn the_purge_task_frees_expired_histories() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let t = meridian_history::model::normalize_ms(meridian_event::Timestamp::now().millis());
        let clock = Arc::new(ManualClock::new(t));
        let hot = Arc::new(EmbeddedHotTier::new(HotConfig::default(), 1 << 20));
        let service = Arc::new(HistoryService::new(HistoryConfig::default(), hot, store.clone(), Arc::new(InMemoryCatalog::new([])), clock.clone()).unwrap());
        let mut batch = WriteBatch::new();
        meridian_history::ColdTier::put(&mut batch, Owner::user("shop", "gone").key(), &[Entry::new(1, t - 70 * 86_400_000)]);
        meridian_history::ColdTier::put(&mut batch, Owner::user("shop", "here").key(), &[Entry::new(1, t - 1000)]);
        store.commit(batch).unwrap();
        let task = purge_task(service, std::time::Duration::from_secs(1));
        assert_eq!(task.name, "history_purge");
        assert_eq!((task.run)().unwrap(), "purged expired histories: 1 from the cold tier, 0 from the hot tier");
        assert_eq!((task.run)().unwrap(), "", "nothing left: nothing logged");
        let left = store.range(meridian_history::cold::COLD_TABLE, Bound::Unbounded, Bound::Unbounded, 10).unwrap();
        assert_eq!(left.len(), 1);
    }
}
