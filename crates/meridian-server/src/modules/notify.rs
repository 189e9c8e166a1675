//! The notifications capability's adapter: per-app webhook endpoints (signed the Standard
//! Webhooks way, secrets rotatable), the delivery log with manual redelivery, the processor
//! that turns notification requests of the `notifications` topic into deliveries, and the
//! delivery worker as a service of the server.

use crate::auth::{app_id, require};
use crate::error::{parse_json, ApiError};
use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext, Service, Task};
use crate::state::{blocking, random_id, AppState};
use axum::body::Bytes;
use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meridian_api::webhooks::{Attempt, CreateWebhook, Delivery, DeliveryDetail, DeliveryPage, RotateSecret, TestSent, UpdateWebhook, Webhook, WebhookList, WebhookSecret};
use meridian_event::AppId;
use meridian_log::TopicName;
use meridian_notify::{DeliveryFilter, DeliveryId, DeliveryState, Endpoint, EndpointId, EndpointUpdate, NewEndpoint, NotificationProcessor, NotificationRequest, Notifier, NotifyError};
use meridian_tenancy::{NewAuditEntry, Permission, Principal};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The notifications capability.
#[derive(Debug)]
pub(crate) struct Notify;

struct NotifyState {
    app: Arc<AppState>,
    notifier: Arc<Notifier>,
    topic: TopicName,
}

/// The delivery worker as a server service.
struct Worker(Arc<Notifier>);

impl Service for Worker {
    fn start(&self, handle: &tokio::runtime::Handle) {
        self.0.clone().spawn(handle);
    }
    fn stop(&self) {
        self.0.shutdown();
    }
}

/// Deletes delivered and dead deliveries older than the retention (`notify.retention_days`).
fn purge_task(notifier: Arc<Notifier>, retention: Duration, every: Duration) -> Task {
    Task {
        name: "notify_purge",
        every,
        run: Arc::new(move || {
            let cutoff = meridian_event::Timestamp::now().millis() - retention.as_millis() as i64;
            let report = notifier.purge_finished_before(cutoff)?;
            Ok(if report.deliveries > 0 { format!("purged {} finished deliveries ({} attempts)", report.deliveries, report.attempts) } else { String::new() })
        }),
    }
}

impl Capability for Notify {
    fn name(&self) -> &'static str {
        "notify"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = ctx.config().notify.clone();
        let topic = TopicName::new(config.topic.clone())?;
        ctx.state.log.ensure_topic(&topic, ctx.config().log.partitions)?;
        let notifier = Arc::new(Notifier::new(ctx.store()?, config.clone())?);
        let processor = NotificationProcessor::new(&config)?.with_waker(notifier.waker());
        let state = Arc::new(NotifyState { app: ctx.state.clone(), notifier: notifier.clone(), topic });
        let routes = OpenApiRouter::new()
            .routes(routes!(create_webhook, list_webhooks))
            .routes(routes!(get_webhook, update_webhook, delete_webhook))
            .routes(routes!(webhook_secrets))
            .routes(routes!(rotate_secret))
            .routes(routes!(send_test))
            .routes(routes!(list_deliveries))
            .routes(routes!(get_delivery))
            .routes(routes!(redeliver))
            .with_state(state);
        let mut module = ModuleBuilder::new("notify");
        if let Some(retention) = config.retention() {
            module = module.task(purge_task(notifier.clone(), retention, Duration::from_secs(config.purge_interval_secs)));
        }
        let module = module
            .processor(Box::new(processor))
            .routes(routes)
            .console(crate::console::notify::section(ctx))
            .service(Arc::new(Worker(notifier)))
            .erasure(Erasure::NoUserData { why: "webhook endpoints and the log of what was sent to them; notification payloads are written by the app's own rules" })
            .build()?;
        Ok(Some(module))
    }
}

fn notify_error(e: NotifyError) -> ApiError {
    match e {
        NotifyError::InvalidUrl { .. } => ApiError::bad_request("invalid_url", e.to_string()),
        NotifyError::SsrfRefused { .. } => ApiError::bad_request("ssrf_refused", e.to_string()),
        NotifyError::UnresolvableHost { .. } => ApiError::bad_request("unresolvable_host", e.to_string()),
        NotifyError::InvalidEndpoint(_) => ApiError::bad_request("invalid_webhook", e.to_string()),
        NotifyError::InvalidRequest(_) => ApiError::bad_request("invalid_argument", e.to_string()),
        NotifyError::EndpointNotFound(_) => ApiError::not_found("unknown_webhook", e.to_string()),
        NotifyError::DeliveryNotFound(_) => ApiError::not_found("unknown_delivery", e.to_string()),
        NotifyError::DeliveryPending(_) => ApiError::conflict("delivery_pending", e.to_string()),
        other => ApiError::internal(other),
    }
}

