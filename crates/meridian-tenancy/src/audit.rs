//! The audit log: who changed what, when, with the value before and after. One call,
//! [`AuditLog::record`] (or [`AuditLog::record_in`] to commit with the change itself), for
//! every capability; queries newest first with a cursor.
//!
//! Key layout: every entry is stored under `inv(time) ‖ inv(id)` in `audit_log`, and
//! entries of an app also under `app ‖ 0x00 ‖ inv(time) ‖ inv(id)` in `audit_by_app`
//! (`inv(x) = !x`, big-endian, so ascending key order is newest first). A query for one
//! app scans only that app's range; a time window starts and stops at its keys.

use crate::clock::Clock;
use crate::operators::OperatorId;
use crate::{Error, Result};
use meridian_event::AppId;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::Arc;

/// Every entry: key = `inv(time) ‖ inv(id)`, value = JSON [`AuditEntry`].
pub const AUDIT_TABLE: &str = "audit_log";
/// Entries of an app: key = `app ‖ 0x00 ‖ inv(time) ‖ inv(id)`, value = JSON [`AuditEntry`].
pub const AUDIT_BY_APP_TABLE: &str = "audit_by_app";

/// Largest page of [`AuditLog::query`].
pub const MAX_PAGE: usize = 1000;
/// Entries a query examines at most before returning a partial page with a cursor (so a
/// rare actor or action cannot make one request scan the whole log).
pub const SCAN_BUDGET: usize = 10_000;
/// Longest action name, in bytes.
pub const MAX_ACTION_LEN: usize = 64;
/// Longest target, in bytes.
pub const MAX_TARGET_LEN: usize = 512;

const SCAN_CHUNK: usize = 256;

/// An entry's id: assigned in commit order, starting at 1, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditId(pub u64);

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// The master key.
    Master,
    /// An app's API key.
    Key {
        /// The key's public id.
        key_id: String,
        /// Its app.
        app: Option<AppId>,
    },
    /// A logged-in operator.
    Operator {
        /// Its login.
        login: OperatorId,
    },
    /// Meridian itself (bootstrap, maintenance, timers).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Master => f.write_str("master"),
            Actor::Key { key_id, .. } => write!(f, "key:{key_id}"),
            Actor::Operator { login } => write!(f, "operator:{login}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// An entry to record. `before` and `after` must hold no secret: pass public records
/// (e.g. [`ApiKey`](crate::ApiKey), [`Operator`](crate::Operator)) or [`mask`]ed values.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry<'a> {
    /// Who.
    pub actor: Actor,
    /// The app concerned; `None` for global changes (operators, …).
    pub app: Option<AppId>,
    /// What, as `object.verb` in `[a-z0-9_.]`: `app.create`, `key.revoke`, `operator.disable`…
    pub action: &'a str,
    /// The object's id (app id, key id, login, slot…).
    pub target: String,
    /// The object before the change (`None` for a creation).
    pub before: Option<serde_json::Value>,
    /// The object after the change (`None` for a deletion).
    pub after: Option<serde_json::Value>,
}

impl<'a> NewAuditEntry<'a> {
    /// An entry with no app, before or after.
    pub fn new(actor: Actor, action: &'a str, target: impl Into<String>) -> NewAuditEntry<'a> {
        NewAuditEntry { actor, app: None, action, target: target.into(), before: None, after: None }
    }

    /// Sets the app.
    pub fn app(mut self, app: AppId) -> Self {
        self.app = Some(app);
        self
    }

    /// Sets the value before.
    pub fn before(mut self, value: serde_json::Value) -> Self {
        self.before = Some(value);
        self
    }

    /// Sets the value after.
    pub fn after(mut self, value: serde_json::Value) -> Self {
        self.after = Some(value);
        self
    }
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Monotonic id.
    pub id: AuditId,
    /// When, ms since the epoch (never earlier than the previous entry's).
    pub time_ms: i64,
    /// Who.
    pub actor: Actor,
    /// The app concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppId>,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// After.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// Which entries a query returns; every field narrows (all `None`: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this app's entries (scans only them).
    pub app: Option<AppId>,
    /// Only this actor's.
    pub actor: Option<Actor>,
    /// Only actions starting with this (`"key."`, `"operator.disable"`…).
    pub action_prefix: Option<String>,
    /// Only entries at or after this time (ms).
    pub from_ms: Option<i64>,
    /// Only entries before this time (ms).
    pub to_ms: Option<i64>,
}

/// Where the next page starts: after the entry `(time_ms, id)`. Its text form
/// (`time_ms.id`) is what HTTP clients pass back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditCursor {
    time_ms: i64,
    id: AuditId,
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.time_ms, self.id.0)
    }
}

