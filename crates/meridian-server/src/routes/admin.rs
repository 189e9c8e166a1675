//! Operating the server: processors (status, rebuild, seek), the pipeline, topics. Every
//! route needs the master key or a global admin; every change is audited.

use crate::auth::require_global_admin;
use crate::error::{parse_json, ApiError};
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use crate::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use meridian_api::admin::{PartitionOffsets, PartitionStatus, PipelineStatus, ProcessorAction, ProcessorList, ProcessorStatus, SeekRequest, TopicList, TopicOffsets};
use meridian_runtime::RuntimeError;
use meridian_tenancy::{NewAuditEntry, Principal};
use serde_json::json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The admin routes.
pub(crate) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(processors))
        .routes(routes!(rebuild_processor))
        .routes(routes!(seek_processor))
        .routes(routes!(pipeline_status))
        .routes(routes!(reload_pipeline))
        .routes(routes!(topics))
}

/// The runtime's status as API types.
pub(crate) fn processor_views(state: &AppState) -> Vec<ProcessorStatus> {
    state
        .runtime
        .status()
        .into_iter()
        .map(|s| ProcessorStatus {
            name: s.name,
            partitions: s.partitions.into_iter().map(|p| PartitionStatus { topic: p.topic, partition: p.partition, position: p.position, end: p.end, lag: p.lag }).collect(),
            records_processed: s.records_processed,
            records_per_second: s.records_per_second,
            lag: s.lag,
            last_error: s.last_error,
        })
        .collect()
}

/// Records a global admin action in the audit log.
pub(crate) async fn audit(state: &AppState, principal: &Principal, action: &'static str, target: String, after: serde_json::Value) -> Result<(), ApiError> {
    let entry = NewAuditEntry::new(principal.actor(), action, target).after(after);
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok(())
}

/// Audits a change of an app's configuration (an alert rule…), with the value before and
/// after (never a secret).
pub(crate) async fn audit_app(
    state: &AppState,
    principal: &Principal,
    app: &meridian_event::AppId,
    action: &'static str,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let mut entry = NewAuditEntry::new(principal.actor(), action, target).app(app.clone());
    entry.before = before;
    entry.after = after;
    let tenancy = state.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok(())
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::UnknownProcessor(_) => ApiError::not_found("unknown_processor", e.to_string()),
        RuntimeError::Log(meridian_log::LogError::UnknownTopic(_)) => ApiError::not_found("unknown_topic", e.to_string()),
        RuntimeError::Processor { .. } => ApiError::bad_request("invalid_seek", e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Processors' positions, lag and throughput.
#[utoipa::path(
    get,
    path = "/v1/admin/processors",
    tag = "admin",
    responses((status = 200, description = "Every processor", body = ProcessorList)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn processors(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<ProcessorList>, ApiError> {
    require_global_admin(&state, &headers)?;
    Ok(Json(ProcessorList { processors: processor_views(&state) }))
}

/// Clears a processor's state and replays the log from the start.
#[utoipa::path(
    post,
    path = "/v1/admin/processors/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "Processor name")),
    responses((status = 200, description = "Rebuilding", body = ProcessorAction), (status = 404, description = "Unknown processor", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn rebuild_processor(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<ProcessorAction>, ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let runtime = state.runtime.clone();
    let for_task = name.clone();
    blocking(move || runtime.rebuild(&for_task)).await?.map_err(runtime_error)?;
    audit(&state, &principal, "processor.rebuild", name.clone(), json!({"status": "rebuilding"})).await?;
    Ok(Json(ProcessorAction { processor: name, status: "rebuilding".into(), topic: None }))
}

/// Moves a processor's positions without clearing its state (replay from a position).
#[utoipa::path(
    post,
    path = "/v1/admin/processors/{name}/seek",
    tag = "admin",
    params(("name" = String, Path, description = "Processor name")),
    request_body(content = SeekRequest, content_type = "application/json"),
    responses((status = 200, description = "Moved", body = ProcessorAction), (status = 404, description = "Unknown processor or topic", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn seek_processor(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<ProcessorAction>, ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let request: SeekRequest = parse_json(&body)?;
    let topic = meridian_log::TopicName::new(request.topic.clone()).map_err(|e| ApiError::bad_request("invalid_topic", e.to_string()))?;
    let positions = request
        .offsets
        .iter()
        .map(|(p, o)| p.parse::<u32>().map(|p| (p, *o)).map_err(|_| ApiError::bad_request("invalid_partition", format!("partition {p:?} is not a number"))))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = state.runtime.clone();
    let (for_task, topic_for_task) = (name.clone(), topic.clone());
    blocking(move || runtime.seek(&for_task, &topic_for_task, positions)).await?.map_err(runtime_error)?;
    audit(&state, &principal, "processor.seek", name.clone(), json!(request)).await?;
    Ok(Json(ProcessorAction { processor: name, status: "moved".into(), topic: Some(topic.to_string()) }))
}

/// The pipeline in force.
#[utoipa::path(
    get,
    path = "/v1/admin/pipeline",
    tag = "admin",
    responses((status = 200, description = "The pipeline in force", body = PipelineStatus)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn pipeline_status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<PipelineStatus>, ApiError> {
    require_global_admin(&state, &headers)?;
    Ok(Json(state.pipeline_status.lock().clone()))
}

/// Reloads the pipeline file now (it is also reloaded when it changes); a bad file is
/// refused and the previous pipeline stays in force.
#[utoipa::path(
    post,
    path = "/v1/admin/pipeline/reload",
    tag = "admin",
    responses((status = 200, description = "Reloaded", body = PipelineStatus), (status = 400, description = "No pipeline file, or it is invalid: the previous pipeline stays in force", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn reload_pipeline(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<PipelineStatus>, ApiError> {
    let principal = require_global_admin(&state, &headers)?;
    let for_task = state.clone();
    let status = blocking(move || for_task.reload_pipeline())
        .await?
        .map_err(|message| ApiError::bad_request("invalid_pipeline", format!("pipeline not reloaded, the previous one stays in force: {message}")))?;
    audit(&state, &principal, "pipeline.reload", status.file.clone().unwrap_or_default(), json!({"revision": status.revision})).await?;
    Ok(Json(status))
}

/// Topics with their partitions' offsets.
#[utoipa::path(
    get,
    path = "/v1/admin/topics",
    tag = "admin",
    responses((status = 200, description = "Topics", body = TopicList)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn topics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<TopicList>, ApiError> {
    require_global_admin(&state, &headers)?;
    let log = state.log.clone();
    let topics = blocking(move || topic_offsets(&*log)).await?.map_err(ApiError::internal)?;
    Ok(Json(TopicList { topics }))
}

/// Every topic's partitions with their start and end offsets (blocking: log reads).
pub(crate) fn topic_offsets(log: &dyn meridian_log::Log) -> Result<Vec<TopicOffsets>, meridian_log::LogError> {
    let mut out = Vec::new();
    for info in log.topics() {
        let mut partitions = Vec::new();
        for p in 0..info.partitions {
            let offsets = log.offsets(&info.name, p)?;
            partitions.push(PartitionOffsets { partition: p, start: offsets.start, end: offsets.end });
        }
        out.push(TopicOffsets { name: info.name.to_string(), partitions });
    }
    Ok(out)
}
