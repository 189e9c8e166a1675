//! Offline rebuild of the cold tier from the log: the last 60 days of views (and
//! identify merges), N per owner, minus deletions and erasures (an erasure record drops
//! its owner's views up to its time — a user's erasure also those of the devices linked to
//! it by identify — in whichever partition they are).
//!
//! The log is scanned partition by partition (records older than the window by their
//! log timestamp are skipped, as are views older than the window by event time). The
//! result for each owner is merged with its current cold value (so views the live
//! processor wrote meanwhile are never lost), filtered by the owner's marks (clear mark
//! and deleted SKUs are applied physically) and written in batches of
//! `write_batch_owners` owners: each batch is its own short transaction, so live reads
//! (redb readers never wait for writers) and the processor keep going.

use crate::cold::ColdTier;
use crate::hot::HotConfig;
use crate::marks::Marks;
use crate::model::{merge_entries, parse_sku, Entry, Owner, OwnerKey};
use crate::Result;
use meridian_event::{LogEntry, SubjectKind};
use meridian_log::{Log, TopicName};
use meridian_state::{KvStore, WriteBatch};
use std::collections::HashMap;
use std::sync::Arc;

/// Configuration of a rebuild.
#[derive(Debug, Clone)]
pub struct RebuildConfig {
    /// Topic of behaviour events.
    pub topic: TopicName,
    /// Views older than this (before now) are left out (default 60 days).
    pub window_ms: i64,
    /// N.
    pub max_items: usize,
    /// Cold TTL (as the service's).
    pub cold_ttl_ms: i64,
    /// Owners per write transaction.
    pub write_batch_owners: usize,
    /// Records per log read.
    pub read_batch: usize,
}

