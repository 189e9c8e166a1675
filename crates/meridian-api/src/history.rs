//! Browsing history ("recently viewed").

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// One shown history item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// SKU id.
    pub sku: u64,
    /// Its SPU (one item per SPU is shown).
    pub spu: u64,
    /// Name from the catalog.
    #[schema(value_type = String)]
    pub name: Arc<str>,
    /// Image from the catalog.
    #[schema(value_type = String)]
    pub image: Arc<str>,
    /// Last view, ms since the epoch.
    pub viewed_ms: i64,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Items.
    pub items: Vec<HistoryItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET …/history/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryCount {
    /// min(distinct items after SPU de-duplication and deletions, N).
    pub count: usize,
}

/// What a rebuild of the cold tier did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildReport {
    /// Records read.
    pub records: u64,
    /// Views used.
    pub views: u64,
    /// Owners written.
    pub owners: u64,
    /// Entries written.
    pub entries: u64,
    /// Entries left out by deletions and erasures.
    pub hidden: u64,
}

/// Progress and outcome of the latest rebuild of the cold tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildStatus {
    /// Whether one runs now.
    pub running: bool,
    /// Records read so far.
    pub done: u64,
    /// Records to read.
    pub total: u64,
    /// Start, ms since the epoch.
    pub started_ms: Option<i64>,
    /// End, ms since the epoch.
    pub finished_ms: Option<i64>,
    /// What it did, once finished.
    pub report: Option<RebuildReport>,
    /// Why it failed.
    pub error: Option<String>,
}
