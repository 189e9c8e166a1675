//! A user's profile state as stored: one meta field per group (first/last seen, activity
//! per day, stage, segment memberships, which triggers are true, a short timeline) and
//! one field per aggregation holding its daily buckets. Fields are postcard-encoded
//! behind a version byte.

use crate::value::Buckets;
use crate::Error;
use meridian_event::AppId;
use serde::{Deserialize, Serialize};

/// Version byte in front of every encoded field.
const FORMAT: u8 = 1;

/// Whose profile: an app and a user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    /// The app.
    pub app: AppId,
    /// The user id.
    pub user: String,
}

impl UserKey {
    /// A key.
    pub fn new(app: AppId, user: impl Into<String>) -> UserKey {
        UserKey { app, user: user.into() }
    }

    /// `app`, 0, `user`: the prefix of the user's stored fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.app.as_str().len() + self.user.len() + 1);
        k.extend_from_slice(self.app.as_str().as_bytes());
        k.push(0);
        k.extend_from_slice(self.user.as_bytes());
        k
    }
}

/// One entry of a user's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Event time, ms.
    pub time_ms: i64,
    /// Action.
    pub action: String,
    /// Target type and id, when the event has a target.
    pub target: Option<(String, String)>,
}

/// Per-group facts about a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Time of the earliest event, ms (0: none).
    pub first_seen_ms: i64,
    /// Time of the latest event, ms (0: none).
    pub last_active_ms: i64,
    /// Events per local day (every event of the group's topic).
    pub activity: Buckets,
    /// Current lifecycle stage (default group only).
    pub stage: String,
    /// When the stage was entered (evaluation time).
    pub stage_since_ms: i64,
    /// The latest time conditions were evaluated at, ms: evaluation never goes back in
    /// time (a late event is judged as of the latest known time).
    pub evaluated_ms: i64,
    /// When the next daily review is due (0: none).
    pub review_at_ms: i64,
    /// Segments the user is in, sorted.
    pub segments: Vec<String>,
    /// Triggers whose condition is true, sorted.
    pub triggers_true: Vec<String>,
    /// Latest events, newest first.
    pub timeline: Vec<TimelineEntry>,
}

/// The leading fields of [`Meta`], up to its segments: decoding stops there (the timeline
/// after them is most of a meta's bytes), for reads that only need memberships. Keep in
/// step with `Meta`'s field order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetaHead {
    /// See [`Meta`].
    pub first_seen_ms: i64,
    /// See [`Meta`].
    pub last_active_ms: i64,
    /// See [`Meta`].
    pub activity: Buckets,
    /// See [`Meta`].
    pub stage: String,
    /// See [`Meta`].
    pub stage_since_ms: i64,
    /// See [`Meta`].
    pub evaluated_ms: i64,
    /// See [`Meta`].
    pub review_at_ms: i64,
    /// See [`Meta`].
    pub segments: Vec<String>,
}

/// The field name of a group's meta.
pub fn meta_field(group: &str) -> String {
    if group == crate::config::DEFAULT_GROUP {
        "m".to_owned()
    } else {
        format!("m:{group}")
    }
}

/// The field name of an aggregation's buckets.
pub fn agg_field(key: &str) -> String {
    format!("a:{key}")
}

/// Encodes a field value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Written straight behind the format byte (no second buffer, no copy). postcard cannot
    // fail on these types (no maps with non-string keys, no unsized data).
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT);
    postcard::to_extend(value, out).unwrap_or_else(|_| vec![FORMAT])
}

/// Decodes a field value written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(field: &str, bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| Error::Corrupt(format!("field {field}: {e}"))),
        Some((other, _)) => Err(Error::Corrupt(format!("field {field}: unknown format {other}; this build reads format {FORMAT}"))),
        None => Err(Error::Corrupt(format!("field {field}: empty value"))),
    }
}

/// A user's decoded state for one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    /// The group's meta.
    pub meta: Meta,
    /// Buckets per aggregation of the group, in the group's order.
    pub aggs: Vec<Buckets>,
    /// The stored bytes of aggregations not changed since they were read or written (so a
    /// full write copies them instead of encoding them again), in the same order.
    pub encoded: Vec<Option<Vec<u8>>>,
    /// Whether every condition was evaluated for this user since the processor started
    /// (until then none is skipped: the config may have changed).
    pub evaluated_all: bool,
}

impl UserState {
    /// An empty state for a group of `n_aggs` aggregations.
    pub fn empty(n_aggs: usize) -> UserState {
        UserState { meta: Meta::default(), aggs: vec![Buckets::default(); n_aggs], encoded: vec![None; n_aggs], evaluated_all: false }
    }

    /// Decodes the fields of one group (`meta_field`, and the `a:` fields of `agg_keys`, in
    /// that order); other fields are ignored.
    pub fn decode(fields: &[(String, Vec<u8>)], meta_field: &str, agg_keys: &[&str]) -> Result<UserState, Error> {
        let mut state = UserState::empty(agg_keys.len());
        for (name, value) in fields {
            if name == meta_field {
                state.meta = decode(name, value)?;
            } else if let Some(key) = name.strip_prefix("a:") {
                if let Some(i) = agg_keys.iter().position(|k| *k == key) {
                    state.aggs[i] = decode(name, value)?;
                    state.encoded[i] = Some(value.clone());
                }
            }
        }
        Ok(state)
    }

    /// Whether nothing is known of the user.
    pub fn is_empty(&self) -> bool {
        self.meta.last_active_ms == 0 && self.aggs.iter().all(|b| b.0.is_empty())
    }

    /// Heap bytes held (approximately, for memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.meta.activity.heap_bytes()
            + self.meta.timeline.iter().map(|t| 48 + t.action.len() + t.target.as_ref().map_or(0, |(a, b)| a.len() + b.len())).sum::<usize>()
            + self.aggs.iter().map(|b| 24 + b.heap_bytes()).sum::<usize>()
            + self.encoded.iter().map(|e| e.as_ref().map_or(0, Vec::capacity)).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregationKind;
    use crate::value::Input;

    #[test]
    fn a_meta_head_reads_the_leading_fields_of_an_encoded_meta() {
        let mut activity = Buckets::default();
        activity.add(AggregationKind::Count, 20_000, &Input::Event(5), 64);
        let meta = Meta {
            first_seen_ms: 1,
            last_active_ms: 2,
            activity: activity.clone(),
            stage: "new".into(),
            stage_since_ms: 3,
            evaluated_ms: 4,
            review_at_ms: 5,
            segments: vec!["a".into(), "b".into()],
            triggers_true: vec!["t".into()],
            timeline: vec![TimelineEntry { time_ms: 9, action: "view".into(), target: Some(("sku".into(), "1".into())) }],
        };
        let head: MetaHead = decode("m", &encode(&meta)).unwrap();
        assert_eq!(
            head,
            MetaHead { first_seen_ms: 1, last_active_ms: 2, activity, stage: "new".into(), stage_since_ms: 3, evaluated_ms: 4, review_at_ms: 5, segments: vec!["a".into(), "b".into()] }
        );
    }
}
