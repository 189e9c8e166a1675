//! The alerts capability's adapter: the rules API (app scoped, versioned: a change names
//! the version it was made from, by `If-Match` or a `version` field), the alert history,
//! each rule's recent evaluations, the rule test (a rule evaluated over the last hours of
//! the app's events read from the log, notifying nobody), and the processor that runs
//! the rules over the `events` topic (see `meridian_alerts::processor`).
//!
//! Every service call reads or commits the module's store, so it runs on the blocking
//! pool; so does the rule test's log read.

use crate::auth::{app_id, require};
use crate::error::{parse_json, ApiError};
use crate::extract::{Path, Query};
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext, Task};
use crate::routes::admin::audit_app;
use crate::state::{blocking, random_id, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_alerts::service::Error as AlertsError;
use meridian_alerts::{AlertsProcessor, AlertsService, Evaluation, HistoryEntry, ProcessorSettings, Rule, RuleError, RuleId, RuleSetError, Transition};
use meridian_api::alerts::{
    AlertDelivery, AlertEvaluation, AlertEvaluations, AlertHistory, AlertRule, AlertRuleInput, AlertRuleList, AlertRuleTest, AlertRuleTestResult, AlertTransition, ExpectedVersion,
};
use meridian_event::{AppId, Event, LogEntry, Timestamp};
use meridian_log::{Log, TopicName};
use meridian_state::KvStore;
use meridian_tenancy::Permission;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The alerts capability.
#[derive(Debug)]
pub(crate) struct Alerts;

/// The handlers' state.
pub(crate) struct AlertsState {
    pub(crate) app: Arc<AppState>,
    pub(crate) service: Arc<AlertsService>,
    /// The notify module's store (where the app's webhook endpoints are).
    notify_store: Arc<dyn KvStore>,
}

impl AlertsState {
    /// Runs `f` on the blocking pool.
    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&AlertsService) -> meridian_alerts::service::Result<T> + Send + 'static) -> Result<T, ApiError> {
        let service = self.service.clone();
        blocking(move || f(&service)).await?.map_err(alerts_error)
    }
}

impl Capability for Alerts {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = ctx.config().alerts.clone();
        if !config.enabled {
            return Ok(None);
        }
        let log = &ctx.state.log;
        let partitions = ctx.config().log.partitions;
        let topic = |name: &str| -> anyhow::Result<TopicName> {
            let topic = TopicName::new(name)?;
            log.ensure_topic(&topic, partitions)?;
            Ok(topic)
        };
        let settings = ProcessorSettings { events_topic: ctx.state.events_topic.clone(), alerts_topic: topic(&config.topic)?, notifications_topic: topic(&config.notifications_topic)? };
        let store = ctx.store()?;
        let service = Arc::new(AlertsService::open(store.clone(), config.clone())?);
        // The clock starts at once; a tick chain already running drops this one.
        meridian_runtime::schedule_timer(&*store, meridian_alerts::PROCESSOR_NAME, Timestamp::now().millis(), b"tick")?;
        let tenancy = ctx.state.tenancy.clone();
        let zones: meridian_alerts::TimeZones = Arc::new(move |app: &AppId| tenancy.app(app).map_or(chrono_tz::Tz::UTC, |a| a.tz()));
        let processor = AlertsProcessor::new(service.clone(), log.clone(), settings).with_time_zones(zones);
        let state = Arc::new(AlertsState { app: ctx.state.clone(), service: service.clone(), notify_store: ctx.stores.module("notify")? });
        let routes = OpenApiRouter::new()
            .routes(routes!(list_rules, create_rule))
            .routes(routes!(get_rule, update_rule, delete_rule))
            .routes(routes!(pause_rule))
            .routes(routes!(resume_rule))
            .routes(routes!(rule_evaluations))
            .routes(routes!(test_rule))
            .routes(routes!(history))
            .with_state(state);
        let mut builder = ModuleBuilder::new("alerts");
        if config.history_retention_days > 0 {
            builder = builder.task(purge_task(service.clone(), config.history_retention_days, Duration::from_secs(config.purge_interval_secs)));
        }
        let module = builder
            .processor(Box::new(processor))
            .routes(routes)
            .console(crate::console::alerts::section(ctx))
            .erasure(Erasure::NoUserData {
                why: "rules, alert history and window values are per app; a distinct-user window holds 64-bit hashes of user ids only until it closes (at most the window's size)",
            })
            .build()?;
        Ok(Some(module))
    }
}

