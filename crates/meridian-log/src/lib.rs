//! The durable, partitioned event log.
//!
//! [`Log`] is shaped like Kafka: named topics split into partitions, records addressed by
//! `(topic, partition, offset)`, a record's partition chosen from its key so one user's
//! events stay ordered, and committed consumer-group offsets. [`embedded::EmbeddedLog`]
//! implements it on local files with group commit; a Kafka implementation can follow
//! behind the same trait.

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod conformance;
pub mod embedded;

#[doc(hidden)]
pub use embedded::fuzzing;

/// Result type of this crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// A topic name: `[a-z0-9_.-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    /// Validates and wraps a topic name.
    pub fn new(name: impl Into<String>) -> Result<TopicName> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.')
            && name != "."
            && name != "..";
        if ok {
            Ok(TopicName(name))
        } else {
            Err(LogError::InvalidTopicName(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = LogError;
    fn try_from(value: String) -> Result<TopicName> {
        TopicName::new(value)
    }
}

impl From<TopicName> for String {
    fn from(t: TopicName) -> String {
        t.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record to append. The partition is chosen from `key` ([`partition_for_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRecord {
    /// Partition key (user or device id).
    pub key: Bytes,
    /// Payload.
    pub value: Bytes,
    /// Record time, milliseconds since the epoch (used by retention and by readers).
    pub timestamp: i64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition it is in.
    pub partition: u32,
    /// Offset within the partition (dense: 0, 1, 2…).
    pub offset: u64,
    /// Record time, milliseconds since the epoch.
    pub timestamp: i64,
    /// Partition key.
    pub key: Bytes,
    /// Payload.
    pub value: Bytes,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
}

/// Description of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Name.
    pub name: TopicName,
    /// Number of partitions.
    pub partitions: u32,
}

/// Offsets of one partition: the first offset still kept (retention moves it) and the
/// next offset to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    /// First offset still readable.
    pub start: u64,
    /// Offset the next appended record will get.
    pub end: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The topic name is not valid.
    #[error("invalid topic name {0:?}: use 1-128 of [a-z0-9_.-]")]
    InvalidTopicName(String),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(TopicName),
    /// The partition does not exist.
    #[error("topic {topic} has {partitions} partitions, there is no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: TopicName,
        /// Requested partition.
        partition: u32,
        /// Partitions the topic has.
        partitions: u32,
    },
    /// Too many appends are waiting for the disk: back off and retry.
    #[error("the log is overloaded ({pending_bytes} bytes waiting to be written); retry after a short pause")]
    Overloaded {
        /// Bytes queued when the append was refused.
        pending_bytes: u64,
    },
    /// A record is larger than the log accepts.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Record size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The consumer group name is not valid.
    #[error("invalid consumer group name {0:?}: use 1-128 of [A-Za-z0-9_.-]")]
    InvalidGroupName(String),
    /// A topic cannot have this many partitions.
    #[error("invalid partition count {0}: use 1-65536")]
    InvalidPartitionCount(u32),
    /// The log is shut down.
    #[error("the log is closed")]
    Closed,
    /// Another process (or another open handle in this process) has the log directory open.
    #[error("log directory {path} is in use by {holder}; stop it or choose another --data-dir")]
    Locked {
        /// The log directory.
        path: String,
        /// Who holds it, e.g. `process 1234 on host x`.
        holder: String,
    },
    /// Data on disk is corrupt in a place recovery may not truncate.
    #[error("corrupt log data in {path}: {reason}")]
    Corrupt {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error.
    #[error("log i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The partition a key goes to among `partitions` (xxh3, stable across versions and
/// platforms: it is part of the on-disk contract).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(partitions.max(1))) as u32
}

/// A durable, partitioned log (see the crate docs).
pub trait Log: Send + Sync + fmt::Debug + 'static {
    /// Creates the topic with `partitions` partitions if it does not exist; returns the
    /// number of partitions it has (an existing topic keeps its count).
    fn ensure_topic(&self, topic: &TopicName, partitions: u32) -> Result<u32>;

    /// All topics.
    fn topics(&self) -> Vec<TopicInfo>;

    /// Number of partitions of `topic`.
    fn partition_count(&self, topic: &TopicName) -> Result<u32>;

    /// Appends records (each to the partition of its key) and resolves once all of them
    /// are durable (fsync'd). Positions are returned in input order. Records appended by
    /// one call to one partition are contiguous and in input order.
    fn append(&self, topic: &TopicName, records: Vec<AppendRecord>) -> BoxFuture<'static, Result<Vec<Position>>>;

    /// Reads up to `max_records` records from `partition` starting at offset `from`
    /// (clamped to the partition's start offset), stopping before the key and value bytes
    /// of the returned records would exceed `max_bytes` (at least one record is returned
    /// if any exists). Reading at or past the end returns nothing. Only durable records
    /// are visible.
    fn read(&self, topic: &TopicName, partition: u32, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>>;

    /// Start and end offsets of a partition.
    fn offsets(&self, topic: &TopicName, partition: u32) -> Result<PartitionOffsets>;

    /// A receiver whose value increases after every durable append to any topic; readers
    /// wait on it instead of polling.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Stores a consumer group's next offset for a partition (durably).
    fn commit_offset(&self, group: &str, topic: &TopicName, partition: u32, next_offset: u64) -> Result<()>;

    /// A consumer group's committed next offset for a partition, if any.
    fn committed_offset(&self, group: &str, topic: &TopicName, partition: u32) -> Result<Option<u64>>;

    /// Deletes whole segments past the retention limits (age, size); never the active one.
    fn enforce_retention(&self) -> Result<RetentionReport>;

    /// Waits for queued appends to be durable and stops accepting new ones.
    fn close(&self) -> Result<()>;
}