fn view(endpoint: &Endpoint, with_secrets: bool) -> Webhook {
    let now = meridian_event::Timestamp::now().millis();
    Webhook {
        id: endpoint.id.to_string(),
        app: endpoint.app.to_string(),
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        event_types: endpoint.event_types.clone(),
        disabled: endpoint.disabled,
        created_ms: endpoint.created_ms,
        secrets: with_secrets.then(|| endpoint.active_secrets(now).map(|s| WebhookSecret { secret: s.secret.clone(), created_ms: s.created_ms, expires_ms: s.expires_ms }).collect()),
    }
}

fn delivery_view(d: &meridian_notify::Delivery) -> Delivery {
    Delivery {
        id: d.id.to_string(),
        endpoint_id: d.endpoint_id.to_string(),
        request_id: d.request_id.clone(),
        event_type: d.event_type.clone(),
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        created_ms: d.created_ms,
        next_attempt_ms: d.next_attempt_ms,
        last_result: d.last_result.clone(),
        delivered_ms: d.delivered_ms,
    }
}

/// The endpoint `id` of `app` (another app's endpoint is unknown here).
async fn endpoint_of(state: &NotifyState, app: &AppId, id: &str) -> Result<Endpoint, ApiError> {
    let id = EndpointId::new(id).map_err(|_| ApiError::not_found("unknown_webhook", format!("no webhook endpoint {id:?}")))?;
    let endpoint = state.notifier.endpoint(&id).await.map_err(notify_error)?;
    if &endpoint.app != app {
        return Err(ApiError::not_found("unknown_webhook", format!("app {app} has no webhook endpoint {id}")));
    }
    Ok(endpoint)
}

/// Audits a change of the app's notifications (endpoint views never carry secrets).
async fn audit(state: &NotifyState, principal: &Principal, app: &AppId, action: &'static str, target: String, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> Result<(), ApiError> {
    let mut entry = NewAuditEntry::new(principal.actor(), action, target).app(app.clone());
    entry.before = before;
    entry.after = after;
    let tenancy = state.app.tenancy.clone();
    blocking(move || tenancy.audit().record(entry)).await??;
    Ok(())
}

fn json_of(webhook: &Webhook) -> Option<serde_json::Value> {
    serde_json::to_value(webhook).ok()
}

/// Adds a webhook endpoint; its signing secret is in the answer (and at `…/secrets`).
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/webhooks",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    request_body(content = CreateWebhook, content_type = "application/json"),
    responses((status = 201, description = "Created, with its secret", body = Webhook)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn create_webhook(State(state): State<Arc<NotifyState>>, Path(app): Path<String>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let request: CreateWebhook = parse_json(&body)?;
    if !state.app.tenancy.app_exists(&app) {
        return Err(ApiError::not_found("unknown_app", format!("unknown app {:?}", app.as_str())));
    }
    let new = NewEndpoint { app: app.clone(), url: request.url, description: request.description, event_types: request.event_types, disabled: request.disabled };
    let endpoint = state.notifier.create_endpoint(new).await.map_err(notify_error)?;
    audit(&state, &principal, &app, "webhook.create", endpoint.id.to_string(), None, json_of(&view(&endpoint, false))).await?;
    Ok((StatusCode::CREATED, Json(view(&endpoint, true))))
}

/// The app's webhook endpoints (without secrets).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/webhooks",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "Endpoints", body = WebhookList)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn list_webhooks(State(state): State<Arc<NotifyState>>, Path(app): Path<String>, headers: HeaderMap) -> Result<Json<WebhookList>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Admin, &app)?;
    let endpoints = state.notifier.list_endpoints(&app).await.map_err(notify_error)?;
    Ok(Json(WebhookList { webhooks: endpoints.iter().map(|e| view(e, false)).collect() }))
}

