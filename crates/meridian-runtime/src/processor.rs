//! The processor trait and the context it writes through.

use crate::Result;
use meridian_log::{Record, TopicName};
use meridian_state::{KvStore, WriteBatch};

/// Table holding timers: key = processor name, 0, due time (big-endian ms), 0, timer key.
pub(crate) const TIMERS_TABLE: &str = "runtime_timers";

/// A processing-time timer that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it was due, milliseconds since the epoch.
    pub due_ms: i64,
    /// The key the processor scheduled it with.
    pub key: Vec<u8>,
}

/// What a processor reads and writes while handling a batch. Writes are buffered in the
/// batch and committed together with the processor's new positions.
#[derive(Debug)]
pub struct ProcessContext<'a> {
    pub(crate) processor: &'a str,
    pub(crate) store: &'a dyn KvStore,
    pub(crate) batch: &'a mut WriteBatch,
}

impl<'a> ProcessContext<'a> {
    /// The committed state (not including this batch's own writes: processors keep
    /// what they changed in this batch themselves).
    pub fn store(&self) -> &dyn KvStore {
        self.store
    }

    /// The batch this processor's writes go into.
    pub fn batch(&mut self) -> &mut WriteBatch {
        self.batch
    }

    /// Schedules a processing-time timer; it fires once at or after `due_ms`, in a batch
    /// of its own that also removes it (so it fires exactly once across crashes).
    pub fn schedule_timer(&mut self, due_ms: i64, key: &[u8]) {
        self.batch.put(TIMERS_TABLE, timer_key(self.processor, due_ms, key), Vec::new());
    }
}

pub(crate) fn timer_prefix(processor: &str) -> Vec<u8> {
    let mut k = processor.as_bytes().to_vec();
    k.push(0);
    k
}

pub(crate) fn timer_key(processor: &str, due_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut k = timer_prefix(processor);
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// A consumer of log topics with its own state.
///
/// The runtime guarantees: `process` sees every record of its topics once per committed
/// run, in offset order within a partition; everything written to the context's batch
/// is committed atomically with the positions after the records. If a commit fails or
/// the process dies, the in-memory processor is discarded (`reset_cache`) and the
/// records after the last committed positions are handed over again.
pub trait Processor: Send + 'static {
    /// Unique name; also the key of its positions.
    fn name(&self) -> &str;

    /// Topics it consumes.
    fn topics(&self) -> Vec<TopicName>;

    /// Handles records of one partition of one topic.
    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> Result<()>;

    /// Handles a due timer.
    fn on_timer(&mut self, _ctx: &mut ProcessContext<'_>, _timer: &Timer) -> Result<()> {
        Ok(())
    }

    /// Forgets in-memory caches so the next batch reads from the committed store; called
    /// after a failed commit.
    fn reset_cache(&mut self) {}

    /// Adds to `batch` the deletion of all of this processor's state (for a rebuild).
    fn clear_state(&mut self, batch: &mut WriteBatch);
}
