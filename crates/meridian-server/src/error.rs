//! The one error type of the HTTP edge: a status, a stable code, a message that says what
//! to do next, optional details. Internals are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_api::{ErrorBody, ErrorDetail};
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

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
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

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    /// The body this error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message.clone(), details: self.details.clone() } }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
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
            CollectorError::Overloaded { retry_after_secs } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string()).retry_after(retry_after_secs),
            CollectorError::InvalidArgument(_) => ApiError::bad_request("invalid_argument", e.to_string()),
            CollectorError::Log(_) | CollectorError::State(_) => ApiError::internal(e),
        }
    }
}

impl From<meridian_tenancy::Error> for ApiError {
    fn from(e: meridian_tenancy::Error) -> ApiError {
        use meridian_tenancy::Error as E;
        match e {
            E::InvalidTimeZone(_) => ApiError::bad_request("invalid_time_zone", e.to_string()),
            E::InvalidArgument(_) => ApiError::bad_request("invalid_argument", e.to_string()),
            E::InvalidLogin(_) => ApiError::bad_request("invalid_login", e.to_string()),
            E::WeakPassword { .. } => ApiError::bad_request("weak_password", e.to_string()),
            E::InvalidCursor(_) => ApiError::bad_request("invalid_cursor", e.to_string()),
            E::AppExists(_) => ApiError::conflict("app_exists", e.to_string()),
            E::OperatorExists(_) => ApiError::conflict("operator_exists", e.to_string()),
            E::LastGlobalAdmin(_) => ApiError::conflict("last_global_admin", e.to_string()),
            E::UnknownApp(_) => ApiError::not_found("unknown_app", e.to_string()),
            E::UnknownKey { .. } => ApiError::not_found("unknown_key", e.to_string()),
            E::UnknownOperator(_) => ApiError::not_found("unknown_operator", e.to_string()),
            E::InvalidCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", e.to_string()),
            E::UnknownSession => ApiError::new(StatusCode::UNAUTHORIZED, "unknown_session", e.to_string()),
            E::SessionExpired => ApiError::new(StatusCode::UNAUTHORIZED, "session_expired", e.to_string()),
            E::OperatorDisabled => ApiError::new(StatusCode::FORBIDDEN, "operator_disabled", e.to_string()),
            E::Forbidden { .. } => ApiError::forbidden(e.to_string()),
            E::RateLimited { retry_after_secs } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()).retry_after(retry_after_secs),
            E::InvalidConfig { .. } | E::CorruptRecord { .. } | E::PasswordHash(_) | E::State(_) => ApiError::internal(e),
        }
    }
}

/// JSON body extraction with our error shape instead of axum's plain-text rejection.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON for this route: {e}")))
}
