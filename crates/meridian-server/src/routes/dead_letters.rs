//! Dead letters: listing an app's invalid events with their reasons, and replaying them
//! through the current pipeline after a fix.

use crate::auth::{app_id, require};
use crate::error::ApiError;
use crate::state::{blocking, AppState};
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use meridian_api::dead_letters::{DeadLetter, DeadLetterPage, ReplayReport};
use meridian_tenancy::{NewAuditEntry, Permission};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The dead-letter routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(dead_letters)).routes(routes!(replay_dead_letters))
}

/// Paging of the dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Dead letters per page, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// An app's invalid events with their reasons, oldest first.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/dead-letters",
    tag = "collect",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), Page),
    responses((status = 200, description = "A page of dead letters", body = DeadLetterPage)),
    extensions(("x-permission" = json!("read"))),
)]
async fn dead_letters(State(state): State<Arc<AppState>>, Path(app): Path<String>, Query(page): Query<Page>, headers: HeaderMap) -> Result<Json<DeadLetterPage>, ApiError> {
    let app = app_id(&app)?;
    require(&state, &headers, Permission::Read, &app)?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 1000"));
    }
    let from = match page.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<u64>().map_err(|_| ApiError::bad_request("invalid_cursor", "cursor must be the next_cursor of a previous page"))?,
    };
    let collector = state.collector.clone();
    let (letters, next) = blocking(move || collector.dead_letters(&app, from, limit)).await??;
    let dead_letters = letters
        .into_iter()
        .map(|d| DeadLetter { offset: d.offset, app: d.app.to_string(), received: d.received, error: d.error, raw: d.raw, format: d.format, origin: d.origin })
        .collect();
    Ok(Json(DeadLetterPage { dead_letters, next_cursor: next.to_string() }))
}

/// Sends the app's dead letters received since the last replay through the current
/// pipeline again: valid ones are stored, the others are written back with their new reason.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/dead-letters/replay",
    tag = "collect",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "What the replay did", body = ReplayReport)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn replay_dead_letters(State(state): State<Arc<AppState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<ReplayReport>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state, &headers, Permission::Admin, &app)?;
    let report = state.collector.replay_dead_letters(&app).await?;
    let entry = NewAuditEntry::new(principal.actor(), "dead_letters.replay", app.to_string()).app(app).after(serde_json::to_value(&report).map_err(ApiError::internal)?);
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok(Json(report))
}
