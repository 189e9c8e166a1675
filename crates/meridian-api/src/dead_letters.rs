//! Dead letters: invalid events kept with their reason, and their replay.

use crate::events::OutcomeError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An invalid event kept with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Offset in the dead-letter topic.
    pub offset: u64,
    /// App.
    pub app: String,
    /// When it was received, ms since the epoch.
    pub received: i64,
    /// Why it was rejected.
    pub error: OutcomeError,
    /// The event as sent (lossy UTF-8 if it was not valid UTF-8).
    pub raw: String,
    /// `event`, or the Segment message type it came as.
    pub format: String,
    /// Where a message from a source came from: `<source> <kind> <subject, queue or
    /// file> @<offset>`; absent for events sent to the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A page of dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayReport {
    /// Dead letters of the app read.
    pub replayed: usize,
    /// Now valid and stored.
    pub accepted: usize,
    /// Already stored (e.g. replayed before).
    pub duplicates: usize,
    /// Still invalid; written again to the dead-letter topic with the new reason.
    pub still_failing: usize,
    /// Dropped by a filter.
    pub filtered: usize,
}
