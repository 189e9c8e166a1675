//! Queries of the user action system, used by the HTTP adapter, the CLI and other
//! capabilities (operations config targets segments; analytics breaks down by them), and
//! back-fill requests. Every call blocks (store reads); callers on async threads move
//! them to a blocking pool.

use crate::config::{ActionsConfig, AggregationKind, DEFAULT_GROUP};
use crate::defs::Definitions;
use crate::processor::{app_key, job_timer_key, member_key, processor_name, ActionsProcessor, Job, LiveSince, ProcessorSettings, COUNTS_TABLE, DEFS_TABLE, JOBS_TABLE, MEMBERS_TABLE};
use crate::state::{decode, meta_field, Meta, TimelineEntry, UserKey};
use crate::hot::HotProfiles;
use crate::store::ProfileStore;
use crate::value::{Buckets, Summary};
use crate::window::{day_to_date, local_day, Window};
use crate::{check_user, AppZones, Clock, Error, Result};
use hmac::{Hmac, Mac};
use meridian_event::AppId;
use meridian_log::Log;
use meridian_state::{KvStore, WriteBatch};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An aggregation's value over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateValue {
    /// The aggregation.
    pub aggregation: String,
    /// Its kind.
    pub kind: &'static str,
    /// The window as asked.
    pub window: String,
    /// First day covered (local, `YYYY-MM-DD`).
    pub from: String,
    /// Last day covered.
    pub to: String,
    /// The value (`null` when no event matched, for kinds without a zero).
    pub value: serde_json::Value,
}

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// The user.
    pub user: String,
    /// Whether anything is known of the user.
    pub known: bool,
    /// First event, ms (0: none).
    pub first_seen_ms: i64,
    /// Latest event, ms.
    pub last_active_ms: i64,
    /// Lifecycle stage (empty when unknown).
    pub stage: String,
    /// When the stage was entered, ms.
    pub stage_since_ms: i64,
    /// Segments the user is in.
    pub segments: Vec<String>,
    /// Every aggregation's current values: today, 7d, 30d and all.
    pub values: BTreeMap<String, ProfileValues>,
    /// Events today, last 7 and 30 days.
    pub events: ProfileValues,
    /// Latest events, newest first.
    pub timeline: Vec<TimelineEntry>,
}

/// An aggregation's values over the standard windows.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ProfileValues {
    /// Today.
    pub today: serde_json::Value,
    /// The last 7 days.
    #[serde(rename = "7d")]
    pub d7: serde_json::Value,
    /// The last 30 days.
    #[serde(rename = "30d")]
    pub d30: serde_json::Value,
    /// Everything kept.
    pub all: serde_json::Value,
}

/// A definition with its live figures, for the console and `GET …/actions/definitions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefinitionSummary {
    /// `aggregation`, `segment`, `trigger` or `stage`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Aggregation kind, or the condition.
    pub detail: String,
    /// Filter (aggregations).
    pub filter: String,
    /// Group.
    pub group: String,
    /// Description.
    pub description: String,
    /// Members (segments of the asked app).
    pub members: Option<u64>,
    /// Back-fill state (aggregations).
    pub backfill: Option<Job>,
    /// Latest recompute (aggregations).
    pub recompute: Option<crate::recompute::RecomputeJob>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one row per member.
    Csv,
}

/// The user action system's queries (see the module docs).
pub struct ActionsService {
    defs: Arc<Definitions>,
    config: ActionsConfig,
    store: Arc<dyn ProfileStore>,
    kv: Arc<dyn KvStore>,
    zones: Arc<dyn AppZones>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn Log>,
    settings: ProcessorSettings,
    hot: Option<HotProfiles>,
    /// Profiles built from the read cache, reused while the user's cached fields (the
    /// same `Arc`s) and the app's local day are unchanged.
    profile_memo: moka::sync::Cache<UserKey, Arc<ProfileMemo>>,
}