impl RebuildConfig {
    /// Defaults for `topic`.
    pub fn new(topic: TopicName) -> RebuildConfig {
        RebuildConfig { topic, window_ms: 60 * 86_400_000, max_items: HotConfig::default().max_items, cold_ttl_ms: 62 * 86_400_000, write_batch_owners: 1000, read_batch: 4096 }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// Records read.
    pub records: u64,
    /// Views used.
    pub views: u64,
    /// Owners written.
    pub owners: u64,
    /// Entries written.
    pub entries: u64,
    /// Entries left out by marks.
    pub hidden: u64,
}

fn compact(list: &mut Vec<Entry>, n: usize) {
    if list.len() > 2 * n.max(8) {
        *list = merge_entries([&list[..]], n);
    }
}

/// Rebuilds the cold tier (see the module docs). `progress(done, total)` is called while
/// scanning with records read / records in the window's partitions, then while writing
/// with owners written / owners.
pub(crate) fn rebuild_cold(log: &dyn Log, store: &Arc<dyn KvStore>, config: &RebuildConfig, now_ms: i64, progress: &mut dyn FnMut(u64, u64)) -> Result<RebuildReport> {
    let cold = ColdTier::new(store.clone(), config.cold_ttl_ms);
    let marks = Marks::new(store.clone());
    let n = config.max_items;
    let since = now_ms - config.window_ms;
    let partitions = log.partition_count(&config.topic)?;
    let mut ranges = Vec::new();
    let mut total = 0;
    for p in 0..partitions {
        let o = log.offsets(&config.topic, p)?;
        total += o.end - o.start;
        ranges.push((p, o.start, o.end));
    }
    let mut report = RebuildReport::default();
    let mut acc: HashMap<OwnerKey, Vec<Entry>> = HashMap::new();
    // user → devices linked by identify events of the scan (the store's links, written by
    // the live processor, are read when an erasure needs them).
    let mut links: HashMap<OwnerKey, Vec<OwnerKey>> = HashMap::new();
    // Owner → time of its latest erasure: its views up to then are gone, whichever
    // partition (scanned earlier or later) they are in.
    let mut erased_at: HashMap<OwnerKey, i64> = HashMap::new();
    progress(0, total);
    for (p, start, end) in ranges {
        let mut from = start;
        while from < end {
            let records = log.read(&config.topic, p, from, config.read_batch, 16 << 20)?;
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for r in &records {
                report.records += 1;
                if r.timestamp < since {
                    continue;
                }
                let event = match LogEntry::decode(&r.value) {
                    Ok(LogEntry::Event(event)) => event,
                    Ok(LogEntry::Erasure(erasure)) => {
                        // Everything of the owner (and of a user's linked devices) before
                        // the erasure is gone.
                        let owner = match erasure.kind {
                            SubjectKind::User => Owner::user(erasure.app.as_str(), &erasure.subject),
                            SubjectKind::Device => Owner::device(erasure.app.as_str(), &erasure.subject),
                        }
                        .key();
                        let mut owners = vec![owner];
                        if erasure.kind == SubjectKind::User {
                            owners.extend(links.remove(&owner).unwrap_or_default());
                            let stored = store.scan_prefix(crate::processor::LINKS_TABLE, &owner.to_bytes(), usize::MAX)?;
                            owners.extend(stored.iter().filter_map(|(k, _)| k.get(16..).and_then(OwnerKey::from_bytes)));
                        }
                        for owner in owners {
                            if let Some(list) = acc.remove(&owner) {
                                report.hidden += merge_entries([&list[..]], n).len() as u64;
                            }
                            let at = erased_at.entry(owner).or_insert(i64::MIN);
                            *at = (*at).max(erasure.requested_ms);
                        }
                        continue;
                    }
                    Err(_) => continue,
                };
                if event.time.0 < since {
                    continue;
                }
                let app = event.app.as_str();
                match event.action.as_str() {
                    "view" => {
                        let Some(sku) = event.target.as_ref().filter(|t| t.kind.as_str() == "sku").and_then(|t| parse_sku(&t.id)) else { continue };
                        let owner = match (&event.user, &event.device) {
                            (Some(u), _) => Owner::user(app, u.as_str()),
                            (None, Some(d)) => Owner::device(app, d.as_str()),
                            _ => continue,
                        };
                        if erased_at.get(&owner.key()).is_some_and(|at| event.time.0 <= *at) {
                            report.hidden += 1;
                            continue;
                        }
                        let list = acc.entry(owner.key()).or_default();
                        list.push(Entry::new(sku, event.time.0));
                        compact(list, n);
                        report.views += 1;
                    }
                    "identify" => {
                        let (Some(u), Some(d)) = (&event.user, &event.device) else { continue };
                        let device = Owner::device(app, d.as_str()).key();
                        links.entry(Owner::user(app, u.as_str()).key()).or_default().push(device);
                        let Some(list) = acc.get(&device) else { continue };
                        let mut device_entries = merge_entries([&list[..]], n);
                        marks.get(device)?.filter(&mut device_entries);
                        let user = acc.entry(Owner::user(app, u.as_str()).key()).or_default();
                        user.extend(device_entries);
                        compact(user, n);
                    }
                    _ => {}
                }
            }
            progress(report.records, total);
        }
    }
    let owners_total = acc.len() as u64;
    let mut done = 0;
    progress(0, owners_total);
    let mut batch = WriteBatch::new();
    let mut in_batch = 0;
    for (owner, list) in acc {
        let mut current = cold.get(owner, now_ms)?.unwrap_or_default();
        // A live cold value not yet erased (the processor lagging) loses what the erasure covers.
        if let Some(at) = erased_at.get(&owner) {
            current.retain(|e| e.time_ms > *at);
        }
        let mut merged: Vec<Entry> = merge_entries([&list[..], &current[..]], n).into_iter().filter(|e| e.time_ms >= since).collect();
        let before = merged.len();
        marks.get(owner)?.filter(&mut merged);
        report.hidden += (before - merged.len()) as u64;
        report.entries += merged.len() as u64;
        report.owners += u64::from(!merged.is_empty());
        ColdTier::put(&mut batch, owner, &merged);
        in_batch += 1;
        done += 1;
        if in_batch >= config.write_batch_owners.max(1) {
            store.commit(std::mem::take(&mut batch))?;
            in_batch = 0;
            progress(done, owners_total);
        }
    }
    store.commit(batch)?;
    progress(done, owners_total);
    tracing::info!(?report, "history cold tier rebuilt");
    Ok(report)
}
