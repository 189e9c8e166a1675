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

/// Table of the embedded store: key = app, 0, user, 0, field; value = the field.
pub const USERS_TABLE: &str = "actions_users";

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
    fn stage(&self, batch: &mut WriteBatch, writes: &[UserWrite]) -> bool;

    /// Applies `writes` now, in order; idempotent.
    fn apply(&self, writes: &[UserWrite]) -> Result<()>;

    /// Users of `app` with at least one field, in id order, after `after`, at most `limit`.
    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// The backend's name, for status pages and errors.
    fn backend(&self) -> &'static str;
}

/// Profiles in the module's own state store.
#[derive(Debug, Clone)]
pub struct EmbeddedProfileStore {
    kv: Arc<dyn KvStore>,
}

impl EmbeddedProfileStore {
    /// A store over `kv` (the processors' state store).
    pub fn new(kv: Arc<dyn KvStore>) -> EmbeddedProfileStore {
        EmbeddedProfileStore { kv }
    }

    fn prefix(user: &UserKey) -> Vec<u8> {
        let mut k = user.to_bytes();
        k.push(0);
        k
    }

    fn write_into(batch: &mut WriteBatch, writes: &[UserWrite]) {
        for w in writes {
            let Some(user) = &w.user else { continue };
            let prefix = Self::prefix(user);
            if w.clear {
                batch.delete_prefix(USERS_TABLE, prefix.clone());
            }
            for field in &w.remove {
                let mut k = prefix.clone();
                k.extend_from_slice(field.as_bytes());
                batch.delete(USERS_TABLE, k);
            }
            for (field, value) in &w.set {
                let mut k = prefix.clone();
                k.extend_from_slice(field.as_bytes());
                batch.put(USERS_TABLE, k, value.clone());
            }
        }
    }
}

impl ProfileStore for EmbeddedProfileStore {
    fn read_many(&self, users: &[UserKey]) -> Result<Vec<Fields>> {
        users
            .iter()
            .map(|u| {
                let prefix = Self::prefix(u);
                Ok(self
                    .kv
                    .scan_prefix(USERS_TABLE, &prefix, usize::MAX)?
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), v))
                    .collect())
            })
            .collect()
    }

    fn read_field(&self, user: &UserKey, field: &str) -> Result<Option<Vec<u8>>> {
        let mut k = Self::prefix(user);
        k.extend_from_slice(field.as_bytes());
        Ok(self.kv.get(USERS_TABLE, &k)?)
    }

    fn stage(&self, batch: &mut WriteBatch, writes: &[UserWrite]) -> bool {
        Self::write_into(batch, writes);
        true
    }

    fn apply(&self, writes: &[UserWrite]) -> Result<()> {
        let mut batch = WriteBatch::new();
        Self::write_into(&mut batch, writes);
        self.kv.commit(batch)?;
        Ok(())
    }

    fn users(&self, app: &AppId, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut prefix = app.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut from = prefix.clone();
        if let Some(after) = after {
            from.extend_from_slice(after.as_bytes());
            // Past every field of `after`: its fields start with after, 0.
            from.push(1);
        }
        let mut end = prefix.clone();
        *end.last_mut().unwrap_or(&mut 0) = 1;
        let mut out: Vec<String> = Vec::new();
        let mut cursor = from;
        while out.len() < limit {
            let rows = self.kv.range(USERS_TABLE, std::ops::Bound::Included(&cursor), std::ops::Bound::Excluded(&end), 256)?;
            if rows.is_empty() {
                break;
            }
            for (k, _) in &rows {
                let rest = &k[prefix.len()..];
                let Some(split) = rest.iter().position(|b| *b == 0) else { continue };
                let user = String::from_utf8_lossy(&rest[..split]).into_owned();
                if out.last() != Some(&user) && out.len() < limit {
                    out.push(user);
                }
            }
            let last = &rows[rows.len() - 1].0;
            cursor = last.clone();
            cursor.push(0);
        }
        Ok(out)
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}
