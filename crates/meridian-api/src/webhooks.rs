//! Webhook endpoints of an app and the delivery log of the notifications sent to them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/apps/{app}/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http` or `https` URL; loopback, private and metadata addresses are refused unless
    /// the server's `notify.network` allows them.
    pub url: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Event types it wants (`trigger.fired`, `alert.firing`…); empty: all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Create it disabled.
    #[serde(default)]
    pub disabled: bool,
}

/// `PATCH /v1/apps/{app}/webhooks/{id}`: every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New URL (checked like at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Disable or enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A signing secret (Standard Webhooks: `whsec_<base64>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    /// The secret.
    pub secret: String,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
    /// When it stops signing (a rotated-out secret), ms since the epoch.
    pub expires_ms: Option<i64>,
}

/// A webhook endpoint (its secrets only at creation, rotation and `GET …/secrets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Id.
    pub id: String,
    /// App.
    pub app: String,
    /// URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Event types it wants; empty: all.
    pub event_types: Vec<String>,
    /// Disabled endpoints get nothing.
    pub disabled: bool,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Its active secrets, when the answer carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<WebhookSecret>>,
}

/// `GET /v1/apps/{app}/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// The app's endpoints.
    pub webhooks: Vec<Webhook>,
}

/// `POST …/webhooks/{id}/rotate-secret`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing, seconds (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
}

/// One delivery of a notification to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Id, sent as `webhook-id` (the same on every retry).
    pub id: String,
    /// Endpoint.
    pub endpoint_id: String,
    /// The notification request it delivers.
    pub request_id: String,
    /// Its event type.
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was created, ms since the epoch.
    pub created_ms: i64,
    /// When it is due next (pending only).
    pub next_attempt_ms: Option<i64>,
    /// Status code or error code of the last attempt.
    pub last_result: Option<String>,
    /// When it was delivered.
    pub delivered_ms: Option<i64>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    /// Deliveries.
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// One attempt of a delivery: an entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it started, ms since the epoch.
    pub started_ms: i64,
    /// URL posted to.
    pub url: String,
    /// HTTP status of the answer, if one came.
    pub status: Option<u16>,
    /// Stable error code of a failure (`http_status`, `timeout`, `ssrf_refused`…).
    pub error_code: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// Duration, microseconds.
    pub latency_us: u64,
    /// The first KiB of the answer's body.
    pub response_body: String,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: Delivery,
    /// Its delivery log.
    pub attempts: Vec<Attempt>,
    /// The exact body posted (and signed).
    pub body: String,
}

/// `POST …/webhooks/{id}/test`: a `webhook.test` notification sent to this endpoint alone,
/// through the log like every notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestSent {
    /// The notification request's id.
    pub request_id: String,
    /// The delivery's id (its `webhook-id`); follow it in the delivery log.
    pub delivery_id: String,
}
