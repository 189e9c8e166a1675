//! Collect routes: `POST /v1/events` and the Segment-compatible `/v1/batch`, `/v1/track`,
//! `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/group`, `/v1/alias`.

use crate::auth::{authenticate_secret, check_scope, presented_key};
use crate::error::ApiError;
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use http_body_util::BodyExt;
use meridian_collector::split::Framing;
use meridian_collector::{ApiKey, BodyFormat, IngestReport, Scope};
use meridian_event::AppId;
use serde::Deserialize;
use std::io::Read;
use std::sync::Arc;

/// Reads the body within the wire limit and gunzips it within the decompressed limit.
pub(crate) async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let max = state.config.max_body_bytes;
    let limited = http_body_util::Limited::new(body, max);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body exceeds {max} bytes; send smaller batches")));
        }
        Err(e) => return Err(ApiError::bad_request("body_read_failed", format!("could not read the request body: {e}"))),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(bytes),
        "gzip" | "x-gzip" => {
            let limit = state.config.max_decompressed_bytes;
            let mut out = Vec::with_capacity(bytes.len() * 4);
            let read = flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request("invalid_gzip", format!("the body is not valid gzip: {e}")))?;
            if read > limit {
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("decompressed body exceeds {limit} bytes; send smaller batches")));
            }
            Ok(Bytes::from(out))
        }
        other => Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", format!("content encoding {other:?} is not supported; use gzip or none"))),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// App, for callers using the master key.
    app: Option<String>,
}

fn target_app(key: &ApiKey, query_app: Option<&str>) -> Result<AppId, ApiError> {
    match (&key.app, query_app) {
        (Some(own), None) => Ok(own.clone()),
        (Some(own), Some(asked)) if asked == own.as_str() => Ok(own.clone()),
        (Some(own), Some(asked)) => Err(ApiError::forbidden(format!("this key belongs to app {own:?}, not {asked:?}"))),
        (None, Some(asked)) => crate::auth::app_id(asked),
        (None, None) => Err(ApiError::bad_request("missing_app", "the master key must name the app: add ?app=<app>")),
    }
}

async fn ingest(state: &AppState, key: ApiKey, app: AppId, body: &[u8], format: BodyFormat) -> Result<Json<IngestReport>, ApiError> {
    check_scope(&key, Scope::Write, &app)?;
    if !state.registry.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}; create it with POST /v1/apps", app.as_str())));
    }
    Ok(Json(state.collector.ingest(&app, body, format).await?))
}

/// `POST /v1/events`: a JSON array, one object, or NDJSON; gzip accepted.
pub(crate) async fn post_events(State(state): State<Arc<AppState>>, Query(query): Query<EventsQuery>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
    let key = authenticate_secret(&state, presented_key(&headers)?)?;
    let app = target_app(&key, query.app.as_deref())?;
    let body = read_body(&state, &headers, body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let framing = if content_type.contains("ndjson") || content_type.contains("jsonlines") { Framing::Ndjson } else { Framing::Auto };
    ingest(&state, key, app, &body, BodyFormat::Events(framing)).await
}

/// Authenticates a Segment request: basic auth (write key as user), bearer, or the
/// body's `writeKey`.
async fn segment_key(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<ApiKey, ApiError> {
    let mut secret = presented_key(headers)?;
    if secret.is_none() {
        secret = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("writeKey").and_then(|k| k.as_str()).map(str::to_owned));
    }
    authenticate_secret(state, secret)
}

async fn segment(state: Arc<AppState>, headers: HeaderMap, body: Body, format: BodyFormat) -> Result<Json<IngestReport>, ApiError> {
    let body = read_body(&state, &headers, body).await?;
    let key = segment_key(&state, &headers, &body).await?;
    let app = target_app(&key, None)?;
    ingest(&state, key, app, &body, format).await
}

/// `POST /v1/batch` (Segment).
pub(crate) async fn segment_batch(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
    segment(state, headers, body, BodyFormat::SegmentBatch).await
}

macro_rules! segment_route {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("`POST /v1/", $kind, "` (Segment).")]
        pub(crate) async fn $name(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
            segment(state, headers, body, BodyFormat::SegmentMessage($kind)).await
        }
    };
}

segment_route!(segment_track, "track");
segment_route!(segment_page, "page");
segment_route!(segment_screen, "screen");
segment_route!(segment_identify, "identify");
segment_route!(segment_group, "group");
segment_route!(segment_alias, "alias");
