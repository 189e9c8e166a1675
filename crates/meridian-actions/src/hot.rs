//! Profiles in memory for reads that need no store: the processors publish each changed
//! user's fields here after the round that changed them has committed, so a read from
//! here sees exactly what a store read would (never anything uncommitted), without a
//! blocking call. A user is answered from memory when every group's fields are here;
//! otherwise the caller reads the store.

use crate::state::UserKey;
use crate::store::Fields;
use std::sync::Arc;

/// Recently changed users' fields, per group (bounded, least recently used out).
#[derive(Clone)]
pub struct HotProfiles {
    cache: moka::sync::Cache<(UserKey, String), Arc<Fields>>,
    scopes: Arc<Vec<String>>,
}

impl std::fmt::Debug for HotProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotProfiles").field("entries", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl HotProfiles {
    /// Room for `capacity` (user, group) entries; `scopes` are the groups' scopes (empty
    /// string for the default group).
    pub fn new(capacity: u64, scopes: Vec<String>) -> HotProfiles {
        HotProfiles { cache: moka::sync::Cache::new(capacity), scopes: Arc::new(scopes) }
    }

    /// Publishes a user's committed fields of one scope (empty: erased or unknown).
    pub fn publish(&self, user: UserKey, scope: String, fields: Arc<Fields>) {
        self.cache.insert((user, scope), fields);
    }

    /// The user's fields of every scope (shared, not copied), if all are here.
    pub fn get(&self, user: &UserKey) -> Option<Vec<Arc<Fields>>> {
        let mut out = Vec::with_capacity(self.scopes.len());
        let mut key = (user.clone(), String::new());
        for scope in self.scopes.iter() {
            key.1.clone_from(scope);
            out.push(self.cache.get(&key)?);
        }
        Some(out)
    }

    /// Entries held (approximately).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