/// A profile built from the read cache, and what it was built from.
#[derive(Debug)]
struct ProfileMemo {
    today: i32,
    fields: Vec<Arc<crate::store::Fields>>,
    profile: Arc<Profile>,
    /// The profile as a caller rendered it (e.g. the HTTP body), once.
    rendered: std::sync::OnceLock<bytes::Bytes>,
}

impl std::fmt::Debug for ActionsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsService").field("store", &self.store.backend()).finish_non_exhaustive()
    }
}

impl ActionsService {
    /// A service over the module's state store `kv` and the profile store.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ActionsConfig,
        store: Arc<dyn ProfileStore>,
        kv: Arc<dyn KvStore>,
        zones: Arc<dyn AppZones>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn Log>,
        settings: ProcessorSettings,
    ) -> Result<ActionsService> {
        let defs = Definitions::compile(&config).map_err(|e| Error::Config(format!("actions.{}: {}", e.field, e.message)))?;
        let hot = (config.hot_users > 0).then(|| {
            let mut scopes = vec![String::new()];
            scopes.extend(config.groups.iter().map(|g| g.name.clone()));
            HotProfiles::new(config.hot_users.saturating_mul(scopes.len() as u64), scopes)
        });
        let profile_memo = moka::sync::Cache::new(if hot.is_some() { config.profile_memo_users } else { 0 });
        Ok(ActionsService { defs: Arc::new(defs), config, store, kv, zones, clock, log, settings, hot, profile_memo })
    }

    /// One processor per group (`default` first).
    pub fn processors(&self) -> Result<Vec<ActionsProcessor>> {
        self.defs
            .groups
            .iter()
            .map(|g| {
                ActionsProcessor::new(&g.name, self.defs.clone(), self.settings.clone(), self.store.clone(), self.zones.clone(), self.clock.clone(), self.log.clone())
                    .map(|p| p.with_hot(self.hot.clone()))
            })
            .collect()
    }

    /// The compiled definitions.
    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// The config section.
    pub fn config(&self) -> &ActionsConfig {
        &self.config
    }

    /// The profile store.
    pub fn store(&self) -> &Arc<dyn ProfileStore> {
        &self.store
    }

    fn today(&self, app: &AppId) -> (chrono_tz::Tz, i32) {
        let tz = self.zones.zone(app);
        (tz, local_day(tz, self.clock.now_ms()))
    }

    /// Aggregation `name` of a user over `window` (`today`, `7d`, `month`, `2026-01`,
    /// `2026-01-01..2026-01-15`, `all`).
    ///
    /// The read path: from memory when the user is there ([`ActionsService::aggregate_in_memory`]),
    /// else from the store.
    pub fn aggregate(&self, app: &AppId, user: &str, name: &str, window: &str) -> Result<AggregateValue> {
        match self.aggregate_in_memory(app, user, name, window)? {
            Some(value) => Ok(value),
            None => self.aggregate_from_store(app, user, name, window),
        }
    }

    /// [`ActionsService::aggregate`] read from the store (never from memory).
    pub fn aggregate_from_store(&self, app: &AppId, user: &str, name: &str, window: &str) -> Result<AggregateValue> {
        let (agg, from, to) = self.check_aggregate(app, user, name, window)?;
        let field = self.store.read_field(&UserKey::new(app.clone(), user), &agg.stored_field)?;
        self.aggregate_value(agg, window, from, to, field.as_deref())
    }

    /// [`ActionsService::aggregate`] from memory (no store call, never blocks): `None`
    /// when the user is not among the recently changed ones (read the store then). Bad
    /// input is refused as by `aggregate`.
    pub fn aggregate_in_memory(&self, app: &AppId, user: &str, name: &str, window: &str) -> Result<Option<AggregateValue>> {
        let (agg, from, to) = self.check_aggregate(app, user, name, window)?;
        let Some(scopes) = self.hot_fields(app, user) else { return Ok(None) };
        let field = scopes.iter().flat_map(|f| f.iter()).find(|(f, _)| *f == agg.stored_field).map(|(_, v)| v.as_slice());
        self.aggregate_value(agg, window, from, to, field).map(Some)
    }

    fn check_aggregate(&self, app: &AppId, user: &str, name: &str, window: &str) -> Result<(&crate::defs::Aggregation, i32, i32)> {
        let (_, agg) = self.defs.aggregation(name).ok_or_else(|| Error::UnknownAggregation(name.to_owned()))?;
        check_user(user)?;
        let (_, today) = self.today(app);
        let (from, to) = Window::parse(window)?.check(today, self.defs.retention_days)?;
        Ok((agg, from, to))
    }

    fn aggregate_value(&self, agg: &crate::defs::Aggregation, window: &str, from: i32, to: i32, field: Option<&[u8]>) -> Result<AggregateValue> {
        let buckets: Buckets = field.map(|b| decode(&agg.key, b)).transpose()?.unwrap_or_default();
        let value = summary_json(agg.kind, buckets.window(agg.kind, from, to, self.defs.distinct_list_max));
        Ok(AggregateValue { aggregation: agg.name.clone(), kind: agg.kind.as_str(), window: window.to_owned(), from: day_to_date(from).to_string(), to: day_to_date(to).to_string(), value })
    }

    fn hot_fields(&self, app: &AppId, user: &str) -> Option<Vec<Arc<crate::store::Fields>>> {
        self.hot.as_ref()?.get(&UserKey::new(app.clone(), user))
    }

    /// A user's whole profile. The read path: from memory when the user is there
    /// ([`ActionsService::profile_in_memory`]; shared, not copied), else from the store.
    pub fn profile(&self, app: &AppId, user: &str) -> Result<Arc<Profile>> {
        match self.profile_in_memory(app, user)? {
            Some(profile) => Ok(profile),
            None => self.profile_from_store(app, user).map(Arc::new),
        }
    }

    /// [`ActionsService::profile`] read from the store (never from memory).
    pub fn profile_from_store(&self, app: &AppId, user: &str) -> Result<Profile> {
        Ok(self.profiles(app, &[user.to_owned()])?.remove(0))
    }

    /// [`ActionsService::profile`] from memory (see `aggregate_in_memory`).
    pub fn profile_in_memory(&self, app: &AppId, user: &str) -> Result<Option<Arc<Profile>>> {
        Ok(self.profile_memo_of(app, user)?.map(|memo| memo.profile.clone()))
    }

    /// [`ActionsService::profile_in_memory`] rendered by `render` (e.g. as an HTTP body):
    /// the rendering is kept with the built profile and reused while it is current.
    pub fn profile_rendered_in_memory(&self, app: &AppId, user: &str, render: impl FnOnce(&Profile) -> bytes::Bytes) -> Result<Option<bytes::Bytes>> {
        Ok(self.profile_memo_of(app, user)?.map(|memo| memo.rendered.get_or_init(|| render(&memo.profile)).clone()))
    }

    /// The user's profile built from the read cache: the kept one while the user's cached
    /// fields (the same `Arc`s) and the app's day are unchanged, else built now and kept.
    fn profile_memo_of(&self, app: &AppId, user: &str) -> Result<Option<Arc<ProfileMemo>>> {
        check_user(user)?;
        let Some(scopes) = self.hot_fields(app, user) else { return Ok(None) };
        let (_, today) = self.today(app);
        let key = UserKey::new(app.clone(), user);
        if let Some(memo) = self.profile_memo.get(&key) {
            if memo.today == today && memo.fields.len() == scopes.len() && memo.fields.iter().zip(&scopes).all(|(a, b)| Arc::ptr_eq(a, b)) {
                return Ok(Some(memo));
            }
        }
        let fields: Vec<&(String, Vec<u8>)> = scopes.iter().flat_map(|f| f.iter()).collect();
        let profile = Arc::new(self.build_profiles(app, &[user.to_owned()], vec![fields])?.remove(0));
        let memo = Arc::new(ProfileMemo { today, fields: scopes, profile, rendered: std::sync::OnceLock::new() });
        self.profile_memo.insert(key, memo.clone());
        Ok(Some(memo))
    }

    /// Profiles of up to `max_batch_users` users, in the order asked.
    pub fn profiles(&self, app: &AppId, users: &[String]) -> Result<Vec<Profile>> {
        if users.len() > self.config.max_batch_users {
            return Err(Error::TooManyUsers { got: users.len(), limit: self.config.max_batch_users });
        }
        for u in users {
            check_user(u)?;
        }
        let keys: Vec<UserKey> = users.iter().map(|u| UserKey::new(app.clone(), u.as_str())).collect();
        let all = self.store.read_many(&keys)?;
        self.build_profiles(app, users, all.iter().map(|f| f.iter().collect()).collect())
    }

    fn build_profiles(&self, app: &AppId, users: &[String], all: Vec<Vec<&(String, Vec<u8>)>>) -> Result<Vec<Profile>> {
        let (_, today) = self.today(app);
        let retention = self.defs.retention_days;
        let windows = [Window::Today, Window::Days(7), Window::Days(30), Window::All].map(|w| w.days(today, retention));
        let list_max = self.defs.distinct_list_max;
        let mut out = Vec::with_capacity(users.len());
        for (user, fields) in users.iter().zip(all) {
            let mut profile = Profile {
                user: user.clone(),
                known: !fields.is_empty(),
                first_seen_ms: 0,
                last_active_ms: 0,
                stage: String::new(),
                stage_since_ms: 0,
                segments: Vec::new(),
                values: BTreeMap::new(),
                events: ProfileValues::default(),
                timeline: Vec::new(),
            };
            let default_meta = meta_field(DEFAULT_GROUP);
            for (name, value) in fields.iter().copied() {
                if name == &default_meta {
                    let meta: Meta = decode(name, value)?;
                    profile.first_seen_ms = meta.first_seen_ms;
                    profile.last_active_ms = meta.last_active_ms;
                    profile.stage_since_ms = meta.stage_since_ms;
                    let [t, w, m, a] = windows.map(|(f, to)| summary_json(AggregationKind::Count, meta.activity.window(AggregationKind::Count, f, to, list_max)));
                    profile.events = ProfileValues { today: t, d7: w, d30: m, all: a };
                    // Decoded for this profile: its strings move in.
                    profile.stage = meta.stage;
                    profile.segments.extend(meta.segments);
                    profile.timeline = meta.timeline;
                } else if name.starts_with("m:") {
                    let meta: Meta = decode(name, value)?;
                    profile.segments.extend(meta.segments);
                }
            }
            for agg in &self.defs.aggregations {
                let buckets: Buckets = match fields.iter().find(|(n, _)| *n == agg.stored_field) {
                    Some((n, v)) => decode(n, v)?,
                    None => Buckets::default(),
                };
                let [t, w, m, a] = buckets.windows_ending_together(agg.kind, windows, list_max).map(|summary| summary_json(agg.kind, summary));
                profile.values.insert(agg.name.clone(), ProfileValues { today: t, d7: w, d30: m, all: a });
            }
            profile.segments.sort();
            out.push(profile);
        }
        Ok(out)
    }

    fn segment_exists(&self, segment: &str) -> Result<()> {
        self.defs.segment(segment).map(|_| ()).ok_or_else(|| Error::UnknownSegment(segment.to_owned()))
    }

    /// Whether a user is in `segment`.
    pub fn in_segment(&self, app: &AppId, user: &str, segment: &str) -> Result<bool> {
        self.segment_exists(segment)?;
        check_user(user)?;
        Ok(self.kv.get(MEMBERS_TABLE, &member_key(app.as_str(), segment, Some(user)))?.is_some())
    }

    /// [`ActionsService::in_segment`] from memory (see `aggregate_in_memory`): the user's
    /// committed memberships, as the processors published them.
    pub fn in_segment_in_memory(&self, app: &AppId, user: &str, segment: &str) -> Result<Option<bool>> {
        self.segment_exists(segment)?;
        check_user(user)?;
        let Some(scopes) = self.hot_fields(app, user) else { return Ok(None) };
        for (name, value) in scopes.iter().flat_map(|f| f.iter()) {
            if name == "m" || name.starts_with("m:") {
                let meta: crate::state::MetaHead = decode(name, value)?;
                if meta.segments.iter().any(|s| s == segment) {
                    return Ok(Some(true));
                }
            }
        }
        Ok(Some(false))
    }

    /// Members of `segment`.
    pub fn segment_count(&self, app: &AppId, segment: &str) -> Result<u64> {
        self.segment_exists(segment)?;
        Ok(self.kv.get(COUNTS_TABLE, &app_key(app.as_str(), segment))?.and_then(|v| v.try_into().ok()).map(i64::from_be_bytes).unwrap_or(0).max(0) as u64)
    }

    /// Member ids of `segment`, in id order, after `after`, at most `limit`.
    pub fn segment_members(&self, app: &AppId, segment: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.segment_exists(segment)?;
        let prefix = member_key(app.as_str(), segment, None);
        let start = match after {
            Some(a) => {
                let mut k = prefix.clone();
                k.extend_from_slice(a.as_bytes());
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut end = prefix.clone();
        *end.last_mut().unwrap_or(&mut 0) = 1;
        let rows = self.kv.range(MEMBERS_TABLE, std::ops::Bound::Included(&start), std::ops::Bound::Excluded(&end), limit)?;
        Ok(rows.into_iter().map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned()).collect())
    }

    /// The masked form of a user id: a keyed hash (HMAC-SHA256 with `actions.mask_key`,
    /// 128 bits in hex), stable for a key, so exports can be joined without ids.
    pub fn mask(&self, app: &AppId, user: &str) -> Option<String> {
        if self.config.mask_key.is_empty() {
            return None;
        }
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.config.mask_key.as_bytes()).ok()?;
        mac.update(app.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(user.as_bytes());
        Some(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    /// Writes the members of `segment` to `out`; ids masked unless `unmask`. Returns the
    /// number of members written.
    pub fn export(&self, app: &AppId, segment: &str, format: ExportFormat, unmask: bool, out: &mut dyn std::io::Write) -> Result<u64> {
        self.segment_exists(segment)?;
        if !unmask && self.config.mask_key.is_empty() {
            return Err(Error::MaskKeyMissing);
        }
        let io = |e: std::io::Error| Error::Backend(format!("writing the export: {e}"));
        let column = if unmask { "user" } else { "user_hash" };
        let (mut csv, mut jsonl) = match format {
            ExportFormat::Csv => (Some(csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(out)), None),
            ExportFormat::Jsonl => (None, Some(out)),
        };
        if let Some(w) = &mut csv {
            w.write_record([column]).map_err(|e| io(e.into()))?;
        }
        let mut after: Option<String> = None;
        let mut n = 0u64;
        loop {
            let page = self.segment_members(app, segment, after.as_deref(), 1000)?;
            if page.is_empty() {
                break;
            }
            for user in &page {
                let id = if unmask { user.clone() } else { self.mask(app, user).unwrap_or_default() };
                if let Some(w) = &mut csv {
                    w.write_record([&id]).map_err(|e| io(e.into()))?;
                }
                if let Some(out) = &mut jsonl {
                    writeln!(out, "{}", serde_json::json!({ column: id, "segment": segment })).map_err(io)?;
                }
                n += 1;
            }
            after = page.last().cloned();
        }
        if let Some(mut w) = csv {
            w.flush().map_err(io)?;
        }
        Ok(n)
    }

    /// Every definition with its live figures for `app`.
    pub fn summaries(&self, app: &AppId) -> Result<Vec<DefinitionSummary>> {
        let mut out = Vec::new();
        for a in &self.defs.aggregations {
            out.push(DefinitionSummary {
                kind: "aggregation",
                name: a.name.clone(),
                detail: match &a.field {
                    Some(_) => format!("{} of {}", a.kind.as_str(), a.field_path),
                    None => a.kind.as_str().to_owned(),
                },
                filter: a.filter_text.clone(),
                group: a.group.clone(),
                description: a.description.clone(),
                members: None,
                backfill: self.backfill_status(&a.name)?,
                recompute: self.recompute_status(&a.name)?,
            });
        }
        for s in &self.defs.stages {
            out.push(DefinitionSummary { kind: "stage", name: s.name.clone(), detail: s.text.clone(), filter: String::new(), group: s.group.clone(), description: String::new(), members: None, backfill: None, recompute: None });
        }
        for s in &self.defs.segments {
            out.push(DefinitionSummary {
                kind: "segment",
                name: s.name.clone(),
                detail: s.text.clone(),
                filter: String::new(),
                group: s.group.clone(),
                description: s.description.clone(),
                members: Some(self.segment_count(app, &s.name)?),
                backfill: None,
                recompute: None,
            });
        }
        for t in &self.defs.triggers {
            out.push(DefinitionSummary { kind: "trigger", name: t.name.clone(), detail: t.text.clone(), filter: String::new(), group: t.group.clone(), description: t.description.clone(), members: None, backfill: None, recompute: None });
        }
        Ok(out)
    }

    /// Starts the back-fill of aggregation `name` from the log: the events before the
    /// position where it went live are counted into the users' buckets, in steps run by
    /// its group's processor (reads keep working; a crash resumes from the last step).
    /// Crossings it finds fire triggers only when `refire`. Each aggregation definition is
    /// back-filled once (a changed definition has a new key and starts empty).
    pub fn request_backfill(&self, name: &str, refire: bool) -> Result<Job> {
        let (_, agg) = self.defs.aggregation(name).ok_or_else(|| Error::UnknownAggregation(name.to_owned()))?;
        if let Some(job) = self.backfill_status(name)? {
            return Err(Error::Backfill(if job.done {
                format!("aggregation {name:?} was back-filled already (this definition); change the definition to start a new one")
            } else {
                format!("aggregation {name:?} is being back-filled ({} of {} records read)", job.read, job.total)
            }));
        }
        let Some(raw) = self.kv.get(DEFS_TABLE, agg.key.as_bytes())? else {
            return Err(Error::Backfill(format!("aggregation {name:?} is not live yet: its processor records where it starts counting in its first round; retry in a moment")));
        };
        let since: LiveSince = serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("live position of {name}: {e}")))?;
        let topic = meridian_log::TopicName::new(since.topic.as_str()).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut job = Job { aggregation: name.to_owned(), key: agg.key.clone(), refire, topic: since.topic.clone(), requested_ms: self.clock.now_ms(), ..Job::default() };
        for (partition, until) in &since.positions {
            let start = self.log.offsets(&topic, *partition)?.start;
            job.cursor.insert(*partition, start.min(*until));
            job.until.insert(*partition, *until);
            job.total += until.saturating_sub(start);
        }
        let mut batch = WriteBatch::new();
        batch.put(JOBS_TABLE, agg.key.as_bytes().to_vec(), serde_json::to_vec(&job).unwrap_or_default());
        self.kv.commit(batch)?;
        meridian_runtime::schedule_timer(&*self.kv, &processor_name(&agg.group), meridian_event::Timestamp::now().millis(), &job_timer_key(&agg.key))
            .map_err(|e| Error::Backend(e.to_string()))?;
        Ok(job)
    }

    /// Starts the recompute of aggregation `name`'s older days from the log (the lambda
    /// merge, see [`crate::recompute`]): the days from the first whole day the log holds to
    /// `actions.live_days` before today are replaced by what the log says; later days stay
    /// live. One at a time per aggregation.
    pub fn request_recompute(&self, name: &str) -> Result<crate::recompute::RecomputeJob> {
        use crate::recompute::{Phase, RecomputeJob, RECOMPUTE_TABLE};
        let (_, agg) = self.defs.aggregation(name).ok_or_else(|| Error::UnknownAggregation(name.to_owned()))?;
        if let Some(job) = self.recompute_status(name)? {
            if job.phase != Phase::Done {
                return Err(Error::Backfill(format!("aggregation {name:?} is being recomputed ({:?}, {} records read)", job.phase, job.read)));
            }
        }
        let group = self.defs.groups.iter().find(|g| g.name == agg.group).ok_or_else(|| Error::Corrupt(format!("unknown group {}", agg.group)))?;
        let topic = match &group.topic {
            Some(t) => meridian_log::TopicName::new(t.as_str()).map_err(|e| Error::Corrupt(e.to_string()))?,
            None => self.settings.events_topic.clone(),
        };
        let now = self.clock.now_ms();
        let mut job = RecomputeJob {
            aggregation: name.to_owned(),
            key: agg.key.clone(),
            topic: topic.as_str().to_owned(),
            cutoff_ms: now - i64::from(self.config.live_days.saturating_sub(1)) * 86_400_000,
            first_ms: i64::MAX,
            requested_ms: now,
            ..RecomputeJob::default()
        };
        for partition in 0..self.log.partition_count(&topic)? {
            let offsets = self.log.offsets(&topic, partition)?;
            job.cursor.insert(partition, offsets.start);
            job.total += offsets.end - offsets.start;
            if let Some(first) = self.log.read(&topic, partition, offsets.start, 1, 1 << 20)?.first() {
                job.first_ms = job.first_ms.min(first.timestamp);
            }
        }
        if job.first_ms == i64::MAX {
            job.first_ms = now;
        }
        let mut batch = WriteBatch::new();
        batch.put(RECOMPUTE_TABLE, agg.key.as_bytes().to_vec(), serde_json::to_vec(&job).unwrap_or_default());
        self.kv.commit(batch)?;
        meridian_runtime::schedule_timer(&*self.kv, &processor_name(&agg.group), meridian_event::Timestamp::now().millis(), &crate::processor::recompute_timer_key(&agg.key))
            .map_err(|e| Error::Backend(e.to_string()))?;
        Ok(job)
    }

    /// The latest recompute of aggregation `name` (its current definition), if any.
    pub fn recompute_status(&self, name: &str) -> Result<Option<crate::recompute::RecomputeJob>> {
        let (_, agg) = self.defs.aggregation(name).ok_or_else(|| Error::UnknownAggregation(name.to_owned()))?;
        match self.kv.get(crate::recompute::RECOMPUTE_TABLE, agg.key.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("recompute job of {name}: {e}")))?)),
            None => Ok(None),
        }
    }

    /// The back-fill of aggregation `name` (its current definition), if one was asked.
    pub fn backfill_status(&self, name: &str) -> Result<Option<Job>> {
        let (_, agg) = self.defs.aggregation(name).ok_or_else(|| Error::UnknownAggregation(name.to_owned()))?;
        match self.kv.get(JOBS_TABLE, agg.key.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("back-fill job of {name}: {e}")))?)),
            None => Ok(None),
        }
    }
}

/// A summary as JSON; count-like kinds report 0 for an empty window.
pub fn summary_json(kind: AggregationKind, summary: Summary) -> serde_json::Value {
    match (kind, &summary) {
        (AggregationKind::Count | AggregationKind::Distinct, Summary::Empty) => 0.into(),
        (AggregationKind::Sum, Summary::Empty) => serde_json::json!(0.0),
        _ => summary.to_json(),
    }
}
