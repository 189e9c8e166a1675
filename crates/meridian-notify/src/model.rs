//! The values notifications store and answer with: requests, endpoints, deliveries, attempts.

use crate::{NotifyError, Result};
use meridian_event::{AppId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id: 1-64 of `[A-Za-z0-9_-]`.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                let ok = !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if ok {
                    Ok($name(value))
                } else {
                    Err(NotifyError::InvalidEndpoint(format!("{} {:?} must be 1-64 of [A-Za-z0-9_-]", $kind, value.chars().take(70).collect::<String>())))
                }
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NotifyError;
            fn try_from(value: String) -> Result<Self> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A webhook endpoint's id: `ep_` and 24 random hex digits, unique across apps.
    EndpointId, "endpoint id"
);
prefixed_id!(
    /// A delivery's id, sent as the `webhook-id` header: `msg_` and the first 16 bytes of
    /// SHA-256(request id, endpoint id) in hex, so the same request to the same endpoint
    /// always has the same id (re-processing creates nothing new; receivers de-duplicate).
    DeliveryId, "delivery id"
);

impl EndpointId {
    /// A new random id.
    pub(crate) fn generate() -> EndpointId {
        let mut bytes = [0u8; 12];
        getrandom::getrandom(&mut bytes).expect("the operating system's random source works");
        EndpointId(format!("ep_{}", hex::encode(bytes)))
    }
}

impl DeliveryId {
    /// The id of the delivery of `request_id` to `endpoint`.
    pub fn derive(request_id: &str, endpoint: &EndpointId) -> DeliveryId {
        let mut hasher = Sha256::new();
        hasher.update((request_id.len() as u64).to_be_bytes());
        hasher.update(request_id.as_bytes());
        hasher.update(endpoint.as_str().as_bytes());
        let digest = hasher.finalize();
        DeliveryId(format!("msg_{}", hex::encode(&digest[..16])))
    }
}

/// What a processor asks to be notified: one record of the notifications topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRequest {
    /// Deterministic, unique id (e.g. `trigger:<rule>:<user>:<offset>`): the same request
    /// emitted twice has the same id, so it is delivered once per endpoint.
    pub id: String,
    /// The app whose endpoints receive it.
    pub app: AppId,
    /// What happened: `trigger.fired`, `alert.firing`… Endpoints subscribe by exact type.
    pub event_type: String,
    /// The webhook's `data`.
    pub payload: serde_json::Value,
    /// When it happened, milliseconds since the epoch.
    pub created_ms: i64,
    /// Only this endpoint (whatever its event types), e.g. a "send a test event" button;
    /// absent: every enabled endpoint of the app that wants the event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointId>,
    /// The payload is the whole webhook body, not wrapped in `{"type", "timestamp",
    /// "data"}`: for receivers that expect a format of their own (an alert in the
    /// Alertmanager webhook format).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare: bool,
}

impl NotificationRequest {
    /// The record value: a JSON object with a top-level `"id"`.
    pub fn to_record_value(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a notification request serialises")
    }

    /// Reads a record value written by [`NotificationRequest::to_record_value`].
    pub fn from_record_value(value: &[u8]) -> Result<NotificationRequest> {
        let request: NotificationRequest = serde_json::from_slice(value).map_err(|e| NotifyError::InvalidRequest(e.to_string()))?;
        if request.id.is_empty() || request.id.len() > 256 {
            return Err(NotifyError::InvalidRequest(format!("id must be 1-256 bytes, got {}", request.id.len())));
        }
        check_event_type(&request.event_type).map_err(NotifyError::InvalidRequest)?;
        Ok(request)
    }

    /// The webhook body: `{"type", "timestamp" (RFC 3339), "data"}`, the payload shape
    /// Standard Webhooks recommends. Deterministic, so a re-created delivery is identical.
    pub fn webhook_body(&self) -> String {
        if self.bare {
            return self.payload.to_string();
        }
        let body = serde_json::json!({
            "type": self.event_type,
            "timestamp": Timestamp(self.created_ms).to_rfc3339(),
            "data": self.payload,
        });
        body.to_string()
    }
}