impl FromStr for AuditCursor {
    type Err = Error;
    fn from_str(text: &str) -> Result<AuditCursor> {
        let invalid = || Error::InvalidCursor(text.chars().take(64).collect());
        let (time, id) = text.split_once('.').ok_or_else(invalid)?;
        let time_ms: i64 = time.parse().map_err(|_| invalid())?;
        let id: u64 = id.parse().map_err(|_| invalid())?;
        if time_ms < 0 {
            return Err(invalid());
        }
        Ok(AuditCursor { time_ms, id: AuditId(id) })
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass it back for older entries; `None` when there are none. A page can be shorter
    /// than the limit and still have a cursor when the scan budget ran out; the last page
    /// can be empty.
    pub next_cursor: Option<AuditCursor>,
}

/// Hides most of a secret for an audit entry or a log line: its first few characters
/// (none when short) then `…`. `mask("mk_3f2a91c0_88d1e7")` → `"mk_3…"`.
pub fn mask(secret: &str) -> String {
    let n_chars = secret.chars().count();
    let shown = match n_chars {
        0..=7 => 0,
        8..=15 => 2,
        _ => 4,
    };
    let mut masked: String = secret.chars().take(shown).collect();
    masked.push('…');
    masked
}

fn time_key(time_ms: i64, id: AuditId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(!(time_ms.max(0) as u64)).to_be_bytes());
    key[8..].copy_from_slice(&(!id.0).to_be_bytes());
    key
}

fn cursor_of_key(key: &[u8]) -> Option<AuditCursor> {
    let suffix = key.len().checked_sub(16).map(|start| &key[start..])?;
    let time = !u64::from_be_bytes(suffix[..8].try_into().ok()?);
    let id = !u64::from_be_bytes(suffix[8..].try_into().ok()?);
    Some(AuditCursor { time_ms: i64::try_from(time).ok()?, id: AuditId(id) })
}

fn app_prefix(app: &AppId) -> Vec<u8> {
    let mut prefix = app.as_str().as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn check_action(action: &str) -> Result<()> {
    let ok = !action.is_empty()
        && action.len() <= MAX_ACTION_LEN
        && action.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("invalid audit action {action:?}: use 1-{MAX_ACTION_LEN} of [a-z0-9_.], e.g. \"key.create\"")))
    }
}

/// The next id and the latest time, advanced only by a successful commit.
#[derive(Debug)]
struct AuditHead {
    next_id: u64,
    last_time_ms: i64,
}

/// The audit log of one store. Get it from [`Tenancy::audit`](crate::Tenancy::audit);
/// there must be one per store, since it hands out the ids.
#[derive(Debug)]
pub struct AuditLog {
    store: Arc<dyn KvStore>,
    clock: Arc<dyn Clock>,
    head: Mutex<AuditHead>,
}

