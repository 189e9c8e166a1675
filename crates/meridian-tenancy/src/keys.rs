//! API keys with scopes. Keys are random, shown once, and stored only as SHA-256 digests;
//! the master key (configured at open) can do everything.

use crate::audit::{Actor, NewAuditEntry};
use crate::permissions::Permission;
use crate::{Error, Result, Tenancy};
use meridian_event::AppId;
use meridian_state::WriteBatch;
use serde::{Deserialize, Serialize};

/// Table of keys: key = SHA-256 of the secret, value = JSON [`ApiKey`].
pub const KEYS_TABLE: &str = "api_keys";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send events.
    Write,
    /// Query.
    Read,
    /// Manage the app (keys, config, rules).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Write, Scope::Read, Scope::Admin];

    /// Parses `write`, `read` or `admin`.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "write" => Some(Scope::Write),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// The one permission this scope grants: scopes are independent (an admin key cannot
    /// send events unless it also has `write`).
    pub fn permission(self) -> Permission {
        match self {
            Scope::Write => Permission::Write,
            Scope::Read => Permission::Read,
            Scope::Admin => Permission::Admin,
        }
    }
}

/// An API key's public record (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id of the key (safe to log; also part of the secret's text).
    pub key_id: String,
    /// The key's app; `None` for the master key.
    pub app: Option<AppId>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

impl ApiKey {
    /// Key id of the master key.
    pub const MASTER_KEY_ID: &'static str = "master";

    /// True for the master key.
    pub fn is_master(&self) -> bool {
        self.app.is_none()
    }

    /// Whether this key may act with `scope` on `app`.
    pub fn allows(&self, scope: Scope, app: &AppId) -> bool {
        match &self.app {
            None => true,
            Some(own) => own == app && self.scopes.contains(&scope),
        }
    }

    /// Whether this key grants `permission` on `app` (its scopes mapped one to one).
    pub fn allows_permission(&self, permission: Permission, app: &AppId) -> bool {
        match &self.app {
            None => true,
            Some(own) => own == app && self.scopes.iter().any(|scope| scope.permission() == permission),
        }
    }

    fn master() -> ApiKey {
        ApiKey { key_id: ApiKey::MASTER_KEY_ID.into(), app: None, scopes: Scope::ALL.to_vec(), created_ms: 0 }
    }
}

/// A new random master key (`mm_` and 48 hex digits).
pub fn generate_master_key() -> String {
    format!("mm_{}", crate::random_hex(24))
}

