//! The `Tenancy` facade: opens the store, loads every cache, and owns the parts (apps,
//! keys, operators, sessions, login limits, audit log). Its methods live in the modules of
//! each part.

use crate::apps::{AppRecord, APPS_TABLE};
use crate::audit::AuditLog;
use crate::clock::{Clock, SystemClock};
use crate::config::TenancyConfig;
use crate::keys::{ApiKey, KEYS_TABLE};
use crate::operators::{OperatorId, StoredOperator, OPERATORS_TABLE};
use crate::password::PasswordHasher;
use crate::permissions::Principal;
use crate::ratelimit::LoginLimiter;
use crate::sessions::{StoredSession, SESSIONS_TABLE};
use crate::{Error, Result};
use meridian_event::AppId;
use meridian_state::KvStore;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// Apps, keys, operators, sessions and the audit log of one store (see the crate docs).
/// Share it behind an `Arc`; open one per store.
pub struct Tenancy {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) config: TenancyConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: AuditLog,
    pub(crate) master_digest: Option<[u8; 32]>,
    pub(crate) apps: RwLock<BTreeMap<AppId, AppRecord>>,
    pub(crate) keys: RwLock<HashMap<[u8; 32], ApiKey>>,
    pub(crate) operators: RwLock<BTreeMap<OperatorId, StoredOperator>>,
    pub(crate) sessions: RwLock<HashMap<[u8; 32], StoredSession>>,
    pub(crate) hasher: PasswordHasher,
    pub(crate) limiter: LoginLimiter,
    /// Serialises every write of tenancy data: check against the caches, commit (with the
    /// audit entry), then update the caches. Never held while argon2 runs.
    pub(crate) writes: Mutex<()>,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("master_key", &self.master_digest.map(|_| "set"))
            .field("apps", &self.apps.read().len())
            .field("keys", &self.keys.read().len())
            .field("operators", &self.operators.read().len())
            .field("sessions", &self.sessions.read().len())
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// Loads everything from `store`. `master_key` authorises everything; `config` is
    /// validated.
    pub fn open(store: Arc<dyn KvStore>, master_key: Option<&str>, config: TenancyConfig) -> Result<Tenancy> {
        Tenancy::open_with_clock(store, master_key, config, Arc::new(SystemClock))
    }

    /// [`Tenancy::open`] with a clock for creation and audit times (tests, simulations).
    /// Session expiry uses the `now_ms` passed to each call instead.
    pub fn open_with_clock(store: Arc<dyn KvStore>, master_key: Option<&str>, config: TenancyConfig, clock: Arc<dyn Clock>) -> Result<Tenancy> {
        config.validate()?;
        if master_key.is_some_and(str::is_empty) {
            return Err(Error::InvalidArgument("the master key is empty: unset it or generate one".into()));
        }
        let mut apps = BTreeMap::new();
        for (key, value) in store.scan_prefix(APPS_TABLE, b"", usize::MAX)? {
            let app: AppRecord = crate::from_json(APPS_TABLE, &key, &value)?;
            apps.insert(app.id.clone(), app);
        }
        let mut keys = HashMap::new();
        for (key, value) in store.scan_prefix(KEYS_TABLE, b"", usize::MAX)? {
            let digest = <[u8; 32]>::try_from(key.as_slice())
                .map_err(|_| Error::CorruptRecord { table: KEYS_TABLE, key: crate::printable_key(&key), reason: "the key is not a 32-byte digest".into() })?;
            let api_key: ApiKey = crate::from_json(KEYS_TABLE, &key, &value)?;
            // Only the master key has no app, and it is never stored: such a record would
            // authenticate as the master key.
            if api_key.app.is_none() {
                return Err(Error::CorruptRecord { table: KEYS_TABLE, key: hex::encode(&key), reason: "a stored key has no app".into() });
            }
            keys.insert(digest, api_key);
        }
        let mut operators = BTreeMap::new();
        for (key, value) in store.scan_prefix(OPERATORS_TABLE, b"", usize::MAX)? {
            let stored: StoredOperator = crate::from_json(OPERATORS_TABLE, &key, &value)?;
            operators.insert(stored.operator.login.clone(), stored);
        }
        // Sessions are disposable: an unreadable one is skipped (its operator logs in again).
        let mut sessions = HashMap::new();
        for (key, value) in store.scan_prefix(SESSIONS_TABLE, b"", usize::MAX)? {
            match (<[u8; 32]>::try_from(key.as_slice()), serde_json::from_slice::<StoredSession>(&value)) {
                (Ok(digest), Ok(session)) => {
                    sessions.insert(digest, session);
                }
                (_, Err(e)) => tracing::warn!(error = %e, "skipping an unreadable session record"),
                (Err(_), Ok(_)) => tracing::warn!("skipping a session record whose key is not a digest"),
            }
        }
        let audit = AuditLog::open(store.clone(), clock.clone())?;
        Ok(Tenancy {
            hasher: PasswordHasher::new(&config.password_hashing)?,
            limiter: LoginLimiter::new(&config.login_limits),
            master_digest: master_key.map(crate::sha256),
            store,
            config,
            clock,
            audit,
            apps: RwLock::new(apps),
            keys: RwLock::new(keys),
            operators: RwLock::new(operators),
            sessions: RwLock::new(sessions),
            writes: Mutex::new(()),
        })
    }

    /// The audit log, for every capability to record its changes in.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The configuration in force.
    pub fn config(&self) -> &TenancyConfig {
        &self.config
    }

    /// The clock used for creation and audit times.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The principal of an API key or the master key (memory only).
    pub fn authenticate(&self, presented_key: &str) -> Option<Principal> {
        self.authenticate_key(presented_key).map(Principal::from_key)
    }

    /// The principal of a session token; see [`Tenancy::session`].
    pub fn authenticate_session(&self, token: &str, now_ms: i64) -> Result<Principal> {
        self.session(token, now_ms).map(Principal::Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenancy_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Tenancy>();
        shareable::<crate::Principal>();
    }

    #[test]
    fn an_empty_master_key_is_refused() {
        let store: Arc<dyn KvStore> = Arc::new(meridian_state::MemoryStore::new());
        assert!(matches!(Tenancy::open(store, Some(""), TenancyConfig::default()), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn a_stored_key_without_an_app_is_refused_rather_than_made_master() {
        let store: Arc<dyn KvStore> = Arc::new(meridian_state::MemoryStore::new());
        let mut batch = meridian_state::WriteBatch::new();
        let record = br#"{"key_id":"x","app":null,"scopes":["admin"],"created_ms":0}"#;
        batch.put(KEYS_TABLE, crate::sha256("mk_x_forged").to_vec(), record.to_vec());
        store.commit(batch).unwrap();
        assert!(matches!(Tenancy::open(store, None, TenancyConfig::default()), Err(Error::CorruptRecord { table: "api_keys", .. })));
    }
}
