//! Operating the server: processors, the pipeline, topics.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Position and lag of a processor on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset the processor will read (committed).
    pub position: u64,
    /// Next offset the log will write.
    pub end: u64,
    /// Records not yet processed.
    pub lag: u64,
}

/// What a processor is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessorStatus {
    /// Name.
    pub name: String,
    /// Per-partition positions (empty until its first round after a start, rebuild or seek).
    pub partitions: Vec<PartitionStatus>,
    /// Records processed since start.
    pub records_processed: u64,
    /// Records per second over the last round that had records.
    pub records_per_second: f64,
    /// Total lag.
    pub lag: u64,
    /// Last error, if the latest round failed.
    pub last_error: Option<String>,
}

/// `GET /v1/admin/processors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessorList {
    /// Every processor, by name.
    pub processors: Vec<ProcessorStatus>,
}

/// `POST /v1/admin/processors/{name}/seek`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekRequest {
    /// Topic whose positions move.
    pub topic: String,
    /// Partition (a decimal string: JSON keys are strings) → next offset to process.
    pub offsets: BTreeMap<String, u64>,
}

/// What a processor command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessorAction {
    /// The processor.
    pub processor: String,
    /// `rebuilding` or `moved`.
    pub status: String,
    /// The topic whose positions moved (seek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The pipeline in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineStatus {
    /// The pipeline file, if one is configured.
    pub file: Option<String>,
    /// Revision (hash of the file's contents).
    pub revision: u64,
    /// Topics its routes write to.
    pub topics: Vec<String>,
    /// When it was loaded, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_ms: Option<i64>,
    /// Why the latest reload was refused (the previous pipeline stays in force).
    pub last_error: Option<String>,
}

/// Offsets of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartitionOffsets {
    /// Partition.
    pub partition: u32,
    /// First offset still kept.
    pub start: u64,
    /// Next offset to be written.
    pub end: u64,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicOffsets {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: Vec<PartitionOffsets>,
}

/// `GET /v1/admin/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    /// Every topic.
    pub topics: Vec<TopicOffsets>,
}
