//! The counters capability's adapter: its processor and `GET /v1/apps/{app}/counters`.

use crate::auth::{app_id, require};
use crate::error::ApiError;
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext};
use crate::state::{blocking, AppState};
use crate::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use meridian_api::counters::AppCounters;
use meridian_counters::{CountersProcessor, CountersService};
use meridian_tenancy::Permission;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The counters capability.
#[derive(Debug)]
pub(crate) struct Counters;

struct CountersState {
    app: Arc<AppState>,
    service: CountersService,
}

impl Capability for Counters {
    fn name(&self) -> &'static str {
        "counters"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        if !ctx.config().counters.enabled {
            return Ok(None);
        }
        let state = Arc::new(CountersState { app: ctx.state.clone(), service: CountersService::new(ctx.store()?) });
        let module = ModuleBuilder::new("counters")
            .processor(Box::new(CountersProcessor::new(ctx.state.events_topic.clone())))
            .routes(OpenApiRouter::new().routes(routes!(counters)).with_state(state))
            .console(crate::console::counters::section(ctx))
            .erasure(Erasure::NoUserData { why: "counts per app, action and day; nothing per user" })
            .build()?;
        Ok(Some(module))
    }
}

/// Committed event counts of an app, by action and UTC day.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/counters",
    tag = "counters",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "Committed counts", body = AppCounters)),
    extensions(("x-permission" = json!("read"))),
)]
async fn counters(State(state): State<Arc<CountersState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<AppCounters>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let service = state.service.clone();
    let counts = blocking(move || service.app_counters(&app)).await?.map_err(ApiError::internal)?;
    Ok(Json(AppCounters { total: counts.total, by_action: counts.by_action, by_day: counts.by_day }))
}
