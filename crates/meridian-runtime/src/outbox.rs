//! The outbox: records a processor emits, stored with its round and appended to the log
//! after the commit, exactly once across crashes.
//!
//! A round's emitted records are one value in [`OUTBOX_TABLE`] (key = processor, 0,
//! round sequence), written into the round's batch, so they exist exactly when the round
//! committed. After the commit the runtime appends them (in emission order within each
//! topic, one append per topic: [`group_by_topic`]) and records,
//! per (processor, target topic, partition), the end offset after its last successful
//! append ([`OUTBOX_OFFSETS_TABLE`]); the removal of the appended rounds and the new
//! offsets ride in the next batch. Every record of ours that is in the log but still in
//! the outbox therefore lies at or after the recorded offset of its partition, and recovery
//! (at start and after a failed round) scans only from there to skip ids already present.

use crate::{Result, RuntimeError};
use bytes::Bytes;
use meridian_log::TopicName;
use meridian_state::WriteBatch;
use std::collections::HashMap;

/// Pending emitted records: key = processor, 0, round sequence (u64 BE); value = the
/// round's records ([`encode_round`]).
pub(crate) const OUTBOX_TABLE: &str = "runtime_outbox";

/// Log end offset after the last successful outbox append: key = processor, 0, topic, 0,
/// partition (u32 BE); value = offset (u64 BE).
pub(crate) const OUTBOX_OFFSETS_TABLE: &str = "runtime_outbox_offsets";

/// Version byte in front of an encoded round.
const ROUND_FORMAT: u8 = 1;

/// A record for a log topic, emitted by a processor through
/// [`ProcessContext::emit`](crate::ProcessContext::emit).
///
/// `id` must be deterministic (the same input gives the same id, e.g. derived from the
/// processor, source topic, partition, offset and an index) and unique within the target
/// topic, and the payload must carry it where [`meridian_event::payload_id`] reads it
/// (the binary event's id, or a top-level JSON string field `"id"`): after a crash the
/// runtime recognises records it already appended by that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    /// Topic to append to.
    pub topic: TopicName,
    /// Partition key (the record goes to the partition of this key).
    pub key: Bytes,
    /// Payload; carries `id`.
    pub value: Bytes,
    /// The record's id.
    pub id: String,
}

/// An emitted record as the outbox keeps it: the emit and the time it was emitted (the
/// record's log timestamp, kept so a re-append writes the same record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRecord {
    pub(crate) emit: Emit,
    pub(crate) timestamp_ms: i64,
}

pub(crate) fn outbox_prefix(processor: &str) -> Vec<u8> {
    let mut k = processor.as_bytes().to_vec();
    k.push(0);
    k
}

