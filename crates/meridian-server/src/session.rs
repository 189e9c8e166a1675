//! Operators' console sessions: sign in and out (`/v1/session`), the cookie (Secure,
//! HttpOnly, SameSite=Strict), and the guard that refuses cross-site use of it: a request
//! authenticated by the cookie that changes anything must carry the session's CSRF token
//! in `X-CSRF-Token` and must not come from another origin.

use crate::auth::{presented_key, session_cookie, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The path that creates a session (a stale cookie must not stop a new sign-in).
pub(crate) const SESSION_PATH: &str = "/v1/session";

/// Whether the request comes from another site, by the browser's own headers.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST).and_then(|v| v.to_str().ok())) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Refuses state-changing requests authenticated by a session cookie unless they carry
/// the session's CSRF token and come from this origin.
pub(crate) async fn csrf_guard(State(state): State<std::sync::Arc<AppState>>, request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = request.headers();
    let uses_cookie = !matches!(presented_key(headers), Ok(Some(_))) && session_cookie(headers).is_some();
    if safe || !uses_cookie || (request.uri().path() == SESSION_PATH && request.method() == Method::POST) {
        return next.run(request).await;
    }
    if cross_site(headers) {
        return ApiError::forbidden("cross-site request with a session cookie refused; use the console from its own origin").into_response();
    }
    let token = session_cookie(headers).unwrap_or_default();
    let presented = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match state.tenancy.session(token, state.tenancy.clock().now_ms()) {
        Ok(session) if session.csrf_matches(presented) => next.run(request).await,
        Ok(_) => ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "missing or wrong X-CSRF-Token; send the csrf_token of your session").into_response(),
        // Expired or unknown: let the handler answer 401 as for any request.
        Err(_) => next.run(request).await,
    }
}

/// The `Set-Cookie` value of a session (or of its removal, with `max_age` 0).
pub(crate) fn session_cookie_header(token: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age_secs.max(0)))
        .expect("a session token is url-safe text")
}
