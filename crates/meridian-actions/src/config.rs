//! The `[actions]` config section: aggregations, lifecycle stages, segments, triggers,
//! isolation groups, the profile store.
//!
//! ```toml
//! [actions]
//! retention_days = 120
//!
//! [[actions.aggregations]]
//! name = "food_shops_viewed"
//! kind = "distinct"                 # count | distinct | sum | min | max | first_time | last_time | last_value
//! of = "target.id"                  # distinct: what is counted (default target.id)
//! filter = { action = "view", "target.type" = "shop", "props.category" = "food" }
//!
//! [[actions.aggregations]]
//! name = "order_amount"
//! kind = "sum"
//! prop = "props.amount"             # sum / min / max / last_value: the event field
//! filter = 'action == "order"'      # or an expression
//! group = "core"                    # an isolated group: its own processor on its own topic
//!
//! [[actions.groups]]
//! name = "core"
//! topic = "orders"                  # routed there by the pipeline
//!
//! [[actions.lifecycle]]             # first match wins; the last one may omit `when`
//! stage = "dormant"
//! when = "days_inactive >= 7"
//!
//! [[actions.segments]]
//! name = "new_buyers"
//! when = 'stage == "new" && order_amount_30d > 0'
//!
//! [[actions.triggers]]
//! name = "first_checkin"
//! when = "checkins_all >= 1"        # fires when it turns true (once per crossing)
//! ```

use crate::defs::Definitions;
use meridian_config::{check, check_range, FieldError, Section};
use meridian_pipeline::ConditionConfig;
use serde::{Deserialize, Serialize};

/// Where profiles are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The module's own state store (committed with the processors' positions).
    #[default]
    Embedded,
    /// A hash per user in Redis at `redis_url` under `redis_prefix`.
    Redis,
}

/// What an aggregation computes per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationKind {
    /// Matching events.
    Count,
    /// Distinct values of `of` (exact).
    Distinct,
    /// Sum of the numeric `prop`.
    Sum,
    /// Smallest numeric `prop`.
    Min,
    /// Largest numeric `prop`.
    Max,
    /// Time of the first matching event.
    FirstTime,
    /// Time of the last matching event.
    LastTime,
    /// Value of `prop` in the latest matching event (by event time).
    LastValue,
}

impl AggregationKind {
    /// Its name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregationKind::Count => "count",
            AggregationKind::Distinct => "distinct",
            AggregationKind::Sum => "sum",
            AggregationKind::Min => "min",
            AggregationKind::Max => "max",
            AggregationKind::FirstTime => "first_time",
            AggregationKind::LastTime => "last_time",
            AggregationKind::LastValue => "last_value",
        }
    }

    /// Whether it reads `prop`.
    pub fn needs_prop(self) -> bool {
        matches!(self, AggregationKind::Sum | AggregationKind::Min | AggregationKind::Max | AggregationKind::LastValue)
    }

    /// Whether `prop` must be numeric.
    pub fn numeric(self) -> bool {
        matches!(self, AggregationKind::Sum | AggregationKind::Min | AggregationKind::Max)
    }
}

/// One aggregation, applied to every matching event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// Name (`[a-z][a-z0-9_]*`, at most 48 bytes); windows are read as `<name>_<window>`.
    pub name: String,
    /// What it computes.
    pub kind: AggregationKind,
    /// `distinct`: the event field whose distinct values are counted (default `target.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// `sum`, `min`, `max`, `last_value`: the event field read (`props.amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prop: Option<String>,
    /// Which events count (the pipeline's condition language); all events when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ConditionConfig>,
    /// Its isolation group (`default`, or a name from `[[actions.groups]]`).
    #[serde(default = "default_group")]
    pub group: String,
    /// A sentence for the console.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn default_group() -> String {
    DEFAULT_GROUP.to_owned()
}

/// The group every aggregation belongs to unless it names another; it also keeps the
/// lifecycle stage and every segment and trigger over its aggregations.
pub const DEFAULT_GROUP: &str = "default";

/// An isolated group: its own processor, reading its own topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Name.
    pub name: String,
    /// The topic it reads (the pipeline must route its events there).
    pub topic: String,
}

/// A lifecycle stage and when a user is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Name (`new`, `growing`…).
    pub stage: String,
    /// Condition over profile values; absent = always (only the last stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A named condition over profile values, with membership kept in real time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Name.
    pub name: String,
    /// Condition over profile values.
    pub when: String,
    /// A sentence for the console.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A condition that fires once each time it turns true for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Name.
    pub name: String,
    /// Condition over profile values (`orders_30d >= 3`, `stage == "dormant"`).
    pub when: String,
    /// Also send a signed webhook (`trigger.fired`) to the app's endpoints.
    #[serde(default = "yes")]
    pub webhook: bool,
    /// A sentence for the console.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn yes() -> bool {
    true
}

