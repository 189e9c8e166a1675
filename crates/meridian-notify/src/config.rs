//! The `[notify]` config section: serde defaults and `validate()` naming the field.

use crate::ssrf::NetworkPolicy;
use crate::{NotifyError, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of notifications (webhook deliveries). Every field has a default, so an
/// empty section is valid; durations are in milliseconds so tests can use small values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// The log topic processors write notification requests to.
    pub topic: String,
    /// Longest time for one attempt: connecting, redirects and the response head and first
    /// KiB of body.
    pub timeout_ms: u64,
    /// Most deliveries in flight at once.
    pub max_concurrency: usize,
    /// Failed attempts after which a delivery is `dead`.
    pub max_attempts: u32,
    /// Upper bound of the first retry delay; the bound of retry n is
    /// `min(cap, base * factor^(n-1))` and the delay is uniform in `[0, bound]` (full jitter).
    pub backoff_base_ms: u64,
    /// Growth of the retry delay bound per failed attempt.
    pub backoff_factor: f64,
    /// Largest retry delay bound.
    pub backoff_cap_ms: u64,
    /// Redirects followed per attempt (each hop is checked against the network policy);
    /// 0 refuses redirects, which then count as failed attempts.
    pub max_redirects: u32,
    /// How often the notifier looks for due deliveries when nothing wakes it.
    pub poll_interval_ms: u64,
    /// Default time an endpoint's previous secret keeps signing after a rotation.
    pub rotation_grace_ms: u64,
    /// Which addresses deliveries may connect to.
    pub network: NetworkPolicy,
    /// PEM files of extra root certificates trusted for HTTPS endpoints (an internal CA),
    /// besides the Mozilla roots built in.
    pub extra_root_certificates: Vec<PathBuf>,
    /// `User-Agent` header of deliveries.
    pub user_agent: String,
    /// Days a delivered or dead delivery (with its attempts) is kept after its last
    /// change; pending ones are kept whatever their age. 0 keeps them forever.
    pub retention_days: u32,
    /// How often old deliveries are purged.
    pub purge_interval_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            topic: "notifications".into(),
            timeout_ms: 10_000,
            max_concurrency: 32,
            max_attempts: 8,
            backoff_base_ms: 30_000,
            backoff_factor: 3.0,
            backoff_cap_ms: 6 * 3_600_000,
            max_redirects: 3,
            poll_interval_ms: 1_000,
            rotation_grace_ms: 24 * 3_600_000,
            network: NetworkPolicy::default(),
            extra_root_certificates: Vec::new(),
            user_agent: concat!("Meridian-Webhooks/", env!("CARGO_PKG_VERSION")).into(),
            retention_days: 30,
            purge_interval_secs: 3_600,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> NotifyError {
    NotifyError::InvalidConfig { field, reason: reason.into() }
}

impl NotifyConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        meridian_log::TopicName::new(self.topic.clone()).map_err(|e| invalid("topic", e.to_string()))?;
        if self.timeout_ms == 0 || self.timeout_ms > 300_000 {
            return Err(invalid("timeout_ms", format!("{} is out of range; use 1-300000", self.timeout_ms)));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 4096 {
            return Err(invalid("max_concurrency", format!("{} is out of range; use 1-4096", self.max_concurrency)));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(invalid("max_attempts", format!("{} is out of range; use 1-100", self.max_attempts)));
        }
        if self.backoff_base_ms == 0 {
            return Err(invalid("backoff_base_ms", "must be at least 1"));
        }
        if !self.backoff_factor.is_finite() || self.backoff_factor < 1.0 || self.backoff_factor > 100.0 {
            return Err(invalid("backoff_factor", format!("{} is out of range; use 1.0-100.0", self.backoff_factor)));
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err(invalid("backoff_cap_ms", format!("{} is below backoff_base_ms ({}); raise it", self.backoff_cap_ms, self.backoff_base_ms)));
        }
        if self.max_redirects > 10 {
            return Err(invalid("max_redirects", format!("{} is out of range; use 0-10", self.max_redirects)));
        }
        if self.poll_interval_ms == 0 {
            return Err(invalid("poll_interval_ms", "must be at least 1"));
        }
        if self.user_agent.is_empty() || hyper::header::HeaderValue::from_str(&self.user_agent).is_err() {
            return Err(invalid("user_agent", "must be a non-empty, visible-ASCII header value"));
        }
        if self.retention_days > 3_650 {
            return Err(invalid("retention_days", format!("{} is out of range; use 0 (forever) to 3650", self.retention_days)));
        }
        if self.purge_interval_secs == 0 || self.purge_interval_secs > 7 * 86_400 {
            return Err(invalid("purge_interval_secs", format!("{} is out of range; use 1-604800", self.purge_interval_secs)));
        }
        Ok(())
    }

    /// The log topic of notification requests.
    pub fn topic_name(&self) -> Result<meridian_log::TopicName> {
        meridian_log::TopicName::new(self.topic.clone()).map_err(|e| invalid("topic", e.to_string()))
    }

    /// How long finished deliveries are kept; `None`: forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0).then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }

    /// Attempt timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The upper bound of the delay after failed attempt number `attempt` (1-based):
    /// `min(cap, base * factor^(attempt-1))`.
    pub fn backoff_bound_ms(&self, attempt: u32) -> u64 {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let bound = self.backoff_base_ms as f64 * self.backoff_factor.powi(exponent);
        if bound.is_finite() && bound < self.backoff_cap_ms as f64 {
            bound as u64
        } else {
            self.backoff_cap_ms
        }
    }

    /// The delay before the next attempt after failed attempt `attempt`: uniform in
    /// `[0, bound]` (full jitter), drawn from `rng`.
    pub fn backoff_delay_ms(&self, attempt: u32, rng: &mut impl rand::Rng) -> u64 {
        rng.gen_range(0..=self.backoff_bound_ms(attempt))
    }
}

