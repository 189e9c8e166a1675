//! Fuzz target: the embedded log's record decoder and recovery scan of a segment on
//! arbitrary bytes (`meridian_log::fuzzing`). Never panics; never accepts a record whose
//! checksum does not match (checked here independently with crc32c); the scan's valid
//! prefix is exactly a run of checksummed records with dense offsets, and its result does
//! not depend on how much it reads at a time.
//!
//! Input: one byte choosing the scan's read size (0 = recovery's 1 MiB), then the segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_log::fuzzing::{decode_record, encode_record, scan_segment, DecodedRecord, ScanEnd, INDEX_INTERVAL, RECORD_OVERHEAD};

/// Independent check of a record frame: `[len u32][crc u32][body of len bytes]`, crc32c
/// over the length bytes and the body.
fn checksum_matches(frame: &[u8]) -> bool {
    let stored = u32::from_le_bytes(frame[4..8].try_into().unwrap());
    crc32c::crc32c_append(crc32c::crc32c(&frame[..4]), &frame[8..]) == stored
}

/// Checks one decode at the start of `buf`; returns the record size when it is a record.
fn check_decode(buf: &[u8]) -> Option<(u64, i64, usize)> {
    match decode_record(buf) {
        DecodedRecord::Record { offset, timestamp, key, value, size } => {
            assert!(size >= RECORD_OVERHEAD && size <= buf.len(), "record size {size} of a {}-byte buffer", buf.len());
            let frame = &buf[..size];
            assert_eq!(u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize + 8, size, "size is not the framed length");
            assert!(checksum_matches(frame), "a record whose checksum does not match was accepted");
            assert!(key.start == RECORD_OVERHEAD && key.end == value.start && value.end == size, "key {key:?} value {value:?} size {size}");
            let mut again = Vec::new();
            encode_record(&mut again, offset, timestamp, &frame[key], &frame[value]);
            assert_eq!(again, frame, "re-encoding a decoded record gives other bytes");
            Some((offset, timestamp, size))
        }
        DecodedRecord::Incomplete { needed } => {
            match needed {
                Some(n) => assert!(n > buf.len(), "incomplete but {n} bytes needed of {}", buf.len()),
                None => assert!(buf.len() < 8, "incomplete without a size on {} bytes", buf.len()),
            }
            None
        }
        DecodedRecord::Invalid(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_byte, segment)) = data.split_first() else { return };
    check_decode(segment);
    let chunk = if chunk_byte == 0 { 1 << 20 } else { usize::from(chunk_byte) };
    let base = 0;
    let scan = scan_segment(segment, base, chunk).expect("a scan of bytes in memory cannot fail");
    assert!(scan.valid_len <= segment.len() as u64);
    // Walk the valid prefix independently.
    let mut position = 0usize;
    let mut expected_offset = base;
    let mut max_timestamp = i64::MIN;
    let mut starts = Vec::new();
    while position < scan.valid_len as usize {
        let (offset, timestamp, size) = check_decode(&segment[position..scan.valid_len as usize]).expect("the valid prefix holds only whole records");
        assert_eq!(offset, expected_offset, "offsets in the valid prefix are dense");
        starts.push((offset, position as u64));
        max_timestamp = max_timestamp.max(timestamp);
        expected_offset += 1;
        position += size;
    }
    assert_eq!(position as u64, scan.valid_len, "records tile the valid prefix");
    assert_eq!(scan.next_offset, expected_offset);
    assert_eq!(scan.max_timestamp, max_timestamp);
    // The index: the first record, then every record at least INDEX_INTERVAL after the last entry.
    let mut index = Vec::new();
    for (offset, at) in starts {
        if index.last().is_none_or(|(_, last): &(u64, u64)| at - last >= INDEX_INTERVAL) {
            index.push((offset, at));
        }
    }
    assert_eq!(scan.index, index);
    let rest = &segment[scan.valid_len as usize..];
    match &scan.end {
        ScanEnd::Clean => assert!(rest.is_empty(), "clean with {} bytes left", rest.len()),
        ScanEnd::Torn(_) => assert!(!rest.is_empty()),
        ScanEnd::Inconsistent(_) => match decode_record(rest) {
            DecodedRecord::Record { offset, .. } => assert_ne!(offset, expected_offset, "inconsistent but the next record fits"),
            other => panic!("inconsistent without a record after the valid prefix: {other:?}"),
        },
    }
    if let ScanEnd::Torn(_) = &scan.end {
        assert!(!matches!(decode_record(rest), DecodedRecord::Record { .. }), "torn where a whole record follows");
    }
    let whole = scan_segment(segment, base, 1 << 20).unwrap();
    assert_eq!(whole, scan, "the scan depends on its read size ({chunk})");
});
