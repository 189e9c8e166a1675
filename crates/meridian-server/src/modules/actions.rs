//! The user action system's adapter: the profile store (embedded, or Redis with
//! `meridian-actions-redis`), one processor per isolation group, app time zones from
//! tenancy, the topics its processors read and write, and the routes: an aggregation over
//! a window, profiles (one, or a batch), segment membership, counts and exports, the
//! definitions with their live figures, and back-fills of an aggregation from the log.
//!
//! Every service call reads the state store (or the profile store's backend), so every
//! one runs on the blocking pool, bounded by a semaphore so load queues asynchronously —
//! except reads of users the processors published to memory after their last commit
//! (`*_in_memory`: an aggregation, a profile, a membership), answered inline in
//! microseconds with exactly what the store holds.

use crate::auth::{app_id, require, require_global_admin};
use anyhow::Context as _;
use crate::error::{parse_json, ApiError};
use crate::extract::{Path, Query};
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext};
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_actions::processor::Job;
use meridian_actions::service::ExportFormat;
use meridian_actions::window::WindowError;
use meridian_actions::{ActionsService, AppZones, EmbeddedProfileStore, ProcessorSettings, ProfileStore, StoreKind, SystemClock};
use meridian_api::actions::{
    AggregateValue, BackfillJob, Definition, DefinitionList, Profile, ProfileList, ProfileValues, ProfilesRequest, SegmentMembership, SegmentSummary, TimelineEntry, TimelineTarget,
};
use meridian_event::AppId;
use meridian_log::TopicName;
use meridian_runtime::Processor as _;
use meridian_tenancy::chrono_tz::Tz;
use meridian_tenancy::{NewAuditEntry, Permission, Principal, Tenancy};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The user action system.
#[derive(Debug)]
pub(crate) struct Actions;

/// Service calls in flight at once on the blocking pool.
const BLOCKING_CALLS: usize = 16;

/// Apps' time zones, from tenancy (UTC for an unknown app).
struct TenancyZones(Arc<Tenancy>);

impl AppZones for TenancyZones {
    fn zone(&self, app: &AppId) -> Tz {
        self.0.app(app).map(|a| a.tz()).unwrap_or(Tz::UTC)
    }
}

/// The handlers' state.
struct ActionsState {
    app: Arc<AppState>,
    service: Arc<ActionsService>,
    calls: Arc<tokio::sync::Semaphore>,
}

impl ActionsState {
    /// Runs `f` on the blocking pool once a permit is free.
    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&ActionsService) -> meridian_actions::Result<T> + Send + 'static) -> Result<T, ApiError> {
        let permit = self.calls.clone().acquire_owned().await.map_err(ApiError::internal)?;
        let service = self.service.clone();
        let result = tokio::task::spawn_blocking(move || f(&service)).await.map_err(ApiError::internal)?;
        drop(permit);
        result.map_err(actions_error)
    }
}

impl Capability for Actions {
    fn name(&self) -> &'static str {
        "actions"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = &ctx.config().actions;
        if !config.enabled {
            return Ok(None);
        }
        let kv = ctx.store()?;
        let store: Arc<dyn ProfileStore> = match config.store {
            StoreKind::Embedded => Arc::new(EmbeddedProfileStore::for_config(kv.clone(), config)),
            StoreKind::Redis => Arc::new(
                meridian_actions_redis::RedisProfileStore::connect(&config.redis_url, &config.redis_prefix)
                    .with_context(|| "cannot connect to the actions profile store (actions.redis_url)")?,
            ),
        };
        let log = &ctx.state.log;
        let partitions = ctx.config().log.partitions;
        // Every topic its processors read or emit to exists from the start, partitioned
        // like the topics the pipeline routes to.
        let topic = |name: &str| -> anyhow::Result<TopicName> {
            let topic = TopicName::new(name)?;
            log.ensure_topic(&topic, partitions)?;
            Ok(topic)
        };
        let settings = ProcessorSettings {
            events_topic: ctx.state.events_topic.clone(),
            segments_topic: topic(&config.segments_topic)?,
            triggers_topic: topic(&config.triggers_topic)?,
            notifications_topic: topic(&config.notifications_topic)?,
        };
        for group in &config.groups {
            topic(&group.topic)?;
        }
        let zones = Arc::new(TenancyZones(ctx.state.tenancy.clone()));
        let service = Arc::new(ActionsService::new(config.clone(), store, kv, zones, Arc::new(SystemClock), log.clone(), settings)?);
        let mut module = ModuleBuilder::new("actions");
        let mut erasing = Vec::new();
        for processor in service.processors()? {
            erasing.push(processor.name().to_owned());
            module = module.processor(Box::new(processor));
        }
        let state = Arc::new(ActionsState { app: ctx.state.clone(), service, calls: Arc::new(tokio::sync::Semaphore::new(BLOCKING_CALLS)) });
        let routes = OpenApiRouter::new()
            .routes(routes!(aggregate))
            .routes(routes!(profile))
            .routes(routes!(profiles))
            .routes(routes!(membership))
            .routes(routes!(segment))
            .routes(routes!(export))
            .routes(routes!(definitions))
            .routes(routes!(start_backfill, backfill_status))
            .routes(routes!(start_recompute, recompute_status))
            .with_state(state);
        let module = module
            .routes(routes)
            .console(crate::console::actions::section(ctx))
            .erasure(Erasure::ByProcessors(erasing))
            .build()?;
        Ok(Some(module))
    }
}

