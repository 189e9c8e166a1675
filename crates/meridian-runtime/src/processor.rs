//! The processor trait and the context it writes through.

use crate::erasure::{receipt_key, RECEIPTS_TABLE};
use crate::outbox::{Emit, OutboxRecord};
use crate::{Result, RuntimeError};
use meridian_log::{Record, TopicName};
use meridian_state::{KvStore, WriteBatch};
use std::collections::HashSet;

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
/// batch and committed together with the processor's new positions; so are emitted
/// records and erasure receipts.
#[derive(Debug)]
pub struct ProcessContext<'a> {
    pub(crate) processor: &'a str,
    pub(crate) store: &'a dyn KvStore,
    pub(crate) batch: &'a mut WriteBatch,
    pub(crate) output: &'a mut RoundOutput,
}

/// What a round produced besides its batch writes.
#[derive(Debug, Default)]
pub(crate) struct RoundOutput {
    /// Emitted records, in emission order.
    pub(crate) records: Vec<OutboxRecord>,
    /// Receipt keys written in this round (the first receipt of a round wins, as across rounds).
    pub(crate) receipts: HashSet<Vec<u8>>,
}

impl<'a> ProcessContext<'a> {
    /// The committed state (not including this batch's own writes: processors keep
    /// what they changed in this batch themselves).
    pub fn store(&self) -> &dyn KvStore {
        self.store
    }

    /// The processor's committed position on a partition (the next offset it reads), as
    /// of the start of this round; `None` before its first commit there.
    pub fn committed_position(&self, topic: &TopicName, partition: u32) -> Result<Option<u64>> {
        let key = crate::runtime::position_key(self.processor, topic, partition);
        Ok(self.store.get(crate::runtime::POSITIONS_TABLE, &key)?.and_then(|v| v.try_into().ok()).map(u64::from_be_bytes))
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

    /// Emits a record for a log topic. It is stored in the outbox with this round's batch
    /// and appended to the log after the batch commits, in emission order within its
    /// topic, exactly once across crashes: if the round fails or the process dies before
    /// the commit, it was never emitted (the retried round emits it again). The record's
    /// time in the log is the time of this call.
    ///
    /// Refuses (and so fails the round) a record whose payload does not carry `id` where
    /// [`meridian_event::payload_id`] reads it, or whose id is empty: recovery could not
    /// recognise it in the log. See [`Emit`] for what the id must be.
    pub fn emit(&mut self, emit: Emit) -> Result<()> {
        let invalid = |reason: String| RuntimeError::InvalidEmit { processor: self.processor.to_owned(), id: emit.id.clone(), reason };
        if emit.id.is_empty() {
            return Err(invalid("the id is empty; derive one from the input (e.g. processor, topic, partition, offset, index)".into()));
        }
        match meridian_event::payload_id(&emit.value) {
            Some(found) if found == emit.id => {}
            Some(found) => {
                return Err(invalid(format!("the payload carries id {found:?}; put the emitted id in the payload")));
            }
            None => {
                return Err(invalid(
                    "the payload carries no id; emit a binary event or a JSON object with a top-level string \"id\"".into(),
                ));
            }
        }
        let timestamp_ms = meridian_event::Timestamp::now().millis();
        self.output.records.push(OutboxRecord { emit, timestamp_ms });
        Ok(())
    }

    /// Reports what this processor removed while handling the user-erasure request
    /// `erasure_id`. The receipt is written with this round's batch, so it exists exactly
    /// when the removal was committed; [`Runtime::erasure_receipts`](crate::Runtime::erasure_receipts)
    /// reads it back. The first committed receipt of a processor for an erasure is kept:
    /// a replay (seek, rebuild) that handles the erasure record again does not overwrite
    /// what the erasure removed when it happened. Rebuilds do not delete receipts.
    pub fn erasure_receipt(&mut self, erasure_id: &str, removed: serde_json::Value) -> Result<()> {
        let key = receipt_key(erasure_id, self.processor);
        if self.output.receipts.contains(&key) || self.store.get(RECEIPTS_TABLE, &key)?.is_some() {
            return Ok(());
        }
        // Serialising a `Value` cannot fail.
        let value = serde_json::to_vec(&removed).unwrap_or_default();
        self.batch.put(RECEIPTS_TABLE, key.clone(), value);
        self.output.receipts.insert(key);
        Ok(())
    }
}

/// Schedules a timer of `processor` from outside its rounds (e.g. a service asking the
/// processor to start a job): commits the timer to the processor's store at once. It
/// fires like one scheduled with [`ProcessContext::schedule_timer`].
pub fn schedule_timer(store: &dyn KvStore, processor: &str, due_ms: i64, key: &[u8]) -> Result<()> {
    let mut batch = WriteBatch::new();
    batch.put(TIMERS_TABLE, timer_key(processor, due_ms, key), Vec::new());
    store.commit(batch)?;
    Ok(())
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
/// (state, timers, emitted records, erasure receipts) is committed atomically with the
/// positions after the records. If a round fails or the process dies, its caches are
/// forgotten (`reset_cache`) and the records after the last committed positions are
/// handed over again. Emitted records reach their topic after the commit, exactly once.
///
/// A round: `process` once per partition that has new records, then `end_of_round` (if
/// any record was processed), then the due timers (`on_timer`), then one commit.
pub trait Processor: Send + 'static {
    /// Unique name; also the key of its positions.
    fn name(&self) -> &str;

    /// Topics it consumes.
    fn topics(&self) -> Vec<TopicName>;

    /// Handles records of one partition of one topic.
    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> Result<()>;

    /// Called once per round, after every partition's `process` call and before the
    /// commit; what it writes and emits joins the round's batch, and an error fails the
    /// whole round. Only called when the round processed at least one record (rounds that
    /// only fire timers, and idle rounds, do not call it). For work done once per round
    /// rather than once per partition, e.g. one write of a hot tier for all partitions.
    fn end_of_round(&mut self, _ctx: &mut ProcessContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Shortest time between the starts of two rounds that process records: records that
    /// arrive meanwhile wait and are processed together in the next round. For processors
    /// whose round costs in proportion to the state it touches rather than to its records
    /// (the alert engine commits every rule the round's events reached), so a stream of
    /// small appends is not committed hundreds of times a second. Zero (the default): a
    /// round starts as soon as records arrive. It delays records and due timers by at most
    /// this much.
    fn min_round_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Handles a due timer.
    fn on_timer(&mut self, _ctx: &mut ProcessContext<'_>, _timer: &Timer) -> Result<()> {
        Ok(())
    }

    /// Called after a round's batch has committed (not after idle rounds). For state kept
    /// outside the runtime's store (e.g. Redis): write there what the committed round
    /// recorded as to be written, so that a crash between the commit and this call leaves
    /// the intent in the store for the processor to finish. An error fails the round (the
    /// committed batch stays committed; the processor must retry what is left).
    fn after_commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Forgets in-memory caches so the next batch reads from the committed store; called
    /// after a failed commit.
    fn reset_cache(&mut self) {}

    /// Adds to `batch` the deletion of all of this processor's state (for a rebuild). The
    /// runtime's own records of the processor are not the processor's state: positions and
    /// timers are cleared by the runtime, erasure receipts and the outbox are kept.
    fn clear_state(&mut self, batch: &mut WriteBatch);
}
