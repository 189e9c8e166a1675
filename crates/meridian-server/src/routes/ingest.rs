//! Collect routes: `POST /v1/events` and the Segment-compatible `/v1/batch`, `/v1/track`,
//! `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/group`, `/v1/alias`.

use crate::auth::{check, presented_key, principal_of_key};
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use crate::extract::Query;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use http_body_util::BodyExt;
use meridian_api::events::{EventsBody, IngestReport, SegmentBatch, SegmentMessage};
use meridian_collector::split::Framing;
use meridian_collector::BodyFormat;
use meridian_event::AppId;
use meridian_tenancy::{Permission, Principal};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The collect routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(post_events))
        .routes(routes!(segment_batch))
        .routes(routes!(segment_track))
        .routes(routes!(segment_page))
        .routes(routes!(segment_screen))
        .routes(routes!(segment_identify))
        .routes(routes!(segment_group))
        .routes(routes!(segment_alias))
}

/// Gzip bodies up to this size (compressed) are decompressed on the request's thread.
const INLINE_GZIP_BYTES: usize = 32 << 10;

/// Reads the body within the wire limit and gunzips it within the decompressed limit.
pub(crate) async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let max = state.config.server.max_body_bytes;
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
            let limit = state.config.server.max_decompressed_bytes;
            // A small body decompresses in microseconds; a large one (up to the decompressed
            // limit) is milliseconds of CPU: that goes off the async threads.
            let small = bytes.len() <= INLINE_GZIP_BYTES;
            let decompress = move || meridian_collector::body::decompress(&bytes, limit);
            let decompressed = if small { decompress() } else { tokio::task::spawn_blocking(decompress).await.map_err(ApiError::internal)? };
            decompressed.map_err(|e| match e {
                meridian_collector::body::BodyError::TooLarge { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("decompressed body exceeds {limit} bytes; send smaller batches"))
                }
                other => ApiError::bad_request("invalid_gzip", format!("the body is not valid gzip: {other}")),
            })
        }
        other => Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", format!("content encoding {other:?} is not supported; use gzip or none"))),
    }
}

/// Which app a request with the master key writes to.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// App, for callers using the master key (a key's own app otherwise).
    app: Option<String>,
}

pub(crate) fn target_app(principal: &Principal, query_app: Option<&str>) -> Result<AppId, ApiError> {
    let own = match principal {
        Principal::Key(key) => key.app.clone(),
        _ => None,
    };
    match (own, query_app) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(asked)) if asked == own.as_str() => Ok(own),
        (Some(own), Some(asked)) => Err(ApiError::forbidden(format!("this key belongs to app {:?}, not {asked:?}", own.as_str()))),
        (None, Some(asked)) => crate::auth::app_id(asked),
        (None, None) => Err(ApiError::bad_request("missing_app", "without an app key, name the app: add ?app=<app>")),
    }
}

/// Whether `principal` may write events to `app`, and the app exists.
pub(crate) fn check_write(state: &AppState, principal: &Principal, app: &AppId) -> Result<(), ApiError> {
    check(principal, Permission::Write, app)?;
    if !state.tenancy.app_exists(app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}; create it with POST /v1/apps", app.as_str())));
    }
    Ok(())
}

async fn ingest(state: &AppState, principal: Principal, app: AppId, body: &[u8], format: BodyFormat) -> Result<Json<IngestReport>, ApiError> {
    check_write(state, &principal, &app)?;
    Ok(Json(state.collector.ingest(&app, body, format).await?))
}

/// Sends behaviour events: a JSON array, one object, or NDJSON (`Content-Type:
/// application/x-ndjson`); gzip accepted. Every event gets its own outcome; valid events
/// are stored even when others are rejected. Acknowledged only once durable.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "collect",
    params(EventsQuery),
    request_body(content = EventsBody, description = "Events", content_type = "application/json"),
    responses(
        (status = 200, description = "A report per event", body = IngestReport),
        (status = 404, description = "Unknown app", body = meridian_api::ErrorBody),
        (status = 413, description = "Too large", body = meridian_api::ErrorBody),
        (status = 415, description = "Unsupported content encoding", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("write"))),
)]
async fn post_events(State(state): State<Arc<AppState>>, Query(query): Query<EventsQuery>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
    let principal = crate::auth::principal(&state, &headers)?;
    let app = target_app(&principal, query.app.as_deref())?;
    let body = read_body(&state, &headers, body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let framing = if content_type.contains("ndjson") || content_type.contains("jsonlines") { Framing::Ndjson } else { Framing::Auto };
    ingest(&state, principal, app, &body, BodyFormat::Events(framing)).await
}

/// Authenticates a Segment request: basic auth (write key as user), bearer, or the
/// body's `writeKey`.
fn segment_principal(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Principal, ApiError> {
    let mut secret = presented_key(headers)?;
    if secret.is_none() {
        secret = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("writeKey").and_then(|k| k.as_str()).map(str::to_owned));
    }
    principal_of_key(state, secret)
}

async fn segment(state: Arc<AppState>, headers: HeaderMap, body: Body, format: BodyFormat) -> Result<Json<IngestReport>, ApiError> {
    let body = read_body(&state, &headers, body).await?;
    let principal = segment_principal(&state, &headers, &body)?;
    let app = target_app(&principal, None)?;
    ingest(&state, principal, app, &body, format).await
}

/// Segment-compatible batch: point a Segment library at Meridian with a write key.
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "collect",
    request_body(content = SegmentBatch, content_type = "application/json"),
    responses((status = 200, description = "A report per message", body = IngestReport), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody), (status = 413, description = "Too large", body = meridian_api::ErrorBody), (status = 415, description = "Unsupported content encoding", body = meridian_api::ErrorBody)),
    security(("basic" = []), ("bearer" = [])),
    extensions(("x-permission" = json!("write"))),
)]
async fn segment_batch(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
    segment(state, headers, body, BodyFormat::SegmentBatch).await
}

macro_rules! segment_route {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("Segment-compatible `", $kind, "` message.")]
        #[utoipa::path(
            post,
            path = concat!("/v1/", $kind),
            tag = "collect",
            description = concat!("Segment-compatible `", $kind, "` message: point a Segment library at Meridian with a write key."),
            request_body(content = SegmentMessage, content_type = "application/json"),
            responses((status = 200, description = "A report of the message", body = IngestReport), (status = 404, description = "Unknown app", body = meridian_api::ErrorBody), (status = 413, description = "Too large", body = meridian_api::ErrorBody), (status = 415, description = "Unsupported content encoding", body = meridian_api::ErrorBody)),
            security(("basic" = []), ("bearer" = [])),
            extensions(("x-permission" = json!("write"))),
        )]
        async fn $name(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Json<IngestReport>, ApiError> {
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