fn actions_error(e: meridian_actions::Error) -> ApiError {
    use meridian_actions::Error as E;
    match e {
        E::UnknownAggregation(_) => ApiError::not_found("unknown_aggregation", e.to_string()),
        E::UnknownSegment(_) => ApiError::not_found("unknown_segment", e.to_string()),
        E::Window(WindowError::Invalid(_)) => ApiError::bad_request("invalid_window", e.to_string()),
        E::Window(WindowError::BeyondRetention { .. }) => ApiError::bad_request("window_beyond_retention", e.to_string()),
        E::InvalidUser(_) => ApiError::bad_request("invalid_user", e.to_string()),
        E::TooManyUsers { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_users", e.to_string()),
        E::Backfill(_) => ApiError::conflict("backfill_conflict", e.to_string()),
        E::MaskKeyMissing => ApiError::conflict("mask_key_missing", e.to_string()),
        E::Backend(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "actions_backend_unavailable", format!("{e}; retry shortly")),
        other => ApiError::internal(other),
    }
}

/// Authenticates, checks the permission on the app and applies the rate limits (the
/// caller's and the global bucket, and the one of `subject`: a user, or what is read).
fn admit(state: &ActionsState, headers: &HeaderMap, permission: Permission, app: &str, subject: &str) -> Result<(AppId, Principal), ApiError> {
    let app = app_id(app)?;
    let principal = require(&state.app, headers, permission, &app)?;
    let caller = principal.actor().to_string();
    if let Err((limit, wait)) = state.app.rate_limits.check(&caller, &format!("{}/{subject}", app.as_str())) {
        metrics::counter!("meridian_rate_limited_total", "limit" => limit.as_str()).increment(1);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("the {} rate limit is exceeded; retry after {secs} s", limit.as_str()))
            .with_details(serde_json::json!({"limit": limit.as_str()}))
            .retry_after(secs));
    }
    Ok((app, principal))
}

/// The wire form of a profile.
pub(crate) fn profile_view(p: meridian_actions::service::Profile) -> Profile {
    let values = |v: meridian_actions::service::ProfileValues| ProfileValues { today: v.today, d7: v.d7, d30: v.d30, all: v.all };
    Profile {
        user: p.user,
        known: p.known,
        first_seen_ms: p.first_seen_ms,
        last_active_ms: p.last_active_ms,
        stage: p.stage,
        stage_since_ms: p.stage_since_ms,
        segments: p.segments,
        values: p.values.into_iter().map(|(name, v)| (name, values(v))).collect(),
        events: values(p.events),
        timeline: p
            .timeline
            .into_iter()
            .map(|t| TimelineEntry { time_ms: t.time_ms, action: t.action, target: t.target.map(|(kind, id)| TimelineTarget { kind, id }) })
            .collect(),
    }
}

/// The wire form of a back-fill job.
pub(crate) fn job_view(job: Job) -> BackfillJob {
    BackfillJob {
        aggregation: job.aggregation,
        refire: job.refire,
        topic: job.topic,
        total: job.total,
        read: job.read,
        merged: job.merged,
        steps: job.steps,
        done: job.done,
        requested_ms: job.requested_ms,
        finished_ms: job.finished_ms,
    }
}