fn rule_error(e: &RuleError) -> ApiError {
    ApiError::bad_request("invalid_rule", e.to_string()).with_details(json!({"field": e.field, "reason": e.code.as_str()}))
}

fn alerts_error(e: AlertsError) -> ApiError {
    match e {
        AlertsError::Rules(RuleSetError::Invalid(e)) => rule_error(&e),
        AlertsError::Rules(e @ RuleSetError::NotFound(_)) => ApiError::not_found("unknown_rule", e.to_string()),
        AlertsError::Rules(e @ RuleSetError::AlreadyExists(_)) => ApiError::conflict("rule_exists", e.to_string()).with_details(json!({"field": "id"})),
        AlertsError::Rules(RuleSetError::StaleVersion { id, expected, current }) => ApiError::conflict(
            "stale_version",
            format!("rule {id} is at version {current}, the change was made from version {expected}; re-read the rule and apply the change again"),
        )
        .with_details(json!({"current_version": current, "expected_version": expected})),
        e @ AlertsError::TooManyRules { .. } => ApiError::conflict("too_many_rules", e.to_string()),
        other => ApiError::internal(other),
    }
}

/// The version a change was made from: `If-Match` (`"3"`, `3` or `W/"3"`), else the
/// body's `version`.
fn expected_version(headers: &HeaderMap, body_version: Option<u64>) -> Result<u64, ApiError> {
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value.to_str().unwrap_or_default().trim();
        let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
        return text.parse().map_err(|_| {
            ApiError::bad_request("invalid_version", format!("If-Match must be the rule's version (a number, e.g. \"3\"), got {text:?}")).with_details(json!({"field": "If-Match"}))
        });
    }
    body_version.ok_or_else(|| {
        ApiError::bad_request("version_required", "say which version the change was made from: an If-Match header or a \"version\" field (GET the rule for its version)")
            .with_details(json!({"field": "version"}))
    })
}

/// Reads a rule of `app` from a request body: the path's app, and the path's id (or the
/// body's, or a new one).
fn rule_from_body(app: &AppId, id: Option<&str>, body: &[u8]) -> Result<(Rule, Option<u64>), ApiError> {
    let mut value: Value = parse_json(body)?;
    let Some(object) = value.as_object_mut() else {
        return Err(rule_error(&RuleError::new("", meridian_alerts::RuleErrorCode::InvalidType, "a rule is a JSON object")));
    };
    if let Some(given) = object.get("app") {
        if given.as_str() != Some(app.as_str()) {
            return Err(rule_error(&RuleError::new("app", meridian_alerts::RuleErrorCode::Immutable, format!("the rule's app is the path's ({app}); leave \"app\" out"))));
        }
    }
    object.insert("app".into(), Value::String(app.to_string()));
    match (id, object.get("id")) {
        (Some(id), Some(given)) if given.as_str() != Some(id) => {
            return Err(rule_error(&RuleError::new("id", meridian_alerts::RuleErrorCode::Immutable, format!("the rule's id is the path's ({id}); leave \"id\" out"))));
        }
        (Some(id), _) => {
            object.insert("id".into(), Value::String(id.to_owned()));
        }
        (None, Some(_)) => {}
        (None, None) => {
            object.insert("id".into(), Value::String(random_id("rule-", 6)?));
        }
    }
    let version = match object.remove("version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => return Err(rule_error(&RuleError::new("version", meridian_alerts::RuleErrorCode::InvalidType, "the version is a whole number"))),
    };
    let rule = Rule::from_json(&value).map_err(|e| rule_error(&e))?;
    if rule.id.as_str() == "test" {
        return Err(rule_error(&RuleError::new("id", meridian_alerts::RuleErrorCode::InvalidValue, "\"test\" is reserved (POST …/alerts/rules/test tests a rule)")));
    }
    Ok((rule, version))
}

/// The purge of the alert history older than `retention_days`, as a module task.
fn purge_task(service: Arc<AlertsService>, retention_days: u32, every: Duration) -> Task {
    Task {
        name: "alerts_history_purge",
        every,
        run: Arc::new(move || {
            let cutoff = Timestamp::now().millis() - i64::from(retention_days) * 86_400_000;
            let purged = service.purge_history_before(cutoff)?;
            Ok(if purged > 0 { format!("purged {purged} alert history entries older than {retention_days} days") } else { String::new() })
        }),
    }
}

