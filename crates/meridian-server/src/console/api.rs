//! Capability pages read their data through the capability's own JSON routes, in process:
//! a request with the operator's session cookie sent straight to the router (no socket),
//! so a page shows exactly what the API answers that operator, with the same checks.

use crate::auth::SESSION_COOKIE;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use meridian_api::ErrorBody;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// Why an in-process API call gave no value: the API's own status, code and message
/// (which says what to do), shown on the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub(crate) struct ApiFailure {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The stable error code.
    pub(crate) code: String,
    /// The message.
    pub(crate) message: String,
}

impl ApiFailure {
    fn internal(message: impl Into<String>) -> ApiFailure {
        ApiFailure { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal".into(), message: message.into() }
    }
}

/// `GET path` as the operator of `session_token`; the JSON answer as `T`.
pub(crate) async fn get<T: DeserializeOwned>(router: &Router, session_token: &str, path: &str) -> Result<T, ApiFailure> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={session_token}"))
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .map_err(|e| ApiFailure::internal(format!("cannot build the request for {path}: {e}")))?;
    let response = router.clone().oneshot(request).await.map_err(|e| ApiFailure::internal(e.to_string()))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| ApiFailure::internal(e.to_string()))?.to_bytes();
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| ApiFailure::internal(format!("unexpected answer from {path}: {e}")));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ApiFailure { status, code: body.error.code, message: body.error.message }),
        Err(_) => Err(ApiFailure { status, code: "internal".into(), message: format!("{path} answered {status}") }),
    }
}

/// What [`encode`] escapes: everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub(crate) fn encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// Decodes a percent-encoded query value (`+` is a space); `None` when it is not UTF-8.
pub(crate) fn decode(text: &str) -> Option<String> {
    percent_decode_str(&text.replace('+', " ")).decode_utf8().ok().map(|s| s.into_owned())
}

/// The query's pairs, decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for text in ["plain", "a b&c=d/é", "100%", "/console/apps/demo/users?user=u 1", ""] {
            assert_eq!(decode(&encode(text)).unwrap(), text);
        }
        assert_eq!(decode("a+b%2").unwrap(), "a b%2");
        assert_eq!(query_pairs(Some("a=1&b=x%20y&c")), vec![("a".into(), "1".into()), ("b".into(), "x y".into()), ("c".into(), String::new())]);
    }
}
