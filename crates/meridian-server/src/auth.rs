//! Who is calling and what they may do: an API key (`Authorization: Bearer KEY`, or HTTP
//! basic with the key as user name, as Segment libraries send it) or an operator's session
//! cookie, turned into a tenancy [`Principal`] and checked against a [`Permission`].

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use meridian_event::AppId;
use meridian_tenancy::{Permission, Principal};

/// Name of the operator session cookie.
pub(crate) const SESSION_COOKIE: &str = "meridian_session";

/// The secret presented in the request's `Authorization` header, if any.
pub(crate) fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::unauthorized("the basic credentials are not valid base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized("the basic credentials are not valid UTF-8"))?;
        let user = text.split(':').next().unwrap_or_default();
        return Ok(Some(user.to_owned()));
    }
    Err(ApiError::unauthorized("unsupported Authorization scheme; send 'Authorization: Bearer <key>'"))
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The session token of the request's session cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty())
}

/// Authenticates a presented API key.
pub(crate) fn principal_of_key(state: &AppState, secret: Option<String>) -> Result<Principal, ApiError> {
    let secret = secret.ok_or_else(|| ApiError::unauthorized("missing credentials; send 'Authorization: Bearer <key>' or sign in to the console"))?;
    state
        .tenancy
        .authenticate(&secret)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", "unknown API key; create one with POST /v1/apps/{app}/keys"))
}

/// Authenticates the request: its API key, else its session cookie. (Cross-site requests
/// with a cookie were already refused by [`crate::session::csrf_guard`].)
pub(crate) fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(secret) = presented_key(headers)? {
        return principal_of_key(state, Some(secret));
    }
    match session_cookie(headers) {
        Some(token) => state.tenancy.authenticate_session(token, state.tenancy.clock().now_ms()).map_err(ApiError::from),
        None => principal_of_key(state, None),
    }
}

/// Checks `permission` on `app` for an authenticated caller.
pub(crate) fn check(principal: &Principal, permission: Permission, app: &AppId) -> Result<(), ApiError> {
    if principal.allows(permission, app) {
        return Ok(());
    }
    let message = match principal {
        Principal::Key(key) if key.app.as_ref().is_some_and(|own| own != app) => format!("this key belongs to app {:?}, not {app:?}", key.app.as_ref().map(AppId::as_str).unwrap_or_default()),
        Principal::Key(_) => format!("this key lacks the {} permission; create a key with the {} scope", permission.as_str(), scope_for(permission)),
        _ => format!("you lack the {} permission on app {app:?}; ask an admin for a role that has it", permission.as_str()),
    };
    Err(ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", message))
}

fn scope_for(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "read",
        Permission::Write => "write",
        Permission::Review | Permission::Admin => "admin",
    }
}

/// Authenticates and checks `permission` on `app`.
pub(crate) fn require(state: &AppState, headers: &HeaderMap, permission: Permission, app: &AppId) -> Result<Principal, ApiError> {
    let principal = principal(state, headers)?;
    check(&principal, permission, app)?;
    Ok(principal)
}

/// Authenticates and requires the master key or a global admin (managing apps, operators
/// and the server itself).
pub(crate) fn require_global_admin(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = principal(state, headers)?;
    if !principal.allows_global(Permission::Admin) {
        return Err(ApiError::forbidden("this route needs the master key or a global admin"));
    }
    Ok(principal)
}

/// Parses an app id from a path segment.
pub(crate) fn app_id(text: &str) -> Result<AppId, ApiError> {
    AppId::new(text).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string()))
}
