//! The user action system: aggregations over windows, profiles, segments, definitions and
//! back-fills.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET …/users/{user}/actions/{aggregation}`: an aggregation's value over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AggregateValue {
    /// The aggregation.
    pub aggregation: String,
    /// Its kind (`count`, `distinct`, `sum`, `min`, `max`, `first_time`, `last_time`, `last_value`).
    pub kind: String,
    /// The window as asked (`today`, `7d`, `month`, `2026-01`, `2026-01-01..2026-01-15`, `all`).
    pub window: String,
    /// First day covered (the app's local day, `YYYY-MM-DD`).
    pub from: String,
    /// Last day covered.
    pub to: String,
    /// The value: a number (0 for counts and sums of nothing), a time in ms, a property's
    /// value, or `null` when no event matched a kind without a zero.
    pub value: serde_json::Value,
}

/// An aggregation's values over the standard windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileValues {
    /// Today (the app's local day).
    pub today: serde_json::Value,
    /// The last 7 days.
    #[serde(rename = "7d")]
    pub d7: serde_json::Value,
    /// The last 30 days.
    #[serde(rename = "30d")]
    pub d30: serde_json::Value,
    /// Everything kept (`actions.retention_days`).
    pub all: serde_json::Value,
}

/// What an event was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineTarget {
    /// Target type (`sku`, `shop`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// Target id.
    pub id: String,
}

/// One of a user's latest events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// Action.
    pub action: String,
    /// Target, when the event has one.
    pub target: Option<TimelineTarget>,
}

/// A user's profile: activity, lifecycle stage, segments and every aggregation's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    /// The user.
    pub user: String,
    /// Whether anything is known of the user.
    pub known: bool,
    /// First event, ms since the epoch (0: none).
    pub first_seen_ms: i64,
    /// Latest event, ms since the epoch (0: none).
    pub last_active_ms: i64,
    /// Lifecycle stage (empty when unknown).
    pub stage: String,
    /// When the stage was entered, ms since the epoch.
    pub stage_since_ms: i64,
    /// Segments the user is in, by name.
    pub segments: Vec<String>,
    /// Every aggregation's values, by aggregation.
    pub values: BTreeMap<String, ProfileValues>,
    /// Events today, in the last 7 and 30 days, and in all.
    pub events: ProfileValues,
    /// Latest events, newest first.
    pub timeline: Vec<TimelineEntry>,
}

/// `POST …/profiles`: whose profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilesRequest {
    /// User ids (at most `actions.max_batch_users`, 1000 by default).
    pub users: Vec<String>,
}

/// Profiles in the order asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileList {
    /// One per user asked.
    pub profiles: Vec<Profile>,
}

/// Whether a user is in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentMembership {
    /// In it now.
    pub member: bool,
}

/// A segment and its member count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentSummary {
    /// The segment.
    pub segment: String,
    /// Users of the app in it now.
    pub members: u64,
}

/// A back-fill of an aggregation from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackfillJob {
    /// The aggregation.
    pub aggregation: String,
    /// Whether crossings it finds fire triggers.
    pub refire: bool,
    /// The topic read.
    pub topic: String,
    /// Records to read.
    pub total: u64,
    /// Records read so far.
    pub read: u64,
    /// Events merged into profiles.
    pub merged: u64,
    /// Steps done.
    pub steps: u64,
    /// Finished.
    pub done: bool,
    /// When it was asked, ms since the epoch.
    pub requested_ms: i64,
    /// When it finished, ms since the epoch (0 until then).
    pub finished_ms: i64,
}

/// A recompute of an aggregation's older days from the log (the lambda merge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecomputeJob {
    /// The aggregation.
    pub aggregation: String,
    /// The topic read.
    pub topic: String,
    /// `batch` (reading the log), `switch` (replacing users' older days), `cleanup` or `done`.
    pub phase: String,
    /// Days before the local day of this instant are recomputed (ms since the epoch); later
    /// days stay live.
    pub cutoff_ms: i64,
    /// Days after the local day of this instant are recomputed (the log's first record).
    pub first_ms: i64,
    /// Records the log held when it was asked.
    pub total: u64,
    /// Records read so far (more than `total` when events arrive meanwhile).
    pub read: u64,
    /// Users switched over so far.
    pub switched: u64,
    /// Steps done.
    pub steps: u64,
    /// When it was asked, ms since the epoch.
    pub requested_ms: i64,
    /// When it finished, ms since the epoch (0 until then).
    pub finished_ms: i64,
}

/// A definition of the `[actions]` section with its live figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Definition {
    /// `aggregation`, `stage`, `segment` or `trigger`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// The aggregation's kind (and field), or the condition.
    pub detail: String,
    /// Which events an aggregation counts (empty: all).
    pub filter: String,
    /// Its isolation group.
    pub group: String,
    /// A sentence from the config.
    pub description: String,
    /// Members of the app in a segment.
    pub members: Option<u64>,
    /// An aggregation's back-fill, if one was asked.
    pub backfill: Option<BackfillJob>,
    /// An aggregation's latest recompute, if any.
    #[serde(default)]
    pub recompute: Option<RecomputeJob>,
}

/// `GET …/actions/definitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionList {
    /// Aggregations, then stages, segments and triggers, in config order.
    pub definitions: Vec<Definition>,
}