/// Refuses channels that are not webhook endpoints of the app.
async fn check_channels(state: &AlertsState, rule: &Rule) -> Result<(), ApiError> {
    if rule.channels.is_empty() {
        return Ok(());
    }
    let store = state.notify_store.clone();
    let app = rule.app.clone();
    let endpoints = blocking(move || meridian_notify::endpoints_in_store(&*store, &app)).await?.map_err(ApiError::internal)?;
    for (i, channel) in rule.channels.iter().enumerate() {
        let channel = &channel.endpoint;
        if !endpoints.iter().any(|e| e.id.as_str() == channel) {
            return Err(rule_error(&RuleError::new(
                format!("channels[{i}]"),
                meridian_alerts::RuleErrorCode::InvalidValue,
                format!("{channel:?} is not a webhook endpoint of app {}; create one with POST /v1/apps/{}/webhooks and name its id", rule.app, rule.app),
            )));
        }
    }
    Ok(())
}

fn view(rule: &Rule, firing_since: Option<i64>, in_force: bool) -> AlertRule {
    let status = if rule.paused {
        "paused"
    } else if firing_since.is_some() {
        "firing"
    } else {
        "ok"
    };
    AlertRule { rule: serde_json::to_value(rule).unwrap_or_default(), version: rule.version, status: status.to_owned(), firing_since_ms: firing_since, in_force }
}

/// A rule as answered after a read or a change: with its status as of the processor's
/// last commit, whether its version is in force, and its version as the `ETag`.
async fn rule_answer(state: &AlertsState, rule: &Rule) -> Result<Response, ApiError> {
    let firing = state.call(|s| s.firing()).await?;
    Ok(with_etag(view(rule, firing.get(&rule.id).copied(), state.service.in_force(&rule.id)), StatusCode::OK))
}

fn with_etag(rule: AlertRule, status: StatusCode) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", rule.version)).ok();
    let mut response = (status, Json(rule)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn rule_id(text: &str) -> Result<RuleId, ApiError> {
    RuleId::new(text).map_err(|_| ApiError::not_found("unknown_rule", format!("no alert rule {text:?}")))
}

fn transition_view(t: &Transition, id: String, recorded_ms: Option<i64>) -> AlertTransition {
    AlertTransition {
        id,
        rule: t.rule.to_string(),
        rule_version: t.rule_version,
        rule_name: t.rule_name.clone(),
        severity: t.severity.as_str().to_owned(),
        state: t.state.as_str().to_owned(),
        window_start_ms: t.window_start.0,
        window_end_ms: t.window_end.0,
        value: t.value,
        expected: t.expected,
        threshold: t.threshold,
        reason: t.reason.clone(),
        channels: t.channels.iter().map(|c| c.endpoint.clone()).collect(),
        recorded_ms,
        deliveries: Vec::new(),
    }
}

fn history_view(entry: HistoryEntry) -> AlertTransition {
    transition_view(&entry.transition, entry.id, Some(entry.recorded_ms))
}

fn evaluation_view(e: &Evaluation) -> AlertEvaluation {
    let outcome = serde_json::to_value(e.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    AlertEvaluation {
        rule_version: e.rule_version,
        window_start_ms: e.window_start.0,
        window_end_ms: e.window_end.0,
        value: e.value,
        samples: e.samples,
        expected: e.expected,
        threshold: e.threshold,
        outcome,
        firing: e.firing,
    }
}

fn audit_json(rule: &Rule) -> Option<Value> {
    serde_json::to_value(rule).ok()
}

/// The app's alert rules with their status.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/alerts/rules",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The rules, by id", body = AlertRuleList)),
    extensions(("x-permission" = json!("read"))),
)]
async fn list_rules(State(state): State<Arc<AlertsState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<AlertRuleList>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let rules = state.service.list(&app);
    let firing = state.call(|s| s.firing()).await?;
    Ok(Json(AlertRuleList { rules: rules.iter().map(|r| view(r, firing.get(&r.id).copied(), state.service.in_force(&r.id))).collect() }))
}

