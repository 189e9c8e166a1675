//! Console sign-in (`/v1/session`) and operator management (`/v1/operators`).

use crate::auth::{require_global_admin, session_cookie};
use crate::error::{parse_json, ApiError};
use crate::session::session_cookie_header;
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use crate::extract::Path;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use meridian_api::apps::Grant;
use meridian_api::operators::{CreateOperator, LoginRequest, OperatorList, OperatorView, SessionView, UpdateOperator};
use meridian_tenancy::{Operator, OperatorId, OperatorSession, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The session and operator routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(login, current, logout)).routes(routes!(create_operator, list_operators)).routes(routes!(get_operator, update_operator))
}

fn grant_views(grants: &[meridian_tenancy::Grant]) -> Vec<Grant> {
    grants.iter().map(|g| Grant { app: g.app.as_ref().map(ToString::to_string), role: g.role.as_str().to_owned() }).collect()
}

fn grants_of(grants: &[Grant]) -> Result<Vec<meridian_tenancy::Grant>, ApiError> {
    grants
        .iter()
        .map(|g| {
            let role = Role::parse(&g.role).ok_or_else(|| ApiError::bad_request("invalid_role", format!("unknown role {:?}; use viewer, operator, reviewer or admin", g.role)))?;
            let app = g.app.as_deref().map(crate::auth::app_id).transpose()?;
            Ok(meridian_tenancy::Grant { app, role })
        })
        .collect()
}

fn session_view(session: &OperatorSession) -> SessionView {
    SessionView {
        login: session.login.to_string(),
        display_name: session.display_name.clone(),
        grants: grant_views(&session.grants),
        csrf_token: session.csrf_token.as_str().to_owned(),
        expires_ms: session.expires_ms,
    }
}

fn operator_view(operator: &Operator) -> OperatorView {
    OperatorView {
        login: operator.login.to_string(),
        display_name: operator.display_name.clone(),
        grants: grant_views(&operator.grants),
        disabled: operator.disabled,
        created_ms: operator.created_ms,
    }
}

fn login_id(text: &str) -> Result<OperatorId, ApiError> {
    OperatorId::new(text).map_err(ApiError::from)
}

/// Signs an operator in: sets the session cookie (Secure, HttpOnly, SameSite=Strict) and
/// returns the CSRF token to send with state-changing requests. Attempts are rate limited
/// per login and per client.
#[utoipa::path(
    post,
    path = "/v1/session",
    tag = "apps",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = SessionView),
        (status = 401, description = "Wrong login or password", body = meridian_api::ErrorBody),
        (status = 403, description = "The operator is disabled", body = meridian_api::ErrorBody),
        (status = 429, description = "Too many attempts; retry after Retry-After seconds", body = meridian_api::ErrorBody),
    ),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn login(State(state): State<Arc<AppState>>, client: Option<Extension<ConnectInfo<SocketAddr>>>, body: Bytes) -> Result<Response, ApiError> {
    let request: LoginRequest = parse_json(&body)?;
    let client = client.map(|Extension(ConnectInfo(addr))| addr.ip().to_string()).unwrap_or_else(|| "local".into());
    let tenancy = state.tenancy.clone();
    let now = tenancy.clock().now_ms();
    let (token, session) = blocking(move || tenancy.login(&request.login, &request.password, &client, now)).await??;
    let max_age = (session.expires_ms - now) / 1000;
    let cookie = session_cookie_header(token.as_str(), max_age, state.config.server.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Json(session_view(&session))).into_response())
}

/// The signed-in operator's session (401 without one).
#[utoipa::path(
    get,
    path = "/v1/session",
    tag = "apps",
    responses((status = 200, description = "The session", body = SessionView)),
    security(("session" = [])),
    extensions(("x-permission" = json!("any"))),
)]
async fn current(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<SessionView>, ApiError> {
    // The session of the cookie, whatever other credentials the request carries.
    let token = session_cookie(&headers).ok_or_else(|| ApiError::unauthorized("no operator session; sign in with POST /v1/session"))?;
    let session = state.tenancy.session(token, state.tenancy.clock().now_ms())?;
    Ok(Json(session_view(&session)))
}

/// Signs out: ends the session and clears the cookie.
#[utoipa::path(
    delete,
    path = "/v1/session",
    tag = "apps",
    responses((status = 204, description = "Signed out")),
    security(("session" = [])),
    extensions(("x-permission" = json!("any"))),
)]
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = session_cookie(&headers).ok_or_else(|| ApiError::unauthorized("no operator session to end"))?.to_owned();
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.logout(&token)).await??;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, session_cookie_header("", 0, state.config.server.secure_cookies))]).into_response())
}

