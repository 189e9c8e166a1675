//! Rate limits for query routes, as S2 does them: token buckets per global, per caller
//! (API key) and per user, the per-key buckets held in a bounded cache whose entries
//! expire when idle. Over a limit the caller gets 429 with `Retry-After`.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The `[rate_limits]` section: limits of the query routes, in requests per second
/// (burst = one second's worth).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// All callers together.
    pub global_per_sec: u32,
    /// One API key.
    pub caller_per_sec: u32,
    /// One user (or device) of an app.
    pub user_per_sec: u32,
    /// Most callers and users tracked at once (bounded memory).
    pub max_tracked: u64,
    /// A bucket unused this long is forgotten, seconds.
    pub idle_expiry_secs: u64,
}

impl meridian_config::Section for RateLimitConfig {
    const NAME: &'static str = "rate_limits";

    fn validate(&self) -> Result<(), meridian_config::FieldError> {
        meridian_config::check_range("global_per_sec", self.global_per_sec, 1, 100_000_000)?;
        meridian_config::check_range("caller_per_sec", self.caller_per_sec, 1, 100_000_000)?;
        meridian_config::check_range("user_per_sec", self.user_per_sec, 1, 100_000_000)?;
        meridian_config::check_range("max_tracked", self.max_tracked, 100, 1 << 30)?;
        meridian_config::check_range("idle_expiry_secs", self.idle_expiry_secs, 1, 86_400)
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { global_per_sec: 100_000, caller_per_sec: 50_000, user_per_sec: 100, max_tracked: 200_000, idle_expiry_secs: 60 }
    }
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The global one.
    Global,
    /// The caller's.
    Caller,
    /// The user's.
    User,
}

impl Limit {
    /// Name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Global => "global",
            Limit::Caller => "caller",
            Limit::User => "user",
        }
    }
}

/// The three levels of buckets.
pub struct RateLimits {
    /// One clock for every bucket: creating a clock calibrates it (CPUID and a timing
    /// loop), far too slow to do per request or per new user.
    clock: DefaultClock,
    global: DefaultDirectRateLimiter,
    callers: Cache<String, Arc<DefaultDirectRateLimiter>>,
    users: Cache<String, Arc<DefaultDirectRateLimiter>>,
    caller_quota: Quota,
    user_quota: Quota,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("callers", &self.callers.entry_count()).field("users", &self.users.entry_count()).finish()
    }
}

fn quota(per_sec: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    /// Buckets for `config`.
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        let cache = || Cache::builder().max_capacity(config.max_tracked).time_to_idle(Duration::from_secs(config.idle_expiry_secs)).build();
        let clock = DefaultClock::default();
        RateLimits {
            global: RateLimiter::direct_with_clock(quota(config.global_per_sec), &clock),
            clock,
            callers: cache(),
            users: cache(),
            caller_quota: quota(config.caller_per_sec),
            user_quota: quota(config.user_per_sec),
        }
    }

    /// Takes one token from the user's, the caller's and the global bucket; on refusal
    /// returns the limit hit and how long to wait.
    pub fn check(&self, caller: &str, user: &str) -> Result<(), (Limit, Duration)> {
        let wait = |e: governor::NotUntil<_>| e.wait_time_from(self.clock.now());
        let user_bucket = self.users.get_with_by_ref(user, || Arc::new(RateLimiter::direct_with_clock(self.user_quota, &self.clock)));
        user_bucket.check().map_err(|e| (Limit::User, wait(e)))?;
        let caller_bucket = self.callers.get_with_by_ref(caller, || Arc::new(RateLimiter::direct_with_clock(self.caller_quota, &self.clock)));
        caller_bucket.check().map_err(|e| (Limit::Caller, wait(e)))?;
        self.global.check().map_err(|e| (Limit::Global, wait(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: u32, caller: u32, user: u32) -> RateLimits {
        RateLimits::new(&RateLimitConfig { global_per_sec: global, caller_per_sec: caller, user_per_sec: user, ..RateLimitConfig::default() })
    }

    #[test]
    fn each_level_refuses_past_its_burst() {
        let l = limits(1000, 1000, 3);
        for _ in 0..3 {
            l.check("k1", "u1").unwrap();
        }
        let (limit, wait) = l.check("k1", "u1").unwrap_err();
        assert_eq!(limit, Limit::User);
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        l.check("k1", "u2").expect("another user has its own bucket");

        let l = limits(1000, 2, 1000);
        l.check("k", "a").unwrap();
        l.check("k", "b").unwrap();
        assert_eq!(l.check("k", "c").unwrap_err().0, Limit::Caller);
        l.check("other-key", "c").expect("another caller has its own bucket");

        let l = limits(2, 1000, 1000);
        l.check("a", "a").unwrap();
        l.check("b", "b").unwrap();
        assert_eq!(l.check("c", "c").unwrap_err().0, Limit::Global);
    }

    #[test]
    fn tracked_buckets_are_bounded() {
        let l = RateLimits::new(&RateLimitConfig { max_tracked: 100, ..RateLimitConfig::default() });
        for i in 0..10_000 {
            l.check("k", &format!("user-{i}")).unwrap();
        }
        l.users.run_pending_tasks();
        assert!(l.users.entry_count() <= 100, "{}", l.users.entry_count());
    }
}