pub(crate) fn check_event_type(event_type: &str) -> std::result::Result<(), String> {
    let ok = !event_type.is_empty()
        && event_type.len() <= 128
        && event_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("event type {event_type:?} must be 1-128 of [a-z0-9_.-]"))
    }
}

/// One signing secret of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSecret {
    /// `whsec_` and the base64 of 32 random bytes.
    pub secret: String,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: i64,
    /// When it stops signing (set on the previous secret by a rotation); `None` = never.
    pub expires_ms: Option<i64>,
}

impl EndpointSecret {
    /// Whether it signs deliveries made at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|expires| now_ms < expires)
    }
}

/// A webhook endpoint of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Id.
    pub id: EndpointId,
    /// The app whose notifications it receives.
    pub app: AppId,
    /// `http` or `https` URL deliveries are posted to.
    pub url: String,
    /// Free text for operators.
    pub description: String,
    /// Event types it receives; empty = all.
    pub event_types: Vec<String>,
    /// A disabled endpoint gets no new deliveries; pending ones fail (and retry) until it
    /// is enabled again.
    pub disabled: bool,
    /// Signing secrets, oldest first; every active one signs.
    pub secrets: Vec<EndpointSecret>,
    /// Creation time, milliseconds since the epoch. Requests created before it are not
    /// delivered to it (so a replay of old requests does not flood a new endpoint).
    pub created_ms: i64,
}

impl Endpoint {
    /// Whether it wants `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The secrets that sign deliveries made at `now_ms`.
    pub fn active_secrets(&self, now_ms: i64) -> impl Iterator<Item = &EndpointSecret> {
        self.secrets.iter().filter(move |s| s.is_active(now_ms))
    }
}

/// What [`crate::Notifier::create_endpoint`] needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEndpoint {
    /// The app.
    pub app: AppId,
    /// `http` or `https` URL.
    pub url: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Event types; empty = all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Create it disabled.
    #[serde(default)]
    pub disabled: bool,
}

/// Changes to an endpoint; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointUpdate {
    /// New URL (checked like at creation).
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Every attempt failed; only a manual redelivery sends it again.
    Dead,
}

impl DeliveryState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }
}

/// One request to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Id, sent as `webhook-id`.
    pub id: DeliveryId,
    /// App.
    pub app: AppId,
    /// Endpoint.
    pub endpoint_id: EndpointId,
    /// The request it delivers.
    pub request_id: String,
    /// The request's event type.
    pub event_type: String,
    /// The exact body posted (and signed).
    pub body: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts made so far (since creation, across redeliveries).
    pub attempts: u32,
    /// Failed attempts since creation or the last manual redelivery; `max_attempts` of
    /// them make it dead.
    pub failed_attempts: u32,
    /// When the request was created, milliseconds since the epoch.
    pub created_ms: i64,
    /// When it is due next (pending only), milliseconds since the epoch.
    pub next_attempt_ms: Option<i64>,
    /// When the last attempt started.
    pub last_attempt_ms: Option<i64>,
    /// Status code or error code of the last attempt.
    pub last_result: Option<String>,
    /// When it was delivered.
    pub delivered_ms: Option<i64>,
}

/// One attempt of a delivery: an entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it started, milliseconds since the epoch.
    pub started_ms: i64,
    /// URL posted to (the endpoint's URL at the time).
    pub url: String,
    /// HTTP status of the final answer, if one came.
    pub status: Option<u16>,
    /// Stable error code of a failure: `http_status`, `timeout`, `connection_error`,
    /// `dns_error`, `tls_error`, `ssrf_refused`, `too_many_redirects`, `invalid_redirect`,
    /// `endpoint_disabled`, `endpoint_deleted`, `request_error`. `None` on success.
    pub error_code: Option<String>,
    /// Human-readable error.
    pub error: Option<String>,
    /// Duration of the attempt in microseconds.
    pub latency_us: u64,
    /// The first KiB of the response body (lossy UTF-8).
    pub response_body: String,
    /// Redirects followed.
    pub redirects: u32,
    /// The delay drawn before the next attempt, if one was scheduled.
    pub retry_delay_ms: Option<u64>,
}