/// Creates an operator (master key or a global admin).
#[utoipa::path(
    post,
    path = "/v1/operators",
    tag = "apps",
    request_body(content = CreateOperator, content_type = "application/json"),
    responses((status = 201, description = "Created", body = OperatorView), (status = 404, description = "A grant names an unknown app", body = meridian_api::ErrorBody), (status = 409, description = "The login is taken", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn create_operator(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<OperatorView>), ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let request: CreateOperator = parse_json(&body)?;
    let login = login_id(&request.login)?;
    let grants = grants_of(&request.grants)?;
    let display_name = request.display_name.unwrap_or_else(|| request.login.clone());
    let tenancy = state.tenancy.clone();
    let operator = blocking(move || tenancy.create_operator(&principal.actor(), &login, &display_name, &request.password, &grants)).await??;
    Ok((StatusCode::CREATED, Json(operator_view(&operator))))
}

/// Every operator (master key or a global admin).
#[utoipa::path(
    get,
    path = "/v1/operators",
    tag = "apps",
    responses((status = 200, description = "Operators", body = OperatorList)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn list_operators(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<OperatorList>, ApiError> {
    require_global_admin(&state, &headers)?;
    Ok(Json(OperatorList { operators: state.tenancy.list_operators().iter().map(operator_view).collect() }))
}

/// One operator (master key or a global admin).
#[utoipa::path(
    get,
    path = "/v1/operators/{login}",
    tag = "apps",
    params(("login" = String, Path, description = "Operator login", pattern = "^[a-z0-9_.@-]{1,64}$")),
    responses((status = 200, description = "The operator", body = OperatorView), (status = 404, description = "Unknown operator", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn get_operator(State(state): State<Arc<AppState>>, Path(login): Path<String>, headers: HeaderMap) -> Result<Json<OperatorView>, ApiError> {
    require_global_admin(&state, &headers)?;
    let login = login_id(&login)?;
    let operator = state.tenancy.operator(&login).ok_or_else(|| ApiError::not_found("unknown_operator", format!("operator {login} does not exist")))?;
    Ok(Json(operator_view(&operator)))
}

/// Changes an operator: display name, roles, password, disabled (each audited; disabling
/// or a new password ends its sessions).
#[utoipa::path(
    patch,
    path = "/v1/operators/{login}",
    tag = "apps",
    params(("login" = String, Path, description = "Operator login", pattern = "^[a-z0-9_.@-]{1,64}$")),
    request_body(content = UpdateOperator, content_type = "application/json"),
    responses(
        (status = 200, description = "The operator", body = OperatorView),
        (status = 404, description = "Unknown operator, or a grant names an unknown app", body = meridian_api::ErrorBody),
        (status = 409, description = "The change would leave no enabled global admin (`last_global_admin`)", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn update_operator(State(state): State<Arc<AppState>>, Path(login): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<OperatorView>, ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let login = login_id(&login)?;
    let request: UpdateOperator = parse_json(&body)?;
    let grants = request.grants.as_deref().map(grants_of).transpose()?;
    let tenancy = state.tenancy.clone();
    let operator = blocking(move || -> Result<Operator, meridian_tenancy::Error> {
        let actor = principal.actor();
        let mut operator = tenancy.operator(&login).ok_or_else(|| meridian_tenancy::Error::UnknownOperator(login.to_string()))?;
        if let Some(name) = &request.display_name {
            operator = tenancy.set_display_name(&actor, &login, name)?;
        }
        if let Some(grants) = &grants {
            operator = tenancy.set_grants(&actor, &login, grants)?;
        }
        if let Some(password) = &request.password {
            operator = tenancy.set_password(&actor, &login, password)?;
        }
        match request.disabled {
            Some(true) if !operator.disabled => operator = tenancy.disable_operator(&actor, &login)?,
            Some(false) if operator.disabled => operator = tenancy.enable_operator(&actor, &login)?,
            _ => {}
        }
        Ok(operator)
    })
    .await??;
    Ok(Json(operator_view(&operator)))
}
