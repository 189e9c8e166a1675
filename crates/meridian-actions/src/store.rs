//! Where profiles are kept: [`ProfileStore`], a hash of fields per user.
//!
//! The processors write full field values only (never increments), so applying the same
//! write twice is harmless. Two ways to write:
//!
//! * a store that lives in the processor's own state store ([`EmbeddedProfileStore`])
//!   stages its writes in the round's batch (`stage` returns true): they commit
//!   atomically with the positions, outbox and timers;
//! * any other store (Redis) is written after the round has committed (`apply`), from a
//!   redo record the processor commits in the round's batch: a crash between the commit
//!   and `apply` leaves the redo record, applied again at start. So a store never holds
//!   state the processors' positions do not account for, and nothing is counted twice.

use crate::state::UserKey;
use crate::Result;
use meridian_event::AppId;
use meridian_state::{KvStore, WriteBatch};
use std::sync::Arc;

/// Table of the embedded store: key = app, 0, user, 0, scope (the isolation group; empty
/// for the default one); value = every field of the user in that scope ([`encode_fields`]). One key per user: a read is one point lookup (a bloom filter
/// answers most misses) and a round writes one entry per user, instead of a prefix scan
/// and one entry per field (measured: the scans and per-field entries took over half of
/// the processor's time, docs/benchmarks.md).
pub const USERS_TABLE: &str = "actions_users";

/// Encodes a user's fields (version byte, then postcard).
pub fn encode_fields(fields: &Fields) -> Vec<u8> {
    crate::state::encode(fields)
}

/// Decodes [`encode_fields`].
pub fn decode_fields(bytes: &[u8]) -> Result<Fields> {
    crate::state::decode("user fields", bytes)
}

/// A user's stored fields: (field name, value).
pub type Fields = Vec<(String, Vec<u8>)>;

/// Changes to one user's fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserWrite {
    /// The user.
    pub user: Option<UserKey>,
    /// Remove every field first (an erasure).
    pub clear: bool,
    /// Fields to set.
    pub set: Vec<(String, Vec<u8>)>,
    /// Fields to remove.
    pub remove: Vec<String>,
    /// Which group's fields these are (empty: the default group). `clear` clears only this
    /// scope's fields in a store that keeps scopes apart; fields of different scopes never
    /// share a name.
    pub scope: String,
    /// The store's own encoding of this write, when [`ProfileStore::prepare`] made one
    /// (on the processor's shard threads, so the round's thread only copies it).
    pub prepared: Option<Vec<u8>>,
}

impl UserWrite {
    /// Writes for `user`.
    pub fn new(user: UserKey) -> UserWrite {
        UserWrite { user: Some(user), ..UserWrite::default() }
    }
}

/// A store of per-user fields. Implementations are `Send + Sync`; calls block.
pub trait ProfileStore: Send + Sync + std::fmt::Debug {
    /// Every field of each user (empty when unknown), in the order asked.
    fn read_many(&self, users: &[UserKey]) -> Result<Vec<Fields>>;

    /// One field of a user.
    fn read_field(&self, user: &UserKey, field: &str) -> Result<Option<Vec<u8>>>;

    /// Stages `writes` in the processor's round batch, if this store lives in the
    /// processor's state store; false otherwise (the caller uses `apply` after the commit).
    /// May take each write's `prepared` bytes (moved into the batch, not copied).
    fn stage(&self, batch: &mut WriteBatch, writes: &mut [UserWrite]) -> bool;

    /// Encodes `write` ahead of [`Self::stage`] where the store can (sets
    /// `write.prepared`); called on the processors' shard threads. Default: nothing.
    fn prepare(&self, _write: &mut UserWrite) {}

    /// Whether the processors should send every field of a user in each write (`clear`
    /// plus all fields) rather than only the changed ones: true for a store that keeps a
    /// user in one value. Default false.
    fn wants_full_writes(&self) -> bool {
        false
    }

    /// Applies `writes` now, in order; idempotent.
    fn apply(&self, writes: &[UserWrite]) -> Result<()>;

    /// Users of `app` with at least one field, in id order, after `after`, at most `limit`.
    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// The backend's name, for status pages and errors.
    fn backend(&self) -> &'static str;
}

/// Profiles in the module's own state store: one value per user and scope.
#[derive(Debug, Clone)]
pub struct EmbeddedProfileStore {
    kv: Arc<dyn KvStore>,
    scopes: Vec<String>,
}

impl EmbeddedProfileStore {
    /// A store over `kv` (the processors' state store) with the default scope only.
    pub fn new(kv: Arc<dyn KvStore>) -> EmbeddedProfileStore {
        EmbeddedProfileStore { kv, scopes: vec![String::new()] }
    }

    /// A store over `kv` for the groups of `config` (each group's fields are kept apart,
    /// so the groups' processors never write the same value).
    pub fn for_config(kv: Arc<dyn KvStore>, config: &crate::ActionsConfig) -> EmbeddedProfileStore {
        let mut scopes = vec![String::new()];
        scopes.extend(config.groups.iter().map(|g| g.name.clone()));
        EmbeddedProfileStore { kv, scopes }
    }

