//! The audit log: who changed what, when, with the value before and after.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Monotonic id.
    pub id: u64,
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// Who: `master`, `key:<id>`, `operator:<login>` or `system`.
    pub actor: String,
    /// The app concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What: `app.create`, `key.revoke`, `user.erase`…
    pub action: String,
    /// On what.
    pub target: String,
    /// The value before (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The value after (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for older entries; absent when there are none.
    pub next_cursor: Option<String>,
}
