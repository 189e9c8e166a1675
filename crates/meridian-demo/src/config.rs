//! The knobs of the demo world.

use crate::error::{DemoError, Result};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Everything that shapes a demo world. The same config (and seed) always produces the
/// same catalog, users and events, except that `start_time_ms: None` places the events
/// relative to the current time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of leaf categories (the tree has three levels).
    pub categories: usize,
    /// Number of brands.
    pub brands: usize,
    /// Number of shops.
    pub shops: usize,
    /// Number of SPUs (products).
    pub spus: usize,
    /// SKUs (variants) per SPU, drawn uniformly from this range.
    pub skus_per_spu: RangeInclusive<u32>,
    /// Number of registered users.
    pub users: usize,
    /// Most devices one user has (1 ..= this, mostly 1).
    pub devices_per_user: u32,
    /// Share of sessions made by anonymous (never logged in) devices, 0..1.
    pub anonymous_share: f64,
    /// Time of the first event, epoch ms; `None` = `now - days`, so the events end now.
    pub start_time_ms: Option<i64>,
    /// Days the events are spread over.
    pub days: u32,
    /// Share of events deliberately broken, 0..1.
    pub malformed_share: f64,
    /// App (tenant) the events belong to.
    pub app: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 42,
            categories: 60,
            brands: 200,
            shops: 300,
            spus: 20_000,
            skus_per_spu: 1..=4,
            users: 100_000,
            devices_per_user: 3,
            anonymous_share: 0.15,
            start_time_ms: None,
            days: 7,
            malformed_share: 0.005,
            app: "demo".to_owned(),
        }
    }
}

impl DemoConfig {
    /// A small world for tests: quick to build, still skewed.
    pub fn small() -> Self {
        DemoConfig {
            seed: 7,
            categories: 12,
            brands: 20,
            shops: 30,
            spus: 500,
            users: 2_000,
            // 2025-11-21T00:00:00Z, fixed so tests are deterministic.
            start_time_ms: Some(1_763_683_200_000),
            days: 3,
            ..DemoConfig::default()
        }
    }

    /// The same config with the events placed in the `days` before `now_ms`.
    pub fn times_relative_to(mut self, now_ms: i64) -> Self {
        self.start_time_ms = Some(now_ms - i64::from(self.days) * DAY_MS);
        self
    }

    /// Time of the first event: the configured one or `now - days`.
    pub fn resolved_start_ms(&self) -> i64 {
        self.start_time_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis() - i64::from(self.days) * DAY_MS)
    }

    /// Length of the event window in milliseconds.
    pub fn span_ms(&self) -> i64 {
        i64::from(self.days.max(1)) * DAY_MS
    }

    /// Checks that the config can produce a world.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(DemoError::InvalidConfig(msg.to_owned()));
        if self.categories == 0 || self.brands == 0 || self.shops == 0 || self.spus == 0 || self.users == 0 {
            return bad("categories, brands, shops, spus and users must all be at least 1");
        }
        if *self.skus_per_spu.start() == 0 || self.skus_per_spu.is_empty() {
            return bad("skus_per_spu must be a non-empty range starting at 1 or more");
        }
        if self.devices_per_user == 0 {
            return bad("devices_per_user must be at least 1");
        }
        if !(0.0..1.0).contains(&self.anonymous_share) {
            return bad("anonymous_share must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.malformed_share) {
            return bad("malformed_share must be in [0, 1]");
        }
        if self.days == 0 {
            return bad("days must be at least 1");
        }
        if meridian_event::AppId::new(self.app.clone()).is_err() {
            return bad("app must match [a-z0-9_.-]{1,64}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let config = DemoConfig::default();
        config.validate().unwrap();
        let text = serde_json::to_string(&config).unwrap();
        let back: DemoConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config);
        let partial: DemoConfig = serde_json::from_str(r#"{"seed": 9}"#).unwrap();
        assert_eq!(partial.seed, 9);
        assert_eq!(partial.spus, 20_000);
    }

    #[test]
    fn bad_configs_are_rejected() {
        for config in [
            DemoConfig { users: 0, ..DemoConfig::small() },
            DemoConfig { anonymous_share: 1.5, ..DemoConfig::small() },
            DemoConfig { app: "Bad App".into(), ..DemoConfig::small() },
            DemoConfig { days: 0, ..DemoConfig::small() },
        ] {
            assert!(matches!(config.validate(), Err(DemoError::InvalidConfig(_))), "{config:?}");
        }
    }

    #[test]
    fn relative_times_end_now() {
        let config = DemoConfig::small().times_relative_to(1_000 * DAY_MS);
        assert_eq!(config.resolved_start_ms() + config.span_ms(), 1_000 * DAY_MS);
    }
}
