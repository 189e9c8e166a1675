//! The `[tenancy]` config section: session lifetimes, login limits and password hashing
//! cost, with serde defaults and a `validate()` whose errors name the field.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Configuration of [`Tenancy`](crate::Tenancy). Every field has a default, so `{}` is a
/// valid config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// A session ends this long after login, however active (default 12 h).
    pub session_absolute_ttl_secs: u64,
    /// A session ends after this long without use (default 2 h).
    pub session_idle_ttl_secs: u64,
    /// A session's last use is written to the store at most this often (default 60 s),
    /// so the idle expiry may come up to this much early.
    pub session_refresh_interval_secs: u64,
    /// Login attempt limits.
    pub login_limits: LoginLimits,
    /// Argon2id cost of new password hashes.
    pub password_hashing: PasswordHashing,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            session_absolute_ttl_secs: 12 * 3600,
            session_idle_ttl_secs: 2 * 3600,
            session_refresh_interval_secs: 60,
            login_limits: LoginLimits::default(),
            password_hashing: PasswordHashing::default(),
        }
    }
}

/// Login attempts allowed per minute (token buckets: the full count at once, then one
/// more every `60 / n` seconds). Attempts refused by a limit do not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimits {
    /// Failed attempts per minute for one login (default 5).
    pub failures_per_login_per_minute: u32,
    /// Attempts, failed or not, per minute for one login (default 10).
    pub attempts_per_login_per_minute: u32,
    /// Failed attempts per minute from one client address (default 20).
    pub failures_per_client_per_minute: u32,
    /// Attempts, failed or not, per minute from one client address (default 60).
    pub attempts_per_client_per_minute: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            failures_per_login_per_minute: 5,
            attempts_per_login_per_minute: 10,
            failures_per_client_per_minute: 20,
            attempts_per_client_per_minute: 60,
        }
    }
}

/// Argon2id parameters for new hashes (existing hashes keep the parameters in their PHC
/// string, so changing these never locks anyone out). The defaults are argon2's (19 MiB,
/// 2 passes, 1 lane: OWASP's recommendation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashing {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    fn default() -> Self {
        PasswordHashing {
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordHashing {
    /// A very cheap cost (64 KiB, one pass) for tests only: hashes made with it are easy to
    /// brute-force.
    pub fn fast_insecure_for_tests() -> PasswordHashing {
        PasswordHashing { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    pub(crate) fn params(&self) -> Result<argon2::Params> {
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            let field = match e {
                argon2::Error::TimeTooSmall => "password_hashing.iterations",
                argon2::Error::ThreadsTooFew | argon2::Error::ThreadsTooMany => "password_hashing.parallelism",
                _ => "password_hashing.memory_kib",
            };
            Error::InvalidConfig { field, reason: format!("{e} (memory_kib must be at least 8 × parallelism)") }
        })
    }
}

impl TenancyConfig {
    /// Checks the values; the error names the first bad field.
    pub fn validate(&self) -> Result<()> {
        let field_error = |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        if self.session_absolute_ttl_secs < 60 {
            return field_error("session_absolute_ttl_secs", format!("{} s is too short: use at least 60", self.session_absolute_ttl_secs));
        }
        if self.session_idle_ttl_secs < 60 {
            return field_error("session_idle_ttl_secs", format!("{} s is too short: use at least 60", self.session_idle_ttl_secs));
        }
        if self.session_idle_ttl_secs > self.session_absolute_ttl_secs {
            return field_error(
                "session_idle_ttl_secs",
                format!("{} s exceeds session_absolute_ttl_secs ({} s): make it at most that", self.session_idle_ttl_secs, self.session_absolute_ttl_secs),
            );
        }
        if self.session_refresh_interval_secs == 0 || self.session_refresh_interval_secs >= self.session_idle_ttl_secs {
            return field_error(
                "session_refresh_interval_secs",
                format!("{} s must be at least 1 and below session_idle_ttl_secs ({} s)", self.session_refresh_interval_secs, self.session_idle_ttl_secs),
            );
        }
        let limits = [
            ("login_limits.failures_per_login_per_minute", self.login_limits.failures_per_login_per_minute),
            ("login_limits.attempts_per_login_per_minute", self.login_limits.attempts_per_login_per_minute),
            ("login_limits.failures_per_client_per_minute", self.login_limits.failures_per_client_per_minute),
            ("login_limits.attempts_per_client_per_minute", self.login_limits.attempts_per_client_per_minute),
        ];
        for (field, value) in limits {
            if value == 0 || value > 60_000 {
                return field_error(field, format!("{value} must be between 1 and 60000"));
            }
        }
        self.password_hashing.params()?;
        Ok(())
    }

    pub(crate) fn absolute_ttl_ms(&self) -> i64 {
        secs_to_ms(self.session_absolute_ttl_secs)
    }

    pub(crate) fn idle_ttl_ms(&self) -> i64 {
        secs_to_ms(self.session_idle_ttl_secs)
    }

    pub(crate) fn refresh_interval_ms(&self) -> i64 {
        secs_to_ms(self.session_refresh_interval_secs)
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

impl meridian_config::Section for TenancyConfig {
    const NAME: &'static str = "tenancy";

    fn validate(&self) -> std::result::Result<(), meridian_config::FieldError> {
        TenancyConfig::validate(self).map_err(|e| match e {
            Error::InvalidConfig { field, reason } => meridian_config::FieldError::new(field, reason),
            other => meridian_config::FieldError::new("tenancy", other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &TenancyConfig) -> &'static str {
        match config.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_section_takes_every_default_and_is_valid() {
        let config: TenancyConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, TenancyConfig::default());
        assert_eq!(config.session_absolute_ttl_secs, 43_200);
        assert_eq!(config.session_idle_ttl_secs, 7_200);
        assert_eq!(config.login_limits.failures_per_login_per_minute, 5);
        assert_eq!(config.login_limits.failures_per_client_per_minute, 20);
        config.validate().unwrap();
        let partial: TenancyConfig = serde_json::from_str(r#"{"login_limits": {"failures_per_login_per_minute": 3}}"#).unwrap();
        assert_eq!(partial.login_limits.failures_per_login_per_minute, 3);
        assert_eq!(partial.login_limits.attempts_per_client_per_minute, 60);
        assert!(serde_json::from_str::<TenancyConfig>(r#"{"session_ttl": 5}"#).is_err(), "unknown fields are refused");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let base = TenancyConfig::default();
        assert_eq!(field_of(&TenancyConfig { session_absolute_ttl_secs: 10, ..base.clone() }), "session_absolute_ttl_secs");
        assert_eq!(field_of(&TenancyConfig { session_idle_ttl_secs: 50_000, ..base.clone() }), "session_idle_ttl_secs");
        assert_eq!(field_of(&TenancyConfig { session_refresh_interval_secs: 0, ..base.clone() }), "session_refresh_interval_secs");
        let mut limits = base.clone();
        limits.login_limits.attempts_per_client_per_minute = 0;
        assert_eq!(field_of(&limits), "login_limits.attempts_per_client_per_minute");
        let mut hashing = base.clone();
        hashing.password_hashing.iterations = 0;
        assert_eq!(field_of(&hashing), "password_hashing.iterations");
        let mut memory = base;
        memory.password_hashing.memory_kib = 4;
        assert_eq!(field_of(&memory), "password_hashing.memory_kib");
        let message = memory.validate().unwrap_err().to_string();
        assert!(message.starts_with("invalid tenancy config password_hashing.memory_kib"), "{message}");
    }
}
