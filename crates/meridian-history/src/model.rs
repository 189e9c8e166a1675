//! Owners, their keys, history entries, clocks and the merge rule shared by every tier.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// Base of stored times: 2020-01-01T00:00:00Z in milliseconds. Tiers store whole seconds
/// since this base in a `u32` (good until 2156).
pub const BASE_MS: i64 = 1_577_836_800_000;

/// Whole seconds since [`BASE_MS`] (times before the base clamp to 0).
pub fn ms_to_secs(ms: i64) -> u32 {
    ((ms - BASE_MS).max(0) / 1000).min(i64::from(u32::MAX)) as u32
}

/// Milliseconds since the epoch of a stored second.
pub fn secs_to_ms(secs: u32) -> i64 {
    BASE_MS + i64::from(secs) * 1000
}

/// Normalises an event time to what the tiers store (whole seconds, not before the base).
pub fn normalize_ms(ms: i64) -> i64 {
    secs_to_ms(ms_to_secs(ms))
}

/// Whose history it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    /// A logged-in user.
    User,
    /// An anonymous device.
    Device,
}

/// A history owner: an app's user or device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Tenant.
    pub app: String,
    /// User or device.
    pub kind: OwnerKind,
    /// The user or device id.
    pub id: String,
}

impl Owner {
    /// A logged-in user of `app`.
    pub fn user(app: impl Into<String>, id: impl Into<String>) -> Owner {
        Owner { app: app.into(), kind: OwnerKind::User, id: id.into() }
    }

    /// An anonymous device of `app`.
    pub fn device(app: impl Into<String>, id: impl Into<String>) -> Owner {
        Owner { app: app.into(), kind: OwnerKind::Device, id: id.into() }
    }

    /// The owner's 128-bit key (xxh3-128 of app, kind and id).
    pub fn key(&self) -> OwnerKey {
        OwnerKey::of(&self.app, self.kind, &self.id)
    }
}

/// The 128-bit hash identifying an owner in every tier. Its leading 16 bits spread owners
/// over the cold tier's key space: users with similar ids (`u1`, `u2`…) land far apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerKey(pub u128);

impl OwnerKey {
    /// The key of (app, kind, id).
    pub fn of(app: &str, kind: OwnerKind, id: &str) -> OwnerKey {
        let mut buf = Vec::with_capacity(app.len() + id.len() + 3);
        buf.extend_from_slice(app.as_bytes());
        buf.push(0);
        buf.push(match kind {
            OwnerKind::User => b'u',
            OwnerKind::Device => b'd',
        });
        buf.push(0);
        buf.extend_from_slice(id.as_bytes());
        OwnerKey(xxhash_rust::xxh3::xxh3_128(&buf))
    }

    /// Big-endian bytes: the first two are the spreading prefix.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Inverse of [`OwnerKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<OwnerKey> {
        Some(OwnerKey(u128::from_be_bytes(bytes.try_into().ok()?)))
    }

    /// The 2-byte prefix.
    pub fn prefix(self) -> [u8; 2] {
        let b = self.to_bytes();
        [b[0], b[1]]
    }

    /// Lowercase hex (32 characters), used in Redis keys.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerKey({:032x})", self.0)
    }
}

/// One history entry: a SKU and the time of its last view (ms since the epoch, whole
/// seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Numeric SKU id.
    pub sku: u64,
    /// Last view, milliseconds since the epoch.
    pub time_ms: i64,
}

impl Entry {
    /// An entry with its time normalised to whole seconds.
    pub fn new(sku: u64, time_ms: i64) -> Entry {
        Entry { sku, time_ms: normalize_ms(time_ms) }
    }

    /// Seconds since [`BASE_MS`].
    pub fn secs(&self) -> u32 {
        ms_to_secs(self.time_ms)
    }
}

/// Sorts newest first (ties: larger SKU first, so the order is total and deterministic).
pub fn sort_newest_first(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| b.time_ms.cmp(&a.time_ms).then(b.sku.cmp(&a.sku)));
}

/// The merge rule of every tier: one entry per SKU with its latest time, newest first,
/// at most `n`. Idempotent, commutative and associative, so re-applying updates (after a
/// crash) or merging tiers in any order gives the same result.
pub fn merge_entries<'a>(lists: impl IntoIterator<Item = &'a [Entry]>, n: usize) -> Vec<Entry> {
    let mut best: HashMap<u64, i64> = HashMap::new();
    for list in lists {
        for e in list {
            let t = best.entry(e.sku).or_insert(e.time_ms);
            if e.time_ms > *t {
                *t = e.time_ms;
            }
        }
    }
    let mut out: Vec<Entry> = best.into_iter().map(|(sku, time_ms)| Entry { sku, time_ms }).collect();
    sort_newest_first(&mut out);
    out.truncate(n);
    out
}

/// Parses a numeric SKU id (ASCII digits only, fits in u64).
pub fn parse_sku(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The time source, injectable so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock tests set and advance.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_latest_time_per_sku_newest_first_trimmed() {
        let a = [Entry::new(1, BASE_MS + 1000), Entry::new(2, BASE_MS + 5000)];
        let b = [Entry::new(1, BASE_MS + 9000), Entry::new(3, BASE_MS + 2000)];
        let m = merge_entries([&a[..], &b[..]], 10);
        assert_eq!(m, vec![Entry::new(1, BASE_MS + 9000), Entry::new(2, BASE_MS + 5000), Entry::new(3, BASE_MS + 2000)]);
        assert_eq!(merge_entries([&b[..], &a[..]], 2), m[..2].to_vec(), "order of inputs does not matter; trimmed");
        let again = merge_entries([&m[..], &a[..]], 10);
        assert_eq!(again, m, "idempotent");
    }

    #[test]
    fn owner_keys_differ_by_app_kind_and_id_and_spread() {
        let u = Owner::user("shop", "u1").key();
        assert_ne!(u, Owner::device("shop", "u1").key());
        assert_ne!(u, Owner::user("shop2", "u1").key());
        assert_ne!(u.prefix(), Owner::user("shop", "u2").key().prefix());
        assert_eq!(OwnerKey::from_bytes(&u.to_bytes()), Some(u));
    }

    #[test]
    fn times_normalise_to_seconds_and_skus_parse() {
        assert_eq!(normalize_ms(BASE_MS + 1999), BASE_MS + 1000);
        assert_eq!(normalize_ms(0), BASE_MS);
        assert_eq!(parse_sku("100000001"), Some(100_000_001));
        assert_eq!(parse_sku("abc"), None);
        assert_eq!(parse_sku("-1"), None);
        assert_eq!(parse_sku("99999999999999999999"), None);
    }
}
