//! Keyed token buckets on an injected clock, for login attempts.
//!
//! Written by hand rather than with `governor`: logins pass their own `now_ms` (so tests
//! can move time), and governor's keyed limiters read their own clock. The algorithm is
//! GCRA, as in governor: per key one "theoretical arrival time"; a bucket of `n` per minute
//! allows `n` at once, then one every `60 / n` s. Keys whose bucket is full again are
//! dropped when the map grows, so memory follows the attempts of the last minute.

use parking_lot::Mutex;
use std::collections::HashMap;

const WINDOW_MS: i64 = 60_000;
/// The map is swept of full buckets when it reaches this size (then twice its live size).
const FIRST_SWEEP_LEN: usize = 1024;

/// One limit (`per_minute`) over many keys.
#[derive(Debug)]
pub struct KeyedLimiter {
    /// Time between two tokens.
    interval_ms: i64,
    /// Bucket depth in ms: `per_minute × interval`.
    burst_ms: i64,
    /// Theoretical arrival time per key.
    tats: HashMap<String, i64>,
    sweep_at_len: usize,
}

impl KeyedLimiter {
    /// `per_minute` events per key and minute (at least 1).
    pub fn new(per_minute: u32) -> KeyedLimiter {
        let per_minute = i64::from(per_minute.max(1));
        let interval_ms = (WINDOW_MS + per_minute - 1) / per_minute;
        KeyedLimiter { interval_ms, burst_ms: interval_ms * per_minute, tats: HashMap::new(), sweep_at_len: FIRST_SWEEP_LEN }
    }

    /// `Ok` if an event for `key` would be allowed at `now_ms`, else `Err(ms to wait)`.
    /// Changes nothing.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), i64> {
        let tat = self.tats.get(key).copied().unwrap_or(now_ms).max(now_ms);
        let wait_ms = tat + self.interval_ms - self.burst_ms - now_ms;
        if wait_ms > 0 {
            Err(wait_ms)
        } else {
            Ok(())
        }
    }

    /// Takes a token for `key` when one is available: `Ok`, or `Err(ms to wait)` and
    /// nothing taken.
    pub fn take(&mut self, key: &str, now_ms: i64) -> Result<(), i64> {
        self.check(key, now_ms)?;
        let tat = self.tats.get(key).copied().unwrap_or(now_ms).max(now_ms);
        self.tats.insert(key.to_owned(), tat + self.interval_ms);
        if self.tats.len() >= self.sweep_at_len {
            self.tats.retain(|_, tat| *tat > now_ms);
            self.sweep_at_len = (self.tats.len() * 2).max(FIRST_SWEEP_LEN);
        }
        Ok(())
    }

    /// Number of keys tracked.
    pub fn tracked_keys(&self) -> usize {
        self.tats.len()
    }
}

/// Login limits: attempts and failures, per login and per client.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    state: Mutex<LoginBuckets>,
}

#[derive(Debug)]
struct LoginBuckets {
    attempts_per_login: KeyedLimiter,
    failures_per_login: KeyedLimiter,
    attempts_per_client: KeyedLimiter,
    failures_per_client: KeyedLimiter,
}

/// Keys are cut to a bounded length so a huge login cannot cost much memory.
fn bounded(key: &str) -> &str {
    let mut end = key.len().min(128);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

fn retry_secs(wait_ms: i64) -> u64 {
    u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1)
}

impl LoginLimiter {
    pub(crate) fn new(limits: &crate::LoginLimits) -> LoginLimiter {
        LoginLimiter {
            state: Mutex::new(LoginBuckets {
                attempts_per_login: KeyedLimiter::new(limits.attempts_per_login_per_minute),
                failures_per_login: KeyedLimiter::new(limits.failures_per_login_per_minute),
                attempts_per_client: KeyedLimiter::new(limits.attempts_per_client_per_minute),
                failures_per_client: KeyedLimiter::new(limits.failures_per_client_per_minute),
            }),
        }
    }