/// One webhook endpoint (without secrets).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/webhooks/{id}",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint", body = Webhook), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn get_webhook(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<Webhook>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Admin, &app)?;
    Ok(Json(view(&endpoint_of(&state, &app, &id).await?, false)))
}

/// Changes a webhook endpoint (a new URL is checked like at creation).
#[utoipa::path(
    patch,
    path = "/v1/apps/{app}/webhooks/{id}",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    request_body(content = UpdateWebhook, content_type = "application/json"),
    responses((status = 200, description = "The endpoint", body = Webhook), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn update_webhook(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Json<Webhook>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let request: UpdateWebhook = parse_json(&body)?;
    let before = endpoint_of(&state, &app, &id).await?;
    let update = EndpointUpdate { url: request.url, description: request.description, event_types: request.event_types, disabled: request.disabled };
    let after = state.notifier.update_endpoint(&before.id, update).await.map_err(notify_error)?;
    audit(&state, &principal, &app, "webhook.update", after.id.to_string(), json_of(&view(&before, false)), json_of(&view(&after, false))).await?;
    Ok(Json(view(&after, false)))
}

/// Removes a webhook endpoint; its pending deliveries are dropped.
#[utoipa::path(
    delete,
    path = "/v1/apps/{app}/webhooks/{id}",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn delete_webhook(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let before = endpoint_of(&state, &app, &id).await?;
    state.notifier.delete_endpoint(&before.id).await.map_err(notify_error)?;
    audit(&state, &principal, &app, "webhook.delete", before.id.to_string(), json_of(&view(&before, false)), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's active signing secrets (two during a rotation).
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/webhooks/{id}/secrets",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, description = "The endpoint with its secrets", body = Webhook), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn webhook_secrets(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<Webhook>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Admin, &app)?;
    Ok(Json(view(&endpoint_of(&state, &app, &id).await?, true)))
}

/// Rotates the signing secret: the new one signs at once, the previous one keeps signing
/// (a second signature) for the grace period, so receivers can switch without a gap.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    request_body(content = RotateSecret, content_type = "application/json"),
    responses((status = 200, description = "The endpoint with its secrets", body = Webhook), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn rotate_secret(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Json<Webhook>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let request: RotateSecret = if body.is_empty() { RotateSecret::default() } else { parse_json(&body)? };
    let endpoint = endpoint_of(&state, &app, &id).await?;
    let grace = request.grace_secs.map(Duration::from_secs);
    let rotated = state.notifier.rotate_secret(&endpoint.id, grace).await.map_err(notify_error)?;
    audit(&state, &principal, &app, "webhook.rotate_secret", rotated.id.to_string(), None, Some(serde_json::json!({"grace_secs": request.grace_secs}))).await?;
    Ok(Json(view(&rotated, true)))
}

/// Sends a `webhook.test` notification to this endpoint alone (whatever its event types),
/// through the log and the delivery worker like every notification.
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/webhooks/{id}/test",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 202, description = "Sent to the log; follow the delivery", body = TestSent), (status = 404, description = "Unknown endpoint", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn send_test(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<(StatusCode, Json<TestSent>), ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let endpoint = endpoint_of(&state, &app, &id).await?;
    let request_id = random_id("test-", 8)?;
    let now = meridian_event::Timestamp::now().millis();
    let request = NotificationRequest {
        id: request_id.clone(),
        app: app.clone(),
        event_type: "webhook.test".into(),
        payload: serde_json::json!({"message": "a test notification from Meridian", "endpoint": endpoint.id.to_string(), "sent_by": principal.actor().to_string()}),
        created_ms: now.max(endpoint.created_ms),
        endpoint: Some(endpoint.id.clone()),
        bare: false,
    };
    let record = meridian_log::AppendRecord { key: bytes::Bytes::from(app.to_string()), value: bytes::Bytes::from(request.to_record_value()), timestamp: now };
    state.app.log.append(&state.topic, vec![record]).await.map_err(ApiError::internal)?;
    let delivery_id = DeliveryId::derive(&request_id, &endpoint.id).to_string();
    audit(&state, &principal, &app, "webhook.test", endpoint.id.to_string(), None, Some(serde_json::json!({"request_id": request_id}))).await?;
    Ok((StatusCode::ACCEPTED, Json(TestSent { request_id, delivery_id })))
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// Only this endpoint's.
    endpoint: Option<String>,
    /// Only in this state.
    #[param(pattern = "^(pending|delivered|dead)$")]
    state: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Deliveries per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// The app's deliveries, newest first.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/deliveries",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = DeliveryPage)),
    extensions(("x-permission" = json!("read"))),
)]
async fn list_deliveries(State(state): State<Arc<NotifyState>>, Path(app): Path<String>, Query(q): Query<DeliveryQuery>, headers: HeaderMap) -> Result<Json<DeliveryPage>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Read, &app)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 500"));
    }
    let endpoint = q.endpoint.as_deref().map(EndpointId::new).transpose().map_err(|e| ApiError::bad_request("invalid_webhook", e.to_string()))?;
    let delivery_state = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(DeliveryState::Pending),
        Some("delivered") => Some(DeliveryState::Delivered),
        Some("dead") => Some(DeliveryState::Dead),
        Some(other) => return Err(ApiError::bad_request("invalid_state", format!("state must be pending, delivered or dead, not {other:?}"))),
    };
    let page = state.notifier.deliveries(&app, DeliveryFilter { endpoint, state: delivery_state }, q.cursor.as_deref().filter(|c| !c.is_empty()), limit).await.map_err(|e| match e {
        NotifyError::InvalidRequest(_) | NotifyError::InvalidEndpoint(_) => ApiError::bad_request("invalid_cursor", e.to_string()),
        other => notify_error(other),
    })?;
    Ok(Json(DeliveryPage { deliveries: page.deliveries.iter().map(delivery_view).collect(), next_cursor: page.next_cursor }))
}

