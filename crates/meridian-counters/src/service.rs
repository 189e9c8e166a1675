//! Queries of the counters: the committed counts of an app.

use crate::processor::COUNTERS_TABLE;
use crate::Result;
use meridian_event::{AppId, Timestamp};
use meridian_state::KvStore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads what the counters processor committed.
#[derive(Debug, Clone)]
pub struct CountersService {
    store: Arc<dyn KvStore>,
}

impl CountersService {
    /// A service over the processor's state store.
    pub fn new(store: Arc<dyn KvStore>) -> CountersService {
        CountersService { store }
    }

    /// The committed counts of `app` (blocking: reads the store).
    pub fn app_counters(&self, app: &AppId) -> Result<AppCounters> {
        app_counters(&*self.store, app)
    }
}

/// Committed counts of one app.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AppCounters {
    /// All events.
    pub total: u64,
    /// Events per action.
    pub by_action: BTreeMap<String, u64>,
    /// Events per UTC day (`YYYY-MM-DD`).
    pub by_day: BTreeMap<String, u64>,
}

/// Reads the committed counts of `app`.
fn app_counters(store: &dyn KvStore, app: &AppId) -> Result<AppCounters> {
    let mut prefix = app.as_str().as_bytes().to_vec();
    prefix.push(0);
    let mut out = AppCounters::default();
    for (key, value) in store.scan_prefix(COUNTERS_TABLE, &prefix, usize::MAX)? {
        let rest = &key[prefix.len()..];
        let Some(split) = rest.iter().position(|b| *b == 0) else { continue };
        let action = String::from_utf8_lossy(&rest[..split]).into_owned();
        let day_bytes: [u8; 8] = match rest[split + 1..].try_into() {
            Ok(b) => b,
            Err(_) => continue,
        };
        let day = i64::from_be_bytes(day_bytes);
        let count = value.try_into().map(u64::from_be_bytes).unwrap_or(0);
        out.total += count;
        *out.by_action.entry(action).or_default() += count;
        let date = Timestamp(day * 86_400_000).to_rfc3339();
        *out.by_day.entry(date[..10].to_owned()).or_default() += count;
    }
    Ok(out)
}
