//! Operators: the console's human accounts, with grants of a role per app or on every app,
//! and passwords stored only as argon2id hashes.

use crate::audit::{Actor, NewAuditEntry};
use crate::password::PasswordHasher;
use crate::{Error, Result, Tenancy};
use meridian_event::AppId;
use meridian_state::WriteBatch;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Table of operators: key = login, value = JSON `{operator, password_hash}`.
pub const OPERATORS_TABLE: &str = "operators";

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// An operator's login: `[a-z0-9_.@-]{1,64}` (an e-mail address in lowercase fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorId(String);

impl OperatorId {
    /// Longest login, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a login.
    pub fn new(login: impl Into<String>) -> Result<OperatorId> {
        let login = login.into();
        let ok = !login.is_empty()
            && login.len() <= OperatorId::MAX_LEN
            && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'@' | b'-'));
        if ok {
            Ok(OperatorId(login))
        } else {
            Err(Error::InvalidLogin(login.chars().take(64).collect()))
        }
    }

    /// The login as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OperatorId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        OperatorId::new(value)
    }
}

impl From<OperatorId> for String {
    fn from(id: OperatorId) -> String {
        id.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an operator does; see [`Role::permissions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Looks.
    Viewer,
    /// Looks and changes.
    Operator,
    /// Looks and approves releases.
    Reviewer,
    /// Everything, including members and keys.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Reviewer, Role::Admin];

    /// Parses `viewer`, `operator`, `reviewer` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }
}

/// A role on one app, or on every app (`app: None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// The app; `None` = every app, present and future.
    pub app: Option<AppId>,
    /// The role.
    pub role: Role,
}

impl Grant {
    /// A grant on every app.
    pub fn global(role: Role) -> Grant {
        Grant { app: None, role }
    }

    /// A grant on one app.
    pub fn on_app(app: AppId, role: Role) -> Grant {
        Grant { app: Some(app), role }
    }
}

/// An operator's public record (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Login.
    pub login: OperatorId,
    /// Name shown in the console.
    pub display_name: String,
    /// Roles per app or global.
    pub grants: Vec<Grant>,
    /// A disabled operator cannot log in and has no sessions.
    pub disabled: bool,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last password change, ms since the epoch.
    pub password_changed_ms: i64,
}

/// What is stored per operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredOperator {
    pub(crate) operator: Operator,
    /// Argon2id PHC string.
    pub(crate) password_hash: String,
}

fn check_display_name(name: &str) -> Result<()> {
    let n_chars = name.chars().count();
    if n_chars == 0 || n_chars > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) || name.trim() != name {
        return Err(Error::InvalidArgument(format!(
            "a display name is 1-{MAX_DISPLAY_NAME_CHARS} printable characters without leading or trailing spaces"
        )));
    }
    Ok(())
}

impl Tenancy {
    /// Sorted, de-duplicated grants whose apps exist.
    fn checked_grants(&self, grants: &[Grant]) -> Result<Vec<Grant>> {
        for grant in grants {
            if let Some(app) = &grant.app {
                if !self.app_exists(app) {
                    return Err(Error::UnknownApp(app.to_string()));
                }
            }
        }
        let mut grants = grants.to_vec();
        grants.sort();
        grants.dedup();
        Ok(grants)
    }

    /// Creates an operator. The password needs at least 10 characters; only its argon2id
    /// hash is stored.
    pub fn create_operator(&self, actor: &Actor, login: &OperatorId, display_name: &str, password: &str, grants: &[Grant]) -> Result<Operator> {
        check_display_name(display_name)?;
        PasswordHasher::check_policy(password)?;
        let password_hash = self.hasher.hash(password)?;
        let _writes = self.writes.lock();
        self.insert_operator(actor, login, display_name, password_hash, grants)
    }