    /// Admits an attempt (taking an attempt token for the login and for the client) unless
    /// a limit is reached: then `Err(seconds to wait)` and nothing is counted. A login or
    /// client that used up its failures is refused before its password is checked.
    pub(crate) fn begin_attempt(&self, login: &str, client: &str, now_ms: i64) -> Result<(), u64> {
        let (login, client) = (bounded(login), bounded(client));
        let mut buckets = self.state.lock();
        let waits = [
            buckets.failures_per_login.check(login, now_ms),
            buckets.failures_per_client.check(client, now_ms),
            buckets.attempts_per_login.check(login, now_ms),
            buckets.attempts_per_client.check(client, now_ms),
        ];
        if let Some(longest) = waits.iter().filter_map(|w| w.err()).max() {
            return Err(retry_secs(longest));
        }
        // Both checked above, under the same lock: these cannot fail.
        let _ = buckets.attempts_per_login.take(login, now_ms);
        let _ = buckets.attempts_per_client.take(client, now_ms);
        Ok(())
    }

    /// Counts a failed attempt against the login and the client.
    pub(crate) fn record_failure(&self, login: &str, client: &str, now_ms: i64) {
        let (login, client) = (bounded(login), bounded(client));
        let mut buckets = self.state.lock();
        let _ = buckets.failures_per_login.take(login, now_ms);
        let _ = buckets.failures_per_client.take(client, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_interval() {
        let mut limiter = KeyedLimiter::new(5);
        for _ in 0..5 {
            limiter.take("alice", 0).unwrap();
        }
        assert_eq!(limiter.take("alice", 0), Err(12_000), "the sixth waits one interval (60 s / 5)");
        limiter.take("bob", 0).unwrap();
        assert_eq!(limiter.check("alice", 11_999), Err(1));
        limiter.take("alice", 12_000).unwrap();
        assert!(limiter.take("alice", 12_000).is_err());
        // A minute of quiet refills the bucket.
        for _ in 0..5 {
            limiter.take("alice", 72_000).unwrap();
        }
        assert!(limiter.take("alice", 72_000).is_err());
    }

    #[test]
    fn refused_takes_do_not_extend_the_wait() {
        let mut limiter = KeyedLimiter::new(1);
        limiter.take("k", 0).unwrap();
        for t in 0..100 {
            assert!(limiter.take("k", t * 100).is_err());
        }
        limiter.take("k", 60_000).unwrap();
    }

    #[test]
    fn idle_keys_are_swept_when_the_map_grows() {
        let mut limiter = KeyedLimiter::new(60);
        for i in 0..FIRST_SWEEP_LEN - 1 {
            limiter.take(&format!("old{i}"), 0).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), FIRST_SWEEP_LEN - 1);
        limiter.take("new", 10_000).unwrap();
        assert_eq!(limiter.tracked_keys(), 1, "buckets full again by now are dropped");
    }

    #[test]
    fn login_limits_count_failures_and_attempts_per_login_and_per_client() {
        let limits = crate::LoginLimits {
            failures_per_login_per_minute: 2,
            attempts_per_login_per_minute: 3,
            failures_per_client_per_minute: 4,
            attempts_per_client_per_minute: 100,
        };
        let limiter = LoginLimiter::new(&limits);
        for _ in 0..2 {
            limiter.begin_attempt("alice", "10.0.0.1", 0).unwrap();
            limiter.record_failure("alice", "10.0.0.1", 0);
        }
        assert_eq!(limiter.begin_attempt("alice", "10.0.0.2", 0), Err(30), "two failures per login and minute");
        // Successful attempts count against the attempt limit only.
        limiter.begin_attempt("bob", "10.0.0.1", 0).unwrap();
        limiter.begin_attempt("bob", "10.0.0.1", 0).unwrap();
        limiter.begin_attempt("bob", "10.0.0.1", 0).unwrap();
        assert_eq!(limiter.begin_attempt("bob", "10.0.0.3", 0), Err(20), "three attempts per login and minute");
        // The client's failure limit spans logins.
        limiter.begin_attempt("carol", "10.0.0.1", 0).unwrap();
        limiter.record_failure("carol", "10.0.0.1", 0);
        limiter.begin_attempt("dave", "10.0.0.1", 0).unwrap();
        limiter.record_failure("dave", "10.0.0.1", 0);
        assert_eq!(limiter.begin_attempt("erin", "10.0.0.1", 0), Err(15), "four failures per client and minute");
        limiter.begin_attempt("erin", "10.0.0.9", 0).unwrap();
    }

    #[test]
    fn long_keys_are_cut_on_a_character_boundary() {
        let key = "é".repeat(100);
        assert!(bounded(&key).len() <= 128);
        assert!(bounded(&key).chars().all(|c| c == 'é'));
    }
}