/// Adds an alert rule (version 1); in force within a second, without a restart.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/alerts/rules",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = AlertRuleInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = AlertRule),
        (status = 400, description = "Invalid rule (`invalid_rule`, `details.field` names the field)", body = meridian_api::ErrorBody),
        (status = 409, description = "A rule of that id exists, or the app has alerts.max_rules_per_app rules", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn create_rule(State(state): State<Arc<AlertsState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let (rule, _) = rule_from_body(&app, None, &body)?;
    check_channels(&state, &rule).await?;
    let stored = state.call(move |s| s.create(rule)).await?;
    audit_app(&state.app, &principal, &app, "alert_rule.create", stored.id.to_string(), None, audit_json(&stored)).await?;
    Ok(with_etag(view(&stored, None, state.service.in_force(&stored.id)), StatusCode::CREATED))
}

/// One alert rule with its status (its version is also the `ETag`).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/alerts/rules/{id}",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = AlertRule), (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn get_rule(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let id = rule_id(&id)?;
    let rule = state.service.get(&app, &id).map_err(alerts_error)?;
    rule_answer(&state, &rule).await
}

/// Replaces an alert rule; the change names the version it was made from (`If-Match` or
/// `version`), and a stale one is refused (409 `stale_version`). Open windows are kept
/// for a change of threshold, condition, severity, cool-down or channels; a change of
/// metric, filter or window starts fresh windows.
#[utoipa::path(
    put,
    path = "/v1/apps/{app}/alerts/rules/{id}",
    tag = "alerts",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("id" = String, Path, description = "Rule id"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from (else the body's `version`)"),
    ),
    request_body(content = AlertRuleInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The rule at its new version", body = AlertRule),
        (status = 400, description = "Invalid rule (`invalid_rule`, `details.field`) or no version", body = meridian_api::ErrorBody),
        (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody),
        (status = 409, description = "Stale version", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn update_rule(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let id = rule_id(&id)?;
    state.service.get(&app, &id).map_err(alerts_error)?;
    let (rule, body_version) = rule_from_body(&app, Some(id.as_str()), &body)?;
    let expected = expected_version(&headers, body_version)?;
    check_channels(&state, &rule).await?;
    let (before, after) = state.call(move |s| s.update(rule, expected)).await?;
    audit_app(&state.app, &principal, &app, "alert_rule.update", id.to_string(), audit_json(&before), audit_json(&after)).await?;
    rule_answer(&state, &after).await
}

fn version_body(body: &[u8]) -> Result<Option<u64>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let request: ExpectedVersion = parse_json(body)?;
    Ok(request.version)
}

/// Deletes an alert rule at the version given (`If-Match` or `version`); a firing alert
/// resolves (reason `deleted`). Its history stays.
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/alerts/rules/{id}",
    tag = "alerts",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("id" = String, Path, description = "Rule id"),
        ("If-Match" = Option<String>, Header, description = "The version the deletion was decided on (else the body's `version`)"),
    ),
    request_body(content = ExpectedVersion, content_type = "application/json"),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody),
        (status = 409, description = "Stale version", body = meridian_api::ErrorBody),
    ),
    extensions(("x-permission" = json!("admin"))),
)]
async fn delete_rule(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<StatusCode, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let id = rule_id(&id)?;
    state.service.get(&app, &id).map_err(alerts_error)?;
    let expected = expected_version(&headers, version_body(&body)?)?;
    let deleted = {
        let (app, id) = (app.clone(), id.clone());
        state.call(move |s| s.delete(&app, &id, expected)).await?
    };
    audit_app(&state.app, &principal, &app, "alert_rule.delete", id.to_string(), audit_json(&deleted), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(state: &AlertsState, app: String, id: String, headers: HeaderMap, body: Bytes, paused: bool) -> Result<Response, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let id = rule_id(&id)?;
    state.service.get(&app, &id).map_err(alerts_error)?;
    let expected = expected_version(&headers, version_body(&body)?)?;
    let (before, after) = {
        let (app, id) = (app.clone(), id.clone());
        state.call(move |s| s.set_paused(&app, &id, paused, expected)).await?
    };
    let action = if paused { "alert_rule.pause" } else { "alert_rule.resume" };
    audit_app(&state.app, &principal, &app, action, id.to_string(), audit_json(&before), audit_json(&after)).await?;
    rule_answer(state, &after).await
}

/// Pauses an alert rule at the version given: its windows are dropped, nothing is
/// evaluated, a firing alert resolves (reason `paused`).
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/alerts/rules/{id}/pause",
    tag = "alerts",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("id" = String, Path, description = "Rule id"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from (else the body's `version`)"),
    ),
    request_body(content = ExpectedVersion, content_type = "application/json"),
    responses((status = 200, description = "The rule, paused", body = AlertRule), (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody), (status = 409, description = "Stale version", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn pause_rule(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    set_paused(&state, app, id, headers, body, true).await
}

/// Resumes a paused alert rule at the version given: fresh windows from the next full one.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/alerts/rules/{id}/resume",
    tag = "alerts",
    params(
        ("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"),
        ("id" = String, Path, description = "Rule id"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from (else the body's `version`)"),
    ),
    request_body(content = ExpectedVersion, content_type = "application/json"),
    responses((status = 200, description = "The rule, running", body = AlertRule), (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody), (status = 409, description = "Stale version", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn resume_rule(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    set_paused(&state, app, id, headers, body, false).await
}

/// How many items to answer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// At most this many, 1-10000 (default 1440).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// Which transitions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Only this rule's.
    rule: Option<String>,
    /// At most this many, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A rule's recent evaluations (closed windows with value, baseline, threshold and
/// verdict), oldest first: the editor's preview chart. At most
/// `alerts.evaluations_per_rule` are kept per rule.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/alerts/rules/{id}/evaluations",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Rule id"), LimitQuery),
    responses((status = 200, description = "Evaluations", body = AlertEvaluations), (status = 404, description = "Unknown rule", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn rule_evaluations(State(state): State<Arc<AlertsState>>, Path((app, id)): Path<(String, String)>, Query(q): Query<LimitQuery>, headers: HeaderMap) -> Result<Json<AlertEvaluations>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let id = rule_id(&id)?;
    let limit = q.limit.unwrap_or(1440);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 10000").with_details(json!({"field": "limit"})));
    }
    let rule = id.to_string();
    let evaluations = state.call(move |s| s.evaluations(&app, &id, limit)).await?;
    Ok(Json(AlertEvaluations { rule, evaluations: evaluations.iter().map(evaluation_view).collect() }))
}

/// The app's alert history: every fired and resolved transition, newest first.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/alerts/history",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), HistoryQuery),
    responses((status = 200, description = "Transitions", body = AlertHistory)),
    extensions(("x-permission" = json!("read"))),
)]
async fn history(State(state): State<Arc<AlertsState>>, Path(app): Path<String>, Query(q): Query<HistoryQuery>, headers: HeaderMap) -> Result<Json<AlertHistory>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 1000").with_details(json!({"field": "limit"})));
    }
    let rule = q.rule.as_deref().map(RuleId::new).transpose().map_err(|e| ApiError::bad_request("invalid_rule_id", e.to_string()).with_details(json!({"field": "rule"})))?;
    let entries = state.call(move |s| s.history(&app, rule.as_ref(), limit)).await?;
    let notify = state.notify_store.clone();
    let transitions = blocking(move || {
        entries
            .into_iter()
            .map(|entry| {
                let deliveries = deliveries_of(&*notify, &entry)?;
                let mut view = history_view(entry);
                view.deliveries = deliveries;
                Ok(view)
            })
            .collect::<meridian_notify::Result<Vec<_>>>()
    })
    .await?
    .map_err(ApiError::internal)?;
    Ok(Json(AlertHistory { transitions }))
}

/// What became of a transition's notification to each of its channels (blocking).
fn deliveries_of(notify: &dyn KvStore, entry: &HistoryEntry) -> meridian_notify::Result<Vec<AlertDelivery>> {
    let mut out = Vec::new();
    for channel in &entry.transition.channels {
        let request_id = format!("{}:{}", entry.id, channel.endpoint);
        let found = match meridian_notify::EndpointId::new(channel.endpoint.clone()) {
            Ok(endpoint) => meridian_notify::delivery_in_store(notify, &request_id, &endpoint)?,
            Err(_) => None,
        };
        out.push(match found {
            None => AlertDelivery {
                endpoint: channel.endpoint.clone(),
                state: "queued".into(),
                delivery_id: None,
                attempts: 0,
                last_result: None,
                last_error: None,
                delivered_ms: None,
                next_attempt_ms: None,
            },
            Some(detail) => {
                let d = detail.delivery;
                AlertDelivery {
                    endpoint: channel.endpoint.clone(),
                    state: d.state.as_str().to_owned(),
                    delivery_id: Some(d.id.to_string()),
                    attempts: d.attempts,
                    last_result: d.last_result,
                    last_error: detail.attempts.iter().rev().find_map(|a| a.error.clone()),
                    delivered_ms: d.delivered_ms,
                    next_attempt_ms: d.next_attempt_ms,
                }
            }
        });
    }
    Ok(out)
}

/// Reads the events of `app` appended to `topic` since `since_ms` (at most `max`, the
/// newest kept), in arrival order. Blocking.
fn recent_events(log: &dyn Log, topic: &TopicName, app: &AppId, since_ms: i64, max: usize) -> anyhow::Result<(Vec<Event>, bool)> {
    let mut events = Vec::new();
    let mut truncated = false;
    for partition in 0..log.partition_count(topic)? {
        let offsets = log.offsets(topic, partition)?;
        // The first record appended at or after `since_ms` (append times grow with offsets).
        let (mut lo, mut hi) = (offsets.start, offsets.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match log.read(topic, partition, mid, 1, 16 << 20)?.first() {
                Some(record) if record.timestamp < since_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let mut at = lo;
        while at < offsets.end {
            let records = log.read(topic, partition, at, 4096, 8 << 20)?;
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            for record in &records {
                if let Ok(LogEntry::Event(event)) = LogEntry::decode(&record.value) {
                    if &event.app == app {
                        events.push(event);
                    }
                }
            }
            if events.len() > 2 * max {
                events.sort_by_key(|e| e.received.0);
                events.drain(..events.len() - max);
                truncated = true;
            }
        }
    }
    events.sort_by_key(|e| e.received.0);
    if events.len() > max {
        events.drain(..events.len() - max);
        truncated = true;
    }
    Ok((events, truncated))
}

/// Evaluates a rule (not saved) over the last hours of the app's events, read from the
/// log: every window, and when it would have fired and resolved. Nobody is notified.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/alerts/rules/test",
    tag = "alerts",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = AlertRuleTest, content_type = "application/json"),
    responses((status = 200, description = "What the rule would have done", body = AlertRuleTestResult), (status = 400, description = "Invalid rule (`invalid_rule`, `details.field`) or hours", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("read"))),
)]
async fn test_rule(State(state): State<Arc<AlertsState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Json<AlertRuleTestResult>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let request: Value = parse_json(&body)?;
    let Some(rule) = request.get("rule") else {
        return Err(ApiError::bad_request("invalid_rule", "the body is {\"rule\": {…}, \"hours\": n}").with_details(json!({"field": "rule"})));
    };
    let hours = match request.get("hours") {
        None | Some(Value::Null) => 24,
        Some(v) => v.as_u64().ok_or_else(|| ApiError::bad_request("invalid_hours", "hours is a whole number").with_details(json!({"field": "hours"})))?,
    };
    let max_hours = u64::from(state.service.config().max_test_hours);
    if !(1..=max_hours).contains(&hours) {
        return Err(ApiError::bad_request("invalid_hours", format!("hours must be between 1 and {max_hours} (alerts.max_test_hours)")).with_details(json!({"field": "hours"})));
    }
    let mut rule = rule.clone();
    if let Some(object) = rule.as_object_mut() {
        object.entry("id").or_insert_with(|| Value::String("rule-test".into()));
    }
    let (rule, _) = rule_from_body(&app, None, &serde_json::to_vec(&rule).unwrap_or_default())?;
    let to_ms = Timestamp::now().millis();
    let from_ms = to_ms - hours as i64 * 3_600_000;
    let log = state.app.log.clone();
    let topic = state.app.events_topic.clone();
    let max = state.service.config().max_test_events;
    // Events appended up to a window before `from` warm the rule's first windows.
    let since = from_ms - rule.size_ms().min(7 * 86_400_000) - rule.lateness_ms();
    let result = blocking(move || -> anyhow::Result<_> {
        let (events, truncated) = recent_events(&*log, &topic, &app, since, max)?;
        let n_events = events.len() as u64;
        let outcome = meridian_alerts::backtest(&rule, events.iter(), Timestamp(from_ms), Timestamp(to_ms));
        Ok((outcome, n_events, truncated))
    })
    .await?
    .map_err(ApiError::internal)?;
    let (outcome, events_read, truncated) = result;
    let outcome = outcome.map_err(|e| rule_error(&e))?;
    Ok(Json(AlertRuleTestResult {
        from_ms,
        to_ms,
        events_read,
        truncated,
        evaluations: outcome.evaluations.iter().map(evaluation_view).collect(),
        transitions: outcome.transitions.iter().map(|t| transition_view(t, t.id(), None)).collect(),
        late_events: outcome.late_events,
    }))
}