pub(crate) fn outbox_key(processor: &str, sequence: u64) -> Vec<u8> {
    let mut k = outbox_prefix(processor);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

/// The round sequence of an outbox key, if the key is one of `processor`'s.
pub(crate) fn outbox_sequence(processor: &str, key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(outbox_prefix(processor).as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

pub(crate) fn offsets_key(processor: &str, topic: &TopicName, partition: u32) -> Vec<u8> {
    let mut k = outbox_prefix(processor);
    k.extend_from_slice(topic.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Encodes a round's records: version byte, then per record topic (u16 length), timestamp
/// (i64), id, key and value (u32 lengths), all big-endian.
pub(crate) fn encode_round(records: &[OutboxRecord]) -> Vec<u8> {
    let size: usize = records.iter().map(|r| 22 + r.emit.topic.as_str().len() + r.emit.id.len() + r.emit.key.len() + r.emit.value.len()).sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(ROUND_FORMAT);
    for record in records {
        let emit = &record.emit;
        // Topic names are at most 128 bytes; ids, keys and values are far below 4 GiB (the
        // log refuses records over its limit long before).
        out.extend_from_slice(&(emit.topic.as_str().len() as u16).to_be_bytes());
        out.extend_from_slice(emit.topic.as_str().as_bytes());
        out.extend_from_slice(&record.timestamp_ms.to_be_bytes());
        for field in [emit.id.as_bytes(), &emit.key, &emit.value] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    out
}

/// Decodes [`encode_round`]; keys and values share the buffer (no copies).
pub(crate) fn decode_round(processor: &str, bytes: Vec<u8>) -> Result<Vec<OutboxRecord>> {
    let corrupt = |reason: String| RuntimeError::Corrupt { table: OUTBOX_TABLE, owner: processor.to_owned(), reason };
    let mut reader = Reader { bytes: Bytes::from(bytes), at: 1 };
    match reader.bytes.first() {
        Some(&ROUND_FORMAT) => {}
        Some(other) => return Err(corrupt(format!("unknown outbox format {other}; this build reads format {ROUND_FORMAT}"))),
        None => return Err(corrupt("empty outbox value".into())),
    }
    let mut records = Vec::new();
    while !reader.is_done() {
        let record = reader.record().ok_or_else(|| corrupt(format!("outbox value cut short or invalid at byte {}", reader.at)))?;
        records.push(record);
    }
    Ok(records)
}

/// A cursor over an encoded round.
struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Option<Bytes> {
        if self.bytes.len() - self.at < n {
            return None;
        }
        self.at += n;
        Some(self.bytes.slice(self.at - n..self.at))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?[..].try_into().ok()
    }

    fn field(&mut self) -> Option<Bytes> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn record(&mut self) -> Option<OutboxRecord> {
        let topic_len = u16::from_be_bytes(self.array()?) as usize;
        let topic = TopicName::new(std::str::from_utf8(&self.take(topic_len)?).ok()?).ok()?;
        let timestamp_ms = i64::from_be_bytes(self.array()?);
        let id = std::str::from_utf8(&self.field()?).ok()?.to_owned();
        let key = self.field()?;
        let value = self.field()?;
        Some(OutboxRecord { emit: Emit { topic, key, value, id }, timestamp_ms })
    }
}

/// Appended rounds whose removal (and the new end offsets) is not committed yet: it rides
/// in the processor's next batch.
#[derive(Debug, Default)]
pub(crate) struct OutboxCleanup {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) offsets: HashMap<(TopicName, u32), u64>,
}

impl OutboxCleanup {
    pub(crate) fn write_into(self, processor: &str, batch: &mut WriteBatch) {
        for key in self.keys {
            batch.delete(OUTBOX_TABLE, key);
        }
        for ((topic, partition), offset) in self.offsets {
            batch.put(OUTBOX_OFFSETS_TABLE, offsets_key(processor, &topic, partition), offset.to_be_bytes().to_vec());
        }
    }
}

/// The records of each topic together, topics in the order of their first record, each
/// topic's records in emission order. Interleaved topics (a segment change, a trigger, its
/// notification, the next segment change…) would otherwise cost one append, and one
/// durable write, per change of topic. Readers of a topic see its records in emission
/// order; across topics nothing is ordered anyway (each topic is consumed on its own).
pub(crate) fn group_by_topic(mut records: Vec<OutboxRecord>) -> Vec<OutboxRecord> {
    let mut topics: Vec<TopicName> = Vec::new();
    let mut rank = |topic: &TopicName| match topics.iter().position(|t| t == topic) {
        Some(at) => at,
        None => {
            topics.push(topic.clone());
            topics.len() - 1
        }
    };
    let ranks: Vec<usize> = records.iter().map(|r| rank(&r.emit.topic)).collect();
    if ranks.iter().any(|r| *r > 0) {
        let mut ranked: Vec<(usize, OutboxRecord)> = ranks.into_iter().zip(records).collect();
        // Stable: each topic's records keep their order.
        ranked.sort_by_key(|(rank, _)| *rank);
        records = ranked.into_iter().map(|(_, r)| r).collect();
    }
    records
}

/// Splits records into runs to append with one call each: consecutive records of one topic,
/// at most `max_bytes` of keys and values per run (at least one record), so one append
/// never dwarfs the log's write queue.
pub(crate) fn append_runs(records: &[OutboxRecord], max_bytes: usize) -> Vec<&[OutboxRecord]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        let size = record.emit.key.len() + record.emit.value.len();
        if i > start && (record.emit.topic != records[start].emit.topic || bytes + size > max_bytes) {
            runs.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        runs.push(&records[start..]);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, id: &str, value: &str) -> OutboxRecord {
        OutboxRecord {
            emit: Emit { topic: TopicName::new(topic).unwrap(), key: Bytes::from(format!("k-{id}")), value: Bytes::from(value.to_owned()), id: id.into() },
            timestamp_ms: 1_763_700_000_123,
        }
    }

    #[test]
    fn interleaved_topics_become_one_run_per_topic_each_in_emission_order() {
        let records = vec![
            record("segments", "s1", ""),
            record("triggers", "t1", ""),
            record("notifications", "n1", ""),
            record("segments", "s2", ""),
            record("triggers", "t2", ""),
            record("notifications", "n2", ""),
            record("segments", "s3", ""),
        ];
        assert_eq!(append_runs(&records, usize::MAX).len(), 7, "without grouping, one run per change of topic");
        let grouped = group_by_topic(records);
        let ids: Vec<&str> = grouped.iter().map(|r| r.emit.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2", "s3", "t1", "t2", "n1", "n2"]);
        let runs = append_runs(&grouped, usize::MAX);
        assert_eq!(runs.iter().map(|r| r.len()).collect::<Vec<_>>(), [3, 2, 2]);
        let one_topic = vec![record("a", "1", ""), record("a", "2", "")];
        assert_eq!(group_by_topic(one_topic.clone()), one_topic);
    }

    #[test]
    fn a_round_decodes_to_what_was_encoded() {
        let records = vec![record("out", "a", r#"{"id":"a"}"#), record("other.topic", "b", ""), record("out", "", "\u{0}\u{1}")];
        assert_eq!(decode_round("p", encode_round(&records)).unwrap(), records);
        assert_eq!(decode_round("p", encode_round(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn a_damaged_round_is_an_error_not_a_panic() {
        let bytes = encode_round(&[record("out", "a", r#"{"id":"a"}"#)]);
        for cut in 0..bytes.len() - 1 {
            let err = decode_round("p", bytes[..=cut].to_vec()).map(|r| r.len());
            assert!(cut == 0 || err.is_err(), "cut at {cut}: {err:?}");
        }
        let mut other = bytes;
        other[0] = 9;
        assert!(decode_round("p", other).unwrap_err().to_string().contains("unknown outbox format 9"));
        assert!(decode_round("p", Vec::new()).is_err());
    }

    #[test]
    fn runs_keep_order_split_by_topic_and_size() {
        let records = vec![record("a", "1", "xx"), record("a", "2", "xx"), record("b", "3", "xx"), record("a", "4", "xx")];
        fn ids(runs: Vec<&[OutboxRecord]>) -> Vec<Vec<&str>> {
            runs.iter().map(|r| r.iter().map(|x| x.emit.id.as_str()).collect()).collect()
        }
        assert_eq!(ids(append_runs(&records, 1 << 20)), vec![vec!["1", "2"], vec!["3"], vec!["4"]]);
        // Each record is 5 bytes (key "k-1" + "xx"): two fit in 10, not in 9.
        assert_eq!(ids(append_runs(&records[..2], 10)), vec![vec!["1", "2"]]);
        assert_eq!(ids(append_runs(&records[..2], 9)), vec![vec!["1"], vec!["2"]]);
        assert_eq!(ids(append_runs(&records[..1], 1)), vec![vec!["1"]], "a record larger than the limit still goes alone");
        assert!(append_runs(&[], 10).is_empty());
    }

    #[test]
    fn outbox_keys_sort_by_sequence_and_belong_to_their_processor() {
        assert!(outbox_key("p", 2) < outbox_key("p", 10));
        assert_eq!(outbox_sequence("p", &outbox_key("p", 77)), Some(77));
        assert_eq!(outbox_sequence("q", &outbox_key("p", 77)), None);
    }
}
