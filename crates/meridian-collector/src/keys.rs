//! Apps and their API keys. Keys are random, shown once, and stored only as SHA-256
//! hashes; the master key (from the environment) can do everything.

use crate::{CollectorError, Result};
use meridian_event::AppId;
use meridian_state::{KvStore, WriteBatch};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const APPS_TABLE: &str = "apps";
const KEYS_TABLE: &str = "api_keys";

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
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id of the key (safe to log).
    pub key_id: String,
    /// The key's app; `None` for the master key.
    pub app: Option<AppId>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

impl ApiKey {
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
}

/// A registered app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its id.
    pub id: AppId,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// Apps and keys, cached in memory and persisted in the state store.
#[derive(Debug)]
pub struct KeyRegistry {
    store: Arc<dyn KvStore>,
    master_hash: Option<[u8; 32]>,
    keys: RwLock<HashMap<[u8; 32], ApiKey>>,
    apps: RwLock<BTreeMap<AppId, AppRecord>>,
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source is unavailable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random master key.
pub fn generate_master_key() -> String {
    format!("mm_{}", random_hex(24))
}

impl KeyRegistry {
    /// Loads apps and keys from `store`. `master_key` authorises everything.
    pub fn open(store: Arc<dyn KvStore>, master_key: Option<&str>) -> Result<KeyRegistry> {
        let mut keys = HashMap::new();
        for (k, v) in store.scan_prefix(KEYS_TABLE, b"", usize::MAX)? {
            let Ok(digest) = <[u8; 32]>::try_from(k.as_slice()) else { continue };
            match serde_json::from_slice::<ApiKey>(&v) {
                Ok(key) => {
                    keys.insert(digest, key);
                }
                Err(e) => tracing::warn!(error = %e, "skipping unreadable api key record"),
            }
        }
        let mut apps = BTreeMap::new();
        for (_, v) in store.scan_prefix(APPS_TABLE, b"", usize::MAX)? {
            if let Ok(app) = serde_json::from_slice::<AppRecord>(&v) {
                apps.insert(app.id.clone(), app);
            }
        }
        Ok(KeyRegistry { store, master_hash: master_key.map(hash), keys: RwLock::new(keys), apps: RwLock::new(apps) })
    }

    /// Creates an app.
    pub fn create_app(&self, id: &AppId) -> Result<AppRecord> {
        let mut apps = self.apps.write();
        if apps.contains_key(id) {
            return Err(CollectorError::AppExists(id.to_string()));
        }
        let record = AppRecord { id: id.clone(), created_ms: meridian_event::Timestamp::now().millis() };
        let mut batch = WriteBatch::new();
        batch.put(APPS_TABLE, id.as_str().as_bytes().to_vec(), serde_json::to_vec(&record).unwrap_or_default());
        self.store.commit(batch)?;
        apps.insert(id.clone(), record.clone());
        Ok(record)
    }

    /// All apps.
    pub fn apps(&self) -> Vec<AppRecord> {
        self.apps.read().values().cloned().collect()
    }

    /// Whether `app` exists.
    pub fn app_exists(&self, app: &AppId) -> bool {
        self.apps.read().contains_key(app)
    }

    /// Creates a key for `app` with `scopes`; returns the secret (shown once) and its record.
    pub fn create_key(&self, app: &AppId, scopes: &[Scope]) -> Result<(String, ApiKey)> {
        if !self.app_exists(app) {
            return Err(CollectorError::UnknownApp(app.to_string()));
        }
        if scopes.is_empty() {
            return Err(CollectorError::InvalidArgument("a key needs at least one scope: write, read or admin".into()));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let key_id = random_hex(6);
        let secret = format!("mk_{key_id}_{}", random_hex(20));
        let record = ApiKey { key_id, app: Some(app.clone()), scopes, created_ms: meridian_event::Timestamp::now().millis() };
        let digest = hash(&secret);
        let mut batch = WriteBatch::new();
        batch.put(KEYS_TABLE, digest.to_vec(), serde_json::to_vec(&record).unwrap_or_default());
        self.store.commit(batch)?;
        self.keys.write().insert(digest, record.clone());
        Ok((secret, record))
    }

    /// The caller a presented secret belongs to.
    pub fn authenticate(&self, presented: &str) -> Option<ApiKey> {
        let digest = hash(presented);
        if let Some(master) = &self.master_hash {
            // Comparing digests, not secrets: timing reveals nothing about the key.
            if *master == digest {
                return Some(ApiKey { key_id: "master".into(), app: None, scopes: vec![Scope::Write, Scope::Read, Scope::Admin], created_ms: 0 });
            }
        }
        self.keys.read().get(&digest).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_state::MemoryStore;

    #[test]
    fn keys_authenticate_with_their_scopes_only() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let registry = KeyRegistry::open(store.clone(), Some("master-secret")).unwrap();
        let shop = AppId::new("shop").unwrap();
        let other = AppId::new("other").unwrap();
        registry.create_app(&shop).unwrap();
        assert!(matches!(registry.create_app(&shop), Err(CollectorError::AppExists(_))));
        let (secret, _) = registry.create_key(&shop, &[Scope::Write]).unwrap();
        let key = registry.authenticate(&secret).unwrap();
        assert!(key.allows(Scope::Write, &shop));
        assert!(!key.allows(Scope::Read, &shop));
        assert!(!key.allows(Scope::Write, &other));
        assert!(registry.authenticate("mk_nope").is_none());
        let master = registry.authenticate("master-secret").unwrap();
        assert!(master.is_master() && master.allows(Scope::Admin, &other));
        assert!(matches!(registry.create_key(&other, &[Scope::Read]), Err(CollectorError::UnknownApp(_))));
        // Reloaded from the store.
        let again = KeyRegistry::open(store, None).unwrap();
        assert_eq!(again.authenticate(&secret).unwrap().scopes, vec![Scope::Write]);
        assert!(again.authenticate("master-secret").is_none());
        assert_eq!(again.apps().len(), 1);
    }
}
