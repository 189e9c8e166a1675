//! Segment files: recovery scan, the in-memory sparse index, and positional reads.

use super::format::{self, Decoded, RECORD_OVERHEAD};
use crate::{LogError, Record, Result};
use bytes::Bytes;
use parking_lot::RwLock;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// A sparse index entry is added when a record starts at least this many bytes after the
/// previous entry (the first record of a segment is always indexed).
pub(crate) const INDEX_INTERVAL: u64 = 4096;
/// Read size of the recovery scan.
const SCAN_CHUNK: usize = 1 << 20;

/// File name of the segment whose first offset is `base`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Parses a segment file name back into its base offset.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Fsyncs a directory so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One segment file of a partition, as readers see it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of its first record.
    pub(crate) base_offset: u64,
    /// Path of the file.
    pub(crate) path: PathBuf,
    /// Read-only handle for positional reads.
    file: File,
    /// Bytes of the file known durable (readers never look past it).
    durable_len: AtomicU64,
    /// Newest record timestamp of the durable records (`i64::MIN` when empty).
    max_timestamp: AtomicI64,
    /// Sparse index: `(offset, file position)`, increasing.
    index: RwLock<Vec<(u64, u64)>>,
}

impl Segment {
    /// Creates an empty segment file (and makes its directory entry durable).
    pub(crate) fn create(dir: &Path, base_offset: u64) -> Result<Arc<Segment>> {
        let path = dir.join(segment_file_name(base_offset));
        let created = OpenOptions::new().write(true).create_new(true).open(&path)?;
        created.sync_all()?;
        drop(created);
        sync_dir(dir)?;
        let file = File::open(&path)?;
        Ok(Arc::new(Segment {
            base_offset,
            path,
            file,
            durable_len: AtomicU64::new(0),
            max_timestamp: AtomicI64::new(i64::MIN),
            index: RwLock::new(Vec::new()),
        }))
    }

    /// Opens a write handle on the file (for the writer thread).
    pub(crate) fn open_for_write(&self) -> std::io::Result<File> {
        OpenOptions::new().write(true).open(&self.path)
    }

    /// Durable length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.durable_len.load(Ordering::Acquire)
    }

    /// Newest durable record timestamp (`i64::MIN` when empty).
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// File position of the last index entry, if any.
    pub(crate) fn last_index_position(&self) -> Option<u64> {
        self.index.read().last().map(|e| e.1)
    }

    /// Publishes records made durable by the writer: new length, index entries, newest
    /// timestamp.
    pub(crate) fn publish(&self, durable_len: u64, new_index: &[(u64, u64)], max_timestamp: i64) {
        if !new_index.is_empty() {
            self.index.write().extend_from_slice(new_index);
        }
        self.max_timestamp.fetch_max(max_timestamp, Ordering::AcqRel);
        self.durable_len.store(durable_len, Ordering::Release);
    }

    /// Position to start reading at to find `offset`.
    fn seek_position(&self, offset: u64) -> u64 {
        let index = self.index.read();
        let k = index.partition_point(|e| e.0 <= offset);
        if k == 0 {
            0
        } else {
            index[k - 1].1
        }
    }

    /// Appends records of this segment with offsets in `from..end` to `out`, respecting
    /// the limits. Returns `true` when a limit or `end` was reached (the caller should
    /// stop), `false` when the segment was exhausted.
    pub(crate) fn read_into(&self, partition: u32, from: u64, end: u64, limits: &mut ReadLimits, out: &mut Vec<Record>) -> Result<bool> {
        let durable_len = self.len();
        let mut pos = self.seek_position(from);
        let mut want = limits.chunk_hint();
        while pos < durable_len {
            let len = want.min(durable_len - pos) as usize;
            let mut buf = vec![0; len];
            self.file.read_exact_at(&mut buf, pos)?;
            let buf = Bytes::from(buf);
            let mut i = 0;
            want = limits.chunk_hint();
            loop {
                match format::decode(&buf[i..]) {
                    Decoded::Record(frame) => {
                        if frame.offset >= end {
                            return Ok(true);
                        }
                        if frame.offset >= from {
                            let payload = frame.key.len() + frame.value.len();
                            if !out.is_empty() && limits.bytes + payload > limits.max_bytes {
                                return Ok(true);
                            }
                            limits.bytes += payload;
                            out.push(Record {
                                partition,
                                offset: frame.offset,
                                timestamp: frame.timestamp,
                                key: buf.slice(i + frame.key.start..i + frame.key.end),
                                value: buf.slice(i + frame.value.start..i + frame.value.end),
                            });
                            if out.len() >= limits.max_records {
                                return Ok(true);
                            }
                        }
                        i += frame.size;
                    }
                    Decoded::Incomplete { needed } => {
                        if let Some(needed) = needed {
                            want = want.max(needed as u64);
                        }
                        break;
                    }
                    Decoded::Invalid(reason) => {
                        return Err(LogError::Corrupt {
                            path: self.path.display().to_string(),
                            reason: format!("{reason} at byte {}", pos + i as u64),
                        });
                    }
                }
            }
            if i == 0 && pos + buf.len() as u64 >= durable_len {
                return Err(LogError::Corrupt {
                    path: self.path.display().to_string(),
                    reason: format!("partial record at byte {pos} inside the durable part"),
                });
            }
            pos += i as u64;
        }
        Ok(false)
    }
}

