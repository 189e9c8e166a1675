//! Entry points for the fuzz targets in `fuzz/`: the record decoder and the recovery scan
//! of a segment, over bytes in memory. Not part of the API (hidden from the docs; it may
//! change at any time): the types mirror the private ones of `format` and `segment`.

use super::format;
use super::segment;
use crate::Result;
use std::ops::Range;

/// Fixed bytes of one record: length, checksum, offset, timestamp, key length.
pub const RECORD_OVERHEAD: usize = format::RECORD_OVERHEAD;

/// The scan adds a sparse index entry when a record starts this many bytes after the last.
pub const INDEX_INTERVAL: u64 = segment::INDEX_INTERVAL;

/// Appends one encoded record to `out`, as the writer does.
pub fn encode_record(out: &mut Vec<u8>, offset: u64, timestamp: i64, key: &[u8], value: &[u8]) {
    format::encode(out, offset, timestamp, key, value);
}

/// What [`decode_record`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedRecord {
    /// A complete record whose checksum matched.
    Record {
        /// Offset stored in the record.
        offset: u64,
        /// Timestamp stored in the record.
        timestamp: i64,
        /// Key bytes within the buffer.
        key: Range<usize>,
        /// Value bytes within the buffer.
        value: Range<usize>,
        /// Bytes the record takes.
        size: usize,
    },
    /// The buffer ends inside a record (`needed` is its size when the header was readable).
    Incomplete {
        /// Full record size, if known.
        needed: Option<usize>,
    },
    /// Not a valid record.
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf` (the decoder readers and recovery use).
pub fn decode_record(buf: &[u8]) -> DecodedRecord {
    match format::decode(buf) {
        format::Decoded::Record(f) => DecodedRecord::Record { offset: f.offset, timestamp: f.timestamp, key: f.key, value: f.value, size: f.size },
        format::Decoded::Incomplete { needed } => DecodedRecord::Incomplete { needed },
        format::Decoded::Invalid(reason) => DecodedRecord::Invalid(reason),
    }
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// A partial or damaged record starts at `valid_len`.
    Torn(&'static str),
    /// A valid record has the wrong offset.
    Inconsistent(String),
}

/// The result of [`scan_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Bytes of valid records from the start.
    pub valid_len: u64,
    /// Offset after the last valid record.
    pub next_offset: u64,
    /// Newest timestamp of the valid records (`i64::MIN` when none).
    pub max_timestamp: i64,
    /// Sparse index `(offset, position)` of the valid records.
    pub index: Vec<(u64, u64)>,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Runs the recovery scan of a segment whose first offset is `base_offset` over `bytes`,
/// reading `chunk` bytes at a time (recovery reads 1 MiB).
pub fn scan_segment(bytes: &[u8], base_offset: u64, chunk: usize) -> Result<ScanOutcome> {
    let scan = segment::scan_source(bytes, base_offset, chunk)?;
    Ok(ScanOutcome {
        valid_len: scan.valid_len,
        next_offset: scan.next_offset,
        max_timestamp: scan.max_timestamp,
        index: scan.index,
        end: match scan.end {
            segment::ScanEnd::Clean => ScanEnd::Clean,
            segment::ScanEnd::Torn(reason) => ScanEnd::Torn(reason),
            segment::ScanEnd::Inconsistent(reason) => ScanEnd::Inconsistent(reason),
        },
    })
}
