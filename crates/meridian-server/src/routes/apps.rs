//! Apps, API keys, who the caller is, and the audit log.

use crate::auth::{app_id, check, principal, require, require_global_admin};
use crate::error::{parse_json, ApiError};
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meridian_api::apps::{App, AppList, CreateApp, CreateKey, CreatedKey, Grant, KeyInfo, KeyList, Scope, UpdateApp, Whoami};
use meridian_api::audit::{AuditEntry, AuditPage};
use meridian_tenancy::{Actor, ApiKey, AppRecord, AuditCursor, AuditFilter, Permission, Principal};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The app, key, whoami and audit routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create_app, list_apps))
        .routes(routes!(get_app, update_app))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(whoami))
        .routes(routes!(audit))
        .routes(routes!(app_audit))
}

pub(crate) fn app_view(record: &AppRecord) -> App {
    App { id: record.id.to_string(), created_ms: record.created_ms, time_zone: record.time_zone.as_str().to_owned() }
}

fn scope_view(scope: meridian_tenancy::Scope) -> Scope {
    match scope {
        meridian_tenancy::Scope::Write => Scope::Write,
        meridian_tenancy::Scope::Read => Scope::Read,
        meridian_tenancy::Scope::Admin => Scope::Admin,
    }
}

fn scope_of(scope: Scope) -> meridian_tenancy::Scope {
    match scope {
        Scope::Write => meridian_tenancy::Scope::Write,
        Scope::Read => meridian_tenancy::Scope::Read,
        Scope::Admin => meridian_tenancy::Scope::Admin,
    }
}

fn key_view(key: &ApiKey) -> KeyInfo {
    KeyInfo {
        key_id: key.key_id.clone(),
        app: key.app.as_ref().map(ToString::to_string).unwrap_or_default(),
        scopes: key.scopes.iter().copied().map(scope_view).collect(),
        created_ms: key.created_ms,
    }
}

/// Creates an app (master key or a global admin).
#[utoipa::path(
    post,
    path = "/v1/apps",
    tag = "apps",
    request_body(content = CreateApp, content_type = "application/json"),
    responses((status = 201, description = "Created", body = App), (status = 409, description = "It exists", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn create_app(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<App>), ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let request: CreateApp = parse_json(&body)?;
    let app = app_id(&request.id)?;
    let tenancy = state.tenancy.clone();
    let record = blocking(move || tenancy.create_app(&principal.actor(), &app, request.time_zone.as_deref())).await??;
    Ok((StatusCode::CREATED, Json(app_view(&record))))
}

/// The apps the caller can see (every app for the master key and global roles).
#[utoipa::path(
    get,
    path = "/v1/apps",
    tag = "apps",
    responses((status = 200, description = "Apps", body = AppList)),
    extensions(("x-permission" = json!("any"))),
)]
async fn list_apps(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<AppList>, ApiError> {
    let principal = principal(&state, &headers)?;
    let apps = principal.apps_visible(&state.tenancy.apps());
    Ok(Json(AppList { apps: apps.iter().map(app_view).collect() }))
}

fn known_app(state: &AppState, app: &meridian_event::AppId) -> Result<AppRecord, ApiError> {
    state.tenancy.app(app).ok_or_else(|| ApiError::not_found("unknown_app", format!("unknown app {:?}; create it with POST /v1/apps", app.as_str())))
}

/// One app.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The app", body = App), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn get_app(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<App>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Permission::Read, &app)?;
    Ok(Json(app_view(&known_app(&state, &app)?)))
}

