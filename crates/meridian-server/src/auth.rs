//! Who is calling: `Authorization: Bearer KEY`, or HTTP basic with the key as user name
//! (how Segment libraries send their write key).

use crate::error::ApiError;
use crate::server::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use meridian_collector::{ApiKey, Scope};
use meridian_event::AppId;

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

/// Authenticates a presented secret.
pub(crate) fn authenticate_secret(state: &AppState, secret: Option<String>) -> Result<ApiKey, ApiError> {
    let secret = secret.ok_or_else(|| ApiError::unauthorized("missing API key; send 'Authorization: Bearer <key>'"))?;
    state
        .registry
        .authenticate(&secret)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_key", "unknown API key; create one with POST /v1/apps/{app}/keys"))
}

/// Authenticates the request.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    authenticate_secret(state, presented_key(headers)?)
}

/// Authenticates and checks `scope` on `app`.
pub(crate) fn require(state: &AppState, headers: &HeaderMap, scope: Scope, app: &AppId) -> Result<ApiKey, ApiError> {
    let key = authenticate(state, headers)?;
    check_scope(&key, scope, app)?;
    Ok(key)
}

/// Checks `scope` on `app` for an authenticated key.
pub(crate) fn check_scope(key: &ApiKey, scope: Scope, app: &AppId) -> Result<(), ApiError> {
    if key.allows(scope, app) {
        return Ok(());
    }
    let message = match &key.app {
        Some(own) if own != app => format!("this key belongs to app {own:?}, not {app:?}"),
        _ => format!("this key lacks the {:?} scope; create a key with it", scope.as_str()),
    };
    Err(ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", message))
}

/// Requires the master key.
pub(crate) fn require_master(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let key = authenticate(state, headers)?;
    if !key.is_master() {
        return Err(ApiError::forbidden("this route needs the master key (MERIDIAN_MASTER_KEY)"));
    }
    Ok(key)
}

/// Parses an app id from a path segment.
pub(crate) fn app_id(text: &str) -> Result<AppId, ApiError> {
    AppId::new(text).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string()))
}
