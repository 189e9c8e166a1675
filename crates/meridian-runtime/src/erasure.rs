//! Erasure receipts: what each processor removed for a user-erasure request, committed
//! with the round that removed it and kept across rebuilds.

use crate::{Result, RuntimeError};
use meridian_state::KvStore;

/// Receipts: key = erasure id length (u32 BE), erasure id, processor name; value = JSON
/// of what the processor removed. The length prefix keeps `e-1` from matching `e-10`.
pub(crate) const RECEIPTS_TABLE: &str = "runtime_erasure_receipts";

pub(crate) fn receipt_prefix(erasure_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + erasure_id.len() + 16);
    // No erasure id comes near 4 GiB.
    k.extend_from_slice(&(erasure_id.len() as u32).to_be_bytes());
    k.extend_from_slice(erasure_id.as_bytes());
    k
}

pub(crate) fn receipt_key(erasure_id: &str, processor: &str) -> Vec<u8> {
    let mut k = receipt_prefix(erasure_id);
    k.extend_from_slice(processor.as_bytes());
    k
}

/// Every processor's receipt for `erasure_id`, sorted by processor name.
pub(crate) fn read_receipts(store: &dyn KvStore, erasure_id: &str) -> Result<Vec<(String, serde_json::Value)>> {
    let prefix = receipt_prefix(erasure_id);
    let corrupt = |reason: String| RuntimeError::Corrupt { table: RECEIPTS_TABLE, owner: erasure_id.to_owned(), reason };
    store
        .scan_prefix(RECEIPTS_TABLE, &prefix, usize::MAX)?
        .into_iter()
        .map(|(key, value)| {
            let processor = String::from_utf8(key[prefix.len()..].to_vec()).map_err(|e| corrupt(e.to_string()))?;
            let removed = serde_json::from_slice(&value).map_err(|e| corrupt(format!("receipt of {processor}: {e}")))?;
            Ok((processor, removed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_key_matches_only_its_own_erasure_id() {
        let key = receipt_key("e-1", "history");
        assert!(key.starts_with(&receipt_prefix("e-1")));
        assert!(!receipt_key("e-10", "history").starts_with(&receipt_prefix("e-1")));
        assert!(!receipt_key("e-1", "history").starts_with(&receipt_prefix("e-10")));
    }
}
