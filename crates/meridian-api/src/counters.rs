//! Event counters of an app.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /v1/apps/{app}/counters`: committed counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppCounters {
    /// All events.
    pub total: u64,
    /// Events per action.
    pub by_action: BTreeMap<String, u64>,
    /// Events per UTC day (`YYYY-MM-DD`).
    pub by_day: BTreeMap<String, u64>,
}