impl AuditLog {
    pub(crate) fn open(store: Arc<dyn KvStore>, clock: Arc<dyn Clock>) -> Result<AuditLog> {
        let newest = store.range(AUDIT_TABLE, Bound::Unbounded, Bound::Unbounded, 1)?;
        let head = match newest.first() {
            Some((key, _)) => {
                let cursor = cursor_of_key(key)
                    .filter(|_| key.len() == 16)
                    .ok_or_else(|| Error::CorruptRecord { table: AUDIT_TABLE, key: hex::encode(key), reason: "the key is not 16 bytes".into() })?;
                AuditHead { next_id: cursor.id.0 + 1, last_time_ms: cursor.time_ms }
            }
            None => AuditHead { next_id: 1, last_time_ms: 0 },
        };
        Ok(AuditLog { store, clock, head: Mutex::new(head) })
    }

    /// Records an entry durably (assigning its id and time) and returns it.
    pub fn record(&self, entry: NewAuditEntry<'_>) -> Result<AuditEntry> {
        self.record_in(WriteBatch::new(), entry)
    }

    /// Adds the entry to `batch` — the caller's change, for the same store — and commits
    /// both atomically: either the change and its entry are durable, or neither is.
    /// Audited commits are serialised, so ids follow commit order.
    pub fn record_in(&self, mut batch: WriteBatch, entry: NewAuditEntry<'_>) -> Result<AuditEntry> {
        check_action(entry.action)?;
        if entry.target.len() > MAX_TARGET_LEN {
            return Err(Error::InvalidArgument(format!("an audit target is at most {MAX_TARGET_LEN} bytes long")));
        }
        let mut head = self.head.lock();
        let recorded = AuditEntry {
            id: AuditId(head.next_id),
            time_ms: self.clock.now_ms().max(head.last_time_ms).max(0),
            actor: entry.actor,
            app: entry.app,
            action: entry.action.to_owned(),
            target: entry.target,
            before: entry.before,
            after: entry.after,
        };
        let key = time_key(recorded.time_ms, recorded.id);
        let value = crate::to_json(&recorded);
        if let Some(app) = &recorded.app {
            let mut app_key = app_prefix(app);
            app_key.extend_from_slice(&key);
            batch.put(AUDIT_BY_APP_TABLE, app_key, value.clone());
        }
        batch.put(AUDIT_TABLE, key.to_vec(), value);
        self.store.commit(batch)?;
        head.next_id += 1;
        head.last_time_ms = recorded.time_ms;
        Ok(recorded)
    }