async fn delivery_of(state: &NotifyState, app: &AppId, id: &str) -> Result<meridian_notify::DeliveryDetail, ApiError> {
    let id = DeliveryId::new(id).map_err(|_| ApiError::not_found("unknown_delivery", format!("no webhook delivery {id:?}")))?;
    let detail = state.notifier.delivery(&id).await.map_err(notify_error)?;
    if &detail.delivery.app != app {
        return Err(ApiError::not_found("unknown_delivery", format!("app {app} has no webhook delivery {id}")));
    }
    Ok(detail)
}

/// A delivery with its delivery log and the exact body sent.
#[utoipa::path(
    get,
    path = "/v1/apps/{app}/deliveries/{id}",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Delivery id (the webhook-id)")),
    responses((status = 200, description = "The delivery", body = DeliveryDetail), (status = 404, description = "Unknown delivery", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn get_delivery(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<DeliveryDetail>, ApiError> {
    let app = app_id(&app)?;
    require(&state.app, &headers, Permission::Admin, &app)?;
    let detail = delivery_of(&state, &app, &id).await?;
    let attempts = detail
        .attempts
        .iter()
        .map(|a| Attempt {
            attempt: a.attempt,
            started_ms: a.started_ms,
            url: a.url.clone(),
            status: a.status,
            error_code: a.error_code.clone(),
            error: a.error.clone(),
            latency_us: a.latency_us,
            response_body: a.response_body.clone(),
        })
        .collect();
    Ok(Json(DeliveryDetail { delivery: delivery_view(&detail.delivery), attempts, body: detail.delivery.body.clone() }))
}

/// Sends a delivered or dead delivery again (same `webhook-id`, so receivers can tell).
#[utoipa::path(
    post,
    path = "/v1/apps/{app}/deliveries/{id}/redeliver",
    tag = "webhooks",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z0-9_.-]{1,64}$"), ("id" = String, Path, description = "Delivery id")),
    responses((status = 200, description = "Pending again", body = Delivery), (status = 404, description = "Unknown delivery", body = meridian_api::ErrorBody), (status = 409, description = "Still pending", body = meridian_api::ErrorBody)),
    extensions(("x-permission" = json!("admin"))),
)]
async fn redeliver(State(state): State<Arc<NotifyState>>, Path((app, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Json<Delivery>, ApiError> {
    let app = app_id(&app)?;
    let principal = require(&state.app, &headers, Permission::Admin, &app)?;
    let detail = delivery_of(&state, &app, &id).await?;
    let delivery = state.notifier.redeliver(&detail.delivery.id).await.map_err(notify_error)?;
    audit(&state, &principal, &app, "delivery.redeliver", delivery.id.to_string(), None, None).await?;
    Ok(Json(delivery_view(&delivery)))
}