/// Settings of the user action system (DESIGN.md §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// Keep profiles at all.
    pub enabled: bool,
    /// Where profiles live.
    pub store: StoreKind,
    /// Redis of the `redis` store.
    pub redis_url: String,
    /// Key prefix of the `redis` store.
    pub redis_prefix: String,
    /// Daily buckets kept per user and aggregation; the longest window.
    pub retention_days: u32,
    /// Days (today included) a recompute leaves to the live layer (S1 keeps two extra
    /// days live so a late batch never loses counts).
    pub live_days: u32,
    /// A distinct set holds its values in a sorted list up to this many, then in a
    /// roaring bitmap.
    pub distinct_list_max: usize,
    /// Latest events kept per user for the console's timeline.
    pub timeline_len: usize,
    /// Topic of segment enter/exit records.
    pub segments_topic: String,
    /// Topic of trigger records.
    pub triggers_topic: String,
    /// Topic of notification requests (the notify module's).
    pub notifications_topic: String,
    /// Key of the keyed hash that masks user ids in exports (a secret). Empty: exports
    /// are refused unless the caller may unmask.
    pub mask_key: String,
    /// Users per batch profile read.
    pub max_batch_users: usize,
    /// Threads a group's processor spreads a round's users over (0: one per core). A user
    /// always lands on the same thread, so its records keep their order.
    pub threads: usize,
    /// Recently changed users (per group) whose profiles are kept in memory for reads that
    /// need no store call; 0 turns it off.
    pub hot_users: u64,
    /// Profiles kept built from the read cache (with their rendered HTTP body), for the
    /// users read most; a few KB each. A profile read that misses builds one (20
    /// aggregations: 20–50 µs of CPU). 0 turns it off.
    pub profile_memo_users: u64,
    /// Isolated groups.
    pub groups: Vec<GroupConfig>,
    /// Aggregations.
    pub aggregations: Vec<AggregationConfig>,
    /// Lifecycle stages, first match wins (the defaults when empty: churned, dormant, new,
    /// mature, growing).
    pub lifecycle: Vec<StageConfig>,
    /// Segments.
    pub segments: Vec<SegmentConfig>,
    /// Triggers.
    pub triggers: Vec<TriggerConfig>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            enabled: true,
            store: StoreKind::Embedded,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "meridian:actions:".into(),
            retention_days: 120,
            live_days: 2,
            distinct_list_max: 64,
            timeline_len: 20,
            segments_topic: "segment-changes".into(),
            triggers_topic: "triggers".into(),
            notifications_topic: "notifications".into(),
            mask_key: String::new(),
            max_batch_users: 1000,
            threads: 0,
            hot_users: 200_000,
            profile_memo_users: 50_000,
            groups: Vec::new(),
            aggregations: Vec::new(),
            lifecycle: Vec::new(),
            segments: Vec::new(),
            triggers: Vec::new(),
        }
    }
}

/// The lifecycle used when none is configured.
pub fn default_lifecycle() -> Vec<StageConfig> {
    let stage = |stage: &str, when: Option<&str>| StageConfig { stage: stage.into(), when: when.map(str::to_owned) };
    vec![
        stage("churned", Some("days_inactive >= 30")),
        stage("dormant", Some("days_inactive >= 7")),
        stage("new", Some("days_since_first_seen < 7")),
        stage("mature", Some("active_days_30d >= 10")),
        stage("growing", None),
    ]
}

impl Section for ActionsConfig {
    const NAME: &'static str = "actions";
    const SECRETS: &'static [&'static str] = &["redis_url", "mask_key"];

    fn validate(&self) -> Result<(), FieldError> {
        check_range("retention_days", self.retention_days, 1, 3660)?;
        check_range("live_days", self.live_days, 1, 3660)?;
        check_range("distinct_list_max", self.distinct_list_max, 1, 4096)?;
        check_range("timeline_len", self.timeline_len, 0, 200)?;
        check_range("max_batch_users", self.max_batch_users, 1, 10_000)?;
        check_range("threads", self.threads, 0, 64)?;
        check_range("hot_users", self.hot_users, 0, 100_000_000)?;
        check_range("profile_memo_users", self.profile_memo_users, 0, 100_000_000)?;
        for (field, topic) in [("segments_topic", &self.segments_topic), ("triggers_topic", &self.triggers_topic), ("notifications_topic", &self.notifications_topic)] {
            check(meridian_log::TopicName::new(topic.as_str()).is_ok(), field, || format!("{topic:?} is not a topic name"))?;
        }
        check(self.store != StoreKind::Redis || self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://"), "redis_url", || {
            format!("{:?} is not a Redis URL; use redis://host:port/db", self.redis_url)
        })?;
        Definitions::compile(self).map(|_| ())
    }
}
