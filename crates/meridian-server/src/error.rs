//! The one error type of the HTTP edge: a status, a stable code, a message that says what
//! to do next, optional details. Internals are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_collector::CollectorError;
use serde_json::{json, Value};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Extra structured details.
    pub details: Option<Value>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: None, retry_after: None }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<CollectorError> for ApiError {
    fn from(e: CollectorError) -> ApiError {
        match e {
            CollectorError::EmptyBatch => ApiError::bad_request("empty_batch", e.to_string()),
            CollectorError::TooManyEvents { count, max } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", e.to_string()).with_details(json!({"count": count, "max": max}))
            }
            CollectorError::MalformedBody(_) => ApiError::bad_request("malformed_body", e.to_string()),
            CollectorError::Overloaded { retry_after_secs } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string());
                err.retry_after = Some(retry_after_secs);
                err
            }
            CollectorError::UnknownApp(_) => ApiError::not_found("unknown_app", e.to_string()),
            CollectorError::AppExists(_) => ApiError::new(StatusCode::CONFLICT, "app_exists", e.to_string()),
            CollectorError::InvalidArgument(_) => ApiError::bad_request("invalid_argument", e.to_string()),
            CollectorError::Log(_) | CollectorError::State(_) => ApiError::internal(e),
        }
    }
}

/// JSON body extraction with our error shape instead of axum's plain-text rejection.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON for this route: {e}")))
}
