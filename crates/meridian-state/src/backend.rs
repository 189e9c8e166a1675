//! The embedded state backends as one closed choice, and the factory that opens the one a
//! data directory was created with (used by the server and by offline commands alike).

use crate::{FjallStore, KvStore, RedbStore, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The embedded state store of a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// redb, a B-tree in one file (`state.redb`).
    Redb,
    /// fjall, an LSM tree in a folder (`state-fjall/`): the default. Smaller on disk
    /// (history's cold tier: 6.4 bytes per entry against redb's 9.7, docs/benchmarks.md)
    /// and 2–5× faster small durable commits.
    #[default]
    Fjall,
}

impl StateBackend {
    /// Every backend, in the order `detect` looks for them.
    pub const ALL: [StateBackend; 2] = [StateBackend::Redb, StateBackend::Fjall];

    /// Parses `redb` or `fjall`.
    pub fn parse(text: &str) -> Option<StateBackend> {
        match text {
            "redb" => Some(StateBackend::Redb),
            "fjall" => Some(StateBackend::Fjall),
            _ => None,
        }
    }

    /// The backend's name as `parse` reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Redb => "redb",
            StateBackend::Fjall => "fjall",
        }
    }

    /// Where this backend keeps its data inside a data directory.
    pub fn path(self, data_dir: &Path) -> PathBuf {
        match self {
            StateBackend::Redb => data_dir.join("state.redb"),
            StateBackend::Fjall => data_dir.join("state-fjall"),
        }
    }

    /// The backend whose data is in `data_dir`, if any.
    pub fn detect(data_dir: &Path) -> Option<StateBackend> {
        StateBackend::ALL.into_iter().find(|b| b.path(data_dir).exists())
    }

    /// The backend for `data_dir`: the one its data was created with, else the default.
    pub fn for_data_dir(data_dir: &Path) -> StateBackend {
        StateBackend::detect(data_dir).unwrap_or_default()
    }

    /// Opens the store in `data_dir`.
    pub fn open(self, data_dir: &Path) -> Result<Arc<dyn KvStore>> {
        Ok(match self {
            StateBackend::Redb => Arc::new(RedbStore::open(self.path(data_dir))?),
            StateBackend::Fjall => Arc::new(FjallStore::open(self.path(data_dir))?),
        })
    }
}

impl std::fmt::Display for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
