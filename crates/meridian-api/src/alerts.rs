//! Alert rules of an app, their evaluations, the alert history and rule tests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A rule as sent to `POST /v1/apps/{app}/alerts/rules` and `PUT …/{id}` (the crate docs
/// of `meridian-alerts` describe every field). `app` is the path's; `id` is made by the
/// server when absent; `version` (on a change) is the version the change was made from,
/// unless `If-Match` says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleInput {
    /// `[a-z0-9_.-]{1,64}`, unique across apps; made by the server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A human name.
    pub name: String,
    /// The version the change was made from (changes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// `{"kind": "count" | "distinct_users" | "ratio" | "percentile", …}`.
    #[schema(value_type = Object)]
    pub metric: Value,
    /// Which events count (the pipeline's condition language); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// `{"kind": "tumbling", "size_secs"}` or `{"kind": "sliding", "size_secs", "slide_secs"}`.
    #[schema(value_type = Object)]
    pub window: Value,
    /// How long after a window's end late events still count, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness_secs: Option<u64>,
    /// `{"kind": "threshold" | "change" | "forecast", …}`.
    #[schema(value_type = Object)]
    pub condition: Value,
    /// Windows with fewer samples are not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// After firing, a new firing waits at least this long, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_secs: Option<u64>,
    /// Webhook endpoint ids of the app that are notified.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Created paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// A stored rule (its JSON form with its version) and its live status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRule {
    /// The rule as stored.
    #[schema(value_type = Object)]
    pub rule: Value,
    /// Its version (also the `ETag`).
    pub version: u64,
    /// `ok`, `firing` or `paused` (as of the processor's last commit).
    pub status: String,
    /// End of the window that fired it, when firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since_ms: Option<i64>,
    /// Whether the processor evaluates events with this version yet (it picks a change up
    /// at its next round, within a second).
    #[serde(default)]
    pub in_force: bool,
}

/// The app's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleList {
    /// By id.
    pub rules: Vec<AlertRule>,
}

/// The expected version of a pause, resume or deletion (or `If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExpectedVersion {
    /// The version the change was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A rule's alert went from ok to firing, or back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertTransition {
    /// Deterministic id (as in the `alerts` topic and the notifications).
    pub id: String,
    /// The rule.
    pub rule: String,
    /// The rule version that produced it.
    pub rule_version: u64,
    /// The rule's name.
    pub rule_name: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `fired` or `resolved`.
    pub state: String,
    /// The window that decided it.
    pub window_start_ms: i64,
    /// Its end.
    pub window_end_ms: i64,
    /// The metric's value.
    pub value: Option<f64>,
    /// The baseline.
    pub expected: Option<f64>,
    /// The value at which the condition flips.
    pub threshold: Option<f64>,
    /// Why.
    pub reason: String,
    /// Endpoints notified.
    pub channels: Vec<String>,
    /// When it was recorded (absent in a rule test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_ms: Option<i64>,
    /// What became of the notification to each channel (in the history only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<AlertDelivery>,
}

/// The notification of one transition to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertDelivery {
    /// The webhook endpoint.
    pub endpoint: String,
    /// `queued` (not yet taken by the notify module), `pending` (retrying), `delivered`
    /// or `dead` (given up after `notify.max_attempts`; redeliver it from the webhooks API).
    pub state: String,
    /// The delivery id (`webhook-id`; `/v1/apps/{app}/deliveries/{id}` shows its attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// Status or error code of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// The last failed attempt's error, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<i64>,
    /// When the next attempt is due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
}

/// The alert history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertHistory {
    /// Transitions.
    pub transitions: Vec<AlertTransition>,
}

/// One closed window of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEvaluation {
    /// The rule version that evaluated it.
    pub rule_version: u64,
    /// Window start.
    pub window_start_ms: i64,
    /// Window end.
    pub window_end_ms: i64,
    /// The metric's value.
    pub value: Option<f64>,
    /// Its samples.
    pub samples: u64,
    /// The baseline.
    pub expected: Option<f64>,
    /// The value at which the condition flips.
    pub threshold: Option<f64>,
    /// `ok`, `breach`, `suppressed`, `insufficient_samples`, `no_value`, `no_baseline`.
    pub outcome: String,
    /// Whether the rule is firing after this window.
    pub firing: bool,
}

/// A rule's recent evaluations, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEvaluations {
    /// The rule.
    pub rule: String,
    /// Evaluations.
    pub evaluations: Vec<AlertEvaluation>,
}

/// `POST /v1/apps/{app}/alerts/rules/test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleTest {
    /// The rule (not saved; its channels are not notified).
    #[schema(value_type = Object)]
    pub rule: Value,
    /// How many hours back to evaluate (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
}

/// What a rule would have done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleTestResult {
    /// Start of the span evaluated.
    pub from_ms: i64,
    /// Its end (now).
    pub to_ms: i64,
    /// Events of the app read from the log.
    pub events_read: u64,
    /// Whether more events were there than `alerts.max_test_events` (the oldest were left out).
    pub truncated: bool,
    /// Every window in the span.
    pub evaluations: Vec<AlertEvaluation>,
    /// When it would have fired and resolved.
    pub transitions: Vec<AlertTransition>,
    /// Events late for their windows.
    pub late_events: u64,
}
