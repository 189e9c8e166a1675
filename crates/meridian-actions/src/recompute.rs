//! The lambda merge (S1): an aggregation's older days recomputed in batch from the log
//! while recent days stay live.
//!
//! A recompute of aggregation A covers the local days `[first, cutoff)`: `first` is the
//! first whole day the log still holds, `cutoff` is `actions.live_days` (2, as S1 keeps)
//! before the day it was asked. Days from `cutoff` on are the speed layer's alone.
//!
//! It runs in A's processor, as timer steps, like a back-fill:
//!
//! 1. **Batch**: each step reads up to [`STEP_RECORDS`] records of the log, from the start
//!    towards the processor's committed position (a moving target: the batch catches up
//!    with the live layer), and adds the events of days in range to per-user staged
//!    buckets (`actions_batch`), committed with the step's cursor.
//! 2. **Switch-over**, in chunks of [`SWITCH_USERS`] users: when the batch has read
//!    everything the live layer has committed and no record is being processed in the
//!    same round, each staged user's days in range are replaced by the batch's, and the
//!    staged row becomes a "switched" marker. Before each chunk the batch catches up
//!    again (late events for old days are in the staged rows of users not yet switched;
//!    switched users are live again and count them live), so nothing is lost or counted
//!    twice at any point. Readers see, per user, either the live values or the batch's:
//!    equal when the live layer was right (tested), the batch's when it was not.
//! 3. The markers are removed; the job is done.
//!
//! A user whose live buckets hold days in range but who has no event in the batch keeps
//! them (the switch visits staged users only).

use serde::{Deserialize, Serialize};

/// Records read per batch step.
pub const STEP_RECORDS: usize = 20_000;
/// Users switched over per step.
pub const SWITCH_USERS: usize = 5_000;

/// Recompute jobs: key = aggregation key; value = JSON [`RecomputeJob`].
pub const RECOMPUTE_TABLE: &str = "actions_recompute";
/// Staged batch buckets: key = aggregation key, 0, app, 0, user; value = encoded buckets,
/// or [`SWITCHED`] once the user is switched over.
pub const BATCH_TABLE: &str = "actions_batch";
/// The value of a switched user's row.
pub const SWITCHED: &[u8] = &[0xff];

/// Where a recompute stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the log into staged buckets.
    #[default]
    Batch,
    /// Replacing users' days in range with the staged buckets.
    Switch,
    /// Removing the switched markers.
    Cleanup,
    /// Finished.
    Done,
}

/// A recompute job, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecomputeJob {
    /// The aggregation's name.
    pub aggregation: String,
    /// Its key.
    pub key: String,
    /// The topic read.
    pub topic: String,
    /// Partition → next offset to read.
    pub cursor: std::collections::BTreeMap<u32, u64>,
    /// Days before the local day of this instant are recomputed (ms).
    pub cutoff_ms: i64,
    /// Days after the local day of this instant are recomputed (ms): the log's earliest
    /// record when asked.
    pub first_ms: i64,
    /// Where it stands.
    pub phase: Phase,
    /// Records read.
    pub read: u64,
    /// Records the log held when it was asked (for progress).
    pub total: u64,
    /// Users switched over.
    pub switched: u64,
    /// The last staged row the switch-over handled.
    pub switch_after: Option<Vec<u8>>,
    /// Steps done.
    pub steps: u64,
    /// When it was asked, ms.
    pub requested_ms: i64,
    /// When it finished, ms (0 until then).
    pub finished_ms: i64,
}

/// The staged row key of a user.
pub fn batch_key(agg_key: &str, app: &str, user: &str) -> Vec<u8> {
    let mut k = batch_prefix(agg_key);
    k.extend_from_slice(app.as_bytes());
    k.push(0);
    k.extend_from_slice(user.as_bytes());
    k
}

/// The prefix of an aggregation's staged rows.
pub fn batch_prefix(agg_key: &str) -> Vec<u8> {
    let mut k = agg_key.as_bytes().to_vec();
    k.push(0);
    k
}