impl Attempt {
    /// Whether it succeeded.
    pub fn succeeded(&self) -> bool {
        self.error_code.is_none()
    }
}

/// Which deliveries [`crate::Notifier::deliveries`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFilter {
    /// Only this endpoint's.
    pub endpoint: Option<EndpointId>,
    /// Only in this state.
    pub state: Option<DeliveryState>,
}

/// A page of deliveries, newest request first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
    /// Pass it back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A delivery with its attempts (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: Delivery,
    /// Its delivery log.
    pub attempts: Vec<Attempt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> NotificationRequest {
        NotificationRequest {
            id: "trigger:first-checkin:u1:42".into(),
            app: AppId::new("shop").unwrap(),
            event_type: "trigger.fired".into(),
            payload: serde_json::json!({"user": "u1", "count": 1}),
            created_ms: 1_700_000_000_000,
            endpoint: None,
            bare: false,
        }
    }

    #[test]
    fn a_bare_request_sends_its_payload_as_the_whole_body() {
        let mut bare = request();
        bare.bare = true;
        assert_eq!(bare.webhook_body(), bare.payload.to_string());
        let read = NotificationRequest::from_record_value(&bare.to_record_value()).unwrap();
        assert!(read.bare);
        assert!(!String::from_utf8(request().to_record_value()).unwrap().contains("bare"), "the default is not written");
    }

    #[test]
    fn a_request_round_trips_through_its_record_value_which_has_a_top_level_id() {
        let value = request().to_record_value();
        let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(json["id"], "trigger:first-checkin:u1:42");
        assert_eq!(NotificationRequest::from_record_value(&value).unwrap(), request());
    }

    #[test]
    fn bad_record_values_are_refused() {
        assert!(NotificationRequest::from_record_value(b"not json").is_err());
        let mut bad = request();
        bad.event_type = "Trigger Fired".into();
        assert!(NotificationRequest::from_record_value(&bad.to_record_value()).is_err());
        bad = request();
        bad.id = String::new();
        assert!(NotificationRequest::from_record_value(&bad.to_record_value()).is_err());
        assert!(NotificationRequest::from_record_value(br#"{"id":"x","app":"BAD APP","event_type":"a","payload":1,"created_ms":1}"#).is_err());
    }

    #[test]
    fn delivery_ids_are_deterministic_and_differ_per_request_and_endpoint() {
        let a = EndpointId::new("ep_a").unwrap();
        let b = EndpointId::new("ep_b").unwrap();
        assert_eq!(DeliveryId::derive("r1", &a), DeliveryId::derive("r1", &a));
        assert_ne!(DeliveryId::derive("r1", &a), DeliveryId::derive("r1", &b));
        assert_ne!(DeliveryId::derive("r1", &a), DeliveryId::derive("r2", &a));
        // Length-prefixing keeps ("r1e", "p_a") and ("r1", "ep_a") apart.
        assert_eq!(DeliveryId::derive("r1", &a).as_str().len(), 4 + 32);
        DeliveryId::new(DeliveryId::derive("r1", &a).as_str()).unwrap();
    }

    #[test]
    fn the_webhook_body_is_the_standard_webhooks_shape() {
        let body: serde_json::Value = serde_json::from_str(&request().webhook_body()).unwrap();
        assert_eq!(body["type"], "trigger.fired");
        assert_eq!(body["data"]["count"], 1);
        assert!(body["timestamp"].as_str().unwrap().starts_with("2023-11-14T22:13:20"));
        assert_eq!(request().webhook_body(), request().webhook_body());
    }

    #[test]
    fn empty_event_types_match_everything() {
        let mut endpoint = Endpoint {
            id: EndpointId::generate(),
            app: AppId::new("shop").unwrap(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            event_types: vec![],
            disabled: false,
            secrets: vec![],
            created_ms: 0,
        };
        assert!(endpoint.matches("alert.firing"));
        endpoint.event_types = vec!["trigger.fired".into()];
        assert!(endpoint.matches("trigger.fired"));
        assert!(!endpoint.matches("alert.firing"));
    }
}
