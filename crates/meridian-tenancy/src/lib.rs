//! Tenancy (DESIGN.md §4.9): apps with a time zone, scoped API keys, operators with roles,
//! login sessions, and the audit log every capability writes to. HTTP-free and backend-free.
//!
//! One facade, [`Tenancy`], owns every part; everything is persisted in a
//! [`KvStore`](meridian_state::KvStore) and cached in memory, so authenticating a request
//! (an API key or a session) never reads the store. All methods are synchronous and some
//! block (store commits, argon2): call them from `spawn_blocking` or a dedicated thread.
//!
//! * [`apps`]: [`AppRecord`] with its IANA [`TimeZoneName`] (local day and hour boundaries
//!   for other capabilities: [`TimeZoneName::day_bounds_ms`], [`AppRecord::tz`]).
//! * [`keys`]: [`ApiKey`]s with [`Scope`]s, stored only as SHA-256 digests of their secrets;
//!   the master key, configured at open, can do everything.
//! * [`operators`]: human accounts ([`Operator`]) with [`Grant`]s of a [`Role`], per app or
//!   global; passwords stored only as argon2id PHC strings.
//! * [`sessions`]: [`Tenancy::login`] → a [`SessionToken`] (shown once; only its SHA-256 is
//!   stored) and an [`OperatorSession`] with a CSRF token; absolute and idle expiry; login
//!   attempts rate-limited per login and per client ([`ratelimit`]).
//! * [`permissions`]: [`Permission`], [`Principal`] (master, key or operator session) and
//!   [`Actor`] (who an audit entry names).
//! * [`audit`]: [`AuditLog::record`], the one call every capability uses, and
//!   [`AuditLog::query`] (newest first, per-app key layout, cursor paging).
//!
//! # Invariants
//!
//! * **Every change of tenancy data commits with its audit entry.** Each mutating method
//!   of [`Tenancy`] takes the acting [`Actor`] and writes the change and its audit entry
//!   in one [`WriteBatch`](meridian_state::WriteBatch); a failed commit leaves neither and
//!   leaves the in-memory caches untouched. Other capabilities get the same guarantee with
//!   [`AuditLog::record_in`], which adds the entry to their own batch.
//! * **No secret is stored or audited.** API keys and session tokens are stored as
//!   SHA-256 digests, passwords as argon2id hashes; the CSRF token is derived from the
//!   session token, so it is not stored either. Audit entries carry whatever callers pass
//!   as `before`/`after`: callers pass records without secrets, or [`audit::mask`]ed values.
//! * **Authorisation is the caller's decision.** `Tenancy` checks that inputs are valid,
//!   not who may call it: the HTTP layer builds a [`Principal`] and asks
//!   [`Principal::allows`] / [`Principal::allows_global`] (or [`Principal::require`])
//!   before calling a mutating method. Only a global admin or the master key may manage
//!   apps and operators (`allows_global(Permission::Admin)`).
//!
//! # What the HTTP server is expected to do with sessions
//!
//! The session token goes into a cookie set with `Secure; HttpOnly; SameSite=Strict;
//! Path=/` and no `Domain`, with `Max-Age` no later than [`OperatorSession::expires_ms`];
//! it is never put in a URL or a log line. Every state-changing request (anything but
//! GET/HEAD/OPTIONS) authenticated by the cookie must carry the session's CSRF token in a
//! header (e.g. `X-CSRF-Token`), checked with [`OperatorSession::csrf_matches`]; the
//! console reads the CSRF token from the login response. Logout calls [`Tenancy::logout`]
//! and clears the cookie. `login` takes the client's address as seen by the server (not a
//! header the client controls unless a trusted proxy sets it) so the per-client login
//! limit cannot be dodged, and maps [`Error::RateLimited`] to `429` with `Retry-After`.

pub mod apps;
pub mod audit;
pub mod clock;
pub mod config;
pub mod keys;
pub mod operators;
mod password;
pub mod permissions;
pub mod ratelimit;
pub mod sessions;
mod tenancy;

pub use apps::{AppRecord, TimeZoneName};
pub use audit::{mask, Actor, AuditCursor, AuditEntry, AuditFilter, AuditId, AuditLog, AuditPage, NewAuditEntry};
pub use chrono_tz;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LoginLimits, PasswordHashing, TenancyConfig};
pub use keys::{generate_master_key, ApiKey, Scope};
pub use operators::{Grant, Operator, OperatorId, Role};
pub use permissions::{Permission, Principal};
pub use sessions::{CsrfToken, OperatorSession, SessionId, SessionInfo, SessionToken};
pub use tenancy::Tenancy;

