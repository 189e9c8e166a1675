//! The history processor: `view` events of SKUs update the owner's history; `identify`
//! events (with both a user and a device) merge the device's history into the user's.
//!
//! Crash safety: the cold tier is the durable source of truth and is written into the
//! runtime's batch, committed atomically with the log positions. After a crash the
//! records after the last commit are processed again; since every update is a
//! max-time-per-SKU merge (idempotent), re-applying them to the cold value rebuilt from
//! the committed state gives exactly the same result, and re-applying them to the hot
//! tier (which may already hold them, e.g. Redis) changes nothing. Nothing is lost
//! (uncommitted records are replayed) and nothing is double-applied (merges are
//! idempotent).
//!
//! Erasure: an [`Erasure`] record of the owner (in order with the owner's events, in their
//! partition) removes the owner's cold value, marks and hot list, in the same batch as the
//! round, and files a receipt of what was there; views before it in the same call are
//! dropped too. A replay of the log meets it again, so the data stays gone.
//!
//! Efficiency: within one `process` call the views are coalesced per owner: one cold read
//! and one cold write per owner. Hot-tier writes of every call of a round are kept in
//! order and written once at the end of the round (`end_of_round`: one `HotTier::record`
//! for all owners, pipelined by Redis). Because the runtime runs several `process` calls
//! into one batch before it commits, the processor remembers the values it wrote recently
//! (two generations of [`RECENT_OWNERS`] owners, encoded) and merges them with the
//! committed value.
//!
//! SKU ids must be decimal integers (as in the demo catalog); views of other SKU ids are
//! skipped and counted in `meridian_history_non_numeric_sku_total`.

use crate::cold::{ColdGeneration, ColdTier};
use crate::codec::decode_entries;
use crate::hot::{HotTier, OwnerUpdate};
use crate::marks::Marks;
use crate::model::{merge_entries, parse_sku, Clock, Entry, Owner, OwnerKey};
use meridian_event::{Erasure, LogEntry, SubjectKind};
use meridian_log::{Record, TopicName};
use meridian_runtime::{ProcessContext, Processor};
use meridian_state::WriteBatch;
use moka::sync::Cache;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The processor's name (and the key of its positions).
/// Devices linked to users by `identify`: key = user owner key (16 bytes) ++ device owner
/// key (16 bytes), empty value. Erasing a user erases its linked devices.
pub const LINKS_TABLE: &str = "history_links";

/// Erased owners: key = owner key (16 bytes), value = the latest erasure's time (ms, i64
/// BE). A view of the owner from up to then that arrives later (a client re-sending old
/// events, a device partition read after the user's) is dropped, as the rebuild does.
pub const ERASED_TABLE: &str = "history_erased";

pub const PROCESSOR_NAME: &str = "history";
/// Owners whose last written cold value is remembered per generation.
pub const RECENT_OWNERS: usize = 131_072;

/// The shared count cache: the processor invalidates the owners it writes, the service
/// the owners it deletes from; the service fills it.
#[derive(Debug, Clone)]
pub struct CountInvalidator {
    pub(crate) cache: Cache<u128, usize>,
}

impl CountInvalidator {
    /// A cache of at most `capacity` counts, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: std::time::Duration) -> CountInvalidator {
        CountInvalidator { cache: Cache::builder().max_capacity(capacity).time_to_live(ttl).build() }
    }

    /// Forgets an owner's cached count.
    pub fn invalidate(&self, owner: OwnerKey) {
        self.cache.invalidate(&owner.0);
    }
}

/// Configuration of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Topic of behaviour events.
    pub topic: TopicName,
    /// N: entries kept per owner.
    pub max_items: usize,
    /// Action of a view.
    pub view_action: String,
    /// Target type of a view that counts.
    pub target_type: String,
    /// Action that links a device to a user.
    pub identify_action: String,
}

impl ProcessorConfig {
    /// Defaults (`view` of `sku`, `identify`, N = 200) for `topic`.
    pub fn new(topic: TopicName) -> ProcessorConfig {
        ProcessorConfig { topic, max_items: 200, view_action: "view".into(), target_type: "sku".into(), identify_action: "identify".into() }
    }
}