    /// Under the write lock.
    fn insert_operator(&self, actor: &Actor, login: &OperatorId, display_name: &str, password_hash: String, grants: &[Grant]) -> Result<Operator> {
        if self.operators.read().contains_key(login) {
            return Err(Error::OperatorExists(login.to_string()));
        }
        let grants = self.checked_grants(grants)?;
        let now_ms = self.clock.now_ms();
        let operator = Operator {
            login: login.clone(),
            display_name: display_name.to_owned(),
            grants,
            disabled: false,
            created_ms: now_ms,
            password_changed_ms: now_ms,
        };
        let stored = StoredOperator { operator: operator.clone(), password_hash };
        let mut batch = WriteBatch::new();
        batch.put(OPERATORS_TABLE, login.as_str().as_bytes().to_vec(), crate::to_json(&stored));
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), "operator.create", login.as_str()).after(crate::to_json_value(&operator)),
        )?;
        self.operators.write().insert(login.clone(), stored);
        Ok(operator)
    }

    /// Creates the operator unless one with this login exists, which is left unchanged
    /// (password and grants included): the dev quick start's demo account. Audited as
    /// [`Actor::System`].
    pub fn ensure_operator(&self, login: &OperatorId, password: &str, grants: &[Grant]) -> Result<Operator> {
        if let Some(existing) = self.operator(login) {
            return Ok(existing);
        }
        PasswordHasher::check_policy(password)?;
        let password_hash = self.hasher.hash(password)?;
        let _writes = self.writes.lock();
        if let Some(existing) = self.operator(login) {
            return Ok(existing);
        }
        self.insert_operator(&Actor::System, login, login.as_str(), password_hash, grants)
    }

    /// Every operator, by login.
    pub fn list_operators(&self) -> Vec<Operator> {
        self.operators.read().values().map(|stored| stored.operator.clone()).collect()
    }

    /// One operator.
    pub fn operator(&self, login: &OperatorId) -> Option<Operator> {
        self.operators.read().get(login).map(|stored| stored.operator.clone())
    }

    /// Disables an operator and revokes all its sessions, in one commit.
    pub fn disable_operator(&self, actor: &Actor, login: &OperatorId) -> Result<Operator> {
        self.change_operator(actor, login, "operator.disable", true, |stored| {
            stored.operator.disabled = true;
            Ok(())
        })
    }

    /// Lets a disabled operator log in again.
    pub fn enable_operator(&self, actor: &Actor, login: &OperatorId) -> Result<Operator> {
        self.change_operator(actor, login, "operator.enable", false, |stored| {
            stored.operator.disabled = false;
            Ok(())
        })
    }

    /// Sets a new password (at least 10 characters) and revokes the operator's sessions,
    /// so a leaked password or session stops working everywhere.
    pub fn set_password(&self, actor: &Actor, login: &OperatorId, password: &str) -> Result<Operator> {
        PasswordHasher::check_policy(password)?;
        let password_hash = self.hasher.hash(password)?;
        let now_ms = self.clock.now_ms();
        self.change_operator(actor, login, "operator.password", true, move |stored| {
            stored.password_hash = password_hash;
            stored.operator.password_changed_ms = now_ms;
            Ok(())
        })
    }

    /// Replaces an operator's grants (apps must exist). Open sessions see the new grants
    /// on their next request.
    pub fn set_grants(&self, actor: &Actor, login: &OperatorId, grants: &[Grant]) -> Result<Operator> {
        let grants = self.checked_grants(grants)?;
        self.change_operator(actor, login, "operator.grants", false, move |stored| {
            stored.operator.grants = grants;
            Ok(())
        })
    }

    /// Changes an operator's display name.
    pub fn set_display_name(&self, actor: &Actor, login: &OperatorId, display_name: &str) -> Result<Operator> {
        check_display_name(display_name)?;
        self.change_operator(actor, login, "operator.rename", false, |stored| {
            stored.operator.display_name = display_name.to_owned();
            Ok(())
        })
    }

    /// Read-modify-write of one operator with its audit entry (public fields only, before
    /// and after) and, when `revoke_sessions`, the deletion of its sessions: one commit.
    fn change_operator(
        &self,
        actor: &Actor,
        login: &OperatorId,
        action: &str,
        revoke_sessions: bool,
        change: impl FnOnce(&mut StoredOperator) -> Result<()>,
    ) -> Result<Operator> {
        let _writes = self.writes.lock();
        let before = self.operators.read().get(login).cloned().ok_or_else(|| Error::UnknownOperator(login.to_string()))?;
        let mut after = before.clone();
        change(&mut after)?;
        // Operators can only be managed by a global admin in the console: losing the last one
        // leaves the master key as the only way in.
        if is_global_admin(&before.operator) && !is_global_admin(&after.operator) {
            let others = self.operators.read().values().any(|other| other.operator.login != *login && is_global_admin(&other.operator));
            if !others {
                return Err(Error::LastGlobalAdmin(login.to_string()));
            }
        }
        let mut batch = WriteBatch::new();
        batch.put(OPERATORS_TABLE, login.as_str().as_bytes().to_vec(), crate::to_json(&after));
        let revoked = if revoke_sessions { self.session_digests_of(login) } else { Vec::new() };
        for digest in &revoked {
            batch.delete(crate::sessions::SESSIONS_TABLE, digest.to_vec());
        }
        let mut after_value = crate::to_json_value(&after.operator);
        if revoke_sessions {
            after_value["sessions_revoked"] = revoked.len().into();
        }
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), action, login.as_str()).before(crate::to_json_value(&before.operator)).after(after_value),
        )?;
        self.forget_sessions(&revoked);
        let operator = after.operator.clone();
        self.operators.write().insert(login.clone(), after);
        Ok(operator)
    }
}


/// An enabled operator holding the admin role globally.
fn is_global_admin(operator: &Operator) -> bool {
    !operator.disabled && operator.grants.iter().any(|grant| grant.allows_global(crate::Permission::Admin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_use_a_small_alphabet() {
        for ok in ["alice", "a", "bob.smith@example.com", "ops_team-1", &"x".repeat(64)] {
            OperatorId::new(ok).unwrap();
        }
        for bad in ["", "Alice", "al ice", "bob:pw", &"x".repeat(65), "ünï"] {
            assert!(matches!(OperatorId::new(bad), Err(Error::InvalidLogin(_))), "{bad:?}");
        }
        assert!(serde_json::from_str::<OperatorId>("\"Root\"").is_err());
        assert_eq!(Role::ALL.map(|r| Role::parse(r.as_str())), Role::ALL.map(Some));
    }

    #[test]
    fn display_names_are_checked() {
        check_display_name("Alice Martin").unwrap();
        assert!(check_display_name("").is_err());
        assert!(check_display_name("tab\there").is_err());
        assert!(check_display_name(&"é".repeat(101)).is_err());
    }
}