impl meridian_config::Section for NotifyConfig {
    const NAME: &'static str = "notify";

    fn validate(&self) -> std::result::Result<(), meridian_config::FieldError> {
        NotifyConfig::validate(self).map_err(|e| match e {
            crate::NotifyError::InvalidConfig { field, reason } => meridian_config::FieldError::new(field, reason),
            other => meridian_config::FieldError::new("notify", other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_defaults_are_valid_and_an_empty_section_gets_them() {
        NotifyConfig::default().validate().unwrap();
        let parsed: NotifyConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, NotifyConfig::default());
        assert_eq!(parsed.max_attempts, 8);
        assert_eq!(parsed.timeout(), Duration::from_secs(10));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cases: Vec<(&str, NotifyConfig)> = vec![
            ("topic", NotifyConfig { topic: "Bad Topic".into(), ..NotifyConfig::default() }),
            ("timeout_ms", NotifyConfig { timeout_ms: 0, ..NotifyConfig::default() }),
            ("max_concurrency", NotifyConfig { max_concurrency: 0, ..NotifyConfig::default() }),
            ("max_attempts", NotifyConfig { max_attempts: 0, ..NotifyConfig::default() }),
            ("backoff_factor", NotifyConfig { backoff_factor: 0.5, ..NotifyConfig::default() }),
            ("backoff_cap_ms", NotifyConfig { backoff_cap_ms: 1, ..NotifyConfig::default() }),
            ("max_redirects", NotifyConfig { max_redirects: 11, ..NotifyConfig::default() }),
            ("user_agent", NotifyConfig { user_agent: "bad\nagent".into(), ..NotifyConfig::default() }),
        ];
        for (field, config) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(&format!("`{field}`")), "{message} should name {field}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<NotifyConfig>(r#"{"max_atempts": 3}"#).is_err());
    }

    #[test]
    fn backoff_bounds_grow_by_the_factor_up_to_the_cap() {
        let config = NotifyConfig { backoff_base_ms: 100, backoff_factor: 2.0, backoff_cap_ms: 1_000, ..NotifyConfig::default() };
        let bounds: Vec<u64> = (1..=6).map(|n| config.backoff_bound_ms(n)).collect();
        assert_eq!(bounds, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(config.backoff_bound_ms(u32::MAX), 1_000, "huge attempt numbers stay at the cap");
    }

    #[test]
    fn backoff_delays_are_fully_jittered_within_the_bound() {
        let config = NotifyConfig { backoff_base_ms: 100, backoff_factor: 2.0, backoff_cap_ms: 10_000, ..NotifyConfig::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..=5 {
            let bound = config.backoff_bound_ms(attempt);
            let samples: Vec<u64> = (0..2_000).map(|_| config.backoff_delay_ms(attempt, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= bound));
            let below_a_tenth = samples.iter().filter(|d| **d < bound / 10).count();
            let above_nine_tenths = samples.iter().filter(|d| **d > bound * 9 / 10).count();
            // Uniform on [0, bound]: about 200 of 2000 in each tenth.
            assert!((100..300).contains(&below_a_tenth), "attempt {attempt}: {below_a_tenth} samples in the lowest tenth");
            assert!((100..300).contains(&above_nine_tenths), "attempt {attempt}: {above_nine_tenths} samples in the highest tenth");
            let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
            assert!((mean - bound as f64 / 2.0).abs() < bound as f64 * 0.05, "attempt {attempt}: mean {mean} of bound {bound}");
        }
    }
}