/// Limits and progress of one read call.
#[derive(Debug)]
pub(crate) struct ReadLimits {
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    /// Payload bytes (key + value) returned so far.
    pub(crate) bytes: usize,
}

impl ReadLimits {
    /// Bytes to read at a time: enough for the request without reading far ahead.
    fn chunk_hint(&self) -> u64 {
        let est = self.max_bytes.min(self.max_records.saturating_mul(RECORD_OVERHEAD + 512));
        (est as u64).saturating_add(INDEX_INTERVAL).clamp(16 << 10, 4 << 20)
    }
}

/// How a scan of a segment file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// A partial or damaged record starts at `valid_len` (what a crash mid-write leaves).
    Torn(&'static str),
    /// A checksummed record does not belong here (wrong offset): not a torn write.
    Inconsistent(String),
}

/// Result of scanning a segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes of valid records from the start.
    pub(crate) valid_len: u64,
    /// Length of the file.
    pub(crate) file_len: u64,
    /// Offset after the last valid record.
    pub(crate) next_offset: u64,
    /// Newest timestamp of the valid records.
    pub(crate) max_timestamp: i64,
    /// Sparse index of the valid records.
    pub(crate) index: Vec<(u64, u64)>,
    /// How the scan ended.
    pub(crate) end: ScanEnd,
}

/// Bytes a scan can read at any position: a file, or a buffer (for fuzzing).
pub(crate) trait ScanSource {
    /// Total length.
    fn source_len(&self) -> std::io::Result<u64>;
    /// Fills `buf` from position `at`.
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()>;
}

impl ScanSource for File {
    fn source_len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        self.read_exact_at(buf, at)
    }
}

impl ScanSource for [u8] {
    fn source_len(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let start = usize::try_from(at).ok().filter(|s| *s <= self.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let bytes = self.get(start..start + buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Reads a whole segment file, checking every record's checksum and that offsets run
/// densely from `base_offset`.
pub(crate) fn scan(path: &Path, base_offset: u64) -> Result<Scan> {
    scan_source(&File::open(path)?, base_offset, SCAN_CHUNK)
}

/// [`scan`] over any source, reading at least `chunk` bytes at a time.
pub(crate) fn scan_source<S: ScanSource + ?Sized>(source: &S, base_offset: u64, chunk: usize) -> Result<Scan> {
    let file_len = source.source_len()?;
    let mut scan = Scan {
        valid_len: 0,
        file_len,
        next_offset: base_offset,
        max_timestamp: i64::MIN,
        index: Vec::new(),
        end: ScanEnd::Clean,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = 0u64;
    let mut i = 0usize;
    let mut last_index: Option<u64> = None;
    loop {
        match format::decode(&buf[i..]) {
            Decoded::Record(frame) => {
                let pos = buf_pos + i as u64;
                if frame.offset != scan.next_offset {
                    scan.end = ScanEnd::Inconsistent(format!(
                        "record at byte {pos} has offset {}, expected {}",
                        frame.offset, scan.next_offset
                    ));
                    return Ok(scan);
                }
                if last_index.is_none_or(|l| pos - l >= INDEX_INTERVAL) {
                    scan.index.push((frame.offset, pos));
                    last_index = Some(pos);
                }
                scan.max_timestamp = scan.max_timestamp.max(frame.timestamp);
                scan.next_offset += 1;
                i += frame.size;
                scan.valid_len = buf_pos + i as u64;
            }
            Decoded::Incomplete { needed } => {
                let file_pos = buf_pos + i as u64;
                let have = (buf.len() - i) as u64;
                let remaining = file_len - file_pos;
                if have >= remaining {
                    if remaining > 0 {
                        scan.end = ScanEnd::Torn("partial record");
                    }
                    return Ok(scan);
                }
                // At least one byte more than buffered, so the scan always progresses.
                let want = (chunk as u64).max(needed.unwrap_or(0) as u64).max(have + 1).min(remaining) as usize;
                buf.drain(..i);
                buf_pos = file_pos;
                i = 0;
                let old = buf.len();
                buf.resize(want, 0);
                source.read_at(&mut buf[old..], file_pos + old as u64)?;
            }
            Decoded::Invalid(reason) => {
                scan.end = ScanEnd::Torn(reason);
                return Ok(scan);
            }
        }
    }
}

/// Opens a recovered segment for reading with the results of its scan.
pub(crate) fn open_scanned(path: PathBuf, base_offset: u64, scan: &Scan) -> Result<Arc<Segment>> {
    let file = File::open(&path)?;
    Ok(Arc::new(Segment {
        base_offset,
        path,
        file,
        durable_len: AtomicU64::new(scan.valid_len),
        max_timestamp: AtomicI64::new(scan.max_timestamp),
        index: RwLock::new(scan.index.clone()),
    }))
}
