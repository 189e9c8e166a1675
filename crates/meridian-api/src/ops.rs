//! Health and readiness.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `degraded` when a processor's latest round failed.
    pub status: String,
    /// Records not yet processed, over every processor.
    pub lag: u64,
    /// Processors whose latest round failed.
    pub failing_processors: Vec<String>,
}