/// Counters of what the processor saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    /// Views applied.
    pub views: u64,
    /// Identify merges applied.
    pub merges: u64,
    /// Views of erased owners from before their erasure, arriving after it: dropped.
    pub erased_late: u64,
    /// Views skipped because the SKU id is not numeric.
    pub non_numeric_skus: u64,
    /// Records that did not decode.
    pub undecodable: u64,
    /// Views without user or device.
    pub ownerless: u64,
    /// Owners erased.
    pub erasures: u64,
}

/// The history processor (see the module docs).
#[derive(Debug)]
pub struct HistoryProcessor {
    config: ProcessorConfig,
    hot: Arc<dyn HotTier>,
    cold: ColdTier,
    generation: ColdGeneration,
    marks: Marks,
    counts: CountInvalidator,
    clock: Arc<dyn Clock>,
    recent: HashMap<OwnerKey, Vec<u8>>,
    recent_old: HashMap<OwnerKey, Vec<u8>>,
    /// Hot-tier writes of this round, in order, written at its end.
    hot_writes: Vec<HotWrite>,
    /// Erased owners → time of their latest erasure (from [`ERASED_TABLE`], loaded at the
    /// first round): their views up to then are dropped when they arrive late.
    erased_at: Option<HashMap<OwnerKey, i64>>,
    stats: ProcessorStats,
}

/// A hot-tier write waiting for the end of the round.
#[derive(Debug)]
enum HotWrite {
    /// New views of owners.
    Record(Vec<OwnerUpdate>),
    /// An erased owner.
    Remove(OwnerKey),
}

impl HistoryProcessor {
    /// A processor writing to these tiers.
    pub fn new(config: ProcessorConfig, hot: Arc<dyn HotTier>, cold: ColdTier, generation: ColdGeneration, marks: Marks, counts: CountInvalidator, clock: Arc<dyn Clock>) -> HistoryProcessor {
        HistoryProcessor {
            config,
            hot,
            cold,
            generation,
            marks,
            counts,
            clock,
            recent: HashMap::new(),
            recent_old: HashMap::new(),
            hot_writes: Vec::new(),
            erased_at: None,
            stats: ProcessorStats::default(),
        }
    }

    /// The erased owners, read from the store at the first call (and after a cache reset).
    fn erased_at(&mut self, ctx: &ProcessContext<'_>) -> meridian_runtime::Result<&mut HashMap<OwnerKey, i64>> {
        if self.erased_at.is_none() {
            let rows = ctx.store().scan_prefix(ERASED_TABLE, &[], usize::MAX)?;
            let map = rows
                .iter()
                .filter_map(|(k, v)| Some((OwnerKey::from_bytes(k)?, i64::from_be_bytes(v.as_slice().try_into().ok()?))))
                .collect();
            self.erased_at = Some(map);
        }
        Ok(self.erased_at.get_or_insert_with(HashMap::new))
    }

    /// What it saw so far.
    pub fn stats(&self) -> ProcessorStats {
        self.stats
    }

    /// The cold value as this processor last saw or wrote it (pending writes included),
    /// TTL applied.
    fn cold_current(&self, ctx: &ProcessContext<'_>, owner: OwnerKey, now: i64) -> crate::Result<Vec<Entry>> {
        let committed = ctx.store().get(crate::cold::COLD_TABLE, &ColdTier::key(owner))?.and_then(|b| self.cold.decode(&b, now)).unwrap_or_default();
        let recent = self.recent.get(&owner).or_else(|| self.recent_old.get(&owner)).and_then(|b| decode_entries(b)).filter(|e| !self.cold.expired(e, now));
        Ok(match recent {
            Some(r) if !committed.is_empty() => merge_entries([&committed[..], &r[..]], self.config.max_items),
            Some(r) => r,
            None => committed,
        })
    }

    fn remember(&mut self, owner: OwnerKey, value: Vec<u8>) {
        if self.recent.len() >= RECENT_OWNERS {
            self.recent_old = std::mem::take(&mut self.recent);
        }
        self.recent.insert(owner, value);
    }

