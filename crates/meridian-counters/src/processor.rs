//! The counters processor: one count per (app, action, UTC day) of the events topic.

use meridian_event::LogEntry;
use meridian_log::{Record, TopicName};
use meridian_runtime::{ProcessContext, Processor, Result};
use meridian_state::WriteBatch;
use std::collections::HashMap;

/// The processor's name (and the key of its positions).
pub const PROCESSOR_NAME: &str = "counters";

/// Table of counts: key = app, 0, action, 0, day (i64 BE, UTC days since epoch); value = u64 BE.
pub const COUNTERS_TABLE: &str = "counters";

/// Counts events per app, action and day.
#[derive(Debug)]
pub struct CountersProcessor {
    topic: TopicName,
    cache: HashMap<Vec<u8>, u64>,
    undecodable: u64,
}

impl CountersProcessor {
    /// Counts the events of `topic`.
    pub fn new(topic: TopicName) -> CountersProcessor {
        CountersProcessor { topic, cache: HashMap::new(), undecodable: 0 }
    }
}

fn counter_key(app: &str, action: &str, day: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(app.len() + action.len() + 10);
    k.extend_from_slice(app.as_bytes());
    k.push(0);
    k.extend_from_slice(action.as_bytes());
    k.push(0);
    k.extend_from_slice(&day.to_be_bytes());
    k
}

impl Processor for CountersProcessor {
    fn name(&self) -> &str {
        PROCESSOR_NAME
    }

    fn topics(&self) -> Vec<TopicName> {
        vec![self.topic.clone()]
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> Result<()> {
        let mut touched: HashMap<Vec<u8>, u64> = HashMap::new();
        for record in records {
            let event = match LogEntry::decode(&record.value) {
                Ok(LogEntry::Event(event)) => event,
                // Counts are per app, action and day: an erasure has nothing to remove.
                Ok(LogEntry::Erasure(_)) => continue,
                Err(e) => {
                    self.undecodable += 1;
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "skipping undecodable record");
                    metrics::counter!("meridian_counters_undecodable_total").increment(1);
                    continue;
                }
            };
            let key = counter_key(event.app.as_str(), event.action.as_str(), event.time.day());
            let current = match touched.get(&key).or_else(|| self.cache.get(&key)) {
                Some(v) => *v,
                None => ctx.store().get(COUNTERS_TABLE, &key)?.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0),
            };
            touched.insert(key, current + 1);
        }
        for (key, value) in touched {
            ctx.batch().put(COUNTERS_TABLE, key.clone(), value.to_be_bytes().to_vec());
            self.cache.insert(key, value);
        }
        Ok(())
    }

    fn reset_cache(&mut self) {
        self.cache.clear();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        batch.delete_prefix(COUNTERS_TABLE, Vec::new());
    }
}