/// The window of an aggregation query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WindowQuery {
    /// `today`, `Nd` (e.g. `7d`, the default), `month`, `all`, `YYYY-MM` or
    /// `YYYY-MM-DD..YYYY-MM-DD`, in the app's local days; at most `actions.retention_days` back.
    window: Option<String>,
}

/// An export's format.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    #[param(pattern = "^(jsonl|csv)$")]
    format: Option<String>,
}

/// Whether a back-fill fires triggers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BackfillQuery {
    /// Fire the triggers whose conditions the back-filled values make true (default false).
    refire: Option<bool>,
}

/// An aggregation of one user over a window (default the last 7 days).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/users/{user}/actions/{aggregation}",
    tag = "actions",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("user" = String, Path, description = "User id, 1-128 bytes", min_length = 1, max_length = 128),
        ("aggregation" = String, Path, description = "An aggregation of the [actions] section"),
        WindowQuery,
    ),
    responses((status = 200, description = "The value", body = AggregateValue), (status = 404, description = "Unknown aggregation", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn aggregate(
    State(state): State<Arc<ActionsState>>,
    Path((app, user, aggregation)): Path<(String, String, String)>,
    Query(q): Query<WindowQuery>,
    headers: HeaderMap,
) -> Result<Json<AggregateValue>, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, &user)?;
    let window = q.window.unwrap_or_else(|| "7d".to_owned());
    let v = match state.service.aggregate_in_memory(&app, &user, &aggregation, &window).map_err(actions_error)? {
        Some(v) => v,
        // Not in memory (just asked): the store.
        None => state.call(move |s| s.aggregate_from_store(&app, &user, &aggregation, &window)).await?,
    };
    Ok(Json(AggregateValue { aggregation: v.aggregation, kind: v.kind.to_owned(), window: v.window, from: v.from, to: v.to, value: v.value }))
}

/// A user's profile: first seen, last active, lifecycle stage, segments, every
/// aggregation's values today, over 7 and 30 days and in all, and the latest events.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/users/{user}/profile",
    tag = "actions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("user" = String, Path, description = "User id, 1-128 bytes", min_length = 1, max_length = 128)),
    responses((status = 200, description = "The profile (`known` is false for a user never seen)", body = Profile)),
    extensions(("x-permission" = json!("read"))),
)]
async fn profile(State(state): State<Arc<ActionsState>>, Path((app, user)): Path<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, &user)?;
    // From memory: the body is rendered once per change of the user (or of the day).
    let render = |p: &meridian_actions::service::Profile| Bytes::from(serde_json::to_vec(&profile_view(p.clone())).unwrap_or_default());
    if let Some(body) = state.service.profile_rendered_in_memory(&app, &user, render).map_err(actions_error)? {
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    // Not in memory (just asked): the store.
    let p = state.call(move |s| s.profile_from_store(&app, &user)).await?;
    Ok(Json(profile_view(p)).into_response())
}

/// Profiles of many users at once, in the order asked (at most `actions.max_batch_users`).
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/profiles",
    tag = "actions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = ProfilesRequest, content_type = "application/json"),
    responses((status = 200, description = "The profiles", body = ProfileList), (status = 413, description = "More users than actions.max_batch_users", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn profiles(State(state): State<Arc<ActionsState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<ProfileList>, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, "profiles")?;
    let request: ProfilesRequest = parse_json(&body)?;
    let list = state.call(move |s| s.profiles(&app, &request.users)).await?;
    Ok(Json(ProfileList { profiles: list.into_iter().map(profile_view).collect() }))
}

/// Whether a user is in a segment now.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/segments/{segment}/members/{user}",
    tag = "actions",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("segment" = String, Path, description = "A segment of the [actions] section"),
        ("user" = String, Path, description = "User id, 1-128 bytes", min_length = 1, max_length = 128),
    ),
    responses((status = 200, description = "Membership", body = SegmentMembership), (status = 404, description = "Unknown segment", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn membership(State(state): State<Arc<ActionsState>>, Path((app, segment, user)): Path<(String, String, String)>, headers: HeaderMap) -> Result<Json<SegmentMembership>, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, &user)?;
    let member = match state.service.in_segment_in_memory(&app, &user, &segment).map_err(actions_error)? {
        Some(member) => member,
        None => state.call(move |s| s.in_segment(&app, &user, &segment)).await?,
    };
    Ok(Json(SegmentMembership { member }))
}

