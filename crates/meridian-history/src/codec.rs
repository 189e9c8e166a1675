//! Compact encodings: LEB128 varints, zigzag, and the entry-list encoding shared by the
//! cold tier (delta-coded, newest first).

use crate::model::{secs_to_ms, Entry};

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint from the front of `input`, advancing it.
pub fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Zigzag-encodes a signed delta.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

const LIST_VERSION: u8 = 1;

/// Encodes entries (must be sorted newest first, times whole seconds at or after the
/// base): version byte, count, then per entry the SKU (first absolute, then zigzag delta
/// to the previous SKU) and the time in seconds since the base (first absolute, then the
/// gap to the previous, newer entry). A typical entry takes 4–6 bytes.
pub fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) {
    out.push(LIST_VERSION);
    put_varint(out, entries.len() as u64);
    let mut prev_sku: u64 = 0;
    let mut prev_secs: u32 = 0;
    for (i, e) in entries.iter().enumerate() {
        let secs = e.secs();
        if i == 0 {
            put_varint(out, e.sku);
            put_varint(out, u64::from(secs));
        } else {
            put_varint(out, zigzag(e.sku.wrapping_sub(prev_sku) as i64));
            put_varint(out, u64::from(prev_secs.saturating_sub(secs)));
        }
        prev_sku = e.sku;
        prev_secs = secs;
    }
}

/// Decodes [`encode_entries`]; `None` if the bytes are corrupt.
pub fn decode_entries(mut input: &[u8]) -> Option<Vec<Entry>> {
    let (&version, rest) = input.split_first()?;
    if version != LIST_VERSION {
        return None;
    }
    input = rest;
    let n = get_varint(&mut input)? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    let mut prev_sku: u64 = 0;
    let mut prev_secs: u64 = 0;
    for i in 0..n {
        let a = get_varint(&mut input)?;
        let b = get_varint(&mut input)?;
        let (sku, secs) = if i == 0 { (a, b) } else { (prev_sku.wrapping_add(unzigzag(a) as u64), prev_secs.checked_sub(b)?) };
        out.push(Entry { sku, time_ms: secs_to_ms(u32::try_from(secs).ok()?) });
        prev_sku = sku;
        prev_secs = secs;
    }
    if !input.is_empty() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BASE_MS;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut s = &out[..];
            assert_eq!(get_varint(&mut s), Some(v));
            assert!(s.is_empty());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -50_000] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(get_varint(&mut &[0x80u8][..]), None, "truncated varint");
    }

    #[test]
    fn entries_round_trip_compactly() {
        let t = BASE_MS + 1_000_000_000;
        let entries: Vec<Entry> = (0..200u64).map(|i| Entry { sku: 100_000_001 + (i * 7919) % 50_000, time_ms: t - (i as i64) * 37_000 }).collect();
        let mut out = Vec::new();
        encode_entries(&entries, &mut out);
        assert_eq!(decode_entries(&out), Some(entries.clone()));
        assert!(out.len() <= 200 * 6, "{} bytes for 200 entries", out.len());
        assert_eq!(decode_entries(&out[..out.len() - 1]), None, "truncated");
        assert_eq!(decode_entries(&[]), None);
        let mut bad = out.clone();
        bad[0] = 9;
        assert_eq!(decode_entries(&bad), None, "unknown version");
    }
}