    /// Entries matching `filter`, newest first, at most `limit` (1..=[`MAX_PAGE`]),
    /// starting after `cursor`.
    pub fn query(&self, filter: &AuditFilter, cursor: Option<AuditCursor>, limit: usize) -> Result<AuditPage> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::InvalidArgument(format!("invalid limit {limit}: use 1..={MAX_PAGE}")));
        }
        let (table, prefix) = match &filter.app {
            Some(app) => (AUDIT_BY_APP_TABLE, app_prefix(app)),
            None => (AUDIT_TABLE, Vec::new()),
        };
        let with_prefix = |suffix: &[u8]| {
            let mut key = prefix.clone();
            key.extend_from_slice(suffix);
            key
        };
        let mut start = match (cursor, filter.to_ms) {
            (Some(cursor), _) => Bound::Excluded(with_prefix(&time_key(cursor.time_ms, cursor.id))),
            (None, Some(to_ms)) if to_ms <= 0 => return Ok(AuditPage { entries: Vec::new(), next_cursor: None }),
            // The newest key at time to_ms - 1 has inv(id) ≥ 0: start there, inclusive.
            (None, Some(to_ms)) => Bound::Included(with_prefix(&time_key(to_ms - 1, AuditId(u64::MAX)))),
            (None, None) => Bound::Included(prefix.clone()),
        };
        let end = match filter.from_ms {
            // The oldest key at time from_ms: inv(id) = !0.
            Some(from_ms) => Bound::Included(with_prefix(&time_key(from_ms, AuditId(0)))),
            None => meridian_state::prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let mut entries = Vec::new();
        let mut scanned = 0;
        // The first read is the page's size (enough when no filter skips entries), then
        // reads grow to SCAN_CHUNK.
        let mut chunk_size = limit.min(SCAN_CHUNK);
        loop {
            let chunk = self.store.range(table, as_ref(&start), as_ref(&end), chunk_size)?;
            let n_read = chunk.len();
            for (key, value) in chunk {
                scanned += 1;
                let entry: AuditEntry = crate::from_json(table, &key, &value)?;
                if self.matches(filter, &entry) {
                    let cursor = AuditCursor { time_ms: entry.time_ms, id: entry.id };
                    entries.push(entry);
                    if entries.len() == limit {
                        return Ok(AuditPage { entries, next_cursor: Some(cursor) });
                    }
                }
                start = Bound::Excluded(key);
            }
            if n_read < chunk_size {
                return Ok(AuditPage { entries, next_cursor: None });
            }
            chunk_size = (chunk_size * 2).min(SCAN_CHUNK);
            if scanned >= SCAN_BUDGET {
                let next_cursor = match &start {
                    Bound::Excluded(key) => cursor_of_key(key),
                    _ => None,
                };
                return Ok(AuditPage { entries, next_cursor });
            }
        }
    }

    fn matches(&self, filter: &AuditFilter, entry: &AuditEntry) -> bool {
        filter.actor.as_ref().is_none_or(|actor| *actor == entry.actor)
            && filter.action_prefix.as_deref().is_none_or(|prefix| entry.action.starts_with(prefix))
            && filter.from_ms.is_none_or(|from| entry.time_ms >= from)
            && filter.to_ms.is_none_or(|to| entry.time_ms < to)
            && filter.app.as_ref().is_none_or(|app| entry.app.as_ref() == Some(app))
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_newest_first_and_decode_back() {
        let older = time_key(1_000, AuditId(1));
        let same_time_newer_id = time_key(1_000, AuditId(2));
        let newer = time_key(2_000, AuditId(3));
        assert!(newer < same_time_newer_id && same_time_newer_id < older);
        let cursor = cursor_of_key(&newer).unwrap();
        assert_eq!((cursor.time_ms, cursor.id), (2_000, AuditId(3)));
        let mut app_key = app_prefix(&AppId::new("shop").unwrap());
        app_key.extend_from_slice(&older);
        assert_eq!(cursor_of_key(&app_key).unwrap().id, AuditId(1));
    }

    #[test]
    fn cursors_round_trip_as_text_and_reject_garbage() {
        let cursor = AuditCursor { time_ms: 1_700_000_000_000, id: AuditId(42) };
        assert_eq!(cursor.to_string(), "1700000000000.42");
        assert_eq!(cursor.to_string().parse::<AuditCursor>().unwrap(), cursor);
        for bad in ["", "12", "a.b", "-5.1", "1.2.3"] {
            assert!(matches!(bad.parse::<AuditCursor>(), Err(Error::InvalidCursor(_))), "{bad:?}");
        }
    }

    #[test]
    fn mask_keeps_a_short_prefix_only() {
        assert_eq!(mask("mk_3f2a91c0_88d1e7aa"), "mk_3…");
        assert_eq!(mask("hunter2"), "…");
        assert_eq!(mask("12345678"), "12…");
        assert_eq!(mask(""), "…");
    }

    #[test]
    fn actions_have_a_small_alphabet() {
        check_action("operator.sessions_revoke").unwrap();
        assert!(check_action("").is_err());
        assert!(check_action("Key.Create").is_err());
        assert!(check_action(&"a".repeat(65)).is_err());
    }

    #[test]
    fn actors_read_as_text() {
        assert_eq!(Actor::Master.to_string(), "master");
        assert_eq!(Actor::Operator { login: OperatorId::new("alice").unwrap() }.to_string(), "operator:alice");
        assert_eq!(Actor::Key { key_id: "ab12".into(), app: None }.to_string(), "key:ab12");
        let json = serde_json::to_value(Actor::Operator { login: OperatorId::new("alice").unwrap() }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "operator", "login": "alice"}));
    }
}
