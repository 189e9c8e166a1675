//! Apps, API keys and who the caller is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// App id: 1-64 of `[a-z0-9_.-]`.
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    pub id: String,
    /// IANA time zone its days and hours are counted in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// An app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct App {
    /// Its id.
    pub id: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// IANA time zone its days and hours are counted in.
    pub time_zone: String,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    /// Every app, by id.
    pub apps: Vec<App>,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send events.
    Write,
    /// Query.
    Read,
    /// Manage the app (keys, config, rules, erasure).
    Admin,
}

/// `POST /v1/apps/{app}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// At least one scope.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
}

/// A new key; the secret is shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The secret to send as `Authorization: Bearer <key>`.
    pub key: String,
    /// Public id of the key (safe to log).
    pub key_id: String,
    /// Its app.
    pub app: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// `PATCH /v1/apps/{app}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    /// New IANA time zone.
    pub time_zone: String,
}

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// Public id of the key.
    pub key_id: String,
    /// Its app.
    pub app: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// `GET /v1/apps/{app}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The app's keys.
    pub keys: Vec<KeyInfo>,
}

/// A role of an operator on one app or on every app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    /// The app; absent: every app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    pub app: Option<String>,
    /// `viewer`, `operator`, `reviewer` or `admin`.
    #[schema(pattern = "^(viewer|operator|reviewer|admin)$")]
    pub role: String,
}

/// `GET /v1/whoami`: who the presented credentials are and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    /// `master`, `key` or `operator`.
    pub kind: String,
    /// Key id, operator login, or `master`.
    pub id: String,
    /// Whether it is the master key.
    pub master: bool,
    /// A key's scopes.
    pub scopes: Vec<Scope>,
    /// An operator's roles.
    pub grants: Vec<Grant>,
    /// Apps it can see.
    pub apps: Vec<String>,
}