/// Every table this crate writes, for backups and for tests that inspect the store.
pub const TABLES: &[&str] = &[
    apps::APPS_TABLE,
    keys::KEYS_TABLE,
    operators::OPERATORS_TABLE,
    sessions::SESSIONS_TABLE,
    audit::AUDIT_TABLE,
    audit::AUDIT_BY_APP_TABLE,
];

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of tenancy. Variant names are stable: the HTTP layer maps them to status codes
/// (`Invalid*`, `WeakPassword` → 400; `Unknown{App,Key,Operator}` → 404; `*Exists` → 409;
/// `InvalidCredentials`, `UnknownSession`, `SessionExpired` → 401; `OperatorDisabled`,
/// `Forbidden` → 403; `RateLimited` → 429; `State`, `CorruptRecord`, `PasswordHash` → 500).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A time zone name is not an IANA zone this build knows.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Paris\" or \"UTC\"")]
    InvalidTimeZone(String),
    /// An argument is not valid; the message says which and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// An operator login is not valid.
    #[error("invalid login {0:?}: use 1-64 of lowercase ascii letters, digits, '_', '.', '@' and '-'")]
    InvalidLogin(String),
    /// The app already exists.
    #[error("app {0} already exists")]
    AppExists(String),
    /// The app does not exist.
    #[error("app {0} does not exist; create it first")]
    UnknownApp(String),
    /// No key with this id belongs to the app.
    #[error("app {app} has no key {key_id}; list its keys to see their ids")]
    UnknownKey {
        /// The app.
        app: String,
        /// The key id asked for.
        key_id: String,
    },
    /// The operator already exists.
    #[error("operator {0} already exists")]
    OperatorExists(String),
    /// The operator does not exist.
    #[error("operator {0} does not exist")]
    UnknownOperator(String),
    /// The change would leave no enabled operator with the global admin role.
    #[error("operator {0} is the last enabled global admin; make another operator a global admin first")]
    LastGlobalAdmin(String),
    /// A new password is too short.
    #[error("a password needs at least {min_chars} characters; choose a longer one")]
    WeakPassword {
        /// The minimum length, in characters.
        min_chars: usize,
    },
    /// Unknown login or wrong password: deliberately the same error for both.
    #[error("wrong login or password")]
    InvalidCredentials,
    /// The operator exists and the password was right, but the account is disabled.
    #[error("this operator is disabled; ask an admin to enable it")]
    OperatorDisabled,
    /// Too many login attempts for this login or from this client.
    #[error("too many login attempts; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until an attempt is accepted again.
        retry_after_secs: u64,
    },
    /// The session token is not (or no longer) known: logged out, revoked or purged.
    #[error("unknown session; log in again")]
    UnknownSession,
    /// The session passed its absolute or idle expiry.
    #[error("session expired; log in again")]
    SessionExpired,
    /// The principal lacks a permission.
    #[error("not allowed: this needs the {permission} permission on {scope}")]
    Forbidden {
        /// The missing permission.
        permission: Permission,
        /// `app <id>` or `every app`.
        scope: String,
    },
    /// An audit cursor is not one [`AuditLog::query`] handed out.
    #[error("invalid audit cursor {0:?}: pass the next_cursor of a previous page unchanged")]
    InvalidCursor(String),
    /// A configuration value is not valid.
    #[error("invalid tenancy config {field}: {reason}")]
    InvalidConfig {
        /// The field, as written in the config file.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored record cannot be read.
    #[error("unreadable record in table {table} at key {key}: {reason}; restore the data directory from a backup")]
    CorruptRecord {
        /// The table.
        table: &'static str,
        /// The key, printable.
        key: String,
        /// Why.
        reason: String,
    },
    /// Hashing a password failed (e.g. the hashing parameters are unusable).
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// The KV store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
}

/// JSON encoding of a record this crate defined: cannot fail (no maps with non-string
/// keys, no failing `Serialize` impls), so a failure is a bug worth a panic.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("tenancy records always encode as JSON (plain structs with string keys)")
}

/// The same, as a `serde_json::Value` for audit entries.
pub(crate) fn to_json_value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("tenancy records always encode as JSON (plain structs with string keys)")
}

/// Decodes a stored record or names where the bad one is.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(table: &'static str, key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| Error::CorruptRecord { table, key: printable_key(key), reason: e.to_string() })
}

/// A key as text when it is text, else as hex.
pub(crate) fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_owned(),
        _ => hex::encode(key),
    }
}

/// `n_bytes` from the operating system's random source, as hex.
pub(crate) fn random_hex(n_bytes: usize) -> String {
    hex::encode(random_bytes(n_bytes))
}

/// `n_bytes` from the operating system's random source.
pub(crate) fn random_bytes(n_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n_bytes];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

/// SHA-256 of a secret.
pub(crate) fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}
