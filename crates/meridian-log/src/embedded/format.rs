//! Record framing inside segment files: encoding, and a decoder that never panics.
//!
//! One record on disk (all integers little-endian):
//!
//! ```text
//! [len u32][crc u32][offset u64][timestamp i64][key_len u32][key][value]
//!           \______ body: `len` bytes, from `offset` to the end of `value` ______/
//! ```
//!
//! * `len` is the body length (`20 + key_len + value_len`), so a record takes
//!   `8 + len` bytes in the file;
//! * `crc` is crc32c over the four `len` bytes followed by the body, so a damaged length
//!   is caught as well as a damaged body;
//! * records follow each other with no padding; a segment file is named after the offset
//!   of its first record and holds dense, increasing offsets.

/// Bytes before the body: `len` and `crc`.
pub(crate) const FRAME_HEADER: usize = 8;
/// Fixed part of the body: offset, timestamp and key length.
pub(crate) const BODY_FIXED: usize = 20;
/// Total fixed overhead of one record.
pub(crate) const RECORD_OVERHEAD: usize = FRAME_HEADER + BODY_FIXED;
/// Largest body the decoder accepts at all (a sanity bound for damaged lengths).
pub(crate) const MAX_BODY: usize = 1 << 30;

/// Size a record takes on disk.
pub(crate) fn encoded_len(key_len: usize, value_len: usize) -> usize {
    RECORD_OVERHEAD + key_len + value_len
}

/// Appends one encoded record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, offset: u64, timestamp: i64, key: &[u8], value: &[u8]) {
    let body_len = BODY_FIXED + key.len() + value.len();
    debug_assert!(body_len <= MAX_BODY);
    out.reserve(FRAME_HEADER + body_len);
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record decoded in place: ranges index the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Offset stored in the record.
    pub(crate) offset: u64,
    /// Timestamp stored in the record.
    pub(crate) timestamp: i64,
    /// Key bytes within the buffer.
    pub(crate) key: std::ops::Range<usize>,
    /// Value bytes within the buffer.
    pub(crate) value: std::ops::Range<usize>,
    /// Bytes the whole record takes.
    pub(crate) size: usize,
}

/// Result of decoding at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A complete, checksummed record.
    Record(Frame),
    /// The buffer ends inside a record; `needed` is its full size when the header was
    /// readable.
    Incomplete {
        /// Full record size, if known.
        needed: Option<usize>,
    },
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes the record at the start of `buf`. Never panics, whatever the bytes.
pub(crate) fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < FRAME_HEADER {
        return Decoded::Incomplete { needed: None };
    }
    let body_len = u32_at(buf, 0) as usize;
    if body_len < BODY_FIXED {
        return Decoded::Invalid("record length below the minimum");
    }
    if body_len > MAX_BODY {
        return Decoded::Invalid("record length above the maximum");
    }
    let size = FRAME_HEADER + body_len;
    if buf.len() < size {
        return Decoded::Incomplete { needed: Some(size) };
    }
    let stored_crc = u32_at(buf, 4);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..4]), &buf[FRAME_HEADER..size]);
    if crc != stored_crc {
        return Decoded::Invalid("checksum mismatch");
    }
    let offset = u64_at(buf, 8);
    let timestamp = u64_at(buf, 16) as i64;
    let key_len = u32_at(buf, 24) as usize;
    if key_len > body_len - BODY_FIXED {
        return Decoded::Invalid("key length exceeds the record");
    }
    let key_start = RECORD_OVERHEAD;
    Decoded::Record(Frame {
        offset,
        timestamp,
        key: key_start..key_start + key_len,
        value: key_start + key_len..size,
        size,
    })
}
