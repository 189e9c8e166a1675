//! The `[alerts]` config section.

use meridian_config::{check, check_range, FieldError};
use serde::{Deserialize, Serialize};

/// Settings of the alerts capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Run the alert rules (routes, processor).
    pub enabled: bool,
    /// How often the processor advances the engine's clock (closing windows of apps
    /// without traffic) and picks up rule changes, milliseconds.
    pub tick_interval_ms: u64,
    /// Most rules one app may have.
    pub max_rules_per_app: usize,
    /// The topic the alert history (every fired and resolved transition) is written to.
    pub topic: String,
    /// The notify module's topic of notification requests.
    pub notifications_topic: String,
    /// Evaluations kept per rule for the preview chart (a ring: the oldest are replaced).
    pub evaluations_per_rule: u32,
    /// Longest span a rule test may read back, hours.
    pub max_test_hours: u32,
    /// Most events a rule test reads (the newest are kept when there are more).
    pub max_test_events: usize,
    /// Days a transition stays in the alert history (by the end of the window that decided
    /// it); 0 keeps them forever. The `alerts` topic keeps them as the log's retention says.
    pub history_retention_days: u32,
    /// How often the history older than `history_retention_days` is purged, seconds.
    pub purge_interval_secs: u64,
    /// Shortest time between two rounds of the processor, milliseconds: events arriving
    /// meanwhile are evaluated together. A round commits every rule its events reached, so
    /// with thousands of rules a round per small append would commit the same state over
    /// and over; this bounds the commits to a few per second at the cost of up to this much
    /// delay before a window's close is seen.
    pub min_round_interval_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            tick_interval_ms: 1_000,
            max_rules_per_app: 1_000,
            topic: "alerts".into(),
            notifications_topic: "notifications".into(),
            evaluations_per_rule: 1_440,
            max_test_hours: 168,
            max_test_events: 1_000_000,
            history_retention_days: 90,
            purge_interval_secs: 3_600,
            min_round_interval_ms: 200,
        }
    }
}

impl meridian_config::Section for AlertsConfig {
    const NAME: &'static str = "alerts";

    fn validate(&self) -> Result<(), FieldError> {
        check_range("tick_interval_ms", self.tick_interval_ms, 50, 60_000)?;
        check_range("max_rules_per_app", self.max_rules_per_app, 1, 100_000)?;
        check_range("evaluations_per_rule", self.evaluations_per_rule, 1, 100_000)?;
        check_range("max_test_hours", self.max_test_hours, 1, 24 * 31)?;
        check_range("max_test_events", self.max_test_events, 1, 50_000_000)?;
        check_range("history_retention_days", self.history_retention_days, 0, 36_500)?;
        check_range("purge_interval_secs", self.purge_interval_secs, 1, 7 * 86_400)?;
        check_range("min_round_interval_ms", self.min_round_interval_ms, 0, 10_000)?;
        check(meridian_log::TopicName::new(self.topic.clone()).is_ok(), "topic", || format!("{:?} is not a topic name", self.topic))?;
        check(meridian_log::TopicName::new(self.notifications_topic.clone()).is_ok(), "notifications_topic", || {
            format!("{:?} is not a topic name", self.notifications_topic)
        })?;
        check(self.topic != self.notifications_topic, "topic", || "the alert history and the notification requests need topics of their own".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_config::Section;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert!(AlertsConfig::default().validate().is_ok());
        let bad = AlertsConfig { tick_interval_ms: 0, ..AlertsConfig::default() };
        assert_eq!(bad.validate().unwrap_err().field, "tick_interval_ms");
        let bad = AlertsConfig { topic: "notifications".into(), ..AlertsConfig::default() };
        assert_eq!(bad.validate().unwrap_err().field, "topic");
    }
}