    /// Erases `erasure`'s owner — and, for a user, every device an `identify` linked to it
    /// (their views are the user's behaviour too): cold values and marks in the batch, hot
    /// lists at the end of the round, this call's earlier views; files what was there as a
    /// receipt.
    fn erase(
        &mut self,
        ctx: &mut ProcessContext<'_>,
        erasure: &Erasure,
        pending: &mut HashMap<OwnerKey, Vec<Entry>>,
        erased: &mut HashSet<OwnerKey>,
        links: &mut HashMap<OwnerKey, Vec<OwnerKey>>,
        now: i64,
    ) -> meridian_runtime::Result<()> {
        let owner = match erasure.kind {
            SubjectKind::User => Owner::user(erasure.app.as_str(), &erasure.subject),
            SubjectKind::Device => Owner::device(erasure.app.as_str(), &erasure.subject),
        };
        let key = owner.key();
        let mut owners = vec![key];
        if erasure.kind == SubjectKind::User {
            let prefix = key.to_bytes();
            let stored = ctx.store().scan_prefix(LINKS_TABLE, &prefix, usize::MAX)?;
            let mut devices: Vec<OwnerKey> = stored.iter().filter_map(|(k, _)| k.get(16..).and_then(OwnerKey::from_bytes)).collect();
            devices.extend(links.remove(&key).unwrap_or_default());
            devices.sort_unstable_by_key(|d| d.0);
            devices.dedup();
            ctx.batch().delete_prefix(LINKS_TABLE, prefix.to_vec());
            owners.extend(devices);
        }
        let (mut cold_entries, mut hot_entries, mut deletion_marks) = (0, 0, 0);
        for &owner in &owners {
            let erased_at = self.erased_at(ctx)?;
            let at = erased_at.entry(owner).or_insert(i64::MIN);
            *at = (*at).max(erasure.requested_ms);
            let at = *at;
            ctx.batch().put(ERASED_TABLE, owner.to_bytes().to_vec(), at.to_be_bytes().to_vec());
            let base = if erased.contains(&owner) { Vec::new() } else { self.cold_current(ctx, owner, now)? };
            let in_call = pending.remove(&owner).unwrap_or_default();
            cold_entries += merge_entries([&base[..], &in_call[..]], self.config.max_items).len();
            hot_entries += self.hot.get(owner, now)?.map_or(0, |h| h.len());
            let marks = self.marks.get(owner)?;
            deletion_marks += marks.deleted().len() + usize::from(marks.clear_ms.is_some());
            ctx.batch().delete(crate::cold::COLD_TABLE, ColdTier::key(owner).to_vec());
            ctx.batch().delete(crate::marks::MARKS_TABLE, owner.to_bytes().to_vec());
            self.recent.remove(&owner);
            self.recent_old.remove(&owner);
            self.counts.invalidate(owner);
            erased.insert(owner);
            self.hot_writes.push(HotWrite::Remove(owner));
        }
        let removed = serde_json::json!({
            "cold_entries": cold_entries,
            "hot_entries": hot_entries,
            "deletion_marks": deletion_marks,
            "linked_devices": owners.len() - 1,
        });
        ctx.erasure_receipt(&erasure.id, removed)?;
        self.stats.erasures += 1;
        metrics::counter!("meridian_history_erasures_total").increment(1);
        Ok(())
    }

    fn owner_of(event: &meridian_event::Event) -> Option<Owner> {
        let app = event.app.as_str();
        match (&event.user, &event.device) {
            (Some(u), _) => Some(Owner::user(app, u.as_str())),
            (None, Some(d)) => Some(Owner::device(app, d.as_str())),
            (None, None) => None,
        }
    }
}