    fn key(user: &UserKey, scope: &str) -> Vec<u8> {
        let mut k = user.to_bytes();
        k.push(0);
        k.extend_from_slice(scope.as_bytes());
        k
    }

    fn read_scope(&self, user: &UserKey, scope: &str) -> Result<Fields> {
        match self.kv.get(USERS_TABLE, &Self::key(user, scope))? {
            Some(bytes) => decode_fields(&bytes),
            None => Ok(Vec::new()),
        }
    }

    fn read(&self, user: &UserKey) -> Result<Fields> {
        let mut fields = Vec::new();
        for scope in &self.scopes {
            fields.extend(self.read_scope(user, scope)?);
        }
        Ok(fields)
    }

    /// The user's fields after `w`, starting from `current`.
    fn merged(mut current: Fields, w: &UserWrite) -> Fields {
        if w.clear {
            current.clear();
        }
        current.retain(|(f, _)| !w.remove.contains(f) && !w.set.iter().any(|(s, _)| s == f));
        current.extend(w.set.iter().cloned());
        current.sort_by(|a, b| a.0.cmp(&b.0));
        current
    }

    /// Adds `writes` to `batch`; writes after the first of a user in the same call build
    /// on it, earlier ones on the committed value.
    fn write_into(&self, batch: &mut WriteBatch, writes: &mut [UserWrite]) -> Result<()> {
        let mut pending: std::collections::HashMap<Vec<u8>, Fields> = std::collections::HashMap::new();
        // Users written more than once in this call take the general path.
        let mut seen = std::collections::HashSet::new();
        let repeated: std::collections::HashSet<Vec<u8>> = writes.iter().filter_map(|w| w.user.as_ref().map(|u| Self::key(u, &w.scope))).filter(|k| !seen.insert(k.clone())).collect();
        for w in writes.iter_mut() {
            let Some(user) = &w.user else { continue };
            let key = Self::key(user, &w.scope);
            if w.clear && w.remove.is_empty() && !repeated.contains(&key) {
                // A full write (what the processors send): encoded as given, no copy.
                if w.set.is_empty() {
                    batch.delete(USERS_TABLE, key);
                } else {
                    let value = match w.prepared.take() {
                        Some(bytes) => bytes,
                        None => crate::state::encode(&w.set),
                    };
                    batch.put(USERS_TABLE, key, value);
                }
                continue;
            }
            let current = match pending.remove(&key) {
                Some(f) => f,
                None if w.clear => Vec::new(),
                None => self.read_scope(user, &w.scope)?,
            };
            let fields = Self::merged(current, w);
            pending.insert(key, fields);
        }
        for (key, fields) in pending {
            if fields.is_empty() {
                batch.delete(USERS_TABLE, key);
            } else {
                batch.put(USERS_TABLE, key, encode_fields(&fields));
            }
        }
        Ok(())
    }
}

impl ProfileStore for EmbeddedProfileStore {
    fn read_many(&self, users: &[UserKey]) -> Result<Vec<Fields>> {
        users.iter().map(|u| self.read(u)).collect()
    }

    fn read_field(&self, user: &UserKey, field: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read(user)?.into_iter().find(|(f, _)| f == field).map(|(_, v)| v))
    }

    fn stage(&self, batch: &mut WriteBatch, writes: &mut [UserWrite]) -> bool {
        // Full writes (clear + every field, what the processors send to a store that
        // wants them) need no read; a failed read of a partial one leaves it to `apply`.
        match self.write_into(batch, writes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot stage profile writes; the round fails");
                false
            }
        }
    }

    fn wants_full_writes(&self) -> bool {
        true
    }

    fn prepare(&self, write: &mut UserWrite) {
        if write.clear && write.remove.is_empty() && !write.set.is_empty() {
            write.prepared = Some(crate::state::encode(&write.set));
        }
    }

    fn apply(&self, writes: &[UserWrite]) -> Result<()> {
        let mut batch = WriteBatch::new();
        self.write_into(&mut batch, &mut writes.to_vec())?;
        self.kv.commit(batch)?;
        Ok(())
    }

    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut prefix = app.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut start = prefix.clone();
        if let Some(after) = after {
            start.extend_from_slice(after.as_bytes());
            // Past every scope of `after` (its keys are after, 0, scope).
            start.push(1);
        }
        let mut end = prefix.clone();
        *end.last_mut().unwrap_or(&mut 0) = 1;
        let mut out: Vec<String> = Vec::new();
        let mut cursor = start;
        while out.len() < limit {
            let rows = self.kv.range(USERS_TABLE, std::ops::Bound::Included(&cursor), std::ops::Bound::Excluded(&end), 256)?;
            let Some((last, _)) = rows.last() else { break };
            let mut next = last.clone();
            next.push(0);
            for (k, _) in &rows {
                let rest = &k[prefix.len()..];
                let user = String::from_utf8_lossy(&rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]).into_owned();
                if out.last() != Some(&user) && out.len() < limit {
                    out.push(user);
                }
            }
            cursor = next;
        }
        Ok(out)
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}
