//! Opaque cursors: the complete state of the sequencer after a page, so the next page
//! continues exactly where page-number paging would.

use crate::error::{ListingError, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const VERSION: u8 = 1;
/// Most buffered candidates a cursor may carry (the largest interleaving window).
const MAX_BUFFER: usize = 256;

/// Sequencer state between two pages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CursorState {
    /// The query it continues (category, filters, sort).
    pub(crate) fingerprint: u64,
    /// Items emitted so far.
    pub(crate) out: u64,
    /// (brand, run length) of the last items.
    pub(crate) brand_run: (u32, u32),
    /// (shop, run length) of the last items.
    pub(crate) shop_run: (u32, u32),
    /// `(key, spu, sku)` of the last candidate taken from the sorted stream.
    pub(crate) last: Option<(u64, u64, u64)>,
    /// Candidates taken from the stream but not emitted yet, as `(spu, sku)`, in order.
    pub(crate) buffer: Vec<(u64, u64)>,
    /// Pinned SKUs already emitted.
    pub(crate) pins_done: Vec<u64>,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable 64-bit hash of canonical query bytes.
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    fnv(bytes)
}

impl CursorState {
    pub(crate) fn encode(&self) -> String {
        let mut b = Vec::with_capacity(64 + 16 * self.buffer.len() + 8 * self.pins_done.len());
        b.push(VERSION);
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        b.extend_from_slice(&self.out.to_le_bytes());
        for x in [self.brand_run.0, self.brand_run.1, self.shop_run.0, self.shop_run.1] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        match self.last {
            None => b.push(0),
            Some((k, spu, sku)) => {
                b.push(1);
                for x in [k, spu, sku] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        b.extend_from_slice(&(self.buffer.len() as u16).to_le_bytes());
        for &(spu, sku) in &self.buffer {
            b.extend_from_slice(&spu.to_le_bytes());
            b.extend_from_slice(&sku.to_le_bytes());
        }
        b.extend_from_slice(&(self.pins_done.len() as u16).to_le_bytes());
        for sku in &self.pins_done {
            b.extend_from_slice(&sku.to_le_bytes());
        }
        let check = fnv(&b) as u32;
        b.extend_from_slice(&check.to_le_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    pub(crate) fn decode(text: &str) -> Result<CursorState> {
        let bad = |why: &str| ListingError::BadCursor(why.to_owned());
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad("not base64url"))?;
        if bytes.len() < 5 {
            return Err(bad("too short"));
        }
        let (body, check) = bytes.split_at(bytes.len() - 4);
        if fnv(body) as u32 != u32::from_le_bytes([check[0], check[1], check[2], check[3]]) {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader { bytes: body, at: 0 };
        if r.u8()? != VERSION {
            return Err(bad("unknown version"));
        }
        let fingerprint = r.u64()?;
        let out = r.u64()?;
        let brand_run = (r.u32()?, r.u32()?);
        let shop_run = (r.u32()?, r.u32()?);
        let last = match r.u8()? {
            0 => None,
            1 => Some((r.u64()?, r.u64()?, r.u64()?)),
            _ => return Err(bad("corrupt")),
        };
        let n = r.u16()? as usize;
        if n > MAX_BUFFER {
            return Err(bad("buffer too long"));
        }
        let buffer = (0..n).map(|_| Ok((r.u64()?, r.u64()?))).collect::<Result<Vec<_>>>()?;
        let n = r.u16()? as usize;
        if n > crate::config::MAX_PINS {
            return Err(bad("too many pins"));
        }
        let pins_done = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
        if r.at != body.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(CursorState { fingerprint, out, brand_run, shop_run, last, buffer, pins_done })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.bytes.get(self.at..self.at + N).ok_or_else(|| ListingError::BadCursor("truncated".into()))?;
        self.at += N;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let state = CursorState { fingerprint: 7, out: 40, brand_run: (3, 2), shop_run: (9, 1), last: Some((1, 2, 3)), buffer: vec![(5, 6), (7, 8)], pins_done: vec![11] };
        let text = state.encode();
        assert_eq!(CursorState::decode(&text).unwrap(), state);
        let mut tampered = text.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert!(CursorState::decode(std::str::from_utf8(&tampered).unwrap()).is_err());
        assert!(CursorState::decode("!!").is_err());
        assert!(CursorState::decode("").is_err());
    }
}