impl Processor for HistoryProcessor {
    fn name(&self) -> &str {
        PROCESSOR_NAME
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.config.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        let now = self.clock.now_ms();
        let n = self.config.max_items;
        // Views per owner in this call, in first-seen order.
        let mut order: Vec<OwnerKey> = Vec::new();
        let mut pending: HashMap<OwnerKey, Vec<Entry>> = HashMap::new();
        // Owners erased in this call: their committed cold value no longer counts.
        let mut erased: HashSet<OwnerKey> = HashSet::new();
        // user → devices linked by an identify of this call (not yet in the store).
        let mut links: HashMap<OwnerKey, Vec<OwnerKey>> = HashMap::new();
        for record in records {
            let event = match LogEntry::decode(&record.value) {
                Ok(LogEntry::Event(e)) => e,
                Ok(LogEntry::Erasure(erasure)) => {
                    self.erase(ctx, &erasure, &mut pending, &mut erased, &mut links, now)?;
                    continue;
                }
                Err(e) => {
                    self.stats.undecodable += 1;
                    metrics::counter!("meridian_history_undecodable_total").increment(1);
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "history: skipping undecodable record");
                    continue;
                }
            };
            let action = event.action.as_str();
            if action == self.config.view_action {
                let Some(target) = event.target.as_ref().filter(|t| t.kind.as_str() == self.config.target_type) else { continue };
                let Some(sku) = parse_sku(&target.id) else {
                    self.stats.non_numeric_skus += 1;
                    metrics::counter!("meridian_history_non_numeric_sku_total").increment(1);
                    continue;
                };
                let Some(owner) = Self::owner_of(&event) else {
                    self.stats.ownerless += 1;
                    continue;
                };
                let key = owner.key();
                if self.erased_at(ctx)?.get(&key).is_some_and(|at| event.time.0 <= *at) {
                    self.stats.erased_late += 1;
                    continue;
                }
                pending
                    .entry(key)
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push(Entry::new(sku, event.time.0));
                self.stats.views += 1;
            } else if action == self.config.identify_action {
                let (Some(user), Some(device)) = (&event.user, &event.device) else { continue };
                let app = event.app.as_str();
                let device_key = Owner::device(app, device.as_str()).key();
                let user_key = Owner::user(app, user.as_str()).key();
                // The link outlives this merge: erasing the user erases the device too.
                ctx.batch().put(LINKS_TABLE, [user_key.to_bytes(), device_key.to_bytes()].concat(), Vec::new());
                links.entry(user_key).or_default().push(device_key);
                // The device's whole visible history right now: hot, cold (incl. this
                // processor's pending writes) and this call's views.
                let hot = if erased.contains(&device_key) { Vec::new() } else { self.hot.get(device_key, now)?.unwrap_or_default() };
                let cold = if erased.contains(&device_key) { Vec::new() } else { self.cold_current(ctx, device_key, now)? };
                let in_call = pending.get(&device_key).cloned().unwrap_or_default();
                let mut device_entries = merge_entries([&hot[..], &cold[..], &in_call[..]], n);
                self.marks.get(device_key)?.filter(&mut device_entries);
                if device_entries.is_empty() {
                    continue;
                }
                pending
                    .entry(user_key)
                    .or_insert_with(|| {
                        order.push(user_key);
                        Vec::new()
                    })
                    .extend(device_entries);
                self.stats.merges += 1;
            }
        }
        if order.is_empty() {
            return Ok(());
        }
        // Before the commit: a purge running beside the processor spares these owners.
        self.cold.fence().writing(order.iter().copied());
        let mut updates = Vec::with_capacity(order.len());
        let generation = self.generation.current();
        for owner in order {
            let Some(views) = pending.remove(&owner) else { continue };
            let base = if erased.contains(&owner) { Vec::new() } else { self.cold_current(ctx, owner, now)? };
            // With no cold history before these views, the cold value becomes exactly
            // them, which the hot list receives too: the hot list is complete.
            let complete_in = if base.is_empty() { generation } else { None };
            let merged = merge_entries([&base[..], &views[..]], n);
            let value = ColdTier::encode(&merged);
            ctx.batch().put(crate::cold::COLD_TABLE, ColdTier::key(owner).to_vec(), value.clone());
            self.remember(owner, value);
            self.counts.invalidate(owner);
            updates.push(OwnerUpdate { owner, entries: views, complete_in });
        }
        metrics::counter!("meridian_history_owner_updates_total").increment(updates.len() as u64);
        self.hot_writes.push(HotWrite::Record(updates));
        Ok(())
    }

    /// Writes the round's hot-tier changes, in order, consecutive views in one call. Hot
    /// before the commit: a failed hot write fails the round (it is retried with the same
    /// records); the cold writes are still only in the uncommitted batch.
    fn end_of_round(&mut self, _ctx: &mut ProcessContext<'_>) -> meridian_runtime::Result<()> {
        self.cold.fence().round_ended();
        let now = self.clock.now_ms();
        let mut views: Vec<OwnerUpdate> = Vec::new();
        for write in std::mem::take(&mut self.hot_writes) {
            match write {
                HotWrite::Record(updates) => views.extend(updates),
                HotWrite::Remove(owner) => {
                    if !views.is_empty() {
                        self.hot.record(&std::mem::take(&mut views), now)?;
                    }
                    self.hot.remove_owner(owner)?;
                }
            }
        }
        if !views.is_empty() {
            self.hot.record(&views, now)?;
        }
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.recent.clear();
        self.recent_old.clear();
        self.hot_writes.clear();
        self.erased_at = None;
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(crate::cold::COLD_TABLE, Vec::new());
        batch.delete_prefix(LINKS_TABLE, Vec::new());
        self.reset_cache();
    }
}
