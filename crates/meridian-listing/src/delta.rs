//! The delta of a category: an append-only log of changed docs shared by successive
//! snapshots, and the snapshot (base + log prefix) readers query.

use crate::base::{Base, NONE};
use crate::model::DocValues;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Size of the first chunk of a log; chunk `k` holds `FIRST_CHUNK << k` entries.
const FIRST_CHUNK: usize = 256;
const N_CHUNKS: usize = 32;

/// One change of one doc in a category.
#[derive(Debug)]
pub(crate) struct DeltaEntry {
    pub(crate) sku: u64,
    /// The base doc this entry replaces (`NONE` for a SKU the base does not hold).
    pub(crate) base_doc: u32,
    /// The SPU of that base doc.
    pub(crate) base_spu: u64,
    /// The previous entry of the same SKU in this log (`NONE` for the first).
    pub(crate) prev: u32,
    /// The doc's values, inline so a reader scans the log sequentially; `None` removes it.
    pub(crate) values: Option<DocValues>,
    /// Index of the entry that replaced this one (`NONE` while it is the latest). A reader
    /// of a prefix of length `len` treats the entry as live iff `superseded_by >= len`.
    superseded_by: AtomicU32,
}

impl DeltaEntry {
    #[inline]
    pub(crate) fn live_at(&self, len: u32) -> bool {
        self.superseded_by.load(Ordering::Acquire) >= len
    }
}

/// Append-only, lock-free for readers: the single writer fills slot `i` before publishing
/// a snapshot whose length covers it, so a reader only ever reads filled slots.
#[derive(Debug)]
pub(crate) struct DeltaLog {
    chunks: Box<[OnceLock<Chunk>]>,
}

/// `FIRST_CHUNK << k` slots, filled in order.
type Chunk = Box<[OnceLock<DeltaEntry>]>;

impl Default for DeltaLog {
    fn default() -> Self {
        DeltaLog { chunks: (0..N_CHUNKS).map(|_| OnceLock::new()).collect() }
    }
}

#[inline]
fn locate(i: u32) -> (usize, usize) {
    let x = i as usize + FIRST_CHUNK;
    let high = usize::BITS - 1 - x.leading_zeros();
    let chunk = high as usize - FIRST_CHUNK.trailing_zeros() as usize;
    (chunk, x - (FIRST_CHUNK << chunk))
}

impl DeltaLog {
    /// Writes slot `i` (writer only, each slot once, in order).
    pub(crate) fn put(&self, i: u32, sku: u64, (base_doc, base_spu): (u32, u64), prev: u32, values: Option<DocValues>) {
        let (chunk, offset) = locate(i);
        let slots = self.chunks[chunk].get_or_init(|| (0..FIRST_CHUNK << chunk).map(|_| OnceLock::new()).collect());
        let _ = slots[offset].set(DeltaEntry { sku, base_doc, base_spu, prev, values, superseded_by: AtomicU32::new(NONE) });
        if prev != NONE {
            if let Some(old) = self.get(prev) {
                old.superseded_by.store(i, Ordering::Release);
            }
        }
    }

    /// Slot `i`, when written.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> Option<&DeltaEntry> {
        let (chunk, offset) = locate(i);
        self.chunks.get(chunk)?.get()?.get(offset)?.get()
    }
}

/// What a reader queries: an immutable base plus the first `len` entries of a log.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) base: Arc<Base>,
    pub(crate) log: Arc<DeltaLog>,
    pub(crate) len: u32,
}

/// The delta of a snapshot folded for a query: base docs it hides, and the live docs.
#[derive(Debug)]
pub(crate) struct Folded<'a> {
    /// Base docs replaced or removed (may repeat).
    pub(crate) dirty: Vec<u32>,
    /// Live docs of the delta: entry index, values, and the base doc of the same SKU and
    /// SPU (`NONE` when the base has no such doc).
    pub(crate) live: Vec<(u32, &'a DocValues, u32)>,
}

impl Snapshot {
    pub(crate) fn fold(&self) -> Folded<'_> {
        self.fold_prefix(self.len)
    }

    pub(crate) fn fold_prefix(&self, len: u32) -> Folded<'_> {
        let mut dirty = Vec::new();
        let mut live = Vec::new();
        for i in 0..len {
            let Some(e) = self.log.get(i) else { continue };
            if e.base_doc != NONE {
                dirty.push(e.base_doc);
            }
            if e.live_at(len) {
                if let Some(v) = &e.values {
                    let same_group = if e.base_doc != NONE && e.base_spu == v.spu { e.base_doc } else { NONE };
                    live.push((i, v, same_group));
                }
            }
        }
        Folded { dirty, live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_distinct_chunk_positions() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let (c, o) = locate(i);
            assert!(o < FIRST_CHUNK << c, "{i}");
            assert!(seen.insert((c, o)));
        }
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST_CHUNK as u32), (1, 0));
    }
}