impl Tenancy {
    /// Creates a key for `app` with `scopes`; returns the secret (shown once: only its
    /// SHA-256 is stored) and its record.
    pub fn create_key(&self, actor: &Actor, app: &AppId, scopes: &[Scope]) -> Result<(String, ApiKey)> {
        if scopes.is_empty() {
            return Err(Error::InvalidArgument("a key needs at least one scope: write, read or admin".into()));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let _writes = self.writes.lock();
        if !self.app_exists(app) {
            return Err(Error::UnknownApp(app.to_string()));
        }
        let key_id = crate::random_hex(6);
        let secret = format!("mk_{key_id}_{}", crate::random_hex(20));
        let record = ApiKey { key_id: key_id.clone(), app: Some(app.clone()), scopes, created_ms: self.clock.now_ms() };
        let digest = crate::sha256(&secret);
        let mut batch = WriteBatch::new();
        batch.put(KEYS_TABLE, digest.to_vec(), crate::to_json(&record));
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), "key.create", &key_id).app(app.clone()).after(crate::to_json_value(&record)),
        )?;
        self.keys.write().insert(digest, record.clone());
        Ok((secret, record))
    }

    /// The keys of `app` (no secrets), oldest first.
    pub fn list_keys(&self, app: &AppId) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = self.keys.read().values().filter(|key| key.app.as_ref() == Some(app)).cloned().collect();
        keys.sort_by(|a, b| (a.created_ms, &a.key_id).cmp(&(b.created_ms, &b.key_id)));
        keys
    }

    /// Revokes one key of `app`; it stops authenticating at once. Returns its record.
    pub fn revoke_key(&self, actor: &Actor, app: &AppId, key_id: &str) -> Result<ApiKey> {
        let _writes = self.writes.lock();
        let found = self.keys.read().iter().find(|(_, key)| key.app.as_ref() == Some(app) && key.key_id == key_id).map(|(d, k)| (*d, k.clone()));
        let Some((digest, record)) = found else {
            return Err(Error::UnknownKey { app: app.to_string(), key_id: key_id.chars().take(64).collect() });
        };
        let mut batch = WriteBatch::new();
        batch.delete(KEYS_TABLE, digest.to_vec());
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), "key.revoke", key_id).app(app.clone()).before(crate::to_json_value(&record)),
        )?;
        self.keys.write().remove(&digest);
        Ok(record)
    }

    /// The key a presented secret belongs to (the master key's record has no app and
    /// every scope). Reads only memory.
    pub fn authenticate_key(&self, presented: &str) -> Option<ApiKey> {
        let digest = crate::sha256(presented);
        // Comparing digests, not secrets: timing reveals nothing about the key.
        if self.master_digest.is_some_and(|master| master == digest) {
            return Some(ApiKey::master());
        }
        self.keys.read().get(&digest).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, PasswordHashing, TenancyConfig};
    use meridian_state::{KvStore, MemoryStore};
    use std::sync::Arc;

    fn open(store: Arc<dyn KvStore>, master: Option<&str>) -> Tenancy {
        let config = TenancyConfig { password_hashing: PasswordHashing::fast_insecure_for_tests(), ..TenancyConfig::default() };
        Tenancy::open_with_clock(store, master, config, Arc::new(ManualClock::new(1_000))).unwrap()
    }

    // Moved from meridian-collector's `keys` module, with its assertions intact.
    #[test]
    fn keys_authenticate_with_their_scopes_only() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let registry = open(store.clone(), Some("master-secret"));
        let shop = AppId::new("shop").unwrap();
        let other = AppId::new("other").unwrap();
        registry.create_app(&Actor::System, &shop, None).unwrap();
        assert!(matches!(registry.create_app(&Actor::System, &shop, None), Err(Error::AppExists(_))));
        let (secret, _) = registry.create_key(&Actor::System, &shop, &[Scope::Write]).unwrap();
        let key = registry.authenticate_key(&secret).unwrap();
        assert!(key.allows(Scope::Write, &shop));
        assert!(!key.allows(Scope::Read, &shop));
        assert!(!key.allows(Scope::Write, &other));
        assert!(registry.authenticate_key("mk_nope").is_none());
        let master = registry.authenticate_key("master-secret").unwrap();
        assert!(master.is_master() && master.allows(Scope::Admin, &other));
        assert!(matches!(registry.create_key(&Actor::System, &other, &[Scope::Read]), Err(Error::UnknownApp(_))));
        // Reloaded from the store.
        drop(registry);
        let again = open(store, None);
        assert_eq!(again.authenticate_key(&secret).unwrap().scopes, vec![Scope::Write]);
        assert!(again.authenticate_key("master-secret").is_none());
        assert_eq!(again.apps().len(), 1);
    }

    #[test]
    fn scopes_are_sorted_deduplicated_and_required() {
        let tenancy = open(Arc::new(MemoryStore::new()), None);
        let shop = AppId::new("shop").unwrap();
        tenancy.create_app(&Actor::System, &shop, None).unwrap();
        let (_, key) = tenancy.create_key(&Actor::System, &shop, &[Scope::Admin, Scope::Write, Scope::Admin]).unwrap();
        assert_eq!(key.scopes, vec![Scope::Write, Scope::Admin]);
        assert!(matches!(tenancy.create_key(&Actor::System, &shop, &[]), Err(Error::InvalidArgument(_))));
        assert_eq!(Scope::ALL.map(|s| Scope::parse(s.as_str())), Scope::ALL.map(Some));
        assert_eq!(Scope::parse("root"), None);
    }
}
