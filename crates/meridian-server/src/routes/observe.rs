//! Operability routes and metrics: `/metrics`, `/healthz`, `/readyz`, request metrics.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_api::ops::{Health, Readiness};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The operability routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(metrics_text)).routes(routes!(healthz)).routes(routes!(readyz))
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (several servers in one test
/// process share it).
pub(crate) fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

/// Prometheus metrics (text format).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 503, description = "No recorder", body = String, content_type = "text/plain")),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    for status in state.runtime.status() {
        metrics::gauge!("meridian_processor_lag_records", "processor" => status.name.clone()).set(status.lag as f64);
    }
    metrics::gauge!("meridian_dedup_entries").set(state.collector.dedup_entries() as f64);
    match prometheus() {
        Some(handle) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::CONTENT_TYPE, "text/plain")], "metrics recorder unavailable").into_response(),
    }
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "Up", body = Health)),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: recovery is done and the processors run; reports their lag.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "A processor's latest round failed", body = Readiness)),
    security(()),
    extensions(("x-permission" = json!("public"))),
)]
async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let processors = state.runtime.status();
    let failing: Vec<_> = processors.iter().filter(|p| p.last_error.is_some()).map(|p| p.name.clone()).collect();
    let lag: u64 = processors.iter().map(|p| p.lag).sum();
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if failing.is_empty() { "ready" } else { "degraded" }.into(), lag, failing_processors: failing }))
}

/// Records request count and latency per route and status.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("meridian_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone(), "status" => status.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("meridian_http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    response
}
