//! The embedded log's metrics: names, descriptions and the helpers that record them.

/// Counter of records made durable, labelled `topic`.
pub const APPENDED_RECORDS: &str = "meridian_log_appended_records_total";
/// Counter of encoded bytes made durable, labelled `topic`.
pub const APPENDED_BYTES: &str = "meridian_log_appended_bytes_total";
/// Histogram of records per group commit.
pub const GROUP_COMMIT_RECORDS: &str = "meridian_log_group_commit_records";
/// Histogram of the time one fsync (fdatasync) of a segment file takes, in seconds.
pub const FSYNC_SECONDS: &str = "meridian_log_fsync_seconds";

/// Registers descriptions of the log's metrics with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(APPENDED_RECORDS, "records appended durably to the embedded log");
    metrics::describe_counter!(APPENDED_BYTES, metrics::Unit::Bytes, "encoded bytes appended durably to the embedded log");
    metrics::describe_histogram!(GROUP_COMMIT_RECORDS, "records made durable by one group commit");
    metrics::describe_histogram!(FSYNC_SECONDS, metrics::Unit::Seconds, "time of one fdatasync of a segment file");
}

pub(crate) fn appended(topic: &str, records: u64, bytes: u64) {
    metrics::counter!(APPENDED_RECORDS, "topic" => topic.to_owned()).increment(records);
    metrics::counter!(APPENDED_BYTES, "topic" => topic.to_owned()).increment(bytes);
}

pub(crate) fn group_commit(records: u64) {
    metrics::histogram!(GROUP_COMMIT_RECORDS).record(records as f64);
}

pub(crate) fn fsync(seconds: f64) {
    metrics::histogram!(FSYNC_SECONDS).record(seconds);
}