/// A segment's member count.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/segments/{segment}",
    tag = "actions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("segment" = String, Path, description = "A segment of the [actions] section")),
    responses((status = 200, description = "The segment", body = SegmentSummary), (status = 404, description = "Unknown segment", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn segment(State(state): State<Arc<ActionsState>>, Path((app, segment)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<SegmentSummary>, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, &format!("segment/{segment}"))?;
    let name = segment.clone();
    let members = state.call(move |s| s.segment_count(&app, &name)).await?;
    Ok(Json(SegmentSummary { segment, members }))
}

/// A segment's members as JSON lines or CSV. User ids are masked (a keyed hash, stable
/// for `actions.mask_key`) unless the caller is an admin of the app.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/segments/{segment}/export",
    tag = "actions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("segment" = String, Path, description = "A segment of the [actions] section"), ExportQuery),
    responses(
        (status = 200, description = "One member per line: `{\"user_hash\"|\"user\", \"segment\"}` objects, or a CSV with a header", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 404, description = "Unknown segment", body = meridian_api::ErrorBody),
        (status = 409, description = "A masked export, but actions.mask_key is not set", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("read"))),
)]
async fn export(State(state): State<Arc<ActionsState>>, Path((app, segment)): Path<(String, String)>, Query(q): Query<ExportQuery>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (app, principal) = admit(&state, &headers, Permission::Read, &app, &format!("segment/{segment}"))?;
    let (format, content_type) = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => (ExportFormat::Jsonl, "application/x-ndjson"),
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8"),
        other => return Err(ApiError::bad_request("invalid_format", format!("format must be jsonl or csv, not {other:?}"))),
    };
    let unmask = principal.allows(Permission::Admin, &app);
    if !unmask && state.service.config().mask_key.is_empty() {
        // Unknown segments are still 404.
        let name = segment.clone();
        state.call(move |s| s.segment_count(&app, &name)).await?;
        return Err(ApiError::conflict("mask_key_missing", "masked exports need actions.mask_key; set it, or export with a key or operator that is an admin of the app"));
    }
    let body = state
        .call(move |s| {
            let mut out = Vec::new();
            s.export(&app, &segment, format, unmask, &mut out)?;
            Ok(out)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Every aggregation, lifecycle stage, segment (with its members in this app) and
/// trigger of the `[actions]` section, with aggregations' back-fills.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/actions/definitions",
    tag = "actions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The definitions", body = DefinitionList)),
    extensions(("x-permission" = json!("read"))),
)]
async fn definitions(State(state): State<Arc<ActionsState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<DefinitionList>, ApiError> {
    let (app, _) = admit(&state, &headers, Permission::Read, &app, "definitions")?;
    let summaries = state.call(move |s| s.summaries(&app)).await?;
    let definitions = summaries
        .into_iter()
        .map(|d| Definition {
            kind: d.kind.to_owned(),
            name: d.name,
            detail: d.detail,
            filter: d.filter,
            group: d.group,
            description: d.description,
            members: d.members,
            backfill: d.backfill.map(job_view),
            recompute: d.recompute.map(recompute_view),
        })
        .collect();
    Ok(Json(DefinitionList { definitions }))
}

/// Starts the back-fill of an aggregation from the log (its events from before it went
/// live), in steps run by its processor; follow it with `GET` on the same path. Each
/// definition of an aggregation is back-filled once.
#[utoipa::path(
    post,
    path = "/v1/actions/aggregations/{name}/backfill",
    tag = "actions",
    params(("name" = String, Path, description = "An aggregation of the [actions] section"), BackfillQuery),
    responses(
        (status = 202, description = "Started", body = BackfillJob),
        (status = 404, description = "Unknown aggregation", body = meridian_api::ErrorBody),
        (status = 409, description = "Back-filled already, running, or not live yet", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn start_backfill(State(state): State<Arc<ActionsState>>, Path(name): Path<String>, Query(q): Query<BackfillQuery>, headers: HeaderMap) -> Result<(StatusCode, Json<BackfillJob>), ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    let refire = q.refire.unwrap_or(false);
    let job = {
        let name = name.clone();
        state.call(move |s| s.request_backfill(&name, refire)).await?
    };
    let entry = NewAuditEntry::new(principal.actor(), "actions.backfill", name).after(serde_json::json!({"refire": refire, "topic": job.topic, "total": job.total}));
    let tenancy = state.app.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok((StatusCode::ACCEPTED, Json(job_view(job))))
}

/// Progress of an aggregation's back-fill (its current definition).
#[utoipa::path(
    get,
    path = "/v1/actions/aggregations/{name}/backfill",
    tag = "actions",
    params(("name" = String, Path, description = "An aggregation of the [actions] section")),
    responses((status = 200, description = "Progress", body = BackfillJob), (status = 404, description = "Unknown aggregation, or no back-fill was asked", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn backfill_status(State(state): State<Arc<ActionsState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<BackfillJob>, ApiError> {
    require_global_admin(&state.app, &headers)?;
    let asked = name.clone();
    match state.call(move |s| s.backfill_status(&asked)).await? {
        Some(job) => Ok(Json(job_view(job))),
        None => Err(ApiError::not_found("no_backfill", format!("no back-fill of aggregation {name:?} was asked; start one with POST on this path"))),
    }
}

fn recompute_view(job: meridian_actions::recompute::RecomputeJob) -> meridian_api::actions::RecomputeJob {
    use meridian_actions::recompute::Phase;
    let phase = match job.phase {
        Phase::Batch => "batch",
        Phase::Switch => "switch",
        Phase::Cleanup => "cleanup",
        Phase::Done => "done",
    };
    meridian_api::actions::RecomputeJob {
        aggregation: job.aggregation,
        topic: job.topic,
        phase: phase.to_owned(),
        cutoff_ms: job.cutoff_ms,
        first_ms: job.first_ms,
        total: job.total,
        read: job.read,
        switched: job.switched,
        steps: job.steps,
        requested_ms: job.requested_ms,
        finished_ms: job.finished_ms,
    }
}

/// Starts the recompute of an aggregation's older days from the log (the lambda merge):
/// the days from the log's first whole day to `actions.live_days` before today are
/// replaced by what the log says, user by user, while later days stay live; readers see
/// either value, never a mix. Follow it with `GET` on the same path.
#[utoipa::path(
    post,
    path = "/v1/actions/aggregations/{name}/recompute",
    tag = "actions",
    params(("name" = String, Path, description = "An aggregation of the [actions] section")),
    responses(
        (status = 202, description = "Started", body = meridian_api::actions::RecomputeJob),
        (status = 404, description = "Unknown aggregation", body = meridian_api::ErrorBody),
        (status = 409, description = "A recompute of it is running", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn start_recompute(State(state): State<Arc<ActionsState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<(StatusCode, Json<meridian_api::actions::RecomputeJob>), ApiError> {
    let principal = require_global_admin(&state.app, &headers)?;
    let job = {
        let name = name.clone();
        state.call(move |s| s.request_recompute(&name)).await?
    };
    let entry = NewAuditEntry::new(principal.actor(), "actions.recompute", name).after(serde_json::json!({"topic": job.topic, "total": job.total, "cutoff_ms": job.cutoff_ms}));
    let tenancy = state.app.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok((StatusCode::ACCEPTED, Json(recompute_view(job))))
}

/// Progress of an aggregation's latest recompute.
#[utoipa::path(
    get,
    path = "/v1/actions/aggregations/{name}/recompute",
    tag = "actions",
    params(("name" = String, Path, description = "An aggregation of the [actions] section")),
    responses((status = 200, description = "Progress", body = meridian_api::actions::RecomputeJob), (status = 404, description = "Unknown aggregation, or never recomputed", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("global_admin"))),
)]
async fn recompute_status(State(state): State<Arc<ActionsState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<meridian_api::actions::RecomputeJob>, ApiError> {
    require_global_admin(&state.app, &headers)?;
    let asked = name.clone();
    match state.call(move |s| s.recompute_status(&asked)).await? {
        Some(job) => Ok(Json(recompute_view(job))),
        None => Err(ApiError::not_found("no_recompute", format!("aggregation {name:?} was never recomputed; start one with POST on this path"))),
    }
}
