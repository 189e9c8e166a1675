//! Permissions and principals: what an authenticated caller (master key, API key or
//! operator session) may do, per app or globally, and the [`Actor`] it is in the audit log.

use crate::apps::AppRecord;
use crate::audit::Actor;
use crate::keys::ApiKey;
use crate::operators::{Grant, Role};
use crate::sessions::OperatorSession;
use crate::{Error, Result};
use meridian_event::AppId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Query data, see configuration.
    Read,
    /// Send events, edit drafts and configuration.
    Write,
    /// Approve or reject releases (operations config).
    Review,
    /// Manage keys, rules, members; globally: apps and operators.
    Admin,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 4] = [Permission::Read, Permission::Write, Permission::Review, Permission::Admin];

    /// The permission's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Review => "review",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    /// The permissions a role grants: viewer → read; operator → read, write; reviewer →
    /// read, review; admin → everything.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Viewer => &[Permission::Read],
            Role::Operator => &[Permission::Read, Permission::Write],
            Role::Reviewer => &[Permission::Read, Permission::Review],
            Role::Admin => &Permission::ALL,
        }
    }

    /// Whether the role grants `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl Grant {
    /// Whether this grant gives `permission` on `app` (a global grant covers every app).
    pub fn allows(&self, permission: Permission, app: &AppId) -> bool {
        self.app.as_ref().is_none_or(|own| own == app) && self.role.grants(permission)
    }

    /// Whether this grant gives `permission` globally (it must be a global grant).
    pub fn allows_global(&self, permission: Permission) -> bool {
        self.app.is_none() && self.role.grants(permission)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The master key: everything.
    Master,
    /// An app's API key: its scopes on its app.
    Key(ApiKey),
    /// A logged-in operator: the permissions of its grants' roles.
    Operator(OperatorSession),
}

impl Principal {
    /// The principal of an authenticated key (the master key's record becomes `Master`).
    pub fn from_key(key: ApiKey) -> Principal {
        if key.is_master() {
            Principal::Master
        } else {
            Principal::Key(key)
        }
    }

    /// Whether the principal has `permission` on `app`.
    pub fn allows(&self, permission: Permission, app: &AppId) -> bool {
        match self {
            Principal::Master => true,
            Principal::Key(key) => key.allows_permission(permission, app),
            Principal::Operator(session) => session.grants.iter().any(|grant| grant.allows(permission, app)),
        }
    }

    /// Whether the principal has `permission` on every app, present and future (only the
    /// master key and operators with a global grant). Managing apps and operators needs
    /// `allows_global(Permission::Admin)`.
    pub fn allows_global(&self, permission: Permission) -> bool {
        match self {
            Principal::Master => true,
            Principal::Key(key) => key.is_master(),
            Principal::Operator(session) => session.grants.iter().any(|grant| grant.allows_global(permission)),
        }
    }

    /// `Ok` when allowed, else [`Error::Forbidden`]; `app: None` asks for a global permission.
    pub fn require(&self, permission: Permission, app: Option<&AppId>) -> Result<()> {
        let allowed = match app {
            Some(app) => self.allows(permission, app),
            None => self.allows_global(permission),
        };
        if allowed {
            return Ok(());
        }
        let scope = app.map_or_else(|| "every app".to_owned(), |app| format!("app {app}"));
        Err(Error::Forbidden { permission, scope })
    }

    /// The apps of `all_apps` on which the principal has any permission, in the given order.
    pub fn apps_visible(&self, all_apps: &[AppRecord]) -> Vec<AppRecord> {
        all_apps.iter().filter(|app| Permission::ALL.iter().any(|p| self.allows(*p, &app.id))).cloned().collect()
    }

    /// Who the audit log names for this principal's actions.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Master => Actor::Master,
            Principal::Key(key) if key.is_master() => Actor::Master,
            Principal::Key(key) => Actor::Key { key_id: key.key_id.clone(), app: key.app.clone() },
            Principal::Operator(session) => Actor::Operator { login: session.login.clone() },
        }
    }
}
