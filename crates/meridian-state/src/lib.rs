//! Processor state: a key-value store trait with atomic, durable write batches.

use std::fmt;
use std::ops::Bound;

mod backend;
pub mod conformance;
mod fjall_store;
mod memory;
mod redb_store;

pub use backend::StateBackend;
pub use fjall_store::FjallStore;
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// Result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Errors of a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store is used by another process (e.g. a running server).
    #[error("state store {path} is in use by another process; stop it or use its HTTP API")]
    Locked {
        /// Path of the store.
        path: String,
    },
    /// A table name is not valid.
    #[error("invalid table name {0:?}: use 1-64 of [a-z0-9_]")]
    InvalidTable(String),
    /// The backend failed.
    #[error("state store error: {0}")]
    Backend(String),
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or replace.
    Put {
        /// Table.
        table: &'static str,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove one key (absent keys are fine).
    Delete {
        /// Table.
        table: &'static str,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key with this prefix.
    DeletePrefix {
        /// Table.
        table: &'static str,
        /// Prefix.
        prefix: Vec<u8>,
    },
}

/// Writes applied together by [`KvStore::commit`]: all or nothing, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, table: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put { table, key: key.into(), value: value.into() });
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: &'static str, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete { table, key: key.into() });
    }

    /// Adds a delete of every key starting with `prefix`.
    pub fn delete_prefix(&mut self, table: &'static str, prefix: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeletePrefix { table, prefix: prefix.into() });
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value pair read back.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The state store (see the crate docs). Tables are created on first write; reading a
/// table that was never written returns nothing, not an error.
pub trait KvStore: Send + Sync + fmt::Debug + 'static {
    /// The value of `key` in `table`.
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Pairs with `start <= key < end` (per the bounds), in key order, at most `limit`.
    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValue>>;

    /// Applies a batch atomically and durably.
    fn commit(&self, batch: WriteBatch) -> Result<()>;

    /// Gives unused space back to the file system, if the backend keeps any (redb keeps
    /// freed copy-on-write pages in its file for reuse). Blocks the store's other
    /// operations while it runs, so call it at a quiet time. Returns whether anything was
    /// done; the default does nothing.
    fn compact(&self) -> Result<bool> {
        Ok(false)
    }

    /// Pairs whose key starts with `prefix`, in key order, at most `limit`.
    fn scan_prefix(&self, table: &'static str, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        match prefix_end(prefix) {
            Some(end) => self.range(table, Bound::Included(prefix), Bound::Excluded(&end), limit),
            None => self.range(table, Bound::Included(prefix), Bound::Unbounded, limit),
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (None if unbounded).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn check_table(table: &str) -> Result<()> {
    let ok = !table.is_empty() && table.len() <= 64 && table.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidTable(table.to_owned()))
    }
}
