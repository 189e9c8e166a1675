//! Erasing a user everywhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What one capability did with an erasure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModuleErasure {
    /// The user's data is gone from this capability; `removed` says what was there.
    Erased {
        /// What was removed (per store of the capability, e.g. `cold_entries`).
        removed: BTreeMap<String, serde_json::Value>,
    },
    /// The capability keeps no per-user data.
    NoUserData {
        /// Why (what it keeps instead).
        why: String,
    },
    /// Its processors have not reached the erasure yet (they are behind); it will happen.
    Pending,
}

/// `DELETE /v1/apps/{app}/users/{user}`: the user's data is removed from every
/// capability; the erasure is a durable record in the log, so a replay removes it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErasureReport {
    /// Id of the erasure record.
    pub erasure_id: String,
    /// App.
    pub app: String,
    /// `user` or `device`.
    pub kind: String,
    /// The erased id.
    pub id: String,
    /// Where the erasure record is in the log (`events` topic).
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Every capability, by name.
    pub modules: BTreeMap<String, ModuleErasure>,
    /// True when no capability is pending.
    pub complete: bool,
}