/// Changes an app's time zone (its days and hours are counted in it from then on).
#[utoipa::path(
    patch,
    path = "/v1/apps/{app}",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = UpdateApp, content_type = "application/json"),
    responses((status = 200, description = "The app", body = App), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn update_app(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<App>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    let request: UpdateApp = parse_json(&body)?;
    let tenancy = state.tenancy.clone();
    let record = blocking(move || tenancy.update_app(&principal.actor(), &app, &request.time_zone)).await??;
    Ok(Json(app_view(&record)))
}

/// Creates an API key for the app; its secret is shown only in this answer.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/keys",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = CreateKey, content_type = "application/json"),
    responses((status = 201, description = "Created", body = CreatedKey), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn create_key(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    let request: CreateKey = parse_json(&body).map_err(|e| {
        if e.message.contains("unknown variant") {
            ApiError::bad_request("invalid_scope", format!("unknown scope; use write, read or admin ({})", e.message))
        } else {
            e
        }
    })?;
    let scopes: Vec<_> = request.scopes.iter().copied().map(scope_of).collect();
    let tenancy = state.tenancy.clone();
    let (secret, record) = blocking(move || tenancy.create_key(&principal.actor(), &app, &scopes)).await??;
    let view = key_view(&record);
    Ok((StatusCode::CREATED, Json(CreatedKey { key: secret, key_id: view.key_id, app: view.app, scopes: view.scopes })))
}

/// The app's keys (ids and scopes, never secrets).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/keys",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "Keys", body = KeyList), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn list_keys(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<KeyList>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Permission::Admin, &app)?;
    known_app(&state, &app)?;
    Ok(Json(KeyList { keys: state.tenancy.list_keys(&app).iter().map(key_view).collect() }))
}

/// Revokes a key: it stops authenticating at once.
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/keys/{key_id}",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("key_id" = String, Path, description = "The key's public id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "Unknown app or key", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn revoke_key(State(state): State<Arc<AppState>>, Path((app, key_id)): Path<(String, String)>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.revoke_key(&principal.actor(), &app, &key_id)).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the presented credentials are and what they may do (the console asks it).
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "apps",
    responses((status = 200, description = "The caller", body = Whoami)),
    extensions(("x-permission" = json!("any"))),
)]
async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Whoami>, ApiError> {
    let principal = principal(&state, &headers)?;
    let apps = principal.apps_visible(&state.tenancy.apps()).into_iter().map(|a| a.id.to_string()).collect();
    let whoami = match &principal {
        Principal::Master => Whoami { kind: "master".into(), id: "master".into(), master: true, scopes: vec![Scope::Write, Scope::Read, Scope::Admin], grants: vec![], apps },
        Principal::Key(key) => Whoami { kind: "key".into(), id: key.key_id.clone(), master: false, scopes: key.scopes.iter().copied().map(scope_view).collect(), grants: vec![], apps },
        Principal::Operator(session) => Whoami {
            kind: "operator".into(),
            id: session.login.to_string(),
            master: false,
            scopes: vec![],
            grants: session.grants.iter().map(|g| Grant { app: g.app.as_ref().map(ToString::to_string), role: g.role.as_str().to_owned() }).collect(),
            apps,
        },
    };
    Ok(Json(whoami))
}

/// Filters of an audit query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this actor's entries (`master`, `key:<id>`, `operator:<login>`, `system`).
    actor: Option<String>,
    /// Only actions starting with this (`key.`, `user.erase`…).
    action: Option<String>,
    /// Only entries at or after this time, ms since the epoch.
    from_ms: Option<i64>,
    /// Only entries before this time, ms since the epoch.
    to_ms: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Entries per page, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn parse_actor(text: &str) -> Result<Actor, ApiError> {
    let bad = || ApiError::bad_request("invalid_actor", format!("actor {text:?} is not master, system, key:<id> or operator:<login>"));
    Ok(match text {
        "master" => Actor::Master,
        "system" => Actor::System,
        _ => match text.split_once(':') {
            Some(("key", id)) if !id.is_empty() => Actor::Key { key_id: id.to_owned(), app: None },
            Some(("operator", login)) => Actor::Operator { login: meridian_tenancy::OperatorId::new(login).map_err(|_| bad())? },
            _ => return Err(bad()),
        },
    })
}

async fn query_audit(state: &AppState, app: Option<meridian_event::AppId>, q: AuditQuery) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 1000"));
    }
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<AuditCursor>()?),
        None => None,
    };
    let filter = AuditFilter { app, actor: q.actor.as_deref().map(parse_actor).transpose()?, action_prefix: q.action, from_ms: q.from_ms, to_ms: q.to_ms };
    let tenancy = state.tenancy.clone();
    let page = blocking(move || tenancy.audit().query(&filter, cursor, limit)).await??;
    let entries = page
        .entries
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id.0,
            time_ms: e.time_ms,
            actor: e.actor.to_string(),
            app: e.app.map(|a| a.to_string()),
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        })
        .collect();
    Ok(Json(AuditPage { entries, next_cursor: page.next_cursor.map(|c| c.to_string()) }))
}

/// The whole audit log, newest first (master key or a global admin).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "apps",
    params(AuditQuery),
    responses((status = 200, description = "Entries", body = AuditPage)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn audit(State(state): State<Arc<AppState>>, Query(q): Query<AuditQuery>, headers: HeaderMap) -> Result<Json<AuditPage>, ApiError> {
    require_global_admin(&state, &headers)?;
    query_audit(&state, None, q).await
}

/// An app's audit log, newest first.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/audit",
    tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), AuditQuery),
    responses((status = 200, description = "Entries", body = AuditPage)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn app_audit(State(state): State<Arc<AppState>>, Path(app): Path<String>, Query(q): Query<AuditQuery>, headers: HeaderMap) -> Result<Json<AuditPage>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    check(&principal, Permission::Admin, &app)?;
    query_audit(&state, Some(app), q).await
}
